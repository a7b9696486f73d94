package buckets

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// MaxDatacenters bounds a topology: sets of datacenters are 64-bit masks on
// the request path.
const MaxDatacenters = 64

// MaxBuckets bounds N: bucket ids are 16-bit in the assignment table.
const MaxBuckets = 1 << 16

// Topology is the static shape of a deployment: continents and their
// datacenters. Datacenters are referred to by their index in Datacenters.
type Topology struct {
	// Continents in failover preference order.
	Continents []Continent
	// Datacenters of every continent.
	Datacenters []Datacenter
}

// Continent is a set of datacenters that keeps its users' data.
type Continent struct {
	Name string
	// FailoverTo names the continents that may serve this continent's
	// buckets when none of its own datacenters can, in order.
	FailoverTo []string
	// Share weighs the continent in the default home split: a bucket with
	// no home of its own is homed by rendezvous over the continents,
	// weighted by share. 0: the sum of its datacenters' capacities.
	Share float64
}

// Shares is each continent's weight in the default home split.
func (t *Topology) Shares() []float64 {
	shares := make([]float64, len(t.Continents))
	for i, c := range t.Continents {
		shares[i] = c.Share
	}
	for _, d := range t.Datacenters {
		if ci, ok := t.ContinentIndex(d.Continent); ok && t.Continents[ci].Share == 0 {
			shares[ci] += d.Capacity
		}
	}
	return shares
}

// Datacenter is one web-tier site.
type Datacenter struct {
	Name      string
	Continent string
	// Capacity is the datacenter's weight within its continent. > 0.
	Capacity float64
}

// ContinentIndex returns the index of the named continent.
func (t *Topology) ContinentIndex(name string) (int, bool) {
	for i := range t.Continents {
		if t.Continents[i].Name == name {
			return i, true
		}
	}
	return -1, false
}

// DatacenterIndex returns the index of the named datacenter.
func (t *Topology) DatacenterIndex(name string) (int, bool) {
	for i := range t.Datacenters {
		if t.Datacenters[i].Name == name {
			return i, true
		}
	}
	return -1, false
}

// validate checks the invariants the placement math relies on. The config
// loader reports friendlier errors first; this guards direct API use.
func (t *Topology) validate() error {
	if len(t.Continents) == 0 || len(t.Datacenters) == 0 {
		return errors.New("buckets: topology needs at least one continent and one datacenter")
	}
	if len(t.Continents) > math.MaxUint8 || len(t.Datacenters) > MaxDatacenters {
		return fmt.Errorf("buckets: at most %d datacenters", MaxDatacenters)
	}
	seen := map[string]bool{}
	for _, c := range t.Continents {
		if seen["c:"+c.Name] {
			return fmt.Errorf("buckets: continent %q listed twice", c.Name)
		}
		if c.Share < 0 || math.IsInf(c.Share, 0) || math.IsNaN(c.Share) {
			return fmt.Errorf("buckets: continent %q: share %v must be 0 (by capacity) or a positive number", c.Name, c.Share)
		}
		seen["c:"+c.Name] = true
	}
	for _, c := range t.Continents {
		for i, f := range c.FailoverTo {
			if !seen["c:"+f] || f == c.Name {
				return fmt.Errorf("buckets: continent %q fails over to %q: not another known continent", c.Name, f)
			}
			if slices.Contains(c.FailoverTo[:i], f) {
				// A plan holds each datacenter once; listed twice, it
				// would outgrow its stride in the plan table.
				return fmt.Errorf("buckets: continent %q fails over to %q twice", c.Name, f)
			}
		}
	}
	perContinent := map[string]int{}
	for _, d := range t.Datacenters {
		if seen["d:"+d.Name] {
			return fmt.Errorf("buckets: datacenter %q listed twice", d.Name)
		}
		seen["d:"+d.Name] = true
		if !seen["c:"+d.Continent] {
			return fmt.Errorf("buckets: datacenter %q: unknown continent %q", d.Name, d.Continent)
		}
		if !(d.Capacity > 0) || math.IsInf(d.Capacity, 0) {
			return fmt.Errorf("buckets: datacenter %q: capacity %v must be a positive number", d.Name, d.Capacity)
		}
		perContinent[d.Continent]++
	}
	for _, c := range t.Continents {
		if perContinent[c.Name] == 0 {
			return fmt.Errorf("buckets: continent %q has no datacenter", c.Name)
		}
	}
	return nil
}
