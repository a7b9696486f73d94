package configs

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits Validate enforces beyond the exported MaxBuckets and MaxDatacenters.
const (
	// maxRetries: every retry adds a whole attempt to a request's worst
	// case, and a plan rarely has more than a handful of datacenters.
	maxRetries = 5
	// maxKeyLengthLimit bounds Routing.MaxKeyLength: keys are hashed on the
	// request path and echoed in logs.
	maxKeyLengthLimit = 4096
	// maxBreakerOpenFor: an open breaker hides a recovered upstream for
	// this long; longer than minutes is almost surely a unit mistake.
	maxBreakerOpenFor = 10 * time.Minute
)

// FieldError is one problem with one field of a config.
type FieldError struct {
	// File is the config's name as given to Parse (a path for Load), or
	// Config.Path when Validate is called directly. May be empty.
	File string
	// Field is the field's path in YAML terms: "datacenters[2].capacity",
	// `homes["0-127"]`. Empty for problems with the document as a whole
	// (syntax errors, an empty document).
	Field string
	// Line is the 1-based line the field is on, or, for a missing field,
	// the line of the mapping that should hold it. 0 when unknown, e.g. for
	// a Config built in Go rather than parsed.
	Line int
	// Msg says what is wrong, e.g. "must be greater than 0".
	Msg string
}

// Error formats the problem like a compiler error:
//
//	configs: two-continents.yaml:14: datacenters[2].capacity: must be greater than 0
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString("configs: ")
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// FieldErrors returns every *FieldError in err's tree, in order. Parse,
// Load, Example and Validate return errors.Join of field errors; this
// undoes the join for callers that want to print or count them one by one.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *FieldError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// Validate checks the whole config and returns every problem found, joined
// with errors.Join, each a *FieldError; nil if the config is valid. It
// expects ApplyDefaults to have run: fields whose zero value means
// "default" are checked as they will be used, so a zero Buckets, for
// instance, is an error here.
//
// Lines are filled in only by Parse, which has the YAML; Validate on a
// Config built in Go leaves them 0.
func (c *Config) Validate() error {
	v := &validator{c: c, file: c.Path}
	v.topology()
	v.node()
	v.listen()
	v.listenTLS()
	v.proxyProtocol()
	v.upstream()
	v.upstreamTLS()
	v.bucketOverrides("homes", c.Homes, "continent", v.continents)
	v.bucketOverrides("pins", c.Pins, "datacenter", v.datacenters)
	v.drained()
	v.routing()
	v.hot()
	v.placement()
	v.gossip()
	v.admin()
	v.log()
	return errors.Join(v.errs...)
}

// validator collects the problems of one Config.
type validator struct {
	c    *Config
	file string
	errs []error

	// Indexes of the first continent and datacenter of each name, for
	// references and for naming the other half of a duplicate.
	continents  map[string]int
	datacenters map[string]int
}

