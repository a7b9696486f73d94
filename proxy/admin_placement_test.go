package proxy

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/health"
	"github.com/valyala/fasthttp"
)

// fastMoves makes a move's fence settle at once.
func fastMoves(c *configs.Config) { c.Placement.FenceSettle = time.Nanosecond }

// usUser finds a user whose bucket is homed in the US, and the bucket.
func usUser(t *testing.T, h *harness) (int, uint32) {
	t.Helper()
	snap := h.srv.Placement().Load()
	for id := 0; id < 10_000; id++ {
		var d Decision
		key := []byte(strconv.Itoa(id))
		h.srv.Router().route(key, hashKey(key), nil, &d, false, false)
		if snap.Topology().Continents[snap.Home(d.Bucket)].Name == "us" {
			return id, d.Bucket
		}
	}
	t.Fatal("no US user")
	return 0, 0
}

func (h *harness) userDo(method string, id int) *fasthttp.Response {
	return h.do(method, "/feed", func(r *fasthttp.Request) { r.Header.Set("X-User-ID", strconv.Itoa(id)) })
}

func continentOfDC(dc string) string { return dc[:2] }

func decodeMove(t *testing.T, body []byte) moveResult {
	t.Helper()
	var res moveResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	return res
}

func TestMoveRoutesReadsAndWritesByPhase(t *testing.T) {
	f := newAdminFixture(t, fastMoves, AdminOptions{})
	user, b := usUser(t, f.harness)
	id := strconv.Itoa(int(b))
	before := f.srv.Placement().Load().Version()

	w := f.call("POST", "/admin/buckets/"+id+"/move", `{"to": "eu"}`, "")
	if w.Code != 200 {
		t.Fatalf("move: %d %s", w.Code, w.Body)
	}
	if res := decodeMove(t, w.Body.Bytes()); !res.Changed || res.Phase != buckets.MoveCopying || res.Home != "us" || res.To != "eu" || res.MapVersion != before+1 {
		t.Fatalf("move answer %+v", res)
	}
	// Copying: reads to the new home, writes to the old.
	for range 5 {
		if dc := datacenterOf(f.userDo("GET", user)); continentOfDC(dc) != "eu" {
			t.Fatalf("copying: a read went to %s", dc)
		}
		if dc := datacenterOf(f.userDo("POST", user)); continentOfDC(dc) != "us" {
			t.Fatalf("copying: a write went to %s", dc)
		}
	}
	// A read falls back to the old home when the new one fails.
	f.setDC("eu-a", modeRefuse)
	f.setDC("eu-b", modeRefuse)
	if resp := f.userDo("GET", user); resp.StatusCode() != 200 || continentOfDC(datacenterOf(resp)) != "us" {
		t.Fatalf("copying, EU down: read answered %d from %q", resp.StatusCode(), datacenterOf(resp))
	}
	f.setDC("eu-a", modeOK)
	f.setDC("eu-b", modeOK)

	// Conflicts: a second move, a bad continent, a bucket not moving.
	if w := f.call("POST", "/admin/buckets/"+id+"/move", `{"to": "eu"}`, ""); w.Code != 409 {
		t.Fatalf("second move: %d %s", w.Code, w.Body)
	}
	if w := f.call("POST", "/admin/buckets/"+id+"/move", `{"to": "mars"}`, ""); w.Code != 400 || !strings.Contains(w.Body.String(), `"field": "to"`) {
		t.Fatalf("unknown continent: %d %s", w.Code, w.Body)
	}
	if w := f.call("POST", "/admin/buckets/"+strconv.Itoa(int(b+1)%1024)+"/move/advance", "", ""); w.Code != 409 {
		t.Fatalf("advance of a bucket not moving: %d %s", w.Code, w.Body)
	}

	// Fenced: writes are refused, reads go on.
	w = f.call("POST", "/admin/buckets/"+id+"/move/advance", "", "")
	if res := decodeMove(t, w.Body.Bytes()); w.Code != 200 || res.Phase != buckets.MoveFenced {
		t.Fatalf("advance to fenced: %d %s", w.Code, w.Body)
	}
	if resp := f.userDo("POST", user); resp.StatusCode() != 503 {
		t.Fatalf("fenced: a write answered %d from %q", resp.StatusCode(), datacenterOf(resp))
	}
	if dc := datacenterOf(f.userDo("GET", user)); continentOfDC(dc) != "eu" {
		t.Fatalf("fenced: a read went to %s", dc)
	}

	// Cutover: writes to the new home; past the fence there is no abort.
	time.Sleep(time.Millisecond)
	w = f.call("POST", "/admin/buckets/"+id+"/move/advance", "", "")
	if res := decodeMove(t, w.Body.Bytes()); w.Code != 200 || res.Phase != buckets.MoveCutover {
		t.Fatalf("advance to cutover: %d %s", w.Code, w.Body)
	}
	if dc := datacenterOf(f.userDo("PUT", user)); continentOfDC(dc) != "eu" {
		t.Fatalf("cutover: a write went to %s", dc)
	}
	if w := f.call("DELETE", "/admin/buckets/"+id+"/move", "", ""); w.Code != 409 {
		t.Fatalf("abort past the fence: %d %s", w.Code, w.Body)
	}

	// Done: the bucket's home is the EU.
	w = f.call("POST", "/admin/buckets/"+id+"/move/advance", "", "")
	if res := decodeMove(t, w.Body.Bytes()); w.Code != 200 || res.Phase != buckets.MoveDone || res.Home != "eu" || res.MapVersion != before+4 {
		t.Fatalf("advance to done: %d %s", w.Code, w.Body)
	}
	if dc := datacenterOf(f.userDo("POST", user)); continentOfDC(dc) != "eu" {
		t.Fatalf("done: a write went to %s", dc)
	}
	var v placementView
	f.get("/admin/placement/recommendations", &v)
	if len(v.Moves) != 0 || v.MovesLastHour != 1 || v.MapVersion != before+4 {
		t.Fatalf("view after the move: %+v", v)
	}
}

