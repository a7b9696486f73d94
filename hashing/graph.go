package hashing

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// ErrBadEdgeLine reports an edge-list line that is not two user ids. The
// error that wraps it (an *EdgeListError) names the lines.
var ErrBadEdgeLine = errors.New("hashing: bad edge-list line")

// MaxGraphEdges is the largest number of adjacency entries a Graph holds:
// offsets are uint32 to keep the adjacency compact. A directed graph holds
// each edge once, an undirected one twice.
const MaxGraphEdges = math.MaxUint32

// maxBadLinesKept is how many bad lines EdgeListStats and EdgeListError keep
// word for word; beyond it they are only counted.
const maxBadLinesKept = 10

// Graph is a follower graph in compressed sparse row form, read-only once
// built. Users are numbered 0..Users()-1 in ascending order of their
// external ids, so the numbering depends on the set of users and not on the
// order of the input.
//
// A directed edge u -> v means u follows v: v is in u's request (the
// accounts u reads) and u is one of v's followers. An undirected edge is
// both.
type Graph struct {
	ids      []uint64 // ids[i] is the external id of user i, ascending
	outOff   []uint32 // out[outOff[i]:outOff[i+1]] are the accounts i follows, ascending
	out      []uint32
	inOff    []uint32 // in[inOff[i]:inOff[i+1]] are i's followers, ascending
	in       []uint32
	directed bool
}

// Users returns the number of users: every id that appears in an edge.
func (g *Graph) Users() int { return len(g.ids) }

// Edges returns the number of distinct edges: follow edges of a directed
// graph, unordered pairs of an undirected one.
func (g *Graph) Edges() int {
	if g.directed {
		return len(g.out)
	}
	return len(g.out) / 2
}

// Directed reports whether edges are follower -> followee (true) or
// mutual (false).
func (g *Graph) Directed() bool { return g.directed }

// ID returns the external id of user i.
func (g *Graph) ID(i int) uint64 { return g.ids[i] }

// Following returns the users i follows (for an undirected graph, its
// neighbours), ascending. The slice belongs to the graph.
func (g *Graph) Following(i int) []uint32 { return g.out[g.outOff[i]:g.outOff[i+1]] }

// Followers returns the users who follow i (for an undirected graph, its
// neighbours), ascending. The slice belongs to the graph.
func (g *Graph) Followers(i int) []uint32 { return g.in[g.inOff[i]:g.inOff[i+1]] }

// Index returns the internal number of the user with external id id, and
// whether the graph has that user.
func (g *Graph) Index(id uint64) (int, bool) {
	return slices.BinarySearch(g.ids, id)
}

// SizeBytes returns the memory the graph's arrays hold.
func (g *Graph) SizeBytes() int {
	s := cap(g.ids)*8 + cap(g.outOff)*4 + cap(g.out)*4
	if g.directed {
		s += cap(g.inOff)*4 + cap(g.in)*4
	}
	return s
}

// GraphBuilder collects edges between external user ids and builds a Graph.
// Self-loops are counted and left out; repeated edges are kept once and
// counted by Build. Memory while collecting is 8 bytes per edge plus the id
// index. Not safe for concurrent use.
type GraphBuilder struct {
	directed bool
	// Ids are numbered in order of first appearance while collecting;
	// Build renumbers them in ascending order. Small ids (the common case,
	// dense 0-based numbering) are indexed by a slice, which is several
	// times faster than a map for tens of millions of lookups.
	dense     []uint32 // dense[id] = first-seen number + 1, for id < denseIDLimit
	sparse    map[uint64]uint32
	ext       []uint64 // first-seen number -> external id
	src, dst  []uint32
	selfLoops int64
}

// denseIDLimit bounds the slice index of GraphBuilder: ids below it cost
// 4 bytes each of the largest id seen (at most 128 MiB), ids above go to a
// map.
const denseIDLimit = 1 << 25

// NewGraphBuilder returns a builder for a directed (follower -> followee)
// or undirected graph.
func NewGraphBuilder(directed bool) *GraphBuilder {
	return &GraphBuilder{directed: directed, sparse: map[uint64]uint32{}}
}

