package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// The harness runs over in-memory pipes; these tests run the proxy on real
// loopback sockets, where client and upstream connections are turnConns
// (held-back writes, lazy deadlines), through the framings that stress
// them: pipelined requests, bodies larger than a held write, and a
// response that closes the connection.
func TestOverRealSockets(t *testing.T) {
	cfg := testConfig(t, func(c *configs.Config) {
		for i := range c.Datacenters {
			c.Datacenters[i].Upstreams = []string{startSizedBackend(t)}
		}
		c.Listen.WriteTimeout = 300 * time.Millisecond
	})
	addr, _ := serveOnLoopback(t, cfg, Options{})
	dial := func(t *testing.T) (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	read := func(t *testing.T, br *bufio.Reader) *fasthttp.Response {
		t.Helper()
		resp := &fasthttp.Response{}
		if err := resp.Read(br); err != nil {
			t.Fatalf("reading a response: %v", err)
		}
		if resp.StatusCode() != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
		}
		return resp
	}
	get := func(user, size int) string {
		return fmt.Sprintf("GET /feed?size=%d HTTP/1.1\r\nHost: x\r\nX-User-ID: %d\r\n\r\n", size, user)
	}

	t.Run("pipelined", func(t *testing.T) {
		c, br := dial(t)
		sizes := []int{10, 70_000, 3}
		var batch string
		for i, n := range sizes {
			batch += get(i+1, n)
		}
		if _, err := io.WriteString(c, batch); err != nil {
			t.Fatal(err)
		}
		for i, n := range sizes {
			if body := read(t, br).Body(); !bytes.Equal(body, sizedBody(n)) {
				t.Fatalf("pipelined response %d: %d bytes, want %d of the pattern", i, len(body), n)
			}
		}
	})

	// The second request arrives while the first is upstream, after the
	// proxy read the first and before it writes the response: it must be
	// served then, not when the client sends more or the idle timeout
	// ends the connection.
	t.Run("pipelined while the first is upstream", func(t *testing.T) {
		c, br := dial(t)
		io.WriteString(c, "GET /feed?size=5&delay_ms=100 HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\n\r\n")
		time.Sleep(30 * time.Millisecond)
		io.WriteString(c, get(2, 7))
		start := time.Now()
		for i, n := range []int{5, 7} {
			if body := read(t, br).Body(); !bytes.Equal(body, sizedBody(n)) {
				t.Fatalf("response %d: %d bytes, want %d of the pattern", i, len(body), n)
			}
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("the two responses took %v: the second request waited for a wakeup that never came", el)
		}
	})

	t.Run("large bodies both ways", func(t *testing.T) {
		c, br := dial(t)
		for _, n := range []int{300_000, 5, 2 * maxHeldWrite} {
			body := sizedBody(n)
			fmt.Fprintf(c, "POST /upload?size=%d HTTP/1.1\r\nHost: x\r\nX-User-ID: 9\r\nContent-Length: %d\r\n\r\n", n, n)
			if _, err := c.Write(body); err != nil {
				t.Fatal(err)
			}
			resp := read(t, br)
			if got := string(resp.Header.Peek("X-Body-Crc")); got != strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10) {
				t.Fatalf("%d-byte request body arrived with crc %s", n, got)
			}
			if !bytes.Equal(resp.Body(), body) {
				t.Fatalf("%d-byte response body: got %d bytes", n, len(resp.Body()))
			}
		}
	})

	t.Run("connection close", func(t *testing.T) {
		c, br := dial(t)
		io.WriteString(c, "GET /feed?size=20000 HTTP/1.1\r\nHost: x\r\nX-User-ID: 4\r\nConnection: close\r\n\r\n")
		if body := read(t, br).Body(); len(body) != 20000 {
			t.Fatalf("got %d bytes before the close", len(body))
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after a Connection: close response: %v, want EOF", err)
		}
	})

	// A client that asks for a large response and never reads it: the
	// write blocks once the socket buffers are full, and the write timeout
	// ends the connection instead of letting it pin the response (and the
	// connection) forever. Other clients are served meanwhile.
	t.Run("client that never reads", func(t *testing.T) {
		c, br := dial(t)
		// A fixed receive buffer bounds what the kernel takes for the
		// client; not below an MSS (64 KiB on loopback), or the sender's
		// silly-window avoidance stalls the stream instead of the client.
		_ = c.(*net.TCPConn).SetReadBuffer(256 << 10)
		const size = 16 << 20
		io.WriteString(c, get(3, size))
		// Wait for the first byte, so that the pause below is a pause of
		// a response being written (the body streams: the write timeout
		// bounds each write).
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := br.ReadByte(); err != nil {
			t.Fatalf("no response began: %v", err)
		}
		other, obr := dial(t)
		io.WriteString(other, get(4, 10))
		if body := read(t, obr).Body(); len(body) != 10 {
			t.Fatalf("another client got %d bytes while one did not read", len(body))
		}
		time.Sleep(1500 * time.Millisecond) // well past the 300 ms write timeout
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, br)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the connection of a client that did not read was still open 10 s on (%d bytes read)", n)
		}
		if n >= size {
			t.Fatalf("read %d bytes: the whole response waited for a client that did not read", n)
		}
		t.Logf("the proxy gave up after %d of %d bytes (%v)", n, size, err)
	})

	t.Run("many keep-alive turns", func(t *testing.T) {
		c, br := dial(t)
		for i := range 300 {
			n := (i * 7919) % 9000
			io.WriteString(c, get(i, n))
			if body := read(t, br).Body(); len(body) != n {
				t.Fatalf("turn %d: %d bytes, want %d", i, len(body), n)
			}
		}
	})
}

