package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
)

// Defaults of CompareOptions.
const (
	DefaultCompareRequests = 100_000
	// PaperMissReduction is what the Social Hash paper (NSDI 2016)
	// reports for production: about 25% fewer cache misses with the
	// social hash than with a random assignment.
	PaperMissReduction = 0.25
	// minAutoBuckets and maxAutoBuckets bound the automatic bucket count.
	minAutoBuckets = 16
	maxAutoBuckets = 4096
)

// Partitioner computes a social-hash table of g's users for n buckets.
// hashing.Partition is the product's; tests may plug in another.
type Partitioner func(ctx context.Context, g *hashing.Graph, n uint32) (*hashing.Table, error)

// SocialHashPartitioner is hashing.Partition with its defaults and seed 1,
// telling its progress to progress (nil: nowhere).
func SocialHashPartitioner(progress func(hashing.PartitionProgress)) Partitioner {
	return func(ctx context.Context, g *hashing.Graph, n uint32) (*hashing.Table, error) {
		p, err := hashing.Partition(ctx, g, hashing.PartitionOptions{Buckets: n, Seed: 1, Progress: progress})
		if err != nil {
			return nil, err
		}
		return p.Table()
	}
}

// AutoBuckets is the bucket count the comparison uses for a graph of
// users when none is given: the power of two nearest users over the
// generator's community size, so that a bucket can hold a circle of
// friends (as 4096 buckets do for a billion users; with 50,000 users and
// 4096 buckets a bucket would hold 12, and friends could not share one).
func AutoBuckets(users int) int {
	want := float64(users) / DefaultCommunitySize
	b := 1 << max(0, bits.Len(uint(want))-1)
	if float64(2*b)-want < want-float64(b) {
		b *= 2
	}
	return min(max(b, minAutoBuckets), maxAutoBuckets)
}

// CompareOptions configure Compare.
type CompareOptions struct {
	// Config is the topology; nil is the embedded DemoExample.
	Config *configs.Config
	// Buckets is the bucket count of both runs. Default AutoBuckets.
	Buckets int
	// Graph is the follower graph; GraphName says where it came from.
	Graph     *hashing.Graph
	GraphName string
	// Workload makes the requests, the same for both runs.
	Workload WorkloadOptions
	// Requests are measured in each run after WarmupRequests (default a
	// quarter of Requests) that fill the caches. Default
	// DefaultCompareRequests.
	Requests       uint64
	WarmupRequests uint64
	// Workers is the closed loop's worker count. Default
	// DefaultClosedWorkers.
	Workers int
	// CacheRatio and CacheSize size the web tier's caches (see
	// LocalOptions).
	CacheRatio float64
	CacheSize  int
	// Table is the social-hash table to compare; nil: Partition computes
	// it from Graph.
	Table *hashing.Table
	// Partition computes the table when Table is nil. Default
	// SocialHashPartitioner.
	Partition Partitioner
	// Out receives the progress. Default: nothing is printed.
	Out io.Writer
}

// CompareReport is the outcome of Compare.
type CompareReport struct {
	Graph   string `json:"graph"`
	Users   int    `json:"users"`
	Edges   int    `json:"edges"`
	Buckets int    `json:"buckets"`
	// Requests were measured per run, after WarmupRequests.
	Requests       uint64         `json:"requests"`
	WarmupRequests uint64         `json:"warmup_requests"`
	Workers        int            `json:"workers"`
	CacheSize      map[string]int `json:"cache_size"`
	// PartitionSeconds is how long computing the table took (0: given).
	PartitionSeconds float64 `json:"partition_seconds"`
	// Runs are xxhash, then the social hash.
	Runs []CompareRun `json:"runs"`
	// MissReduction is 1 - (social hash miss rate / xxhash miss rate):
	// the share of cache misses the social hash saved.
	MissReduction float64 `json:"miss_reduction"`
}

