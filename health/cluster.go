package health

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Datacenter is what the cluster needs to know of one datacenter of the
// topology (by index, the same indexes the routing core uses).
type Datacenter struct {
	Name      string
	Continent string
	// MaxRPS is the fleet-wide request rate the datacenter can take; 0 is
	// no limit.
	MaxRPS float64
}

// PoolOptions configure one memberlist pool.
type PoolOptions struct {
	// Bind is host:port to gossip on; port 0 picks a free one. Empty: off.
	Bind string
	// Advertise is host:port others reach this node at. Default: Bind
	// (with the port actually bound).
	Advertise string
	// Join lists host:port of members to join; retried in the background
	// until one answers.
	Join []string
	// ProbeInterval, ProbeTimeout and SuspicionMult override memberlist's
	// LAN (or WAN) defaults when non-zero.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// GossipToTheDeadTime overrides how long memberlist keeps contacting
	// a node it declared dead (30 s LAN, 60 s WAN) when non-zero; past it,
	// only Options.ReconnectInterval's rejoin brings the node back.
	GossipToTheDeadTime time.Duration
}

// Options configure a Cluster. Node, Datacenter, Datacenters and Key are
// required.
type Options struct {
	// Node is this proxy node's name, unique in the fleet.
	Node string
	// Datacenter is the name of the datacenter this node stands in.
	Datacenter string
	// Datacenters is the topology, by the routing core's indexes.
	Datacenters []Datacenter
	// LAN is the pool of this continent's nodes; WAN, if bound, the pool
	// of every node, with memberlist's WAN timing.
	LAN, WAN PoolOptions
	// Key encrypts gossip (AES-GCM, 16, 24 or 32 bytes).
	Key []byte
	// Label isolates clusters sharing a network. The LAN pool's label is
	// Label + "/lan/" + continent, so continents' LAN pools cannot merge.
	Label string
	// Upstreams are this node's own datacenter's web servers, checked
	// every CheckInterval (a TCP connect, or an HTTP GET of CheckPath that
	// must answer 2xx) within CheckTimeout.
	Upstreams     []string
	CheckInterval time.Duration
	CheckTimeout  time.Duration
	CheckPath     string
	// CheckTLS, when set, makes the checks speak TLS with it (the
	// datacenter's upstream TLS): a TCP check completes a handshake, an
	// HTTP one is an HTTPS GET. nil: plain.
	CheckTLS *tls.Config
	// LoadLimit is the share of a datacenter's MaxRPS it may be offered
	// before the excess spills to the next datacenter. Default 1.
	LoadLimit float64
	// SlowStart is how long a datacenter that comes back up (from down)
	// takes to get its whole share again: it admits a share that grows
	// from 5% to all over SlowStart, as an undrain ramps, instead of every
	// node sending it everything the moment one check passes. 0: at once.
	SlowStart time.Duration
	// ReconnectInterval is how often, once joined, a pool that misses a
	// node it saw (declared dead: a partition, a crash) joins its seeds and
	// the missing nodes' last addresses again. memberlist stops contacting
	// dead nodes after a while, so a partition longer than that would
	// otherwise never heal. Default 10s.
	ReconnectInterval time.Duration
	// AutoApply is the node's placement.auto_apply, gossiped from the
	// start (SetAutoApply changes it): until a node says, the others count
	// it as on, and one that joins with the least name would be taken for
	// the driver of the fleet's moves before its proxy is up.
	AutoApply bool
	// Logger receives state changes at info/warn, memberlist's chatter at
	// debug. Default slog.Default().
	Logger *slog.Logger
	// OnPlacement, if set, receives each bucket-map version another node
	// spread that is newer than the one this node holds, in order, from
	// one goroutine (so it may take a lock, but should not take long). It
	// returns the map the node routes by afterwards (version and origin),
	// which is what the node gossips (a move's fence waits for it): p's if
	// it was adopted, the node's own if p could not be (a payload it cannot
	// read, a topology it does not have).
	OnPlacement func(Placement) (version uint64, origin string)
	// Transport, if set, makes the transport of a pool ("lan" or "wan")
	// bound to bind; tests use it to cut the network. Default: UDP/TCP.
	Transport func(pool, bind string) (memberlist.NodeAwareTransport, error)
	// WaitForBind makes Start succeed when a pool's port (not 0) is held by
	// another process: the pool starts unbound, knowing no one, and binds
	// and joins in the background as soon as the port is free. It is for
	// upgrades, where the old process of this node holds the ports until
	// its Close (see handover.go). Without it such a Start fails, which
	// catches two nodes configured on one port.
	WaitForBind bool
}

