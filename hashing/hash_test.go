package hashing

import (
	"math"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestHashKeyEqualsHashString(t *testing.T) {
	keys := []string{"", "a", "user-1", "ünïcode-ключ", string(make([]byte, 1000))}
	for i := range 1000 {
		keys = append(keys, userKey(i))
	}
	for _, k := range keys {
		if got, want := HashKey([]byte(k)), HashString(k); got != want {
			t.Fatalf("HashKey(%q) = %016x, HashString = %016x", k, got, want)
		}
		if got, want := HashString(k), xxhash.Sum64String(k); got != want {
			t.Fatalf("HashString(%q) = %016x, want xxhash64 %016x", k, got, want)
		}
	}
	// Pin the hash itself: the table file format depends on it (hash id 1).
	if got, want := HashString(""), uint64(0xef46db3751d8e999); got != want {
		t.Fatalf("HashString(\"\") = %016x, want the xxhash64 reference %016x", got, want)
	}
}

func TestFallbackBucketRange(t *testing.T) {
	for _, n := range []uint32{1, 2, 3, 7, 64, 1000, 4096, 65535, MaxBuckets} {
		rng := splitmix64(n)
		for range 10000 {
			h := rng.next()
			if b := FallbackBucket(h, n); b >= n {
				t.Fatalf("FallbackBucket(%016x, %d) = %d, out of range", h, n, b)
			}
		}
		if b := FallbackBucket(^uint64(0), n); b >= n {
			t.Fatalf("FallbackBucket(max, %d) = %d, out of range", n, b)
		}
	}
}

// TestFallbackBucketUniform spreads 100k deterministic keys over 64 and over
// 100 buckets (not a power of two) and bounds the chi-square statistic.
func TestFallbackBucketUniform(t *testing.T) {
	const keys = 100_000
	for _, n := range []uint32{64, 100} {
		counts := make([]int, n)
		for i := range keys {
			counts[FallbackBucket(HashString(userKey(i)), n)]++
		}
		expected := float64(keys) / float64(n)
		chi2 := 0.0
		for _, c := range counts {
			d := float64(c) - expected
			chi2 += d * d / expected
		}
		// chi-square with n-1 degrees of freedom has mean n-1 and standard
		// deviation sqrt(2(n-1)); allow six standard deviations.
		dof := float64(n - 1)
		if bound := dof + 6*math.Sqrt(2*dof); chi2 > bound {
			t.Errorf("n=%d: chi-square %.1f exceeds %.1f; counts %v", n, chi2, bound, counts)
		}
	}
}
