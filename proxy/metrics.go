package proxy

import (
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/socialroute/socialroute/configs"
	"github.com/valyala/fasthttp"
)

// Metric names and labels, for dashboards and tests. Everything the proxy
// exports is prefixed socialroute_.
const (
	metricRequests = "socialroute_requests_total"
	metricLatency  = "socialroute_request_duration_seconds"
	metricKeyed    = "socialroute_keyed_requests_total"
	metricHome     = "socialroute_home_continent_requests_total"
	metricLocality = "socialroute_locality_ratio"
)

// noDatacenter labels requests the proxy answered without choosing a
// datacenter (malformed, no routing key under no_key: reject, nowhere to
// go). Prometheus drops empty label values, so it has a name.
const noDatacenter = "none"

// statusClasses are the values of the status label: a response's class,
// not its exact code, so the series stay few.
var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// latencyBuckets (seconds) span a cache hit in the next rack to an upstream
// timing out.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// metrics are a Server's Prometheus metrics, in a registry of its own (not
// the global one: tests build many servers, and a process may too).
//
// The request path touches only series resolved in advance (dcMetrics,
// built with each state): at most three counters and one histogram, plus a
// clock read (fasthttp took the start time already). It looks up no label
// and allocates nothing. What can be read from the routing state (breakers,
// drains, map version) is collected when Prometheus scrapes.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec   // datacenter, continent, status, spread
	latency  *prometheus.HistogramVec // datacenter
	// keyed counts requests with a routing key that a datacenter answered,
	// home those of them answered on their bucket's home continent, both
	// by the datacenter that answered.
	keyed, home *prometheus.CounterVec
}

// dcMetrics are one datacenter's series, resolved once per state.
type dcMetrics struct {
	requests  [2][len(statusClasses)]prometheus.Counter // by spread (0 false, 1 true), then statusClasses
	latency   prometheus.Observer
	keyed     prometheus.Counter // nil for noDatacenter
	home      prometheus.Counter // nil for noDatacenter
	continent int                // continent index in the state's topology; -1 for noDatacenter
}

// stateMetrics are the series a state's request path uses: one dcMetrics
// per datacenter, by index, then one for noDatacenter.
type stateMetrics struct {
	dcs []dcMetrics
}

func newMetrics(s *Server, version string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricRequests,
		Help: "Requests this proxy handled, by the datacenter that answered (or was last tried; \"none\" if the proxy answered before choosing one), its continent, the response's status class, and whether the key was a spread hot account. Requests fasthttp could not parse count in socialroute_rejected_total only.",
	}, []string{"datacenter", "continent", "status", "spread"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    metricLatency,
		Help:    "Time the proxy took to handle a request, from reading it to the response being ready (upstream round trips and retries included), by datacenter.",
		Buckets: latencyBuckets,
	}, []string{"datacenter"})
	m.keyed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricKeyed,
		Help: "Requests with a routing key answered by a datacenter, by that datacenter (the locality ratio's denominator).",
	}, []string{"datacenter"})
	m.home = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricHome,
		Help: "Requests with a routing key answered by a datacenter of their bucket's home continent, by that datacenter.",
	}, []string{"datacenter"})
	locality := func() float64 {
		keyed := sumCounters(m.keyed)
		if keyed == 0 {
			return 1
		}
		return sumCounters(m.home) / keyed
	}
	m.reg.MustRegister(
		m.requests, m.latency, m.keyed, m.home,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metricLocality,
			Help: "Share of keyed requests answered on their bucket's home continent since the proxy started (1 before any). Over a window: sum(rate(" + metricHome + "[5m])) / sum(rate(" + metricKeyed + "[5m])).",
		}, locality),
		counterFunc("socialroute_retries_total", "Upstream attempts after a request's first (on another datacenter or upstream).", &s.stats.Retries),
		counterFunc("socialroute_retries_denied_total", "Failed requests not retried because retries had spent upstream.retry_budget (a share of the requests): under overload, retries would double the load.", &s.stats.RetriesDenied),
		counterFunc("socialroute_retries_out_of_time_total", "Failed requests not retried because upstream.request_timeout had run out (a datacenter that swallows requests used it up).", &s.stats.RetriesOutOfTime),
		&codeCollector{s: s, desc: descRejected, lo: 400, known: []int{400, 408, 413, 431, 508}},
		&codeCollector{s: s, desc: descProxyErrors, lo: 500, known: []int{502, 503, 504}},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "socialroute_map_version",
			Help: "Version of the bucket map this node routes by; every pin, drain or reload raises it.",
		}, func() float64 { return float64(s.Placement().Load().Version()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "socialroute_build_info",
			Help:        "Always 1; the labels say which build runs (as socialroute version prints it).",
			ConstLabels: prometheus.Labels{"version": version}, // go_info has the Go version
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "socialroute_config_last_reload_successful",
			Help: "1 if the last reload (SIGHUP, POST /admin/reload) applied, 0 if it was refused and the previous configuration runs; 1 at start.",
		}, func() float64 { return bool01(s.lastReload.ok.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "socialroute_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration in force was loaded (the start, or the last reload that applied), in unix seconds.",
		}, func() float64 { return float64(s.lastReload.succeeded.Load()) }),
		&routingCollector{s: s},
		&certCollector{s: s},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "socialroute_connections_refused_total",
			Help: "Client connections refused because their client (an IPv4 address or an IPv6 /64) held listen.max_conns_per_ip already.",
		}, func() float64 {
			if s.clients == nil {
				return 0
			}
			return float64(s.clients.refused.Load())
		}),
	)
	return m
}

