package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/proxy"
	"github.com/valyala/fasthttp"
)

// Demo defaults and fixed settings.
const (
	DefaultDemoPhase          = 4 * time.Second
	DefaultDemoWorkers        = 16
	DefaultDemoUsers          = 50000
	DefaultDemoBreakerOpenFor = 1 * time.Second

	// DemoExample is the embedded topology the demo runs.
	DemoExample = "two-continents.yaml"
	// DemoFailedDatacenter is the datacenter the demo crashes: the largest
	// US site, so its loss shows the most.
	DemoFailedDatacenter = "us-west"

	// demoBreakerFailures opens an upstream's breaker after this many
	// failures in a row (the config's default is 5).
	demoBreakerFailures = 3
	// pollInterval is how often the failover watch reads the proxy.
	pollInterval = 10 * time.Millisecond
	// progressInterval is how often the progress line is refreshed.
	progressInterval = time.Second
	// demoShutdownTimeout bounds the proxy's drain at the end.
	demoShutdownTimeout = 5 * time.Second
)

// DemoOptions configure RunDemo. The zero value runs the default demo and
// prints nothing.
type DemoOptions struct {
	// Phase is how long each of the three phases lasts. Default 4s.
	Phase time.Duration
	// Workers is the number of closed-loop workers, each with one request
	// in flight at a time. Default 16.
	Workers int
	// Users is how many distinct users send requests: ids are drawn
	// uniformly from [0, Users). Default 50000.
	Users int
	// BreakerOpenFor is how long an upstream's open breaker turns requests
	// away before it lets a probe through; it bounds how long a recovered
	// datacenter waits for traffic. Default 1s (the config's own default,
	// 5s, is long for a demo).
	BreakerOpenFor time.Duration
	// Out receives the progress line and the report. Default: nothing is
	// printed.
	Out io.Writer
	// Logger receives the proxy's logs (breakers opening and closing are
	// warnings). Default: discarded, so that they do not break up the
	// progress line.
	Logger *slog.Logger
}

