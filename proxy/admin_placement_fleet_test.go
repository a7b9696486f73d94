package proxy

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/health"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// moveFleet is several proxy nodes in front of one shared simulated web
// tier. Bucket-map versions a node makes reach the others late (0-20ms,
// the last node 300ms more) and in any order, as gossip delivers them; Members reports the version
// each node routes by, as gossip's metadata does.
type moveFleet struct {
	t     *testing.T
	nodes []*Server
	cont  []string // each node's continent
	lns   []*fasthttputil.InmemoryListener
	dials map[string]*fasthttputil.InmemoryListener

	mu     sync.Mutex
	writes map[uint32][]string // per bucket: the continent of each write the web tier took, in order
}

func (f *moveFleet) ShareAccess(health.AccessReport) {}
func (f *moveFleet) FleetAccess(time.Duration) (health.AccessReport, int) {
	return health.AccessReport{}, 0
}

func (f *moveFleet) Members() []health.Member {
	var out []health.Member
	for i, s := range f.nodes {
		s.placer.mu.Lock()
		auto := s.placer.opts.AutoApply
		s.placer.mu.Unlock()
		snap := s.Placement().Load()
		out = append(out, health.Member{Name: "node-" + strconv.Itoa(i), NodeState: "serving", MapVersion: snap.Version(), MapOrigin: snap.Origin(), AutoApply: &auto})
	}
	return out
}

