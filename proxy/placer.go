package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
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
	fences    map[uint32]*fenceWatch // which nodes hold each fenced move's fence, since when
}

// fenceWatch follows one fenced move's fence over the fleet, from the map
// version of this node's that took it up to the one that ends it (see
// observe): those versions (the only ones this node can vouch for hold
// the fence), when this node took the fence up, and since when each node
// has been seen holding it. A node's clock survives this node's next
// version (another move's step, a pin), which it takes a moment to adopt:
// restarting every clock at each version made fenced moves cut over one
// fence_settle after the other.
type fenceWatch struct {
	since    time.Time         // when this node took the fence up
	versions map[uint64]string // fenced version -> its origin
	held     map[string]time.Time
}

// observe follows the fences from prev, the map this node routed by, to
// next, the one it routes by now; the Server calls it at every change of
// its map, under its lock. A fence goes on from prev only if prev held the
// same move (destination and start) fenced and, for a move that does not
// say when it started (an older release's), next is prev's very next
// version: between two versions this node did not see, the move may have
// been aborted, started again and fenced anew, with writes routed to the
// old home meanwhile, so its clocks start again.
func (p *placer) observe(prev, next *buckets.Snapshot) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for b := range p.fences {
		if m, ok := next.Moving(b); !ok || m.Phase != buckets.MoveFenced {
			delete(p.fences, b)
		}
	}
	for b, m := range next.Moves() {
		if m.Phase != buckets.MoveFenced {
			continue
		}
		w := p.fences[b]
		if w == nil || !fenceGoesOn(prev, next, b, m) {
			w = &fenceWatch{since: now, versions: map[uint64]string{}, held: map[string]time.Time{}}
			p.fences[b] = w
		}
		w.add(next.Version(), next.Origin())
	}
}

// fenceGoesOn reports whether bucket b's fence in next (move m) is the one
// prev held (see observe).
func fenceGoesOn(prev, next *buckets.Snapshot, b uint32, m buckets.Move) bool {
	if prev == nil {
		return false
	}
	was, ok := prev.Moving(b)
	return ok && was.Phase == buckets.MoveFenced && was.To == m.To && was.Started.Equal(m.Started) &&
		(!m.Started.IsZero() || next.Version() == prev.Version()+1)
}

// maxFenceVersions bounds a watch's versions; the oldest go first (a node
// still on one of them only waits longer).
const maxFenceVersions = 64

type phaseSeen struct {
	phase buckets.MovePhase
	at    time.Time
}

