package health

import (
	"sync"
	"testing"
	"time"
)

// got records the newest placement a node was handed.
type got struct {
	mu sync.Mutex
	p  Placement
	n  int
}

func (g *got) set(p Placement) (uint64, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.p, g.n = p, g.n+1
	return p.Version, p.Origin
}
func (g *got) get() Placement { g.mu.Lock(); defer g.mu.Unlock(); return g.p }

func recordPlacements(g *got) func(*Options) {
	return func(o *Options) { o.OnPlacement = g.set }
}

func TestPlacementSpreadsToTheFleetAndConflictsSettleAlike(t *testing.T) {
	var atEast, atWest, atEU got
	east := startNode(t, "edge-us-east", "us-east", "127.0.3.1", nil, nil, recordPlacements(&atEast))
	west := startNode(t, "edge-us-west", "us-west", "127.0.3.2", []string{east.LANAddr()}, []string{east.WANAddr()}, recordPlacements(&atWest))
	eu := startNode(t, "edge-eu-west", "eu-west", "127.0.3.3", nil, []string{east.WANAddr()}, recordPlacements(&atEU))
	for _, n := range []*testNode{east, west, eu} {
		eventually(t, 5*time.Second, n.name+" sees all three", func() bool { return len(n.Members()) == 3 })
	}

	west.SpreadPlacement(Placement{Version: 2, Origin: "edge-us-west", Payload: []byte(`{"pins":{"7":"us-east"}}`)})
	for _, g := range []*got{&atEast, &atEU} {
		took := eventually(t, 5*time.Second, "version 2 to arrive", func() bool { return g.get().Version == 2 })
		if p := g.get(); p.Origin != "edge-us-west" || string(p.Payload) != `{"pins":{"7":"us-east"}}` {
			t.Fatalf("received %+v", p)
		}
		t.Logf("version 2 arrived after %v", took)
	}
	atWest.mu.Lock()
	own := atWest.n
	atWest.mu.Unlock()
	if own != 0 {
		t.Fatal("a node was handed its own change")
	}

	// Two changes made concurrently with the same version: the greater
	// node name wins on every node, whatever arrives first.
	east.SpreadPlacement(Placement{Version: 3, Origin: "edge-us-east", Payload: []byte("east")})
	eu.SpreadPlacement(Placement{Version: 3, Origin: "edge-eu-west", Payload: []byte("eu")})
	eventually(t, 5*time.Second, "west and eu settle on east's version 3", func() bool {
		return string(atWest.get().Payload) == "east" && string(atEU.get().Payload) == "east"
	})
	time.Sleep(300 * time.Millisecond)
	if string(atEast.get().Payload) == "eu" {
		t.Fatal("east adopted the losing change")
	}
	for _, n := range []*testNode{east, west, eu} {
		if p := n.heldState(); p == nil {
			t.Fatalf("%s holds no placement", n.name)
		}
	}

	// A node that joins later gets the fleet's map in the join exchange.
	var atLate got
	late := startNode(t, "edge-eu-late", "eu-west", "127.0.3.4", nil, []string{east.WANAddr()}, recordPlacements(&atLate))
	eventually(t, 5*time.Second, "the late node gets version 3", func() bool { return atLate.get().Version == 3 && string(atLate.get().Payload) == "east" })
	_ = late
}

// A node gossips the map version it routes by, not the newest it heard: a
// node that could not adopt a map (its OnPlacement kept its own) must not
// pass for holding the fence that map holds.
func TestNodeGossipsTheVersionItAdopted(t *testing.T) {
	var tried got
	east := startNode(t, "edge-us-east", "us-east", "127.0.3.41", nil, nil, nil)
	west := startNode(t, "edge-us-west", "us-west", "127.0.3.42", []string{east.LANAddr()}, []string{east.WANAddr()},
		func(o *Options) {
			o.OnPlacement = func(p Placement) (uint64, string) { tried.set(p); return 1, "west" } // cannot adopt: stays on version 1
		})
	west.SetMap(1, "west")
	versionOfWest := func() uint64 {
		for _, m := range east.Members() {
			if m.Name == "edge-us-west" {
				return m.MapVersion
			}
		}
		return 0
	}
	eventually(t, 5*time.Second, "east to see west on version 1", func() bool { return versionOfWest() == 1 })
	east.SpreadPlacement(Placement{Version: 5, Origin: "edge-us-east", Payload: []byte(`{}`)})
	eventually(t, 5*time.Second, "west to be handed version 5", func() bool { return tried.get().Version == 5 })
	// Give west's metadata time to spread, then check it never said 5.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if v := versionOfWest(); v != 1 {
			t.Fatalf("east sees west on map version %d; west routes by 1", v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Changing the node's metadata does not wait for memberlist's broadcast
// (UpdateNode waits for its retransmits, up to a second per pool): the
// proxy calls SetMap under its lock. The peer still hears the
// newest version.
func TestMetadataChangesDoNotWaitForTheBroadcast(t *testing.T) {
	east := startNode(t, "edge-us-east", "us-east", "127.0.3.43", nil, nil, nil)
	west := startNode(t, "edge-us-west", "us-west", "127.0.3.44", []string{east.LANAddr()}, []string{east.WANAddr()}, nil)
	eventually(t, 5*time.Second, "both nodes to see each other", func() bool { return len(east.Members()) == 2 && len(west.Members()) == 2 })
	start := time.Now()
	for v := uint64(1); v <= 10; v++ {
		west.SetMap(v, "west")
	}
	// Generous for a loaded machine; waiting for the broadcasts took
	// seconds (10 changes x 2 pools, each up to 1 s).
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("10 metadata changes took %v: they waited for memberlist's broadcasts", took)
	}
	eventually(t, 5*time.Second, "east to see west's last version", func() bool {
		for _, m := range east.Members() {
			if m.Name == "edge-us-west" {
				return m.MapVersion == 10
			}
		}
		return false
	})
}
