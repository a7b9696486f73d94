package proxy

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/health"
)

// One node drives the fleet's moves: the serving node with the least name
// among those with auto_apply on (a release that does not say counts as
// on), or among all if none has it on; never a draining one.
func TestDriverIsTheLeastServingNodeWithAutoApply(t *testing.T) {
	on, off := true, false
	member := func(name, state string, auto *bool) health.Member {
		return health.Member{Name: name, NodeState: state, AutoApply: auto}
	}
	for _, tc := range []struct {
		name     string
		selfAuto bool
		draining bool
		members  []health.Member
		want     string
	}{
		{"alone", false, false, nil, "test-node"},
		{"none on: the least name", false, false, []health.Member{member("a-node", "serving", &off), member("test-node", "serving", &off)}, "a-node"},
		{"the one on", false, false, []health.Member{member("a-node", "serving", &off), member("z-node", "serving", &on)}, "z-node"},
		{"this one on", true, false, []health.Member{member("a-node", "serving", &off), member("z-node", "serving", &on)}, "test-node"},
		{"a release that does not say counts as on", true, false, []health.Member{member("a-node", "serving", nil)}, "a-node"},
		{"not a draining node", false, false, []health.Member{member("a-node", "draining", &on), member("z-node", "serving", &on)}, "z-node"},
		{"not an unreadable node", false, false, []health.Member{member("a-node", health.NodeUnreadable, &on)}, "test-node"},
		{"not this node while it drains", true, true, []health.Member{member("test-node", "serving", &on), member("z-node", "serving", &off)}, "z-node"},
		{"no one while this node drains alone", true, true, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *configs.Config) { c.Placement.AutoApply = tc.selfAuto })
			h.srv.placer.fleet = &fakeFleet{members: tc.members}
			h.srv.draining.Store(tc.draining)
			if got, _ := h.srv.placer.driver(); got != tc.want {
				t.Fatalf("driver %q, want %q", got, tc.want)
			}
		})
	}
}

// Advance and abort answer 409 on a node that does not drive moves, and
// name the one that does: two nodes stepping the same move at once could
// undo a cutover (an abort there winning the tie against the cutover
// here). A move may start anywhere.
func TestMovesStepOnlyOnTheDriver(t *testing.T) {
	f := newAdminFixture(t, fastMoves, AdminOptions{})
	fleet := &fakeFleet{members: []health.Member{{Name: "a-node", NodeState: "serving"}, {Name: "test-node", NodeState: "serving"}}}
	f.srv.placer.fleet = fleet
	_, b := usUser(t, f.harness)
	id := strconv.Itoa(int(b))
	if w := f.call("POST", "/admin/buckets/"+id+"/move", `{"to": "eu"}`, ""); w.Code != 200 {
		t.Fatalf("a move's start on another node than the driver: %d %s", w.Code, w.Body)
	}
	for _, step := range []struct{ method, path string }{{"POST", "/move/advance"}, {"DELETE", "/move"}} {
		w := f.call(step.method, "/admin/buckets/"+id+step.path, "", "")
		if w.Code != 409 || !strings.Contains(w.Body.String(), "step moves on node a-node") {
			t.Fatalf("%s %s off the driver: %d %s", step.method, step.path, w.Code, w.Body)
		}
	}
	if m, _ := f.srv.Placement().Load().Moving(b); m.Phase != buckets.MoveCopying {
		t.Fatalf("a refused step changed the move: %+v", m)
	}
	var v placementView
	f.get("/admin/placement/recommendations", &v)
	if v.Driver != "a-node" {
		t.Fatalf("the view names %q as the driver, want a-node", v.Driver)
	}
	fleet.members = fleet.members[1:] // a-node leaves
	if w := f.call("POST", "/admin/buckets/"+id+"/move/advance", "", ""); w.Code != 200 {
		t.Fatalf("advance on the driver: %d %s", w.Code, w.Body)
	}
}

