package configs

import (
	"path/filepath"
	"testing"
	"time"
)

func TestTLSSectionsValidate(t *testing.T) {
	t.Parallel()
	dcTLS := func(tls string) string {
		return lines(
			`node: {datacenter: a}`,
			`continents: [{name: us}]`,
			`datacenters:`,
			`  - name: a`,
			`    continent: us`,
			`    capacity: 1`,
			`    upstreams: ["h:1"]`,
			`    tls: `+tls,
		)
	}
	tests := []refusal{
		{"no certificates", base(`listen:`, `  tls: {certificates: []}`),
			[]problem{{"listen.tls.certificates", 6, "at least one certificate"}}},
		{"certificate without files", base(`listen:`, `  tls:`, `    certificates:`, `      - {server_names: [a.example]}`),
			[]problem{
				{"listen.tls.certificates[0].cert_file", 8, "is required"},
				{"listen.tls.certificates[0].key_file", 8, "is required"},
			}},
		{"bad server name", base(`listen:`, `  tls:`, `    certificates:`, `      - {cert_file: c, key_file: k, server_names: ["a.example", "http://x", "*.*.x"]}`),
			[]problem{
				{"listen.tls.certificates[0].server_names[1]", 8, "invalid server name"},
				{"listen.tls.certificates[0].server_names[2]", 8, "invalid server name"},
			}},
		{"two defaults", base(`listen:`, `  tls:`, `    certificates:`, `      - {cert_file: c, key_file: k, default: true}`, `      - {cert_file: c2, key_file: k2, default: true}`),
			[]problem{{"listen.tls.certificates[1].default", 9, "only one"}}},
		{"TLS 1.1", base(`listen:`, `  tls:`, `    min_version: "1.1"`, `    certificates: [{cert_file: c, key_file: k}]`),
			[]problem{{"listen.tls.min_version", 7, `must be "1.2" or "1.3"`}}},
		{"negative watch", base(`listen:`, `  tls:`, `    watch_interval: -1s`, `    certificates: [{cert_file: c, key_file: k}]`),
			[]problem{{"listen.tls.watch_interval", 7, "must not be negative"}}},
		{"proxy protocol without balancers", base(`listen:`, `  proxy_protocol: {}`),
			[]problem{{"listen.proxy_protocol.trusted", 6, "at least one"}}},
		{"proxy protocol bad CIDR", base(`listen:`, `  proxy_protocol:`, `    trusted: ["10.0.0.0/8", "10.0.0.0/99", "lb.example"]`),
			[]problem{
				{"listen.proxy_protocol.trusted[1]", 7, "invalid address"},
				{"listen.proxy_protocol.trusted[2]", 7, "invalid address"},
			}},
		{"upstream client cert without key", dcTLS(`{cert_file: client.pem}`),
			[]problem{{"datacenters[0].tls.cert_file", 8, "go together"}}},
		{"upstream bad server name", dcTLS(`{server_name: "a b"}`),
			[]problem{{"datacenters[0].tls.server_name", 8, "invalid server name"}}},
	}
	checkRefusals(t, tests)
}

func TestTLSSectionsDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(base(
		`listen:`,
		`  reuse_port: true`,
		`  tls:`,
		`    certificates:`,
		`      - {cert_file: site.pem, key_file: site.key, server_names: ["*.example.com", example.com]}`,
		`  proxy_protocol:`,
		`    trusted: [10.0.0.0/8, 192.0.2.7, "2001:db8::/32"]`,
	)), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listen
	if !l.ReusePort {
		t.Errorf("ReusePort = false")
	}
	if l.TLS.MinVersion != DefaultTLSMinVersion || l.TLS.WatchInterval != DefaultTLSWatchInterval {
		t.Errorf("TLS defaults not applied: %+v", *l.TLS)
	}
	if l.ProxyProtocol.HeaderTimeout != DefaultProxyHeaderTimeout {
		t.Errorf("ProxyProtocol.HeaderTimeout = %v, want %v", l.ProxyProtocol.HeaderTimeout, DefaultProxyHeaderTimeout)
	}

	// Explicit values are kept.
	cfg, err = Parse([]byte(base(
		`listen:`,
		`  tls: {min_version: "1.3", watch_interval: 2s, certificates: [{cert_file: c, key_file: k}]}`,
		`  proxy_protocol: {trusted: [127.0.0.1], header_timeout: 1s}`,
	)), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.TLS.MinVersion != TLS13 || cfg.Listen.TLS.WatchInterval != 2*time.Second || cfg.Listen.ProxyProtocol.HeaderTimeout != time.Second {
		t.Errorf("explicit values overwritten: %+v %+v", *cfg.Listen.TLS, *cfg.Listen.ProxyProtocol)
	}
	if cfg.Listen.ReusePort {
		t.Errorf("ReusePort defaults to true")
	}
}

func TestFilePath(t *testing.T) {
	t.Parallel()
	c := &Config{Path: filepath.Join("etc", "socialroute", "socialroute.yaml")}
	for in, want := range map[string]string{
		"":                "",
		"certs/site.pem":  filepath.Join("etc", "socialroute", "certs", "site.pem"),
		"/abs/site.pem":   "/abs/site.pem",
		"../ca/ca.pem":    filepath.Join("etc", "ca", "ca.pem"),
		"site.key":        filepath.Join("etc", "socialroute", "site.key"),
		"/etc/ssl/ca.pem": "/etc/ssl/ca.pem",
	} {
		if got := c.FilePath(in); got != want {
			t.Errorf("FilePath(%q) = %q, want %q", in, got, want)
		}
	}
	if got := (&Config{}).FilePath("rel.pem"); got != "rel.pem" {
		t.Errorf("without Path: %q", got)
	}
}
