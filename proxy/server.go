package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/health"
	"github.com/valyala/fasthttp"
)

// Options are a Server's collaborators; the zero value is usable.
type Options struct {
	// Logger receives structured logs. Default: slog.Default().
	Logger *slog.Logger
	// Status says which datacenters are up. Default: a health.Static with
	// every datacenter up (drains still apply).
	Status health.Status
	// Dial, if set, replaces TCP dialing to upstreams (tests use in-memory
	// listeners). Default: net.Dialer with upstream.connect_timeout.
	Dial fasthttp.DialFunc
	// OnPlacementChange, if set, is told of every bucket-map version this
	// node makes (ChangePlacement, Reload), to spread it over the fleet.
	// It is called in order, outside any lock; it must not block long.
	OnPlacementChange func(*buckets.Snapshot)
	// FleetHot, if set, says which keys the rest of the fleet detected hot
	// (health.Cluster does, from gossip), so every node spreads them alike.
	FleetHot FleetHot
	// Fleet, if set, exchanges per-bucket access reports for the placement
	// advisor and shows every node's map version for a move's fence
	// (health.Cluster does). Default: this node's own counts only.
	Fleet PlacementFleet
	// Version is the binary's version, for socialroute_build_info.
	Version string
}

// state is everything a reload replaces, published as one immutable value
// so a request sees either the old or the new configuration, never a mix.
type state struct {
	cfg         *configs.Config
	rules       rules
	router      *Router
	pools       []*pool
	noKeyReject bool
	respHeaders bool
	retries     int
	retryBudget float64 // upstream.retry_budget
	maxKeyLen   int
	timeout     time.Duration // upstream.timeout: one attempt
	reqTimeout  time.Duration // upstream.request_timeout: every attempt
	metrics     stateMetrics  // this state's datacenters' series
	viewer      string        // header naming the viewer, for hot keys' sticky siblings
	screen      screenPolicy
}

// Server is the edge proxy: a fasthttp server that routes each request to
// its bucket's datacenter and forwards it.
type Server struct {
	cur     atomic.Pointer[state]
	log     *slog.Logger
	status  health.Status
	dial    fasthttp.DialFunc
	notify  func(*buckets.Snapshot)
	fleet   FleetHot
	detect  *hashing.HeavyHitters // nil when detection is off
	http    *fasthttp.Server
	mu      sync.Mutex // serialises Reload and placement changes
	scratch sync.Pool
	stats   Stats
	metrics *metrics
	serving atomic.Bool // between Serve and Shutdown: readiness
	// lastReload is the outcome of the last reload attempt (RecordReload),
	// for the metrics; the start counts as a successful one.
	lastReload struct {
		ok        atomic.Bool
		succeeded atomic.Int64 // unix seconds
	}
	placer *placer // access statistics, the advisor and moves (placer.go)
	// retries caps retries at upstream.retry_budget of the requests; it
	// outlives reloads, like the counts it reads.
	retries retryBudget
	// bg lives from New to Shutdown; the background loops Serve starts
	// (hot-key detection, placement, certificate watching) end with it. A
	// Shutdown before Serve starts them leaves them nothing to run.
	bg     context.Context
	stopBg context.CancelFunc

	// certs and tlsConf are set when listen.tls is: the certificates in
	// force, swapped whole by Reload and the file watcher, and the
	// listener's tls.Config that reads them at each handshake.
	certs   *certStore
	tlsConf *tls.Config
	clients *clientLimit // listen.max_conns_per_ip; nil without a cap

	// ln is the listener Serve accepts on, closed first by Shutdown;
	// draining makes every response close its connection (see Shutdown).
	ln        *drainListener
	serveDone chan struct{} // closed when fasthttp's Serve has returned
	draining  atomic.Bool

	// boot is the config the process started with: what only a restart
	// applies is compared with it, not with the last file reloaded.
	boot *configs.Config
}