func newMoveFleet(t *testing.T, dcs []string) *moveFleet {
	f := &moveFleet{t: t, dials: map[string]*fasthttputil.InmemoryListener{}, writes: map[uint32][]string{}}
	base := testConfig(t, nil)
	for _, d := range base.Datacenters {
		for _, addr := range d.Upstreams {
			ln := fasthttputil.NewInmemoryListener()
			dc := d.Name
			srv := &fasthttp.Server{Logger: quiet{}, Handler: func(ctx *fasthttp.RequestCtx) {
				if !ctx.IsGet() {
					b, _ := strconv.Atoi(string(ctx.Request.Header.Peek(headerBucket)))
					f.mu.Lock()
					f.writes[uint32(b)] = append(f.writes[uint32(b)], dc[:2])
					f.mu.Unlock()
				}
				ctx.SetBodyString("ok from " + dc)
			}}
			go srv.Serve(ln) //nolint:errcheck // ends with Close
			t.Cleanup(func() { ln.Close() })
			f.dials[addr] = ln
		}
	}
	for i, dc := range dcs {
		cfg := testConfig(t, func(c *configs.Config) {
			c.Node.Name, c.Node.Datacenter = "node-"+strconv.Itoa(i), dc
			// Longer than any write in flight here, with room for a 2-core CI
			// machine running other packages' tests alongside.
			c.Placement.FenceSettle = 200 * time.Millisecond
		})
		i := i
		s, err := New(cfg, nil, Options{
			Logger: slog.New(slog.DiscardHandler),
			Dial:   func(addr string) (net.Conn, error) { return f.dials[addr].Dial() },
			Fleet:  f,
			OnPlacementChange: func(snap *buckets.Snapshot) {
				for j, other := range f.nodes {
					if j == i {
						continue
					}
					lag := time.Duration(rand.IntN(20)) * time.Millisecond
					if j == len(dcs)-1 {
						// The last node adopts late, later than fence_settle
						// after the fence: a cutover that waited for this
						// node's fence alone, not every node's, would let it
						// send writes to the old home after the new took some.
						lag += 300 * time.Millisecond
					}
					go func() {
						time.Sleep(lag)
						other.AdoptPlacement(snap.Version(), snap.Origin(), snap.Overrides()) //nolint:errcheck // same topology
					}()
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ln := fasthttputil.NewInmemoryListener()
		go s.Serve(ln) //nolint:errcheck // ends with Close
		t.Cleanup(func() { ln.Close() })
		f.nodes = append(f.nodes, s)
		f.cont = append(f.cont, dc[:2])
		f.lns = append(f.lns, ln)
	}
	return f
}

func (f *moveFleet) client(i int) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: "proxy.test", Dial: func(string) (net.Conn, error) { return f.lns[i].Dial() }, ReadTimeout: 5 * time.Second}
}

// A move of eight buckets whose users are in the EU, under load through
// three nodes (one US, two EU): no bucket's writes ever go to one home
// after the other has taken some (so never to two at once), no read
// fails, and the share of the EU users' requests served in the EU rises
// from none to all.
func TestFleetMoveUnderLoad(t *testing.T) {
	f := newMoveFleet(t, []string{"us-a", "eu-a", "eu-b"})
	snap := f.nodes[0].Placement().Load()
	// Eight US-homed buckets and one user in each.
	var moving []uint32
	users := map[uint32]string{}
	for id := 0; len(moving) < 8; id++ {
		var d Decision
		key := []byte(strconv.Itoa(id))
		f.nodes[0].Router().route(key, hashKey(key), nil, &d, false, false)
		if _, seen := users[d.Bucket]; !seen && snap.Home(d.Bucket) == 0 {
			users[d.Bucket] = strconv.Itoa(id)
			moving = append(moving, d.Bucket)
		}
	}

	var (
		stop                   atomic.Bool
		reads, readFails       atomic.Int64
		writes, writeRefused   atomic.Int64
		localBefore, allBefore atomic.Int64
		localAfter, allAfter   atomic.Int64
		phase                  atomic.Int32 // 0 before, 1 moving, 2 after
		wg                     sync.WaitGroup
	)
	for w := range 6 {
		wg.Go(func() {
			node := 1 + w%2 // EU users reach the EU nodes
			c := f.client(node)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for i := 0; !stop.Load(); i++ {
				b := moving[(w+i)%len(moving)]
				req.Reset()
				req.SetRequestURI("http://proxy.test/feed")
				req.Header.Set("X-User-ID", users[b])
				write := i%5 == 0
				if write {
					req.Header.SetMethod("POST")
				}
				p := phase.Load()
				if err := c.Do(req, resp); err != nil {
					t.Errorf("request: %v", err)
					return
				}
				code := resp.StatusCode()
				switch {
				case !write:
					reads.Add(1)
					if code != 200 {
						readFails.Add(1)
					}
				case code == 503:
					writeRefused.Add(1) // fenced: the client retries later
				default:
					writes.Add(1)
				}
				if code == 200 {
					local := int64(0)
					if string(resp.Header.Peek(headerDC))[:2] == f.cont[node] {
						local = 1
					}
					switch p {
					case 0:
						localBefore.Add(local)
						allBefore.Add(1)
					case 2:
						localAfter.Add(local)
						allAfter.Add(1)
					}
				}
			}
		})
	}

	time.Sleep(200 * time.Millisecond)
	phase.Store(1)
	driver := f.nodes[0] // the least name: the node that drives moves
	for _, b := range moving {
		if _, err := driver.StartMove(b, "eu"); err != nil {
			t.Fatal(err)
		}
	}
	advanceAll := func(want buckets.MovePhase) {
		for _, b := range moving {
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, got, err := driver.AdvanceMove(b)
				if err == nil {
					if got != want {
						t.Fatalf("bucket %d advanced to %s, want %s", b, got, want)
					}
					break
				}
				if !errors.Is(err, errFenceNotHeld) || time.Now().After(deadline) {
					t.Fatalf("bucket %d toward %s: %v", b, want, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	time.Sleep(150 * time.Millisecond) // copying
	advanceAll(buckets.MoveFenced)
	advanceAll(buckets.MoveCutover)
	time.Sleep(150 * time.Millisecond)
	advanceAll(buckets.MoveDone)
	time.Sleep(50 * time.Millisecond) // every node adopts the last version
	phase.Store(2)
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range moving {
		seq := f.writes[b]
		switched := false
		for i, c := range seq {
			if c == "eu" {
				switched = true
			} else if switched {
				t.Fatalf("bucket %d: a US write (#%d of %d) after EU writes began: %v", b, i, len(seq), seq[max(0, i-5):min(len(seq), i+5)])
			}
		}
		if len(seq) == 0 || seq[0] != "us" || seq[len(seq)-1] != "eu" {
			t.Fatalf("bucket %d: %d writes: want US first, EU last", b, len(seq))
		}
	}
	if readFails.Load() != 0 {
		t.Fatalf("%d of %d reads failed", readFails.Load(), reads.Load())
	}
	before := float64(localBefore.Load()) / float64(allBefore.Load())
	after := float64(localAfter.Load()) / float64(allAfter.Load())
	t.Logf("%d reads (0 failed), %d writes, %d writes refused while fenced; locality of the EU users' requests %.2f before, %.2f after",
		reads.Load(), writes.Load(), writeRefused.Load(), before, after)
	if before > 0.01 || after < 0.99 {
		t.Fatalf("locality %.2f before, %.2f after", before, after)
	}
}
