package hashing

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// benchSizes is the size sweep of the table benchmarks; 1e7 is the scale
// the memory budget is written for and is skipped under -short.
var benchSizes = []struct {
	name  string
	users int
}{
	{"users=1e4", 1e4},
	{"users=1e6", 1e6},
	{"users=1e7", 1e7},
}

const benchBuckets = 4096

var (
	benchMu     sync.Mutex
	benchTables = map[int]*Table{}
)

// benchTable builds a table of uniform random hashes once per size and
// keeps it for every benchmark that needs it (1e7 takes about a second and
// 110 MB).
func benchTable(b *testing.B, users int) *Table {
	b.Helper()
	if users >= 1e7 && testing.Short() {
		b.Skip("skipping the 1e7-user table in -short mode")
	}
	benchMu.Lock()
	defer benchMu.Unlock()
	if t, ok := benchTables[users]; ok {
		return t
	}
	t := randomTable(b, benchBuckets, users, 1)
	benchTables[users] = t
	return t
}

// probes returns 1<<16 hashes in random order: present in t if hit,
// otherwise absent (a fresh random hash, which is in t with probability
// ~users/2^64).
func probes(t *Table, hit bool) []uint64 {
	rng := splitmix64(42)
	hashes, _ := usersOf(t)
	ps := make([]uint64, 1<<16)
	for i := range ps {
		r := rng.next()
		if hit {
			ps[i] = hashes[r%uint64(len(hashes))]
		} else {
			ps[i] = r
		}
	}
	return ps
}

func reportSize(b *testing.B, t *Table) {
	b.ReportMetric(float64(t.SizeBytes())/float64(t.Len()), "bytes/user")
}

func BenchmarkTableLookup(b *testing.B) {
	for _, size := range benchSizes {
		for _, kind := range []struct {
			name string
			hit  bool
		}{{"hit", true}, {"miss", false}} {
			b.Run(size.name+"/"+kind.name, func(b *testing.B) {
				t := benchTable(b, size.users)
				ps := probes(t, kind.hit)
				mask := len(ps) - 1
				b.ReportAllocs()
				found := 0
				i := 0
				for b.Loop() {
					if _, ok := t.Lookup(ps[i&mask]); ok {
						found++
					}
					i++
				}
				if kind.hit && found != i {
					b.Fatalf("%d of %d probes found", found, i)
				}
				reportSize(b, t)
			})
		}
	}
}

func BenchmarkTableLookupParallel(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			t := benchTable(b, size.users)
			ps := probes(t, true)
			mask := len(ps) - 1
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var sink uint32
				for i := 0; pb.Next(); i++ {
					bk, _ := t.Lookup(ps[i&mask])
					sink += bk
				}
				_ = sink
			})
			reportSize(b, t)
		})
	}
}

// BenchmarkAssignerBucket is the whole step 2 of a request for a key the
// proxy already hashed: half the users in the table, half falling back.
func BenchmarkAssignerBucket(b *testing.B) {
	t := benchTable(b, 1e6)
	a, err := NewAssigner(benchBuckets, t)
	if err != nil {
		b.Fatal(err)
	}
	ps := probes(t, true)
	for i := 0; i < len(ps); i += 2 {
		ps[i] = ^ps[i]
	}
	mask := len(ps) - 1
	b.ReportAllocs()
	var sink uint32
	i := 0
	for b.Loop() {
		bk, _ := a.Bucket(ps[i&mask])
		sink += bk
		i++
	}
	_ = sink
}

func BenchmarkHashString(b *testing.B) {
	for _, n := range []int{8, 32} {
		key := string(bytes.Repeat([]byte("k"), n))
		b.Run(fmt.Sprintf("len=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			var sink uint64
			for b.Loop() {
				sink += HashString(key)
			}
			_ = sink
		})
	}
}

func BenchmarkTableBuild(b *testing.B) {
	b.Run("users=1e6", func(b *testing.B) {
		tb := randomBuilder(b, benchBuckets, 1e6, 1)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tb.Build(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkReadTable(b *testing.B) {
	b.Run("users=1e6", func(b *testing.B) {
		data := encode(b, benchTable(b, 1e6))
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ReadTable(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
