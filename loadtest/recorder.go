package loadtest

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// Latency histograms count microseconds from 1µs to a minute: requests
// time out long before that, and 3 significant digits tell 1.234 ms from
// 1.235 ms. Timeline windows keep 2 digits, enough for a plot.
const (
	histMin       = 1
	histMax       = int64(time.Minute / time.Microsecond)
	histDigits    = 3
	windowDigits  = 2
	recorderShard = 8 // workers record into shard worker%8, each with its own lock
)

// errKind is why a request failed; errNone is a good answer.
type errKind uint8

const (
	errNone       errKind = iota
	errTimeout            // no answer within the request timeout
	errRefused            // could not connect to the proxy
	errConnection         // the connection closed or was reset mid-request
	errTransport          // any other transport error
	errStatus502
	errStatus503
	errStatus504
	errStatus5xx // any other 5xx
	errStatus4xx
	errStatusOther // neither 2xx, 4xx nor 5xx
	errMismatch    // 200, but X-Socialroute-Dc differs from the web tier's X-Served-By
	numErrKinds
)

// errKindNames are the report's names of the error kinds.
var errKindNames = [numErrKinds]string{
	errNone:        "ok",
	errTimeout:     "timeout",
	errRefused:     "connection refused",
	errConnection:  "connection reset or closed",
	errTransport:   "other transport error",
	errStatus502:   "502 bad gateway",
	errStatus503:   "503 service unavailable",
	errStatus504:   "504 gateway timeout",
	errStatus5xx:   "other 5xx",
	errStatus4xx:   "4xx",
	errStatusOther: "other status",
	errMismatch:    "routing headers disagree with the web tier",
}

func (k errKind) String() string { return errKindNames[k] }

// classifyTransport names a client error.
func classifyTransport(err error) errKind {
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, fasthttp.ErrNoFreeConns), errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return errRefused
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, fasthttp.ErrConnectionClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return errConnection
	}
	return errTransport
}

// classifyStatus names a non-200 status.
func classifyStatus(code int) errKind {
	switch {
	case code == fasthttp.StatusBadGateway:
		return errStatus502
	case code == fasthttp.StatusServiceUnavailable:
		return errStatus503
	case code == fasthttp.StatusGatewayTimeout:
		return errStatus504
	case code >= 500 && code < 600:
		return errStatus5xx
	case code >= 400 && code < 500:
		return errStatus4xx
	}
	return errStatusOther
}

// outcome is what one request came to.
type outcome struct {
	err errKind
	// latency is from when the request should have been sent (open loop:
	// its scheduled time, or its actual send time if that was earlier;
	// closed loop: its send time) to its answer.
	latency time.Duration
	// late is how long after its scheduled time the generator sent it
	// (open loop only).
	late time.Duration
	kind RequestKind
	// dc is the index of the datacenter that answered, -1 if unknown;
	// home the home continent of the request's bucket, origin the
	// continent it came from (-1: unknown).
	dc, home, origin int
	hits, misses     uint32
}

// recorder collects outcomes: per phase (totals and an HDR histogram of
// latency) and per timeline window (throughput and a coarser histogram,
// for plots). Phases are numbered from 0; outcomes of phase -1 (warm-up)
// go to the timeline only. Safe for concurrent use; a worker records into
// its own shard, so workers seldom share a lock.
type recorder struct {
	start  time.Time
	window time.Duration
	dcCont []int // datacenter index -> continent index
	ndc    int
	ncont  int
	shards [recorderShard]recShard
}

type recShard struct {
	mu      sync.Mutex
	phases  []*phaseStats
	windows []*windowStats
	_       [40]byte // keep neighbouring shards' locks off one cache line
}

