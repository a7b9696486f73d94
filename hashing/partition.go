package hashing

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
)

// Defaults of PartitionOptions, applied by Partition where a field is zero.
const (
	// DefaultPartitionBuckets is the bucket count N of a deployment that
	// does not say otherwise; it must equal the proxy's `buckets`.
	DefaultPartitionBuckets = 4096
	// DefaultImbalance lets every bucket be within 5% of the average size.
	DefaultImbalance = 0.05
	// DefaultFanoutP is the p of the p-fanout objective. 0.5 is what the
	// Social Hash Partitioner paper found best: smooth enough to reward
	// gathering a request's accounts before they are all together, close
	// enough to fanout to optimise the right thing.
	DefaultFanoutP = 0.5
	// DefaultBisectIterations is the number of move rounds per bisection;
	// the gain levels off after about 15-20.
	DefaultBisectIterations = 20
	// DefaultRefinePasses is the number of k-way refinement passes after
	// the bisections, which use the balance slack the bisections leave.
	DefaultRefinePasses = 6
	// DefaultMoveThreshold is the p-fanout gain a user already in the
	// previous table must bring before the incremental mode moves it:
	// every move is a data migration, so a move must pay for itself.
	DefaultMoveThreshold = 1.0
)

// refineSettled stops refinement passes once a pass moves at most one
// user in this many: later passes gain next to nothing.
const refineSettled = 2000

// PartitionOptions configures Partition. The zero value of every field but
// Seed means its default.
type PartitionOptions struct {
	// Buckets is the bucket count N (1..MaxBuckets). Default
	// DefaultPartitionBuckets.
	Buckets uint32
	// Imbalance bounds bucket sizes: every bucket holds between
	// avg·(1-Imbalance) and avg·(1+Imbalance) users, widened to the
	// nearest whole users (so floor(avg) and ceil(avg) are always allowed).
	// Default DefaultImbalance (5%).
	Imbalance float64
	// P is the p of the p-fanout objective, in (0, 1]; 1 is plain fanout.
	// Default DefaultFanoutP.
	P float64
	// Iterations is the number of move rounds of each bisection. Default
	// DefaultBisectIterations.
	Iterations int
	// RefinePasses is the most k-way refinement passes after the
	// bisections (and in incremental mode); they stop early once a pass
	// moves fewer than one user in 2,000. Default DefaultRefinePasses;
	// negative means none.
	RefinePasses int
	// Seed makes every random choice; the same graph, options and seed
	// give the same assignment whatever Workers is.
	Seed uint64
	// Workers is the number of goroutines. Default runtime.GOMAXPROCS(0).
	Workers int
	// Previous, when set, switches to incremental mode: users it knows
	// keep their bucket unless moving them gains more than MoveThreshold,
	// new users are placed next to their friends, and users it knows that
	// are not in the graph stay in the table unchanged. Its bucket count
	// must equal Buckets.
	Previous *Table
	// MoveThreshold is the p-fanout gain that justifies moving a user of
	// Previous. Default DefaultMoveThreshold; only used with Previous.
	MoveThreshold float64
	// Progress, when set, is told about each phase, bisection level and
	// refinement pass, from the goroutine that called Partition.
	Progress func(PartitionProgress)
}

// PartitionProgress is one step of a running Partition.
type PartitionProgress struct {
	Phase string // "bisect", "refine", "place", "rebalance"
	Step  int    // 1-based step within the phase (level, pass)
	Steps int    // steps the phase has, 0 if unknown
	// Moved is the number of users the step moved.
	Moved int
	// Detail is a short human-readable note.
	Detail string
}

