package hashing

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// checkInvariants verifies the table's internal layout: a directory that
// covers the slots, groups of ascending slot values 1.25 times the size of
// their user count, users whose reconstructed hashes ascend and sit in their
// group, buckets in range, and a Lookup that finds every user.
func checkInvariants(t *testing.T, tb *Table) {
	t.Helper()
	if tb.dir[0] != 0 || int(tb.dir[tableGroups]) != len(tb.slots) {
		t.Fatalf("directory spans [%d, %d], want [0, %d]", tb.dir[0], tb.dir[tableGroups], len(tb.slots))
	}
	users := 0
	for g := range tableGroups {
		lo, hi := tb.dir[g], tb.dir[g+1]
		if hi < lo {
			t.Fatalf("group %d: directory goes back from %d to %d", g, lo, hi)
		}
		c := uint32(0)
		for q := lo; q < hi; q++ {
			if q > lo && tb.slots[q] < tb.slots[q-1] {
				t.Fatalf("group %d: slot %d (%016x) below the one before", g, q, tb.slots[q])
			}
			if q == lo || tb.slots[q] != tb.slots[q-1] {
				c++
			}
		}
		before := uint32(users)
		users += int(c)
		// A group starts at 1.25 times the users before it, rounded down.
		if want := before + before*gapSixteenths/16; lo != want {
			t.Fatalf("group %d starts at slot %d after %d users, want %d", g, lo, before, want)
		}
	}
	if users != tb.Len() {
		t.Fatalf("slots hold %d users, Len says %d", users, tb.Len())
	}
	hashes, buckets := usersOf(tb)
	if len(hashes) != tb.Len() || len(buckets) != tb.Len() {
		t.Fatalf("%d hashes and %d buckets for %d users", len(hashes), len(buckets), tb.Len())
	}
	for i := 1; i < len(hashes); i++ {
		if hashes[i] <= hashes[i-1] {
			t.Fatalf("hashes not ascending at %d", i)
		}
	}
	for i, b := range buckets {
		if uint32(b) >= tb.n {
			t.Fatalf("bucket %d at %d >= N %d", b, i, tb.n)
		}
		if got, ok := tb.Lookup(hashes[i]); !ok || got != uint32(b) {
			t.Fatalf("Lookup(%016x) = %d, %v; want %d, true", hashes[i], got, ok, b)
		}
	}
}

func TestBuildLookupRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     uint32
		users int
	}{
		{"empty", 16, 0},
		{"one", 1, 1},
		{"few", 3, 7},
		{"1k", 64, 1000},
		{"100k", 4096, 100_000},
		{"max buckets", MaxBuckets, 20_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewTableBuilder(tc.n, tc.users)
			if err != nil {
				t.Fatal(err)
			}
			want := make(map[string]uint32, tc.users)
			for i := range tc.users {
				k := userKey(i)
				bucket := uint32(i*7919) % tc.n
				want[k] = bucket
				if err := b.Add(k, bucket); err != nil {
					t.Fatal(err)
				}
			}
			tb, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, tb)
			if tb.Len() != tc.users {
				t.Fatalf("Len = %d, want %d", tb.Len(), tc.users)
			}
			if tb.Buckets() != tc.n {
				t.Fatalf("Buckets = %d, want %d", tb.Buckets(), tc.n)
			}
			for k, bucket := range want {
				got, ok := tb.Lookup(HashString(k))
				if !ok || got != bucket {
					t.Fatalf("Lookup(%q) = %d, %v; want %d, true", k, got, ok, bucket)
				}
			}
			// Keys never added: with 64-bit hashes there must be no hit.
			hits := 0
			for i := range 100_000 {
				if _, ok := tb.Lookup(HashString("absent-" + userKey(i))); ok {
					hits++
				}
			}
			if hits != 0 {
				t.Fatalf("%d false hits on 100000 absent keys", hits)
			}
		})
	}
}