func TestMoveAbortWhileCopying(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{})
	user, b := usUser(t, f.harness)
	id := strconv.Itoa(int(b))
	f.call("POST", "/admin/buckets/"+id+"/move", `{"to": "eu"}`, "")
	w := f.call("DELETE", "/admin/buckets/"+id+"/move", "", "")
	if res := decodeMove(t, w.Body.Bytes()); w.Code != 200 || res.Home != "us" || res.Phase != "" {
		t.Fatalf("abort: %d %s", w.Code, w.Body)
	}
	if dc := datacenterOf(f.userDo("GET", user)); continentOfDC(dc) != "us" {
		t.Fatalf("after the abort a read went to %s", dc)
	}
}

// eagerEUAdvisor is a node in the EU whose advisor recommends a bucket as
// soon as 10 requests show a majority (a window of 1ns), and whose own
// ticks, an hour apart, leave the counts and runs to the test.
func eagerEUAdvisor(c *configs.Config) {
	c.Node.Datacenter = "eu-a"
	c.Placement.Window = time.Nanosecond
	c.Placement.MinRequests = 10
	c.Placement.StatsTick = time.Hour // no decay during the test
	c.Placement.AdviseEvery = time.Hour
}

// fakeFleet is a PlacementFleet whose members' map versions a test sets.
type fakeFleet struct{ members []health.Member }

func (f *fakeFleet) ShareAccess(health.AccessReport) {}
func (f *fakeFleet) FleetAccess(time.Duration) (health.AccessReport, int) {
	return health.AccessReport{}, 0
}
func (f *fakeFleet) Members() []health.Member { return f.members }

