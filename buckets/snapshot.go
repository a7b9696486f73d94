package buckets

import (
	"fmt"
	"github.com/socialroute/socialroute/hashing"
	"maps"
	"slices"
	"time"
)

// Overrides are the operator's changes to the derived placement. They
// marshal to JSON as they are, which is how the fleet exchanges them.
type Overrides struct {
	// Homes sets the home continent (by name) of individual buckets.
	Homes map[uint32]string `json:"homes,omitempty"`
	// Pins puts a datacenter (by name) first on a bucket's list.
	Pins map[uint32]string `json:"pins,omitempty"`
	// Drained datacenters (by name) stay on lists but take no traffic.
	Drained map[string]bool `json:"drained,omitempty"`
	// Moves are buckets moving to a new home continent, with their phase
	// (see MovePhase).
	Moves map[uint32]Move `json:"moves,omitempty"`
	// RecentMoves are buckets whose last move ended (done or aborted), by
	// when it began: the placement advisor's cooldowns and hourly limit.
	// In the map, they are the fleet's: a new driver, or a node restarted
	// that adopts the fleet's map, keeps them. Routing ignores them.
	RecentMoves map[uint32]time.Time `json:"recent_moves,omitempty"`
}

// Clone returns a deep copy, so a change can be built without touching the
// overrides a published snapshot holds.
func (o Overrides) Clone() Overrides {
	return Overrides{Homes: maps.Clone(o.Homes), Pins: maps.Clone(o.Pins), Drained: maps.Clone(o.Drained), Moves: maps.Clone(o.Moves),
		RecentMoves: maps.Clone(o.RecentMoves)}
}

// Snapshot is one immutable version of the placement of every bucket. It is
// safe for concurrent use; nothing in it changes after Build.
type Snapshot struct {
	version   uint64
	origin    string // the node that made this version; ties between equal versions go to the greater
	n         uint32
	topo      Topology
	overrides Overrides

	home        []uint8 // per bucket: continent index
	dcContinent []uint8 // per datacenter: its continent's index
	plans       []uint8 // per bucket, stride entries: datacenter indexes in preference order
	planLen     []uint8 // per bucket: used entries of its plan
	stride      int
	drained     uint64      // datacenter mask
	local       [][][]uint8 // per datacenter, localVariants keyless plans
	homedIn     [][]uint32  // per continent: its buckets, ascending
	all         []uint32    // every bucket, ascending
	strata      []strata    // per continent, then one for all: hot keys' sibling space

	// Moves (move.go); nil when no bucket moves. phase is per bucket the
	// MovePhase code (0: not moving), moveTo the new home continent, and
	// wplans/wplanLen the write plans, laid out like plans.
	phase    []uint8
	moveTo   []uint8
	wplans   []uint8
	wplanLen []uint8

	// changedAt is, per datacenter, when (unix ns) it was last drained or
	// undrained by a later version of the map; 0 if it has been as it is
	// since the first version. lastChange is the latest of them.
	changedAt  []int64
	lastChange int64
	// from is, per datacenter, its weight when it changed at changedAt:
	// where the ramp before had got to (nil: a whole ramp, from 1 for a
	// drain and from 0 for an undrain).
	from []float64
}

// Build computes the placement of n buckets on topo with the overrides
// applied, stamped with version. It returns an error naming the first
// override or topology problem it meets.
func Build(version uint64, n uint32, topo Topology, o Overrides) (*Snapshot, error) {
	return BuildFrom(version, "", n, topo, o)
}

