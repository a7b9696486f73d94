package configs

import (
	"time"
)

// Defaults. Every optional field names its default here and nowhere else;
// Config.ApplyDefaults is the one place that applies them.
const (
	DefaultBuckets            = 4096
	DefaultListenAddress      = "127.0.0.1:8080"
	DefaultReadTimeout        = 10 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultIdleTimeout        = 60 * time.Second
	DefaultMaxRequestBodySize = 4 << 20  // 4 MiB
	DefaultMaxHeaderBytes     = 16 << 10 // 16 KiB: request line plus headers
	DefaultShutdownTimeout    = 30 * time.Second
	DefaultConcurrency        = 256 * 1024

	DefaultConnectTimeout     = 1 * time.Second
	DefaultUpstreamTimeout    = 10 * time.Second
	DefaultMaxConnsPerHost    = 512
	DefaultMaxIdleConnTime    = 4 * time.Second // below the common 5 s upstream keep-alive
	DefaultMaxConnWait        = 100 * time.Millisecond
	DefaultMaxResponseBody    = 64 << 20 // 64 MiB
	DefaultMaxBufferedBody    = 1 << 20  // 1 MiB
	DefaultMaxResponseHeader  = 16 << 10 // 16 KiB
	DefaultRetries            = 1
	DefaultRetryBudget        = 0.2
	DefaultBreakerFailures    = 5
	DefaultBreakerOpenFor     = 5 * time.Second
	DefaultBreakerHalfOpen    = 1
	DefaultBreakerRatio       = 0.5
	DefaultBreakerMinReqs     = 20
	DefaultBreakerWindow      = 10 * time.Second
	DefaultNoKeyPolicy        = NoKeyLocal
	DefaultMaxKeyLength       = 128
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "text"
	MaxBuckets                = 1 << 16 // bucket ids fit in 16 bits in the assignment table
	MaxDatacenters            = 64      // datacenter sets are 64-bit masks on the request path
	DefaultResponseHeadersOn  = true
	DefaultDrainRamp          = 10 * time.Second
	DefaultBodyTimeout        = 30 * time.Second
	DefaultMaxHeaders         = 100
	DefaultUnderscores        = "drop"
	DefaultMaxHops            = 2
	DefaultFollowersPerBucket = 1_000_000
	DefaultMaxSpread          = 16
	DefaultDetectRate         = 2000
	DefaultDetectTick         = 1 * time.Second

	// Placement defaults (see Placement).
	DefaultStatsTick     = 10 * time.Second
	DefaultAdviseEvery   = time.Minute
	DefaultMajority      = 0.6
	DefaultRelease       = 0.5
	DefaultMoveWindow    = 30 * time.Minute
	DefaultMinRequests   = 100
	DefaultMovesPerHour  = 10
	DefaultMoveCooldown  = 24 * time.Hour
	DefaultHeadroom      = 1.1
	DefaultCopyTime      = 10 * time.Minute
	DefaultFenceSettle   = 30 * time.Second // above the default WriteLife, 15 s
	DefaultCutoverTime   = 10 * time.Minute
	DefaultViewerHeader  = "X-User-ID"
	DefaultLoadLimit     = 1.0
	DefaultGossipLabel   = "socialroute"
	DefaultCheckInterval = 1 * time.Second
	DefaultCheckTimeout  = 500 * time.Millisecond

	// Gossip timing: memberlist's own LAN and WAN defaults.
	DefaultLANProbeInterval = 1 * time.Second
	DefaultLANProbeTimeout  = 500 * time.Millisecond
	DefaultLANSuspicionMult = 4
	DefaultWANProbeInterval = 5 * time.Second
	DefaultWANProbeTimeout  = 3 * time.Second
	DefaultWANSuspicionMult = 6

	// TLS and PROXY protocol on the listener.
	DefaultTLSMinVersion      = TLS12
	DefaultTLSWatchInterval   = 10 * time.Second
	DefaultProxyHeaderTimeout = 5 * time.Second

	// DefaultAdminAddress keeps the admin endpoint on loopback.
	DefaultAdminAddress = "127.0.0.1:9901"
)

// No-key policies: what the proxy does with a request whose routing rules
// yield no key.
const (
	// NoKeyLocal sends keyless requests to the node's own datacenter,
	// falling back to the rest of its continent.
	NoKeyLocal = "local"
	// NoKeyReject answers keyless requests with 400.
	NoKeyReject = "reject"
)