// Cluster is one proxy node's membership in the fleet and its view of every
// datacenter's health. It implements Status.
type Cluster struct {
	opts      Options
	log       *slog.Logger
	continent string
	self      int // index of this node's datacenter
	lan, wan  *memberlist.Memberlist

	// loadLimit (float64 bits) and slowStart are Options.LoadLimit and
	// SlowStart as the last reload set them (SetRouting).
	loadLimit atomic.Uint64
	slowStart atomic.Int64

	meta  atomic.Pointer[[]byte] // this node's encoded Meta
	mu    sync.Mutex             // guards state below and meta updates
	state Meta
	upAt  []time.Time       // per datacenter: when it last came back up from down (evaluate's)
	seen  map[string]string // node name -> datacenter, for nodes that may still come back
	addrs map[string]string // node name -> its last address in the pool that judges it, for rejoin
	// listed is each pool's members as the event delegate last heard of
	// them, by node name. Memberlist's own Members() hands out pointers
	// into state it goes on writing; copies taken in its callbacks are
	// safe to read.
	listed  map[string]map[string]listedNode
	view    atomic.Pointer[view]
	offered []paddedCounter // requests offered to each datacenter, for headroom
	kick    chan struct{}
	joinNow chan struct{} // a pool that waited for its port is bound: join now

	closeOnce sync.Once
	closeErr  error
	closing   atomic.Bool // Close has begun: the pools' socket errors are expected

	placement  *Placement                // the newest bucket map held (c.mu)
	inbox      atomic.Pointer[Placement] // newest not yet handed to OnPlacement
	arrived    chan struct{}
	metaDirty  chan struct{} // the node's metadata changed: metaLoop broadcasts it
	offerSlots chan struct{} // offerHeld's sends in flight
	access     accessBook    // access reports heard from the fleet (stats.go)
	cancel     context.CancelFunc
	done       sync.WaitGroup
	now        func() time.Time
}

var _ Status = (*Cluster)(nil)

// paddedCounter keeps each datacenter's counter on its own cache line, so
// requests to different datacenters do not contend.
type paddedCounter struct {
	n atomic.Uint64
	_ [56]byte
}

// view is one immutable evaluation of every datacenter's health.
type view struct {
	down    uint64                  // datacenters that must not be used
	limited uint64                  // datacenters admitting only a share
	admit   [MaxDatacenters]float64 // the share admitted, for limited ones
	dcs     []DCStatus
	hot     map[uint64]uint8 // keys some node detected hot: their spread
}

// MaxDatacenters bounds a topology: datacenter sets are 64-bit masks.
const MaxDatacenters = 64

// DCStatus is the cluster's view of one datacenter, for operators.
type DCStatus struct {
	Name      string  `json:"name"`
	Continent string  `json:"continent"`
	Up        bool    `json:"up"`
	Reason    string  `json:"reason"`
	Nodes     int     `json:"nodes"`       // proxy nodes of it known to be alive
	Healthy   int     `json:"healthy"`     // upstreams its nodes found healthy (best report)
	Upstreams int     `json:"upstreams"`   // upstreams its nodes check
	Offered   float64 `json:"offered_rps"` // fleet-wide request rate offered to it
	Admit     float64 `json:"admit"`       // share of offered requests it is sent (headroom)
}