// BuildFrom is Build for a version made by the node named origin (see
// Snapshot.Origin).
func BuildFrom(version uint64, origin string, n uint32, topo Topology, o Overrides) (*Snapshot, error) {
	if n == 0 || n > MaxBuckets {
		return nil, fmt.Errorf("buckets: bucket count %d outside 1..%d", n, MaxBuckets)
	}
	if err := topo.validate(); err != nil {
		return nil, err
	}
	s := &Snapshot{
		version:   version,
		origin:    origin,
		n:         n,
		topo:      cloneTopology(topo),
		overrides: o.Clone(),
		home:      make([]uint8, n),
		planLen:   make([]uint8, n),
		stride:    len(topo.Datacenters),
		changedAt: make([]int64, len(topo.Datacenters)),
	}
	s.plans = make([]uint8, int(n)*s.stride)

	homes := make([]int, n)
	for b := range homes {
		homes[b] = -1
	}
	for b, name := range o.Homes {
		ci, ok := topo.ContinentIndex(name)
		if b >= n || !ok {
			return nil, fmt.Errorf("buckets: home of bucket %d: %q is not a known continent (or bucket out of range)", b, name)
		}
		homes[b] = ci
	}
	pins := make([]int, n)
	for b := range pins {
		pins[b] = -1
	}
	for b, name := range o.Pins {
		di, ok := topo.DatacenterIndex(name)
		if b >= n || !ok {
			return nil, fmt.Errorf("buckets: pin of bucket %d: %q is not a known datacenter (or bucket out of range)", b, name)
		}
		pins[b] = di
	}
	for name, on := range o.Drained {
		di, ok := topo.DatacenterIndex(name)
		if !ok {
			return nil, fmt.Errorf("buckets: drain: %q is not a known datacenter", name)
		}
		if on {
			s.drained |= 1 << di
		}
	}

	// Candidates per continent, and the continents themselves weighted by
	// their shares for the default home.
	perContinent := make([][]candidate, len(topo.Continents))
	conts := make([]candidate, len(topo.Continents))
	for i, share := range topo.Shares() {
		conts[i] = newCandidate(i, topo.Continents[i].Name, share)
	}
	s.dcContinent = make([]uint8, len(topo.Datacenters))
	for i, d := range topo.Datacenters {
		ci, _ := topo.ContinentIndex(d.Continent)
		perContinent[ci] = append(perContinent[ci], newCandidate(i, d.Name, d.Capacity))
		s.dcContinent[i] = uint8(ci)
	}
	failover := make([][]int, len(topo.Continents))
	for i, c := range topo.Continents {
		for _, f := range c.FailoverTo {
			fi, _ := topo.ContinentIndex(f)
			failover[i] = append(failover[i], fi)
		}
	}

	scores := make([]float64, max(len(topo.Datacenters), len(topo.Continents)))
	contOrder := slices.Clone(conts)
	for b := uint32(0); b < n; b++ {
		home := homes[b]
		if home < 0 {
			rank(contOrder, b, scores)
			home = contOrder[0].index
		}
		s.home[b] = uint8(home)
		plan := s.plans[int(b)*s.stride : int(b)*s.stride : int(b+1)*s.stride]
		if pins[b] >= 0 {
			plan = append(plan, uint8(pins[b]))
		}
		for _, ci := range append([]int{home}, failover[home]...) {
			rank(perContinent[ci], b, scores)
			for _, c := range perContinent[ci] {
				if c.index != pins[b] {
					plan = append(plan, uint8(c.index))
				}
			}
		}
		s.planLen[b] = uint8(len(plan))
	}
	if err := s.buildMoves(o, pins, perContinent, scores); err != nil {
		return nil, err
	}

	s.homedIn = make([][]uint32, len(topo.Continents))
	s.all = make([]uint32, n)
	for b := uint32(0); b < n; b++ {
		s.homedIn[s.home[b]] = append(s.homedIn[s.home[b]], b)
		s.all[b] = b
	}
	s.strata = make([]strata, len(topo.Continents)+1)
	for ci := range topo.Continents {
		s.strata[ci] = s.newStrata(s.homedIn[ci], ci)
	}
	s.strata[len(topo.Continents)] = s.newStrata(s.all, -1)

	// Keyless requests under the "local" policy: the local datacenter,
	// then the rest of its continent, then its failover continents, each
	// ordered by capacity-weighted rendezvous over one of localVariants
	// pseudo-buckets: a request takes a variant at random, so when the
	// local datacenter fails its keyless traffic spreads over the others
	// by capacity instead of all landing on the largest.
	s.local = make([][][]uint8, len(topo.Datacenters))
	for di, d := range topo.Datacenters {
		ci, _ := topo.ContinentIndex(d.Continent)
		s.local[di] = make([][]uint8, localVariants)
		for v := range localVariants {
			plan := []uint8{uint8(di)}
			for _, c := range append([]int{ci}, failover[ci]...) {
				rank(perContinent[c], localVariantBase+uint32(v), scores)
				for _, cand := range perContinent[c] {
					if cand.index != di {
						plan = append(plan, uint8(cand.index))
					}
				}
			}
			s.local[di][v] = plan
		}
	}
	return s, nil
}

// localVariants is how many orders keyless requests spread over; the
// pseudo-buckets they are ranked as start at localVariantBase, past any
// real bucket.
const (
	localVariants    = 64
	localVariantBase = 1 << 31
)

func cloneTopology(t Topology) Topology {
	out := Topology{Continents: slices.Clone(t.Continents), Datacenters: slices.Clone(t.Datacenters)}
	for i := range out.Continents {
		out.Continents[i].FailoverTo = slices.Clone(out.Continents[i].FailoverTo)
	}
	return out
}

