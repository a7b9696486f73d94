package hashing

import (
	"iter"
	"math"
	"runtime"
	"slices"
	"unsafe"
)

// MaxBuckets is the largest bucket count N a table or assigner supports.
// Buckets are stored as uint16, so bucket numbers are 0..65535.
const MaxBuckets = 1 << 16

// MaxUsers is the largest number of users a table holds. The directory
// stores slot offsets as uint32, which bounds it (a table past 3.4 billion
// users gets no gaps, so that its slots still fit); it is also
// the sane maximum ReadTable accepts from a file header before reading a
// single user.
const MaxUsers = math.MaxUint32

const (
	// slotHashBits is how many low hash bits a slot keeps, above the
	// 16-bit bucket, in one uint64.
	slotHashBits = 48
	slotBucket   = 1<<(64-slotHashBits) - 1 // mask of the bucket in a slot
	// groupBits is the number of top hash bits that pick a user's group,
	// and so its directory entry: exactly the bits a slot leaves out, so
	// slot and group together still know the full 64-bit hash.
	groupBits   = 64 - slotHashBits
	tableGroups = 1 << groupBits

	// gapSixteenths is the room a group gets beyond its users, in
	// sixteenths of them: 4 gives 1.25 slots, 10 bytes, per user. The gaps
	// are what let a lookup land on its user's slot or within a slot or
	// two of it (see Table).
	gapSixteenths = 4

	// linearScanMax is the longest walk Lookup takes from the slot it
	// lands on before it binary-searches the whole group instead. With
	// uniform hashes a walk averages under a slot and is almost never
	// longer than 8; long walks only happen when keys were added by hash
	// and are not uniform (tests, hand-made tables).
	linearScanMax = 16
)

// Table is an immutable social-hash assignment: user-key hash -> bucket.
// Safe for concurrent use. A nil *Table is valid and empty.
//
// The layout is two flat arrays, so the garbage collector has no pointers
// to chase:
//
//	slots  one uint64 per user: the low 48 bits of the hash above the
//	       16-bit bucket, plus gaps (1.25 slots, 10 bytes, per user)
//	dir    2^16+1 uint32 (256 KiB): dir[g] is the first slot of group g,
//	       the users whose hash has top 16 bits g
//
// The group gives a slot the 16 hash bits it leaves out, so the table still
// knows every full 64-bit hash: no false hits, whatever the keys. A table
// costs 10 bytes per user plus the 256 KiB directory: 10.03 bytes per user
// at 10 million users, 10.3 at a million, 36 at ten thousand (small tables
// pay for the fixed directory).
//
// Within its group a user aims for the slot its hash puts it at in
// proportion: bits 16..47 of the hash, as a fraction of their range, times
// the group's slot count. Users take ascending slots as near their aim as
// the users around them allow (see placer.place), and each slot left over
// holds a copy of the user before it (of the first user, before the
// group's first user), so each group is a non-decreasing sequence of slot
// values. A lookup reads the directory, computes the same aim and walks
// from it, usually not at all and seldom out of that slot's 64-byte cache
// line, to the first slot not below the hash: one random memory access
// after the directory's, where a directory large enough to point at a
// user's own cache line would miss the cache every time. The directory
// stays in cache while lookups come back to back; between a proxy's
// requests, microseconds of other work apart, it does not, which is what
// PrefetchGroup is for.
type Table struct {
	// slots holds group after group; slot values ascend within a group.
	slots []uint64
	// dir[g] is the first slot of group g: the users whose hash has top
	// bits g are in slots[dir[g]:dir[g+1]]; dir[tableGroups] is len(slots).
	dir   *[tableGroups + 1]uint32
	users int    // users in the table, gaps not counted
	n     uint32 // bucket count N the table was built for
}

// slotOf returns the slot offset, within a group of m slots, that hash h
// aims for: bits 16..47 of h (the top 32 of those a slot keeps) scaled to
// [0, m). It is non-decreasing in h within a group.
func slotOf(h uint64, m uint32) uint32 {
	return uint32(uint64(uint32(h>>(slotHashBits-32))) * uint64(m) >> 32)
}