func (v *validator) errorf(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{File: v.file, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) topology() {
	c := v.c
	if c.Buckets < 1 || c.Buckets > MaxBuckets {
		v.errorf("buckets", "must be between 1 and %d, got %d", MaxBuckets, c.Buckets)
	}

	v.continents = make(map[string]int, len(c.Continents))
	if len(c.Continents) == 0 {
		v.errorf("continents", "at least one continent is required")
	}
	for i, ct := range c.Continents {
		v.name(fmt.Sprintf("continents[%d]", i), "continent", ct.Name, i, v.continents)
	}
	for i, ct := range c.Continents {
		if ct.Share < 0 || math.IsNaN(ct.Share) || math.IsInf(ct.Share, 0) {
			v.errorf(fmt.Sprintf("continents[%d].share", i), "must be a positive number (or 0: its datacenters' capacity), got %v", ct.Share)
		}
		seen := make(map[string]bool, len(ct.FailoverTo))
		for j, to := range ct.FailoverTo {
			field := fmt.Sprintf("continents[%d].failover_to[%d]", i, j)
			switch _, known := v.continents[to]; {
			case to == ct.Name && to != "":
				v.errorf(field, "continent %q cannot fail over to itself", to)
			case !known:
				v.errorf(field, "unknown continent %q", to)
			case seen[to]:
				v.errorf(field, "continent %q is listed twice", to)
			}
			seen[to] = true
		}
	}

	v.datacenters = make(map[string]int, len(c.Datacenters))
	switch {
	case len(c.Datacenters) == 0:
		v.errorf("datacenters", "at least one datacenter is required")
	case len(c.Datacenters) > MaxDatacenters:
		v.errorf("datacenters", "at most %d datacenters are supported, got %d", MaxDatacenters, len(c.Datacenters))
	}
	perContinent := make(map[string]int, len(c.Continents))
	upstreams := make(map[string]string) // normalized address -> field it was first seen at
	for i, dc := range c.Datacenters {
		field := fmt.Sprintf("datacenters[%d]", i)
		v.name(field, "datacenter", dc.Name, i, v.datacenters)

		switch _, known := v.continents[dc.Continent]; {
		case dc.Continent == "":
			v.errorf(field+".continent", "is required")
		case !known:
			v.errorf(field+".continent", "unknown continent %q", dc.Continent)
		default:
			perContinent[dc.Continent]++
		}

		switch {
		case math.IsNaN(dc.Capacity) || math.IsInf(dc.Capacity, 0):
			v.errorf(field+".capacity", "must be a finite number, got %v", dc.Capacity)
		case dc.Capacity <= 0:
			v.errorf(field+".capacity", "must be greater than 0")
		}

		if math.IsNaN(dc.MaxRPS) || math.IsInf(dc.MaxRPS, 0) || dc.MaxRPS < 0 {
			v.errorf(field+".max_rps", "must be a finite number, 0 or more, got %v", dc.MaxRPS)
		}
		if len(dc.Upstreams) == 0 {
			v.errorf(field+".upstreams", "at least one upstream address is required")
		}
		for j, addr := range dc.Upstreams {
			f := fmt.Sprintf("%s.upstreams[%d]", field, j)
			key, msg := checkAddress(addr, false)
			if msg != "" {
				v.errorf(f, "%s", msg)
				continue
			}
			if first, dup := upstreams[key]; dup {
				v.errorf(f, "duplicate upstream %q (also %s)", addr, first)
				continue
			}
			upstreams[key] = f
		}
	}
	for i, ct := range c.Continents {
		// Only the first of a duplicate name, and only valid names: the
		// other cases are reported above already.
		if first, ok := v.continents[ct.Name]; ok && first == i && ct.Name != "" && perContinent[ct.Name] == 0 {
			v.errorf(fmt.Sprintf("continents[%d]", i), "continent %q has no datacenters", ct.Name)
		}
	}
}

// name checks a continent's or datacenter's name and records its index in
// seen.
func (v *validator) name(field, kind, name string, i int, seen map[string]int) {
	field += ".name"
	if name == "" {
		v.errorf(field, "is required")
		return
	}
	switch {
	case !validName(name):
		v.errorf(field, "invalid %s name %q: use only a-z, 0-9, '-', '_' and '.'", kind, name)
	case len(name) > maxNameLen:
		v.errorf(field, "%s name %q is %d bytes, over %d: names travel in every node's gossip metadata, which memberlist caps at 512 bytes", kind, name, len(name), maxNameLen)
	}
	if first, dup := seen[name]; dup {
		v.errorf(field, "duplicate %s name %q (also %ss[%d])", kind, name, kind, first)
		return
	}
	seen[name] = i
}

// maxNameLen bounds continent and datacenter names (a DNS label's limit).
const maxNameLen = 63

// validName reports whether s is made of [a-z0-9-_.]: names end up in
// headers, metric labels and gossip metadata, so keep them plain.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.') {
			return false
		}
	}
	return s != ""
}

func (v *validator) node() {
	switch _, known := v.datacenters[v.c.Node.Datacenter]; {
	case v.c.Node.Datacenter == "":
		v.errorf("node.datacenter", "is required: name the datacenter this node stands in")
	case !known:
		v.errorf("node.datacenter", "unknown datacenter %q", v.c.Node.Datacenter)
	}
	if n := len(v.c.Node.Name); n > maxNodeNameLen {
		v.errorf("node.name", "is %d bytes, over %d: gossip messages carry it after a length byte", n, maxNodeNameLen)
	}
}

