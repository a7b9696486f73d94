package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/loadtest"
)

const partitionAbout = `
Compute the social-hash table: read a follower graph, put friends in the same
bucket, and write the user -> bucket table the proxy loads (config: table).

Input is an edge list, plain or gzip: one edge per line, two user ids
(non-negative integers) separated by blanks or a comma; '#' and '%' lines
are comments. The table keys each user by the decimal text of its id, so a
request uses it only when its routing key is exactly that text ("42").
By default a line is a follow edge "follower followee"; with
--undirected it is a mutual one. A bad line stops the run with its line
number, unless --max-bad-lines allows some, which are then skipped and listed.

The partitioner (Social Hash, Kabiljo et al., VLDB 2017) minimises the
average p-fanout of each user's request, the user plus every account it
follows, by multilevel recursive bisection, then k-way refinement, with every
bucket within --imbalance of the average size. It uses every core and is
deterministic: the same graph, flags and --seed write the same table.

The report (stdout, or --json) puts the social hash beside plain xxhash:
edge locality (share of edges inside a bucket), average fanout and p-fanout,
largest and smallest bucket against the average, time and peak memory. The
most followed accounts are listed, and all hot accounts written with --hot-out.

With --previous, the run is incremental: users of the previous table keep
their bucket unless moving gains more than --move-threshold, new users join
their friends, and the report says how many users moved (each move is a data
migration).

--generate-users writes a synthetic follower graph first (planted
communities, heavy-tailed out-degrees, power-law popular accounts) to
--generate-out, and partitions it unless --generate-only.

Examples:
  socialroute partition --graph follows.txt.gz --buckets 4096 --out assignment.sht --hot-out hot.csv
  socialroute partition --graph ../shared/data/karate.edges.gz --undirected --buckets 2
      (Zachary's karate club, from the test graphs kept beside the checkout)
  socialroute partition --graph follows-v2.txt.gz --previous assignment.sht --out assignment-v2.sht
  socialroute partition --generate-users 1000000 --generate-edges 20000000 --generate-out g.txt.gz --buckets 1024`

// partitionGCPercent is the GOGC of a partitioning run.
const partitionGCPercent = 25

