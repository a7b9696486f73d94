package hashing

import "github.com/cespare/xxhash/v2"

// HashKey returns the 64-bit hash of a routing key: xxhash64 of the key's
// bytes with seed 0. It is the one hash used for every decision about a key
// (table lookup and fallback bucket), so that the offline partitioner, the
// table file and the proxy always agree on who a user is.
func HashKey(key []byte) uint64 {
	return xxhash.Sum64(key)
}

// HashString is HashKey for a string key, without converting the string to a
// byte slice (no allocation on the request path). HashString(k) equals
// HashKey([]byte(k)).
func HashString(key string) uint64 {
	return xxhash.Sum64String(key)
}

// FallbackBucket returns h mod n: the bucket of a user the social-hash table
// does not know.
//
// It is uniform for any n, not only for powers of two: xxhash64 output is
// uniform over 2^64 values, and the modulo bias (some buckets receiving one
// more of the 2^64 hash values than others) is at most n/2^64, far below
// anything measurable for n <= MaxBuckets. n must be at least 1; n == 0
// panics with an integer division by zero.
func FallbackBucket(h uint64, n uint32) uint32 {
	return uint32(h % uint64(n))
}

// Mix64 is the splitmix64 finaliser: it spreads every input bit over the
// whole output, so that neighbouring inputs (bucket ids, counters, seeds)
// give unrelated outputs. Placement, hot-key siblings, the heavy-hitter
// sketch and the partitioner all derive their choices from it.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
