package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// testPlacement: continents a and b; datacenters a1 (100) and a2 (50) on
// a, b1 (100) on b; buckets 0-1 live on a, 2-9 on b.
func testPlacement() *placement {
	return &placement{
		names:       []string{"a1", "a2", "b1"},
		dcIndex:     map[string]int{"a1": 0, "a2": 1, "b1": 2},
		dcContinent: []int{0, 0, 1},
		capacity:    []float64{100, 50, 100},
		continents:  []string{"a", "b"},
		home: func(b uint32) (int, bool) {
			if b >= 10 {
				return 0, false
			}
			if b < 2 {
				return 0, true
			}
			return 1, true
		},
	}
}

func TestJudgeClassifiesAnswers(t *testing.T) {
	p := testPlacement()
	answer := func(code int, headers ...string) *fasthttp.Response {
		var r fasthttp.Response
		r.SetStatusCode(code)
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		return &r
	}
	for _, c := range []struct {
		name string
		resp *fasthttp.Response
		err  error
		want outcome
	}{
		{"served at home", answer(200, headerDC, "a2", HeaderServedBy, "a2", headerBucket, "1", HeaderCacheHits, "5", HeaderCacheMisses, "2"),
			nil, outcome{err: errNone, dc: 1, home: 0, hits: 5, misses: 2}},
		{"no web-tier header", answer(200, headerDC, "b1", headerBucket, "7"), nil, outcome{err: errNone, dc: 2, home: 1}},
		{"no routing headers", answer(200), nil, outcome{err: errNone, dc: -1, home: -1}},
		{"unknown bucket", answer(200, headerDC, "b1", headerBucket, "70"), nil, outcome{err: errNone, dc: 2, home: -1}},
		{"headers disagree", answer(200, headerDC, "a1", HeaderServedBy, "b1"), nil, outcome{err: errMismatch, dc: -1, home: -1}},
		{"503", answer(503), nil, outcome{err: errStatus503, dc: -1, home: -1}},
		{"502", answer(502), nil, outcome{err: errStatus502, dc: -1, home: -1}},
		{"500", answer(500), nil, outcome{err: errStatus5xx, dc: -1, home: -1}},
		{"404", answer(404), nil, outcome{err: errStatus4xx, dc: -1, home: -1}},
		{"timeout", answer(200), fasthttp.ErrTimeout, outcome{err: errTimeout, dc: -1, home: -1}},
		{"refused", answer(200), &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, outcome{err: errRefused, dc: -1, home: -1}},
		{"reset", answer(200), fmt.Errorf("read: %w", syscall.ECONNRESET), outcome{err: errConnection, dc: -1, home: -1}},
		{"closed", answer(200), io.EOF, outcome{err: errConnection, dc: -1, home: -1}},
		{"other", answer(200), errors.New("tls: bad"), outcome{err: errTransport, dc: -1, home: -1}},
	} {
		var o outcome
		p.judge(c.resp, c.err, &o)
		if o != c.want {
			t.Errorf("%s: judged %+v, want %+v", c.name, o, c.want)
		}
	}
}