// Stats are the server's running totals. All fields are safe to read
// concurrently with Load.
type Stats struct {
	Requests atomic.Uint64 // requests answered, including errors
	Retries  atomic.Uint64 // attempts after the first
	// RetriesDenied counts failed requests not retried because retries
	// had spent upstream.retry_budget.
	RetriesDenied atomic.Uint64
	// RetriesOutOfTime counts failed requests not retried because their
	// upstream.request_timeout had run out.
	RetriesOutOfTime atomic.Uint64
	Rejected         atomic.Uint64 // malformed requests answered 4xx by the proxy itself
	Failed           atomic.Uint64 // requests answered 5xx by the proxy itself

	byCode [600]atomic.Uint64 // the proxy's own 4xx and 5xx answers, by status code
}

// New builds a Server for cfg, with table (nil: xxhash only) as the
// social-hash assignment. It does not listen; see Serve.
func New(cfg *configs.Config, table *hashing.Table, opts Options) (*Server, error) {
	s := &Server{log: opts.Logger, status: opts.Status, dial: opts.Dial, notify: opts.OnPlacementChange, fleet: opts.FleetHot}
	s.bg, s.stopBg = context.WithCancel(context.Background())
	if h := cfg.Hot; h.DetectRate > 0 {
		// Detection outlives reloads: what it learned stays.
		s.detect = hashing.NewHeavyHitters(hashing.DetectOptions{Rate: h.DetectRate, Max: h.MaxSpread, Tick: h.DetectTick})
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.status == nil {
		s.status = &health.Static{}
	}
	s.scratch.New = func() any { return &scratch{buf: make([]byte, 0, 256)} }
	s.retries.requests = &s.stats.Requests
	s.RecordReload(nil) // the start is the first load
	s.metrics = newMetrics(s, opts.Version)
	s.placer = newPlacer(s, opts.Fleet)
	st, err := s.newState(cfg, table, nil)
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	s.boot = cfg
	l := cfg.Listen
	if l.TLS != nil {
		s.certs = &certStore{log: s.log}
		if err := s.certs.reload(cfg); err != nil {
			return nil, err
		}
		s.tlsConf = serverTLSConfig(l.TLS, s.certs)
	}
	if l.MaxConnsPerIP > 0 {
		s.clients = newClientLimit(l.MaxConnsPerIP, l.TLS != nil, s.log)
	}
	s.http = &fasthttp.Server{
		Handler:                      s.serveRequest,
		ErrorHandler:                 s.handleParseError,
		Name:                         "socialroute",
		ReadTimeout:                  l.ReadTimeout,
		WriteTimeout:                 l.WriteTimeout,
		IdleTimeout:                  l.IdleTimeout,
		MaxRequestBodySize:           l.MaxRequestBodySize,
		ReadBufferSize:               l.MaxHeaderBytes, // bounds request line + headers; fasthttp answers 431 past it
		Concurrency:                  l.Concurrency,
		NoDefaultServerHeader:        true, // the web tier's Server header passes through
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true, // on SIGTERM, close each connection after its in-flight request
		// listen.max_conns_per_ip is clientLimit's, not fasthttp's
		// MaxConnsPerIP: see clientLimit.
		// ReadTimeout bounds the request line and headers; once they are
		// in, the body gets its own budget. A request without a body has
		// nothing more to read, and arming a deadline for it would cost a
		// clock read and a timer update on most requests.
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if h.ContentLength() == 0 {
				return fasthttp.RequestConfig{}
			}
			return fasthttp.RequestConfig{ReadTimeout: l.BodyTimeout}
		},
		ContinueHandler:       s.mayContinue,
		SecureErrorLogMessage: true, // never log request contents
		Logger:                fasthttpLogger{s.log},
	}
	return s, nil
}

