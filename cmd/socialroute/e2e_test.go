package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/proxy"
	"github.com/valyala/fasthttp"
)

// binary is the socialroute command built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "socialroute-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "socialroute")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building socialroute: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// e2eDatacenters: three US and two EU datacenters, each one web server on
// its own loopback address 127.0.2.N.
var e2eDatacenters = []struct {
	name, continent string
	capacity        int
}{
	{"us-east", "us", 100}, {"us-central", "us", 80}, {"us-west", "us", 120},
	{"eu-west", "eu", 100}, {"eu-north", "eu", 60},
}

// webServer is one simulated datacenter's web tier: it answers with its
// name after a short think time, so requests are in flight at any moment.
type webServer struct {
	dc   string
	addr string
	ln   net.Listener
	hits atomic.Int64
}

func startWebServers(t *testing.T) map[string]*webServer {
	t.Helper()
	servers := map[string]*webServer{}
	for i, d := range e2eDatacenters {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.2.%d:0", i+1))
		if err != nil {
			t.Skipf("cannot listen on 127.0.2.%d (this test needs all of 127.0.0.0/8 on loopback): %v", i+1, err)
		}
		w := &webServer{dc: d.name, addr: ln.Addr().String(), ln: ln}
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			w.hits.Add(1)
			time.Sleep(2 * time.Millisecond)
			ctx.Response.Header.Set("X-Served-By", w.dc)
			ctx.SetBodyString("hello from " + w.dc)
		}}
		go srv.Serve(ln) //nolint:errcheck // ends when the listener closes
		t.Cleanup(func() { srv.Shutdown() })
		servers[d.name] = w
	}
	return servers
}

// writeConfig writes a config for the proxy under test; extra is appended
// as raw YAML (drains, pins).
func writeConfig(t *testing.T, path, listen string, web map[string]*webServer, extra string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  name: e2e\n  datacenter: us-east\nlisten:\n  address: %s\n  shutdown_timeout: 10s\n", listen)
	b.WriteString("upstream:\n  timeout: 2s\n  breaker:\n    consecutive_failures: 3\n    open_for: 1s\n")
	b.WriteString("buckets: 1024\ncontinents:\n  - name: us\n  - name: eu\ndatacenters:\n")
	for _, d := range e2eDatacenters {
		fmt.Fprintf(&b, "  - name: %s\n    continent: %s\n    capacity: %d\n    upstreams: [%q]\n", d.name, d.continent, d.capacity, web[d.name].addr)
	}
	b.WriteString("routing:\n  drain_ramp: 1ns\n  rules:\n    - path: /users/{key}\n    - header: X-User-ID\nlog:\n  level: info\n")
	b.WriteString(extra)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proxyProcess is a running `socialroute serve`.
type proxyProcess struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

// waitExit waits for p to exit after SIGTERM: within 15 s, with status 0,
// or the test fails.
func (p *proxyProcess) waitExit(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("%s exited with %v after SIGTERM", what, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15s of SIGTERM", what)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// launchProxy starts `socialroute serve --config config` and returns at
// once; the process is killed when the test ends, its logs shown if the
// test failed.
func launchProxy(t *testing.T, config string) *proxyProcess {
	t.Helper()
	p := &proxyProcess{cmd: exec.Command(binary, "serve", "--config", config), logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.logs
	p.cmd.Stdout = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("proxy logs:\n%s", p.logs.String())
		}
	})
	return p
}

// startProxy launches a proxy and waits until it listens on addr.
func startProxy(t *testing.T, config, addr string) *proxyProcess {
	t.Helper()
	p := launchProxy(t, config)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not listen on %s: %v\n%s", addr, err, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load runs workers that send GET /users/<id>/feed until stop is closed,
// counting answers by the datacenter that served them. A request refused at
// connect (the proxy has stopped listening) was never sent and counts as
// refused; any other error or a non-200 is a failure.
type load struct {
	ok, refused, failed atomic.Int64
	mu                  sync.Mutex
	byDC                map[string]int
	firstErr            atomic.Value
}

// runLoad starts the workers. A worker whose connection is refused stops
// (the proxy is gone) unless strict. A strict load keeps going after a
// pause, since a refusal is a request never sent, and turns off fasthttp's
// own retry of idempotent requests, so that no failed in-flight request
// hides behind a retry.
func runLoad(addr string, workers int, stop <-chan struct{}, strict bool) (*load, *sync.WaitGroup) {
	l := &load{byDC: map[string]int{}}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.HostClient{Addr: addr, ReadTimeout: 5 * time.Second, MaxConns: 4}
			if strict {
				c.MaxConns, c.MaxIdemponentCallAttempts = 2, 1
				c.RetryIfErr = func(*fasthttp.Request, int, error) (bool, bool) { return false, false }
			}
			var req fasthttp.Request
			var resp fasthttp.Response
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req.SetRequestURI(fmt.Sprintf("http://%s/users/%d/feed", addr, (w*100003+i*7919)%50000))
				err := c.Do(&req, &resp)
				var op *net.OpError
				switch {
				case err != nil && errors.As(err, &op) && op.Op == "dial":
					l.refused.Add(1)
					if !strict {
						return
					}
					time.Sleep(5 * time.Millisecond)
				case err != nil || resp.StatusCode() != 200:
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, fmt.Sprintf("err %v status %d body %q", err, resp.StatusCode(), resp.Body()))
				default:
					l.ok.Add(1)
					l.mu.Lock()
					l.byDC[string(resp.Header.Peek("X-Served-By"))]++
					l.mu.Unlock()
				}
			}
		}()
	}
	return l, &wg
}

