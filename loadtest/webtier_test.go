package loadtest

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socialroute/socialroute/hashing"
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
	// The proxy's wake-order dispatchers start with its first connection
	// and live as long as the process, as the runtime's poller does.
	goleak.IgnoreAnyFunction("github.com/socialroute/socialroute/proxy.(*readyOrder).run"),
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

// smallGraph: 1 follows 2 and 3; 4 follows 1.
func smallGraph(t *testing.T) *hashing.Graph {
	t.Helper()
	b := hashing.NewGraphBuilder(true)
	for _, e := range [][2]uint64{{1, 2}, {1, 3}, {4, 1}} {
		if err := b.AddEdge(e[0], e[1]); err != nil {
			t.Fatal(err)
		}
	}
	g, _, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// fetch GETs path from addr and returns the answer's status, its
// X-Served-By and its cache counts.
func fetch(t *testing.T, addr, path string) (status int, servedBy string, hits, misses int) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + path)
	c := &fasthttp.HostClient{Addr: addr, Dial: func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }}
	defer c.CloseIdleConnections()
	if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	h, _ := strconv.Atoi(string(resp.Header.Peek(HeaderCacheHits)))
	m, _ := strconv.Atoi(string(resp.Header.Peek(HeaderCacheMisses)))
	return resp.StatusCode(), string(resp.Header.Peek(HeaderServedBy)), h, m
}

// A feed request reads the user and every account it follows through the
// datacenter's cache; an account request reads the account. Each answer
// says how many reads hit, and the datacenter counts them.
func TestWebTierCachesUsersData(t *testing.T) {
	defer noLeaks(t, goleak.IgnoreCurrent())
	w, err := StartWebTier(WebTierOptions{
		Upstreams: map[string][]string{"a": {"127.0.0.1:0", "127.0.0.1:0"}, "b": {"127.0.0.1:0"}},
		Graph:     smallGraph(t),
		CacheSize: map[string]int{"a": 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a := w.Addrs("a")
	for _, c := range []struct {
		addr, path   string
		hits, misses int
	}{
		{a[0], "/users/1/feed", 0, 3},            // 1, 2, 3: all new
		{a[1], "/users/1/feed", 3, 0},            // the other server of a shares the cache
		{a[0], "/accounts/2/profile", 1, 0},      // 2
		{a[0], "/users/4/feed", 0, 2},            // 4 is new and evicts 1, the least recent; 1 then evicts 3
		{a[0], "/accounts/3", 0, 1},              // 3 was evicted
		{a[0], "/users/alice/feed", 0, 1},        // a user by name: its own data only
		{a[0], "/", 0, 0},                        // no user: nothing read
		{w.Addrs("b")[0], "/users/1/feed", 0, 0}, // b has no cache: no counts
	} {
		status, by, hits, misses := fetch(t, c.addr, c.path)
		if status != 200 || hits != c.hits || misses != c.misses {
			t.Errorf("GET %s: status %d, %d hits %d misses; want 200, %d hits %d misses", c.path, status, hits, misses, c.hits, c.misses)
		}
		if want := map[bool]string{true: "a", false: "b"}[c.addr != w.Addrs("b")[0]]; by != want {
			t.Errorf("GET %s served by %q, want %q", c.path, by, want)
		}
	}
	st := w.Stats()
	if st[0].Name != "a" || st[0].Served != 7 || st[0].Hits != 4 || st[0].Misses != 7 || st[0].CacheSize != 3 || st[0].CacheUsers != 3 {
		t.Errorf("Stats()[a] = %+v", st[0])
	}
	if st[1].CacheSize != 0 || st[1].Served != 1 {
		t.Errorf("Stats()[b] = %+v", st[1])
	}
	w.ResetStats()
	w.ResetCaches()
	if st := w.Stats(); st[0].Served != 0 || st[0].Hits != 0 || st[0].CacheUsers != 0 {
		t.Errorf("after resets: %+v", st[0])
	}
}

// Over its control endpoint, a datacenter can be made to answer 503, to
// answer slowly, to crash, and to recover.
func TestWebTierControlEndpoint(t *testing.T) {
	defer noLeaks(t, goleak.IgnoreCurrent())
	w, err := StartWebTier(WebTierOptions{Upstreams: map[string][]string{"a": {"127.0.0.1:0"}, "b": {"127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctl, err := w.ServeControl("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	call := func(method, path string, wantCode int) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+ctl+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantCode {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, body, wantCode)
		}
		return body
	}
	a := w.Addrs("a")[0]

	var s DCStats
	if err := json.Unmarshal(call("POST", "/datacenters/a/fail?mode=error", 200), &s); err != nil || s.State != "erroring" {
		t.Fatalf("fail in error mode: %+v %v", s, err)
	}
	if status, by, _, _ := fetch(t, a, "/users/1/feed"); status != 503 || by != "a" {
		t.Fatalf("erroring datacenter answered %d (by %q), want 503", status, by)
	}
	call("POST", "/datacenters/a/recover", 200)
	// A delay long enough that a slow machine's own latency can never
	// pass for it, below or above.
	const delay = time.Second
	call("POST", "/datacenters/a/slow?delay="+delay.String(), 200)
	start := time.Now()
	if status, _, _, _ := fetch(t, a, "/users/1/feed"); status != 200 || time.Since(start) < delay {
		t.Fatalf("slowed datacenter answered %d after %v, want 200 after %v", status, time.Since(start), delay)
	}
	call("POST", "/datacenters/a/fail", 200) // crash
	if _, err := get(t, a); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("crashed datacenter: %v, want connection refused", err)
	}
	call("POST", "/datacenters/a/recover", 200)
	start = time.Now()
	if status, _, _, _ := fetch(t, a, "/users/1/feed"); status != 200 || time.Since(start) >= delay {
		t.Fatalf("recovered datacenter answered %d after %v: recover must undo the crash and the slowdown", status, time.Since(start))
	}
	var all []DCStats
	if err := json.Unmarshal(call("GET", "/datacenters", 200), &all); err != nil || len(all) != 2 || all[0].Served != 2 || all[0].Errored != 1 {
		t.Fatalf("GET /datacenters = %+v, %v", all, err)
	}
	call("POST", "/datacenters/nowhere/fail", 404)
	call("POST", "/datacenters/a/fail?mode=melt", 400)
	call("POST", "/datacenters/a/slow?delay=soon", 400)
	call("POST", "/datacenters/a/slow?delay=2h", 400)
	call("POST", "/reset", 200)
	if !strings.Contains(string(call("GET", "/", 200)), "/datacenters/{dc}/fail") {
		t.Error("GET / does not explain the endpoint")
	}
	if _, err := w.ServeControl("127.0.0.1:0"); err == nil {
		t.Error("a second control endpoint started")
	}
}
