package hashing

import (
	"errors"
	"strings"
	"testing"
)

func TestAssigner(t *testing.T) {
	const n = 256
	b, _ := NewTableBuilder(n, 0)
	// Put every known user where the fallback would not, so a table hit and
	// a fallback are told apart by the bucket alone.
	for i := range 1000 {
		h := HashString(userKey(i))
		if err := b.AddHash(h, (FallbackBucket(h, n)+1)%n); err != nil {
			t.Fatal(err)
		}
	}
	tb, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAssigner(n, tb)
	if err != nil {
		t.Fatal(err)
	}
	if a.Buckets() != n || a.Table() != tb {
		t.Fatalf("Buckets %d Table %p", a.Buckets(), a.Table())
	}
	for _, tc := range []struct {
		key       string
		fromTable bool
	}{
		{userKey(0), true},
		{userKey(999), true},
		{userKey(1000), false},
		{"stranger", false},
		{"", false},
	} {
		h := HashString(tc.key)
		bucket, from := a.Bucket(h)
		want := FallbackBucket(h, n)
		if tc.fromTable {
			want = (want + 1) % n
		}
		if from != tc.fromTable || bucket != want {
			t.Errorf("Bucket(%q) = %d, %v; want %d, %v", tc.key, bucket, from, want, tc.fromTable)
		}
	}
}

func TestAssignerWithoutTable(t *testing.T) {
	a, err := NewAssigner(4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Table() != nil {
		t.Fatal("Table() is not nil")
	}
	for i := range 1000 {
		h := HashString(userKey(i))
		if bucket, from := a.Bucket(h); from || bucket != FallbackBucket(h, 4096) {
			t.Fatalf("user %d: %d, %v", i, bucket, from)
		}
	}
}

func TestNewAssignerErrors(t *testing.T) {
	tb := randomTable(t, 64, 10, 1)
	for _, tc := range []struct {
		name string
		n    uint32
		t    *Table
		want error
	}{
		{"zero buckets", 0, nil, ErrBucketCount},
		{"too many buckets", MaxBuckets + 1, nil, ErrBucketCount},
		{"table for fewer buckets", 128, tb, nil},
		{"table for more buckets", 32, tb, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAssigner(tc.n, tc.t)
			if err == nil {
				t.Fatalf("accepted: %+v", a)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v is not %v", err, tc.want)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "hashing: ") {
				t.Fatalf("error %q lacks the package prefix", msg)
			}
		})
	}
	if _, err := NewAssigner(64, tb); err != nil {
		t.Fatalf("matching N: %v", err)
	}
	if _, err := NewAssigner(MaxBuckets, nil); err != nil {
		t.Fatalf("N = MaxBuckets: %v", err)
	}
}
