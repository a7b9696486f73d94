package proxy

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/health"
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
}

// DC is the chosen datacenter's index, or -1.
func (d *Decision) DC() int {
	if d.Next < 0 {
		return -1
	}
	return int(d.Plan[d.Next])
}

// Route fills d for a request with routing key key (nil: no key).
func (r *Router) Route(key []byte, d *Decision) {
	snap := r.placement.Load()
	d.Snapshot = snap
	if key == nil {
		d.Bucket, d.Source = 0, SourceNone
		d.Plan = snap.LocalPlan(r.localDC)
	} else {
		var fromTable bool
		d.Bucket, fromTable = r.assigner.Bucket(hashing.HashKey(key))
		d.Source = SourceHash
		if fromTable {
			d.Source = SourceTable
		}
		d.Plan = snap.Plan(d.Bucket)
	}
	d.Next = r.nextUsable(d, 0)
}

// nextUsable returns the first position at or after from in d.Plan whose
// datacenter is not drained, is usable by the health Status, and has an
// upstream whose breaker is ready; -1 if there is none.
func (r *Router) nextUsable(d *Decision, from int) int {
	for i := from; i < len(d.Plan); i++ {
		if r.state(d.Snapshot, int(d.Plan[i])) == dcUsable {
			return i
		}
	}
	return -1
}

// dcState is why a datacenter can or cannot take a request.
type dcState uint8

const (
	dcUsable dcState = iota
	dcDrained
	dcDown
	dcNoUpstream
)

func (s dcState) String() string {
	return [...]string{"usable", "drained", "down", "no ready upstream (breakers open)"}[s]
}

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
