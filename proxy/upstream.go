package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/health"
	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"
)

// upstream is one web-tier address with its connection pool and breaker.
type upstream struct {
	addr    string
	dc      string
	tlsKey  string // the datacenter's upstream TLS settings; "" for plain
	client  *fasthttp.HostClient
	breaker *health.Breaker
	// inflight counts the requests on their way through do: pick's
	// measure of load (HostClient.Do, which counts them itself, is not
	// used).
	inflight atomic.Int32
	// held is upstream.max_buffered_response_bytes: larger bodies, and
	// those of unknown length, stream (see readResponse).
	held int
	// streams counts the bodies streaming from this upstream now, at most
	// maxStreams (half its connections): a client reading slowly holds an
	// upstream connection for as long as it reads, and slow clients must
	// not take every one from the short answers. Past it, bodies are held.
	streams    atomic.Int32
	maxStreams int32
	// streamsCut counts streamed bodies the upstream broke off; cutLog
	// rate-limits their warning.
	streamsCut atomic.Uint64
	cutLog     logEvery
	// desyncs counts connections closed for bytes the upstream sent past
	// a response's end (see attempt); desyncLog rate-limits their warning.
	desyncs   atomic.Uint64
	desyncLog logEvery
	log       *slog.Logger
}

// pool is one datacenter's upstreams.
type pool struct {
	name      string
	continent string
	upstreams []*upstream
}

// bit is u's bit in a pick skip mask of p (0 past the first 64, or if u is
// not p's).
func (p *pool) bit(u *upstream) uint64 {
	for i, v := range p.upstreams {
		if v == u && i < 64 {
			return 1 << i
		}
	}
	return 0
}

// ready reports whether any upstream of p would take a request now.
func (p *pool) ready() bool {
	for _, u := range p.upstreams {
		if u.breaker.Ready() {
			return true
		}
	}
	return false
}

// pick chooses an upstream of p by the power of two random choices: of two
// upstreams whose breakers let requests through, the one with fewer requests
// in flight. It avoids the herding of least-loaded and the blindness of
// round robin at the cost of two random numbers. skip excludes the
// upstreams that already failed this request (bit i: p.upstreams[i]; the
// first 64). nil means none is ready.
func (p *pool) pick(skip uint64) *upstream {
	n := len(p.upstreams)
	var a, b *upstream
	start := rand.IntN(n)
	for i := 0; i < n && b == nil; i++ {
		j := (start + i) % n
		u := p.upstreams[j]
		if j < 64 && skip&(1<<j) != 0 || !u.breaker.Ready() {
			continue
		}
		if a == nil {
			a = u
		} else {
			b = u
		}
	}
	if b != nil && b.inflight.Load() < a.inflight.Load() {
		return b
	}
	return a
}

// do sends req to u and reads the answer into resp, both within timeout
// of start. A pooled connection that idled is looked at first, and one
// the upstream closed meanwhile is dropped unused (peerClosed): a request
// that is not idempotent cannot be sent twice. An idempotent request that
// still fails on a pooled connection (the upstream closed it as the
// request left) is sent once more on another. Real failures are retried
// by the caller, on another datacenter.
//
// It is fasthttp's HostClient.Do cut down to what the proxy uses, because
// Do reads the clock five times per request (three for the deadline it
// derives from a timeout, two for idle bookkeeping), about 1% of the
// proxy's CPU; do takes start from the request's start time, which
// fasthttp's server read already, and leaves one read, in ReleaseConn.
// timeout also bounds the wait for a free connection, as does
// upstream.max_conn_wait_timeout.
func (u *upstream) do(req *fasthttp.Request, resp *fasthttp.Response, start time.Time, timeout time.Duration, idempotent bool) error {
	u.inflight.Add(1)
	reused, err := u.attempt(req, resp, start, timeout)
	if err != nil && reused && idempotent && !errors.Is(err, fasthttp.ErrTimeout) && !isOversized(err) {
		_, err = u.attempt(req, resp, start, timeout)
	}
	u.inflight.Add(-1)
	if errors.Is(err, io.EOF) {
		err = fasthttp.ErrConnectionClosed
	}
	return err
}

// idlePeekAfter is how long a pooled connection may idle before do looks
// at it before use. Under load connections are reused within
// milliseconds and pay nothing; upstreams close idle connections after
// seconds (keep-alive timeouts), so a tenth of a second catches them at
// the cost of one system call per request on a quiet upstream.
const idlePeekAfter = 100 * time.Millisecond

