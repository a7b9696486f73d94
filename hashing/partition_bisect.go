package hashing

import (
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// hgraph is the hypergraph one bisection works on, at one level of
// coarsening. Vertices are users (at the finest level) or clusters of users
// (coarser levels, weight = users). A query is a user's request: the user
// itself and the accounts it follows, as vertices with a multiplicity (how
// many of the request's accounts a cluster holds).
type hgraph struct {
	nv   int
	vw   []uint32 // vertex weights; nil means all 1
	qOff []uint32 // qMem[qOff[q]:qOff[q+1]] are query q's vertices
	qMem []uint32
	qMul []uint32 // multiplicity of each qMem entry; nil means all 1
	vOff []uint32 // vQ[vOff[v]:vOff[v+1]] are the queries vertex v is in
	vQ   []uint32
	vMul []uint32 // v's multiplicity in each vQ entry; nil means all 1
	// Weighted undirected adjacency (follow edges, merged), which guides
	// coarsening: eAdj[eOff[v]:eOff[v+1]] with weights eW.
	eOff, eAdj, eW []uint32
}

func (h *hgraph) nq() int { return len(h.qOff) - 1 }

func (h *hgraph) weight(v uint32) uint32 {
	if h.vw == nil {
		return 1
	}
	return h.vw[v]
}

// transpose fills vOff, vQ and vMul from the queries.
func (h *hgraph) transpose() {
	h.vOff = make([]uint32, h.nv+1)
	for _, m := range h.qMem {
		h.vOff[m+1]++
	}
	for v := 1; v <= h.nv; v++ {
		h.vOff[v] += h.vOff[v-1]
	}
	h.vQ = make([]uint32, len(h.qMem))
	if h.qMul != nil {
		h.vMul = make([]uint32, len(h.qMem))
	}
	fill := slices.Clone(h.vOff[:h.nv])
	for q := range h.nq() {
		for i := h.qOff[q]; i < h.qOff[q+1]; i++ {
			m := h.qMem[i]
			h.vQ[fill[m]] = uint32(q)
			if h.qMul != nil {
				h.vMul[fill[m]] = h.qMul[i]
			}
			fill[m]++
		}
	}
}

// bisection is one subproblem of the recursive bisection: the users headed
// for the bucket range [lo, hi) and the requests restricted to them. Only
// a request's members inside the subproblem matter here, because the
// fanout of a request is the sum over subproblems of the buckets it touches
// in each; requests with fewer than two members inside cannot be improved
// and are left out, so subproblems shrink as the recursion deepens.
type bisection struct {
	lo, hi uint32
	verts  []uint32 // global user numbers, ascending
	h      hgraph   // the finest level: unit weights and multiplicities
	// owned[q] says query q's first member is the user whose request it
	// is; the pairs (owner, member) are the follow edges inside the
	// subproblem.
	owned []bool
}

// topBisection is the whole graph as one subproblem: every user is a query
// (itself and the accounts it follows).
func topBisection(g *Graph, n uint32) *bisection {
	users := g.Users()
	b := &bisection{lo: 0, hi: n, verts: make([]uint32, users), owned: make([]bool, users)}
	for i := range b.verts {
		b.verts[i] = uint32(i)
		b.owned[i] = true
	}
	h := &b.h
	h.nv = users
	h.qOff = make([]uint32, users+1)
	h.qMem = make([]uint32, users+len(g.out))
	w := uint32(0)
	for u := range users {
		h.qOff[u] = w
		h.qMem[w] = uint32(u)
		w++
		w += uint32(copy(h.qMem[w:], g.Following(u)))
	}
	h.qOff[users] = w
	h.transpose()
	return b
}

// bisectAll runs the recursive bisection of g into o.Buckets buckets and
// writes each user's bucket to out. It works level by level: the
// subproblems of a level are independent, so they run in parallel, and a
// subproblem gets the workers its level leaves over (all of them at the
// top).
func bisectAll(ctx context.Context, g *Graph, o PartitionOptions, out []uint16) error {
	if o.Buckets == 1 || g.Users() == 0 {
		clear(out)
		return nil
	}
	maxQ := 1
	for u := range g.Users() {
		maxQ = max(maxQ, len(g.Following(u))+1)
	}
	pw := powTable(o.P, maxQ+1)
	levels := bits.Len32(o.Buckets - 1)
	cur := []*bisection{topBisection(g, o.Buckets)}
	for level := 0; len(cur) > 0; level++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("hashing: partition: %w", err)
		}
		next := make([]*bisection, 2*len(cur))
		outer := min(o.Workers, len(cur))
		inner := max(1, o.Workers/len(cur))
		var moved atomic.Int64
		var nextSub atomic.Int64
		var wg sync.WaitGroup
		for range outer {
			wg.Go(func() {
				for {
					i := int(nextSub.Add(1) - 1)
					if i >= len(cur) {
						return
					}
					b := cur[i]
					cur[i] = nil // free the parent as soon as its children exist
					side, cnt, m := b.run(o, pw, inner)
					moved.Add(int64(m))
					c0, c1 := b.split(side, cnt)
					for j, c := range [2]*bisection{c0, c1} {
						switch {
						case len(c.verts) == 0:
						case c.hi-c.lo == 1:
							for _, v := range c.verts {
								out[v] = uint16(c.lo)
							}
						default:
							next[2*i+j] = c
						}
					}
				}
			})
		}
		wg.Wait()
		subs := len(cur)
		cur = slices.DeleteFunc(next, func(b *bisection) bool { return b == nil })
		o.progress("bisect", level+1, levels, int(moved.Load()),
			fmt.Sprintf("%d subproblems", subs))
	}
	return nil
}