// Config is one proxy node's whole configuration, as read from YAML.
type Config struct {
	// Node describes this proxy process.
	Node Node `yaml:"node"`
	// Listen configures the client-facing HTTP listener.
	Listen Listen `yaml:"listen"`
	// Upstream configures connections to the datacenters' web tiers.
	Upstream Upstream `yaml:"upstream"`
	// Buckets is N, the number of social-hash buckets. Fixed for a
	// deployment: changing it remaps every user. Default 4096, at most
	// MaxBuckets (65536).
	Buckets int `yaml:"buckets"`
	// Table is the path of the social-hash assignment file (user -> bucket),
	// written by `socialroute partition`. Relative paths are resolved from the
	// config file's folder (see TablePath). Empty: every user is hashed
	// with xxhash.
	Table string `yaml:"table"`
	// Continents lists the continents, in failover preference order.
	Continents []Continent `yaml:"continents"`
	// Datacenters lists every datacenter of every continent.
	Datacenters []Datacenter `yaml:"datacenters"`
	// Homes overrides the home continent of buckets. Keys are a bucket ("7")
	// or an inclusive range ("0-127") within 0..Buckets-1, and no two keys
	// may overlap; values name a continent ("0-127": eu). Buckets not named
	// keep the home derived from the bucket id. See ParseBucketRange.
	Homes map[string]string `yaml:"homes"`
	// Pins sends a bucket (or bucket range) to one datacenter first
	// ("42": us-east). Keys follow the rules of Homes; values name a
	// datacenter.
	Pins map[string]string `yaml:"pins"`
	// Drained names datacenters that take no traffic, each at most once.
	Drained []string `yaml:"drained"`
	// Routing says how a request's routing key is found.
	Routing Routing `yaml:"routing"`
	// Hot configures hot-account spreading: keys (celebrities) that take a
	// large share of requests fan out over several sibling buckets.
	Hot Hot `yaml:"hot"`
	// Gossip configures fleet-wide health: memberlist gossip between proxy
	// nodes and active checks of this node's own datacenter. Without it
	// (gossip.lan.bind empty) the node works alone: every datacenter is up
	// unless drained, and its own breakers are its only failure signal.
	Gossip Gossip `yaml:"gossip"`
	// Log configures structured logging.
	Log Log `yaml:"log"`
	// Admin configures the operators' HTTP endpoint (health, metrics,
	// routing explanations, pins, drains, the status page). Off unless
	// admin.enabled is true.
	Admin Admin `yaml:"admin"`
	// Placement configures where buckets live as their users move:
	// per-bucket access statistics, the advisor that recommends moving a
	// bucket's home to where its traffic comes from, and moves.
	Placement Placement `yaml:"placement"`

	// Path is the file the config was loaded from (not part of the YAML).
	Path string `yaml:"-"`
}

// Node describes this proxy process.
type Node struct {
	// Name identifies the node in logs and headers. Default: the host name
	// (os.Hostname); stays empty if the host name cannot be read.
	Name string `yaml:"name"`
	// Datacenter is the datacenter this node stands in. Keyless requests go
	// there under the "local" policy. Required.
	Datacenter string `yaml:"datacenter"`
}

