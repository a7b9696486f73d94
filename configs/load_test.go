package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParseDecodeErrors covers what goes wrong before validation: YAML
// syntax, strict decoding and the document's shape.
func TestParseDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []refusal{
		{"unknown field in a datacenter", lines(
			`node: {datacenter: a}`,
			`continents: [{name: us}]`,
			`datacenters:`,
			`  - name: a`,
			`    continent: us`,
			`    capacity: 1`,
			`    upstreams: ["h:1"]`,
			`    capcity: 2`,
		), []problem{{"datacenters[0].capcity", 8, `unknown field (did you mean "capacity"?)`}}},
		{"unknown top-level field", base(`listn:`, `  address: ":80"`),
			[]problem{{"listn", 5, `unknown field (did you mean "listen"?)`}}},
		{"unknown field, nothing close", base(`upstream:`, `  breaker:`, `    jitter: 1s`),
			[]problem{{"upstream.breaker.jitter", 7, "unknown field (known: consecutive_failures, open_for, half_open_requests, failure_ratio, min_requests, window)"}}},
		{"unknown field in a rule", base(`routing:`, `  rules:`, `    - header: X-User-ID`, `      prefix: /api`),
			[]problem{{"routing.rules[0].prefix", 8, "unknown field"}}},
		{"two unknown fields", base(`node_name: x`, `log: {levle: debug}`),
			[]problem{{"node_name", 5, "unknown field"}, {"log.levle", 6, `did you mean "level"?`}}},
		{"duplicate key", lines(
			`node:`,
			`  datacenter: a`,
			`  datacenter: b`,
			`continents: [{name: us}]`,
		), []problem{{"node.datacenter", 3, "duplicate key (first at line 2)"}}},
		{"string for a number", base(`buckets: many`),
			[]problem{{"buckets", 5, "want an integer, got !!str `many`"}}},
		{"duration without unit", base(`listen:`, `  read_timeout: 10`),
			[]problem{{"listen.read_timeout", 6, `want a duration with a unit such as "10s"`}}},
		{"bad duration", base(`upstream: {timeout: 10 seconds}`),
			[]problem{{"upstream.timeout", 5, "want a duration"}}},
		{"list for a string", base(`node_x: 1`, `log:`, `  level: [debug]`),
			[]problem{{"node_x", 5, "unknown field"}, {"log.level", 7, "want a string, got !!seq"}}},
		{"value in a flow list", base(`drained: [a, {b: c}]`),
			[]problem{{"drained[1]", 5, "want a string, got !!map"}}},
		{"mapping for a list", base(`continents_x: 1`, `drained: {a: b}`),
			[]problem{{"continents_x", 5, "unknown field"}, {"drained", 6, "want a list, got !!map"}}},
		{"bool", base(`routing:`, `  response_headers: sometimes`),
			[]problem{{"routing.response_headers", 6, "want true or false"}}},
		// Syntax errors carry the YAML parser's line. It is right for
		// errors the scanner finds, as here; errors found by the parser
		// proper ("did not find expected key") may point a line early.
		{"syntax error", lines(`node: {datacenter: a}`, `continents: [{name: us}]`, `datacenters: a: b`),
			[]problem{{"", 3, "mapping values are not allowed in this context"}}},
		{"tab indentation", lines(`node:`, "\tdatacenter: a"),
			[]problem{{"", 2, "found character that cannot start any token"}}},
		{"two documents", lines(`node: {datacenter: a}`, `---`, `node: {datacenter: b}`),
			[]problem{{"", 2, "more than one YAML document"}}},
		{"trailing document marker", base(`---`),
			[]problem{{"", 5, "more than one YAML document"}}},
		{"list document", lines(`# a comment`, `- a`, `- b`),
			[]problem{{"", 2, "want a mapping of settings, got a list"}}},
		{"scalar document", lines(`hello`),
			[]problem{{"", 1, "want a mapping of settings, got a single value"}}},
		{"null document", lines(`null`),
			[]problem{{"", 1, "empty document"}}},
	}
	checkRefusals(t, tests)
}

