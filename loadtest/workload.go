package loadtest

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/socialroute/socialroute/hashing"
)

// Defaults of WorkloadOptions.
const (
	// DefaultFeedShare, DefaultProfileShare and DefaultHotShare are the
	// request mix: most requests are users reading their feed (keyed by
	// the viewer), some look at an account they follow (keyed by that
	// account), a few at one of the most followed accounts.
	DefaultFeedShare    = 0.80
	DefaultProfileShare = 0.15
	DefaultHotShare     = 0.05
	// DefaultHotAccounts is how many of the most followed accounts the
	// hot requests go to.
	DefaultHotAccounts = 100
)

// RequestKind is what a generated request asks for.
type RequestKind uint8

const (
	// KindFeed is GET /users/{viewer}/feed: routed by the viewer; the web
	// tier reads the viewer's data and that of every account it follows.
	KindFeed RequestKind = iota
	// KindProfile is GET /accounts/{account}/profile for an account the
	// viewer follows, with X-User-ID: {viewer}: routed by the account;
	// the web tier reads the account's data.
	KindProfile
	// KindHot is KindProfile for one of the most followed accounts.
	KindHot
	numKinds
)

func (k RequestKind) String() string {
	return [...]string{"feed", "profile", "hot"}[k]
}

// Mix is the share of each kind of request; shares need not add up to 1
// (they are normalised) but must not be negative, and one must be positive.
type Mix struct {
	Feed    float64 `json:"feed"`
	Profile float64 `json:"profile"`
	Hot     float64 `json:"hot"`
}

// DefaultMix is the request mix of a zero WorkloadOptions.
var DefaultMix = Mix{Feed: DefaultFeedShare, Profile: DefaultProfileShare, Hot: DefaultHotShare}

// ParseMix reads "feed=0.8,profile=0.15,hot=0.05"; kinds left out get 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	shares, err := parseShares(s)
	if err != nil {
		return m, fmt.Errorf("loadtest: mix: %w", err)
	}
	for _, sh := range shares {
		switch sh.name {
		case "feed":
			m.Feed = sh.share
		case "profile":
			m.Profile = sh.share
		case "hot":
			m.Hot = sh.share
		default:
			return m, fmt.Errorf("loadtest: mix: unknown kind %q (want feed, profile, hot)", sh.name)
		}
	}
	return m, m.validate()
}

func (m Mix) validate() error {
	if m.Feed < 0 || m.Profile < 0 || m.Hot < 0 || math.IsNaN(m.Feed+m.Profile+m.Hot) {
		return errors.New("loadtest: mix: shares must not be negative")
	}
	if m.Feed+m.Profile+m.Hot <= 0 {
		return errors.New("loadtest: mix: at least one share must be positive")
	}
	return nil
}

func (m Mix) String() string {
	t := m.Feed + m.Profile + m.Hot
	return fmt.Sprintf("feed=%.2f,profile=%.2f,hot=%.2f", m.Feed/t, m.Profile/t, m.Hot/t)
}

// Origin is a continent clients send requests from, and its share of the
// requests.
type Origin struct {
	Continent string  `json:"continent"`
	Share     float64 `json:"share"`
}

// ParseOrigins reads "us=0.66,eu=0.34".
func ParseOrigins(s string) ([]Origin, error) {
	shares, err := parseShares(s)
	if err != nil {
		return nil, fmt.Errorf("loadtest: origins: %w", err)
	}
	out := make([]Origin, len(shares))
	for i, sh := range shares {
		out[i] = Origin{Continent: sh.name, Share: sh.share}
	}
	return out, validateOrigins(out)
}

func validateOrigins(os []Origin) error {
	total := 0.0
	seen := map[string]bool{}
	for _, o := range os {
		if o.Continent == "" || seen[o.Continent] {
			return fmt.Errorf("loadtest: origins: continent %q empty or listed twice", o.Continent)
		}
		seen[o.Continent] = true
		if !(o.Share >= 0) || math.IsInf(o.Share, 0) {
			return fmt.Errorf("loadtest: origins: share of %s must be a non-negative number", o.Continent)
		}
		total += o.Share
	}
	if len(os) > 0 && total <= 0 {
		return errors.New("loadtest: origins: at least one share must be positive")
	}
	return nil
}

type namedShare struct {
	name  string
	share float64
}

