package proxy

import (
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/health"
	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"
)

func TestSameUserAlwaysSameBucketAndDatacenter(t *testing.T) {
	h := newHarness(t, nil)
	first := h.getUser(42)
	if first.StatusCode() != 200 {
		t.Fatalf("status %d: %s", first.StatusCode(), first.Body())
	}
	bucket, dc := bucketOf(t, first), datacenterOf(first)
	if want := hashing.FallbackBucket(hashing.HashString("42"), 1024); bucket != want {
		t.Fatalf("bucket %d, want xxhash(42) mod 1024 = %d", bucket, want)
	}
	for range 20 {
		r := h.getUser(42)
		if bucketOf(t, r) != bucket || datacenterOf(r) != dc {
			t.Fatalf("user 42 moved: bucket %d dc %s, first bucket %d dc %s", bucketOf(t, r), datacenterOf(r), bucket, dc)
		}
	}
	if got := string(first.Header.Peek("X-Served-By")); got != dc {
		t.Fatalf("the proxy says %s served it, the backend says %s", dc, got)
	}
	if got := string(h.lastRequest(dc).Header.Peek(headerBucket)); got != strconv.Itoa(int(bucket)) {
		t.Fatalf("the web tier was told bucket %q, want %d", got, bucket)
	}
}

func TestEveryUserLandsOnItsHomeContinentsFirstDatacenter(t *testing.T) {
	h := newHarness(t, nil)
	snap := h.srv.Placement().Load()
	continents := map[string]int{}
	for id := range 300 {
		r := h.getUser(id)
		b := bucketOf(t, r)
		plan := h.planNames(b)
		if datacenterOf(r) != plan[0] {
			t.Fatalf("user %d (bucket %d) served by %s, plan %v", id, b, datacenterOf(r), plan)
		}
		home := snap.Topology().Continents[snap.Home(b)].Name
		if !strings.HasPrefix(datacenterOf(r), home+"-") {
			t.Fatalf("user %d homed in %s served by %s", id, home, datacenterOf(r))
		}
		continents[home]++
	}
	if continents["us"] == 0 || continents["eu"] == 0 {
		t.Fatalf("300 users did not cover both continents: %v", continents)
	}
}

func TestSocialHashTableWinsOverXXHash(t *testing.T) {
	tb, err := hashing.NewTableBuilder(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Friends 7 and 8 share bucket 99, whatever xxhash says.
	_ = tb.Add("7", 99)
	_ = tb.Add("8", 99)
	table, err := tb.Build()
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWithTable(t, nil, table)
	for _, id := range []int{7, 8} {
		if b := bucketOf(t, h.getUser(id)); b != 99 {
			t.Fatalf("user %d in bucket %d, the table says 99", id, b)
		}
	}
	if b := bucketOf(t, h.getUser(9)); b != hashing.FallbackBucket(hashing.HashString("9"), 1024) {
		t.Fatalf("user 9, not in the table, in bucket %d", b)
	}
}

func TestRoutingRules(t *testing.T) {
	h := newHarness(t, nil)
	want := func(key string) uint32 { return hashing.FallbackBucket(hashing.HashString(key), 1024) }
	cases := []struct {
		name    string
		method  string
		uri     string
		prepare func(*fasthttp.Request)
		key     string
	}{
		{"header", "GET", "/feed", func(r *fasthttp.Request) { r.Header.Set("X-User-ID", "alice") }, "alice"},
		{"cookie", "GET", "/feed", func(r *fasthttp.Request) { r.Header.SetCookie("uid", "bob") }, "bob"},
		{"path segment", "GET", "/accounts/carol/media", nil, "carol"},
		{"path segment at the end", "GET", "/accounts/carol", nil, "carol"},
		{"path segment with a trailing slash", "GET", "/accounts/carol/", nil, "carol"},
		{"path segment with a dot in it", "GET", "/accounts/carol.v2/.well-known", nil, "carol.v2"},
		{"percent-encoded letters decode as the web tier decodes them", "GET", "/accounts/c%61rol", nil, "carol"},
		{"path wins over header (rule order)", "GET", "/accounts/carol/media", func(r *fasthttp.Request) { r.Header.Set("X-User-ID", "alice") }, "carol"},
		{"header wins over cookie", "GET", "/feed", func(r *fasthttp.Request) {
			r.Header.Set("X-User-ID", "alice")
			r.Header.SetCookie("uid", "bob")
		}, "alice"},
		{"query under its prefix", "GET", "/search?q=x&user_id=dave", nil, "dave"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.do(c.method, c.uri, c.prepare)
			if r.StatusCode() != 200 {
				t.Fatalf("status %d: %s", r.StatusCode(), r.Body())
			}
			if got := bucketOf(t, r); got != want(c.key) {
				t.Fatalf("bucket %d, want the bucket of key %q (%d)", got, c.key, want(c.key))
			}
		})
	}
	// The query rule is limited to /search: elsewhere the parameter is no key.
	r := h.do("GET", "/feed?user_id=dave", nil)
	if len(r.Header.Peek(headerBucket)) != 0 || datacenterOf(r) != "us-a" {
		t.Fatalf("query outside its prefix was used as a key: bucket %q dc %q", r.Header.Peek(headerBucket), datacenterOf(r))
	}
}

func TestKeylessRequests(t *testing.T) {
	t.Run("local policy goes to the node's datacenter", func(t *testing.T) {
		h := newHarness(t, func(c *configs.Config) { c.Node.Datacenter = "eu-b" })
		r := h.do("GET", "/", nil)
		if r.StatusCode() != 200 || datacenterOf(r) != "eu-b" {
			t.Fatalf("status %d dc %q, want 200 from eu-b", r.StatusCode(), datacenterOf(r))
		}
		h.setDC("eu-b", modeRefuse)
		if r := h.do("GET", "/", nil); datacenterOf(r) != "eu-a" {
			t.Fatalf("local datacenter down: served by %q, want the rest of its continent (eu-a)", datacenterOf(r))
		}
	})
	t.Run("reject policy answers 400", func(t *testing.T) {
		h := newHarness(t, func(c *configs.Config) { c.Routing.NoKey = configs.NoKeyReject })
		r := h.do("GET", "/", nil)
		if r.StatusCode() != 400 || !strings.Contains(string(r.Body()), "no routing key") || h.hits("") != 0 {
			t.Fatalf("status %d body %q, upstream hits %d", r.StatusCode(), r.Body(), h.hits(""))
		}
	})
}

