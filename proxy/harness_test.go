package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// Backend modes: how a fake upstream behaves.
const (
	modeOK     = iota // 200, body "ok from <dc>"
	modeRefuse        // connection refused: a dead datacenter
	mode503           // answers 503
	modeHang          // answers after hangFor
)

// hangFor is how long a hanging upstream takes to answer, and
// hangTimeout the upstream timeout a test sets when it wants that hang to
// time out. The harness's own timeout is seconds, so that on a loaded
// machine no upstream that answers is taken for a hung one; the gap
// between these two is what a timeout test's margin is.
const (
	hangFor     = time.Second
	hangTimeout = 200 * time.Millisecond
)

// maxTestAttempts bounds the attempts of a harness request: retries at
// most 5, and the first.
const maxTestAttempts = 6

// backend is one fake web server of a datacenter, on an in-memory listener.
type backend struct {
	addr, dc string
	ln       *fasthttputil.InmemoryListener
	srv      *fasthttp.Server
	mode     atomic.Int32
	hits     atomic.Int64

	mu   sync.Mutex
	last fasthttp.Request // copy of the last request received
	resp func(*fasthttp.RequestCtx)
}

// harness is a proxy Server on an in-memory listener in front of fake
// backends: 3 US datacenters and 2 EU ones, two upstreams each.
type harness struct {
	t        *testing.T
	srv      *Server
	ln       *fasthttputil.InmemoryListener
	cfg      *configs.Config
	backends map[string]*backend // by address
	client   *fasthttp.HostClient

	// wire records every byte the proxy sent any upstream, and every
	// address it dialed: what the web tier received, before any parsing.
	wireMu sync.Mutex
	wire   bytes.Buffer
	dialed []string

	logs *syncBuffer // the server's warnings and errors
}

// sent returns what the proxy wrote to upstreams so far, and the addresses
// it dialed.
func (h *harness) sent() (string, []string) {
	h.wireMu.Lock()
	defer h.wireMu.Unlock()
	return h.wire.String(), append([]string(nil), h.dialed...)
}

// recordingConn copies what the proxy writes into the harness's wire log.
type recordingConn struct {
	net.Conn
	h *harness
}

func (c recordingConn) Write(p []byte) (int, error) {
	c.h.wireMu.Lock()
	c.h.wire.Write(p)
	c.h.wireMu.Unlock()
	return c.Conn.Write(p)
}

