package hashing

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Quality measures an assignment of a graph's users to buckets, for the
// partitioner's report.
type Quality struct {
	// Name says whose assignment it is: "social hash", "xxhash", ...
	Name    string `json:"name"`
	Buckets uint32 `json:"buckets"`
	Users   int    `json:"users"`
	Edges   int    `json:"edges"`
	// EdgeLocality is the share of edges whose two users share a bucket.
	EdgeLocality float64 `json:"edge_locality"`
	// AvgFanout is the average over users of the number of buckets the
	// user's request (the user and the accounts it follows) touches.
	AvgFanout float64 `json:"avg_fanout"`
	// AvgPFanout is the same for the p-fanout, Σ_b 1-(1-P)^n_b.
	AvgPFanout float64 `json:"avg_p_fanout"`
	P          float64 `json:"p"`
	// Bucket sizes: smallest, largest and average, in users.
	MinBucket int     `json:"min_bucket"`
	MaxBucket int     `json:"max_bucket"`
	AvgBucket float64 `json:"avg_bucket"`
}

// MaxOverAvg returns the largest bucket's size over the average.
func (q Quality) MaxOverAvg() float64 { return safeRatio(float64(q.MaxBucket), q.AvgBucket) }

// MinOverAvg returns the smallest bucket's size over the average.
func (q Quality) MinOverAvg() float64 { return safeRatio(float64(q.MinBucket), q.AvgBucket) }

func safeRatio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Evaluate measures the assignment buckets (one bucket below n per user of
// g) with the p-fanout parameter p, on up to workers goroutines. Bucket
// sizes count the graph's users only. The result does not depend on
// workers.
func Evaluate(name string, g *Graph, n uint32, buckets []uint16, p float64, workers int) Quality {
	users := g.Users()
	q := Quality{Name: name, Buckets: n, Users: users, Edges: g.Edges(), P: p}
	maxQ := 1
	for u := range users {
		maxQ = max(maxQ, len(g.Following(u))+1)
	}
	pw := powTable(p, maxQ)
	// Fixed blocks, summed in order, so float sums do not depend on how
	// many workers ran.
	const block = 1 << 14
	nb := (users + block - 1) / block
	type part struct {
		local, fanout int64
		pfanout       float64
	}
	parts := make([]part, nb)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(workers, nb)) {
		wg.Go(func() {
			cnt := make([]uint32, n)
			var touched []uint16
			for {
				bi := int(next.Add(1) - 1)
				if bi >= nb {
					return
				}
				var pt part
				for u := bi * block; u < min(users, (bi+1)*block); u++ {
					a := buckets[u]
					touched = append(touched[:0], a)
					cnt[a] = 1
					for _, v := range g.Following(u) {
						b := buckets[v]
						if b == a {
							pt.local++
						}
						if cnt[b] == 0 {
							touched = append(touched, b)
						}
						cnt[b]++
					}
					pt.fanout += int64(len(touched))
					for _, b := range touched {
						pt.pfanout += 1 - pw[cnt[b]]
						cnt[b] = 0
					}
				}
				parts[bi] = pt
			}
		})
	}
	wg.Wait()
	var local, fanout int64
	var pfanout float64
	for _, pt := range parts {
		local += pt.local
		fanout += pt.fanout
		pfanout += pt.pfanout
	}
	if len(g.out) > 0 {
		// An undirected edge is counted from both ends, which leaves the
		// share unchanged.
		q.EdgeLocality = float64(local) / float64(len(g.out))
	}
	if users > 0 {
		q.AvgFanout = float64(fanout) / float64(users)
		q.AvgPFanout = pfanout / float64(users)
	}
	sizes := make([]int, n)
	for _, b := range buckets {
		sizes[b]++
	}
	q.setSizes(sizes)
	return q
}

