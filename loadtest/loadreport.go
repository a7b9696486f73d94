package loadtest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Measured is what one period of load (a run, or a phase of the demo)
// came to. Shares and ratios are fractions in [0, 1], latencies are in
// milliseconds; a ratio that could not be measured (nothing to measure it
// on) is -1.
type Measured struct {
	// Seconds is the period's length.
	Seconds float64 `json:"seconds"`
	// Requests were answered or failed in the period; OK of them were good
	// answers (200 from the right datacenter).
	Requests uint64 `json:"requests"`
	OK       uint64 `json:"ok"`
	// Throughput is good answers per second.
	Throughput float64 `json:"throughput_rps"`
	// Errors = Requests - OK, by kind in ErrorsByKind.
	Errors       uint64            `json:"errors"`
	ErrorsByKind map[string]uint64 `json:"errors_by_kind"`
	// ByKind counts requests per kind (feed, profile, hot).
	ByKind map[string]uint64 `json:"by_kind"`
	// Latency is measured from each request's scheduled send time (open
	// loop) or send time (closed loop) to its answer, errors included.
	Latency Latency `json:"latency_ms"`
	// GeneratorLateP99 is, in open loop, the 99th percentile of how late
	// the generator sent requests; when it is large the generator, not the
	// system, was behind.
	GeneratorLateP99 float64 `json:"generator_late_p99_ms"`
	// Locality is the share of good answers served by a datacenter of the
	// home continent of the request's bucket (the user's home continent).
	Locality float64 `json:"locality"`
	// OriginLocality is the share of good answers served on the continent
	// the request came from.
	OriginLocality float64 `json:"origin_locality"`
	// Unattributed good answers had no usable routing headers: they count
	// nowhere below.
	Unattributed uint64             `json:"unattributed"`
	Datacenters  []DatacenterLoad   `json:"datacenters"`
	Continents   []ContinentLoad    `json:"continents"`
	Cache        CacheStats         `json:"cache"`
	firstDC      map[string]float64 // unix seconds of each datacenter's first and last good answer
	lastDC       map[string]float64
}

// Latency is a latency distribution summary, in milliseconds (an HDR
// histogram with 3 significant digits underneath).
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

// DatacenterLoad is one datacenter's part of the good answers.
type DatacenterLoad struct {
	Name      string  `json:"name"`
	Continent string  `json:"continent"`
	Capacity  float64 `json:"capacity"`
	// CapacityShare is its capacity over its continent's: the share of
	// the continent's requests it should get.
	CapacityShare float64 `json:"capacity_share"`
	Served        uint64  `json:"served"`
	// Share is its part of all good answers, ContinentShare of its
	// continent's.
	Share          float64 `json:"share"`
	ContinentShare float64 `json:"continent_share"`
	// CacheHits and CacheMisses are the reads of users' data its web tier
	// reported for these requests.
	CacheHits   uint64  `json:"cache_hits"`
	CacheMisses uint64  `json:"cache_misses"`
	HitRatio    float64 `json:"cache_hit_ratio"`
}

// ContinentLoad is one continent's part of the good answers.
type ContinentLoad struct {
	Name   string  `json:"name"`
	Served uint64  `json:"served"`
	Share  float64 `json:"share"`
	// Evenness is max/mean, over the continent's datacenters, of
	// requests per unit of capacity: 1 is a spread exactly in proportion
	// to capacity; 1.3 means the busiest datacenter took 30% more than
	// its fair share. 0 when the continent served nothing.
	Evenness float64 `json:"evenness"`
}

// CacheStats add up the web tier's cache reads.
type CacheStats struct {
	Hits     uint64  `json:"hits"`
	Misses   uint64  `json:"misses"`
	HitRatio float64 `json:"hit_ratio"`
	MissRate float64 `json:"miss_rate"`
}

