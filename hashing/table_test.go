package hashing

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// checkInvariants verifies the table's internal layout: ascending hashes,
// buckets in range, and a directory that points every hash at its slot.
func checkInvariants(t *testing.T, tb *Table) {
	t.Helper()
	if len(tb.hashes) != len(tb.buckets) {
		t.Fatalf("%d hashes but %d buckets", len(tb.hashes), len(tb.buckets))
	}
	for i := 1; i < len(tb.hashes); i++ {
		if tb.hashes[i] <= tb.hashes[i-1] {
			t.Fatalf("hashes not ascending at %d", i)
		}
	}
	for i, b := range tb.buckets {
		if uint32(b) >= tb.n {
			t.Fatalf("bucket %d at %d >= N %d", b, i, tb.n)
		}
	}
	if tb.dir[0] != 0 || int(tb.dir[len(tb.dir)-1]) != len(tb.hashes) {
		t.Fatalf("directory spans [%d, %d], want [0, %d]", tb.dir[0], tb.dir[len(tb.dir)-1], len(tb.hashes))
	}
	for p := 0; p+1 < len(tb.dir); p++ {
		for i := tb.dir[p]; i < tb.dir[p+1]; i++ {
			if got := tb.hashes[i] >> tb.shift; got != uint64(p) {
				t.Fatalf("hash %d (%016x) in slot %d, belongs in %d", i, tb.hashes[i], p, got)
			}
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
	if got, ok := tb.Lookup(^uint64(0)); !ok || got != 2 {
		t.Fatalf("Lookup(max) = %d, %v", got, ok)
	}
}

func TestNilTable(t *testing.T) {
	var tb *Table
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
		if cap(tb.hashes) != 100 || cap(tb.buckets) != 100 {
			t.Fatalf("repeats still hold memory: cap %d, %d", cap(tb.hashes), cap(tb.buckets))
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

// TestSizePerUser checks the memory budget: at most 16 bytes per user, and
// the target of about 11 for a table large enough to amortise its header.
func TestSizePerUser(t *testing.T) {
	for _, users := range []int{1000, 100_000, 300_000} {
		tb := randomTable(t, 4096, users, uint64(users))
		perUser := float64(tb.SizeBytes()) / float64(tb.Len())
		if perUser > 12 {
			t.Errorf("users=%d: %.2f bytes per user, want at most 12", users, perUser)
		}
		// Slots average about 4 users, so scans stay short.
		perSlot := float64(tb.Len()) / float64(len(tb.dir)-1)
		if perSlot < 2.8 || perSlot > 5.7 {
			t.Errorf("users=%d: %.2f users per directory slot, want 2.8..5.7", users, perSlot)
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
