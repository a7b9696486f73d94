//go:build !race

package proxy

import "testing"

// The routing core's decision must not allocate: it runs for every request.
func TestRouteDoesNotAllocate(t *testing.T) {
	r := benchServer(t, benchTable(t, 10_000, 1024)).Router()
	keys := benchKeys(10_000)
	var d Decision
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		r.Route(keys[i&4095], &d)
		i++
	})
	if allocs != 0 {
		t.Fatalf("Route allocates %.2f times per call", allocs)
	}
	allocs = testing.AllocsPerRun(100, func() { r.Route(nil, &d) })
	if allocs != 0 {
		t.Fatalf("Route of a keyless request allocates %.2f times per call", allocs)
	}
}

// The whole request path, key extraction to rewritten response, must not
// allocate in steady state (after the first requests warmed the pools).
func TestRequestPathDoesNotAllocate(t *testing.T) {
	s, ctx := handleFixture(t)
	for range 10 {
		s.handle(ctx)
	}
	allocs := testing.AllocsPerRun(1000, func() { s.handle(ctx) })
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	if allocs != 0 {
		t.Fatalf("the request path allocates %.2f times per request", allocs)
	}
}
