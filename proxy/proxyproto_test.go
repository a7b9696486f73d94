package proxy

import (
	"bufio"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// The harness's balancer dials from 192.0.2.7; only 192.0.2.0/24 is trusted.
var (
	balancer = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
	stranger = &net.TCPAddr{IP: net.IPv4(198, 51, 100, 5), Port: 40000}
	client   = &net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 55555}
	frontend = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443}
)

func withProxyProtocol(c *configs.Config) {
	c.Listen.ProxyProtocol = &configs.ProxyProtocol{Trusted: []string{"192.0.2.0/24", "2001:db8::1"}}
}

// proxyHeader is a PROXY header of version v for client -> frontend.
func proxyHeader(t testing.TB, v byte) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(v, client, frontend)
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sendVia opens a connection from addr, writes prefix and a GET, and
// returns the response, or the read error if the proxy refused.
func (h *harness) sendVia(addr *net.TCPAddr, prefix []byte, user string) (*fasthttp.Response, error) {
	h.t.Helper()
	c, err := h.ln.DialWithLocalAddr(addr)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append(prefix, "GET /feed HTTP/1.1\r\nHost: proxy.test\r\nX-User-ID: "+user+"\r\n\r\n"...)); err != nil {
		return nil, err
	}
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		return nil, err
	}
	return &resp, nil
}

func TestProxyProtocolFromTrustedBalancer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withProxyProtocol)
	for _, v := range []byte{1, 2} {
		resp, err := h.sendVia(balancer, proxyHeader(t, v), "42")
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if resp.StatusCode() != 200 {
			t.Fatalf("v%d: status %d: %s", v, resp.StatusCode(), resp.Body())
		}
		req := h.lastRequest(datacenterOf(resp))
		if got := string(req.Header.Peek("X-Forwarded-For")); got != "203.0.113.9" {
			t.Errorf("v%d: upstream saw X-Forwarded-For %q, want the real client 203.0.113.9", v, got)
		}
	}
}

// The bug this guards against: anyone who can reach the listener writes a
// PROXY header and picks the address the web tier and the per-IP limits see.
func TestProxyProtocolFromUntrustedAddressRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withProxyProtocol)
	resp, err := h.sendVia(stranger, proxyHeader(t, 1), "42")
	if err == nil && resp.StatusCode() == 200 {
		t.Fatalf("PROXY header from %s was honoured: status 200", stranger.IP)
	}
	if n := h.hits(""); n != 0 {
		t.Errorf("upstreams received %d requests from a forged PROXY header", n)
	}
	// Without a header the same address is an ordinary client.
	resp, err = h.sendVia(stranger, nil, "42")
	if err != nil || resp.StatusCode() != 200 {
		t.Fatalf("plain request from an untrusted address: %v %v", resp, err)
	}
	if got := string(h.lastRequest(datacenterOf(resp)).Header.Peek("X-Forwarded-For")); got != "198.51.100.5" {
		t.Errorf("X-Forwarded-For = %q, want 198.51.100.5", got)
	}
}

// A balancer that should send the header and does not is refused: the
// spec forbids guessing, and serving it would give every client the
// balancer's address.
func TestProxyProtocolRequiredFromTrustedBalancer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withProxyProtocol)
	if resp, err := h.sendVia(balancer, nil, "42"); err == nil && resp.StatusCode() == 200 {
		t.Fatal("a trusted balancer without a PROXY header was served")
	}
	if n := h.hits(""); n != 0 {
		t.Errorf("upstreams received %d requests", n)
	}
}

// Per-IP limits count the real client, not the balancer.
func TestProxyProtocolMaxConnsPerIPSeesClient(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *configs.Config) {
		withProxyProtocol(c)
		c.Listen.MaxConnsPerIP = 1
	})
	// Two connections from the one balancer, for two different clients:
	// both fit under a limit of one per client.
	first, err := h.ln.DialWithLocalAddr(balancer)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.Write(proxyHeader(t, 2))
	first.Write([]byte("GET /feed HTTP/1.1\r\nHost: proxy.test\r\nX-User-ID: 1\r\n\r\n"))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(first)); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("first client: %v %d", err, resp.StatusCode())
	}
	other := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 10), Port: 1}, frontend)
	b, _ := other.Format()
	if resp, err := h.sendVia(balancer, b, "2"); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("second client through the same balancer: %v %v", resp, err)
	}
	// A second connection of the first client, still connected, is over
	// its limit.
	if resp, err := h.sendVia(balancer, proxyHeader(t, 2), "3"); err == nil && resp.StatusCode() == 200 {
		t.Errorf("the first client's second connection was served past max_conns_per_ip 1")
	}
}

func TestProxyProtocolThenTLS(t *testing.T) {
	t.Parallel()
	th := newTLSHarness(t, withProxyProtocol)
	raw, err := th.ln.DialWithLocalAddr(balancer)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Write(proxyHeader(t, 2)); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{ServerName: "a.example", RootCAs: th.ca.pool})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	resp := roundTrip(t, c, "9")
	if resp.StatusCode() != 200 {
		t.Fatalf("status %d", resp.StatusCode())
	}
	req := th.lastRequest(datacenterOf(resp))
	if got := string(req.Header.Peek("X-Forwarded-For")); got != "203.0.113.9" {
		t.Errorf("X-Forwarded-For = %q, want 203.0.113.9", got)
	}
	if got := string(req.Header.Peek("X-Forwarded-Proto")); got != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", got)
	}
}

// With max_conns_per_ip, fasthttp asks each new connection's address in its
// accept loop. An untrusted connection has no PROXY header to wait for, so
// one that opens and sends nothing holds up nobody; before, its address
// waited for a header for header_timeout, and so did every accept.
func TestProxyProtocolSilentStrangerHoldsUpNoAccept(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *configs.Config) {
		withProxyProtocol(c)
		c.Listen.ProxyProtocol.HeaderTimeout = 3 * time.Second
		c.Listen.MaxConnsPerIP = 5
	})
	silent, err := h.ln.DialWithLocalAddr(stranger)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	start := time.Now()
	resp, err := h.sendVia(&net.TCPAddr{IP: net.IPv4(198, 51, 100, 6), Port: 1}, nil, "42")
	if err != nil || resp.StatusCode() != 200 {
		t.Fatalf("a client after a silent stranger: %v %v", resp, err)
	}
	// A behaviour bound, far from both outcomes: about 0 s, against the
	// 3 s header timeout.
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("a client after a silent stranger waited %v for its answer (header_timeout 3s)", took.Round(time.Millisecond))
	}
	// A stranger's PROXY header of either version is still refused.
	for _, v := range []byte{1, 2} {
		if resp, err := h.sendVia(stranger, proxyHeader(t, v), "42"); err == nil && resp.StatusCode() == 200 {
			t.Errorf("a v%d PROXY header from %s was honoured", v, stranger.IP)
		}
	}
	if n := h.hits(""); n != 1 {
		t.Errorf("upstreams received %d requests, want only the plain one", n)
	}
}
