package buckets

import (
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/socialroute/socialroute/hashing"
)

// candidate is one option (a datacenter or a continent) in a rendezvous.
type candidate struct {
	index  int
	seed   uint64 // hash of the option's name: stable across reorderings of the config
	weight float64
}

// newCandidate seeds an option by its name, so that its scores do not change
// when other options are added, removed or reordered.
func newCandidate(index int, name string, weight float64) candidate {
	return candidate{index: index, seed: xxhash.Sum64String(name), weight: weight}
}

// score is the capacity-weighted rendezvous score of option c for bucket b:
// weight / -ln(u), u uniform in (0, 1). The largest score wins, and option c
// wins with probability weight(c) / sum of weights (Schindelhauer and
// Schomaker's logarithmic method), whichever subset of options is left.
func (c candidate) score(b uint32) float64 {
	u := (float64(hashing.Mix64(c.seed^(uint64(b)+1)*0x9e3779b97f4a7c15)>>11) + 0.5) / (1 << 53)
	return c.weight / -math.Log(u)
}

// rank orders cs by falling score for bucket b, ties broken by index so the
// order is total and deterministic. It reorders cs in place.
func rank(cs []candidate, b uint32, scores []float64) {
	for i := range cs {
		scores[cs[i].index] = cs[i].score(b)
	}
	slices.SortFunc(cs, func(x, y candidate) int {
		sx, sy := scores[x.index], scores[y.index]
		switch {
		case sx > sy:
			return -1
		case sx < sy:
			return 1
		}
		return x.index - y.index
	})
}
