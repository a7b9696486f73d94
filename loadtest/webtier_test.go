package loadtest

import (
	"errors"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

// leakOptions ignore goroutines that fasthttp starts once per process, and
// client connection cleaners, which sleep out their idle period before
// noticing they have nothing left to clean. Tests add IgnoreCurrent: what
// an earlier test left winding down is that test's business.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
}

// noLeaks fails t if goroutines other than those leakOptions and extra
// allow are still running.
func noLeaks(t *testing.T, extra ...goleak.Option) {
	t.Helper()
	goleak.VerifyNone(t, slices.Concat(leakOptions, extra)...)
}

func get(t *testing.T, addr string) (servedBy string, err error) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + "/users/1/feed")
	// A fresh connection every time: the test is about the listener.
	req.SetConnectionClose()
	// A HostClient with a plain dialer: fasthttp's default client and
	// dialer start process-wide goroutines that would look like leaks.
	c := &fasthttp.HostClient{Addr: addr, Dial: func(addr string) (net.Conn, error) {
		return net.DialTimeout("tcp", addr, time.Second)
	}}
	defer c.CloseIdleConnections()
	if err := c.DoTimeout(req, resp, 2*time.Second); err != nil {
		return "", err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		t.Fatalf("GET %s: status %d", addr, resp.StatusCode())
	}
	return string(resp.Header.Peek(HeaderServedBy)), nil
}

func TestWebTierServesFailsAndRecovers(t *testing.T) {
	defer noLeaks(t, goleak.IgnoreCurrent())
	w, err := NewWebTier(map[string][]string{
		"a": {"127.0.0.1:0", "127.0.0.1:0"},
		"b": {"127.0.0.1:0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := w.Datacenters(); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("Datacenters() = %v", got)
	}
	a := w.Addrs("a")
	if len(a) != 2 || a[0] == a[1] {
		t.Fatalf("Addrs(a) = %v, want two distinct addresses", a)
	}
	for _, addr := range append(a, w.Addrs("b")...) {
		if _, port, _ := net.SplitHostPort(addr); port == "0" {
			t.Fatalf("address %s still has port 0", addr)
		}
	}
	for _, addr := range a {
		if by, err := get(t, addr); err != nil || by != "a" {
			t.Fatalf("GET %s: served by %q, %v; want a", addr, by, err)
		}
	}
	if by, err := get(t, w.Addrs("b")[0]); err != nil || by != "b" {
		t.Fatalf("GET b: served by %q, %v", by, err)
	}
	if s := w.Served(); s["a"] != 2 || s["b"] != 1 {
		t.Fatalf("Served() = %v, want a:2 b:1", s)
	}

	// A persistent connection opened before the failure must die with it.
	c, err := net.Dial("tcp", a[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := w.Fail("a"); err != nil {
		t.Fatal(err)
	}
	for _, addr := range a {
		_, err := get(t, addr)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("GET %s after Fail: %v, want connection refused", addr, err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection open before Fail is still readable")
	} else if errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
		t.Fatal("a connection open before Fail was left open")
	}
	if by, err := get(t, w.Addrs("b")[0]); err != nil || by != "b" {
		t.Fatalf("b after a failed: served by %q, %v", by, err)
	}
	if err := w.Fail("a"); err != nil {
		t.Fatalf("second Fail: %v", err)
	}

	if err := w.Recover("a"); err != nil {
		t.Fatal(err)
	}
	if got := w.Addrs("a"); got[0] != a[0] || got[1] != a[1] {
		t.Fatalf("Addrs after Recover = %v, want %v", got, a)
	}
	for _, addr := range a {
		if by, err := get(t, addr); err != nil || by != "a" {
			t.Fatalf("GET %s after Recover: served by %q, %v", addr, by, err)
		}
	}
	if s := w.Served(); s["a"] != 4 {
		t.Fatalf("Served()[a] = %d, want 4", s["a"])
	}
	if err := w.Recover("a"); err != nil {
		t.Fatalf("second Recover: %v", err)
	}
	if err := w.Fail("nowhere"); !errors.Is(err, ErrUnknownDatacenter) {
		t.Fatalf("Fail(nowhere) = %v", err)
	}
	w.Close()
	w.Close()
	if _, err := get(t, w.Addrs("b")[0]); err == nil {
		t.Fatal("b still serves after Close")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestWebTierStartErrorLeavesNothingRunning(t *testing.T) {
	defer noLeaks(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = NewWebTier(map[string][]string{
		"a": {"127.0.0.1:0"},
		"b": {"127.0.0.1:0", ln.Addr().String()}, // taken
	})
	if err == nil {
		t.Fatal("NewWebTier on a taken address succeeded")
	}
}
