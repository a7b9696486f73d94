package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/proxy"
	"github.com/valyala/fasthttp"
)

// Response headers socialroute adds (routing.response_headers, on by
// default): the bucket of the request's user and the datacenter that served
// it.
const (
	headerBucket = "X-Socialroute-Bucket"
	headerDC     = "X-Socialroute-Dc"
	headerUser   = "X-User-ID"
)

// DefaultRequestTimeout bounds one request of the load generator, so that
// a stalled proxy cannot stall a worker forever.
const DefaultRequestTimeout = 5 * time.Second

// requestHost is the Host header of generated requests.
const requestHost = "socialroute.loadtest"

// Target is a proxy the load goes to, and the continent whose clients it
// takes ("" for clients of any continent).
type Target struct {
	Continent string `json:"continent,omitempty"`
	Addr      string `json:"addr"`
}

// ParseTargets reads "host:port[,host:port...]" or "us=host:port,eu=host:port".
func ParseTargets(s string) ([]Target, error) {
	var out []Target
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var t Target
		if c, addr, ok := strings.Cut(part, "="); ok {
			t = Target{Continent: strings.TrimSpace(c), Addr: strings.TrimSpace(addr)}
		} else {
			t.Addr = part
		}
		if _, _, err := net.SplitHostPort(t.Addr); err != nil {
			return nil, fmt.Errorf("loadtest: target %q: want host:port or continent=host:port", part)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, errors.New("loadtest: no target")
	}
	return out, nil
}

// placement is what judging an answer needs: the topology's datacenters
// and continents by index, and the home continent of a bucket in the
// routing state in force when the answer came.
type placement struct {
	names       []string       // datacenter index -> name
	dcIndex     map[string]int // datacenter name -> index
	dcContinent []int          // datacenter index -> continent index
	capacity    []float64      // datacenter index -> capacity
	continents  []string       // continent index -> name
	// home returns bucket b's home continent index, false if b is not a
	// bucket.
	home func(b uint32) (int, bool)
}

// placementOf reads srv's topology, and its bucket map live.
func placementOf(srv *proxy.Server) *placement {
	topo := srv.Placement().Load().Topology()
	p := &placement{dcIndex: map[string]int{}}
	for _, c := range topo.Continents {
		p.continents = append(p.continents, c.Name)
	}
	for i, d := range topo.Datacenters {
		ci, _ := topo.ContinentIndex(d.Continent)
		p.names = append(p.names, d.Name)
		p.dcIndex[d.Name] = i
		p.dcContinent = append(p.dcContinent, ci)
		p.capacity = append(p.capacity, d.Capacity)
	}
	p.home = func(b uint32) (int, bool) {
		s := srv.Placement().Load()
		if b >= s.Buckets() {
			return 0, false
		}
		return s.Home(b), true
	}
	return p
}

