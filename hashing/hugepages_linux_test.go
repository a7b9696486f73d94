package hashing

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// A large table's slots are a mapping of their own on huge pages (a
// lookup's page walk would otherwise cost as much as its cache miss), and
// the mapping goes when the table does, so reloads do not leak it.
func TestLargeTableSlotsAreOnHugePagesAndFreedWithTheTable(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skipf("transparent huge pages are off on this machine (%q)", strings.TrimSpace(string(mode)))
	}
	tb := randomTable(t, 4096, 1_000_000, 7) // 10 MB of slots
	addr := uintptr(unsafe.Pointer(&tb.slots[0]))
	size := len(tb.slots) * 8
	huge, found := anonHugeKiB(t, addr)
	if !found {
		t.Fatal("no mapping holds the slots")
	}
	// All the 2 MiB pages the slots cover but one, which a fragmented
	// machine may fail to find room for.
	if want := (size/hugePage - 1) * (hugePage >> 10); huge < want {
		t.Fatalf("%d KiB of the %d KiB of slots are on huge pages, want at least %d", huge, size>>10, want)
	}
	if b, ok := tb.Lookup(tb.slots[0] >> groupBits); !ok || b != uint32(tb.slots[0]&slotBucket) {
		t.Fatalf("lookup of the first user: %d, %v", b, ok)
	}

	tb = nil
	for deadline := time.Now().Add(10 * time.Second); ; {
		runtime.GC()
		if _, found := anonHugeKiB(t, addr); !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the slots' mapping outlived the table by 10 s of garbage collections")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// anonHugeKiB is smaps' AnonHugePages of the mapping that holds addr, and
// whether there is one.
func anonHugeKiB(t *testing.T, addr uintptr) (int, bool) {
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
			return kib, true
		}
	}
	return 0, false
}