// certCollector reports when each listener certificate in force expires,
// so an alert can fire before it does (the proxy serves an expired one
// rather than refuse every name; see loadCertSet).
type certCollector struct{ s *Server }

var descCertExpiry = prometheus.NewDesc("socialroute_tls_certificate_expiry_timestamp_seconds",
	"When a listener certificate in force expires (its NotAfter, in Unix seconds), by its listen.tls.certificates entry and cert_file. Alert on: "+
		"socialroute_tls_certificate_expiry_timestamp_seconds - time() < 14 * 86400.",
	[]string{"certificate", "file"}, nil)

var descCertFileExpiry = prometheus.NewDesc("socialroute_tls_certificate_file_expiry_timestamp_seconds",
	"When the certificate in a listener certificate's cert_file expires: the one in force, except when the file went back to an expired "+
		"certificate and the valid one read before stays in force; a restart would serve the file's. Alert on it as on "+
		"socialroute_tls_certificate_expiry_timestamp_seconds.",
	[]string{"certificate", "file"}, nil)

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCertExpiry
	ch <- descCertFileExpiry
}

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.certs == nil {
		return // no TLS on the listener
	}
	for _, sc := range c.s.certs.cur.Load().certs {
		ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(sc.notAfter.Unix()), sc.field, sc.file)
		ch <- prometheus.MustNewConstMetric(descCertFileExpiry, prometheus.GaugeValue, float64(sc.fileNotAfter.Unix()), sc.field, sc.file)
	}
}

func counterFunc(name, help string, v *atomic.Uint64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
}

// sumCounters adds up every series of a counter vector.
func sumCounters(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }()
	var sum float64
	var out dto.Metric
	for m := range ch {
		out.Reset()
		if m.Write(&out) == nil {
			sum += out.GetCounter().GetValue()
		}
	}
	return sum
}

// forState resolves the series of cfg's datacenters. Series of a
// datacenter keep counting across reloads (same labels, same child).
func (m *metrics) forState(cfg *configs.Config) stateMetrics {
	sm := stateMetrics{dcs: make([]dcMetrics, len(cfg.Datacenters)+1)}
	continents := make(map[string]int, len(cfg.Continents))
	for i, c := range cfg.Continents {
		continents[c.Name] = i
	}
	resolve := func(dm *dcMetrics, name, continent string, ci int) {
		for i, class := range statusClasses {
			dm.requests[0][i] = m.requests.WithLabelValues(name, continent, class, "false")
			dm.requests[1][i] = m.requests.WithLabelValues(name, continent, class, "true")
		}
		dm.latency = m.latency.WithLabelValues(name)
		dm.continent = ci
	}
	for i, d := range cfg.Datacenters {
		resolve(&sm.dcs[i], d.Name, d.Continent, continents[d.Continent])
		sm.dcs[i].keyed = m.keyed.WithLabelValues(d.Name)
		sm.dcs[i].home = m.home.WithLabelValues(d.Name)
	}
	resolve(&sm.dcs[len(cfg.Datacenters)], noDatacenter, noDatacenter, -1)
	return sm
}

// observe counts one request the proxy handled. dc is the datacenter that
// answered or was last tried (-1: none); answered reports whether the
// response came from a datacenter rather than from the proxy; d is the
// routing decision (nil if the request was refused before routing). It
// reads the response's status, and the handler start time fasthttp took.
func (sm *stateMetrics) observe(ctx *fasthttp.RequestCtx, dc int, answered bool, d *Decision) {
	dm := &sm.dcs[len(sm.dcs)-1]
	if dc >= 0 {
		dm = &sm.dcs[dc]
	}
	spread := 0
	if d != nil && d.Spread > 1 {
		spread = 1
	}
	dm.requests[spread][statusClass(ctx.Response.StatusCode())].Inc()
	dm.latency.Observe(time.Since(ctx.Time()).Seconds())
	if answered && dc >= 0 && d != nil && d.Source != SourceNone {
		dm.keyed.Inc()
		if dm.continent == d.Snapshot.Home(d.Bucket) {
			dm.home.Inc()
		}
	}
}

// statusClass maps a status code to its index in statusClasses.
func statusClass(code int) int {
	return min(max(code/100, 1), 5) - 1
}

