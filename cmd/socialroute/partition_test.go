package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socialroute/socialroute/hashing"
)

// runPartitionCmd runs one command line in this process and returns its exit code
// and output.
func runPartitionCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPartitionCommand(t *testing.T) {
	dir := t.TempDir()
	graph := filepath.Join(dir, "g.txt.gz")
	table := filepath.Join(dir, "t.sht")
	hot := filepath.Join(dir, "hot.csv")

	// Generate and partition in one go.
	code, out, errs := runPartitionCmd("partition", "--generate-users", "3000", "--generate-out", graph,
		"--buckets", "16", "--out", table, "--hot-out", hot, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"social hash", "xxhash", "edge locality", "average fanout", "hot accounts", "peak memory"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	tb, err := hashing.LoadTable(table)
	if err != nil || tb.Len() != 3000 || tb.Buckets() != 16 {
		t.Fatalf("table: %v, %v", tb, err)
	}
	if b, err := os.ReadFile(hot); err != nil || !strings.HasPrefix(string(b), "user,followers\n") {
		t.Fatalf("hot accounts file: %q, %v", b, err)
	}

	// Incremental on the same graph: next to nothing moves (only a user
	// whose move gains more than the threshold, which the full run's last
	// refinement pass left); JSON for machines.
	code, out, errs = runPartitionCmd("partition", "--graph", graph, "--buckets", "16", "--previous", table, "--json", "--quiet")
	if code != 0 {
		t.Fatalf("incremental: exit %d: %s", code, errs)
	}
	var rep hashing.PartitionReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, out)
	}
	if rep.Incremental == nil || rep.Incremental.Moved > 3 || rep.Incremental.Known != 3000 || len(rep.Assignments) != 2 {
		t.Errorf("incremental report: %+v %+v", rep, rep.Incremental)
	}
	if rep.Assignments[0].AvgFanout >= rep.Assignments[1].AvgFanout {
		t.Errorf("social hash fanout %.3f not below xxhash's %.3f", rep.Assignments[0].AvgFanout, rep.Assignments[1].AvgFanout)
	}

	// A previous table of another bucket count is refused.
	if code, _, errs = runPartitionCmd("partition", "--graph", graph, "--buckets", "8", "--previous", table, "--quiet"); code != 1 || !strings.Contains(errs, "16 buckets") {
		t.Errorf("bucket mismatch: exit %d: %s", code, errs)
	}
}

func TestPartitionCommandBadInput(t *testing.T) {
	dir := t.TempDir()
	graph := filepath.Join(dir, "g.txt")
	os.WriteFile(graph, []byte("1 2\n2 3\nthree 4\n4 1\n"), 0o644)

	code, _, errs := runPartitionCmd("partition", "--graph", graph, "--buckets", "2", "--quiet")
	if code != 1 || !strings.Contains(errs, "line 3") {
		t.Errorf("bad line: exit %d: %s", code, errs)
	}
	// Allowed bad lines are skipped and named.
	code, out, errs := runPartitionCmd("partition", "--graph", graph, "--buckets", "2", "--max-bad-lines", "1", "--quiet")
	if code != 0 || !strings.Contains(errs, "line 3") || !strings.Contains(out, "1 bad") {
		t.Errorf("skipped bad line: exit %d: %s\n%s", code, errs, out)
	}

	for _, args := range [][]string{
		{"partition"},
		{"partition", "--graph", graph, "--buckets", "0"},
		{"partition", "--generate-users", "10"},
	} {
		if code, _, _ := runPartitionCmd(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, code)
		}
	}
	if code, out, _ := runPartitionCmd("partition", "--help"); code != 0 || out != "" {
		t.Errorf("--help: exit %d", code)
	}
}