// newState compiles cfg. old, if set, is the state being replaced: its
// upstream pools are reused where unchanged and its map version continued.
func (s *Server) newState(cfg *configs.Config, table *hashing.Table, old *state) (*state, error) {
	rs, err := compileRules(cfg.Routing.Rules)
	if err != nil {
		return nil, err
	}
	if life := cfg.WriteLife(); cfg.Placement.FenceSettle <= life {
		// A warning, not an error: a test fleet may want quick moves.
		s.log.Warn("placement.fence_settle is not above upstream.request_timeout: a write routed before a move's fence could still reach the old home after the cutover",
			"fence_settle", cfg.Placement.FenceSettle, "write_life", life)
	}
	assigner, err := hashing.NewAssigner(uint32(cfg.Buckets), table)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	topo, overrides, err := placementFrom(cfg)
	if err != nil {
		return nil, err
	}
	version := uint64(1)
	var oldPools []*pool
	if old != nil {
		_, oldFile, err := placementFrom(old.cfg)
		if err != nil {
			return nil, err
		}
		carryMoves(old.router.placement.Load().Overrides(), oldFile, &overrides, uint32(cfg.Buckets), topo)
		version = old.router.placement.Load().Version() + 1
		if sameUpstreamSettings(old.cfg.Upstream, cfg.Upstream) {
			oldPools = old.pools
		}
	}
	snap, err := buckets.BuildFrom(version, cfg.Node.Name, uint32(cfg.Buckets), topo, overrides)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if old != nil {
		prev := old.router.placement.Load()
		if n, b := buckets.DefaultHomesMoved(prev, snap); n > 0 {
			// Their users' data is on the old continent: writes would go
			// where it is not, from this node only (the fleet's others
			// keep the old split), with no fence.
			return nil, fmt.Errorf("proxy: the continents' shares of buckets change (%s to %s), which would rehome %d buckets (bucket %d: %s to %s) whose data has not moved; "+
				"set continents[].share to keep the split while capacities change, and move buckets with POST /admin/placement/move",
				shareText(prev.Topology()), shareText(&topo), n, b,
				prev.Topology().Continents[prev.Home(b)].Name, topo.Continents[snap.Home(b)].Name)
		}
		snap.CarryChanges(prev, time.Now(), cfg.Routing.DrainRamp)
	}
	local, ok := topo.DatacenterIndex(cfg.Node.Datacenter)
	if !ok {
		return nil, fmt.Errorf("proxy: node.datacenter %q is not a configured datacenter", cfg.Node.Datacenter)
	}
	var hotKeys []hashing.HotKey
	if cfg.Hot.File != "" {
		if hotKeys, err = hashing.LoadHotKeys(cfg.HotPath()); err != nil {
			return nil, fmt.Errorf("proxy: hot.file: %w", err)
		}
	}
	pools, err := buildPools(cfg, oldPools, s.dial, s.log)
	if err != nil {
		return nil, err
	}
	st := &state{
		cfg:         cfg,
		rules:       rs,
		pools:       pools,
		noKeyReject: cfg.Routing.NoKey == configs.NoKeyReject,
		respHeaders: cfg.Routing.ResponseHeaders == nil || *cfg.Routing.ResponseHeaders,
		retries:     configs.DefaultRetries,
		retryBudget: configs.DefaultRetryBudget,
		maxKeyLen:   cfg.Routing.MaxKeyLength,
		timeout:     cfg.Upstream.Timeout,
		reqTimeout:  cfg.Upstream.RequestTimeout,
		metrics:     s.metrics.forState(cfg),
		viewer:      cfg.Hot.ViewerHeader,
		screen: screenPolicy{
			maxHeaders:  cfg.Listen.MaxHeaders,
			underscores: map[string]uint8{"allow": underscoresAllow, "drop": underscoresDrop, "reject": underscoresReject}[cfg.Listen.HeadersWithUnderscores],
			maxHops:     cfg.Routing.MaxHops,
			keyHeaders:  rs.keyHeaders(),
		},
		router: &Router{
			assigner:  assigner,
			placement: buckets.NewMap(snap),
			status:    s.status,
			pools:     pools,
			localDC:   local,
			drainRamp: cfg.Routing.DrainRamp,
			hot: hashing.NewHotList(hotKeys, hashing.SpreadPolicy{
				FollowersPerBucket: cfg.Hot.FollowersPerBucket, Max: cfg.Hot.MaxSpread,
			}),
			detect:         s.detect,
			fleet:          s.fleet,
			crossContinent: cfg.Hot.CrossContinent,
			access:         s.placer.counters(cfg),
			origin:         originOf(topo, local),
		},
	}
	st.router.placement.SetDrainRamp(cfg.Routing.DrainRamp)
	if cfg.Upstream.Retries != nil {
		st.retries = *cfg.Upstream.Retries
	}
	if cfg.Upstream.RetryBudget != nil {
		st.retryBudget = *cfg.Upstream.RetryBudget
	}
	return st, nil
}