// parseShares reads "a=0.5,b=0.5".
func parseShares(s string) ([]namedShare, error) {
	var out []namedShare
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want name=share", part)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("%q: share is not a number", part)
		}
		out = append(out, namedShare{strings.TrimSpace(name), f})
	}
	if len(out) == 0 {
		return nil, errors.New("empty")
	}
	return out, nil
}

// WorkloadOptions configure NewWorkload. The zero value is the default
// workload with seed 0.
type WorkloadOptions struct {
	// Seed makes the requests: request i of a workload is a function of
	// the graph, the options and i only, so two runs with the same seed
	// send the same requests.
	Seed uint64
	// Mix is the share of each kind of request. Default DefaultMix.
	Mix Mix
	// HotAccounts is how many of the most followed accounts KindHot
	// requests go to (uniformly). Default DefaultHotAccounts; it is
	// capped at the number of users.
	HotAccounts int
	// Origins are the continents requests come from and their shares. An
	// empty list means one unnamed origin.
	Origins []Origin
}

// Workload generates requests from a follower graph: viewers are drawn
// uniformly from the graph's users; what they ask for follows the mix; the
// continent each request comes from follows the origins. It is immutable
// and safe for concurrent use.
type Workload struct {
	g        *hashing.Graph
	seed     uint64
	mix      Mix
	kindCum  [numKinds]float64 // cumulative shares, normalised
	hot      []uint32          // graph indexes of the hot accounts, most followed first
	origins  []Origin
	origCum  []float64
	hotFollw []int // followers of each hot account, by position in hot
}

// NewWorkload makes a workload over g.
func NewWorkload(g *hashing.Graph, o WorkloadOptions) (*Workload, error) {
	if g == nil || g.Users() == 0 {
		return nil, errors.New("loadtest: workload: the graph has no users")
	}
	if o.Mix == (Mix{}) {
		o.Mix = DefaultMix
	}
	if err := o.Mix.validate(); err != nil {
		return nil, err
	}
	if o.HotAccounts == 0 {
		o.HotAccounts = DefaultHotAccounts
	}
	if o.HotAccounts < 0 {
		return nil, fmt.Errorf("loadtest: workload: HotAccounts must not be negative, got %d", o.HotAccounts)
	}
	if err := validateOrigins(o.Origins); err != nil {
		return nil, err
	}
	w := &Workload{g: g, seed: o.Seed, mix: o.Mix, origins: slices.Clone(o.Origins)}
	total := o.Mix.Feed + o.Mix.Profile + o.Mix.Hot
	w.kindCum[KindFeed] = o.Mix.Feed / total
	w.kindCum[KindProfile] = (o.Mix.Feed + o.Mix.Profile) / total
	w.kindCum[KindHot] = 1
	if len(w.origins) == 0 {
		w.origins = []Origin{{Continent: "", Share: 1}}
	}
	sum := 0.0
	for _, or := range w.origins {
		sum += or.Share
	}
	acc := 0.0
	for _, or := range w.origins {
		acc += or.Share / sum
		w.origCum = append(w.origCum, acc)
	}
	w.origCum[len(w.origCum)-1] = 1
	w.hot, w.hotFollw = mostFollowed(g, min(o.HotAccounts, g.Users()))
	return w, nil
}