// The fence holds writes until every node routes by the fenced version.
func TestCutoverWaitsForEveryNodeToHoldTheFence(t *testing.T) {
	f := newAdminFixture(t, fastMoves, AdminOptions{})
	fleet := &fakeFleet{}
	f.srv.placer.fleet = fleet
	_, b := usUser(t, f.harness)
	id := strconv.Itoa(int(b))
	f.call("POST", "/admin/buckets/"+id+"/move", `{"to": "eu"}`, "")
	f.call("POST", "/admin/buckets/"+id+"/move/advance", "", "")
	fenced := f.srv.Placement().Load().Version()
	fleet.members = []health.Member{{Name: "test-node", MapVersion: fenced}, {Name: "edge-eu-1", MapVersion: fenced - 1}}
	time.Sleep(time.Millisecond)
	w := f.call("POST", "/admin/buckets/"+id+"/move/advance", "", "")
	if w.Code != 409 || !strings.Contains(w.Body.String(), "edge-eu-1") {
		t.Fatalf("cutover with a node behind: %d %s", w.Code, w.Body)
	}
	if m, _ := f.srv.Placement().Load().Moving(b); m.Phase != buckets.MoveFenced {
		t.Fatalf("phase %s", m.Phase)
	}
	// A node whose metadata this one cannot read (another version) might
	// route by any map: the fence waits for it too.
	fleet.members = append(fleet.members, health.Member{Name: "edge-eu-2", NodeState: health.NodeUnreadable})
	fleet.members[1].MapVersion = fenced
	if w := f.call("POST", "/admin/buckets/"+id+"/move/advance", "", ""); w.Code != 409 || !strings.Contains(w.Body.String(), "edge-eu-2's metadata is unreadable") {
		t.Fatalf("cutover with an unreadable node: %d %s", w.Code, w.Body)
	}
	fleet.members = fleet.members[:2]
	// The same number made by another node (a pin or a reload there, on a
	// map from before the fence) is another map, maybe without the fence.
	fleet.members[1].MapOrigin = "edge-eu-1"
	if w := f.call("POST", "/admin/buckets/"+id+"/move/advance", "", ""); w.Code != 409 || !strings.Contains(w.Body.String(), "made by edge-eu-1") {
		t.Fatalf("cutover with a node on another map of the same number: %d %s", w.Code, w.Body)
	}
	fleet.members[1].MapOrigin = "test-node"
	fleet.members[1].MapVersion = fenced - 1
	if w := f.call("POST", "/admin/buckets/"+id+"/move/advance", "", ""); w.Code != 409 {
		t.Fatalf("cutover with a node behind: %d %s", w.Code, w.Body)
	}
	// The last node took the fence up just now: it may have writes in
	// flight that it routed before, so the fence settles again from here.
	fleet.members[1].MapVersion = fenced
	if w := f.call("POST", "/admin/buckets/"+id+"/move/advance", "", ""); w.Code != 409 || !strings.Contains(w.Body.String(), "every node has held the fence") {
		t.Fatalf("cutover the moment the last node held the fence: %d %s", w.Code, w.Body)
	}
	time.Sleep(time.Millisecond)
	if w := f.call("POST", "/admin/buckets/"+id+"/move/advance", "", ""); w.Code != 200 {
		t.Fatalf("cutover once every node has held the fence for fence_settle: %d %s", w.Code, w.Body)
	}
}

// Requests received by an EU node for US-homed buckets make the advisor
// recommend moving exactly those buckets, shown by the admin route.
func TestRecommendationsFollowTheTraffic(t *testing.T) {
	f := newAdminFixture(t, eagerEUAdvisor, AdminOptions{})
	user, b := usUser(t, f.harness)
	for range 20 {
		f.userDo("GET", user)
	}
	a := f.srv.placer.access.Load()
	if n := a.Count(b, 1); n != 20 {
		t.Fatalf("bucket %d: %d EU-origin requests counted, want 20", b, n)
	}
	var v placementView
	f.evaluate(&v) // starts the window
	if len(v.Candidates) != 1 || v.Candidates[0].Bucket != b || v.EvaluatedAt == nil {
		t.Fatalf("candidates %+v", v)
	}
	time.Sleep(time.Millisecond)
	f.evaluate(&v)
	if len(v.Recommendations) != 1 || v.Recommendations[0].Bucket != b || v.Recommendations[0].To != "eu" || v.Recommendations[0].Share != 1 || v.AutoApply {
		t.Fatalf("recommendations %+v", v)
	}
	var shown placementView
	f.get("/admin/placement/recommendations", &shown)
	if len(shown.Recommendations) != 1 || shown.Recommendations[0] != v.Recommendations[0] || !shown.EvaluatedAt.Equal(*v.EvaluatedAt) {
		t.Fatalf("GET shows %+v, not the last evaluation %+v", shown, v)
	}
	// Not applied unless configured: the map did not change.
	if _, moving := f.srv.Placement().Load().Moving(b); moving {
		t.Fatal("a recommendation was applied without auto_apply")
	}
}

