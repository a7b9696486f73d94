//go:build !race

package proxy

import (
	"log/slog"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
)

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
		serveAgain(s, ctx)
	}
	allocs := testing.AllocsPerRun(1000, func() { serveAgain(s, ctx) })
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	if allocs != 0 {
		t.Fatalf("the request path allocates %.2f times per request", allocs)
	}
}

// Hot keys cost no allocation either: detection on every request, and a
// listed key spread over its siblings by viewer.
func TestHotKeyRoutingDoesNotAllocate(t *testing.T) {
	cfg := testConfig(t, withHotFile(t, "star,8000000\n", func(c *configs.Config) { c.Hot.DetectRate = 1e6 }))
	s, err := New(cfg, nil, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Router()
	star, viewer, other := []byte("star"), []byte("viewer-7"), []byte("someone")
	var d Decision
	allocs := testing.AllocsPerRun(1000, func() {
		r.RouteMethod(star, viewer, false, &d)
		r.RouteMethod(other, viewer, false, &d)
	})
	r.RouteMethod(star, viewer, false, &d)
	if allocs != 0 || d.Spread != 8 {
		t.Fatalf("hot-key routing allocates %.2f times per pair of requests (spread %d)", allocs, d.Spread)
	}
}

// A turn on a turnConn (a held write sent by the next Read, then the
// answer read) allocates nothing.
func TestTurnConnTurnDoesNotAllocate(t *testing.T) {
	eachWait(t, func(t *testing.T, inOrder bool) {
		c, peer := turnPair(t, inOrder)
		go echo(peer, 64)
		msg, buf := []byte("GET / HTTP/1.1\r\n\r\n"), make([]byte, 64)
		deadline := time.Now().Add(time.Minute)
		allocs := testing.AllocsPerRun(200, func() {
			_ = c.SetReadDeadline(deadline)
			_, _ = c.Write(msg)
			n := 0
			for n < len(msg) {
				m, err := c.Read(buf[n:])
				if err != nil {
					t.Fatal(err)
				}
				n += m
			}
		})
		if allocs != 0 {
			t.Fatalf("a turn allocates %.2f times", allocs)
		}
	})
}
