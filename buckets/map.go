package buckets

import (
	"sync"
	"sync/atomic"
	"time"
)

// Map publishes the current placement Snapshot. Readers call Load on every
// request (one atomic load, no lock); writers serialise among themselves and
// publish a complete new snapshot with a higher version.
type Map struct {
	cur  atomic.Pointer[Snapshot]
	mu   sync.Mutex   // serialises writers only
	ramp atomic.Int64 // the drain ramp (ns) a change's weight carries by; see SetDrainRamp
}

// SetDrainRamp is how long drains and undrains ramp (routing.drain_ramp):
// a change published later starts from where the ramp before had got to.
func (m *Map) SetDrainRamp(d time.Duration) { m.ramp.Store(int64(d)) }

// NewMap returns a Map publishing s.
func NewMap(s *Snapshot) *Map {
	m := &Map{}
	m.cur.Store(s)
	return m
}

// Load returns the current snapshot.
func (m *Map) Load() *Snapshot { return m.cur.Load() }

// Update applies change to a copy of the current overrides and publishes the
// result as the next version, made by this node. If change or the rebuild
// fails, nothing is published.
func (m *Map) Update(change func(*Overrides) error) (*Snapshot, error) {
	return m.UpdateFrom("", change)
}

// UpdateFrom is Update for a change made on the node named origin: the
// name settles conflicts with changes other nodes made concurrently.
func (m *Map) UpdateFrom(origin string, change func(*Overrides) error) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cur.Load()
	o := old.overrides.Clone()
	if o.Homes == nil {
		o.Homes = map[uint32]string{}
	}
	if o.Pins == nil {
		o.Pins = map[uint32]string{}
	}
	if o.Drained == nil {
		o.Drained = map[string]bool{}
	}
	if o.Moves == nil {
		o.Moves = map[uint32]Move{}
	}
	if err := change(&o); err != nil {
		return nil, err
	}
	return m.publish(old, old.version+1, origin, old.n, old.topo, o)
}

// Adopt publishes overrides made elsewhere in the fleet as version, if
// (version, origin) is newer than the current map; it reports whether it
// did. Overrides that do not fit this node's topology are an error and
// change nothing.
func (m *Map) Adopt(version uint64, origin string, o Overrides) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cur.Load()
	if !old.newer(version, origin) {
		return false, nil
	}
	if _, err := m.publish(old, version, origin, old.n, old.topo, o); err != nil {
		return false, err
	}
	return true, nil
}

// publish builds and stores the next snapshot. Called with m.mu held.
func (m *Map) publish(old *Snapshot, version uint64, origin string, n uint32, topo Topology, o Overrides) (*Snapshot, error) {
	s, err := BuildFrom(version, origin, n, topo, o)
	if err != nil {
		return nil, err
	}
	s.CarryChanges(old, time.Now(), time.Duration(m.ramp.Load()))
	m.cur.Store(s)
	return s, nil
}

// Replace publishes a placement built from a new topology and overrides
// (a reloaded config) as the next version.
func (m *Map) Replace(n uint32, topo Topology, o Overrides) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cur.Load()
	return m.publish(old, old.version+1, "", n, topo, o)
}
