package loadtest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/socialroute/socialroute/hashing"
	"go.uber.org/goleak"
)

// The social hash keeps friends in one bucket, so a datacenter serves
// whole circles of friends and reads far fewer distinct users' data: with
// caches about the size of each datacenter's share of the users, the same
// requests miss the cache much less often than with xxhash. The table
// comes from the product's partitioner, plugged in as a Partitioner.
func TestCompareSocialHashMissesLessThanXXHash(t *testing.T) {
	defer noLeaks(t, proxyWorkerCleaner, goleak.IgnoreCurrent())
	g, err := GenerateFollowerGraph(GraphOptions{Users: 4000, Seed: 5, CommunitySize: 40})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	part := func(ctx context.Context, g *hashing.Graph, n uint32) (*hashing.Table, error) {
		calls++
		return SocialHashPartitioner(nil)(ctx, g, n)
	}
	var progress, text bytes.Buffer
	rep, err := Compare(context.Background(), CompareOptions{
		Graph: g, GraphName: "test", Buckets: 32, Requests: 20000, WarmupRequests: 5000, Workers: 4,
		Workload: WorkloadOptions{Seed: 9}, Partition: part, Out: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || rep.PartitionSeconds <= 0 {
		t.Fatalf("partitioner called %d times (%.2fs)", calls, rep.PartitionSeconds)
	}
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", text.String())
	x, s := rep.Runs[0], rep.Runs[1]
	if x.Name != "xxhash" || s.Name != "social hash" {
		t.Fatalf("runs %q, %q", x.Name, s.Name)
	}
	for _, r := range rep.Runs {
		if r.Report.Requests != 20000 || r.Report.Errors != 0 || r.Report.Locality != 1 {
			t.Errorf("%s: %d requests, %d errors, locality %v", r.Name, r.Report.Requests, r.Report.Errors, r.Report.Locality)
		}
	}
	// The same requests: the same number of cache reads.
	if a, b := x.Report.Cache.Hits+x.Report.Cache.Misses, s.Report.Cache.Hits+s.Report.Cache.Misses; a != b {
		t.Errorf("xxhash made %d cache reads, the social hash %d: the runs did not send the same requests", a, b)
	}
	if s.EdgeLocality < 5*x.EdgeLocality || s.EdgeLocality < 0.3 {
		t.Errorf("edge locality: xxhash %.3f, social hash %.3f", x.EdgeLocality, s.EdgeLocality)
	}
	if rep.MissReduction < 0.15 {
		t.Errorf("the social hash saved %.0f%% of cache misses (%.3f vs %.3f), want well above 15%%",
			100*rep.MissReduction, s.MissRate, x.MissRate)
	}
	for _, want := range []string{"web-tier cache miss rate", "fewer cache misses than xxhash", "25% fewer in production"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q", want)
		}
	}
	var page bytes.Buffer
	if err := rep.WritePlot(&page); err != nil {
		t.Fatal(err)
	}
	checkPlot(t, page.String(), 2)
}

func TestCompareChecksItsTable(t *testing.T) {
	g := mustGraph(t)
	b, _ := hashing.NewTableBuilder(8, 1)
	_ = b.Add("1", 0)
	table, _ := b.Build()
	if _, err := Compare(context.Background(), CompareOptions{Graph: g, Buckets: 16, Table: table}); err == nil {
		t.Error("a table of 8 buckets accepted for a comparison of 16")
	}
	if _, err := Compare(context.Background(), CompareOptions{}); err == nil {
		t.Error("a comparison without a graph accepted")
	}
}
