package proxy

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// readyOrder wakes the goroutines waiting on turnConns in the order their
// sockets became readable, first ready first served, as an event loop such
// as HAProxy's serves them.
//
// Why not leave it to the runtime: Go's netpoller walks each batch of
// epoll events in order but pushes every readied goroutine onto a list
// whose head is the last pushed, and the scheduler runs that list from its
// head. Under saturation every poll returns a batch, so the connection
// that became ready first waits for the whole batch after having waited
// for the one before: the same mean latency, a wider spread, and a p99
// about 20% above an event loop's (bench/README.md has the measurements,
// and bench/fifo-go.sh the one-line runtime patch that showed it).
//
// How: every turnConn's socket is in an epoll instance of a readyOrder
// (edge-triggered: readable, writable, peer closed) and, where
// takeFromRuntime manages it, no longer in the runtime's, so that each
// arrival wakes one instance, not two. The readyOrder's descriptor is
// itself polled by the runtime. Its goroutine, woken when any of its
// sockets has news, takes the events in the kernel's order with a
// non-blocking epoll_wait and gives each waiting turnConn a permit
// through a one-slot channel, one for reads and one for writes. A
// receive on a channel whose sender readies it goes to the scheduler's
// "run next" slot and pushes the previous one to the back of the run
// queue, so the permits go out second to last first and then the first:
// the queue runs in epoll's order.
//
// A permit means "look again", never "data is there" or "there is room":
// one left over costs a system call that finds nothing and a wait for the
// next. Deadlines of waits here are timers of the turnConn's, as the
// runtime's poller no longer ends them (reads always; writes when the
// socket left the runtime's poller, which otherwise still waits for room).
type readyOrder struct {
	epfd int
	file *os.File // epfd, polled by the runtime
	raw  syscall.RawConn

	mu    sync.RWMutex   // the dispatcher reads slots under RLock, once per batch
	slots []*orderedWait // index is the epoll event's data; nil when free
	free  []int32

	events [128]syscall.EpollEvent // the dispatcher's alone
}

// readyOrders are started as connections come, one per P: each new
// turnConn looks at GOMAXPROCS (which the runtime may change as a
// container's CPU limit changes) and starts the ones missing. They live as
// long as the process, as the runtime's own poller does; after GOMAXPROCS
// falls, the extra ones still serve their connections, with fewer Ps to
// run them. One for the whole process would send every read wakeup
// through one goroutine on one P, a ceiling on a large machine; with one
// per P the runtime's poller hands the dispatchers out to the Ps as it
// hands out any goroutine, and each connection keeps to the one it was
// given (by descriptor number), so its wakeups stay in order. Empty when
// epoll could not be set up: turnConns then wait in the runtime's poller
// as before.
var (
	readyOrdersMu sync.Mutex
	readyOrders   []*readyOrder // grown under readyOrdersMu, never shrunk
	noReadyOrder  bool          // epoll could not be set up: do not try again

	// yieldsBeforeSend: a Read yields before it sends held-back bytes
	// (readInOrder), on one P only; it follows GOMAXPROCS as the
	// readyOrders do. On one P the yield costs a trip through the
	// scheduler and returns once the P's other ready goroutines have run.
	// On more, Gosched also wakes an idle P, if there is one, which may
	// take the goroutine and send at once: a thread woken twice a request
	// and nothing bunched. And every yield takes the scheduler's one
	// global run-queue lock. Bunching there wants a per-P outbox that the
	// P's dispatcher flushes.
	yieldsBeforeSend atomic.Bool
)

// readyOrderFor returns the readyOrder that serves the socket fd, or nil,
// first starting one for each P that has none. It runs once a connection.
func readyOrderFor(fd int) *readyOrder {
	procs := runtime.GOMAXPROCS(0)
	readyOrdersMu.Lock()
	defer readyOrdersMu.Unlock()
	for !noReadyOrder && len(readyOrders) < procs {
		r, err := newReadyOrder()
		if err != nil {
			noReadyOrder = true // out of descriptors, or no epoll: as many as there are
			break
		}
		readyOrders = append(readyOrders, r)
		go r.run()
	}
	yieldsBeforeSend.Store(procs == 1)
	if len(readyOrders) == 0 || fd < 0 {
		return nil
	}
	return readyOrders[fd%len(readyOrders)]
}

func newReadyOrder() (*readyOrder, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	// os.NewFile registers a non-blocking descriptor with the runtime's
	// poller, so that RawConn.Read parks until the epoll instance has
	// events to give.
	f := os.NewFile(uintptr(epfd), "socialroute-ready-order")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &readyOrder{epfd: epfd, file: f, raw: raw}, nil
}

