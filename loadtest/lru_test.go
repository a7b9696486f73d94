package loadtest

import (
	"math/rand/v2"
	"testing"
)

func TestLRUEvictsTheLeastRecentlyUsed(t *testing.T) {
	c := newLRU(3)
	for _, u := range []uint64{1, 2, 3} {
		if c.touch(u) {
			t.Fatalf("first read of %d hit", u)
		}
	}
	if !c.touch(1) { // 1 is now the most recent; 2 the least
		t.Fatal("1 missed while cached")
	}
	if c.touch(4) { // evicts 2
		t.Fatal("4 hit before it was read")
	}
	if c.contains(2) || !c.contains(1) || !c.contains(3) || !c.contains(4) {
		t.Fatalf("after evicting: contains 1 %v, 2 %v, 3 %v, 4 %v; want 2 evicted", c.contains(1), c.contains(2), c.contains(3), c.contains(4))
	}
	if c.Len() != 3 || c.Cap() != 3 {
		t.Fatalf("Len %d Cap %d, want 3 3", c.Len(), c.Cap())
	}
	c.reset()
	if c.Len() != 0 || c.contains(1) || c.touch(1) {
		t.Fatal("reset left entries behind")
	}
}

// The list stays a consistent LRU under a random workload: checked
// against a plain slice model.
func TestLRUMatchesAModel(t *testing.T) {
	const capacity = 16
	c := newLRU(capacity)
	var model []uint64 // most recent first
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		u := uint64(r.IntN(40))
		hit := false
		for j, m := range model {
			if m == u {
				hit = true
				model = append(model[:j], model[j+1:]...)
				break
			}
		}
		model = append([]uint64{u}, model...)
		if len(model) > capacity {
			model = model[:capacity]
		}
		if got := c.touch(u); got != hit {
			t.Fatalf("step %d: touch(%d) = %v, model says %v", i, u, got, hit)
		}
	}
	// Walk the list from the head: the model's order.
	for s, i := c.head, 0; s >= 0; s, i = c.next[s], i+1 {
		if c.keys[s] != model[i] {
			t.Fatalf("position %d holds %d, model %d", i, c.keys[s], model[i])
		}
	}
}