// revertedChanges names the pins and drains made at run time (the running
// map differs from the old file there) that next's map does not keep, and
// the moves under way and finished moves' homes it ends (carryMoves keeps
// all but those the file overrides or that no longer fit): a
// reload rebuilds them from the file, and an operator who drained a failing
// datacenter through the admin endpoint must hear that a reload for some
// other reason just sent traffic back to it. At most maxReverted are named.
func revertedChanges(old, next *state) []string {
	_, oldFile, err := placementFrom(old.cfg)
	if err != nil {
		return nil // the running config loaded once, so this does not happen
	}
	running := old.router.placement.Load().Overrides()
	now := next.router.placement.Load().Overrides()
	var undone []string
	for _, dc := range slices.Sorted(maps.Keys(union(running.Drained, oldFile.Drained))) {
		if r := running.Drained[dc]; r != oldFile.Drained[dc] && now.Drained[dc] != r {
			undone = append(undone, map[bool]string{true: "drain of ", false: "undrain of "}[r]+dc)
		}
	}
	pins := 0
	for _, b := range slices.Sorted(maps.Keys(union(running.Pins, oldFile.Pins))) {
		if r := running.Pins[b]; r != oldFile.Pins[b] && now.Pins[b] != r {
			if pins++; pins > maxReverted {
				continue
			}
			if r == "" {
				undone = append(undone, fmt.Sprintf("unpin of bucket %d", b))
			} else {
				undone = append(undone, fmt.Sprintf("pin of bucket %d to %s", b, r))
			}
		}
	}
	if pins > maxReverted {
		undone = append(undone, fmt.Sprintf("and %d more pins", pins-maxReverted))
	}
	for _, b := range slices.Sorted(maps.Keys(running.Moves)) {
		if _, kept := now.Moves[b]; !kept {
			why := "the file sets its home"
			if _, ok := next.router.placement.Load().Topology().ContinentIndex(running.Moves[b].To); !ok || int(b) >= next.cfg.Buckets {
				why = "the bucket or its continent is gone"
			}
			undone = append(undone, fmt.Sprintf("move of bucket %d to %s (%s)", b, running.Moves[b].To, why))
		}
	}
	homes := 0
	for _, b := range slices.Sorted(maps.Keys(running.Homes)) {
		if c := running.Homes[b]; c != oldFile.Homes[b] && now.Homes[b] != c {
			if homes++; homes <= maxReverted {
				undone = append(undone, fmt.Sprintf("home of bucket %d in %s (a finished move's)", b, c))
			}
		}
	}
	if homes > maxReverted {
		undone = append(undone, fmt.Sprintf("and %d more homes", homes-maxReverted))
	}
	return undone
}

// strandedMoves names the moves under way that a reload turning
// placement.auto_apply off leaves for an operator to advance.
func strandedMoves(old, next *state) []string {
	if !old.cfg.Placement.AutoApply || next.cfg.Placement.AutoApply {
		return nil
	}
	moves := next.router.placement.Load().Moves()
	var out []string
	for _, b := range slices.Sorted(maps.Keys(moves)) {
		out = append(out, fmt.Sprintf("bucket %d to %s (%s)", b, moves[b].To, moves[b].Phase))
	}
	return out
}

// maxReverted bounds the pins, and the homes, a reload's warning names one
// by one.
const maxReverted = 20

// union is the keys of a and b, as a set.
func union[K comparable, V any](a, b map[K]V) map[K]struct{} {
	u := make(map[K]struct{}, len(a)+len(b))
	for k := range a {
		u[k] = struct{}{}
	}
	for k := range b {
		u[k] = struct{}{}
	}
	return u
}

// sameUpstreamSettings reports whether pooled clients built for a can be
// kept for b (retries are read per request, not baked into clients).
func sameUpstreamSettings(a, b configs.Upstream) bool {
	// Read per request from the state, not built into the pools: a change
	// of either must not drop warm connections and reset every breaker
	// (an upstream found dead would get live traffic again).
	a.Retries, b.Retries = nil, nil
	a.Timeout, b.Timeout = 0, 0
	a.RequestTimeout, b.RequestTimeout = 0, 0
	a.RetryBudget, b.RetryBudget = nil, nil
	return a == b
}