// A node that starts (a restart, or a new driver) learns the cooldowns of
// moves that ended before it from the fleet's map: a bucket moved an hour
// ago is no candidate, however its traffic runs; one moved longer ago than
// the cooldown (24 h) is.
func TestRecentMovesInTheMapKeepTheirCooldown(t *testing.T) {
	for _, tc := range []struct {
		ago  time.Duration
		want int
	}{{time.Hour, 0}, {25 * time.Hour, 1}} {
		t.Run(tc.ago.String(), func(t *testing.T) {
			f := newAdminFixture(t, eagerEUAdvisor, AdminOptions{})
			user, b := usUser(t, f.harness)
			for range 20 {
				f.userDo("GET", user)
			}
			cur := f.srv.Placement().Load()
			o := cur.Overrides()
			o.RecentMoves = map[uint32]time.Time{b: time.Now().Add(-tc.ago)} // moved back to the US by another node
			if ok, err := f.srv.AdoptPlacement(cur.Version()+1, "another-node", o); !ok || err != nil {
				t.Fatalf("adopt: %v %v", ok, err)
			}
			p := f.srv.placer
			var recs []buckets.Recommendation
			for range 3 {
				recs = p.evaluate()
				if err := p.step(nil); err != nil { // the moves' tick, between the advisor's
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond)
			}
			if len(recs) != tc.want || tc.want == 1 && recs[0].Bucket != b {
				t.Fatalf("bucket %d, moved %v ago (cooldown %v): recommendations %+v, want %d", b, tc.ago, p.advisor.Options().Cooldown, recs, tc.want)
			}
			p.mu.Lock()
			n := p.advisor.MovesInLastHour(time.Now())
			p.mu.Unlock()
			if n != 0 {
				t.Fatalf("a move begun %v ago counts toward the last hour: %d", tc.ago, n)
			}
			// A move's start records when it began, and forgets the
			// moves past every cooldown.
			other := usBuckets(t, f.harness, 2)[0]
			if other == b {
				other = usBuckets(t, f.harness, 2)[1]
			}
			if _, err := f.srv.StartMove(other, "eu"); err != nil {
				t.Fatal(err)
			}
			snap := f.srv.Placement().Load()
			if m, _ := snap.Moving(other); m.Started.IsZero() {
				t.Fatalf("a move started without its start: %+v", m)
			}
			if _, kept := snap.RecentMoves()[b]; kept != (tc.want == 0) {
				t.Fatalf("a move begun %v ago kept in the map after the next start: %v", tc.ago, kept)
			}
		})
	}
}

// Looking does not move the advisor: a GET reports the last evaluation
// and starts no hysteresis window, however often it comes. (Before, every
// GET ran the advisor, so a dashboard polling the page started windows
// between ticks and dropped candidates on a passing dip.)
func TestRecommendationsViewRunsNoEvaluation(t *testing.T) {
	f := newAdminFixture(t, eagerEUAdvisor, AdminOptions{})
	user, _ := usUser(t, f.harness)
	for range 20 {
		f.userDo("GET", user)
	}
	var v placementView
	for range 3 {
		f.get("/admin/placement/recommendations", &v)
		time.Sleep(time.Millisecond)
	}
	if v.EvaluatedAt != nil || len(v.Candidates) != 0 || len(v.Recommendations) != 0 {
		t.Fatalf("GET ran the advisor: %+v", v)
	}
	if w := f.call("GET", "/admin/placement/evaluate", "", ""); w.Code != 405 {
		t.Fatalf("GET /admin/placement/evaluate: %d, want 405 (it changes the advisor's state)", w.Code)
	}
}

