package loadtest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// startLocal starts the built-in topology's web tier and a proxy, with the
// shared test graph. The caller closes it (before checking for leaks).
func startLocal(t *testing.T) *Local {
	t.Helper()
	l, err := StartLocal(LocalOptions{Graph: mustGraph(t)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// An open-loop run through a real proxy to the simulated web tier: every
// request answered, from the user's home continent, spread over every
// datacenter, with the web tier's cache reads counted.
func TestRunOpenLoopThroughAProxy(t *testing.T) {
	defer noLeaks(t, proxyWorkerCleaner, goleak.IgnoreCurrent())
	l := startLocal(t)
	defer l.Close()
	wl, err := NewWorkload(mustGraph(t), WorkloadOptions{Seed: 1, Origins: []Origin{{"us", 2}, {"eu", 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), RunOptions{
		Rate: 500, Workers: 128, Duration: time.Second, Warmup: 300 * time.Millisecond,
		Targets: []Target{{Addr: l.Addr}}, Workload: wl, GraphName: "test graph", Routing: l.Proxy, Out: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s", progress.String())
	if rep.Errors != 0 || rep.NotSent != 0 {
		t.Fatalf("%d errors (%v), %d not sent", rep.Errors, rep.ErrorsByKind, rep.NotSent)
	}
	if rep.Requests < 400 || rep.Requests > 600 {
		t.Errorf("%d requests measured in 1s at 500/s", rep.Requests)
	}
	if rep.Locality != 1 || rep.Unattributed != 0 {
		t.Errorf("locality %v, %d unattributed; want 1 and 0", rep.Locality, rep.Unattributed)
	}
	for _, d := range rep.Datacenters {
		if d.Served == 0 {
			t.Errorf("%s served nothing", d.Name)
		}
	}
	if rep.Cache.Hits+rep.Cache.Misses < 5*rep.OK || rep.Cache.HitRatio <= 0 {
		t.Errorf("cache: %+v for %d answers; a feed reads the user and its followees", rep.Cache, rep.OK)
	}
	if rep.Latency.Count != rep.Requests || rep.Latency.P50 <= 0 || rep.Latency.P99 < rep.Latency.P50 {
		t.Errorf("latency %+v", rep.Latency)
	}
	if len(rep.Timeline) < 10 || len(rep.Events) != 1 || rep.Warmup < 0.29 {
		t.Errorf("timeline of %d windows, events %v, warm-up %v", len(rep.Timeline), rep.Events, rep.Warmup)
	}
	if rep.ByKind["feed"] == 0 || rep.ByKind["profile"] == 0 {
		t.Errorf("by kind %v", rep.ByKind)
	}
	if !strings.Contains(progress.String(), "open-loop done") {
		t.Errorf("no final progress line")
	}
}

// A closed-loop run of a fixed count measures exactly that many requests.
func TestRunClosedLoopMeasuresTheRequestsAsked(t *testing.T) {
	defer noLeaks(t, proxyWorkerCleaner, goleak.IgnoreCurrent())
	l := startLocal(t)
	defer l.Close()
	wl, _ := NewWorkload(mustGraph(t), WorkloadOptions{Seed: 2})
	rep, err := Run(context.Background(), RunOptions{
		Mode: ClosedLoop, Workers: 4, Requests: 500, WarmupRequests: 100,
		Targets: []Target{{Addr: l.Addr}}, Workload: wl, Routing: l.Proxy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 500 || rep.Errors != 0 || rep.Rate != 0 || rep.NotSent != 0 {
		t.Fatalf("measured %d requests with %d errors (rate %v, not sent %d), want 500 and 0", rep.Requests, rep.Errors, rep.Rate, rep.NotSent)
	}
}

// Failures the proxy cannot route around reach the client and are
// counted by kind: every European datacenter answers 503, and Europe's
// users may not leave Europe.
func TestRunCountsErrorsByKind(t *testing.T) {
	defer noLeaks(t, proxyWorkerCleaner, goleak.IgnoreCurrent())
	l := startLocal(t)
	defer l.Close()
	for _, dc := range []string{"eu-west", "eu-central", "eu-north"} {
		if err := l.Web.FailWith(dc, FailError); err != nil {
			t.Fatal(err)
		}
	}
	wl, _ := NewWorkload(mustGraph(t), WorkloadOptions{Seed: 3})
	rep, err := Run(context.Background(), RunOptions{
		Mode: ClosedLoop, Workers: 4, Requests: 300, Warmup: -1,
		Targets: []Target{{Addr: l.Addr}}, Workload: wl, Routing: l.Proxy,
	})
	if err != nil {
		t.Fatal(err)
	}
	bad := rep.ErrorsByKind[errStatus503.String()]
	if bad == 0 || bad != rep.Errors || rep.OK+rep.Errors != 300 {
		t.Fatalf("errors %v (%d), ok %d; want only 503s, about a third", rep.ErrorsByKind, rep.Errors, rep.OK)
	}
	for _, d := range rep.Datacenters {
		if d.Continent == "eu" && d.Served != 0 {
			t.Errorf("%s served %d while answering 503", d.Name, d.Served)
		}
	}
	if share := float64(bad) / 300; share < 0.2 || share > 0.5 {
		t.Errorf("%.0f%% of requests failed; Europe has about a third of the buckets", 100*share)
	}
}

func TestRunOptionsAreChecked(t *testing.T) {
	wl, _ := NewWorkload(mustGraph(t), WorkloadOptions{})
	for _, o := range []RunOptions{
		{Mode: "sideways"},
		{Rate: -1},
		{Workers: -1},
		{Requests: 10}, // open loop
		{Mode: ClosedLoop, Duration: -time.Second},
		{Workload: wl}, // no targets, no routing
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) accepted", o)
		}
	}
}
