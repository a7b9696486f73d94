package proxy

import (
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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

// GOMAXPROCS raised at run time (as the runtime does when a container's
// CPU limit changes) gets a dispatcher for each new P at the next
// connection, and every connection, whichever dispatcher it lands on, is
// served. A Read yields before it sends on one P only.
func TestReadyOrderFollowsGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	readyOrderFor(-1)
	had := readyOrderCount()
	if had == 0 {
		t.Skip("epoll could not be set up here")
	}
	want := had + 2
	runtime.GOMAXPROCS(want)
	for i := range want { // descriptors are spread by number: reach them all
		c, peer := turnPair(t, true)
		go echo(peer, 64)
		msg := []byte("turn " + strconv.Itoa(i))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
			t.Fatalf("connection %d on %d Ps: read %q, %v; want %q", i, want, got, err, msg)
		}
	}
	if got := readyOrderCount(); got != want {
		t.Fatalf("%d dispatchers after GOMAXPROCS went from %d to %d, want %d", got, had, want, want)
	}
	if yieldsBeforeSend.Load() {
		t.Fatalf("a Read yields before it sends on %d Ps", want)
	}
	runtime.GOMAXPROCS(1)
	readyOrderFor(-1)
	if !yieldsBeforeSend.Load() {
		t.Fatal("a Read does not yield before it sends on one P")
	}
	if got := readyOrderCount(); got != want {
		t.Fatalf("%d dispatchers after GOMAXPROCS fell to 1, want the %d there were: they serve their connections still", got, want)
	}
}

func readyOrderCount() int {
	readyOrdersMu.Lock()
	defer readyOrdersMu.Unlock()
	return len(readyOrders)
}
