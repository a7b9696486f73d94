package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// readResponse reads an upstream's answer to req from br into resp. A body
// of known length up to held bytes is read whole, as is any body of a
// gateway error (502, 503, 504: it may be dropped for a retry) and any
// body of a message that has none by rule; so is one of unknown length
// (chunked, or until the upstream closes) that has arrived whole, within
// held bytes, by the time its headers are read.
// Any other body is returned as a stream for the caller to hand the
// client (nil when the body was read), and the connection is the
// stream's from then on. Without mayStream (the upstream's streams hold
// half its connections), bodies are read whole, as they are of unknown
// length for an HTTP/1.0 client, which cannot read chunked.
//
// Held whole, a client downloading slowly pinned the whole body in memory
// and had one listen.write_timeout for all of it: 20 MiB on 1 MB/s was cut
// at 10 s, and N downloads held N bodies.
func readResponse(req *fasthttp.Request, resp *fasthttp.Response, conn net.Conn, br *bufio.Reader, held, maxBody int, mayStream bool) (*streamBody, error) {
	head := req.Header.IsHead()
	resp.Reset()
	resp.Header.DisableNormalizing()
	// The status line and headers first, past any 100 Continue: fasthttp
	// reads no body of a response it is told to skip.
	resp.SkipBody = true
	err := resp.ReadLimitBody(br, maxBody)
	resp.SkipBody = head
	if err != nil {
		return nil, err
	}
	code, size := resp.StatusCode(), resp.Header.ContentLength()
	mayStream = mayStream && (size >= 0 || req.Header.IsHTTP11())
	switch {
	case head || code < 200 || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified:
		return nil, nil // no body by rule (and after a 101, none of HTTP's)
	case size >= 0 && size <= held || isGatewayError(code) || !mayStream:
		if err := resp.ReadBody(br, maxBody); err != nil || size != -1 {
			return nil, err
		}
		return nil, resp.Header.ReadTrailer(br) // (dropped by stripResponseHeaders)
	case maxBody > 0 && size > maxBody:
		return nil, fasthttp.ErrBodyTooLarge
	}
	s := streamPool.Get().(*streamBody)
	s.carrier = fasthttp.AcquireResponse()
	// The carrier frames the body (Content-Length, chunked, or until
	// close) with fasthttp's own parser and keeps its trailers, which go
	// no further: they were never screened as headers.
	s.carrier.StreamBody = true
	s.carrier.Header.SetContentLength(size)
	if err := s.carrier.ReadBody(br, maxBody); err != nil { // (only sets the stream up)
		s.release()
		return nil, err
	}
	s.body = s.carrier.BodyStream()
	s.br, s.conn, s.left = br, conn, int64(maxBody)
	if maxBody <= 0 {
		s.left = -1
	}
	s.reusable = size >= -1 && !req.ConnectionClose() && !resp.ConnectionClose()
	if size < 0 {
		// Of unknown length: most such answers are small (a web tier
		// that chunks every page), and those are read whole, framed by
		// their length, and their connection freed at once.
		ended, err := s.prefetch(resp, held)
		if err != nil {
			s.release()
			return nil, err
		}
		if ended {
			s.release() // (bytes past the body are attempt's to find, in br)
			resp.Header.SetContentLength(len(resp.Body()))
			return nil, nil
		}
		size = -1 // chunked to the client, whether it came chunked or until close
	}
	resp.SetBodyStream(s, size)
	return s, nil
}

// prefetch reads s's body into resp's until it ends (true), passes held
// bytes, or has read all that has arrived (buffered, or waiting on the
// socket); then what it read moves to s.prefix, which Read serves first.
// It never waits for more: a body that trickles (server-sent events, a
// long poll, a slow report) must reach the client as it comes, with each
// read's own timeout, not time out whole under the attempt's deadline.
func (s *streamBody) prefetch(resp *fasthttp.Response, held int) (ended bool, err error) {
	chunk := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(chunk)
	for len(resp.Body()) <= held && (s.br.Buffered() > 0 || arrived(s.conn)) {
		n, err := s.body.Read(*chunk)
		resp.AppendBody((*chunk)[:n])
		if s.left >= 0 {
			if s.left -= int64(n); s.left < 0 {
				return false, fasthttp.ErrBodyTooLarge
			}
		}
		switch {
		case err == io.EOF:
			return true, nil
		case err != nil:
			return false, err
		}
	}
	s.prefix = append(s.prefix[:0], resp.Body()...)
	return false, nil
}

// arrived reports whether bytes wait unread on c, a pooled upstream
// connection (a turnConn, or TLS over one): a read would not wait. One
// it cannot look into is taken as having none.
func arrived(c net.Conn) bool {
	tc := turnOf(c)
	return tc != nil && tc.peek() == peekBytes
}