func runPartition(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("partition", "--graph FILE [--out TABLE] [flags]", partitionAbout, stderr)
	graph := fs.String("graph", "", "edge-list `file` (plain or gzip; - is stdin)")
	undirected := fs.Bool("undirected", false, "read each line as a mutual edge instead of follower -> followee")
	maxBad := fs.Int64("max-bad-lines", 0, "skip and list up to `N` bad lines instead of stopping at the first")
	buckets := fs.Uint("buckets", hashing.DefaultPartitionBuckets, "bucket count `N`; must equal the deployment's buckets")
	imbalance := fs.Float64("imbalance", hashing.DefaultImbalance, "each bucket within this `fraction` of the average size")
	p := fs.Float64("p", hashing.DefaultFanoutP, "`p` of the p-fanout objective, in (0, 1]; 1 is plain fanout")
	iterations := fs.Int("iterations", hashing.DefaultBisectIterations, "`rounds` of moves at each level of each bisection")
	refine := fs.Int("refine-passes", hashing.DefaultRefinePasses, "at most this many k-way refinement `passes` after the bisection (negative: none)")
	seed := fs.Uint64("seed", 1, "random `seed`; the same seed gives the same table")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "`goroutines` to use")
	out := fs.String("out", "", "write the assignment table to this `file`")
	hotOut := fs.String("hot-out", "", "write the hot accounts as CSV \"user,followers\" to this `file`")
	hotFollowers := fs.Int("hot-followers", 0, "an account with at least `N` followers is hot (0: the top 0.01% of users)")
	previous := fs.String("previous", "", "incremental mode: the previous assignment `table`")
	threshold := fs.Float64("move-threshold", hashing.DefaultMoveThreshold, "incremental mode: p-fanout `gain` needed to move a user of the previous table")
	compare := fs.String("compare-parts", "", "also report a partition `file` in gpmetis format (line i: part of user i)")
	compareName := fs.String("compare-name", "metis", "`name` of the --compare-parts column")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of text")
	jsonOut := fs.String("json-out", "", "also write the report as JSON to this `file`")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	genUsers := fs.Int("generate-users", 0, "generate a follower graph of `N` users first")
	genEdges := fs.Int64("generate-edges", 0, "`N` edges in the generated graph (default 20 per user)")
	genOut := fs.String("generate-out", "", "`file` for the generated graph (.gz: gzip)")
	genOnly := fs.Bool("generate-only", false, "write the generated graph and stop")
	if err := parse(fs, args); err != nil {
		return err
	}
	usage := func(format string, a ...any) error {
		fmt.Fprintf(stderr, format+"\n", a...)
		fs.Usage()
		return errUsage
	}
	if *genUsers > 0 {
		if *genOut == "" {
			return usage("--generate-users needs --generate-out FILE")
		}
		if *graph == "" {
			*graph = *genOut
		}
	} else if *graph == "" {
		return usage("partition needs --graph FILE (or --generate-users N --generate-out FILE)")
	}
	if *buckets < 1 || *buckets > hashing.MaxBuckets {
		return usage("--buckets must be between 1 and %d, got %d", hashing.MaxBuckets, *buckets)
	}

	// The partitioner's memory is a few large arrays without pointers:
	// collecting more often costs little CPU and keeps the peak near the
	// live size instead of twice it (Go's default).
	defer debug.SetGCPercent(debug.SetGCPercent(partitionGCPercent))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	logf := func(format string, a ...any) {
		if !*quiet {
			fmt.Fprintf(stderr, "partition %6.1fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
		}
	}

	if *genUsers > 0 {
		logf("generating %d users into %s", *genUsers, *genOut)
		if err := generateGraph(*genOut, loadtest.GraphOptions{Users: *genUsers, Edges: *genEdges, Seed: *seed}); err != nil {
			return err
		}
		logf("generated %s", *genOut)
		if *genOnly {
			return nil
		}
	}

	logf("reading %s", *graph)
	g, st, err := hashing.LoadEdgeList(*graph, hashing.EdgeListOptions{
		Undirected:  *undirected,
		MaxBadLines: *maxBad,
		Progress:    func(lines int64) { logf("read %d lines", lines) },
	})
	if err != nil {
		return err
	}
	for _, b := range st.Bad {
		fmt.Fprintf(stderr, "partition: %s: skipped bad %s\n", *graph, b)
	}
	readDone := time.Now()
	logf("graph: %d users, %d edges (%d self-loops, %d repeats dropped)", g.Users(), g.Edges(), st.SelfLoops, st.Duplicates)

	opts := hashing.PartitionOptions{
		Buckets:       uint32(*buckets),
		Imbalance:     *imbalance,
		P:             *p,
		Iterations:    *iterations,
		RefinePasses:  *refine,
		Seed:          *seed,
		Workers:       *workers,
		MoveThreshold: *threshold,
		Progress: func(pr hashing.PartitionProgress) {
			steps := ""
			if pr.Steps > 0 {
				steps = fmt.Sprintf(" %d/%d", pr.Step, pr.Steps)
			}
			detail := ""
			if pr.Detail != "" {
				detail = ", " + pr.Detail
			}
			logf("%s%s: %d users moved%s", pr.Phase, steps, pr.Moved, detail)
		},
	}
	if *refine < 0 {
		opts.RefinePasses = -1
	}
	if *previous != "" {
		prev, err := hashing.LoadTable(*previous)
		if err != nil {
			return err
		}
		opts.Previous = prev
	}
	part, err := hashing.Partition(ctx, g, opts)
	if err != nil {
		return err
	}
	partDone := time.Now()

	rep := &hashing.PartitionReport{
		Graph: *graph, Users: g.Users(), Edges: g.Edges(), Directed: g.Directed(), Input: st,
		Buckets: uint32(*buckets), Imbalance: *imbalance, P: *p, Seed: *seed, Workers: *workers,
		Incremental: part.Incremental,
	}
	rep.MinAllowed, rep.MaxAllowed = part.SizeBounds()
	logf("measuring")
	rep.Assignments = []hashing.Quality{part.Quality(*workers), part.XXHashQuality(*workers)}
	if *compare != "" {
		q, err := compareParts(*compare, *compareName, g, uint32(*buckets), *p, *workers)
		if err != nil {
			return err
		}
		rep.Assignments = append(rep.Assignments, q)
	}

	var hot []hashing.HotAccount
	rep.HotThreshold, hot = hashing.HotAccounts(g, *hotFollowers)
	rep.HotCount = len(hot)
	rep.HotTop = hot[:min(len(hot), 10)]
	if *hotOut != "" {
		if err := writeFileAtomic(*hotOut, func(w io.Writer) error { return hashing.WriteHotAccountsCSV(w, hot) }); err != nil {
			return err
		}
		rep.HotFile = *hotOut
	}
	if *out != "" {
		t, err := part.Table()
		if err != nil {
			return err
		}
		if err := writeFileAtomic(*out, func(w io.Writer) error { _, err := t.WriteTo(w); return err }); err != nil {
			return err
		}
		rep.TableFile = *out
		logf("wrote %s (%d users)", *out, t.Len())
	}

	rep.ReadSeconds = readDone.Sub(start).Seconds()
	rep.PartSeconds = partDone.Sub(readDone).Seconds()
	rep.TotalSeconds = time.Since(start).Seconds()
	rep.PeakRSS = peakRSS()
	rep.CPUSeconds = cpuSeconds()
	encode := func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if *jsonOut != "" {
		if err := writeFileAtomic(*jsonOut, encode); err != nil {
			return err
		}
	}
	if *asJSON {
		return encode(stdout)
	}
	return rep.WriteText(stdout)
}

