package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// gatedBody is sizedBody(total) that stops after its first first bytes
// until gate is closed (a web tier still producing the rest), or, with no
// gate, for stall.
type gatedBody struct {
	sent, first, total int
	gate               chan struct{}
	stall              time.Duration
}

func (g *gatedBody) Read(p []byte) (int, error) {
	if g.sent == g.total {
		return 0, io.EOF
	}
	if g.sent == g.first {
		if g.gate != nil {
			<-g.gate
		} else {
			time.Sleep(g.stall)
		}
	}
	end := min(g.total, g.sent+len(p))
	if g.sent < g.first {
		end = min(end, g.first)
	}
	n := end - g.sent
	for i := range n {
		p[i] = byte('a' + (g.sent+i)%23) // sizedBody's pattern
	}
	g.sent = end
	return n, nil
}

// streamBackend serves GET /big?size=N[&first=F][&chunked=1][&stall_ms=S]:
// N bytes of sizedBody, the bytes past F only once gate is closed (or
// after S ms), framed by Content-Length or chunked. It counts the
// connections it accepted.
func streamBackend(t *testing.T, gate chan struct{}) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	srv := &fasthttp.Server{Logger: quiet{}, ConnState: func(_ net.Conn, st fasthttp.ConnState) {
		if st == fasthttp.StateNew {
			conns.Add(1)
		}
	}, Handler: func(ctx *fasthttp.RequestCtx) {
		q := ctx.QueryArgs()
		size, _ := strconv.Atoi(string(q.Peek("size")))
		first, err := strconv.Atoi(string(q.Peek("first")))
		if err != nil {
			first = size
		}
		stall, _ := strconv.Atoi(string(q.Peek("stall_ms")))
		body := &gatedBody{first: first, total: size, gate: gate}
		if stall > 0 {
			body.gate, body.stall = nil, time.Duration(stall)*time.Millisecond
		}
		if q.Has("chunked") {
			ctx.SetBodyStream(body, -1)
		} else {
			ctx.SetBodyStream(body, size)
		}
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), &conns
}

// getStream sends GET uri on c and returns the response with its body
// unread, as a stream.
func getStream(t *testing.T, c net.Conn, br *bufio.Reader, uri string) *fasthttp.Response {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nX-User-ID: 5\r\n\r\n", uri)
	resp := &fasthttp.Response{StreamBody: true}
	if err := resp.Read(br); err != nil {
		t.Fatalf("GET %s: %v", uri, err)
	}
	if resp.StatusCode() != 200 {
		t.Fatalf("GET %s: status %d", uri, resp.StatusCode())
	}
	return resp
}

func dialProxy(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

// A body larger than upstream.max_buffered_response_bytes, or of unknown
// length, reaches the client while the web tier is still sending it: the
// proxy holds none of it whole. It arrives intact, framed as it came, and
// the upstream connection goes back to the pool after it.
func TestLargeResponsesStreamToTheClient(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			gate := make(chan struct{})
			released := false
			release := func() {
				if !released {
					released = true
					close(gate)
				}
			}
			defer release() // a failing test must not leave the backend blocked
			up, conns := streamBackend(t, gate)
			addr, _ := serveUserOn(t, "5", up, nil)
			c, br := dialProxy(t, addr)
			const size, first = 4 << 20, 2 << 20
			uri := fmt.Sprintf("/big?size=%d&first=%d", size, first)
			if chunked {
				uri += "&chunked=1"
			}
			resp := getStream(t, c, br, uri)
			if got, want := resp.Header.ContentLength(), size; !chunked && got != want || chunked && got != -1 {
				t.Fatalf("Content-Length %d (chunked %v): the framing changed", got, chunked)
			}
			body := resp.BodyStream()
			// The first MiB arrives while the web tier still holds back
			// everything past its first 2 MiB.
			got := make([]byte, 1<<20)
			if _, err := io.ReadFull(body, got); err != nil {
				t.Fatalf("the first MiB before the web tier sent the rest: %v (held whole?)", err)
			}
			release()
			rest, err := io.ReadAll(body)
			if err != nil {
				t.Fatalf("the rest of the body: %v", err)
			}
			if all := append(got, rest...); !bytes.Equal(all, sizedBody(size)) {
				t.Fatalf("streamed body: %d bytes, want %d of the pattern", len(all), size)
			}
			// The connection is pooled again: the next large answer uses it.
			resp = getStream(t, c, br, fmt.Sprintf("/big?size=%d", size))
			if n, err := io.Copy(io.Discard, resp.BodyStream()); n != size || err != nil {
				t.Fatalf("second body: %d bytes, %v", n, err)
			}
			if n := conns.Load(); n != 1 {
				t.Fatalf("%d upstream connections for two streamed answers on one client connection, want 1 (reused)", n)
			}
		})
	}
}

