package configs

import (
	"strings"
	"testing"
	"time"
)

func TestPlacementDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(base()), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Placement
	want := Placement{
		StatsTick: DefaultStatsTick, AdviseEvery: DefaultAdviseEvery, Majority: 0.6, Release: 0.5,
		Window: 30 * time.Minute, MinRequests: 100, MovesPerHour: 10, Cooldown: 24 * time.Hour, Headroom: 1.1,
		CopyTime: 10 * time.Minute, FenceSettle: 30 * time.Second, CutoverTime: 10 * time.Minute,
	}
	if p != want {
		t.Fatalf("defaults %+v\nwant %+v", p, want)
	}
}

func TestValidatePlacement(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []problem
	}{
		{"tuned", base(`placement:`, `  majority: 0.7`, `  release: 0.55`, `  window: 1h`, `  moves_per_hour: 3`, `  auto_apply: true`), nil},
		{"majority not a majority", base(`placement:`, `  majority: 0.5`),
			[]problem{{"placement.majority", 6, "more than 0.5"}}},
		{"release above majority", base(`placement:`, `  majority: 0.6`, `  release: 0.7`),
			[]problem{{"placement.release", 7, "at most placement.majority"}}},
		{"negative rate", base(`placement:`, `  moves_per_hour: -1`),
			[]problem{{"placement.moves_per_hour", 6, "at least 1"}}},
		{"headroom under 1", base(`placement:`, `  headroom: 0.9`),
			[]problem{{"placement.headroom", 6, "at least 1"}}},
		{"tick too short", base(`placement:`, `  stats_tick: 1ms`),
			[]problem{{"placement.stats_tick", 6, "at least 100ms"}}},
		{"negative window", base(`placement:`, `  window: -1m`),
			[]problem{{"placement.window", 6, "at least 0s"}}},
		{"misspelled field", base(`placement:`, `  auto_aply: true`),
			[]problem{{"placement.auto_aply", 6, "unknown field"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "t.yaml")
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !cfg.Placement.AutoApply || cfg.Placement.MovesPerHour != 3 {
					t.Fatalf("%+v", cfg.Placement)
				}
				return
			}
			checkProblems(t, "t.yaml", err, tt.want...)
		})
	}
}

func TestWriteLifeIsTheRequestTimeout(t *testing.T) {
	for _, c := range []struct {
		timeout, request, want time.Duration
	}{{10 * time.Second, 0, 15 * time.Second}, {10 * time.Second, 25 * time.Second, 25 * time.Second}, {2 * time.Second, 0, 3 * time.Second}} {
		cfg := &Config{Upstream: Upstream{Timeout: c.timeout, RequestTimeout: c.request}}
		cfg.ApplyDefaults()
		if got := cfg.WriteLife(); got != c.want {
			t.Errorf("timeout %v, request_timeout %v: WriteLife %v, want %v", c.timeout, c.request, got, c.want)
		}
	}
	var d Config
	d.ApplyDefaults()
	if d.Placement.FenceSettle <= d.WriteLife() {
		t.Fatalf("the default fence_settle %v is not above the default write life %v", d.Placement.FenceSettle, d.WriteLife())
	}
}

// What a reload cannot apply is named; what it applies is not.
func TestRestartOnly(t *testing.T) {
	running := func() *Config {
		return &Config{
			Listen: Listen{Address: ":443", TLS: &ListenTLS{MinVersion: "1.2", Certificates: []Certificate{{CertFile: "a"}}}},
			Log:    Log{Level: "info", Format: "text"},
		}
	}
	for _, c := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"nothing", func(*Config) {}, ""},
		{"certificates", func(c *Config) { c.Listen.TLS.Certificates = []Certificate{{CertFile: "b"}} }, ""},
		{"reloadable listen fields", func(c *Config) { c.Listen.DrainDelay, c.Listen.ShutdownTimeout = time.Second, time.Minute }, ""},
		{"log level", func(c *Config) { c.Log.Level = "debug" }, ""},
		{"the request screen", func(c *Config) { c.Listen.MaxHeaders, c.Listen.HeadersWithUnderscores = 7, "reject" }, ""},
		{"max spread (the detector keeps its own)", func(c *Config) { c.Hot.MaxSpread = 8 }, "hot.max_spread"},
		{"routing", func(c *Config) { c.Drained = []string{"us-a"}; c.Upstream.Timeout = time.Second }, ""},
		{"address", func(c *Config) { c.Listen.Address = ":8443" }, "listen.address"},
		{"gossip added to a node running without", func(c *Config) { c.Gossip = Gossip{LAN: GossipPool{Bind: "10.0.0.1:7946"}} }, "gossip"},
		{"tls off", func(c *Config) { c.Listen.TLS = nil }, "listen.tls"},
		{"min version", func(c *Config) { c.Listen.TLS.MinVersion = "1.3" }, "listen.tls.min_version"},
		{"watch interval", func(c *Config) { c.Listen.TLS.WatchInterval = time.Minute }, "listen.tls.watch_interval"},
		{"proxy protocol", func(c *Config) { c.Listen.ProxyProtocol = &ProxyProtocol{Trusted: []string{"10.0.0.0/8"}} }, "listen.proxy_protocol"},
		{"reuse port and a timeout", func(c *Config) { c.Listen.ReusePort, c.Listen.ReadTimeout = true, time.Second }, "listen.read_timeout listen.reuse_port"},
		{"admin", func(c *Config) { c.Admin.Address = "127.0.0.1:9999" }, "admin.address"},
		{"log format", func(c *Config) { c.Log.Format = "json" }, "log.format"},
		{"detector and placer ticks", func(c *Config) {
			c.Hot.DetectRate, c.Hot.DetectTick = 10, time.Second
			c.Placement.StatsTick, c.Placement.AdviseEvery = time.Second, time.Second
		}, "hot.detect_rate hot.detect_tick placement.stats_tick placement.advise_every"},
	} {
		b := running()
		c.mutate(b)
		got := strings.Join(RestartOnly(running(), b), " ")
		if got != c.want {
			t.Errorf("%s: RestartOnly = %q, want %q", c.name, got, c.want)
		}
	}
}
