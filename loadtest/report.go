package loadtest

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// DemoReport is what RunDemo measured. Shares and ratios are fractions in
// [0, 1]; durations are in nanoseconds in JSON, latencies in milliseconds.
type DemoReport struct {
	Rate           float64          `json:"offered_rate"`
	Workers        int              `json:"workers"`
	Users          int              `json:"users"`
	Edges          int              `json:"edges"`
	Phase          time.Duration    `json:"phase_ns"`
	BreakerOpenFor time.Duration    `json:"breaker_open_for_ns"`
	CacheSize      map[string]int   `json:"cache_size"`
	Nodes          []DemoNode       `json:"nodes"`
	Datacenters    []DemoDatacenter `json:"datacenters"`
	// Phases are steady, <failed datacenter> down, recovered, in order.
	Phases   []DemoPhase  `json:"phases"`
	Failover DemoFailover `json:"failover"`
	// NotSent counts requests due but never sent: the generator fell
	// behind (a busy machine).
	NotSent  uint64   `json:"not_sent"`
	Timeline []Window `json:"timeline"`
	Events   []Event  `json:"events"`
}

// DemoNode is one proxy node of the demo's fleet.
type DemoNode struct {
	Name       string `json:"name"`
	Datacenter string `json:"datacenter"`
	Addr       string `json:"addr"`
	// Clients says whether clients send to it (not to the one that dies).
	Clients bool `json:"clients"`
}

// DemoDatacenter is one datacenter of the demo's topology.
type DemoDatacenter struct {
	Name      string  `json:"name"`
	Continent string  `json:"continent"`
	Capacity  float64 `json:"capacity"`
	// CapacityShare is Capacity over its continent's total: the share of
	// the continent's buckets, and so of its requests, it should get.
	CapacityShare float64 `json:"capacity_share"`
}

// DemoPhase is the outcome of one phase's requests, each counted in the
// phase during which its answer came.
type DemoPhase struct {
	Name              string        `json:"name"`
	Duration          time.Duration `json:"duration_ns"`
	Requests          uint64        `json:"requests"`
	RequestsPerSecond float64       `json:"requests_per_second"`
	// Errors = TransportErrors + BadStatus + Mismatches: requests that
	// failed from the client's point of view (all of them GETs, so
	// idempotent: the proxy may retry them elsewhere).
	Errors          uint64            `json:"errors"`
	TransportErrors uint64            `json:"transport_errors"` // no answer (connection error, timeout)
	BadStatus       uint64            `json:"bad_status"`       // answered, not 200
	Mismatches      uint64            `json:"mismatches"`       // X-Socialroute-Dc differs from the web tier's X-Served-By
	ErrorsByKind    map[string]uint64 `json:"errors_by_kind"`
	// Locality is the fraction of good answers served by a datacenter of
	// the user's bucket's home continent.
	Locality float64 `json:"locality"`
	// Served counts good answers per datacenter.
	Served map[string]uint64 `json:"served"`
	// Share is each datacenter's part of its continent's good answers.
	Share map[string]float64 `json:"share"`
	// Evenness is, per continent, max/mean requests per unit of capacity.
	Evenness map[string]float64 `json:"evenness"`
	// ProxyRetries is how much the client-facing proxies' retry count
	// rose in the phase.
	ProxyRetries uint64 `json:"proxy_retries"`
	// Latency is from each request's scheduled send time to its answer.
	Latency Latency `json:"latency_ms"`
	// CacheHitRatio is the share of the web tier's reads of users' data
	// that hit its caches.
	CacheHitRatio float64 `json:"cache_hit_ratio"`
}

// DemoFailover tells how the fleet handled the crash of one datacenter and
// its proxy node. Times are measured from the crash or from the recovery;
// -1 means the event was not seen.
type DemoFailover struct {
	Datacenter string `json:"datacenter"`
	Node       string `json:"node"`
	// FailedRequests are the down phase's client errors.
	FailedRequests uint64 `json:"failed_requests"`
	// Retries is how much the client-facing proxies' retry count rose in
	// the down phase: requests resent to another datacenter after an
	// attempt on the failed one failed.
	Retries uint64 `json:"retries"`
	// RerouteTime is when the retry count last rose in the down phase,
	// seen by polling every 10ms.
	RerouteTime time.Duration `json:"reroute_time_ns"`
	// BreakersOpenedAfter is when the first breaker of one of the failed
	// datacenter's upstreams opened, on any node.
	BreakersOpenedAfter time.Duration `json:"breakers_opened_after_ns"`
	// RoutedAroundAfter is when us-east's proxy first chose another
	// datacenter for a bucket whose first choice is the failed one
	// without trying it (its breakers were open, or gossip said it was
	// down).
	RoutedAroundAfter time.Duration `json:"routed_around_after_ns"`
	// GossipDownAfter is, per client-facing node, when gossip declared the
	// failed datacenter down there.
	GossipDownAfter map[string]time.Duration `json:"gossip_down_after_ns"`
	// LastServedAfter is when the failed datacenter gave its last answer
	// in the down phase.
	LastServedAfter time.Duration `json:"last_served_after_ns"`
	// RestartTime is from the web tier's recovery to the restarted proxy
	// node's start (it waits for its crashed predecessor to shut down).
	RestartTime time.Duration `json:"restart_time_ns"`
	// GossipUpAfter is, per client-facing node, when gossip declared the
	// datacenter up again, from its recovery.
	GossipUpAfter map[string]time.Duration `json:"gossip_up_after_ns"`
	// RecoveryTime is from the recovery to the datacenter's first answer.
	RecoveryTime time.Duration `json:"recovery_time_ns"`
	// SteadyShare and DownShare are the failed datacenter's part of its
	// continent's answers in the steady and down phases.
	SteadyShare float64 `json:"steady_share"`
	DownShare   float64 `json:"down_share"`
	// Shift says where the failed datacenter's requests went.
	Shift []DemoShift `json:"shift"`
}

