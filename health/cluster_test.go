package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist's package-level metrics sink and net/http's idle
		// connection reaper outlive a test by design.
		goleak.IgnoreTopFunction("github.com/hashicorp/go-metrics.(*InmemSink).run"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

var testKey = []byte("0123456789abcdef") // AES-128

// testTopology: two US datacenters and one EU one.
var testTopology = []Datacenter{
	{Name: "us-east", Continent: "us"},
	{Name: "us-west", Continent: "us", MaxRPS: 0},
	{Name: "eu-west", Continent: "eu"},
}

const (
	usEast = 0
	usWest = 1
	euWest = 2
)

// fastTiming makes memberlist detect a dead node in well under a second on
// loopback, so tests do not wait out LAN defaults.
func fastTiming(p PoolOptions) PoolOptions {
	p.ProbeInterval = 100 * time.Millisecond
	p.ProbeTimeout = 50 * time.Millisecond
	p.SuspicionMult = 2
	return p
}

type testNode struct {
	*Cluster
	name string
	ip   string
}

// startNode starts a cluster node on its own loopback address ip, joining
// seeds (LAN and WAN addresses of earlier nodes).
func startNode(t *testing.T, name, dc, ip string, lanSeeds, wanSeeds []string, mutate func(*Options)) *testNode {
	t.Helper()
	o := Options{
		Node:          name,
		Datacenter:    dc,
		Datacenters:   testTopology,
		LAN:           fastTiming(PoolOptions{Bind: ip + ":0", Join: lanSeeds}),
		WAN:           fastTiming(PoolOptions{Bind: ip + ":0", Join: wanSeeds}),
		Key:           testKey,
		Label:         "test",
		CheckInterval: 50 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
		// Rejoins after a partition within the tests' patience.
		ReconnectInterval: 300 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&o)
	}
	c, err := Start(context.Background(), o)
	if err != nil {
		if errors.Is(err, errNoAddress) {
			t.Skipf("cannot bind %s (needs 127.0.0.0/8 on loopback): %v", ip, err)
		}
		t.Fatal(err)
	}
	n := &testNode{Cluster: c, name: name, ip: ip}
	t.Cleanup(func() { n.stop() })
	return n
}

var errNoAddress = errors.New("cannot assign requested address")

// stop closes the node gracefully, once.
func (n *testNode) stop() {
	if n.cancel != nil {
		n.Close()
		n.cancel = nil
	}
}

// crash stops the node without leaving: the others must find out by
// probing, as when a machine dies.
func (n *testNode) crash() {
	n.cancel()
	n.done.Wait()
	n.cancel = nil
	if n.wan != nil {
		n.wan.Shutdown()
	}
	n.lan.Shutdown()
}

// eventually waits up to d for cond, returning how long it took.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// fleet starts us-east, us-west and eu-west nodes on 127.0.3.1-3.
func fleet(t *testing.T) (east, west, eu *testNode) {
	east = startNode(t, "edge-us-east", "us-east", "127.0.3.1", nil, nil, nil)
	west = startNode(t, "edge-us-west", "us-west", "127.0.3.2", []string{east.LANAddr()}, []string{east.WANAddr()}, nil)
	eu = startNode(t, "edge-eu-west", "eu-west", "127.0.3.3", nil, []string{east.WANAddr()}, nil)
	for _, n := range []*testNode{east, west, eu} {
		eventually(t, 5*time.Second, n.name+" sees all three nodes", func() bool { return len(n.Members()) == 3 })
	}
	return east, west, eu
}

