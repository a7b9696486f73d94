package proxy

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/socialroute/socialroute/hashing"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// benchTable builds a table of users "0".."users-1" spread over n buckets.
func benchTable(tb testing.TB, users int, n uint32) *hashing.Table {
	b, err := hashing.NewTableBuilder(n, users)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range users {
		if err := b.AddHash(hashing.HashString(strconv.Itoa(i)), uint32(i)%n); err != nil {
			tb.Fatal(err)
		}
	}
	t, err := b.Build()
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// benchKeys are routing keys, half of them in a table of `users` users.
func benchKeys(users int) [][]byte {
	keys := make([][]byte, 4096)
	for i := range keys {
		id := (i * 7919) % (2 * users) // every other key misses the table
		keys[i] = []byte(strconv.Itoa(id))
	}
	return keys
}

func benchServer(tb testing.TB, table *hashing.Table) *Server {
	cfg := testConfig(tb, nil)
	s, err := New(cfg, table, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkRoute is the routing core's decision: key -> bucket (table or
// xxhash) -> plan -> first usable datacenter.
func BenchmarkRoute(b *testing.B) {
	for _, users := range []int{0, 1_000_000} {
		b.Run(fmt.Sprintf("users=%.0e", float64(users)), func(b *testing.B) {
			var table *hashing.Table
			if users > 0 {
				table = benchTable(b, users, 1024)
			}
			r := benchServer(b, table).Router()
			keys := benchKeys(max(users, 1))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var d Decision
				i := 0
				for pb.Next() {
					r.Route(keys[i&4095], &d)
					if d.Next < 0 {
						b.Fatal("no datacenter")
					}
					i++
				}
			})
		})
	}
}

// BenchmarkHandle is the whole request path on one proxy: parse nothing
// (the request is built), extract the key, route, rewrite headers, forward
// to an in-memory upstream and rewrite the response.
func BenchmarkHandle(b *testing.B) {
	s, ctx := handleFixture(b)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serveAgain(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d", ctx.Response.StatusCode())
		}
	}
}

// handleFixture is a Server whose upstreams are in-memory fasthttp servers,
// and a RequestCtx for user 42 that handle can serve again and again.
func handleFixture(tb testing.TB) (*Server, *fasthttp.RequestCtx) {
	cfg := testConfig(tb, nil)
	lns := map[string]*fasthttputil.InmemoryListener{}
	for _, d := range cfg.Datacenters {
		for _, addr := range d.Upstreams {
			ln := fasthttputil.NewInmemoryListener()
			srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }}
			go srv.Serve(ln) //nolint:errcheck // ends with Close
			lns[addr] = ln
			tb.Cleanup(func() { ln.Close() })
		}
	}
	s, err := New(cfg, benchTable(tb, 10_000, 1024), Options{
		Logger: slog.New(slog.DiscardHandler),
		Dial:   func(addr string) (net.Conn, error) { return lns[addr].Dial() },
	})
	if err != nil {
		tb.Fatal(err)
	}
	var req fasthttp.Request
	req.SetRequestURI("/feed")
	req.Header.SetHost("edge.example")
	req.Header.Set("X-User-ID", "42")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}, nil)
	// The handler rewrites the request in place (strips, then sets the
	// same headers, and adds its Via), so serving the same ctx again, less
	// that Via, is steady state: see serveAgain.
	return s, ctx
}

// serveAgain serves ctx once more as if it had just come off the wire: the
// Via the last run added goes first, and the request time is now, as a
// server would set it (the upstream deadline counts from it).
func serveAgain(s *Server, ctx *fasthttp.RequestCtx) {
	ctx.Init2(ctx.Conn(), quiet{}, true)
	ctx.Request.Header.Del("Via")
	s.handle(ctx)
}