// phaseStats are one phase's totals.
type phaseStats struct {
	requests     uint64
	errs         [numErrKinds]uint64
	byKind       [numKinds]uint64
	hist         *hdrhistogram.Histogram // latency, µs, good answers and errors alike
	late         *hdrhistogram.Histogram // generator lateness, µs (open loop)
	byDC         []uint64                // good answers per datacenter
	hitsDC       []uint64
	missesDC     []uint64
	firstDC      []int64 // unix ns of the first good answer from each datacenter, 0 none
	lastDC       []int64
	home         uint64 // good answers served on their bucket's home continent
	homeJudged   uint64 // good answers whose home continent and server are known
	origin       uint64 // good answers served on the continent they came from
	originJudged uint64
	unattributed uint64 // good answers without usable routing headers
	byOriginDC   [][]uint64
}

func newPhaseStats(ndc, ncont int) *phaseStats {
	p := &phaseStats{
		hist:     hdrhistogram.New(histMin, histMax, histDigits),
		late:     hdrhistogram.New(histMin, histMax, windowDigits),
		byDC:     make([]uint64, ndc),
		hitsDC:   make([]uint64, ndc),
		missesDC: make([]uint64, ndc),
		firstDC:  make([]int64, ndc),
		lastDC:   make([]int64, ndc),
	}
	p.byOriginDC = make([][]uint64, ncont)
	for i := range p.byOriginDC {
		p.byOriginDC[i] = make([]uint64, ndc)
	}
	return p
}

// windowStats are one timeline window's totals.
type windowStats struct {
	ok, errs uint64
	hist     *hdrhistogram.Histogram
}

// newRecorder records from start on, in timeline windows of window, for
// a topology whose datacenters are on the continents dcCont names (by
// index; ncont continents).
func newRecorder(start time.Time, window time.Duration, dcCont []int, ncont int) *recorder {
	return &recorder{start: start, window: max(window, time.Millisecond), dcCont: dcCont, ndc: len(dcCont), ncont: ncont}
}

// record adds o, answered at now, to phase (-1: timeline only) through
// worker's shard.
func (r *recorder) record(worker, phase int, o *outcome, now time.Time) {
	us := max(int64(o.latency/time.Microsecond), histMin)
	s := &r.shards[worker%recorderShard]
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := int(now.Sub(r.start) / r.window); w >= 0 {
		for len(s.windows) <= w {
			s.windows = append(s.windows, nil)
		}
		ws := s.windows[w]
		if ws == nil {
			ws = &windowStats{hist: hdrhistogram.New(histMin, histMax, windowDigits)}
			s.windows[w] = ws
		}
		if o.err == errNone {
			ws.ok++
		} else {
			ws.errs++
		}
		_ = ws.hist.RecordValue(min(us, histMax))
	}
	if phase < 0 {
		return
	}
	for len(s.phases) <= phase {
		s.phases = append(s.phases, nil)
	}
	p := s.phases[phase]
	if p == nil {
		p = newPhaseStats(r.ndc, r.ncont)
		s.phases[phase] = p
	}
	p.requests++
	p.errs[o.err]++
	p.byKind[o.kind]++
	_ = p.hist.RecordValue(min(us, histMax))
	if o.late > 0 {
		_ = p.late.RecordValue(min(max(int64(o.late/time.Microsecond), histMin), histMax))
	}
	if o.err != errNone {
		return
	}
	if o.dc < 0 || o.dc >= r.ndc {
		p.unattributed++
		return
	}
	p.byDC[o.dc]++
	p.hitsDC[o.dc] += uint64(o.hits)
	p.missesDC[o.dc] += uint64(o.misses)
	ns := now.UnixNano()
	if p.firstDC[o.dc] == 0 {
		p.firstDC[o.dc] = ns
	}
	p.lastDC[o.dc] = max(p.lastDC[o.dc], ns)
	served := r.dcCont[o.dc]
	if o.home >= 0 {
		p.homeJudged++
		if served == o.home {
			p.home++
		}
	}
	if o.origin >= 0 && o.origin < r.ncont {
		p.originJudged++
		if served == o.origin {
			p.origin++
		}
		p.byOriginDC[o.origin][o.dc]++
	}
}