// Multilevel parameters.
const (
	// coarsestSize stops coarsening: a few hundred clusters are enough to
	// try many initial splits cheaply.
	coarsestSize = 200
	// coarsenStall stops coarsening when a level shrinks the vertex count
	// by less than this factor: hubs and leftovers dominate.
	coarsenStall = 0.92
	// clusterShare caps a cluster's weight at the subproblem's weight
	// over this, so the coarsest level still splits evenly.
	clusterShare = 64
	// initialTries is the number of random starts at the coarsest level,
	// smallTries for a subproblem too small to coarsen.
	initialTries   = 8
	smallTries     = 32
	smallTriesWork = 2048 // users × starts for a subproblem too small to coarsen
	// coarseSlack is the imbalance a coarse level may use (of the
	// subproblem's weight): room to move clusters, taken back level by
	// level down to exact sizes.
	coarseSlack = 0.03
)

// coarseLevel is one level of the coarsening chain of a bisection.
type coarseLevel struct {
	h    *hgraph
	cmap []uint32 // finer vertex -> vertex of this level
}

// run bisects b: it returns each local user's side (0: [lo, mid), 1:
// [mid, hi)), the per-query member counts of each side (cnt[2q+s]), and
// how many users changed side during refinement at the finest level.
//
// The bisection is multilevel: the subproblem is coarsened by merging
// users with the friends they share most follow edges with, the coarsest
// hypergraph (a few hundred clusters) is split from several random starts,
// and the best split is carried back level by level, refined at each by
// the Social Hash Partitioner's move rounds: every vertex's p-fanout gain
// from switching sides is computed in parallel, then the best movers of
// both sides move, best first, as long as the sides stay within the
// level's slack. Coarse levels may be slightly unbalanced; the finest
// level ends at the exact sizes the two bucket ranges call for.
func (b *bisection) run(o PartitionOptions, pw []float64, workers int) (side []uint8, cnt []uint32, moved int) {
	fine := &b.h
	k := uint64(b.hi - b.lo)
	target0 := int64((uint64(fine.nv)*(k/2) + k/2) / k)
	sub := uint64(b.lo)<<32 | uint64(b.hi)
	total := int64(fine.nv)

	// Coarsen.
	fine.eOff, fine.eAdj, fine.eW = b.adjacency()
	chain := []coarseLevel{{h: fine}}
	maxW := uint32(max(2, total/clusterShare))
	for h := fine; h.nv > coarsestSize; {
		cmap, nc := coarsen(h, maxW, func(v uint32) uint64 {
			return randFor(o.Seed, sub, uint64(len(chain))<<32|coarsenSalt, v)
		})
		if float64(nc) > coarsenStall*float64(h.nv) {
			break
		}
		c := contract(h, cmap, nc, workers)
		h.eOff, h.eAdj, h.eW = nil, nil, nil // only coarsening reads them
		chain = append(chain, coarseLevel{h: c, cmap: cmap})
		h = c
	}
	last := chain[len(chain)-1].h
	last.eOff, last.eAdj, last.eW = nil, nil, nil

	// Initial split of the coarsest level: the best of several starts.
	coarse := chain[len(chain)-1].h
	coarseSlackW := max(maxWeight(coarse), int64(coarseSlack*float64(total)))
	var bestObj float64
	tries := initialTries
	if len(chain) == 1 {
		// Not coarsened: a small subproblem, where starts are cheap and
		// a single local optimum is a gamble; the smaller, the more
		// starts.
		tries = max(initialTries, min(smallTries, smallTriesWork/max(fine.nv, 1)))
	}
	for try := range tries {
		s := randomSplit(coarse, target0, func(v uint32) uint64 {
			return randFor(o.Seed, sub, uint64(try)<<32|initSalt, v)
		})
		c := sideCounts(coarse, s, 1)
		m := refineSides(coarse, s, c, pw, target0, coarseSlackW, 4*o.Iterations, 1)
		if len(chain) == 1 {
			// The start is the fine level itself: finish it here, so
			// that the tries compete on what they deliver.
			m += refineSides(fine, s, c, pw, target0, 1, o.Iterations, 1)
			exactSizes(fine, s, c, pw, target0)
		}
		obj := pfanoutTotal(coarse, c, pw)
		if try == 0 || obj < bestObj-gainEpsilon {
			bestObj, side, cnt, moved = obj, s, c, m
		}
	}

	// Uncoarsen: project, then refine with the slack shrinking to one
	// user at the finest level.
	for l := len(chain) - 1; l > 0; l-- {
		finer := chain[l-1].h
		cmap := chain[l].cmap
		fs := make([]uint8, finer.nv)
		for v, c := range cmap {
			fs[v] = side[c]
		}
		side = fs
		cnt = sideCounts(finer, side, workers)
		slack := int64(1)
		if l-1 > 0 {
			slack = max(maxWeight(finer), int64(coarseSlack*float64(total)*float64(l-1)/float64(len(chain))))
		}
		iters := o.Iterations / 2
		if l-1 == 0 {
			iters = o.Iterations
		}
		m := refineSides(finer, side, cnt, pw, target0, slack, iters, workers)
		if l-1 == 0 {
			moved = m
		}
		chain[l].h = nil
	}
	exactSizes(fine, side, cnt, pw, target0)
	return side, cnt, moved
}

