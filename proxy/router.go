package proxy

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/health"
	"github.com/valyala/fasthttp"
)

// Source says how a request's bucket was found.
type Source uint8

const (
	// SourceNone: the request had no routing key; it follows the local plan.
	SourceNone Source = iota
	// SourceTable: the key is in the social-hash assignment table.
	SourceTable
	// SourceHash: the key is unknown to the table; xxhash(key) mod N.
	SourceHash
)

func (s Source) String() string {
	switch s {
	case SourceTable:
		return "social-hash table"
	case SourceHash:
		return "xxhash fallback"
	}
	return "no key"
}

// Router is the routing core: key -> bucket -> plan -> datacenter. It holds
// no per-request state and is safe for concurrent use; Route neither locks
// nor allocates.
type Router struct {
	assigner  *hashing.Assigner
	placement *buckets.Map
	status    health.Status
	pools     []*pool // by datacenter index; nil in a Router used only to explain
	localDC   int
	// drainRamp is how long a drain or undrain takes to move all of a
	// datacenter's traffic; settled is the map version whose ramps are
	// known to be over, so the request path reads no clock in steady state.
	drainRamp time.Duration
	settled   atomic.Uint64

	// Hot keys: the static list (reloaded with the config), this node's
	// detector (kept across reloads) and the fleet's detections (gossip).
	hot            *hashing.HotList
	detect         *hashing.HeavyHitters
	fleet          FleetHot
	crossContinent bool

	// access counts keyed requests per bucket and origin continent (this
	// node's continent, origin) for the placement advisor; kept across
	// reloads by the Server's placer. nil: not counted.
	access *buckets.Access
	origin int
}

// FleetHot says how far the rest of the fleet spreads a key it detected
// hot, so every node spreads the same keys alike. health.Cluster is one.
// It runs on the request path: it must not block or allocate.
type FleetHot interface {
	HotSpread(h uint64) int
}

// Decision is the outcome of routing one request. The Plan slice is shared
// with the placement snapshot: read only.
type Decision struct {
	Bucket   uint32
	Source   Source
	Snapshot *buckets.Snapshot
	Plan     []uint8
	// Next is the position in Plan of the chosen datacenter, -1 if none is
	// usable.
	Next int
	// Spread is how many sibling buckets the key fans out over (1: not a
	// hot key); Sibling is the one this request took (0: the key's own).
	Spread, Sibling int
	// Write: the request may change the bucket's data, so it follows the
	// bucket's write plan (Snapshot.WritePlan), which differs from its
	// plan only while the bucket moves.
	Write bool
}

// DC is the chosen datacenter's index, or -1.
func (d *Decision) DC() int {
	if d.Next < 0 {
		return -1
	}
	return int(d.Plan[d.Next])
}

// Route fills d for a request with routing key key (nil: no key) and no
// known viewer. Not knowing the method, it routes as for a write: a
// moving bucket's single write home, and no hot-key spreading.
func (r *Router) Route(key []byte, d *Decision) { r.route(key, hashKey(key), nil, d, true, true) }

// RouteMethod fills d for a request with routing key key, made by viewer
// (nil: unknown), known to be a write (write) or a read. A hot key's reads
// spread over its siblings, sticking to one per viewer; its writes stay on
// its own bucket. A moving bucket's reads go to its new home first and
// fall back to the old one, its writes to the one home its move's phase
// names.
func (r *Router) RouteMethod(key, viewer []byte, write bool, d *Decision) {
	r.route(key, hashKey(key), viewer, d, true, write)
}

// hashKey is hashing.HashKey, or 0 for no key.
func hashKey(key []byte) uint64 {
	if key == nil {
		return 0
	}
	return hashing.HashKey(key)
}

// prefetchGroup and prefetchSlot start loading the table memory routing a
// key of hash h will read: the first as soon as the key is known, the
// second some work later (hashing.Table.PrefetchGroup).
func (r *Router) prefetchGroup(h uint64) { r.assigner.Table().PrefetchGroup(h) }
func (r *Router) prefetchSlot(h uint64)  { r.assigner.Table().PrefetchSlot(h) }

// isWrite reports whether a request may change data: any method but GET,
// HEAD, OPTIONS and TRACE.
func isWrite(h *fasthttp.RequestHeader) bool {
	return !(h.IsGet() || h.IsHead() || h.IsOptions() || h.IsTrace())
}

// route is Route for a key of hash h; observe counts the request toward
// hot-key detection and the bucket's access statistics.
func (r *Router) route(key []byte, h uint64, viewer []byte, d *Decision, observe, write bool) {
	r.plan(key, h, viewer, d, observe, write)
	d.Next = r.nextUsable(d, 0)
}

