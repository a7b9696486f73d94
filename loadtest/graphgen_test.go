package loadtest

import (
	"bufio"
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func generateGraphBytes(t *testing.T, o GraphOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := GenerateGraph(&buf, o); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// parseEdges returns the graph's edges as follower<<32|followee.
func parseGraphEdges(t *testing.T, b []byte) []uint64 {
	t.Helper()
	var edges []uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("bad line %q", line)
		}
		u, err1 := strconv.ParseUint(f[0], 10, 32)
		v, err2 := strconv.ParseUint(f[1], 10, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad line %q", line)
		}
		edges = append(edges, u<<32|v)
	}
	return edges
}

func TestGenerateGraph(t *testing.T) {
	o := GraphOptions{Users: 5000, Edges: 60000, Seed: 3}
	b := generateGraphBytes(t, o)
	if !bytes.Equal(b, generateGraphBytes(t, o)) {
		t.Fatal("the same seed wrote another graph")
	}
	o.Seed = 4
	if bytes.Equal(b, generateGraphBytes(t, o)) {
		t.Fatal("another seed wrote the same graph")
	}

	edges := parseGraphEdges(t, b)
	if len(edges) != 60000 {
		t.Errorf("%d edges, want 60000", len(edges))
	}
	followers := make([]int, 5000)
	sorted := slices.Clone(edges)
	slices.Sort(sorted)
	for i, e := range sorted {
		u, v := e>>32, e&0xFFFFFFFF
		if u == v || u >= 5000 || v >= 5000 {
			t.Fatalf("edge %d -> %d: self-loop or out of range", u, v)
		}
		if i > 0 && e == sorted[i-1] {
			t.Fatalf("edge %d -> %d repeats", u, v)
		}
		followers[v]++
	}
	// Popular accounts: the most followed has many times the average.
	slices.Sort(followers)
	if top, avg := followers[len(followers)-1], 60000/5000; top < 20*avg {
		t.Errorf("most followed account has %d followers, want well above the average %d", top, avg)
	}
}

// Most follows stay inside a community. Measured without knowing the
// communities: inside small communities a follow is often returned, so the
// share of mutual follows is far above a random graph's.
func TestGenerateGraphCommunities(t *testing.T) {
	const users = 4000
	b := generateGraphBytes(t, GraphOptions{Users: users, Edges: 40000, Seed: 1, CommunitySize: 40})
	edges := parseGraphEdges(t, b)
	set := make(map[uint64]bool, len(edges))
	for _, e := range edges {
		set[e] = true
	}
	mutual := 0
	for _, e := range edges {
		if set[(e&0xFFFFFFFF)<<32|e>>32] {
			mutual++
		}
	}
	// At random, a follow is returned with probability edges/users² =
	// 0.25%; inside communities of about 40, with about 10·0.7 follows
	// each, about 17%.
	if share := float64(mutual) / float64(len(edges)); share < 0.05 {
		t.Errorf("only %.1f%% of follows are mutual; communities should make it far more than 0.25%%", 100*share)
	}
}

func TestGenerateGraphSmall(t *testing.T) {
	// More edges than 3 users can hold: all 6 possible, no repeats.
	edges := parseGraphEdges(t, generateGraphBytes(t, GraphOptions{Users: 3, Edges: 100, CommunitySize: 2}))
	if len(edges) > 6 {
		t.Errorf("%d edges among 3 users", len(edges))
	}
}

func TestGenerateGraphErrors(t *testing.T) {
	for _, o := range []GraphOptions{
		{Users: 1},
		{Users: 10, Edges: -1},
		{Users: 10, CommunitySize: 1},
		{Users: 10, InsideShare: 0.8, AreaShare: 0.5},
		{Users: 10, CommunitiesPerArea: -1},
	} {
		if err := GenerateGraph(&bytes.Buffer{}, o); err == nil || !strings.HasPrefix(err.Error(), "loadtest: ") {
			t.Errorf("%+v: err = %v", o, err)
		}
	}
}
