//go:build !race

package health

import "testing"

func TestBreakerDoDoesNotAllocate(t *testing.T) {
	b := NewBreaker("x", BreakerSettings{})
	var s Static
	n := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if s.Usable(3) && b.Ready() {
			_ = b.Do(func() error { n++; return nil })
		}
	})
	if allocs != 0 || n == 0 {
		t.Fatalf("Breaker.Do allocates %.1f times per call (ran %d)", allocs, n)
	}
}