// A malformed request gets a 4xx and never reaches an upstream.
func TestMalformedRequestsNeverReachAnUpstream(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) { c.Routing.MaxKeyLength = 16 })
	cases := []struct{ name, request, want string }{
		{"Content-Length and Transfer-Encoding", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400 socialroute: both Transfer-Encoding and Content-Length"},
		{"Transfer-Encoding then Content-Length", "POST /feed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\nX-User-ID: 1\r\n\r\n0\r\n\r\n", "400 socialroute: both Transfer-Encoding and Content-Length"},
		{"key too long", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 01234567890123456789\r\n\r\n", "400 socialroute: malformed routing key"},
		{"key with a control byte", "GET /accounts/a%01b HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: malformed routing key"},
		{"key with a space", "GET /feed HTTP/1.1\r\nHost: x\r\nCookie: uid=\"a b\"\r\n\r\n", "400 socialroute: malformed routing key"},
		{"encoded slashes route one user, the path another", "GET /accounts/alice%2F..%2Fbob HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + ambiguousPath},
		{"lower-case encoded slash", "GET /accounts/alice%2fbob HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + ambiguousPath},
		{"dot-dot segment", "GET /accounts/alice/../bob HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + ambiguousPath},
		{"dot-dot before the prefix", "GET /feed/../accounts/bob HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + ambiguousPath},
		{"encoded dots", "GET /accounts/alice/%2e%2E/bob HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + ambiguousPath},
		{"empty segment", "GET /accounts//bob HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + ambiguousPath},
		{"backslash", "GET /accounts/alice\\..\\bob HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + ambiguousPath},
		{"path parameter", "GET /accounts/bob;jsessionid=x HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + ambiguousPath},
		{"encoded backslash", "GET /accounts/alice%5C..%5cbob HTTP/1.1\r\nHost: x\r\n\r\n", "400 socialroute: " + ambiguousPath},
		{"duplicate Content-Length", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "400"},
		{"unsupported Transfer-Encoding", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nTransfer-Encoding: gzip\r\n\r\n", "400"},
		{"headers over listen.max_header_bytes", "GET /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nX-Big: " + strings.Repeat("a", configs.DefaultMaxHeaderBytes) + "\r\n\r\n", "431"},
		{"body over listen.max_request_body_size", "POST /feed HTTP/1.1\r\nHost: x\r\nX-User-ID: 1\r\nContent-Length: " + strconv.Itoa(configs.DefaultMaxRequestBodySize+1) + "\r\n\r\n", "413"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := h.raw(c.request)
			if !strings.HasPrefix(got, c.want) {
				t.Fatalf("answer %q, want it to start with %q", got, c.want)
			}
		})
	}
	if n := h.hits(""); n != 0 {
		t.Fatalf("%d malformed requests reached an upstream", n)
	}
}

func TestHopByHopAndInternalHeadersAreStripped(t *testing.T) {
	h := newHarness(t, nil)
	for _, b := range h.backends {
		b.resp = func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Connection", "X-Upstream-Private")
			ctx.Response.Header.Set("X-Upstream-Private", "secret")
			ctx.Response.Header.Set("Keep-Alive", "timeout=5")
			ctx.Response.Header.Set("Proxy-Authenticate", "Basic")
			ctx.Response.Header.Set("X-Kept", "yes")
			ctx.Response.Header.Set("X-Socialroute-Spread", "9/9")
			ctx.Response.Header.Set("X-Socialroute-Secret", "from the web tier")
			ctx.SetBodyString("ok")
		}
	}
	r := h.do("GET", "/feed", func(r *fasthttp.Request) {
		r.Header.Set("X-User-ID", "5")
		r.Header.Set("Forwarded", "for=6.6.6.6;host=evil.example")
		r.Header.Set("X-Real-IP", "6.6.6.6")
		r.Header.Set("X-Forwarded-Host", "evil.example")
		r.Header.Set("X-Forwarded-Port", "666")
		r.Header.Set("Connection", "X-Client-Private, Keep-Alive")
		r.Header.Set("X-Client-Private", "1")
		r.Header.Set("Keep-Alive", "timeout=100")
		r.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
		r.Header.Set("Te", "trailers")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("X-Socialroute-Bucket", "666")
		r.Header.Set("x-socialroute-dc", "evil")
		r.Header.Set("X-Forwarded-For", "6.6.6.6")
		r.Header.Set("X-Kept-Too", "yes")
	})
	dc := datacenterOf(r)
	got := h.lastRequest(dc)
	for _, name := range []string{"X-Client-Private", "Keep-Alive", "Proxy-Authorization", "Te", "Upgrade", "x-socialroute-dc",
		"Forwarded", "X-Real-IP", "X-Forwarded-Host", "X-Forwarded-Port"} {
		if v := got.Header.Peek(name); len(v) != 0 {
			t.Errorf("upstream received %s: %q", name, v)
		}
	}
	if v := string(got.Header.Peek("Connection")); v != "" && v != "keep-alive" {
		t.Errorf("upstream received Connection: %q", v)
	}
	if v := string(got.Header.Peek("X-Socialroute-Bucket")); v != strconv.Itoa(int(bucketOf(t, r))) {
		t.Errorf("client-supplied bucket header reached the upstream: %q", v)
	}
	if v := string(got.Header.Peek("X-Forwarded-For")); v != "192.0.2.7" {
		t.Errorf("X-Forwarded-For = %q, want the client address 192.0.2.7 only", v)
	}
	if v := string(got.Header.Peek("X-Kept-Too")); v != "yes" {
		t.Errorf("an end-to-end header was lost: %q", v)
	}
	for _, name := range []string{"X-Upstream-Private", "Keep-Alive", "Proxy-Authenticate", "X-Socialroute-Spread", "X-Socialroute-Secret"} {
		if v := r.Header.Peek(name); len(v) != 0 { // user 5 is not hot: no Spread of ours either
			t.Errorf("client received %s: %q", name, v)
		}
	}
	if string(r.Header.Peek("X-Kept")) != "yes" || r.ConnectionClose() {
		t.Errorf("response: X-Kept %q, connection close %v", r.Header.Peek("X-Kept"), r.ConnectionClose())
	}
}

// The proxy speaks for the client, so the client's User-Agent reaches the
// web tier as it was sent, and none is made up for a client that sent
// none (fasthttp's client would add its own name).
func TestUserAgentPassesThroughUntouched(t *testing.T) {
	for _, ua := range []string{"", "Instagram 312.0 Android"} {
		h := newHarness(t, nil) // lastRequest: the datacenter's first upstream that was sent one
		r := h.do("GET", "/feed", func(r *fasthttp.Request) {
			r.Header.Set("X-User-ID", "5")
			if ua != "" {
				r.Header.SetUserAgent(ua)
			}
		})
		if got := string(h.lastRequest(datacenterOf(r)).Header.UserAgent()); got != ua {
			t.Errorf("client sent User-Agent %q, upstream received %q", ua, got)
		}
	}
}

// The upstream's Connection: close is about its own connection; the
// client's keep-alive connection survives it, and a client's own
// Connection: close does not reach the pooled upstream connection.
func TestConnectionCloseStaysOnItsSide(t *testing.T) {
	h := newHarness(t, nil)
	for _, b := range h.backends {
		b.resp = func(ctx *fasthttp.RequestCtx) { ctx.SetConnectionClose(); ctx.SetBodyString("ok") }
	}
	r := h.getUser(1)
	if r.StatusCode() != 200 || r.ConnectionClose() {
		t.Fatalf("status %d, client connection close %v", r.StatusCode(), r.ConnectionClose())
	}
	for _, b := range h.backends {
		b.resp = nil
	}
	r = h.do("GET", "/feed", func(r *fasthttp.Request) { r.Header.Set("X-User-ID", "1"); r.SetConnectionClose() })
	if !r.ConnectionClose() {
		t.Fatal("the client asked to close, the proxy kept its connection open")
	}
	if h.lastRequest(datacenterOf(r)).ConnectionClose() {
		t.Fatal("the client's Connection: close reached the upstream")
	}
}

// userWhosePlanStartsWith finds a user whose bucket prefers dc.
func (h *harness) userWhosePlanStartsWith(dc string) (int, []string) {
	snap := h.srv.Placement().Load()
	for id := range 100000 {
		b := hashing.FallbackBucket(hashing.HashString(strconv.Itoa(id)), snap.Buckets())
		if plan := h.planNames(b); plan[0] == dc {
			return id, plan
		}
	}
	h.t.Fatalf("no user prefers %s", dc)
	return 0, nil
}

// An upstream whose breaker is half-open with its probe out reads ready
// but takes nothing: the request goes to another upstream of the same
// datacenter, not to the next datacenter (whose share grew by every
// request that drew it).
func TestAHalfOpenUpstreamLeavesTheRequestInItsDatacenter(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) { c.Upstream.Breaker.OpenFor = 20 * time.Millisecond })
	id, plan := h.userWhosePlanStartsWith("us-b")
	var p *pool
	for _, q := range h.srv.cur.Load().pools {
		if q.name == plan[0] {
			p = q
		}
	}
	probing, busy := p.upstreams[0], p.upstreams[1]
	for range h.cfg.Upstream.Breaker.ConsecutiveFailures {
		_ = probing.breaker.Do(func() error { return errUpstreamStatus })
	}
	time.Sleep(30 * time.Millisecond) // open past OpenFor: the next call probes
	release, probeIn := make(chan struct{}), make(chan struct{})
	go probing.breaker.Do(func() error { close(probeIn); <-release; return nil }) //nolint:errcheck // the probe
	<-probeIn
	defer close(release)
	if !probing.breaker.Ready() {
		t.Fatal("a half-open breaker with its probe out should read ready (that is the case under test)")
	}
	busy.inflight.Add(5) // pick prefers the upstream with fewer requests in flight: the probing one
	defer busy.inflight.Add(-5)
	for i := range 10 {
		if dc := datacenterOf(h.getUser(id)); dc != plan[0] {
			t.Fatalf("request %d went to %s, not %s: the half-open upstream sent it out of its datacenter", i, dc, plan[0])
		}
	}
}

// pick never draws an upstream that already failed the request: with
// retries left in the last datacenter, a third attempt went back to the
// first upstream that failed when only the last one was remembered.
func TestPickSkipsEveryUpstreamThatFailed(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) {
		c.Datacenters[0].Upstreams = []string{"us-a-1.test:80", "us-a-2.test:80", "us-a-3.test:80"}
	})
	p := h.srv.cur.Load().pools[0]
	skip := p.bit(p.upstreams[0]) | p.bit(p.upstreams[2])
	for range 100 {
		if u := p.pick(skip); u != p.upstreams[1] {
			t.Fatalf("with upstreams 0 and 2 failed, pick drew %v", u.addr)
		}
	}
	if u := p.pick(skip | p.bit(p.upstreams[1])); u != nil {
		t.Fatalf("with every upstream failed, pick drew %s", u.addr)
	}
}

func TestFailedIdempotentRequestRetriesOnNextDatacenter(t *testing.T) {
	for _, c := range []struct {
		name string
		mode int32
	}{{"connection refused", modeRefuse}, {"503", mode503}, {"timeout", modeHang}} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, func(cfg *configs.Config) { cfg.Upstream.Timeout = hangTimeout })
			id, plan := h.userWhosePlanStartsWith("us-b")
			h.setDC("us-b", c.mode)
			r := h.getUser(id)
			if r.StatusCode() != 200 || datacenterOf(r) != plan[1] {
				t.Fatalf("status %d from %q, want 200 from the next on the plan %v", r.StatusCode(), datacenterOf(r), plan)
			}
			if h.srv.Stats().Retries.Load() != 1 {
				t.Fatalf("retries = %d, want 1", h.srv.Stats().Retries.Load())
			}
		})
	}
}

