package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/health"
)

const testToken = "s3cret-admin-token-0123456789"

// adminFixture is a harness proxy with its admin endpoint.
type adminFixture struct {
	*harness
	admin *Admin
	logs  *syncBuffer
}

func newAdminFixture(t *testing.T, mutate func(*configs.Config), o AdminOptions) *adminFixture {
	t.Helper()
	h := newHarness(t, mutate)
	f := &adminFixture{harness: h, logs: &syncBuffer{}}
	if !o.NoToken && o.Token == nil {
		o.Token = []byte(testToken)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(f.logs, nil))
	}
	a, err := NewAdmin(h.srv, o)
	if err != nil {
		t.Fatal(err)
	}
	f.admin = a
	waitUntil(t, "the proxy serving", h.srv.Serving)
	return f
}

// call sends one request to the admin endpoint with the token (auth ""),
// another Authorization value, or none ("-").
func (f *adminFixture) call(method, target, body, auth string) *httptest.ResponseRecorder {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rd)
	switch auth {
	case "":
		r.Header.Set("Authorization", "Bearer "+testToken)
	case "-":
	default:
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	f.admin.ServeHTTP(w, r)
	return w
}

// get calls with the token and decodes a 200 JSON answer into v.
func (f *adminFixture) get(target string, v any) {
	f.t.Helper()
	w := f.call("GET", target, "", "")
	if w.Code != 200 {
		f.t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		f.t.Fatalf("GET %s: %v in %s", target, err, w.Body)
	}
}