// merged returns phase's totals over every shard (a fresh copy; zero
// counts if nothing was recorded in it).
func (r *recorder) merged(phase int) *phaseStats {
	out := newPhaseStats(r.ndc, r.ncont)
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if phase < len(s.phases) && s.phases[phase] != nil {
			out.add(s.phases[phase])
		}
		s.mu.Unlock()
	}
	return out
}

func (p *phaseStats) add(q *phaseStats) {
	p.requests += q.requests
	for k := range p.errs {
		p.errs[k] += q.errs[k]
	}
	for k := range p.byKind {
		p.byKind[k] += q.byKind[k]
	}
	p.hist.Merge(q.hist)
	p.late.Merge(q.late)
	for d := range p.byDC {
		p.byDC[d] += q.byDC[d]
		p.hitsDC[d] += q.hitsDC[d]
		p.missesDC[d] += q.missesDC[d]
		if f := q.firstDC[d]; f != 0 && (p.firstDC[d] == 0 || f < p.firstDC[d]) {
			p.firstDC[d] = f
		}
		p.lastDC[d] = max(p.lastDC[d], q.lastDC[d])
	}
	for o := range p.byOriginDC {
		for d := range p.byOriginDC[o] {
			p.byOriginDC[o][d] += q.byOriginDC[o][d]
		}
	}
	p.home += q.home
	p.homeJudged += q.homeJudged
	p.origin += q.origin
	p.originJudged += q.originJudged
	p.unattributed += q.unattributed
}

// errors is the number of failed requests.
func (p *phaseStats) errors() uint64 { return p.requests - p.errs[errNone] }

// counts returns phase's request and error counts, cheaply (no
// histograms), for progress displays.
func (r *recorder) counts(phase int) (requests, errs uint64) {
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if phase < len(s.phases) && s.phases[phase] != nil {
			p := s.phases[phase]
			requests += p.requests
			errs += p.requests - p.errs[errNone]
		}
		s.mu.Unlock()
	}
	return requests, errs
}

// windowAt returns timeline window w merged over the shards; nil if
// nothing was recorded in it.
func (r *recorder) windowAt(w int) *windowStats {
	var out *windowStats
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if w < len(s.windows) && s.windows[w] != nil {
			if out == nil {
				out = &windowStats{hist: hdrhistogram.New(histMin, histMax, windowDigits)}
			}
			out.ok += s.windows[w].ok
			out.errs += s.windows[w].errs
			out.hist.Merge(s.windows[w].hist)
		}
		s.mu.Unlock()
	}
	return out
}

// windows returns how many timeline windows have been recorded into.
func (r *recorder) windows() int {
	n := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		n = max(n, len(s.windows))
		s.mu.Unlock()
	}
	return n
}

// timeline returns the windows recorded before end, for plots and
// reports; empty windows have zero counts. A last window cut short by end
// is kept, with its real length, if it covers at least half a window.
func (r *recorder) timeline(end time.Time) []Window {
	n := r.windows()
	last := time.Duration(0) // length of a partial last window
	if !end.IsZero() {
		span := end.Sub(r.start)
		full := int(span / r.window)
		n = min(n, full)
		if rest := span - time.Duration(full)*r.window; rest >= r.window/2 && r.windows() > full {
			n, last = full+1, rest
		}
	}
	out := make([]Window, 0, n)
	for w := range n {
		win := Window{Start: (time.Duration(w) * r.window).Seconds(), Seconds: r.window.Seconds()}
		if w == n-1 && last > 0 {
			win.Seconds = last.Seconds()
		}
		if ws := r.windowAt(w); ws != nil {
			win.OK, win.Errors = ws.ok, ws.errs
			win.P50 = usToMS(ws.hist.ValueAtQuantile(50))
			win.P90 = usToMS(ws.hist.ValueAtQuantile(90))
			win.P99 = usToMS(ws.hist.ValueAtQuantile(99))
			win.Max = usToMS(ws.hist.Max())
		}
		out = append(out, win)
	}
	return out
}

func usToMS(us int64) float64 { return float64(us) / 1000 }