// sizedBody is n bytes of a pattern that shows misordered or lost bytes.
func sizedBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%23)
	}
	return b
}

// startSizedBackend serves on loopback: a response body of ?size= bytes of
// sizedBody, and the request body's CRC in X-Body-Crc.
func startSizedBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Logger: quiet{}, MaxRequestBodySize: 1 << 20, Handler: func(ctx *fasthttp.RequestCtx) {
		n, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("size")))
		if ms, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("delay_ms"))); ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		ctx.Response.Header.Set("X-Body-Crc", strconv.FormatUint(uint64(crc32.ChecksumIEEE(ctx.Request.Body())), 10))
		ctx.SetBody(sizedBody(n))
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// An upstream that closes keep-alive connections after a short idle time
// leaves dead connections in the proxy's pool. A request that draws one
// costs the client nothing and counts as no failure, so it neither moves
// to another datacenter nor tells a breaker the datacenter is unwell: a
// connection that idled past idlePeekAfter is looked at and dropped before
// use (a POST cannot be sent twice), and an idempotent request that meets
// one within it is sent again on a fresh connection.
func TestRequestsOutliveAnUpstreamsIdleClose(t *testing.T) {
	for _, tc := range []struct {
		method string
		idle   time.Duration
	}{
		{"GET", idlePeekAfter / 2},  // not looked at: the retry saves it
		{"POST", 2 * idlePeekAfter}, // looked at: never sent into the dead connection
		{"GET", 2 * idlePeekAfter},
	} {
		t.Run(fmt.Sprintf("%s after %v idle", tc.method, tc.idle), func(t *testing.T) {
			closed := make(closeWatch, 16)
			cfg := testConfig(t, func(c *configs.Config) {
				for i := range c.Datacenters {
					ln, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					srv := &fasthttp.Server{Logger: quiet{}, IdleTimeout: 20 * time.Millisecond, Handler: func(ctx *fasthttp.RequestCtx) {}, ConnState: closed.onState}
					go srv.Serve(ln) //nolint:errcheck // ends with Close
					t.Cleanup(func() { ln.Close() })
					c.Datacenters[i].Upstreams = []string{ln.Addr().String()}
				}
				c.Upstream.MaxIdleConnDuration = time.Minute
			})
			srv, err := New(cfg, nil, Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			c, s := net.Pipe()
			go srv.http.ServeConn(s) //nolint:errcheck // ends when the pipe closes
			defer c.Close()
			br := bufio.NewReader(c)
			for i := range 4 {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "%s /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 7\r\nContent-Length: 2\r\n\r\nhi", tc.method)
				var resp fasthttp.Response
				if err := resp.Read(br); err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode() != 200 {
					t.Fatalf("request %d after the upstream closed its idle connection: %d %s", i, resp.StatusCode(), resp.Body())
				}
				closed.wait(t, tc.idle) // the upstream closes its side after 20 ms
			}
			if st := srv.Stats(); st.Retries.Load() != 0 || st.Failed.Load() != 0 {
				t.Fatalf("%d retries on another datacenter and %d failures for connections closed while idle", st.Retries.Load(), st.Failed.Load())
			}
		})
	}
}

// closeWatch hears a fake upstream close connections (its ConnState is
// onState), so that a test waits for the upstream's idle close itself
// rather than for a sleep a loaded machine may outrun.
type closeWatch chan struct{}

func (w closeWatch) onState(_ net.Conn, st fasthttp.ConnState) {
	if st == fasthttp.StateClosed {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// wait returns once the upstream has closed a connection and idle has
// passed since the call: called right after a response, the pooled
// connection is then surely dead, and idle long enough for the case the
// test means.
func (w closeWatch) wait(t *testing.T, idle time.Duration) {
	t.Helper()
	idleFrom := time.Now()
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream did not close its idle connection within 5 s")
	}
	time.Sleep(time.Until(idleFrom.Add(idle)))
}

// homeOf is the datacenter user's requests go to first under testConfig.
func homeOf(t *testing.T, user string) string {
	t.Helper()
	var d Decision
	h := newHarness(t, nil)
	h.srv.Router().route([]byte(user), hashKey([]byte(user)), nil, &d, false, false)
	return h.cfg.Datacenters[d.Plan[0]].Name
}

// serveUserOn runs a proxy on loopback whose datacenter for user has one
// upstream, addr, on a real socket (the pool looks into it); the others'
// addresses take nothing. mutate, if set, changes the config first.
func serveUserOn(t *testing.T, user, addr string, mutate func(*configs.Config)) (string, *Server) {
	t.Helper()
	home := homeOf(t, user)
	cfg := testConfig(t, func(c *configs.Config) {
		for i := range c.Datacenters {
			c.Datacenters[i].Upstreams = []string{fmt.Sprintf("127.0.0.1:%d", 9+i)}
			if c.Datacenters[i].Name == home {
				c.Datacenters[i].Upstreams = []string{addr}
			}
		}
		if mutate != nil {
			mutate(c)
		}
	})
	return serveOnLoopback(t, cfg, Options{})
}

// serveOnLoopback runs a proxy for cfg on a real 127.0.0.1 socket until the
// test ends, and returns its address and the proxy.
func serveOnLoopback(t *testing.T, cfg *configs.Config, opts Options) (string, *Server) {
	t.Helper()
	opts.Logger = slog.New(slog.DiscardHandler)
	srv, err := New(cfg, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ln.Addr().String(), srv
}
