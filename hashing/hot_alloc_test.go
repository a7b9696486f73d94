//go:build !race

package hashing

import "testing"

// The per-request cost of hot-key handling: no allocation, hot or not.
func TestHotPathDoesNotAllocate(t *testing.T) {
	d := NewHeavyHitters(DetectOptions{Rate: 10, Max: 8})
	l := NewHotList([]HotKey{{Key: "star", Followers: 9}}, SpreadPolicy{FollowersPerBucket: 2, Max: 8})
	key := []byte("star")
	h := HashKey(key)
	allocs := testing.AllocsPerRun(1000, func() {
		k := max(l.Spread(h), d.Observe(h, key))
		_ = PickSibling(k, 42, true, 0)
	})
	if allocs != 0 {
		t.Fatalf("hot-key handling allocates %.2f times per request", allocs)
	}
}