// Start creates the node's pools, starts joining, checking and evaluating,
// and returns at once; Usable is right from the first call (a datacenter
// no node has reported on yet counts as up).
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReconnectInterval <= 0 {
		o.ReconnectInterval = 10 * time.Second
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = time.Second
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 500 * time.Millisecond
	}
	if len(o.Datacenters) == 0 || len(o.Datacenters) > MaxDatacenters {
		return nil, fmt.Errorf("health: need 1 to %d datacenters, got %d", MaxDatacenters, len(o.Datacenters))
	}
	c := &Cluster{
		opts:       o,
		log:        o.Logger,
		self:       -1,
		seen:       map[string]string{},
		addrs:      map[string]string{},
		upAt:       make([]time.Time, len(o.Datacenters)),
		listed:     map[string]map[string]listedNode{"lan": {}, "wan": {}},
		offered:    make([]paddedCounter, len(o.Datacenters)),
		kick:       make(chan struct{}, 1),
		joinNow:    make(chan struct{}, 1),
		arrived:    make(chan struct{}, 1),
		metaDirty:  make(chan struct{}, 1),
		offerSlots: make(chan struct{}, sendAtOnce),
		now:        time.Now,
	}
	c.SetRouting(o.LoadLimit, o.SlowStart)
	for i, d := range o.Datacenters {
		if d.Name == o.Datacenter {
			c.self, c.continent = i, d.Continent
		}
	}
	if c.self < 0 {
		return nil, fmt.Errorf("health: node datacenter %q is not in the topology", o.Datacenter)
	}
	c.state = Meta{Continent: c.continent, Datacenter: o.Datacenter, Upstreams: uint16(len(o.Upstreams)), Healthy: uint16(len(o.Upstreams)),
		AutoApply: &o.AutoApply}
	if err := c.publishMeta(); err != nil {
		return nil, err
	}
	c.evaluate()

	var err error
	if c.lan, err = c.newPool("lan", o.LAN, memberlist.DefaultLANConfig(), o.Label+"/lan/"+c.continent); err != nil {
		return nil, err
	}
	if o.WAN.Bind != "" {
		if c.wan, err = c.newPool("wan", o.WAN, memberlist.DefaultWANConfig(), o.Label+"/wan"); err != nil {
			c.lan.Shutdown()
			return nil, err
		}
	}

	ctx, c.cancel = context.WithCancel(ctx)
	c.done.Add(5)
	go c.joinLoop(ctx)
	go c.checkLoop(ctx)
	go c.evaluateLoop(ctx)
	go c.deliverLoop(ctx.Done())
	go c.metaLoop(ctx.Done())
	return c, nil
}

// newPool creates one memberlist pool from its options and the profile's
// defaults.
func (c *Cluster) newPool(name string, p PoolOptions, conf *memberlist.Config, label string) (*memberlist.Memberlist, error) {
	host, port, err := splitHostPort(p.Bind)
	if err != nil {
		return nil, fmt.Errorf("health: %s bind: %w", name, err)
	}
	conf.Name = c.opts.Node
	conf.BindAddr, conf.BindPort = host, port
	conf.AdvertiseAddr, conf.AdvertisePort = host, port
	if p.Advertise != "" {
		if conf.AdvertiseAddr, conf.AdvertisePort, err = splitHostPort(p.Advertise); err != nil {
			return nil, fmt.Errorf("health: %s advertise: %w", name, err)
		}
	}
	if p.ProbeInterval > 0 {
		conf.ProbeInterval = p.ProbeInterval
	}
	if p.ProbeTimeout > 0 {
		conf.ProbeTimeout = p.ProbeTimeout
	}
	if p.SuspicionMult > 0 {
		conf.SuspicionMult = p.SuspicionMult
	}
	if p.GossipToTheDeadTime > 0 {
		conf.GossipToTheDeadTime = p.GossipToTheDeadTime
	}
	conf.SecretKey = c.opts.Key
	conf.Label = label
	conf.Delegate = &delegate{c: c}
	conf.Events = &events{c: c, pool: name}
	conf.Logger = newStdLogger(c.log.With("pool", name), c.opts.Node, &c.closing)
	if c.opts.Transport == nil && c.opts.WaitForBind && port != 0 {
		// Bind here rather than in memberlist.Create, to tell a held port
		// from other failures and wait for it (handover.go).
		t, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: conf.Logger})
		switch {
		case err == nil:
			conf.Transport = t
		case portHeld(err):
			c.log.Warn("gossip port held by another process (an older process of this node, during an upgrade?); "+
				"serving without this pool, datacenters judged by breakers alone, binding again in the background",
				"pool", name, "address", p.Bind, "error", err)
			conf.Transport = newWaitingTransport(name, host, port, c.log, conf.Logger, func() {
				select {
				case c.joinNow <- struct{}{}:
				default:
				}
			})
		default:
			return nil, fmt.Errorf("health: %s pool: %w", name, err)
		}
	}
	if c.opts.Transport != nil {
		t, err := c.opts.Transport(name, p.Bind)
		if err != nil {
			return nil, fmt.Errorf("health: %s transport: %w", name, err)
		}
		conf.Transport = t
		if port == 0 {
			// A transport bound to port 0 knows its port; advertise it.
			ip, got, err := t.FinalAdvertiseAddr("", 0)
			if err != nil {
				return nil, fmt.Errorf("health: %s transport: %w", name, err)
			}
			conf.AdvertiseAddr, conf.AdvertisePort = ip.String(), got
		}
	}
	ml, err := memberlist.Create(conf)
	if err != nil {
		if conf.Transport != nil {
			conf.Transport.Shutdown()
		}
		return nil, fmt.Errorf("health: %s pool: %w", name, err)
	}
	return ml, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", hp)
	}
	return host, p, nil
}

