package hashing

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// The table's slots are advised onto huge pages: without the advice a
// lookup's page walk costs as much as its cache miss. Tested on memory of
// its own mapping, so smaps reports its pages alone.
func TestAdviseHugePagesBacksTheSlotsWithHugePages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skipf("transparent huge pages are off on this machine (%q)", strings.TrimSpace(string(mode)))
	}
	const size = 16 << 20
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	words := unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), size/8)
	adviseHugePages(words)
	for i := range words { // first touch, after the advice
		words[i] = uint64(i)
	}
	huge := anonHugeKiB(t, uintptr(unsafe.Pointer(&mem[0])))
	// At least the 2 MiB pages wholly inside the mapping but one, which a
	// fragmented machine may fail to find room for.
	if want := (size/hugePage - 2) * (hugePage >> 10); huge < want {
		t.Fatalf("%d KiB of the advised %d MiB are on huge pages, want at least %d", huge, size>>20, want)
	}
}

// anonHugeKiB is smaps' AnonHugePages of the mapping that holds addr.
func anonHugeKiB(t *testing.T, addr uintptr) int {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	in := false
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 {
			in = lo <= addr && addr < hi
			continue
		}
		var kib int
		if in && strings.HasPrefix(line, "AnonHugePages:") {
			fmt.Sscanf(strings.TrimPrefix(line, "AnonHugePages:"), "%d", &kib)
			return kib
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return 0
}
