package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/socialroute/socialroute/hashing"
	"github.com/valyala/fasthttp"
)

// HeaderServedBy is the response header in which the simulated web tier
// names the datacenter that served a request.
const HeaderServedBy = "X-Served-By"

// HeaderCacheHits and HeaderCacheMisses carry, on every answer of a
// datacenter with a cache, how many of the users' data the request read
// were in the datacenter's cache and how many were not. The load generator
// adds them up per phase, so it needs no access to the web tier itself.
const (
	HeaderCacheHits   = "X-Cache-Hits"
	HeaderCacheMisses = "X-Cache-Misses"
)

// Web server settings of the simulated tier.
const (
	// webIdleTimeout closes keep-alive connections idle this long; it is
	// above the proxy's default MaxIdleConnDuration (4s), as a real web
	// tier's keep-alive must be.
	webIdleTimeout = 30 * time.Second
	// webReadTimeout bounds reading one request.
	webReadTimeout = 10 * time.Second
	// webIdleWorker is fasthttp's MaxIdleWorkerDuration. Its worker pool
	// sleeps this long between clean-ups and notices a stop only then, so
	// it bounds how long a stopped server's last goroutine lingers
	// (fasthttp's default is 10s).
	webIdleWorker = 100 * time.Millisecond
	// maxSlowDelay bounds Slow: a simulated slowdown, not a hang.
	maxSlowDelay = time.Minute
)

// ErrUnknownDatacenter is returned by WebTier methods given a datacenter the
// tier does not simulate.
var ErrUnknownDatacenter = errors.New("loadtest: unknown datacenter")

// FailMode is how a failed datacenter behaves.
type FailMode uint8

const (
	// FailCrash kills the datacenter as a crash would: its listeners and
	// open connections close, so requests in flight fail and new
	// connections are refused.
	FailCrash FailMode = iota
	// FailError keeps the datacenter reachable but has it answer every
	// request 503 Service Unavailable at once, as a web tier whose
	// backends are gone does.
	FailError
)

func (m FailMode) String() string {
	if m == FailError {
		return "error"
	}
	return "crash"
}

// ParseFailMode reads "crash" or "error" ("" is crash).
func ParseFailMode(s string) (FailMode, error) {
	switch s {
	case "", "crash":
		return FailCrash, nil
	case "error":
		return FailError, nil
	}
	return 0, fmt.Errorf("loadtest: fail mode %q: want crash or error", s)
}

// WebTierOptions configure StartWebTier.
type WebTierOptions struct {
	// Upstreams maps each datacenter's name to its upstream addresses
	// (host:port). An address with port 0 listens on a free port of that
	// host; Addrs tells which. An address may be listed twice only with
	// port 0.
	Upstreams map[string][]string
	// Graph is the follower graph behind the requests: a request for
	// /users/U/... reads U's data and that of every account U follows; a
	// request for /accounts/A/... reads A's. Nil: a request reads only
	// the user in its path.
	Graph *hashing.Graph
	// CacheSize is each datacenter's LRU cache of users' data, in users.
	// A datacenter missing or at 0 has no cache and counts nothing.
	CacheSize map[string]int
}

// WebTier simulates the web tier of several datacenters in one process: for
// each datacenter, one fasthttp server per upstream address, in front of an
// LRU cache of users' data shared by the datacenter's servers. Every
// answer names the datacenter that served it (X-Served-By) and how many of
// the users' data it read came from the cache (X-Cache-Hits,
// X-Cache-Misses); answers, hits and misses are counted per datacenter.
//
// A datacenter can be failed (Fail: crashed or answering 503), slowed down
// (Slow) and recovered (Recover: same addresses, cache as it was), from Go
// or over the control endpoint (ServeControl). Methods are safe for
// concurrent use; Fail, Recover and Close wait until the servers they stop
// are gone.
type WebTier struct {
	mu      sync.Mutex // serialises Fail, Recover, ServeControl and Close
	dcs     map[string]*simDC
	graph   *hashing.Graph
	control *controlServer
	closed  bool
}