// maxNodeNameLen is what the one length byte of the fleet's messages holds.
const maxNodeNameLen = 255

func (v *validator) listen() {
	l := &v.c.Listen
	if _, msg := checkAddress(l.Address, true); msg != "" {
		v.errorf("listen.address", "%s", msg)
	}
	v.nonNegative("listen.read_timeout", l.ReadTimeout)
	v.nonNegative("listen.write_timeout", l.WriteTimeout)
	v.nonNegative("listen.idle_timeout", l.IdleTimeout)
	v.nonNegative("listen.shutdown_timeout", l.ShutdownTimeout)
	v.nonNegative("listen.drain_delay", l.DrainDelay)
	v.nonNegative("listen.body_timeout", l.BodyTimeout)
	v.nonNegativeInt("listen.max_conns_per_ip", l.MaxConnsPerIP)
	if l.MaxHeaders < 1 {
		v.errorf("listen.max_headers", "must be at least 1, got %d", l.MaxHeaders)
	}
	switch l.HeadersWithUnderscores {
	case "allow", "drop", "reject":
	default:
		v.errorf("listen.headers_with_underscores", "must be allow, drop or reject, got %q", l.HeadersWithUnderscores)
	}
	v.nonNegativeInt("listen.max_request_body_size", l.MaxRequestBodySize)
	v.nonNegativeInt("listen.max_header_bytes", l.MaxHeaderBytes)
	v.nonNegativeInt("listen.concurrency", l.Concurrency)
}

func (v *validator) upstream() {
	u := &v.c.Upstream
	v.nonNegative("upstream.connect_timeout", u.ConnectTimeout)
	v.nonNegative("upstream.timeout", u.Timeout)
	if u.RequestTimeout < u.Timeout {
		v.errorf("upstream.request_timeout", "must be at least upstream.timeout (%v), got %v: no attempt could use its whole timeout", u.Timeout, u.RequestTimeout)
	}
	v.nonNegative("upstream.max_idle_conn_duration", u.MaxIdleConnDuration)
	v.nonNegative("upstream.max_conn_wait_timeout", u.MaxConnWaitTimeout)
	v.nonNegativeInt("upstream.max_conns_per_host", u.MaxConnsPerHost)
	v.nonNegativeInt("upstream.max_response_body_size", u.MaxResponseBodySize)
	if u.MaxBufferedResponseBytes < 1 || u.MaxBufferedResponseBytes > 1<<30 {
		// Each answer up to it is held whole: a GiB each would be memory
		// no edge node has for many.
		v.errorf("upstream.max_buffered_response_bytes", "must be between 1 and 1 GiB, got %d", u.MaxBufferedResponseBytes)
	}
	if u.MaxResponseHeaderBytes < 1<<10 || u.MaxResponseHeaderBytes > 1<<20 {
		// Each upstream read holds a buffer this large.
		v.errorf("upstream.max_response_header_bytes", "must be between 1 KiB and 1 MiB, got %d", u.MaxResponseHeaderBytes)
	}
	if b := u.RetryBudget; b != nil && !(*b >= 0 && *b <= 1) {
		v.errorf("upstream.retry_budget", "must be between 0 (no retries of shed load) and 1, got %v", *b)
	}
	if u.Retries != nil && (*u.Retries < 0 || *u.Retries > maxRetries) {
		v.errorf("upstream.retries", "must be between 0 and %d, got %d", maxRetries, *u.Retries)
	}

	// gobreaker counts in uint32; ApplyDefaults has replaced zeros.
	b := &u.Breaker
	if b.ConsecutiveFailures < 1 || int64(b.ConsecutiveFailures) > math.MaxUint32 {
		v.errorf("upstream.breaker.consecutive_failures", "must be between 1 and %d, got %d", uint32(math.MaxUint32), b.ConsecutiveFailures)
	}
	if b.HalfOpenRequests < 1 || int64(b.HalfOpenRequests) > math.MaxUint32 {
		v.errorf("upstream.breaker.half_open_requests", "must be between 1 and %d, got %d", uint32(math.MaxUint32), b.HalfOpenRequests)
	}
	if math.IsNaN(b.FailureRatio) || b.FailureRatio <= 0 || b.FailureRatio > 1 {
		v.errorf("upstream.breaker.failure_ratio", "must be greater than 0 and at most 1, got %v", b.FailureRatio)
	}
	if b.MinRequests < 1 || int64(b.MinRequests) > math.MaxUint32 {
		v.errorf("upstream.breaker.min_requests", "must be between 1 and %d, got %d", uint32(math.MaxUint32), b.MinRequests)
	}
	if b.Window < time.Second {
		v.errorf("upstream.breaker.window", "must be at least 1s (it is measured in one-second buckets), got %v", b.Window)
	}
	switch {
	case b.OpenFor <= 0:
		v.errorf("upstream.breaker.open_for", "must be greater than 0, got %v", b.OpenFor)
	case b.OpenFor > maxBreakerOpenFor:
		v.errorf("upstream.breaker.open_for", "must be at most %v, got %v", maxBreakerOpenFor, b.OpenFor)
	}
}

