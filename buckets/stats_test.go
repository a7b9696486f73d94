package buckets

import (
	"sync"
	"testing"
)

func TestAccessCountsByOriginAndDecays(t *testing.T) {
	a := NewAccess(8, 2)
	for range 100 {
		a.Record(3, 1)
	}
	for range 10 {
		a.Record(3, 0)
	}
	a.Record(99, 0) // out of range: ignored
	a.Record(2, 7)
	if a.Count(3, 1) != 100 || a.Count(3, 0) != 10 {
		t.Fatalf("counts %d %d", a.Count(3, 0), a.Count(3, 1))
	}
	a.Decay()
	if a.Count(3, 1) != 50 || a.Count(3, 0) != 5 {
		t.Fatalf("after one decay: %d %d", a.Count(3, 0), a.Count(3, 1))
	}
	a.Decay()
	a.Decay() // 50 -> 25 -> 12; 5 -> 2 -> 1
	s := a.Snapshot()
	if len(s.ByBucket) != 1 || s.ByBucket[3][1] != 12 || s.ByBucket[3][0] != 1 || s.Total(3) != 13 {
		t.Fatalf("snapshot %+v", s)
	}
}

// Halving while requests are recorded never wraps a count below zero, and
// what is recorded after the last halving is all there.
func TestAccessDecayUnderConcurrentRecords(t *testing.T) {
	a := NewAccess(1, 1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100_000 {
				a.Record(0, 0)
			}
		})
	}
	for range 50 {
		a.Decay()
	}
	wg.Wait()
	for range 1000 {
		a.Record(0, 0)
	}
	if c := a.Count(0, 0); c < 1000 || c > 401_000 {
		t.Fatalf("count %d: want between 1000 and 401000", c)
	}
}

func TestAccessSaturates(t *testing.T) {
	a := NewAccess(1, 1)
	a.counts[0].Store(^uint32(0))
	a.Record(0, 0)
	if a.Count(0, 0) != ^uint32(0) {
		t.Fatalf("wrapped to %d", a.Count(0, 0))
	}
}

func TestCountsAdd(t *testing.T) {
	c := Counts{Continents: 2}
	c.Add(Counts{Continents: 2, ByBucket: map[uint32][]uint32{1: {3, 4}}})
	c.Add(Counts{Continents: 2, ByBucket: map[uint32][]uint32{1: {1, 1}, 2: {0, 9}}})
	if c.ByBucket[1][0] != 4 || c.ByBucket[1][1] != 5 || c.ByBucket[2][1] != 9 {
		t.Fatalf("%+v", c)
	}
}

func BenchmarkAccessRecord(b *testing.B) {
	a := NewAccess(4096, 2)
	b.RunParallel(func(pb *testing.PB) {
		i := uint32(0)
		for pb.Next() {
			a.Record(i&4095, int(i&1))
			i += 7
		}
	})
}
