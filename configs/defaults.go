package configs

import (
	"os"
	"path/filepath"
	"time"
)

// hostname is os.Hostname; tests replace it to make Node.Name predictable.
var hostname = os.Hostname

// ApplyDefaults sets every field left at its zero value to its default (the
// Default* constants). It is the one place defaults are applied: Parse calls
// it before Validate, and code that builds a Config by hand should call it
// too. Zero durations and numbers mean "default"; Upstream.Retries and
// Routing.ResponseHeaders are pointers so that an explicit 0 or false is
// kept. ApplyDefaults is idempotent.
func (c *Config) ApplyDefaults() {
	if c.Node.Name == "" {
		// A node without a name is still usable; leave it empty rather
		// than invent one that could collide across the fleet.
		if h, err := hostname(); err == nil {
			c.Node.Name = h
		}
	}
	if c.Buckets == 0 {
		c.Buckets = DefaultBuckets
	}

	l := &c.Listen
	if l.Address == "" {
		l.Address = DefaultListenAddress
	}
	setDuration(&l.ReadTimeout, DefaultReadTimeout)
	setDuration(&l.BodyTimeout, DefaultBodyTimeout)
	setInt(&l.MaxHeaders, DefaultMaxHeaders)
	if l.HeadersWithUnderscores == "" {
		l.HeadersWithUnderscores = DefaultUnderscores
	}
	setDuration(&l.WriteTimeout, DefaultWriteTimeout)
	setDuration(&l.IdleTimeout, DefaultIdleTimeout)
	setDuration(&l.ShutdownTimeout, DefaultShutdownTimeout)
	setInt(&l.MaxRequestBodySize, DefaultMaxRequestBodySize)
	setInt(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setInt(&l.Concurrency, DefaultConcurrency)
	if t := l.TLS; t != nil {
		if t.MinVersion == "" {
			t.MinVersion = DefaultTLSMinVersion
		}
		setDuration(&t.WatchInterval, DefaultTLSWatchInterval)
	}
	if p := l.ProxyProtocol; p != nil {
		setDuration(&p.HeaderTimeout, DefaultProxyHeaderTimeout)
	}

	u := &c.Upstream
	setDuration(&u.ConnectTimeout, DefaultConnectTimeout)
	setDuration(&u.Timeout, DefaultUpstreamTimeout)
	if u.Timeout > 0 { // (a negative one is an error of its own)
		setDuration(&u.RequestTimeout, u.Timeout*3/2)
	}
	setDuration(&u.MaxIdleConnDuration, DefaultMaxIdleConnTime)
	setDuration(&u.MaxConnWaitTimeout, DefaultMaxConnWait)
	setInt(&u.MaxConnsPerHost, DefaultMaxConnsPerHost)
	setInt(&u.MaxResponseBodySize, DefaultMaxResponseBody)
	setInt(&u.MaxBufferedResponseBytes, DefaultMaxBufferedBody)
	setInt(&u.MaxResponseHeaderBytes, DefaultMaxResponseHeader)
	if u.Retries == nil {
		u.Retries = new(DefaultRetries)
	}
	if u.RetryBudget == nil {
		u.RetryBudget = new(DefaultRetryBudget)
	}
	setInt(&u.Breaker.ConsecutiveFailures, DefaultBreakerFailures)
	setDuration(&u.Breaker.OpenFor, DefaultBreakerOpenFor)
	setInt(&u.Breaker.HalfOpenRequests, DefaultBreakerHalfOpen)
	setFloat(&u.Breaker.FailureRatio, DefaultBreakerRatio)
	setInt(&u.Breaker.MinRequests, DefaultBreakerMinReqs)
	setDuration(&u.Breaker.Window, DefaultBreakerWindow)

	r := &c.Routing
	setInt(&r.MaxHops, DefaultMaxHops)
	setDuration(&r.DrainRamp, DefaultDrainRamp)
	setFloat(&r.LoadLimit, DefaultLoadLimit)
	h := &c.Hot
	setInt(&h.FollowersPerBucket, DefaultFollowersPerBucket)
	setInt(&h.MaxSpread, DefaultMaxSpread)
	setFloat(&h.DetectRate, DefaultDetectRate)
	setDuration(&h.DetectTick, DefaultDetectTick)
	if h.ViewerHeader == "" {
		h.ViewerHeader = DefaultViewerHeader
	}
	pl := &c.Placement
	setDuration(&pl.StatsTick, DefaultStatsTick)
	setDuration(&pl.AdviseEvery, DefaultAdviseEvery)
	setFloat(&pl.Majority, DefaultMajority)
	setFloat(&pl.Release, DefaultRelease)
	setDuration(&pl.Window, DefaultMoveWindow)
	setInt(&pl.MinRequests, DefaultMinRequests)
	setInt(&pl.MovesPerHour, DefaultMovesPerHour)
	setDuration(&pl.Cooldown, DefaultMoveCooldown)
	setFloat(&pl.Headroom, DefaultHeadroom)
	setDuration(&pl.CopyTime, DefaultCopyTime)
	setDuration(&pl.FenceSettle, DefaultFenceSettle)
	setDuration(&pl.CutoverTime, DefaultCutoverTime)
	g := &c.Gossip
	if g.Label == "" {
		g.Label = DefaultGossipLabel
	}
	setDuration(&g.CheckInterval, DefaultCheckInterval)
	setDuration(&g.CheckTimeout, DefaultCheckTimeout)
	setDuration(&g.LAN.ProbeInterval, DefaultLANProbeInterval)
	setDuration(&g.LAN.ProbeTimeout, DefaultLANProbeTimeout)
	setInt(&g.LAN.SuspicionMult, DefaultLANSuspicionMult)
	setDuration(&g.WAN.ProbeInterval, DefaultWANProbeInterval)
	setDuration(&g.WAN.ProbeTimeout, DefaultWANProbeTimeout)
	setInt(&g.WAN.SuspicionMult, DefaultWANSuspicionMult)
	if len(r.Rules) == 0 {
		// A fresh slice each time: callers may modify their config's rules.
		r.Rules = []Rule{{Header: "X-User-ID"}}
	}
	if r.NoKey == "" {
		r.NoKey = DefaultNoKeyPolicy
	}
	setInt(&r.MaxKeyLength, DefaultMaxKeyLength)
	if r.ResponseHeaders == nil {
		r.ResponseHeaders = new(DefaultResponseHeadersOn)
	}

	if c.Admin.Address == "" {
		c.Admin.Address = DefaultAdminAddress
	}

	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
}

// setDuration and setInt replace a zero value with its default. Negative
// values are kept so that Validate can report them.
func setDuration(p *time.Duration, def time.Duration) {
	if *p == 0 {
		*p = def
	}
}

func setFloat(p *float64, def float64) {
	if *p == 0 {
		*p = def
	}
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

// TablePath returns Table resolved against the folder of the config file
// (Path), as Table's doc promises. It returns "" when no table is
// configured, and Table unchanged when it is absolute or the config was not
// loaded from a file.
func (c *Config) TablePath() string {
	if c.Table == "" || filepath.IsAbs(c.Table) || c.Path == "" {
		return c.Table
	}
	return filepath.Join(filepath.Dir(c.Path), c.Table)
}

// AdminTokenPath returns Admin.TokenFile resolved against the folder of the
// config file, like TablePath; "" when no token file is configured.
func (c *Config) AdminTokenPath() string {
	p := c.Admin.TokenFile
	if p == "" || filepath.IsAbs(p) || c.Path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// FilePath returns p resolved against the config file's folder, like
// TablePath: "" stays "", absolute paths are kept. For the TLS files.
func (c *Config) FilePath(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// HotPath returns Hot.File resolved against the config file's folder, like
// TablePath.
func (c *Config) HotPath() string {
	if c.Hot.File == "" || filepath.IsAbs(c.Hot.File) || c.Path == "" {
		return c.Hot.File
	}
	return filepath.Join(filepath.Dir(c.Path), c.Hot.File)
}
