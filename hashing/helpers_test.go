package hashing

import (
	"bytes"
	"fmt"
	"testing"
)

// splitmix64 is a tiny deterministic generator of uniform 64-bit values,
// standing in for key hashes where building real keys would only slow the
// test down.
type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// userKey is the deterministic routing key of test user i.
func userKey(i int) string { return fmt.Sprintf("user-%d", i) }

// randomBuilder returns a builder holding users uniform random hashes with
// buckets spread over n.
func randomBuilder(tb testing.TB, n uint32, users int, seed uint64) *TableBuilder {
	tb.Helper()
	b, err := NewTableBuilder(n, users)
	if err != nil {
		tb.Fatal(err)
	}
	rng := splitmix64(seed)
	for range users {
		h := rng.next()
		if err := b.AddHash(h, uint32(h>>7)%n); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

// randomTable builds a table of users uniform random hashes.
func randomTable(tb testing.TB, n uint32, users int, seed uint64) *Table {
	tb.Helper()
	t, err := randomBuilder(tb, n, users, seed).Build()
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// encode returns the file bytes of t.
func encode(tb testing.TB, t *Table) []byte {
	tb.Helper()
	var buf bytes.Buffer
	n, err := t.WriteTo(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	if n != int64(buf.Len()) {
		tb.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

// usersOf returns the hashes and buckets t holds, hashes ascending, as the
// table's own iterator reconstructs them from its slots.
func usersOf(t *Table) (hashes []uint64, buckets []uint16) {
	for h, b := range t.all() {
		hashes = append(hashes, h)
		buckets = append(buckets, b)
	}
	return hashes, buckets
}