// AddEdge adds the edge u -> v (u follows v), or u - v when the graph is
// undirected. A self-loop is counted (SelfLoops) and otherwise ignored: a
// user's request always includes the user.
func (b *GraphBuilder) AddEdge(u, v uint64) error {
	if u == v {
		b.selfLoops++
		return nil
	}
	entries := len(b.src) + 1
	if !b.directed {
		entries *= 2
	}
	if uint64(entries) > MaxGraphEdges {
		return fmt.Errorf("hashing: more than %d adjacency entries; the graph is too large", uint64(MaxGraphEdges))
	}
	b.src = append(b.src, b.number(u))
	b.dst = append(b.dst, b.number(v))
	return nil
}

// SelfLoops returns the number of self-loops AddEdge ignored.
func (b *GraphBuilder) SelfLoops() int64 { return b.selfLoops }

// number returns the first-seen number of external id x, giving it the
// next one if it is new.
func (b *GraphBuilder) number(x uint64) uint32 {
	if x < denseIDLimit {
		if x < uint64(len(b.dense)) {
			if n := b.dense[x]; n != 0 {
				return n - 1
			}
		} else {
			// Grow geometrically, but never past the limit.
			size := min(max(2*uint64(len(b.dense)), x+1, 1024), denseIDLimit)
			b.dense = append(b.dense, make([]uint32, size-uint64(len(b.dense)))...)
		}
		n := uint32(len(b.ext))
		b.dense[x] = n + 1
		b.ext = append(b.ext, x)
		return n
	}
	if n, ok := b.sparse[x]; ok {
		return n
	}
	n := uint32(len(b.ext))
	b.sparse[x] = n
	b.ext = append(b.ext, x)
	return n
}

// Build returns the graph and the number of repeated edges it dropped
// (for an undirected graph, u v and v u are the same edge). The builder
// is emptied: its memory goes to the graph.
func (b *GraphBuilder) Build() (g *Graph, duplicates int64, err error) {
	n := len(b.ext)
	if uint64(n) > math.MaxUint32-1 {
		return nil, 0, fmt.Errorf("hashing: %d users, more than the maximum %d", n, uint64(math.MaxUint32-1))
	}
	// Renumber users in ascending order of external id.
	order := make([]uint32, n) // order[rank] = first-seen number
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(x, y uint32) int {
		a, c := b.ext[x], b.ext[y]
		switch {
		case a < c:
			return -1
		case a > c:
			return 1
		}
		return 0
	})
	rank := make([]uint32, n)
	ids := make([]uint64, n)
	for r, f := range order {
		rank[f] = uint32(r)
		ids[r] = b.ext[f]
	}
	order = nil
	b.dense, b.sparse, b.ext = nil, nil, nil
	src, dst := b.src, b.dst
	b.src, b.dst = nil, nil
	for i := range src {
		src[i], dst[i] = rank[src[i]], rank[dst[i]]
	}
	rank = nil

	// Out-adjacency by counting sort on the source; an undirected edge
	// goes in both directions.
	outOff := make([]uint32, n+1)
	for i := range src {
		outOff[src[i]+1]++
		if !b.directed {
			outOff[dst[i]+1]++
		}
	}
	for i := 1; i <= n; i++ {
		outOff[i] += outOff[i-1]
	}
	out := make([]uint32, outOff[n])
	fill := slices.Clone(outOff[:n])
	for i := range src {
		u, v := src[i], dst[i]
		out[fill[u]] = v
		fill[u]++
		if !b.directed {
			out[fill[v]] = u
			fill[v]++
		}
	}
	src, dst, fill = nil, nil, nil

	// Sort each list and drop repeats, compacting in place.
	w := uint32(0)
	var dups int64
	for u := range n {
		lo, hi := outOff[u], outOff[u+1]
		list := out[lo:hi]
		slices.Sort(list)
		outOff[u] = w
		for j, v := range list {
			if j > 0 && v == list[j-1] {
				dups++
				continue
			}
			out[w] = v
			w++
		}
	}
	outOff[n] = w
	if int(w) < len(out) {
		// Give back the room the repeats took.
		out = slices.Clone(out[:w])
	}
	if !b.directed {
		// Each repeated pair was dropped once from each endpoint's list.
		dups /= 2
	}
	g = &Graph{ids: ids, outOff: outOff, out: out, directed: b.directed}
	if !b.directed {
		g.inOff, g.in = outOff, out
		return g, dups, nil
	}
	// Followers: transpose. Walking sources in ascending order leaves each
	// follower list sorted.
	inOff := make([]uint32, n+1)
	for _, v := range out {
		inOff[v+1]++
	}
	for i := 1; i <= n; i++ {
		inOff[i] += inOff[i-1]
	}
	in := make([]uint32, len(out))
	fill = slices.Clone(inOff[:n])
	for u := range n {
		for _, v := range out[outOff[u]:outOff[u+1]] {
			in[fill[v]] = uint32(u)
			fill[v]++
		}
	}
	g.inOff, g.in = inOff, in
	return g, dups, nil
}