// A client that downloads slowly gets the whole of a large body: the
// write timeout bounds each write, not the whole response (20 MiB on
// 1 MB/s was cut at the write timeout when bodies were held whole).
func TestASlowClientGetsTheWholeStreamedBody(t *testing.T) {
	up, _ := streamBackend(t, nil)
	addr, _ := serveUserOn(t, "5", up, func(c *configs.Config) { c.Listen.WriteTimeout = 300 * time.Millisecond })
	c, br := dialProxy(t, addr)
	// A receive buffer of some MSS (64 KiB on loopback): smaller, the
	// sender's silly-window avoidance stalls the stream for its persist
	// timer, 200 ms and more, which is TCP's pause, not the proxy's.
	_ = c.(*net.TCPConn).SetReadBuffer(1 << 20)
	const size = 6 << 20
	resp := getStream(t, c, br, fmt.Sprintf("/big?size=%d", size))
	start := time.Now()
	var got []byte
	buf := make([]byte, 256<<10)
	for len(got) < size {
		n, err := io.ReadFull(resp.BodyStream(), buf[:min(len(buf), size-len(got))])
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("after %d of %d bytes in %v: %v (cut by the write timeout)", len(got), size, time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond) // about 2.5 MB/s: 2.5 s for the body, 8 write timeouts
	}
	if !bytes.Equal(got, sizedBody(size)) {
		t.Fatal("the slowly read body differs from what the web tier sent")
	}
	t.Logf("%d bytes in %v with a write timeout of 300ms", size, time.Since(start))
}

// A streamed body that stops moving for upstream.timeout, or grows past
// upstream.max_response_body_size, is cut: the client's connection
// closes before the body is whole (its status is sent already), and the
// upstream connection is not reused.
func TestAStreamedBodyThatStallsOrOverflowsIsCut(t *testing.T) {
	for _, tc := range []struct {
		name, uri string
		size      int64
		cut       float64 // socialroute_upstream_streams_cut_total: the upstream's doing, not the proxy's limit
	}{
		{"stalls past upstream.timeout", "/big?size=2000000&first=1000000&stall_ms=1500", 2000000, 1},
		{"chunked, past max_response_body_size", "/big?size=3000000&chunked=1", 3000000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, conns := streamBackend(t, nil)
			addr, srv := serveUserOn(t, "5", up, func(c *configs.Config) {
				c.Upstream.Timeout = hangTimeout
				c.Upstream.MaxResponseBodySize = 2500000
			})
			c, br := dialProxy(t, addr)
			resp := getStream(t, c, br, tc.uri)
			n, err := io.Copy(io.Discard, resp.BodyStream())
			if err == nil || n >= tc.size {
				t.Fatalf("read %d bytes, %v: want the connection cut before the whole body", n, err)
			}
			c2, br2 := dialProxy(t, addr)
			resp = getStream(t, c2, br2, "/big?size=10")
			if n, _ := io.Copy(io.Discard, resp.BodyStream()); n != 10 {
				t.Fatalf("the next request got %d bytes", n)
			}
			if got := conns.Load(); got != 2 {
				t.Fatalf("%d upstream connections, want 2: the cut one is not reused", got)
			}
			total := 0.0
			for _, v := range gathered(t, srv, "socialroute_upstream_streams_cut_total") {
				total += v
			}
			if total != tc.cut {
				t.Fatalf("socialroute_upstream_streams_cut_total %v, want %v", total, tc.cut)
			}
		})
	}
}