func newPlacer(s *Server, fleet PlacementFleet) *placer {
	return &placer{s: s, fleet: fleet, now: time.Now, phaseAt: map[uint32]phaseSeen{}, fences: map[uint32]*fenceWatch{}}
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
	if f, ok := p.fleet.(interface{ SetAutoApply(bool) }); ok {
		f.SetAutoApply(cfg.Placement.AutoApply) // the fleet's moves are driven by a node with it on
	}
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
	p.recall(snap, now)
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
	now := p.now()
	p.mu.Lock()
	prev, had := p.phaseAt[b]
	p.phaseAt[b] = phaseSeen{buckets.MoveCopying, now}
	horizon := p.horizon()
	p.mu.Unlock()
	snap, err := s.ChangePlacement(func(o *buckets.Overrides) error {
		buckets.ForgetMovesBefore(o, now.Add(-horizon))
		return buckets.StartMove(o, s.Placement().Load(), b, to, now)
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
	p.advisor.Started(b, now)
	return snap, nil
}

// horizon is how long the advisor weighs a move that began: its cooldown,
// and at least the hour of its hourly limit. Called with p.mu held.
func (p *placer) horizon() time.Duration { return max(p.advisor.Options().Cooldown, time.Hour) }

// recall tells the advisor of the moves the map says ended recently: ones
// another node (an earlier driver) or this process before a restart
// started, whose cooldowns it would otherwise not know. Called with p.mu
// held.
func (p *placer) recall(snap *buckets.Snapshot, now time.Time) {
	for b, at := range snap.RecentMoves() {
		if now.Sub(at) < p.horizon() {
			p.advisor.Started(b, at)
		}
	}
}

// AdvanceMove moves bucket b's move to its next phase as a new map
// version. Only the node that drives moves steps them (errNotDriver
// elsewhere). Leaving the fence for the cutover needs every node gossip
// lists to hold this node's map version (which holds the fence), and the
// fence to have stood for placement.fence_settle: errFenceNotHeld
// otherwise.
func (s *Server) AdvanceMove(b uint32) (*buckets.Snapshot, buckets.MovePhase, error) {
	if err := s.placer.mayStep(); err != nil {
		return nil, "", err
	}
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
// Only the node that drives moves aborts them (errNotDriver elsewhere).
//
// A fenced move is aborted only once every node routes by this node's map
// (errFenceNotHeld otherwise): a node that took itself for the driver too
// (a node that just joined, one the others do not see yet) may have cut
// the move over, and this abort, winning the tie, would send writes back
// to the old home after some went to the new.
func (s *Server) AbortMove(b uint32) (*buckets.Snapshot, error) {
	if err := s.placer.mayStep(); err != nil {
		return nil, err
	}
	cur := s.Placement().Load()
	fenced := false
	if m, ok := cur.Moving(b); ok && m.Phase == buckets.MoveFenced {
		fenced = true
		if err := s.placer.fleetOn(cur); err != nil {
			return nil, err
		}
	}
	return s.ChangePlacement(func(o *buckets.Overrides) error {
		if fenced && s.Placement().Load() != cur {
			return fmt.Errorf("%w: the map changed while checking; retry", errFenceNotHeld)
		}
		return buckets.AbortMove(o, b)
	})
}

// fleetOn checks that every node gossip lists routes by snap itself: its
// version, made by its origin (errFenceNotHeld otherwise).
func (p *placer) fleetOn(snap *buckets.Snapshot) error {
	if p.fleet == nil {
		return nil
	}
	only := &fenceWatch{versions: map[uint64]string{snap.Version(): snap.Origin()}}
	for _, m := range p.fleet.Members() {
		if err := holdsFence(m, snap, only); err != nil {
			return err
		}
	}
	return nil
}

// errNotDriver refuses a move's step (advance, abort) on a node that does
// not drive the fleet's moves.
var errNotDriver = errors.New("proxy: another node drives the fleet's moves")

// mayStep says whether this node may step moves: errNotDriver, naming the
// node that does, unless it drives them.
func (p *placer) mayStep() error {
	self := p.s.cur.Load().cfg.Node.Name
	switch d, _ := p.driver(); d {
	case self:
		return nil
	case "":
		return fmt.Errorf("%w: this node is draining and no other serves", errNotDriver)
	default:
		return fmt.Errorf("%w: step moves on node %s (the serving node with the least name among those with placement.auto_apply on, or among all if none has it)", errNotDriver, d)
	}
}

// driver names the node that steps the fleet's moves, the placer's and
// an operator's: the serving node with the least name among those with
// placement.auto_apply on or, if none has it on, among all serving nodes
// ("" if this node drains and no other serves); auto says whether it has
// auto_apply on. A node of a release that does not gossip auto_apply
// counts as on: it steps as that release did, by least name alone.
//
// One node steps so that two never publish competing steps: an abort made
// on one node while another cut the same move over got the same version
// number, and if its node's name was greater it won everywhere, sending
// writes back to the old home after some had gone to the new. Nodes agree
// on the driver while they agree on the membership; while they do not (a
// node joining, or a partition), two may step at once: the limit the move
// protocol names (buckets.MovePhase).
func (p *placer) driver() (name string, auto bool) {
	self := p.s.cur.Load().cfg.Node.Name
	p.mu.Lock()
	selfAuto := p.opts.AutoApply
	p.mu.Unlock()
	best, bestAuto := "", false
	consider := func(name string, auto bool) {
		if best == "" || auto && !bestAuto || auto == bestAuto && name < best {
			best, bestAuto = name, auto
		}
	}
	if !p.s.draining.Load() {
		consider(self, selfAuto)
	}
	if p.fleet == nil {
		return cmp.Or(best, self), selfAuto
	}
	for _, m := range p.fleet.Members() {
		if m.Name != self && m.NodeState == health.Serving.String() {
			consider(m.Name, m.AutoApply == nil || *m.AutoApply)
		}
	}
	return best, bestAuto
}

// fenceHeld checks that every node holds snap's version (in which b is
// fenced) and that the fence has stood for placement.fence_settle on every
// node: here, and on each other node since this node first saw it hold
// the fence (in this version or an earlier fenced one) and not lose it
// since. A node that took the fence up a moment ago may still have writes
// in flight that it routed by the map before; settling from this node's
// own fence alone let one of them land after the cutover's first write.
func (p *placer) fenceHeld(b uint32, snap *buckets.Snapshot) error {
	var members []health.Member
	if p.fleet != nil {
		members = p.fleet.Members()
	}
	now := p.now()
	p.mu.Lock()
	p.seenPhase(b, snap) // the advisor counts a move it had not seen
	settle := p.opts.FenceSettle
	w := p.fences[b]
	if w == nil || w.versions[snap.Version()] != snap.Origin() {
		// Not taken up through observe (a test's map): from now.
		w = &fenceWatch{since: now, versions: map[uint64]string{}, held: map[string]time.Time{}}
		w.add(snap.Version(), snap.Origin())
		p.fences[b] = w
	}
	if wait := settle - now.Sub(w.since); wait > 0 {
		p.mu.Unlock()
		return fmt.Errorf("%w: the fence has stood %v of %v", errFenceNotHeld, settle-wait, settle)
	}
	if p.fleet == nil {
		p.mu.Unlock()
		return nil
	}
	held := make(map[string]time.Time, len(members))
	var behind error
	last, lastAt := "", time.Time{}
	for _, m := range members {
		if err := holdsFence(m, snap, w); err != nil {
			behind = cmp.Or(behind, err)
			if !errors.Is(err, errNotYet) {
				continue // not holding the fence: its clock starts again
			}
		}
		at, ok := w.held[m.Name]
		if !ok {
			at = now
		}
		held[m.Name] = at
		if at.After(lastAt) {
			last, lastAt = m.Name, at
		}
	}
	w.held = held // only the nodes listed now
	p.mu.Unlock()
	if behind != nil {
		return behind
	}
	if wait := settle - now.Sub(lastAt); wait > 0 {
		return fmt.Errorf("%w: every node has held the fence for %v of %v (%s took it up last)", errFenceNotHeld, settle-wait, settle, last)
	}
	return nil
}

// errNotYet marks a node that holds the fence in an earlier version of
// this node's: it keeps its clock, but the cutover waits until it holds
// this one (see holdsFence).
var errNotYet = fmt.Errorf("%w", errFenceNotHeld)

// holdsFence says whether member m holds b's fence: nil if it routes by
// snap itself; errNotYet if by an earlier version of this node's in which
// b was fenced; another errFenceNotHeld if by any other map. The cutover
// needs every node on snap itself: a node on an earlier version could
// still take a map of the same number made elsewhere at the same time,
// before the fence (the greater name wins a tie).
func holdsFence(m health.Member, snap *buckets.Snapshot, w *fenceWatch) error {
	switch origin, fenced := w.versions[m.MapVersion]; {
	case m.NodeState == health.NodeUnreadable:
		return fmt.Errorf("%w: node %s's metadata is unreadable here (another version?), so its map version is unknown (if it stays so, give the bucket a home in every node's config file and reload: that ends the move)", errFenceNotHeld, m.Name)
	case m.MapVersion != snap.Version() && (!fenced || m.MapOrigin != "" && m.MapOrigin != origin):
		return fmt.Errorf("%w: node %s routes by map version %d, this node by %d", errFenceNotHeld, m.Name, m.MapVersion, snap.Version())
	case m.MapOrigin != "" && m.MapOrigin != origin:
		// The same number from another node is another map: one made
		// concurrently on a node that had not taken this one (a reload, a
		// pin, an abort), in which the bucket may not be fenced. (An
		// origin of "" is a release that did not gossip it.)
		return fmt.Errorf("%w: node %s routes by map version %d made by %s, this node by the one %s made", errFenceNotHeld, m.Name, m.MapVersion, m.MapOrigin, origin)
	case m.MapVersion != snap.Version():
		return fmt.Errorf("%w: node %s routes by map version %d, this node by %d (the fence stands in both)", errNotYet, m.Name, m.MapVersion, snap.Version())
	}
	return nil
}

// add notes a version in which the watch's bucket is fenced.
func (w *fenceWatch) add(version uint64, origin string) {
	w.versions[version] = origin
	if len(w.versions) > maxFenceVersions {
		delete(w.versions, slices.Min(slices.Collect(maps.Keys(w.versions))))
	}
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
		// operator on its admin endpoint, a driver before this one) or
		// one from before a restart. It counts toward the hourly limit
		// and starts the bucket's cooldown here too, so a change of
		// driver while it runs resets neither; from when it began, or,
		// from a release that did not record that, from now (later than
		// the truth: fewer moves, not more). Moves that ended are
		// recalled from the map (recall).
		p.advisor.Started(b, cmp.Or(m.Started, now))
	}
	p.phaseAt[b] = phaseSeen{m.Phase, now}
	return now
}

// step, with placement.auto_apply, starts recs, the moves the advisor
// just recommended (p.recs keeps them for the view), and
// advances each move whose phase has run its time: copying for copy_time,
// fenced until the fence holds, cutover for cutover_time. Only the node
// that drives moves steps (driver), so two nodes never make competing
// versions.
func (p *placer) step(recs []buckets.Recommendation) error {
	snap := p.s.Placement().Load()
	p.mu.Lock()
	opts := p.opts
	for b := range snap.Moves() { // note when each phase was first seen
		p.seenPhase(b, snap)
	}
	p.recall(snap, p.now())
	for b := range p.phaseAt { // a move that ended: its next one starts afresh
		if _, moving := snap.Moving(b); !moving {
			delete(p.phaseAt, b)
			delete(p.fences, b)
		}
	}
	p.mu.Unlock()
	if !opts.AutoApply || p.mayStep() != nil {
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

// originOf is the continent (index) of datacenter dc: the origin this
// node's requests are counted under.
func originOf(topo buckets.Topology, dc int) int {
	ci, _ := topo.ContinentIndex(topo.Datacenters[dc].Continent)
	return ci
}