// Window is one slice of a run's timeline.
type Window struct {
	Start   float64 `json:"start_s"` // from the start of the run
	Seconds float64 `json:"seconds"`
	OK      uint64  `json:"ok"`
	Errors  uint64  `json:"errors"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

// Event is something that happened during a run, for reports and plots.
type Event struct {
	At   float64 `json:"at_s"` // from the start of the run
	What string  `json:"what"`
}

// ratioOr is a/b, or -1 when b is 0.
func ratioOr(a, b float64) float64 {
	if b == 0 {
		return -1
	}
	return a / b
}

func latencyOf(p *phaseStats) Latency {
	h := p.hist
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: uint64(h.TotalCount()),
		Mean:  h.Mean() / 1000,
		P50:   usToMS(h.ValueAtQuantile(50)),
		P90:   usToMS(h.ValueAtQuantile(90)),
		P99:   usToMS(h.ValueAtQuantile(99)),
		P999:  usToMS(h.ValueAtQuantile(99.9)),
		Max:   usToMS(h.Max()),
	}
}

// measure turns a phase's totals over d into figures.
func measure(p *phaseStats, place *placement, d time.Duration) Measured {
	m := Measured{
		Seconds:      d.Seconds(),
		Requests:     p.requests,
		OK:           p.errs[errNone],
		Errors:       p.errors(),
		ErrorsByKind: map[string]uint64{},
		ByKind:       map[string]uint64{},
		Latency:      latencyOf(p),
		Unattributed: p.unattributed,
		firstDC:      map[string]float64{},
		lastDC:       map[string]float64{},
	}
	if s := d.Seconds(); s > 0 {
		m.Throughput = float64(m.OK) / s
	}
	if p.late.TotalCount() > 0 {
		m.GeneratorLateP99 = usToMS(p.late.ValueAtQuantile(99))
	}
	for k := errNone + 1; k < numErrKinds; k++ {
		if p.errs[k] > 0 {
			m.ErrorsByKind[k.String()] = p.errs[k]
		}
	}
	for k := range numKinds {
		if p.byKind[k] > 0 {
			m.ByKind[k.String()] = p.byKind[k]
		}
	}
	m.Locality = ratioOr(float64(p.home), float64(p.homeJudged))
	m.OriginLocality = ratioOr(float64(p.origin), float64(p.originJudged))

	nc := len(place.continents)
	served := make([]uint64, nc)
	capacity := make([]float64, nc)
	var total uint64
	for d, c := range place.dcContinent {
		served[c] += p.byDC[d]
		capacity[c] += place.capacity[d]
		total += p.byDC[d]
	}
	for d, name := range place.names {
		c := place.dcContinent[d]
		l := DatacenterLoad{
			Name:           name,
			Continent:      place.continents[c],
			Capacity:       place.capacity[d],
			CapacityShare:  ratio(place.capacity[d], capacity[c]),
			Served:         p.byDC[d],
			Share:          ratio(float64(p.byDC[d]), float64(total)),
			ContinentShare: ratio(float64(p.byDC[d]), float64(served[c])),
			CacheHits:      p.hitsDC[d],
			CacheMisses:    p.missesDC[d],
			HitRatio:       ratioOr(float64(p.hitsDC[d]), float64(p.hitsDC[d]+p.missesDC[d])),
		}
		m.Datacenters = append(m.Datacenters, l)
		m.Cache.Hits += p.hitsDC[d]
		m.Cache.Misses += p.missesDC[d]
		if p.firstDC[d] != 0 {
			m.firstDC[name] = float64(p.firstDC[d]) / 1e9
			m.lastDC[name] = float64(p.lastDC[d]) / 1e9
		}
	}
	reads := float64(m.Cache.Hits + m.Cache.Misses)
	m.Cache.HitRatio = ratioOr(float64(m.Cache.Hits), reads)
	m.Cache.MissRate = ratioOr(float64(m.Cache.Misses), reads)
	for c, name := range place.continents {
		cl := ContinentLoad{Name: name, Served: served[c], Share: ratio(float64(served[c]), float64(total))}
		var loads []float64
		for d := range place.names {
			if place.dcContinent[d] == c && place.capacity[d] > 0 {
				loads = append(loads, float64(p.byDC[d])/place.capacity[d])
			}
		}
		if len(loads) > 0 && served[c] > 0 {
			sum := 0.0
			for _, l := range loads {
				sum += l
			}
			cl.Evenness = slices.Max(loads) / (sum / float64(len(loads)))
		}
		m.Continents = append(m.Continents, cl)
	}
	return m
}

// Report is what a load run (Run) measured, after its warm-up.
type Report struct {
	// Mode is "open-loop" or "closed-loop".
	Mode    string   `json:"mode"`
	Targets []Target `json:"targets"`
	// Rate is the open-loop arrival rate, requests per second.
	Rate float64 `json:"offered_rate,omitempty"`
	// Workers is the closed-loop worker count, or the open loop's cap on
	// requests in flight.
	Workers int          `json:"workers"`
	Warmup  float64      `json:"warmup_s"`
	Load    WorkloadInfo `json:"workload"`
	Measured
	// NotSent counts open-loop requests that were due but never sent: the
	// generator had every worker waiting for an answer. Latency percentiles
	// do not include them; more than a few means the system (or the
	// generator) could not keep the rate.
	NotSent  uint64   `json:"not_sent"`
	Timeline []Window `json:"timeline"`
	Events   []Event  `json:"events"`
}

// WorkloadInfo describes the workload of a run.
type WorkloadInfo struct {
	Graph       string   `json:"graph"` // where the graph came from
	Users       int      `json:"users"`
	Edges       int      `json:"edges"`
	Seed        uint64   `json:"seed"`
	Mix         Mix      `json:"mix"`
	HotAccounts int      `json:"hot_accounts"`
	HotTop      []uint64 `json:"hot_top,omitempty"` // the few most followed accounts
	Origins     []Origin `json:"origins"`
	// CacheSize is each datacenter's web-tier cache, in users, when the
	// run started the web tier itself.
	CacheSize map[string]int `json:"cache_size,omitempty"`
}

func describeWorkload(w *Workload, graph string, seed uint64) WorkloadInfo {
	g := w.Graph()
	ids, _ := w.HotAccounts()
	info := WorkloadInfo{
		Graph: graph, Users: g.Users(), Edges: g.Edges(), Seed: seed,
		Mix: w.Mix(), HotAccounts: len(ids), Origins: w.Origins(),
	}
	info.HotTop = ids[:min(3, len(ids))]
	return info
}

// pctOr formats a ratio as a percentage, or "n/a" for -1.
func pctOr(f float64) string {
	if f < 0 {
		return "n/a"
	}
	return pct(f)
}

// thousands formats n with thin separators: 1,234,567.
func thousands(n uint64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (w WorkloadInfo) describe() string {
	t := w.Mix.Feed + w.Mix.Profile + w.Mix.Hot
	var origins []string
	for _, o := range w.Origins {
		name := o.Continent
		if name == "" {
			name = "anywhere"
		}
		origins = append(origins, fmt.Sprintf("%s %.0f%%", name, 100*o.Share))
	}
	return fmt.Sprintf("%s users, %s follows (%s)\n"+
		"            requests: %.0f%% feeds (/users/U/feed, keyed by the viewer), %.0f%% profiles of followed accounts\n"+
		"            (/accounts/A/profile, keyed by the account), %.0f%% of the %d most followed accounts; from %s",
		thousands(uint64(w.Users)), thousands(uint64(w.Edges)), w.Graph,
		100*w.Mix.Feed/t, 100*w.Mix.Profile/t, 100*w.Mix.Hot/t, w.HotAccounts, strings.Join(origins, ", "))
}

// WriteText prints the report as tables for people.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch r.Mode {
	case string(OpenLoop):
		fmt.Fprintf(tw, "open loop at %.0f req/s, at most %d in flight, %.1fs measured after a %.1fs warm-up\n", r.Rate, r.Workers, r.Seconds, r.Warmup)
	default:
		fmt.Fprintf(tw, "closed loop, %d workers, %.1fs measured after a %.1fs warm-up\n", r.Workers, r.Seconds, r.Warmup)
	}
	fmt.Fprintf(tw, "workload    %s\n", r.Load.describe())
	var ts []string
	for _, t := range r.Targets {
		if t.Continent != "" {
			ts = append(ts, t.Continent+" -> "+t.Addr)
		} else {
			ts = append(ts, t.Addr)
		}
	}
	fmt.Fprintf(tw, "targets     %s\n\n", strings.Join(ts, ", "))
	r.Measured.writeText(tw, r.Mode == string(OpenLoop))
	if r.NotSent > 0 {
		fmt.Fprintf(tw, "\nNOT SENT    %s requests were due but never sent: every worker was waiting for an answer.\n", thousands(r.NotSent))
		fmt.Fprintf(tw, "            The system did not keep up with %.0f req/s (or raise --workers); latency above leaves them out.\n", r.Rate)
	}
	return tw.Flush()
}

// writeText prints the measured figures: throughput, latency, errors,
// locality, cache, and where requests went.
func (m *Measured) writeText(tw *tabwriter.Writer, openLoop bool) {
	fmt.Fprintf(tw, "requests    %s in %.1fs: %s good answers, %.0f/s; %s errors\n",
		thousands(m.Requests), m.Seconds, thousands(m.OK), m.Throughput, thousands(m.Errors))
	from := "send"
	if openLoop {
		from = "scheduled send"
	}
	l := m.Latency
	fmt.Fprintf(tw, "latency     mean %.2f  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms (from the %s time, HDR histogram)\n",
		l.Mean, l.P50, l.P90, l.P99, l.P999, l.Max, from)
	if openLoop && m.GeneratorLateP99 > 1 {
		fmt.Fprintf(tw, "            the generator sent 1%% of requests %.1f ms or more after their time (a busy machine)\n", m.GeneratorLateP99)
	}
	if len(m.ErrorsByKind) > 0 {
		kinds := slices.Sorted(maps.Keys(m.ErrorsByKind))
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s %s", thousands(m.ErrorsByKind[k]), k))
		}
		fmt.Fprintf(tw, "errors      %s\n", strings.Join(parts, "; "))
	}
	fmt.Fprintf(tw, "locality    %s served on the user's home continent; %s on the continent the request came from\n",
		pctOr(m.Locality), pctOr(m.OriginLocality))
	if m.Cache.Hits+m.Cache.Misses > 0 {
		fmt.Fprintf(tw, "cache       %s of the web tier's reads of users' data hit its cache (%s reads, %s misses)\n",
			pct(m.Cache.HitRatio), thousands(m.Cache.Hits+m.Cache.Misses), thousands(m.Cache.Misses))
	} else {
		fmt.Fprintln(tw, "cache       n/a (the web tier reported no cache reads)")
	}
	if m.Unattributed > 0 {
		fmt.Fprintf(tw, "            %s good answers carried no routing headers and are not counted below\n", thousands(m.Unattributed))
	}
	fmt.Fprintln(tw, "\ndatacenter\tcontinent\tcapacity\tanswers\tshare of continent\tcache hit ratio")
	for _, d := range m.Datacenters {
		fmt.Fprintf(tw, "%s\t%s\t%g (%s)\t%s\t%s\t%s\n", d.Name, d.Continent, d.Capacity, pct(d.CapacityShare),
			thousands(d.Served), pct(d.ContinentShare), pctOr(d.HitRatio))
	}
	fmt.Fprintln(tw, "\ncontinent\tanswers\tshare\tevenness (max/mean load per unit of capacity; 1 is perfect)")
	for _, c := range m.Continents {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\n", c.Name, thousands(c.Served), pct(c.Share), c.Evenness)
	}
}
