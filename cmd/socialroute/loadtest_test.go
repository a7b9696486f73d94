package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/socialroute/socialroute/loadtest"
)

// `socialroute loadtest` with nothing else: an in-process web tier and
// proxy, a short open-loop run, the report as JSON and a plot.
func TestEndToEndLoadtest(t *testing.T) {
	dir := t.TempDir()
	jsonPath, plotPath := filepath.Join(dir, "run.json"), filepath.Join(dir, "run.html")
	cmd := exec.Command(binary, "loadtest", "--duration", "1s", "--warmup", "200ms", "--users", "3000", "--rate", "400",
		"--json-out", jsonPath, "--plot", plotPath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("socialroute loadtest: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadtest.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "open-loop" || rep.Rate != 400 || rep.Requests < 300 || rep.Errors != 0 || rep.Locality != 1 {
		t.Fatalf("report: mode %s rate %v, %d requests, %d errors, locality %v", rep.Mode, rep.Rate, rep.Requests, rep.Errors, rep.Locality)
	}
	for _, d := range rep.Datacenters {
		if d.Served == 0 {
			t.Errorf("%s served nothing", d.Name)
		}
	}
	for _, want := range []string{"latency", "locality", "cache", "evenness", "plot written to"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the text report lacks %q", want)
		}
	}
	if !strings.Contains(stderr.String(), "open-loop done") {
		t.Errorf("no progress on stderr")
	}
	if page, err := os.ReadFile(plotPath); err != nil || !strings.Contains(string(page), "<svg") {
		t.Errorf("plot: %v", err)
	}
}

// `socialroute loadtest --compare`: the same requests routed by xxhash and
// by the social-hash table the partitioner computes; fewer misses with the
// latter.
func TestEndToEndLoadtestCompare(t *testing.T) {
	cmd := exec.Command(binary, "loadtest", "--compare", "--users", "3000", "--community", "30", "--buckets", "32",
		"--requests", "8000", "--json", "--quiet")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("socialroute loadtest --compare: %v\n%s", err, stderr.String())
	}
	var rep loadtest.CompareReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, stdout.String())
	}
	if len(rep.Runs) != 2 || rep.Buckets != 32 || rep.Requests != 8000 {
		t.Fatalf("compare report: %d runs, %d buckets, %d requests", len(rep.Runs), rep.Buckets, rep.Requests)
	}
	t.Logf("miss rate: xxhash %.3f, social hash %.3f (%.0f%% fewer)", rep.Runs[0].MissRate, rep.Runs[1].MissRate, 100*rep.MissReduction)
	if rep.MissReduction <= 0.05 {
		t.Errorf("the social hash saved %.1f%% of cache misses", 100*rep.MissReduction)
	}
}

func TestLoadtestFlagMistakes(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "sideways"},
		{"--requests", "10"}, // the open loop runs for a duration
		{"--compare", "--target", "127.0.0.1:1"},
		{"--target", "nowhere"},
		{"--mix", "walk=1"},
		{"--origins", "us"},
		{"--rate", "0"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"loadtest"}, args...), &stdout, &stderr); code != 2 {
			t.Errorf("loadtest %v: exit %d, want 2 (usage)\n%s", args, code, stderr.String())
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--origins", "us=0.5,europe=0.5"}, `--origins: continent "europe" is not in the config (us, eu)`},
		{[]string{"--target", "us=127.0.0.1:1,europe=127.0.0.1:2"}, `--target: continent "europe" is not in the config`},
		{[]string{"--mode", "closed", "--requests", "100", "--warmup", "5s"}, "use one or the other"},
		{[]string{"--mode", "closed", "--requests", "100", "--duration", "5s"}, "use one or the other"},
		{[]string{"--mode", "closed", "--requests", "100", "--warmup", "0s", "--users", "1"}, "--users must be"}, // --warmup 0s is allowed: no warm-up
	} {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"loadtest"}, c.args...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("loadtest %v: exit %d, want 2 saying %q\n%s", c.args, code, c.want, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"loadtest", "--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "--compare") {
		t.Errorf("loadtest --help: exit %d\n%s", code, stderr.String())
	}
}

// `socialroute loadtest --webtier-only` serves a config's upstream
// addresses until told to stop, and its control endpoint fails and
// recovers a datacenter.
func TestEndToEndWebTierOnly(t *testing.T) {
	dir := t.TempDir()
	ports := make([]int, 4)
	for i := range ports {
		ports[i] = freePort(t, "127.0.0.1")
	}
	cfg := fmt.Sprintf(`node: {datacenter: us-east}
continents: [{name: us}, {name: eu}]
datacenters:
  - {name: us-east, continent: us, capacity: 1, upstreams: ["127.0.0.1:%d"]}
  - {name: us-west, continent: us, capacity: 1, upstreams: ["127.0.0.1:%d"]}
  - {name: eu-west, continent: eu, capacity: 1, upstreams: ["127.0.0.1:%d"]}
`, ports[0], ports[1], ports[2])
	path := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	control := fmt.Sprintf("127.0.0.1:%d", ports[3])
	cmd := exec.Command(binary, "loadtest", "--webtier-only", "--config", path, "--users", "1000", "--control", control)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // stopped below when all goes well
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get(loadtest.HeaderServedBy) + string(b)
	}
	west := fmt.Sprintf("http://127.0.0.1:%d/users/1/feed", ports[1])
	waitFor(t, "the web tier to serve", func() bool { code, _ := get(west); return code == 200 })
	if code, by := get(west); code != 200 || !strings.HasPrefix(by, "us-west") {
		t.Fatalf("us-west answered %d %q", code, by)
	}
	resp, err := http.Post("http://"+control+"/datacenters/us-west/fail?mode=error", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, _ := get(west); code != 503 {
		t.Errorf("failed us-west answered %d, want 503", code)
	}
	if code, body := get("http://" + control + "/datacenters"); code != 200 || !strings.Contains(body, `"erroring"`) {
		t.Errorf("GET /datacenters: %d %s", code, body)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGINT: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "control endpoint") {
		t.Errorf("output:\n%s", out.String())
	}
}