// Listen configures the client-facing listener.
type Listen struct {
	// Address is host:port to accept clients on. An empty host listens on
	// every interface; port 0 picks a free port (tests). Default
	// 127.0.0.1:8080.
	Address string `yaml:"address"`
	// ReadTimeout bounds reading a request's line and headers: a slowloris
	// client that trickles headers is cut off after it. Default 10s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// BodyTimeout bounds reading a request's body once its headers are in.
	// Default 30s.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// MaxConnsPerIP caps the connections one client may hold open: an
	// IPv4 address, or an IPv6 /64 (its hosts pick any address in it),
	// except in the NAT64 prefixes, where each address is an IPv4 client.
	// More are refused, with a 429 in plain HTTP and a close under TLS,
	// and counted in socialroute_connections_refused_total. Default 0: no
	// cap (behind an L4 balancer without the PROXY protocol every client
	// has the balancer's address).
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// MaxHeaders caps the header fields of a request; more get 431.
	// Default 100.
	MaxHeaders int `yaml:"max_headers"`
	// HeadersWithUnderscores says what happens to a request header whose
	// name has an underscore ("X_Forwarded_For"), which some servers read
	// as the dashed name and so let a client forge a header this proxy
	// controls: "drop" the header (default), "reject" the request with 400,
	// or "allow" it.
	HeadersWithUnderscores string `yaml:"headers_with_underscores"`
	// WriteTimeout bounds writing one response. Default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxRequestBodySize in bytes; larger bodies get 413. Default 4 MiB.
	MaxRequestBodySize int `yaml:"max_request_body_size"`
	// MaxHeaderBytes bounds request line plus headers; larger get 431. Default 16 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// Concurrency caps connections served at once. Default 262144.
	Concurrency int `yaml:"concurrency"`
	// DrainDelay is how long, after SIGTERM, the proxy goes on accepting
	// connections while /readyz already answers 503 (and every answer
	// carries Connection: close), so that load balancers take the node out
	// on their next health check before its listener closes: HAProxy's
	// grace, or a Kubernetes preStop sleep. Set it to the balancers' check
	// interval times their fall count. Default 0: stop accepting at once.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM, after
	// DrainDelay. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// ReusePort binds the listener with SO_REUSEPORT, so that a new process
	// can bind the same address while the old one still serves: the
	// zero-downtime upgrade (start the new binary, wait until it answers,
	// SIGTERM the old one). Default false: a second process on the same
	// port fails to start, which catches a mistaken double start.
	ReusePort bool `yaml:"reuse_port"`
	// TLS terminates HTTPS on the listener. Absent: plain HTTP.
	TLS *ListenTLS `yaml:"tls"`
	// ProxyProtocol accepts a PROXY protocol (v1 or v2) header from the
	// L4 load balancers named in it, so that X-Forwarded-For and
	// max_conns_per_ip see the real client. Absent: no PROXY header is
	// read from anyone.
	ProxyProtocol *ProxyProtocol `yaml:"proxy_protocol"`
}

// TLS versions for ListenTLS.MinVersion.
const (
	TLS12 = "1.2"
	TLS13 = "1.3"
)

// ListenTLS configures HTTPS termination. Certificates are read at start,
// on SIGHUP and whenever their files change; a certificate that fails to
// load then is logged and the previous ones stay in force.
type ListenTLS struct {
	// Certificates are the certificate/key pairs served, chosen by the
	// server name the client asks for (SNI). Required, at least one.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is the oldest TLS version accepted: "1.2" (default) or
	// "1.3". TLS 1.3 is always preferred when the client offers it. Needs
	// a restart to change.
	MinVersion string `yaml:"min_version"`
	// WatchInterval is how often the certificate files are checked for
	// changes. Default 10s.
	WatchInterval time.Duration `yaml:"watch_interval"`
}

// Certificate is one certificate chain and its key, in PEM files.
type Certificate struct {
	// CertFile is the PEM certificate chain, leaf first. Required.
	// Relative paths are resolved from the config file's folder, as are
	// the other files of this section.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key. Required.
	KeyFile string `yaml:"key_file"`
	// ServerNames are the SNI names this certificate is served for; a name
	// may start with "*." to match one label. Default: the certificate's
	// own DNS names.
	ServerNames []string `yaml:"server_names"`
	// OCSPFile, if set, is a DER-encoded OCSP response stapled to the
	// handshake; refresh it (e.g. with `openssl ocsp`) and the watcher
	// picks it up.
	OCSPFile string `yaml:"ocsp_file"`
	// Default marks the certificate served to clients without SNI or with
	// a name no certificate has. At most one; default: the first.
	Default bool `yaml:"default"`
}

// ProxyProtocol configures the PROXY protocol on the listener.
type ProxyProtocol struct {
	// Trusted lists the balancers' addresses, as CIDRs ("10.0.0.0/8") or
	// single IPs. A connection from one of them must open with a PROXY
	// header; a connection from anywhere else that sends one is refused.
	// Required, at least one.
	Trusted []string `yaml:"trusted"`
	// HeaderTimeout bounds reading the PROXY header. Default 5s.
	HeaderTimeout time.Duration `yaml:"header_timeout"`
}

// UpstreamTLS configures TLS from the proxy to one datacenter's web tier.
type UpstreamTLS struct {
	// CAFile is the PEM bundle of authorities that sign the upstreams'
	// certificates. Default: the system's roots. Relative paths are
	// resolved from the config file's folder.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the proxy's client certificate for mutual
	// TLS; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name checked in the upstreams' certificates.
	// Default: the host of each upstream address.
	ServerName string `yaml:"server_name"`
}

