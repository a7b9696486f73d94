package loadtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// Defaults of GraphOptions, applied by GenerateGraph where a field is zero.
const (
	DefaultGraphUsers         = 1000
	DefaultGraphDegree        = 20  // edges per user when Edges is 0
	DefaultCommunitySize      = 200 // about one bucket of a 1M-user, 4096-bucket deployment
	DefaultCommunitiesPerArea = 32
	DefaultInsideShare        = 0.70
	DefaultAreaShare          = 0.15
	// maxOutDegree caps how many accounts one user follows, as networks
	// do.
	maxOutDegree = 5000
)

// GraphOptions describes a generated follower graph. Zero fields take
// their defaults.
type GraphOptions struct {
	// Users is the number of users, numbered 0..Users-1. Default
	// DefaultGraphUsers.
	Users int
	// Edges is the number of distinct follow edges. Default
	// DefaultGraphDegree·Users. A graph too small to hold them all (a
	// community cannot hold more than its size) gets fewer.
	Edges int64
	// Seed makes the graph: the same options and seed write the same
	// bytes.
	Seed uint64
	// CommunitySize is the average community size; sizes are uniform in
	// [size/2, 3·size/2]. Default DefaultCommunitySize.
	CommunitySize int
	// CommunitiesPerArea groups communities into areas (a city, a
	// school): the next ring of follows. Default DefaultCommunitiesPerArea.
	CommunitiesPerArea int
	// InsideShare is the share of a user's follows inside its community,
	// AreaShare inside its area; the rest go to popular accounts anywhere.
	// Defaults DefaultInsideShare and DefaultAreaShare; negative means 0.
	InsideShare float64
	AreaShare   float64
}

func (o GraphOptions) withDefaults() (GraphOptions, error) {
	if o.Users == 0 {
		o.Users = DefaultGraphUsers
	}
	if o.Users < 2 || o.Users > math.MaxUint32 {
		return o, fmt.Errorf("loadtest: graph: Users must be between 2 and %d, got %d", uint64(math.MaxUint32), o.Users)
	}
	if o.Edges == 0 {
		o.Edges = DefaultGraphDegree * int64(o.Users)
	}
	if o.Edges < 0 {
		return o, fmt.Errorf("loadtest: graph: Edges must not be negative, got %d", o.Edges)
	}
	if o.CommunitySize == 0 {
		o.CommunitySize = DefaultCommunitySize
	}
	if o.CommunitySize < 2 {
		return o, fmt.Errorf("loadtest: graph: CommunitySize must be at least 2, got %d", o.CommunitySize)
	}
	if o.CommunitiesPerArea == 0 {
		o.CommunitiesPerArea = DefaultCommunitiesPerArea
	}
	if o.CommunitiesPerArea < 1 {
		return o, fmt.Errorf("loadtest: graph: CommunitiesPerArea must be positive, got %d", o.CommunitiesPerArea)
	}
	if o.InsideShare == 0 {
		o.InsideShare = DefaultInsideShare
	}
	if o.AreaShare == 0 {
		o.AreaShare = DefaultAreaShare
	}
	o.InsideShare, o.AreaShare = max(o.InsideShare, 0), max(o.AreaShare, 0)
	if o.InsideShare+o.AreaShare > 1 {
		return o, errors.New("loadtest: graph: InsideShare + AreaShare must be at most 1")
	}
	return o, nil
}