// EdgeListOptions says how to read an edge list.
type EdgeListOptions struct {
	// Undirected reads each line "u v" as a mutual edge. By default a line
	// is a follow edge "follower followee".
	Undirected bool
	// MaxBadLines is how many bad lines are skipped (and reported in
	// EdgeListStats) before reading fails. Default 0: the first bad line
	// is an error.
	MaxBadLines int64
	// Progress, when set, is called with the number of lines read every
	// few million lines, from the reading goroutine.
	Progress func(lines int64)
}

// EdgeListStats says what ReadEdgeList made of its input: every line is
// an edge, a comment or blank line, a self-loop, a repeat or a bad line.
type EdgeListStats struct {
	Lines      int64     `json:"lines"`
	Edges      int64     `json:"edge_lines"`    // lines holding two ids, self-loops and repeats included
	Comments   int64     `json:"comment_lines"` // '#' or '%' comments and blank lines
	SelfLoops  int64     `json:"self_loops"`    // "u u": dropped, a request always includes its user
	Duplicates int64     `json:"duplicates"`    // repeated edges, kept once
	BadLines   int64     `json:"bad_lines"`     // skipped, at most MaxBadLines
	Bad        []BadLine `json:"bad,omitempty"` // the first few bad lines
}

// BadLine is one edge-list line that is not two user ids.
type BadLine struct {
	Line   int64  `json:"line"` // 1-based
	Text   string `json:"text"` // the line, cut to 80 bytes
	Reason string `json:"reason"`
}

func (l BadLine) String() string {
	return fmt.Sprintf("line %d: %s: %q", l.Line, l.Reason, l.Text)
}

// EdgeListError is the error of an edge list with more bad lines than
// allowed. It wraps ErrBadEdgeLine.
type EdgeListError struct {
	Name  string    // the file, when known
	Bad   []BadLine // the first few
	Count int64     // bad lines seen before reading stopped
}

func (e *EdgeListError) Error() string {
	var sb strings.Builder
	sb.WriteString("hashing: ")
	if e.Name != "" {
		sb.WriteString(e.Name + ": ")
	}
	if len(e.Bad) == 0 {
		return sb.String() + "bad edge-list line"
	}
	sb.WriteString(e.Bad[0].String())
	for _, l := range e.Bad[1:] {
		sb.WriteString("; " + l.String())
	}
	if more := e.Count - int64(len(e.Bad)); more > 0 {
		fmt.Fprintf(&sb, "; and %d more bad lines", more)
	}
	return sb.String()
}

func (e *EdgeListError) Unwrap() error { return ErrBadEdgeLine }

