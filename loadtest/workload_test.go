package loadtest

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/socialroute/socialroute/hashing"
)

// testGraph is a generated graph shared by the tests that only read it.
var testGraph = sync.OnceValues(func() (*hashing.Graph, error) {
	return GenerateFollowerGraph(GraphOptions{Users: 5000, Seed: 7, CommunitySize: 50})
})

func mustGraph(t *testing.T) *hashing.Graph {
	t.Helper()
	g, err := testGraph()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// within fails t unless got is within tol of want.
func within(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.4f, want %.4f ± %.4f", what, got, want, tol)
	}
}

// The generated graph has what the workload relies on: follower counts
// with a heavy tail (a few accounts gather a large share of all follows:
// hot accounts), out-degrees that vary a lot, and communities (a user's
// followees mostly follow each other).
func TestGeneratedGraphDistributions(t *testing.T) {
	g := mustGraph(t)
	n := g.Users()
	if n < 4900 || g.Edges() < 90_000 {
		t.Fatalf("graph of %d users and %d edges, want about 5000 and 100000", n, g.Edges())
	}
	followers := make([]int, n)
	outdeg := make([]int, n)
	for i := range n {
		followers[i] = len(g.Followers(i))
		outdeg[i] = len(g.Following(i))
	}
	slices.Sort(followers)
	slices.Sort(outdeg)
	total := 0
	for _, f := range followers {
		total += f
	}
	top1 := 0
	for _, f := range followers[n-n/100:] {
		top1 += f
	}
	// Power law: the top 1% of accounts hold far more than 1% of follows,
	// and the most followed has many times the median.
	if share := float64(top1) / float64(total); share < 0.08 {
		t.Errorf("the top 1%% of accounts hold %.1f%% of follows, want a heavy tail (> 8%%)", 100*share)
	}
	if top, med := followers[n-1], followers[n/2]; top < 10*med {
		t.Errorf("most followed account has %d followers, median %d: want a heavy tail", top, med)
	}
	// Out-degrees are log-normal: a wide spread around the mean.
	if p10, p90 := outdeg[n/10], outdeg[9*n/10]; p90 < 3*max(p10, 1) {
		t.Errorf("out-degree p10 %d p90 %d: want a wide spread", p10, p90)
	}
	// Communities: of a user's followees, many follow another of them,
	// which a graph without communities (5000 users, 20 follows each)
	// would make about 20/5000 = 0.4% likely.
	linked, pairs := 0, 0
	for u := 0; u < n; u += 7 {
		f := g.Following(u)
		for i := 0; i < len(f) && i < 10; i++ {
			for j := 0; j < len(f) && j < 10; j++ {
				if i == j {
					continue
				}
				pairs++
				if _, ok := slices.BinarySearch(g.Following(int(f[i])), f[j]); ok {
					linked++
				}
			}
		}
	}
	if share := float64(linked) / float64(pairs); share < 0.05 {
		t.Errorf("only %.2f%% of followee pairs are linked; planted communities should make it far above 0.4%%", 100*share)
	}
}