func TestFleetSeesEveryNodeAndEveryDatacenterUp(t *testing.T) {
	east, west, eu := fleet(t)
	for _, n := range []*testNode{east, west, eu} {
		for dc := range testTopology {
			if !n.Usable(dc) {
				t.Fatalf("%s: datacenter %s not usable: %+v", n.name, testTopology[dc].Name, n.Status()[dc])
			}
		}
	}
	byName := map[string]Member{}
	for _, m := range eu.Members() {
		byName[m.Name] = m
	}
	if m := byName["edge-us-west"]; m.Datacenter != "us-west" || m.Continent != "us" || m.NodeState != "serving" {
		t.Fatalf("eu's view of us-west's node: %+v", m)
	}
	if m := byName["edge-us-west"]; m.AutoApply == nil || *m.AutoApply {
		t.Fatalf("auto_apply from the start: %v, want known and off (its Options)", m.AutoApply)
	}
	west.SetMap(42, "west")
	west.SetAutoApply(true)
	west.SetState(Draining)
	eventually(t, 5*time.Second, "map version, auto_apply and state gossiped", func() bool {
		for _, m := range eu.Members() {
			if m.Name == "edge-us-west" {
				return m.MapVersion == 42 && m.MapOrigin == "west" && m.AutoApply != nil && *m.AutoApply && m.NodeState == "draining"
			}
		}
		return false
	})
}

// A datacenter whose every proxy node died is down for the whole fleet,
// and up again when a node of it comes back.
func TestDeadNodeTakesItsDatacenterDownEverywhere(t *testing.T) {
	east, west, eu := fleet(t)
	west.crash()
	for _, n := range []*testNode{east, eu} {
		took := eventually(t, 10*time.Second, n.name+" sees us-west down", func() bool { return !n.Usable(usWest) })
		t.Logf("%s saw us-west down %v after the crash", n.name, took)
		if !n.Usable(usEast) || !n.Usable(euWest) {
			t.Fatalf("%s: a crash in us-west took another datacenter down: %+v", n.name, n.Status())
		}
	}
	back := startNode(t, "edge-us-west-2", "us-west", "127.0.3.4", []string{east.LANAddr()}, []string{east.WANAddr()}, nil)
	for _, n := range []*testNode{east, eu, back} {
		eventually(t, 10*time.Second, n.name+" sees us-west up again", func() bool { return n.Usable(usWest) })
	}
}

// A datacenter back from down gets its share back over SlowStart, not at
// once: every node sending it everything the moment one check passed made
// a datacenter that flaps flap for the whole fleet.
func TestADatacenterBackUpRampsIn(t *testing.T) {
	const slow = 1500 * time.Millisecond
	east := startNode(t, "edge-us-east", "us-east", "127.0.3.1", nil, nil, func(o *Options) { o.SlowStart = slow })
	west := startNode(t, "edge-us-west", "us-west", "127.0.3.2", []string{east.LANAddr()}, []string{east.WANAddr()}, nil)
	eventually(t, 5*time.Second, "east sees west", func() bool { return len(east.Members()) == 2 })
	share := func() float64 {
		n := 0
		for range 2000 {
			if east.Usable(usWest) {
				n++
			}
		}
		return float64(n) / 2000
	}
	if got := share(); got != 1 {
		t.Fatalf("us-west, up from the start, admits %.2f: a fresh view ramps nothing", got)
	}
	west.crash()
	eventually(t, 10*time.Second, "east sees us-west down", func() bool { return !east.Usable(usWest) })
	startNode(t, "edge-us-west-2", "us-west", "127.0.3.4", []string{east.LANAddr()}, []string{east.WANAddr()}, nil)
	eventually(t, 10*time.Second, "east sees us-west up again", func() bool { return east.Status()[usWest].Up })
	if got := share(); got > 0.5 {
		t.Fatalf("us-west just back up admits %.2f of requests, want a small share (slow start over %v)", got, slow)
	}
	eventually(t, 5*time.Second, "us-west's whole share back after the slow start", func() bool { return share() == 1 })
}

