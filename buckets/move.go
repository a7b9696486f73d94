package buckets

import (
	"errors"
	"fmt"
	"maps"
	"time"
)

// MovePhase is where a bucket's move to a new home continent stands. Each
// phase is published as a map version of its own (one Map.Update each), so
// every node routes a moving bucket by the phase of the version it holds.
//
//	phase     reads                            writes
//	copying   new home, falling back to old    old home only
//	fenced    new home, falling back to old    refused (no plan)
//	cutover   new home, falling back to old    new home only
//	(done)    home = new, no move entry        new home (its usual plan)
//
// The web tier copies the bucket's data from the old home to the new one
// behind the proxy while the move is copying.
//
// # Never two write homes
//
// A map version names at most one write continent for every bucket: the old
// home in copying, none in fenced, the new home in cutover and after (a
// moving bucket's write plan holds only that continent's datacenters: it
// never fails over to another continent, so in particular never to the
// move's other end). Nodes holding different versions could disagree only
// if one held copying while another held cutover; fenced sits between the
// two, and the move leaves fenced for cutover only once every live node
// reports (through gossip's MapVersion) the version that holds the fence
// (proxy.Server.AdvanceMove checks it). From then on each node holds
// fenced or a later version, so writes go to the new home or nowhere; a
// node that missed versions still routes by its older one, which names one
// write home. Versions only grow on a node (Map.Adopt takes newer ones
// only), so a node never returns to copying after seeing the fence.
// Writes routed under copying may still be in flight when the last node
// adopts the fence: the fence must also stand longer than the upstream
// timeout (placement.fence_settle) before the cutover.
//
// Only one node steps moves (proxy's driver), so a move's abort cannot
// race its cutover made elsewhere and win the tie.
//
// What the proxy alone cannot rule out: a node partitioned from gossip
// long enough to be declared dead drops out of the barrier yet may still
// route by copying, and on each side of a partition a node may take
// itself for the driver; a node restarted from its configuration routes
// by the configured homes until it adopts the fleet's map; and two nodes
// making different changes with the same version number in the same
// instant (the greater origin wins everywhere; the loser logs a warning).
// The web tier should fence on its side too (reject writes for a bucket
// it no longer homes).
type MovePhase string

const (
	// MoveCopying: writes still go to the old home; reads try the new.
	MoveCopying MovePhase = "copying"
	// MoveFenced: writes are refused until every node holds this phase.
	MoveFenced MovePhase = "fenced"
	// MoveCutover: writes go to the new home; reads still fall back.
	MoveCutover MovePhase = "cutover"
	// MoveDone is what Advance returns when the move is over: the new
	// continent is the bucket's home and the move entry is gone.
	MoveDone MovePhase = "done"
)

// phaseCode is a phase as the snapshot stores it per bucket (0: no move).
func (p MovePhase) code() uint8 {
	switch p {
	case MoveCopying:
		return 1
	case MoveFenced:
		return 2
	case MoveCutover:
		return 3
	}
	return 0
}

// Move is one bucket's move in the overrides: its new home continent and
// phase. The old home is the bucket's home (Overrides.Homes or derived),
// which stays as it was until the move is done.
type Move struct {
	To    string    `json:"to"`
	Phase MovePhase `json:"phase"`
	// Started is when the move began, by the clock of the node that
	// started it; zero from a release that did not record it.
	Started time.Time `json:"started,omitzero"`
}

// Errors of the move protocol.
var (
	ErrMoving    = errors.New("buckets: the bucket is already moving")
	ErrNotMoving = errors.New("buckets: the bucket is not moving")
	ErrSameHome  = errors.New("buckets: the bucket is already homed there")
	ErrPastFence = errors.New("buckets: writes already went to the new home; a move past the fence cannot be aborted, only finished")
)

// StartMove adds a move of bucket b of snap to continent to, in phase
// copying, begun at at, to overrides o (built on snap: pass it to
// Map.Update).
func StartMove(o *Overrides, snap *Snapshot, b uint32, to string, at time.Time) error {
	if b >= snap.n {
		return fmt.Errorf("buckets: move: no bucket %d", b)
	}
	ci, ok := snap.topo.ContinentIndex(to)
	if !ok {
		return fmt.Errorf("buckets: move of bucket %d: %q is not a known continent", b, to)
	}
	if _, moving := o.Moves[b]; moving {
		return ErrMoving
	}
	if int(snap.home[b]) == ci {
		return ErrSameHome
	}
	if o.Moves == nil {
		o.Moves = map[uint32]Move{}
	}
	o.Moves[b] = Move{To: to, Phase: MoveCopying, Started: at}
	return nil
}

// AdvanceMove moves bucket b's move in o to its next phase and returns it:
// copying -> fenced -> cutover -> done. Done sets the bucket's home to the
// new continent and removes the move.
func AdvanceMove(o *Overrides, b uint32) (MovePhase, error) {
	m, ok := o.Moves[b]
	if !ok {
		return "", ErrNotMoving
	}
	switch m.Phase {
	case MoveCopying:
		m.Phase = MoveFenced
	case MoveFenced:
		m.Phase = MoveCutover
	case MoveCutover:
		if o.Homes == nil {
			o.Homes = map[uint32]string{}
		}
		o.Homes[b] = m.To
		o.endMove(b, m)
		return MoveDone, nil
	default:
		return "", fmt.Errorf("buckets: move of bucket %d: unknown phase %q", b, m.Phase)
	}
	o.Moves[b] = m
	return m.Phase, nil
}