// setSizes fills the bucket size figures from per-bucket counts.
func (q *Quality) setSizes(sizes []int) {
	if len(sizes) == 0 {
		return
	}
	total := 0
	for _, s := range sizes {
		total += s
	}
	q.MinBucket, q.MaxBucket = slices.Min(sizes), slices.Max(sizes)
	q.AvgBucket = float64(total) / float64(len(sizes))
}

// XXHashAssignment returns the bucket every user of g gets without a
// table: FallbackBucket of its key hash (see UserKeyHash).
func XXHashAssignment(g *Graph, n uint32) []uint16 {
	bs := make([]uint16, g.Users())
	for i, id := range g.ids {
		bs[i] = uint16(FallbackBucket(UserKeyHash(id), n))
	}
	return bs
}

// Quality measures the partitioning ("social hash"). Bucket sizes include
// users carried over from a previous table.
func (p *Partitioning) Quality(workers int) Quality {
	q := Evaluate("social hash", p.g, p.n, p.buckets, p.p, workers)
	q.setSizes(p.Sizes())
	return q
}

// XXHashQuality measures the plain xxhash assignment of the same users
// ("xxhash"), carried users included in the bucket sizes.
func (p *Partitioning) XXHashQuality(workers int) Quality {
	q := Evaluate("xxhash", p.g, p.n, XXHashAssignment(p.g, p.n), p.p, workers)
	sizes := make([]int, p.n)
	for i := range p.g.ids {
		// Recomputed rather than kept: one more pass is cheaper than
		// holding a second assignment.
		sizes[FallbackBucket(UserKeyHash(p.g.ids[i]), p.n)]++
	}
	for _, h := range p.carriedHashes {
		sizes[FallbackBucket(h, p.n)]++
	}
	q.setSizes(sizes)
	return q
}

// HotAccount is an account with many followers: the proxy spreads such a
// key over several buckets, so the partitioner lists them.
type HotAccount struct {
	User      uint64 `json:"user"`
	Followers int    `json:"followers"`
}

// HotAccountsTop is the share of users HotAccounts flags when no follower
// threshold is given: the top 0.01%.
const HotAccountsTop = 0.0001

// HotAccounts returns the accounts with at least minFollowers followers,
// most followed first (ties: lower id), and the threshold used. With
// minFollowers <= 0 the threshold is the follower count of the account
// ranked at the top HotAccountsTop of users (at least the first), so ties
// with it are included.
func HotAccounts(g *Graph, minFollowers int) (threshold int, hot []HotAccount) {
	users := g.Users()
	if users == 0 {
		return max(minFollowers, 1), nil
	}
	threshold = minFollowers
	if threshold <= 0 {
		k := max(1, int(math.Ceil(float64(users)*HotAccountsTop)))
		counts := make([]int, users)
		for i := range counts {
			counts[i] = len(g.Followers(i))
		}
		slices.SortFunc(counts, func(a, b int) int { return cmp.Compare(b, a) })
		threshold = max(1, counts[k-1])
	}
	for i := range users {
		if f := len(g.Followers(i)); f >= threshold {
			hot = append(hot, HotAccount{User: g.ids[i], Followers: f})
		}
	}
	slices.SortFunc(hot, func(a, b HotAccount) int {
		if c := cmp.Compare(b.Followers, a.Followers); c != 0 {
			return c
		}
		return cmp.Compare(a.User, b.User)
	})
	return threshold, hot
}