// A recorder fed known outcomes: the report's figures are what they must
// be, and its text, JSON and plot say so.
func TestReportFigures(t *testing.T) {
	p := testPlacement()
	start := time.Unix(1000, 0)
	rec := newRecorder(start, 100*time.Millisecond, p.dcContinent, len(p.continents))
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	// Warm-up: timeline only.
	rec.record(0, -1, &outcome{latency: time.Second, dc: 0, home: 0, origin: 0}, at(10))
	// 1000 good answers with latencies 1..1000 µs: a1 400 (home a), a2 200
	// (home a), b1 400 (home b, but 100 of them for buckets of a:
	// failover). Origins: a1 and a2's from a, b1's from b.
	for i := range 1000 {
		o := outcome{latency: time.Duration(i+1) * time.Microsecond, kind: RequestKind(i % 3), hits: 3, misses: 1}
		switch {
		case i < 400:
			o.dc, o.home, o.origin = 0, 0, 0
		case i < 600:
			o.dc, o.home, o.origin = 1, 0, 0
		case i < 700:
			o.dc, o.home, o.origin = 2, 0, 1
		default:
			o.dc, o.home, o.origin = 2, 1, 1
		}
		rec.record(i, 0, &o, at(100+i))
	}
	for i, k := range []errKind{errTimeout, errStatus503, errStatus503, errMismatch} {
		rec.record(i, 0, &outcome{err: k, latency: 50 * time.Millisecond, dc: -1, home: -1}, at(1200))
	}
	rec.record(0, 0, &outcome{latency: time.Millisecond, dc: -1, home: -1, origin: 0}, at(1200)) // unattributed

	m := measure(rec.merged(0), p, 2*time.Second)
	if m.Requests != 1005 || m.OK != 1001 || m.Errors != 4 {
		t.Fatalf("requests %d ok %d errors %d, want 1005 1001 4", m.Requests, m.OK, m.Errors)
	}
	if m.ErrorsByKind["503 service unavailable"] != 2 || m.ErrorsByKind["timeout"] != 1 || len(m.ErrorsByKind) != 3 {
		t.Errorf("errors by kind %v", m.ErrorsByKind)
	}
	within(t, "throughput", m.Throughput, 1001.0/2, 1e-9)
	within(t, "locality", m.Locality, 0.9, 1e-9) // 100 of 1000 judged answers left their home continent
	within(t, "origin locality", m.OriginLocality, 1, 1e-9)
	if m.Unattributed != 1 {
		t.Errorf("unattributed %d, want 1", m.Unattributed)
	}
	// HDR percentiles of 1..1000 µs (plus the slower errors): within 0.1%.
	within(t, "p50", m.Latency.P50, 0.503, 0.002)
	within(t, "p90", m.Latency.P90, 0.905, 0.002)
	if m.Latency.Max < 50 || m.Latency.Max > 50.1 {
		t.Errorf("max %v ms, want 50 (the errors)", m.Latency.Max)
	}
	want := map[string]struct {
		served              uint64
		share, contShare, h float64
	}{"a1": {400, 0.4, 400.0 / 600, 0.75}, "a2": {200, 0.2, 200.0 / 600, 0.75}, "b1": {400, 0.4, 1, 0.75}}
	for _, d := range m.Datacenters {
		w := want[d.Name]
		if d.Served != w.served || d.CacheHits != 3*w.served || d.CacheMisses != w.served {
			t.Errorf("%s: served %d hits %d misses %d", d.Name, d.Served, d.CacheHits, d.CacheMisses)
		}
		within(t, d.Name+" share", d.Share, w.share, 1e-9)
		within(t, d.Name+" continent share", d.ContinentShare, w.contShare, 1e-9)
		within(t, d.Name+" hit ratio", d.HitRatio, w.h, 1e-9)
	}
	within(t, "cache hit ratio", m.Cache.HitRatio, 0.75, 1e-9)
	within(t, "cache miss rate", m.Cache.MissRate, 0.25, 1e-9)
	// Evenness on a: a1 takes 400/100 = 4 per unit of capacity, a2 200/50
	// = 4: perfectly even. On b, one datacenter: 1.
	for _, c := range m.Continents {
		within(t, "evenness of "+c.Name, c.Evenness, 1, 1e-9)
	}
	if m.ByKind["feed"] != 339 || m.ByKind["profile"] != 333 || m.ByKind["hot"] != 333 {
		t.Errorf("by kind %v, want feed 334 + the 5 odd ones, profile 333, hot 333", m.ByKind)
	}

	tl := rec.timeline(at(1250))
	if len(tl) != 13 {
		t.Fatalf("timeline has %d windows to 1.25s in windows of 100ms, want 13 (the last half)", len(tl))
	}
	if tl[0].OK != 1 || tl[1].OK != 100 || tl[12].Errors != 4 || tl[12].Seconds != 0.05 {
		t.Errorf("timeline windows 0 %+v, 1 %+v, 12 %+v", tl[0], tl[1], tl[12])
	}

	rep := &Report{Mode: string(OpenLoop), Rate: 500, Workers: 8, Measured: m, Timeline: tl,
		Targets: []Target{{Continent: "a", Addr: "127.0.0.1:1"}}, Events: []Event{{At: 0.1, What: "warm-up over"}},
		Load: WorkloadInfo{Graph: "test", Users: 10, Edges: 20, Mix: DefaultMix, HotAccounts: 3, Origins: []Origin{{"a", 1}}}}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"open loop at 500 req/s", "1,005 in 2.0s", "p50 0.50", "2 503 service unavailable",
		"90.0% served on the user's home continent", "75.0% of the web tier's reads", "a2  ", "evenness"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Requests != 1005 || back.Latency.P50 != m.Latency.P50 ||
		back.Cache.HitRatio != 0.75 || len(back.Timeline) != 13 || back.Datacenters[1].Name != "a2" {
		t.Errorf("JSON round trip: %v %+v", err, back.Measured)
	}
	var page bytes.Buffer
	if err := rep.WritePlot(&page); err != nil {
		t.Fatal(err)
	}
	checkPlot(t, page.String(), 2)
}

// checkPlot checks a plot page: self-contained HTML (nothing fetched,
// no script) with charts SVGs, each with lines.
func checkPlot(t *testing.T, page string, charts int) {
	t.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.HasSuffix(strings.TrimSpace(page), "</html>") {
		t.Errorf("plot is not an HTML page")
	}
	if n := strings.Count(page, "<svg "); n != charts {
		t.Errorf("plot has %d charts, want %d", n, charts)
	}
	if strings.Count(page, "<path d=\"M") < charts {
		t.Errorf("plot charts have no lines")
	}
	for _, banned := range []string{"<script", "src=", "href=", "@import", "url("} {
		if strings.Contains(page, banned) {
			t.Errorf("plot is not self-contained: it has %q", banned)
		}
	}
	if strings.Count(page, "http") != strings.Count(page, "http://www.w3.org/2000/svg") {
		t.Errorf("plot refers to an address other than the SVG namespace")
	}
}

func TestWindowFor(t *testing.T) {
	for _, c := range []struct{ run, want time.Duration }{
		{5 * time.Second, 100 * time.Millisecond}, {12 * time.Second, 100 * time.Millisecond},
		{30 * time.Second, 250 * time.Millisecond}, {time.Minute, 500 * time.Millisecond},
		{10 * time.Minute, 5 * time.Second}, {time.Hour, 10 * time.Second},
	} {
		if got := windowFor(c.run); got != c.want {
			t.Errorf("windowFor(%v) = %v, want %v", c.run, got, c.want)
		}
	}
}

func TestAutoBuckets(t *testing.T) {
	for _, c := range []struct{ users, want int }{{50000, 256}, {20000, 128}, {1000, 16}, {2_000_000, 4096}, {40000, 256}, {35000, 128}} {
		if got := AutoBuckets(c.users); got != c.want {
			t.Errorf("AutoBuckets(%d) = %d, want %d", c.users, got, c.want)
		}
	}
}