func (v *validator) listenTLS() {
	t := v.c.Listen.TLS
	if t == nil {
		return
	}
	if len(t.Certificates) == 0 {
		v.errorf("listen.tls.certificates", "at least one certificate is required")
	}
	defaults := 0
	for i, c := range t.Certificates {
		f := fmt.Sprintf("listen.tls.certificates[%d]", i)
		if c.CertFile == "" {
			v.errorf(f+".cert_file", "is required")
		}
		if c.KeyFile == "" {
			v.errorf(f+".key_file", "is required")
		}
		for j, n := range c.ServerNames {
			if !validServerName(n) {
				v.errorf(fmt.Sprintf("%s.server_names[%d]", f, j), "invalid server name %q: want a host name, optionally starting with \"*.\"", n)
			}
		}
		if c.Default {
			if defaults++; defaults == 2 {
				v.errorf(f+".default", "only one certificate may be the default")
			}
		}
	}
	switch t.MinVersion {
	case TLS12, TLS13:
	default:
		v.errorf("listen.tls.min_version", "must be %q or %q, got %q", TLS12, TLS13, t.MinVersion)
	}
	if t.WatchInterval < 0 {
		v.errorf("listen.tls.watch_interval", "must not be negative, got %v", t.WatchInterval)
	}
}

// validServerName accepts a DNS name, or "*." and a DNS name.
func validServerName(n string) bool {
	n = strings.TrimPrefix(n, "*.")
	return n != "" && net.ParseIP(n) == nil && validHostname(n) && !strings.Contains(n, "*")
}

func (v *validator) proxyProtocol() {
	p := v.c.Listen.ProxyProtocol
	if p == nil {
		return
	}
	if len(p.Trusted) == 0 {
		v.errorf("listen.proxy_protocol.trusted", "at least one balancer address or CIDR is required")
	}
	for i, t := range p.Trusted {
		if _, err := netip.ParsePrefix(t); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(t); err == nil {
			continue
		}
		v.errorf(fmt.Sprintf("listen.proxy_protocol.trusted[%d]", i), "invalid address %q: want a CIDR (10.0.0.0/8) or an IP", t)
	}
	if p.HeaderTimeout < 0 {
		v.errorf("listen.proxy_protocol.header_timeout", "must not be negative, got %v", p.HeaderTimeout)
	}
}

func (v *validator) upstreamTLS() {
	for i, d := range v.c.Datacenters {
		t := d.TLS
		if t == nil {
			continue
		}
		f := fmt.Sprintf("datacenters[%d].tls", i)
		if (t.CertFile == "") != (t.KeyFile == "") {
			v.errorf(f+".cert_file", "cert_file and key_file go together (the client certificate for mutual TLS)")
		}
		if t.ServerName != "" && !validHostname(t.ServerName) {
			v.errorf(f+".server_name", "invalid server name %q", t.ServerName)
		}
	}
}

// nonNegative and nonNegativeInt report a negative duration or size. Zero
// was replaced by its default already, so only negatives are wrong.
func (v *validator) nonNegative(field string, d time.Duration) {
	if d < 0 {
		v.errorf(field, "must not be negative, got %v", d)
	}
}

func (v *validator) nonNegativeInt(field string, n int) {
	if n < 0 {
		v.errorf(field, "must not be negative, got %d", n)
	}
}

