package proxy

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
)

// The budget lets retries reach its share of the last two seconds'
// requests (or the floor), no more, and renews as seconds pass.
func TestRetryBudget(t *testing.T) {
	var requests atomic.Uint64
	b := retryBudget{requests: &requests}
	allowed := func(now int64, n int) (ok int) {
		for range n {
			if b.allow(now, 0.2) {
				ok++
			}
		}
		return ok
	}
	requests.Add(1000)
	if got := allowed(100, 500); got != 2*minRetriesPerSecond {
		t.Fatalf("the first second: %d retries allowed, want the floor %d (the requests before it do not count)", got, 2*minRetriesPerSecond)
	}
	requests.Add(1000) // a second of 1000 requests
	if got := allowed(101, 500); got != 200-2*minRetriesPerSecond {
		t.Fatalf("after a second of 1000 requests: %d more retries allowed, want %d (20%% of them, less those spent)", got, 200-2*minRetriesPerSecond)
	}
	if got := allowed(105, 500); got != 2*minRetriesPerSecond {
		t.Fatalf("after a quiet gap: %d retries allowed, want the floor", got)
	}
	// A caller late with its second does not take the budget back to it
	// (and reset it): seconds 104 and 105 alternating spend one budget.
	got := 0
	for i := range 500 {
		if b.allow(int64(104+i%2), 0.2) {
			got++
		}
	}
	if got != 0 {
		t.Fatalf("with the budget spent, %d retries allowed to callers alternating between seconds", got)
	}
	var quiet retryBudget
	quiet.requests = &requests
	if quiet.allow(1000, 0) {
		t.Fatal("upstream.retry_budget 0 allowed a retry of shed load (the 10 a second floor is for a budget)")
	}
}

// Under overload (the web tier answering 503 itself) a datacenter's
// failed requests are retried only up to the budget; the rest get the
// upstream's own answer, counted in socialroute_retries_denied_total. A
// datacenter that dies (refusing connections) has every request retried:
// it costs no idempotent request.
func TestRetriesStopAtTheBudget(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) {
		c.Upstream.RetryBudget = new(0.2)
		c.Upstream.Timeout = 50 * time.Millisecond
		c.Upstream.Breaker.ConsecutiveFailures = 1 << 20 // the breakers stay closed: every request fails
		c.Upstream.Breaker.MinRequests = 1 << 20
	})
	id, plan := h.userWhosePlanStartsWith("us-b")
	h.setDC(plan[0], mode503)
	ok, failed := 0, 0
	for range 200 {
		switch h.getUser(id).StatusCode() {
		case 200:
			ok++ // retried on the next datacenter
		case 503:
			failed++
		}
	}
	retries, denied := h.srv.stats.Retries.Load(), h.srv.stats.RetriesDenied.Load()
	t.Logf("%d retried and served, %d denied", ok, failed)
	if retries > 45 || denied < 150 || ok+failed != 200 || uint64(ok) != retries || uint64(failed) != denied {
		t.Fatalf("200 failing requests: %d retries (%d served), %d denied (%d 503s); want about 20%% retried (40 at most over two seconds)", retries, ok, denied, failed)
	}
	// The budget is spent; a datacenter that stops answering (timeouts,
	// as one that died with its connections open) still has every
	// request retried.
	h.setDC(plan[0], modeHang)
	for i := range 30 {
		if code := h.getUser(id).StatusCode(); code != 200 {
			t.Fatalf("request %d to a datacenter that stopped answering: %d, want 200 (retried past the budget)", i, code)
		}
	}
}
