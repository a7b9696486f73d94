//go:build !race

package loadtest

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// The simulated web tier reads users' data through its cache on every
// request; the load generator parses every answer: neither may allocate,
// or the tool would measure its own garbage collector.

func TestLRUReadAllocatesNothing(t *testing.T) {
	c := newLRU(64)
	for u := range uint64(64) {
		c.touch(u)
	}
	u := uint64(0)
	if n := testing.AllocsPerRun(1000, func() { c.touch(u % 100); u++ }); n != 0 {
		t.Fatalf("touch allocates %v times per call", n)
	}
}

func TestJudgeAllocatesNothing(t *testing.T) {
	p := testPlacement()
	var resp fasthttp.Response
	resp.Header.Set(headerDC, "b1")
	resp.Header.Set(HeaderServedBy, "b1")
	resp.Header.Set(headerBucket, "3")
	resp.Header.Set(HeaderCacheHits, "20")
	resp.Header.Set(HeaderCacheMisses, "1")
	var o outcome
	if n := testing.AllocsPerRun(1000, func() { p.judge(&resp, nil, &o) }); n != 0 {
		t.Fatalf("judge allocates %v times per answer", n)
	}
	if o.dc != 2 || o.hits != 20 || o.misses != 1 || o.home != 1 {
		t.Fatalf("judge = %+v", o)
	}
}

func TestWorkloadRequestAllocatesNothing(t *testing.T) {
	wl, _ := NewWorkload(mustGraph(t), WorkloadOptions{Seed: 1})
	var r Request
	buf := make([]byte, 0, 64)
	i := uint64(0)
	if n := testing.AllocsPerRun(1000, func() { wl.Request(i, &r); buf = r.AppendPath(buf[:0]); i++ }); n != 0 {
		t.Fatalf("Request allocates %v times", n)
	}
}