// maxSpread mirrors hashing.MaxSpread (configs imports nothing of the
// project's packages).
const maxSpread = 64

func (v *validator) hot() {
	h := &v.c.Hot
	if h.FollowersPerBucket < 1 {
		v.errorf("hot.followers_per_bucket", "must be at least 1, got %d", h.FollowersPerBucket)
	}
	if h.MaxSpread < 1 || h.MaxSpread > maxSpread {
		v.errorf("hot.max_spread", "must be between 1 and %d, got %d", maxSpread, h.MaxSpread)
	}
	if math.IsNaN(h.DetectRate) || math.IsInf(h.DetectRate, 0) {
		v.errorf("hot.detect_rate", "must be a finite number, got %v", h.DetectRate)
	}
	if h.DetectTick < 10*time.Millisecond {
		v.errorf("hot.detect_tick", "must be at least 10ms, got %v", h.DetectTick)
	}
	if !isToken(h.ViewerHeader) {
		v.errorf("hot.viewer_header", "%q is not a valid header name", h.ViewerHeader)
	}
}

func (v *validator) placement() {
	p := &v.c.Placement
	for _, d := range []struct {
		field string
		d     time.Duration
		least time.Duration
	}{
		{"placement.stats_tick", p.StatsTick, 100 * time.Millisecond},
		{"placement.advise_every", p.AdviseEvery, 100 * time.Millisecond},
		{"placement.window", p.Window, 0},
		{"placement.cooldown", p.Cooldown, 0},
		{"placement.copy_time", p.CopyTime, 0},
		{"placement.fence_settle", p.FenceSettle, 0},
		{"placement.cutover_time", p.CutoverTime, 0},
	} {
		if d.d < d.least || d.d < 0 {
			v.errorf(d.field, "must be at least %v, got %v", d.least, d.d)
		}
	}
	if !(p.Majority > 0.5 && p.Majority <= 1) {
		v.errorf("placement.majority", "must be more than 0.5 and at most 1, got %v", p.Majority)
	}
	if !(p.Release > 0 && p.Release <= p.Majority) {
		v.errorf("placement.release", "must be more than 0 and at most placement.majority (%v), got %v", p.Majority, p.Release)
	}
	if p.MinRequests < 1 {
		v.errorf("placement.min_requests", "must be at least 1, got %d", p.MinRequests)
	}
	if p.MovesPerHour < 1 {
		v.errorf("placement.moves_per_hour", "must be at least 1, got %d", p.MovesPerHour)
	}
	if !(p.Headroom >= 1) || math.IsInf(p.Headroom, 0) {
		v.errorf("placement.headroom", "must be a finite number of at least 1, got %v", p.Headroom)
	}
}

// GossipKeyEnv is the environment variable that, when set, holds the gossip
// key and overrides gossip.key_file.
const GossipKeyEnv = "SOCIALROUTE_GOSSIP_KEY"

// maxLoadLimit: a datacenter sent ten times its capacity is down, not full.
const maxLoadLimit = 10