// A full connection pool is this proxy's own limit, not the upstream
// failing: a POST that got no connection never left, so it goes to the
// next datacenter, and the busy datacenter's breakers stay closed.
func TestFullConnectionPoolIsNeitherSentNorAFailure(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) {
		c.Upstream.MaxConnsPerHost = 1
		c.Upstream.MaxConnWaitTimeout = 10 * time.Millisecond
	})
	id, plan := h.userWhosePlanStartsWith("us-b")
	entered, release := make(chan struct{}, 2), make(chan struct{})
	var released sync.Once
	defer released.Do(func() { close(release) }) // a failing test must not leave the handlers blocked
	for _, b := range h.backends {
		if b.dc == "us-b" {
			b.resp = func(ctx *fasthttp.RequestCtx) {
				entered <- struct{}{}
				<-release
				ctx.SetBodyString("slow")
			}
		}
	}
	// Two slow GETs take the one connection of each of us-b's upstreams
	// (the second goes to the upstream with fewer requests in flight).
	var wg sync.WaitGroup
	slow := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slow[i] = h.getUser(id).StatusCode()
		}()
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatalf("slow GET %d never reached us-b", i)
		}
	}
	for i := range 2 * h.cfg.Upstream.Breaker.ConsecutiveFailures {
		r := h.do("POST", "/feed", func(r *fasthttp.Request) {
			r.Header.Set("X-User-ID", strconv.Itoa(id))
			r.SetBodyString("like")
		})
		if r.StatusCode() != 200 || datacenterOf(r) != plan[1] {
			t.Fatalf("POST %d with us-b's pools full: status %d from %q (%s), want 200 from the next on the plan %v", i, r.StatusCode(), datacenterOf(r), r.Body(), plan)
		}
	}
	h.wantBreakersClosed("after its pool was full")
	released.Do(func() { close(release) })
	wg.Wait()
	if slow[0] != 200 || slow[1] != 200 {
		t.Fatalf("the slow GETs got %v", slow)
	}
}