// shareText is t's continents' shares, as "us 460, eu 240".
func shareText(t *buckets.Topology) string {
	var b strings.Builder
	for i, share := range t.Shares() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %g", t.Continents[i].Name, share)
	}
	return b.String()
}

// placementFrom turns the config's topology and overrides into the
// buckets package's terms, expanding bucket ranges.
func placementFrom(cfg *configs.Config) (buckets.Topology, buckets.Overrides, error) {
	var topo buckets.Topology
	for _, c := range cfg.Continents {
		topo.Continents = append(topo.Continents, buckets.Continent{Name: c.Name, FailoverTo: c.FailoverTo, Share: c.Share})
	}
	for _, d := range cfg.Datacenters {
		topo.Datacenters = append(topo.Datacenters, buckets.Datacenter{Name: d.Name, Continent: d.Continent, Capacity: d.Capacity})
	}
	o := buckets.Overrides{Homes: map[uint32]string{}, Pins: map[uint32]string{}, Drained: map[string]bool{}}
	for _, src := range []struct {
		field string
		from  map[string]string
		to    map[uint32]string
	}{{"homes", cfg.Homes, o.Homes}, {"pins", cfg.Pins, o.Pins}} {
		for r, v := range src.from {
			lo, hi, err := configs.ParseBucketRange(r)
			if err != nil {
				return topo, o, fmt.Errorf("proxy: %s[%q]: %w", src.field, r, err)
			}
			for b := lo; b <= hi; b++ {
				src.to[uint32(b)] = v
			}
		}
	}
	for _, d := range cfg.Drained {
		o.Drained[d] = true
	}
	return topo, o, nil
}

// carryMoves keeps, over a reload, what the running map holds that no
// config file set: the bucket moves under way (running.Moves) and the homes
// finished moves wrote (running.Homes entries the old file does not have),
// and when recent moves began (running.RecentMoves).
// Pins and drains are rebuilt from the file, but a move is a data migration
// behind a fence: dropping one would send a bucket's writes back to the
// continent it is leaving, and forgetting a finished one would send them to
// a continent that no longer has the bucket's data. A bucket whose home the
// operator changed in the file takes the file's, and its move ends;
// entries that do not fit the new bucket count or continents are dropped.
// (A file change that moves a moving bucket's computed home to the move's
// target, through capacities, makes the reload fail, naming the bucket:
// the running map stays.) It adds to next, the
// new file's overrides.
func carryMoves(running, oldFile buckets.Overrides, next *buckets.Overrides, n uint32, topo buckets.Topology) {
	fits := func(b uint32, continent string) bool {
		_, ok := topo.ContinentIndex(continent)
		return b < n && ok
	}
	// Moves first: whether the file changed a bucket's home is a question
	// about the files alone, before next.Homes gains the running map's
	// (a bucket that moved before and is moving again has both).
	recent := func(b uint32, at time.Time) {
		if b < n && !at.IsZero() {
			if next.RecentMoves == nil {
				next.RecentMoves = map[uint32]time.Time{}
			}
			next.RecentMoves[b] = at
		}
	}
	for b, m := range running.Moves {
		if !fits(b, m.To) || next.Homes[b] != oldFile.Homes[b] {
			recent(b, m.Started) // it ends here: its cooldown stays
			continue             // the operator gave the bucket a home in the file: it wins
		}
		if next.Moves == nil {
			next.Moves = map[uint32]buckets.Move{}
		}
		next.Moves[b] = m
	}
	for b, c := range running.Homes {
		fileHome, inOld := oldFile.Homes[b]
		if inOld && fileHome == c || next.Homes[b] != fileHome || !fits(b, c) {
			continue // the file's own, or the file now says otherwise
		}
		next.Homes[b] = c
	}
	for b, at := range running.RecentMoves { // the advisor's cooldowns
		if _, later := next.RecentMoves[b]; !later {
			recent(b, at)
		}
	}
}