// Upstream configures the connections to datacenters' web tiers.
type Upstream struct {
	// ConnectTimeout bounds the TCP dial. Default 1s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Timeout bounds one attempt, from sending the request to the last byte
	// of the response. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// RequestTimeout bounds a whole request, every attempt included, from
	// the moment the proxy has read it to the last byte of the answer: a
	// retry gets what is left of it, up to upstream.timeout, and none is
	// made when nothing is left. Without it a datacenter that swallows
	// requests costs (retries + 1) x timeout. Default 1.5 x
	// upstream.timeout (15s): a retry after an attempt that timed out
	// still gets half an attempt. At least upstream.timeout.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxConnsPerHost caps connections to one upstream address. Default 512.
	MaxConnsPerHost int `yaml:"max_conns_per_host"`
	// MaxIdleConnDuration closes pooled connections idle this long; keep it
	// below the upstream's keep-alive timeout. Default 4s.
	MaxIdleConnDuration time.Duration `yaml:"max_idle_conn_duration"`
	// MaxConnWaitTimeout is how long a request waits for a free connection
	// when MaxConnsPerHost are busy. Default 100ms.
	MaxConnWaitTimeout time.Duration `yaml:"max_conn_wait_timeout"`
	// MaxResponseBodySize caps an upstream's response body: a larger one
	// gets 502, is not retried (another datacenter would send the same)
	// and does not count against the upstream's breaker; a streamed one
	// (see max_buffered_response_bytes) that grows past it is cut, its
	// status already sent. Default 64 MiB.
	MaxResponseBodySize int `yaml:"max_response_body_size"`
	// MaxBufferedResponseBytes is the largest response body held whole
	// before it is sent (framed by its Content-Length, in one write); one
	// of unknown length (chunked) that has arrived whole with its headers
	// is held too. A larger one, or one still coming, streams to the client as it comes (while the upstream's
	// streams hold under half its connections, and not to an HTTP/1.0
	// client if chunked), with upstream.timeout between reads from the
	// web tier and listen.write_timeout between writes to the client, so
	// that a slow client's download neither pins its whole body in memory
	// nor is cut by one write_timeout. Default 1 MiB.
	MaxBufferedResponseBytes int `yaml:"max_buffered_response_bytes"`
	// MaxResponseHeaderBytes caps an upstream response's status line and
	// headers: a larger one gets 502, is not retried and does not count
	// against the breaker, like a body too large. Default 16 KiB, as
	// listen.max_header_bytes (fasthttp's 4 KiB turned a redirect echoing
	// a long URL into a failing upstream).
	MaxResponseHeaderBytes int `yaml:"max_response_header_bytes"`
	// Retries is how many times a failed idempotent request is retried, each
	// time on the next datacenter of its plan. Default 1; 0 disables retries;
	// at most 5, since every retry adds a full attempt to the worst case.
	// A pointer so that an explicit 0 differs from "not set".
	Retries *int `yaml:"retries"`
	// RetryBudget caps the retries of requests the web tier answered with
	// a 502, 503 or 504 itself at this share of the node's requests of the
	// last second or two (and at least 10 a second): when a continent runs
	// at its limit and sheds load, a retry for every one would double the
	// load on what is left. Retries after a failure to connect, a reset or
	// a timeout (a datacenter dying) are never capped. Default 0.2; 1
	// lets every such request retry, 0 none (a pointer, so that an
	// explicit 0 differs from "not set").
	RetryBudget *float64 `yaml:"retry_budget"`
	// Breaker configures the per-upstream circuit breakers.
	Breaker Breaker `yaml:"breaker"`
}

// Breaker configures one upstream's circuit breaker.
type Breaker struct {
	// ConsecutiveFailures is how many failures in a row open the breaker.
	// Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// OpenFor is how long an open breaker rejects before letting probes
	// through (half-open). Default 5s, at most 10m: longer would hide a
	// recovered upstream for minutes.
	OpenFor time.Duration `yaml:"open_for"`
	// HalfOpenRequests is how many probes a half-open breaker lets through.
	// Default 1.
	HalfOpenRequests int `yaml:"half_open_requests"`
	// FailureRatio also opens the breaker when at least this share of the
	// requests of the last Window failed (and there were MinRequests of
	// them): an upstream failing every other request never fails
	// consecutive_failures times in a row, yet is sick. Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// MinRequests is how many requests the Window needs before
	// FailureRatio counts. Default 20.
	MinRequests int `yaml:"min_requests"`
	// Window is the rolling window FailureRatio is measured over, in
	// one-second buckets. Default 10s.
	Window time.Duration `yaml:"window"`
}

