package hashing

import (
	"math"
	"slices"
	"unsafe"
)

// MaxBuckets is the largest bucket count N a table or assigner supports.
// Buckets are stored as uint16, so bucket numbers are 0..65535.
const MaxBuckets = 1 << 16

// MaxUsers is the largest number of users a table holds. The directory
// stores offsets into the hash array as uint32, which bounds it; it is also
// the sane maximum ReadTable accepts from a file header before reading a
// single user.
const MaxUsers = math.MaxUint32

// targetUsersPerSlot is the average number of users per directory slot that
// dirBits aims for. Four keeps the directory near one byte per user while
// the range a lookup scans stays within one or two cache lines of hashes.
const targetUsersPerSlot = 4

// linearScanMax is the longest directory range Lookup scans linearly. With
// uniform hashes ranges hold about 4 users and almost never more than 20;
// longer ranges only appear when keys were added by hash and are not uniform
// (tests, hand-made tables), and there binary search bounds the cost.
const linearScanMax = 32

// Table is an immutable social-hash assignment: user-key hash -> bucket.
// Safe for concurrent use. A nil *Table is valid and empty.
//
// The layout is three flat arrays, so 10 million users cost about 11 bytes
// each and the garbage collector has no pointers to chase:
//
//	hashes  sorted, strictly ascending key hashes (8 bytes per user)
//	buckets buckets[i] is the bucket of hashes[i] (2 bytes per user)
//	dir     radix directory over the top bits of the hash (0.7-1.4 bytes per user)
//
// Because key hashes are uniform, the directory slot of a hash holds a
// handful of users, and a lookup is one directory read plus a short scan.
type Table struct {
	hashes  []uint64
	buckets []uint16
	// dir has 1<<bits + 1 entries: dir[p] is the index of the first hash
	// whose top bits are >= p, so the hashes with top bits p are
	// hashes[dir[p]:dir[p+1]].
	dir   []uint32
	shift uint8  // 64 - bits; bits >= 1 so that shift < 64
	n     uint32 // bucket count N the table was built for
}

// newTable indexes hashes (strictly ascending, at most MaxUsers) and their
// buckets (each < n). It takes ownership of both slices.
func newTable(n uint32, hashes []uint64, buckets []uint16) *Table {
	b := dirBits(len(hashes))
	shift := 64 - b
	dir := make([]uint32, 1<<b+1)
	// Count per slot, then prefix-sum into start offsets.
	for _, h := range hashes {
		dir[(h>>shift)+1]++
	}
	for i := 1; i < len(dir); i++ {
		dir[i] += dir[i-1]
	}
	return &Table{hashes: hashes, buckets: buckets, dir: dir, shift: uint8(shift), n: n}
}

// dirBits returns the number of top hash bits the directory indexes for a
// table of the given size: log2(users/4) rounded to the nearest integer, at
// least 1, so each slot averages between 2.8 and 5.7 users and the
// directory costs 0.7 to 1.4 bytes per user.
func dirBits(users int) uint {
	b := math.Round(math.Log2(float64(users) / targetUsersPerSlot))
	if b < 1 || users == 0 {
		return 1
	}
	return uint(b)
}

// Lookup returns the bucket the table assigns to the key hash h (see
// HashKey), and whether the table knows h at all. It does not allocate.
func (t *Table) Lookup(h uint64) (bucket uint32, ok bool) {
	if t == nil {
		return 0, false
	}
	// shift < 64 always; the mask lets the compiler drop its own check.
	p := h >> (t.shift & 63)
	lo, hi := t.dir[p], t.dir[p+1]
	hs := t.hashes[lo:hi]
	if len(hs) > linearScanMax {
		i, found := slices.BinarySearch(hs, h)
		if !found {
			return 0, false
		}
		return uint32(t.buckets[int(lo)+i]), true
	}
	for i, x := range hs {
		if x >= h {
			if x != h {
				return 0, false
			}
			return uint32(t.buckets[int(lo)+i]), true
		}
	}
	return 0, false
}

// Len returns the number of users in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.hashes)
}

// Buckets returns the bucket count N the table was built for; every bucket
// it returns is < N. A nil table returns 0.
func (t *Table) Buckets() uint32 {
	if t == nil {
		return 0
	}
	return t.n
}

// SizeBytes returns the memory the table holds, in bytes, for the "bytes
// per user" report: the three arrays (by capacity) and the Table header.
func (t *Table) SizeBytes() int {
	if t == nil {
		return 0
	}
	return int(unsafe.Sizeof(*t)) +
		cap(t.hashes)*8 + cap(t.buckets)*2 + cap(t.dir)*4
}
