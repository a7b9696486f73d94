package health

import (
	"context"
	"fmt"
	"math"
	"time"
)

// evaluateInterval bounds how stale the view can get: suspect transitions
// raise no memberlist event, so the view is also rebuilt on a timer.
const evaluateInterval = 200 * time.Millisecond

// rateInterval is how often the node measures the rate it offers each
// datacenter and gossips it.
const rateInterval = time.Second

// evaluateLoop rebuilds the view on every membership event and on a timer,
// and measures and gossips offered rates.
func (c *Cluster) evaluateLoop(ctx context.Context) {
	defer c.done.Done()
	tick := time.NewTicker(evaluateInterval)
	defer tick.Stop()
	rates := time.NewTicker(rateInterval)
	defer rates.Stop()
	last := make([]uint64, len(c.offered))
	lastAt := c.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-tick.C:
		case <-rates.C:
			now := c.now()
			secs := now.Sub(lastAt).Seconds()
			r := make([]float32, len(c.offered))
			any := false
			for i := range c.offered {
				n := c.offered[i].n.Load()
				r[i] = float32(float64(n-last[i]) / secs)
				last[i] = n
				any = any || r[i] > 0
			}
			lastAt = now
			if !any {
				r = nil
			}
			c.updateMeta(func(m *Meta) { m.Rates = r })
		}
		c.evaluate()
	}
}

// nodeReport is one listed node's word on its datacenter. Memberlist
// lists alive and suspect nodes alike and does not say which is which, so
// a node counts until memberlist declares it dead (its suspicion timeout).
type nodeReport struct {
	meta Meta
}

// evaluate builds a new view from the pools' members and publishes it,
// logging every datacenter that changed state.
func (c *Cluster) evaluate() {
	dcs := c.opts.Datacenters
	loadLimit, slowStart := math.Float64frombits(c.loadLimit.Load()), time.Duration(c.slowStart.Load())
	byDC := make([][]nodeReport, len(dcs))
	index := make(map[string]int, len(dcs))
	for i, d := range dcs {
		index[d.Name] = i
	}
	offered := make([]float64, len(dcs))
	hot := map[uint64]uint8{}
	counted := map[string]bool{}
	c.mu.Lock()
	for _, pool := range []string{"lan", "wan"} {
		for name, n := range c.listed[pool] {
			m := n.meta
			i, ok := index[m.Datacenter]
			if !ok {
				continue
			}
			// A datacenter of this continent is judged by the LAN pool
			// (faster detection), another continent's by the WAN pool.
			if (m.Continent == c.continent) == (pool == "lan") {
				byDC[i] = append(byDC[i], nodeReport{meta: m})
			}
			if !counted[name] {
				counted[name] = true
				for j, r := range m.Rates {
					if j < len(offered) {
						offered[j] += float64(r)
					}
				}
				for _, h := range m.Hot {
					hot[h.Hash] = max(hot[h.Hash], h.Spread)
				}
			}
		}
	}
	if c.lan == nil { // before the pools exist: our own word only
		byDC[c.self] = append(byDC[c.self], nodeReport{meta: c.state})
	}
	seen := make(map[string]bool, len(c.seen))
	for _, d := range c.seen {
		seen[d] = true
	}
	c.mu.Unlock()

	prev, now := c.view.Load(), c.now()
	v := &view{dcs: make([]DCStatus, len(dcs)), hot: hot}
	for i, d := range dcs {
		s := DCStatus{Name: d.Name, Continent: d.Continent, Up: true, Admit: 1, Offered: offered[i]}
		alive, reporting, healthy := 0, 0, 0
		for _, r := range byDC[i] {
			alive++
			if r.meta.Upstreams > 0 {
				reporting++
				s.Upstreams = int(r.meta.Upstreams)
				healthy = max(healthy, int(r.meta.Healthy))
			}
		}
		s.Nodes, s.Healthy = alive, healthy
		switch {
		case alive == 0 && (seen[d.Name] || len(byDC[i]) > 0):
			s.Up, s.Reason = false, "all its proxy nodes are dead"
		case reporting > 0 && healthy == 0:
			s.Up, s.Reason = false, "its proxy nodes find none of its upstreams healthy"
		case alive == 0:
			s.Reason = "no proxy node of it has reported; breakers alone judge it"
		default:
			s.Reason = fmt.Sprintf("%d proxy node(s) alive, %d/%d upstreams healthy", alive, healthy, s.Upstreams)
		}
		if !s.Up {
			v.down |= 1 << i
		} else if limit := d.MaxRPS * loadLimit; limit > 0 && offered[i] > limit {
			// Bounded-load spill: admit the share the datacenter can take;
			// the rest goes to the next datacenter of each bucket's list.
			s.Admit = limit / offered[i]
			v.limited |= 1 << i
			v.admit[i] = s.Admit
			s.Reason += fmt.Sprintf("; over its headroom (%.0f of %.0f rps), admitting %.0f%%", offered[i], limit, 100*s.Admit)
		}
		if s.Up && slowStart > 0 && prev != nil {
			if prev.down&(1<<i) != 0 {
				c.upAt[i] = now // back from down: its share ramps up (evaluate runs on one goroutine)
			}
			if since := now.Sub(c.upAt[i]); since < slowStart {
				share := max(0.05, float64(since)/float64(slowStart))
				if v.limited&(1<<i) == 0 || share < s.Admit {
					s.Admit = share
				}
				v.limited |= 1 << i
				v.admit[i] = s.Admit
				s.Reason += fmt.Sprintf("; back up %v ago, slow start admitting %.0f%%", since.Round(time.Second), 100*s.Admit)
			}
		}
		if math.IsNaN(s.Admit) {
			s.Admit = 1
		}
		v.dcs[i] = s
	}
	old := c.view.Swap(v)
	if old == nil {
		return
	}
	for i, s := range v.dcs {
		if o := old.dcs[i]; o.Up != s.Up {
			if s.Up {
				c.log.Info("datacenter up", "datacenter", s.Name, "reason", s.Reason)
			} else {
				c.log.Warn("datacenter down", "datacenter", s.Name, "reason", s.Reason)
			}
		}
	}
}
