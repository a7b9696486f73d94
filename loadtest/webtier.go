package loadtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// HeaderServedBy is the response header in which the simulated web tier
// names the datacenter that served a request.
const HeaderServedBy = "X-Served-By"

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
)

// ErrUnknownDatacenter is returned by WebTier methods given a datacenter the
// tier does not simulate.
var ErrUnknownDatacenter = errors.New("loadtest: unknown datacenter")

// WebTier simulates the web tier of several datacenters in one process: for
// each datacenter, one fasthttp server per upstream address. Every answer is
// 200 with a header X-Served-By naming the datacenter and a short body, and
// is counted per datacenter.
//
// Fail kills a datacenter: its listeners and open connections are closed,
// so requests in flight fail and new connections are refused. Recover
// brings it back on the same addresses. Methods are safe for concurrent
// use; Fail, Recover and Close wait until the servers they stop are gone.
type WebTier struct {
	mu     sync.Mutex // serialises Fail, Recover and Close
	dcs    map[string]*simDC
	closed bool
}

// simDC is one simulated datacenter.
type simDC struct {
	name   string
	addrs  []string // resolved host:port, fixed at start
	body   []byte
	served atomic.Uint64
	hosts  []*webHost // running servers; nil while failed
}

// NewWebTier starts the web tier: upstreams maps each datacenter's name to
// its upstream addresses (host:port). An address with port 0 listens on a
// free port of that host; Addrs tells which. An address may be listed twice
// only with port 0. On error nothing is left running.
func NewWebTier(upstreams map[string][]string) (*WebTier, error) {
	w := &WebTier{dcs: make(map[string]*simDC, len(upstreams))}
	for _, name := range slices.Sorted(maps.Keys(upstreams)) {
		addrs := upstreams[name]
		if len(addrs) == 0 {
			w.Close()
			return nil, fmt.Errorf("loadtest: datacenter %q has no upstream address", name)
		}
		d := &simDC{name: name, body: []byte("served by " + name + "\n")}
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
	d.served.Add(1)
	ctx.Response.Header.Set(HeaderServedBy, d.name)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBody(d.body)
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

// Served returns how many requests each datacenter has answered so far.
func (w *WebTier) Served() map[string]uint64 {
	out := make(map[string]uint64, len(w.dcs))
	for name, d := range w.dcs {
		out[name] = d.served.Load()
	}
	return out
}

// Fail takes datacenter dc down as a crash would: its listeners close, so
// new connections are refused, and so do its open connections, so requests
// in flight fail. Failing a datacenter that is down does nothing.
func (w *WebTier) Fail(dc string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, ok := w.dcs[dc]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownDatacenter, dc)
	}
	stopAll(d.hosts)
	d.hosts = nil
	return nil
}

// Recover brings datacenter dc back on the addresses it had. It fails if
// something took one of them meanwhile (another listener, or the local end
// of an outgoing connection given that port); then dc stays down.
// Recovering a datacenter that is up does nothing.
func (w *WebTier) Recover(dc string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, ok := w.dcs[dc]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownDatacenter, dc)
	}
	if w.closed {
		return errors.New("loadtest: web tier closed")
	}
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

// Close stops every server and closes every connection. It is idempotent.
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
