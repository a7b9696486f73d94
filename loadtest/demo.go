package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/proxy"
	"github.com/valyala/fasthttp"
)

// Demo defaults and fixed settings.
const (
	DefaultDemoPhase          = 10 * time.Second
	DefaultDemoRate           = 3000
	DefaultDemoWorkers        = 256
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
	// pollInterval is how often the failover watch reads the proxies, and
	// the demo prints what happened.
	pollInterval = 10 * time.Millisecond
	// progressInterval is how often the progress line is refreshed.
	progressInterval = time.Second
	// demoShutdownTimeout bounds a proxy's drain at the end.
	demoShutdownTimeout = 5 * time.Second
)

// demoNodes are the datacenters with a proxy node of the demo's fleet: at
// least one per continent, and the one that fails. Clients use the
// others: a client of a dead node would fail whatever the proxy does.
var demoNodes = []string{"us-east", DemoFailedDatacenter, "eu-west"}

// DemoOptions configure RunDemo. The zero value runs the default demo and
// prints nothing.
type DemoOptions struct {
	// Phase is how long each of the three phases lasts. Default 10s.
	Phase time.Duration
	// Rate is the open-loop arrival rate, requests per second. Default
	// DefaultDemoRate.
	Rate float64
	// Workers caps the requests in flight. Default DefaultDemoWorkers.
	Workers int
	// Users is the size of the generated follower graph. Default 50000.
	Users int
	// Seed makes the graph and the requests. Default 1.
	Seed uint64
	// CacheRatio sizes the web tier's caches (see DefaultCacheRatio).
	CacheRatio float64
	// BreakerOpenFor is how long an upstream's open breaker turns requests
	// away before it lets a probe through. Default 1s (the config's own
	// default, 5s, is long for a demo).
	BreakerOpenFor time.Duration
	// Out receives the live progress, the events and the report.
	// Default: nothing is printed.
	Out io.Writer
	// Logger receives the proxies' and gossip's logs. Default: discarded,
	// so that they do not break up the progress display; the demo prints
	// the ones that tell the story itself.
	Logger *slog.Logger
}

