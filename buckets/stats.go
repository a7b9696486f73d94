package buckets

import (
	"context"
	"sync/atomic"
	"time"
)

// Access counts, per bucket and per origin continent, the requests one
// proxy node received, decayed over time: every Decay halves every count,
// so a count is about twice the requests of one tick at a steady rate, and
// a shift in where a bucket's users are shows within a few ticks.
//
// The origin of a request is the continent of the proxy node that received
// it (clients reach the nearest edge), so one node's counts fill one
// continent's column; the fleet's sum (health.Cluster merges the nodes'
// reports) fills them all.
//
// Record is for the request path: one bounds check and one atomic add, no
// lock, no allocation. Counts saturate instead of wrapping.
type Access struct {
	n, conts int
	counts   []atomic.Uint32 // bucket*conts + continent
}

// NewAccess returns counters for n buckets and conts continents.
func NewAccess(n uint32, conts int) *Access {
	return &Access{n: int(n), conts: conts, counts: make([]atomic.Uint32, int(n)*conts)}
}

// Buckets and Continents are the shape the counters were made for.
func (a *Access) Buckets() uint32 { return uint32(a.n) }

// Continents is the number of origin continents counted.
func (a *Access) Continents() int { return a.conts }

// Record counts one request for bucket b received on continent origin.
// Out-of-range arguments (a map or topology that changed shape before the
// counters were replaced) are ignored.
func (a *Access) Record(b uint32, origin int) {
	if a == nil || int(b) >= a.n || uint(origin) >= uint(a.conts) {
		return
	}
	c := &a.counts[int(b)*a.conts+origin]
	if c.Add(1) == 0 { // wrapped: saturate
		c.Store(^uint32(0))
	}
}

// Count is bucket b's decayed count from continent origin.
func (a *Access) Count(b uint32, origin int) uint32 {
	return a.counts[int(b)*a.conts+origin].Load()
}

// Decay halves every count. Requests recorded concurrently are not lost:
// each count is lowered by half of what it read, atomically.
func (a *Access) Decay() {
	for i := range a.counts {
		c := &a.counts[i]
		if v := c.Load(); v != 0 {
			c.Add(-(v - v/2)) // v/2 rounded up is taken away; v/2 stays
		}
	}
}

// Run decays the counts every tick until ctx ends.
func (a *Access) Run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.Decay()
		}
	}
}

// Counts is a plain copy of the counters: the shape of a report or of the
// fleet's merged view.
type Counts struct {
	Continents int
	// ByBucket holds, for every bucket with a non-zero count, its count
	// per origin continent (length Continents).
	ByBucket map[uint32][]uint32
}

// Snapshot copies the non-zero counts.
func (a *Access) Snapshot() Counts {
	out := Counts{Continents: a.conts, ByBucket: map[uint32][]uint32{}}
	for b := 0; b < a.n; b++ {
		row := a.counts[b*a.conts : (b+1)*a.conts]
		var v []uint32
		for c := range row {
			if x := row[c].Load(); x != 0 {
				if v == nil {
					v = make([]uint32, a.conts)
				}
				v[c] = x
			}
		}
		if v != nil {
			out.ByBucket[uint32(b)] = v
		}
	}
	return out
}

// Add sums o into c (saturating); rows of another width are cut or padded.
func (c *Counts) Add(o Counts) {
	if c.ByBucket == nil {
		c.ByBucket = map[uint32][]uint32{}
	}
	for b, row := range o.ByBucket {
		dst := c.ByBucket[b]
		if dst == nil {
			dst = make([]uint32, c.Continents)
			c.ByBucket[b] = dst
		}
		for i := 0; i < len(row) && i < len(dst); i++ {
			s := uint64(dst[i]) + uint64(row[i])
			dst[i] = uint32(min(s, uint64(^uint32(0))))
		}
	}
}

// Total is bucket b's count over every origin.
func (c *Counts) Total(b uint32) uint64 {
	var t uint64
	for _, x := range c.ByBucket[b] {
		t += uint64(x)
	}
	return t
}
