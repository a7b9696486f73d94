package proxy

import (
	"io"
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
	w.sendStep = c.sendHeldStep
	w.recvStep = c.recvStep
	w.writeStep = c.writeStep
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

// readInOrder is read for a turnConn whose reads wait for permits: it
// sends what is held back, then waits for a permit before the first recv
// when nothing can be waiting yet, and after each recv that finds
// nothing.
func (c *turnConn) readInOrder(p []byte) (int, error) {
	w := c.inOrder
	t := &c.turn
	c.wmu.Lock()
	if c.lost != nil {
		c.wmu.Unlock()
		return 0, c.lost
	}
	if c.held != nil && len(p) > 0 && yieldsBeforeSend.Load() {
		// Yield first, so that the send goes out after the other
		// goroutines ready to run have had their turn: the sends of one
		// batch of wakeups then leave together, as an event loop sends at
		// the end of its turn. A peer (a backend, a client on the same
		// machine) wakes once for several messages instead of once for
		// each, and the sender, who pays for waking it, pays less. With
		// the sends spread out, the load core of bench/run.sh switched
		// tasks about twice as often per request as with HAProxy; with
		// them bunched, slightly less often (bench/README, item 12).
		// Not under wmu: a Close meanwhile sends the held bytes itself.
		c.wmu.Unlock()
		runtime.Gosched()
		c.wmu.Lock()
	}
	c.readers++
	wait := false
	if c.held != nil && len(p) > 0 {
		// The answer to what is sent cannot be there yet, so the recv can
		// wait for its permit, unless bytes may be waiting from before:
		// a permit not yet taken (a pipelined request that arrived while
		// the response to the one before was being written), or the rest
		// of a message the last recv had no room for.
		pending := w.rd.take()
		*t = turn{held: *c.held, sending: true}
		err := c.raw.Control(w.sendStep)
		if err == nil {
			err = t.werr
		}
		if err == nil && t.sent < len(t.held) {
			// The socket buffer filled: send the rest as a plain Write
			// would (c.write waits for room where this socket waits).
			_, err = c.write(t.held[t.sent:])
		}
		*t = turn{}
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
	t := &c.turn
	for {
		if w.rd.fired.Load() {
			return 0, os.ErrDeadlineExceeded
		}
		if wait {
			if err := w.rd.wait(w); err != nil {
				return 0, err
			}
		}
		*t = turn{p: p}
		if err := c.raw.Control(w.recvStep); err != nil {
			*t = turn{}
			return 0, err // closed
		}
		n, rerr, again := t.n, t.rerr, t.again
		*t = turn{}
		if !again {
			w.unread = n == len(p)
			return n, rerr
		}
		wait = true
	}
}

// sendHeldStep is the raw.Control callback that sends t.held; it stops at
// a full socket buffer (t.sent < len(t.held)) or an error (t.werr).
func (c *turnConn) sendHeldStep(fd uintptr) {
	t := &c.turn
	n, _, err := sendSome(fd, t.held[t.sent:])
	t.sent += n
	t.werr = err
}

// recvStep is the raw.Control callback that reads once into t.p: t.n
// bytes, t.rerr (io.EOF at the end of the stream), or t.again when there
// is nothing yet.
func (c *turnConn) recvStep(fd uintptr) {
	t := &c.turn
	for {
		m, err := sockRecv(int(fd), t.p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			t.again = true
		case err != nil:
			t.rerr = os.NewSyscallError("read", err)
		case m == 0 && len(t.p) > 0:
			t.rerr = io.EOF
		default:
			t.n = m
		}
		return
	}
}

// wturn is the state of one writeInOrder step, in the turnConn so that
// the callback allocates nothing.
type wturn struct {
	b     []byte
	n     int
	err   error
	again bool // the socket buffer is full
}

// writeInOrder is a plain Write for a socket out of the runtime's poller:
// send, and on a full socket buffer wait for readyOrder's permit (or the
// write deadline's timer). The caller holds wmu.
func (c *turnConn) writeInOrder(b []byte) (int, error) {
	w := c.inOrder
	t := &c.wturn
	total := 0
	for len(b) > 0 {
		if w.wr.fired.Load() {
			return total, c.opError("write", os.ErrDeadlineExceeded)
		}
		*t = wturn{b: b}
		err := c.raw.Control(w.writeStep)
		n, again := t.n, t.again
		if err == nil {
			err = t.err
		}
		*t = wturn{}
		total += n
		b = b[n:]
		if err != nil {
			return total, c.opError("write", err)
		}
		if again {
			if err := w.wr.wait(w); err != nil {
				return total, c.opError("write", err)
			}
		}
	}
	return total, nil
}

// writeStep is the raw.Control callback of writeInOrder: it sends what it
// can of t.b.
func (c *turnConn) writeStep(fd uintptr) {
	t := &c.wturn
	n, full, err := sendSome(fd, t.b[t.n:])
	t.n += n
	t.again = full
	t.err = err
}
