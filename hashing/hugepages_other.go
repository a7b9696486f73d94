//go:build !linux

package hashing

// newSlots returns n zeroed words on the Go heap: only Linux tables get a
// mapping of their own on huge pages.
func newSlots(n int) ([]uint64, []byte) { return make([]uint64, n), nil }

func freeSlots([]byte) {}
