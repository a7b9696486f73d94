package hashing

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// refiner improves a k-way assignment by moving single users to the bucket
// their friends are in, within the balance bounds. It is the k-way stage of
// the Social Hash Partitioner, used after the bisections (where it spends
// the balance slack they leave), to restore balance, and for the
// incremental mode.
//
// For each request (query) q, that is user q and the accounts q follows,
// it keeps the buckets its members are in with their counts, as a sorted
// list of bucket<<16 | count in one flat array: a user's gain from moving
// is then a few binary searches per request it is in.
type refiner struct {
	g       *Graph
	o       PartitionOptions
	bucket  []uint16
	size    []int // users per bucket, carried users included
	minSize int
	maxSize int
	pw      []float64
	qb      []uint32 // lists; query q's starts at g.outOff[q]+q, room for its members
	qbLen   []uint32 // qbLen[q] is the length of query q's list
	// Per-user best two moves of the last gain pass.
	to   [][2]uint32
	gain [][2]float64
}

// noMove marks "no candidate bucket"; bucket numbers are below
// MaxBuckets.
const noMove = 1<<32 - 1

// newRefiner prepares a refiner of bucket (one entry per user of g, owned
// and updated by the refiner). extra, if set, holds users per bucket that
// are not in the graph (carried users of a previous table).
func newRefiner(g *Graph, o PartitionOptions, bucket []uint16, extra []int, minSize, maxSize int) *refiner {
	maxQ := 1
	for u := range g.Users() {
		maxQ = max(maxQ, len(g.Following(u))+1)
	}
	r := &refiner{
		g: g, o: o, bucket: bucket, minSize: minSize, maxSize: maxSize,
		size: make([]int, o.Buckets),
		pw:   powTable(o.P, maxQ+1),
	}
	for _, b := range bucket {
		r.size[b]++
	}
	for b, n := range extra {
		r.size[b] += n
	}
	return r
}

// queryStart returns where query q's bucket list starts in r.qb.
func (r *refiner) queryStart(q int) uint32 { return r.g.outOff[q] + uint32(q) }

// buildLists recomputes every query's bucket list from r.bucket.
func (r *refiner) buildLists() {
	g := r.g
	n := g.Users()
	if r.qb == nil {
		r.qb = make([]uint32, len(g.out)+n)
		r.qbLen = make([]uint32, n)
	}
	parallelFor(n, r.o.Workers, func(lo, hi int) {
		for q := lo; q < hi; q++ {
			fol := g.Following(q)
			s := r.qb[r.queryStart(q):][:len(fol)+1]
			s[0] = uint32(r.bucket[q]) << 16
			for i, m := range fol {
				s[i+1] = uint32(r.bucket[m]) << 16
			}
			slices.Sort(s)
			w := 0
			for i := 0; i < len(s); {
				j := i + 1
				for j < len(s) && s[j] == s[i] {
					j++
				}
				s[w] = s[i] | uint32(min(j-i, 0xFFFF))
				w++
				i = j
			}
			r.qbLen[q] = uint32(w)
		}
	})
}

// count returns how many members of query q are in bucket b. A count
// saturates at 65535, where r^count is 0 for any useful p.
func (r *refiner) count(q uint32, b uint32) uint32 {
	s := r.qb[r.queryStart(int(q)):][:r.qbLen[q]]
	key := b << 16
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m] < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(s) && s[lo]>>16 == b {
		return s[lo] & 0xFFFF
	}
	return 0
}

// moveGains sets gains[j] to the p-fanout gain of moving user v from its
// bucket to bucket to[j]: the requests v is in (its own and its
// followers') lose v from v's bucket and gain it in to[j].
func (r *refiner) moveGains(v int, to []uint32, gains []float64) {
	a := uint32(r.bucket[v])
	clear(gains)
	add := func(q uint32) {
		rm := r.pw[r.count(q, a)-1]
		for j, b := range to {
			gains[j] += rm - r.pw[r.count(q, b)]
		}
	}
	add(uint32(v))
	for _, q := range r.g.Followers(v) {
		add(q)
	}
	for j := range gains {
		gains[j] *= r.o.P
	}
}