// An answer over upstream.max_response_body_size gets 502 with a reason,
// is not retried elsewhere (another datacenter would send the same) and
// does not open the upstream's breaker: the upstream is fine.
func TestOversizedResponseIs502WithoutRetryOrBreaker(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) { c.Upstream.MaxResponseBodySize = 1024 })
	id, _ := h.userWhosePlanStartsWith("us-b")
	big := strings.Repeat("x", 4096)
	for _, b := range h.backends {
		b.resp = func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(big) }
	}
	n := 2 * h.cfg.Upstream.Breaker.ConsecutiveFailures
	for i := range n {
		r := h.getUser(id)
		if r.StatusCode() != 502 || !strings.Contains(string(r.Body()), "max_response_body_size") {
			t.Fatalf("request %d: status %d %.80q, want 502 naming upstream.max_response_body_size", i, r.StatusCode(), r.Body())
		}
	}
	if got, all := h.hits("us-b"), h.hits(""); got != int64(n) || all != int64(n) {
		t.Fatalf("us-b got %d requests and all datacenters %d, want %d and %d: no retries", got, all, n, n)
	}
	h.wantBreakersClosed("after oversized answers")
	for _, b := range h.backends {
		b.resp = func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(big[:1024]) }
	}
	if r := h.getUser(id); r.StatusCode() != 200 || len(r.Body()) != 1024 {
		t.Fatalf("an answer at the limit: status %d, %d bytes", r.StatusCode(), len(r.Body()))
	}
}

// An upstream answer whose headers pass upstream.max_response_header_bytes
// is a 502 naming the setting, not retried, and not held against the
// breaker (a page that echoes a long URL into Location must not let
// clients open it); below the limit, well past fasthttp's 4 KiB, it passes.
func TestOversizedResponseHeadersAre502WithoutRetryOrBreaker(t *testing.T) {
	h := newHarness(t, nil)
	id, _ := h.userWhosePlanStartsWith("us-b")
	header := func(n int) {
		for _, b := range h.backends {
			b.resp = func(ctx *fasthttp.RequestCtx) {
				ctx.Response.Header.Set("Location", "/login?next="+strings.Repeat("a", n))
				ctx.SetBodyString("ok")
			}
		}
	}
	header(8 << 10)
	if r := h.getUser(id); r.StatusCode() != 200 {
		t.Fatalf("an answer with 8 KiB of headers: %d %.80q", r.StatusCode(), r.Body())
	}
	header(h.cfg.Upstream.MaxResponseHeaderBytes)
	before := h.hits("")
	n := 2 * h.cfg.Upstream.Breaker.ConsecutiveFailures
	for i := range n {
		r := h.getUser(id)
		if r.StatusCode() != 502 || !strings.Contains(string(r.Body()), "max_response_header_bytes") {
			t.Fatalf("request %d: status %d %.80q, want 502 naming upstream.max_response_header_bytes", i, r.StatusCode(), r.Body())
		}
	}
	if all := h.hits("") - before; all != int64(n) {
		t.Fatalf("the datacenters got %d requests for %d: want no retries", all, n)
	}
	h.wantBreakersClosed("after answers with oversized headers")
}

// An upstream that switches protocols (101), though the proxy strips
// Upgrade, gets a 502, once (not retried elsewhere), no breaker count, and
// its connection closed: it no longer speaks HTTP.
func TestUpstreamSwitchingProtocolsIs502(t *testing.T) {
	h := newHarness(t, nil)
	id, _ := h.userWhosePlanStartsWith("us-b")
	for _, b := range h.backends {
		b.resp = func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols) }
	}
	n := 2 * h.cfg.Upstream.Breaker.ConsecutiveFailures
	for i := range n {
		if r := h.getUser(id); r.StatusCode() != 502 || !strings.Contains(string(r.Body()), "switched protocols") {
			t.Fatalf("request %d: status %d %.80q, want 502", i, r.StatusCode(), r.Body())
		}
	}
	if all := h.hits(""); all != int64(n) {
		t.Fatalf("the datacenters got %d requests for %d: want no retries", all, n)
	}
	h.wantBreakersClosed("after 101 answers")
}

// A reload that changes only what is read per request (upstream.timeout,
// upstream.retries) keeps the pools, and with them each breaker's state:
// an upstream found dead is not sent live traffic again. Another upstream
// setting rebuilds them.
func TestReloadOfTheTimeoutKeepsTheBreakers(t *testing.T) {
	h := newHarness(t, nil)
	u := h.srv.cur.Load().pools[0].upstreams[0]
	for range h.cfg.Upstream.Breaker.ConsecutiveFailures {
		_ = u.breaker.Do(func() error { return errUpstreamStatus })
	}
	if err := h.srv.Reload(testConfig(t, func(c *configs.Config) {
		c.Upstream.Timeout = 7 * time.Second
		c.Upstream.Retries = new(int)
	}), nil); err != nil {
		t.Fatal(err)
	}
	if got := h.srv.cur.Load().pools[0].upstreams[0]; got != u || got.breaker.State() != gobreaker.StateOpen {
		t.Fatalf("after a reload of the timeout: the same upstream %v, its breaker %v; want kept, open", got == u, got.breaker.State())
	}
	if h.srv.cur.Load().timeout != 7*time.Second {
		t.Fatalf("the new timeout is not in force: %v", h.srv.cur.Load().timeout)
	}
	if err := h.srv.Reload(testConfig(t, func(c *configs.Config) { c.Upstream.MaxConnsPerHost = 7 }), nil); err != nil {
		t.Fatal(err)
	}
	if h.srv.cur.Load().pools[0].upstreams[0] == u {
		t.Fatal("a change of max_conns_per_host kept the pools built for the old one")
	}
}

func TestNonIdempotentRequestIsNotRetriedOnceSent(t *testing.T) {
	h := newHarness(t, nil)
	id, _ := h.userWhosePlanStartsWith("us-b")
	h.setDC("us-b", mode503)
	post := func(prepare func(*fasthttp.Request)) *fasthttp.Response {
		return h.do("POST", "/feed", func(r *fasthttp.Request) {
			r.Header.Set("X-User-ID", strconv.Itoa(id))
			r.SetBodyString("like")
			if prepare != nil {
				prepare(r)
			}
		})
	}
	if r := post(nil); r.StatusCode() != 503 || h.hits("us-b") != 1 || h.hits("") != 1 {
		t.Fatalf("POST: status %d, us-b hits %d, all hits %d; want the upstream's 503 after one attempt", r.StatusCode(), h.hits("us-b"), h.hits(""))
	}
	// With an Idempotency-Key the client vouches for it: retried.
	if r := post(func(r *fasthttp.Request) { r.Header.Set("Idempotency-Key", "k1") }); r.StatusCode() != 200 {
		t.Fatalf("POST with Idempotency-Key: status %d, want a retry elsewhere", r.StatusCode())
	}
	// A POST that never left (connection refused) may go elsewhere. (A POST
	// on a pooled connection that then breaks may have been processed: it
	// is not retried, which the 503 case above already shows.)
	h.setDC("us-b", modeOK)
	id, plan := h.userWhosePlanStartsWith("us-c")
	h.setDC("us-c", modeRefuse)
	r := h.do("POST", "/feed", func(r *fasthttp.Request) { r.Header.Set("X-User-ID", strconv.Itoa(id)) })
	if r.StatusCode() != 200 || datacenterOf(r) != plan[1] {
		t.Fatalf("POST to a refusing datacenter: status %d from %q, want 200 from %s", r.StatusCode(), datacenterOf(r), plan[1])
	}
}

