package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/socialroute/socialroute/health"
)

// ErrShuttingDown is what AdminOptions.Reload returns when the node began
// to stop before it could reload: the admin endpoint answers 503, not the
// 422 of a file that does not load.
var ErrShuttingDown = errors.New("the node is shutting down")

// MinAdminToken is the shortest admin token NewAdmin accepts: a token is a
// password to the whole fleet's routing.
const MinAdminToken = 16

// AdminOptions configure the admin endpoint.
type AdminOptions struct {
	// Token is the secret every route but /healthz and /readyz requires,
	// as "Authorization: Bearer <token>" (or, for reading only, as the
	// password of HTTP Basic authentication, so a browser can show the
	// status page). At least MinAdminToken bytes. It is never logged.
	Token []byte
	// NoToken serves every route without a token. Token must then be
	// empty; the caller decides when that is safe (configs allows it on
	// loopback only).
	NoToken bool
	// Cluster is the gossip view: members, and each datacenter's health.
	// nil when gossip is off: the endpoint then shows the configuration,
	// drains and breakers only.
	Cluster ClusterView
	// Reload reloads the configuration and table (POST /admin/reload). It
	// must be safe to call from any goroutine. nil: the route answers 501.
	Reload func() error
	// Logger receives the changes made through the endpoint (never the
	// token). Default: slog.Default().
	Logger *slog.Logger
}

// Admin is the operators' HTTP endpoint for one Server: health, readiness,
// Prometheus metrics, routing explanations, bucket pins, datacenter drains,
// the gossip view, reload, pprof and a status page. It is an http.Handler
// meant for a listener of its own, apart from client traffic.
//
//	GET    /healthz                        200 while the process runs (no token)
//	GET    /readyz                         200 ready, 503 and why not (no token)
//	GET    /metrics                        Prometheus text
//	GET    /admin/route?user=U&path=P      the routing decision, step by step
//	GET    /admin/buckets                  bucket counts per datacenter
//	GET    /admin/buckets/{id}             one bucket's list, state and choice
//	POST   /admin/buckets/{id}/pin         {"datacenter": "us-west"}
//	DELETE /admin/buckets/{id}/pin
//	GET    /admin/datacenters[/{dc}]       state, reason, buckets, load, breakers
//	POST   /admin/datacenters/{dc}/drain   (and /undrain) ramps over routing.drain_ramp
//	GET    /admin/members                  the gossip view
//	GET    /admin/hot                      hot accounts: static list, detected, fleet
//	POST   /admin/reload                   what SIGHUP does
//	GET    /debug/pprof/...                Go's profiles
//	GET    /status                         the status page (HTML)
//
// Answers are JSON; routes a person reads also print a table with
// ?format=text or an Accept header that prefers text. Errors are
// {"error": "field: what is wrong", "field": "field"}: 400 for bad input,
// 404 for an unknown bucket or datacenter, 405 (with Allow) for a wrong
// method, 401 without the token, 422 for a config file a reload refuses,
// 503 for a change while the node drains (it is leaving the fleet, so the
// change would reach no other node), and, with NoToken, 403 for a request
// whose Host is not localhost or a loopback address (DNS rebinding).
//
// Changes (pins, drains) go through Server.ChangePlacement: they raise the
// map version and reach the fleet through Options.OnPlacementChange; a
// change that changes nothing (pinning a bucket where it is pinned) is
// answered "changed": false and publishes no version. Non-GET requests
// from another site's page are refused (http.CrossOriginProtection).
type Admin struct {
	s        *Server
	cluster  ClusterView
	token    atomic.Pointer[[sha256.Size]byte] // sha256 of the token: compared in constant time, whatever its length; SetToken swaps it
	noToken  bool
	reload   func() error
	log      *slog.Logger
	draining atomic.Bool
	joined   atomic.Bool          // gossip has once listed another member
	reg      *prometheus.Registry // the endpoint's own metrics: gossip, readiness, Go runtime
	handler  http.Handler

	// refused counts requests answered 401, by reason; wrongToken keeps
	// someone guessing tokens from flooding the log.
	refused    *prometheus.CounterVec
	wrongToken logEvery
}