// chunkBufs are prefetch's read buffers.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func isGatewayError(code int) bool {
	return code == fasthttp.StatusBadGateway || code == fasthttp.StatusServiceUnavailable || code == fasthttp.StatusGatewayTimeout
}

// streamBody relays an upstream body to the client as it comes. The
// server reads it while writing the response and closes it after; it
// owns the upstream connection till then, and puts it back in the pool
// only if the body ended where its framing said and nothing came after.
//
// Each read from the upstream gets upstream.timeout, and each write to
// the client listen.write_timeout (the read before it moves the client's
// write deadline): progress timeouts, so a large body may take as long as
// it keeps moving.
type streamBody struct {
	body     io.Reader // the carrier's body stream
	prefix   []byte    // read by prefetch, served before body from prefixAt on
	prefixAt int
	carrier  *fasthttp.Response // framing state and the trailers, dropped
	br       *bufio.Reader      // the upstream connection's reader
	conn     net.Conn           // the upstream connection, for its read deadlines
	timeout  time.Duration      // upstream.timeout, per read
	left     int64              // bytes upstream.max_response_body_size still allows; -1 for no cap
	reusable bool               // the connection may be pooled once the body ended
	ended    bool               // the body ended as framed
	upErr    error              // why reading the upstream failed, if it did
	u        *upstream
	// done hands the connection back (reuse) or closes it, and releases
	// br; set by attempt, which holds the pool's connection handle.
	done func(reuse bool)

	// Set by handle once forward returned: the client's connection and
	// listen.write_timeout.
	client       net.Conn
	writeTimeout time.Duration
}

var streamPool = sync.Pool{New: func() any { return new(streamBody) }}

// errStreamTooLarge ends a streamed body that grew past
// upstream.max_response_body_size: the client's connection is cut, since
// the status and headers are sent.
var errStreamTooLarge = errors.New("proxy: streamed upstream body over upstream.max_response_body_size")

func (s *streamBody) Read(p []byte) (int, error) {
	if s.prefixAt < len(s.prefix) {
		n := copy(p, s.prefix[s.prefixAt:])
		s.prefixAt += n
		return n, nil
	}
	// Each side's deadline is set just before its own wait, so neither
	// eats the other's: what the last write left held goes out now, under
	// a write deadline of its own; then the upstream read gets its whole
	// timeout; then the write of what it read gets the whole write
	// timeout, however long the upstream paused.
	if err := s.moveWriteDeadline(); err != nil {
		return 0, err
	}
	// Both directions: over TLS a read may write (a key update's answer).
	if err := s.conn.SetDeadline(time.Now().Add(s.timeout)); err != nil {
		return 0, err
	}
	n, err := s.body.Read(p)
	if s.left >= 0 {
		if s.left -= int64(n); s.left < 0 {
			return 0, errStreamTooLarge
		}
	}
	switch {
	case err == io.EOF:
		s.ended = true
	case err != nil:
		s.upErr = err
		return n, err
	}
	if werr := s.moveWriteDeadline(); werr != nil {
		return 0, werr
	}
	return n, err
}

// moveWriteDeadline gives the client's next write listen.write_timeout.
func (s *streamBody) moveWriteDeadline() error {
	if s.client == nil || s.writeTimeout <= 0 {
		return nil
	}
	return s.client.SetWriteDeadline(time.Now().Add(s.writeTimeout))
}

// Close is the server's, after the last write (or a failed one): the
// connection goes back to the pool only after a body that ended as
// framed, with nothing buffered past it (see attempt's stray bytes). A
// body the upstream broke off (reset, stalled, truncated) is counted and
// logged, not held against its breaker: a client that reads slowly makes
// the upstream wait on its writes, and a web tier's own write timeout
// would then break the body off, so slow clients could open breakers.
func (s *streamBody) Close() error {
	reuse := s.ended && s.reusable
	if s.ended && s.br.Buffered() > 0 {
		s.u.desynced("bytes came past the end of a streamed response")
		reuse = false
	}
	if !s.ended && s.upErr != nil {
		s.u.streamsCut.Add(1)
		if ok, held := s.u.cutLog.due(); ok {
			s.u.log.Warn("a streamed response body broke off upstream; the client's connection was cut",
				"datacenter", s.u.dc, "upstream", s.u.addr, "error", s.upErr, "more_since_last_line", held)
		}
	}
	s.done(reuse)
	s.u.inflight.Add(-1)
	s.u.streams.Add(-1)
	s.release()
	return nil
}

// release returns the carrier and s to their pools.
func (s *streamBody) release() {
	_ = s.carrier.CloseBodyStream()
	fasthttp.ReleaseResponse(s.carrier)
	prefix := s.prefix[:0]
	if cap(prefix) > 64<<10 {
		prefix = nil // (a held-bytes prefix each would pin a MiB per pooled stream)
	}
	*s = streamBody{prefix: prefix}
	streamPool.Put(s)
}