// CompareRun is one side of the comparison.
type CompareRun struct {
	Name string `json:"name"`
	// EdgeLocality is the share of follow edges whose two users share a
	// bucket.
	EdgeLocality float64 `json:"edge_locality"`
	// MissRate is the share of the web tier's reads of users' data that
	// missed its cache; ReadsPerRequest is how many reads a request made.
	MissRate        float64 `json:"miss_rate"`
	ReadsPerRequest float64 `json:"reads_per_request"`
	Report          *Report `json:"report"`
}

// Compare sends the same requests twice through a proxy in front of a
// simulated web tier, first with users assigned to buckets by plain
// xxhash, then by a social-hash table, each run with empty caches, and
// reports the web tier's cache miss rates side by side.
func Compare(ctx context.Context, o CompareOptions) (*CompareReport, error) {
	if o.Graph == nil {
		return nil, errors.New("loadtest: compare: no graph")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Requests == 0 {
		o.Requests = DefaultCompareRequests
	}
	if o.WarmupRequests == 0 {
		o.WarmupRequests = o.Requests / 4
	}
	if o.Workers <= 0 {
		o.Workers = DefaultClosedWorkers
	}
	if o.Buckets == 0 {
		o.Buckets = AutoBuckets(o.Graph.Users())
		if o.Table != nil {
			o.Buckets = int(o.Table.Buckets())
		}
	}
	if o.Buckets < 1 || o.Buckets > hashing.MaxBuckets {
		return nil, fmt.Errorf("loadtest: compare: %d buckets: want 1 to %d", o.Buckets, hashing.MaxBuckets)
	}
	if o.Table != nil && int(o.Table.Buckets()) != o.Buckets {
		return nil, fmt.Errorf("loadtest: compare: the table has %d buckets, the comparison %d", o.Table.Buckets(), o.Buckets)
	}
	disp := newLive(o.Out)
	rep := &CompareReport{
		Graph: o.GraphName, Users: o.Graph.Users(), Edges: o.Graph.Edges(), Buckets: o.Buckets,
		Requests: o.Requests, WarmupRequests: o.WarmupRequests, Workers: o.Workers,
	}
	table := o.Table
	if table == nil {
		part := o.Partition
		if part == nil {
			part = SocialHashPartitioner(func(p hashing.PartitionProgress) {
				line := fmt.Sprintf("partition: %s %d", p.Phase, p.Step)
				if p.Steps > 0 {
					line += fmt.Sprintf("/%d", p.Steps)
				}
				if p.Detail != "" {
					line += ", " + p.Detail
				}
				disp.event(line + fmt.Sprintf(", %s users moved", thousands(uint64(p.Moved))))
			})
		}
		disp.event(fmt.Sprintf("partitioning %s users into %d buckets (the social hash; %d cores)...",
			thousands(uint64(o.Graph.Users())), o.Buckets, runtime.GOMAXPROCS(0)))
		start := time.Now()
		var err error
		if table, err = part(ctx, o.Graph, uint32(o.Buckets)); err != nil {
			return nil, fmt.Errorf("loadtest: compare: partition: %w", err)
		}
		rep.PartitionSeconds = time.Since(start).Seconds()
		disp.event(fmt.Sprintf("partitioned in %.1fs", rep.PartitionSeconds))
	}

	for _, side := range []struct {
		name  string
		table *hashing.Table
	}{{"xxhash", nil}, {"social hash", table}} {
		locality, err := edgeLocality(o.Graph, uint32(o.Buckets), side.table)
		if err != nil {
			return nil, err
		}
		local, err := StartLocal(LocalOptions{Config: o.Config, Buckets: o.Buckets, Table: side.table, Graph: o.Graph,
			CacheRatio: o.CacheRatio, CacheSize: o.CacheSize})
		if err != nil {
			return nil, err
		}
		rep.CacheSize = local.CacheSize
		wl, err := NewWorkload(o.Graph, o.Workload)
		if err != nil {
			local.Close()
			return nil, err
		}
		r, err := Run(ctx, RunOptions{
			Mode: ClosedLoop, Workers: o.Workers, Requests: o.Requests, WarmupRequests: o.WarmupRequests,
			Targets: []Target{{Addr: local.Addr}}, Workload: wl, GraphName: o.GraphName, Routing: local.Proxy,
			Out: o.Out, Label: fmt.Sprintf("%-11s", side.name),
		})
		local.Close()
		if err != nil {
			return nil, err
		}
		run := CompareRun{Name: side.name, EdgeLocality: locality, MissRate: r.Cache.MissRate, Report: r}
		run.ReadsPerRequest = ratio(float64(r.Cache.Hits+r.Cache.Misses), float64(r.OK))
		rep.Runs = append(rep.Runs, run)
	}
	if x, s := rep.Runs[0].MissRate, rep.Runs[1].MissRate; x > 0 && s >= 0 {
		rep.MissReduction = 1 - s/x
	}
	return rep, nil
}

// edgeLocality is the share of g's edges whose users share a bucket, with
// users keyed by their decimal id (as the proxy keys them) and assigned
// by table, or by xxhash if table is nil or does not know them.
func edgeLocality(g *hashing.Graph, n uint32, table *hashing.Table) (float64, error) {
	a, err := hashing.NewAssigner(n, table)
	if err != nil {
		return 0, fmt.Errorf("loadtest: compare: %w", err)
	}
	bucket := make([]uint32, g.Users())
	for i := range bucket {
		bucket[i], _ = a.Bucket(hashing.UserKeyHash(g.ID(i)))
	}
	inside, total := 0, 0
	for u := range g.Users() {
		for _, v := range g.Following(u) {
			total++
			if bucket[u] == bucket[v] {
				inside++
			}
		}
	}
	return ratio(float64(inside), float64(total)), nil
}

// WriteText prints the comparison for people.
func (r *CompareReport) WriteText(w io.Writer) error {
	if len(r.Runs) != 2 {
		return errors.New("loadtest: compare: incomplete report")
	}
	x, s := r.Runs[0], r.Runs[1]
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nThe same requests, routed by xxhash of the user and by a social-hash table")
	fmt.Fprintf(tw, "  graph\t%s users, %s follows (%s)\n", thousands(uint64(r.Users)), thousands(uint64(r.Edges)), r.Graph)
	fmt.Fprintf(tw, "  buckets\t%d, about %.0f users each\n", r.Buckets, float64(r.Users)/float64(r.Buckets))
	sizes := slices.Collect(maps.Values(r.CacheSize))
	fmt.Fprintf(tw, "  web tier\teach datacenter caches %s-%s users' data (LRU), about its share of the users\n",
		thousands(uint64(slices.Min(sizes))), thousands(uint64(slices.Max(sizes))))
	fmt.Fprintf(tw, "  requests\t%s measured per run after %s to warm the caches; %d closed-loop workers; caches emptied between runs\n",
		thousands(r.Requests), thousands(r.WarmupRequests), r.Workers)
	if r.PartitionSeconds > 0 {
		fmt.Fprintf(tw, "  partition\t%.1fs (hashing.Partition, the Social Hash partitioner)\n", r.PartitionSeconds)
	}
	fmt.Fprintf(tw, "\n\t%s\t%s\n", x.Name, s.Name)
	fmt.Fprintf(tw, "follows inside one bucket\t%s\t%s\n", pct(x.EdgeLocality), pct(s.EdgeLocality))
	fmt.Fprintf(tw, "web-tier cache miss rate\t%s\t%s\n", pctOr(x.MissRate), pctOr(s.MissRate))
	fmt.Fprintf(tw, "cache reads per request\t%.1f\t%.1f\n", x.ReadsPerRequest, s.ReadsPerRequest)
	fmt.Fprintf(tw, "throughput (answers/s)\t%.0f\t%.0f\n", x.Report.Throughput, s.Report.Throughput)
	fmt.Fprintf(tw, "latency p50 / p99 (ms)\t%.2f / %.2f\t%.2f / %.2f\n", x.Report.Latency.P50, x.Report.Latency.P99, s.Report.Latency.P50, s.Report.Latency.P99)
	fmt.Fprintf(tw, "errors\t%d\t%d\n", x.Report.Errors, s.Report.Errors)
	fmt.Fprintf(tw, "locality (home continent)\t%s\t%s\n", pctOr(x.Report.Locality), pctOr(s.Report.Locality))
	fmt.Fprintf(tw, "spread evenness\t%s\t%s\n", evenness(x.Report), evenness(s.Report))
	fmt.Fprintln(tw, "\ndatacenter\txxhash miss rate\tsocial-hash miss rate\tshare of requests (xxhash / social)")
	for i, d := range x.Report.Datacenters {
		sd := s.Report.Datacenters[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s / %s\n", d.Name, pctOr(missOf(d)), pctOr(missOf(sd)), pct(d.Share), pct(sd.Share))
	}
	verdict := "fewer"
	if r.MissReduction < 0 {
		verdict = "more"
	}
	fmt.Fprintln(tw, "(the simulated web tier does the same work for a hit as for a miss: throughput and latency")
	fmt.Fprintln(tw, " differ by the machine's noise here, not by the cache)")
	fmt.Fprintf(tw, "\nThe social hash had %.0f%% %s cache misses than xxhash (%s vs %s of reads missed).\n",
		100*math.Abs(r.MissReduction), verdict, pctOr(s.MissRate), pctOr(x.MissRate))
	fmt.Fprintf(tw, "The Social Hash paper (NSDI 2016) reports about %.0f%% fewer in production.\n", 100*PaperMissReduction)
	return tw.Flush()
}

func missOf(d DatacenterLoad) float64 {
	return ratioOr(float64(d.CacheMisses), float64(d.CacheHits+d.CacheMisses))
}

// evenness prints each continent's spread evenness: "us 1.02, eu 1.01".
func evenness(r *Report) string {
	var parts []string
	for _, c := range r.Continents {
		parts = append(parts, fmt.Sprintf("%s %.2f", c.Name, c.Evenness))
	}
	return strings.Join(parts, ", ")
}

// WritePlot writes both runs' latency and throughput over time as a
// self-contained HTML page.
func (r *CompareReport) WritePlot(w io.Writer) error {
	if len(r.Runs) != 2 {
		return errors.New("loadtest: compare: incomplete report")
	}
	var charts []plotChart
	colors := []string{colorP99, colorB2}
	lat := plotChart{title: "p99 latency over time", yLabel: "ms (log scale)", logY: true}
	thr := plotChart{title: "Throughput over time", yLabel: "answers per second"}
	for i, run := range r.Runs {
		var xs, p99, ok []float64
		for _, win := range run.Report.Timeline {
			xs = append(xs, win.Start+win.Seconds/2)
			lat.xMax = max(lat.xMax, win.Start+win.Seconds)
			if win.OK+win.Errors == 0 {
				p99 = append(p99, math.NaN())
			} else {
				p99 = append(p99, win.P99)
			}
			ok = append(ok, float64(win.OK)/win.Seconds)
		}
		lat.series = append(lat.series, plotSeries{name: run.Name + " p99", color: colors[i], xs: xs, ys: p99})
		thr.series = append(thr.series, plotSeries{name: run.Name, color: colors[i], xs: xs, ys: ok})
	}
	thr.xMax = lat.xMax
	charts = append(charts, lat, thr)
	summary := []string{
		fmt.Sprintf("%s users, %d buckets, %s requests measured per run", thousands(uint64(r.Users)), r.Buckets, thousands(r.Requests)),
		fmt.Sprintf("cache miss rate: xxhash %s, social hash %s (%.0f%% fewer misses)",
			pctOr(r.Runs[0].MissRate), pctOr(r.Runs[1].MissRate), 100*r.MissReduction),
	}
	return writePlot(w, "socialroute loadtest --compare: xxhash vs social hash", summary, charts)
}
