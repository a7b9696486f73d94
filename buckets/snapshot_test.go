package buckets

import (
	"fmt"
	"github.com/socialroute/socialroute/hashing"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// twoContinents is Instagram's split: 5 US and 3 EU datacenters of unequal
// capacity, no cross-continent failover.
func twoContinents() Topology {
	return Topology{
		Continents: []Continent{{Name: "us"}, {Name: "eu"}},
		Datacenters: []Datacenter{
			{Name: "us-east", Continent: "us", Capacity: 100},
			{Name: "us-east-2", Continent: "us", Capacity: 100},
			{Name: "us-central", Continent: "us", Capacity: 80},
			{Name: "us-west", Continent: "us", Capacity: 120},
			{Name: "us-west-2", Continent: "us", Capacity: 60},
			{Name: "eu-west", Continent: "eu", Capacity: 100},
			{Name: "eu-central", Continent: "eu", Capacity: 80},
			{Name: "eu-north", Continent: "eu", Capacity: 60},
		},
	}
}

func mustBuild(t testing.TB, n uint32, topo Topology, o Overrides) *Snapshot {
	t.Helper()
	s, err := Build(1, n, topo, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// first returns the first datacenter of b's plan that is not in avoid, or -1.
func first(s *Snapshot, b uint32, avoid uint64) int {
	for _, dc := range s.Plan(b) {
		if avoid&(1<<dc) == 0 {
			return int(dc)
		}
	}
	return -1
}

func continentOf(topo Topology, dc int) string { return topo.Datacenters[dc].Continent }

func TestSameBucketSamePlanAcrossBuilds(t *testing.T) {
	a := mustBuild(t, 4096, twoContinents(), Overrides{})
	b := mustBuild(t, 4096, twoContinents(), Overrides{})
	for bucket := uint32(0); bucket < 4096; bucket++ {
		if !slices.Equal(a.Plan(bucket), b.Plan(bucket)) || a.Home(bucket) != b.Home(bucket) {
			t.Fatalf("bucket %d: plans differ between two builds: %v vs %v", bucket, a.Plan(bucket), b.Plan(bucket))
		}
	}
}

// The rendezvous seeds come from names, so listing the datacenters in another
// order must not move a single bucket.
func TestPlacementIndependentOfConfigOrder(t *testing.T) {
	topo := twoContinents()
	rev := cloneTopology(topo)
	slices.Reverse(rev.Datacenters)
	a := mustBuild(t, 4096, topo, Overrides{})
	b := mustBuild(t, 4096, rev, Overrides{})
	for bucket := uint32(0); bucket < 4096; bucket++ {
		pa, pb := names(a, a.Plan(bucket)), names(b, b.Plan(bucket))
		if !slices.Equal(pa, pb) {
			t.Fatalf("bucket %d: %v vs %v after reordering datacenters", bucket, pa, pb)
		}
	}
}

func names(s *Snapshot, plan []uint8) []string {
	out := make([]string, len(plan))
	for i, dc := range plan {
		out[i] = s.topo.Datacenters[dc].Name
	}
	return out
}

func TestPlanIsHomeContinentOnlyWithoutFailover(t *testing.T) {
	topo := twoContinents()
	s := mustBuild(t, 4096, topo, Overrides{})
	for b := uint32(0); b < 4096; b++ {
		home := topo.Continents[s.Home(b)].Name
		plan := s.Plan(b)
		want := 5
		if home == "eu" {
			want = 3
		}
		if len(plan) != want {
			t.Fatalf("bucket %d (home %s): plan %v has %d entries, want %d", b, home, names(s, plan), len(plan), want)
		}
		for _, dc := range plan {
			if continentOf(topo, int(dc)) != home {
				t.Fatalf("bucket %d (home %s) lists %s", b, home, topo.Datacenters[dc].Name)
			}
		}
	}
}

// EU users never leave the EU, even with every EU datacenter drained, unless
// cross-continent failover is configured; with it, the US follows the EU
// datacenters on the list.
func TestEUNeverLeavesEUUnlessFailoverEnabled(t *testing.T) {
	topo := twoContinents()
	allEU := Overrides{Drained: map[string]bool{"eu-west": true, "eu-central": true, "eu-north": true}}
	s := mustBuild(t, 4096, topo, allEU)
	for b := uint32(0); b < 4096; b++ {
		if topo.Continents[s.Home(b)].Name == "eu" {
			if got := first(s, b, s.DrainedMask()); got != -1 {
				t.Fatalf("bucket %d (eu) routed to %s with all of EU drained and no failover", b, topo.Datacenters[got].Name)
			}
		}
	}

	topo.Continents[1].FailoverTo = []string{"us"}
	s = mustBuild(t, 4096, topo, allEU)
	euBuckets := 0
	for b := uint32(0); b < 4096; b++ {
		if topo.Continents[s.Home(b)].Name != "eu" {
			continue
		}
		euBuckets++
		plan := s.Plan(b)
		if len(plan) != 8 {
			t.Fatalf("bucket %d: plan %v, want 3 EU then 5 US", b, names(s, plan))
		}
		for i, dc := range plan {
			want := "eu"
			if i >= 3 {
				want = "us"
			}
			if continentOf(topo, int(dc)) != want {
				t.Fatalf("bucket %d: position %d is %s, want a datacenter in %s", b, i, topo.Datacenters[dc].Name, want)
			}
		}
		if got := first(s, b, s.DrainedMask()); got < 0 || continentOf(topo, got) != "us" {
			t.Fatalf("bucket %d: with EU drained and failover to us, got %d", b, got)
		}
	}
	if euBuckets == 0 {
		t.Fatal("no EU buckets at all")
	}
}

// Each datacenter tops the lists of a share of its continent's buckets in
// proportion to its capacity, and each continent homes a share of all
// buckets in proportion to its total capacity.
func TestSharesFollowCapacity(t *testing.T) {
	const n = 65536
	topo := twoContinents()
	s := mustBuild(t, n, topo, Overrides{})
	perDC := make([]float64, len(topo.Datacenters))
	perCont := make([]float64, len(topo.Continents))
	for b := uint32(0); b < n; b++ {
		perDC[first(s, b, 0)]++
		perCont[s.Home(b)]++
	}
	capCont := map[string]float64{}
	total := 0.0
	for _, d := range topo.Datacenters {
		capCont[d.Continent] += d.Capacity
		total += d.Capacity
	}
	for i, c := range topo.Continents {
		want := capCont[c.Name] / total
		got := perCont[i] / n
		if math.Abs(got-want)/want > 0.03 {
			t.Errorf("continent %s homes %.3f of buckets, want %.3f", c.Name, got, want)
		}
	}
	for i, d := range topo.Datacenters {
		ci, _ := topo.ContinentIndex(d.Continent)
		want := d.Capacity / capCont[d.Continent]
		got := perDC[i] / perCont[ci]
		if math.Abs(got-want)/want > 0.05 {
			t.Errorf("%s tops %.3f of its continent's buckets, want %.3f (capacity share)", d.Name, got, want)
		}
	}
}

// The heart of the design: losing one US datacenter moves only the buckets
// that preferred it, and they spread over the other four US datacenters in
// proportion to capacity (within 10% of each one's capacity share).
func TestLosingADatacenterMovesOnlyItsBuckets(t *testing.T) {
	const n = 65536
	topo := twoContinents()
	for _, lost := range []string{"us-east", "us-central", "us-west", "us-west-2"} {
		t.Run(lost, func(t *testing.T) {
			before := mustBuild(t, n, topo, Overrides{})
			after := mustBuild(t, n, topo, Overrides{Drained: map[string]bool{lost: true}})
			lostIdx, _ := topo.DatacenterIndex(lost)
			moved := map[int]float64{}
			total := 0.0
			for b := uint32(0); b < n; b++ {
				was, is := first(before, b, before.DrainedMask()), first(after, b, after.DrainedMask())
				if was != lostIdx {
					if is != was {
						t.Fatalf("bucket %d moved from %s to %s though %s was lost", b, topo.Datacenters[was].Name, topo.Datacenters[is].Name, lost)
					}
					continue
				}
				if continentOf(topo, is) != "us" {
					t.Fatalf("bucket %d left the US for %s", b, topo.Datacenters[is].Name)
				}
				moved[is]++
				total++
			}
			survivors := 0.0
			for _, d := range topo.Datacenters {
				if d.Continent == "us" && d.Name != lost {
					survivors += d.Capacity
				}
			}
			for i, d := range topo.Datacenters {
				if d.Continent != "us" || d.Name == lost {
					continue
				}
				want := d.Capacity / survivors
				got := moved[i] / total
				if math.Abs(got-want)/want > 0.10 {
					t.Errorf("%s took %.3f of %s's buckets, capacity share %.3f", d.Name, got, lost, want)
				}
			}
		})
	}
}

func TestPinGoesFirstAndKeepsTheRestInOrder(t *testing.T) {
	topo := twoContinents()
	base := mustBuild(t, 4096, topo, Overrides{})
	// Pin bucket 7 to the datacenter its list has last, and bucket 8 across
	// the ocean (an operator may pin anywhere).
	lastOf7 := base.Plan(7)[len(base.Plan(7))-1]
	pinName := topo.Datacenters[lastOf7].Name
	s := mustBuild(t, 4096, topo, Overrides{Pins: map[uint32]string{7: pinName, 8: "eu-north"}})
	for b, pin := range map[uint32]string{7: pinName, 8: "eu-north"} {
		got := names(s, s.Plan(b))
		rest := slices.DeleteFunc(names(base, base.Plan(b)), func(n string) bool { return n == pin })
		if want := append([]string{pin}, rest...); !slices.Equal(got, want) {
			t.Fatalf("bucket %d pinned to %s: plan %v, want %v", b, pin, got, want)
		}
	}
	if dc, ok := s.Pinned(7); !ok || topo.Datacenters[dc].Name != pinName {
		t.Fatalf("Pinned(7) = %d, %v", dc, ok)
	}
	for b := uint32(9); b < 4096; b++ {
		if !slices.Equal(s.Plan(b), base.Plan(b)) {
			t.Fatalf("bucket %d changed though only 7 and 8 were pinned", b)
		}
	}
}

func TestHomeOverride(t *testing.T) {
	topo := twoContinents()
	base := mustBuild(t, 1024, topo, Overrides{})
	var usBucket uint32
	for b := uint32(0); b < 1024; b++ {
		if base.Home(b) == 0 {
			usBucket = b
			break
		}
	}
	s := mustBuild(t, 1024, topo, Overrides{Homes: map[uint32]string{usBucket: "eu"}})
	if s.Home(usBucket) != 1 {
		t.Fatalf("home of %d = %d, want eu", usBucket, s.Home(usBucket))
	}
	for _, dc := range s.Plan(usBucket) {
		if continentOf(topo, int(dc)) != "eu" {
			t.Fatalf("bucket %d homed in eu lists %s", usBucket, topo.Datacenters[dc].Name)
		}
	}
}

// A keyless request's plan starts at the local datacenter, then lists the
// rest of its continent; over the variants (a request's random number) the
// one after the local datacenter is each of the others, by capacity, so a
// failed local datacenter's keyless traffic spreads instead of all going
// to the largest.
func TestLocalPlan(t *testing.T) {
	topo := twoContinents()
	s := mustBuild(t, 16, topo, Overrides{})
	c, _ := topo.DatacenterIndex("us-central")
	next := map[string]int{}
	for v := range uint32(localVariants) {
		got := names(s, s.LocalPlan(c, v))
		rest := slices.Clone(got[1:])
		slices.Sort(rest)
		if got[0] != "us-central" || !slices.Equal(rest, []string{"us-east", "us-east-2", "us-west", "us-west-2"}) {
			t.Fatalf("local plan %d of us-central = %v: want us-central, then the rest of the US", v, got)
		}
		next[got[1]]++
	}
	var capacity float64
	for _, d := range topo.Datacenters {
		if d.Continent == "us" && d.Name != "us-central" {
			capacity += d.Capacity
		}
	}
	for _, d := range topo.Datacenters {
		if d.Continent != "us" || d.Name == "us-central" {
			continue
		}
		want := d.Capacity / capacity * localVariants
		if got := float64(next[d.Name]); got < want/2 || got > want*1.6 {
			t.Fatalf("%s is next after us-central in %v of %d variants, want about %.0f (its capacity share): %v", d.Name, got, localVariants, want, next)
		}
	}
	if s.LocalPlan(c, localVariants+3)[1] != s.LocalPlan(c, 3)[1] {
		t.Fatal("a variant past localVariants is not taken modulo")
	}
}

func TestBuildRejectsBadInput(t *testing.T) {
	bad := func(mut func(*Topology, *Overrides) uint32) (Topology, Overrides, uint32) {
		topo, o := twoContinents(), Overrides{}
		n := mut(&topo, &o)
		return topo, o, n
	}
	cases := []struct {
		name string
		mut  func(*Topology, *Overrides) uint32
		want string
	}{
		{"zero buckets", func(*Topology, *Overrides) uint32 { return 0 }, "bucket count 0"},
		{"too many buckets", func(*Topology, *Overrides) uint32 { return MaxBuckets + 1 }, "bucket count"},
		{"unknown continent", func(t *Topology, _ *Overrides) uint32 { t.Datacenters[0].Continent = "asia"; return 8 }, `unknown continent "asia"`},
		{"zero capacity", func(t *Topology, _ *Overrides) uint32 { t.Datacenters[2].Capacity = 0; return 8 }, "capacity"},
		{"NaN capacity", func(t *Topology, _ *Overrides) uint32 { t.Datacenters[2].Capacity = math.NaN(); return 8 }, "capacity"},
		{"duplicate dc", func(t *Topology, _ *Overrides) uint32 { t.Datacenters[1].Name = "us-east"; return 8 }, "listed twice"},
		{"empty continent", func(t *Topology, _ *Overrides) uint32 {
			t.Continents = append(t.Continents, Continent{Name: "asia"})
			return 8
		}, `"asia" has no datacenter`},
		{"failover to itself", func(t *Topology, _ *Overrides) uint32 { t.Continents[0].FailoverTo = []string{"us"}; return 8 }, "fails over"},
		{"pin unknown dc", func(_ *Topology, o *Overrides) uint32 { o.Pins = map[uint32]string{1: "mars"}; return 8 }, `"mars"`},
		{"pin out of range", func(_ *Topology, o *Overrides) uint32 { o.Pins = map[uint32]string{8: "us-east"}; return 8 }, "pin of bucket 8"},
		{"home unknown", func(_ *Topology, o *Overrides) uint32 { o.Homes = map[uint32]string{1: "asia"}; return 8 }, `"asia"`},
		{"drain unknown", func(_ *Topology, o *Overrides) uint32 { o.Drained = map[string]bool{"nowhere": true}; return 8 }, `"nowhere"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topo, o, n := bad(c.mut)
			_, err := Build(1, n, topo, o)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "buckets: ") {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestMapUpdateRaisesVersionAndKeepsOldSnapshot(t *testing.T) {
	m := NewMap(mustBuild(t, 64, twoContinents(), Overrides{}))
	old := m.Load()
	s, err := m.Update(func(o *Overrides) error {
		o.Drained = map[string]bool{"us-west": true}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Version() != old.Version()+1 || m.Load() != s {
		t.Fatalf("version %d after %d; published=%v", s.Version(), old.Version(), m.Load() == s)
	}
	west, _ := old.Topology().DatacenterIndex("us-west")
	if old.Drained(west) || !s.Drained(west) {
		t.Fatal("drain leaked into the old snapshot or missed the new one")
	}
	if _, err := m.Update(func(o *Overrides) error { return fmt.Errorf("no") }); err == nil || m.Load() != s {
		t.Fatal("a failed change published something")
	}
	if _, err := m.Update(func(o *Overrides) error { o.Pins = map[uint32]string{1: "mars"}; return nil }); err == nil || m.Load() != s {
		t.Fatal("an invalid change published something")
	}
	s2, err := m.Replace(128, twoContinents(), Overrides{})
	if err != nil || s2.Version() != s.Version()+1 || s2.Buckets() != 128 {
		t.Fatalf("Replace: %v, version %d", err, s2.Version())
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []uint32{4096, 65536} {
		b.Run(fmt.Sprintf("buckets=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(1, n, twoContinents(), Overrides{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPlan(b *testing.B) {
	s := mustBuild(b, 4096, twoContinents(), Overrides{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var bucket uint32
		for pb.Next() {
			bucket = (bucket + 1) & 4095
			if first(s, bucket, s.DrainedMask()) < 0 {
				b.Fatal("no datacenter")
			}
		}
	})
}

// Concurrent changes on two nodes resolve the same way everywhere: the
// higher version wins, then the greater node name, whatever the order in
// which a node hears of them.
func TestAdoptResolvesConflictsDeterministically(t *testing.T) {
	pinTo := func(dc string) Overrides { return Overrides{Pins: map[uint32]string{7: dc}} }
	type change struct {
		version uint64
		origin  string
		o       Overrides
	}
	a := change{5, "edge-a", pinTo("us-east")}
	b := change{5, "edge-b", pinTo("us-west")}
	older := change{4, "edge-z", pinTo("eu-west")}
	orders := [][]change{{a, b, older}, {b, a, older}, {older, a, b}, {older, b, a}}
	for i, order := range orders {
		m := NewMap(mustBuild(t, 64, twoContinents(), Overrides{}))
		for _, c := range order {
			if _, err := m.Adopt(c.version, c.origin, c.o); err != nil {
				t.Fatal(err)
			}
		}
		s := m.Load()
		if s.Version() != 5 || s.Origin() != "edge-b" || s.Overrides().Pins[7] != "us-west" {
			t.Fatalf("order %d: ended at version %d from %q pinning %q, want 5 from edge-b pinning us-west", i, s.Version(), s.Origin(), s.Overrides().Pins[7])
		}
	}
	m := NewMap(mustBuild(t, 64, twoContinents(), Overrides{}))
	if ok, err := m.Adopt(9, "edge-x", Overrides{Drained: map[string]bool{"mars": true}}); ok || err == nil || m.Load().Version() != 1 {
		t.Fatalf("overrides naming an unknown datacenter: adopted %v, err %v", ok, err)
	}
	s, err := m.UpdateFrom("edge-c", func(o *Overrides) error { o.Pins[3] = "eu-north"; return nil })
	if err != nil || s.Origin() != "edge-c" || s.Version() != 2 {
		t.Fatalf("UpdateFrom: %v, version %d origin %q", err, s.Version(), s.Origin())
	}
}

func TestHomedInListsEachBucketUnderItsHome(t *testing.T) {
	s := mustBuild(t, 1024, twoContinents(), Overrides{Homes: map[uint32]string{5: "eu"}})
	total := 0
	for c := range s.Topology().Continents {
		prev := -1
		for _, b := range s.HomedIn(c) {
			if s.Home(b) != c || int(b) <= prev {
				t.Fatalf("continent %d lists bucket %d (home %d, after %d)", c, b, s.Home(b), prev)
			}
			prev = int(b)
		}
		total += len(s.HomedIn(c))
	}
	if total != 1024 || !slices.Contains(s.HomedIn(1), 5) {
		t.Fatalf("%d buckets listed; bucket 5 homed in eu listed there: %v", total, slices.Contains(s.HomedIn(1), 5))
	}
}

// A hot key's siblings are stratified by capacity: over k siblings, each
// datacenter of the key's continent serves first between floor and ceil of
// k times its capacity share of them. All are homed on the key's
// continent, and every build draws the same ones.
func TestHotSiblingsFollowCapacity(t *testing.T) {
	topo := twoContinents()
	// Buckets homed in the US but read elsewhere: one pinned to an EU
	// datacenter, some moving to the EU (their reads start there). None is
	// a sibling of a US key; a US key whose own bucket moves draws its
	// siblings from the EU, where its reads (and, at cutover, its writes)
	// go.
	plain := mustBuild(t, 4096, topo, Overrides{})
	var us []uint32
	for b := uint32(0); b < 4096 && len(us) < 40; b++ {
		if plain.Home(b) == 0 {
			us = append(us, b)
		}
	}
	o := Overrides{Pins: map[uint32]string{us[0]: "eu-west"}, Moves: map[uint32]Move{}}
	for i, b := range us[1:] {
		o.Moves[b] = Move{To: "eu", Phase: []MovePhase{MoveCopying, MoveFenced, MoveCutover}[i%3]}
	}
	for _, o := range []Overrides{{}, o} {
		hotSiblingsFollowCapacity(t, topo, o)
	}
}

func hotSiblingsFollowCapacity(t *testing.T, topo Topology, o Overrides) {
	s := mustBuild(t, 4096, topo, o)
	again := mustBuild(t, 4096, topo, o)
	capOf := map[int]float64{}
	total := map[int]float64{}
	for i, d := range topo.Datacenters {
		ci, _ := topo.ContinentIndex(d.Continent)
		capOf[i] = d.Capacity
		total[ci] += d.Capacity
	}
	owners := []uint32{}
	for key := range uint32(200) {
		owners = append(owners, key*37%4096)
	}
	for b := range o.Moves {
		owners = append(owners, b)
	}
	for key, own := range owners {
		h := hashing.Mix64(uint64(key) + 1)
		home := s.ContinentOf(int(s.Plan(own)[0])) // where own's reads go
		for _, k := range []int{2, 5, 8, 16} {
			perDC := map[int]int{}
			for i := range k {
				b := s.HotSibling(own, h, i, k, false)
				if s.Home(b) != home || s.ContinentOf(int(s.Plan(b)[0])) != home {
					t.Fatalf("bucket %d's sibling %d of %d is bucket %d, homed on %d and read first on %d, not on %d where the key's reads go",
						own, i, k, b, s.Home(b), s.ContinentOf(int(s.Plan(b)[0])), home)
				}
				if b != again.HotSibling(own, h, i, k, false) {
					t.Fatal("siblings differ between two builds of the same map")
				}
				perDC[int(s.Plan(b)[0])]++
			}
			for dc, c := range capOf {
				ci, _ := topo.ContinentIndex(topo.Datacenters[dc].Continent)
				if ci != home {
					continue
				}
				want := float64(k) * c / total[ci]
				if got := float64(perDC[dc]); got < math.Floor(want) || got > math.Ceil(want) {
					t.Fatalf("key %d, k=%d: %s serves %v siblings first, want %.2f (capacity share)", key, k, topo.Datacenters[dc].Name, got, want)
				}
			}
		}
	}
	if got := s.HotSibling(9, 1234, 0, 1, false); got != 9 {
		t.Fatalf("a key spread over one bucket moved to %d", got)
	}
	cross := 0
	for i := range 64 {
		if s.Home(s.HotSibling(9, 1234, i, 64, true)) != s.Home(9) {
			cross++
		}
	}
	if cross == 0 {
		t.Fatal("cross-continent siblings never left the key's continent")
	}
}

// A continent that lists a failover continent twice is refused: plans hold
// each datacenter once, and the table has room for that only.
func TestTopologyRefusesARepeatedFailoverContinent(t *testing.T) {
	topo := twoContinents()
	topo.Continents[0].FailoverTo = []string{topo.Continents[1].Name, topo.Continents[1].Name}
	if _, err := Build(1, 64, topo, Overrides{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("Build with a repeated failover continent: %v", err)
	}
}

// A datacenter drained again halfway through its undrain ramp ramps down
// from where it was (half), not from its whole share: it was drained for
// failing, and a jump to all of its traffic would be the opposite.
func TestARedrainMidRampRampsFromWhereItWas(t *testing.T) {
	const ramp = 10 * time.Second
	topo := twoContinents()
	usWest, _ := topo.DatacenterIndex("us-west")
	drained := Overrides{Drained: map[string]bool{"us-west": true}}
	s1 := mustBuild(t, 64, topo, drained)
	t0 := time.Unix(1000, 0)
	s2 := mustBuild(t, 64, topo, Overrides{})
	s2.CarryChanges(s1, t0, ramp)
	mid := t0.Add(ramp / 2)
	if w := s2.Weight(usWest, mid.UnixNano(), ramp); math.Abs(w-0.5) > 1e-9 {
		t.Fatalf("halfway through the undrain: weight %v, want 0.5", w)
	}
	s3 := mustBuild(t, 64, topo, drained)
	s3.CarryChanges(s2, mid, ramp)
	for _, c := range []struct {
		at   time.Duration
		want float64
	}{{0, 0.5}, {ramp / 4, 0.25}, {ramp / 2, 0}, {ramp, 0}} {
		if w := s3.Weight(usWest, mid.Add(c.at).UnixNano(), ramp); math.Abs(w-c.want) > 1e-9 {
			t.Errorf("%v after the drain that came halfway through the undrain: weight %v, want %v", c.at, w, c.want)
		}
	}
	// A reload that changes nothing of it keeps the ramp where it is.
	s4 := mustBuild(t, 64, topo, drained)
	s4.CarryChanges(s3, mid.Add(ramp/4), ramp)
	if w := s4.Weight(usWest, mid.Add(ramp/4).UnixNano(), ramp); math.Abs(w-0.25) > 1e-9 {
		t.Errorf("after a reload mid-ramp: weight %v, want 0.25", w)
	}
}

// Homes follow the continents' shares, not their capacities, once shares
// are set: capacity edits (one site grown, a continent's capacities
// rescaled) move no bucket between continents. By capacity alone they do,
// and DefaultHomesMoved counts them.
func TestSharesKeepHomesWhileCapacitiesChange(t *testing.T) {
	edited := func(topo Topology) Topology {
		topo.Datacenters = slices.Clone(topo.Datacenters)
		for i := range topo.Datacenters {
			switch d := &topo.Datacenters[i]; {
			case d.Name == "us-west":
				d.Capacity = 150
			case d.Continent == "eu":
				d.Capacity /= 10
			}
		}
		return topo
	}
	byCapacity := twoContinents()
	if n, _ := DefaultHomesMoved(mustBuild(t, 4096, byCapacity, Overrides{}), mustBuild(t, 4096, edited(byCapacity), Overrides{})); n < 100 {
		t.Fatalf("by capacity, the edits rehomed %d buckets; want many (the test's premise)", n)
	}
	shared := twoContinents()
	shared.Continents = []Continent{{Name: "us", Share: 460}, {Name: "eu", Share: 240}}
	before := mustBuild(t, 4096, shared, Overrides{})
	if n, b := DefaultHomesMoved(mustBuild(t, 4096, byCapacity, Overrides{}), before); n != 0 {
		t.Fatalf("shares equal to the capacities' sums rehomed %d buckets (bucket %d)", n, b)
	}
	if n, b := DefaultHomesMoved(before, mustBuild(t, 4096, edited(shared), Overrides{})); n != 0 {
		t.Fatalf("with shares set, capacity edits rehomed %d buckets (bucket %d)", n, b)
	}
	// A bucket with a home of its own is not counted: its home is the map's.
	moved := mustBuild(t, 4096, byCapacity, Overrides{})
	var b uint32
	for moved.Home(b) != 0 {
		b++
	}
	own := mustBuild(t, 4096, byCapacity, Overrides{Homes: map[uint32]string{b: "eu"}})
	if n, _ := DefaultHomesMoved(moved, own); n != 0 {
		t.Fatalf("a bucket given a home of its own counted as rehomed (%d)", n)
	}
}
