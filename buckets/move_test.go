package buckets

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// continentsOf lists the continents of a plan's datacenters, in order.
func continentsOf(s *Snapshot, plan []uint8) []string {
	var out []string
	for _, dc := range plan {
		out = append(out, continentOf(s.topo, int(dc)))
	}
	return out
}

// usBucket finds a bucket homed in the US by default.
func usBucket(t *testing.T, m *Map) uint32 {
	t.Helper()
	s := m.Load()
	for b := range s.Buckets() {
		if s.Topology().Continents[s.Home(b)].Name == "us" {
			return b
		}
	}
	t.Fatal("no US bucket")
	return 0
}

func TestMovePhasesRouteReadsAndWrites(t *testing.T) {
	m := NewMap(mustBuild(t, 256, twoContinents(), Overrides{}))
	b := usBucket(t, m)
	base := m.Load()
	change := func(f func(*Overrides) error) *Snapshot {
		t.Helper()
		s, err := m.Update(f)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	began := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	s := change(func(o *Overrides) error { return StartMove(o, m.Load(), b, "eu", began) })
	if s.Version() != base.Version()+1 {
		t.Fatalf("version %d", s.Version())
	}
	read, write := continentsOf(s, s.Plan(b)), continentsOf(s, s.WritePlan(b))
	t.Logf("copying: reads %v, writes %v", read, write)
	if len(read) != 8 || read[0] != "eu" || read[2] != "eu" || read[3] != "us" || read[7] != "us" {
		t.Fatalf("copying: reads go to %v, want the 3 EU datacenters then the 5 US", read)
	}
	if len(write) != 5 || write[0] != "us" || write[4] != "us" || s.WriteHome(b) != 0 {
		t.Fatalf("copying: writes go to %v (write home %d), want the US only", write, s.WriteHome(b))
	}
	for dc := range 5 { // the old home's order is the bucket's usual one
		if s.WritePlan(b)[dc] != base.Plan(b)[dc] {
			t.Fatalf("copying: write plan %v, usual plan %v", s.WritePlan(b), base.Plan(b))
		}
	}
	if s.Home(b) != 0 {
		t.Fatal("the home changed before the move is done")
	}
	// Other buckets are untouched.
	if other := (b + 1) % 256; string(s.Plan(other)) != string(base.Plan(other)) || string(s.WritePlan(other)) != string(base.Plan(other)) {
		t.Fatal("a move changed another bucket's plan")
	}

	var phase MovePhase
	s = change(func(o *Overrides) (err error) { phase, err = AdvanceMove(o, b); return })
	if phase != MoveFenced || len(s.WritePlan(b)) != 0 || s.WriteHome(b) != -1 || continentsOf(s, s.Plan(b))[0] != "eu" {
		t.Fatalf("fenced: phase %s, writes %v", phase, s.WritePlan(b))
	}
	s = change(func(o *Overrides) (err error) { phase, err = AdvanceMove(o, b); return })
	write = continentsOf(s, s.WritePlan(b))
	if phase != MoveCutover || len(write) != 3 || write[0] != "eu" || write[2] != "eu" || s.WriteHome(b) != 1 {
		t.Fatalf("cutover: phase %s, writes %v", phase, write)
	}
	if read := continentsOf(s, s.Plan(b)); read[0] != "eu" || read[7] != "us" {
		t.Fatalf("cutover: reads %v", read)
	}
	s = change(func(o *Overrides) (err error) { phase, err = AdvanceMove(o, b); return })
	if phase != MoveDone || s.Home(b) != 1 || len(s.Moves()) != 0 || len(s.Plan(b)) != 3 || string(s.WritePlan(b)) != string(s.Plan(b)) {
		t.Fatalf("done: phase %s, home %d, moves %v, plan %v", phase, s.Home(b), s.Moves(), s.Plan(b))
	}
	if s.Version() != base.Version()+4 {
		t.Fatalf("four phases made %d versions", s.Version()-base.Version())
	}
	if at, ok := s.RecentMoves()[b]; !ok || !at.Equal(began) {
		t.Fatalf("the done move is remembered as begun at %v (%v), want %v", at, ok, began)
	}
}

// A move that ends, done or aborted, stays in the map's RecentMoves by when
// it began (the advisor's cooldowns, for every node), until forgotten.
func TestEndedMovesStayInTheMap(t *testing.T) {
	m := NewMap(mustBuild(t, 64, twoContinents(), Overrides{}))
	b := usBucket(t, m)
	began := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	s, err := m.Update(func(o *Overrides) error { return StartMove(o, m.Load(), b, "eu", began) })
	if err != nil {
		t.Fatal(err)
	}
	if mv, _ := s.Moving(b); !mv.Started.Equal(began) || len(s.RecentMoves()) != 0 {
		t.Fatalf("under way: %+v, recent %v", mv, s.RecentMoves())
	}
	if s, err = m.Update(func(o *Overrides) error { return AbortMove(o, b) }); err != nil {
		t.Fatal(err)
	}
	if at := s.RecentMoves()[b]; !at.Equal(began) {
		t.Fatalf("the aborted move is remembered as begun at %v, want %v", at, began)
	}
	s, _ = m.Update(func(o *Overrides) error { ForgetMovesBefore(o, began); return nil })
	if _, ok := s.RecentMoves()[b]; !ok {
		t.Fatal("forgotten at the instant it began")
	}
	s, _ = m.Update(func(o *Overrides) error { ForgetMovesBefore(o, began.Add(time.Nanosecond)); return nil })
	if len(s.RecentMoves()) != 0 {
		t.Fatalf("not forgotten once older: %v", s.RecentMoves())
	}
	// A move from a release that did not record its start is not
	// remembered by a made-up time.
	s, _ = m.Update(func(o *Overrides) error { return StartMove(o, m.Load(), b, "eu", time.Time{}) })
	s, _ = m.Update(func(o *Overrides) error { return AbortMove(o, b) })
	if len(s.RecentMoves()) != 0 {
		t.Fatalf("a move without a start remembered: %v", s.RecentMoves())
	}
}

func TestMoveRefusals(t *testing.T) {
	m := NewMap(mustBuild(t, 64, twoContinents(), Overrides{}))
	b := usBucket(t, m)
	try := func(f func(*Overrides) error) error { _, err := m.Update(f); return err }
	if err := try(func(o *Overrides) error { return StartMove(o, m.Load(), b, "us", time.Time{}) }); !errors.Is(err, ErrSameHome) {
		t.Fatalf("move home to itself: %v", err)
	}
	if err := try(func(o *Overrides) error { return StartMove(o, m.Load(), b, "asia", time.Time{}) }); err == nil {
		t.Fatal("move to an unknown continent accepted")
	}
	if err := try(func(o *Overrides) error { _, err := AdvanceMove(o, b); return err }); !errors.Is(err, ErrNotMoving) {
		t.Fatalf("advance of a bucket not moving: %v", err)
	}
	if err := try(func(o *Overrides) error { return StartMove(o, m.Load(), b, "eu", time.Time{}) }); err != nil {
		t.Fatal(err)
	}
	if err := try(func(o *Overrides) error { return StartMove(o, m.Load(), b, "eu", time.Time{}) }); !errors.Is(err, ErrMoving) {
		t.Fatalf("second move: %v", err)
	}
	// Abort while copying: back to the old placement.
	if err := try(func(o *Overrides) error { return AbortMove(o, b) }); err != nil {
		t.Fatal(err)
	}
	if _, moving := m.Load().Moving(b); moving || m.Load().WriteHome(b) != 0 {
		t.Fatal("abort left the move")
	}
	// Past the fence it can only be finished.
	try(func(o *Overrides) error { return StartMove(o, m.Load(), b, "eu", time.Time{}) })
	try(func(o *Overrides) error { _, err := AdvanceMove(o, b); return err })
	try(func(o *Overrides) error { _, err := AdvanceMove(o, b); return err })
	if err := try(func(o *Overrides) error { return AbortMove(o, b) }); !errors.Is(err, ErrPastFence) {
		t.Fatalf("abort at cutover: %v", err)
	}
	// Overrides that name a bad move do not build.
	if _, err := Build(1, 64, twoContinents(), Overrides{Moves: map[uint32]Move{b: {To: "eu", Phase: "sideways"}}}); err == nil {
		t.Fatal("unknown phase built")
	}
	if _, err := Build(1, 64, twoContinents(), Overrides{Moves: map[uint32]Move{b: {To: "us", Phase: MoveCopying}}}); err == nil {
		t.Fatal("move to its own home built")
	}
}

// A pin on the continent a bucket leaves would come first in its plans
// once the move is done, sending its writes back past the fence: a move of
// a bucket pinned there is refused, and so is such a pin on a moving
// bucket. A pin on the target continent is fine.
func TestMoveOfAPinnedBucket(t *testing.T) {
	topo := twoContinents()
	usDC, euDC := topo.Datacenters[0].Name, ""
	for _, d := range topo.Datacenters {
		if d.Continent == "eu" {
			euDC = d.Name
			break
		}
	}
	m := NewMap(mustBuild(t, 64, topo, Overrides{}))
	b := usBucket(t, m)
	try := func(f func(*Overrides) error) error { _, err := m.Update(f); return err }
	if err := try(func(o *Overrides) error { o.Pins[b] = usDC; return nil }); err != nil {
		t.Fatal(err)
	}
	err := try(func(o *Overrides) error { return StartMove(o, m.Load(), b, "eu", time.Time{}) })
	if err == nil || !strings.Contains(err.Error(), "pinned to "+usDC) {
		t.Fatalf("a move of a bucket pinned to %s: %v, want refused naming the pin", usDC, err)
	}
	if err := try(func(o *Overrides) error { o.Pins[b] = euDC; return StartMove(o, m.Load(), b, "eu", time.Time{}) }); err != nil {
		t.Fatalf("a move of a bucket pinned on its target continent: %v", err)
	}
	if err := try(func(o *Overrides) error { o.Pins[b] = usDC; return nil }); err == nil {
		t.Fatal("a moving bucket was pinned to the continent it leaves")
	}
	for range 3 {
		if err := try(func(o *Overrides) error { _, err := AdvanceMove(o, b); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if s := m.Load(); s.Topology().Datacenters[s.WritePlan(b)[0]].Continent != "eu" {
		t.Fatalf("after the move, bucket %d writes to %s first", b, s.Topology().Datacenters[s.WritePlan(b)[0]].Name)
	}
}

// The "never two write homes" argument, checked on a simulated fleet: a
// mover publishes each phase as a version, nodes receive versions late, out
// of order or never (a partitioned node keeps its old one), and the mover
// leaves the fence only once every node it can see holds it. At every step,
// the nodes' write homes for the bucket, ignoring fenced (-1), are at most
// one continent.
func TestNeverTwoWriteHomesAcrossAFleetMissingVersions(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		m := NewMap(mustBuild(t, 64, twoContinents(), Overrides{}))
		b := usBucket(t, m)
		versions := []*Snapshot{m.Load()}
		const nodes = 6
		held := make([]int, nodes) // index into versions
		publish := func(f func(*Overrides) error) {
			s, err := m.Update(f)
			if err != nil {
				t.Fatal(err)
			}
			versions = append(versions, s)
		}
		check := func() {
			home := -1
			for n := range nodes {
				w := versions[held[n]].WriteHome(b)
				if w < 0 {
					continue
				}
				if home >= 0 && w != home {
					t.Fatalf("seed %d: nodes write bucket %d to continents %d and %d at once (held %v)", seed, b, home, w, held)
				}
				home = w
			}
		}
		deliver := func() { // some nodes learn some newer version (never an older one)
			for n := range nodes {
				if rng.IntN(3) == 0 {
					held[n] = max(held[n], held[n]+rng.IntN(len(versions)-held[n]))
				}
			}
			check()
		}
		publish(func(o *Overrides) error { return StartMove(o, m.Load(), b, "eu", time.Time{}) })
		for range rng.IntN(5) {
			deliver()
		}
		publish(func(o *Overrides) error { _, err := AdvanceMove(o, b); return err })
		fence := len(versions) - 1
		// The barrier: wait until every node holds the fence or later.
		for {
			deliver()
			all := true
			for n := range nodes {
				all = all && held[n] >= fence
			}
			if all {
				break
			}
			// Deliveries eventually reach everyone.
			held[rng.IntN(nodes)] = len(versions) - 1
		}
		publish(func(o *Overrides) error { _, err := AdvanceMove(o, b); return err }) // cutover
		for range rng.IntN(5) {
			deliver()
		}
		publish(func(o *Overrides) error { _, err := AdvanceMove(o, b); return err }) // done
		for range 5 {
			deliver()
		}
	}
}

// Without the fence (copying straight to cutover), two nodes one version
// apart write to two homes: the fence is what the guarantee rests on.
// (proxy's TestFleetMoveUnderLoad fails likewise when the barrier is
// skipped.)
func TestWithoutTheFenceTwoWriteHomesHappen(t *testing.T) {
	m := NewMap(mustBuild(t, 64, twoContinents(), Overrides{}))
	b := usBucket(t, m)
	m.Update(func(o *Overrides) error { return StartMove(o, m.Load(), b, "eu", time.Time{}) })
	copying := m.Load()
	cut, err := m.Update(func(o *Overrides) error {
		o.Moves[b] = Move{To: "eu", Phase: MoveCutover}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if copying.WriteHome(b) == cut.WriteHome(b) || copying.WriteHome(b) < 0 || cut.WriteHome(b) < 0 {
		t.Fatal("expected two write homes for two nodes one version apart")
	}
}
