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
	cur atomic.Pointer[Snapshot]
	mu  sync.Mutex // serialises writers only
}

// NewMap returns a Map publishing s.
func NewMap(s *Snapshot) *Map {
	m := &Map{}
	m.cur.Store(s)
	return m
}

// Load returns the current snapshot.
func (m *Map) Load() *Snapshot { return m.cur.Load() }

// Update applies change to a copy of the current overrides and publishes the
// result as the next version. If change or the rebuild fails, nothing is
// published.
func (m *Map) Update(change func(*Overrides) error) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cur.Load()
	o := old.overrides.Clone()
	if err := change(&o); err != nil {
		return nil, err
	}
	s, err := Build(old.version+1, old.n, old.topo, o)
	if err != nil {
		return nil, err
	}
	s.CarryChanges(old, time.Now())
	m.cur.Store(s)
	return s, nil
}

// Replace publishes a placement built from a new topology and overrides
// (a reloaded config) as the next version.
func (m *Map) Replace(n uint32, topo Topology, o Overrides) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.cur.Load()
	s, err := Build(old.version+1, n, topo, o)
	if err != nil {
		return nil, err
	}
	s.CarryChanges(old, time.Now())
	m.cur.Store(s)
	return s, nil
}