// LANAddr and WANAddr are the addresses other nodes join this one at
// ("" for a pool that is off).
func (c *Cluster) LANAddr() string { return c.lan.LocalNode().Address() }

// WANAddr is the WAN pool's address, "" when the WAN pool is off.
func (c *Cluster) WANAddr() string {
	if c.wan == nil {
		return ""
	}
	return c.wan.LocalNode().Address()
}

// joinLoop joins each pool's seeds, retrying every second until one
// answers; a node whose seeds are all down yet still works alone. A pool
// waiting for its port fails its joins until it is bound, and then joins
// at once. Then, every ReconnectInterval, a pool that misses a node it saw
// joins again (rejoinTargets): memberlist itself stops contacting a dead
// node after GossipToTheDeadTime (30 s on the LAN, 60 s on the WAN), so
// both sides of a longer partition would go on taking the other's
// datacenters for dead after the network healed.
func (c *Cluster) joinLoop(ctx context.Context) {
	defer c.done.Done()
	pending := map[*memberlist.Memberlist][]string{}
	if len(c.opts.LAN.Join) > 0 {
		pending[c.lan] = c.opts.LAN.Join
	}
	if c.wan != nil && len(c.opts.WAN.Join) > 0 {
		pending[c.wan] = c.opts.WAN.Join
	}
	for len(pending) > 0 {
		for ml, seeds := range pending {
			n, ok, err := joinUnlessDone(ctx, ml, seeds)
			switch {
			case !ok:
				return
			case err == nil && n > 0:
				delete(pending, ml)
				c.log.Info("joined the fleet", "pool", poolName(c, ml), "contacted", n)
			default:
				c.log.Debug("join failed; retrying", "pool", poolName(c, ml), "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.joinNow:
		case <-time.After(time.Second):
		}
	}
	tick := time.NewTicker(c.opts.ReconnectInterval)
	defer tick.Stop()
	var busy [2]atomic.Bool // a pool's rejoin is under way
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for i, p := range []struct {
			ml    *memberlist.Memberlist
			seeds []string
		}{{c.lan, c.opts.LAN.Join}, {c.wan, c.opts.WAN.Join}} {
			if p.ml == nil || busy[i].Load() {
				continue
			}
			targets := c.rejoinTargets(poolName(c, p.ml), p.seeds)
			if len(targets) == 0 {
				continue
			}
			// Join dials its targets one after another, each up to
			// memberlist's TCP timeout (30 s on the WAN) when it does not
			// answer: on a goroutine of its own, which Close does not wait
			// for, so neither a stop nor the other pool waits behind it.
			busy[i].Store(true)
			go func() {
				defer busy[i].Store(false)
				n, err := p.ml.Join(targets)
				c.log.Debug("rejoining: a node seen before is missing", "pool", poolName(c, p.ml), "tried", targets, "contacted", n, "error", err)
			}()
		}
	}
}

// joinUnlessDone joins seeds on a goroutine of its own and waits for it,
// or for ctx, whichever comes first (ok false): Join dials its seeds one
// after another, each up to memberlist's TCP timeout (10 s on the LAN,
// 30 s on the WAN) when one takes the connection and never answers, and a
// stop waits for this loop, so a seed that swallows the join would hold
// SIGTERM's drain back by as long, past a service manager's patience.
// The goroutine left behind ends with that timeout, or when Close shuts
// the pool down.
func joinUnlessDone(ctx context.Context, ml *memberlist.Memberlist, seeds []string) (n int, ok bool, err error) {
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := ml.Join(seeds)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return r.n, true, r.err
	case <-ctx.Done():
		return 0, false, nil
	}
}