// maxWeight returns the weight of h's heaviest vertex: a level's slack
// must allow moving it.
func maxWeight(h *hgraph) int64 {
	m := int64(1)
	for _, w := range h.vw {
		m = max(m, int64(w))
	}
	return m
}

// Salts that keep the random choices of different purposes apart.
const (
	coarsenSalt = 0x636f6172 // "coar"
	initSalt    = 0x696e6974 // "init"
)

// adjacency returns the follow edges inside b as a weighted undirected
// graph: an edge in both directions weighs 2.
func (b *bisection) adjacency() (off, adj, w []uint32) {
	h := &b.h
	deg := make([]uint32, h.nv+1)
	for q := range h.nq() {
		if !b.owned[q] {
			continue
		}
		mem := h.qMem[h.qOff[q]:h.qOff[q+1]]
		deg[mem[0]+1] += uint32(len(mem) - 1)
		for _, m := range mem[1:] {
			deg[m+1]++
		}
	}
	for v := 1; v <= h.nv; v++ {
		deg[v] += deg[v-1]
	}
	adj = make([]uint32, deg[h.nv])
	fill := slices.Clone(deg[:h.nv])
	for q := range h.nq() {
		if !b.owned[q] {
			continue
		}
		mem := h.qMem[h.qOff[q]:h.qOff[q+1]]
		o := mem[0]
		for _, m := range mem[1:] {
			adj[fill[o]] = m
			fill[o]++
			adj[fill[m]] = o
			fill[m]++
		}
	}
	// Merge repeats (mutual follows) into weights, compacting in place.
	off = make([]uint32, h.nv+1)
	w = make([]uint32, len(adj))
	x := uint32(0)
	for v := range h.nv {
		list := adj[deg[v]:deg[v+1]]
		slices.Sort(list)
		off[v] = x
		for i, u := range list {
			if i > 0 && u == list[i-1] {
				w[x-1]++
				continue
			}
			adj[x], w[x] = u, 1
			x++
		}
	}
	off[h.nv] = x
	return off, adj[:x], w[:x]
}