// mostFollowed returns the k most followed users' indexes (ties: lower
// index first) and their follower counts.
func mostFollowed(g *hashing.Graph, k int) ([]uint32, []int) {
	idx := make([]uint32, g.Users())
	for i := range idx {
		idx[i] = uint32(i)
	}
	slices.SortFunc(idx, func(a, b uint32) int {
		if c := cmp.Compare(len(g.Followers(int(b))), len(g.Followers(int(a)))); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	idx = slices.Clip(idx[:k])
	f := make([]int, k)
	for i, u := range idx {
		f[i] = len(g.Followers(int(u)))
	}
	return idx, f
}

// Graph returns the workload's graph.
func (w *Workload) Graph() *hashing.Graph { return w.g }

// Origins returns the origins, normalised so the shares add up to 1.
func (w *Workload) Origins() []Origin {
	out := make([]Origin, len(w.origins))
	prev := 0.0
	for i, o := range w.origins {
		out[i] = Origin{Continent: o.Continent, Share: w.origCum[i] - prev}
		prev = w.origCum[i]
	}
	return out
}

// Mix returns the request mix.
func (w *Workload) Mix() Mix { return w.mix }

// HotAccounts returns the ids of the hot accounts, most followed first,
// and their follower counts.
func (w *Workload) HotAccounts() (ids []uint64, followers []int) {
	ids = make([]uint64, len(w.hot))
	for i, u := range w.hot {
		ids[i] = w.g.ID(int(u))
	}
	return ids, slices.Clone(w.hotFollw)
}

// Request is one generated request.
type Request struct {
	Kind RequestKind
	// Viewer is the user making the request.
	Viewer uint64
	// Account is the account a KindProfile or KindHot request is about.
	Account uint64
	// Origin is the index in Origins of the continent it comes from.
	Origin int
}

// Key is the routing key the proxy should find: the viewer for a feed,
// the account otherwise.
func (r *Request) Key() uint64 {
	if r.Kind == KindFeed {
		return r.Viewer
	}
	return r.Account
}

// AppendPath appends the request's path to b.
func (r *Request) AppendPath(b []byte) []byte {
	if r.Kind == KindFeed {
		b = append(b, "/users/"...)
		b = strconv.AppendUint(b, r.Viewer, 10)
		return append(b, "/feed"...)
	}
	b = append(b, "/accounts/"...)
	b = strconv.AppendUint(b, r.Account, 10)
	return append(b, "/profile"...)
}

// Request fills r with request number i of the workload. It does not
// allocate.
func (w *Workload) Request(i uint64, r *Request) {
	rnd := newSeqRand(w.seed, i)
	n := w.g.Users()
	viewer := int(rnd.below(uint64(n)))
	*r = Request{Viewer: w.g.ID(viewer)}
	x := rnd.float()
	switch {
	case x < w.kindCum[KindFeed]:
		r.Kind = KindFeed
	case x < w.kindCum[KindProfile] || len(w.hot) == 0:
		r.Kind = KindProfile
		if f := w.g.Following(viewer); len(f) > 0 {
			r.Account = w.g.ID(int(f[rnd.below(uint64(len(f)))]))
		} else {
			r.Account = w.g.ID(int(rnd.below(uint64(n))))
		}
	default:
		r.Kind = KindHot
		r.Account = w.g.ID(int(w.hot[rnd.below(uint64(len(w.hot)))]))
	}
	y := rnd.float()
	for o, c := range w.origCum {
		if y < c || o == len(w.origCum)-1 {
			r.Origin = o
			break
		}
	}
}

// seqRand is a splitmix64 stream seeded by (seed, sequence number): each
// request draws from its own stream, so requests do not depend on which
// worker sends them or in what order.
type seqRand struct{ state uint64 }

func newSeqRand(seed, i uint64) seqRand {
	return seqRand{state: splitmix(seed^0x6c6f6164) ^ splitmix(i+0x9e3779b97f4a7c15)}
}

func splitmix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *seqRand) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	return splitmix(r.state)
}

// below returns a uniform value in [0, n), n > 0 (Lemire's multiply-shift;
// its bias, n/2^64, is far below anything measurable here).
func (r *seqRand) below(n uint64) uint64 {
	hi, _ := bits.Mul64(r.next(), n)
	return hi
}

// float returns a uniform value in [0, 1).
func (r *seqRand) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// GenerateFollowerGraph generates a follower graph with GenerateGraph and
// reads it into memory, streaming: it never holds the edge list as text.
func GenerateFollowerGraph(o GraphOptions) (*hashing.Graph, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(GenerateGraph(pw, o)) }()
	g, _, err := hashing.ReadEdgeList(pr, hashing.EdgeListOptions{})
	pr.CloseWithError(errors.New("loadtest: graph reader stopped")) // unblocks the writer after a read error
	if err != nil {
		return nil, fmt.Errorf("loadtest: generated graph: %w", err)
	}
	return g, nil
}

// LoadFollowerGraph reads a follower graph edge list (plain or gzip; see
// hashing.ReadEdgeList): "follower followee" per line, or mutual edges
// with undirected.
func LoadFollowerGraph(path string, undirected bool) (*hashing.Graph, error) {
	g, _, err := hashing.LoadEdgeList(path, hashing.EdgeListOptions{Undirected: undirected})
	if err != nil {
		return nil, fmt.Errorf("loadtest: %w", err)
	}
	return g, nil
}