// add registers w's socket fd and returns its slot.
func (r *readyOrder) add(w *orderedWait, fd int) (int32, error) {
	r.mu.Lock()
	var slot int32
	if n := len(r.free); n > 0 {
		slot = r.free[n-1]
		r.free = r.free[:n-1]
		r.slots[slot] = w
	} else {
		slot = int32(len(r.slots))
		r.slots = append(r.slots, w)
	}
	r.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET, Fd: slot}
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.release(slot)
		return 0, os.NewSyscallError("epoll_ctl", err)
	}
	return slot, nil
}

// remove takes fd out of the epoll instance and frees its slot; the caller
// does this before the descriptor is closed, so that its number, reused,
// can never wake w.
func (r *readyOrder) remove(slot int32, fd int) {
	_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	r.release(slot)
}

func (r *readyOrder) release(slot int32) {
	r.mu.Lock()
	r.slots[slot] = nil
	r.free = append(r.free, slot)
	r.mu.Unlock()
}

// epollET is EPOLLET as the uint32 EpollEvent.Events wants (syscall
// declares it negative).
const epollET = 1 << 31

// run is the dispatcher: it never returns while the process lives.
func (r *readyOrder) run() {
	for {
		// dispatch returns false every time, so Read waits for the runtime
		// to see the epoll instance readable again and calls it once more;
		// readiness that arrives while dispatch runs is not lost, the
		// runtime keeps it for the next wait.
		if err := r.raw.Read(r.dispatch); err != nil {
			return
		}
	}
}

func (r *readyOrder) dispatch(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&r.events[0])), uintptr(len(r.events)), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 || n == 0 {
			return false
		}
		r.mu.RLock()
		// Second to last first, the first last: see the type's comment.
		for i := 1; i < int(n); i++ {
			r.permit(&r.events[i])
		}
		r.permit(&r.events[0])
		r.mu.RUnlock()
		if int(n) < len(r.events) {
			return false
		}
		// A full array may have left events behind, and an edge-triggered
		// instance will not report them again: take the rest now.
	}
}

// Readable, peer closed or failed: a reason to look for reads; writable or
// failed: for writes.
const (
	readEvents  = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR
	writeEvents = syscall.EPOLLOUT | syscall.EPOLLHUP | syscall.EPOLLERR
)

func (r *readyOrder) permit(ev *syscall.EpollEvent) {
	slot := ev.Fd
	if slot < 0 || int(slot) >= len(r.slots) {
		return
	}
	w := r.slots[slot]
	if w == nil {
		return
	}
	if ev.Events&readEvents != 0 {
		w.rd.permit()
	}
	if ev.Events&writeEvents != 0 {
		w.wr.permit()
	}
}

// takeFromRuntime takes the socket fd out of the runtime's epoll instance,
// so that its arrivals wake readyOrder's alone, and reports whether it
// did. The socket then must never wait in the runtime's poller (nothing
// would wake it): its turnConn reads and writes through readyOrder.
//
// The runtime does not say which descriptor its epoll instance is, and
// its Close of the socket deletes it from there regardless (ignoring the
// error), so it is found once, from /proc: the epoll instance that is not
// a readyOrder's and watches this socket. Without /proc, or if the
// runtime ever stops using epoll, it is not found and sockets stay in
// both instances, as correct as before and a wakeup dearer.
func (r *readyOrder) takeFromRuntime(fd int) bool {
	runtimeEpollOnce.Do(func() { runtimeEpoll = findRuntimeEpoll(fd) })
	if runtimeEpoll < 0 {
		return false
	}
	return syscall.EpollCtl(runtimeEpoll, syscall.EPOLL_CTL_DEL, fd, nil) == nil
}

var (
	runtimeEpoll     = -1
	runtimeEpollOnce sync.Once
)

// findRuntimeEpoll returns the descriptor of the epoll instance, other
// than the readyOrders', that watches the socket fd, or -1.
func findRuntimeEpoll(fd int) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	watched := strconv.Itoa(fd)
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || isReadyOrderEpoll(n) {
			continue
		}
		if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		// One line per watched descriptor: "tfd:        7 events: ...".
		for _, line := range strings.Split(string(info), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "tfd:" && f[1] == watched {
				return n
			}
		}
	}
	return -1
}

func isReadyOrderEpoll(fd int) bool {
	readyOrdersMu.Lock()
	defer readyOrdersMu.Unlock()
	for _, r := range readyOrders {
		if r.epfd == fd {
			return true
		}
	}
	return false
}
