package proxy

import (
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// waitsInOrder says whether turnConns wait for readyOrder's permits where
// they can (Linux). Tests build turnConns of both kinds with
// newTurnConnWaiting instead of changing it.
const waitsInOrder = true

// waitInOrder makes c's reads wait for readyOrder's permits, when there
// is a readyOrder (Linux) and c's socket joins it; otherwise c stays
// with the runtime's poller.
func (c *turnConn) waitInOrder() {
	fd := -1
	if err := c.raw.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return
	}
	r := readyOrderFor(fd)
	if r == nil {
		return
	}
	w := &orderedWait{order: r, fd: fd}
	w.rd.init()
	w.wr.init()
	slot, err := r.add(w, fd)
	if err != nil {
		return
	}
	w.slot = slot
	c.inOrder = w
	c.armRd = w.rd.arm
	// Out of the runtime's poller, every arrival wakes one epoll instance
	// instead of two: the second wakeup was 4% of the proxy's CPU.
	if r.takeFromRuntime(fd) {
		w.sole = true
		c.armWd = w.wr.arm
	}
}

// waitSide is one direction of an orderedWait: its permits and the timer
// of its deadline.
type waitSide struct {
	ready  chan struct{} // one permit at most: "look again"
	timer  *time.Timer   // the armed deadline; guarded by its lazyDeadline's mu
	fired  atomic.Bool   // the armed deadline has passed
	expire func()        // s.expired, bound once
}

func (s *waitSide) init() {
	s.ready = make(chan struct{}, 1)
	s.expire = s.expired
}

// permit gives the waiting call, or the next one, a reason to look again.
// It never blocks: a permit already waiting says all a second one would.
func (s *waitSide) permit() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// take takes a waiting permit and reports whether there was one.
func (s *waitSide) take() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// arm is armRd or armWd when that side waits in order: the runtime's
// poller no longer ends its waits at the socket's deadline, so a timer
// does. It runs under the lazyDeadline's mu, as every arming does.
func (s *waitSide) arm(t time.Time) error {
	s.fired.Store(false)
	if t.IsZero() {
		s.stop()
		return nil
	}
	d := time.Until(t)
	if d <= 0 {
		s.expired()
		return nil
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.expire)
	} else {
		s.timer.Reset(d)
	}
	return nil
}

// expired runs when the armed deadline passes. A timer stopped or moved
// just too late may still run it: the call it ends then finds, in
// firedEarly, that the deadline wanted is still ahead, re-arms it and
// carries on.
func (s *waitSide) expired() {
	s.fired.Store(true)
	s.permit()
}

func (s *waitSide) stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
}

// wait waits for a permit; it reports the connection closed or the
// deadline passed, else nil: look again.
func (s *waitSide) wait(w *orderedWait) error {
	<-s.ready
	if w.closed.Load() {
		return net.ErrClosed
	}
	if s.fired.Load() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// fdClosing is orderedWait.inUse's sign bit: Close has begun.
const fdClosing = math.MinInt32

// enter reports whether w.fd is still this socket's, and keeps it so
// until exit: Close waits for every call that entered. It does for the
// in-order paths what syscall.RawConn.Control does with the descriptor's
// reference count, without a closure call and the runtime's checks around
// each system call (Control and its fdMutex were 2.3% of the proxy's CPU
// at four system calls a request).
func (w *orderedWait) enter() bool {
	if w.inUse.Add(1) < 0 {
		w.inUse.Add(-1)
		return false
	}
	return true
}

func (w *orderedWait) exit() { w.inUse.Add(-1) }

// closeFD closes c's socket once no call is using its descriptor. The
// calls that entered run one non-blocking system call each, so the wait
// is short; the ones that come later find the socket closed.
func (w *orderedWait) closeFD(c net.Conn) error {
	w.inUse.Add(fdClosing)
	for w.inUse.Load() != fdClosing {
		runtime.Gosched()
	}
	return c.Close()
}

// send sends what it can of b without waiting, as sendSome does, unless
// the connection is closed.
func (w *orderedWait) send(b []byte) (n int, full bool, err error) {
	if !w.enter() {
		return 0, false, net.ErrClosed
	}
	n, full, err = sendSome(w.fd, b)
	w.exit()
	return n, full, err
}

// recv reads once into p without waiting: n bytes, io.EOF at the end of
// the stream, or again when there is nothing yet.
func (w *orderedWait) recv(p []byte) (n int, again bool, err error) {
	if !w.enter() {
		return 0, false, net.ErrClosed
	}
	for {
		n, err = sockRecv(w.fd, p)
		if err != syscall.EINTR {
			break
		}
	}
	w.exit()
	switch {
	case err == syscall.EAGAIN:
		return 0, true, nil
	case err != nil:
		return 0, false, os.NewSyscallError("read", err)
	case n == 0 && len(p) > 0:
		return 0, false, io.EOF
	}
	return n, false, nil
}

// readInOrder is read for a turnConn whose reads wait for permits: it
// sends what is held back, then waits for a permit before the first recv
// when nothing can be waiting yet, and after each recv that finds
// nothing.
func (c *turnConn) readInOrder(p []byte) (int, error) {
	w := c.inOrder
	c.wmu.Lock()
	c.readers++
	wait := false
	if c.held != nil && len(p) > 0 {
		// The answer to what is sent cannot be there yet, so the recv can
		// wait for its permit, unless bytes may be waiting from before:
		// a permit not yet taken (a pipelined request that arrived while
		// the response to the one before was being written), or the rest
		// of a message the last recv had no room for.
		pending := w.rd.take()
		held := *c.held
		sent, _, err := w.send(held)
		if err == nil && sent < len(held) {
			// The socket buffer filled: send the rest as a plain Write
			// would (c.write waits for room where this socket waits).
			_, err = c.write(held[sent:])
		}
		c.releaseHeld()
		c.wmu.Unlock()
		if err != nil {
			c.endRead()
			return 0, c.opError("write", err)
		}
		wait = !pending && !w.unread
	} else {
		c.wmu.Unlock()
	}
	n, err := c.recvInOrder(p, wait)
	c.endRead()
	if err != nil && err != io.EOF {
		err = c.opError("read", err)
	}
	return n, err
}

func (c *turnConn) recvInOrder(p []byte, wait bool) (int, error) {
	w := c.inOrder
	for {
		if w.rd.fired.Load() {
			return 0, os.ErrDeadlineExceeded
		}
		if wait {
			if err := w.rd.wait(w); err != nil {
				return 0, err
			}
		}
		n, again, err := w.recv(p)
		if !again {
			w.unread = n == len(p)
			return n, err
		}
		wait = true
	}
}

// writeInOrder is a plain Write for a socket out of the runtime's poller:
// send, and on a full socket buffer wait for readyOrder's permit (or the
// write deadline's timer). The caller holds wmu.
func (c *turnConn) writeInOrder(b []byte) (int, error) {
	w := c.inOrder
	total := 0
	for len(b) > 0 {
		if w.wr.fired.Load() {
			return total, c.opError("write", os.ErrDeadlineExceeded)
		}
		n, full, err := w.send(b)
		total += n
		b = b[n:]
		if err != nil {
			return total, c.opError("write", err)
		}
		if full {
			if err := w.wr.wait(w); err != nil {
				return total, c.opError("write", err)
			}
		}
	}
	return total, nil
}