// requestsTo is how many requests datacenter dc (an index of st) answered
// or was last tried for, over all status classes: the admin endpoint's
// view of this node's load, read from the same counters /metrics shows.
func (sm *stateMetrics) requestsTo(dc int) uint64 {
	var n float64
	var out dto.Metric
	for _, bySpread := range sm.dcs[dc].requests {
		for _, c := range bySpread {
			out.Reset()
			if c.Write(&out) == nil {
				n += out.GetCounter().GetValue()
			}
		}
	}
	return uint64(n)
}

// routingCollector reads the routing state when Prometheus scrapes: each
// datacenter's usability and drain as the routing core sees them, and each
// upstream's breaker.
type routingCollector struct{ s *Server }

var (
	descUsable = prometheus.NewDesc("socialroute_datacenter_usable",
		"1 if the routing core would send a request to the datacenter now: not drained, not down, an upstream's breaker ready.",
		[]string{"datacenter", "continent"}, nil)
	descDrained = prometheus.NewDesc("socialroute_datacenter_drained",
		"1 if the bucket map drains the datacenter.", []string{"datacenter"}, nil)
	descWeight = prometheus.NewDesc("socialroute_datacenter_drain_weight",
		"Share of its traffic the datacenter takes under the drain ramp: 1 undrained, 0 drained, in between while a drain or undrain ramps.",
		[]string{"datacenter"}, nil)
	descBreaker = prometheus.NewDesc("socialroute_breaker_state",
		"State of an upstream's circuit breaker: 0 closed, 1 half-open, 2 open.",
		[]string{"datacenter", "upstream"}, nil)
	descDesyncs = prometheus.NewDesc("socialroute_upstream_desyncs_total",
		"Upstream connections closed, not pooled, because the upstream sent bytes past a response's end (a body on a HEAD, 204 or 304, or past its Content-Length): kept, they would have been read as the next request's response. A web-tier bug, or response splitting.",
		[]string{"datacenter", "upstream"}, nil)
	descStreamsCut = prometheus.NewDesc("socialroute_upstream_streams_cut_total",
		"Streamed response bodies the upstream broke off (a reset, a stall past upstream.timeout, a truncated body): the client's connection was cut, its status already sent. Not held against the breaker (a slow client can make a web tier break off).",
		[]string{"datacenter", "upstream"}, nil)
)

var _ prometheus.Collector = (*routingCollector)(nil)

func (c *routingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descUsable
	ch <- descDrained
	ch <- descWeight
	ch <- descBreaker
	ch <- descDesyncs
	ch <- descStreamsCut
}

func (c *routingCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.cur.Load()
	snap := st.router.placement.Load()
	for i, d := range c.s.datacentersNow(st, snap, c.s.gossipView(nil), time.Now()) {
		p := st.pools[i]
		ch <- prometheus.MustNewConstMetric(descUsable, prometheus.GaugeValue, bool01(d.usable()), p.name, p.continent)
		ch <- prometheus.MustNewConstMetric(descDrained, prometheus.GaugeValue, bool01(d.drained), p.name)
		ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, d.weight, p.name)
		for _, u := range p.upstreams {
			ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, float64(u.breaker.State()), p.name, u.addr)
			ch <- prometheus.MustNewConstMetric(descDesyncs, prometheus.CounterValue, float64(u.desyncs.Load()), p.name, u.addr)
			ch <- prometheus.MustNewConstMetric(descStreamsCut, prometheus.CounterValue, float64(u.streamsCut.Load()), p.name, u.addr)
		}
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Registry is the registry of the server's own metrics, for a /metrics
// handler (the admin endpoint's gathers it with the gossip and Go runtime
// metrics).
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

var (
	descRejected = prometheus.NewDesc("socialroute_rejected_total",
		"Malformed requests the proxy answered with a 4xx itself, by status code: 400 malformed (smuggling, an ambiguous path, a bad key), 408 too slow, 413 body too large, 431 headers too large, 508 a routing loop.",
		[]string{"code"}, nil)
	descProxyErrors = prometheus.NewDesc("socialroute_proxy_errors_total",
		"Requests the proxy answered with a 5xx itself, by status code: 502 upstream failed (or its answer was too large), 503 no usable datacenter or upstream, 504 upstream timed out. An upstream's own 5xx, passed on, counts in "+metricRequests+" only.",
		[]string{"code"}, nil)
)

// codeCollector exports the proxy's own answers with status codes from lo
// to lo+99 by code: the known ones always (a series that is there at 0
// makes rate() and alerts work from the start), any other once it counts.
type codeCollector struct {
	s     *Server
	desc  *prometheus.Desc
	lo    int
	known []int
}

func (c *codeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *codeCollector) Collect(ch chan<- prometheus.Metric) {
	for code := c.lo; code < c.lo+100; code++ {
		n := c.s.stats.byCode[code].Load()
		if n == 0 && !slices.Contains(c.known, code) {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), strconv.Itoa(code))
	}
}
