package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/proxy"
)

const e2eAdminToken = "e2e-admin-token-0123456789abcdef"

// adminConfig writes a one-datacenter config with the admin section given
// and loads it.
func adminConfig(t *testing.T, admin string) *configs.Config {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy.yaml")
	yaml := "node: {name: n1, datacenter: a}\nlisten: {address: \"127.0.0.1:0\"}\ncontinents: [{name: us}]\n" +
		"datacenters:\n  - {name: a, continent: us, capacity: 1, upstreams: [\"127.0.0.1:1\"]}\n" + admin
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serving starts a proxy for cfg on a free port and stops it at cleanup.
func serving(t *testing.T, cfg *configs.Config) *proxy.Server {
	t.Helper()
	srv, err := proxy.New(cfg, nil, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv
}

func adminGet(t *testing.T, addr, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStartAdmin(t *testing.T) {
	t.Setenv(configs.AdminTokenEnv, "")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	// Off unless enabled: nothing listens, and the nil endpoint is usable.
	off, err := startAdmin(adminConfig(t, ""), nil, nil, nil, log)
	if err != nil || off != nil || off.Addr() != "" || off.Shutdown(context.Background()) != nil {
		t.Fatalf("admin off: %v %v", off, err)
	}
	off.SetDraining()

	// The token from a file next to the config.
	cfg := adminConfig(t, "admin: {enabled: true, address: \"127.0.0.1:0\", token_file: admin.token}\n")
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg.Path), "admin.token"), []byte(e2eAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := serving(t, cfg)
	reloads := 0
	e, err := startAdmin(cfg, srv, nil, func() error { reloads++; return nil }, log)
	if err != nil {
		t.Fatal(err)
	}
	addr := e.Addr()
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
		t.Fatalf("admin listens on %s", addr)
	}
	if code, _ := adminGet(t, addr, "/admin/datacenters", ""); code != 401 {
		t.Fatalf("without the token: %d", code)
	}
	code, body := adminGet(t, addr, "/admin/datacenters", e2eAdminToken)
	var v proxy.DatacentersView
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || v.Node != "n1" || len(v.Datacenters) != 1 {
		t.Fatalf("with the token: %d %s", code, body)
	}
	waitFor(t, "ready", func() bool { c, _ := adminGet(t, addr, "/readyz", ""); return c == 200 })
	req, _ := http.NewRequest("POST", "http://"+addr+"/admin/reload", nil)
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 || reloads != 1 {
		t.Fatalf("reload: %v %v, %d reloads", resp, err, reloads)
	}
	e.SetDraining()
	if c, body := adminGet(t, addr, "/readyz", ""); c != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("readyz while draining: %d %s", c, body)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("the admin endpoint still listens after Shutdown")
	}

	// The environment wins over the file.
	t.Setenv(configs.AdminTokenEnv, "env-token-0123456789abcdef")
	e, err = startAdmin(cfg, srv, nil, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := adminGet(t, e.Addr(), "/admin/hot", "env-token-0123456789abcdef"); c != 200 {
		t.Fatalf("env token: %d", c)
	}
	if c, _ := adminGet(t, e.Addr(), "/admin/hot", e2eAdminToken); c != 401 {
		t.Fatalf("file token while the env one is set: %d", c)
	}
	e.Shutdown(context.Background())
	t.Setenv(configs.AdminTokenEnv, "")

	// Insecure mode on loopback: no token, and a warning.
	open := adminConfig(t, "admin: {enabled: true, address: \"127.0.0.1:0\", insecure_no_token: true}\n")
	e, err = startAdmin(open, serving(t, open), nil, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := adminGet(t, e.Addr(), "/admin/buckets", ""); c != 200 {
		t.Fatalf("insecure_no_token: %d", c)
	}
	e.Shutdown(context.Background())
	if !strings.Contains(logs.String(), "WITHOUT a token") {
		t.Fatalf("no warning for the open endpoint:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), e2eAdminToken) || strings.Contains(logs.String(), "env-token-0123456789abcdef") {
		t.Fatalf("a token is in the logs:\n%s", logs.String())
	}
}

func TestStartAdminRefuses(t *testing.T) {
	t.Setenv(configs.AdminTokenEnv, "")
	log := slog.New(slog.DiscardHandler)
	short := adminConfig(t, "admin: {enabled: true, address: \"127.0.0.1:0\", token_file: short.token}\n")
	os.WriteFile(filepath.Join(filepath.Dir(short.Path), "short.token"), []byte("hunter2\n"), 0o600)
	missing := adminConfig(t, "admin: {enabled: true, address: \"127.0.0.1:0\", token_file: nowhere.token}\n")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	t.Setenv(configs.AdminTokenEnv, e2eAdminToken)
	taken := adminConfig(t, fmt.Sprintf("admin: {enabled: true, address: %q}\n", busy.Addr().String()))
	t.Setenv(configs.AdminTokenEnv, "")

	for _, tt := range []struct {
		name, env string
		cfg       *configs.Config
		want      string
	}{
		{"short token", "", short, "7 characters; want at least 16"},
		{"missing token file", "", missing, "nowhere.token"},
		{"address in use", e2eAdminToken, taken, "admin: listen"},
	} {
		t.Setenv(configs.AdminTokenEnv, tt.env)
		e, err := startAdmin(tt.cfg, serving(t, tt.cfg), nil, nil, log)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			e.Shutdown(context.Background())
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the token", tt.name)
		}
	}
}

// An admin request still running when the node stops is cut after the
// grace, not waited for: a 30 s CPU profile must not hold the exit up
// (a supervisor's stop timeout would end the process with SIGKILL).
func TestAdminShutdownCutsRequestsAfterTheGrace(t *testing.T) {
	t.Setenv(configs.AdminTokenEnv, e2eAdminToken)
	cfg := adminConfig(t, "admin: {enabled: true, address: \"127.0.0.1:0\"}\n")
	e, err := startAdmin(cfg, serving(t, cfg), nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// A 30 s delta heap profile holds its request as the CPU profile
	// does, without the process's one CPU profiler: under `go test
	// -cpuprofile` that is taken, and /debug/pprof/profile answers 500
	// at once.
	req, _ := http.NewRequest("GET", "http://"+e.Addr()+"/debug/pprof/heap?seconds=30", nil)
	req.Header.Set("Authorization", "Bearer "+e2eAdminToken)
	answered := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		answered <- err
	}()
	time.Sleep(300 * time.Millisecond) // the profile is running

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.Shutdown(ctx); err == nil {
		t.Error("Shutdown reported nothing cut")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Shutdown waited %v for the profile", took)
	}
	select {
	case err := <-answered:
		if err == nil {
			t.Fatal("the profile finished: it was not in flight, so this test checked nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the profile's connection is still open after Shutdown")
	}
}

// A reload reads the admin token file again: a rotated token works at
// once and the leaked one is refused, without a restart. A reload whose
// token file cannot be read applies nothing.
func TestReloadRotatesTheAdminToken(t *testing.T) {
	t.Setenv(configs.AdminTokenEnv, "")
	cfg := adminConfig(t, "admin: {enabled: true, address: \"127.0.0.1:0\", token_file: admin.token}\n")
	tokenFile := filepath.Join(filepath.Dir(cfg.Path), "admin.token")
	if err := os.WriteFile(tokenFile, []byte(e2eAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := serving(t, cfg)
	log := slog.New(slog.DiscardHandler)
	e, err := startAdmin(cfg, srv, nil, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	const rotated = "rotated-admin-token-fedcba9876543210"
	if err := os.WriteFile(tokenFile, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	level := new(slog.LevelVar)
	if _, err := reload(srv, nil, e, cfg, cfg.Path, log, level); err != nil {
		t.Fatal(err)
	}
	if code, _ := adminGet(t, e.Addr(), "/admin/datacenters", e2eAdminToken); code != 401 {
		t.Fatalf("the old token after the rotation: %d, want 401", code)
	}
	if code, _ := adminGet(t, e.Addr(), "/admin/datacenters", rotated); code != 200 {
		t.Fatalf("the rotated token: %d, want 200", code)
	}
	os.Remove(tokenFile)
	if _, err := reload(srv, nil, e, cfg, cfg.Path, log, level); err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Fatalf("reload with the token file gone: %v, want refused", err)
	}
	if code, _ := adminGet(t, e.Addr(), "/admin/datacenters", rotated); code != 200 {
		t.Fatalf("the token in force after a refused reload: %d, want 200", code)
	}
}

// route answers from the config and the table: certificate and key files
// it cannot read (the service's, 0600) do not stop it.
func TestRouteNeedsNoTLSFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "proxy.yaml")
	yaml := "node: {name: n1, datacenter: a}\n" +
		"listen: {address: \"127.0.0.1:0\", tls: {certificates: [{cert_file: missing.pem, key_file: missing.key}]}}\n" +
		"continents: [{name: us}]\n" +
		"datacenters:\n  - {name: a, continent: us, capacity: 1, upstreams: [\"127.0.0.1:1\"], tls: {ca_file: missing-ca.pem}}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if code := run([]string{"route", "--config", path, "--user", "42"}, &out, &errs); code != 0 {
		t.Fatalf("route with TLS files it cannot read: exit %d\n%s", code, errs.String())
	}
	if !strings.Contains(out.String(), "a") {
		t.Fatalf("route printed %q", out.String())
	}
}