// The workload's requests follow its options: the mix of kinds, the
// origins, uniform viewers, profile targets among the viewer's followees,
// hot targets among the most followed.
func TestWorkloadDistributions(t *testing.T) {
	g := mustGraph(t)
	wl, err := NewWorkload(g, WorkloadOptions{
		Seed: 3, Mix: Mix{Feed: 0.6, Profile: 0.3, Hot: 0.1}, HotAccounts: 20,
		Origins: []Origin{{"us", 3}, {"eu", 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	hotIDs, hotFollowers := wl.HotAccounts()
	if len(hotIDs) != 20 || !slices.IsSortedFunc(hotFollowers, func(a, b int) int { return b - a }) {
		t.Fatalf("hot accounts %v with followers %v: want 20, most followed first", hotIDs, hotFollowers)
	}
	// The hot accounts are the most followed: none outside has more
	// followers than the least followed inside.
	for i := range g.Users() {
		if !slices.Contains(hotIDs, g.ID(i)) && len(g.Followers(i)) > hotFollowers[len(hotFollowers)-1] {
			t.Fatalf("user %d has %d followers but is not hot", g.ID(i), len(g.Followers(i)))
		}
	}

	const n = 100_000
	var kinds [numKinds]int
	origins := make([]int, 2)
	deciles := make([]int, 10)
	var r Request
	for i := range uint64(n) {
		wl.Request(i, &r)
		kinds[r.Kind]++
		origins[r.Origin]++
		vi, ok := g.Index(r.Viewer)
		if !ok {
			t.Fatalf("request %d: viewer %d is not in the graph", i, r.Viewer)
		}
		deciles[vi*10/g.Users()]++
		switch r.Kind {
		case KindProfile:
			ai, _ := g.Index(r.Account)
			if f := g.Following(vi); len(f) > 0 && !slices.Contains(f, uint32(ai)) {
				t.Fatalf("request %d: profile of %d, whom viewer %d does not follow", i, r.Account, r.Viewer)
			}
		case KindHot:
			if !slices.Contains(hotIDs, r.Account) {
				t.Fatalf("request %d: hot request for %d, not a hot account", i, r.Account)
			}
		}
		if r.Key() != r.Viewer && r.Kind == KindFeed || r.Key() != r.Account && r.Kind != KindFeed {
			t.Fatalf("request %d: key %d for a %s request", i, r.Key(), r.Kind)
		}
	}
	// Binomial standard deviations at n = 100000 are below 0.2%.
	within(t, "feed share", float64(kinds[KindFeed])/n, 0.6, 0.01)
	within(t, "profile share", float64(kinds[KindProfile])/n, 0.3, 0.01)
	within(t, "hot share", float64(kinds[KindHot])/n, 0.1, 0.01)
	within(t, "us origin share", float64(origins[0])/n, 0.75, 0.01)
	for d, c := range deciles {
		within(t, "viewers in decile "+string(rune('0'+d)), float64(c)/n, 0.1, 0.01)
	}
	got := wl.Origins()
	if len(got) != 2 || got[0].Continent != "us" || math.Abs(got[0].Share-0.75) > 1e-9 {
		t.Errorf("Origins() = %+v, want us 0.75, eu 0.25", got)
	}
}

// Request i is a function of the seed and i only: two workloads with the
// same seed agree, another seed differs, and the order of calls does not
// matter.
func TestWorkloadIsDeterministic(t *testing.T) {
	g := mustGraph(t)
	a, _ := NewWorkload(g, WorkloadOptions{Seed: 1})
	b, _ := NewWorkload(g, WorkloadOptions{Seed: 1})
	c, _ := NewWorkload(g, WorkloadOptions{Seed: 2})
	var ra, rb, rc Request
	same := 0
	for i := uint64(999); i < 2000; i-- { // backwards: order must not matter
		a.Request(i, &ra)
		b.Request(i, &rb)
		c.Request(i, &rc)
		if ra != rb {
			t.Fatalf("request %d differs between workloads with one seed: %+v %+v", i, ra, rb)
		}
		if ra == rc {
			same++
		}
	}
	if same > 10 {
		t.Errorf("%d of 1000 requests are the same with another seed", same)
	}
	if s := string(ra.AppendPath(nil)); !strings.HasPrefix(s, "/users/") && !strings.HasPrefix(s, "/accounts/") {
		t.Errorf("path %q", s)
	}
}

func TestParseMixOriginsTargets(t *testing.T) {
	m, err := ParseMix("feed=0.5, hot=0.5")
	if err != nil || m != (Mix{Feed: 0.5, Hot: 0.5}) {
		t.Errorf("ParseMix = %+v, %v", m, err)
	}
	for _, bad := range []string{"", "feed", "feed=x", "walk=1", "feed=-1", "feed=0,hot=0"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
	o, err := ParseOrigins("us=2,eu=1")
	if err != nil || len(o) != 2 || o[1] != (Origin{"eu", 1}) {
		t.Errorf("ParseOrigins = %+v, %v", o, err)
	}
	for _, bad := range []string{"us", "us=1,us=2", "us=-1", "us=0"} {
		if _, err := ParseOrigins(bad); err == nil {
			t.Errorf("ParseOrigins(%q) accepted", bad)
		}
	}
	ts, err := ParseTargets("127.0.0.1:1, eu=127.0.0.2:2")
	if err != nil || len(ts) != 2 || ts[0] != (Target{Addr: "127.0.0.1:1"}) || ts[1] != (Target{"eu", "127.0.0.2:2"}) {
		t.Errorf("ParseTargets = %+v, %v", ts, err)
	}
	for _, bad := range []string{"", "localhost", "us=nowhere"} {
		if _, err := ParseTargets(bad); err == nil {
			t.Errorf("ParseTargets(%q) accepted", bad)
		}
	}
	if _, err := NewWorkload(mustGraph(t), WorkloadOptions{HotAccounts: -1}); err == nil {
		t.Error("NewWorkload with -1 hot accounts accepted")
	}
}
