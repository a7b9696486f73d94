package loadtest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// proxyWorkerCleaner is the proxy's fasthttp worker-pool cleaner: it
// sleeps out fasthttp's default 10s before it notices its server stopped.
// The web tier's servers use a short period and are checked strictly by
// the WebTier tests.
var proxyWorkerCleaner = goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2")

// memberlistProbe is a probe memberlist started before it was shut down:
// Shutdown does not wait for it, and it ends when its ack times out (a few
// hundred milliseconds; longer under -race).
var memberlistProbe = goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode")

func TestRunDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three one-second phases of load")
	}
	defer noLeaks(t, proxyWorkerCleaner, memberlistProbe, goleak.IgnoreCurrent())
	var out bytes.Buffer
	const phase = 2 * time.Second
	rep, err := RunDemo(context.Background(), DemoOptions{
		Phase:          phase,
		Rate:           1000,
		Workers:        64,
		Users:          3000,
		BreakerOpenFor: 200 * time.Millisecond, // recovery must show within the short last phase
		Out:            &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("demo output:\n%s", out.String())
	if len(rep.Phases) != 3 || len(rep.Datacenters) != 8 {
		t.Fatalf("report has %d phases and %d datacenters, want 3 and 8", len(rep.Phases), len(rep.Datacenters))
	}
	steady, down, recovered := rep.Phases[0], rep.Phases[1], rep.Phases[2]

	for _, p := range rep.Phases {
		if p.Requests == 0 {
			t.Errorf("phase %q: no requests", p.Name)
		}
		if p.Errors != 0 {
			t.Errorf("phase %q: %d failed client requests (transport %d, status %d, mismatched %d), want 0: GETs must be retried elsewhere",
				p.Name, p.Errors, p.TransportErrors, p.BadStatus, p.Mismatches)
		}
	}
	if rep.Failover.FailedRequests != 0 {
		t.Errorf("Failover.FailedRequests = %d, want 0", rep.Failover.FailedRequests)
	}

	for _, d := range rep.Datacenters {
		if steady.Served[d.Name] == 0 {
			t.Errorf("steady phase: %s served nothing", d.Name)
		}
	}
	// US buckets never leave the US, EU buckets leave Europe only if all
	// of it is down: every answer is on the home continent in every phase.
	for _, p := range rep.Phases {
		if p.Locality != 1 {
			t.Errorf("phase %q: locality %v, want 1", p.Name, p.Locality)
		}
	}

	const failed = DemoFailedDatacenter
	if rep.Failover.Datacenter != failed {
		t.Fatalf("Failover.Datacenter = %q", rep.Failover.Datacenter)
	}
	// us-west may answer a request or two in the instant it crashes, but
	// nothing for the rest of the phase.
	if s := down.Share[failed]; s > steady.Share[failed]/4 {
		t.Errorf("down phase: %s still had %.1f%% of US requests (%.1f%% steady)", failed, 100*s, 100*steady.Share[failed])
	}
	if d := rep.Failover.LastServedAfter; d > phase/2 {
		t.Errorf("%s answered %v after its crash, want nothing in the last half of the phase", failed, d)
	}
	// Its share went to the other four US datacenters.
	if len(rep.Failover.Shift) != 4 {
		t.Fatalf("Failover.Shift = %+v, want the 4 other US datacenters", rep.Failover.Shift)
	}
	for _, s := range rep.Failover.Shift {
		if down.Share[s.Datacenter] <= steady.Share[s.Datacenter] {
			t.Errorf("%s's share of US requests did not rise with %s down: %.1f%% -> %.1f%%",
				s.Datacenter, failed, 100*steady.Share[s.Datacenter], 100*down.Share[s.Datacenter])
		}
	}

	if recovered.Served[failed] == 0 || rep.Failover.RecoveryTime < 0 {
		t.Errorf("%s served nothing after it recovered (recovery time %v)", failed, rep.Failover.RecoveryTime)
	}
	// The surviving nodes' breakers opened at once; gossip followed (how
	// soon depends on the machine: logged, not judged).
	if d := rep.Failover.BreakersOpenedAfter; d < 0 || d > phase/2 {
		t.Errorf("breakers of %s opened %v after the crash", failed, d)
	}
	if d := rep.Failover.RoutedAroundAfter; d < 0 || d > phase/2 {
		t.Errorf("routed around %s %v after the crash", failed, d)
	}
	t.Logf("gossip declared %s down %v after the crash, up %v after it came back; its node restarted after %v",
		failed, rep.Failover.GossipDownAfter, rep.Failover.GossipUpAfter, rep.Failover.RestartTime)
	for _, p := range rep.Phases {
		if p.Latency.Count != p.Requests || p.CacheHitRatio <= 0 {
			t.Errorf("phase %q: latency over %d of %d requests, cache hit ratio %v", p.Name, p.Latency.Count, p.Requests, p.CacheHitRatio)
		}
	}
	if len(rep.Timeline) == 0 || len(rep.Events) < 2 {
		t.Errorf("timeline of %d windows, events %v", len(rep.Timeline), rep.Events)
	}
	var page bytes.Buffer
	if err := rep.WritePlot(&page); err != nil {
		t.Fatal(err)
	}
	checkPlot(t, page.String(), 2)

	for _, want := range []string{"steady", failed + " down", "recovered", "locality", "Failover of " + failed,
		failed + " crashes", "breaker of " + failed + "/", failed + " comes back"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestRunDemoStopsWhenCancelled(t *testing.T) {
	defer noLeaks(t, proxyWorkerCleaner, memberlistProbe, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := RunDemo(ctx, DemoOptions{Phase: 10 * time.Second, Workers: 2, Users: 100, Rate: 100})
	if !errors.Is(err, context.DeadlineExceeded) || rep != nil {
		t.Fatalf("RunDemo = %v, %v; want nil, context.DeadlineExceeded", rep, err)
	}
	// Gossip's goodbyes take a second or two: each node tells the others
	// it is leaving, so they do not take its datacenter for dead.
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("RunDemo took %v to stop after its context ended", d)
	}
}