// Of unknown length (chunked), an answer that has arrived whole with its
// headers (within max_buffered_response_bytes) is read whole and framed by
// its length, its connection freed at once; so is any chunked answer to
// an HTTP/1.0 client, which cannot read chunked.
func TestAnswersOfUnknownLengthStreamOnlyWhenLarge(t *testing.T) {
	up, conns := streamBackend(t, nil)
	addr, _ := serveUserOn(t, "5", up, nil)
	c, br := dialProxy(t, addr)
	for _, n := range []int{100, 3000} { // (each arrives with its headers: the web tier writes it at once)
		resp := getStream(t, c, br, fmt.Sprintf("/big?size=%d&chunked=1", n))
		body, err := io.ReadAll(resp.BodyStream())
		if err != nil || !bytes.Equal(body, sizedBody(n)) || resp.Header.ContentLength() != n {
			t.Fatalf("a %d-byte chunked answer: Content-Length %d, %d bytes, %v; want it whole, framed by its length", n, resp.Header.ContentLength(), len(body), err)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Fatalf("%d upstream connections for two small chunked answers, want 1", got)
	}
	// One that trickles streams as it comes: it does not wait, whole,
	// under the attempt's deadline (which would time it out).
	trickle := getStream(t, c, br, "/big?size=200&first=100&stall_ms=300&chunked=1")
	if trickle.Header.ContentLength() != -1 {
		t.Fatalf("a chunked answer whose rest comes later: Content-Length %d, want it streamed", trickle.Header.ContentLength())
	}
	if body, err := io.ReadAll(trickle.BodyStream()); err != nil || !bytes.Equal(body, sizedBody(200)) {
		t.Fatalf("the trickling answer: %d bytes, %v", len(body), err)
	}
	c10, br10 := dialProxy(t, addr)
	io.WriteString(c10, "GET /big?size=3000000&chunked=1 HTTP/1.0\r\nHost: x\r\nX-User-ID: 5\r\n\r\n")
	var resp fasthttp.Response
	if err := resp.Read(br10); err != nil {
		t.Fatal(err)
	}
	if te := resp.Header.Peek("Transfer-Encoding"); te != nil || resp.Header.ContentLength() != 3000000 || !bytes.Equal(resp.Body(), sizedBody(3000000)) {
		t.Fatalf("a large chunked answer to HTTP/1.0: Transfer-Encoding %q, Content-Length %d, %d bytes; want no chunks, the length, the body", te, resp.Header.ContentLength(), len(resp.Body()))
	}
}

// Each side's deadline runs only while that side is waited for: an
// upstream that pauses longer than listen.write_timeout (and within
// upstream.timeout) does not cost a fast client its body.
func TestAnUpstreamPauseDoesNotSpendTheClientsWriteTimeout(t *testing.T) {
	up, _ := streamBackend(t, nil)
	addr, _ := serveUserOn(t, "5", up, func(c *configs.Config) {
		c.Listen.WriteTimeout = 300 * time.Millisecond
		c.Upstream.Timeout = 5 * time.Second
	})
	c, br := dialProxy(t, addr)
	resp := getStream(t, c, br, "/big?size=2000000&first=1500000&stall_ms=800")
	if n, err := io.Copy(io.Discard, resp.BodyStream()); n != 2000000 || err != nil {
		t.Fatalf("after an 800 ms pause of the upstream (write timeout 300 ms): %d of 2000000 bytes, %v", n, err)
	}
}

// Streams hold at most half of an upstream's connections: past that, a
// large answer is read whole, so slow readers cannot take every
// connection from the short answers.
func TestStreamsHoldAtMostHalfTheConnections(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	up, _ := streamBackend(t, gate)
	addr, _ := serveUserOn(t, "5", up, func(c *configs.Config) { c.Upstream.MaxConnsPerHost = 2 })
	slow, sbr := dialProxy(t, addr)
	first := getStream(t, slow, sbr, fmt.Sprintf("/big?size=%d&first=%d&chunked=1", 4<<20, 2<<20)) // streams, and waits on the gate
	if first.Header.ContentLength() != -1 {
		t.Fatalf("the first large chunked answer: Content-Length %d, want it streamed (chunked)", first.Header.ContentLength())
	}
	c, br := dialProxy(t, addr)
	resp := getStream(t, c, br, "/big?size=3000000&chunked=1")
	body, err := io.ReadAll(resp.BodyStream())
	if err != nil || len(body) != 3000000 || resp.Header.ContentLength() != 3000000 {
		t.Fatalf("a second large answer with one stream (of 2 connections) open: Content-Length %d, %d bytes, %v; want it held whole", resp.Header.ContentLength(), len(body), err)
	}
}

// The stream cap holds for a burst: a stream's slot is taken before its
// answer is read, so of two large answers arriving together to an
// upstream with room for one stream, one streams and one is held.
func TestAStreamSlotIsTakenBeforeTheAnswerIsRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var arrived atomic.Int32
	srv := &fasthttp.Server{Logger: quiet{}, Handler: func(ctx *fasthttp.RequestCtx) {
		arrived.Add(1)
		for deadline := time.Now().Add(5 * time.Second); arrived.Load() < 2 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // both requests are upstream before either is answered
		}
		ctx.SetBodyStream(&gatedBody{first: 3000000, total: 3000000}, -1)
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { ln.Close() })
	addr, _ := serveUserOn(t, "5", ln.Addr().String(), func(c *configs.Config) { c.Upstream.MaxConnsPerHost = 2 })
	lengths := make(chan int, 2)
	for range 2 {
		go func() { // (no t.Fatal off the test's goroutine: a failure sends -100)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				lengths <- -100
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\nX-User-ID: 5\r\n\r\n")
			resp := &fasthttp.Response{StreamBody: true}
			if err := resp.Read(bufio.NewReader(c)); err != nil {
				lengths <- -100
				return
			}
			lengths <- resp.Header.ContentLength()
			io.Copy(io.Discard, resp.BodyStream())
		}()
	}
	a, b := <-lengths, <-lengths
	if min(a, b) != -1 || max(a, b) != 3000000 {
		t.Fatalf("two large answers together with room for one stream: Content-Lengths %d and %d, want one streamed (-1) and one held (3000000)", a, b)
	}
}
