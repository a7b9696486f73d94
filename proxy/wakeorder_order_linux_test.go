//go:build !race

// The race detector shuffles the scheduler's run queue on purpose, so the
// order the waiters run in says nothing there.

package proxy

import (
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
)

// The goroutines waiting on sockets run in the order the sockets became
// readable, first ready first served, not the runtime's last-first. The
// test is on one P so the run queue is the only scheduler: readiness in
// a known order, one dispatch, and the order the waiters ran in.
func TestReadyOrderServesFirstReadyFirst(t *testing.T) {
	const waiters = 8
	want := make([]int, waiters)
	for i := range want {
		want[i] = i
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))

	r, err := newReadyOrder()
	if err != nil {
		t.Fatal(err)
	}
	defer r.file.Close() // its dispatcher is this test, not run

	// A timer firing between dispatch and the waiters running may put its
	// goroutine ahead of them; a run order that is last-first every time
	// is the failure, so the test takes the best of three.
	var got []int
	for attempt := 0; attempt < 3 && !slices.Equal(got, want); attempt++ {
		got = serveOrder(t, r, waiters)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("waiters ran in the order %v; their sockets became readable in the order %v", got, want)
	}
}

// serveOrder makes n sockets readable one after the other, dispatches
// once, and returns the order their waiters ran in.
func serveOrder(t *testing.T, r *readyOrder, n int) []int {
	t.Helper()
	var (
		mu      sync.Mutex
		order   []int
		ran     sync.WaitGroup
		waiting sync.WaitGroup
	)
	writers := make([]int, n)
	for i := range n {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		reader, writer := fds[0], fds[1]
		writers[i] = writer
		w := &orderedWait{order: r, fd: reader}
		w.rd.init()
		w.wr.init()
		slot, err := r.add(w, reader)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { r.remove(slot, reader); syscall.Close(reader); syscall.Close(writer) }()
		waiting.Add(1)
		ran.Add(1)
		go func() {
			defer ran.Done()
			waiting.Done()
			<-w.rd.ready
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
	}
	waiting.Wait()
	runtime.Gosched() // the waiters park on their channels
	for _, w := range writers {
		if _, err := syscall.Write(w, []byte{'x'}); err != nil {
			t.Fatal(err)
		}
	}
	r.dispatch(uintptr(r.epfd))
	ran.Wait()
	return order
}