// DemoShift is how much of the failed datacenter's lost share one other
// datacenter of its continent took, against what its capacity predicts.
type DemoShift struct {
	Datacenter string `json:"datacenter"`
	// Expected is its capacity over its continent's capacity without the
	// failed datacenter.
	Expected float64 `json:"expected"`
	// Received is its share gain (down minus steady) over the failed
	// datacenter's share loss.
	Received float64 `json:"received"`
}

func newDemoPhase(name string, m Measured, retries uint64) DemoPhase {
	p := DemoPhase{
		Name:              name,
		Duration:          time.Duration(m.Seconds * float64(time.Second)),
		Requests:          m.Requests,
		RequestsPerSecond: ratio(float64(m.Requests), m.Seconds),
		Errors:            m.Errors,
		ErrorsByKind:      m.ErrorsByKind,
		Locality:          max(m.Locality, 0),
		Served:            map[string]uint64{},
		Share:             map[string]float64{},
		Evenness:          map[string]float64{},
		ProxyRetries:      retries,
		Latency:           m.Latency,
		CacheHitRatio:     m.Cache.HitRatio,
	}
	for k, n := range m.ErrorsByKind {
		switch k {
		case errMismatch.String():
			p.Mismatches += n
		case errTimeout.String(), errRefused.String(), errConnection.String(), errTransport.String():
			p.TransportErrors += n
		default:
			p.BadStatus += n
		}
	}
	for _, d := range m.Datacenters {
		p.Served[d.Name] = d.Served
		p.Share[d.Name] = d.ContinentShare
	}
	for _, c := range m.Continents {
		p.Evenness[c.Name] = c.Evenness
	}
	return p
}

// finish fills in the capacity shares.
func (r *DemoReport) finish() {
	capacity := map[string]float64{}
	for _, d := range r.Datacenters {
		capacity[d.Continent] += d.Capacity
	}
	for i := range r.Datacenters {
		d := &r.Datacenters[i]
		d.CapacityShare = ratio(d.Capacity, capacity[d.Continent])
	}
}

