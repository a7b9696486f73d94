package proxy

import (
	"slices"
	"testing"
)

// A closed turnConn leaves readyOrder: its slot is free for the next
// connection, and the descriptor, out of the epoll instance before it was
// closed, can wake nobody when its number is reused.
func TestReadyOrderReleasesClosedConn(t *testing.T) {
	c, _ := turnPair(t, true)
	w := c.inOrder
	c.Close()
	r := w.order
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.slots[w.slot] != nil || !slices.Contains(r.free, w.slot) {
		t.Fatalf("slot %d of a closed connection is still taken", w.slot)
	}
}