func (v *validator) gossip() {
	g := &v.c.Gossip
	r := &v.c.Routing
	v.nonNegative("routing.drain_ramp", r.DrainRamp)
	if r.MaxHops < 1 {
		v.errorf("routing.max_hops", "must be at least 1, got %d", r.MaxHops)
	}
	if math.IsNaN(r.LoadLimit) || r.LoadLimit <= 0 || r.LoadLimit > maxLoadLimit {
		v.errorf("routing.load_limit", "must be greater than 0 and at most %d, got %v", maxLoadLimit, r.LoadLimit)
	}
	v.nonNegative("gossip.check_interval", g.CheckInterval)
	v.nonNegative("gossip.check_timeout", g.CheckTimeout)
	if g.CheckPath != "" && !strings.HasPrefix(g.CheckPath, "/") {
		v.errorf("gossip.check_path", "must start with \"/\", got %q", g.CheckPath)
	}
	if g.LAN.Bind == "" {
		if g.WAN.Bind != "" || len(g.LAN.Join) > 0 {
			v.errorf("gossip.lan.bind", "is required when any other gossip setting is used")
		}
		return
	}
	for _, p := range []struct {
		field string
		pool  *GossipPool
	}{{"gossip.lan", &g.LAN}, {"gossip.wan", &g.WAN}} {
		if p.pool.Bind == "" {
			if p.pool.Advertise != "" || len(p.pool.Join) > 0 {
				v.errorf(p.field+".bind", "is required when %s is used", p.field)
			}
			continue
		}
		if _, msg := checkAddress(p.pool.Bind, true); msg != "" {
			v.errorf(p.field+".bind", "%s", msg)
		}
		adv := p.pool.Advertise
		if adv == "" {
			adv = p.pool.Bind
		}
		if host, _, err := net.SplitHostPort(adv); err == nil {
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				v.errorf(p.field+".advertise", "other nodes need a concrete address to reach this one, got %q", adv)
			}
		}
		if p.pool.Advertise != "" {
			if _, msg := checkAddress(p.pool.Advertise, false); msg != "" {
				v.errorf(p.field+".advertise", "%s", msg)
			}
		}
		for i, j := range p.pool.Join {
			if _, msg := checkAddress(j, false); msg != "" {
				v.errorf(fmt.Sprintf("%s.join[%d]", p.field, i), "%s", msg)
			}
		}
		v.nonNegative(p.field+".probe_interval", p.pool.ProbeInterval)
		v.nonNegative(p.field+".probe_timeout", p.pool.ProbeTimeout)
		v.nonNegativeInt(p.field+".suspicion_mult", p.pool.SuspicionMult)
	}
	if g.KeyFile == "" && os.Getenv(GossipKeyEnv) == "" {
		v.errorf("gossip.key_file", "is required when gossip is on (or set %s): gossip is always encrypted", GossipKeyEnv)
	}
}

// AdminTokenEnv is the environment variable that, when set, holds the admin
// token and overrides admin.token_file.
const AdminTokenEnv = "SOCIALROUTE_ADMIN_TOKEN"

func (v *validator) admin() {
	a := &v.c.Admin
	if !a.Enabled {
		// ApplyDefaults fills Address, so only the other fields betray an
		// admin section that was meant to be on.
		if a.TokenFile != "" || a.InsecureNoToken {
			v.errorf("admin.enabled", "must be true when other admin settings are used")
		}
		return
	}
	if _, msg := checkAddress(a.Address, true); msg != "" {
		v.errorf("admin.address", "%s", msg)
		return
	}
	if sameListener(a.Address, v.c.Listen.Address) {
		// Under listen.reuse_port both binds succeed, and the kernel
		// spreads new connections over the two: clients would get admin
		// answers and operators the web tier's.
		v.errorf("admin.address", "%q is listen.address's too: give the admin endpoint its own port", a.Address)
	}
	if a.InsecureNoToken {
		if !isLoopback(a.Address) {
			v.errorf("admin.insecure_no_token", "is allowed only on a loopback address (such as 127.0.0.1:9901), not %q", a.Address)
		}
		return
	}
	if a.TokenFile == "" && os.Getenv(AdminTokenEnv) == "" {
		v.errorf("admin.token_file", "is required when the admin endpoint is on (or set %s, or, on loopback only, insecure_no_token: true)", AdminTokenEnv)
	}
}

// sameListener reports whether listener addresses a and b bind one port
// on a common address: the same host, or either on every interface.
// Port 0 (any free port) never collides.
func sameListener(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	everywhere := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || everywhere(ha) || everywhere(hb)
}

// isLoopback reports whether a listener address binds loopback only. An
// empty host binds every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkAddress checks a host:port address. Upstreams need a host and a port
// in 1..65535; a listener may leave the host empty (every interface) and
// use port 0 (any free port). It returns a normalized form for duplicate
// detection, or a message saying what is wrong.
func checkAddress(addr string, listener bool) (key, msg string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", fmt.Sprintf("invalid address %q: %s; want host:port", addr, ae.Err)
		}
		return "", fmt.Sprintf("invalid address %q: want host:port", addr)
	}
	if host == "" && !listener {
		return "", fmt.Sprintf("invalid address %q: host is required", addr)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return "", fmt.Sprintf("invalid address %q: host %q is neither an IP address nor a host name", addr, host)
	}
	minPort := 1
	if listener {
		minPort = 0
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < minPort || p > 65535 || strings.HasPrefix(port, "+") {
		return "", fmt.Sprintf("invalid address %q: port must be a number between %d and 65535", addr, minPort)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(p)), ""
}

