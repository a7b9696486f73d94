package hashing

import (
	"syscall"
	"unsafe"
)

const hugePage = 2 << 20

// newSlots returns n zeroed words for a table's slots, and the mapping to
// unmap once the table is garbage (nil: the words are on the Go heap).
//
// Every lookup touches one random slot. With 4 KiB pages that is a TLB
// miss as well as a cache miss, and the page walk, nested under a
// hypervisor, costs as much again and is not hidden by a prefetch. So a
// table of a few huge pages or more gets a mapping of its own, aligned
// to 2 MiB and advised onto transparent huge pages (used where THP is
// "madvise" or "always"; elsewhere the advice is ignored) before it is
// first written. It lives outside the Go heap because the advice would
// outlive the table there: after a reload the range would hold other
// objects on huge pages, and advising it back splits the heap's mapping
// for good. Any error falls back to the Go heap, only slower.
func newSlots(n int) ([]uint64, []byte) {
	size := n * 8
	if size < 2*hugePage {
		return make([]uint64, n), nil
	}
	whole := (size + hugePage - 1) &^ (hugePage - 1)
	mem, err := syscall.Mmap(-1, 0, whole+hugePage, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
	if err != nil {
		return make([]uint64, n), nil
	}
	off := int(-uintptr(unsafe.Pointer(&mem[0])) & (hugePage - 1))
	_ = syscall.Madvise(mem[off:off+whole], 14) // MADV_HUGEPAGE, which the syscall package does not name
	return unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off])), n), mem
}

// freeSlots unmaps what newSlots mapped.
func freeSlots(mem []byte) { _ = syscall.Munmap(mem) }