// WriteHotAccountsCSV writes hot accounts as CSV with the header
// "user,followers".
func WriteHotAccountsCSV(w io.Writer, hot []HotAccount) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"user", "followers"})
	for _, h := range hot {
		_ = cw.Write([]string{strconv.FormatUint(h.User, 10), strconv.Itoa(h.Followers)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("hashing: write hot accounts: %w", err)
	}
	return nil
}

// PartitionReport is what a partitioning run measured, for people
// (WriteText) and machines (JSON). Durations are in seconds.
type PartitionReport struct {
	Graph       string        `json:"graph"`
	Users       int           `json:"users"`
	Edges       int           `json:"edges"`
	Directed    bool          `json:"directed"`
	Input       EdgeListStats `json:"input"`
	Buckets     uint32        `json:"buckets"`
	Imbalance   float64       `json:"imbalance"`
	P           float64       `json:"p"`
	Seed        uint64        `json:"seed"`
	Workers     int           `json:"workers"`
	MinAllowed  int           `json:"min_bucket_allowed"`
	MaxAllowed  int           `json:"max_bucket_allowed"`
	Assignments []Quality     `json:"assignments"` // social hash first, then xxhash, then any reference
	// HotThreshold is the follower count from which an account is hot.
	HotThreshold int               `json:"hot_threshold"`
	HotCount     int               `json:"hot_accounts"`
	HotTop       []HotAccount      `json:"hot_top"`
	HotFile      string            `json:"hot_file,omitempty"`
	Incremental  *IncrementalStats `json:"incremental,omitempty"`
	TableFile    string            `json:"table_file,omitempty"`
	ReadSeconds  float64           `json:"read_seconds"`
	PartSeconds  float64           `json:"partition_seconds"`
	TotalSeconds float64           `json:"total_seconds"`
	CPUSeconds   float64           `json:"cpu_seconds"`    // user + system; 0 if unknown
	PeakRSS      int64             `json:"peak_rss_bytes"` // 0 if unknown
}

// WriteText writes the report as aligned text tables.
func (r *PartitionReport) WriteText(w io.Writer) error {
	var sb strings.Builder
	kind := "follow edges (directed)"
	if !r.Directed {
		kind = "edges (undirected)"
	}
	fmt.Fprintf(&sb, "graph %s: %s users, %s %s\n", r.Graph, thousands(int64(r.Users)), thousands(int64(r.Edges)), kind)
	fmt.Fprintf(&sb, "%d buckets, each allowed %d..%d users (%.3g%% around the average), p-fanout p=%.3g, seed %d, %d workers\n\n",
		r.Buckets, r.MinAllowed, r.MaxAllowed, 100*r.Imbalance, r.P, r.Seed, r.Workers)

	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	row := func(label string, f func(q Quality) string) {
		fmt.Fprint(tw, label)
		for _, q := range r.Assignments {
			fmt.Fprint(tw, "\t", f(q))
		}
		fmt.Fprintln(tw)
	}
	row("", func(q Quality) string { return q.Name })
	row("edge locality", func(q Quality) string { return fmt.Sprintf("%.2f%%", 100*q.EdgeLocality) })
	row("average fanout", func(q Quality) string { return fmt.Sprintf("%.3f", q.AvgFanout) })
	row(fmt.Sprintf("average p-fanout (p=%.3g)", r.P), func(q Quality) string { return fmt.Sprintf("%.3f", q.AvgPFanout) })
	row("largest bucket / average", func(q Quality) string { return fmt.Sprintf("%.3f (%d)", q.MaxOverAvg(), q.MaxBucket) })
	row("smallest bucket / average", func(q Quality) string { return fmt.Sprintf("%.3f (%d)", q.MinOverAvg(), q.MinBucket) })
	_ = tw.Flush()
	if len(r.Assignments) > 1 && r.Assignments[1].AvgFanout > 0 {
		s, x := r.Assignments[0], r.Assignments[1]
		fmt.Fprintf(&sb, "\n%s vs %s: fanout %.1f%% lower, edge locality %.1fx\n", s.Name, x.Name,
			100*(1-s.AvgFanout/x.AvgFanout), safeRatio(s.EdgeLocality, x.EdgeLocality))
	}
	sb.WriteString("\n")

	if st := r.Incremental; st != nil {
		fmt.Fprintf(&sb, "incremental: %s known users, %s moved (%.3f%%; %s of them for balance); %s new users placed (%s away from their xxhash bucket); %s carried from the previous table\n",
			thousands(int64(st.Known)), thousands(int64(st.Moved)), 100*safeRatio(float64(st.Moved), float64(st.Known)),
			thousands(int64(st.MovedForBalance)), thousands(int64(st.New)), thousands(int64(st.NewOffFallback)), thousands(int64(st.Carried)))
		if st.OutOfBounds > 0 {
			fmt.Fprintf(&sb, "WARNING: %d buckets are out of the size bounds: users carried from the previous table (not in this graph) never move; partition afresh (without --previous) to rebalance them\n", st.OutOfBounds)
		}
	}
	fmt.Fprintf(&sb, "hot accounts: %s with at least %s followers", thousands(int64(r.HotCount)), thousands(int64(r.HotThreshold)))
	if r.HotFile != "" {
		fmt.Fprintf(&sb, " (all in %s)", r.HotFile)
	}
	if len(r.HotTop) > 0 {
		sb.WriteString("; top:")
		for i, h := range r.HotTop {
			if i > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, " %d (%s)", h.User, thousands(int64(h.Followers)))
		}
	}
	sb.WriteString("\n")
	in := r.Input
	fmt.Fprintf(&sb, "input: %s lines: %s edges, %s comments or blank, %s bad (skipped), %s self-loops and %s repeated edges dropped\n",
		thousands(in.Lines), thousands(in.Edges), thousands(in.Comments), thousands(in.BadLines), thousands(in.SelfLoops), thousands(in.Duplicates))
	for _, b := range in.Bad {
		fmt.Fprintf(&sb, "  bad %s\n", b)
	}
	if r.TableFile != "" {
		fmt.Fprintf(&sb, "table: %s\n", r.TableFile)
	}
	fmt.Fprintf(&sb, "time: read %s, partition %s, total %s", fmtSeconds(r.ReadSeconds), fmtSeconds(r.PartSeconds), fmtSeconds(r.TotalSeconds))
	if r.CPUSeconds > 0 && r.TotalSeconds > 0 {
		fmt.Fprintf(&sb, " (CPU %s, %.1f cores busy on average)", fmtSeconds(r.CPUSeconds), r.CPUSeconds/r.TotalSeconds)
	}
	if r.PeakRSS > 0 {
		fmt.Fprintf(&sb, "; peak memory %.2f GiB (resident)", float64(r.PeakRSS)/(1<<30))
	}
	sb.WriteString("\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

// fmtSeconds formats seconds the way time.Duration does, to the millisecond.
func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// thousands writes n with thousands separators: 1,000,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var sb strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			sb.WriteByte(',')
		}
		sb.WriteRune(c)
	}
	if neg {
		return "-" + sb.String()
	}
	return sb.String()
}

// ReadPartFile reads a partition in the format of METIS's gpmetis output
// (line i, from 0, holds the part of vertex i) and returns the bucket of
// each user of g, whose external ids must be line numbers. Parts must be
// below n. It lets the report put another partitioner beside the social
// hash.
func ReadPartFile(r io.Reader, g *Graph, n uint32) ([]uint16, error) {
	br := bufio.NewReader(r)
	out := make([]uint16, g.Users())
	seen := 0
	for line := uint64(0); ; line++ {
		text, err := br.ReadString('\n')
		if text == "" && err == io.EOF {
			break
		}
		text = strings.TrimSpace(text)
		part, perr := strconv.ParseUint(text, 10, 32)
		if perr != nil || part >= uint64(n) {
			return nil, fmt.Errorf("hashing: part file line %d: %q is not a part below %d", line+1, text, n)
		}
		if i, ok := g.Index(line); ok {
			out[i] = uint16(part)
			seen++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("hashing: part file: %w", err)
		}
	}
	if seen != g.Users() {
		return nil, fmt.Errorf("hashing: part file covers %d of the graph's %d users; line i must hold the part of user i", seen, g.Users())
	}
	return out, nil
}