// AbortMove removes bucket b's move from o while no write has gone to the
// new home (copying or fenced); the bucket stays where it was.
func AbortMove(o *Overrides, b uint32) error {
	m, ok := o.Moves[b]
	switch {
	case !ok:
		return ErrNotMoving
	case m.Phase != MoveCopying && m.Phase != MoveFenced:
		return ErrPastFence
	}
	o.endMove(b, m)
	return nil
}

// endMove removes bucket b's move m from o and notes when it began in
// o.RecentMoves.
func (o *Overrides) endMove(b uint32, m Move) {
	delete(o.Moves, b)
	if m.Started.IsZero() {
		return
	}
	if o.RecentMoves == nil {
		o.RecentMoves = map[uint32]time.Time{}
	}
	o.RecentMoves[b] = m.Started
}

// ForgetMovesBefore drops from o.RecentMoves the moves that began before
// t: past every cooldown, they only make the map longer.
func ForgetMovesBefore(o *Overrides, t time.Time) {
	maps.DeleteFunc(o.RecentMoves, func(_ uint32, at time.Time) bool { return at.Before(t) })
}

// RecentMoves lists the buckets whose last move ended in s, by when it
// began (a copy; see Overrides.RecentMoves).
func (s *Snapshot) RecentMoves() map[uint32]time.Time { return maps.Clone(s.overrides.RecentMoves) }

// Moving returns bucket b's move in s, if it is moving.
func (s *Snapshot) Moving(b uint32) (Move, bool) {
	m, ok := s.overrides.Moves[b]
	return m, ok
}

// Moves lists every move in s (a copy).
func (s *Snapshot) Moves() map[uint32]Move {
	out := make(map[uint32]Move, len(s.overrides.Moves))
	for b, m := range s.overrides.Moves {
		out[b] = m
	}
	return out
}

// WriteHome is the continent (index) that takes bucket b's writes in this
// version: the home, or during a move the end its phase names; -1 while
// the move is fenced. It is a pure function of the version.
func (s *Snapshot) WriteHome(b uint32) int {
	if s.phase == nil || s.phase[b] == 0 {
		return int(s.home[b])
	}
	switch s.phase[b] {
	case 1:
		return int(s.home[b])
	case 3:
		return int(s.moveTo[b])
	}
	return -1
}

// WritePlan is the plan for requests that change bucket b: Plan(b), except
// while b moves, when it holds only the write home's datacenters (a pin
// first if it is there), or nothing while the move is fenced. The slice
// is shared: read only.
func (s *Snapshot) WritePlan(b uint32) []uint8 {
	if s.phase == nil || s.phase[b] == 0 {
		return s.Plan(b)
	}
	off := int(b) * s.stride
	return s.wplans[off : off+int(s.wplanLen[b]) : off+int(s.wplanLen[b])]
}

// buildMoves fills the per-bucket move state and plans of s from o. A
// moving bucket's read plan (s.plans) becomes its pin, then the new home's
// datacenters, then the old home's; its write plan the write home's only.
func (s *Snapshot) buildMoves(o Overrides, pins []int, perContinent [][]candidate, scores []float64) error {
	if len(o.Moves) == 0 {
		return nil
	}
	s.phase = make([]uint8, s.n)
	s.moveTo = make([]uint8, s.n)
	s.wplans = make([]uint8, len(s.plans))
	s.wplanLen = make([]uint8, s.n)
	for b, m := range o.Moves {
		ci, ok := s.topo.ContinentIndex(m.To)
		code := m.Phase.code()
		switch {
		case b >= s.n || !ok:
			return fmt.Errorf("buckets: move of bucket %d: %q is not a known continent (or bucket out of range)", b, m.To)
		case code == 0:
			return fmt.Errorf("buckets: move of bucket %d: unknown phase %q", b, m.Phase)
		case ci == int(s.home[b]):
			return fmt.Errorf("buckets: move of bucket %d: %q is already its home", b, m.To)
		case pins[b] >= 0 && s.topo.Datacenters[pins[b]].Continent != m.To:
			// A pin goes first in the read plan, and once the move is done
			// in the write plan too: one left on the old continent would
			// send the bucket's writes back there, past the fence.
			return fmt.Errorf("buckets: move of bucket %d to %s: it is pinned to %s, on another continent; unpin it first (or pin it in %s)",
				b, m.To, s.topo.Datacenters[pins[b]].Name, m.To)
		}
		s.phase[b], s.moveTo[b] = code, uint8(ci)
		old := int(s.home[b])
		continentOf := func(dc int) int { c, _ := s.topo.ContinentIndex(s.topo.Datacenters[dc].Continent); return c }
		off := int(b) * s.stride
		plan := s.plans[off : off : int(b+1)*s.stride]
		if pins[b] >= 0 {
			plan = append(plan, uint8(pins[b]))
		}
		for _, c := range []int{ci, old} {
			rank(perContinent[c], b, scores)
			for _, cand := range perContinent[c] {
				if cand.index != pins[b] {
					plan = append(plan, uint8(cand.index))
				}
			}
		}
		s.planLen[b] = uint8(len(plan))
		wh := s.WriteHome(b)
		wplan := s.wplans[off : off : int(b+1)*s.stride]
		if wh >= 0 {
			for _, dc := range plan {
				if continentOf(int(dc)) == wh {
					wplan = append(wplan, dc)
				}
			}
		}
		s.wplanLen[b] = uint8(len(wplan))
	}
	return nil
}
