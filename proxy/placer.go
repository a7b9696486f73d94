package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/health"
)

// PlacementFleet is what the placer needs of the fleet: to exchange
// per-bucket access reports and to see every node's map version (for a
// move's fence). health.Cluster is one.
type PlacementFleet interface {
	ShareAccess(health.AccessReport)
	FleetAccess(maxAge time.Duration) (health.AccessReport, int)
	Members() []health.Member
}

var _ PlacementFleet = (*health.Cluster)(nil)

// placer keeps this node's per-bucket access counters (across reloads),
// decays and shares them every placement.stats_tick, runs the advisor every
// placement.advise_every over the fleet's merged counts, and, with
// placement.auto_apply, starts the recommended moves and walks moves
// through their phases.
type placer struct {
	s      *Server
	fleet  PlacementFleet // nil: this node alone
	access atomic.Pointer[buckets.Access]
	now    func() time.Time

	mu        sync.Mutex
	advisor   *buckets.Advisor
	opts      configs.Placement
	recs      []buckets.Recommendation
	evaluated time.Time
	reports   int                    // access reports in the last evaluation
	phaseAt   map[uint32]phaseSeen   // when this node first saw each move's phase
	fleetAt   map[uint32]versionSeen // when this node first saw every node hold a fence
}

type versionSeen struct {
	version uint64
	at      time.Time
}

type phaseSeen struct {
	phase buckets.MovePhase
	at    time.Time
}

func newPlacer(s *Server, fleet PlacementFleet) *placer {
	return &placer{s: s, fleet: fleet, now: time.Now, phaseAt: map[uint32]phaseSeen{}, fleetAt: map[uint32]versionSeen{}}
}

// counters returns the access counters for cfg's shape: the ones in use if
// they fit (what they learned is kept over a reload), else new ones.
func (p *placer) counters(cfg *configs.Config) *buckets.Access {
	a := p.access.Load()
	if a == nil || a.Buckets() != uint32(cfg.Buckets) || a.Continents() != len(cfg.Continents) {
		a = buckets.NewAccess(uint32(cfg.Buckets), len(cfg.Continents))
		p.access.Store(a)
	}
	p.mu.Lock()
	switch {
	case p.advisor == nil:
		p.advisor = buckets.NewAdvisor(advisorOptions(cfg.Placement))
	case p.opts != cfg.Placement:
		// Not a new advisor: a reload must not reset the hourly limit or
		// the cooldowns of the moves already started.
		p.advisor.SetOptions(advisorOptions(cfg.Placement))
	}
	p.opts = cfg.Placement
	p.mu.Unlock()
	return a
}

func advisorOptions(c configs.Placement) buckets.AdvisorOptions {
	return buckets.AdvisorOptions{
		Majority: c.Majority, Release: c.Release, Window: c.Window, MinRequests: uint64(c.MinRequests),
		MovesPerHour: c.MovesPerHour, Cooldown: c.Cooldown,
	}
}

// run decays and shares the counters and runs the advisor until ctx ends.
func (p *placer) run(ctx context.Context) {
	p.mu.Lock()
	tick, every := p.opts.StatsTick, p.opts.AdviseEvery
	p.mu.Unlock()
	stats := time.NewTicker(tick)
	defer stats.Stop()
	advise := time.NewTicker(every)
	defer advise.Stop()
	// Moves under way advance on their own, quicker tick: a fenced move
	// refuses its bucket's writes, and waiting for the advisor's next run
	// (a minute by default) to leave the fence, then another to see the
	// fleet hold it, refused them for two.
	moves := time.NewTicker(min(every, moveTick))
	defer moves.Stop()
	for {
		var recs []buckets.Recommendation
		select {
		case <-ctx.Done():
			return
		case <-stats.C:
			p.tickStats()
			continue
		case <-advise.C:
			recs = p.evaluate()
		case <-moves.C:
		}
		if err := p.step(recs); err != nil {
			p.s.log.Warn("placement: automatic move step failed", "error", err)
		}
	}
}

// moveTick is how often the placer looks at the moves under way.
const moveTick = time.Second

// tickStats shares the counters with the fleet, then halves them.
func (p *placer) tickStats() {
	a := p.access.Load()
	if p.fleet != nil {
		p.fleet.ShareAccess(health.AccessReport(a.Snapshot()))
	}
	a.Decay()
}

// traffic is the fleet's merged counts (this node's alone without a
// fleet), and how many nodes' reports went into them.
func (p *placer) traffic() (buckets.Counts, int) {
	if p.fleet == nil {
		return p.access.Load().Snapshot(), 1
	}
	p.mu.Lock()
	maxAge := 3 * p.opts.StatsTick
	p.mu.Unlock()
	r, n := p.fleet.FleetAccess(maxAge)
	return buckets.Counts(r), n
}