func (o *DemoOptions) applyDefaults() {
	if o.Phase <= 0 {
		o.Phase = DefaultDemoPhase
	}
	if o.Rate <= 0 {
		o.Rate = DefaultDemoRate
	}
	if o.Workers <= 0 {
		o.Workers = DefaultDemoWorkers
	}
	if o.Users <= 0 {
		o.Users = DefaultDemoUsers
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.BreakerOpenFor <= 0 {
		o.BreakerOpenFor = DefaultDemoBreakerOpenFor
	}
	if o.Out == nil {
		o.Out = io.Discard
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
// what happens when a datacenter dies. It generates a follower graph,
// starts a simulated web tier for the eight datacenters of the embedded
// two-continents example (on 127.0.1.1-8, or 127.0.0.1 where those cannot
// be bound), each with an LRU cache of users' data, and three proxy nodes
// in us-east, us-west and eu-west that gossip their health. Clients of the
// US send to us-east's node, clients of Europe to eu-west's, at a constant
// rate, in three phases of o.Phase each: steady (all up), us-west down
// (its web servers and its proxy node crash at the start of the phase),
// and recovered (both come back). It prints live progress and what the
// fleet does, then a report, to o.Out, and returns the figures.
//
// When ctx ends RunDemo stops the load, the proxies, gossip and the web
// tier and returns ctx.Err().
func RunDemo(ctx context.Context, o DemoOptions) (*DemoReport, error) {
	o.applyDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	disp := newLive(o.Out)
	graph, err := GenerateFollowerGraph(GraphOptions{Users: o.Users, Seed: o.Seed})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := localConfig(nil)
	if err != nil {
		return nil, err
	}
	cfg.Upstream.Breaker.OpenFor = o.BreakerOpenFor
	cfg.Upstream.Breaker.ConsecutiveFailures = demoBreakerFailures
	upstreams, hostNote := demoUpstreams(cfg)
	cacheSize := CacheSizes(cfg, graph.Users(), o.CacheRatio, 0)
	web, err := StartWebTier(WebTierOptions{Upstreams: upstreams, Graph: graph, CacheSize: cacheSize})
	if err != nil {
		return nil, err
	}
	defer web.Close()
	for i := range cfg.Datacenters {
		cfg.Datacenters[i].Upstreams = web.Addrs(cfg.Datacenters[i].Name)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loadtest: demo config: %w", err)
	}

	events := &eventLog{}
	fl, err := startFleet(ctx, cfg, demoNodes, events, o.Logger)
	if err != nil {
		return nil, err
	}
	defer fl.close()
	events.drain() // joining is not news
	east, failedNode := fl.node("us-east"), fl.node(DemoFailedDatacenter)
	place := placementOf(east.srv)
	failed, ok := place.dcIndex[DemoFailedDatacenter]
	if !ok {
		return nil, fmt.Errorf("loadtest: %s has no datacenter %s", DemoExample, DemoFailedDatacenter)
	}

	// Clients of each continent go to that continent's surviving node; the
	// share of requests from each continent follows its capacity.
	var origins []Origin
	var targets []Target
	var clientNodes []*fleetNode
	for _, c := range cfg.Continents {
		capacity := 0.0
		for _, d := range cfg.Datacenters {
			if d.Continent == c.Name {
				capacity += d.Capacity
			}
		}
		origins = append(origins, Origin{Continent: c.Name, Share: capacity})
		for _, n := range fl.nodes {
			if n.continent == c.Name && n.dc != DemoFailedDatacenter {
				targets = append(targets, Target{Continent: c.Name, Addr: n.addr})
				clientNodes = append(clientNodes, n)
				break
			}
		}
	}
	wl, err := NewWorkload(graph, WorkloadOptions{Seed: o.Seed, Origins: origins})
	if err != nil {
		return nil, err
	}
	snd, err := newSender(wl, place, targets, o.Workers, DefaultRequestTimeout)
	if err != nil {
		return nil, err
	}
	defer snd.close()

	printDemoIntro(disp, o, wl, hostNote, upstreams, cacheSize, fl, targets)

	total := numPhases * o.Phase
	start := time.Now()
	rec := newRecorder(start, windowFor(total), place.dcContinent, len(place.continents))
	var phase atomic.Int32
	var completed atomic.Uint64 // answers, for the progress display
	bufs := make([]sendBuf, o.Workers)
	sched := newSchedule(start, total, o.Rate)
	watch := &failoverWatch{srv: east.srv, failed: DemoFailedDatacenter, probe: probeRequest(east.srv, wl, DemoFailedDatacenter), clients: clientNodes}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var bg sync.WaitGroup
	bg.Go(func() {
		runOpenLoop(loadCtx, sched, o.Workers, func(w int, seq uint64, due time.Time) {
			var out outcome
			snd.do(&bufs[w], seq, due, &out)
			rec.record(w, int(phase.Load()), &out, time.Now())
			completed.Add(1)
		})
	})
	bg.Go(func() { watch.run(loadCtx) })
	defer bg.Wait()
	defer stopLoad()

	names := [numPhases]string{"steady", DemoFailedDatacenter + " down", "recovered"}
	var (
		starts, ends [numPhases]time.Time
		retries      [numPhases + 1]uint64
		failAt       time.Time
		recAt        time.Time
		restartedAt  time.Time
		lastDownRet  int64
		story        = &storyTeller{disp: disp, start: start, failed: DemoFailedDatacenter, deadNode: failedNode.name}
		restarted    = make(chan restartResult, 1)
		lastProgress = start
		lastCount    uint64
	)
	disp.begin(int64(total/time.Millisecond), "steady")
	for p := range numPhases {
		starts[p] = time.Now()
		retries[p] = watch.retries()
		phase.Store(int32(p))
		switch p {
		case phaseDown:
			// The crash starts now: every timing of the failover counts
			// from here.
			failAt = starts[p]
			watch.failedAt.Store(failAt.UnixNano())
			story.failAt, story.deadFrom = failAt, failAt
			story.say(failAt, fmt.Sprintf("%s crashes: its %d web servers and its proxy node %s are killed",
				DemoFailedDatacenter, len(upstreams[DemoFailedDatacenter]), failedNode.name))
			err = errors.Join(web.Fail(DemoFailedDatacenter), fl.crash(DemoFailedDatacenter))
		case phaseRecovered:
			watch.failedAt.Store(0)
			err = web.Recover(DemoFailedDatacenter)
			recAt = time.Now()
			story.recAt = recAt
			story.say(recAt, fmt.Sprintf("%s comes back: its web servers listen again; its proxy node restarts", DemoFailedDatacenter))
			// The node restarts on its old gossip ports once its crashed
			// self has let go of them; the load goes on meanwhile.
			bg.Go(func() {
				err := fl.restart(loadCtx, DemoFailedDatacenter)
				restarted <- restartResult{at: failedNode.started, err: err}
			})
		}
		if err != nil {
			disp.end("")
			return nil, err
		}
		deadline := time.NewTimer(time.Until(start.Add(time.Duration(p+1) * o.Phase)))
		tick := time.NewTicker(100 * time.Millisecond)
	wait:
		for {
			select {
			case <-ctx.Done():
				deadline.Stop()
				tick.Stop()
				story.tell(events.drain())
				disp.end("interrupted: stopping the load, the proxies, gossip and the web tier")
				return nil, ctx.Err()
			case now := <-tick.C:
				story.tell(events.drain())
				every := progressInterval
				if disp.tty {
					every = progressInterval / 4
				}
				if now.Sub(lastProgress) < every {
					continue
				}
				n := completed.Load()
				_, errs := rec.counts(p)
				rate := float64(n-lastCount) / now.Sub(lastProgress).Seconds()
				lastCount, lastProgress = n, now
				p99 := 0.0
				if ws := rec.windowAt(max(int(now.Sub(start)/rec.window)-1, 0)); ws != nil {
					p99 = usToMS(ws.hist.ValueAtQuantile(99))
				}
				disp.update(int64(now.Sub(start)/time.Millisecond), fmt.Sprintf("[%6.2fs] %-13s %6.0f req/s  p99 %6.2f ms  %d errors  %d proxy retries",
					now.Sub(start).Seconds(), names[p], rate, p99, errs, watch.retries()-retries[p]))
			case r := <-restarted:
				if r.err != nil {
					deadline.Stop()
					tick.Stop()
					disp.end("")
					return nil, r.err
				}
				restartedAt = r.at
			case <-deadline.C:
				break wait
			}
		}
		tick.Stop()
		ends[p] = time.Now()
		if p == phaseDown {
			lastDownRet = watch.lastRetry.Load()
		}
	}
	retries[numPhases] = watch.retries()
	stopLoad()
	bg.Wait()
	if restartedAt.IsZero() {
		select {
		case r := <-restarted:
			if r.err != nil {
				return nil, r.err
			}
			restartedAt = r.at
		default:
		}
	}
	story.tell(events.drain())
	disp.end("")

	rep := &DemoReport{
		Rate: o.Rate, Workers: o.Workers, Users: graph.Users(), Edges: graph.Edges(),
		Phase: o.Phase, BreakerOpenFor: o.BreakerOpenFor, CacheSize: cacheSize,
		NotSent: sched.notSent(ends[numPhases-1]),
	}
	for _, d := range cfg.Datacenters {
		rep.Datacenters = append(rep.Datacenters, DemoDatacenter{Name: d.Name, Continent: d.Continent, Capacity: d.Capacity})
	}
	for _, n := range fl.nodes {
		rep.Nodes = append(rep.Nodes, DemoNode{Name: n.name, Datacenter: n.dc, Addr: n.addr, Clients: n.dc != DemoFailedDatacenter})
	}
	for p := range numPhases {
		m := measure(rec.merged(p), place, ends[p].Sub(starts[p]))
		rep.Phases = append(rep.Phases, newDemoPhase(names[p], m, retries[p+1]-retries[p]))
	}
	rep.finish()
	f := &rep.Failover
	f.Datacenter = DemoFailedDatacenter
	f.Node = failedNode.name
	f.Retries = rep.Phases[phaseDown].ProxyRetries
	f.FailedRequests = rep.Phases[phaseDown].Errors
	f.RerouteTime, f.RoutedAroundAfter, f.LastServedAfter, f.RecoveryTime = -1, -1, -1, -1
	f.BreakersOpenedAfter, f.RestartTime = -1, -1
	if !restartedAt.IsZero() {
		f.RestartTime = restartedAt.Sub(recAt)
	}
	f.GossipDownAfter, f.GossipUpAfter = map[string]time.Duration{}, map[string]time.Duration{}
	if lastDownRet > failAt.UnixNano() {
		f.RerouteTime = time.Duration(lastDownRet - failAt.UnixNano())
	}
	if at := watch.routedAround.Load(); at != 0 {
		f.RoutedAroundAfter = time.Duration(at - failAt.UnixNano())
	}
	down, recovered := rec.merged(phaseDown), rec.merged(phaseRecovered)
	if last := down.lastDC[failed]; last != 0 {
		f.LastServedAfter = time.Duration(last - failAt.UnixNano())
	}
	if first := recovered.firstDC[failed]; first != 0 {
		f.RecoveryTime = max(0, time.Duration(first-recAt.UnixNano()))
	}
	isFailed := func(subject string) bool {
		return subject == DemoFailedDatacenter || strings.HasPrefix(subject, DemoFailedDatacenter+"/")
	}
	if e, ok := events.first(failAt, func(e fleetEvent) bool { return e.kind == evBreaker && e.to == "open" && isFailed(e.subject) }); ok {
		f.BreakersOpenedAfter = e.at.Sub(failAt)
	}
	for _, n := range clientNodes {
		if e, ok := events.first(failAt, func(e fleetEvent) bool { return e.node == n.name && e.kind == evDCDown && isFailed(e.subject) }); ok && e.at.Before(recAt) {
			f.GossipDownAfter[n.name] = e.at.Sub(failAt)
		}
		if e, ok := events.first(recAt, func(e fleetEvent) bool { return e.node == n.name && e.kind == evDCUp && isFailed(e.subject) }); ok {
			f.GossipUpAfter[n.name] = e.at.Sub(recAt)
		}
	}
	f.shift(rep, failed)
	rep.Timeline = rec.timeline(ends[numPhases-1])
	rep.Events = story.marks
	return rep, rep.WriteText(o.Out)
}

// dur prints a duration for people: 8ms, 1.82s.
func dur(d time.Duration) string {
	switch {
	case d < 0:
		return "n/a"
	case d < time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// storyTeller prints what happens in the fleet as it happens: the demo's
// own actions, breakers opening and closing, gossip declaring the failed
// datacenter down and up; and keeps the milestones for the plot.
type storyTeller struct {
	disp          *live
	start         time.Time
	failed        string
	failAt, recAt time.Time
	marks         []Event
	opened        map[string]bool // node + upstream whose opening was told
	// deadNode is the crashed node: what it logs between deadFrom and
	// deadUntil (zero: still dead) is its own cut-off view, not the
	// fleet's, as a dead machine's logs would be.
	deadNode            string
	deadFrom, deadUntil time.Time
}

// restartResult is how a node's restart went.
type restartResult struct {
	at  time.Time
	err error
}

// say prints one of the demo's own actions.
func (s *storyTeller) say(at time.Time, what string) {
	s.disp.event(fmt.Sprintf("[%6.2fs] %s", at.Sub(s.start).Seconds(), what))
	if !strings.HasPrefix(what, " ") {
		s.marks = append(s.marks, Event{At: at.Sub(s.start).Seconds(), What: what[:strings.IndexByte(what+":", ':')]})
	}
}

// since says how long after the crash or the recovery at is.
func (s *storyTeller) since(at time.Time) string {
	switch {
	case !s.recAt.IsZero() && !at.Before(s.recAt):
		return " (+" + dur(at.Sub(s.recAt)) + " after it came back)"
	case !s.failAt.IsZero() && !at.Before(s.failAt):
		return " (+" + dur(at.Sub(s.failAt)) + " after the crash)"
	}
	return ""
}

// tell prints the fleet's events.
func (s *storyTeller) tell(evs []fleetEvent) {
	if s.opened == nil {
		s.opened = map[string]bool{}
	}
	for _, e := range evs {
		if e.node == s.deadNode && e.kind == evDemo && !s.deadFrom.IsZero() {
			s.deadUntil = e.at // restarted
			s.disp.event(fmt.Sprintf("[%6.2fs]   %s: restarted, gossiping again%s", e.at.Sub(s.start).Seconds(), e.node, s.since(e.at)))
			continue
		}
		if e.node == s.deadNode && !s.deadFrom.IsZero() && !e.at.Before(s.deadFrom) && (s.deadUntil.IsZero() || e.at.Before(s.deadUntil)) {
			continue
		}
		var what string
		switch e.kind {
		case evBreaker:
			key := e.node + " " + e.subject
			switch {
			case e.to == "open" && e.from == "closed":
				s.opened[key] = true
				what = fmt.Sprintf("breaker of %s opened: requests skip it", e.subject)
			case e.to == "closed":
				delete(s.opened, key)
				what = fmt.Sprintf("breaker of %s closed again: it answers", e.subject)
			default:
				continue // half-open probes: too many to tell
			}
			if strings.HasPrefix(e.subject, s.failed+"/") && e.to == "open" && !s.told("breakers opened") {
				s.marks = append(s.marks, Event{At: e.at.Sub(s.start).Seconds(), What: "breakers opened"})
			}
		case evDCDown:
			what = fmt.Sprintf("gossip: %s is down (%s)", e.subject, e.detail)
			if e.subject == s.failed && !s.told("gossip: "+s.failed+" down") {
				s.marks = append(s.marks, Event{At: e.at.Sub(s.start).Seconds(), What: "gossip: " + s.failed + " down"})
			}
		case evDCUp:
			what = fmt.Sprintf("gossip: %s is up", e.subject)
			if e.subject == s.failed && !s.told("gossip: "+s.failed+" up") {
				s.marks = append(s.marks, Event{At: e.at.Sub(s.start).Seconds(), What: "gossip: " + s.failed + " up"})
			}
		default:
			continue
		}
		s.disp.event(fmt.Sprintf("[%6.2fs]   %s: %s%s", e.at.Sub(s.start).Seconds(), e.node, what, s.since(e.at)))
	}
}

func (s *storyTeller) told(what string) bool {
	for _, m := range s.marks {
		if m.What == what {
			return true
		}
	}
	return false
}

// demoUpstreams lists each datacenter's upstream addresses from cfg with
// port 0, so that the web tier picks free ports. The example's hosts are
// 127.0.1.N; where they cannot be bound (macOS without loopback aliases),
// every server listens on 127.0.0.1 instead and the note says so.
func demoUpstreams(cfg *configs.Config) (map[string][]string, string) {
	fallback := false
	if len(cfg.Datacenters) > 0 && len(cfg.Datacenters[0].Upstreams) > 0 {
		host, _, _ := net.SplitHostPort(cfg.Datacenters[0].Upstreams[0])
		fallback = !canBind(host)
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
		return out, "127.0.1.N cannot be bound here, so every server listens on 127.0.0.1"
	}
	return out, ""
}

// probeRequest finds a user whose bucket's first datacenter is dc and
// returns a request of that user, for watching how the proxy routes it;
// nil if none of the first users has dc first.
func probeRequest(srv *proxy.Server, wl *Workload, dc string) *fasthttp.Request {
	req := &fasthttp.Request{}
	g := wl.Graph()
	for i := range min(g.Users(), 10000) {
		req.SetRequestURI("/users/" + strconv.FormatUint(g.ID(i), 10) + "/feed")
		if e := srv.Explain(req); len(e.Plan) > 0 && e.Plan[0].Datacenter == dc && e.Chosen == dc {
			return req
		}
	}
	return nil
}

// failoverWatch reads the client-facing proxies every pollInterval: when
// their retry count last rose, and, while failedAt is set, when srv first
// routed a request of the failed datacenter's buckets elsewhere without
// trying it (its upstreams' breakers had opened, or gossip said it was
// down).
type failoverWatch struct {
	srv          *proxy.Server
	failed       string
	probe        *fasthttp.Request // nil: routedAround is not measured
	clients      []*fleetNode      // the nodes whose retries count
	failedAt     atomic.Int64      // unix nanoseconds; 0 while the datacenter is up
	lastRetry    atomic.Int64      // unix nanoseconds
	routedAround atomic.Int64      // unix nanoseconds, 0 until seen
}

// retries sums the client-facing proxies' retry counts.
func (w *failoverWatch) retries() uint64 {
	var n uint64
	for _, c := range w.clients {
		if s := c.srv; s != nil {
			n += s.Stats().Retries.Load()
		}
	}
	return n
}

func (w *failoverWatch) run(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	last := w.retries()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if r := w.retries(); r > last {
				last = r
				w.lastRetry.Store(now.UnixNano())
			}
			if w.probe != nil && w.failedAt.Load() != 0 && w.routedAround.Load() == 0 {
				if e := w.srv.Explain(w.probe); e.Chosen != w.failed {
					w.routedAround.Store(now.UnixNano())
				}
			}
		}
	}
}

func printDemoIntro(disp *live, o DemoOptions, wl *Workload, hostNote string, upstreams map[string][]string,
	cache map[string]int, fl *fleet, targets []Target) {
	users, edges := wl.Graph().Users(), wl.Graph().Edges()
	servers := 0
	for _, a := range upstreams {
		servers += len(a)
	}
	smallest, largest := -1, 0
	for _, n := range cache {
		if smallest < 0 || n < smallest {
			smallest = n
		}
		largest = max(largest, n)
	}
	say := func(format string, a ...any) { disp.event(fmt.Sprintf(format, a...)) }
	say("socialroute demo: the %s topology on this machine", DemoExample)
	say("  graph     %s users, %s follows (generated: planted communities, power-law followers)", thousands(uint64(users)), thousands(uint64(edges)))
	say("  web tier  %d datacenters, %d simulated web servers; each datacenter caches %s-%s users' data (LRU)",
		len(upstreams), servers, thousands(uint64(smallest)), thousands(uint64(largest)))
	if hostNote != "" {
		say("            %s", hostNote)
	}
	var nodes []string
	for _, n := range fl.nodes {
		nodes = append(nodes, fmt.Sprintf("%s (%s)", n.name, n.addr))
	}
	say("  proxies   %s", strings.Join(nodes, ", "))
	say("            gossiping: a LAN pool per continent, a WAN pool for all, probes every %v; a breaker opens after %d failures in a row",
		fleetLANProbe, demoBreakerFailures)
	var ts []string
	for _, t := range targets {
		ts = append(ts, strings.ToUpper(t.Continent)+" clients -> "+t.Addr)
	}
	m := wl.Mix()
	total := m.Feed + m.Profile + m.Hot
	say("  load      open loop, %.0f req/s (%s)", o.Rate, strings.Join(ts, ", "))
	say("            %.0f%% feeds (GET /users/U/feed), %.0f%% profiles of followed accounts (GET /accounts/A/profile), %.0f%% hot accounts",
		100*m.Feed/total, 100*m.Profile/total, 100*m.Hot/total)
	say("  phases    %v each: steady; %s crashes (web tier and proxy node); %s comes back", o.Phase, DemoFailedDatacenter, DemoFailedDatacenter)
	say("")
}