// Continent is a set of datacenters that keep their users' data.
type Continent struct {
	// Name is the continent's id, e.g. "us". Required, unique, made of
	// a-z, 0-9, '-', '_' and '.' (it appears in headers and metrics).
	Name string `yaml:"name"`
	// FailoverTo names continents that may serve this continent's buckets
	// when none of its own datacenters can, in order. Default: none, since
	// a continent's users' data stays on it. Each entry must be another
	// known continent, listed once.
	FailoverTo []string `yaml:"failover_to"`
	// Share weighs the continent in the default home split: a bucket
	// without a home of its own is homed on a continent drawn by
	// rendezvous, weighted by share, so about share / (sum of shares) of
	// the buckets live here. Default: the sum of its datacenters'
	// capacities. Set it to keep the split fixed while capacities change:
	// a reload that would rehome buckets (their data has not moved) is
	// refused.
	Share float64 `yaml:"share"`
}

// Datacenter is one web-tier site.
type Datacenter struct {
	// Name is the datacenter's id, e.g. "us-east". Required, unique among
	// datacenters, made of a-z, 0-9, '-', '_' and '.'.
	Name string `yaml:"name"`
	// Continent names the continent it belongs to. Required; every
	// continent needs at least one datacenter.
	Continent string `yaml:"continent"`
	// Capacity is the relative weight of the datacenter within its
	// continent (requests per second it can take, or any unit used
	// consistently). Required, finite and > 0.
	Capacity float64 `yaml:"capacity"`
	// Upstreams are host:port addresses of its web tier (port 1-65535).
	// Required; an address may appear only once in the whole config.
	Upstreams []string `yaml:"upstreams"`
	// MaxRPS is the request rate the datacenter can take from the whole
	// proxy fleet, in requests per second. Past MaxRPS x routing.load_limit
	// the excess spills to the next datacenter of each bucket's list (never
	// to another continent unless failover_to allows). 0: no limit.
	MaxRPS float64 `yaml:"max_rps"`
	// TLS, if set, makes the proxy speak TLS (and mutual TLS with a client
	// certificate) to this datacenter's upstreams. Absent: plain HTTP.
	TLS *UpstreamTLS `yaml:"tls"`
}

// Routing says how a request's routing key is found.
type Routing struct {
	// Rules are tried in order; the first that yields a key wins.
	// Default: one rule, the X-User-ID header.
	Rules []Rule `yaml:"rules"`
	// NoKey is the policy for requests no rule yields a key for:
	// "local" (default) or "reject".
	NoKey string `yaml:"no_key"`
	// MaxKeyLength rejects longer keys with 400. Default 128, at most 4096.
	MaxKeyLength int `yaml:"max_key_length"`
	// MaxHops rejects, with 508, a request whose Via header shows it
	// already passed socialroute this many times: a routing loop. Default 2.
	MaxHops int `yaml:"max_hops"`
	// ResponseHeaders adds X-Socialroute-Bucket and X-Socialroute-Dc to
	// responses. Default true; a pointer so that an explicit false differs
	// from "not set".
	ResponseHeaders *bool `yaml:"response_headers"`
	// DrainRamp is how long a datacenter's traffic takes to move off it
	// when it is drained (its share falls linearly to zero) and back when
	// it is undrained, or comes back up after gossip had it down (slow
	// start). Default 10s.
	DrainRamp time.Duration `yaml:"drain_ramp"`
	// LoadLimit is the share of a datacenter's max_rps it may be sent
	// before requests spill to the next datacenter. Default 1.0: the 20%
	// headroom planned below capacity is what absorbs a failure.
	LoadLimit float64 `yaml:"load_limit"`
}