func (o *DemoOptions) applyDefaults() {
	if o.Phase <= 0 {
		o.Phase = DefaultDemoPhase
	}
	if o.Workers <= 0 {
		o.Workers = DefaultDemoWorkers
	}
	if o.Users <= 0 {
		o.Users = DefaultDemoUsers
	}
	if o.BreakerOpenFor <= 0 {
		o.BreakerOpenFor = DefaultDemoBreakerOpenFor
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// The demo's phases, in order.
const (
	phaseSteady = iota
	phaseDown
	phaseRecovered
	numPhases
)

// RunDemo runs socialroute's reference topology on this machine and tells
// what happens when a datacenter dies. It starts a simulated web tier for
// the eight datacenters of the embedded two-continents example (on
// 127.0.1.1-8, or 127.0.0.1 where those cannot be bound), a proxy in front
// of it, and closed-loop load from o.Workers workers, in three phases of
// o.Phase each: steady (all up), us-west down (its web servers crash at
// the start of the phase), and recovered (they come back). It prints live
// progress and a report to o.Out and returns the figures.
//
// When ctx ends RunDemo stops the load, the proxy and the web tier and
// returns ctx.Err().
func RunDemo(ctx context.Context, o DemoOptions) (*DemoReport, error) {
	o.applyDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := configs.Example(DemoExample)
	if err != nil {
		return nil, err
	}
	upstreams, hostNote := demoUpstreams(cfg)
	web, err := NewWebTier(upstreams)
	if err != nil {
		return nil, err
	}
	defer web.Close()
	for i := range cfg.Datacenters {
		cfg.Datacenters[i].Upstreams = web.Addrs(cfg.Datacenters[i].Name)
	}
	cfg.Listen.Address = "127.0.0.1:0"
	cfg.Upstream.Breaker.OpenFor = o.BreakerOpenFor
	cfg.Upstream.Breaker.ConsecutiveFailures = demoBreakerFailures
	cfg.Log.Level = "warn"
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadtest: demo config: %w", err)
	}

	srv, err := proxy.New(cfg, nil, proxy.Options{Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		return nil, fmt.Errorf("loadtest: demo proxy: %w", err)
	}
	serveErr, serveDone := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(serveDone)
		serveErr <- srv.Serve(ln)
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), demoShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			o.Logger.Warn("demo proxy shutdown", "error", err)
		}
		// Serve may not have reached its accept loop when Shutdown ran
		// (an early Ctrl-C); closing the listener makes it return anyway.
		_ = ln.Close()
		<-serveDone
	}()

	snap := srv.Placement().Load()
	topo := snap.Topology()
	failed, ok := topo.DatacenterIndex(DemoFailedDatacenter)
	if !ok {
		return nil, fmt.Errorf("loadtest: %s has no datacenter %s", DemoExample, DemoFailedDatacenter)
	}
	place := &placement{dcIndex: map[string]int{}}
	for i, d := range topo.Datacenters {
		ci, _ := topo.ContinentIndex(d.Continent)
		place.dcIndex[d.Name] = i
		place.dcContinent = append(place.dcContinent, ci)
	}
	place.home = func(b uint32) (int, bool) {
		s := srv.Placement().Load()
		if b >= s.Buckets() {
			return 0, false
		}
		return s.Home(b), true
	}

	dialer := &net.Dialer{Timeout: time.Second}
	client := &fasthttp.HostClient{
		Addr:               ln.Addr().String(),
		Name:               "socialroute-demo",
		MaxConns:           o.Workers,
		MaxConnWaitTimeout: requestTimeout,
		ReadTimeout:        requestTimeout,
		WriteTimeout:       requestTimeout,
		// One attempt per request: a failure the proxy lets through must
		// show in the report, not be papered over by the client.
		MaxIdemponentCallAttempts: 1,
		Dial:                      func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) },
	}

	watch := &failoverWatch{srv: srv, failed: DemoFailedDatacenter, probe: probeRequest(srv, o.Users, DemoFailedDatacenter)}
	gen := newClosedLoop(client, o.Workers, o.Users, numPhases, len(topo.Datacenters), place)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone, watchDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(loadDone); gen.run(loadCtx) }()
	go func() { defer close(watchDone); watch.run(loadCtx) }()
	stop := func() {
		stopLoad()
		<-loadDone
		<-watchDone
		client.CloseIdleConnections()
	}
	defer stop()

	printIntro(o, ln.Addr().String(), hostNote, upstreams)
	names := [numPhases]string{"steady", DemoFailedDatacenter + " down", "recovered"}
	var (
		starts, ends   [numPhases]time.Time
		retries        [numPhases + 1]uint64
		failAt, recAt  time.Time
		lastDownRetry  int64
		progress       = newProgress(o.Out)
		stats          = srv.Stats()
		phaseDeadline  *time.Timer
		progressTicker = time.NewTicker(progressInterval)
	)
	defer progressTicker.Stop()
	for p := range numPhases {
		starts[p] = time.Now()
		retries[p] = stats.Retries.Load()
		switch p {
		case phaseDown:
			// The crash starts now: every timing of the failover counts
			// from here.
			failAt = starts[p]
			gen.phase.Store(int32(p))
			watch.failedAt.Store(failAt.UnixNano())
			err = web.Fail(DemoFailedDatacenter)
		case phaseRecovered:
			gen.phase.Store(int32(p))
			watch.failedAt.Store(0)
			err = web.Recover(DemoFailedDatacenter)
			recAt = time.Now() // up from here on
		default:
			gen.phase.Store(int32(p))
		}
		if err != nil {
			progress.done()
			return nil, err
		}
		phaseDeadline = time.NewTimer(time.Until(starts[p].Add(o.Phase)))
		progressTicker.Reset(progressInterval)
		lastCount, lastTick := uint64(0), starts[p]
	wait:
		for {
			select {
			case <-ctx.Done():
				phaseDeadline.Stop()
				progress.done()
				fmt.Fprintln(o.Out, "interrupted: stopping the load, the proxy and the web tier")
				return nil, ctx.Err()
			case <-serveDone:
				phaseDeadline.Stop()
				progress.done()
				err := <-serveErr
				if err == nil {
					err = errors.New("stopped serving")
				}
				return nil, fmt.Errorf("loadtest: demo proxy: %w", err)
			case now := <-progressTicker.C:
				t := gen.totals(p)
				rate := float64(t.requests-lastCount) / now.Sub(lastTick).Seconds()
				lastCount, lastTick = t.requests, now
				elapsed := fmt.Sprintf("%.1fs/%.3gs", now.Sub(starts[p]).Seconds(), o.Phase.Seconds())
				progress.update(fmt.Sprintf("%-14s %-10s %7.0f req/s  %d errors  %d proxy retries",
					names[p], elapsed, rate, t.errors(), stats.Retries.Load()-retries[p]))
			case <-phaseDeadline.C:
				break wait
			}
		}
		ends[p] = time.Now()
		if p == phaseDown {
			lastDownRetry = watch.lastRetry.Load()
		}
		t := gen.totals(p)
		progress.update(fmt.Sprintf("%-14s %-10s %7.0f req/s  %d errors  %d proxy retries  (phase done)",
			names[p], fmt.Sprintf("%.1fs", ends[p].Sub(starts[p]).Seconds()),
			float64(t.requests)/ends[p].Sub(starts[p]).Seconds(), t.errors(), stats.Retries.Load()-retries[p]))
		progress.done()
	}
	retries[numPhases] = stats.Retries.Load()
	stop()

	rep := &DemoReport{Workers: o.Workers, Users: o.Users, Phase: o.Phase, BreakerOpenFor: o.BreakerOpenFor}
	for _, d := range topo.Datacenters {
		rep.Datacenters = append(rep.Datacenters, DemoDatacenter{Name: d.Name, Continent: d.Continent, Capacity: d.Capacity})
	}
	for p := range numPhases {
		rep.Phases = append(rep.Phases, newDemoPhase(names[p], ends[p].Sub(starts[p]), gen.totals(p), topo.Datacenters, retries[p+1]-retries[p]))
	}
	rep.finish()
	down, recovered := gen.totals(phaseDown), gen.totals(phaseRecovered)
	f := &rep.Failover
	f.Datacenter = DemoFailedDatacenter
	f.Retries = rep.Phases[phaseDown].ProxyRetries
	f.FailedRequests = rep.Phases[phaseDown].Errors
	f.RerouteTime, f.RoutedAroundAfter, f.LastServedAfter, f.RecoveryTime = -1, -1, -1, -1
	if lastDownRetry > failAt.UnixNano() {
		f.RerouteTime = time.Duration(lastDownRetry - failAt.UnixNano())
	}
	if at := watch.routedAround.Load(); at != 0 {
		f.RoutedAroundAfter = time.Duration(at - failAt.UnixNano())
	}
	if last := down.lastByDC[failed]; last != 0 {
		f.LastServedAfter = time.Duration(last - failAt.UnixNano())
	}
	if first := recovered.firstByDC[failed]; first != 0 {
		f.RecoveryTime = max(0, time.Duration(first-recAt.UnixNano()))
	}
	f.shift(rep, failed)
	return rep, rep.WriteText(o.Out)
}