// continentIndex returns the index of the named continent, -1 if unknown.
func (p *placement) continentIndex(name string) int {
	for i, c := range p.continents {
		if c == name {
			return i
		}
	}
	return -1
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

// judge fills o from an answer (or err): the error kind, and for a good
// answer the datacenter that served it, the home continent of its bucket
// and the cache counts the web tier reported.
func (p *placement) judge(resp *fasthttp.Response, err error, o *outcome) {
	o.dc, o.home, o.hits, o.misses = -1, -1, 0, 0
	switch {
	case err != nil:
		o.err = classifyTransport(err)
		return
	case resp.StatusCode() != fasthttp.StatusOK:
		o.err = classifyStatus(resp.StatusCode())
		return
	}
	h := &resp.Header
	dcName, servedBy := h.Peek(headerDC), h.Peek(HeaderServedBy)
	if len(dcName) > 0 && len(servedBy) > 0 && !bytes.Equal(dcName, servedBy) {
		o.err = errMismatch
		return
	}
	o.err = errNone
	if len(dcName) == 0 {
		dcName = servedBy
	}
	if dc, ok := p.dcIndex[string(dcName)]; ok { // no allocation: a map lookup by converted bytes
		o.dc = dc
	}
	if b, ok := parseBucket(h.Peek(headerBucket)); ok {
		if home, ok := p.home(b); ok {
			o.home = home
		}
	}
	if v, ok := parseUint(h.Peek(HeaderCacheHits)); ok {
		o.hits = uint32(min(v, 1<<31))
	}
	if v, ok := parseUint(h.Peek(HeaderCacheMisses)); ok {
		o.misses = uint32(min(v, 1<<31))
	}
}

// sender turns workload requests into HTTP requests to the targets, one
// keep-alive connection pool per target, and judges the answers.
type sender struct {
	wl      *Workload
	place   *placement
	timeout time.Duration
	// byOrigin lists, per workload origin, the clients of the targets
	// that take its requests; originCont is its continent index (-1).
	byOrigin   [][]*fasthttp.HostClient
	originCont []int
	clients    []*fasthttp.HostClient
	rr         atomic.Uint64
}

// newSender connects the workload's origins to targets: an origin's
// requests go to the targets of its continent, or to the targets of no
// continent, or, if there are neither, to every target. maxConns bounds
// each target's connections.
func newSender(wl *Workload, p *placement, targets []Target, maxConns int, timeout time.Duration) (*sender, error) {
	if len(targets) == 0 {
		return nil, errors.New("loadtest: no target")
	}
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	s := &sender{wl: wl, place: p, timeout: timeout}
	dialer := &net.Dialer{Timeout: time.Second}
	for _, t := range targets {
		s.clients = append(s.clients, &fasthttp.HostClient{
			Addr:               t.Addr,
			Name:               "socialroute-loadtest",
			MaxConns:           max(maxConns, 1),
			MaxConnWaitTimeout: timeout,
			ReadTimeout:        timeout,
			WriteTimeout:       timeout,
			// One attempt per request: a failure the proxy lets through
			// must show in the report, not be papered over by the client.
			MaxIdemponentCallAttempts: 1,
			Dial:                      func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) },
		})
	}
	for _, o := range wl.Origins() {
		var mine, any []*fasthttp.HostClient
		for i, t := range targets {
			switch t.Continent {
			case o.Continent:
				mine = append(mine, s.clients[i])
			case "":
				any = append(any, s.clients[i])
			}
		}
		switch {
		case len(mine) > 0:
		case len(any) > 0:
			mine = any
		default:
			mine = s.clients
		}
		s.byOrigin = append(s.byOrigin, mine)
		s.originCont = append(s.originCont, p.continentIndex(o.Continent))
	}
	return s, nil
}

// sendBuf is one worker's reusable request state.
type sendBuf struct {
	req  fasthttp.Request
	resp fasthttp.Response
	path []byte
	val  []byte
	wr   Request
}

// do sends request seq, due at due, and fills o. Latency is measured from
// due, or from the actual send if that was earlier (an open-loop request
// sent a little ahead of its time).
func (s *sender) do(b *sendBuf, seq uint64, due time.Time, o *outcome) {
	s.wl.Request(seq, &b.wr)
	r := &b.wr
	b.path = r.AppendPath(b.path[:0])
	b.req.Reset()
	b.req.Header.SetHost(requestHost)
	b.req.SetRequestURIBytes(b.path)
	b.val = strconv.AppendUint(b.val[:0], r.Viewer, 10)
	b.req.Header.SetBytesV(headerUser, b.val)
	b.resp.Reset()
	clients := s.byOrigin[r.Origin]
	c := clients[0]
	if len(clients) > 1 {
		c = clients[s.rr.Add(1)%uint64(len(clients))]
	}
	sent := time.Now()
	err := c.DoTimeout(&b.req, &b.resp, s.timeout)
	done := time.Now()
	from := due
	o.late = 0
	if sent.Before(due) {
		from = sent
	} else {
		o.late = sent.Sub(due)
	}
	o.latency = done.Sub(from)
	o.kind = r.Kind
	o.origin = s.originCont[r.Origin]
	s.place.judge(&b.resp, err, o)
}

// close closes the pooled connections.
func (s *sender) close() {
	for _, c := range s.clients {
		c.CloseIdleConnections()
	}
}