// validHostname accepts DNS names made of letters, digits, '-', '_' and
// dots; enough to catch a scheme or a path pasted into an address.
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_') {
				return false
			}
		}
	}
	return true
}

// bucketOverrides checks homes or pins: keys are buckets or ranges within
// 0..Buckets-1 that do not overlap, values name a known continent or
// datacenter.
func (v *validator) bucketOverrides(field string, m map[string]string, kind string, known map[string]int) {
	type span struct {
		key    string
		lo, hi int
	}
	var spans []span
	// Sorted so that the problems come out in the same order every time.
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	checkBounds := v.c.Buckets >= 1 && v.c.Buckets <= MaxBuckets
	for _, k := range keys {
		f := field + "[" + strconv.Quote(k) + "]"
		target := m[k]
		switch _, ok := known[target]; {
		case target == "":
			v.errorf(f, "must name a %s", kind)
		case !ok:
			v.errorf(f, "unknown %s %q", kind, target)
		}
		lo, hi, msg := parseBucketRange(k)
		if msg != "" {
			v.errorf(f, "%s", msg)
			continue
		}
		if checkBounds && hi >= v.c.Buckets {
			v.errorf(f, "bucket range %q is outside 0-%d (buckets: %d)", k, v.c.Buckets-1, v.c.Buckets)
			continue
		}
		spans = append(spans, span{k, lo, hi})
	}
	slices.SortFunc(spans, func(a, b span) int {
		return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(a.hi, b.hi), strings.Compare(a.key, b.key))
	})
	// Sweep: each span is compared with the earlier span reaching furthest.
	var reach *span
	for i := range spans {
		s := &spans[i]
		if reach != nil && s.lo <= reach.hi {
			v.errorf(field+"["+strconv.Quote(s.key)+"]", "overlaps %s[%q]", field, reach.key)
		}
		if reach == nil || s.hi > reach.hi {
			reach = s
		}
	}
}

func (v *validator) drained() {
	seen := make(map[string]bool, len(v.c.Drained))
	for i, name := range v.c.Drained {
		field := fmt.Sprintf("drained[%d]", i)
		switch _, known := v.datacenters[name]; {
		case !known:
			v.errorf(field, "unknown datacenter %q", name)
		case seen[name]:
			v.errorf(field, "datacenter %q is listed twice", name)
		}
		seen[name] = true
	}
}

func (v *validator) routing() {
	r := &v.c.Routing
	if len(r.Rules) == 0 {
		v.errorf("routing.rules", "at least one rule is required")
	}
	for i, rule := range r.Rules {
		v.rule(fmt.Sprintf("routing.rules[%d]", i), rule)
	}
	if r.NoKey != NoKeyLocal && r.NoKey != NoKeyReject {
		v.errorf("routing.no_key", "must be %q or %q, got %q", NoKeyLocal, NoKeyReject, r.NoKey)
	}
	if r.MaxKeyLength < 1 || r.MaxKeyLength > maxKeyLengthLimit {
		v.errorf("routing.max_key_length", "must be between 1 and %d, got %d", maxKeyLengthLimit, r.MaxKeyLength)
	}
}

func (v *validator) rule(field string, r Rule) {
	var set []string
	for _, s := range []struct{ name, value string }{
		{"header", r.Header}, {"cookie", r.Cookie}, {"query", r.Query}, {"path", r.Path},
	} {
		if s.value != "" {
			set = append(set, s.name)
		}
	}
	switch len(set) {
	case 0:
		v.errorf(field, "set one of header, cookie, query or path")
	case 1:
	default:
		v.errorf(field, "set exactly one of header, cookie, query or path, not %s", strings.Join(set, " and "))
	}

	switch {
	case r.PathPrefix != "" && r.Path != "" && !strings.HasPrefix(r.Path, r.PathPrefix):
		v.errorf(field+".path_prefix", "%q does not start path %q, so the rule could never match", r.PathPrefix, r.Path)
	case r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/"):
		v.errorf(field+".path_prefix", "must start with \"/\", got %q", r.PathPrefix)
	}
	if r.Header != "" && !isToken(r.Header) {
		v.errorf(field+".header", "invalid header name %q: want a token (letters, digits and !#$%%&'*+-.^_`|~)", r.Header)
	}
	if r.Cookie != "" && !isToken(r.Cookie) {
		v.errorf(field+".cookie", "invalid cookie name %q: want a token (letters, digits and !#$%%&'*+-.^_`|~)", r.Cookie)
	}
	if r.Query != "" && strings.ContainsFunc(r.Query, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		v.errorf(field+".query", "invalid query parameter name %q: control characters", r.Query)
	}
	if r.Path != "" {
		if msg := checkPathTemplate(r.Path); msg != "" {
			v.errorf(field+".path", "%s", msg)
		}
	}
}