// Reload swaps in a new configuration and table. Requests in flight finish
// on the state they started with; new requests see the new one. Pooled
// connections to unchanged upstreams are kept, and so are bucket moves
// (carryMoves). What only a restart applies (configs.RestartOnly) is
// logged by name.
func (s *Server) Reload(cfg *configs.Config, table *hashing.Table) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	var certs *certSet
	if s.certs != nil && cfg.Listen.TLS != nil {
		// Certificates first: a bad one fails the reload, and the running
		// configuration and certificates stay.
		var err error
		if certs, err = s.certs.load(cfg); err != nil {
			return err
		}
	}
	st, err := s.newState(cfg, table, old)
	if err != nil {
		return err
	}
	if fields := configs.RestartOnly(s.boot, cfg); len(fields) > 0 {
		s.log.Warn("these settings changed but take effect only after a restart", "fields", strings.Join(fields, ", "))
	}
	if stuck := strandedMoves(old, st); len(stuck) > 0 {
		// The placer already has the new settings (newState): the driver
		// is the one after the reload.
		if d, auto := s.placer.driver(); auto {
			s.log.Info("placement.auto_apply is now off here; another node with it on drives the moves under way", "driver", d, "moves", strings.Join(stuck, ", "))
		} else {
			s.log.Warn("placement.auto_apply is now off: the moves under way stay in their phase until advanced by hand (POST /admin/buckets/{id}/move/advance on the driver, node "+d+"); a fenced bucket refuses writes meanwhile",
				"moves", strings.Join(stuck, ", "))
		}
	}
	if undone := revertedChanges(old, st); len(undone) > 0 {
		s.log.Warn("the reload undid changes made at run time (admin, fleet or advisor), since the file does not have them; put lasting ones in the file",
			"undone", strings.Join(undone, ", "))
	}
	s.cur.Store(st)
	if certs != nil {
		s.certs.cur.Store(certs)
		s.certs.swappedIn(certs)
	}
	closeUnused(old.pools, st.pools)
	snap := st.router.placement.Load()
	s.placer.observe(old.router.placement.Load(), snap)
	s.log.Info("configuration reloaded", "map_version", snap.Version(), "table_users", table.Len())
	s.placementChanged(snap)
	return nil
}

// RecordReload notes the outcome of a reload attempt (SIGHUP, the admin
// endpoint) for socialroute_config_last_reload_successful and
// ..._success_timestamp_seconds. The caller that reads the file reports
// it, since most failures come before Reload: a file that does not parse,
// a table that does not load.
func (s *Server) RecordReload(err error) {
	s.lastReload.ok.Store(err == nil)
	if err == nil {
		s.lastReload.succeeded.Store(time.Now().Unix())
	}
}

// ChangePlacement applies an operator's change (pin, drain, home) to the
// bucket map as a new version made by this node, effective for the next
// request, and reports it to OnPlacementChange. A change that fails or
// does not fit the topology changes nothing.
func (s *Server) ChangePlacement(change func(*buckets.Overrides) error) (*buckets.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cur.Load().router.placement.Load()
	snap, err := s.cur.Load().router.placement.UpdateFrom(s.cur.Load().cfg.Node.Name, change)
	if err != nil {
		return nil, err
	}
	s.placer.observe(prev, snap)
	s.log.Info("bucket map changed", "map_version", snap.Version())
	s.placementChanged(snap)
	return snap, nil
}

// AdoptPlacement applies overrides another node made, as version, if it is
// newer than this node's map (higher version, then greater node name); it
// reports whether it did. It does not call OnPlacementChange: the change
// is already spreading.
func (s *Server) AdoptPlacement(version uint64, origin string, o buckets.Overrides) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.cur.Load().router.placement
	before := m.Load()
	ok, err := m.Adopt(version, origin, o)
	if ok {
		s.placer.observe(before, m.Load())
	}
	switch {
	case ok && version == before.Version() && before.Origin() == s.cur.Load().cfg.Node.Name && !sameOverrides(before.Overrides(), o):
		// Made here and on another node at the same time: the greater
		// name wins everywhere, so what was changed here is undone
		// everywhere, though its caller was told it was done.
		s.log.Warn("bucket map: this node's change lost to one made at the same time on another node, and is undone; look at the map and make it again if it still applies",
			"map_version", version, "origin", origin)
	case ok:
		s.log.Info("bucket map adopted from the fleet", "map_version", version, "origin", origin)
	}
	return ok, err
}