// Hot configures hot-account spreading.
type Hot struct {
	// File lists hot accounts as CSV "key,followers" (what `socialroute
	// partition --hot-out` writes), relative to the config file; reloaded
	// on SIGHUP. Empty: no static list.
	File string `yaml:"file"`
	// FollowersPerBucket: a listed account spreads over one bucket per this
	// many followers. Default 1000000.
	FollowersPerBucket int `yaml:"followers_per_bucket"`
	// MaxSpread caps how many buckets one key spreads over. Default 16, at
	// most 64.
	MaxSpread int `yaml:"max_spread"`
	// DetectRate is the request rate (per second, on one proxy node) at
	// which a key not on the list is detected as hot and spread. Default
	// 2000; 0 in YAML means the default, a negative value turns detection
	// off.
	DetectRate float64 `yaml:"detect_rate"`
	// DetectTick is how often detected counts decay by half and keys are
	// promoted or demoted. Default 1s.
	DetectTick time.Duration `yaml:"detect_tick"`
	// ViewerHeader carries the viewer's id: a viewer keeps hitting the same
	// sibling (the same cache). Default X-User-ID.
	ViewerHeader string `yaml:"viewer_header"`
	// CrossContinent lets siblings be buckets homed on other continents.
	// Default false: an account's data stays on its home continent.
	CrossContinent bool `yaml:"cross_continent"`
}

// Gossip configures the memberlist pools that spread health over the fleet.
type Gossip struct {
	// LAN is the pool of this continent's proxy nodes: fast failure
	// detection over short round trips.
	LAN GossipPool `yaml:"lan"`
	// WAN is the pool of every proxy node of every continent, tuned for
	// long round trips. Optional: without it a node knows only its own
	// continent's datacenters from gossip.
	WAN GossipPool `yaml:"wan"`
	// KeyFile names a file holding the base64 gossip encryption key
	// (AES-GCM; 16, 24 or 32 bytes once decoded). The environment variable
	// SOCIALROUTE_GOSSIP_KEY overrides it. Required when gossip is on:
	// a node with another key cannot join.
	KeyFile string `yaml:"key_file"`
	// Label isolates clusters that share a network: packets with another
	// label are dropped. Default "socialroute".
	Label string `yaml:"label"`
	// CheckInterval is how often a node checks its own datacenter's
	// upstreams. Default 1s.
	CheckInterval time.Duration `yaml:"check_interval"`
	// CheckTimeout bounds one check. Default 500ms.
	CheckTimeout time.Duration `yaml:"check_timeout"`
	// CheckPath, if set, makes a check an HTTP GET of this path that must
	// answer 2xx; otherwise a check is a TCP connect.
	CheckPath string `yaml:"check_path"`
}

// GossipPool is one memberlist pool.
type GossipPool struct {
	// Bind is the host:port to gossip on (UDP and TCP). Empty: pool off.
	Bind string `yaml:"bind"`
	// Advertise is the host:port other nodes reach this one at. Default:
	// Bind. Must be a concrete address, not 0.0.0.0.
	Advertise string `yaml:"advertise"`
	// Join lists host:port of nodes to join at start; retried until one
	// answers.
	Join []string `yaml:"join"`
	// ProbeInterval is how often a random member is probed. Default 1s on
	// the LAN, 5s on the WAN (memberlist's defaults).
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// ProbeTimeout is how long a probe waits for an answer. Default 500ms
	// on the LAN, 3s on the WAN.
	ProbeTimeout time.Duration `yaml:"probe_timeout"`
	// SuspicionMult scales how long a member stays suspect before it is
	// declared dead (suspicion_mult x log(N+1) x probe_interval). Default 4
	// on the LAN, 6 on the WAN.
	SuspicionMult int `yaml:"suspicion_mult"`
}

// Rule extracts a routing key from one place of a request. Exactly one of
// Header, Cookie, Query and Path is set.
type Rule struct {
	// PathPrefix limits the rule to request paths that start with it. It
	// must start with "/". Empty: every path.
	PathPrefix string `yaml:"path_prefix"`
	// Header takes the key from this request header (an RFC 9110 token).
	Header string `yaml:"header"`
	// Cookie takes the key from this cookie (an RFC 6265 token).
	Cookie string `yaml:"cookie"`
	// Query takes the key from this query parameter.
	Query string `yaml:"query"`
	// Path takes the key from a path segment: a template such as
	// "/users/{key}" matches paths starting with "/users/" and takes the
	// segment in place of {key}. The template starts with "/" and holds
	// exactly one {key}, which is a whole segment: preceded by "/" and
	// followed by "/" or the end of the template.
	Path string `yaml:"path"`
}