func TestBreakerStopsSendingToADeadDatacenter(t *testing.T) {
	h := newHarness(t, nil)
	id, plan := h.userWhosePlanStartsWith("us-b")
	h.setDC("us-b", mode503)
	for range 20 {
		if r := h.getUser(id); r.StatusCode() != 200 || datacenterOf(r) != plan[1] {
			t.Fatalf("status %d from %s", r.StatusCode(), datacenterOf(r))
		}
	}
	// 3 failures open each of the two upstreams' breakers; after that the
	// proxy skips us-b without trying it.
	if n := h.hits("us-b"); n != 6 {
		t.Fatalf("us-b was tried %d times, want 6 (3 per upstream until the breakers open)", n)
	}
	e := h.srv.Explain(userRequest(id))
	if e.Plan[0].State != "no ready upstream" || e.Chosen != plan[1] {
		t.Fatalf("explain: %+v", e)
	}
}

func userRequest(id int) *fasthttp.Request {
	var req fasthttp.Request
	req.SetRequestURI("/feed")
	req.Header.Set("X-User-ID", strconv.Itoa(id))
	return &req
}

func TestDrainAndPinChangeRoutingImmediately(t *testing.T) {
	h := newHarness(t, nil)
	id, plan := h.userWhosePlanStartsWith("us-a")
	bucket := bucketOf(t, h.getUser(id))
	before := h.srv.Placement().Load().Version()
	if _, err := h.srv.ChangePlacement(func(o *buckets.Overrides) error {
		o.Drained["us-a"] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := h.getUser(id); datacenterOf(r) != plan[1] {
		t.Fatalf("after draining us-a, served by %s, want %s", datacenterOf(r), plan[1])
	}
	if _, err := h.srv.ChangePlacement(func(o *buckets.Overrides) error {
		o.Pins[bucket] = "eu-b"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := h.getUser(id); datacenterOf(r) != "eu-b" {
		t.Fatalf("after pinning bucket %d to eu-b, served by %s", bucket, datacenterOf(r))
	}
	if v := h.srv.Placement().Load().Version(); v != before+2 {
		t.Fatalf("map version %d after two changes from %d", v, before)
	}
}

func TestNoUsableDatacenterIs503(t *testing.T) {
	h := newHarness(t, nil)
	id, _ := h.userWhosePlanStartsWith("eu-a")
	h.setDC("eu-a", modeRefuse)
	h.setDC("eu-b", modeRefuse)
	r := h.getUser(id)
	if r.StatusCode() < 502 || r.StatusCode() > 503 {
		t.Fatalf("status %d, want 502 or 503 when every EU datacenter refuses", r.StatusCode())
	}
	if h.hits("") != 0 {
		t.Fatal("refused connections counted as hits")
	}
	for range 10 {
		h.getUser(id) // open the breakers
	}
	r = h.getUser(id)
	if r.StatusCode() != 503 || !strings.Contains(string(r.Body()), "no usable datacenter") {
		t.Fatalf("status %d %q, want 503 no usable datacenter", r.StatusCode(), r.Body())
	}
	for _, name := range []string{"us-a", "us-b", "us-c"} {
		if h.hits(name) != 0 {
			t.Fatalf("an EU user went to %s without failover configured", name)
		}
	}
}

func TestTimeoutWithoutRetryIs504(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) {
		zero := 0
		c.Upstream.Retries = &zero
		c.Upstream.Timeout = hangTimeout
	})
	id, _ := h.userWhosePlanStartsWith("us-c")
	h.setDC("us-c", modeHang)
	for _, method := range []string{"GET", "POST"} { // both end the same, whether or not they may be retried
		r := h.do(method, "/feed", func(req *fasthttp.Request) { req.Header.Set("X-User-ID", strconv.Itoa(id)) })
		if r.StatusCode() != 504 {
			t.Fatalf("%s: status %d, want 504", method, r.StatusCode())
		}
	}
}

func TestReloadSwapsConfigAndKeepsVersionRising(t *testing.T) {
	h := newHarness(t, nil)
	id, _ := h.userWhosePlanStartsWith("us-a")
	bucket := bucketOf(t, h.getUser(id))
	v := h.srv.Placement().Load().Version()
	cfg := testConfig(t, func(c *configs.Config) {
		c.Pins = map[string]string{strconv.Itoa(int(bucket)): "us-c"}
	})
	if err := h.srv.Reload(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if r := h.getUser(id); datacenterOf(r) != "us-c" {
		t.Fatalf("after reload with a pin, served by %s", datacenterOf(r))
	}
	if got := h.srv.Placement().Load().Version(); got != v+1 {
		t.Fatalf("version %d after reload from %d", got, v)
	}
	bad := testConfig(t, nil)
	bad.Buckets = 512 // the table below is for 1024
	tb, _ := hashing.NewTableBuilder(1024, 1)
	table, _ := tb.Build()
	if err := h.srv.Reload(bad, table); err == nil {
		t.Fatal("a table for another bucket count was accepted")
	}
	if r := h.getUser(id); datacenterOf(r) != "us-c" {
		t.Fatal("a failed reload changed routing")
	}
}

// A reload rebuilds pins and drains from the file, so it undoes the ones
// made at run time; it names each one it undoes, and not one the new file
// makes itself or one the running map shares with the file.
func TestReloadNamesTheRuntimeChangesItUndoes(t *testing.T) {
	h := newHarness(t, nil)
	us := homedIn(t, h.srv.Placement().Load(), "us")
	a, b, c, d := us[0], us[1], us[2], us[3]
	key := func(b uint32) string { return strconv.Itoa(int(b)) }
	file := func(c *configs.Config) {
		c.Drained = []string{"us-b"}
		c.Pins = map[string]string{key(a): "us-a", key(b): "us-a", key(d): "us-c"}
	}
	if err := h.srv.Reload(testConfig(t, file), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.ChangePlacement(func(o *buckets.Overrides) error {
		o.Drained = map[string]bool{"us-c": true, "eu-b": true} // and us-b undrained
		delete(o.Pins, a)
		o.Pins[b] = "us-c"
		o.Pins[c] = "us-b"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	old := h.srv.cur.Load()
	if err := h.srv.Reload(testConfig(t, func(cfg *configs.Config) {
		file(cfg)
		cfg.Drained = append(cfg.Drained, "us-c") // the file takes this drain over
	}), nil); err != nil {
		t.Fatal(err)
	}
	got := revertedChanges(old, h.srv.cur.Load())
	pins := map[uint32]string{a: "unpin of bucket " + key(a), b: "pin of bucket " + key(b) + " to us-c", c: "pin of bucket " + key(c) + " to us-b"}
	want := []string{"drain of eu-b", "undrain of us-b"}
	for _, bucket := range slices.Sorted(maps.Keys(pins)) {
		want = append(want, pins[bucket])
	}
	if !slices.Equal(got, want) {
		t.Fatalf("undone:\n got %q\nwant %q", got, want)
	}
}

// A reload that turns auto_apply off leaves the moves under way for an
// operator: it names them (a fenced one refuses writes until advanced).
func TestReloadNamesMovesAutoApplyNoLongerAdvances(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) { c.Placement.AutoApply = true; c.Placement.AdviseEvery = time.Hour })
	b := homedIn(t, h.srv.Placement().Load(), "us")[0]
	if _, err := h.srv.ChangePlacement(func(o *buckets.Overrides) error {
		o.Moves = map[uint32]buckets.Move{b: {To: "eu", Phase: buckets.MoveFenced}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	old := h.srv.cur.Load()
	if err := h.srv.Reload(testConfig(t, func(c *configs.Config) { c.Placement.AdviseEvery = time.Hour }), nil); err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("bucket %d to eu (fenced)", b)}
	if got := strandedMoves(old, h.srv.cur.Load()); !slices.Equal(got, want) {
		t.Fatalf("stranded moves %q, want %q", got, want)
	}
	if got := strandedMoves(h.srv.cur.Load(), h.srv.cur.Load()); got != nil {
		t.Fatalf("with auto_apply off before and after: %q", got)
	}
	if l := h.logs.String(); !strings.Contains(l, "level=WARN msg=\"placement.auto_apply is now off") || !strings.Contains(l, `moves="`+want[0]+`"`) {
		t.Fatalf("the reload's warning:\n%s", l)
	}

	// Another node with auto_apply on drives the moves then: nothing is
	// stranded, so nothing to warn of.
	h.logs.Reset()
	h.srv.placer.fleet = &fakeFleet{members: []health.Member{{Name: "z-node", NodeState: "serving"}}}
	if err := h.srv.Reload(testConfig(t, func(c *configs.Config) { c.Placement.AutoApply = true; c.Placement.AdviseEvery = time.Hour }), nil); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Reload(testConfig(t, func(c *configs.Config) { c.Placement.AdviseEvery = time.Hour }), nil); err != nil {
		t.Fatal(err)
	}
	if l := h.logs.String(); strings.Contains(l, "auto_apply is now off") {
		t.Fatalf("warned of stranded moves another node drives:\n%s", l)
	}
}

// A reload rebuilds pins and drains from the file but keeps the bucket
// moves under way and the homes finished moves wrote: dropping them would
// send a bucket's writes back past its move's fence. That holds for a
// bucket that moved before and is moving again. A home the file changes
// wins, and the advisor keeps its count of moves started.
func TestReloadKeepsBucketMoves(t *testing.T) {
	h := newHarness(t, nil)
	snap := h.srv.Placement().Load()
	us := homedIn(t, snap, "us")
	moving, moved, edited, movingEdited, movingBack := us[0], us[1], us[2], us[3], us[4]
	if _, err := h.srv.ChangePlacement(func(o *buckets.Overrides) error {
		o.Moves = map[uint32]buckets.Move{
			moving: {To: "eu", Phase: buckets.MoveCutover}, movingEdited: {To: "eu", Phase: buckets.MoveCopying, Started: time.Now().Add(-time.Minute)},
			movingBack: {To: "us", Phase: buckets.MoveCutover},
		}
		o.Homes[moved], o.Homes[edited], o.Homes[movingBack] = "eu", "eu", "eu"
		o.RecentMoves = map[uint32]time.Time{moved: time.Now().Add(-time.Hour)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h.srv.placer.mu.Lock()
	h.srv.placer.advisor.Started(moving, now)
	h.srv.placer.mu.Unlock()

	cfg := testConfig(t, func(c *configs.Config) {
		c.Homes = map[string]string{strconv.Itoa(int(edited)): "us", strconv.Itoa(int(movingEdited)): "eu"}
		c.Placement.MovesPerHour++
	})
	old := h.srv.cur.Load()
	if err := h.srv.Reload(cfg, nil); err != nil {
		t.Fatal(err)
	}
	snap = h.srv.Placement().Load()
	continent := func(b uint32) string { return snap.Topology().Continents[snap.Home(b)].Name }
	if m, ok := snap.Moving(moving); !ok || m.To != "eu" || m.Phase != buckets.MoveCutover {
		t.Fatalf("bucket %d's move after the reload: %+v, %v; want eu, cutover", moving, m, ok)
	}
	if wp := snap.WritePlan(moving); snap.Topology().Datacenters[wp[0]].Continent != "eu" {
		t.Fatalf("bucket %d in cutover writes to %s first, want eu", moving, snap.Topology().Datacenters[wp[0]].Name)
	}
	if m, ok := snap.Moving(movingBack); !ok || m.To != "us" || m.Phase != buckets.MoveCutover || continent(movingBack) != "eu" {
		t.Fatalf("bucket %d, moved to eu and now in cutover back to us: move %+v (%v), home %s after the reload; want the move kept", movingBack, m, ok, continent(movingBack))
	}
	if got := continent(moved); got != "eu" {
		t.Fatalf("bucket %d, moved to eu, is homed in %s after the reload", moved, got)
	}
	if _, ok := snap.RecentMoves()[moved]; !ok {
		t.Fatalf("bucket %d's recent move (its cooldown) forgotten by the reload", moved)
	}
	if _, ok := snap.RecentMoves()[movingEdited]; !ok {
		t.Fatalf("bucket %d's move, ended by the reload (the file homes it), left no cooldown", movingEdited)
	}
	if got := continent(edited); got != "us" {
		t.Fatalf("bucket %d, which the new file homes in us, is homed in %s", edited, got)
	}
	want := []string{fmt.Sprintf("move of bucket %d to eu (the file sets its home)", movingEdited), fmt.Sprintf("home of bucket %d in eu (a finished move's)", edited)}
	if got := revertedChanges(old, h.srv.cur.Load()); !slices.Equal(got, want) {
		t.Fatalf("the reload names as undone\n %q, want\n %q", got, want)
	}
	if m, ok := snap.Moving(movingEdited); ok || continent(movingEdited) != "eu" {
		t.Fatalf("bucket %d, moving to eu and homed there by the new file: move %+v (%v), home %s; want no move, home eu", movingEdited, m, ok, continent(movingEdited))
	}
	h.srv.placer.mu.Lock()
	started := h.srv.placer.advisor.MovesInLastHour(now.Add(time.Second))
	h.srv.placer.mu.Unlock()
	if started != 1 {
		t.Fatalf("the advisor counts %d moves in the last hour after the reload, want 1", started)
	}
}

// A fence_settle a retried write can outlast is worth a warning at load.
func TestShortFenceSettleIsWarnedOf(t *testing.T) {
	for _, c := range []struct {
		settle time.Duration
		warned bool
	}{{10 * time.Second, true}, {20 * time.Second, true}, {21 * time.Second, false}} {
		cfg := testConfig(t, func(cfg *configs.Config) {
			cfg.Upstream.RequestTimeout = 20 * time.Second
			cfg.Placement.FenceSettle = c.settle
		})
		var logs strings.Builder
		if _, err := New(cfg, nil, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "placement.fence_settle is not above"); got != c.warned {
			t.Errorf("fence_settle %v with a write life of 20s: warned %v, want %v\n%s", c.settle, got, c.warned, logs.String())
		}
	}
}

func TestExplain(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) { c.Drained = []string{"us-a"} })
	id, plan := h.userWhosePlanStartsWith("us-a")
	e := h.srv.Explain(userRequest(id))
	if e.Key != strconv.Itoa(id) || e.Rule != "header X-User-ID" || e.Home != "us" || e.Source != "xxhash fallback" {
		t.Fatalf("explain: %+v", e)
	}
	var names []string
	for _, c := range e.Plan {
		names = append(names, c.Datacenter)
	}
	if !slices.Equal(names, plan) || e.Plan[0].State != "drained" || e.Chosen != plan[1] || !e.Plan[1].Chosen {
		t.Fatalf("explain plan %+v chosen %s, want %v with us-a drained", e.Plan, e.Chosen, plan)
	}
	var sb strings.Builder
	if err := e.WriteText(&sb); err != nil || !strings.Contains(sb.String(), "<- chosen") || !strings.Contains(sb.String(), "skipped us-a drained") {
		t.Fatalf("text:\n%s", sb.String())
	}
}

// offerCountingStatus is a fleet Status as health.Cluster is one: Usable
// counts the request as load offered to the datacenter; Status does not.
type offerCountingStatus struct{ offers atomic.Int64 }

func (s *offerCountingStatus) Usable(int) bool { s.offers.Add(1); return true }
func (s *offerCountingStatus) Status() []health.DCStatus {
	up := make([]health.DCStatus, 5) // the harness's five datacenters
	for i := range up {
		up[i].Up = true
	}
	return up
}

// An explanation leaves no trace in the fleet's load figures (gossip sums
// every node's offered load to decide when a datacenter is full), and its
// choice does not depend on a drain ramp's dice.
func TestExplainOffersNoLoadAndRollsNoDice(t *testing.T) {
	status := &offerCountingStatus{}
	cfg := testConfig(t, func(c *configs.Config) { c.Routing.DrainRamp = time.Hour })
	srv, err := New(cfg, nil, Options{Logger: slog.New(slog.DiscardHandler), Status: status})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, cfg: cfg, srv: srv}
	id, plan := h.userWhosePlanStartsWith("us-a")
	// us-a is drained from now on, over an hour: the request path still
	// sends it almost all of its traffic, by dice, for a while.
	if _, err := srv.ChangePlacement(func(o *buckets.Overrides) error { o.Drained["us-a"] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	status.offers.Store(0)
	for range 200 {
		e := srv.Explain(userRequest(id))
		if e.Chosen != plan[1] || !strings.HasPrefix(e.Plan[0].State, "drain ramp") {
			t.Fatalf("explain chose %s with %q first; want %s, us-a ramping and skipped", e.Chosen, e.Plan[0].State, plan[1])
		}
	}
	if n := status.offers.Load(); n != 0 {
		t.Errorf("200 explanations offered the fleet %d requests of load; want 0", n)
	}
}

// A drain moves a datacenter's traffic off gradually over the drain ramp,
// and an undrain brings it back the same way.
func TestDrainRampsDownAndBack(t *testing.T) {
	const ramp = 2 * time.Second
	h := newHarness(t, func(c *configs.Config) { c.Routing.DrainRamp = ramp })
	id, plan := h.userWhosePlanStartsWith("us-a")
	key := []byte(strconv.Itoa(id))
	r := h.srv.Router()
	usA, _ := h.srv.Placement().Load().Topology().DatacenterIndex("us-a")
	// share routes a burst of decisions for the user and returns the share
	// that went to us-a, and us-a's weight in the middle of the burst.
	share := func() (got, want float64) {
		var d Decision
		n, hits := 4000, 0
		var mid int64
		for i := range n {
			if i == n/2 {
				mid = time.Now().UnixNano()
			}
			r.Route(key, &d)
			if d.Plan[d.Next] == d.Plan[0] {
				hits++
			}
		}
		return float64(hits) / float64(n), h.srv.Placement().Load().Weight(usA, mid, ramp)
	}
	update := func(drain bool) {
		if _, err := h.srv.ChangePlacement(func(o *buckets.Overrides) error {
			o.Drained["us-a"] = drain
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := share(); got != 1 {
		t.Fatalf("before the drain us-a took %.2f of its bucket's decisions", got)
	}
	update(true)
	var samples []string
	for _, at := range []time.Duration{ramp / 4, ramp / 2, 3 * ramp / 4} {
		time.Sleep(time.Until(h.srv.Placement().Load().ChangedAt(usA).Add(at)))
		got, want := share()
		samples = append(samples, fmt.Sprintf("%.2f (weight %.2f)", got, want))
		if math.Abs(got-want) > 0.1 || want <= 0.05 || want >= 0.95 {
			t.Fatalf("draining: us-a took %.2f of the decisions, its weight is %.2f", got, want)
		}
	}
	time.Sleep(time.Until(h.srv.Placement().Load().ChangedAt(usA).Add(ramp)))
	if got, _ := share(); got != 0 {
		t.Fatalf("after the ramp a drained us-a still took %.2f", got)
	}
	if res := h.getUser(id); datacenterOf(res) != plan[1] {
		t.Fatalf("drained: served by %s, want %s", datacenterOf(res), plan[1])
	}
	update(false)
	time.Sleep(ramp / 2)
	if got, want := share(); math.Abs(got-want) > 0.1 {
		t.Fatalf("undraining: us-a took %.2f, weight %.2f", got, want)
	}
	time.Sleep(time.Until(h.srv.Placement().Load().ChangedAt(usA).Add(ramp)))
	if got, _ := share(); got != 1 {
		t.Fatalf("after undraining us-a takes %.2f", got)
	}
	t.Logf("us-a's share while draining: %v", samples)
}

// A path rule may repeat its template's start as path_prefix (configs
// accepts it, so the proxy must too); a prefix that does not start the
// template is refused.
func TestPathRuleWithAPathPrefix(t *testing.T) {
	rs, err := compileRules([]configs.Rule{{Path: "/v2/users/{key}", PathPrefix: "/v2/"}})
	if err != nil {
		t.Fatalf("a path rule with its own prefix: %v", err)
	}
	var req fasthttp.Request
	req.SetRequestURI("/v2/users/carol/photos")
	if key, i, _ := rs.extract(&req); string(key) != "carol" || i != 0 {
		t.Fatalf("key %q from rule %d, want carol from 0", key, i)
	}
	if _, err := compileRules([]configs.Rule{{Path: "/v2/users/{key}", PathPrefix: "/v1/"}}); err == nil {
		t.Fatal("a path_prefix that does not start the path was accepted")
	}
}

// The advisor's hourly limit and cooldowns count moves this process did
// not start (another node's, or one from before a restart) once it sees
// them, and its own moves once.
func TestAdvisorCountsMovesOtherNodesStarted(t *testing.T) {
	h := newHarness(t, nil)
	snap := h.srv.Placement().Load()
	us := homedIn(t, snap, "us")
	theirs, ours := us[0], us[1]
	o := snap.Overrides()
	o.Moves = map[uint32]buckets.Move{theirs: {To: "eu", Phase: buckets.MoveCopying}}
	if ok, err := h.srv.AdoptPlacement(snap.Version()+1, "another-node", o); !ok || err != nil {
		t.Fatalf("adopt: %v %v", ok, err)
	}
	if _, err := h.srv.StartMove(ours, "eu"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := h.srv.placer.step(nil); err != nil {
			t.Fatal(err)
		}
	}
	h.srv.placer.mu.Lock()
	n := h.srv.placer.advisor.MovesInLastHour(time.Now().Add(time.Second))
	h.srv.placer.mu.Unlock()
	if n != 2 {
		t.Fatalf("the advisor counts %d moves in the last hour, want 2 (another node's and ours, once each)", n)
	}
	// Their move is aborted, then started again: a second move.
	for _, moves := range []map[uint32]buckets.Move{
		{ours: {To: "eu", Phase: buckets.MoveCopying}},
		{ours: {To: "eu", Phase: buckets.MoveCopying}, theirs: {To: "eu", Phase: buckets.MoveCopying}},
	} {
		cur := h.srv.Placement().Load()
		o := cur.Overrides()
		o.Moves = moves
		if ok, err := h.srv.AdoptPlacement(cur.Version()+1, "another-node", o); !ok || err != nil {
			t.Fatalf("adopt: %v %v", ok, err)
		}
		if err := h.srv.placer.step(nil); err != nil {
			t.Fatal(err)
		}
	}
	h.srv.placer.mu.Lock()
	n = h.srv.placer.advisor.MovesInLastHour(time.Now().Add(time.Second))
	h.srv.placer.mu.Unlock()
	if n != 3 {
		t.Fatalf("after another node moved bucket %d again, the advisor counts %d moves, want 3", theirs, n)
	}
}

// homedIn lists the buckets snap homes on continent (Snapshot.HomedIn).
func homedIn(t *testing.T, snap *buckets.Snapshot, continent string) []uint32 {
	t.Helper()
	c, ok := snap.Topology().ContinentIndex(continent)
	if !ok {
		t.Fatalf("no continent %q", continent)
	}
	return snap.HomedIn(c)
}

// wantBreakersClosed fails the test for every upstream whose breaker is
// not closed; when says after what.
func (h *harness) wantBreakersClosed(when string) {
	h.t.Helper()
	for _, p := range h.srv.cur.Load().pools {
		for _, u := range p.upstreams {
			if u.breaker.State() != gobreaker.StateClosed {
				h.t.Errorf("%s's breaker is %v %s", u.addr, u.breaker.State(), when)
			}
		}
	}
}

// upstream.request_timeout bounds a request's every attempt: a retry gets
// what is left, none is made when nothing is, and an attempt cut short
// by it says nothing of its upstream (the breaker does not count it).
func TestRequestTimeoutBoundsEveryAttempt(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) {
		c.Upstream.Timeout = hangTimeout
		c.Upstream.RequestTimeout = hangTimeout * 5 / 4 // the retry gets a quarter of an attempt
		c.Upstream.Retries = new(3)
		c.Upstream.Breaker.ConsecutiveFailures = 1
	})
	id, plan := h.userWhosePlanStartsWith("us-b")
	for _, dc := range plan {
		h.setDC(dc, modeHang) // a continent that swallows requests
	}
	if r := h.getUser(id); r.StatusCode() != fasthttp.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", r.StatusCode())
	}
	var tried []string
	for _, dc := range plan {
		if h.hits(dc) > 0 {
			tried = append(tried, dc)
		}
	}
	st := h.srv.Stats()
	if len(tried) != 2 || tried[0] != plan[0] || tried[1] != plan[1] || st.Retries.Load() != 1 || st.RetriesOutOfTime.Load() != 1 {
		t.Fatalf("tried %v (plan %v), %d retries, %d out of time; want the first two: the retry got the quarter attempt left, and no third was made",
			tried, plan, st.Retries.Load(), st.RetriesOutOfTime.Load())
	}
	for _, p := range h.srv.cur.Load().pools {
		for _, u := range p.upstreams {
			hit := h.backends[u.addr].hits.Load() > 0
			switch state := u.breaker.State(); {
			case p.name == plan[0] && hit && state != gobreaker.StateOpen:
				t.Errorf("%s's breaker is %v after an attempt that timed out with its whole upstream.timeout, want open", u.addr, state)
			case p.name == plan[1] && state != gobreaker.StateClosed:
				t.Errorf("%s's breaker is %v after an attempt the request's deadline cut short, want closed", u.addr, state)
			}
		}
	}
}

// A reload whose capacities change the continents' shares would rehome
// buckets whose data has not moved, from this node alone: it is refused,
// naming the way (continents[].share). With shares set, capacities change
// freely.
func TestReloadThatRehomesBucketsIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	bigger := func(c *configs.Config) { c.Datacenters[0].Capacity = 150 } // us-a: the US share grows
	err := h.srv.Reload(testConfig(t, bigger), nil)
	if err == nil || !strings.Contains(err.Error(), "rehome") || !strings.Contains(err.Error(), "continents[].share") {
		t.Fatalf("reload with a US capacity raised: %v, want refused, naming continents[].share", err)
	}
	shared := func(c *configs.Config) {
		c.Continents[0].Share, c.Continents[1].Share = 250, 160 // the capacities' sums: the same split
	}
	if err := h.srv.Reload(testConfig(t, shared), nil); err != nil {
		t.Fatalf("reload that sets the shares the capacities gave: %v", err)
	}
	if err := h.srv.Reload(testConfig(t, func(c *configs.Config) { shared(c); bigger(c) }), nil); err != nil {
		t.Fatalf("reload of a capacity with the shares set: %v", err)
	}
	if err := h.srv.Reload(testConfig(t, func(c *configs.Config) { c.Continents[0].Share, c.Continents[1].Share = 250, 300 }), nil); err == nil {
		t.Fatal("a reload that changes the shares themselves was applied")
	}
}

// A retry that had most of an attempt's time (here all but the moment a
// refused dial took) and timed out counts against its breaker: a
// datacenter that swallows requests is taken out during a failover too.
func TestARetryWithMostOfItsTimeCountsItsTimeout(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) {
		c.Upstream.Timeout = hangTimeout
		c.Upstream.RequestTimeout = hangTimeout
		c.Upstream.Breaker.ConsecutiveFailures = 1
	})
	id, plan := h.userWhosePlanStartsWith("us-b")
	h.setDC(plan[0], modeRefuse) // never sent: no time spent
	h.setDC(plan[1], modeHang)
	if r := h.getUser(id); r.StatusCode() != fasthttp.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", r.StatusCode())
	}
	for _, p := range h.srv.cur.Load().pools {
		for _, u := range p.upstreams {
			if p.name == plan[1] && h.backends[u.addr].hits.Load() > 0 && u.breaker.State() != gobreaker.StateOpen {
				t.Errorf("%s timed out with nearly all of its time, and its breaker is %v, want open", u.addr, u.breaker.State())
			}
		}
	}
}
