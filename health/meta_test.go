package health

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMetaRoundTripAndSizeBound(t *testing.T) {
	on := true
	m := Meta{Continent: "us", Datacenter: "us-east", State: Draining, MapVersion: 42, MapOrigin: "edge-us-east-1", Upstreams: 4, Healthy: 3,
		Rates: []float32{1.5, 0, 2000}, Hot: []HotHash{{Hash: 7, Spread: 4}}, AutoApply: &on}
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta(b)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// The releases before end after the hot keys, or after the origin:
	// they read this one's metadata (they stop there), and this one reads
	// theirs (no origin; no auto_apply).
	noFlags := b[:len(b)-1]
	got, err = DecodeMeta(noFlags)
	if want := m; err != nil || func() bool { want.AutoApply = nil; return !reflect.DeepEqual(got, want) }() {
		t.Fatalf("the metadata of the release before: %+v, %v", got, err)
	}
	old := noFlags[:len(noFlags)-1-len(m.MapOrigin)]
	got, err = DecodeMeta(old)
	if want := m; err != nil || func() bool { want.MapOrigin, want.AutoApply = "", nil; return !reflect.DeepEqual(got, want) }() {
		t.Fatalf("the metadata of the release before that: %+v, %v", got, err)
	}
	off := false
	m.AutoApply = &off
	if b, _ := m.Encode(nil); func() bool { got, err := DecodeMeta(b); return err != nil || got.AutoApply == nil || *got.AutoApply }() {
		t.Fatal("auto_apply off did not round-trip as off")
	}
	// The worst case the config allows still fits memberlist's 512 bytes:
	// 64 datacenters' rates and a full list of hot keys.
	big := Meta{Continent: strings.Repeat("c", 20), Datacenter: strings.Repeat("d", 40), MapOrigin: strings.Repeat("n", 20), Rates: make([]float32, MaxDatacenters), AutoApply: &on}
	for i := range 40 {
		big.Hot = append(big.Hot, HotHash{Hash: uint64(i), Spread: 2})
	}
	b, err = big.Encode(nil)
	if err != nil || len(b) > MaxMetaSize {
		t.Fatalf("worst case: %d bytes, %v", len(b), err)
	}
	if got, _ := DecodeMeta(b); len(got.Hot) != MaxHotInMeta {
		t.Fatalf("%d hot keys carried, want the first %d", len(got.Hot), MaxHotInMeta)
	}
	// A node name too long to fit beside them is left out, not the
	// metadata with it.
	huge := big
	huge.MapOrigin = strings.Repeat("n", 255)
	if b, err := huge.Encode(nil); err != nil || len(b) > MaxMetaSize {
		t.Fatalf("with a 255-byte node name: %d bytes, %v", len(b), err)
	} else if got, _ := DecodeMeta(b); got.MapOrigin != "" || got.MapVersion != big.MapVersion {
		t.Fatalf("with a 255-byte node name: origin %q", got.MapOrigin)
	}
	// (Cut before the origin or the flags, it is a release before's.)
	for _, cut := range []int{0, 1, 5, len(b) - 3} {
		if _, err := DecodeMeta(b[:cut]); err == nil {
			t.Fatalf("metadata cut to %d bytes decoded", cut)
		}
	}
}

// A key one node detects hot is spread by every node.
func TestHotKeysSpreadOverTheFleet(t *testing.T) {
	east, west, eu := fleet(t)
	west.SetHotKeys([]HotHash{{Hash: 12345, Spread: 6}})
	for _, n := range []*testNode{east, eu, west} {
		eventually(t, 5*time.Second, n.name+" spreads the key", func() bool { return n.HotSpread(12345) == 6 })
	}
	if east.HotSpread(999) != 1 {
		t.Fatal("a key nobody detected is spread")
	}
	west.SetHotKeys(nil)
	eventually(t, 5*time.Second, "the key cools everywhere", func() bool { return eu.HotSpread(12345) == 1 && east.HotSpread(12345) == 1 })
}

// Hot keys that do not fit under memberlist's cap are left out; the rest
// of the metadata (health, the draining word) still goes.
func TestMetaLeavesOutHotKeysThatDoNotFit(t *testing.T) {
	m := Meta{
		Continent: strings.Repeat("c", 63), Datacenter: strings.Repeat("d", 63), State: Draining,
		Rates: make([]float32, MaxDatacenters), Hot: make([]HotHash, MaxHotInMeta),
	}
	for i := range m.Hot {
		m.Hot[i] = HotHash{Hash: uint64(i + 1), Spread: 4}
	}
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatalf("metadata with long names, %d rates and %d hot keys: %v", MaxDatacenters, MaxHotInMeta, err)
	}
	if len(b) > MaxMetaSize {
		t.Fatalf("%d bytes, over %d", len(b), MaxMetaSize)
	}
	got, err := DecodeMeta(b)
	if err != nil || got.State != Draining || got.Datacenter != m.Datacenter || len(got.Hot) == 0 || len(got.Hot) >= MaxHotInMeta {
		t.Fatalf("decoded %+v, %v: want the state and names, and some but not all hot keys", got, err)
	}
}
