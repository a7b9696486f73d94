package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	select {
	case err := <-old.done:
		if err != nil {
			t.Fatalf("old process exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("old process did not exit within 15s of SIGTERM")
	}
	// Load keeps going on the new process alone.
	okAtExit := l.ok.Load()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("ok %d (before upgrade %d, after the old exited %d), refused %d, failed %d; web tier saw %d",
		l.ok.Load(), okBefore, l.ok.Load()-okAtExit, l.refused.Load(), l.failed.Load(), totalHits(web)-webBefore)
	if l.failed.Load() != 0 {
		t.Errorf("%d requests failed across the upgrade (first: %v)", l.failed.Load(), l.firstErr.Load())
	}
	if l.refused.Load() != 0 {
		t.Errorf("%d connections refused across the upgrade", l.refused.Load())
	}
	if okBefore < 100 || l.ok.Load()-okAtExit < 100 {
		t.Errorf("the load did not run on both sides of the upgrade: %d before, %d after", okBefore, l.ok.Load()-okAtExit)
	}
	if !strings.Contains(old.logs.String(), "stopped") {
		t.Errorf("the old process did not drain:\n%s", old.logs.String())
	}
	// The new process is the one serving now: SIGTERM it cleanly too.
	next.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-next.done; err != nil {
		t.Errorf("new process exited with %v", err)
	}
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

func totalHits(web map[string]*webServer) int64 {
	var n int64
	for _, w := range web {
		n += w.hits.Load()
	}
	return n
}
