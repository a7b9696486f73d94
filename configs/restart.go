package configs

import (
	"reflect"
	"strings"
)

// RestartOnly lists, by YAML field, the settings that differ between the
// running config a and the reloaded b but that a reload cannot apply: they
// are read once, when the process starts (the listener, the admin endpoint,
// the log format, the detector's and the placer's tickers). A reload
// applies everything else, so an operator told nothing would believe these
// took effect too.
//
// Not listed, because a reload applies them: listen.tls certificates,
// listen.drain_delay and listen.shutdown_timeout (read when SIGTERM comes),
// listen.max_headers and listen.headers_with_underscores (the request
// screen), log.level, admin.token_file (the token is read again). hot.max_spread is listed because the detector keeps
// the one it started with (the static list takes the new one). Node and
// datacenters with gossip on are refused by the reload itself, as is any
// change of gossip; gossip is listed for a node that runs without it.
func RestartOnly(a, b *Config) []string {
	var out []string
	la, lb := a.Listen, b.Listen
	switch {
	case (la.TLS == nil) != (lb.TLS == nil):
		out = append(out, "listen.tls")
	case la.TLS != nil:
		if la.TLS.MinVersion != lb.TLS.MinVersion {
			out = append(out, "listen.tls.min_version")
		}
		if la.TLS.WatchInterval != lb.TLS.WatchInterval {
			out = append(out, "listen.tls.watch_interval")
		}
	}
	la.TLS, lb.TLS = nil, nil
	// Read when SIGTERM comes, or by each state's request screen.
	la.DrainDelay, lb.DrainDelay, la.ShutdownTimeout, lb.ShutdownTimeout = 0, 0, 0, 0
	la.MaxHeaders, lb.MaxHeaders, la.HeadersWithUnderscores, lb.HeadersWithUnderscores = 0, 0, "", ""
	out = appendChanged(out, "listen.", la, lb)
	aa, ab := a.Admin, b.Admin
	aa.TokenFile, ab.TokenFile = "", "" // read again by each reload: a token rotates
	out = appendChanged(out, "admin.", aa, ab)
	for _, f := range []struct {
		name    string
		changed bool
	}{
		{"log.format", a.Log.Format != b.Log.Format},
		// (With gossip on, the reload refuses any change of it; without,
		// a gossip section added is started only by a restart.)
		{"gossip", !reflect.DeepEqual(a.Gossip, b.Gossip)},
		{"hot.detect_rate", a.Hot.DetectRate != b.Hot.DetectRate},
		{"hot.detect_tick", a.Hot.DetectTick != b.Hot.DetectTick},
		{"hot.max_spread", a.Hot.MaxSpread != b.Hot.MaxSpread},
		{"placement.stats_tick", a.Placement.StatsTick != b.Placement.StatsTick},
		{"placement.advise_every", a.Placement.AdviseEvery != b.Placement.AdviseEvery},
	} {
		if f.changed {
			out = append(out, f.name)
		}
	}
	return out
}

// appendChanged appends prefix plus the YAML name of every field of the
// structs a and b (of one type) whose values differ.
func appendChanged(out []string, prefix string, a, b any) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			name, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("yaml"), ",")
			out = append(out, prefix+name)
		}
	}
	return out
}