// keyPlaceholder marks the routing key's segment in a path template.
const keyPlaceholder = "{key}"

// checkPathTemplate checks a template such as "/users/{key}" or
// "/u/{key}/photos": it starts with "/" and holds one {key} that is a whole
// segment, so the proxy can cut the key out without guessing.
func checkPathTemplate(t string) string {
	if !strings.HasPrefix(t, "/") {
		return fmt.Sprintf("path template %q must start with \"/\"", t)
	}
	if n := strings.Count(t, keyPlaceholder); n != 1 {
		return fmt.Sprintf("path template %q must contain %s exactly once, found %d", t, keyPlaceholder, n)
	}
	i := strings.Index(t, keyPlaceholder)
	if t[i-1] != '/' {
		return fmt.Sprintf("path template %q: %s must start a segment (follow a \"/\")", t, keyPlaceholder)
	}
	if rest := t[i+len(keyPlaceholder):]; rest != "" && rest[0] != '/' {
		return fmt.Sprintf("path template %q: %s must end the template or be followed by \"/\"", t, keyPlaceholder)
	}
	return ""
}

// isToken reports whether s is an RFC 9110 token, the grammar of header
// field names (and of RFC 6265 cookie names).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

func (v *validator) log() {
	switch v.c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errorf("log.level", "must be debug, info, warn or error, got %q", v.c.Log.Level)
	}
	switch v.c.Log.Format {
	case "text", "json":
	default:
		v.errorf("log.format", "must be text or json, got %q", v.c.Log.Format)
	}
}

// ParseBucketRange parses a key of Config.Homes or Config.Pins: a bucket
// ("7") or an inclusive range ("0-127"), and returns its bounds; a single
// bucket gives lo == hi. It checks lo <= hi but not the upper bound, which
// depends on Config.Buckets: Validate checks that.
func ParseBucketRange(s string) (lo, hi int, err error) {
	lo, hi, msg := parseBucketRange(s)
	if msg != "" {
		return 0, 0, errors.New("configs: " + msg)
	}
	return lo, hi, nil
}

// parseBucketRange is ParseBucketRange returning a bare message, so that
// Validate can put it in a FieldError without a second "configs: " prefix.
func parseBucketRange(s string) (lo, hi int, msg string) {
	loS, hiS, isRange := strings.Cut(s, "-")
	if !isRange {
		hiS = loS
	}
	lo, msg = parseBucket(s, loS)
	if msg == "" {
		hi, msg = parseBucket(s, hiS)
	}
	switch {
	case msg != "":
		return 0, 0, msg
	case lo > hi:
		return 0, 0, fmt.Sprintf("invalid bucket range %q: %d is greater than %d", s, lo, hi)
	}
	return lo, hi, ""
}

// parseBucket parses one bound of the range s: decimal digits only, since
// a sign, spaces or "0x" in a bucket id is surely a mistake.
func parseBucket(s, bound string) (int, string) {
	if bound == "" || strings.ContainsFunc(bound, func(r rune) bool { return r < '0' || r > '9' }) {
		return 0, fmt.Sprintf("invalid bucket range %q: want a bucket such as \"7\" or a range such as \"0-127\"", s)
	}
	n, err := strconv.Atoi(bound)
	if err != nil {
		return 0, fmt.Sprintf("invalid bucket range %q: %s is too large", s, bound)
	}
	return n, ""
}