// GenerateGraph writes a directed follower graph as an edge list, one
// "follower followee" line per edge after a '#' header, deterministic by
// opts.Seed. It is the social-graph workload of the partitioner:
//
//   - users live in planted communities (uniform sizes around
//     CommunitySize), grouped into areas of CommunitiesPerArea; which user
//     is in which community is random, so ids say nothing about it;
//   - how many accounts a user follows is heavy-tailed (log-normal, capped
//     at 5,000), scaled so that the edges add up to opts.Edges;
//   - each follow goes inside the follower's community with probability
//     InsideShare, inside its area with AreaShare, and otherwise to a
//     popular account: account ranks are a random permutation and rank k
//     is drawn with probability about 1/k (Zipf), so a few accounts gather
//     a large share of all followers across communities.
//
// No edge repeats and no user follows itself. Memory is a few bytes per
// user; edges stream to w.
func GenerateGraph(w io.Writer, opts GraphOptions) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	n := o.Users
	r := graphRand{state: o.Seed ^ 0x6772617068} // "graph"

	// Communities: consecutive runs of a random permutation of the users.
	perm := make([]uint32, n)
	for i := range perm {
		perm[i] = uint32(i)
	}
	r.shuffle(perm)
	var starts []int // community c is perm[starts[c]:starts[c+1]]
	for s := 0; s < n; {
		starts = append(starts, s)
		size := o.CommunitySize/2 + int(r.next()%uint64(o.CommunitySize+1))
		s = min(n, s+max(size, 2))
	}
	starts = append(starts, n)
	comm := make([]uint32, n) // community of each user
	for c := range len(starts) - 1 {
		for _, u := range perm[starts[c]:starts[c+1]] {
			comm[u] = uint32(c)
		}
	}
	area := func(c int) (lo, hi int) { // the users of c's area, in perm
		a := c / o.CommunitiesPerArea
		return starts[a*o.CommunitiesPerArea], starts[min((a+1)*o.CommunitiesPerArea, len(starts)-1)]
	}
	// Popularity: another permutation; popular[k] has rank k.
	popular := make([]uint32, n)
	copy(popular, perm)
	r.shuffle(popular)

	// Out-degrees: log-normal weights scaled to the edge count, the
	// remainder spread one by one.
	const sigma = 1.0
	weights := make([]float64, n)
	total := 0.0
	for u := range weights {
		weights[u] = math.Exp(sigma * r.normal())
		total += weights[u]
	}
	deg := make([]uint32, n)
	assigned := int64(0)
	for u := range deg {
		d := min(int64(float64(o.Edges)*weights[u]/total), maxOutDegree, int64(n-1))
		deg[u] = uint32(d)
		assigned += d
	}
	weights = nil
	for u := 0; assigned < o.Edges && u < 64*n; u++ {
		if v := u % n; deg[v] < min(maxOutDegree, uint32(n-1)) {
			deg[v]++
			assigned++
		}
	}

	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintf(bw, "# socialroute generated follower graph: users=%d edges=%d seed=%d community_size=%d inside=%.2f area=%.2f\n",
		n, o.Edges, o.Seed, o.CommunitySize, o.InsideShare, o.AreaShare)
	fmt.Fprintf(bw, "# follower followee\n")
	logN := math.Log(float64(n) + 1)
	var targets []uint32
	var line []byte
	deficit := int64(0) // edges a saturated user could not take, passed on
	for u := range n {
		c := int(comm[u])
		cLo, cHi := starts[c], starts[c+1]
		aLo, aHi := area(c)
		want := int(deg[u])
		if deficit > 0 {
			extra := min(deficit, int64(min(maxOutDegree, n-1)-want))
			want += int(extra)
			deficit -= extra
		}
		targets = targets[:0]
		draw := func() uint32 {
			x := r.float()
			switch {
			case x < o.InsideShare:
				return perm[cLo+int(r.next()%uint64(cHi-cLo))]
			case x < o.InsideShare+o.AreaShare:
				return perm[aLo+int(r.next()%uint64(aHi-aLo))]
			}
			// Log-uniform rank: P(rank k) ~ 1/k.
			k := int(math.Exp(r.float()*logN)) - 1
			return popular[min(k, n-1)]
		}
		for attempt := 0; len(targets) < want && attempt < 8; attempt++ {
			for len(targets) < want {
				if v := draw(); v != uint32(u) {
					targets = append(targets, v)
				}
			}
			slices.Sort(targets)
			targets = slices.Compact(targets)
		}
		deficit += int64(want - len(targets))
		for _, v := range targets {
			line = strconv.AppendUint(line[:0], uint64(u), 10)
			line = append(line, ' ')
			line = strconv.AppendUint(line, uint64(v), 10)
			line = append(line, '\n')
			if _, err := bw.Write(line); err != nil {
				return fmt.Errorf("loadtest: write graph: %w", err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("loadtest: write graph: %w", err)
	}
	return nil
}

// graphRand is a splitmix64 generator: tiny, fast, and the same sequence on
// every platform, which is what makes a seed reproduce a graph.
type graphRand struct{ state uint64 }

func (r *graphRand) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float returns a uniform value in [0, 1).
func (r *graphRand) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// normal returns a standard normal value (Box-Muller).
func (r *graphRand) normal() float64 {
	u1 := 1 - r.float() // (0, 1]
	u2 := r.float()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// shuffle permutes s uniformly (Fisher-Yates).
func (r *graphRand) shuffle(s []uint32) {
	for i := len(s) - 1; i > 0; i-- {
		j := int(r.next() % uint64(i+1))
		s[i], s[j] = s[j], s[i]
	}
}
