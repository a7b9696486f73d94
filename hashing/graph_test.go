package hashing

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// readGraph reads an edge list from a string, failing the test on error.
func readGraph(t *testing.T, text string, opts EdgeListOptions) (*Graph, EdgeListStats) {
	t.Helper()
	g, st, err := ReadEdgeList(strings.NewReader(text), opts)
	if err != nil {
		t.Fatal(err)
	}
	return g, st
}

// externals maps user numbers to external ids.
func externals(g *Graph, us []uint32) []uint64 {
	out := make([]uint64, len(us))
	for i, u := range us {
		out[i] = g.ID(int(u))
	}
	return out
}

func TestReadEdgeList(t *testing.T) {
	// Sparse, unordered ids; every separator and comment form; CRLF; a
	// repeat and a self-loop; no newline at the end.
	text := "# header\n" +
		"% matrix-market style comment\n" +
		"\n" +
		"   \t\n" +
		"900 7\n" +
		"7\t900\r\n" +
		"18446744073709551615,7\n" +
		"7 , 42\n" +
		"900 7\n" +
		"42 42\n" +
		"  42   900  "
	g, st := readGraph(t, text, EdgeListOptions{})
	want := EdgeListStats{Lines: 11, Edges: 7, Comments: 4, SelfLoops: 1, Duplicates: 1}
	if st.Lines != want.Lines || st.Edges != want.Edges || st.Comments != want.Comments ||
		st.SelfLoops != want.SelfLoops || st.Duplicates != want.Duplicates || st.BadLines != 0 {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	if got, want := g.ids, []uint64{7, 42, 900, 18446744073709551615}; !slices.Equal(got, want) {
		t.Fatalf("ids = %v, want %v (ascending, dense)", got, want)
	}
	if g.Users() != 4 || g.Edges() != 5 || !g.Directed() {
		t.Errorf("users %d edges %d directed %v, want 4, 5, true", g.Users(), g.Edges(), g.Directed())
	}
	follows := map[uint64][]uint64{7: {42, 900}, 42: {900}, 900: {7}, 18446744073709551615: {7}}
	followers := map[uint64][]uint64{7: {900, 18446744073709551615}, 42: {7}, 900: {7, 42}, 18446744073709551615: nil}
	for id, want := range follows {
		i, ok := g.Index(id)
		if !ok {
			t.Fatalf("Index(%d) not found", id)
		}
		if got := externals(g, g.Following(i)); !slices.Equal(got, want) {
			t.Errorf("Following(%d) = %v, want %v", id, got, want)
		}
		if got := externals(g, g.Followers(i)); !slices.Equal(got, followers[id]) && len(got)+len(followers[id]) > 0 {
			t.Errorf("Followers(%d) = %v, want %v", id, got, followers[id])
		}
	}
	if _, ok := g.Index(8); ok {
		t.Error("Index(8) found a user that is not in the graph")
	}
}

func TestReadEdgeListUndirected(t *testing.T) {
	// "1 2" and "2 1" are one undirected edge.
	g, st := readGraph(t, "1 2\n2 1\n2 3\n", EdgeListOptions{Undirected: true})
	if g.Directed() || g.Edges() != 2 || st.Duplicates != 1 {
		t.Fatalf("directed %v edges %d duplicates %d, want false, 2, 1", g.Directed(), g.Edges(), st.Duplicates)
	}
	i, _ := g.Index(2)
	if got := externals(g, g.Following(i)); !slices.Equal(got, []uint64{1, 3}) {
		t.Errorf("neighbours of 2 = %v, want [1 3]", got)
	}
	if got := externals(g, g.Followers(i)); !slices.Equal(got, []uint64{1, 3}) {
		t.Errorf("Followers of 2 = %v, want [1 3] (the same as Following)", got)
	}
}

// Bad lines must be reported with their line numbers, never dropped
// quietly.
func TestReadEdgeListBadLines(t *testing.T) {
	cases := []struct {
		line, reason string
	}{
		{"1", "want two user ids"},
		{"1 2 3", "want two user ids"},
		{"1 -2", "not a non-negative integer"},
		{"a b", "not a non-negative integer"},
		{"1 2x", "not a non-negative integer"},
		{"1.5 2", "not a non-negative integer"},
		{"1 18446744073709551616", "does not fit in 64 bits"},
		{"1,,2", "not a non-negative integer"},
	}
	for _, c := range cases {
		text := "# comment\n1 2\n" + c.line + "\n3 4\n"
		_, _, err := ReadEdgeList(strings.NewReader(text), EdgeListOptions{})
		if !errors.Is(err, ErrBadEdgeLine) {
			t.Errorf("%q: err = %v, want ErrBadEdgeLine", c.line, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "line 3") || !strings.Contains(msg, c.reason) || !strings.HasPrefix(msg, "hashing: ") {
			t.Errorf("%q: error %q does not name line 3 and %q", c.line, msg, c.reason)
		}
	}

	// Within MaxBadLines they are skipped, counted and listed.
	text := "1 2\nx\n2 3\ny z\n3 4\n"
	g, st, err := ReadEdgeList(strings.NewReader(text), EdgeListOptions{MaxBadLines: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.BadLines != 2 || len(st.Bad) != 2 || st.Bad[0].Line != 2 || st.Bad[1].Line != 4 || st.Bad[1].Text != "y z" {
		t.Errorf("bad lines = %d %+v, want lines 2 and 4", st.BadLines, st.Bad)
	}
	if g.Edges() != 3 {
		t.Errorf("edges = %d, want 3", g.Edges())
	}
	// One more than allowed fails, listing all of them.
	_, _, err = ReadEdgeList(strings.NewReader(text+"bad\n"), EdgeListOptions{MaxBadLines: 2})
	var le *EdgeListError
	if !errors.As(err, &le) || le.Count != 3 || !strings.Contains(err.Error(), "line 6") {
		t.Errorf("err = %v, want an EdgeListError with 3 bad lines naming line 6", err)
	}
}

func TestReadEdgeListLongLine(t *testing.T) {
	text := "1 2\n" + strings.Repeat("9", 70000) + "\n3 4\n"
	_, _, err := ReadEdgeList(strings.NewReader(text), EdgeListOptions{})
	if !errors.Is(err, ErrBadEdgeLine) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v, want a bad line 2", err)
	}
	g, st, err := ReadEdgeList(strings.NewReader(text), EdgeListOptions{MaxBadLines: 1})
	if err != nil || g.Edges() != 2 || st.Lines != 3 {
		t.Fatalf("skipping the long line: %v, %d edges, %d lines; want 2 edges, 3 lines", err, g.Edges(), st.Lines)
	}
}

func TestReadEdgeListGzip(t *testing.T) {
	text := "# gz\n5 6\n6 7\n7 5\n"
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(text))
	zw.Close()
	plain, _ := readGraph(t, text, EdgeListOptions{})
	zipped, st := readGraph(t, buf.String(), EdgeListOptions{})
	if st.Edges != 3 || !slices.Equal(plain.ids, zipped.ids) || !slices.Equal(plain.out, zipped.out) {
		t.Fatalf("gzip input read differently: %+v", st)
	}

	// And from a file, by content rather than by name.
	path := filepath.Join(t.TempDir(), "edges.txt")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	g, _, err := LoadEdgeList(path, EdgeListOptions{})
	if err != nil || g.Edges() != 3 {
		t.Fatalf("LoadEdgeList: %v, %v", g, err)
	}
	// A corrupt gzip stream is an error naming the file.
	if err := os.WriteFile(path, buf.Bytes()[:buf.Len()-12], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadEdgeList(path, EdgeListOptions{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("truncated gzip: err = %v, want an error naming %s", err, path)
	}
}

func TestLoadEdgeListErrors(t *testing.T) {
	if _, _, err := LoadEdgeList(filepath.Join(t.TempDir(), "missing"), EdgeListOptions{}); err == nil || !strings.HasPrefix(err.Error(), "hashing: ") {
		t.Errorf("missing file: err = %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.txt")
	os.WriteFile(path, []byte("1 2\noops\n"), 0o644)
	_, _, err := LoadEdgeList(path, EdgeListOptions{})
	if err == nil || !strings.Contains(err.Error(), path+": line 2") {
		t.Errorf("bad line: err = %v, want it to name %s: line 2", err, path)
	}
}

// Large and small ids mix: the slice index and the map agree on one
// numbering, ascending by id.
func TestGraphBuilderIDs(t *testing.T) {
	b := NewGraphBuilder(true)
	ids := []uint64{denseIDLimit + 5, 3, denseIDLimit - 1, 1 << 40, 0}
	for i := range ids {
		if err := b.AddEdge(ids[i], ids[(i+1)%len(ids)]); err != nil {
			t.Fatal(err)
		}
	}
	g, dups, err := b.Build()
	if err != nil || dups != 0 {
		t.Fatal(err, dups)
	}
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(g.ids, want) {
		t.Fatalf("ids = %v, want %v", g.ids, want)
	}
	for i := range ids {
		u, _ := g.Index(ids[i])
		if got := externals(g, g.Following(u)); !slices.Equal(got, []uint64{ids[(i+1)%len(ids)]}) {
			t.Errorf("%d follows %v", ids[i], got)
		}
	}
}
