package proxy

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/health"
	"github.com/sony/gobreaker/v2"
)

// ClusterView is the fleet's gossip view as the admin endpoint shows it;
// *health.Cluster implements it.
type ClusterView interface {
	Members() []health.Member
	Status() []health.DCStatus
}

var _ ClusterView = (*health.Cluster)(nil)

// statusViewer is a Status that can also report its view of every
// datacenter without counting an offer (health.Cluster's Usable counts the
// load it is offered, so views must not call it).
type statusViewer interface {
	Status() []health.DCStatus
}

// gossipView is the gossip view of every datacenter, by index: c's if set,
// else the server's Status's if it has one, else nil (gossip off). A view
// that does not match the topology (a reload changed it) is ignored.
func (s *Server) gossipView(c ClusterView) []health.DCStatus {
	var v []health.DCStatus
	switch sv, ok := s.status.(statusViewer); {
	case c != nil:
		v = c.Status()
	case ok:
		v = sv.Status()
	}
	if len(v) != len(s.cur.Load().pools) {
		return nil
	}
	return v
}

// dcNow is one datacenter's state for people and metrics. Unlike the
// request path's it is deterministic: a drain counts from the moment it is
// made (its ramp is reported as a weight, not rolled as dice), and reading
// it counts no offered load.
type dcNow struct {
	drained bool    // the bucket map drains it
	weight  float64 // share of its traffic it takes under the drain ramp
	up      bool    // not down by gossip (or the Status)
	ready   int     // upstreams whose breaker would let a request through
	total   int     // upstreams
	gossip  *health.DCStatus
}

func (d dcNow) usable() bool { return !d.drained && d.up && d.ready > 0 }

// state names the datacenter's state in a word or two.
func (d dcNow) state() string {
	switch {
	case d.drained && d.weight > 0:
		return "draining"
	case d.drained:
		return "drained"
	case !d.up:
		return "down"
	case d.ready == 0:
		return "no ready upstream"
	case d.weight < 1:
		return "undraining"
	}
	return "usable"
}

// reason says why, in a sentence.
func (d dcNow) reason() string {
	var parts []string
	switch {
	case d.drained && d.weight > 0:
		parts = append(parts, fmt.Sprintf("drained by the bucket map; its drain ramp still sends it %.0f%% of its traffic", 100*d.weight))
	case d.drained:
		parts = append(parts, "drained by the bucket map")
	case d.weight < 1:
		parts = append(parts, fmt.Sprintf("undrained; its ramp sends it %.0f%% of its traffic", 100*d.weight))
	}
	switch {
	case d.gossip != nil:
		parts = append(parts, "gossip: "+d.gossip.Reason)
	case !d.up:
		parts = append(parts, "marked down")
	}
	switch {
	case d.ready == 0:
		parts = append(parts, fmt.Sprintf("all %d upstream breakers open", d.total))
	case d.ready < d.total:
		parts = append(parts, fmt.Sprintf("%d of %d upstream breakers open", d.total-d.ready, d.total))
	case d.gossip == nil && len(parts) == 0:
		parts = append(parts, fmt.Sprintf("%d of %d upstreams' breakers closed", d.ready, d.total))
	}
	return strings.Join(parts, "; ")
}

// datacentersNow is every datacenter's dcNow under st and snap; gossip is
// the gossip view (nil: ask the Status).
func (s *Server) datacentersNow(st *state, snap *buckets.Snapshot, gossip []health.DCStatus, now time.Time) []dcNow {
	out := make([]dcNow, len(st.pools))
	for i, p := range st.pools {
		d := dcNow{drained: snap.Drained(i), weight: snap.Weight(i, now.UnixNano(), st.router.drainRamp), total: len(p.upstreams)}
		if gossip != nil {
			d.gossip = &gossip[i]
			d.up = gossip[i].Up
		} else {
			d.up = s.status.Usable(i)
		}
		for _, u := range p.upstreams {
			if u.breaker.Ready() {
				d.ready++
			}
		}
		out[i] = d
	}
	return out
}