// generateGraph writes a generated graph to path, gzip-compressed (fastest
// level: the generator, not compression, should set the pace) when the name
// ends in .gz.
func generateGraph(path string, o loadtest.GraphOptions) error {
	return writeFileAtomic(path, func(w io.Writer) error {
		if !strings.HasSuffix(path, ".gz") {
			return loadtest.GenerateGraph(w, o)
		}
		zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return err
		}
		if err := loadtest.GenerateGraph(zw, o); err != nil {
			return err
		}
		return zw.Close()
	})
}

// writeFileAtomic writes path through a temporary file in the same directory and
// renames it into place, so a reader (a proxy reloading its table) never
// sees half a file.
func writeFileAtomic(path string, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	bw := bufio.NewWriterSize(tmp, 1<<20)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		// On disk before the rename is: after a power cut the name would
		// otherwise point at a file the proxy refuses (its checksum), and
		// a restart loop would follow.
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path)) // the rename itself
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir flushes a directory's entries to disk (a rename in it).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err // (some file systems cannot sync a directory: nothing to do there)
	}
	return nil
}

// compareParts measures a partition computed elsewhere (gpmetis output).
func compareParts(path, name string, g *hashing.Graph, n uint32, p float64, workers int) (hashing.Quality, error) {
	f, err := os.Open(path)
	if err != nil {
		return hashing.Quality{}, fmt.Errorf("compare parts: %w", err)
	}
	defer f.Close()
	bs, err := hashing.ReadPartFile(f, g, n)
	if err != nil {
		return hashing.Quality{}, fmt.Errorf("%s: %w", path, err)
	}
	return hashing.Evaluate(name, g, n, bs, p, workers), nil
}

// cpuSeconds returns the CPU time (user and system) the process has used,
// from /proc/self/stat, or 0 where /proc does not say. The kernel counts
// in USER_HZ ticks, 100 per second on every Linux platform Go supports.
func cpuSeconds() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name, field 2, may hold spaces: count from after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so utime (14) and stime (15) are f[11], f[12].
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (ut + st) / 100
}

// peakRSS returns the process's peak resident memory (VmHWM) in bytes, or
// 0 where /proc does not say.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := strings.Fields(string(rest))
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}