// demoUpstreams lists each datacenter's upstream addresses from cfg with
// port 0, so that the web tier picks free ports. The example's hosts are
// 127.0.1.N; where they cannot be bound (macOS without loopback aliases),
// every server listens on 127.0.0.1 instead and the note says so.
func demoUpstreams(cfg *configs.Config) (map[string][]string, string) {
	fallback := false
	if len(cfg.Datacenters) > 0 && len(cfg.Datacenters[0].Upstreams) > 0 {
		host, _, _ := net.SplitHostPort(cfg.Datacenters[0].Upstreams[0])
		if ln, err := net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			fallback = true
		} else {
			ln.Close()
		}
	}
	out := make(map[string][]string, len(cfg.Datacenters))
	for _, d := range cfg.Datacenters {
		for _, u := range d.Upstreams {
			host, _, _ := net.SplitHostPort(u)
			if fallback {
				host = "127.0.0.1"
			}
			out[d.Name] = append(out[d.Name], net.JoinHostPort(host, "0"))
		}
	}
	if fallback {
		return out, "127.0.1.N cannot be bound here, so every web server listens on 127.0.0.1"
	}
	return out, ""
}

// probeRequest finds a user whose bucket's first datacenter is dc and
// returns a request of that user, for watching how the proxy routes it;
// nil if no user in [0, users) has dc first.
func probeRequest(srv *proxy.Server, users int, dc string) *fasthttp.Request {
	req := &fasthttp.Request{}
	for u := range min(users, 10000) {
		req.SetRequestURI("/users/" + strconv.Itoa(u) + "/feed")
		if e := srv.Explain(req); len(e.Plan) > 0 && e.Plan[0].Datacenter == dc && e.Chosen == dc {
			return req
		}
	}
	return nil
}