// Log configures structured logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// Admin configures the operators' HTTP endpoint: a listener of its own,
// apart from client traffic. Every route but /healthz and /readyz needs
// the admin token.
type Admin struct {
	// Enabled turns the admin endpoint on. Default false: a node serves
	// clients only.
	Enabled bool `yaml:"enabled"`
	// Address is host:port the admin endpoint listens on. Default
	// 127.0.0.1:9901: loopback, so that reaching it from another host is a
	// decision (an SSH tunnel, a sidecar, or an address named here). Port 0
	// picks a free port (tests).
	Address string `yaml:"address"`
	// TokenFile names a file holding the bearer token operators present
	// ("Authorization: Bearer <token>"), at least 16 characters, surrounding
	// white space ignored. The environment variable SOCIALROUTE_ADMIN_TOKEN
	// overrides it. A relative path is resolved from the config file's
	// folder (see AdminTokenPath). Required when the endpoint is on, unless
	// InsecureNoToken.
	TokenFile string `yaml:"token_file"`
	// InsecureNoToken serves the admin endpoint without a token. Allowed
	// only when Address is a loopback address, and meant for a laptop:
	// anything on the host can then drain the fleet. Default false.
	InsecureNoToken bool `yaml:"insecure_no_token"`
}

// Placement configures access statistics, the placement advisor and
// bucket moves (buckets.Advisor, buckets.MovePhase).
type Placement struct {
	// StatsTick is how often per-bucket access counts halve and are
	// reported to the fleet. Default 10s.
	StatsTick time.Duration `yaml:"stats_tick"`
	// AdviseEvery is how often the advisor weighs the fleet's counts.
	// Default 1m.
	AdviseEvery time.Duration `yaml:"advise_every"`
	// Majority is the share of a bucket's traffic one other continent must
	// send for the bucket to become a candidate to move there. Default
	// 0.6; in (0.5, 1].
	Majority float64 `yaml:"majority"`
	// Release is the share under which a candidate stops being one
	// (hysteresis). Default 0.5; in (0, majority].
	Release float64 `yaml:"release"`
	// Window is how long a candidate must hold its majority before it is
	// recommended. Default 30m.
	Window time.Duration `yaml:"window"`
	// MinRequests is the fleet's decayed count under which a bucket is not
	// weighed. Default 100.
	MinRequests int `yaml:"min_requests"`
	// MovesPerHour caps the moves started in any hour. Default 10.
	MovesPerHour int `yaml:"moves_per_hour"`
	// Cooldown keeps a moved bucket from moving again. Default 24h.
	Cooldown time.Duration `yaml:"cooldown"`
	// Headroom is how far past its capacity share of the buckets a
	// continent may home (1.1: 10% more). Default 1.1; at least 1.
	Headroom float64 `yaml:"headroom"`
	// AutoApply starts recommended moves and walks them through their
	// phases on their own, on one node: the serving node with the least
	// name among those with it on, which also takes the operators'
	// advances and aborts. Default false: recommendations are only shown
	// (GET /admin/placement/recommendations; POST /admin/placement/evaluate
	// runs the advisor now).
	AutoApply bool `yaml:"auto_apply"`
	// CopyTime is how long an automatic move stays copying (the web tier
	// copies the bucket's data to the new home) before writes are fenced.
	// Default 10m.
	CopyTime time.Duration `yaml:"copy_time"`
	// FenceSettle is the least time a move stays fenced, counted both from
	// the fence and from the moment the last node was seen holding it,
	// before writes cut over to the new home. Keep it above WriteLife,
	// upstream.request_timeout, so that every write any node routed before
	// the fence, retries included, has finished (the proxy warns at load
	// when it is not). Default 30s.
	FenceSettle time.Duration `yaml:"fence_settle"`
	// CutoverTime is how long reads keep falling back to the old home after
	// the cutover, before the move is done. Default 10m.
	CutoverTime time.Duration `yaml:"cutover_time"`
}

// WriteLife is the longest a request can go on reaching upstreams after it
// was routed: upstream.request_timeout, since every attempt's connection
// has its deadline at the request's, so no byte of it is written later.
// (It counts from when the request was read, a moment before it was
// routed.)
func (c *Config) WriteLife() time.Duration { return c.Upstream.RequestTimeout }