// evaluate runs the placement advisor through the admin endpoint and
// decodes its answer into v.
func (f *adminFixture) evaluate(v *placementView) {
	f.t.Helper()
	w := f.call("POST", "/admin/placement/evaluate", "", "")
	if w.Code != 200 {
		f.t.Fatalf("POST /admin/placement/evaluate: %d %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		f.t.Fatalf("POST /admin/placement/evaluate: %v in %s", err, w.Body)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// adminRoutes is every route with a request that succeeds given the token.
var adminRoutes = []struct{ method, target, body string }{
	{"GET", "/metrics", ""},
	{"GET", "/admin/route?user=42", ""},
	{"GET", "/admin/buckets", ""},
	{"GET", "/admin/buckets/7", ""},
	{"POST", "/admin/buckets/7/pin", `{"datacenter": "us-c"}`},
	{"DELETE", "/admin/buckets/7/pin", ""},
	{"GET", "/admin/datacenters", ""},
	{"GET", "/admin/datacenters/eu-a", ""},
	{"POST", "/admin/datacenters/eu-b/drain", ""},
	{"POST", "/admin/datacenters/eu-b/undrain", ""},
	{"GET", "/admin/members", ""},
	{"GET", "/admin/hot", ""},
	{"POST", "/admin/reload", ""},
	{"GET", "/debug/pprof/", ""},
	{"GET", "/debug/pprof/cmdline", ""},
	{"GET", "/debug/pprof/symbol", ""},
	{"GET", "/debug/pprof/goroutine?debug=1", ""},
	{"GET", "/status", ""},
}

// Every route but /healthz and /readyz answers 401 without the token, with
// a wrong one, or with the token in the wrong place, and nothing changes.
func TestAdminRoutesNeedTheToken(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{Reload: func() error { return nil }})
	version := f.srv.Placement().Load().Version()
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, rt := range append(adminRoutes, struct{ method, target, body string }{"GET", "/no/such/route", ""}) {
		for _, auth := range []struct{ name, header string }{
			{"none", "-"},
			{"wrong token", "Bearer not-the-token-0123456789"},
			{"token with a suffix", "Bearer " + testToken + "x"},
			{"token prefix", "Bearer " + testToken[:len(testToken)-1]},
			{"empty bearer", "Bearer "},
			{"token as a scheme", testToken},
			{"wrong basic password", basic("admin", "nope")},
			{"token as basic user name", basic(testToken, "")},
		} {
			w := f.call(rt.method, rt.target, rt.body, auth.header)
			if w.Code != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: %d, want 401", rt.method, rt.target, auth.name, w.Code)
				continue
			}
			if ch := w.Header().Values("WWW-Authenticate"); len(ch) != 2 || !strings.HasPrefix(ch[0], "Bearer ") || !strings.HasPrefix(ch[1], "Basic ") {
				t.Errorf("%s %s: challenges %q", rt.method, rt.target, ch)
			}
			var e apiError
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Field != "authorization" {
				t.Errorf("%s %s: body %s", rt.method, rt.target, w.Body)
			}
		}
	}
	if v := f.srv.Placement().Load().Version(); v != version {
		t.Fatalf("unauthorized requests changed the map: version %d -> %d", version, v)
	}
	if strings.Contains(f.logs.String(), testToken) {
		t.Fatal("the token is in the logs")
	}
	// Every refusal counts; the wrong tokens make one log line, not one
	// each: someone guessing must not flood the log.
	routes := len(adminRoutes) + 1
	metrics := f.call("GET", "/metrics", "", "").Body.String()
	for reason, n := range map[string]int{"missing": routes, "wrong": 7 * routes, "basic_write": 0} {
		if line := fmt.Sprintf("socialroute_admin_unauthorized_total{reason=%q} %d\n", reason, n); !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	if n := strings.Count(f.logs.String(), "wrong token"); n != 1 {
		t.Errorf("%d log lines for %d wrong tokens, want 1", n, 7*routes)
	}

	// Basic credentials (the status page in a browser) read, never change.
	if w := f.call("GET", "/admin/datacenters", "", basic("anyone", testToken)); w.Code != 200 {
		t.Fatalf("GET with the token as Basic password: %d %s", w.Code, w.Body)
	}
	if w := f.call("POST", "/admin/datacenters/eu-b/drain", "", basic("anyone", testToken)); w.Code != 401 || !strings.Contains(w.Body.String(), "Bearer") {
		t.Fatalf("POST with Basic credentials: %d %s, want 401 asking for a bearer token", w.Code, w.Body)
	}
	if !strings.Contains(f.call("GET", "/metrics", "", "").Body.String(), `socialroute_admin_unauthorized_total{reason="basic_write"} 1`) {
		t.Error("the POST with Basic credentials is not counted as basic_write")
	}
	// Health needs nothing.
	for _, p := range []string{"/healthz", "/readyz"} {
		if w := f.call("GET", p, "", "-"); w.Code != 200 {
			t.Errorf("GET %s without a token: %d %s", p, w.Code, w.Body)
		}
	}
}

// With the token, every route answers.
func TestAdminRoutesAnswerWithTheToken(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{Reload: func() error { return nil }})
	for _, rt := range adminRoutes {
		w := f.call(rt.method, rt.target, rt.body, "")
		if w.Code != 200 {
			t.Errorf("%s %s: %d %s", rt.method, rt.target, w.Code, w.Body)
			continue
		}
		ct := w.Header().Get("Content-Type")
		switch {
		case rt.target == "/status":
			if !strings.HasPrefix(ct, "text/html") || !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'none'") {
				t.Errorf("/status: Content-Type %q, CSP %q", ct, w.Header().Get("Content-Security-Policy"))
			}
		case strings.HasPrefix(rt.target, "/admin/"):
			if ct != "application/json" || !json.Valid(w.Body.Bytes()) {
				t.Errorf("%s %s: Content-Type %q, body %s", rt.method, rt.target, ct, w.Body)
			}
		}
	}
	if w := f.call("GET", "/", "", ""); w.Code != http.StatusFound || w.Header().Get("Location") != "/status" {
		t.Errorf("GET /: %d to %q, want a redirect to /status", w.Code, w.Header().Get("Location"))
	}
	// The insecure mode needs no token at all, for requests addressed to
	// loopback. A page of another site that reached loopback by DNS
	// rebinding names its own site as Host (and, same-origin to the
	// browser, passes the cross-origin check): 403.
	open := newAdminFixture(t, nil, AdminOptions{NoToken: true})
	for _, host := range []string{"127.0.0.1:9901", "localhost:9901", "[::1]:9901", "LOCALHOST"} {
		r := httptest.NewRequest("GET", "/admin/buckets", nil)
		r.Host = host
		w := httptest.NewRecorder()
		open.admin.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("NoToken, Host %s: %d %s", host, w.Code, w.Body)
		}
	}
	for _, host := range []string{"example.com", "evil.example:9901", "127.0.0.1.evil.example"} {
		r := httptest.NewRequest("POST", "/admin/datacenters/eu-b/drain", nil)
		r.Host = host
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		w := httptest.NewRecorder()
		open.admin.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden || open.srv.Placement().Load().Drained(4) {
			t.Fatalf("NoToken, Host %s: %d %s; want 403 and nothing drained", host, w.Code, w.Body)
		}
	}
}

