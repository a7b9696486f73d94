package hashing

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// ErrBucketCount reports a bucket count N outside 1..MaxBuckets.
var ErrBucketCount = errors.New("hashing: bucket count out of range 1..65536")

// ErrBucketRange reports a bucket number that is not below the table's
// bucket count N.
var ErrBucketRange = errors.New("hashing: bucket out of range")

// TableBuilder collects user -> bucket assignments and builds a Table. It is
// not safe for concurrent use. Build does not consume the builder: more
// assignments may be added afterwards and Build called again.
type TableBuilder struct {
	n       uint32
	hashes  []uint64 // in the order added
	buckets []uint16 // buckets[i] belongs to hashes[i]
}

// NewTableBuilder returns a builder for a table of the given bucket count N
// (1..MaxBuckets). sizeHint is the expected number of users; it only
// preallocates (10 bytes per user) and may be 0.
func NewTableBuilder(buckets uint32, sizeHint int) (*TableBuilder, error) {
	if err := checkBucketCount(buckets); err != nil {
		return nil, err
	}
	sizeHint = max(sizeHint, 0)
	return &TableBuilder{
		n:       buckets,
		hashes:  make([]uint64, 0, sizeHint),
		buckets: make([]uint16, 0, sizeHint),
	}, nil
}

// checkBucketCount validates a bucket count N.
func checkBucketCount(n uint32) error {
	if n < 1 || n > MaxBuckets {
		return fmt.Errorf("%w: %d", ErrBucketCount, n)
	}
	return nil
}

// Add assigns the user with routing key key to bucket. The key is hashed
// with HashString; only the hash is kept.
func (b *TableBuilder) Add(key string, bucket uint32) error {
	if bucket >= b.n {
		return fmt.Errorf("%w: bucket %d for key %q, table has %d buckets", ErrBucketRange, bucket, key, b.n)
	}
	b.add(HashString(key), bucket)
	return nil
}

// AddHash assigns the user whose key hashes (HashKey) to h to bucket. It is
// for callers that already hold hashes, such as the offline partitioner.
func (b *TableBuilder) AddHash(h uint64, bucket uint32) error {
	if bucket >= b.n {
		return fmt.Errorf("%w: bucket %d for key hash %016x, table has %d buckets", ErrBucketRange, bucket, h, b.n)
	}
	b.add(h, bucket)
	return nil
}

func (b *TableBuilder) add(h uint64, bucket uint32) {
	b.hashes = append(b.hashes, h)
	b.buckets = append(b.buckets, uint16(bucket))
}

// Len returns the number of assignments added so far, duplicates included.
func (b *TableBuilder) Len() int { return len(b.hashes) }

// Build returns a Table holding every assignment added so far. A hash added
// twice with the same bucket is kept once; a hash added with two different
// buckets is an error naming both, in the order they were added (two keys
// colliding on a 64-bit hash is far less likely than an input bug).
//
// Build sorts in linear time: hashes are uniform, so a counting pass over
// their top bits scatters them into small ranges that insertion sort
// finishes. At 10 million users it takes well under a second.
func (b *TableBuilder) Build() (*Table, error) {
	n := len(b.hashes)
	if uint64(n) > MaxUsers {
		return nil, fmt.Errorf("hashing: %d users, more than the maximum %d", n, uint64(MaxUsers))
	}
	hs := make([]uint64, n)
	bs := make([]uint16, n)

	// Scatter by top bits. The scatter is stable, and so are both sorts
	// below, so equal hashes stay in the order they were added.
	shift := 64 - dirBits(n)
	next := make([]uint32, 1<<(64-shift)+1)
	for _, h := range b.hashes {
		next[(h>>shift)+1]++
	}
	for i := 1; i < len(next); i++ {
		next[i] += next[i-1]
	}
	for i, h := range b.hashes {
		p := h >> shift
		j := next[p]
		next[p]++
		hs[j], bs[j] = h, b.buckets[i]
	}
	// Now next[p] is the end of slot p and the start of slot p+1.
	lo := uint32(0)
	for _, hi := range next[:len(next)-1] {
		sortPairs(hs[lo:hi], bs[lo:hi])
		lo = hi
	}

	// Drop repeats, reject conflicts.
	w := 0
	for i := range hs {
		if w > 0 && hs[i] == hs[w-1] {
			if bs[i] != bs[w-1] {
				return nil, fmt.Errorf("hashing: key hash %016x assigned to buckets %d and %d", hs[i], bs[w-1], bs[i])
			}
			continue
		}
		hs[w], bs[w] = hs[i], bs[i]
		w++
	}
	// newTable copies what it keeps, so hs and bs are garbage after it.
	return newTable(b.n, hs[:w], bs[:w]), nil
}

// targetUsersPerSlot is the average number of hashes per range that
// dirBits aims for when Build scatters hashes by their top bits: few enough
// that insertion sort finishes each range in a handful of moves.
const targetUsersPerSlot = 4

// insertionSortMax is the longest range sortPairs sorts by insertion. With
// uniform hashes ranges hold about 4 and almost never more than 20.
const insertionSortMax = 32

// dirBits returns the number of top hash bits Build scatters a table of the
// given size by: log2(users/4) rounded to the nearest integer, at least 1,
// so each range averages between 2.8 and 5.7 hashes.
func dirBits(users int) uint {
	b := math.Round(math.Log2(float64(users) / targetUsersPerSlot))
	if b < 1 || users == 0 {
		return 1
	}
	return uint(b)
}

// sortPairs sorts hs ascending, stably, moving bs along with it.
func sortPairs(hs []uint64, bs []uint16) {
	if len(hs) > insertionSortMax {
		// Only non-uniform hashes fill a slot this much.
		sort.Stable(pairs{hs, bs})
		return
	}
	for i := 1; i < len(hs); i++ {
		h, bk := hs[i], bs[i]
		j := i
		for ; j > 0 && hs[j-1] > h; j-- {
			hs[j], bs[j] = hs[j-1], bs[j-1]
		}
		hs[j], bs[j] = h, bk
	}
}

// pairs sorts parallel hash and bucket slices by hash.
type pairs struct {
	hs []uint64
	bs []uint16
}

func (p pairs) Len() int           { return len(p.hs) }
func (p pairs) Less(i, j int) bool { return p.hs[i] < p.hs[j] }
func (p pairs) Swap(i, j int) {
	p.hs[i], p.hs[j] = p.hs[j], p.hs[i]
	p.bs[i], p.bs[j] = p.bs[j], p.bs[i]
}
