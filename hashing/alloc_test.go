//go:build !race

package hashing

import "testing"

// The request path must not allocate (race instrumentation does, so this
// file is left out of -race builds).
func TestZeroAllocs(t *testing.T) {
	tb := randomTable(t, 4096, 10_000, 7)
	a, err := NewAssigner(4096, tb)
	if err != nil {
		t.Fatal(err)
	}
	bare, _ := NewAssigner(4096, nil)
	var nilTable *Table
	hashes, _ := usersOf(tb)
	hit, miss := hashes[1234], ^hashes[1234]
	key := "user-123456789"
	var sink uint32
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Table.Lookup hit", func() { b, _ := tb.Lookup(hit); sink += b }},
		{"Table.Lookup miss", func() { b, _ := tb.Lookup(miss); sink += b }},
		{"nil Table.Lookup", func() { b, _ := nilTable.Lookup(hit); sink += b }},
		{"Assigner.Bucket table", func() { b, _ := a.Bucket(hit); sink += b }},
		{"Assigner.Bucket fallback", func() { b, _ := a.Bucket(miss); sink += b }},
		{"Assigner.Bucket no table", func() { b, _ := bare.Bucket(hit); sink += b }},
		{"HashString", func() { sink += uint32(HashString(key)) }},
	} {
		if allocs := testing.AllocsPerRun(1000, tc.f); allocs != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tc.name, allocs)
		}
	}
	_ = sink
}