// A node that leaves gracefully (restart, scale-down) says nothing about
// its datacenter's web tier: the datacenter stays up.
func TestGracefulLeaveKeepsTheDatacenterUp(t *testing.T) {
	east, west, eu := fleet(t)
	west.stop()
	eventually(t, 5*time.Second, "west gone from the member list", func() bool { return len(east.Members()) == 2 && len(eu.Members()) == 2 })
	time.Sleep(300 * time.Millisecond)
	if !east.Usable(usWest) || !eu.Usable(usWest) {
		t.Fatalf("a graceful leave took us-west down: %+v", east.Status()[usWest])
	}
}

// Nodes check their own datacenter's upstreams; when none answers, the
// whole fleet learns the datacenter is down from gossip, and up again when
// one answers.
func TestUnhealthyUpstreamsTakeTheDatacenterDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	east := startNode(t, "edge-us-east", "us-east", "127.0.3.1", nil, nil, nil)
	west := startNode(t, "edge-us-west", "us-west", "127.0.3.2", []string{east.LANAddr()}, []string{east.WANAddr()}, func(o *Options) {
		o.Upstreams = []string{addr}
	})
	eu := startNode(t, "edge-eu-west", "eu-west", "127.0.3.3", nil, []string{east.WANAddr()}, nil)
	eventually(t, 5*time.Second, "fleet formed", func() bool { return len(eu.Members()) == 3 && len(east.Members()) == 3 })
	if !eu.Usable(usWest) || accepted.Load() == 0 {
		t.Fatalf("us-west not usable while its upstream answers (checks made: %d)", accepted.Load())
	}
	ln.Close()
	for _, n := range []*testNode{east, west, eu} {
		eventually(t, 5*time.Second, n.name+" sees us-west's upstreams unhealthy", func() bool { return !n.Usable(usWest) })
	}
	if s := eu.Status()[usWest]; s.Healthy != 0 || s.Upstreams != 1 || s.Nodes != 1 {
		t.Fatalf("eu's status of us-west: %+v", s)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not listen on %s again: %v", addr, err)
	}
	defer ln2.Close()
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	eventually(t, 5*time.Second, "us-west back up at eu", func() bool { return eu.Usable(usWest) })
}

// Gossip is encrypted: a node with another key cannot join, and the
// fleet's view does not change.
func TestNodeWithWrongKeyIsRefused(t *testing.T) {
	east := startNode(t, "edge-us-east", "us-east", "127.0.3.1", nil, nil, nil)
	intruder := startNode(t, "intruder", "us-west", "127.0.3.2", nil, nil, func(o *Options) {
		o.Key = []byte("fedcba9876543210")
		o.LAN.Join, o.WAN.Join = nil, nil
	})
	if n, err := intruder.lan.Join([]string{east.LANAddr()}); err == nil || n > 0 {
		t.Fatalf("join with the wrong key: contacted %d, err %v", n, err)
	}
	labelled := startNode(t, "other-cluster", "us-west", "127.0.3.4", nil, nil, func(o *Options) {
		o.Label = "another-fleet"
		o.LAN.Join, o.WAN.Join = nil, nil
	})
	if n, err := labelled.lan.Join([]string{east.LANAddr()}); err == nil || n > 0 {
		t.Fatalf("join with another label: contacted %d, err %v", n, err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := len(east.Members()); got != 1 {
		t.Fatalf("east lists %d members after refused joins", got)
	}
}

// Bounded-load spill: when the fleet offers a datacenter more than its
// max_rps allows, it admits only the share it can take.
func TestHeadroomAdmitsOnlyWhatTheDatacenterCanTake(t *testing.T) {
	topo := append([]Datacenter(nil), testTopology...)
	topo[usWest].MaxRPS = 100
	east := startNode(t, "edge-us-east", "us-east", "127.0.3.1", nil, nil, func(o *Options) { o.Datacenters = topo })
	stop := make(chan struct{})
	var admitted, offered atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // offer ~1000 requests per second to us-west
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				offered.Add(1)
				if east.Usable(usWest) {
					admitted.Add(1)
				}
			}
		}
	}()
	eventually(t, 5*time.Second, "us-west limited", func() bool { return east.Status()[usWest].Admit < 0.5 })
	// A reload's lower routing.load_limit applies while it runs.
	before := east.Status()[usWest].Admit
	east.SetRouting(0.5, 0)
	eventually(t, 5*time.Second, "a load_limit halved by a reload halves the admitted share", func() bool {
		a := east.Status()[usWest].Admit
		return a > before*0.3 && a < before*0.7
	})
	east.SetRouting(1, 0)
	eventually(t, 5*time.Second, "the load_limit back at 1", func() bool { return east.Status()[usWest].Admit > before*0.8 })
	admitted.Store(0)
	offered.Store(0)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	s := east.Status()[usWest]
	share := float64(admitted.Load()) / float64(offered.Load())
	t.Logf("offered %.0f rps, admit %.2f, measured admitted share %.2f", s.Offered, s.Admit, share)
	if want := 100 / s.Offered; share > 2*want || share < want/2 || !s.Up {
		t.Fatalf("admitted share %.2f, want about %.2f (100 rps of %.0f offered); status %+v", share, want, s.Offered, s)
	}
	if !east.Usable(usEast) {
		t.Fatal("an unlimited datacenter was limited")
	}
}