// With auto_apply, the placer starts the recommended move and walks it
// through its phases to done.
func TestAutoApplyWalksAMoveToDone(t *testing.T) {
	f := newAdminFixture(t, func(c *configs.Config) {
		eagerEUAdvisor(c)
		c.Placement.AutoApply = true
		c.Placement.CopyTime = time.Nanosecond
		c.Placement.FenceSettle = time.Nanosecond
		c.Placement.CutoverTime = time.Nanosecond
	}, AdminOptions{})
	user, b := usUser(t, f.harness)
	for range 20 {
		f.userDo("GET", user)
	}
	p := f.srv.placer
	var phases []string
	for range 10 {
		p.evaluate()
		time.Sleep(time.Millisecond)
		if err := p.step(p.evaluate()); err != nil {
			t.Fatal(err)
		}
		if len(phases) == 0 {
			// The view shows the run that started the move, not an
			// empty list because the placer acted on it.
			var v placementView
			f.get("/admin/placement/recommendations", &v)
			if len(v.Recommendations) != 1 || v.Recommendations[0].Bucket != b {
				t.Fatalf("after the placer started the move, the view shows %+v", v.Recommendations)
			}
		}
		m, moving := f.srv.Placement().Load().Moving(b)
		if !moving {
			break
		}
		if len(phases) == 0 || phases[len(phases)-1] != string(m.Phase) {
			phases = append(phases, string(m.Phase))
		}
		time.Sleep(time.Millisecond)
	}
	snap := f.srv.Placement().Load()
	if snap.Topology().Continents[snap.Home(b)].Name != "eu" {
		t.Fatalf("bucket %d not moved home to the EU; phases seen %v", b, phases)
	}
	t.Logf("phases seen: %v, map version %d", phases, snap.Version())
}

// Two advances that both looked at the fenced move (an operator's and the
// placer's, or two operators') take it one phase, not two: the second is
// refused, and the move stays in cutover, whose reads still fall back to
// the old home, for cutover_time.
func TestConcurrentAdvancesTakeAMoveOnePhase(t *testing.T) {
	f := newAdminFixture(t, fastMoves, AdminOptions{})
	_, b := usUser(t, f.harness)
	if _, err := f.srv.StartMove(b, "eu"); err != nil {
		t.Fatal(err)
	}
	if _, phase, err := f.srv.AdvanceMove(b); err != nil || phase != buckets.MoveFenced {
		t.Fatalf("to the fence: %v %v", phase, err)
	}
	time.Sleep(time.Millisecond) // fence_settle
	var nested error
	testHookMoveChecked = func(uint32) {
		testHookMoveChecked = nil
		_, _, nested = f.srv.AdvanceMove(b) // the other advance, between this one's look and its change
	}
	defer func() { testHookMoveChecked = nil }()
	_, phase, err := f.srv.AdvanceMove(b)
	if nested != nil {
		t.Fatalf("the first advance: %v", nested)
	}
	if !errors.Is(err, errMoveChanged) {
		t.Fatalf("the second advance from fenced: phase %q, %v; want refused (errMoveChanged)", phase, err)
	}
	if m, ok := f.srv.Placement().Load().Moving(b); !ok || m.Phase != buckets.MoveCutover {
		t.Fatalf("after both advances the move is %+v (moving %v), want cutover", m, ok)
	}
}

// Moves under way advance on the placer's own tick, not the advisor's: with
// the advisor an hour apart, a move started by hand still walks to done
// within seconds (a fenced bucket refuses writes until it leaves the fence).
func TestMovesAdvanceBetweenAdvisorRuns(t *testing.T) {
	f := newAdminFixture(t, func(c *configs.Config) {
		c.Placement.StatsTick = time.Hour
		c.Placement.AdviseEvery = time.Hour
		c.Placement.AutoApply = true
		c.Placement.CopyTime = time.Nanosecond
		c.Placement.FenceSettle = time.Nanosecond
		c.Placement.CutoverTime = time.Nanosecond
	}, AdminOptions{})
	_, b := usUser(t, f.harness)
	if _, err := f.srv.StartMove(b, "eu"); err != nil {
		t.Fatal(err)
	}
	// Three phases on a one-second tick: about 3 s, against the hour.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		snap := f.srv.Placement().Load()
		if _, moving := snap.Moving(b); !moving && snap.Topology().Continents[snap.Home(b)].Name == "eu" {
			return
		}
		if time.Now().After(deadline) {
			m, _ := snap.Moving(b)
			t.Fatalf("the move is still %+v after 20 s, with the advisor an hour apart", m)
		}
	}
}