// The mux's own redirects are behind the token like every route.
func TestAdminRedirectsNeedTheToken(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{})
	for _, p := range []string{"/debug/pprof", "//metrics", "/admin/../metrics"} {
		if w := f.call("GET", p, "", "-"); w.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d (Location %q), want 401", p, w.Code, w.Header().Get("Location"))
		}
	}
}

// Once the node drains, it leaves the fleet: a change made on it would
// reach no other node. Changes get 503; reading still works.
func TestAdminRefusesChangesWhileDraining(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{Reload: func() error { return nil }})
	f.admin.SetDraining(true)
	for _, rt := range []struct{ method, target, body string }{
		{"POST", "/admin/datacenters/eu-b/drain", ""},
		{"POST", "/admin/buckets/7/pin", `{"datacenter": "us-a"}`},
		{"POST", "/admin/reload", ""},
	} {
		if w := f.call(rt.method, rt.target, rt.body, ""); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "draining") {
			t.Errorf("%s %s while draining: %d %s, want 503", rt.method, rt.target, w.Code, w.Body)
		}
	}
	if v := f.srv.Placement().Load().Version(); v != 1 {
		t.Errorf("map version %d after refused changes, want 1", v)
	}
	if w := f.call("GET", "/admin/datacenters", "", ""); w.Code != 200 {
		t.Errorf("GET while draining: %d", w.Code)
	}
}

func TestNewAdminRefusesWeakSettings(t *testing.T) {
	srv := benchServer(t, nil)
	for _, tt := range []struct {
		name string
		o    AdminOptions
		want string
	}{
		{"no token", AdminOptions{}, "at least 16 characters, got 0"},
		{"short token", AdminOptions{Token: []byte("hunter2")}, "at least 16 characters, got 7"},
		{"token and NoToken", AdminOptions{Token: []byte(testToken), NoToken: true}, "a token and NoToken together"},
	} {
		_, err := NewAdmin(srv, tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
		if err != nil && len(tt.o.Token) > 0 && strings.Contains(err.Error(), string(tt.o.Token)) {
			t.Errorf("%s: the error shows the token", tt.name)
		}
	}
}

// Bad input: 400 (or 404 for a missing thing, 405 for a wrong method) with
// a JSON error that names the field.
func TestAdminBadInput(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{})
	version := f.srv.Placement().Load().Version()
	tests := []struct {
		method, target, body string
		code                 int
		field, msg           string
	}{
		{"GET", "/admin/route", "", 400, "user", "give user=U"},
		{"GET", "/admin/route?path=users/1", "", 400, "path", `must start with "/"`},
		{"GET", "/admin/route?user=a%00b", "", 400, "user", "without control characters"},
		{"GET", "/admin/route?user=1&path=/a%20b", "", 400, "path", "without spaces"},
		{"GET", "/admin/buckets/abc", "", 400, "id", `want a bucket number, got "abc"`},
		{"GET", "/admin/buckets/-1", "", 400, "id", "want a bucket number"},
		{"GET", "/admin/buckets/1024", "", 404, "id", "no bucket 1024: buckets are 0-1023"},
		{"POST", "/admin/buckets/1024/pin", `{"datacenter": "us-a"}`, 404, "id", "no bucket 1024"},
		{"POST", "/admin/buckets/5/pin", `{"datacenter": "mars"}`, 400, "datacenter", `unknown datacenter "mars" (known: us-a, us-b, us-c, eu-a, eu-b)`},
		{"POST", "/admin/buckets/5/pin", `{"datacenter": ""}`, 400, "datacenter", "is required"},
		{"POST", "/admin/buckets/5/pin", `{}`, 400, "datacenter", "is required"},
		{"POST", "/admin/buckets/5/pin", `{"datacenter": 7}`, 400, "datacenter", "want a JSON string, got number"},
		{"POST", "/admin/buckets/5/pin", `{"dc": "us-a"}`, 400, "dc", "unknown field"},
		{"POST", "/admin/buckets/5/pin", `us-a`, 400, "body", "not a JSON object"},
		{"POST", "/admin/buckets/5/pin", ``, 400, "body", "empty"},
		{"POST", "/admin/buckets/5/pin", `{"datacenter": "us-a"} {}`, 400, "body", "one JSON object"},
		{"POST", "/admin/buckets/5/pin", `{"datacenter": "` + strings.Repeat("x", maxAdminBody) + `"}`, 413, "body", "larger than"},
		{"DELETE", "/admin/buckets/x/pin", "", 400, "id", "want a bucket number"},
		{"POST", "/admin/datacenters/mars/drain", "", 404, "dc", `unknown datacenter "mars"`},
		{"POST", "/admin/datacenters/mars/undrain", "", 404, "dc", `unknown datacenter "mars"`},
		{"GET", "/admin/datacenters/mars", "", 404, "dc", `unknown datacenter "mars"`},
		{"POST", "/admin/reload", "", 501, "", "reload is not available"},
		{"GET", "/admin/nothing", "", 404, "", "no such route"},
	}
	for _, tt := range tests {
		w := f.call(tt.method, tt.target, tt.body, "")
		var e apiError
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Errorf("%s %s: body %q is not JSON", tt.method, tt.target, w.Body)
			continue
		}
		if w.Code != tt.code || e.Field != tt.field || !strings.Contains(e.Error, tt.msg) {
			t.Errorf("%s %s: %d %+v, want %d field %q message with %q", tt.method, tt.target, w.Code, e, tt.code, tt.field, tt.msg)
		}
		if tt.field != "" && !strings.HasPrefix(e.Error, tt.field+": ") {
			t.Errorf("%s %s: message %q does not start with the field", tt.method, tt.target, e.Error)
		}
	}
	for _, tt := range []struct{ method, target, allow string }{
		{"PUT", "/admin/buckets/5/pin", "DELETE, POST"},
		{"GET", "/admin/buckets/5/pin", "DELETE, POST"},
		{"GET", "/admin/reload", "POST"},
		{"DELETE", "/admin/datacenters", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		w := f.call(tt.method, tt.target, "", "")
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != tt.allow || !json.Valid(w.Body.Bytes()) {
			t.Errorf("%s %s: %d Allow %q body %s, want 405 Allow %q", tt.method, tt.target, w.Code, w.Header().Get("Allow"), w.Body, tt.allow)
		}
	}
	if v := f.srv.Placement().Load().Version(); v != version {
		t.Fatalf("bad requests changed the map: version %d -> %d", version, v)
	}
}