// Many users, each on its home continent, through a real proxy process.
func TestEndToEndUsersLandOnTheirHomeContinent(t *testing.T) {
	web := startWebServers(t)
	dir := t.TempDir()
	config, addr := filepath.Join(dir, "proxy.yaml"), freeAddr(t)
	writeConfig(t, config, addr, web, "")
	startProxy(t, config, addr)

	// The expected route of each user comes from the same config through
	// the routing core in this process; the answer comes from the process.
	cfg, err := configs.Load(config)
	if err != nil {
		t.Fatal(err)
	}
	oracle, err := proxy.New(cfg, nil, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	client := &fasthttp.HostClient{Addr: addr, ReadTimeout: 5 * time.Second}
	continentOf := map[string]string{}
	for _, d := range e2eDatacenters {
		continentOf[d.name] = d.continent
	}
	served := map[string]int{}
	for id := range 2000 {
		var req fasthttp.Request
		var resp fasthttp.Response
		req.SetRequestURI(fmt.Sprintf("http://%s/users/%d/feed", addr, id))
		if err := client.Do(&req, &resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("user %d: %v %d", id, err, resp.StatusCode())
		}
		want := oracle.Explain(&req)
		got := string(resp.Header.Peek("X-Served-By"))
		if got != want.Chosen || continentOf[got] != want.Home {
			t.Fatalf("user %d (bucket %d, home %s) served by %s, want %s", id, want.Bucket, want.Home, got, want.Chosen)
		}
		if b := string(resp.Header.Peek("X-Socialroute-Bucket")); b != strconv.Itoa(int(want.Bucket)) {
			t.Fatalf("user %d: bucket header %q, want %d", id, b, want.Bucket)
		}
		served[got]++
	}
	for _, d := range e2eDatacenters {
		if served[d.name] == 0 {
			t.Errorf("%s served none of 2000 users: %v", d.name, served)
		}
	}
	t.Logf("2000 users by datacenter: %v", served)
}

// SIGHUP under load: the new config (a drained datacenter) takes effect and
// no request fails. SIGTERM under load: in-flight requests finish, the
// process exits 0, and no request the proxy accepted is lost.
func TestEndToEndReloadAndDrainUnderLoad(t *testing.T) {
	web := startWebServers(t)
	dir := t.TempDir()
	config, addr := filepath.Join(dir, "proxy.yaml"), freeAddr(t)
	writeConfig(t, config, addr, web, "")
	p := startProxy(t, config, addr)

	stop := make(chan struct{})
	l, wg := runLoad(addr, 8, stop, false)
	time.Sleep(700 * time.Millisecond)

	// Reload: drain us-west.
	writeConfig(t, config, addr, web, "drained: [us-west]\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reload", func() bool { return strings.Contains(p.logs.String(), "configuration reloaded") })
	westAtReload := web["us-west"].hits.Load()
	time.Sleep(700 * time.Millisecond)
	// A request routed just before the swap may still be in flight; after
	// that, us-west must see nothing.
	if extra := web["us-west"].hits.Load() - westAtReload; extra > 8 {
		t.Fatalf("us-west got %d requests after it was drained by reload", extra)
	}

	// A broken config on SIGHUP: logged, the old one stays.
	if err := os.WriteFile(config, []byte("buckets: -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "failed reload", func() bool { return strings.Contains(p.logs.String(), "reload failed") })
	time.Sleep(200 * time.Millisecond)

	// Drain.
	before := l.ok.Load()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitExit(t, "proxy")
	close(stop)
	wg.Wait()
	if l.failed.Load() != 0 {
		t.Fatalf("%d requests failed (first: %v); %d ok", l.failed.Load(), l.firstErr.Load(), l.ok.Load())
	}
	if l.ok.Load() < 500 || l.ok.Load() == before {
		t.Fatalf("only %d requests succeeded (%d before SIGTERM): the load did not run", l.ok.Load(), before)
	}
	if !strings.Contains(p.logs.String(), "draining") || !strings.Contains(p.logs.String(), "stopped") {
		t.Fatalf("logs do not show the drain:\n%s", p.logs.String())
	}
	t.Logf("ok %d, refused after shutdown %d, failed %d; by datacenter %v", l.ok.Load(), l.refused.Load(), l.failed.Load(), l.byDC)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With listen.drain_delay, SIGTERM makes /readyz fail at once while the
// listener still serves (every answer with Connection: close, so clients
// come back through the balancer); only after the delay does the drain
// stop accepting, and the process exits 0. A second SIGTERM ends the wait
// at once.
func TestEndToEndDrainDelay(t *testing.T) {
	web := startWebServers(t)
	start := func(t *testing.T, delay string) (*proxyProcess, string, string) {
		dir := t.TempDir()
		config, addr, admin := filepath.Join(dir, "proxy.yaml"), freeAddr(t), freeAddr(t)
		writeConfig(t, config, addr, web, fmt.Sprintf("admin: {enabled: true, address: %q, insecure_no_token: true}\n", admin))
		b, err := os.ReadFile(config)
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.Replace(string(b), "  shutdown_timeout: 10s\n", "  shutdown_timeout: 10s\n  drain_delay: "+delay+"\n", 1))
		if err := os.WriteFile(config, b, 0o644); err != nil {
			t.Fatal(err)
		}
		p := startProxy(t, config, addr)
		waitFor(t, "ready", func() bool { return readyz(admin) == 200 })
		return p, addr, admin
	}

	t.Run("serves through the delay, then drains", func(t *testing.T) {
		const delay = 3 * time.Second
		p, addr, admin := start(t, delay.String())
		sent := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "readyz to fail", func() bool { c, _ := adminGet(t, admin, "/readyz", ""); return c == 503 })
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get("http://" + addr + "/users/7")
		if err != nil {
			t.Fatalf("a new connection during the drain delay (%v after SIGTERM): %v", time.Since(sent), err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !resp.Close {
			t.Fatalf("during the drain delay: status %d, Connection: close %v; want 200 and close", resp.StatusCode, resp.Close)
		}
		// A reload asked for now is refused at once, 503 (a node that
		// drains takes no changes: they would not reach the fleet), not
		// left waiting for a loop that takes no more until the exit.
		asked := time.Now()
		resp, err = client.Post("http://"+admin+"/admin/reload", "", nil)
		if err != nil {
			t.Fatalf("a reload during the drain delay: %v", err)
		}
		resp.Body.Close()
		if took := time.Since(asked); resp.StatusCode != 503 || took > delay/2 {
			t.Fatalf("a reload during the drain delay: %d after %v; want 503 at once (the delay is %v)", resp.StatusCode, took, delay)
		}
		p.waitExit(t, "proxy")
		if took := time.Since(sent); took < delay {
			t.Fatalf("exited %v after SIGTERM, before the %v drain delay", took, delay)
		}
	})

	t.Run("a second signal stops at once", func(t *testing.T) {
		p, _, admin := start(t, "60s")
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "readyz to fail", func() bool { c, _ := adminGet(t, admin, "/readyz", ""); return c == 503 })
		sent := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("still running %v after a second SIGTERM, with a 60s drain delay", time.Since(sent))
		}
		if !strings.Contains(p.logs.String(), "second signal") {
			t.Fatalf("the logs do not say why it stopped:\n%s", p.logs.String())
		}
	})
}

// SIGHUPs while the process stops (logrotate's, say) are not its end: with
// a CPU profile holding the admin endpoint through its grace, the process
// still exits 0, not killed by a SIGHUP's default action.
func TestEndToEndSighupWhileStoppingIsHarmless(t *testing.T) {
	web := startWebServers(t)
	dir := t.TempDir()
	config, addr, admin := filepath.Join(dir, "proxy.yaml"), freeAddr(t), freeAddr(t)
	writeConfig(t, config, addr, web, fmt.Sprintf("admin: {enabled: true, address: %q, insecure_no_token: true}\n", admin))
	p := startProxy(t, config, addr)
	waitFor(t, "ready", func() bool { return readyz(admin) == 200 })
	go func() {
		if resp, err := http.Get("http://" + admin + "/debug/pprof/profile?seconds=30"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	time.Sleep(300 * time.Millisecond) // the profile is running
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("the proxy exited with %v, want 0", err)
			}
			if !strings.Contains(p.logs.String(), "SIGHUP while stopping: not reloaded") {
				t.Fatal("the SIGHUPs while it stopped were dropped without a word")
			}
			return
		case <-time.After(100 * time.Millisecond):
			p.cmd.Process.Signal(syscall.SIGHUP)
		case <-deadline:
			t.Fatal("the proxy did not exit within 20 s of SIGTERM")
		}
	}
}

// readyz is the status of GET /readyz on the admin address, 0 while
// nothing listens there: the process opens its client listener first, so
// the admin one may not be up yet when startProxy returns.
func readyz(admin string) int {
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A SIGHUP while the process starts (a deploy's reload as a restart loads
// its table) is kept and applied once it serves: its default action would
// kill the process with a status a service manager takes for a clean stop.
func TestEndToEndSighupDuringStartupIsNotFatal(t *testing.T) {
	web := startWebServers(t)
	dir := t.TempDir()
	config, addr, fifo := filepath.Join(dir, "proxy.yaml"), freeAddr(t), filepath.Join(dir, "table.srt")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no FIFO to hold the start on: %v", err)
	}
	writeConfig(t, config, addr, web, "table: "+fifo+"\n")
	b, err := hashing.NewTableBuilder(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Add("7", 9)
	table, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	// Each open of the FIFO by the proxy (the start, then the reload) gets
	// the table, once the test lets it through.
	feed, stop := make(chan struct{}), make(chan struct{})
	defer close(stop)
	go func() {
		<-feed
		for {
			f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err == nil {
				_ = syscall.SetNonblock(int(f.Fd()), false)
				table.WriteTo(f)
				f.Close()
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	p := launchProxy(t, config)
	time.Sleep(300 * time.Millisecond) // it waits for the table
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(feed)
	waitFor(t, "the SIGHUP's reload, once serving", func() bool {
		select {
		case err := <-p.done:
			t.Fatalf("the proxy exited on a SIGHUP during its start: %v", err)
		default:
		}
		return strings.Contains(p.logs.String(), "configuration reloaded")
	})
	if c, err := net.Dial("tcp", addr); err != nil {
		t.Fatalf("not serving after the reload: %v", err)
	} else {
		c.Close()
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitExit(t, "the proxy")
}
