package hashing

import (
	"context"
	"math"
	"slices"
	"sync/atomic"
	"time"
)

// Heavy-hitter detector defaults.
const (
	DefaultDetectDepth = 4
	DefaultDetectWidth = 4096
	DefaultDetectTick  = time.Second
	// demoteTicks is how many ticks in a row a hot key must stay under the
	// demotion threshold to be demoted: hysteresis against flapping.
	demoteTicks = 3
	// maxDetected bounds the hot set, so a flood of distinct keys cannot
	// grow it without limit.
	maxDetected = 256
	// maxKeyCopy is how much of a key is kept for operators to read.
	maxKeyCopy = 64
)

// DetectOptions configure a HeavyHitters detector.
type DetectOptions struct {
	// Rate is the request rate (per second, on this node) at which a key
	// becomes hot. Counts halve every tick, so a key's count is its
	// requests of this tick plus half of the last's and so on: it is
	// promoted once that passes Rate·Tick, which a burst of Rate·Tick
	// requests within one tick does, and so does a steady rate above
	// Rate/2 (its count settles at twice its rate times Tick). It is
	// demoted when its rate stays under about Rate/8 for three ticks in a
	// row (hysteresis: no flapping).
	Rate float64
	// Max caps a detected key's spread; it gets one bucket per Rate of its
	// rate, at least 2 (Max 1: keys are detected and listed, not spread).
	Max int
	// Tick is how often counts decay by half and promotions and demotions
	// are decided. Default 1s.
	Tick time.Duration
}

// HeavyHitters finds the routing keys that take a large share of requests
// now: a count-min sketch (4 rows of 4096 counters) that decays by half
// every tick, read on every request. Observe is lock-free and allocation-
// free; a key crossing the threshold is handed, by value, to the goroutine
// running Run, which publishes a new immutable hot set. A nil
// *HeavyHitters observes nothing and finds nothing hot.
type HeavyHitters struct {
	opts    DetectOptions
	rows    [DefaultDetectDepth][DefaultDetectWidth]atomic.Uint32
	promote uint32 // count at which a key is promoted
	demote  uint32 // count under which a hot key counts toward demotion
	found   chan detected
	hot     atomic.Pointer[hotSet]
}

// detected is a promotion candidate, passed by value (no allocation).
type detected struct {
	h   uint64
	n   uint8
	key [maxKeyCopy]byte
}

// hotSet is one immutable set of detected keys.
type hotSet struct {
	spread map[uint64]uint8
	keys   []DetectedKey
	cold   map[uint64]int // ticks under the demotion threshold
}

// DetectedKey is a key the detector holds hot.
type DetectedKey struct {
	Key    string    `json:"key"`  // at most the first 64 bytes
	Rate   float64   `json:"rate"` // requests per second, estimated
	Spread int       `json:"spread"`
	Since  time.Time `json:"since"`
	Hash   uint64    `json:"-"`
}

// NewHeavyHitters makes a detector; it detects nothing until Run runs.
func NewHeavyHitters(o DetectOptions) *HeavyHitters {
	if o.Tick <= 0 {
		o.Tick = DefaultDetectTick
	}
	if o.Max < 1 {
		o.Max = 2
	}
	d := &HeavyHitters{opts: o, found: make(chan detected, 64)}
	// With halving every tick, a key at rate r settles at about 2·r·tick
	// counts before a halving and r·tick after. Promotion at Rate·tick
	// counts catches a burst within about Rate·tick of its requests;
	// demotion, judged just after a halving, under an eighth of that is a
	// steady rate under Rate/8.
	perTick := o.Rate * o.Tick.Seconds()
	d.promote = uint32(max(1, math.Ceil(perTick)))
	d.demote = uint32(max(1, math.Ceil(perTick/8)))
	d.hot.Store(&hotSet{})
	return d
}

// Observe counts one request for the key with hash h (key is only read,
// to keep a copy if it turns hot) and reports the key's spread: 1 when it
// is not hot.
func (d *HeavyHitters) Observe(h uint64, key []byte) int {
	if d == nil {
		return 1
	}
	est := uint32(math.MaxUint32)
	for r := range d.rows {
		c := d.rows[r][cell(h, r)].Add(1)
		est = min(est, c)
	}
	hs := d.hot.Load()
	if k, ok := hs.spread[h]; ok {
		return int(k)
	}
	if est >= d.promote {
		c := detected{h: h, n: uint8(min(len(key), maxKeyCopy))}
		copy(c.key[:], key)
		select {
		case d.found <- c:
		default: // Run is behind; the key will cross again
		}
	}
	return 1
}

