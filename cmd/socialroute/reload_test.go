package main

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/socialroute/socialroute/proxy"
)

// A reload applies log.level at once, and names the settings it cannot
// apply instead of passing over them.
func TestReloadAppliesLogLevelAndNamesRestartOnlySettings(t *testing.T) {
	cfg := adminConfig(t, "log: {level: info}\n")
	var logs bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.Log.Level))
	log := newLogger(cfg.Log.Format, level, &logs)
	srv, err := proxy.New(cfg, nil, proxy.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "log: {level: info}", "log: {level: debug}", 1)
	changed = strings.Replace(changed, `listen: {address: "127.0.0.1:0"}`, `listen: {address: "127.0.0.1:0", read_timeout: 3s}`, 1)
	if err := os.WriteFile(cfg.Path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	next, err := reload(srv, nil, nil, cfg, cfg.Path, log, level)
	if err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelDebug || next.Log.Level != "debug" {
		t.Fatalf("after reloading log.level: debug, the logger is at %v", level.Level())
	}
	if out := logs.String(); !strings.Contains(out, "take effect only after a restart") || !strings.Contains(out, "listen.read_timeout") {
		t.Fatalf("the reload did not name listen.read_timeout as needing a restart:\n%s", out)
	}
	// Named again at the next reload, as long as the file differs from
	// what runs (the warning compares with the start, not the last file);
	// and not once the file is back at what runs.
	logs.Reset()
	if _, err := reload(srv, nil, nil, next, cfg.Path, log, level); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "listen.read_timeout") {
		t.Fatalf("a second reload of the same file forgot that listen.read_timeout waits for a restart:\n%s", out)
	}
	if err := os.WriteFile(cfg.Path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if _, err := reload(srv, nil, nil, next, cfg.Path, log, level); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); strings.Contains(out, "take effect only after a restart") {
		t.Fatalf("the file back at the running values still warned of a restart:\n%s", out)
	}
}

// Whether the last reload applied is a metric, so an alert can catch a
// node left on an old configuration by a file it refused; a file that
// does not even parse counts.
func TestReloadOutcomeIsAMetric(t *testing.T) {
	cfg := adminConfig(t, "")
	level := new(slog.LevelVar)
	log := slog.New(slog.DiscardHandler)
	srv, err := proxy.New(cfg, nil, proxy.Options{Logger: log, Version: "v9.9.9-test"})
	if err != nil {
		t.Fatal(err)
	}
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := srv.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	started := gauge("socialroute_config_last_reload_success_timestamp_seconds")
	if gauge("socialroute_config_last_reload_successful") != 1 || started == 0 || gauge("socialroute_build_info") != 1 {
		t.Fatal("at start: the last load is not a success, or build_info is missing")
	}
	good, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Path, []byte("buckets: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reload(srv, nil, nil, cfg, cfg.Path, log, level); err == nil {
		t.Fatal("a file that does not parse reloaded")
	}
	if got := gauge("socialroute_config_last_reload_successful"); got != 0 {
		t.Fatalf("after a refused reload: last_reload_successful = %v, want 0", got)
	}
	if got := gauge("socialroute_config_last_reload_success_timestamp_seconds"); got != started {
		t.Fatalf("a refused reload moved the success timestamp: %v -> %v", started, got)
	}
	if err := os.WriteFile(cfg.Path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := reload(srv, nil, nil, cfg, cfg.Path, log, level); err != nil {
		t.Fatal(err)
	}
	if got := gauge("socialroute_config_last_reload_successful"); got != 1 {
		t.Fatalf("after a reload that applied: last_reload_successful = %v, want 1", got)
	}
}
