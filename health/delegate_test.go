package health

import (
	"log/slog"
	"net"
	"testing"

	"github.com/hashicorp/memberlist"
)

// A crash long past does not make a datacenter down once a live node of
// it has joined and later left cleanly (a restart under new names).
func TestALiveNodeAnswersForTheDeadOnesOfItsDatacenter(t *testing.T) {
	c := &Cluster{
		log: slog.New(slog.DiscardHandler), continent: "us", seen: map[string]string{}, addrs: map[string]string{},
		listed: map[string]map[string]listedNode{"lan": {}, "wan": {}}, kick: make(chan struct{}, 1),
	}
	e := &events{c: c, pool: "lan"}
	node := func(name string, state NodeState) *memberlist.Node {
		b, err := (&Meta{Continent: "us", Datacenter: "us-x", State: state}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		return &memberlist.Node{Name: name, Meta: b, Addr: net.IPv4(127, 0, 0, 9), Port: 7946}
	}
	e.NotifyJoin(node("a", Serving))
	e.NotifyLeave(node("a", Serving)) // crashed: its datacenter may be dead
	if c.seen["a"] != "us-x" || c.addrs["a"] != "127.0.0.9:7946" {
		t.Fatalf("a node that died without draining is not remembered (to join again): %v %v", c.seen, c.addrs)
	}
	e.NotifyJoin(node("b", Serving)) // a new pod of us-x
	e.NotifyLeave(node("b", Draining))
	if len(c.seen) != 0 {
		t.Fatalf("after a live node of us-x joined and left cleanly, still remembered: %v", c.seen)
	}
	// A crash while another node of the datacenter lives is still a crash.
	e.NotifyJoin(node("c", Serving))
	e.NotifyJoin(node("d", Serving))
	e.NotifyLeave(node("c", Serving))
	e.NotifyLeave(node("d", Serving))
	if c.seen["c"] != "us-x" || c.seen["d"] != "us-x" {
		t.Fatalf("two crashed nodes of us-x are not remembered: %v", c.seen)
	}
}

// A member whose metadata does not decode stays listed, as unreadable,
// so that what waits for every member (a move's fence) waits for it too.
func TestAMemberWithUnreadableMetadataStaysListed(t *testing.T) {
	c := &Cluster{
		log: slog.New(slog.DiscardHandler), continent: "us", seen: map[string]string{}, addrs: map[string]string{},
		listed: map[string]map[string]listedNode{"lan": {}, "wan": {}}, kick: make(chan struct{}, 1),
	}
	e := &events{c: c, pool: "lan"}
	n := &memberlist.Node{Name: "from-the-future", Meta: []byte{99, 0, 0}}
	e.NotifyJoin(n)
	ms := c.Members()
	if len(ms) != 1 || ms[0].Name != "from-the-future" || ms[0].NodeState != NodeUnreadable || ms[0].MapVersion != 0 {
		t.Fatalf("members %+v, want the unreadable node listed as %q", ms, NodeUnreadable)
	}
	e.NotifyLeave(n)
	if ms := c.Members(); len(ms) != 0 {
		t.Fatalf("after it left: %+v", ms)
	}
	// A node read before keeps what it said for its datacenter's health
	// (dropped, it would read as dead) while the fence sees it unreadable.
	b, _ := (&Meta{Continent: "us", Datacenter: "us-x"}).Encode(nil)
	e.NotifyJoin(&memberlist.Node{Name: "w", Meta: b})
	e.NotifyUpdate(&memberlist.Node{Name: "w", Meta: []byte{99}})
	if got := c.listed["lan"]["w"]; !got.unreadable || got.meta.Datacenter != "us-x" {
		t.Fatalf("after an unreadable update: %+v, want unreadable with us-x kept", got)
	}
}
