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
	next, err := reload(srv, cfg, cfg.Path, false, log, level)
	if err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelDebug || next.Log.Level != "debug" {
		t.Fatalf("after reloading log.level: debug, the logger is at %v", level.Level())
	}
	if out := logs.String(); !strings.Contains(out, "take effect only after a restart") || !strings.Contains(out, "listen.read_timeout") {
		t.Fatalf("the reload did not name listen.read_timeout as needing a restart:\n%s", out)
	}
}
