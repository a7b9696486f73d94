package health

import "sync/atomic"

// Status says whether a datacenter (by its topology index) may take traffic
// now. Implementations must be safe for concurrent use, must not block and
// must not allocate: Usable runs on the request path.
type Status interface {
	Usable(dc int) bool
}

// DownStatus is a Status that can also tell a datacenter that is down from
// one that is only full (Usable answers false for some of the requests
// offered past its headroom): writes cross to another continent only for
// the first.
type DownStatus interface {
	Status
	Down(dc int) bool
}

// Static is a Status that holds an explicit set of down datacenters; the zero
// value has every datacenter up. It is what a single proxy node uses before
// it has a fleet-wide view, and what tests use to take a datacenter down.
type Static struct {
	down atomic.Uint64 // bit dc set: datacenter dc is down
}

var _ Status = (*Static)(nil)

// Usable reports whether dc is not marked down.
func (s *Static) Usable(dc int) bool { return s.down.Load()&(1<<dc) == 0 }

// Down reports whether dc is marked down.
func (s *Static) Down(dc int) bool { return !s.Usable(dc) }

// SetDown marks dc down (true) or up (false).
func (s *Static) SetDown(dc int, down bool) {
	for {
		old := s.down.Load()
		next := old &^ (1 << dc)
		if down {
			next = old | 1<<dc
		}
		if s.down.CompareAndSwap(old, next) {
			return
		}
	}
}