// simDC is one simulated datacenter.
type simDC struct {
	name  string
	addrs []string // resolved host:port, fixed at start
	body  []byte
	graph *hashing.Graph

	served   atomic.Uint64
	errored  atomic.Uint64 // answered 503 while failed in error mode
	hits     atomic.Uint64
	misses   atomic.Uint64
	delay    atomic.Int64 // nanoseconds added to every answer
	erroring atomic.Bool  // failed in error mode

	cacheMu sync.Mutex
	cache   *lru // nil: no cache

	hosts []*webHost // running servers; nil while crashed (WebTier.mu)
}

// NewWebTier starts a web tier without a graph or caches: upstreams maps
// each datacenter's name to its upstream addresses. See StartWebTier.
func NewWebTier(upstreams map[string][]string) (*WebTier, error) {
	return StartWebTier(WebTierOptions{Upstreams: upstreams})
}

// StartWebTier starts the web tier o describes. On error nothing is left
// running.
func StartWebTier(o WebTierOptions) (*WebTier, error) {
	w := &WebTier{dcs: make(map[string]*simDC, len(o.Upstreams)), graph: o.Graph}
	for name := range o.CacheSize {
		if _, ok := o.Upstreams[name]; !ok {
			return nil, fmt.Errorf("%w %q in CacheSize", ErrUnknownDatacenter, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.Upstreams)) {
		addrs := o.Upstreams[name]
		if len(addrs) == 0 {
			w.Close()
			return nil, fmt.Errorf("loadtest: datacenter %q has no upstream address", name)
		}
		d := &simDC{name: name, body: []byte("served by " + name + "\n"), graph: o.Graph}
		if n := o.CacheSize[name]; n > 0 {
			d.cache = newLRU(n)
		}
		w.dcs[name] = d
		hosts, err := d.listen(addrs)
		if err != nil {
			w.Close()
			return nil, err
		}
		d.hosts = hosts
		for _, h := range hosts {
			d.addrs = append(d.addrs, h.ln.Addr().String())
		}
	}
	return w, nil
}

// listen starts one server per address, or none if any address fails.
func (d *simDC) listen(addrs []string) ([]*webHost, error) {
	hosts := make([]*webHost, 0, len(addrs))
	for _, addr := range addrs {
		h, err := startWebHost(addr, d.handle)
		if err != nil {
			stopAll(hosts)
			return nil, fmt.Errorf("loadtest: datacenter %s: %w", d.name, err)
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// handle answers every request of datacenter d.
func (d *simDC) handle(ctx *fasthttp.RequestCtx) {
	if delay := d.delay.Load(); delay > 0 {
		time.Sleep(time.Duration(delay))
	}
	h := &ctx.Response.Header
	h.Set(HeaderServedBy, d.name)
	ctx.SetContentType("text/plain; charset=utf-8")
	if d.erroring.Load() {
		d.errored.Add(1)
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString("simulated failure of " + d.name + "\n")
		return
	}
	d.served.Add(1)
	if d.cache != nil {
		hits, misses := d.read(ctx.Path())
		var buf [20]byte
		h.SetBytesV(HeaderCacheHits, strconv.AppendUint(buf[:0], uint64(hits), 10))
		h.SetBytesV(HeaderCacheMisses, strconv.AppendUint(buf[:0], uint64(misses), 10))
	}
	ctx.SetBody(d.body)
}

// read reads the users' data the request for path needs through d's
// cache: for /users/U/..., U and every account U follows; for
// /accounts/A/..., A; for anything else, nothing.
func (d *simDC) read(path []byte) (hits, misses int) {
	kind, u, ok := parseUserPath(path)
	if !ok {
		return 0, 0
	}
	var follows []uint32
	if kind == pathUsers && d.graph != nil {
		if i, ok := d.graph.Index(u); ok {
			follows = d.graph.Following(i)
		}
	}
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
	count := func(hit bool) {
		if hit {
			hits++
		} else {
			misses++
		}
	}
	count(d.cache.touch(u))
	for _, v := range follows {
		count(d.cache.touch(d.graph.ID(int(v))))
	}
	d.hits.Add(uint64(hits))
	d.misses.Add(uint64(misses))
	return hits, misses
}

// Path kinds the web tier reads users' data for.
const (
	pathUsers    = 1 // /users/U/...: a viewer's request
	pathAccounts = 2 // /accounts/A/...: a request about account A
)

// parseUserPath finds the user in /users/U/... or /accounts/U/...: a
// decimal id as itself, any other segment by its xxhash (so it still has
// data of its own). It does not allocate.
func parseUserPath(path []byte) (kind int, user uint64, ok bool) {
	var rest []byte
	switch {
	case bytes.HasPrefix(path, []byte("/users/")):
		kind, rest = pathUsers, path[len("/users/"):]
	case bytes.HasPrefix(path, []byte("/accounts/")):
		kind, rest = pathAccounts, path[len("/accounts/"):]
	default:
		return 0, 0, false
	}
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	if len(rest) == 0 {
		return 0, 0, false
	}
	if id, ok := parseUint(rest); ok {
		return kind, id, true
	}
	return kind, xxhash.Sum64(rest), true
}

// parseUint parses a decimal uint64 without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// Datacenters lists the simulated datacenters' names, sorted.
func (w *WebTier) Datacenters() []string { return slices.Sorted(maps.Keys(w.dcs)) }

// Addrs returns the addresses datacenter dc listens on (while up), with the
// real ports; nil for an unknown datacenter.
func (w *WebTier) Addrs(dc string) []string {
	if d, ok := w.dcs[dc]; ok {
		return slices.Clone(d.addrs)
	}
	return nil
}

// Served returns how many requests each datacenter has answered so far
// (not counting 503s while failed in error mode).
func (w *WebTier) Served() map[string]uint64 {
	out := make(map[string]uint64, len(w.dcs))
	for name, d := range w.dcs {
		out[name] = d.served.Load()
	}
	return out
}

// DCStats is one simulated datacenter's state and counters.
type DCStats struct {
	Name string `json:"name"`
	// State is "up", "crashed" or "erroring"; Delay is the slowdown added
	// to every answer.
	State string        `json:"state"`
	Delay time.Duration `json:"delay_ns"`
	// Addrs are its web servers' addresses.
	Addrs []string `json:"addrs"`
	// Served counts answers, Errored the 503s of error mode.
	Served  uint64 `json:"served"`
	Errored uint64 `json:"errored"`
	// CacheSize is the cache's capacity in users (0: no cache),
	// CacheUsers how many it holds; Hits and Misses count reads of users'
	// data.
	CacheSize  int     `json:"cache_size"`
	CacheUsers int     `json:"cache_users"`
	Hits       uint64  `json:"cache_hits"`
	Misses     uint64  `json:"cache_misses"`
	HitRatio   float64 `json:"cache_hit_ratio"`
}

// Stats returns every datacenter's state and counters, sorted by name.
func (w *WebTier) Stats() []DCStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]DCStats, 0, len(w.dcs))
	for _, name := range slices.Sorted(maps.Keys(w.dcs)) {
		d := w.dcs[name]
		s := DCStats{
			Name: name, State: "up", Delay: time.Duration(d.delay.Load()), Addrs: slices.Clone(d.addrs),
			Served: d.served.Load(), Errored: d.errored.Load(), Hits: d.hits.Load(), Misses: d.misses.Load(),
		}
		switch {
		case d.hosts == nil:
			s.State = "crashed"
		case d.erroring.Load():
			s.State = "erroring"
		}
		if d.cache != nil {
			d.cacheMu.Lock()
			s.CacheSize, s.CacheUsers = d.cache.Cap(), d.cache.Len()
			d.cacheMu.Unlock()
		}
		s.HitRatio = ratio(float64(s.Hits), float64(s.Hits+s.Misses))
		out = append(out, s)
	}
	return out
}

// ResetStats zeroes every datacenter's counters; caches keep their
// contents.
func (w *WebTier) ResetStats() {
	for _, d := range w.dcs {
		d.served.Store(0)
		d.errored.Store(0)
		d.hits.Store(0)
		d.misses.Store(0)
	}
}

// ResetCaches empties every datacenter's cache.
func (w *WebTier) ResetCaches() {
	for _, d := range w.dcs {
		if d.cache != nil {
			d.cacheMu.Lock()
			d.cache.reset()
			d.cacheMu.Unlock()
		}
	}
}

func (w *WebTier) dc(name string) (*simDC, error) {
	d, ok := w.dcs[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownDatacenter, name)
	}
	return d, nil
}