// attempt is one exchange on one connection; reused says whether the
// connection had served a request before, so that a failure may be the
// upstream's idle close rather than the upstream failing.
func (u *upstream) attempt(req *fasthttp.Request, resp *fasthttp.Response, start time.Time, timeout time.Duration) (reused bool, err error) {
	var stray bool
	c := u.client
	cc, err := c.AcquireConn(timeout, req.ConnectionClose())
	for ; err == nil; cc, err = c.AcquireConn(timeout, req.ConnectionClose()) {
		reused = !cc.LastUseTime().IsZero()
		// One deadline for both directions: a turnConn sends the request
		// when it first reads, so the write is bounded by the read anyway.
		if err = cc.Conn().SetDeadline(start.Add(timeout)); err != nil {
			c.CloseConn(cc)
			return reused, err
		}
		if !reused {
			break
		}
		if tc := turnOf(cc.Conn()); tc != nil && tc.bodiless {
			// Its last answer had no body by rule: one the upstream
			// sent anyway may have come after it was read.
			tc.bodiless = false
			found := tc.peek()
			if found == peekNothing {
				break // open and quiet: the idle look below would look again
			}
			if found == peekBytes { // (peekClosed: closed while it idled, no fault)
				u.desynced("bytes came after a response that has no body (HEAD, 204 or 304)")
			}
			c.CloseConn(cc)
			continue
		}
		if start.Sub(cc.LastUseTime()) <= idlePeekAfter || !peerClosed(cc.Conn()) {
			break
		}
		c.CloseConn(cc) // gone while it idled; the pool holds finitely many
	}
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	req.URI().DisablePathNormalizing = true // forward the path as the client wrote it
	bw := c.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	c.ReleaseWriter(bw)
	if err == nil {
		br := c.AcquireReader(conn)
		var sb *streamBody
		// A stream's slot is taken before the answer is read, so that a
		// burst of large answers cannot all find room, and given back
		// unless the answer streams.
		slot := u.streams.Add(1) <= u.maxStreams
		sb, err = readResponse(req, resp, conn, br, u.held, c.MaxResponseBodySize, slot)
		if sb == nil {
			u.streams.Add(-1)
		} else {
			// The body streams to the client: the connection is the
			// stream's, and back in the pool (or closed) when it ends.
			// (Copies, so that only this path's closure holds them.)
			held, rd := cc, br
			sb.timeout, sb.u = timeout, u // (handle sets the whole upstream.timeout once it answers)
			sb.done = func(reuse bool) {
				c.ReleaseReader(rd)
				if reuse {
					c.ReleaseConn(held)
				} else {
					c.CloseConn(held)
				}
			}
			u.inflight.Add(1) // till the stream closes: pick's measure of load
			return reused, nil
		}
		stray = br.Buffered() > 0
		c.ReleaseReader(br)
	}
	if err != nil {
		c.CloseConn(cc)
		var t interface{ Timeout() bool }
		if errors.As(err, &t) && t.Timeout() {
			err = fasthttp.ErrTimeout
		}
		return reused, err
	}
	switch {
	case req.ConnectionClose() || resp.ConnectionClose() || resp.StatusCode() == fasthttp.StatusSwitchingProtocols:
		c.CloseConn(cc) // after a 101 it speaks another protocol, whatever it sent
	case stray:
		// Bytes past the response's end (a body longer than its
		// Content-Length, or on a HEAD, 204 or 304): pooled, they would be
		// read as the next request's response, another user's. HAProxy
		// closes a server connection that sends while idle.
		u.desynced("bytes came past the end of a response")
		c.CloseConn(cc)
	default:
		if tc := turnOf(conn); tc != nil {
			code := resp.StatusCode()
			tc.bodiless = req.Header.IsHead() || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified
		}
		c.ReleaseConn(cc)
	}
	return reused, nil
}

// desynced counts and (at most once a minute per upstream) logs an
// upstream connection closed because the upstream sent more than its
// response: a bug in the web tier, or an attempt at response splitting.
func (u *upstream) desynced(what string) {
	u.desyncs.Add(1)
	if ok, held := u.desyncLog.due(); ok {
		u.log.Warn("upstream connection closed, not reused: "+what+"; they would have been read as the next request's response",
			"datacenter", u.dc, "upstream", u.addr, "more_since_last_line", held)
	}
}

// peerClosed reports whether the upstream has closed c, a pooled
// connection: a turnConn, or TLS over one. Connections it cannot look into
// (in-memory pipes in tests) are taken as open.
func peerClosed(c net.Conn) bool {
	tc := turnOf(c)
	return tc != nil && tc.peerClosed()
}

// turnOf is the turnConn under c, a pooled connection (TLS over one, or
// one), or nil (in-memory pipes in tests).
func turnOf(c net.Conn) *turnConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, _ := c.(*turnConn)
	return tc
}