// withDefaults returns o with defaults applied, or an error naming the
// first field out of range.
func (o PartitionOptions) withDefaults() (PartitionOptions, error) {
	if o.Buckets == 0 {
		o.Buckets = DefaultPartitionBuckets
	}
	if o.Buckets > MaxBuckets {
		return o, fmt.Errorf("%w: %d", ErrBucketCount, o.Buckets)
	}
	if o.Imbalance == 0 {
		o.Imbalance = DefaultImbalance
	}
	if !(o.Imbalance > 0 && o.Imbalance < 1) {
		return o, fmt.Errorf("hashing: partition: Imbalance must be in (0, 1), got %v", o.Imbalance)
	}
	if o.P == 0 {
		o.P = DefaultFanoutP
	}
	if !(o.P > 0 && o.P <= 1) {
		return o, fmt.Errorf("hashing: partition: P must be in (0, 1], got %v", o.P)
	}
	if o.Iterations == 0 {
		o.Iterations = DefaultBisectIterations
	}
	if o.Iterations < 0 {
		return o, fmt.Errorf("hashing: partition: Iterations must be positive, got %d", o.Iterations)
	}
	if o.RefinePasses == 0 {
		o.RefinePasses = DefaultRefinePasses
	}
	if o.RefinePasses < 0 {
		o.RefinePasses = 0
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MoveThreshold == 0 {
		o.MoveThreshold = DefaultMoveThreshold
	}
	if o.MoveThreshold < 0 || math.IsNaN(o.MoveThreshold) {
		return o, fmt.Errorf("hashing: partition: MoveThreshold must not be negative, got %v", o.MoveThreshold)
	}
	if o.Previous != nil && o.Previous.Buckets() != o.Buckets {
		return o, fmt.Errorf("hashing: partition: previous table has %d buckets, want %d (the bucket count of a deployment is fixed)",
			o.Previous.Buckets(), o.Buckets)
	}
	return o, nil
}

// Partitioning is the result of Partition: a bucket for every user of the
// graph and, in incremental mode, the previous table's users that are not
// in the graph.
type Partitioning struct {
	g       *Graph
	n       uint32
	p       float64
	buckets []uint16 // buckets[i] is the bucket of user i
	// carried are the previous table's entries whose users are not in the
	// graph; they keep their bucket.
	carriedHashes  []uint64
	carriedBuckets []uint16
	minSize        int
	maxSize        int
	// Incremental is set in incremental mode.
	Incremental *IncrementalStats
}

// IncrementalStats says how much an incremental Partition changed.
type IncrementalStats struct {
	// Known are the graph's users the previous table had.
	Known int `json:"known_users"`
	// Moved are the known users whose bucket changed: each is a data
	// migration.
	Moved int `json:"moved_users"`
	// MovedForBalance are the moves among Moved that only restored the
	// balance bound, not the fanout.
	MovedForBalance int `json:"moved_for_balance"`
	// New are the graph's users the previous table did not have.
	New int `json:"new_users"`
	// NewOffFallback are the new users placed in another bucket than their
	// xxhash fallback, where the proxy serves them today: they migrate
	// too.
	NewOffFallback int `json:"new_users_off_fallback"`
	// Carried are users of the previous table not in the graph, kept with
	// their bucket.
	Carried int `json:"carried_users"`
	// OutOfBounds are the buckets still outside the size bounds after the
	// rebalance: carried users never move, so a bucket full of them can
	// stay over (and others under) whatever the graph's users do.
	OutOfBounds int `json:"buckets_out_of_bounds"`
}

// Buckets returns the bucket count N.
func (p *Partitioning) Buckets() uint32 { return p.n }

// Graph returns the graph that was partitioned.
func (p *Partitioning) Graph() *Graph { return p.g }

// Bucket returns the bucket of user i of the graph.
func (p *Partitioning) Bucket(i int) uint32 { return uint32(p.buckets[i]) }

// Assignment returns the bucket of every user of the graph, indexed by
// user number. The slice belongs to the Partitioning.
func (p *Partitioning) Assignment() []uint16 { return p.buckets }

// SizeBounds returns the smallest and largest bucket size the balance
// constraint allows.
func (p *Partitioning) SizeBounds() (minSize, maxSize int) { return p.minSize, p.maxSize }

// Sizes returns the number of users in each bucket, carried users
// included.
func (p *Partitioning) Sizes() []int {
	s := make([]int, p.n)
	for _, b := range p.buckets {
		s[b]++
	}
	for _, b := range p.carriedBuckets {
		s[b]++
	}
	return s
}

// Table builds the assignment table the proxy loads: the key of user U is
// its decimal id, so its entry is HashString(strconv.FormatUint(U, 10)).
// Users carried over from a previous table keep their entries.
func (p *Partitioning) Table() (*Table, error) {
	b, err := NewTableBuilder(p.n, len(p.buckets)+len(p.carriedHashes))
	if err != nil {
		return nil, err
	}
	for i, bk := range p.buckets {
		if err := b.AddHash(UserKeyHash(p.g.ids[i]), uint32(bk)); err != nil {
			return nil, err
		}
	}
	for i, h := range p.carriedHashes {
		if err := b.AddHash(h, uint32(p.carriedBuckets[i])); err != nil {
			return nil, err
		}
	}
	return b.Build()
}

// UserKeyHash returns the key hash of the user with numeric id id: the
// proxy's routing key for it is the decimal string, so this is
// HashString(strconv.FormatUint(id, 10)), without allocating.
func UserKeyHash(id uint64) uint64 {
	var buf [20]byte
	return HashKey(strconv.AppendUint(buf[:0], id, 10))
}

// sizeBounds returns the balance bounds for total users in n buckets:
// avg·(1±imbalance), widened to whole users so that floor(avg) and
// ceil(avg) always fit.
func sizeBounds(total int, n uint32, imbalance float64) (minSize, maxSize int) {
	avg := float64(total) / float64(n)
	const slack = 1e-9 // so that 100·1.05 is 105, not 104.99999
	maxSize = max(int(math.Ceil(avg-slack)), int(math.Floor(avg*(1+imbalance)+slack)))
	minSize = min(int(math.Floor(avg+slack)), int(math.Ceil(avg*(1-imbalance)-slack)))
	return max(minSize, 0), maxSize
}

// Partition computes a social-hash assignment of g's users to
// opts.Buckets buckets: friends share a bucket, so that a user's request,
// which reads the user and every account the user follows, touches few
// buckets. It is the Social Hash Partitioner of Kabiljo et al. (VLDB
// 2017): the objective is the average p-fanout of the requests (for a
// request whose accounts lie n_b in bucket b, Σ_b 1-(1-p)^n_b; p = 1 is
// the fanout, the number of buckets touched), minimised by recursive
// bisection (SHP-2).
//
// Each bisection is multilevel, because a local search from a random
// split stops far from the optimum on a large graph (on cond-mat-2005 at
// 64 buckets, fanout 2.83 against METIS's 2.32; multilevel reaches 2.28):
// users are merged with the friends they share most follow edges with,
// level after level, down to a few hundred clusters; the best of several
// random splits of those is carried back up, and at every level the
// paper's move rounds refine it: every vertex's gain from switching sides
// is computed in parallel, then the best movers of both sides move, best
// first, within the level's balance slack, which shrinks to exact sizes at
// the level of users. A few k-way refinement passes then move single users
// to their friends' bucket within opts.Imbalance, and a final fix-up
// guarantees every bucket is within bounds (in incremental mode, carried
// users may keep some out: IncrementalStats.OutOfBounds counts them).
//
// Every random choice is a hash of (Seed, subproblem, user), so the result
// depends on the graph, the options and the seed only, not on Workers or
// scheduling. Memory is flat arrays, linear in the graph: the 1M-user,
// 20M-edge benchmark (bench/partition) peaks at about 2.4 GB resident.
//
// With opts.Previous, Partition works incrementally (see
// PartitionOptions.Previous and IncrementalStats). ctx cancels between
// rounds.
func Partition(ctx context.Context, g *Graph, opts PartitionOptions) (*Partitioning, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if g == nil {
		return nil, errors.New("hashing: partition: nil graph")
	}
	res := &Partitioning{g: g, n: o.Buckets, p: o.P, buckets: make([]uint16, g.Users())}
	if o.Previous != nil {
		if err := partitionIncremental(ctx, g, o, res); err != nil {
			return nil, err
		}
		return res, nil
	}
	res.minSize, res.maxSize = sizeBounds(g.Users(), o.Buckets, o.Imbalance)
	if err := bisectAll(ctx, g, o, res.buckets); err != nil {
		return nil, err
	}
	r := newRefiner(g, o, res.buckets, nil, res.minSize, res.maxSize)
	for pass := range o.RefinePasses {
		moved, err := r.pass(ctx, pass, func(int) float64 { return 0 })
		if err != nil {
			return nil, err
		}
		o.progress("refine", pass+1, o.RefinePasses, moved, "")
		if moved <= g.Users()/refineSettled {
			break
		}
	}
	if moved := r.rebalance(nil); moved > 0 {
		o.progress("rebalance", 1, 1, moved, "")
	}
	return res, nil
}

// progress reports a step if a Progress callback is set.
func (o *PartitionOptions) progress(phase string, step, steps, moved int, detail string) {
	if o.Progress != nil {
		o.Progress(PartitionProgress{Phase: phase, Step: step, Steps: steps, Moved: moved, Detail: detail})
	}
}

// randFor returns a pseudo-random value for user v in the context of
// (seed, a, b): a subproblem, a pass, a purpose.
func randFor(seed, a, b uint64, v uint32) uint64 {
	return Mix64(seed ^ Mix64(a*0x9e3779b97f4a7c15^b) ^ uint64(v)*0xd1b54a32d192ed03)
}

// powTable returns r^k for k = 0..maxK, r = 1-p, the term of the p-fanout.
// With p = 1, r^0 = 1 and every other power is 0, so gains count buckets.
func powTable(p float64, maxK int) []float64 {
	r := 1 - p
	t := make([]float64, maxK+1)
	t[0] = 1
	for k := 1; k <= maxK; k++ {
		t[k] = t[k-1] * r
	}
	return t
}
