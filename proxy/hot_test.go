package proxy

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/valyala/fasthttp"
)

// withHotFile writes a hot-account file and points the config at it.
func withHotFile(t *testing.T, lines string, mutate func(*configs.Config)) func(*configs.Config) {
	path := filepath.Join(t.TempDir(), "hot.csv")
	if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(c *configs.Config) {
		c.Hot.File = path
		c.Hot.FollowersPerBucket = 1_000_000
		c.Hot.DetectRate = -1 // static list only
		if mutate != nil {
			mutate(c)
		}
	}
}

func spreadOf(r *fasthttp.Response) string { return string(r.Header.Peek(headerSpread)) }

// A listed hot account is spread over exactly its k siblings, all homed on
// its own continent; a viewer keeps to one of them.
func TestStaticHotAccountSpreadsOverExactlyItsSiblings(t *testing.T) {
	h := newHarness(t, withHotFile(t, "user,followers\nstar,5000000\n", nil))
	snap := h.srv.Placement().Load()
	hs := hashing.HashString("star")
	own, _ := h.srv.Router().assigner.Bucket(hs)
	home := snap.Home(own)
	want := map[uint32]bool{}
	for i := range 5 {
		want[snap.HotSibling(own, hs, i, 5, false)] = true
	}
	got := map[uint32]bool{}
	for range 400 {
		r := h.do("GET", "/accounts/star/media", nil)
		b := bucketOf(t, r)
		if !want[b] {
			t.Fatalf("star served from bucket %d, not one of its siblings %v", b, want)
		}
		if snap.Home(b) != home {
			t.Fatalf("sibling bucket %d left star's home continent", b)
		}
		if s := spreadOf(r); !strings.HasSuffix(s, "/5") {
			t.Fatalf("X-Socialroute-Spread %q, want i/5", s)
		}
		got[b] = true
	}
	if len(got) != len(want) {
		t.Fatalf("400 anonymous requests used %d of star's %d siblings", len(got), len(want))
	}
	// A viewer sticks to one sibling.
	for v := range 20 {
		viewer := func(r *fasthttp.Request) { r.Header.Set("X-User-ID", "viewer-"+strconv.Itoa(v)) }
		first := bucketOf(t, h.do("GET", "/accounts/star", viewer))
		for range 5 {
			if b := bucketOf(t, h.do("GET", "/accounts/star", viewer)); b != first {
				t.Fatalf("viewer %d moved from sibling bucket %d to %d", v, first, b)
			}
		}
	}
	// Writes are not spread: they go to star's own bucket, whose home owns
	// its data and whose write plan keeps a move's fence.
	for _, method := range []string{"POST", "PUT", "DELETE"} {
		for range 20 {
			r := h.do(method, "/accounts/star/media", nil)
			if b := bucketOf(t, r); b != own || spreadOf(r) != "" {
				t.Fatalf("%s for star went to bucket %d (spread %q), want its own bucket %d, not spread", method, b, spreadOf(r), own)
			}
		}
	}
	// Someone else is not spread.
	if r := h.do("GET", "/accounts/nobody", nil); spreadOf(r) != "" {
		t.Fatalf("a cold account was spread: %q", spreadOf(r))
	}
	e := h.srv.Explain(func() *fasthttp.Request {
		var req fasthttp.Request
		req.SetRequestURI("/accounts/star")
		return &req
	}())
	if e.Spread != 5 || !strings.Contains(e.Why, "hot key spread over 5 buckets") {
		t.Fatalf("explain: spread %d, why %q", e.Spread, e.Why)
	}
}