// firstUsable is the position in plan of the first datacenter usable now,
// by the deterministic states dcs; -1 if there is none. It is the views'
// nextUsable.
func firstUsable(plan []uint8, dcs []dcNow) int {
	for i, dc := range plan {
		if dcs[dc].usable() {
			return i
		}
	}
	return -1
}

// bucketCounts counts, per datacenter, the buckets whose list it heads
// (home), those it would take now (serving: the first usable datacenter of
// their list) and those pinned to it, and the buckets none of whose
// datacenters is usable.
type bucketCounts struct {
	home, serving, pinned []int
	unserved              int
}

func countBuckets(snap *buckets.Snapshot, dcs []dcNow) bucketCounts {
	n := len(dcs)
	c := bucketCounts{home: make([]int, n), serving: make([]int, n), pinned: make([]int, n)}
	for b := range snap.Buckets() {
		plan := snap.Plan(b)
		c.home[plan[0]]++
		if dc, ok := snap.Pinned(b); ok {
			c.pinned[dc]++
		}
		if i := firstUsable(plan, dcs); i >= 0 {
			c.serving[plan[i]]++
		} else {
			c.unserved++
		}
	}
	return c
}

// BreakerView is one upstream's circuit breaker.
type BreakerView struct {
	Upstream string `json:"upstream"`
	State    string `json:"state"` // closed, half-open, open
	// Ready: the breaker would let a request through now (an open one
	// whose open_for has passed lets the next request probe).
	Ready bool `json:"ready"`
}

// DatacenterView is one datacenter as GET /admin/datacenters shows it.
type DatacenterView struct {
	Name      string `json:"name"`
	Continent string `json:"continent"`
	// Local: this node stands in it.
	Local    bool    `json:"local,omitempty"`
	Capacity float64 `json:"capacity"`
	// CapacityShare is its share of its continent's capacity.
	CapacityShare float64 `json:"capacity_share"`
	// State is usable, draining (drained, ramp still running), drained,
	// down, no ready upstream, or undraining.
	State  string `json:"state"`
	Usable bool   `json:"usable"`
	Reason string `json:"reason"`
	// Drained: the bucket map drains it. DrainWeight is the share of its
	// traffic the drain ramp lets it take now (1 undrained, 0 drained).
	Drained     bool    `json:"drained"`
	DrainWeight float64 `json:"drain_weight"`
	// Buckets it heads the list of; ServingBuckets it would take now
	// (first usable datacenter of their list); PinnedBuckets pinned to it.
	Buckets        int `json:"buckets"`
	ServingBuckets int `json:"serving_buckets"`
	PinnedBuckets  int `json:"pinned_buckets"`
	// Requests this node sent it (or answered for it) since it started.
	Requests uint64        `json:"requests"`
	Breakers []BreakerView `json:"breakers"`
	// Gossip is the fleet's view of it; absent when gossip is off.
	Gossip *health.DCStatus `json:"gossip,omitempty"`
}

// DatacentersView is GET /admin/datacenters: the node, the map, and every
// datacenter in topology order. The status page draws it.
type DatacentersView struct {
	Node       string `json:"node"`
	Datacenter string `json:"datacenter"`
	MapVersion uint64 `json:"map_version"`
	MapOrigin  string `json:"map_origin,omitempty"`
	Buckets    uint32 `json:"buckets"`
	// UnservedBuckets have no usable datacenter on their list: their
	// requests get 503.
	UnservedBuckets int              `json:"unserved_buckets"`
	DrainRamp       string           `json:"drain_ramp"`
	Continents      []string         `json:"continents"`
	Gossip          bool             `json:"gossip"`
	Members         int              `json:"members"`
	Ready           bool             `json:"ready"`
	NotReady        []string         `json:"not_ready,omitempty"`
	Datacenters     []DatacenterView `json:"datacenters"`
}

// BucketsView is GET /admin/buckets: bucket counts per datacenter.
type BucketsView struct {
	MapVersion      uint64         `json:"map_version"`
	Buckets         uint32         `json:"buckets"`
	Pinned          int            `json:"pinned"`
	UnservedBuckets int            `json:"unserved_buckets"`
	Datacenters     []BucketsPerDC `json:"datacenters"`
}