// tally counts the buckets of v's neighbours (accounts it follows and its
// followers) other than skip, into cnt, listing each bucket seen once in
// touched, and returns how many neighbours are in skip.
func (r *refiner) tally(v int, skip uint16, cnt []int32, touched []uint16) ([]uint16, int32) {
	touched = touched[:0]
	var home int32
	see := func(ns []uint32) {
		for _, u := range ns {
			b := r.bucket[u]
			if b == skip {
				home++
				continue
			}
			if cnt[b] == 0 {
				touched = append(touched, b)
			}
			cnt[b]++
		}
	}
	see(r.g.Following(v))
	if r.g.directed {
		see(r.g.Followers(v))
	}
	return touched, home
}

// topTwo returns the two buckets of touched with the most neighbours
// (ties: the lower bucket), accepting only buckets ok allows, and resets
// cnt. minCount drops buckets with fewer neighbours.
func topTwo(touched []uint16, cnt []int32, minCount int32, ok func(uint32) bool) []uint32 {
	best := [2]uint32{noMove, noMove}
	var bc [2]int32
	for _, bk := range touched {
		b := uint32(bk)
		c := cnt[b]
		cnt[b] = 0
		if c < minCount || ok != nil && !ok(b) {
			continue
		}
		switch {
		case c > bc[0] || (c == bc[0] && b < best[0]):
			best[1], bc[1] = best[0], bc[0]
			best[0], bc[0] = b, c
		case c > bc[1] || (c == bc[1] && b < best[1]):
			best[1], bc[1] = b, c
		}
	}
	switch {
	case best[0] == noMove:
		return nil
	case best[1] == noMove:
		return best[:1]
	}
	return best[:]
}

// tallyScratch is one worker's counting space.
type tallyScratch struct {
	cnt     []int32
	touched []uint16
}

