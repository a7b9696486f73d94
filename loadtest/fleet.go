package loadtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/health"
	"github.com/socialroute/socialroute/proxy"
)

// Gossip timing of the demo's fleet: a dead node is declared dead in
// about probe interval × (2 + suspicion multiplier), some 1-2 s on
// loopback, instead of memberlist's LAN defaults (5-6 s).
const (
	fleetLANProbe      = 200 * time.Millisecond
	fleetLANTimeout    = 100 * time.Millisecond
	fleetWANProbe      = 300 * time.Millisecond
	fleetWANTimeout    = 150 * time.Millisecond
	fleetSuspicionMult = 2
	fleetCheckInterval = 200 * time.Millisecond
	fleetCheckTimeout  = 150 * time.Millisecond
	// fleetFormTimeout bounds the wait for the nodes to find each other.
	fleetFormTimeout = 10 * time.Second
	// fleetCloseTimeout bounds the wait for a crashed node's pools to shut
	// down before it restarts on the same ports.
	fleetCloseTimeout = 10 * time.Second
	// nodeHostBase: the proxy node of datacenter N (1-based, in config
	// order) stands on 127.0.1.(100+N), beside its web servers on 127.0.1.N.
	nodeHostBase = 100
)

// fleet is a set of proxy nodes in this process, each a proxy.Server
// whose health Status is its own health.Cluster, gossiping with the others
// over loopback as separate processes would (a LAN pool per continent, a
// WAN pool for all, encrypted with a key made for the run). A node can
// crash (crash) and come back (restart).
type fleet struct {
	key    []byte
	label  string
	base   *configs.Config
	dcs    []health.Datacenter
	nodes  []*fleetNode
	events *eventLog
	logger *slog.Logger // where the nodes' logs go besides the event log; nil: nowhere
}

// fleetNode is one proxy node.
type fleetNode struct {
	name, dc, continent string
	ip                  string
	lanBind, wanBind    string // fixed, so a restart takes the same addresses
	lanJoin, wanJoin    []string
	upstreams           []string
	addr                string    // where the proxy listens
	started             time.Time // when the running incarnation joined gossip
	// The running incarnation; nil while crashed.
	cluster *health.Cluster
	// dead cuts the running incarnation's gossip off, as a crash does.
	dead   *atomic.Bool
	srv    *proxy.Server
	ln     net.Listener
	served chan struct{}
	// closed is closed when the last crashed incarnation has finished
	// shutting down (its ports are free again).
	closed chan struct{}
}