// TestLookupNonUniformHashes pins the binary-search path: hashes added by
// hand crowd into one directory slot, far beyond the linear scan length.
func TestLookupNonUniformHashes(t *testing.T) {
	b, _ := NewTableBuilder(10, 0)
	// Descending input, so the builder's fallback sort really sorts.
	for h := uint64(3000); h >= 3; h -= 3 {
		if err := b.AddHash(h, uint32(h%10)); err != nil {
			t.Fatal(err)
		}
	}
	tb, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, tb)
	if got := tb.dir[1] - tb.dir[0]; got <= linearScanMax {
		t.Fatalf("slot 0 holds %d users, test needs more than %d", got, linearScanMax)
	}
	for h := uint64(0); h <= 3010; h++ {
		tb.PrefetchGroup(h) // in range for every hash, and no change to the answer
		tb.PrefetchSlot(h)
		got, ok := tb.Lookup(h)
		wantOK := h%3 == 0 && h >= 3 && h <= 3000
		if ok != wantOK || (ok && got != uint32(h%10)) {
			t.Fatalf("Lookup(%d) = %d, %v; want %d, %v", h, got, ok, h%10, wantOK)
		}
	}
	// Extremes of the hash space go to the first and last slot.
	b.AddHash(0, 1)
	b.AddHash(^uint64(0), 2)
	tb, err = b.Build()
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, tb)
	if got, ok := tb.Lookup(0); !ok || got != 1 {
		t.Fatalf("Lookup(0) = %d, %v", got, ok)
	}
	for _, h := range []uint64{0, 1 << 48, ^uint64(0)} { // the first, an empty and the last group
		tb.PrefetchGroup(h)
		tb.PrefetchSlot(h)
	}
	if got, ok := tb.Lookup(^uint64(0)); !ok || got != 2 {
		t.Fatalf("Lookup(max) = %d, %v", got, ok)
	}
}

// TestLookupCrowded checks Lookup against a map on hash sets that defeat
// the layout's aim: users crowding the start or the end of a group (walks
// past linearScanMax, forwards and backwards, into the binary search),
// users sharing their low 48 bits across groups (only the group tells them
// apart), and a uniform sprinkle between them. Probes are the users and
// their near misses.
func TestLookupCrowded(t *testing.T) {
	rng := splitmix64(7)
	want := map[uint64]uint32{}
	add := func(h uint64) { want[h] = uint32(h>>5) % 100 }
	for i := range uint64(300) {
		add(5<<48 | i<<16 | 0x1111)              // group 5, all aiming at its first slot
		add(6<<48 | (0xffffffff-i)<<16 | 0x2222) // group 6, all aiming at its last
		add(7<<48 | 0x8000_0000<<16 | i)         // group 7, all aiming at its middle
		add(8<<48 | rng.next()>>16)              // group 8, uniform
	}
	for g := range uint64(40) {
		add(g<<48 | 0x1234_5678_9abc) // the same low 48 bits in 40 groups
	}
	for range 5000 {
		add(rng.next())
	}
	b, _ := NewTableBuilder(100, len(want))
	for h, bucket := range want {
		if err := b.AddHash(h, bucket); err != nil {
			t.Fatal(err)
		}
	}
	tb, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, tb)
	for h := range want {
		for _, p := range []uint64{h, h - 1, h + 1, h ^ 1<<16, h ^ 1<<47, h ^ 1<<48, h ^ 1<<63, ^h} {
			got, ok := tb.Lookup(p)
			bucket, in := want[p]
			if ok != in || got != bucket {
				t.Fatalf("Lookup(%016x) = %d, %v; want %d, %v", p, got, ok, bucket, in)
			}
		}
	}
}

// TestLookupHugeGroup covers a group beyond centerMax, which place lays
// out without the regression: a million users aiming at the group's last
// slot, pushed back from its end.
func TestLookupHugeGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("a million-user group in -short mode")
	}
	const users = centerMax + 10
	b, _ := NewTableBuilder(7, users)
	for i := range uint64(users) {
		b.AddHash(3<<48|(0xffff_ffff-i/4)<<16|i%4, uint32(i%7))
	}
	tb, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, tb)
	if got, ok := tb.Lookup(3<<48 | 0xffff_0000_0004); ok {
		t.Fatalf("absent hash found in bucket %d", got)
	}
}

