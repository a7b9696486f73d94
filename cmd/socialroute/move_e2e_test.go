package main

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/socialroute/socialroute/proxy"
	"github.com/valyala/fasthttp"
)

// movesView is what the test reads of GET /admin/placement/recommendations.
type movesView struct {
	Driver string `json:"driver"`
	Moves  []struct {
		Bucket uint32 `json:"bucket"`
		Phase  string `json:"phase"`
	} `json:"moves"`
}

// A bucket's move over three gossiping processes: started on the EU
// node's admin endpoint, refused a step there, and walked to done by the
// driver alone: the least name among the nodes with auto_apply on (the
// EU node, least of all, has it off), edge-us-east. Meanwhile the user's
// writes go through every node: each lands in the US until the first
// lands in the EU, none in the US after, no read fails, and at the end
// every node homes the bucket in the EU.
func TestEndToEndBucketMoveDrivenByOneNode(t *testing.T) {
	east, west, eu := layOutAdminFleet(t, "127.0.12", "127.0.13")
	all := []*adminNode{east, west, eu}
	for _, n := range all {
		auto := n != eu
		// advise_every an hour: the advisor recommends nothing; the move
		// is the operator's, its steps the driver's.
		extra := fmt.Sprintf("placement:\n  auto_apply: %v\n  advise_every: 1h\n  copy_time: 300ms\n  fence_settle: 500ms\n  cutover_time: 300ms\n", auto)
		f, err := os.OpenFile(n.config, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(extra); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	startAdminFleet(t, all...)
	for _, n := range all {
		waitFor(t, n.dc+" to see edge-us-east drive the moves", func() bool {
			var v movesView
			code, err := adminDo(n, "GET", "/admin/placement/recommendations", "", &v)
			return err == nil && code == 200 && v.Driver == "edge-us-east"
		})
	}
	// A user homed in the US.
	user, bucket := 0, uint32(0)
	for u := 1; ; u++ {
		var e proxy.Explanation
		if code := adminCall(t, east, "GET", fmt.Sprintf("/admin/route?user=%d&path=/users/%d/feed", u, u), "", &e); code != 200 {
			t.Fatalf("route: %d", code)
		}
		if e.Home == "us" {
			user, bucket = u, e.Bucket
			break
		}
	}

	var (
		mu        sync.Mutex
		writes    []string // the continent of each write that landed, in the order they came back
		refused   int
		readFails []string
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	continentOf := func(dc string) string {
		for _, d := range fleetTopology {
			if d.name == dc {
				return d.continent
			}
		}
		return "?" + dc
	}
	for _, n := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.HostClient{Addr: n.listen, ReadTimeout: 5 * time.Second}
			var req fasthttp.Request
			var resp fasthttp.Response
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req.Reset()
				req.SetRequestURI(fmt.Sprintf("http://%s/users/%d/feed", n.listen, user))
				write := i%2 == 0
				if write {
					req.Header.SetMethod("POST")
				}
				err := c.Do(&req, &resp)
				mu.Lock()
				switch {
				case err != nil:
					readFails = append(readFails, fmt.Sprintf("via %s: %v", n.dc, err))
				case write && resp.StatusCode() == http.StatusServiceUnavailable:
					refused++ // fenced
				case write && resp.StatusCode() == 200:
					writes = append(writes, continentOf(string(resp.Header.Peek("X-Served-By"))))
				case resp.StatusCode() != 200:
					readFails = append(readFails, fmt.Sprintf("via %s: %s %d %s", n.dc, req.Header.Method(), resp.StatusCode(), resp.Body()))
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(300 * time.Millisecond) // writes before the move
	id := fmt.Sprint(bucket)
	if code := adminCall(t, eu, "POST", "/admin/buckets/"+id+"/move", `{"to": "eu"}`, nil); code != 200 {
		t.Fatalf("a move's start on the EU node: %d", code)
	}
	if code := adminCall(t, eu, "POST", "/admin/buckets/"+id+"/move/advance", "", nil); code != http.StatusConflict {
		t.Fatalf("a step on the EU node, which does not drive moves: %d, want 409", code)
	}
	start := time.Now()
	for _, n := range all {
		waitFor(t, n.dc+" to home bucket "+id+" in the EU, the move done", func() bool {
			var v movesView
			if code, err := adminDo(n, "GET", "/admin/placement/recommendations", "", &v); err != nil || code != 200 || len(v.Moves) != 0 {
				return false
			}
			return mapOf(t, n, bucket).Home == "eu"
		})
	}
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond) // writes after the move
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(readFails) > 0 {
		t.Fatalf("%d requests failed, first: %s", len(readFails), readFails[0])
	}
	euFrom := slices.Index(writes, "eu")
	if len(writes) == 0 || writes[0] != "us" || euFrom < 0 {
		t.Fatalf("%d writes, first %v: want the US first, then the EU", len(writes), writes[:min(len(writes), 5)])
	}
	if back := slices.Index(writes[euFrom:], "us"); back >= 0 {
		i := euFrom + back
		t.Fatalf("write %d of %d landed in the US after write %d had landed in the EU: %v", i, len(writes), euFrom, writes[max(0, i-5):min(len(writes), i+5)])
	}
	t.Logf("move walked to done in %v; %d writes (US then EU), %d refused while fenced", took.Round(time.Millisecond), len(writes), refused)
}
