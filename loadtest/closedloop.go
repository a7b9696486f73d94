package loadtest

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Response headers socialroute adds (routing.response_headers, on by
// default): the bucket of the request's user and the datacenter that served
// it.
const (
	headerBucket = "X-Socialroute-Bucket"
	headerDC     = "X-Socialroute-Dc"
)

// requestTimeout bounds one request of the load generator, so that a
// stalled proxy cannot stall a worker forever.
const requestTimeout = 5 * time.Second

// placement is what the generator needs to judge an answer: the
// datacenters by name, and the home continent of a bucket. It reads the
// routing state in force at the time of the answer.
type placement struct {
	dcIndex     map[string]int // datacenter name -> index
	dcContinent []int          // datacenter index -> continent index
	// home returns bucket b's home continent index, false if b is not a
	// bucket.
	home func(b uint32) (int, bool)
}

// tally counts the outcomes of one worker's requests in one phase. Only its
// worker writes it; atomics let the progress display read it meanwhile.
type tally struct {
	requests   atomic.Uint64 // answered or failed
	transport  atomic.Uint64 // no answer: connection or timeout error
	badStatus  atomic.Uint64 // answered, but not 200
	mismatched atomic.Uint64 // 200, but the routing headers are missing or disagree with the backend
	local      atomic.Uint64 // served on the bucket's home continent
	byDC       []atomic.Uint64
	firstByDC  []atomic.Int64 // unix nanoseconds of the first answer from each datacenter, 0 none
	lastByDC   []atomic.Int64 // and of the last one
}

func newTally(dcs int) *tally {
	return &tally{
		byDC:      make([]atomic.Uint64, dcs),
		firstByDC: make([]atomic.Int64, dcs),
		lastByDC:  make([]atomic.Int64, dcs),
	}
}

// parseBucket parses a decimal bucket id without allocating.
func parseBucket(v []byte) (uint32, bool) {
	if len(v) == 0 || len(v) > 5 { // buckets are below 65536
		return 0, false
	}
	var b uint32
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		b = b*10 + uint32(c-'0')
	}
	return b, true
}

// record judges one answer (or err) received at now.
func (t *tally) record(p *placement, resp *fasthttp.Response, err error, now int64) {
	t.requests.Add(1)
	switch {
	case err != nil:
		t.transport.Add(1)
		return
	case resp.StatusCode() != fasthttp.StatusOK:
		t.badStatus.Add(1)
		return
	}
	h := &resp.Header
	dcName := h.Peek(headerDC)
	dc, ok := p.dcIndex[string(dcName)] // no allocation: the compiler sees the conversion is only a lookup
	if !ok || !bytes.Equal(h.Peek(HeaderServedBy), dcName) {
		t.mismatched.Add(1)
		return
	}
	b, ok := parseBucket(h.Peek(headerBucket))
	var home int
	if ok {
		home, ok = p.home(b)
	}
	if !ok {
		t.mismatched.Add(1)
		return
	}
	if p.dcContinent[dc] == home {
		t.local.Add(1)
	}
	t.byDC[dc].Add(1)
	if t.firstByDC[dc].Load() == 0 {
		t.firstByDC[dc].Store(now)
	}
	t.lastByDC[dc].Store(now)
}

// closedLoop is a closed-loop load generator: each worker sends a request,
// waits for the answer, judges it and sends the next, so the offered load
// adapts to the system's speed (and hides its queueing; an open-loop
// generator is the tool for latency under a fixed rate). Requests are
// GET /users/<id>/feed for uniformly random ids in [0, users). Outcomes go
// to the tallies of the phase current when the answer (or error) comes, so
// that a phase's counts describe what happened during it.
type closedLoop struct {
	client  *fasthttp.HostClient
	host    string
	users   int
	place   *placement
	phase   atomic.Int32
	tallies [][]*tally // [phase][worker]
}

func newClosedLoop(client *fasthttp.HostClient, workers, users, phases, dcs int, p *placement) *closedLoop {
	g := &closedLoop{client: client, host: "socialroute.demo", users: users, place: p}
	g.tallies = make([][]*tally, phases)
	for i := range g.tallies {
		g.tallies[i] = make([]*tally, workers)
		for w := range g.tallies[i] {
			g.tallies[i][w] = newTally(dcs)
		}
	}
	return g
}

// run starts the workers and returns when ctx ends and every worker has
// had its last answer.
func (g *closedLoop) run(ctx context.Context) {
	var wg sync.WaitGroup
	for w := range g.tallies[0] {
		wg.Go(func() { g.work(ctx, w) })
	}
	wg.Wait()
}

func (g *closedLoop) work(ctx context.Context, w int) {
	// A fixed seed per worker: runs differ only by timing.
	rng := rand.New(rand.NewPCG(0x50c1a1, uint64(w)))
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	path := make([]byte, 0, 32)
	for ctx.Err() == nil {
		path = append(path[:0], "/users/"...)
		path = strconv.AppendInt(path, int64(rng.IntN(g.users)), 10)
		path = append(path, "/feed"...)
		req.Reset()
		req.Header.SetHost(g.host)
		req.SetRequestURIBytes(path)
		resp.Reset()
		err := g.client.DoTimeout(req, resp, requestTimeout)
		g.tallies[g.phase.Load()][w].record(g.place, resp, err, time.Now().UnixNano())
	}
}

// phaseTotals sums a phase's tallies over the workers.
type phaseTotals struct {
	requests, transport, badStatus, mismatched, local uint64
	byDC                                              []uint64
	firstByDC, lastByDC                               []int64 // 0: none
}

func (g *closedLoop) totals(phase int) phaseTotals {
	var s phaseTotals
	for _, t := range g.tallies[phase] {
		if s.byDC == nil {
			s.byDC = make([]uint64, len(t.byDC))
			s.firstByDC = make([]int64, len(t.byDC))
			s.lastByDC = make([]int64, len(t.byDC))
		}
		s.requests += t.requests.Load()
		s.transport += t.transport.Load()
		s.badStatus += t.badStatus.Load()
		s.mismatched += t.mismatched.Load()
		s.local += t.local.Load()
		for i := range t.byDC {
			s.byDC[i] += t.byDC[i].Load()
			if f := t.firstByDC[i].Load(); f != 0 && (s.firstByDC[i] == 0 || f < s.firstByDC[i]) {
				s.firstByDC[i] = f
			}
			s.lastByDC[i] = max(s.lastByDC[i], t.lastByDC[i].Load())
		}
	}
	return s
}

func (s phaseTotals) errors() uint64 { return s.transport + s.badStatus + s.mismatched }