// coarsen clusters h's vertices: in a random order, each vertex not yet in
// a cluster joins the neighbour (or the neighbour's cluster) it has the
// heaviest edges to relative to both weights, unless that would make a
// cluster heavier than maxW. It returns each vertex's cluster and the
// number of clusters.
func coarsen(h *hgraph, maxW uint32, key func(uint32) uint64) (cmap []uint32, nc int) {
	order := keyOrder(h.nv, key)
	const none uint32 = noMove
	cmap = make([]uint32, h.nv)
	for i := range cmap {
		cmap[i] = none
	}
	var cw, rep []uint32            // per cluster: weight, a member
	rating := make([]float64, h.nv) // by representative vertex
	var touched []uint32
	for _, v := range order {
		if cmap[v] != none {
			continue
		}
		wv := h.weight(v)
		touched = touched[:0]
		for i := h.eOff[v]; i < h.eOff[v+1]; i++ {
			u := h.eAdj[i]
			r, wt := u, h.weight(u)
			if c := cmap[u]; c != none {
				r, wt = rep[c], cw[c]
			}
			if wt+wv > maxW {
				continue
			}
			if rating[r] == 0 {
				touched = append(touched, r)
			}
			rating[r] += float64(h.eW[i]) / float64(wt)
		}
		best, bestR := none, 0.0
		for _, r := range touched {
			if rating[r] > bestR {
				best, bestR = r, rating[r]
			}
			rating[r] = 0
		}
		switch {
		case best == none:
			cmap[v] = uint32(len(cw))
			cw = append(cw, wv)
			rep = append(rep, v)
		case cmap[best] != none:
			c := cmap[best]
			cmap[v] = c
			cw[c] += wv
		default:
			c := uint32(len(cw))
			cmap[v], cmap[best] = c, c
			cw = append(cw, wv+h.weight(best))
			rep = append(rep, best)
		}
	}
	return cmap, len(cw)
}