// testConfig is the harness topology, defaults applied and validated.
func testConfig(t testing.TB, mutate func(*configs.Config)) *configs.Config {
	t.Helper()
	cfg := &configs.Config{
		Node:    configs.Node{Name: "test-node", Datacenter: "us-a"},
		Buckets: 1024,
		Continents: []configs.Continent{
			{Name: "us"}, {Name: "eu"},
		},
		Routing: configs.Routing{Rules: []configs.Rule{
			{Path: "/accounts/{key}"},
			{Header: "X-User-ID"},
			{Cookie: "uid"},
			{Query: "user_id", PathPrefix: "/search"},
		}},
	}
	for _, d := range []struct {
		name, cont string
		capacity   float64
	}{{"us-a", "us", 100}, {"us-b", "us", 100}, {"us-c", "us", 50}, {"eu-a", "eu", 100}, {"eu-b", "eu", 60}} {
		cfg.Datacenters = append(cfg.Datacenters, configs.Datacenter{
			Name: d.name, Continent: d.cont, Capacity: d.capacity,
			Upstreams: []string{d.name + "-1.test:80", d.name + "-2.test:80"},
		})
	}
	cfg.Routing.DrainRamp = time.Nanosecond // drains act at once unless a test ramps them
	cfg.Hot.DetectRate = -1                 // no hot-key detection unless a test turns it on
	cfg.Upstream.Timeout = 5 * time.Second
	cfg.Upstream.Breaker.ConsecutiveFailures = 3
	cfg.Upstream.Breaker.OpenFor = 10 * time.Minute // tests re-open breakers by rebuilding, never by waiting
	if mutate != nil {
		mutate(cfg)
	}
	if cfg.Upstream.RequestTimeout == 0 {
		// Every retry gets the whole upstream.timeout, however short a
		// test made it: on a loaded machine what is left of a default
		// request_timeout (half an attempt) would time out answers too.
		// Tests of the request's deadline set it.
		cfg.Upstream.RequestTimeout = cfg.Upstream.Timeout * time.Duration(maxTestAttempts)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	return cfg
}

func newHarness(t *testing.T, mutate func(*configs.Config)) *harness {
	return newHarnessWithTable(t, mutate, nil)
}

func newHarnessWithTable(t *testing.T, mutate func(*configs.Config), table *hashing.Table) *harness {
	t.Helper()
	h := &harness{t: t, cfg: testConfig(t, mutate), backends: map[string]*backend{}, logs: &syncBuffer{}}
	for _, d := range h.cfg.Datacenters {
		for _, addr := range d.Upstreams {
			b := &backend{addr: addr, dc: d.Name, ln: fasthttputil.NewInmemoryListener()}
			b.srv = &fasthttp.Server{Handler: b.handle, Logger: quiet{}}
			go b.srv.Serve(b.ln) //nolint:errcheck // ends with Close
			h.backends[addr] = b
			t.Cleanup(func() { b.ln.Close() })
		}
	}
	srv, err := New(h.cfg, table, Options{
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Dial:   h.dial,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	h.ln = fasthttputil.NewInmemoryListener()
	go srv.Serve(h.ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { h.ln.Close() })
	h.client = &fasthttp.HostClient{
		Addr: "proxy.test",
		Dial: func(string) (net.Conn, error) {
			return h.ln.DialWithLocalAddr(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000})
		},
		NoDefaultUserAgentHeader: true,
		ReadTimeout:              5 * time.Second,
		ReadBufferSize:           64 << 10, // what the proxy may pass on of an upstream's headers
	}
	return h
}

// dial connects the proxy to a fake backend, refusing like a dead host
// when the backend is in modeRefuse.
func (h *harness) dial(addr string) (net.Conn, error) {
	h.wireMu.Lock()
	h.dialed = append(h.dialed, addr)
	h.wireMu.Unlock()
	b, ok := h.backends[addr]
	if !ok || b.mode.Load() == modeRefuse {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("connection refused")}
	}
	c, err := b.ln.Dial()
	if err != nil {
		return nil, err
	}
	return recordingConn{Conn: c, h: h}, nil
}

func (b *backend) handle(ctx *fasthttp.RequestCtx) {
	if b.mode.Load() == modeRefuse {
		// A dead server: pooled connections to it break too.
		ctx.Conn().Close()
		return
	}
	b.hits.Add(1)
	b.mu.Lock()
	ctx.Request.CopyTo(&b.last)
	custom := b.resp
	b.mu.Unlock()
	switch b.mode.Load() {
	case mode503:
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		return
	case modeHang:
		time.Sleep(hangFor)
	}
	ctx.Response.Header.Set("X-Served-By", b.dc)
	if custom != nil {
		custom(ctx)
		return
	}
	ctx.SetBodyString("ok from " + b.dc)
}

// setDC puts every backend of datacenter dc in mode m.
func (h *harness) setDC(dc string, m int32) {
	for _, b := range h.backends {
		if b.dc == dc {
			b.mode.Store(m)
		}
	}
}

// hits counts requests the backends of dc received; "" counts all.
func (h *harness) hits(dc string) int64 {
	var n int64
	for _, b := range h.backends {
		if dc == "" || b.dc == dc {
			n += b.hits.Load()
		}
	}
	return n
}

// lastRequest returns a copy of the last request a backend of dc received.
func (h *harness) lastRequest(dc string) *fasthttp.Request {
	var req fasthttp.Request
	found := false
	for _, b := range h.backends {
		b.mu.Lock()
		if b.dc == dc && b.hits.Load() > 0 && !found {
			b.last.CopyTo(&req)
			found = true
		}
		b.mu.Unlock()
	}
	if !found {
		h.t.Fatalf("no backend of %s received a request", dc)
	}
	return &req
}

// get sends one request through the proxy; prepare sets it up.
func (h *harness) do(method, uri string, prepare func(*fasthttp.Request)) *fasthttp.Response {
	h.t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://proxy.test" + uri)
	if prepare != nil {
		prepare(req)
	}
	resp := &fasthttp.Response{}
	if err := h.client.Do(req, resp); err != nil {
		h.t.Fatalf("%s %s: %v", method, uri, err)
	}
	return resp
}

// getUser sends GET / as user id.
func (h *harness) getUser(id int) *fasthttp.Response {
	return h.do("GET", "/feed", func(r *fasthttp.Request) { r.Header.Set("X-User-ID", strconv.Itoa(id)) })
}

// raw writes a request as bytes on a fresh connection and returns the
// status line and headers of the answer.
func (h *harness) raw(request string) string {
	h.t.Helper()
	c, err := h.ln.Dial()
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		h.t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		h.t.Fatalf("reading the answer to %q: %v", request, err)
	}
	return strconv.Itoa(resp.StatusCode()) + " " + string(resp.Body())
}

// datacenterOf returns the datacenter the proxy says served resp.
func datacenterOf(resp *fasthttp.Response) string { return string(resp.Header.Peek(headerDC)) }

// bucketOf returns the bucket the proxy says resp's request had.
func bucketOf(t testing.TB, resp *fasthttp.Response) uint32 {
	b, err := strconv.Atoi(string(resp.Header.Peek(headerBucket)))
	if err != nil {
		t.Fatalf("no bucket header in %s", resp.Header.String())
	}
	return uint32(b)
}

// planNames lists a bucket's plan by datacenter name.
func (h *harness) planNames(bucket uint32) []string {
	snap := h.srv.Placement().Load()
	var out []string
	for _, dc := range snap.Plan(bucket) {
		out = append(out, snap.Topology().Datacenters[dc].Name)
	}
	return out
}

// quiet drops fasthttp's logs of connections the tests break on purpose.
type quiet struct{}

func (quiet) Printf(string, ...any) {}