// Fail takes datacenter dc down as a crash would (FailCrash). Failing a
// datacenter that is down does nothing.
func (w *WebTier) Fail(dc string) error { return w.FailWith(dc, FailCrash) }

// FailWith takes datacenter dc down in the given mode: FailCrash closes
// its listeners, so new connections are refused, and its open connections,
// so requests in flight fail; FailError has it answer 503 to everything.
// Recover undoes either.
func (w *WebTier) FailWith(dc string, mode FailMode) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.dc(dc)
	if err != nil {
		return err
	}
	switch mode {
	case FailCrash:
		stopAll(d.hosts)
		d.hosts = nil
	case FailError:
		d.erroring.Store(true)
	default:
		return fmt.Errorf("loadtest: unknown fail mode %d", mode)
	}
	return nil
}

// Slow adds delay to every answer of datacenter dc (0 removes it), at
// most a minute.
func (w *WebTier) Slow(dc string, delay time.Duration) error {
	d, err := w.dc(dc)
	if err != nil {
		return err
	}
	if delay < 0 || delay > maxSlowDelay {
		return fmt.Errorf("loadtest: slowdown %v: want 0 to %v", delay, maxSlowDelay)
	}
	d.delay.Store(int64(delay))
	return nil
}

// Recover brings datacenter dc back to normal: a crashed datacenter
// listens again on the addresses it had, an erroring one answers again,
// a slowed one answers at full speed; its cache is as it was. It fails if
// something took one of its addresses meanwhile (another listener, or the
// local end of an outgoing connection given that port); then dc stays
// crashed. Recovering a datacenter that is up does nothing.
func (w *WebTier) Recover(dc string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, err := w.dc(dc)
	if err != nil {
		return err
	}
	if w.closed {
		return errors.New("loadtest: web tier closed")
	}
	d.erroring.Store(false)
	d.delay.Store(0)
	if d.hosts != nil {
		return nil
	}
	hosts, err := d.listen(d.addrs)
	if err != nil {
		return err
	}
	d.hosts = hosts
	return nil
}