// ReadEdgeList streams an edge list and builds its graph. The input is
// plain text or gzip (recognised by its magic bytes, not by a name). Each
// line is two non-negative decimal user ids separated by spaces, tabs or
// a comma; lines starting with '#' or '%' and blank lines are comments.
// Any other line is bad: it is skipped and reported while there are at
// most opts.MaxBadLines of them, and the next one fails the read with an
// *EdgeListError naming the first few by line number. Nothing is dropped
// without being counted in the stats.
func ReadEdgeList(r io.Reader, opts EdgeListOptions) (*Graph, EdgeListStats, error) {
	var st EdgeListStats
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, st, fmt.Errorf("hashing: read edge list: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	b := NewGraphBuilder(!opts.Undirected)
	bad := func(text []byte, reason string) error {
		st.BadLines++
		if len(st.Bad) < maxBadLinesKept {
			if len(text) > 80 {
				text = text[:80]
			}
			st.Bad = append(st.Bad, BadLine{Line: st.Lines, Text: string(text), Reason: reason})
		}
		if st.BadLines > opts.MaxBadLines {
			return &EdgeListError{Bad: st.Bad, Count: st.BadLines}
		}
		return nil
	}
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			st.Lines++
			if opts.Progress != nil && st.Lines%(4<<20) == 0 {
				opts.Progress(st.Lines)
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				// A line longer than 64 KiB is no edge; skip the rest of it.
				text := slices.Clone(line[:80])
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
				if e := bad(text, "line longer than 64 KiB"); e != nil {
					return nil, st, e
				}
			} else {
				u, v, kind := parseEdgeLine(line)
				switch kind {
				case lineEdge:
					st.Edges++
					if e := b.AddEdge(u, v); e != nil {
						return nil, st, e
					}
				case lineComment:
					st.Comments++
				default:
					if e := bad(bytes.TrimRight(line, "\r\n"), kind.reason()); e != nil {
						return nil, st, e
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, st, fmt.Errorf("hashing: read edge list after line %d: %w", st.Lines, err)
		}
	}
	st.SelfLoops = b.SelfLoops()
	g, dups, err := b.Build()
	if err != nil {
		return nil, st, err
	}
	st.Duplicates = dups
	return g, st, nil
}

// LoadEdgeList reads the edge-list file at path (see ReadEdgeList); "-"
// is standard input. Errors name the file.
func LoadEdgeList(path string, opts EdgeListOptions) (*Graph, EdgeListStats, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, EdgeListStats{}, fmt.Errorf("hashing: load edge list: %w", err)
		}
		defer f.Close()
		r = f
	}
	g, st, err := ReadEdgeList(r, opts)
	if err != nil {
		var le *EdgeListError
		if errors.As(err, &le) {
			le.Name = path
			return nil, st, le
		}
		return nil, st, fmt.Errorf("hashing: load edge list %s: %s", path, strings.TrimPrefix(err.Error(), "hashing: "))
	}
	return g, st, nil
}

// lineKind is what parseEdgeLine found on a line.
type lineKind uint8

const (
	lineEdge lineKind = iota
	lineComment
	lineFieldCount // not exactly two fields
	lineNotNumber  // a field is not a non-negative decimal integer
	lineOverflow   // a field does not fit in 64 bits
)

func (k lineKind) reason() string {
	switch k {
	case lineFieldCount:
		return "want two user ids"
	case lineNotNumber:
		return "user id is not a non-negative integer"
	case lineOverflow:
		return "user id does not fit in 64 bits"
	}
	return "bad line"
}

// parseEdgeLine parses "u v" (separators: spaces, tabs, one comma) without
// allocating. The line may end in "\n" or "\r\n".
func parseEdgeLine(line []byte) (u, v uint64, kind lineKind) {
	i := skipSpace(line, 0)
	if i == len(line) || line[i] == '#' || line[i] == '%' {
		return 0, 0, lineComment
	}
	var ids [2]uint64
	for f := range 2 {
		if f == 1 {
			i = skipSep(line, i)
		}
		if i == len(line) {
			return 0, 0, lineFieldCount
		}
		start := i
		var x uint64
		for ; i < len(line) && line[i] >= '0' && line[i] <= '9'; i++ {
			d := uint64(line[i] - '0')
			if x > (math.MaxUint64-d)/10 {
				return 0, 0, lineOverflow
			}
			x = x*10 + d
		}
		if i == start || (i < len(line) && !isSep(line[i])) {
			return 0, 0, lineNotNumber
		}
		ids[f] = x
	}
	if skipSpace(line, i) != len(line) {
		return 0, 0, lineFieldCount
	}
	return ids[0], ids[1], lineEdge
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
func isSep(c byte) bool   { return isSpace(c) || c == ',' }

func skipSpace(line []byte, i int) int {
	for i < len(line) && isSpace(line[i]) {
		i++
	}
	return i
}

// skipSep skips the separator between the two ids: blanks with at most
// one comma among them.
func skipSep(line []byte, i int) int {
	i = skipSpace(line, i)
	if i < len(line) && line[i] == ',' {
		i = skipSpace(line, i+1)
	}
	return i
}