// contract builds the hypergraph of clusters: vertex weights add up, each
// query's members become clusters with multiplicities, and queries that
// fall within one cluster are dropped (nothing can split them any more).
// The adjacency is contracted too, for the next coarsening. Queries are
// contracted in parallel over contiguous ranges, concatenated in order.
func contract(h *hgraph, cmap []uint32, nc int, workers int) *hgraph {
	c := &hgraph{nv: nc, vw: make([]uint32, nc)}
	for v := range h.nv {
		c.vw[cmap[v]] += h.weight(uint32(v))
	}
	type chunk struct{ off, mem, mul []uint32 }
	nq := h.nq()
	parts := max(1, min(workers, nq/4096))
	chunks := make([]chunk, parts)
	var wg sync.WaitGroup
	for w := range parts {
		wg.Go(func() {
			lo, hi := nq*w/parts, nq*(w+1)/parts
			ch := chunk{mem: make([]uint32, 0, h.qOff[hi]-h.qOff[lo]), mul: make([]uint32, 0, h.qOff[hi]-h.qOff[lo])}
			// seen[cl] = q+1 while query q is being contracted; pos[cl]
			// is where its multiplicity sits.
			seen := make([]uint32, nc)
			pos := make([]uint32, nc)
			for q := lo; q < hi; q++ {
				start := len(ch.mem)
				for i := h.qOff[q]; i < h.qOff[q+1]; i++ {
					m := uint32(1)
					if h.qMul != nil {
						m = h.qMul[i]
					}
					cl := cmap[h.qMem[i]]
					if seen[cl] == uint32(q)+1 {
						ch.mul[pos[cl]] += m
						continue
					}
					seen[cl], pos[cl] = uint32(q)+1, uint32(len(ch.mem))
					ch.mem = append(ch.mem, cl)
					ch.mul = append(ch.mul, m)
				}
				if len(ch.mem)-start < 2 {
					ch.mem, ch.mul = ch.mem[:start], ch.mul[:start]
					continue
				}
				ch.off = append(ch.off, uint32(len(ch.mem)-start))
			}
			chunks[w] = ch
		})
	}
	wg.Wait()
	pins, queries := 0, 0
	for _, ch := range chunks {
		pins += len(ch.mem)
		queries += len(ch.off)
	}
	c.qOff = make([]uint32, 1, queries+1)
	c.qMem = make([]uint32, 0, pins)
	c.qMul = make([]uint32, 0, pins)
	for i, ch := range chunks {
		for _, n := range ch.off {
			c.qOff = append(c.qOff, c.qOff[len(c.qOff)-1]+n)
		}
		c.qMem = append(c.qMem, ch.mem...)
		c.qMul = append(c.qMul, ch.mul...)
		chunks[i] = chunk{}
	}
	c.transpose()

	// Adjacency between clusters, weights summed.
	members := make([]uint32, nc+1)
	for _, cl := range cmap {
		members[cl+1]++
	}
	for i := 1; i <= nc; i++ {
		members[i] += members[i-1]
	}
	byCluster := make([]uint32, h.nv)
	fill := slices.Clone(members[:nc])
	for v, cl := range cmap {
		byCluster[fill[cl]] = uint32(v)
		fill[cl]++
	}
	acc := make([]uint32, nc)
	var touched []uint32
	c.eOff = make([]uint32, nc+1)
	c.eAdj = make([]uint32, 0, len(h.eAdj)/2)
	c.eW = make([]uint32, 0, len(h.eAdj)/2)
	for cl := range nc {
		touched = touched[:0]
		for _, v := range byCluster[members[cl]:members[cl+1]] {
			for i := h.eOff[v]; i < h.eOff[v+1]; i++ {
				d := cmap[h.eAdj[i]]
				if d == uint32(cl) {
					continue
				}
				if acc[d] == 0 {
					touched = append(touched, d)
				}
				acc[d] += h.eW[i]
			}
		}
		// touched is in first-seen order, which is deterministic; the
		// order of a vertex's neighbours does not matter to anyone.
		for _, d := range touched {
			c.eAdj = append(c.eAdj, d)
			c.eW = append(c.eW, acc[d])
			acc[d] = 0
		}
		c.eOff[cl+1] = uint32(len(c.eAdj))
	}
	return c
}

// keyOrder is vertices 0..n-1 sorted by key: a random order that the seed,
// not the scheduler, decides.
func keyOrder(n int, key func(uint32) uint64) []uint32 {
	order := make([]uint32, n)
	keys := make([]uint64, n)
	for v := range order {
		order[v] = uint32(v)
		keys[v] = key(uint32(v))
	}
	slices.SortFunc(order, func(x, y uint32) int { return cmp.Compare(keys[x], keys[y]) })
	return order
}

// randomSplit puts vertices in a random order on side 0 until it holds
// target0 users, the rest on side 1.
func randomSplit(h *hgraph, target0 int64, key func(uint32) uint64) []uint8 {
	order := keyOrder(h.nv, key)
	side := make([]uint8, h.nv)
	w0 := int64(0)
	for _, v := range order {
		if w0 < target0 {
			w0 += int64(h.weight(v))
		} else {
			side[v] = 1
		}
	}
	return side
}

// sideCounts returns, for every query, the users (multiplicities) it has
// on each side: cnt[2q+s].
func sideCounts(h *hgraph, side []uint8, workers int) []uint32 {
	cnt := make([]uint32, 2*h.nq())
	parallelFor(h.nq(), workers, func(lo, hi int) {
		for q := lo; q < hi; q++ {
			for i := h.qOff[q]; i < h.qOff[q+1]; i++ {
				m := uint32(1)
				if h.qMul != nil {
					m = h.qMul[i]
				}
				cnt[2*q+int(side[h.qMem[i]])] += m
			}
		}
	})
	return cnt
}