// Version is the snapshot's map version; every change raises it.
func (s *Snapshot) Version() uint64 { return s.version }

// Origin is the name of the node whose change made this version ("" for a
// version built from local configuration).
func (s *Snapshot) Origin() string { return s.origin }

// newer reports whether (version, origin) wins over s: a higher version,
// or the same version from a greater node name. Every node resolving
// concurrent changes this way ends with the same map.
func (s *Snapshot) newer(version uint64, origin string) bool {
	return version > s.version || (version == s.version && origin > s.origin)
}

// Buckets is N.
func (s *Snapshot) Buckets() uint32 { return s.n }

// Topology returns the topology the snapshot was built on. Callers must not
// modify it.
func (s *Snapshot) Topology() *Topology { return &s.topo }

// Overrides returns a copy of the overrides the snapshot was built with.
func (s *Snapshot) Overrides() Overrides { return s.overrides.Clone() }

// DefaultHomesMoved counts the buckets that have no home of their own in
// either snapshot and whose default home continent differs between them
// (by name), and returns the first of them: a change of the continents'
// shares rehomes those, and their data has not moved.
func DefaultHomesMoved(a, b *Snapshot) (count int, first uint32) {
	for x := range min(a.n, b.n) {
		_, ownA := a.overrides.Homes[x]
		_, ownB := b.overrides.Homes[x]
		if ownA || ownB || a.topo.Continents[a.home[x]].Name == b.topo.Continents[b.home[x]].Name {
			continue
		}
		if count == 0 {
			first = x
		}
		count++
	}
	return count, first
}

// Home returns the index of bucket b's home continent.
func (s *Snapshot) Home(b uint32) int { return int(s.home[b]) }

// ContinentOf is datacenter dc's continent (index).
func (s *Snapshot) ContinentOf(dc int) int { return int(s.dcContinent[dc]) }

// Plan returns bucket b's datacenters (indexes) in preference order: a pin
// first, then the home continent's, then those of the continents it may
// fail over to. The slice is shared: callers must not modify it.
func (s *Snapshot) Plan(b uint32) []uint8 {
	off := int(b) * s.stride
	return s.plans[off : off+int(s.planLen[b]) : off+int(s.planLen[b])]
}

// AllBuckets returns every bucket, ascending. The slice is shared: read only.
func (s *Snapshot) AllBuckets() []uint32 { return s.all }

// HomedIn returns the buckets whose home is continent c, ascending: where a
// hot account's sibling buckets may go. The slice is shared: read only.
func (s *Snapshot) HomedIn(c int) []uint32 { return s.homedIn[c] }

// LocalPlan returns the plan for requests without a routing key received in
// datacenter dc: dc first, then one of localVariants capacity-weighted
// orders of the others, chosen by variant (a request's random number). The
// slice is shared: callers must not modify it.
func (s *Snapshot) LocalPlan(dc int, variant uint32) []uint8 {
	return s.local[dc][variant%localVariants]
}

// Drained reports whether datacenter dc is drained.
func (s *Snapshot) Drained(dc int) bool { return s.drained&(1<<dc) != 0 }

// DrainedMask is the set of drained datacenters as a bit mask.
func (s *Snapshot) DrainedMask() uint64 { return s.drained }

// Pinned returns the datacenter bucket b is pinned to, if any.
func (s *Snapshot) Pinned(b uint32) (dc int, ok bool) {
	name, ok := s.overrides.Pins[b]
	if !ok {
		return -1, false
	}
	return s.topo.DatacenterIndex(name)
}

// CarryChanges records, for each datacenter whose drain state differs from
// old's (matched by name), that it changed at now, from the weight its
// ramp (over ramp) had reached, and keeps old's for the others, so that a
// drain started before a reload keeps ramping, and a datacenter drained
// again halfway through its undrain ramps down from half instead of
// jumping back to its whole share. Call it before publishing s.
func (s *Snapshot) CarryChanges(old *Snapshot, now time.Time, ramp time.Duration) {
	s.from = make([]float64, len(s.topo.Datacenters))
	for i, d := range s.topo.Datacenters {
		j, ok := old.topo.DatacenterIndex(d.Name)
		switch {
		case !ok:
			s.changedAt[i] = 0
		case old.Drained(j) != s.Drained(i):
			s.from[i] = old.Weight(j, now.UnixNano(), ramp)
			s.changedAt[i] = now.UnixNano()
		default:
			s.changedAt[i], s.from[i] = old.changedAt[j], old.fromWeight(j)
		}
		s.lastChange = max(s.lastChange, s.changedAt[i])
	}
}

