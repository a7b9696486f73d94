package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// Request smuggling and malformed requests: each gets a 4xx (or 508 for a
// loop) and not one byte reaches an upstream, as the wire log of every
// upstream connection shows.
func TestSmugglingAndMalformedRequestsNeverReachTheWire(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) { c.Listen.HeadersWithUnderscores = "reject" })
	many := strings.Repeat("X-Many: 1\r\n", configs.DefaultMaxHeaders+1)
	cases := []struct{ name, request, want string }{
		{"CL.TE", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", "400 socialroute: both Transfer-Encoding and Content-Length"},
		{"TE.CL", "POST /feed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nX-User-ID: 1\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", "400 socialroute: both Transfer-Encoding and Content-Length"},
		{"duplicate Content-Length", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", "400"},
		{"signed Content-Length", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nContent-Length: +1\r\n\r\nx", "400"},
		{"non-chunked Transfer-Encoding", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nTransfer-Encoding: gzip\r\n\r\n", "400"},
		{"chunked, then something", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "400"},
		{"repeated Transfer-Encoding", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"a chunk larger than the body limit", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nTransfer-Encoding: chunked\r\n\r\ncccccccc0\r\n\r\n", "413 socialroute: request body too large"},
		{"obs-fold", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nX-Fold: a\r\n b\r\n\r\n", "400 socialroute: folded header line"},
		{"NUL in a value", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nX-Nul: a\x00b\r\n\r\n", "400"},
		{"control byte in a value", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nX-Ctl: a\x1bb\r\n\r\n", "400"},
		{"space in a header name", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nBad Header: a\r\n\r\n", "400 socialroute: header name with a character"},
		{"space before the colon", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nX-Sp : a\r\n\r\n", "400"},
		{"underscore in a header name (reject)", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n", "400 socialroute: header name with an underscore"},
		{"too many header fields", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\n" + many + "\r\n", "431 socialroute: too many header fields"},
		{"oversized request line", "GET /" + strings.Repeat("a", configs.DefaultMaxHeaderBytes) + " HTTP/1.1\r\nHost: x\r\n\r\n", "431"},
		{"oversized headers", "GET /feed HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", configs.DefaultMaxHeaderBytes) + "\r\n\r\n", "431"},
		{"a routing loop", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nVia: 1.1 socialroute, 1.1 cdn\r\nVia: 1.1 socialroute\r\n\r\n", "508 socialroute: request passed this proxy fleet 2 times"},
		// fasthttp takes "identity" for no body and reads what follows as
		// the next request (TE.0).
		{"Transfer-Encoding: identity", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nTransfer-Encoding: identity\r\n\r\nabc", "400 socialroute: Transfer-Encoding other than chunked"},
		// fasthttp would make them an Authorization header of its own.
		{"userinfo in Host", "GET /feed HTTP/1.1\r\nHost: a@b:1\r\nX-User-ID: 1\r\n\r\n", "400 socialroute: userinfo in Host"},
		{"userinfo in the URI", "GET http://u:p@x/feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\n\r\n", "400 socialroute: userinfo in the request URI"},
		{"CONNECT", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nX-User-ID: 1\r\n\r\n", "405 socialroute: method CONNECT not forwarded"},
		{"TRACE", "TRACE /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\n\r\n", "405 socialroute: method TRACE not forwarded"},
		// Routed by alice, read by a web tier that takes the last (or
		// joins them) as bob's: past bob's fence.
		{"the key's header twice", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: alice\r\nX-User-Id: bob\r\nContent-Length: 0\r\n\r\n", "400 socialroute: the routing key's header X-User-ID given more than once"},
		{"the key's header twice, the first empty", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: \r\nX-User-ID: bob\r\nContent-Length: 0\r\n\r\n", "400 socialroute: the routing key's header X-User-ID given more than once"},
		{"the key's cookie twice", "GET /feed HTTP/1.1\r\nHost: x\r\nCookie: uid=alice; uid=bob\r\n\r\n", "400 socialroute: " + repeatedKey},
		{"the key's cookie twice, the first empty", "GET /feed HTTP/1.1\r\nHost: x\r\nCookie: uid=; uid=bob\r\n\r\n", "400 socialroute: " + repeatedKey},
		{"the key's query parameter twice", "GET /search?user_id=alice&user_id=bob HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + repeatedKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := h.raw(c.request); !strings.HasPrefix(got, c.want) {
				t.Fatalf("answer %q, want it to start with %q", got, c.want)
			}
		})
	}
	if wire, dialed := h.sent(); wire != "" || len(dialed) != 0 {
		t.Fatalf("malformed requests reached an upstream: dialed %v, sent %q", dialed, wire)
	}
	// Two cookies of one name and value (set for two paths) are no
	// question of whose request it is.
	if got := h.raw("GET /feed HTTP/1.1\r\nHost: x\r\nCookie: uid=alice; uid=alice\r\n\r\n"); !strings.HasPrefix(got, "200") {
		t.Fatalf("the same cookie twice: %q, want 200", got)
	}
	if r := h.do("TRACE", "/feed", func(r *fasthttp.Request) { r.Header.Set("X-User-ID", "1") }); r.StatusCode() != 405 || len(r.Header.Peek("Allow")) == 0 {
		t.Fatalf("TRACE: %d with Allow %q; a 405 must say what is allowed", r.StatusCode(), r.Header.Peek("Allow"))
	}
}

// Trailer fields, after a chunked body, never reach the other side: a
// request's were screened by no header rule (an X-Socialroute-* header, a
// forged Forwarded, a name with a space: fasthttp moved them among the
// headers once the Trailer header was stripped), and a response's would
// pass the same way to the client.
func TestTrailersNeverReachTheOtherSide(t *testing.T) {
	h := newHarness(t, nil)
	trailers := "X-Socialroute-Dc: forged\r\nX_Real_IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nUpgrade: websocket\r\nBad Header: y\r\n"
	for _, announce := range []string{"Trailer: X-Socialroute-Dc, Forwarded\r\n", ""} {
		got := h.raw("POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nTransfer-Encoding: chunked\r\n" + announce + "\r\n3\r\nabc\r\n0\r\n" + trailers + "\r\n")
		if !strings.HasPrefix(got, "200") {
			t.Fatalf("a chunked request with trailers (announced: %q): %q", announce, got)
		}
	}
	wire, _ := h.sent()
	for _, bad := range []string{"forged", "6.6.6.6", "websocket", "Bad Header", "Trailer"} {
		if strings.Contains(wire, bad) {
			t.Fatalf("a request's trailer reached the web tier (%q):\n%s", bad, wire)
		}
	}
	if strings.Count(wire, "abc") != 2 {
		t.Fatalf("the bodies did not reach the web tier:\n%s", wire)
	}

	for _, b := range h.backends {
		b.resp = func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.SetTrailer("X-Socialroute-Bucket, X-Leak")
			ctx.Response.Header.Set("X-Socialroute-Bucket", "forged")
			ctx.Response.Header.Set("X-Leak", "web tier secret")
			ctx.SetBodyStream(strings.NewReader("streamed"), -1) // chunked: the trailers go after it
		}
	}
	resp := h.getUser(1)
	if resp.StatusCode() != 200 || string(resp.Body()) != "streamed" {
		t.Fatalf("a response with trailers: %d %q", resp.StatusCode(), resp.Body())
	}
	if v := resp.Header.Peek("X-Leak"); v != nil || string(resp.Header.Peek(headerBucket)) == "forged" {
		t.Fatalf("a response's trailer reached the client: X-Leak %q, %s %q", v, headerBucket, resp.Header.Peek(headerBucket))
	}
}

// An HTTP/1.0 request may come without Host: it is forwarded with the
// upstream's address as Host, not failed before its first byte (which
// counted against the upstream's breaker, so a few such requests opened
// every breaker and took the continent down).
func TestHTTP10WithoutHostIsForwarded(t *testing.T) {
	h := newHarness(t, nil)
	for i := range 3 * h.cfg.Upstream.Breaker.ConsecutiveFailures {
		if got := h.raw(fmt.Sprintf("GET /feed HTTP/1.0\r\nX-User-ID: %d\r\n\r\n", i)); !strings.HasPrefix(got, "200") {
			t.Fatalf("HTTP/1.0 without Host, request %d: %q", i, got)
		}
	}
	h.wantBreakersClosed("after HTTP/1.0 requests without Host")
	wire, dialed := h.sent()
	if !strings.Contains(wire, "\r\nHost: "+dialed[0]+"\r\n") {
		t.Fatalf("no Host of the upstream's address (%s) on the wire:\n%.300s", dialed[0], wire)
	}
}

// A request's Expect: 100-continue is the proxy's to answer (fasthttp did,
// before reading the body); the web tier gets the whole body at once and
// no Expect to answer.
func TestExpectIsNotForwarded(t *testing.T) {
	h := newHarness(t, nil)
	c, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("before the body: %q, %v; want 100 Continue", line, err)
	}
	br.ReadString('\n') // the 100's blank line
	io.WriteString(c, "abc")
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("after the body: %d, %v", resp.StatusCode(), err)
	}
	if wire, _ := h.sent(); strings.Contains(strings.ToLower(wire), "expect") || !strings.HasSuffix(wire, "abc") {
		t.Fatalf("on the wire:\n%s", wire)
	}
	// One the proxy would refuse is refused before its body: 417, and
	// the client sends none.
	got := h.raw("POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nContent-Length: 3\r\nExpect: 100-continue\r\nX-Fold: a\r\n b\r\n\r\n")
	if !strings.HasPrefix(got, "417") {
		t.Fatalf("a malformed request that expects 100-continue: %q, want 417 before its body", got)
	}
}

// A request with bare LF line ends is never answered as a request nor
// forwarded: fasthttp keeps waiting for a real end of headers, and the
// header read timeout closes the connection.
func TestBareLFIsNeverForwarded(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) { c.Listen.ReadTimeout = 200 * time.Millisecond })
	c, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /feed HTTP/1.1\nHost: x\nX-User-ID: 1\n\n")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("read %q, %v: want the connection closed without a 200", b, err)
	}
	if wire, _ := h.sent(); wire != "" {
		t.Fatalf("a bare-LF request reached an upstream: %q", wire)
	}
}

// Header hygiene on the wire: underscore names dropped by default, Via
// added both ways, the client's internal headers and X-Forwarded-For
// replaced, and the request line in origin form.
func TestForwardedRequestOnTheWire(t *testing.T) {
	h := newHarness(t, nil)
	got := h.raw("GET http://evil.example:666/feed?x=1 HTTP/1.1\r\nHost: evil.example:666\r\nX-User-ID: 1\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Socialroute-Bucket: 9\r\nVia: 1.0 cdn\r\n\r\n")
	if !strings.HasPrefix(got, "200") {
		t.Fatalf("answer %q", got)
	}
	wire, dialed := h.sent()
	req := strings.SplitN(wire, "\r\n", 2)[0]
	if req != "GET /feed?x=1 HTTP/1.1" {
		t.Fatalf("request line on the wire %q, want origin form", req)
	}
	lower := strings.ToLower(wire)
	for _, bad := range []string{"x_forwarded_for", "6.6.6.6", "x-socialroute-bucket: 9\r\n"} {
		if strings.Contains(lower, bad) {
			t.Fatalf("the wire carries %q:\n%s", bad, wire)
		}
	}
	if !strings.Contains(wire, "Via: 1.0 cdn\r\n") || !strings.Contains(wire, "Via: 1.1 socialroute\r\n") {
		t.Fatalf("Via not appended:\n%s", wire)
	}
	for _, a := range dialed {
		if _, ok := h.backends[a]; !ok {
			t.Fatalf("the proxy dialed %s, which is no configured upstream", a)
		}
	}
	// Neither the Host header nor an absolute URI, https included, can
	// make the proxy connect anywhere else.
	// (A path starting "//" has an empty segment, which the path rules
	// refuse: the web tier might not merge the slashes as fasthttp does.)
	for r, want := range map[string]string{
		"GET https://evil.example/feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 2\r\n\r\n":        "200",
		"GET /feed HTTP/1.1\r\nHost: 169.254.169.254\r\nX-User-ID: 3\r\n\r\n":              "200",
		"GET //169.254.169.254/latest HTTP/1.1\r\nHost: x\r\nX-User-ID: 4\r\n\r\n":         "400 socialroute: " + ambiguousPath,
		"GET http://x//169.254.169.254/latest HTTP/1.1\r\nHost: x\r\nX-User-ID: 4\r\n\r\n": "400 socialroute: " + ambiguousPath,
	} {
		if got := h.raw(r); !strings.HasPrefix(got, want) {
			t.Fatalf("%q: answer %q, want %q", r, got, want)
		}
	}
	_, dialed = h.sent()
	for _, a := range dialed {
		if _, ok := h.backends[a]; !ok {
			t.Fatalf("the proxy dialed %s, which is no configured upstream", a)
		}
	}
	resp := h.getUser(5)
	if v := string(resp.Header.Peek("Via")); !strings.Contains(v, "1.1 socialroute") {
		t.Fatalf("response Via %q", v)
	}
}

// A slowloris from one address (many connections trickling headers) is
// capped by listen.max_conns_per_ip and cut off by the header timeout;
// other clients are served meanwhile.
func TestSlowlorisDoesNotStopOtherClients(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) {
		c.Listen.MaxConnsPerIP = 20
		c.Listen.ReadTimeout = 500 * time.Millisecond
	})
	attacker := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 66), Port: 1}
	var conns []net.Conn
	for range 200 {
		c, err := h.ln.DialWithLocalAddr(attacker)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /feed HTTP/1.1\r\nHost: x\r\n") // and never the rest
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := range 20 {
		if r := h.getUser(i); r.StatusCode() != 200 {
			t.Fatalf("a normal client got %d during the slowloris", r.StatusCode())
		}
	}
	// Generous: this asserts "not stalled behind the attacker", not a speed.
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("20 normal requests took %v during the slowloris", took)
	}
	// Every attacking connection ends: refused past the cap with a 429, or
	// cut off by the header timeout. The 429 tells the two apart, whatever
	// the machine's speed.
	var wg sync.WaitGroup
	var ended, refused atomic.Int32
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return // still open after 5 s: counted below
			}
			ended.Add(1)
			if bytes.HasPrefix(got, []byte("HTTP/1.1 429 ")) {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := int(ended.Load()); n != len(conns) {
		t.Fatalf("%d of %d slowloris connections were still open after 5 s", len(conns)-n, len(conns))
	}
	// Past the cap of 20, every connection is refused; a few more may be
	// let in if the first ones are cut off before the last is accepted.
	if n := int(refused.Load()); n < len(conns)-20-10 || n > len(conns)-20 {
		t.Fatalf("%d of the %d connections past the per-IP cap of 20 were refused with a 429", n, len(conns)-20)
	}
	if wire, _ := h.sent(); strings.Contains(wire, "203.0.113.66") {
		t.Fatal("a slowloris request reached an upstream")
	}
}

// A client that sends its headers and then trickles or stalls its body is
// cut off by the body timeout and nothing reaches an upstream; a request
// without a body (no body timeout armed for it) is served on the same kind
// of connection, and the connection stays usable past that timeout.
func TestStalledBodyIsCutOff(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) {
		c.Listen.ReadTimeout = 2 * time.Second
		c.Listen.BodyTimeout = 200 * time.Millisecond
		c.Listen.IdleTimeout = 5 * time.Second
	})
	c, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nContent-Length: 100\r\n\r\nhalf a bo")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a connection with a stalled body was still open after 5 s")
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 408") {
		t.Fatalf("a stalled body was answered %q, want 408", firstLine(b))
	}
	t.Logf("stalled body: connection ended after %v with %q", time.Since(start).Round(time.Millisecond), firstLine(b))
	if wire, _ := h.sent(); strings.Contains(wire, "half a bo") {
		t.Fatalf("a partial body reached an upstream: %q", wire)
	}

	// Bodyless requests on one keep-alive connection, with a pause longer
	// than the body timeout between them.
	k, err := h.ln.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	br := bufio.NewReader(k)
	for i := range 2 {
		io.WriteString(k, "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 7\r\n\r\n")
		var resp fasthttp.Response
		k.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := resp.Read(br); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("keep-alive request %d: %v, status %d", i, err, resp.StatusCode())
		}
		time.Sleep(400 * time.Millisecond)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}
