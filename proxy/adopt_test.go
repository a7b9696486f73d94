package proxy

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/socialroute/socialroute/buckets"
)

// A change made here that loses a tie to one made elsewhere at the same
// time (same version number, greater name) is undone although its caller
// was told it was done: the node says so, loudly, once it adopts the
// other; adopting the fleet's next version as usual is no warning.
func TestLostConcurrentChangeIsWarned(t *testing.T) {
	logs := &syncBuffer{}
	s, err := New(testConfig(t, nil), nil, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mine, err := s.ChangePlacement(func(o *buckets.Overrides) error {
		o.Pins = map[uint32]string{7: "us-b"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const lost = "this node's change lost to one made at the same time"
	if ok, err := s.AdoptPlacement(mine.Version(), "a-node", buckets.Overrides{}); ok || err != nil || strings.Contains(logs.String(), lost) {
		t.Fatalf("a tie this node wins: adopted %v, %v; logs %s", ok, err, logs)
	}
	// The same change made elsewhere at once (every node reloading the
	// same file) loses nothing.
	if ok, err := s.AdoptPlacement(mine.Version(), "u-node", mine.Overrides()); !ok || err != nil || strings.Contains(logs.String(), lost) {
		t.Fatalf("a tie with the same change: adopted %v, %v; logs %s", ok, err, logs)
	}
	if mine, err = s.ChangePlacement(func(o *buckets.Overrides) error {
		o.Pins = map[uint32]string{7: "us-c"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AdoptPlacement(mine.Version(), "z-node", buckets.Overrides{}); !ok || err != nil {
		t.Fatalf("a tie this node loses: adopted %v, %v", ok, err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"bucket map: "+lost) || !strings.Contains(logs.String(), "origin=z-node") {
		t.Fatalf("the lost change was not warned of: %s", logs)
	}
	before := strings.Count(logs.String(), "level=WARN")
	if ok, _ := s.AdoptPlacement(mine.Version()+1, "a-node", buckets.Overrides{}); !ok || strings.Count(logs.String(), "level=WARN") != before {
		t.Fatalf("the fleet's next version: adopted %v; logs %s", ok, logs)
	}
}