// sameOverrides reports whether a and b say the same (nil and empty maps
// alike, times by instant): two nodes that made the same change at once,
// a reload of the same file on every node, lost nothing to each other.
func sameOverrides(a, b buckets.Overrides) bool {
	sameMove := func(x, y buckets.Move) bool { return x.To == y.To && x.Phase == y.Phase && x.Started.Equal(y.Started) }
	return maps.Equal(a.Homes, b.Homes) && maps.Equal(a.Pins, b.Pins) && maps.Equal(a.Drained, b.Drained) &&
		maps.EqualFunc(a.Moves, b.Moves, sameMove) && maps.EqualFunc(a.RecentMoves, b.RecentMoves, time.Time.Equal)
}

// placementChanged tells OnPlacementChange. Called with s.mu held, so
// notifications leave in version order.
func (s *Server) placementChanged(snap *buckets.Snapshot) {
	if s.notify != nil {
		s.notify(snap)
	}
}

// Placement is the bucket map in force. Change it through ChangePlacement,
// which serialises with reloads and tells the fleet.
func (s *Server) Placement() *buckets.Map { return s.cur.Load().router.placement }

// Router is the routing core in force.
func (s *Server) Router() *Router { return s.cur.Load().router }

// Stats are the server's running totals.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve accepts clients on ln until Shutdown. It returns nil after a
// graceful shutdown. ln is a plain listener (see Listen); Serve adds the
// PROXY protocol and TLS as listen.proxy_protocol and listen.tls ask.
func (s *Server) Serve(ln net.Listener) error {
	ln, err := s.wrapListener(ln)
	if err != nil {
		return err
	}
	dl, done := &drainListener{Listener: ln}, make(chan struct{})
	s.mu.Lock()
	s.ln, s.serveDone = dl, done
	s.mu.Unlock()
	ln = dl
	defer close(done)
	s.log.Info("serving", "address", ln.Addr().String(), "node", s.cur.Load().cfg.Node.Name,
		"datacenter", s.cur.Load().cfg.Node.Datacenter, "buckets", s.cur.Load().cfg.Buckets,
		"tls", s.tlsConf != nil, "proxy_protocol", s.cur.Load().cfg.Listen.ProxyProtocol != nil)
	s.serving.Store(true)
	if s.certs != nil {
		go s.certs.watch(s.bg, s.cur.Load().cfg.Listen.TLS.WatchInterval, func() *configs.Config { return s.cur.Load().cfg })
	}
	if s.detect != nil {
		go s.detect.Run(s.bg)
	}
	go s.placer.run(s.bg)
	return s.http.Serve(ln)
}

// HotKeys is what this node spreads: the static list, and the keys its
// detector holds hot now.
func (s *Server) HotKeys() (static []hashing.HotKey, detected []hashing.DetectedKey) {
	return s.cur.Load().router.hot.Keys(), s.detect.Hot()
}

// Serving reports whether Serve has been called and Shutdown has not: the
// admin endpoint's readiness.
func (s *Server) Serving() bool { return s.serving.Load() }

// Shutdown stops accepting connections, lets in-flight requests finish, and
// returns when every connection is closed or ctx ends. For up to
// drainGrace, connections in use are closed after a response (Connection:
// close) rather than cut; only those idle all that time are closed
// outright: see drain.
func (s *Server) Shutdown(ctx context.Context) error {
	s.serving.Store(false)
	s.stopBg()
	s.mu.Lock()
	ln, served := s.ln, s.serveDone
	s.mu.Unlock()
	s.drain(ctx, ln, served)
	err := s.http.ShutdownWithContext(ctx)
	for _, p := range s.cur.Load().pools {
		for _, u := range p.upstreams {
			u.client.CloseIdleConnections()
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("proxy: shutdown: connections still open when the drain timeout ran out: %w", err)
	}
	return err
}

// fasthttpLogger routes fasthttp's own messages (connection-level errors)
// to slog at debug level: on an edge they are mostly clients' faults.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug("fasthttp: " + fmt.Sprintf(format, args...))
}
