package configs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// lines joins YAML lines, so that a case's line numbers can be read off
// its position in the list: the first string is line 1.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// valid is the smallest valid config, four lines; base appends to it, so
// the first extra line is line 5.
var valid = []string{
	`node: {datacenter: a}`,
	`continents: [{name: us}]`,
	`datacenters:`,
	`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
}

func base(extra ...string) string {
	return lines(append(append([]string(nil), valid...), extra...)...)
}

// problem is one FieldError a case must report.
type problem struct {
	field string
	line  int
	msg   string // a substring of Msg
}

// refusal is a config document Parse must refuse, with exactly the
// problems it must report.
type refusal struct {
	name string
	yaml string
	want []problem
}

// checkRefusals parses each case (in parallel subtests) and asserts the
// refusal: no config, and exactly the problems of checkProblems.
func checkRefusals(t *testing.T, tests []refusal) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse([]byte(tt.yaml), "t.yaml")
			if cfg != nil {
				t.Errorf("Parse returned a config along with an error")
			}
			checkProblems(t, "t.yaml", err, tt.want...)
		})
	}
}

// checkProblems asserts that err holds exactly want, in any order, each
// with the field path, line and message given, and that every one reads as
// "configs: name:line: field: ...".
func checkProblems(t *testing.T, name string, err error, want ...problem) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %d problem(s): %v", len(want), want)
	}
	got := FieldErrors(err)
	if len(got) != len(want) {
		t.Errorf("got %d problem(s), want %d:\n%v", len(got), len(want), err)
	}
	for _, w := range want {
		found := false
		for _, fe := range got {
			if fe.Field == w.field && fe.Line == w.line && strings.Contains(fe.Msg, w.msg) {
				found = true
				prefix := fmt.Sprintf("configs: %s:%d: %s: ", name, w.line, w.field)
				if w.field == "" {
					prefix = fmt.Sprintf("configs: %s:%d: ", name, w.line)
				}
				if !strings.HasPrefix(fe.Error(), prefix) {
					t.Errorf("Error() = %q, want prefix %q", fe.Error(), prefix)
				}
			}
		}
		if !found {
			t.Errorf("missing problem %s at line %d (%q); got:\n%v", w.field, w.line, w.msg, err)
		}
	}
}

func TestValidateRules(t *testing.T) {
	t.Parallel()
	many := []string{`node: {datacenter: dc0}`, `continents: [{name: us}]`, `datacenters:`}
	for i := range MaxDatacenters + 1 {
		many = append(many, fmt.Sprintf(`  - {name: dc%d, continent: us, capacity: 1, upstreams: ["h:%d"]}`, i, i+1))
	}

	tests := []refusal{
		// buckets
		{"buckets too many", base(`buckets: 70000`),
			[]problem{{"buckets", 5, "must be between 1 and 65536"}}},
		{"buckets negative", base(`buckets: -1`),
			[]problem{{"buckets", 5, "must be between 1 and 65536"}}},

		// continents
		{"no continents key", lines(
			`node: {datacenter: a}`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{
			{"continents", 1, "at least one continent"},
			{"datacenters[0].continent", 3, `unknown continent "us"`},
		}},
		{"continent without name", lines(
			`node: {datacenter: a}`,
			`continents:`,
			`  - name: us`,
			`  - failover_to: [us]`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"continents[1].name", 4, "is required"}}},
		{"continent name with capitals", lines(
			`node: {datacenter: a}`,
			`continents: [{name: US}]`,
			`datacenters:`,
			`  - {name: a, continent: US, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"continents[0].name", 2, `invalid continent name "US"`}}},
		{"node name too long", lines(
			`node: {datacenter: a, name: `+strings.Repeat("n", 256)+`}`,
			`continents: [{name: us}]`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"node.name", 1, `is 256 bytes, over 255`}}},
		{"continent name too long", lines(
			`continents: [{name: `+strings.Repeat("u", 64)+`}]`,
			`datacenters: [{name: a, continent: `+strings.Repeat("u", 64)+`, capacity: 1, upstreams: ["h:1"]}]`,
			`node: {datacenter: a}`,
		), []problem{{"continents[0].name", 1, `is 64 bytes, over 63`}}},
		{"duplicate continent", lines(
			`node: {datacenter: a}`,
			`continents:`,
			`  - name: us`,
			`  - name: us`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"continents[1].name", 4, `duplicate continent name "us" (also continents[0])`}}},
		{"continent without datacenters", lines(
			`node: {datacenter: a}`,
			`continents:`,
			`  - name: us`,
			`  - name: eu`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"continents[1]", 4, `continent "eu" has no datacenters`}}},
		{"failover to unknown continent", lines(
			`node: {datacenter: a}`,
			`continents:`,
			`  - name: us`,
			`    failover_to: [mars]`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"continents[0].failover_to[0]", 4, `unknown continent "mars"`}}},
		{"failover to itself", lines(
			`node: {datacenter: a}`,
			`continents:`,
			`  - name: us`,
			`    failover_to: [us]`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"continents[0].failover_to[0]", 4, "cannot fail over to itself"}}},
		{"failover repeated", lines(
			`node: {datacenter: a}`,
			`continents:`,
			`  - name: us`,
			`    failover_to:`,
			`      - eu`,
			`      - eu`,
			`  - name: eu`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
			`  - {name: b, continent: eu, capacity: 1, upstreams: ["h:2"]}`,
		), []problem{{"continents[0].failover_to[1]", 6, `continent "eu" is listed twice`}}},

		// datacenters
		{"no datacenters", lines(
			`node: {datacenter: a}`,
			`continents: [{name: us}]`,
			`datacenters: []`,
		), []problem{
			{"node.datacenter", 1, `unknown datacenter "a"`},
			{"continents[0]", 2, "has no datacenters"},
			{"datacenters", 3, "at least one datacenter"},
		}},
		{"too many datacenters", lines(many...),
			[]problem{{"datacenters", 3, "at most 64 datacenters"}}},
		{"datacenter name invalid", lines(
			`node: {datacenter: "a b"}`,
			`continents: [{name: us}]`,
			`datacenters:`,
			`  - {name: "a b", continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"datacenters[0].name", 4, `invalid datacenter name "a b"`}}},
		{"datacenter name missing", base(
			`  - {continent: us, capacity: 1, upstreams: ["h:2"]}`,
		), []problem{{"datacenters[1].name", 5, "is required"}}},
		{"duplicate datacenter", base(
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:2"]}`,
		), []problem{{"datacenters[1].name", 5, `duplicate datacenter name "a" (also datacenters[0])`}}},
		{"unknown continent", base(
			`  - name: b`,
			`    continent: mars`,
			`    capacity: 1`,
			`    upstreams: ["h:2"]`,
		), []problem{{"datacenters[1].continent", 6, `unknown continent "mars"`}}},
		{"continent missing: parent mapping's line", base(
			`  - name: b`,
			`    capacity: 1`,
			`    upstreams: ["h:2"]`,
		), []problem{{"datacenters[1].continent", 5, "is required"}}},
		{"capacity zero", base(
			`  - name: b`,
			`    continent: us`,
			`    capacity: 0`,
			`    upstreams: ["h:2"]`,
		), []problem{{"datacenters[1].capacity", 7, "must be greater than 0"}}},
		{"capacity negative", base(
			`  - name: b`,
			`    continent: us`,
			`    capacity: -3.5`,
			`    upstreams: ["h:2"]`,
		), []problem{{"datacenters[1].capacity", 7, "must be greater than 0"}}},
		{"capacity missing", base(
			`  - name: b`,
			`    continent: us`,
			`    upstreams: ["h:2"]`,
		), []problem{{"datacenters[1].capacity", 5, "must be greater than 0"}}},
		{"capacity NaN", base(
			`  - name: b`,
			`    continent: us`,
			`    capacity: .nan`,
			`    upstreams: ["h:2"]`,
		), []problem{{"datacenters[1].capacity", 7, "must be a finite number"}}},
		{"capacity infinite", base(
			`  - name: b`,
			`    continent: us`,
			`    capacity: .inf`,
			`    upstreams: ["h:2"]`,
		), []problem{{"datacenters[1].capacity", 7, "must be a finite number"}}},
		{"no upstreams", base(
			`  - name: b`,
			`    continent: us`,
			`    capacity: 1`,
			`    upstreams: []`,
		), []problem{{"datacenters[1].upstreams", 8, "at least one upstream"}}},
		{"duplicate upstream across datacenters", base(
			`  - name: b`,
			`    continent: us`,
			`    capacity: 1`,
			`    upstreams:`,
			`      - "h:2"`,
			`      - "H:01"`, // the same address as datacenters[0]'s, spelled differently
		), []problem{{"datacenters[1].upstreams[1]", 10, `duplicate upstream "H:01" (also datacenters[0].upstreams[0])`}}},

		// homes and pins
		{"homes key not a range", base(`homes:`, `  "abc": us`),
			[]problem{{`homes["abc"]`, 6, `invalid bucket range "abc"`}}},
		{"homes range reversed", base(`homes:`, `  "9-3": us`),
			[]problem{{`homes["9-3"]`, 6, "9 is greater than 3"}}},
		{"homes beyond buckets", base(`buckets: 64`, `homes:`, `  "0-127": us`),
			[]problem{{`homes["0-127"]`, 7, "outside 0-63"}}},
		{"homes unknown continent", base(`homes:`, `  "0-127": mars`),
			[]problem{{`homes["0-127"]`, 6, `unknown continent "mars"`}}},
		{"homes overlap", base(`homes:`, `  "0-127": us`, `  "100-200": us`),
			[]problem{{`homes["100-200"]`, 7, `overlaps homes["0-127"]`}}},
		{"homes single bucket inside range", base(`homes:`, `  "0-127": us`, `  "7": us`),
			[]problem{{`homes["7"]`, 7, `overlaps homes["0-127"]`}}},
		{"pins unknown datacenter", base(`pins:`, `  "42": us`),
			[]problem{{`pins["42"]`, 6, `unknown datacenter "us"`}}},
		{"pins overlap, unquoted keys", base(`pins:`, `  1-5: a`, `  5: a`),
			[]problem{{`pins["5"]`, 7, `overlaps pins["1-5"]`}}},
		{"drained unknown", base(`drained:`, `  - a`, `  - zz`),
			[]problem{{"drained[1]", 7, `unknown datacenter "zz"`}}},
		{"drained twice", base(`drained: [a, a]`),
			[]problem{{"drained[1]", 5, `datacenter "a" is listed twice`}}},

		// node and listen
		{"node datacenter missing", lines(
			`node:`,
			`  name: edge-1`,
			`continents: [{name: us}]`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"node.datacenter", 2, "is required"}}},
		{"node section missing", lines(
			`continents: [{name: us}]`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
		), []problem{{"node.datacenter", 1, "is required"}}},
		{"node datacenter unknown", lines(
			`continents: [{name: us}]`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
			`node:`,
			`  datacenter: zz`,
		), []problem{{"node.datacenter", 5, `unknown datacenter "zz"`}}},
		{"listen address without port", base(`listen:`, `  address: localhost`),
			[]problem{{"listen.address", 6, `invalid address "localhost"`}}},
		{"listen port too large", base(`listen:`, `  address: "127.0.0.1:65536"`),
			[]problem{{"listen.address", 6, "port must be a number between 0 and 65535"}}},
		{"listen timeout negative", base(`listen:`, `  read_timeout: -1s`),
			[]problem{{"listen.read_timeout", 6, "must not be negative"}}},
		{"listen shutdown timeout negative", base(`listen:`, `  write_timeout: 5s`, `  shutdown_timeout: -30s`),
			[]problem{{"listen.shutdown_timeout", 7, "must not be negative"}}},
		{"listen size negative", base(`listen:`, `  max_request_body_size: -1`),
			[]problem{{"listen.max_request_body_size", 6, "must not be negative"}}},
		{"listen header bytes negative", base(`listen:`, `  max_header_bytes: -1`),
			[]problem{{"listen.max_header_bytes", 6, "must not be negative"}}},

		// upstream
		{"upstream without port", lines(
			`node: {datacenter: a}`,
			`continents: [{name: us}]`,
			`datacenters:`,
			`  - name: a`,
			`    continent: us`,
			`    capacity: 1`,
			`    upstreams:`,
			`      - "h:1"`,
			`      - "h"`,
		), []problem{{"datacenters[0].upstreams[1]", 9, "missing port"}}},
		{"upstream port zero", base(`  - {name: b, continent: us, capacity: 1, upstreams: ["h:0"]}`),
			[]problem{{"datacenters[1].upstreams[0]", 5, "port must be a number between 1 and 65535"}}},
		{"upstream named port", base(`  - {name: b, continent: us, capacity: 1, upstreams: ["h:http"]}`),
			[]problem{{"datacenters[1].upstreams[0]", 5, "port must be a number"}}},
		{"upstream without host", base(`  - {name: b, continent: us, capacity: 1, upstreams: [":80"]}`),
			[]problem{{"datacenters[1].upstreams[0]", 5, "host is required"}}},
		{"upstream URL", base(`  - {name: b, continent: us, capacity: 1, upstreams: ["http://h:80"]}`),
			[]problem{{"datacenters[1].upstreams[0]", 5, `invalid address "http://h:80"`}}},
		{"upstream timeout negative", base(`upstream:`, `  timeout: -5s`),
			[]problem{{"upstream.timeout", 6, "must not be negative"}}},
		{"request timeout below the attempt's", base(`upstream:`, `  timeout: 10s`, `  request_timeout: 5s`),
			[]problem{{"upstream.request_timeout", 7, "must be at least upstream.timeout (10s), got 5s"}}},
		{"upstream connect timeout negative", base(`upstream:`, `  connect_timeout: -1ms`),
			[]problem{{"upstream.connect_timeout", 6, "must not be negative"}}},
		{"upstream conns negative", base(`upstream:`, `  max_conns_per_host: -1`),
			[]problem{{"upstream.max_conns_per_host", 6, "must not be negative"}}},
		{"retries too many", base(`upstream:`, `  retries: 6`),
			[]problem{{"upstream.retries", 6, "must be between 0 and 5"}}},
		{"retry budget over 1", base(`upstream:`, `  retry_budget: 1.5`),
			[]problem{{"upstream.retry_budget", 6, "must be between 0 (no retries of shed load) and 1, got 1.5"}}},
		{"retries negative", base(`upstream:`, `  retries: -1`),
			[]problem{{"upstream.retries", 6, "must be between 0 and 5"}}},
		{"breaker failures negative", base(`upstream:`, `  breaker:`, `    consecutive_failures: -1`),
			[]problem{{"upstream.breaker.consecutive_failures", 7, "must be between 1 and"}}},
		{"breaker half-open negative", base(`upstream:`, `  breaker: {half_open_requests: -2}`),
			[]problem{{"upstream.breaker.half_open_requests", 6, "must be between 1 and"}}},
		{"breaker open_for negative", base(`upstream:`, `  breaker:`, `    open_for: -1s`),
			[]problem{{"upstream.breaker.open_for", 7, "must be greater than 0"}}},
		{"breaker open_for too long", base(`upstream:`, `  breaker:`, `    open_for: 1h`),
			[]problem{{"upstream.breaker.open_for", 7, "must be at most 10m0s"}}},

		// routing
		{"rule with two sources", base(`routing:`, `  rules:`, `    - header: X-User-ID`, `      cookie: uid`),
			[]problem{{"routing.rules[0]", 7, "set exactly one of header, cookie, query or path, not header and cookie"}}},
		{"rule with no source", base(`routing:`, `  rules:`, `    - header: X-User-ID`, `    - path_prefix: /api/`),
			[]problem{{"routing.rules[1]", 8, "set one of header, cookie, query or path"}}},
		{"header not a token", base(`routing:`, `  rules:`, `    - header: "X User"`),
			[]problem{{"routing.rules[0].header", 7, `invalid header name "X User"`}}},
		{"header with colon", base(`routing:`, `  rules:`, `    - header: "X-User:"`),
			[]problem{{"routing.rules[0].header", 7, `invalid header name`}}},
		{"cookie not a token", base(`routing:`, `  rules:`, `    - cookie: "a;b"`),
			[]problem{{"routing.rules[0].cookie", 7, `invalid cookie name "a;b"`}}},
		{"path without slash", base(`routing:`, `  rules:`, `    - path: users/{key}`),
			[]problem{{"routing.rules[0].path", 7, `must start with "/"`}}},
		{"path without key", base(`routing:`, `  rules:`, `    - header: X-User-ID`, `    - path: /users/{id}`),
			[]problem{{"routing.rules[1].path", 8, "must contain {key} exactly once, found 0"}}},
		{"path with two keys", base(`routing:`, `  rules:`, `    - path: /u/{key}/f/{key}`),
			[]problem{{"routing.rules[0].path", 7, "exactly once, found 2"}}},
		{"path key not ending a segment", base(`routing:`, `  rules:`, `    - path: /u/{key}.json`),
			[]problem{{"routing.rules[0].path", 7, `must end the template or be followed by "/"`}}},
		{"path key not starting a segment", base(`routing:`, `  rules:`, `    - path: /u/x{key}`),
			[]problem{{"routing.rules[0].path", 7, "must start a segment"}}},
		{"path prefix that does not start the path", base(`routing:`, `  rules:`, `    - path: /v2/users/{key}`, `      path_prefix: /v1/`),
			[]problem{{"routing.rules[0].path_prefix", 8, `does not start path "/v2/users/{key}"`}}},
		{"path prefix without slash", base(`routing:`, `  rules:`, `    - header: X-User-ID`, `      path_prefix: api/`),
			[]problem{{"routing.rules[0].path_prefix", 8, `must start with "/"`}}},
		{"no_key unknown", base(`routing:`, `  no_key: drop`),
			[]problem{{"routing.no_key", 6, `must be "local" or "reject", got "drop"`}}},
		{"max_key_length too large", base(`routing:`, `  max_key_length: 5000`),
			[]problem{{"routing.max_key_length", 6, "must be between 1 and 4096"}}},
		{"max_key_length negative", base(`routing:`, `  max_key_length: -1`),
			[]problem{{"routing.max_key_length", 6, "must be between 1 and 4096"}}},

		// log
		{"log level unknown", base(`log:`, `  level: verbose`),
			[]problem{{"log.level", 6, `got "verbose"`}}},
		{"log format unknown", base(`log: {format: xml}`),
			[]problem{{"log.format", 5, `got "xml"`}}},
	}
	checkRefusals(t, tests)
}

