package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// rawUpstream is a web tier that writes raw bytes: first for the first
// request it takes, cleanAnswer for the others; with late, first's last
// late bytes come 5 ms after the rest (a web tier that flushed its headers
// first). It counts the connections it took.
type rawUpstream struct {
	ln          net.Listener
	first       string
	late        int
	closeAfter  bool // close the connection after the first answer
	conns, reqs atomic.Int32
}

const cleanAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean"

func (u *rawUpstream) serve() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.conns.Add(1)
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				var req fasthttp.Request
				if err := req.Read(br); err != nil {
					return
				}
				answer, late, first := cleanAnswer, "", u.reqs.Add(1) == 1
				if first {
					answer, late = u.first[:len(u.first)-u.late], u.first[len(u.first)-u.late:]
				}
				if _, err := c.Write([]byte(answer)); err != nil {
					return
				}
				if late != "" {
					time.Sleep(5 * time.Millisecond)
					if _, err := c.Write([]byte(late)); err != nil {
						return
					}
				}
				if first && u.closeAfter {
					return // an idle close, as a keep-alive timeout makes
				}
			}
		}()
	}
}

// answer is an HTTP/1.1 response with body as its Content-Length says.
func answer(status, body string) string {
	return fmt.Sprintf("HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body)
}

// Bytes an upstream sends past the end of its response (a body longer than
// its Content-Length, a body on a 204 or 304 or after a HEAD) must never
// be read as the response to the next request on that connection, another
// user's: the connection is closed, not pooled (HAProxy closes a server
// connection that sends while idle). The second request gets its own
// answer, on a new connection.
func TestBytesPastAResponseAreNeverTheNextOnesResponse(t *testing.T) {
	poison := answer("200 OK", "POISON: another user's feed")
	user7 := homeOf(t, "7")
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(poison), poison)
	for _, tc := range []struct {
		name, method, first string
		late                int  // of first's bytes, how many come 5 ms after the rest
		closeAfter          bool // no desync: the upstream closed the idle connection
		held                int  // upstream.max_buffered_response_bytes, when set: larger bodies stream
	}{
		{"a body past Content-Length", "GET", answer("200 OK", "ok") + poison, 0, false, 0},
		{"a body on a 204", "GET", "HTTP/1.1 204 No Content\r\n\r\n" + poison, 0, false, 0},
		{"a body on a 304", "GET", "HTTP/1.1 304 Not Modified\r\n\r\n" + poison, 0, false, 0},
		{"a body after a HEAD", "HEAD", head, 0, false, 0},
		{"a body on a 204, sent after it", "GET", "HTTP/1.1 204 No Content\r\n\r\n" + poison, len(poison), false, 0},
		{"a body after a HEAD, sent after the headers", "HEAD", head, len(poison), false, 0},
		{"a 204, then an idle close", "GET", "HTTP/1.1 204 No Content\r\n\r\n", 0, true, 0},
		{"a streamed body past Content-Length", "GET", answer("200 OK", "ok") + poison, 0, false, 1},
		{"bytes after a chunked body's last chunk", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + poison, 0, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			up := &rawUpstream{ln: upLn, first: tc.first, late: tc.late, closeAfter: tc.closeAfter}
			go up.serve()
			t.Cleanup(func() { upLn.Close() })
			// One upstream for user 7's datacenter: the second request
			// meets the first's connection.
			addr, srv := serveUserOn(t, "7", upLn.Addr().String(), func(c *configs.Config) { c.Upstream.MaxBufferedResponseBytes = tc.held })
			client := &fasthttp.HostClient{Addr: addr, ReadTimeout: 5 * time.Second}
			t.Cleanup(client.CloseIdleConnections) // before the proxy's shutdown, which would wait for them
			do := func(method string) (int, string) {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI("http://proxy.test/feed")
				req.Header.SetMethod(method)
				req.Header.Set("X-User-ID", "7")
				if err := client.Do(req, resp); err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				return resp.StatusCode(), string(resp.Body())
			}
			do(tc.method)
			time.Sleep(20 * time.Millisecond) // every byte of the first answer has arrived
			code, body := do("GET")
			if strings.Contains(body, "POISON") || code != 200 || body != "clean" {
				t.Fatalf("the next request got %d %q, want 200 \"clean\" (its own answer)", code, body)
			}
			if n := up.conns.Load(); n != 2 {
				t.Fatalf("%d upstream connections, want 2 (the one with stray bytes closed)", n)
			}
			want := 1.0
			if tc.closeAfter {
				want = 0
			}
			if got := gathered(t, srv, "socialroute_upstream_desyncs_total"); got[user7] != want {
				t.Fatalf("socialroute_upstream_desyncs_total %v, want %v for %s", got, want, user7)
			}
		})
	}
}

// A Trailer header on a response without a chunked body announces
// trailers that cannot come: the headers it names are real headers, and
// they reach the client (only fields of a trailer section are dropped).
func TestATrailerAnnouncementKeepsTheHeadersItNames(t *testing.T) {
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &rawUpstream{ln: upLn, first: "HTTP/1.1 200 OK\r\nTrailer: Server-Timing\r\nServer-Timing: db;dur=53\r\nContent-Length: 2\r\n\r\nok"}
	go up.serve()
	t.Cleanup(func() { upLn.Close() })
	addr, _ := serveUserOn(t, "7", upLn.Addr().String(), nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 7\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatal(err)
	}
	if got := string(resp.Header.Peek("Server-Timing")); resp.StatusCode() != 200 || got != "db;dur=53" || string(resp.Body()) != "ok" {
		t.Fatalf("status %d, Server-Timing %q, body %q: want 200, the header the Trailer named, ok", resp.StatusCode(), got, resp.Body())
	}
}