// A key no list names becomes hot under load within a bounded number of
// its requests, is spread while hot, and is demoted once it cools.
func TestDetectedHotKeyIsSpreadThenDemoted(t *testing.T) {
	h := newHarness(t, func(c *configs.Config) {
		c.Hot.DetectRate = 200
		c.Hot.DetectTick = 100 * time.Millisecond // promoted after about 20 of its requests
		c.Hot.MaxSpread = 4
	})
	sent := 0
	for {
		r := h.do("GET", "/accounts/viral", nil)
		sent++
		h.do("GET", "/accounts/"+strconv.Itoa(rand.IntN(1_000_000)), nil)
		if spreadOf(r) != "" {
			break
		}
		if sent > 500 {
			t.Fatal("viral not detected after 500 of its requests")
		}
	}
	t.Logf("detected after %d requests", sent)
	_, detected := h.srv.HotKeys()
	if len(detected) != 1 || detected[0].Key != "viral" {
		t.Fatalf("detected %+v", detected)
	}
	// It cools: no more requests. Three ticks under the demotion rate and
	// a few halvings later it is no longer spread.
	deadline := time.Now().Add(5 * time.Second)
	for spreadOf(h.do("GET", "/accounts/viral", nil)) != "" {
		if time.Now().After(deadline) {
			t.Fatal("viral never demoted")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The load scenario of the hot-account issue: one account receives 30% of
// all requests. Datacenter load within the account's continent, relative
// to capacity, is even with spreading (max/mean at most 1.25) and lopsided
// without. Routing decisions only: no network, no clock.
func TestOneAccountWithThirtyPercentOfRequestsIsSpreadEvenly(t *testing.T) {
	even := hotScenario(t, 64)
	lopsided := hotScenario(t, 1)
	t.Logf("max/mean datacenter utilization on the hot account's continent: %.3f spread over 64 buckets, %.3f without spreading", even, lopsided)
	for _, k := range []int{4, 8, 16, 32} {
		t.Logf("  spread over %2d buckets: %.3f", k, hotScenario(t, k))
	}
	if even > 1.25 {
		t.Fatalf("with spreading max/mean = %.3f, want at most 1.25", even)
	}
	if lopsided < 1.5 {
		t.Fatalf("without spreading max/mean = %.3f: the scenario is not hot enough to prove anything", lopsided)
	}
}

// hotScenario routes 200,000 requests on the two-continent topology, 30% of
// them for one account spread over up to spread buckets (1: not spread), and
// returns max/mean utilization (requests per unit
// of capacity) of the account's home continent's datacenters.
func hotScenario(t *testing.T, spread int) float64 {
	cfg, err := configs.Example("two-continents.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hot.DetectRate = -1
	if spread > 1 {
		dir := t.TempDir()
		cfg.Hot.File = filepath.Join(dir, "hot.csv")
		cfg.Hot.FollowersPerBucket = 1_000_000
		cfg.Hot.MaxSpread = spread
		if err := os.WriteFile(cfg.Hot.File, []byte("star,300000000\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(cfg, nil, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r := srv.Router()
	snap := srv.Placement().Load()
	rng := rand.New(rand.NewPCG(1, 2))
	perDC := make([]float64, len(cfg.Datacenters))
	var d Decision
	star := []byte("star")
	for range 200_000 {
		viewer := []byte(strconv.Itoa(rng.IntN(1_000_000)))
		if rng.Float64() < 0.3 {
			r.RouteMethod(star, viewer, false, &d)
		} else {
			r.RouteMethod(viewer, viewer, false, &d)
		}
		perDC[d.DC()]++
	}
	own, _ := r.assigner.Bucket(hashing.HashString("star"))
	home := snap.Topology().Continents[snap.Home(own)].Name
	var utils []float64
	for i, dc := range cfg.Datacenters {
		if dc.Continent == home {
			utils = append(utils, perDC[i]/dc.Capacity)
		}
	}
	mean := 0.0
	for _, u := range utils {
		mean += u
	}
	mean /= float64(len(utils))
	return slices.Max(utils) / mean
}

// A hot account's spread reads are its fans', served from its siblings:
// they say nothing of where its bucket's own users are, so the placement
// advisor's counts leave them out (counted against the sibling that served
// them, they moved buckets whose users never asked). Its writes, which go
// to its own bucket, count there.
func TestSpreadReadsAreNotCountedForPlacement(t *testing.T) {
	h := newHarness(t, withHotFile(t, "user,followers\nstar,5000000\n", func(c *configs.Config) {
		c.Node.Datacenter = "eu-a"
		c.Placement.StatsTick = time.Hour // no decay during the test
	}))
	own, _ := h.srv.Router().assigner.Bucket(hashing.HashString("star"))
	for range 40 {
		if r := h.do("GET", "/accounts/star/media", nil); !strings.HasSuffix(spreadOf(r), "/5") {
			t.Fatalf("a read of star: spread %q, want i/5", spreadOf(r))
		}
	}
	for range 10 {
		h.do("POST", "/accounts/star/media", nil)
	}
	a := h.srv.placer.access.Load()
	total := uint32(0)
	for b := range a.Buckets() {
		for c := range a.Continents() {
			total += a.Count(b, c)
		}
	}
	if n := a.Count(own, 1); n != 10 || total != 10 {
		t.Fatalf("counted %d requests for star's bucket from eu and %d in all; want its 10 writes only", n, total)
	}
}