// newTable lays out hashes (strictly ascending, at most MaxUsers) and their
// buckets (each < n). It only reads the two slices.
func newTable(n uint32, hashes []uint64, buckets []uint16) *Table {
	u := uint64(len(hashes))
	gap := uint64(gapSixteenths)
	if u+u*gap/16 > MaxUsers {
		gap = 0 // beyond 3.4 billion users: no gaps, still correct
	}
	// A group starts at 1+gap/16 times the users before it, rounded down,
	// so even groups of one or two users get their share of gaps. Walk
	// the runs of hashes that share a group; the empty groups before a run
	// start where it does. Building is one pass over the users and one
	// over the 2^16 directory entries.
	dir := new([tableGroups + 1]uint32)
	biggest := 0
	g := 0 // the first group whose start is not yet set
	for i, j := 0, 0; i < len(hashes); i = j {
		run := int(hashes[i] >> slotHashBits)
		for j = i + 1; j < len(hashes) && hashes[j]>>slotHashBits == uint64(run); j++ {
		}
		start := uint32(uint64(i) + uint64(i)*gap/16)
		for ; g <= run; g++ {
			dir[g] = start
		}
		biggest = max(biggest, j-i)
	}
	for ; g <= tableGroups; g++ {
		dir[g] = uint32(u + u*gap/16)
	}

	slots, mapped := newSlots(int(dir[tableGroups]))
	pl := newPlacer(biggest)
	for i, j := 0, 0; i < len(hashes); i = j {
		run := hashes[i] >> slotHashBits
		for j = i + 1; j < len(hashes) && hashes[j]>>slotHashBits == run; j++ {
		}
		pl.place(slots[dir[run]:dir[run+1]], hashes[i:j], buckets[i:j])
	}
	t := &Table{slots: slots, dir: dir, users: len(hashes), n: n}
	if mapped != nil {
		// The slots are used only through t, so they go when t goes.
		runtime.AddCleanup(t, freeSlots, mapped)
	}
	return t
}

// placer lays out groups, with scratch space for the largest.
type placer struct {
	pos []uint32
	// The blocks of the isotonic regression: sum and count of each.
	sum, cnt []int64
}

func newPlacer(biggest int) *placer {
	return &placer{
		pos: make([]uint32, biggest),
		sum: make([]int64, biggest),
		cnt: make([]int64, biggest),
	}
}

// centerMax is the largest group place centres. The regression's sums and
// products then stay below 2^62; a bigger group (2^20 users sharing the top
// 16 bits of their hash: keys added by hash, not a real table) just takes
// the first free slot from its aim.
const centerMax = 1 << 20

// place fills the slots of one group with its users (hashes ascending,
// len(slots) >= len(hs)).
//
// User k aims for slot a_k = slotOf(h_k), and the slots must ascend:
// pos_k+1 > pos_k. place chooses the positions that minimise the sum of
// (pos_k - a_k)^2: with q_k = pos_k - k the constraint is q non-decreasing,
// which makes it an isotonic regression of a_k - k, solved exactly by
// pooling adjacent violators. A user is as likely to sit a slot before its
// aim as a slot after, and Lookup walks either way, so walks are shorter
// than when every user takes the first free slot at or after its aim.
func (pl *placer) place(slots []uint64, hs []uint64, bs []uint16) {
	n := len(hs)
	if n == 0 {
		return
	}
	m := uint32(len(slots))
	pos := pl.pos[:n]
	if n > centerMax {
		for k, h := range hs {
			pos[k] = slotOf(h, m)
		}
	} else {
		sum, cnt := pl.sum, pl.cnt
		blocks := 0
		for k, h := range hs {
			sum[blocks], cnt[blocks] = int64(slotOf(h, m))-int64(k), 1
			blocks++
			// Pool while the mean of the block before is above this one's.
			for blocks > 1 && sum[blocks-2]*cnt[blocks-1] > sum[blocks-1]*cnt[blocks-2] {
				sum[blocks-2] += sum[blocks-1]
				cnt[blocks-2] += cnt[blocks-1]
				blocks--
			}
		}
		k := 0
		top := int64(m) - int64(n) // the largest q that leaves room for the rest
		for b := range blocks {
			// q = the block's mean rounded, within [0, top]. (Floating
			// point division is much faster than integer division and
			// exact enough: nothing below depends on the rounding.)
			q := sum[b]
			if cnt[b] > 1 {
				q = int64(math.Floor(float64(sum[b])/float64(cnt[b]) + 0.5))
			}
			q = max(0, min(q, top))
			for range cnt[b] {
				pos[k] = uint32(q) + uint32(k)
				k++
			}
		}
	}
	// The regression already ascends within [0, m); the big-group case
	// and Lookup's correctness need this pass, which makes sure of it.
	next := uint32(0)
	for k := range pos {
		pos[k] = max(pos[k], next)
		next = pos[k] + 1
	}
	if next > m {
		last := m // pos[k] >= k, so this stays in range
		for k := n - 1; k >= 0; k-- {
			pos[k] = min(pos[k], last-1)
			last = pos[k]
		}
	}
	// Each user fills its slot and the gap after it; leading gaps copy the
	// first user.
	v := hs[0]<<groupBits | uint64(bs[0])
	for q := range pos[0] {
		slots[q] = v
	}
	for k := range n {
		v := hs[k]<<groupBits | uint64(bs[k])
		end := m
		if k+1 < n {
			end = pos[k+1]
		}
		for q := pos[k]; q < end; q++ {
			slots[q] = v
		}
	}
}