// shift computes where the failed datacenter's share went in the down
// phase.
func (f *DemoFailover) shift(r *DemoReport, failed int) {
	fd := r.Datacenters[failed]
	steady, down := r.Phases[phaseSteady], r.Phases[phaseDown]
	f.SteadyShare, f.DownShare = steady.Share[fd.Name], down.Share[fd.Name]
	rest := 0.0
	for _, d := range r.Datacenters {
		if d.Continent == fd.Continent && d.Name != fd.Name {
			rest += d.Capacity
		}
	}
	lost := f.SteadyShare - f.DownShare
	for _, d := range r.Datacenters {
		if d.Continent != fd.Continent || d.Name == fd.Name {
			continue
		}
		f.Shift = append(f.Shift, DemoShift{
			Datacenter: d.Name,
			Expected:   ratio(d.Capacity, rest),
			Received:   ratio(down.Share[d.Name]-steady.Share[d.Name], lost),
		})
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// WriteText prints the report as tables for a terminal.
func (r *DemoReport) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nWhere requests went: each datacenter's share of its continent's requests")
	fmt.Fprint(tw, "datacenter\tcontinent\tcapacity")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "\t%s", p.Name)
	}
	fmt.Fprintln(tw)
	for _, d := range r.Datacenters {
		fmt.Fprintf(tw, "%s\t%s\t%g (%s)", d.Name, d.Continent, d.Capacity, pct(d.CapacityShare))
		for _, p := range r.Phases {
			fmt.Fprintf(tw, "\t%s", pct(p.Share[d.Name]))
		}
		fmt.Fprintln(tw)
	}

	fmt.Fprintln(tw, "\nphase\ttime\trequests\treq/s\terrors\tlocality\tp50 ms\tp99 ms\tmax ms\tcache hits\tproxy retries")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%s\t%.1fs\t%d\t%.0f\t%d\t%s\t%.2f\t%.2f\t%.1f\t%s\t%d\n", p.Name, p.Duration.Seconds(), p.Requests,
			p.RequestsPerSecond, p.Errors, pct(p.Locality), p.Latency.P50, p.Latency.P99, p.Latency.Max, pctOr(p.CacheHitRatio), p.ProxyRetries)
	}
	fmt.Fprintln(tw, "(locality: answered by a datacenter of the user's home continent; latency from the scheduled send time;")
	fmt.Fprintln(tw, " cache hits: reads of users' data the web tier found in its datacenter's cache)")
	for _, p := range r.Phases {
		if len(p.ErrorsByKind) == 0 {
			continue
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(p.ErrorsByKind)) {
			parts = append(parts, fmt.Sprintf("%d %s", p.ErrorsByKind[k], k))
		}
		fmt.Fprintf(tw, "errors in %s: %s\n", p.Name, strings.Join(parts, "; "))
	}
	if r.NotSent > 0 {
		fmt.Fprintf(tw, "%d requests were due but not sent: the machine could not keep the rate\n", r.NotSent)
	}

	f := &r.Failover
	if len(r.Phases) <= phaseDown || f.Datacenter == "" {
		return tw.Flush()
	}
	continent := ""
	for _, d := range r.Datacenters {
		if d.Name == f.Datacenter {
			continent = d.Continent
		}
	}
	fmt.Fprintf(tw, "\nWith %s down, its share of %s requests (%s when up, %s down) went to:\n",
		f.Datacenter, strings.ToUpper(continent), pct(f.SteadyShare), pct(f.DownShare))
	fmt.Fprintf(tw, "datacenter\tits capacity share without %s\tpart of %s's share it took\n", f.Datacenter, f.Datacenter)
	for _, s := range f.Shift {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Datacenter, pct(s.Expected), pct(s.Received))
	}
	fmt.Fprintln(tw, "(capacity-weighted rendezvous hashing spreads a lost datacenter's buckets in proportion to capacity)")

	fmt.Fprintf(tw, "\nFailover of %s (its web servers and its proxy node %s crashed)\n", f.Datacenter, f.Node)
	fmt.Fprintf(tw, "  failed client requests\t%d of %d while it was down\n", f.FailedRequests, r.Phases[phaseDown].Requests)
	if f.BreakersOpenedAfter >= 0 {
		fmt.Fprintf(tw, "  first breaker opened\t%s after the crash\n", dur(f.BreakersOpenedAfter))
	}
	if f.RoutedAroundAfter >= 0 {
		fmt.Fprintf(tw, "  routed around it\t%s after the crash: its buckets go straight to their next datacenter\n", dur(f.RoutedAroundAfter))
	} else {
		fmt.Fprintf(tw, "  routed around it\tnot seen\n")
	}
	fmt.Fprintf(tw, "  gossip declared it down\t%s\n", nodeTimes(f.GossipDownAfter, "after the crash: all its proxy nodes dead"))
	fmt.Fprintf(tw, "  proxy retries\t%d", f.Retries)
	if f.RerouteTime >= 0 {
		fmt.Fprintf(tw, ", the last %s after the crash", dur(f.RerouteTime))
	}
	fmt.Fprintf(tw, "\n  \t(requests resent to the next datacenter after an attempt on %s failed: until its\n", f.Datacenter)
	fmt.Fprintln(tw, "  \tbreakers opened, then whenever a breaker let a probe through, until gossip declared it down)")
	if f.LastServedAfter >= 0 {
		fmt.Fprintf(tw, "  its last answer\t%s after the crash\n", dur(f.LastServedAfter))
	} else {
		fmt.Fprintf(tw, "  its last answer\tbefore the crash\n")
	}
	fmt.Fprintf(tw, "  proxy node restarted\t%s after its web servers came back\n", dur(f.RestartTime))
	fmt.Fprintf(tw, "  gossip declared it up\t%s\n", nodeTimes(f.GossipUpAfter, "after it came back"))
	if f.RecoveryTime >= 0 {
		fmt.Fprintf(tw, "  served again\t%s after it came back\n", dur(f.RecoveryTime))
	} else {
		fmt.Fprintf(tw, "  served again\tnot within the phase\n")
	}
	return tw.Flush()
}

// nodeTimes prints per-node times: "1.8s (edge-us-east), 1.9s (edge-eu-west) after ...".
func nodeTimes(m map[string]time.Duration, after string) string {
	if len(m) == 0 {
		return "not seen"
	}
	names := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return cmp.Compare(m[a], m[b]) })
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s (%s)", dur(m[n]), n))
	}
	return strings.Join(parts, ", ") + " " + after
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