// Spread is the spread of the key with hash h: 1 when it is not hot.
func (d *HeavyHitters) Spread(h uint64) int {
	if d == nil {
		return 1
	}
	if k, ok := d.hot.Load().spread[h]; ok {
		return int(k)
	}
	return 1
}

// Hot lists the keys held hot now.
func (d *HeavyHitters) Hot() []DetectedKey {
	if d == nil {
		return nil
	}
	return slices.Clone(d.hot.Load().keys)
}

// cell is the counter of row r for hash h: each row uses its own 16 bits
// of a remix of h.
func cell(h uint64, r int) uint32 {
	return uint32(Mix64(h+uint64(r)*0x9e3779b97f4a7c15)>>48) % DefaultDetectWidth
}

// estimate reads the sketch's count for h.
func (d *HeavyHitters) estimate(h uint64) uint32 {
	est := uint32(math.MaxUint32)
	for r := range d.rows {
		est = min(est, d.rows[r][cell(h, r)].Load())
	}
	return est
}

// Run promotes, decays and demotes until ctx ends. Run it in one goroutine.
func (d *HeavyHitters) Run(ctx context.Context) {
	tick := time.NewTicker(d.opts.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-d.found:
			d.promoteKey(c)
		case <-tick.C:
			d.decay()
		}
	}
}

// spreadFor turns a rate into a spread: one bucket per Rate, at least 2,
// at most Max.
func (d *HeavyHitters) spreadFor(rate float64) int {
	return min(max(2, int(math.Ceil(rate/d.opts.Rate))), d.opts.Max, MaxSpread)
}

func (d *HeavyHitters) promoteKey(c detected) {
	old := d.hot.Load()
	if _, ok := old.spread[c.h]; ok || len(old.spread) >= maxDetected {
		return
	}
	next := old.clone()
	// Mid-tick, the count is this tick's requests plus the decayed past:
	// taken for a settled count (twice the rate times the tick), it errs
	// low, and the next decay corrects it.
	rate := float64(d.estimate(c.h)) / (2 * d.opts.Tick.Seconds())
	k := d.spreadFor(rate)
	next.spread[c.h] = uint8(k)
	next.keys = append(next.keys, DetectedKey{
		Key: string(c.key[:c.n]), Spread: k, Since: time.Now(), Hash: c.h, Rate: rate,
	})
	d.hot.Store(next)
}

// decay halves every counter, then demotes hot keys that stayed cold for
// demoteTicks ticks and refreshes the others' spread and rate.
func (d *HeavyHitters) decay() {
	for r := range d.rows {
		for i := range d.rows[r] {
			c := &d.rows[r][i]
			for {
				v := c.Load()
				if v == 0 || c.CompareAndSwap(v, v/2) {
					break
				}
			}
		}
	}
	old := d.hot.Load()
	if len(old.spread) == 0 {
		return
	}
	next := &hotSet{spread: map[uint64]uint8{}, cold: map[uint64]int{}}
	for _, k := range old.keys {
		h := k.Hash
		est := d.estimate(h)
		cold := old.cold[h]
		if est < d.demote {
			cold++
		} else {
			cold = 0
		}
		if cold >= demoteTicks {
			continue
		}
		// Just after a halving, a key at rate r holds about r·tick.
		k.Rate = float64(est) / d.opts.Tick.Seconds()
		// The spread follows the rate up at once and down only with a
		// quarter to spare: each change moves the key's readers to other
		// buckets' caches, so a rate that wobbles must not move them.
		if up := d.spreadFor(k.Rate); up > k.Spread {
			k.Spread = up
		} else if down := d.spreadFor(k.Rate * 4 / 3); down < k.Spread {
			k.Spread = down
		}
		next.spread[h] = uint8(k.Spread)
		next.cold[h] = cold
		next.keys = append(next.keys, k)
	}
	d.hot.Store(next)
}

func (s *hotSet) clone() *hotSet {
	n := &hotSet{spread: make(map[uint64]uint8, len(s.spread)+1), keys: slices.Clone(s.keys), cold: make(map[uint64]int, len(s.cold))}
	for h, k := range s.spread {
		n.spread[h] = k
	}
	for h, c := range s.cold {
		n.cold[h] = c
	}
	return n
}
