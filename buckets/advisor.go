package buckets

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Defaults of AdvisorOptions.
const (
	DefaultMajority     = 0.6
	DefaultRelease      = 0.5
	DefaultWindow       = 30 * time.Minute
	DefaultMinRequests  = 100
	DefaultMovesPerHour = 10
	DefaultCooldown     = 24 * time.Hour
	DefaultHeadroom     = 1.1
)

// AdvisorOptions tune the placement advisor. Zero fields take the defaults.
type AdvisorOptions struct {
	// Majority is the share of a bucket's traffic that one other continent
	// must send for the bucket to become a candidate to move there.
	// Default 0.6.
	Majority float64
	// Release is the share below which a candidate stops being one: between
	// Release and Majority a candidate stays a candidate (hysteresis), so
	// traffic hovering around the threshold does not restart its window.
	// Default 0.5.
	Release float64
	// Window is how long a candidate must stay one before it is
	// recommended. Default 30m.
	Window time.Duration
	// MinRequests is the decayed count (the fleet's, over every origin)
	// below which a bucket's traffic says too little to move it. Default
	// 100.
	MinRequests uint64
	// MovesPerHour caps the moves the advisor recommends in any hour;
	// moves made by an operator count toward it, but are not refused
	// past it (the operator decides). Default 10.
	MovesPerHour int
	// Cooldown keeps a bucket that moved from moving again. Default 24h.
	Cooldown time.Duration
}