// SetToken replaces the token (a rotation, read again at a reload): the
// old one is refused from the next request on. An endpoint started with
// NoToken keeps it (a restart turns tokens on).
func (a *Admin) SetToken(token []byte) error {
	switch {
	case a.noToken:
		return errors.New("proxy: admin: the endpoint runs without a token (admin.insecure_no_token); a token needs a restart")
	case len(token) < MinAdminToken:
		return fmt.Errorf("proxy: admin: the token must be at least %d characters, got %d", MinAdminToken, len(token))
	}
	sum := sha256.Sum256(token)
	a.token.Store(&sum)
	return nil
}

// NewAdmin builds the admin endpoint of s.
func NewAdmin(s *Server, o AdminOptions) (*Admin, error) {
	switch {
	case o.NoToken && len(o.Token) > 0:
		return nil, errors.New("proxy: admin: a token and NoToken together")
	case !o.NoToken && len(o.Token) < MinAdminToken:
		// Say how long, never what.
		return nil, fmt.Errorf("proxy: admin: the token must be at least %d characters, got %d", MinAdminToken, len(o.Token))
	}
	a := &Admin{s: s, cluster: o.Cluster, noToken: o.NoToken, reload: o.Reload, log: o.Logger, reg: prometheus.NewRegistry()}
	if a.log == nil {
		a.log = slog.Default()
	}
	sum := sha256.Sum256(o.Token)
	a.token.Store(&sum)
	a.wrongToken.every = 10 * time.Second
	a.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "socialroute_admin_unauthorized_total",
		Help: "Admin requests answered 401, by reason: missing (no Authorization header), wrong (credentials that are not the token, malformed ones included), basic_write (Basic credentials for a change).",
	}, []string{"reason"})
	for _, r := range []string{"missing", "wrong", "basic_write"} {
		a.refused.WithLabelValues(r) // at 0 from the start, so rate() sees the first
	}
	a.reg.MustRegister(
		a.refused,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "socialroute_ready",
			Help: "1 if the node is ready for traffic (see /readyz).",
		}, func() float64 { ok, _ := a.Ready(); return bool01(ok) }),
	)
	if a.cluster != nil {
		a.reg.MustRegister(&gossipCollector{c: a.cluster, s: s})
	}
	a.handler = http.NewCrossOriginProtection().Handler(a.routes())
	return a, nil
}

// SetDraining marks the node as draining (true) or not: /readyz then
// answers 503 so balancers stop sending clients before the listener
// closes. Server.Shutdown also makes the node unready by itself.
func (a *Admin) SetDraining(on bool) { a.draining.Store(on) }

// Ready reports whether the node should get traffic, and if not, why: the
// client listener is serving, the node is not draining, and, with gossip
// on and seeds to join, it has joined (seen a member other than itself).
// Joining is checked until it happens, not after: a node whose peers are
// all gone, or upgrading, goes on serving on its breakers, and must not
// take itself out of its balancer's pool just when it is the last one.
// The configuration and table are up by construction: the Server exists.
func (a *Admin) Ready() (bool, []string) {
	var why []string
	if a.draining.Load() {
		why = append(why, "draining")
	}
	if !a.s.Serving() {
		why = append(why, "the client listener is not serving")
	}
	if a.cluster != nil {
		g := a.s.cur.Load().cfg.Gossip
		if (len(g.LAN.Join) > 0 || len(g.WAN.Join) > 0) && !a.joined.Load() {
			if len(a.cluster.Members()) >= 2 {
				a.joined.Store(true)
			} else {
				why = append(why, "gossip has not joined the fleet yet")
			}
		}
	}
	return len(why) == 0, why
}

