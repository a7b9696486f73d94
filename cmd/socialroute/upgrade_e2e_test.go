package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/socialroute/socialroute/health"
	"github.com/socialroute/socialroute/proxy"
)

// The zero-downtime upgrade, as an operator does it: under load, a second
// process binds the same address (listen.reuse_port), and once it serves,
// the first gets SIGTERM, drains and exits. No request fails and no
// connection is refused; both processes served some of the load.
func TestEndToEndUpgradeUnderLoad(t *testing.T) {
	web := startWebServers(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	configFor := func(node string) string {
		path := filepath.Join(dir, node+".yaml")
		writeConfig(t, path, addr, web, "")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(b), "listen:\n", "listen:\n  reuse_port: true\n", 1)
		s = strings.Replace(s, "name: e2e\n", "name: "+node+"\n", 1)
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	oldConfig, newConfig := configFor("old"), configFor("new")
	old := startProxy(t, oldConfig, addr)

	stop := make(chan struct{})
	l, wg := runLoad(addr, 8, stop, true) // strict: only never-sent requests may be retried
	time.Sleep(500 * time.Millisecond)
	okBefore := l.ok.Load()
	webBefore := totalHits(web)

	// The new binary binds the same port beside the old one.
	next := startProxy(t, newConfig, addr)
	waitFor(t, "the new process to serve", func() bool { return strings.Contains(next.logs.String(), `msg=serving`) })
	time.Sleep(200 * time.Millisecond) // let the kernel hand it some connections

	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	old.waitExit(t, "old process")
	// Load keeps going on the new process alone.
	okAtExit := l.ok.Load()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("ok %d (before upgrade %d, after the old exited %d), refused %d, failed %d; web tier saw %d",
		l.ok.Load(), okBefore, l.ok.Load()-okAtExit, l.refused.Load(), l.failed.Load(), totalHits(web)-webBefore)
	checkUpgradeLoad(t, l, okBefore, okAtExit)
	if !strings.Contains(old.logs.String(), "stopped") {
		t.Errorf("the old process did not drain:\n%s", old.logs.String())
	}
	// The new process is the one serving now: SIGTERM it cleanly too.
	next.cmd.Process.Signal(syscall.SIGTERM)
	next.waitExit(t, "new process")
}

// Without listen.reuse_port a second process on the same address fails
// to start: a double start is caught, not silently shared.
func TestEndToEndSecondProcessNeedsReusePort(t *testing.T) {
	web := startWebServers(t)
	dir := t.TempDir()
	config, addr := filepath.Join(dir, "proxy.yaml"), freeAddr(t)
	writeConfig(t, config, addr, web, "")
	startProxy(t, config, addr)
	cmd := exec.Command(binary, "serve", "--config", config)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("a second process on %s without reuse_port kept running", addr)
	}
	if err == nil {
		t.Fatalf("a second process on %s without reuse_port started", addr)
	}
	if !strings.Contains(string(out), "address already in use") {
		t.Errorf("second process: %v\n%s", err, out)
	}
}

// checkUpgradeLoad asserts what an upgrade under strict load must keep: no
// failed request, no refused connection, and load served on both sides of
// it (okBefore answers before, and since okAtExit, when the old one left).
func checkUpgradeLoad(t *testing.T, l *load, okBefore, okAtExit int64) {
	t.Helper()
	if l.failed.Load() != 0 {
		t.Errorf("%d requests failed across the upgrade (first: %v)", l.failed.Load(), l.firstErr.Load())
	}
	if l.refused.Load() != 0 {
		t.Errorf("%d connections refused across the upgrade", l.refused.Load())
	}
	if okBefore < 100 || l.ok.Load()-okAtExit < 100 {
		t.Errorf("the load did not run on both sides of the upgrade: %d before, %d after", okBefore, l.ok.Load()-okAtExit)
	}
}

func totalHits(web map[string]*webServer) int64 {
	var n int64
	for _, w := range web {
		n += w.hits.Load()
	}
	return n
}

