package proxy

import (
	"os"
	"slices"
	"strconv"
	"strings"
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

// A turnConn's socket is watched by its readyOrder's epoll instance and no
// longer by the runtime's (as the kernel lists them in /proc), and Close
// takes it out of readyOrder's too.
func TestReadyOrderTakesSocketsFromRuntime(t *testing.T) {
	c, _ := turnPair(t, true)
	w := c.inOrder
	if runtimeEpoll < 0 {
		t.Fatal("the runtime's epoll instance was not found")
	}
	if watches(t, runtimeEpoll, w.fd) {
		t.Fatalf("the runtime's epoll instance (fd %d) still watches the socket (fd %d)", runtimeEpoll, w.fd)
	}
	if !watches(t, w.order.epfd, w.fd) {
		t.Fatalf("readyOrder's epoll instance (fd %d) does not watch the socket (fd %d)", w.order.epfd, w.fd)
	}
	c.Close()
	if watches(t, w.order.epfd, w.fd) {
		t.Fatalf("readyOrder's epoll instance still watches the closed socket's fd %d", w.fd)
	}
}

// watches reports whether the epoll instance epfd watches fd.
func watches(t *testing.T, epfd, fd int) bool {
	t.Helper()
	info, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(epfd))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "tfd:" && f[1] == strconv.Itoa(fd) {
			return true
		}
	}
	return false
}