// A browser on another site cannot make the operator's browser change
// anything.
func TestAdminRefusesCrossOriginChanges(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{})
	r := httptest.NewRequest("POST", "/admin/datacenters/us-a/drain", nil)
	r.Header.Set("Authorization", "Bearer "+testToken)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	w := httptest.NewRecorder()
	f.admin.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || f.srv.Placement().Load().Drained(0) {
		t.Fatalf("cross-site drain: %d, drained %v", w.Code, f.srv.Placement().Load().Drained(0))
	}
}

// userOn finds a user whose bucket's plan starts with dc and is not pinned.
func (h *harness) userOn(dc string) (user int, bucket uint32) {
	h.t.Helper()
	snap := h.srv.Placement().Load()
	for id := range 10_000 {
		b := hashing.FallbackBucket(hashing.HashString(strconv.Itoa(id)), snap.Buckets())
		if _, pinned := snap.Pinned(b); !pinned && h.planNames(b)[0] == dc {
			return id, b
		}
	}
	h.t.Fatalf("no user whose bucket starts at %s", dc)
	return 0, 0
}

// A pin takes the bucket's next request to the pinned datacenter, raises
// the map version and tells the fleet; unpinning takes it back.
func TestAdminPinChangesRoutingImmediately(t *testing.T) {
	var mu sync.Mutex
	var told []*buckets.Snapshot
	f := newAdminFixture(t, nil, AdminOptions{})
	f.srv.notify = func(s *buckets.Snapshot) { mu.Lock(); told = append(told, s); mu.Unlock() }

	user, bucket := f.userOn("us-a")
	if dc := datacenterOf(f.getUser(user)); dc != "us-a" {
		t.Fatalf("user %d served by %s before the pin, want us-a", user, dc)
	}
	before := f.srv.Placement().Load().Version()
	target := "/admin/buckets/" + strconv.Itoa(int(bucket)) + "/pin"
	w := f.call("POST", target, `{"datacenter": "eu-b"}`, "")
	var res struct {
		Changed    bool       `json:"changed"`
		MapVersion uint64     `json:"map_version"`
		Bucket     BucketView `json:"bucket"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &res) != nil {
		t.Fatalf("pin: %d %s", w.Code, w.Body)
	}
	if !res.Changed || res.MapVersion != before+1 || res.Bucket.Pinned != "eu-b" || res.Bucket.Chosen != "eu-b" || !res.Bucket.Plan[0].Pinned {
		t.Fatalf("pin answered %+v (version before %d)", res, before)
	}
	if dc := datacenterOf(f.getUser(user)); dc != "eu-b" {
		t.Fatalf("user %d served by %s right after the pin, want eu-b", user, dc)
	}
	mu.Lock()
	if len(told) != 1 || told[0].Version() != before+1 || told[0].Overrides().Pins[bucket] != "eu-b" || told[0].Origin() != "test-node" {
		t.Fatalf("OnPlacementChange got %d snapshots; want the pinned version %d made by test-node", len(told), before+1)
	}
	mu.Unlock()

	// The same pin again changes nothing.
	w = f.call("POST", target, `{"datacenter": "eu-b"}`, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"changed": false`) || f.srv.Placement().Load().Version() != before+1 {
		t.Fatalf("repeated pin: %d %s, version %d", w.Code, w.Body, f.srv.Placement().Load().Version())
	}
	var b BucketView
	f.get("/admin/buckets/"+strconv.Itoa(int(bucket)), &b)
	if b.Pinned != "eu-b" || b.Chosen != "eu-b" || b.Home != "us" {
		t.Fatalf("GET bucket after the pin: %+v", b)
	}
	var summary BucketsView
	f.get("/admin/buckets", &summary)
	if summary.Pinned != 1 || summary.MapVersion != before+1 {
		t.Fatalf("bucket summary after the pin: %+v", summary)
	}

	// Unpin: back home at once; a second unpin changes nothing.
	if w := f.call("DELETE", target, "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"changed": true`) {
		t.Fatalf("unpin: %d %s", w.Code, w.Body)
	}
	if dc := datacenterOf(f.getUser(user)); dc != "us-a" {
		t.Fatalf("user %d served by %s after the unpin, want us-a", user, dc)
	}
	if w := f.call("DELETE", target, "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"changed": false`) || f.srv.Placement().Load().Version() != before+2 {
		t.Fatalf("second unpin: %d %s", w.Code, w.Body)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "admin: bucket pinned") || !strings.Contains(logs, "admin: bucket unpinned") {
		t.Fatalf("changes not logged:\n%s", logs)
	}
}