// pfanoutTotal returns the total p-fanout of the queries of h.
func pfanoutTotal(h *hgraph, cnt []uint32, pw []float64) float64 {
	s := 0.0
	for q := range h.nq() {
		s += 2 - pw[cnt[2*q]] - pw[cnt[2*q+1]]
	}
	return s
}

// computeGains sets gain[v] to the p-fanout decrease of moving v to the
// other side. A vertex with multiplicity m in a query with n_s members on
// its side and n_t on the other changes the query's p-fanout by
// (1-r^m)(r^(n_s-m) - r^n_t), r = 1-p.
func computeGains(h *hgraph, side []uint8, cnt []uint32, pw []float64, gain []float64, workers int) {
	p := 1 - pw[1]
	parallelFor(h.nv, workers, func(lo, hi int) {
		for v := lo; v < hi; v++ {
			s := uint32(side[v])
			g := 0.0
			for i := h.vOff[v]; i < h.vOff[v+1]; i++ {
				q := h.vQ[i]
				ns, nt := cnt[2*q+s], cnt[2*q+1-s]
				if h.vMul == nil {
					g += pw[ns-1] - pw[nt]
				} else {
					m := h.vMul[i]
					g += (1 - pw[m]) * (pw[ns-m] - pw[nt])
				}
			}
			if h.vMul == nil {
				g *= p // 1-r^m for m = 1, taken out of the sum
			}
			gain[v] = g
		}
	})
}

// moveSide switches v's side and updates the query counts.
func moveSide(h *hgraph, side []uint8, cnt []uint32, v uint32) {
	s := uint32(side[v])
	side[v] = uint8(1 - s)
	for i := h.vOff[v]; i < h.vOff[v+1]; i++ {
		q := h.vQ[i]
		m := uint32(1)
		if h.vMul != nil {
			m = h.vMul[i]
		}
		cnt[2*q+s] -= m
		cnt[2*q+1-s] += m
	}
}

// refineSides runs up to iters move rounds on h. Each round computes all
// gains, brings side 0's weight within target0 ± slack if it is not (the
// heavy side's best vertices move, whatever their gain), then moves
// vertices with a positive gain, best first, taking from whichever side
// offers the better next move as long as the weights stay within bounds.
// It returns the number of moves.
func refineSides(h *hgraph, side []uint8, cnt []uint32, pw []float64, target0, slack int64, iters, workers int) int {
	gain := make([]float64, h.nv)
	var w0 int64
	for v, s := range side {
		if s == 0 {
			w0 += int64(h.weight(uint32(v)))
		}
	}
	lo0, hi0 := target0-slack, target0+slack
	var cand [2][]uint32
	byGain := func(x, y uint32) int {
		if c := cmp.Compare(gain[y], gain[x]); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	}
	moved := 0
	for range iters {
		computeGains(h, side, cnt, pw, gain, workers)
		if w0 < lo0 || w0 > hi0 {
			heavy := uint8(0)
			if w0 < lo0 {
				heavy = 1
			}
			var c []uint32
			for v, s := range side {
				if s == heavy {
					c = append(c, uint32(v))
				}
			}
			slices.SortFunc(c, byGain)
			for _, v := range c {
				if w0 >= lo0 && w0 <= hi0 {
					break
				}
				wv := int64(h.weight(v))
				if heavy == 0 && w0-wv < lo0 || heavy == 1 && w0+wv > hi0 {
					continue // would overshoot to the other bound
				}
				moveSide(h, side, cnt, v)
				moved++
				if heavy == 0 {
					w0 -= wv
				} else {
					w0 += wv
				}
			}
			continue
		}
		cand[0], cand[1] = cand[0][:0], cand[1][:0]
		for v, g := range gain {
			if g > gainEpsilon {
				cand[side[v]] = append(cand[side[v]], uint32(v))
			}
		}
		if len(cand[0])+len(cand[1]) == 0 {
			break
		}
		slices.SortFunc(cand[0], byGain)
		slices.SortFunc(cand[1], byGain)
		fits := func(s int, v uint32) bool {
			wv := int64(h.weight(v))
			if s == 0 {
				return w0-wv >= lo0
			}
			return w0+wv <= hi0
		}
		i := [2]int{}
		round := 0
		for i[0] < len(cand[0]) || i[1] < len(cand[1]) {
			// The side whose next candidate gains more goes first; if its
			// move does not fit, the other side's may.
			first := 0
			if i[0] == len(cand[0]) || (i[1] < len(cand[1]) && gain[cand[1][i[1]]] > gain[cand[0][i[0]]]) {
				first = 1
			}
			done := false
			for _, s := range [2]int{first, 1 - first} {
				if i[s] == len(cand[s]) {
					continue
				}
				v := cand[s][i[s]]
				if !fits(s, v) {
					continue
				}
				moveSide(h, side, cnt, v)
				if s == 0 {
					w0 -= int64(h.weight(v))
				} else {
					w0 += int64(h.weight(v))
				}
				i[s]++
				round++
				done = true
				break
			}
			if !done {
				break
			}
		}
		moved += round
		if round == 0 {
			break
		}
	}
	return moved
}