// Lookup returns the bucket the table assigns to the key hash h (see
// HashKey), and whether the table knows h at all. It does not allocate.
func (t *Table) Lookup(h uint64) (bucket uint32, ok bool) {
	if t == nil {
		return 0, false
	}
	bucket, ok = t.lookup(h)
	runtime.KeepAlive(t) // the slots may be t's own mapping, unmapped when t is garbage
	return bucket, ok
}

func (t *Table) lookup(h uint64) (bucket uint32, ok bool) {
	g := h >> slotHashBits
	lo, hi := t.dir[g], t.dir[g+1]
	p := lo + slotOf(h, hi-lo)
	if p >= hi {
		return 0, false // empty group
	}
	// The slot value h would have with bucket 0: slot values >= key are
	// the users of the group from h on, so the answer is the first of them.
	key := h << groupBits
	s := t.slots
	e := s[p]
	if e < key {
		// Walk forward to the first slot >= key.
		for step := 0; ; step++ {
			p++
			if p >= hi {
				return 0, false
			}
			e = s[p]
			if e >= key {
				break
			}
			if step == linearScanMax {
				return searchGroup(s[lo:hi], key)
			}
		}
	} else {
		// Walk back while the slot before is >= key too: only in a leading
		// gap, or where users were pushed back from the group's end.
		for step := 0; p > lo; step++ {
			f := s[p-1]
			if f < key {
				break
			}
			if step == linearScanMax {
				return searchGroup(s[lo:hi], key)
			}
			p--
			e = f
		}
	}
	return slotMatch(e, key)
}

// slotMatch returns the user of slot value e >= key, if it is the user key
// stands for.
func slotMatch(e, key uint64) (bucket uint32, ok bool) {
	if e-key > slotBucket {
		return 0, false // the next user up
	}
	return uint32(e & slotBucket), true
}

// searchGroup is Lookup in a group that a short walk does not cover
// (non-uniform hashes): binary search for the first slot >= key.
//
//go:noinline
func searchGroup(group []uint64, key uint64) (bucket uint32, ok bool) {
	i, _ := slices.BinarySearch(group, key)
	if i == len(group) {
		return 0, false
	}
	return slotMatch(group[i], key)
}

// all yields the table's users in ascending hash order: each hash and its
// bucket.
func (t *Table) all() iter.Seq2[uint64, uint16] {
	return func(yield func(uint64, uint16) bool) {
		if t == nil {
			return
		}
		for g := range uint64(tableGroups) {
			lo, hi := t.dir[g], t.dir[g+1]
			top := g << slotHashBits
			for q := lo; q < hi; q++ {
				e := t.slots[q]
				if q > lo && e == t.slots[q-1] {
					continue // a gap's copy
				}
				if !yield(top|e>>groupBits, uint16(e)) {
					return
				}
			}
		}
	}
}

// Len returns the number of users in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return t.users
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
// per user" report: the slots (by capacity), the directory and the Table
// header.
func (t *Table) SizeBytes() int {
	if t == nil {
		return 0
	}
	return int(unsafe.Sizeof(*t)) + cap(t.slots)*8 + int(unsafe.Sizeof(*t.dir))
}

// Lookup reads two places that no cache keeps when every request names
// another user: the directory entry of h's group and the slot it points
// to. A caller with other work to do first can start both loads early, a
// few hundred nanoseconds of that work apart: PrefetchGroup(h), then
// PrefetchSlot(h), which reads the directory entry, then Lookup(h).
// Neither changes what Lookup returns.

// PrefetchGroup starts loading the directory entry Lookup(h) reads.
func (t *Table) PrefetchGroup(h uint64) {
	if t != nil {
		prefetch(unsafe.Pointer(&t.dir[h>>slotHashBits]))
	}
}

// PrefetchSlot starts loading the slot Lookup(h) reads first.
func (t *Table) PrefetchSlot(h uint64) {
	if t == nil {
		return
	}
	g := h >> slotHashBits
	lo, hi := t.dir[g], t.dir[g+1]
	if p := lo + slotOf(h, hi-lo); p < hi {
		prefetch(unsafe.Pointer(&t.slots[p]))
	}
}