// BucketsPerDC is one datacenter's line of BucketsView.
type BucketsPerDC struct {
	Datacenter string `json:"datacenter"`
	Continent  string `json:"continent"`
	State      string `json:"state"`
	// Home: buckets whose list it heads; Serving: buckets it would take
	// now; Pinned: buckets pinned to it.
	Home    int `json:"buckets"`
	Serving int `json:"serving_buckets"`
	Pinned  int `json:"pinned_buckets"`
}

// BucketView is GET /admin/buckets/{id}: one bucket's placement now.
type BucketView struct {
	Bucket     uint32            `json:"bucket"`
	Home       string            `json:"home_continent"`
	MapVersion uint64            `json:"map_version"`
	Pinned     string            `json:"pinned,omitempty"`
	Plan       []ExplainedChoice `json:"datacenters"`
	Chosen     string            `json:"chosen"`
	Why        string            `json:"why"`
}

// view is one consistent look at the routing state for the admin routes.
type view struct {
	st      *state
	snap    *buckets.Snapshot
	dcs     []dcNow
	counts  bucketCounts
	gossip  []health.DCStatus
	members []health.Member
}

func (s *Server) look(c ClusterView) *view {
	st := s.cur.Load()
	v := &view{st: st, snap: st.router.placement.Load(), gossip: s.gossipView(c)}
	if c != nil {
		v.members = c.Members()
	}
	v.dcs = s.datacentersNow(st, v.snap, v.gossip, time.Now())
	v.counts = countBuckets(v.snap, v.dcs)
	return v
}

func (v *view) datacenters() []DatacenterView {
	topo := v.snap.Topology()
	perContinent := map[string]float64{}
	for _, d := range topo.Datacenters {
		perContinent[d.Continent] += d.Capacity
	}
	out := make([]DatacenterView, len(v.dcs))
	for i, d := range v.dcs {
		td := topo.Datacenters[i]
		p := v.st.pools[i]
		dv := DatacenterView{
			Name: td.Name, Continent: td.Continent, Local: i == v.st.router.localDC,
			Capacity: td.Capacity, CapacityShare: td.Capacity / perContinent[td.Continent],
			State: d.state(), Usable: d.usable(), Reason: d.reason(),
			Drained: d.drained, DrainWeight: d.weight,
			Buckets: v.counts.home[i], ServingBuckets: v.counts.serving[i], PinnedBuckets: v.counts.pinned[i],
			Requests: v.st.metrics.requestsTo(i),
			Breakers: make([]BreakerView, len(p.upstreams)),
			Gossip:   d.gossip,
		}
		for j, u := range p.upstreams {
			dv.Breakers[j] = BreakerView{Upstream: u.addr, State: breakerState(u.breaker.State()), Ready: u.breaker.Ready()}
		}
		out[i] = dv
	}
	return out
}

func breakerState(s gobreaker.State) string {
	switch s {
	case gobreaker.StateClosed:
		return "closed"
	case gobreaker.StateHalfOpen:
		return "half-open"
	}
	return "open"
}

func (v *view) buckets() BucketsView {
	topo := v.snap.Topology()
	out := BucketsView{MapVersion: v.snap.Version(), Buckets: v.snap.Buckets(), UnservedBuckets: v.counts.unserved}
	for i, d := range v.dcs {
		out.Pinned += v.counts.pinned[i]
		out.Datacenters = append(out.Datacenters, BucketsPerDC{
			Datacenter: topo.Datacenters[i].Name, Continent: topo.Datacenters[i].Continent, State: d.state(),
			Home: v.counts.home[i], Serving: v.counts.serving[i], Pinned: v.counts.pinned[i],
		})
	}
	return out
}

