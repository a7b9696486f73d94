package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialroute/socialroute/loadtest"
)

// `socialroute demo`, as a user runs it (the built binary, short phases):
// every datacenter serves, every answer comes from the user's home
// continent, no request fails although us-west's web tier and proxy node
// crash under load, and us-west's share goes to the other US datacenters.
func TestEndToEndDemo(t *testing.T) {
	dir := t.TempDir()
	jsonPath, plotPath := filepath.Join(dir, "demo.json"), filepath.Join(dir, "demo.html")
	cmd := exec.Command(binary, "demo", "--seconds", "2.5", "--users", "5000", "--rate", "800",
		"--json-out", jsonPath, "--plot", plotPath)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	t.Logf("socialroute demo (%v):\n%s", took.Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("socialroute demo: %v", err)
	}
	if took > 40*time.Second {
		t.Errorf("a demo of three 2.5s phases took %v", took)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadtest.DemoReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Phases) != 3 || len(rep.Datacenters) != 8 || len(rep.Nodes) != 3 {
		t.Fatalf("%d phases, %d datacenters, %d nodes; want 3, 8, 3", len(rep.Phases), len(rep.Datacenters), len(rep.Nodes))
	}
	steady, down := rep.Phases[0], rep.Phases[1]
	const failed = loadtest.DemoFailedDatacenter

	for _, d := range rep.Datacenters {
		if steady.Served[d.Name] == 0 {
			t.Errorf("%s served nothing in the steady phase", d.Name)
		}
	}
	if steady.Locality != 1 {
		t.Errorf("locality before the failure %v, want 1", steady.Locality)
	}
	for _, p := range rep.Phases {
		if p.Requests == 0 {
			t.Errorf("phase %q: no requests", p.Name)
		}
		// Every request is a GET: the proxy retries the ones the crash
		// broke on the next datacenter, so none may fail.
		if p.Errors != 0 {
			t.Errorf("phase %q: %d failed requests %v", p.Name, p.Errors, p.ErrorsByKind)
		}
	}
	if s := down.Share[failed]; s > steady.Share[failed]/4 {
		t.Errorf("with %s down it still had %.1f%% of US requests (%.1f%% before)", failed, 100*s, 100*steady.Share[failed])
	}
	if len(rep.Failover.Shift) != 4 {
		t.Fatalf("shift %+v, want the 4 other US datacenters", rep.Failover.Shift)
	}
	took4 := 0.0
	for _, s := range rep.Failover.Shift {
		if down.Share[s.Datacenter] <= steady.Share[s.Datacenter] {
			t.Errorf("%s's share of US requests did not rise with %s down: %.1f%% -> %.1f%%",
				s.Datacenter, failed, 100*steady.Share[s.Datacenter], 100*down.Share[s.Datacenter])
		}
		took4 += s.Received
	}
	if took4 < 0.9 || took4 > 1.1 {
		t.Errorf("the other US datacenters took %.0f%% of %s's share, want all of it", 100*took4, failed)
	}
	for _, d := range rep.Datacenters {
		if d.Continent == "eu" && (down.Share[d.Name] == 0 || down.Served[d.Name] == 0) {
			t.Errorf("%s served nothing with %s down", d.Name, failed)
		}
	}
	for _, want := range []string{failed + " crashes", "gossip", "Failover of " + failed, "plot written to"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	if page, err := os.ReadFile(plotPath); err != nil || !strings.Contains(string(page), "<svg") {
		t.Errorf("plot: %v", err)
	}
}
