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

func (g *got) set(p Placement) { g.mu.Lock(); g.p, g.n = p, g.n+1; g.mu.Unlock() }
func (g *got) get() Placement  { g.mu.Lock(); defer g.mu.Unlock(); return g.p }

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