// rejoinTargets is whom pool should join again: its seeds and the last
// addresses of the nodes it judges that it saw and no longer lists; nil
// when it misses none.
func (c *Cluster) rejoinTargets(pool string, seeds []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var targets []string
	for name, dc := range c.seen {
		if _, listed := c.listed[pool][name]; listed || c.judgedIn(dc) != pool {
			continue
		}
		if a := c.addrs[name]; a != "" && !slices.Contains(targets, a) {
			targets = append(targets, a)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	for _, s := range seeds {
		if !slices.Contains(targets, s) {
			targets = append(targets, s)
		}
	}
	return targets
}

// judgedIn is the pool that judges datacenter dc's nodes: the LAN pool for
// this continent's, the WAN pool for the others'.
func (c *Cluster) judgedIn(dc string) string {
	for _, d := range c.opts.Datacenters {
		if d.Name == dc && d.Continent == c.continent {
			return "lan"
		}
	}
	return "wan"
}

func poolName(c *Cluster, ml *memberlist.Memberlist) string {
	if ml == c.wan {
		return "wan"
	}
	return "lan"
}

// Usable reports whether datacenter dc may take a request now: no
// evidence that it is down, and, if the fleet offers it more than its
// headroom allows, this request falls in the admitted share. It counts the
// offer. Safe for concurrent use; never blocks; does not allocate.
func (c *Cluster) Usable(dc int) bool {
	c.offered[dc].n.Add(1)
	v := c.view.Load()
	bit := uint64(1) << dc
	if v.down&bit != 0 {
		return false
	}
	if v.limited&bit != 0 {
		return rand.Float64() < v.admit[dc]
	}
	return true
}

// Down reports whether datacenter dc is down (all its proxy nodes dead,
// or its web tier failing their checks), not merely full.
func (c *Cluster) Down(dc int) bool { return c.view.Load().down&(uint64(1)<<dc) != 0 }

// SetHotKeys gossips the keys this node's detector holds hot (the first
// MaxHotInMeta of them), so the whole fleet spreads them alike.
func (c *Cluster) SetHotKeys(keys []HotHash) {
	keys = keys[:min(len(keys), MaxHotInMeta)]
	c.mu.Lock()
	if slices.Equal(keys, c.state.Hot) {
		c.mu.Unlock()
		return
	}
	c.state.Hot = slices.Clone(keys)
	err := c.publishMeta()
	c.mu.Unlock()
	c.gossipMeta(err)
}

// HotSpread is how far the fleet spreads the key with hash h: the largest
// spread any node detected for it, 1 when none did. It is for the request
// path: no lock, no allocation.
func (c *Cluster) HotSpread(h uint64) int {
	if k, ok := c.view.Load().hot[h]; ok {
		return int(k)
	}
	return 1
}

// FleetHot lists the keys the fleet holds hot (by hash) with their spread.
func (c *Cluster) FleetHot() []HotHash {
	var out []HotHash
	for h, k := range c.view.Load().hot {
		out = append(out, HotHash{Hash: h, Spread: k})
	}
	slices.SortFunc(out, func(a, b HotHash) int { return cmp.Compare(a.Hash, b.Hash) })
	return out
}

// SetState changes the node's own state (draining on shutdown) and gossips
// it.
func (c *Cluster) SetState(s NodeState) {
	c.updateMeta(func(m *Meta) { m.State = s })
}

// SetMap gossips the bucket map this node routes by: its version and the
// node that made it.
func (c *Cluster) SetMap(version uint64, origin string) {
	c.updateMeta(func(m *Meta) { m.MapVersion, m.MapOrigin = version, origin })
}

// SetAutoApply gossips this node's placement.auto_apply: the fleet's moves
// are driven by a node that has it on.
// SetRouting applies a reload's routing.load_limit (the share of a
// datacenter's max_rps it is offered before the excess spills; <= 0 for 1)
// and routing.drain_ramp (a datacenter back up ramps in over it) from the
// next evaluation on.
func (c *Cluster) SetRouting(loadLimit float64, slowStart time.Duration) {
	if loadLimit <= 0 {
		loadLimit = 1
	}
	c.loadLimit.Store(math.Float64bits(loadLimit))
	c.slowStart.Store(int64(slowStart))
}

func (c *Cluster) SetAutoApply(on bool) {
	c.updateMeta(func(m *Meta) { m.AutoApply = &on })
}

// updateMeta changes this node's metadata under the lock, then gossips it.
func (c *Cluster) updateMeta(change func(*Meta)) {
	c.mu.Lock()
	change(&c.state)
	err := c.publishMeta()
	c.mu.Unlock()
	c.gossipMeta(err)
}

// publishMeta encodes c.state for the delegate. Called with c.mu held.
func (c *Cluster) publishMeta() error {
	b, err := c.state.Encode(nil)
	if err != nil {
		return err
	}
	c.meta.Store(&b)
	return nil
}

// gossipMeta tells the pools the node's metadata changed, through
// metaLoop: it never waits. memberlist's UpdateNode waits until the
// broadcast went out its retransmit count of times (up to its timeout, per
// pool), which held the evaluation loop and, through SetMapVersion, the
// proxy's lock for a bucket-map change, for up to two seconds.
func (c *Cluster) gossipMeta(err error) {
	if err != nil {
		c.log.Error("node metadata not gossiped", "error", err)
		return
	}
	select {
	case c.metaDirty <- struct{}{}:
	default: // a broadcast is pending; it sends the newest metadata
	}
}

// metaLoop broadcasts the node's metadata each time it changed, newest
// only: changes that come while one is being queued share the next.
func (c *Cluster) metaLoop(stop <-chan struct{}) {
	defer c.done.Done()
	for {
		select {
		case <-stop:
			return // Close gossips what matters
		case <-c.metaDirty:
		}
		for _, ml := range []*memberlist.Memberlist{c.lan, c.wan} {
			if ml != nil {
				// UpdateNode queues the broadcast before it waits for the
				// retransmits; waiting buys nothing here and would hold
				// the next change back (0 would mean wait for ever).
				if err := ml.UpdateNode(time.Millisecond); err != nil {
					c.log.Debug("gossiping node metadata", "error", err)
				}
			}
		}
		c.poke()
	}
}

// poke asks the evaluation loop to run soon. Never blocks: delegates call it.
func (c *Cluster) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Status returns the current view of every datacenter, by index.
func (c *Cluster) Status() []DCStatus {
	return append([]DCStatus(nil), c.view.Load().dcs...)
}

// Member is one proxy node as this node sees it.
type Member struct {
	Name       string `json:"name"`
	Address    string `json:"address"`
	Pool       string `json:"pool"`
	Datacenter string `json:"datacenter"`
	Continent  string `json:"continent"`
	NodeState  string `json:"node_state"` // serving, draining, or NodeUnreadable
	MapVersion uint64 `json:"map_version"`
	MapOrigin  string `json:"map_origin,omitempty"` // the node that made MapVersion; "" from an older release
	// AutoApply is the node's placement.auto_apply; nil from an older
	// release.
	AutoApply *bool `json:"auto_apply,omitempty"`
	Healthy   int   `json:"healthy_upstreams"`
	Upstreams int   `json:"upstreams"`
}

// listedNode is one member of a pool, copied from a memberlist callback.
type listedNode struct {
	addr       string
	meta       Meta
	unreadable bool // its metadata did not decode: meta is the last that did, or zero
}

// NodeUnreadable is Member.NodeState for a node whose metadata this node
// cannot read (another version of socialroute, say).
const NodeUnreadable = "unreadable"

// Members lists the nodes memberlist has not declared dead (alive or
// suspect: it does not tell which) in both pools; a node in both appears
// once.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Member
	for _, pool := range []string{"lan", "wan"} {
		for name, n := range c.listed[pool] {
			if slices.ContainsFunc(out, func(m Member) bool { return m.Name == name }) {
				continue
			}
			m := n.meta
			state := m.State.String()
			if n.unreadable {
				state = NodeUnreadable
			}
			out = append(out, Member{
				Name: name, Address: n.addr, Pool: pool,
				Datacenter: m.Datacenter, Continent: m.Continent, NodeState: state,
				MapVersion: m.MapVersion, MapOrigin: m.MapOrigin, AutoApply: m.AutoApply, Healthy: int(m.Healthy), Upstreams: int(m.Upstreams),
			})
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close leaves the fleet gracefully and releases the gossip ports; later
// calls return the first one's result. The view of the fleet is frozen as
// it was (Usable keeps answering from it), Members lists no one.
//
// Memberlist does not tell the others whether a node that went away left
// or died, so a node that said it was draining is taken to have left, and
// its datacenter is not declared down for it. Close therefore makes sure
// every member has heard "draining" before it leaves: it updates its
// metadata and pushes its state over TCP to each member (a push/pull, as a
// join does), then leaves, then shuts the pools down. Called before the
// HTTP drain, this frees the ports for the next process of an upgrade
// (handover.go) within a second or two.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

// closeTell bounds how long Close waits for members to take its state.
const closeTell = 2 * time.Second

func (c *Cluster) close() error {
	c.cancel()
	c.done.Wait()
	c.closing.Store(true)
	c.mu.Lock()
	c.state.State = Draining
	err := c.publishMeta()
	peers := map[string][]string{}
	for pool, members := range c.listed {
		for name, n := range members {
			if name != c.opts.Node {
				peers[pool] = append(peers[pool], n.addr)
			}
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.log.Error("node metadata not gossiped", "error", err)
	}

	pools := map[string]*memberlist.Memberlist{"lan": c.lan}
	if c.wan != nil {
		pools["wan"] = c.wan
	}
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for name, ml := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The new metadata is in the node's own state at once; the
			// broadcast is a bonus, the push below the guarantee.
			_ = ml.UpdateNode(100 * time.Millisecond)
			if len(peers[name]) > 0 {
				told := make(chan int, 1)
				go func() { n, _ := ml.Join(peers[name]); told <- n }()
				select {
				case n := <-told:
					c.log.Debug("told the fleet this node is draining", "pool", name, "members", n, "of", len(peers[name]))
				case <-time.After(closeTell):
					c.log.Warn("not every member heard that this node is draining before it left", "pool", name, "waited", closeTell)
				}
			}
			var perr []error
			if err := ml.Leave(2 * time.Second); err != nil {
				perr = append(perr, fmt.Errorf("health: %s pool: leave: %w", name, err))
			}
			if err := ml.Shutdown(); err != nil {
				perr = append(perr, fmt.Errorf("health: %s pool: shutdown: %w", name, err))
			}
			emu.Lock()
			errs = append(errs, perr...)
			emu.Unlock()
		}()
	}
	wg.Wait()
	c.mu.Lock()
	for _, members := range c.listed {
		clear(members)
	}
	c.mu.Unlock()
	return errors.Join(errs...)
}