// pass runs one refinement pass: every user's best two moves are computed
// in parallel, then moves whose gain exceeds threshold(user) are applied
// best first, each only if both buckets stay within bounds, and each with
// probability 3/4 decided by a hash: users that are each other's reason to
// move would otherwise swap places and gain nothing. It returns the number
// of users moved.
func (r *refiner) pass(ctx context.Context, pass int, threshold func(v int) float64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("hashing: partition: %w", err)
	}
	r.buildLists()
	n := r.g.Users()
	if r.to == nil {
		r.to = make([][2]uint32, n)
		r.gain = make([][2]float64, n)
	}
	pool := sync.Pool{New: func() any {
		return &tallyScratch{cnt: make([]int32, r.o.Buckets), touched: make([]uint16, 0, 64)}
	}}
	parallelFor(n, r.o.Workers, func(lo, hi int) {
		sc := pool.Get().(*tallyScratch)
		defer pool.Put(sc)
		var gains [2]float64
		for v := lo; v < hi; v++ {
			r.to[v] = [2]uint32{noMove, noMove}
			var home int32
			sc.touched, home = r.tally(v, r.bucket[v], sc.cnt, sc.touched)
			// A user with far more friends at home than in any other
			// bucket almost never gains by leaving; skipping the exact
			// gain for it saves most of a pass.
			cands := topTwo(sc.touched, sc.cnt, (home+1)/interiorRatio, nil)
			if len(cands) == 0 {
				continue
			}
			r.moveGains(v, cands, gains[:len(cands)])
			if len(cands) == 2 && gains[1] > gains[0] {
				cands[0], cands[1] = cands[1], cands[0]
				gains[0], gains[1] = gains[1], gains[0]
			}
			copy(r.to[v][:], cands)
			copy(r.gain[v][:], gains[:len(cands)])
		}
	})

	var movers []uint32
	for v := range n {
		if r.to[v][0] != noMove && r.gain[v][0] > threshold(v)+gainEpsilon {
			movers = append(movers, uint32(v))
		}
	}
	slices.SortFunc(movers, func(x, y uint32) int {
		if c := cmp.Compare(r.gain[y][0], r.gain[x][0]); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	moved := 0
	for _, v := range movers {
		if randFor(r.o.Seed, refineSalt, uint64(pass), v)&3 == 0 {
			continue
		}
		a := r.bucket[v]
		if r.size[a] <= r.minSize {
			continue
		}
		for j := range 2 {
			b := r.to[v][j]
			if b == noMove || r.gain[v][j] <= threshold(int(v))+gainEpsilon {
				break
			}
			if r.size[b] < r.maxSize {
				r.bucket[v] = uint16(b)
				r.size[a]--
				r.size[b]++
				moved++
				break
			}
		}
	}
	return moved, nil
}

// interiorRatio is how many times more friends a user must have in its
// own bucket than in any other for a pass to skip it.
const interiorRatio = 3

// refineSalt separates the refiner's random choices from the bisection's.
const refineSalt = 0x7265666e // "refn"

// rebalance moves users until every bucket is within [minSize, maxSize],
// choosing each time the users whose move costs least fanout. cost, if
// set, is added to the loss of moving a user (the incremental mode makes
// moving a known user dear, a new one cheap). It returns the number of
// moves. Buckets already in bounds are never pushed out of them.
func (r *refiner) rebalance(cost func(v int) float64) int {
	if cost == nil {
		cost = func(int) float64 { return 0 }
	}
	moved := 0
	for range 64 {
		var over, under []uint16
		for b, s := range r.size {
			switch {
			case s > r.maxSize:
				over = append(over, uint16(b))
			case s < r.minSize:
				under = append(under, uint16(b))
			}
		}
		if len(over) == 0 && len(under) == 0 {
			return moved
		}
		r.buildLists()
		members := r.members()
		// The lists price a user by the bucket it had when they were
		// built: one moved since (by the over-full pass, or into an
		// earlier under-full bucket) waits for the next round's lists,
		// or its own bucket would count it zero times.
		listed := slices.Clone(r.bucket)
		stale := func(u uint32) bool { return r.bucket[u] != listed[u] }
		sc := &tallyScratch{cnt: make([]int32, r.o.Buckets)}
		type move struct {
			v     uint32
			to    uint32
			score float64
		}
		var gains [2]float64

		// Over-full buckets give their cheapest users to a bucket with room
		// next to their friends, or else to the smallest bucket.
		smallest := func() uint32 {
			best := 0
			for b, s := range r.size {
				if s < r.size[best] {
					best = b
				}
			}
			return uint32(best)
		}
		for _, a := range over {
			var ms []move
			for _, v := range members[a] {
				sc.touched, _ = r.tally(int(v), a, sc.cnt, sc.touched)
				cands := topTwo(sc.touched, sc.cnt, 0, func(b uint32) bool { return r.size[b] < r.maxSize })
				if len(cands) == 0 {
					cands = []uint32{smallest()}
				}
				r.moveGains(int(v), cands, gains[:len(cands)])
				j := 0
				if len(cands) == 2 && gains[1] > gains[0] {
					j = 1
				}
				ms = append(ms, move{v, cands[j], gains[j] - cost(int(v))})
			}
			slices.SortFunc(ms, func(x, y move) int {
				if c := cmp.Compare(y.score, x.score); c != 0 {
					return c
				}
				return cmp.Compare(x.v, y.v)
			})
			for _, m := range ms {
				if r.size[a] <= r.maxSize {
					break
				}
				if r.size[m.to] >= r.maxSize || r.bucket[m.v] != a {
					continue
				}
				r.bucket[m.v] = uint16(m.to)
				r.size[a]--
				r.size[m.to]++
				moved++
			}
		}

		// Under-full buckets take the cheapest friends of their users from
		// buckets that can spare them, or else users of the largest
		// buckets. Exact gains are dear for an account with many
		// followers, so only the users with the most links into the
		// bucket are priced.
		for _, b := range under {
			need := r.minSize - r.size[b]
			if need <= 0 {
				continue
			}
			links := map[uint32]int32{}
			count := func(us []uint32) {
				for _, u := range us {
					if a := r.bucket[u]; a != b && r.size[a] > r.minSize && !stale(u) {
						links[u]++
					}
				}
			}
			for _, v := range members[b] {
				count(r.g.Following(int(v)))
				count(r.g.Followers(int(v)))
			}
			// Shortlists: the users whose links go most into b, as a
			// share of all their links (an account followed everywhere
			// has links into every bucket and belongs in none), among the
			// users that are cheap to move and among the others.
			var cheap, dear []uint32
			share := make(map[uint32]float64, len(links))
			for u, l := range links {
				deg := len(r.g.Following(int(u)))
				if r.g.directed {
					deg += len(r.g.Followers(int(u)))
				}
				share[u] = float64(l) / float64(deg)
				if cost(int(u)) == 0 {
					cheap = append(cheap, u)
				} else {
					dear = append(dear, u)
				}
			}
			byShare := func(x, y uint32) int {
				if c := cmp.Compare(share[y], share[x]); c != 0 {
					return c
				}
				return cmp.Compare(x, y)
			}
			slices.SortFunc(cheap, byShare)
			slices.SortFunc(dear, byShare)
			half := rebalanceShortlist * need / 2
			cands := append(cheap[:min(len(cheap), half)], dear[:min(len(dear), half)]...)
			if len(cands) < rebalanceShortlist*need {
				// Not enough friends around: draw from the largest buckets.
				order := make([]uint16, len(r.size))
				for i := range order {
					order[i] = uint16(i)
				}
				slices.SortFunc(order, func(x, y uint16) int {
					if c := cmp.Compare(r.size[y], r.size[x]); c != 0 {
						return c
					}
					return cmp.Compare(x, y)
				})
				for _, a := range order {
					if len(cands) >= rebalanceShortlist*need || r.size[a] <= r.minSize {
						break
					}
					for _, u := range members[a] {
						if _, ok := links[u]; !ok && !stale(u) {
							cands = append(cands, u)
						}
					}
				}
			}
			cands = cands[:min(len(cands), rebalanceShortlist*need)]
			ms := make([]move, 0, len(cands))
			for _, u := range cands {
				r.moveGains(int(u), []uint32{uint32(b)}, gains[:1])
				ms = append(ms, move{u, uint32(b), gains[0] - cost(int(u))})
			}
			slices.SortFunc(ms, func(x, y move) int {
				if c := cmp.Compare(y.score, x.score); c != 0 {
					return c
				}
				return cmp.Compare(x.v, y.v)
			})
			for _, m := range ms {
				if r.size[b] >= r.minSize {
					break
				}
				a := r.bucket[m.v]
				if a == b || r.size[a] <= r.minSize {
					continue
				}
				r.bucket[m.v] = b
				r.size[a]--
				r.size[b]++
				moved++
			}
		}
	}
	return moved
}

// rebalanceShortlist is how many candidates per missing user an
// under-full bucket prices exactly.
const rebalanceShortlist = 8

// members returns the users of each bucket, ascending.
func (r *refiner) members() [][]uint32 {
	off := make([]int, len(r.size)+1)
	for _, b := range r.bucket {
		off[b+1]++
	}
	for i := 1; i < len(off); i++ {
		off[i] += off[i-1]
	}
	flat := make([]uint32, len(r.bucket))
	fill := slices.Clone(off)
	for v, b := range r.bucket {
		flat[fill[b]] = uint32(v)
		fill[b]++
	}
	ms := make([][]uint32, len(r.size))
	for b := range ms {
		ms[b] = flat[off[b]:off[b+1]]
	}
	return ms
}