func TestNilTable(t *testing.T) {
	var tb *Table
	tb.PrefetchGroup(1)
	tb.PrefetchSlot(1)
	if _, ok := tb.Lookup(HashString("x")); ok {
		t.Fatal("nil table Lookup hit")
	}
	if tb.Len() != 0 || tb.Buckets() != 0 || tb.SizeBytes() != 0 {
		t.Fatalf("nil table: Len %d Buckets %d SizeBytes %d", tb.Len(), tb.Buckets(), tb.SizeBytes())
	}
	if _, err := tb.WriteTo(new(strings.Builder)); err == nil {
		t.Fatal("nil table WriteTo: no error")
	}
}

func TestBuilderDuplicates(t *testing.T) {
	t.Run("same bucket kept once", func(t *testing.T) {
		b, _ := NewTableBuilder(8, 0)
		for range 3 {
			for i := range 100 {
				if err := b.Add(userKey(i), uint32(i%8)); err != nil {
					t.Fatal(err)
				}
			}
		}
		tb, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, tb)
		if tb.Len() != 100 {
			t.Fatalf("Len = %d, want 100", tb.Len())
		}
		once, _ := NewTableBuilder(8, 0)
		for i := range 100 {
			once.Add(userKey(i), uint32(i%8))
		}
		if tbOnce, _ := once.Build(); tb.SizeBytes() != tbOnce.SizeBytes() {
			t.Fatalf("repeats still hold memory: %d bytes, %d without them", tb.SizeBytes(), tbOnce.SizeBytes())
		}
		for i := range 100 {
			if got, ok := tb.Lookup(HashString(userKey(i))); !ok || got != uint32(i%8) {
				t.Fatalf("user %d: %d, %v", i, got, ok)
			}
		}
	})
	t.Run("different buckets rejected", func(t *testing.T) {
		b, _ := NewTableBuilder(8, 0)
		for i := range 50 {
			b.Add(userKey(i), 1)
		}
		b.Add("alice", 3)
		b.Add("alice", 3)
		b.Add("alice", 5)
		_, err := b.Build()
		want := fmt.Sprintf("hashing: key hash %016x assigned to buckets 3 and 5", HashString("alice"))
		if err == nil || err.Error() != want {
			t.Fatalf("Build error %v, want %q", err, want)
		}
	})
	t.Run("builder reusable after build", func(t *testing.T) {
		b, _ := NewTableBuilder(8, 0)
		b.Add("a", 1)
		t1, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		b.Add("b", 2)
		t2, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		if t1.Len() != 1 || t2.Len() != 2 || b.Len() != 2 {
			t.Fatalf("lens %d %d %d", t1.Len(), t2.Len(), b.Len())
		}
		if _, ok := t1.Lookup(HashString("b")); ok {
			t.Fatal("earlier table changed by a later Add")
		}
	})
}

func TestBuilderBucketBounds(t *testing.T) {
	for _, tc := range []struct {
		n       uint32
		wantErr bool
	}{
		{0, true},
		{1, false},
		{4096, false},
		{MaxBuckets, false},
		{MaxBuckets + 1, true},
		{1 << 31, true},
	} {
		_, err := NewTableBuilder(tc.n, 10)
		if (err != nil) != tc.wantErr {
			t.Errorf("NewTableBuilder(%d): err %v, want error %v", tc.n, err, tc.wantErr)
		}
		if err != nil && !errors.Is(err, ErrBucketCount) {
			t.Errorf("NewTableBuilder(%d): %v is not ErrBucketCount", tc.n, err)
		}
	}
	if _, err := NewTableBuilder(4, -1); err != nil {
		t.Errorf("negative size hint: %v", err)
	}

	b, _ := NewTableBuilder(16, 0)
	for _, tc := range []struct {
		bucket uint32
		ok     bool
	}{{0, true}, {15, true}, {16, false}, {1 << 20, false}} {
		err := b.Add("user-x", tc.bucket)
		errH := b.AddHash(42, tc.bucket)
		for _, e := range []error{err, errH} {
			if (e == nil) != tc.ok {
				t.Fatalf("bucket %d: err %v, want ok %v", tc.bucket, e, tc.ok)
			}
			if e != nil && (!errors.Is(e, ErrBucketRange) || !strings.Contains(e.Error(), "bucket "+strconv.FormatUint(uint64(tc.bucket), 10))) {
				t.Fatalf("bucket %d: error %q does not name it", tc.bucket, e)
			}
		}
	}
}