// Close stops every server, the control endpoint, and closes every
// connection. It is idempotent.
func (w *WebTier) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	var all []*webHost
	for _, d := range w.dcs {
		all = append(all, d.hosts...)
		d.hosts = nil
	}
	stopAll(all)
	if w.control != nil {
		w.control.close()
		w.control = nil
	}
}

// webHost is one upstream address: a fasthttp server and its listener.
type webHost struct {
	srv    *fasthttp.Server
	ln     *trackingListener
	served chan struct{} // closed when Serve returns
}

func startWebHost(addr string, handler fasthttp.RequestHandler) (*webHost, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	h := &webHost{
		srv: &fasthttp.Server{
			Handler:               handler,
			Name:                  "socialroute-webtier",
			ReadTimeout:           webReadTimeout,
			IdleTimeout:           webIdleTimeout,
			Logger:                quietLogger{}, // killed connections are the point, not news
			MaxIdleWorkerDuration: webIdleWorker,
		},
		ln:     &trackingListener{Listener: ln, conns: map[*trackedConn]struct{}{}},
		served: make(chan struct{}),
	}
	go func() {
		defer close(h.served)
		_ = h.srv.Serve(h.ln)
	}()
	return h, nil
}

// stop kills h: listener and connections first, abruptly, then waits until
// the server's goroutines are done.
func (h *webHost) stop() {
	h.ln.closeAll()
	// With the listener and every connection closed, Shutdown only waits
	// for the server's connection handlers to notice. The timeout is a
	// guard; it is not expected to run out.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = h.srv.ShutdownWithContext(ctx)
	cancel()
	<-h.served
}

// stopAll stops hosts in parallel: each stop may wait for a server tick.
func stopAll(hosts []*webHost) {
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(h.stop)
	}
	wg.Wait()
}

// trackingListener remembers the connections it accepted so that a
// simulated crash can close them all at once.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// Close closes the listener; connections stay open. Idempotent.
func (l *trackingListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.Listener.Close()
}

// closeAll closes the listener and every connection it accepted.
func (l *trackingListener) closeAll() {
	_ = l.Close()
	l.mu.Lock()
	conns := l.conns
	l.conns = map[*trackedConn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}

// quietLogger drops fasthttp's own messages.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