// exactSizes moves the best vertices of the heavy side of the finest
// level (unit weights) until side 0 holds exactly target0 users.
func exactSizes(h *hgraph, side []uint8, cnt []uint32, pw []float64, target0 int64) {
	var w0 int64
	for _, s := range side {
		if s == 0 {
			w0++
		}
	}
	if w0 == target0 {
		return
	}
	refineSides(h, side, cnt, pw, target0, 0, 1, 1)
}

// gainEpsilon is the smallest gain worth a move: sums of powers that
// cancel exactly in arithmetic can leave a rounding residue in floating
// point, and a move on a residue is a move for nothing.
const gainEpsilon = 1e-9

// split makes the two children of b after run: each side's users, and the
// queries with at least two members on that side, renumbered. A child of
// a single bucket only needs its users.
func (b *bisection) split(side []uint8, cnt []uint32) (c0, c1 *bisection) {
	h := &b.h
	mid := b.lo + (b.hi-b.lo)/2
	children := [2]*bisection{{lo: b.lo, hi: mid}, {lo: mid, hi: b.hi}}
	local := make([]uint32, h.nv)
	var size [2]int
	for v := range h.nv {
		size[side[v]]++
	}
	for s, c := range children {
		c.verts = make([]uint32, 0, size[s])
	}
	for v, s := range side {
		c := children[s]
		local[v] = uint32(len(c.verts))
		c.verts = append(c.verts, b.verts[v])
	}
	for s, c := range children {
		if c.hi-c.lo == 1 || len(c.verts) == 0 {
			continue
		}
		nqc, pins := 0, 0
		for q := range h.nq() {
			if n := cnt[2*q+s]; n >= 2 {
				nqc++
				pins += int(n)
			}
		}
		ch := &c.h
		ch.nv = len(c.verts)
		ch.qOff = make([]uint32, 0, nqc+1)
		ch.qMem = make([]uint32, 0, pins)
		c.owned = make([]bool, 0, nqc)
		for q := range h.nq() {
			if cnt[2*q+s] < 2 {
				continue
			}
			ch.qOff = append(ch.qOff, uint32(len(ch.qMem)))
			mem := h.qMem[h.qOff[q]:h.qOff[q+1]]
			// The owner, when there is one, is first and stays first.
			c.owned = append(c.owned, b.owned[q] && int(side[mem[0]]) == s)
			for _, m := range mem {
				if int(side[m]) == s {
					ch.qMem = append(ch.qMem, local[m])
				}
			}
		}
		ch.qOff = append(ch.qOff, uint32(len(ch.qMem)))
		ch.transpose()
	}
	return children[0], children[1]
}

// parallelFor calls fn on consecutive ranges covering [0, n), from up to
// workers goroutines. Ranges are small enough to balance the load; which
// goroutine takes which range does not matter to any caller, since each
// index is computed on its own.
func parallelFor(n, workers int, fn func(lo, hi int)) {
	const minChunk = 4096
	if workers <= 1 || n <= minChunk {
		fn(0, n)
		return
	}
	chunk := max(minChunk, n/(workers*16))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= n {
					return
				}
				fn(lo, min(lo+chunk, n))
			}
		})
	}
	wg.Wait()
}
