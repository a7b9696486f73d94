package hashing

import (
	"syscall"
	"unsafe"
)

const hugePage = 2 << 20

// adviseHugePages asks the kernel to back the 2 MiB pages that lie wholly
// inside words with transparent huge pages (where THP is "madvise" or
// "always"; elsewhere the advice is ignored). A lookup touches one random
// slot of the table; with 4 KiB pages that is also a TLB miss, whose page
// walk costs as much as the slot's own cache miss and more under a
// hypervisor's nested paging, and which a prefetch cannot hide. It must
// run before words is first written: pages already faulted in stay small.
// Best effort: an error leaves the table on small pages, just slower.
func adviseHugePages(words []uint64) {
	if len(words)*8 < 2*hugePage {
		return
	}
	start := uintptr(unsafe.Pointer(&words[0]))
	end := start + uintptr(len(words))*8
	first := (start + hugePage - 1) &^ (hugePage - 1)
	last := end &^ (hugePage - 1)
	region := unsafe.Slice((*byte)(unsafe.Pointer(&words[(first-start)/8])), last-first)
	_ = syscall.Madvise(region, 14) // MADV_HUGEPAGE; the syscall package has no name for it
}