func TestParseEmpty(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{"", "\n\n", "# only a comment\n", "---\n"} {
		cfg, err := Parse([]byte(doc), "empty.yaml")
		if cfg != nil || err == nil {
			t.Errorf("Parse(%q) = %v, %v; want an error", doc, cfg, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "configs: empty.yaml") || !strings.Contains(err.Error(), "empty document") {
			t.Errorf("Parse(%q) error = %q", doc, err)
		}
	}
}

// TestParseMessagesAreOurs checks the rewrite of yaml's own messages: no
// "yaml:" prefix and no "line N:" left inside a message.
func TestParseMessagesAreOurs(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{
		lines(`node:`, `  datacenter: a`, ` continents: []`),
		base(`buckets: many`, `nope: 1`),
		base(`x: *missing`),
	} {
		_, err := Parse([]byte(doc), "t.yaml")
		if err == nil {
			t.Fatalf("Parse(%q) accepted", doc)
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			rest, ok := strings.CutPrefix(line, "configs: t.yaml")
			if !ok || strings.Contains(rest, "yaml: ") || strings.Contains(rest, "line ") {
				t.Errorf("message not rewritten: %q", line)
			}
		}
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(path, []byte(base(`table: tables/users.sht`)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path {
		t.Errorf("Path = %q, want %q", cfg.Path, path)
	}
	if got, want := cfg.TablePath(), filepath.Join(dir, "tables", "users.sht"); got != want {
		t.Errorf("TablePath() = %q, want %q", got, want)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(base(`buckets: -1`)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if want := "configs: " + bad + ":5: buckets: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load(bad) = %v, want prefix %q", err, want)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "configs: ") {
		t.Errorf("Load(missing) = %v, want a wrapped fs.ErrNotExist", err)
	}
}

func TestTablePath(t *testing.T) {
	t.Parallel()
	abs := filepath.Join(t.TempDir(), "t.sht")
	tests := []struct{ path, table, want string }{
		{"/etc/sr/edge.yaml", "", ""},
		{"/etc/sr/edge.yaml", "t.sht", filepath.Join("/etc/sr", "t.sht")},
		{"/etc/sr/edge.yaml", abs, abs},
		{"", "t.sht", "t.sht"},
		{"edge.yaml", "t.sht", "t.sht"},
	}
	for _, tt := range tests {
		c := &Config{Path: tt.path, Table: tt.table}
		if got := c.TablePath(); got != tt.want {
			t.Errorf("TablePath(%q, %q) = %q, want %q", tt.path, tt.table, got, tt.want)
		}
	}
}

func TestLineOf(t *testing.T) {
	t.Parallel()
	root, ferr := parseTree([]byte(lines(
		`node:`, // 1
		`  datacenter: a`,
		`homes:`,
		`  "0-127": us`, // 4
		`datacenters:`,
		`  - name: a`, // 6
		`    upstreams:`,
		`      - "h:1"`,
		`      - "h:2"`, // 9
		`defaults: &d {capacity: 1}`,
		`other: *d`, // 11
	)), "t.yaml")
	if ferr != nil {
		t.Fatal(ferr)
	}
	tests := []struct {
		field string
		line  int
	}{
		{"", 1},
		{"node", 1},
		{"node.datacenter", 2},
		{"node.name", 2}, // missing: the node mapping's line
		{`homes["0-127"]`, 4},
		{`homes["128"]`, 4}, // missing key: the homes mapping's line
		{"datacenters[0]", 6},
		{"datacenters[0].upstreams", 7},
		{"datacenters[0].upstreams[1]", 9},
		{"datacenters[0].upstreams[5]", 7}, // past the end: the list's key
		{"datacenters[3].name", 5},
		{"routing.rules[0]", 1}, // a default: the document's line
		{"other.capacity", 10},  // through an alias
		{"node.datacenter.x", 2},
		{`bad["`, 1},
	}
	for _, tt := range tests {
		if got := lineOf(root, tt.field); got != tt.line {
			t.Errorf("lineOf(%q) = %d, want %d", tt.field, got, tt.line)
		}
	}
}

func TestSplitPathRoundTrip(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		"buckets", "datacenters[2].capacity", `homes["0-127"]`, `pins["a\"]b"]`,
		"routing.rules[0].path", "continents[10].failover_to[3]",
	} {
		segs, ok := splitPath(p)
		if !ok || formatPath(segs) != p {
			t.Errorf("splitPath(%q) = %v, %v; formats back as %q", p, segs, ok, formatPath(segs))
		}
	}
	for _, p := range []string{`a[`, `a[x]`, `a["b]`, `a..b`, `a[-1]`} {
		if _, ok := splitPath(p); ok {
			t.Errorf("splitPath(%q) accepted", p)
		}
	}
}

func TestApplyDefaults(t *testing.T) {
	// Not parallel: replaces hostname.
	old := hostname
	t.Cleanup(func() { hostname = old })
	hostname = func() (string, error) { return "edge-test-1", nil }

	cfg, err := Parse([]byte(base()), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"node.name", cfg.Node.Name, "edge-test-1"},
		{"buckets", cfg.Buckets, 4096},
		{"listen.address", cfg.Listen.Address, "127.0.0.1:8080"},
		{"listen.read_timeout", cfg.Listen.ReadTimeout, 10 * time.Second},
		{"listen.idle_timeout", cfg.Listen.IdleTimeout, time.Minute},
		{"listen.max_request_body_size", cfg.Listen.MaxRequestBodySize, 4 << 20},
		{"listen.max_header_bytes", cfg.Listen.MaxHeaderBytes, 16 << 10},
		{"listen.concurrency", cfg.Listen.Concurrency, 256 * 1024},
		{"listen.shutdown_timeout", cfg.Listen.ShutdownTimeout, 30 * time.Second},
		{"upstream.connect_timeout", cfg.Upstream.ConnectTimeout, time.Second},
		{"upstream.timeout", cfg.Upstream.Timeout, 10 * time.Second},
		{"upstream.max_conns_per_host", cfg.Upstream.MaxConnsPerHost, 512},
		{"upstream.max_idle_conn_duration", cfg.Upstream.MaxIdleConnDuration, 4 * time.Second},
		{"upstream.max_conn_wait_timeout", cfg.Upstream.MaxConnWaitTimeout, 100 * time.Millisecond},
		{"upstream.retries", *cfg.Upstream.Retries, 1},
		{"upstream.retry_budget", *cfg.Upstream.RetryBudget, 0.2},
		{"upstream.breaker", cfg.Upstream.Breaker, Breaker{ConsecutiveFailures: 5, OpenFor: 5 * time.Second, HalfOpenRequests: 1, FailureRatio: 0.5, MinRequests: 20, Window: 10 * time.Second}},
		{"routing.rules", cfg.Routing.Rules, []Rule{{Header: "X-User-ID"}}},
		{"routing.no_key", cfg.Routing.NoKey, "local"},
		{"routing.max_key_length", cfg.Routing.MaxKeyLength, 128},
		{"routing.response_headers", *cfg.Routing.ResponseHeaders, true},
		{"log", cfg.Log, Log{Level: "info", Format: "text"}},
		{"continents[0].failover_to", cfg.Continents[0].FailoverTo, []string(nil)},
		{"table", cfg.Table, ""},
		{"path", cfg.Path, ""},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}

	// Set values, including an explicit 0 and false, are kept.
	cfg, err = Parse([]byte(lines(
		`node: {name: n1, datacenter: a}`,
		`continents: [{name: us}]`,
		`datacenters: [{name: a, continent: us, capacity: 1, upstreams: ["h:1"]}]`,
		`upstream: {retries: 0, retry_budget: 0, timeout: 2s}`,
		`routing: {response_headers: false, no_key: reject, rules: [{cookie: uid}]}`,
		`buckets: 64`,
	)), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Name != "n1" || *cfg.Upstream.Retries != 0 || *cfg.Upstream.RetryBudget != 0 || cfg.Upstream.Timeout != 2*time.Second ||
		*cfg.Routing.ResponseHeaders || cfg.Routing.NoKey != "reject" || cfg.Buckets != 64 ||
		!reflect.DeepEqual(cfg.Routing.Rules, []Rule{{Cookie: "uid"}}) {
		t.Errorf("set values were overwritten: %+v", cfg)
	}

	// Idempotent, and the default rule is not shared between configs.
	var a, b Config
	a.ApplyDefaults()
	before := a
	a.ApplyDefaults()
	if !reflect.DeepEqual(a, before) {
		t.Errorf("second ApplyDefaults changed the config")
	}
	b.ApplyDefaults()
	a.Routing.Rules[0].Header = "X-Changed"
	if b.Routing.Rules[0].Header != "X-User-ID" {
		t.Errorf("default rules are shared between configs")
	}

	// A host name that cannot be read leaves the name empty.
	hostname = func() (string, error) { return "", errors.New("no name") }
	var c Config
	c.ApplyDefaults()
	if c.Node.Name != "" {
		t.Errorf("Node.Name = %q, want empty", c.Node.Name)
	}
}

// TestApplyDefaultsCoversEveryField guards the one-place rule: a field
// added to the config without a default here shows up as still zero.
func TestApplyDefaultsCoversEveryField(t *testing.T) {
	t.Parallel()
	var c Config
	c.Node.Name = "n" // the host name is not the point here
	c.ApplyDefaults()
	// Fields that are legitimately zero after ApplyDefaults: required or
	// optional input without a default.
	optional := map[string]bool{
		"Node.Datacenter": true, "Table": true, "Continents": true, "Datacenters": true,
		"Homes": true, "Pins": true, "Drained": true, "Path": true,
		// Gossip is off unless bound; a pool's peers and the key are input.
		"Gossip.LAN.Bind": true, "Gossip.LAN.Advertise": true, "Gossip.LAN.Join": true,
		"Gossip.WAN.Bind": true, "Gossip.WAN.Advertise": true, "Gossip.WAN.Join": true,
		"Gossip.KeyFile": true, "Gossip.CheckPath": true,
		"Datacenters.MaxRPS": true,
		// A hot list is input; siblings stay home unless asked.
		"Hot.File": true, "Hot.CrossContinent": true,
		"Listen.MaxConnsPerIP": true, // 0 is the default: no cap
		"Listen.DrainDelay":    true, // 0 is the default: stop accepting at once
		// TLS and the PROXY protocol are off unless configured (their
		// own defaults are checked in tls_test.go); reuse_port is opt-in.
		"Listen.TLS": true, "Listen.ProxyProtocol": true, "Listen.ReusePort": true,
		// The admin endpoint is off unless enabled; its token is input.
		"Admin.Enabled": true, "Admin.TokenFile": true, "Admin.InsecureNoToken": true,
		// Moves are applied automatically only when asked.
		"Placement.AutoApply": true,
	}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name := prefix + f.Name
			if optional[name] {
				continue
			}
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct {
				walk(name+".", fv)
				continue
			}
			if fv.IsZero() {
				t.Errorf("%s has no default", name)
			}
		}
	}
	walk("", reflect.ValueOf(c))
}