// startFleet starts one proxy node in each of the datacenters nodeDCs
// names (the first is the seed the others join), for base's topology with
// its upstreams, and waits until they have all found each other.
func startFleet(ctx context.Context, base *configs.Config, nodeDCs []string, events *eventLog, logger *slog.Logger) (*fleet, error) {
	f := &fleet{key: make([]byte, 32), base: base, events: events, logger: logger}
	if _, err := rand.Read(f.key); err != nil {
		return nil, fmt.Errorf("loadtest: gossip key: %w", err)
	}
	f.label = "socialroute-demo-" + strconv.FormatUint(uint64(f.key[0])<<8|uint64(f.key[1]), 16)
	for _, d := range base.Datacenters {
		f.dcs = append(f.dcs, health.Datacenter{Name: d.Name, Continent: d.Continent, MaxRPS: d.MaxRPS})
	}
	hostsOK := canBind("127.0.1.1")
	for _, dc := range nodeDCs {
		i := slices.IndexFunc(base.Datacenters, func(d configs.Datacenter) bool { return d.Name == dc })
		if i < 0 {
			return nil, fmt.Errorf("loadtest: fleet: no datacenter %q", dc)
		}
		d := base.Datacenters[i]
		n := &fleetNode{name: "edge-" + dc, dc: dc, continent: d.Continent, ip: "127.0.0.1", upstreams: d.Upstreams}
		if hostsOK {
			n.ip = fmt.Sprintf("127.0.1.%d", nodeHostBase+i+1)
		}
		lan, err := freeGossipPort(n.ip)
		if err != nil {
			return nil, err
		}
		wan, err := freeGossipPort(n.ip)
		if err != nil {
			return nil, err
		}
		n.lanBind, n.wanBind = net.JoinHostPort(n.ip, strconv.Itoa(lan)), net.JoinHostPort(n.ip, strconv.Itoa(wan))
		n.closed = make(chan struct{})
		close(n.closed)
		f.nodes = append(f.nodes, n)
	}
	if len(f.nodes) == 0 {
		return nil, errors.New("loadtest: fleet: no node")
	}
	seed := f.nodes[0]
	for _, n := range f.nodes[1:] {
		n.wanJoin = []string{seed.wanBind}
		if n.continent == seed.continent {
			n.lanJoin = []string{seed.lanBind}
		} else if i := slices.IndexFunc(f.nodes, func(m *fleetNode) bool { return m.continent == n.continent }); f.nodes[i] != n {
			n.lanJoin = []string{f.nodes[i].lanBind}
		}
	}
	for _, n := range f.nodes {
		if err := f.start(ctx, n); err != nil {
			f.close()
			return nil, err
		}
	}
	if err := f.waitFormed(ctx); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// canBind reports whether this machine can listen on ip.
func canBind(ip string) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// freeGossipPort finds a port free for both TCP and UDP on ip (memberlist
// binds both to the same port).
func freeGossipPort(ip string) (int, error) {
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, fmt.Errorf("loadtest: fleet: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("loadtest: fleet: no port free for both TCP and UDP on %s", ip)
}

func (f *fleet) node(dc string) *fleetNode {
	for _, n := range f.nodes {
		if n.dc == dc {
			return n
		}
	}
	return nil
}

// start starts n's gossip and proxy.
func (f *fleet) start(ctx context.Context, n *fleetNode) error {
	var next slog.Handler
	if f.logger != nil {
		next = f.logger.Handler().WithAttrs([]slog.Attr{slog.String("node", n.name)})
	}
	log := slog.New(&captureHandler{log: f.events, node: n.name, next: next})
	fast := func(p health.PoolOptions, probe, timeout time.Duration) health.PoolOptions {
		p.ProbeInterval, p.ProbeTimeout, p.SuspicionMult = probe, timeout, fleetSuspicionMult
		return p
	}
	dead := &atomic.Bool{}
	c, err := health.Start(ctx, health.Options{
		Node:          n.name,
		Datacenter:    n.dc,
		Datacenters:   f.dcs,
		LAN:           fast(health.PoolOptions{Bind: n.lanBind, Join: n.lanJoin}, fleetLANProbe, fleetLANTimeout),
		WAN:           fast(health.PoolOptions{Bind: n.wanBind, Join: n.wanJoin}, fleetWANProbe, fleetWANTimeout),
		Key:           f.key,
		Label:         f.label,
		Upstreams:     n.upstreams,
		CheckInterval: fleetCheckInterval,
		CheckTimeout:  fleetCheckTimeout,
		Logger:        log,
		Transport: func(pool, bind string) (memberlist.NodeAwareTransport, error) {
			return health.NewFaultTransport(bind, func(string) bool { return dead.Load() })
		},
	})
	if err != nil {
		return fmt.Errorf("loadtest: fleet node %s: %w", n.name, err)
	}
	n.started = time.Now()
	f.events.add(fleetEvent{at: n.started, node: n.name, kind: evDemo, detail: "started"})
	cfg := *f.base
	cfg.Node.Name, cfg.Node.Datacenter = n.name, n.dc
	cfg.Listen.Address = net.JoinHostPort(n.ip, "0")
	srv, err := proxy.New(&cfg, nil, proxy.Options{Logger: log, Status: c})
	if err != nil {
		c.Close()
		return err
	}
	c.SetMap(srv.Placement().Load().Version(), srv.Placement().Load().Origin())
	ln, err := net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		c.Close()
		return fmt.Errorf("loadtest: fleet node %s: %w", n.name, err)
	}
	n.cluster, n.srv, n.ln, n.addr, n.dead = c, srv, ln, ln.Addr().String(), dead
	n.served = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(n.served)
	waitServing(srv, n.served)
	return nil
}

// waitServing waits (a second at most) until srv's Serve has begun, so
// that a Shutdown soon after finds it started: Serve starts background
// work that only a Shutdown after it stops.
func waitServing(srv *proxy.Server, served <-chan struct{}) {
	deadline := time.Now().Add(time.Second)
	for !srv.Serving() && time.Now().Before(deadline) {
		select {
		case <-served:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// waitFormed waits until every node lists every other.
func (f *fleet) waitFormed(ctx context.Context) error {
	deadline := time.Now().Add(fleetFormTimeout)
	for {
		formed := true
		for _, n := range f.nodes {
			if len(n.cluster.Members()) < len(f.nodes) {
				formed = false
			}
		}
		if formed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loadtest: fleet: the %d proxy nodes did not find each other within %v", len(f.nodes), fleetFormTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// crash kills node dc as a machine dying would: its gossip goes silent at
// once (the others find out by probing, as they must), its proxy stops
// listening. Its pools then shut down in the background, so that restart
// can take the same addresses.
func (f *fleet) crash(dc string) error {
	n := f.node(dc)
	if n == nil || n.cluster == nil {
		return fmt.Errorf("loadtest: fleet: no running node in %s", dc)
	}
	n.dead.Store(true)
	shutdownServer(n.srv, n.ln, n.served, time.Second)
	c := n.cluster
	n.cluster, n.srv, n.ln, n.dead = nil, nil, nil, nil
	n.closed = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		_ = c.Close() // its goodbyes go nowhere: the transport is dead
	}(n.closed)
	return nil
}

// restart starts node dc again, on the same gossip addresses, once its
// crashed incarnation has shut down. It returns when the node serves;
// n.started says when it joined gossip.
func (f *fleet) restart(ctx context.Context, dc string) error {
	n := f.node(dc)
	if n == nil || n.cluster != nil {
		return fmt.Errorf("loadtest: fleet: no crashed node in %s", dc)
	}
	select {
	case <-n.closed:
	case <-time.After(fleetCloseTimeout):
		return fmt.Errorf("loadtest: fleet: node %s still shutting down after %v", n.name, fleetCloseTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	return f.start(ctx, n)
}

// close stops every node: proxies first, then gossip, in parallel, and
// waits for crashed nodes to finish shutting down. The whole fleet goes:
// there is no one left to say goodbye to, so gossip is cut first. (Each
// node's goodbyes otherwise wait out its peers' gossip rounds, which end as
// the peers shut down too: some 5 s instead of 2.)
func (f *fleet) close() {
	var wg sync.WaitGroup
	for _, n := range f.nodes {
		if n.srv != nil {
			wg.Go(func() { shutdownServer(n.srv, n.ln, n.served, demoShutdownTimeout) })
		}
	}
	wg.Wait()
	for _, n := range f.nodes {
		if n.dead != nil {
			n.dead.Store(true)
		}
	}
	for _, n := range f.nodes {
		if n.cluster != nil {
			c := n.cluster
			wg.Go(func() { _ = c.Close() })
			n.cluster, n.srv = nil, nil
		}
	}
	wg.Wait()
	for _, n := range f.nodes {
		select {
		case <-n.closed:
		case <-time.After(fleetCloseTimeout):
		}
	}
}

// shutdownServer drains srv for at most timeout and waits for Serve to
// return.
func shutdownServer(srv *proxy.Server, ln net.Listener, served <-chan struct{}, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = ln.Close() // Serve may not have taken it yet
	<-served
}