// A drain moves the datacenter's traffic to the next datacenter of each
// list at once (drain_ramp is 1ns in the harness), shows in the views, and
// an undrain brings it back.
func TestAdminDrainChangesRoutingImmediately(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{})
	user, bucket := f.userOn("us-b")
	next := f.planNames(bucket)[1]
	if dc := datacenterOf(f.getUser(user)); dc != "us-b" {
		t.Fatalf("user %d served by %s before the drain", user, dc)
	}
	var before DatacentersView
	f.get("/admin/datacenters", &before)

	w := f.call("POST", "/admin/datacenters/us-b/drain", "", "")
	var res struct {
		Changed    bool           `json:"changed"`
		MapVersion uint64         `json:"map_version"`
		DrainRamp  string         `json:"drain_ramp"`
		Datacenter DatacenterView `json:"datacenter"`
	}
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &res) != nil {
		t.Fatalf("drain: %d %s", w.Code, w.Body)
	}
	if !res.Changed || res.MapVersion != before.MapVersion+1 || !res.Datacenter.Drained || res.Datacenter.ServingBuckets != 0 || res.DrainRamp != "1ns" {
		t.Fatalf("drain answered %s", w.Body)
	}
	for range 5 {
		if dc := datacenterOf(f.getUser(user)); dc != next {
			t.Fatalf("user %d served by %s after us-b was drained, want the next on its list, %s", user, dc, next)
		}
	}

	var after DatacentersView
	f.get("/admin/datacenters", &after)
	served := 0
	for i, d := range after.Datacenters {
		served += d.ServingBuckets
		switch {
		case d.Name == "us-b":
			if d.State != "drained" || d.Usable || d.ServingBuckets != 0 || d.Buckets != before.Datacenters[i].Buckets {
				t.Errorf("us-b after the drain: %+v", d)
			}
		case d.Continent == "us":
			if d.ServingBuckets <= before.Datacenters[i].ServingBuckets {
				t.Errorf("%s took none of us-b's buckets: %d -> %d", d.Name, before.Datacenters[i].ServingBuckets, d.ServingBuckets)
			}
		default:
			if d.ServingBuckets != before.Datacenters[i].ServingBuckets {
				t.Errorf("%s (eu) changed: %d -> %d", d.Name, before.Datacenters[i].ServingBuckets, d.ServingBuckets)
			}
		}
	}
	if served != 1024 || after.UnservedBuckets != 0 {
		t.Errorf("%d buckets served, %d unserved after the drain; want all 1024 served", served, after.UnservedBuckets)
	}

	// Draining what is drained changes nothing; undrain brings it back.
	if w := f.call("POST", "/admin/datacenters/us-b/drain", "", ""); !strings.Contains(w.Body.String(), `"changed": false`) {
		t.Fatalf("second drain: %s", w.Body)
	}
	if w := f.call("POST", "/admin/datacenters/us-b/undrain", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"changed": true`) {
		t.Fatalf("undrain: %d %s", w.Code, w.Body)
	}
	if dc := datacenterOf(f.getUser(user)); dc != "us-b" {
		t.Fatalf("user %d served by %s after the undrain", user, dc)
	}
	if v := f.srv.Placement().Load().Version(); v != before.MapVersion+2 {
		t.Fatalf("map version %d after drain and undrain from %d", v, before.MapVersion)
	}
}

// Draining a continent's last datacenter is allowed, with a warning.
func TestAdminDrainWarnsWhenAContinentEmpties(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{})
	if w := f.call("POST", "/admin/datacenters/eu-a/drain", "", ""); strings.Contains(w.Body.String(), "warning") {
		t.Fatalf("first eu drain warned: %s", w.Body)
	}
	w := f.call("POST", "/admin/datacenters/eu-b/drain", "", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "no datacenter of continent eu is usable now") {
		t.Fatalf("last eu drain: %d %s", w.Code, w.Body)
	}
	var v DatacentersView
	f.get("/admin/datacenters", &v)
	if v.UnservedBuckets == 0 {
		t.Fatal("with eu drained no bucket is unserved")
	}
}

// GET /admin/route tells the decision the request path makes.
func TestAdminRouteExplainsTheRequestPath(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{})
	for _, tt := range []struct {
		query, key, rule string
	}{
		{"user=42", "42", "header X-User-ID"},
		{"user=42&path=/accounts/7/media", "7", "path /accounts/{key}"},
		{"path=/accounts/9", "9", "path /accounts/{key}"},
	} {
		var e Explanation
		f.get("/admin/route?"+tt.query, &e)
		want := hashing.FallbackBucket(hashing.HashString(tt.key), 1024)
		if e.Key != tt.key || e.Rule != tt.rule || e.Bucket != want || e.Source != "xxhash fallback" || e.Chosen == "" || len(e.Plan) == 0 {
			t.Errorf("%s: %+v", tt.query, e)
		}
		if e.Home == "" || !strings.HasPrefix(e.Chosen, e.Home+"-") {
			t.Errorf("%s: chose %s, home %s", tt.query, e.Chosen, e.Home)
		}
	}
	var e Explanation
	f.get("/admin/route?user=42", &e)
	if got := datacenterOf(f.getUser(42)); got != e.Chosen {
		t.Fatalf("the endpoint says %s, the proxy sent user 42 to %s", e.Chosen, got)
	}
	// A person gets the text form.
	for _, how := range []struct{ target, accept string }{{"/admin/route?user=42&format=text", ""}, {"/admin/route?user=42", "text/html,application/xhtml+xml"}} {
		r := httptest.NewRequest("GET", how.target, nil)
		r.Header.Set("Authorization", "Bearer "+testToken)
		r.Header.Set("Accept", how.accept)
		w := httptest.NewRecorder()
		f.admin.ServeHTTP(w, r)
		if !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") || !strings.Contains(w.Body.String(), e.Chosen+" ") || !strings.Contains(w.Body.String(), "<- chosen") {
			t.Errorf("%s (Accept %q): %s\n%s", how.target, how.accept, w.Header().Get("Content-Type"), w.Body)
		}
	}
	for _, target := range []string{"/admin/datacenters?format=text", "/admin/buckets?format=text", "/admin/buckets/3?format=text", "/admin/members?format=text"} {
		w := f.call("GET", target, "", "")
		if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") || json.Valid(w.Body.Bytes()) {
			t.Errorf("%s: %d %s\n%s", target, w.Code, w.Header().Get("Content-Type"), w.Body)
		}
	}
}

// fakeCluster is a gossip view set by the test.
type fakeCluster struct {
	mu      sync.Mutex
	members []health.Member
	status  []health.DCStatus
}

func (c *fakeCluster) Members() []health.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members)
}

func (c *fakeCluster) Status() []health.DCStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.status)
}

func newFakeCluster(cfg *configs.Config) *fakeCluster {
	c := &fakeCluster{members: []health.Member{{Name: "test-node", Pool: "lan", Datacenter: "us-a", Continent: "us", NodeState: "serving", MapVersion: 1}}}
	for _, d := range cfg.Datacenters {
		c.status = append(c.status, health.DCStatus{Name: d.Name, Continent: d.Continent, Up: true, Reason: "1 proxy node(s) alive, 2/2 upstreams healthy", Nodes: 1, Healthy: 2, Upstreams: 2, Offered: 10, Admit: 1})
	}
	return c
}

// Readiness: serving, not draining, and joined when there are seeds.
func TestAdminReadiness(t *testing.T) {
	withSeeds := func(c *configs.Config) {
		c.Gossip.LAN.Bind, c.Gossip.LAN.Join, c.Gossip.KeyFile = "127.0.0.1:0", []string{"127.0.0.1:7946"}, "key"
	}
	cluster := newFakeCluster(testConfig(t, nil))
	f := newAdminFixture(t, withSeeds, AdminOptions{Cluster: cluster})
	readyz := func() (int, string) {
		w := f.call("GET", "/readyz", "", "-")
		return w.Code, w.Body.String()
	}
	if code, body := readyz(); code != 503 || !strings.Contains(body, "gossip has not joined the fleet yet") {
		t.Fatalf("alone with seeds: %d %s", code, body)
	}
	cluster.mu.Lock()
	cluster.members = append(cluster.members, health.Member{Name: "other", Datacenter: "us-b", NodeState: "serving"})
	cluster.mu.Unlock()
	if code, body := readyz(); code != 200 || !strings.Contains(body, `"ready": true`) {
		t.Fatalf("joined: %d %s", code, body)
	}
	// Its peers gone (their upgrade, or a disaster), the node serves on
	// its breakers: it stays ready, or the balancer would have none.
	cluster.mu.Lock()
	cluster.members = cluster.members[:1]
	cluster.mu.Unlock()
	if code, body := readyz(); code != 200 {
		t.Fatalf("alone again after joining: %d %s, want still ready", code, body)
	}
	f.admin.SetDraining(true)
	if code, body := readyz(); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("draining: %d %s", code, body)
	}
	f.admin.SetDraining(false)
	if err := f.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(); code != 503 || !strings.Contains(body, "not serving") {
		t.Fatalf("after Shutdown: %d %s", code, body)
	}
	if w := f.call("GET", "/healthz", "", "-"); w.Code != 200 || !strings.Contains(w.Body.String(), `"status": "ok"`) {
		t.Fatalf("healthz: %d %s", w.Code, w.Body)
	}

	// Gossip without seeds (the fleet's first node) is ready alone; a
	// server that never served is not.
	alone := newAdminFixture(t, nil, AdminOptions{Cluster: newFakeCluster(testConfig(t, nil))})
	if ok, why := alone.admin.Ready(); !ok {
		t.Fatalf("first node not ready: %v", why)
	}
	idle, err := NewAdmin(benchServer(t, nil), AdminOptions{NoToken: true})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := idle.Ready(); ok {
		t.Fatal("ready before Serve")
	}
}

// With gossip, the views carry the fleet's word.
func TestAdminGossipViews(t *testing.T) {
	cluster := newFakeCluster(testConfig(t, nil))
	cluster.status[1].Up, cluster.status[1].Reason, cluster.status[1].Nodes = false, "all its proxy nodes are dead", 0
	cluster.members = append(cluster.members, health.Member{Name: "edge-eu", Address: "127.0.0.2:7946", Pool: "wan", Datacenter: "eu-a", Continent: "eu", NodeState: "draining", MapVersion: 1})
	f := newAdminFixture(t, nil, AdminOptions{Cluster: cluster})

	var m struct {
		Gossip  bool            `json:"gossip"`
		Node    string          `json:"node"`
		Members []health.Member `json:"members"`
	}
	f.get("/admin/members", &m)
	if !m.Gossip || m.Node != "test-node" || len(m.Members) != 2 || m.Members[1].NodeState != "draining" {
		t.Fatalf("members: %+v", m)
	}
	var v DatacentersView
	f.get("/admin/datacenters", &v)
	usb := v.Datacenters[1]
	if !v.Gossip || v.Members != 2 || usb.Name != "us-b" || usb.State != "down" || usb.Usable || !strings.Contains(usb.Reason, "all its proxy nodes are dead") ||
		usb.Gossip == nil || usb.ServingBuckets != 0 {
		t.Fatalf("us-b with gossip saying it is down: %+v", usb)
	}
	if d := v.Datacenters[0]; d.Gossip == nil || d.Gossip.Offered != 10 || !d.Local || d.State != "usable" {
		t.Fatalf("us-a: %+v", d)
	}
	metrics := f.call("GET", "/metrics", "", "").Body.String()
	for _, want := range []string{
		`socialroute_gossip_members{node_state="serving"} 1`,
		`socialroute_gossip_members{node_state="draining"} 1`,
		`socialroute_gossip_members{node_state="unreadable"} 0`,
		`socialroute_datacenter_up{continent="us",datacenter="us-b"} 0`,
		`socialroute_datacenter_up{continent="us",datacenter="us-a"} 1`,
		`socialroute_datacenter_offered_rps{datacenter="eu-a"} 10`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Without gossip: the configuration, drains and breakers only.
	off := newAdminFixture(t, nil, AdminOptions{})
	var m2 struct {
		Gossip  bool            `json:"gossip"`
		Members []health.Member `json:"members"`
	}
	off.get("/admin/members", &m2)
	if m2.Gossip || m2.Members == nil || len(m2.Members) != 0 {
		t.Fatalf("members without gossip: %+v", m2)
	}
	v = DatacentersView{}
	off.get("/admin/datacenters", &v)
	if v.Gossip || v.Datacenters[0].Gossip != nil || v.Datacenters[0].State != "usable" || len(v.Datacenters[0].Breakers) != 2 || v.Datacenters[0].Breakers[0].State != "closed" {
		t.Fatalf("datacenters without gossip: %+v", v.Datacenters[0])
	}
	if strings.Contains(off.call("GET", "/metrics", "", "").Body.String(), "socialroute_gossip_members") {
		t.Fatal("gossip metrics without gossip")
	}
}

func TestAdminHotAndReload(t *testing.T) {
	reloads := 0
	fail, stopping := false, false
	f := newAdminFixture(t, nil, AdminOptions{Reload: func() error {
		reloads++
		if stopping {
			return ErrShuttingDown
		}
		if fail {
			return errors.New("configs: proxy.yaml:3: buckets: must be between 1 and 65536")
		}
		return nil
	}})
	w := f.call("GET", "/admin/hot", "", "")
	if w.Code != 200 || strings.Join(strings.Fields(w.Body.String()), " ") != `{ "static": [], "detected": [] }` {
		t.Fatalf("hot: %d %s", w.Code, w.Body)
	}
	if w := f.call("POST", "/admin/reload", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"reloaded": true`) || reloads != 1 {
		t.Fatalf("reload: %d %s (%d reloads)", w.Code, w.Body, reloads)
	}
	fail = true
	w = f.call("POST", "/admin/reload", "", "")
	var e apiError
	if w.Code != http.StatusUnprocessableEntity || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Field != "config" || !strings.Contains(e.Error, "buckets: must be between") {
		t.Fatalf("failed reload: %d %s", w.Code, w.Body)
	}
	// SIGTERM came while the reload waited: the node's doing, not the
	// file's, so not a 422 a deploy script would roll back for.
	stopping = true
	if w := f.call("POST", "/admin/reload", "", ""); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "another node") {
		t.Fatalf("a reload refused because the node is stopping: %d %s, want 503", w.Code, w.Body)
	}
}

func TestAdminPprof(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{})
	for target, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/goroutine?debug=1": "goroutine profile: total",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/cmdline":           "",
	} {
		w := f.call("GET", target, "", "")
		if w.Code != 200 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d %.200s", target, w.Code, w.Body)
		}
	}
}