// A partition between continents: each continent sees the other's
// datacenters down (its WAN view), keeps its own up, and so keeps serving
// its own users, whose buckets never leave their continent. Healing the
// partition brings every datacenter back.
func TestPartitionBetweenContinentsKeepsEachContinentServing(t *testing.T) {
	var cut atomic.Bool
	continentOf := map[string]string{"127.0.3.1": "us", "127.0.3.2": "us", "127.0.3.3": "eu"}
	withCut := func(self string) func(*Options) {
		return func(o *Options) {
			// memberlist stops contacting a dead node after this (a
			// minute on the WAN by default): the partition below outlasts
			// it, as one of minutes would in production, so only the
			// rejoin heals it.
			o.LAN.GossipToTheDeadTime, o.WAN.GossipToTheDeadTime = 200*time.Millisecond, 200*time.Millisecond
			o.Transport = func(pool, bind string) (memberlist.NodeAwareTransport, error) {
				return NewFaultTransport(bind, func(ip string) bool {
					return cut.Load() && continentOf[ip] != continentOf[self]
				})
			}
		}
	}
	east := startNode(t, "edge-us-east", "us-east", "127.0.3.1", nil, nil, withCut("127.0.3.1"))
	west := startNode(t, "edge-us-west", "us-west", "127.0.3.2", []string{east.LANAddr()}, []string{east.WANAddr()}, withCut("127.0.3.2"))
	eu := startNode(t, "edge-eu-west", "eu-west", "127.0.3.3", nil, []string{east.WANAddr()}, withCut("127.0.3.3"))
	for _, n := range []*testNode{east, west, eu} {
		eventually(t, 5*time.Second, n.name+" sees all three", func() bool { return len(n.Members()) == 3 })
	}

	cut.Store(true)
	eventually(t, 10*time.Second, "the US sees eu-west down", func() bool { return !east.Usable(euWest) && !west.Usable(euWest) })
	eventually(t, 10*time.Second, "the EU sees the US down", func() bool { return !eu.Usable(usEast) && !eu.Usable(usWest) })
	for i := range 20 {
		if !east.Usable(usEast) || !east.Usable(usWest) || !west.Usable(usEast) || !eu.Usable(euWest) {
			t.Fatalf("check %d: a continent lost its own datacenters in a partition between continents: us %+v eu %+v", i, east.Status(), eu.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // past GossipToTheDeadTime

	cut.Store(false)
	// No nudge: each side joins the nodes it misses again on its own
	// (Options.ReconnectInterval), after memberlist stopped contacting them.
	eventually(t, 10*time.Second, "every datacenter up everywhere after healing", func() bool {
		for _, n := range []*testNode{east, west, eu} {
			for dc := range testTopology {
				if !n.Usable(dc) {
					return false
				}
			}
		}
		return true
	})
}

var _ io.Closer = (*Cluster)(nil)

// freePort returns a port free for both TCP and UDP on ip (memberlist
// binds both).
func freePort(t *testing.T, ip string) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Skipf("cannot listen on %s (needs 127.0.0.0/8 on loopback): %v", ip, err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// An upgrade of one node with gossip on: the new process of edge-us-west
// starts while the old one still holds the gossip ports. It starts at once,
// alone (its health is its own word: every datacenter usable), binds when
// the old one closes, and rejoins under the same name. Neither other node
// ever finds us-west down: a node that leaves says so first.
func TestUpgradedNodeWaitsForItsPortsAndRejoins(t *testing.T) {
	ip := "127.0.3.2"
	lan, wan := net.JoinHostPort(ip, strconv.Itoa(freePort(t, ip))), net.JoinHostPort(ip, strconv.Itoa(freePort(t, ip)))
	fixed := func(o *Options) {
		o.LAN.Bind, o.WAN.Bind = lan, wan
		o.WaitForBind = true
	}
	east := startNode(t, "edge-us-east", "us-east", "127.0.3.1", nil, nil, nil)
	old := startNode(t, "edge-us-west", "us-west", ip, []string{east.LANAddr()}, []string{east.WANAddr()}, fixed)
	eu := startNode(t, "edge-eu-west", "eu-west", "127.0.3.3", nil, []string{east.WANAddr()}, nil)
	for _, n := range []*testNode{east, old, eu} {
		eventually(t, 5*time.Second, n.name+" sees all three nodes", func() bool { return len(n.Members()) == 3 })
	}

	// Watch the other two nodes' view of us-west for the whole handover.
	stop := make(chan struct{})
	var sawDown atomic.Value
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			for _, n := range []*testNode{east, eu} {
				if s := n.Status()[usWest]; !s.Up {
					sawDown.CompareAndSwap(nil, n.name+": "+s.Reason)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	next := startNode(t, "edge-us-west", "us-west", ip, []string{east.LANAddr()}, []string{east.WANAddr()}, fixed)
	time.Sleep(300 * time.Millisecond)
	if m := next.Members(); len(m) != 1 || m[0].Name != "edge-us-west" {
		t.Fatalf("the new process joined while the old one held its ports: %+v", m)
	}
	for dc := range testTopology {
		if !next.Usable(dc) {
			t.Fatalf("the waiting process finds %s unusable: %+v", testTopology[dc].Name, next.Status()[dc])
		}
	}

	left := time.Now()
	if err := old.Close(); err != nil {
		t.Logf("old process's Close: %v", err)
	}
	closed := time.Since(left)
	if err := old.Close(); err != nil { // again: a no-op, not a panic
		t.Logf("second Close: %v", err)
	}
	old.cancel = nil
	for _, w := range []struct {
		n     *testNode
		pools []string
	}{{east, []string{"lan", "wan"}}, {eu, []string{"wan"}}} {
		eventually(t, 10*time.Second, w.n.name+" lists the new edge-us-west serving in "+strings.Join(w.pools, ", "), func() bool {
			w.n.mu.Lock()
			defer w.n.mu.Unlock()
			for _, pool := range w.pools {
				if m, ok := w.n.listed[pool]["edge-us-west"]; !ok || m.meta.State != Serving {
					return false
				}
			}
			return true
		})
	}
	eventually(t, 10*time.Second, "the new edge-us-west lists all three", func() bool { return len(next.Members()) == 3 })
	back := time.Since(left)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	watch.Wait()
	if d := sawDown.Load(); d != nil {
		t.Fatalf("the upgrade took us-west down: %v", d)
	}
	for _, n := range []*testNode{east, eu} {
		if s := n.Status()[usWest]; !s.Up || s.Nodes != 1 {
			t.Fatalf("%s's view of us-west after the upgrade: %+v", n.name, s)
		}
	}
	t.Logf("old node's Close took %v; old Close -> new node listed everywhere %v", closed.Round(time.Millisecond), back.Round(time.Millisecond))
}

// Without WaitForBind a held gossip port fails Start: two nodes configured
// on one port are caught, not left waiting.
func TestHeldPortFailsStartWithoutWaitForBind(t *testing.T) {
	ip := "127.0.3.2"
	lan := net.JoinHostPort(ip, strconv.Itoa(freePort(t, ip)))
	startNode(t, "edge-us-west", "us-west", ip, nil, nil, func(o *Options) { o.LAN.Bind, o.WAN.Bind = lan, "" })
	_, err := Start(context.Background(), Options{
		Node: "other", Datacenter: "us-west", Datacenters: testTopology, Key: testKey,
		LAN: PoolOptions{Bind: lan}, Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil || !portHeld(err) {
		t.Fatalf("second Start on %s: %v", lan, err)
	}
}

// A stop does not wait behind a first join that hangs: a seed that takes
// the connection and never answers (a host that drops packets, a peer
// behind a partition) holds memberlist's Join for its TCP timeout, and
// SIGTERM's drain waited for it, past a service manager's patience.
func TestCloseDoesNotWaitForAFirstJoinThatHangs(t *testing.T) {
	hole, err := net.Listen("tcp", "127.0.3.9:0") // its backlog takes the connection; nobody answers
	if err != nil {
		t.Skipf("cannot bind 127.0.3.9: %v", err)
	}
	defer hole.Close() // resets the connection: the Join left behind ends
	n := startNode(t, "edge-us-east", "us-east", "127.0.3.1", []string{hole.Addr().String()}, nil, nil)
	time.Sleep(300 * time.Millisecond) // the join is under way, waiting for an answer
	start := time.Now()
	n.stop()
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("Close took %v behind a join that hangs (memberlist's TCP timeout is 10 s)", took)
	}
}

// Checks of a TLS datacenter speak TLS: an HTTPS GET of check_path sees a
// web tier that answers 500 to everything (a connect alone cannot), and a
// TCP check completes a verified handshake, so an upstream whose
// certificate the proxy would refuse is unhealthy too.
func TestChecksOfTLSUpstreamsSpeakTLS(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	web := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer web.Close()
	trusted := x509.NewCertPool()
	trusted.AddCert(web.Certificate())
	addr := web.Listener.Addr().String()
	for _, c := range []struct {
		name string
		path string
		conf *tls.Config
		ok   bool
	}{
		{"HTTPS GET answered 200", "/healthz", &tls.Config{RootCAs: trusted}, true},
		{"TLS handshake", "", &tls.Config{RootCAs: trusted}, true},
		{"TLS handshake with an untrusted certificate", "", &tls.Config{RootCAs: x509.NewCertPool()}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := startNode(t, "edge-us-east", "us-east", "127.0.3.1", nil, nil, func(o *Options) {
				o.Upstreams, o.CheckPath, o.CheckTLS = []string{addr}, c.path, c.conf
			})
			eventually(t, 5*time.Second, fmt.Sprintf("us-east's upstream checked (want healthy %v)", c.ok), func() bool {
				return n.Status()[usEast].Up == c.ok
			})
			if c.path == "" || !c.ok {
				return
			}
			status.Store(500)
			eventually(t, 5*time.Second, "a web tier answering 500 taken for unhealthy", func() bool { return !n.Status()[usEast].Up })
			status.Store(200) // and back: its HTTPS checks pass again
			eventually(t, 5*time.Second, "the web tier healthy again once it answers 200", func() bool { return n.Status()[usEast].Up })
		})
	}
}