// TestValidateAccepts pins down values that look odd but are allowed, so
// that a stricter check does not creep in unnoticed.
func TestValidateAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml string }{
		{"minimal", base()},
		{"listen on any free port, every interface", base(`listen: {address: ":0"}`)},
		{"IPv6 upstream", base(`  - {name: b, continent: us, capacity: 0.5, upstreams: ["[::1]:9001"]}`)},
		{"host name upstream", base(`  - {name: b, continent: us, capacity: 1, upstreams: ["web-1.us-east.internal:80"]}`)},
		{"zero retries", base(`upstream: {retries: 0}`)},
		{"five retries", base(`upstream: {retries: 5}`)},
		{"adjacent ranges", base(`homes: {"0-127": us, "128-255": us, "256": us}`, `pins: {"4095": a}`)},
		{"path key in the middle", base(`routing: {rules: [{path: "/u/{key}/photos"}], no_key: reject}`)},
		{"path rule with prefix", base(`routing: {rules: [{path: "/v2/users/{key}", path_prefix: /v2/}]}`)},
		{"failover chain", lines(
			`node: {datacenter: a}`,
			`continents: [{name: us, failover_to: [eu, asia]}, {name: eu}, {name: asia, failover_to: [us]}]`,
			`datacenters:`,
			`  - {name: a, continent: us, capacity: 1, upstreams: ["h:1"]}`,
			`  - {name: b, continent: eu, capacity: 1, upstreams: ["h:2"]}`,
			`  - {name: c, continent: asia, capacity: 1, upstreams: ["h:3"]}`,
		)},
		{"exactly MaxDatacenters", func() string {
			ls := []string{`node: {datacenter: dc0}`, `continents: [{name: us}]`, `datacenters:`}
			for i := range MaxDatacenters {
				ls = append(ls, fmt.Sprintf(`  - {name: dc%d, continent: us, capacity: 1, upstreams: ["h:%d"]}`, i, i+1))
			}
			return lines(ls...)
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Parse([]byte(tt.yaml), "t.yaml"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	doc := lines(
		`node: {datacenter: a}`,
		`buckets: -1`,
		`continents: [{name: us}]`,
		`datacenters:`,
		`  - {name: a, continent: us, capacity: 0, upstreams: ["h:1"]}`,
		`log:`,
		`  level: loud`,
	)
	_, err := Parse([]byte(doc), "three.yaml")
	checkProblems(t, "three.yaml", err,
		problem{"buckets", 2, "must be between 1 and 65536"},
		problem{"datacenters[0].capacity", 5, "must be greater than 0"},
		problem{"log.level", 7, "must be debug, info, warn or error"},
	)
	// Reported in line order, one per line of the message.
	want := `configs: three.yaml:2: buckets: must be between 1 and 65536, got -1
configs: three.yaml:5: datacenters[0].capacity: must be greater than 0
configs: three.yaml:7: log.level: must be debug, info, warn or error, got "loud"`
	if err.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", err, want)
	}
}

// TestValidateWithoutYAML covers a Config built in Go: no lines, and the
// file name comes from Path.
func TestValidateWithoutYAML(t *testing.T) {
	t.Parallel()
	c := &Config{
		Path:        "/etc/socialroute/edge.yaml",
		Node:        Node{Datacenter: "a"},
		Continents:  []Continent{{Name: "us"}},
		Datacenters: []Datacenter{{Name: "a", Continent: "us", Capacity: 1, Upstreams: []string{"h:1"}}},
	}
	if err := c.Validate(); err == nil {
		t.Fatal("Validate accepted a config whose defaults were not applied")
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate after ApplyDefaults: %v", err)
	}
	c.Datacenters[0].Capacity = -1
	err := c.Validate()
	fes := FieldErrors(err)
	if len(fes) != 1 {
		t.Fatalf("got %v, want one problem", err)
	}
	want := &FieldError{File: c.Path, Field: "datacenters[0].capacity", Msg: "must be greater than 0"}
	if *fes[0] != *want {
		t.Errorf("got %+v, want %+v", *fes[0], *want)
	}
	if got := err.Error(); got != "configs: /etc/socialroute/edge.yaml: datacenters[0].capacity: must be greater than 0" {
		t.Errorf("Error() = %q", got)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "two-continents.yaml", Line: 14, Field: "datacenters[2].capacity", Msg: "must be greater than 0"},
			"configs: two-continents.yaml:14: datacenters[2].capacity: must be greater than 0"},
		{FieldError{File: "a.yaml", Field: "buckets", Msg: "m"}, "configs: a.yaml: buckets: m"},
		{FieldError{Line: 3, Field: "buckets", Msg: "m"}, "configs: line 3: buckets: m"},
		{FieldError{File: "a.yaml", Line: 3, Msg: "did not find expected key"}, "configs: a.yaml:3: did not find expected key"},
		{FieldError{Field: `homes["0-127"]`, Msg: "m"}, `configs: homes["0-127"]: m`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestFieldErrors(t *testing.T) {
	t.Parallel()
	a, b, c := &FieldError{Msg: "a"}, &FieldError{Msg: "b"}, &FieldError{Msg: "c"}
	err := errors.Join(a, fmt.Errorf("wrapped: %w", errors.Join(b, errors.New("plain"), c)))
	got := FieldErrors(err)
	if len(got) != 3 || got[0] != a || got[1] != b || got[2] != c {
		t.Errorf("FieldErrors = %v, want [a b c]", got)
	}
	if FieldErrors(nil) != nil {
		t.Error("FieldErrors(nil) != nil")
	}
}

func TestParseBucketRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		lo, hi  int
		wantErr string
	}{
		{"7", 7, 7, ""},
		{"0", 0, 0, ""},
		{"0-127", 0, 127, ""},
		{"5-5", 5, 5, ""},
		{"007", 7, 7, ""},
		{"4095", 4095, 4095, ""},
		{"65535", 65535, 65535, ""},
		{"", 0, 0, "invalid bucket range"},
		{"-", 0, 0, "invalid bucket range"},
		{"-5", 0, 0, "invalid bucket range"},
		{"5-", 0, 0, "invalid bucket range"},
		{"1-2-3", 0, 0, "invalid bucket range"},
		{" 1", 0, 0, "invalid bucket range"},
		{"1 - 2", 0, 0, "invalid bucket range"},
		{"+1", 0, 0, "invalid bucket range"},
		{"0x10", 0, 0, "invalid bucket range"},
		{"a", 0, 0, "invalid bucket range"},
		{"١٢", 0, 0, "invalid bucket range"}, // Arabic-Indic digits are not ASCII digits
		{"9-3", 0, 0, "9 is greater than 3"},
		{"0-99999999999999999999", 0, 0, "is too large"},
	}
	for _, tt := range tests {
		lo, hi, err := ParseBucketRange(tt.in)
		if tt.wantErr == "" {
			if err != nil || lo != tt.lo || hi != tt.hi {
				t.Errorf("ParseBucketRange(%q) = %d, %d, %v; want %d, %d, nil", tt.in, lo, hi, err, tt.lo, tt.hi)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "configs: ") {
			t.Errorf("ParseBucketRange(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestCheckPathTemplate(t *testing.T) {
	t.Parallel()
	ok := []string{"/{key}", "/users/{key}", "/users/{key}/", "/u/{key}/photos"}
	for _, p := range ok {
		if msg := checkPathTemplate(p); msg != "" {
			t.Errorf("checkPathTemplate(%q) = %q, want ok", p, msg)
		}
	}
	bad := []string{"", "{key}", "users/{key}", "/users", "/users/{KEY}", "/{key}{key}", "/u/{key}x", "/u/-{key}"}
	for _, p := range bad {
		if msg := checkPathTemplate(p); msg == "" {
			t.Errorf("checkPathTemplate(%q) accepted", p)
		}
	}
}
