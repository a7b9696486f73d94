package loadtest

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socialroute/socialroute/buckets"
)

// DemoReport is what RunDemo measured. Shares and ratios are fractions in
// [0, 1]; durations are in nanoseconds in JSON.
type DemoReport struct {
	Workers        int              `json:"workers"`
	Users          int              `json:"users"`
	Phase          time.Duration    `json:"phase_ns"`
	BreakerOpenFor time.Duration    `json:"breaker_open_for_ns"`
	Datacenters    []DemoDatacenter `json:"datacenters"`
	// Phases are steady, <failed datacenter> down, recovered, in order.
	Phases   []DemoPhase  `json:"phases"`
	Failover DemoFailover `json:"failover"`
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
	// failed from the client's point of view.
	Errors          uint64 `json:"errors"`
	TransportErrors uint64 `json:"transport_errors"` // no answer (connection error, timeout)
	BadStatus       uint64 `json:"bad_status"`       // answered, not 200
	// Mismatches are 200 answers whose X-Socialroute-Dc is missing or
	// differs from the web server's X-Served-By, or without a valid bucket.
	Mismatches uint64 `json:"mismatches"`
	// Locality is the fraction of good answers served by a datacenter of
	// the user's bucket's home continent.
	Locality float64 `json:"locality"`
	// Served counts good answers per datacenter.
	Served map[string]uint64 `json:"served"`
	// Share is each datacenter's part of its continent's good answers.
	Share map[string]float64 `json:"share"`
	// ProxyRetries is how much the proxy's retry count rose in the phase.
	ProxyRetries uint64 `json:"proxy_retries"`
}

// DemoFailover tells how the proxy handled the crash of one datacenter.
// Times are measured from the crash (Fail) or from the recovery (Recover);
// -1 means the event was not seen.
type DemoFailover struct {
	Datacenter string `json:"datacenter"`
	// FailedRequests are the down phase's client errors.
	FailedRequests uint64 `json:"failed_requests"`
	// Retries is how much the proxy's retry count (proxy.Stats.Retries)
	// rose in the down phase: requests resent to another datacenter after
	// an attempt on the failed one failed, until its breakers opened and
	// then whenever a breaker let a probe through.
	Retries uint64 `json:"retries"`
	// RerouteTime is when the proxy's retry count last rose in the down
	// phase, seen by polling every 10ms. Breaker probes, which fail while
	// the datacenter is down, can put it at a multiple of the breaker's
	// open period; RoutedAroundAfter tells when rerouting began.
	RerouteTime time.Duration `json:"reroute_time_ns"`
	// RoutedAroundAfter is when the proxy first chose another datacenter
	// for a bucket whose first choice is the failed one without trying it:
	// the failed datacenter's breakers were open.
	RoutedAroundAfter time.Duration `json:"routed_around_after_ns"`
	// LastServedAfter is when the failed datacenter gave its last answer in
	// the down phase.
	LastServedAfter time.Duration `json:"last_served_after_ns"`
	// RecoveryTime is from Recover to the datacenter's first answer.
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

func newDemoPhase(name string, d time.Duration, t phaseTotals, dcs []buckets.Datacenter, retries uint64) DemoPhase {
	p := DemoPhase{
		Name:            name,
		Duration:        d,
		Requests:        t.requests,
		Errors:          t.errors(),
		TransportErrors: t.transport,
		BadStatus:       t.badStatus,
		Mismatches:      t.mismatched,
		Served:          map[string]uint64{},
		Share:           map[string]float64{},
		ProxyRetries:    retries,
	}
	if s := d.Seconds(); s > 0 {
		p.RequestsPerSecond = float64(t.requests) / s
	}
	p.Locality = ratio(float64(t.local), float64(t.requests-p.Errors))
	perContinent := map[string]uint64{}
	for i, dc := range dcs {
		p.Served[dc.Name] = t.byDC[i]
		perContinent[dc.Continent] += t.byDC[i]
	}
	for i, dc := range dcs {
		p.Share[dc.Name] = ratio(float64(t.byDC[i]), float64(perContinent[dc.Continent]))
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

	fmt.Fprintln(tw, "\nphase\ttime\trequests\treq/s\terrors\tlocality\tproxy retries")
	for _, p := range r.Phases {
		fmt.Fprintf(tw, "%s\t%.1fs\t%d\t%.0f\t%d\t%s\t%d\n", p.Name, p.Duration.Seconds(), p.Requests,
			p.RequestsPerSecond, p.Errors, pct(p.Locality), p.ProxyRetries)
	}
	fmt.Fprintln(tw, "(locality: answered by a datacenter of the user's home continent)")

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

	fmt.Fprintf(tw, "\nFailover of %s\n", f.Datacenter)
	fmt.Fprintf(tw, "  failed client requests\t%d of %d while it was down\n", f.FailedRequests, r.Phases[phaseDown].Requests)
	if f.RoutedAroundAfter >= 0 {
		fmt.Fprintf(tw, "  routed around it\t%s after the crash: its breakers opened, so its buckets go straight to their next datacenter\n", ms(f.RoutedAroundAfter))
	} else {
		fmt.Fprintf(tw, "  routed around it\tnot seen\n")
	}
	fmt.Fprintf(tw, "  proxy retries\t%d", f.Retries)
	if f.RerouteTime >= 0 {
		fmt.Fprintf(tw, ", the last %s after the crash", ms(f.RerouteTime))
	}
	fmt.Fprintf(tw, "\n  \t(requests resent to the next datacenter after an attempt on %s failed: until its\n", f.Datacenter)
	fmt.Fprintln(tw, "  \tbreakers opened, then whenever a breaker let a probe through)")
	if f.LastServedAfter >= 0 {
		fmt.Fprintf(tw, "  its last answer\t%s after the crash\n", ms(f.LastServedAfter))
	} else {
		fmt.Fprintf(tw, "  its last answer\tbefore the crash\n")
	}
	if f.RecoveryTime >= 0 {
		fmt.Fprintf(tw, "  served again\t%s after it came back (a breaker lets a probe through %v after it opened)\n", ms(f.RecoveryTime), r.BreakerOpenFor)
	} else {
		fmt.Fprintf(tw, "  served again\tnot within the phase\n")
	}
	return tw.Flush()
}

func pct(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