// The zero-downtime upgrade of one node of a gossiping fleet, under load:
// three nodes (us-east, us-west, eu-west), us-west upgraded. The new
// process starts while the old one holds the gossip ports, serves at once,
// and binds them when the old one, on SIGTERM, has left the fleet; it
// rejoins under the same name. No request fails, no connection is refused,
// the other nodes list the new process as serving, and neither ever finds
// us-west down (not in its log, not in its admin view).
func TestEndToEndUpgradeWithGossipUnderLoad(t *testing.T) {
	east, west, eu := layOutAdminFleet(t, "127.0.9", "127.0.10")
	// us-west may run two processes at once: the upgrade.
	b, err := os.ReadFile(west.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(west.config, []byte(strings.Replace(string(b), "listen:\n", "listen:\n  reuse_port: true\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	startAdminFleet(t, east, west, eu)

	// What a node's admin endpoint says of the fleet. Called from the
	// watcher goroutine too, so it reports errors instead of failing.
	get := func(n *adminNode, path string, out any) error {
		code, err := adminDo(n, "GET", path, "", out)
		if err == nil && code != 200 {
			err = fmt.Errorf("GET %s on %s: %d", path, n.dc, code)
		}
		return err
	}
	westServing := func(n *adminNode) bool {
		var m struct{ Members []health.Member }
		if get(n, "/admin/members", &m) != nil {
			return false
		}
		return len(m.Members) == 3 && slices.ContainsFunc(m.Members, func(m health.Member) bool {
			return m.Name == "edge-us-west" && m.NodeState == "serving"
		})
	}
	for _, n := range []*adminNode{east, eu} {
		waitFor(t, n.dc+" to list all three nodes", func() bool { return westServing(n) })
	}

	// Watch the other two nodes' gossip view of us-west for the whole
	// upgrade, through their admin endpoints.
	stopWatch := make(chan struct{})
	var downSeen atomic.Value
	var looks atomic.Int64
	var watching sync.WaitGroup
	watching.Add(1)
	go func() {
		defer watching.Done()
		for {
			for _, n := range []*adminNode{east, eu} {
				var d proxy.DatacenterView
				if err := get(n, "/admin/datacenters/us-west", &d); err != nil {
					downSeen.CompareAndSwap(nil, fmt.Sprintf("%s: %v", n.dc, err))
				} else if d.Gossip == nil || !d.Gossip.Up {
					downSeen.CompareAndSwap(nil, fmt.Sprintf("%s says us-west: %+v", n.dc, d.Gossip))
				}
				looks.Add(1)
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	stop := make(chan struct{})
	l, wg := runLoad(west.listen, 8, stop, true) // strict: only never-sent requests may be retried
	time.Sleep(500 * time.Millisecond)
	okBefore := l.ok.Load()

	// The new binary beside the old one: it serves at once, without gossip.
	old := west.proc
	started := time.Now()
	next := startProxy(t, west.config, west.listen)
	waitFor(t, "the new process to serve", func() bool { return strings.Contains(next.logs.String(), "msg=serving") })
	serving := time.Since(started)
	if !strings.Contains(next.logs.String(), "gossip port held by another process") {
		t.Errorf("the new process did not say it waits for the gossip ports:\n%s", next.logs.String())
	}
	time.Sleep(300 * time.Millisecond) // let the kernel hand it some connections

	termed := time.Now()
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old process to leave the fleet", func() bool { return strings.Contains(old.logs.String(), "left the fleet") })
	leftAfter := time.Since(termed)
	waitFor(t, "the new process to bind both gossip ports and join", func() bool {
		return strings.Count(next.logs.String(), "gossip port bound") == 2 && strings.Count(next.logs.String(), "joined the fleet") == 2
	})
	joinedAfter := time.Since(termed)
	for _, n := range []*adminNode{east, eu} {
		waitFor(t, n.dc+" to list the new us-west process as serving", func() bool { return westServing(n) })
	}
	listedAfter := time.Since(termed)
	old.waitExit(t, "old process")
	exitedAfter := time.Since(termed)
	okAtExit := l.ok.Load()
	time.Sleep(700 * time.Millisecond) // load on the new process alone, in the fleet
	close(stop)
	wg.Wait()
	close(stopWatch)
	watching.Wait()

	t.Logf("ok %d (before the upgrade %d, after the old exited %d), refused %d, failed %d",
		l.ok.Load(), okBefore, l.ok.Load()-okAtExit, l.refused.Load(), l.failed.Load())
	t.Logf("new process serving %v after its start; after SIGTERM: old left the fleet %v, new bound and joined %v, listed serving by us-east and eu-west %v, old exited %v; %d admin looks at us-west",
		serving.Round(time.Millisecond), leftAfter.Round(time.Millisecond), joinedAfter.Round(time.Millisecond),
		listedAfter.Round(time.Millisecond), exitedAfter.Round(time.Millisecond), looks.Load())
	checkUpgradeLoad(t, l, okBefore, okAtExit)
	if d := downSeen.Load(); d != nil {
		t.Errorf("during the upgrade: %v", d)
	}
	for _, n := range []*adminNode{east, eu} {
		if logTime.MatchString(n.proc.logs.String()) {
			t.Errorf("%s logged us-west down during the upgrade:\n%s", n.dc, n.proc.logs.String())
		}
	}
	if !strings.Contains(next.logs.String(), "back in the fleet under this node's name") {
		t.Logf("note: the new process did not log its rejoin under the same name (the fleet may have forgotten the old one)")
	}
	next.cmd.Process.Signal(syscall.SIGTERM)
	next.waitExit(t, "new process")
}