// A node's fence clock runs on over this node's next version: once one
// fenced move cuts over (a new version), another whose fence every node
// has held for fence_settle cuts over as soon as every node holds the new
// version, not fence_settle later. It still waits for that.
func TestFenceClockSurvivesAnotherMovesCutover(t *testing.T) {
	const settle = 200 * time.Millisecond
	f := newAdminFixture(t, func(c *configs.Config) { c.Placement.FenceSettle = settle }, AdminOptions{})
	fleet := &fakeFleet{}
	f.srv.placer.fleet = fleet
	moving := usBuckets(t, f.harness, 2)
	for _, b := range moving {
		if _, err := f.srv.StartMove(b, "eu"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.srv.AdvanceMove(b); err != nil {
			t.Fatal(err)
		}
	}
	fenced := f.srv.Placement().Load().Version()
	off := false // no node applies moves on its own: this test steps them
	at := func(v uint64) {
		fleet.members = []health.Member{{Name: "test-node", NodeState: "serving", MapVersion: v, AutoApply: &off}, {Name: "z-node", NodeState: "serving", MapVersion: v, AutoApply: &off}}
	}
	at(fenced)
	time.Sleep(settle)
	for _, b := range moving { // the first look at every node holding each fence starts its clocks
		if _, _, err := f.srv.AdvanceMove(b); err == nil || !strings.Contains(err.Error(), "every node has held the fence") {
			t.Fatalf("bucket %d at the first look: %v", b, err)
		}
	}
	time.Sleep(settle)
	if _, phase, err := f.srv.AdvanceMove(moving[0]); err != nil || phase != buckets.MoveCutover {
		t.Fatalf("the first cutover: %v %v", phase, err)
	}
	// The other nodes are a version behind: the fence stands there too,
	// but the cutover waits until they hold this node's version.
	if _, _, err := f.srv.AdvanceMove(moving[1]); err == nil || !strings.Contains(err.Error(), "the fence stands in both") {
		t.Fatalf("the second cutover with the fleet a version behind: %v", err)
	}
	at(fenced + 1)
	if _, phase, err := f.srv.AdvanceMove(moving[1]); err != nil || phase != buckets.MoveCutover {
		t.Fatalf("the second cutover once the fleet holds the new version: %v %v (its fence had held for %v)", phase, err, settle)
	}
}

// usBuckets finds n buckets homed in the US.
func usBuckets(t *testing.T, h *harness, n int) []uint32 {
	t.Helper()
	snap := h.srv.Placement().Load()
	var out []uint32
	for b := uint32(0); b < snap.Buckets() && len(out) < n; b++ {
		if snap.Topology().Continents[snap.Home(b)].Name == "us" {
			out = append(out, b)
		}
	}
	if len(out) < n {
		t.Fatalf("%d US buckets, want %d", len(out), n)
	}
	return out
}

// A fence this node did not follow without a gap starts its clocks again:
// one taken up anew elsewhere (the move aborted, started again and fenced
// again by another driver, between two versions this node saw), or, for a
// move that does not say when it started (an older release's), any jump of
// versions. Only this node's very next version carries the clocks on.
func TestAFenceTakenUpAnewStartsItsClocksAgain(t *testing.T) {
	const settle = 200 * time.Millisecond
	for _, tc := range []struct {
		name    string
		started time.Time // of the move before; zero: an older release's
		restart bool      // the adopted map holds another start of the move
		jump    uint64    // versions from this node's to the adopted one
		goesOn  bool
	}{
		{"fenced anew elsewhere", time.Now().Add(-time.Hour), true, 3, false},
		{"an older release's move, versions missed", time.Time{}, false, 2, false},
		{"an older release's move, the next version", time.Time{}, false, 1, true},
		{"the same move, versions missed", time.Now().Add(-time.Hour), false, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newAdminFixture(t, func(c *configs.Config) { c.Placement.FenceSettle = settle }, AdminOptions{})
			fleet := &fakeFleet{}
			f.srv.placer.fleet = fleet
			off := false
			at := func(snap *buckets.Snapshot) {
				fleet.members = []health.Member{
					{Name: "test-node", NodeState: "serving", MapVersion: snap.Version(), MapOrigin: snap.Origin(), AutoApply: &off},
					{Name: "z-node", NodeState: "serving", MapVersion: snap.Version(), MapOrigin: snap.Origin(), AutoApply: &off},
				}
			}
			b := usBuckets(t, f.harness, 1)[0]
			fenced, err := f.srv.ChangePlacement(func(o *buckets.Overrides) error {
				o.Moves = map[uint32]buckets.Move{b: {To: "eu", Phase: buckets.MoveFenced, Started: tc.started}}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			at(fenced)
			time.Sleep(settle)
			f.srv.AdvanceMove(b) //nolint:errcheck // the first look at the fleet starts its clocks
			time.Sleep(settle)
			// Every clock has run out: a cutover would go now. Instead
			// the fleet's map comes.
			o := fenced.Overrides()
			if tc.restart {
				o.Moves[b] = buckets.Move{To: "eu", Phase: buckets.MoveFenced, Started: time.Now()}
			}
			if ok, err := f.srv.AdoptPlacement(fenced.Version()+tc.jump, "z-node", o); !ok || err != nil {
				t.Fatalf("adopt: %v %v", ok, err)
			}
			at(f.srv.Placement().Load())
			_, phase, err := f.srv.AdvanceMove(b)
			switch {
			case tc.goesOn && err != nil:
				t.Fatalf("the same fence, followed: %v; want the cutover (its clocks ran out)", err)
			case !tc.goesOn && (err == nil || !strings.Contains(err.Error(), "the fence has stood")):
				t.Fatalf("a fence not followed without a gap: phase %q, %v; want refused, its clock started again", phase, err)
			}
		})
	}
}

// A fenced move is aborted only once every node routes by this node's map:
// a node that took itself for the driver too may have cut it over, and the
// abort would win the tie. A copying move needs no such wait.
func TestAFencedMoveIsAbortedOnlyWithTheFleetOnThisMap(t *testing.T) {
	f := newAdminFixture(t, fastMoves, AdminOptions{})
	fleet := &fakeFleet{}
	f.srv.placer.fleet = fleet
	off := false
	on := func(version uint64) {
		fleet.members = []health.Member{{Name: "test-node", NodeState: "serving", MapVersion: version, AutoApply: &off},
			{Name: "z-node", NodeState: "serving", MapVersion: version - 1, AutoApply: &off}}
	}
	moving := usBuckets(t, f.harness, 2)
	for _, b := range moving {
		if _, err := f.srv.StartMove(b, "eu"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.srv.AdvanceMove(moving[0]); err != nil {
		t.Fatal(err)
	}
	on(f.srv.Placement().Load().Version()) // z-node a version behind
	id := strconv.Itoa(int(moving[0]))
	if w := f.call("DELETE", "/admin/buckets/"+id+"/move", "", ""); w.Code != 409 || !strings.Contains(w.Body.String(), "node z-node routes by map version") {
		t.Fatalf("abort of a fenced move with a node behind: %d %s", w.Code, w.Body)
	}
	if w := f.call("DELETE", "/admin/buckets/"+strconv.Itoa(int(moving[1]))+"/move", "", ""); w.Code != 200 {
		t.Fatalf("abort of a copying move with a node behind: %d %s", w.Code, w.Body)
	}
	fleet.members[1].MapVersion = f.srv.Placement().Load().Version()
	fleet.members[0].MapVersion = fleet.members[1].MapVersion
	if w := f.call("DELETE", "/admin/buckets/"+id+"/move", "", ""); w.Code != 200 {
		t.Fatalf("abort of a fenced move with every node on this map: %d %s", w.Code, w.Body)
	}
}

// fullOrDown is a health Status whose datacenters are full (Usable says no
// to the requests past their headroom, here to all) or down.
type fullOrDown struct{ full, down uint64 }

func (f *fullOrDown) Usable(dc int) bool { return (f.full|f.down)&(1<<dc) == 0 }
func (f *fullOrDown) Down(dc int) bool   { return f.down&(1<<dc) != 0 }

// With failover_to, a continent's reads may cross to the other when its
// datacenters are full; its writes cross only when they are down (or
// drained, or without upstreams): the other continent does not hold the
// users' data, and a write there on a busy hour is lost to them.
func TestWritesCrossContinentsOnlyWhenTheHomeIsDown(t *testing.T) {
	cfg := testConfig(t, func(c *configs.Config) { c.Continents[0].FailoverTo = []string{"eu"} })
	st := &fullOrDown{}
	s, err := New(cfg, nil, Options{Logger: slog.New(slog.DiscardHandler), Status: st})
	if err != nil {
		t.Fatal(err)
	}
	snap := s.Placement().Load()
	var us uint64
	for dc := range snap.Topology().Datacenters {
		if snap.ContinentOf(dc) == 0 {
			us |= 1 << dc
		}
	}
	var key []byte
	for id := 0; ; id++ { // a user homed in the US
		key = []byte(strconv.Itoa(id))
		var d Decision
		s.Router().route(key, hashKey(key), nil, &d, false, false)
		if snap.Home(d.Bucket) == 0 {
			break
		}
	}
	goesTo := func(write bool) string {
		var d Decision
		s.Router().route(key, hashKey(key), nil, &d, false, write)
		if d.Next < 0 {
			return "none"
		}
		return snap.Topology().Datacenters[d.Plan[d.Next]].Continent
	}
	st.full = us
	if got := goesTo(false); got != "eu" {
		t.Fatalf("a read with the US full goes to %s, want eu (failover_to)", got)
	}
	if got := goesTo(true); got != "none" {
		t.Fatalf("a write with the US full goes to %s, want none (a 503: the EU does not hold the data)", got)
	}
	st.full, st.down = 0, us
	if got := goesTo(true); got != "eu" {
		t.Fatalf("a write with the US down goes to %s, want eu (failover_to)", got)
	}
	// A bucket pinned to a datacenter of the other continent is the
	// operator's choice: its writes go there with its reads.
	st.down = 0
	var d Decision
	s.Router().route(key, hashKey(key), nil, &d, false, true)
	if _, err := s.ChangePlacement(func(o *buckets.Overrides) error { o.Pins[d.Bucket] = "eu-a"; return nil }); err != nil {
		t.Fatal(err)
	}
	snap = s.Placement().Load()
	if r, w := goesTo(false), goesTo(true); r != "eu" || w != "eu" {
		t.Fatalf("a bucket pinned to eu-a: reads go to %s, writes to %s; want both eu", r, w)
	}
}
