package proxy

import (
	"bufio"
	"strconv"
	"strings"
	"testing"

	"github.com/socialroute/socialroute/health"
	"github.com/valyala/fasthttp"
)

// scrape reads /metrics into series -> value ("name{a="x",b="y"}" as
// Prometheus prints it, labels sorted).
func (f *adminFixture) scrape() map[string]float64 {
	f.t.Helper()
	w := f.call("GET", "/metrics", "", "")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		f.t.Fatalf("/metrics: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(w.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			f.t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// gathered reads metric name from s's registry: value by its first label's
// value ("" for a series without labels).
func gathered(t *testing.T, s *Server, name string) map[string]float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			k := ""
			if l := m.GetLabel(); len(l) > 0 {
				k = l[0].GetValue()
			}
			out[k] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

func requestsSeries(dc, continent, status string) string {
	return metricRequests + `{continent="` + continent + `",datacenter="` + dc + `",spread="false",status="` + status + `"}`
}

// The request path's counters: by datacenter, continent and status class;
// latency per datacenter; the locality ratio; and what the proxy answered
// itself under datacenter "none".
func TestMetricsCountTheRequestPath(t *testing.T) {
	f := newAdminFixture(t, nil, AdminOptions{})
	served := map[string]int{}
	for id := range 200 {
		served[datacenterOf(f.getUser(id))]++
	}
	// Every series exists from the start, counted or not.
	m := f.scrape()
	for _, d := range f.cfg.Datacenters {
		for _, class := range statusClasses {
			name := requestsSeries(d.Name, d.Continent, class)
			want := 0.0
			if class == "2xx" {
				want = float64(served[d.Name])
			}
			if got, ok := m[name]; !ok || got != want {
				t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
			}
		}
		if got := m[metricLatency+`_count{datacenter="`+d.Name+`"}`]; got != float64(served[d.Name]) {
			t.Errorf("latency count of %s = %v, want %d", d.Name, got, served[d.Name])
		}
		if m[metricLatency+`_sum{datacenter="`+d.Name+`"}`] <= 0 && served[d.Name] > 0 {
			t.Errorf("latency of %s sums to nothing", d.Name)
		}
	}
	keyed, home := 0.0, 0.0
	for _, d := range f.cfg.Datacenters {
		k, h := m[metricKeyed+`{datacenter="`+d.Name+`"}`], m[metricHome+`{datacenter="`+d.Name+`"}`]
		if k != float64(served[d.Name]) || h != k {
			t.Errorf("%s: keyed %v, home %v; want %d of each", d.Name, k, h, served[d.Name])
		}
		keyed, home = keyed+k, home+h
	}
	if keyed != 200 || home != 200 || m[metricLocality] != 1 {
		t.Errorf("keyed %v, home %v, locality %v; want 200, 200, 1", keyed, home, m[metricLocality])
	}
	if v := m["socialroute_map_version"]; v != float64(f.srv.Placement().Load().Version()) {
		t.Errorf("map version %v", v)
	}
	for _, name := range []string{
		`socialroute_breaker_state{datacenter="us-a",upstream="us-a-1.test:80"}`,
		`socialroute_datacenter_usable{continent="eu",datacenter="eu-b"}`,
		`socialroute_datacenter_drain_weight{datacenter="eu-b"}`,
		"socialroute_ready", "socialroute_retries_total", "go_goroutines",
	} {
		if _, ok := m[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// A user pinned to the other continent is served away from home.
	user, bucket := f.userOn("us-a")
	if w := f.call("POST", "/admin/buckets/"+strconv.Itoa(int(bucket))+"/pin", `{"datacenter": "eu-a"}`, ""); w.Code != 200 {
		t.Fatalf("pin: %d %s", w.Code, w.Body)
	}
	before := f.scrape()
	for range 4 {
		f.getUser(user)
	}
	// A malformed key is refused before routing; a drained datacenter reads
	// so; a continent with every datacenter down answers 503.
	f.do("GET", "/feed", func(r *fasthttp.Request) { r.Header.Set("X-User-ID", "bad key") })
	f.call("POST", "/admin/datacenters/eu-b/drain", "", "")
	status := f.srv.status.(*health.Static)
	for i := range 3 {
		status.SetDown(i, true) // us-a, us-b, us-c
	}
	usUser, _ := f.userOn("us-b")
	if code := f.getUser(usUser).StatusCode(); code != 503 {
		t.Fatalf("with the US down: %d", code)
	}
	m = f.scrape()
	for name, want := range map[string]float64{
		requestsSeries("eu-a", "eu", "2xx"):                               before[requestsSeries("eu-a", "eu", "2xx")] + 4,
		metricKeyed + `{datacenter="eu-a"}`:                               before[metricKeyed+`{datacenter="eu-a"}`] + 4,
		metricHome + `{datacenter="eu-a"}`:                                before[metricHome+`{datacenter="eu-a"}`],
		metricLocality:                                                    home / (keyed + 4),
		requestsSeries("none", "none", "4xx"):                             1,
		requestsSeries("none", "none", "5xx"):                             1,
		`socialroute_rejected_total{code="400"}`:                          1,
		`socialroute_rejected_total{code="431"}`:                          0,
		`socialroute_proxy_errors_total{code="503"}`:                      1,
		`socialroute_proxy_errors_total{code="502"}`:                      0,
		`socialroute_datacenter_usable{continent="eu",datacenter="eu-b"}`: 0,
		`socialroute_datacenter_drained{datacenter="eu-b"}`:               1,
		`socialroute_datacenter_usable{continent="us",datacenter="us-a"}`: 0,
		`socialroute_datacenter_usable{continent="eu",datacenter="eu-a"}`: 1,
		"socialroute_map_version":                                         float64(f.srv.Placement().Load().Version()),
	} {
		if got := m[name]; got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestStatusClass(t *testing.T) {
	for code, want := range map[int]string{0: "1xx", 100: "1xx", 200: "2xx", 204: "2xx", 302: "3xx", 404: "4xx", 431: "4xx", 503: "5xx", 599: "5xx", 999: "5xx"} {
		if got := statusClasses[statusClass(code)]; got != want {
			t.Errorf("statusClass(%d) = %s, want %s", code, got, want)
		}
	}
}

// BenchmarkMetricsObserve is what the metrics add to each request: three
// counters, one histogram observation and a clock read. In parallel, every
// goroutine counts the same datacenter: the worst case for contention.
func BenchmarkMetricsObserve(b *testing.B) {
	s, ctx := handleFixture(b)
	serveAgain(s, ctx)
	st := s.cur.Load()
	var d Decision
	st.router.Route([]byte("42"), &d)
	dc := d.DC()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			st.metrics.observe(ctx, dc, true, &d)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				st.metrics.observe(ctx, dc, true, &d)
			}
		})
	})
}
