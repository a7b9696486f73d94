package proxy

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/valyala/fasthttp"
)

// Explanation is the full routing decision for one request, for people
// (`socialroute route`, the admin endpoint) rather than the request path.
type Explanation struct {
	Key        string            `json:"key"`
	Rule       string            `json:"rule"`
	Bucket     uint32            `json:"bucket"`
	Spread     int               `json:"spread"`  // buckets the key fans out over; 1: not a hot key
	Sibling    int               `json:"sibling"` // which of them this request takes; 0: the key's own
	Source     string            `json:"source"`
	Home       string            `json:"home_continent"`
	MapVersion uint64            `json:"map_version"`
	Plan       []ExplainedChoice `json:"datacenters"`
	Chosen     string            `json:"chosen"`
	Why        string            `json:"why"`
	Rejected   string            `json:"rejected,omitempty"`
}

// ExplainedChoice is one datacenter of a plan, in order.
type ExplainedChoice struct {
	Datacenter string `json:"datacenter"`
	Continent  string `json:"continent"`
	State      string `json:"state"`
	Pinned     bool   `json:"pinned,omitempty"`
	Chosen     bool   `json:"chosen,omitempty"`
}

// Explain routes req as the request path would, without forwarding it, and
// says why at every step. It leaves no trace: the request counts toward no
// hot-key detection, access statistics or offered load, and the choice is
// the deterministic one the admin views make (a datacenter whose drain is
// still ramping is skipped, as it will be once the ramp ends).
func (s *Server) Explain(req *fasthttp.Request) Explanation {
	st := s.cur.Load()
	var e Explanation
	key, ri, refused := st.rules.extract(req)
	if refused != "" {
		e.Rejected = "400: " + refused
		return e
	}
	if key != nil {
		e.Key, e.Rule = string(key), st.rules[ri].desc
		if !validKey(key, st.maxKeyLen) {
			e.Rejected = "400: malformed routing key"
			return e
		}
	} else {
		e.Rule = "none matched"
		if st.noKeyReject {
			e.Rejected = "400: no routing key (routing.no_key: reject)"
			return e
		}
	}
	var d Decision
	st.router.plan(key, hashKey(key), req.Header.Peek(st.viewer), &d, false, isWrite(&req.Header))
	snap := d.Snapshot
	now := time.Now()
	dcs := s.datacentersNow(st, snap, s.gossipView(nil), now)
	d.Next = firstUsable(d.Plan, dcs)
	if d.Next >= 0 && writeLeavesHome(&d, int(d.Plan[d.Next])) && !st.router.homeOut(&d) {
		d.Next = -1 // a write stays on its continent while it is merely full (nextUsable)
	}
	topo := snap.Topology()
	e.Bucket, e.Source, e.MapVersion = d.Bucket, d.Source.String(), snap.Version()
	e.Spread, e.Sibling = d.Spread, d.Sibling
	if d.Source != SourceNone {
		e.Home = topo.Continents[snap.Home(d.Bucket)].Name
	}
	pinned, isPinned := snap.Pinned(d.Bucket)
	var skipped []string
	for i, dc := range d.Plan {
		state := dcs[dc].state()
		if w := dcs[dc].weight; w > 0 && w < 1 {
			state = fmt.Sprintf("drain ramp: taking %.0f%% of its traffic", 100*w)
		}
		c := ExplainedChoice{
			Datacenter: topo.Datacenters[dc].Name,
			Continent:  topo.Datacenters[dc].Continent,
			State:      state,
			Pinned:     d.Source != SourceNone && isPinned && int(dc) == pinned,
			Chosen:     i == d.Next,
		}
		if d.Next < 0 || i < d.Next {
			skipped = append(skipped, c.Datacenter+" "+c.State)
		}
		e.Plan = append(e.Plan, c)
	}
	var why strings.Builder
	switch {
	case d.Source == SourceNone:
		fmt.Fprintf(&why, "no routing key: policy %q sends it to this node's datacenter %s, then the rest of its continent by capacity", "local", st.pools[st.router.localDC].name)
	case isPinned:
		fmt.Fprintf(&why, "bucket %d is pinned to %s; the rest follow by capacity-weighted rendezvous", d.Bucket, topo.Datacenters[pinned].Name)
	default:
		fmt.Fprintf(&why, "bucket %d's home continent is %s; its datacenters are ordered by capacity-weighted rendezvous", d.Bucket, e.Home)
	}
	if d.Spread > 1 {
		fmt.Fprintf(&why, "; a hot key spread over %d buckets, this request takes sibling %d", d.Spread, d.Sibling)
	}
	if len(skipped) > 0 {
		fmt.Fprintf(&why, "; skipped %s", strings.Join(skipped, ", "))
	}
	if d.Next < 0 {
		why.WriteString("; no datacenter on the list can take it: 503")
	} else {
		e.Chosen = e.Plan[d.Next].Datacenter
		fmt.Fprintf(&why, "; chose %s", e.Chosen)
	}
	e.Why = why.String()
	return e
}

// WriteText prints e as a short report for a terminal.
func (e Explanation) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	key := e.Key
	if key == "" {
		key = "(none)"
	}
	fmt.Fprintf(tw, "key\t%s\t(rule: %s)\n", key, e.Rule)
	if e.Rejected != "" {
		fmt.Fprintf(tw, "rejected\t%s\n", e.Rejected)
		return tw.Flush()
	}
	if e.Source != SourceNone.String() {
		fmt.Fprintf(tw, "bucket\t%d\t(%s)\n", e.Bucket, e.Source)
		if e.Spread > 1 {
			fmt.Fprintf(tw, "spread\tsibling %d of %d\t(a hot key)\n", e.Sibling, e.Spread)
		}
		fmt.Fprintf(tw, "home continent\t%s\n", e.Home)
	}
	fmt.Fprintf(tw, "map version\t%d\n\n", e.MapVersion)
	return writePlan(tw, e.Plan, e.Why)
}

// writePlan prints a plan, one datacenter a row marking the pinned and the
// chosen one, then why, and flushes tw.
func writePlan(tw *tabwriter.Writer, plan []ExplainedChoice, why string) error {
	fmt.Fprintf(tw, "#\tdatacenter\tcontinent\tstate\t\n")
	for i, c := range plan {
		mark := ""
		if c.Pinned {
			mark = "pinned"
		}
		if c.Chosen {
			mark = strings.TrimSpace(mark + " <- chosen")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", i+1, c.Datacenter, c.Continent, c.State, mark)
	}
	fmt.Fprintf(tw, "\nwhy\t%s\n", why)
	return tw.Flush()
}