// evaluate runs the advisor once and keeps its recommendations.
func (p *placer) evaluate() []buckets.Recommendation {
	counts, reports := p.traffic()
	snap := p.s.Placement().Load()
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recs = p.advisor.Advise(buckets.AdvisorInput{
		Now: now, Snapshot: snap, Traffic: counts, Capacity: buckets.BucketCapacity(snap, p.opts.Headroom),
	})
	p.evaluated, p.reports = now, reports
	return slices.Clone(p.recs)
}

// errFenceNotHeld refuses a cutover some node may not know is fenced.
var errFenceNotHeld = errors.New("proxy: not every node holds the fenced map version yet")

// errMoveChanged refuses an advance from a phase the move has left.
var errMoveChanged = errors.New("proxy: the move changed phase while advancing; look again")

// testHookMoveChecked, if set, runs in AdvanceMove between its look at the
// move and its change (tests).
var testHookMoveChecked func(b uint32)

// StartMove begins moving bucket b's home to continent to (phase copying)
// as a new map version, and counts it against the advisor's hourly limit.
func (s *Server) StartMove(b uint32, to string) (*buckets.Snapshot, error) {
	// Noted before the map changes, so that a look at the new map in
	// between does not take this move for another node's and count it
	// twice. (p.mu cannot be held across ChangePlacement: a reload takes
	// it under s.mu.)
	p := s.placer
	p.mu.Lock()
	prev, had := p.phaseAt[b]
	p.phaseAt[b] = phaseSeen{buckets.MoveCopying, p.now()}
	p.mu.Unlock()
	snap, err := s.ChangePlacement(func(o *buckets.Overrides) error {
		return buckets.StartMove(o, s.Placement().Load(), b, to)
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if had {
			p.phaseAt[b] = prev
		} else {
			delete(p.phaseAt, b)
		}
		return nil, err
	}
	p.advisor.Started(b, p.now())
	return snap, nil
}

// AdvanceMove moves bucket b's move to its next phase as a new map
// version. Leaving the fence for the cutover needs every node gossip lists
// to hold this node's map version (which holds the fence), and the fence
// to have stood for placement.fence_settle: errFenceNotHeld otherwise.
func (s *Server) AdvanceMove(b uint32) (*buckets.Snapshot, buckets.MovePhase, error) {
	var phase buckets.MovePhase
	cur := s.Placement().Load()
	seen, moving := cur.Moving(b)
	if moving && seen.Phase == buckets.MoveFenced {
		if err := s.placer.fenceHeld(b, cur); err != nil {
			return nil, "", err
		}
	}
	if testHookMoveChecked != nil {
		testHookMoveChecked(b)
	}
	snap, err := s.ChangePlacement(func(o *buckets.Overrides) error {
		m, ok := o.Moves[b]
		if ok && (!moving || m.Phase != seen.Phase) {
			// Another advance (an operator's, the placer's) came first:
			// advancing from the phase it left would skip one, cutover's
			// fallback reads included.
			return fmt.Errorf("%w: it is %s now, not %s", errMoveChanged, m.Phase, seen.Phase)
		}
		if ok && m.Phase == buckets.MoveFenced && s.Placement().Load() != cur {
			return fmt.Errorf("%w: the map changed while checking; retry", errFenceNotHeld)
		}
		var err error
		phase, err = buckets.AdvanceMove(o, b)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	s.placer.mu.Lock()
	s.placer.phaseAt[b] = phaseSeen{phase, s.placer.now()}
	s.placer.mu.Unlock()
	return snap, phase, nil
}

// AbortMove ends bucket b's move before any write went to the new home.
func (s *Server) AbortMove(b uint32) (*buckets.Snapshot, error) {
	return s.ChangePlacement(func(o *buckets.Overrides) error { return buckets.AbortMove(o, b) })
}

// fenceHeld checks that every node holds snap's version (in which b is
// fenced) and that the fence has stood for placement.fence_settle on every
// node: here, and since this node first saw the last of the others hold
// it. A node that took the fence up a moment ago may still have writes in
// flight that it routed by the map before; settling from this node's own
// fence alone let one of them land after the cutover's first write.
func (p *placer) fenceHeld(b uint32, snap *buckets.Snapshot) error {
	p.mu.Lock()
	seen, settle := p.seenPhase(b, snap), p.opts.FenceSettle
	p.mu.Unlock()
	if wait := settle - p.now().Sub(seen); wait > 0 {
		return fmt.Errorf("%w: the fence has stood %v of %v", errFenceNotHeld, settle-wait, settle)
	}
	if p.fleet == nil {
		return nil
	}
	for _, m := range p.fleet.Members() {
		if m.NodeState == health.NodeUnreadable {
			return fmt.Errorf("%w: node %s's metadata is unreadable here (another version?), so its map version is unknown", errFenceNotHeld, m.Name)
		}
		if m.MapVersion != snap.Version() {
			return fmt.Errorf("%w: node %s routes by map version %d, this node by %d", errFenceNotHeld, m.Name, m.MapVersion, snap.Version())
		}
		// The same number from another node is another map: one made
		// concurrently on a node that had not taken this one (a reload, a
		// pin, an abort), in which the bucket may not be fenced. (An
		// origin of "" is a release that did not gossip it.)
		if m.MapOrigin != "" && m.MapOrigin != snap.Origin() {
			return fmt.Errorf("%w: node %s routes by map version %d made by %s, this node by the one %s made", errFenceNotHeld, m.Name, m.MapVersion, m.MapOrigin, snap.Origin())
		}
	}
	now := p.now()
	p.mu.Lock()
	held, ok := p.fleetAt[b]
	if !ok || held.version != snap.Version() {
		held = versionSeen{snap.Version(), now}
		p.fleetAt[b] = held
	}
	p.mu.Unlock()
	if wait := settle - now.Sub(held.at); wait > 0 {
		return fmt.Errorf("%w: every node has held the fence for %v of %v", errFenceNotHeld, settle-wait, settle)
	}
	return nil
}

// seenPhase is when this node first saw b's current phase in snap (now if
// this is the first look). Called with p.mu held.
func (p *placer) seenPhase(b uint32, snap *buckets.Snapshot) time.Time {
	m, _ := snap.Moving(b)
	s, known := p.phaseAt[b]
	if known && s.phase == m.Phase {
		return s.at
	}
	now := p.now()
	if !known {
		// A move this process did not start: another node's (an
		// operator on its admin endpoint, a leader before this one) or
		// one from before a restart. It counts toward the hourly limit
		// and starts the bucket's cooldown here too, so a change of
		// leader while it runs resets neither. (Its true start is older:
		// now errs on the side of fewer moves.) Moves that finished
		// before this process started are not known: a leader that
		// restarts forgets their cooldowns.
		p.advisor.Started(b, now)
	}
	p.phaseAt[b] = phaseSeen{m.Phase, now}
	return now
}

// step, with placement.auto_apply, starts recs, the moves the advisor
// just recommended (p.recs keeps them for the view), and
// advances each move whose phase has run its time: copying for copy_time,
// fenced until the fence holds, cutover for cutover_time. Only one node
// steps: the serving node with the least name, so two nodes never make
// competing versions.
func (p *placer) step(recs []buckets.Recommendation) error {
	snap := p.s.Placement().Load()
	p.mu.Lock()
	opts := p.opts
	for b := range snap.Moves() { // note when each phase was first seen
		p.seenPhase(b, snap)
	}
	for b := range p.phaseAt { // a move that ended: its next one starts afresh
		if _, moving := snap.Moving(b); !moving {
			delete(p.phaseAt, b)
			delete(p.fleetAt, b)
		}
	}
	p.mu.Unlock()
	if !opts.AutoApply || !p.leader() {
		return nil
	}
	var errs []error
	for _, r := range recs {
		if _, err := p.s.StartMove(r.Bucket, r.To); err != nil {
			errs = append(errs, err)
		} else {
			p.s.log.Info("placement: move started", "bucket", r.Bucket, "from", r.From, "to", r.To, "share", r.Share)
		}
	}
	now := p.now()
	for b, m := range snap.Moves() {
		p.mu.Lock()
		since := p.seenPhase(b, snap)
		p.mu.Unlock()
		due := false
		switch m.Phase {
		case buckets.MoveCopying:
			due = now.Sub(since) >= opts.CopyTime
		case buckets.MoveFenced:
			due = true // AdvanceMove checks the fence
		case buckets.MoveCutover:
			due = now.Sub(since) >= opts.CutoverTime
		}
		if !due {
			continue
		}
		if _, phase, err := p.s.AdvanceMove(b); err == nil {
			p.s.log.Info("placement: move advanced", "bucket", b, "phase", phase)
		} else if !errors.Is(err, errFenceNotHeld) && !errors.Is(err, errMoveChanged) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// leader reports whether this node drives automatic moves: the serving
// node with the least name among those gossip lists.
func (p *placer) leader() bool {
	if p.fleet == nil {
		return true
	}
	self := p.s.cur.Load().cfg.Node.Name
	for _, m := range p.fleet.Members() {
		if m.NodeState == health.Serving.String() && m.Name < self {
			return false
		}
	}
	return true
}

// originOf is the continent (index) of datacenter dc: the origin this
// node's requests are counted under.
func originOf(topo buckets.Topology, dc int) int {
	ci, _ := topo.ContinentIndex(topo.Datacenters[dc].Continent)
	return ci
}