// bucket explains bucket b's placement now, as Explain does for a request
// but from the deterministic datacenter states.
func (v *view) bucket(b uint32) BucketView {
	topo := v.snap.Topology()
	out := BucketView{Bucket: b, Home: topo.Continents[v.snap.Home(b)].Name, MapVersion: v.snap.Version()}
	pinned, isPinned := v.snap.Pinned(b)
	if isPinned {
		out.Pinned = topo.Datacenters[pinned].Name
	}
	plan := v.snap.Plan(b)
	chosen := firstUsable(plan, v.dcs)
	var skipped []string
	for i, dc := range plan {
		d := v.dcs[dc]
		c := ExplainedChoice{
			Datacenter: topo.Datacenters[dc].Name, Continent: topo.Datacenters[dc].Continent,
			State: d.state(), Pinned: isPinned && int(dc) == pinned, Chosen: i == chosen,
		}
		if c.Chosen {
			out.Chosen = c.Datacenter
		} else if chosen < 0 || i < chosen {
			skipped = append(skipped, c.Datacenter+" "+c.State)
		}
		out.Plan = append(out.Plan, c)
	}
	var why strings.Builder
	if isPinned {
		fmt.Fprintf(&why, "bucket %d is pinned to %s; the rest follow by capacity-weighted rendezvous", b, out.Pinned)
	} else {
		fmt.Fprintf(&why, "bucket %d's home continent is %s; its datacenters are ordered by capacity-weighted rendezvous", b, out.Home)
	}
	if len(skipped) > 0 {
		fmt.Fprintf(&why, "; skipped %s", strings.Join(skipped, ", "))
	}
	if chosen < 0 {
		why.WriteString("; no datacenter on the list can take it: 503")
	} else {
		fmt.Fprintf(&why, "; chose %s", out.Chosen)
	}
	out.Why = why.String()
	return out
}

// WriteText prints the datacenters as a table for a terminal.
func (d DatacentersView) WriteText(w io.Writer) error {
	gossip := "off"
	if d.Gossip {
		gossip = fmt.Sprintf("%d members", d.Members)
	}
	ready := "ready"
	if !d.Ready {
		ready = "not ready: " + strings.Join(d.NotReady, "; ")
	}
	fmt.Fprintf(w, "node %s (%s), map version %d, %d buckets (%d unserved), gossip %s, %s\n\n",
		d.Node, d.Datacenter, d.MapVersion, d.Buckets, d.UnservedBuckets, gossip, ready)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "datacenter\tcontinent\tcapacity\tstate\tbuckets\tserving\tpinned\trequests\treason")
	for _, c := range d.Datacenters {
		fmt.Fprintf(tw, "%s\t%s\t%.0f (%.1f%%)\t%s\t%d\t%d\t%d\t%d\t%s\n", c.Name, c.Continent, c.Capacity, 100*c.CapacityShare,
			c.State, c.Buckets, c.ServingBuckets, c.PinnedBuckets, c.Requests, c.Reason)
	}
	return tw.Flush()
}

// WriteText prints the bucket counts as a table for a terminal.
func (b BucketsView) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "map version %d, %d buckets, %d pinned, %d unserved\n\n", b.MapVersion, b.Buckets, b.Pinned, b.UnservedBuckets)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "datacenter\tcontinent\tstate\tbuckets (first choice)\tserving now\tpinned")
	for _, d := range b.Datacenters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", d.Datacenter, d.Continent, d.State, d.Home, d.Serving, d.Pinned)
	}
	return tw.Flush()
}

// WriteText prints the bucket's placement for a terminal.
func (b BucketView) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "bucket\t%d\n", b.Bucket)
	fmt.Fprintf(tw, "home continent\t%s\n", b.Home)
	if b.Pinned != "" {
		fmt.Fprintf(tw, "pinned to\t%s\n", b.Pinned)
	}
	fmt.Fprintf(tw, "map version\t%d\n\n", b.MapVersion)
	return writePlan(tw, b.Plan, b.Why)
}

// membersText prints the gossip members as a table for a terminal.
func membersText(w io.Writer, ms []health.Member) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "node\taddress\tpool\tdatacenter\tcontinent\tstate\tmap version\thealthy upstreams")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d/%d\n", m.Name, m.Address, m.Pool, m.Datacenter, m.Continent, m.NodeState, m.MapVersion, m.Healthy, m.Upstreams)
	}
	return tw.Flush()
}