func (o AdvisorOptions) withDefaults() AdvisorOptions {
	if o.Majority <= 0 {
		o.Majority = DefaultMajority
	}
	if o.Release <= 0 || o.Release > o.Majority {
		o.Release = min(DefaultRelease, o.Majority)
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.MinRequests == 0 {
		o.MinRequests = DefaultMinRequests
	}
	if o.MovesPerHour <= 0 {
		o.MovesPerHour = DefaultMovesPerHour
	}
	if o.Cooldown <= 0 {
		o.Cooldown = DefaultCooldown
	}
	return o
}

// AdvisorInput is what one evaluation weighs.
type AdvisorInput struct {
	Now time.Time
	// Snapshot gives the buckets' homes, the moves in progress and the
	// topology.
	Snapshot *Snapshot
	// Traffic is the fleet's merged per-bucket counts by origin continent,
	// continents indexed like the snapshot's topology.
	Traffic Counts
	// Capacity is, per continent, the most buckets it may home. nil:
	// BucketCapacity(Snapshot, DefaultHeadroom).
	Capacity []int
}

// BucketCapacity is, per continent, how many buckets it may home: its
// share of the total capacity of N buckets, times headroom (1.1: a
// continent may home 10% more buckets than its capacity share).
func BucketCapacity(s *Snapshot, headroom float64) []int {
	caps := make([]float64, len(s.topo.Continents))
	total := 0.0
	for _, d := range s.topo.Datacenters {
		ci, _ := s.topo.ContinentIndex(d.Continent)
		caps[ci] += d.Capacity
		total += d.Capacity
	}
	out := make([]int, len(caps))
	for i, c := range caps {
		out[i] = int(math.Ceil(float64(s.n) * c / total * headroom))
	}
	return out
}

// Recommendation is a bucket the advisor would move.
type Recommendation struct {
	Bucket uint32 `json:"bucket"`
	From   string `json:"from"`
	To     string `json:"to"`
	// Share is the part of the bucket's traffic that comes from To.
	Share float64 `json:"share"`
	// Requests is the bucket's decayed request count, every origin.
	Requests uint64 `json:"requests"`
	// Since is when the majority from To began (the window's start).
	Since time.Time `json:"since"`
}

// Candidate is a bucket whose window is running.
type Candidate struct {
	Bucket uint32    `json:"bucket"`
	To     string    `json:"to"`
	Share  float64   `json:"share"`
	Since  time.Time `json:"since"`
	// Ready is when the window ends.
	Ready time.Time `json:"ready"`
}

// Advisor recommends moving a bucket's home to the continent its traffic
// comes from (as Akkio does): when one other continent sends a sustained
// majority of it, within a limit on moves per hour and never past a
// continent's capacity.
//
// It is a pure function of its inputs and of the state it keeps between
// evaluations (candidates' windows, the moves started): it reads no clock
// and no network, so tests drive it through simulated hours. Not safe for
// concurrent use: its owner serialises calls.
type Advisor struct {
	opts    AdvisorOptions
	pending map[uint32]pendingMove
	started []startedMove // oldest first
}

type pendingMove struct {
	to    int
	since time.Time
	share float64
}

type startedMove struct {
	bucket uint32
	at     time.Time
}

// NewAdvisor returns an advisor with opts (defaults for zero fields).
func NewAdvisor(opts AdvisorOptions) *Advisor {
	return &Advisor{opts: opts.withDefaults(), pending: map[uint32]pendingMove{}}
}

// SetOptions changes the advisor's options (defaults for zero fields) and
// keeps what it has seen: the moves it started still count toward the
// hourly limit and keep their cooldowns, and pending candidates their age.
func (a *Advisor) SetOptions(opts AdvisorOptions) { a.opts = opts.withDefaults() }

// Options are the advisor's options, defaults applied.
func (a *Advisor) Options() AdvisorOptions { return a.opts }

// Started records that bucket b began moving at at (the advisor's
// recommendation applied, or an operator's move): it counts toward the
// hourly limit and starts b's cooldown.
// Told of the same move again (the same bucket and start), it counts it
// once.
func (a *Advisor) Started(b uint32, at time.Time) {
	if slices.ContainsFunc(a.started, func(m startedMove) bool { return m.bucket == b && m.at.Equal(at) }) {
		return
	}
	i, _ := slices.BinarySearchFunc(a.started, at, func(m startedMove, t time.Time) int { return m.at.Compare(t) })
	a.started = slices.Insert(a.started, i, startedMove{bucket: b, at: at})
	delete(a.pending, b)
}

// MovesInLastHour counts the moves started in the hour before now.
func (a *Advisor) MovesInLastHour(now time.Time) int {
	n := 0
	for _, s := range a.started {
		if now.Sub(s.at) < time.Hour {
			n++
		}
	}
	return n
}

// Advise updates the candidates from in and returns the buckets to move
// now: candidates whose window has run, most traffic from the new home
// first, as many as the hourly limit leaves and the destinations'
// capacity allows.
func (a *Advisor) Advise(in AdvisorInput) []Recommendation {
	o, s, now := a.opts, in.Snapshot, in.Now
	// Forget moves older than the cooldown (which is at least an hour).
	a.started = slices.DeleteFunc(a.started, func(m startedMove) bool { return now.Sub(m.at) >= max(o.Cooldown, time.Hour) })
	cooling := map[uint32]bool{}
	for _, m := range a.started {
		if now.Sub(m.at) < o.Cooldown {
			cooling[m.bucket] = true
		}
	}
	moves := s.overrides.Moves

	seen := map[uint32]bool{}
	for b, row := range in.Traffic.ByBucket {
		if b >= s.n {
			continue
		}
		_, moving := moves[b]
		_, pinned := s.overrides.Pins[b] // where the operator put it
		if moving || pinned || cooling[b] {
			continue
		}
		var total uint64
		for _, x := range row {
			total += uint64(x)
		}
		if total < o.MinRequests {
			continue
		}
		home := int(s.home[b])
		best, bestN := -1, uint32(0)
		for c, x := range row {
			if c != home && c < len(s.topo.Continents) && x > bestN {
				best, bestN = c, x
			}
		}
		if best < 0 {
			continue
		}
		share := float64(bestN) / float64(total)
		p, ok := a.pending[b]
		switch {
		case ok && p.to == best && share >= o.Release:
			p.share = share
			a.pending[b] = p
			seen[b] = true
		case share >= o.Majority:
			a.pending[b] = pendingMove{to: best, since: now, share: share}
			seen[b] = true
		}
	}
	for b := range a.pending {
		if !seen[b] {
			delete(a.pending, b)
		}
	}

	budget := o.MovesPerHour - a.MovesInLastHour(now)
	if budget <= 0 {
		return nil
	}
	caps := in.Capacity
	if caps == nil {
		caps = BucketCapacity(s, DefaultHeadroom)
	}
	homed := make([]int, len(s.topo.Continents))
	for c := range homed {
		homed[c] = len(s.homedIn[c])
	}
	for _, m := range moves { // a moving bucket already takes room at its new home
		if ci, ok := s.topo.ContinentIndex(m.To); ok {
			homed[ci]++
		}
	}
	var ready []Recommendation
	for b, p := range a.pending {
		if now.Sub(p.since) >= o.Window {
			ready = append(ready, Recommendation{
				Bucket: b, From: s.topo.Continents[s.home[b]].Name, To: s.topo.Continents[p.to].Name,
				Share: p.share, Requests: in.Traffic.Total(b), Since: p.since,
			})
		}
	}
	slices.SortFunc(ready, func(x, y Recommendation) int {
		fx, fy := x.Share*float64(x.Requests), y.Share*float64(y.Requests)
		if c := cmp.Compare(fy, fx); c != 0 {
			return c
		}
		return cmp.Compare(x.Bucket, y.Bucket)
	})
	var out []Recommendation
	for _, r := range ready {
		if len(out) == budget {
			break
		}
		ci, _ := s.topo.ContinentIndex(r.To)
		if ci >= len(caps) || homed[ci] >= caps[ci] {
			continue
		}
		homed[ci]++
		out = append(out, r)
	}
	return out
}

// Candidates lists the buckets whose window is running, by bucket.
func (a *Advisor) Candidates(s *Snapshot) []Candidate {
	out := make([]Candidate, 0, len(a.pending))
	for b, p := range a.pending {
		if p.to >= len(s.topo.Continents) {
			continue // the topology changed; the next Advise drops it
		}
		out = append(out, Candidate{Bucket: b, To: s.topo.Continents[p.to].Name, Share: p.share, Since: p.since, Ready: p.since.Add(a.opts.Window)})
	}
	slices.SortFunc(out, func(x, y Candidate) int { return cmp.Compare(x.Bucket, y.Bucket) })
	return out
}