// plan is route without choosing: d gets its bucket and plan, and Next is
// left alone. Choosing asks the health Status, which counts the request as
// load offered to the datacenter it takes, and rolls a drain ramp's dice;
// explanations must do neither.
func (r *Router) plan(key []byte, h uint64, viewer []byte, d *Decision, observe, write bool) {
	snap := r.placement.Load()
	d.Snapshot = snap
	d.Spread, d.Sibling, d.Write = 1, 0, write
	if key == nil {
		d.Bucket, d.Source = 0, SourceNone
		d.Plan = snap.LocalPlan(r.localDC, rand.Uint32()) // its failover spreads by capacity
	} else {
		var fromTable bool
		d.Bucket, fromTable = r.assigner.Bucket(h)
		d.Source = SourceHash
		if fromTable {
			d.Source = SourceTable
		}
		// Only reads spread. A write goes to the key's own bucket: its
		// home owns the key's data, and while the bucket moves its write
		// plan is what keeps the fence (a sibling's plan knows nothing of
		// the move). Writes still count toward detection.
		// A spread read is not counted for placement: it is a fan's, and
		// says nothing of where the bucket's own users are (counted
		// against the sibling that serves it, it would move buckets whose
		// users never asked).
		if k := r.spread(h, key, observe); k > 1 && !write {
			r.pickSibling(snap, h, viewer, k, d)
		} else if observe {
			r.access.Record(d.Bucket, r.origin)
		}
		if write {
			d.Plan = snap.WritePlan(d.Bucket)
		} else {
			d.Plan = snap.Plan(d.Bucket)
		}
	}
}

// spread is how many buckets the key with hash h fans out over: the most
// any of the static list, this node's detector and the fleet says.
func (r *Router) spread(h uint64, key []byte, observe bool) int {
	k := r.hot.Spread(h)
	if observe {
		k = max(k, r.detect.Observe(h, key))
	} else {
		k = max(k, r.detect.Spread(h))
	}
	if r.fleet != nil {
		k = max(k, r.fleet.HotSpread(h))
	}
	return k
}

// pickSibling moves d to the sibling bucket this request takes: the
// viewer's, or a random one for an anonymous request. Siblings are buckets
// homed on the key's own bucket's continent unless crossContinent, drawn in
// proportion to datacenter capacity (buckets.Snapshot.HotSibling).
func (r *Router) pickSibling(snap *buckets.Snapshot, h uint64, viewer []byte, k int, d *Decision) {
	var vh uint64
	if len(viewer) > 0 {
		vh = hashing.HashKey(viewer)
	}
	i := hashing.PickSibling(k, vh, len(viewer) > 0, rand.Uint64())
	d.Bucket = snap.HotSibling(d.Bucket, h, i, k, r.crossContinent)
	d.Spread, d.Sibling = k, i
}

// nextUsable returns the first position at or after from in d.Plan whose
// datacenter is not drained, is usable by the health Status, and has an
// upstream whose breaker is ready; -1 if there is none.
//
// A keyed write goes to another continent than its bucket's write home (a
// failover_to continent; a pin elsewhere is the operator's choice and is
// taken) only when every home datacenter of the plan is out for sure:
// down, drained, or without a ready upstream. When they are only full
// (the headroom's dice) or ramping out, the write is refused (503) rather
// than sent where the user's data is not. It is judged before the
// datacenter's state, which counts the request as load offered to it.
func (r *Router) nextUsable(d *Decision, from int) int {
	var judged, mayCross bool // homeOut, asked once at most
	for i := from; i < len(d.Plan); i++ {
		dc := int(d.Plan[i])
		if writeLeavesHome(d, dc) {
			if !judged {
				judged, mayCross = true, r.homeOut(d)
			}
			if !mayCross {
				continue
			}
		}
		if r.state(d.Snapshot, dc) == dcUsable {
			return i
		}
	}
	return -1
}

// writeLeavesHome reports whether sending d, a keyed write, to datacenter
// dc takes it off its bucket's write home continent, and not to its pin.
func writeLeavesHome(d *Decision, dc int) bool {
	snap := d.Snapshot
	if !d.Write || d.Source == SourceNone || snap.ContinentOf(dc) == snap.WriteHome(d.Bucket) {
		return false
	}
	pin, pinned := snap.Pinned(d.Bucket)
	return !pinned || pin != dc
}

// homeOut reports whether every datacenter of d's plan on its bucket's
// write home (its home, or the end of its move that takes writes) is out
// for sure: down (not merely full), drained, or without a ready upstream.
func (r *Router) homeOut(d *Decision) bool {
	snap := d.Snapshot
	home := snap.WriteHome(d.Bucket)
	down, _ := r.status.(health.DownStatus)
	for _, p := range d.Plan {
		dc := int(p)
		if snap.ContinentOf(dc) != home {
			continue
		}
		switch {
		case snap.Drained(dc), r.pools != nil && !r.pools[dc].ready():
		case down != nil && down.Down(dc):
		default:
			return false
		}
	}
	return true
}

// dcState is why a datacenter can or cannot take a request.
type dcState uint8

const (
	dcUsable dcState = iota
	dcDrained
	dcDown
	dcNoUpstream
)

func (r *Router) state(snap *buckets.Snapshot, dc int) dcState {
	switch {
	case !r.drainAdmits(snap, dc):
		return dcDrained
	case !r.status.Usable(dc):
		return dcDown
	case r.pools != nil && !r.pools[dc].ready():
		return dcNoUpstream
	}
	return dcUsable
}

// drainAdmits reports whether this request may go to dc as far as drains
// go: not for a drained datacenter, yes for another, and, while a drain or
// undrain ramps, yes with the probability of the datacenter's weight, so
// its traffic moves gradually.
func (r *Router) drainAdmits(snap *buckets.Snapshot, dc int) bool {
	if r.settled.Load() != snap.Version() {
		now := time.Now().UnixNano()
		if !snap.RampsOver(now, r.drainRamp) {
			w := snap.Weight(dc, now, r.drainRamp)
			return w >= 1 || (w > 0 && rand.Float64() < w)
		}
		r.settled.Store(snap.Version())
	}
	return !snap.Drained(dc)
}