// newUpstream makes the pooled client and breaker for one address.
// ut, if set, makes every connection TLS (mutual TLS with a client
// certificate).
func newUpstream(addr, dc string, u configs.Upstream, ut *upstreamTLS, dial fasthttp.DialFunc, log *slog.Logger) *upstream {
	if dial == nil {
		dialer := &net.Dialer{Timeout: u.ConnectTimeout}
		dial = func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) }
	}
	dial = turnDial(dial)
	up := &upstream{addr: addr, dc: dc, log: log, held: u.MaxBufferedResponseBytes, maxStreams: int32(max(1, u.MaxConnsPerHost/2)),
		desyncLog: logEvery{every: time.Minute}, cutLog: logEvery{every: time.Minute}}
	if ut != nil {
		dial = tlsDial(dial, ut.conf, addr, u.ConnectTimeout)
		up.tlsKey = ut.key
	}
	// The HostClient is the connection pool only: requests go through do,
	// which arms the attempt's deadline and does its own header handling
	// (the path and header names as the client wrote them, no User-Agent
	// of its own), so none of HostClient.Do's settings are set here.
	up.client = &fasthttp.HostClient{
		Addr:                addr,
		Dial:                dial,
		MaxConns:            u.MaxConnsPerHost,
		MaxIdleConnDuration: u.MaxIdleConnDuration,
		MaxConnWaitTimeout:  u.MaxConnWaitTimeout,
		MaxResponseBodySize: u.MaxResponseBodySize,    // read by do
		ReadBufferSize:      u.MaxResponseHeaderBytes, // bounds the status line and headers
		// The connection released last is used next: its socket, buffers
		// and the upstream's side of it are still in cache, and the
		// connections a quiet hour does not need idle out instead of
		// each being kept barely alive by a turn in the rotation.
		ConnPoolStrategy: fasthttp.LIFO,
	}
	up.breaker = health.NewBreaker(dc+"/"+addr, health.BreakerSettings{
		Failures:     u.Breaker.ConsecutiveFailures,
		OpenFor:      u.Breaker.OpenFor,
		HalfOpen:     u.Breaker.HalfOpenRequests,
		FailureRatio: u.Breaker.FailureRatio,
		MinRequests:  u.Breaker.MinRequests,
		Window:       u.Breaker.Window,
		// All of the pool's connections busy past the wait, or an answer
		// over upstream.max_response_body_size or max_response_header_bytes,
		// is this proxy's limit, not the upstream failing, and so are a 101
		// it does not relay and an attempt cut short by its request's
		// deadline: counted, a burst (of requests for a page that
		// echoes a long URL into a header, say) would open a healthy
		// upstream's breaker.
		Neutral: func(err error) bool {
			return errors.Is(err, fasthttp.ErrNoFreeConns) || isOversized(err) || errors.Is(err, errUpgrade) || errors.Is(err, errOutOfTime)
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			// Under the breaker's lock: log, and leave anything slow to a
			// goroutine.
			if to == gobreaker.StateOpen {
				// Pooled connections to a dead upstream are dead too, but
				// fasthttp finds out only by using them: each half-open
				// probe would draw one, fail, and re-open the breaker.
				go up.client.CloseIdleConnections()
			}
			level := slog.LevelWarn
			if to == gobreaker.StateClosed {
				level = slog.LevelInfo
			}
			log.Log(context.Background(), level, "upstream breaker", "upstream", name, "from", from.String(), "to", to.String())
		},
	})
	return up
}

// buildPools makes one pool per datacenter of cfg, in topology order,
// reusing the upstreams of old (built with the same upstream settings) whose
// address and datacenter are unchanged, so a reload keeps their warm
// connections and breaker state. An upstream whose datacenter's TLS
// settings or files changed is rebuilt. It fails if a datacenter's TLS
// files cannot be read.
func buildPools(cfg *configs.Config, old []*pool, dial fasthttp.DialFunc, log *slog.Logger) ([]*pool, error) {
	reuse := map[string]*upstream{}
	for _, p := range old {
		for _, u := range p.upstreams {
			reuse[u.dc+"\x00"+u.addr+"\x00"+u.tlsKey] = u
		}
	}
	pools := make([]*pool, len(cfg.Datacenters))
	for i, d := range cfg.Datacenters {
		ut, err := loadUpstreamTLS(cfg, i)
		if err != nil {
			return nil, err
		}
		tlsKey := ""
		if ut != nil {
			tlsKey = ut.key
		}
		p := &pool{name: d.Name, continent: d.Continent}
		for _, addr := range d.Upstreams {
			if u, ok := reuse[d.Name+"\x00"+addr+"\x00"+tlsKey]; ok {
				p.upstreams = append(p.upstreams, u)
				continue
			}
			p.upstreams = append(p.upstreams, newUpstream(addr, d.Name, cfg.Upstream, ut, dial, log))
		}
		pools[i] = p
	}
	return pools, nil
}

// closeUnused closes the idle connections of upstreams in old that next no
// longer uses.
func closeUnused(old, next []*pool) {
	used := map[*upstream]bool{}
	for _, p := range next {
		for _, u := range p.upstreams {
			used[u] = true
		}
	}
	for _, p := range old {
		for _, u := range p.upstreams {
			if !used[u] {
				u.client.CloseIdleConnections()
			}
		}
	}
}