// ServeHTTP serves the admin routes.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// routes builds the mux, behind the checks every path but /healthz and
// /readyz passes first: the Host (without a token), the token, and no
// change while draining.
func (a *Admin) routes() http.Handler {
	mux := http.NewServeMux()
	// Which routes need the token is decided before the mux (see below);
	// open and closed say it here too, for the reader.
	open := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, h) }
	closed := open

	open("GET /healthz", a.healthz)
	open("GET /readyz", a.readyz)

	closed("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{a.s.metrics.reg, a.reg}, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}).ServeHTTP)
	closed("GET /admin/route", a.route)
	closed("GET /admin/buckets", a.bucketList)
	closed("GET /admin/buckets/{id}", a.bucketGet)
	closed("POST /admin/buckets/{id}/pin", a.bucketPin)
	closed("DELETE /admin/buckets/{id}/pin", a.bucketUnpin)
	closed("GET /admin/datacenters", a.datacenterList)
	closed("GET /admin/datacenters/{dc}", a.datacenterGet)
	closed("POST /admin/datacenters/{dc}/drain", a.drain(true))
	closed("POST /admin/datacenters/{dc}/undrain", a.drain(false))
	closed("GET /admin/members", a.members)
	closed("GET /admin/hot", a.hot)
	a.placementRoutes(closed)
	closed("POST /admin/reload", a.reloadConfig)

	closed("GET /debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex, threadcreate
	closed("GET /debug/pprof/cmdline", pprof.Cmdline)
	closed("GET /debug/pprof/profile", pprof.Profile)
	closed("GET /debug/pprof/symbol", pprof.Symbol)
	closed("POST /debug/pprof/symbol", pprof.Symbol)
	closed("GET /debug/pprof/trace", pprof.Trace)

	closed("GET /status", a.statusPage)
	closed("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/status", http.StatusFound) })

	// The token is checked before the mux for every path but the two
	// probes: the mux's 404s, 405s and its own redirects (/debug/pprof,
	// //metrics) are behind it too, so the routes are not there to probe.
	// Anything the mux has no route for gets its 404 or 405 (with Allow)
	// as JSON.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			if a.noToken && !loopbackHost(r.Host) {
				// Without a token, loopback is the only guard, and a page
				// of another site reaches loopback by DNS rebinding: its
				// requests then carry that site's name as Host.
				writeError(w, http.StatusForbidden, "host", fmt.Sprintf("%q: without a token (admin.insecure_no_token) the endpoint answers only requests addressed to localhost or a loopback address", r.Host))
				return
			}
			if !a.authorized(w, r) {
				return
			}
			if a.draining.Load() && r.Method != http.MethodGet && r.Method != http.MethodHead {
				// The node is leaving the fleet: a change made here would
				// reach no other node, yet be answered as done.
				writeError(w, http.StatusServiceUnavailable, "node", "draining: this node is shutting down and its changes would not reach the fleet; send them to another node")
				return
			}
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			mux.ServeHTTP(&jsonFallback{ResponseWriter: w}, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this host by a loopback
// address or "localhost", with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// jsonFallback turns the mux's plain-text 404 and 405 into the endpoint's
// JSON errors; headers set before (Allow) are kept.
type jsonFallback struct {
	http.ResponseWriter
	wrote bool
}

func (j *jsonFallback) WriteHeader(code int) {
	h := j.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	j.ResponseWriter.WriteHeader(code)
	msg := "no such route"
	if code == http.StatusMethodNotAllowed {
		msg = "method not allowed; allowed: " + h.Get("Allow")
	}
	body, _ := json.Marshal(apiError{Error: msg})
	j.ResponseWriter.Write(append(body, '\n'))
	j.wrote = true
}

func (j *jsonFallback) Write(b []byte) (int, error) {
	if !j.wrote {
		j.WriteHeader(http.StatusOK)
	}
	return len(b), nil // the mux's own text is dropped
}

// realm names the endpoint in authentication challenges.
const realm = `realm="socialroute admin"`

// authorized checks r's credentials and, if they do not pass, answers 401
// itself. A bearer token is good for every method; HTTP Basic (the token
// as password, any user name) only for reading, since a browser replays
// Basic credentials on its own.
func (a *Admin) authorized(w http.ResponseWriter, r *http.Request) bool {
	if a.noToken {
		return true
	}
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	var given string
	basic := false
	switch strings.ToLower(scheme) {
	case "bearer":
		given = strings.TrimSpace(cred)
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err == nil {
			_, given, _ = strings.Cut(string(raw), ":")
		}
		basic = true
	}
	sum := sha256.Sum256([]byte(given))
	if given != "" && subtle.ConstantTimeCompare(sum[:], a.token.Load()[:]) == 1 {
		if basic && r.Method != http.MethodGet && r.Method != http.MethodHead {
			a.refused.WithLabelValues("basic_write").Inc()
			w.Header().Add("WWW-Authenticate", "Bearer "+realm)
			writeError(w, http.StatusUnauthorized, "authorization", "changes need \"Authorization: Bearer <token>\"; Basic credentials are for reading")
			return false
		}
		return true
	}
	w.Header().Add("WWW-Authenticate", "Bearer "+realm)
	w.Header().Add("WWW-Authenticate", "Basic "+realm+`, charset="UTF-8"`)
	msg, reason := "a token is required: \"Authorization: Bearer <token>\"", "missing"
	if given != "" || r.Header.Get("Authorization") != "" { // sent something, just not the token
		msg, reason = "the token is not valid", "wrong"
		if ok, held := a.wrongToken.due(); ok {
			a.log.Warn("admin: request with a wrong token (logged once in 10s; socialroute_admin_unauthorized_total counts all)",
				"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "wrong_since_last_line", held)
		}
	}
	a.refused.WithLabelValues(reason).Inc()
	writeError(w, http.StatusUnauthorized, "authorization", msg)
	return false
}

// apiError is the body of every error the endpoint answers: the message
// starts with the field at fault, which Field names on its own.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// writeError answers code with {"error": "field: msg", "field": field}.
func writeError(w http.ResponseWriter, code int, field, msg string) {
	e := apiError{Error: msg, Field: field}
	if field != "" {
		e.Error = field + ": " + msg
	}
	writeJSON(w, code, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}

// textWriter is a view that can print itself for a person.
type textWriter interface{ WriteText(io.Writer) error }

// reply answers 200 with v as JSON, or, when the client asks for text
// (format=text, or an Accept header preferring text/plain or text/html, as
// a browser's does), as v's text form.
func reply(w http.ResponseWriter, r *http.Request, v any) {
	if t, ok := v.(textWriter); ok && wantsText(r) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		t.WriteText(w) //nolint:errcheck // the client went away
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// wantsText reports whether r asks for the human-readable form: format=text,
// or (without format) an Accept header whose first choice is text/plain or
// text/html.
func wantsText(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "text":
		return true
	case "json":
		return false
	}
	first, _, _ := strings.Cut(r.Header.Get("Accept"), ",")
	first, _, _ = strings.Cut(first, ";")
	switch strings.TrimSpace(strings.ToLower(first)) {
	case "text/plain", "text/html":
		return true
	}
	return false
}

func (a *Admin) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": a.s.cur.Load().cfg.Node.Name})
}

func (a *Admin) readyz(w http.ResponseWriter, r *http.Request) {
	ok, why := a.Ready()
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, struct {
		Ready    bool     `json:"ready"`
		NotReady []string `json:"not_ready,omitempty"`
	}{ok, why})
}

// gossipCollector reports the gossip view when Prometheus scrapes.
type gossipCollector struct {
	c ClusterView
	s *Server
}

var (
	descMembers = prometheus.NewDesc("socialroute_gossip_members",
		"Proxy nodes this node's gossip lists (alive or suspect), itself included, by their own state.", []string{"node_state"}, nil)
	descUp = prometheus.NewDesc("socialroute_datacenter_up",
		"1 if gossip finds the datacenter up.", []string{"datacenter", "continent"}, nil)
	descNodes = prometheus.NewDesc("socialroute_datacenter_nodes",
		"Proxy nodes of the datacenter gossip knows alive.", []string{"datacenter"}, nil)
	descOffered = prometheus.NewDesc("socialroute_datacenter_offered_rps",
		"Request rate the whole fleet offers the datacenter, as gossiped.", []string{"datacenter"}, nil)
	descAdmit = prometheus.NewDesc("socialroute_datacenter_admit_ratio",
		"Share of offered requests the datacenter is sent (below 1 when over its headroom).", []string{"datacenter"}, nil)
)

func (g *gossipCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMembers
	ch <- descUp
	ch <- descNodes
	ch <- descOffered
	ch <- descAdmit
}

func (g *gossipCollector) Collect(ch chan<- prometheus.Metric) {
	// Every state is reported, at 0 too: a series that vanishes cannot
	// fire an alert on "no member is draining any more" or be summed.
	byState := map[string]int{
		health.Serving.String(): 0, health.Draining.String(): 0, health.NodeUnreadable: 0,
	}
	for _, m := range g.c.Members() {
		byState[m.NodeState]++
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), state)
	}
	for _, d := range g.c.Status() {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, bool01(d.Up), d.Name, d.Continent)
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(d.Nodes), d.Name)
		ch <- prometheus.MustNewConstMetric(descOffered, prometheus.GaugeValue, d.Offered, d.Name)
		ch <- prometheus.MustNewConstMetric(descAdmit, prometheus.GaugeValue, d.Admit, d.Name)
	}
}
