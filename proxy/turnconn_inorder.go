package proxy

import (
	"io"
	"net"
	"os"
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
	w := &orderedWait{order: r, fd: fd, ready: make(chan struct{}, 1)}
	slot, err := r.add(w, fd)
	if err != nil {
		return
	}
	w.slot = slot
	w.sendStep = c.sendHeldStep
	w.recvStep = c.recvStep
	c.inOrder = w
	c.armRd = c.armReadTimer
}

// permit gives the waiting Read, or the next one, a reason to look again.
// It never blocks: a permit already waiting says all a second one would.
func (w *orderedWait) permit() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// armReadTimer is armRd when reads wait in order: the runtime's poller no
// longer wakes them at the socket's read deadline, so a timer does. It
// runs under rd.mu, as every arming does.
func (c *turnConn) armReadTimer(t time.Time) error {
	w := c.inOrder
	w.fired.Store(false)
	if t.IsZero() {
		if w.timer != nil {
			w.timer.Stop()
		}
		return nil
	}
	d := time.Until(t)
	if d <= 0 {
		w.fired.Store(true)
		w.permit()
		return nil
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(d, c.readDeadlineFired)
	} else {
		w.timer.Reset(d)
	}
	return nil
}

// readDeadlineFired runs when the armed read deadline passes. A timer
// stopped or moved just too late may still run it: the Read it ends then
// finds, in firedEarly, that the deadline wanted is still ahead, re-arms
// it and carries on.
func (c *turnConn) readDeadlineFired() {
	c.inOrder.fired.Store(true)
	c.inOrder.permit()
}

// readInOrder is read for a turnConn whose reads wait for permits: it
// sends what is held back, then waits for a permit before the first recv
// when nothing can be waiting yet, and after each recv that finds
// nothing.
func (c *turnConn) readInOrder(p []byte) (int, error) {
	w := c.inOrder
	t := &c.turn
	c.wmu.Lock()
	c.readers++
	wait := false
	if c.held != nil && len(p) > 0 {
		// The answer to what is sent cannot be there yet, so the recv can
		// wait for its permit, unless bytes may be waiting from before:
		// a permit not yet taken (a pipelined request that arrived while
		// the response to the one before was being written), or the rest
		// of a message the last recv had no room for.
		pending := false
		select {
		case <-w.ready:
			pending = true
		default:
		}
		*t = turn{held: *c.held, sending: true}
		err := c.raw.Control(w.sendStep)
		if err == nil {
			err = t.werr
		}
		if err == nil && t.sent < len(t.held) {
			// The socket buffer filled: send the rest as a plain Write
			// would, waiting in the runtime's poller.
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
		if w.fired.Load() {
			return 0, os.ErrDeadlineExceeded
		}
		if wait {
			<-w.ready
			if w.closed.Load() {
				return 0, net.ErrClosed
			}
			if w.fired.Load() {
				return 0, os.ErrDeadlineExceeded
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
	for t.sent < len(t.held) {
		m, err := sockSend(int(fd), t.held[t.sent:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if err != syscall.EAGAIN {
				t.werr = os.NewSyscallError("write", err)
			}
			return
		}
		t.sent += m
	}
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