// fromWeight is datacenter dc's weight when it last changed.
func (s *Snapshot) fromWeight(dc int) float64 {
	switch {
	case s.from != nil:
		return s.from[dc]
	case s.Drained(dc):
		return 1
	}
	return 0
}

// Weight is the share of its traffic datacenter dc should take at now
// (unix ns) when drains ramp over ramp: 1 for an undrained datacenter, 0
// for a drained one, and in between after a change, falling (after a
// drain) or rising (after an undrain) by 1 each ramp from where it was.
func (s *Snapshot) Weight(dc int, now int64, ramp time.Duration) float64 {
	target := 1.0
	if s.Drained(dc) {
		target = 0
	}
	at := s.changedAt[dc]
	if at == 0 || ramp <= 0 || now-at >= int64(ramp) {
		return target
	}
	done := float64(now-at) / float64(ramp)
	if target == 0 {
		return max(0, s.fromWeight(dc)-done)
	}
	return min(1, s.fromWeight(dc)+done)
}

// RampsOver reports whether every drain ramp of s has finished at now: the
// request path can then skip reading the clock for this snapshot.
func (s *Snapshot) RampsOver(now int64, ramp time.Duration) bool {
	return s.lastChange == 0 || now-s.lastChange >= int64(ramp)
}

// ChangedAt is when datacenter dc was last drained or undrained by a change
// of the map (the zero time if never).
func (s *Snapshot) ChangedAt(dc int) time.Time {
	if s.changedAt[dc] == 0 {
		return time.Time{}
	}
	return time.Unix(0, s.changedAt[dc])
}

// strata group candidate buckets by the datacenter that serves them first,
// weighted by that datacenter's capacity, so that a hot key's siblings can
// be drawn in proportion to capacity instead of at random.
type strata struct {
	cumulative []float64  // cumulative capacity share, ending at 1
	buckets    [][]uint32 // per stratum: its buckets
}

// newStrata groups candidates by their plan's first datacenter. With a
// continent (ci >= 0), only buckets served first on it and not moving
// are candidates: a bucket pinned off its home, or moving (its reads
// start on the new continent), would send the hot key's readers there,
// off the continent that holds the key's data.
func (s *Snapshot) newStrata(candidates []uint32, ci int) strata {
	byDC := make([][]uint32, len(s.topo.Datacenters))
	for _, b := range candidates {
		p := s.Plan(b)
		if len(p) == 0 || ci >= 0 && (int(s.dcContinent[p[0]]) != ci || s.phase != nil && s.phase[b] != 0) {
			continue
		}
		byDC[p[0]] = append(byDC[p[0]], b)
	}
	var st strata
	total := 0.0
	for dc, bs := range byDC {
		if len(bs) > 0 {
			total += s.topo.Datacenters[dc].Capacity
		}
	}
	sum := 0.0
	for dc, bs := range byDC {
		if len(bs) == 0 {
			continue
		}
		sum += s.topo.Datacenters[dc].Capacity
		st.cumulative = append(st.cumulative, sum/total)
		st.buckets = append(st.buckets, bs)
	}
	return st
}

// HotSibling returns sibling i (0 <= i < k) of a hot key with hash h whose
// own bucket is own: a bucket served first on the continent own's reads
// go to, its home or, while it moves, the new one (or anywhere, with
// crossContinent). The k siblings are stratified by capacity: sibling i
// falls in the datacenter whose share of the continent's capacity covers
// the point (i + u) / k, u a fraction drawn from h. So a key spread over k
// buckets loads each datacenter in proportion to its capacity to within
// 1/k of the key's traffic, where k buckets drawn at random would not;
// and every node, from the same map, draws the same siblings.
func (s *Snapshot) HotSibling(own uint32, h uint64, i, k int, crossContinent bool) uint32 {
	st := &s.strata[len(s.strata)-1]
	if !crossContinent {
		ci := int(s.home[own])
		if p := s.Plan(own); len(p) > 0 {
			ci = int(s.dcContinent[p[0]]) // (a move's new home: its writes go there at cutover)
		}
		st = &s.strata[ci]
	}
	if k <= 1 || len(st.buckets) == 0 {
		return own
	}
	u := float64(hashing.Mix64(h)>>11) / (1 << 53)
	point := (float64(i) + u) / float64(k)
	g := 0
	for g < len(st.cumulative)-1 && point >= st.cumulative[g] {
		g++
	}
	bs := st.buckets[g]
	return bs[hashing.Mix64(h^uint64(i+1)*0x9e3779b97f4a7c15)%uint64(len(bs))]
}