// TestSizePerUser checks the memory budget: 10 bytes per user plus the
// 256 KiB directory, which is at most 16 bytes per user from about 45,000
// users on and about 11 from 300,000.
func TestSizePerUser(t *testing.T) {
	dirBytes := float64(unsafe.Sizeof([tableGroups + 1]uint32{}))
	for _, tc := range []struct {
		users int
		max   float64 // bytes per user
	}{
		{1000, 10 + dirBytes/1000 + 0.1},
		{50_000, 16},
		{300_000, 11},
		{1_000_000, 10.5},
	} {
		tb := randomTable(t, 4096, tc.users, uint64(tc.users))
		perUser := float64(tb.SizeBytes()) / float64(tb.Len())
		if perUser > tc.max {
			t.Errorf("users=%d: %.2f bytes per user, want at most %.2f", tc.users, perUser, tc.max)
		}
		// 1.25 slots per user, so a lookup lands within a slot or two.
		perUser = float64(len(tb.slots)) / float64(tb.Len())
		if perUser < 1.2 || perUser > 1.25 {
			t.Errorf("users=%d: %.3f slots per user, want 1.2..1.25", tc.users, perUser)
		}
	}
}

// TestLookupWalk checks what makes a lookup one memory access: with uniform
// hashes the slot a lookup lands on is almost always the user's own or
// within a slot or two of it, in the same cache line or the next.
func TestLookupWalk(t *testing.T) {
	for _, users := range []int{10_000, 1_000_000} {
		tb := randomTable(t, 4096, users, 11)
		hashes, _ := usersOf(tb)
		var total, far, back int
		for _, h := range hashes {
			g := h >> slotHashBits
			lo, hi := tb.dir[g], tb.dir[g+1]
			aim := lo + slotOf(h, hi-lo)
			// The user's slot as Lookup finds it: the first of its value.
			q := aim
			for tb.slots[q] < h<<groupBits {
				q++
			}
			for q > lo && tb.slots[q-1] >= h<<groupBits {
				q--
			}
			walk := int(q) - int(aim)
			if walk < 0 {
				back++
				walk = -walk
			}
			total += walk
			if walk > linearScanMax {
				far++
			}
		}
		n := len(hashes)
		mean := float64(total) / float64(n)
		t.Logf("users=%d: mean walk %.2f slots; %d of %d walks back, %d longer than %d",
			users, mean, back, n, far, linearScanMax)
		if mean > 1.5 {
			t.Errorf("users=%d: mean walk %.2f slots, want at most 1.5", users, mean)
		}
		if far > n/10_000 {
			t.Errorf("users=%d: %d of %d walks longer than %d slots", users, far, n, linearScanMax)
		}
	}
}

func TestDirBits(t *testing.T) {
	for _, users := range []int{0, 1, 5, 11} {
		if got := dirBits(users); got != 1 {
			t.Errorf("dirBits(%d) = %d, want the minimum 1", users, got)
		}
	}
	for users := 12; users <= 1<<33; users = users*5/4 + 1 {
		b := dirBits(users)
		perSlot := float64(users) / float64(uint64(1)<<b)
		if perSlot < 2.8 || perSlot > 5.7 {
			t.Errorf("dirBits(%d) = %d: %.2f users per slot, want 2.8..5.7", users, b, perSlot)
		}
	}
	if got := dirBits(1e7); got != 21 {
		t.Errorf("dirBits(1e7) = %d, want 21 (4.8 users per slot)", got)
	}
}