// failoverWatch reads the proxy every pollInterval: when its retry count
// last rose, and, while failedAt is set, when the proxy first routed a
// request of the failed datacenter's buckets elsewhere without trying it
// (its upstreams' breakers had opened).
type failoverWatch struct {
	srv          *proxy.Server
	failed       string
	probe        *fasthttp.Request // nil: routedAround is not measured
	failedAt     atomic.Int64      // unix nanoseconds; 0 while the datacenter is up
	lastRetry    atomic.Int64      // unix nanoseconds
	routedAround atomic.Int64      // unix nanoseconds, 0 until seen
}

func (w *failoverWatch) run(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	last := w.srv.Stats().Retries.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if r := w.srv.Stats().Retries.Load(); r > last {
				last = r
				w.lastRetry.Store(now.UnixNano())
			}
			if w.probe != nil && w.failedAt.Load() != 0 && w.routedAround.Load() == 0 {
				e := w.srv.Explain(w.probe)
				if e.Chosen != w.failed {
					w.routedAround.Store(now.UnixNano())
				}
			}
		}
	}
}

func printIntro(o DemoOptions, proxyAddr, hostNote string, upstreams map[string][]string) {
	servers := 0
	for _, a := range upstreams {
		servers += len(a)
	}
	fmt.Fprintf(o.Out, "socialroute demo: the %s topology on this machine\n", DemoExample)
	fmt.Fprintf(o.Out, "  web tier  %d datacenters, %d simulated web servers (in this process)\n", len(upstreams), servers)
	if hostNote != "" {
		fmt.Fprintf(o.Out, "            %s\n", hostNote)
	}
	fmt.Fprintf(o.Out, "  proxy     %s; a breaker opens after %d failures in a row, for %v\n", proxyAddr, demoBreakerFailures, o.BreakerOpenFor)
	fmt.Fprintf(o.Out, "  load      %d closed-loop workers, GET /users/<id>/feed for %d users\n", o.Workers, o.Users)
	fmt.Fprintf(o.Out, "  phases    %v each: steady; %s crashes; %s comes back\n\n", o.Phase, DemoFailedDatacenter, DemoFailedDatacenter)
}

// progress is a status line: rewritten in place on a terminal, one line
// per update elsewhere (logs, pipes, tests).
type progress struct {
	w       io.Writer
	tty     bool
	pending bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(line string) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.pending = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// done ends the current line.
func (p *progress) done() {
	if p.pending {
		fmt.Fprintln(p.w)
		p.pending = false
	}
}
