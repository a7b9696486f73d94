package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// turnConn is a TCP connection used in turns, the way HTTP/1.1 uses one:
// a message goes out, then the answer is read (the proxy's side towards
// an upstream), or a request is read, then its response goes out and the
// next request is read (the side towards a client). It removes two costs
// that Go's net.Conn pays on every turn and that led the proxy's profile:
//
//   - A read right after a write almost never finds data, but Go's Read
//     tries the system call first: read, EAGAIN, park, wake, read again.
//     turnConn holds a write back until the next Read and sends it from
//     inside syscall.RawConn.Read's callback, then asks the runtime to
//     wait for readiness before the first read attempt. The runtime resets
//     the descriptor's readiness before the callback runs, so an answer
//     arriving right after the write still wakes the wait. That is one
//     system call less per turn at each end of the proxy (6 -> 4 per
//     proxied request, HAProxy's count).
//   - fasthttp moves socket deadlines several times per request, each move
//     a runtime timer update. turnConn arms a deadline on the socket only
//     when it is earlier than the one armed; a later one is remembered,
//     and when the armed one fires first the call re-arms the remembered
//     one and carries on. A deadline the caller asked for still ends the
//     call when it passes.
//
// Held-back bytes are sent before any other write, at the next Read, or
// at Close, so the peer sees exactly the bytes and order it would have seen;
// only the moment of sending moves from the end of Write to the start of
// the next Read, which on a request/response connection is the next thing
// the caller does. Writes while a Read is in progress and writes larger
// than maxHeldWrite go out at once. What it is not for: a full-duplex user
// whose Write can block on a peer that waits for it to read (a tunnel); a
// Read waits for a blocked Write to finish. fasthttp's server and
// HostClient, its only users, never read and write one connection at once.
type turnConn struct {
	net.Conn
	raw syscall.RawConn

	wmu  sync.Mutex // orders writes; held while held-back bytes are being sent
	held *[]byte    // written by the caller, not yet sent; nil when none
	// lost is why held-back bytes could not be sent by a call that cannot
	// return the error (SetWriteDeadline): every later Write and Read
	// fails with it, as after a failed Write, since the bytes after would
	// reach the peer with a hole before them.
	lost    error
	readers int // Reads in progress: while any, writes go out at once

	turn turn               // the Read in progress
	step func(uintptr) bool // c.readStep, bound once

	rd, wd       lazyDeadline
	armRd, armWd func(time.Time) error // arm rd and wd: the socket's deadlines, or inOrder's timers

	wturn wturn // the write in progress when writes wait in order; guarded by wmu

	// inOrder is set when reads wait for readyOrder's permits rather than
	// in the runtime's poller (Linux); nil otherwise.
	inOrder *orderedWait

	// bodiless says the last response read on the connection has no body
	// by rule (HEAD, 204, 304): the pool looks for bytes an upstream sent
	// anyway before the next use (peek). Set and read by the one
	// request that holds the connection, as are peekFn, bound once, and
	// peeked, what it found.
	bodiless bool
	peekFn   func(uintptr)
	peeked   int
}

// orderedWait is a turnConn's part in readyOrder: where its permits
// arrive, and the deadlines the runtime's poller no longer watches: the
// read deadline always, the write deadline too when the socket left the
// runtime's poller (sole).
type orderedWait struct {
	order *readyOrder
	slot  int32
	fd    int

	rd, wr  waitSide
	closed  atomic.Bool
	closing sync.Once // the first Close's work; a second waits for it

	// sole: the socket is in readyOrder's epoll instance only, out of the
	// runtime's, so writes that find the socket buffer full wait here too.
	sole bool

	// unread: the last recv filled its buffer, so more may be waiting,
	// and no wakeup will say so. Only the one Read at a time touches it.
	unread bool

	sendStep, recvStep, writeStep func(uintptr) // bound once, on c.turn and c.wturn
}

// maxHeldWrite bounds what a turnConn holds back. Responses and requests
// of a few KiB are the case worth the saving; a larger write costs several
// system calls anyway.
const maxHeldWrite = 64 << 10

var heldBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// newTurnConn wraps c if it is a socket the runtime polls (it has a
// syscall.RawConn); anything else, such as an in-memory pipe, is returned
// as it is.
func newTurnConn(c net.Conn) net.Conn { return newTurnConnWaiting(c, waitsInOrder) }

// newTurnConnWaiting is newTurnConn with the choice of where reads wait:
// in readyOrder (inOrder, where supported) or in the runtime's poller.
func newTurnConnWaiting(c net.Conn, inOrder bool) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok || !turnConnSupported {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	tc := &turnConn{Conn: c, raw: raw}
	tc.step = tc.readStep
	tc.armRd, tc.armWd = c.SetReadDeadline, c.SetWriteDeadline
	if inOrder {
		tc.waitInOrder()
	}
	return tc
}

// turnListener wraps each accepted connection in a turnConn.
type turnListener struct{ net.Listener }

func (l turnListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newTurnConn(c), nil
}

// turnDial wraps every connection dial makes in a turnConn.
func turnDial(dial func(addr string) (net.Conn, error)) func(addr string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		c, err := dial(addr)
		if err != nil {
			return nil, err
		}
		return newTurnConn(c), nil
	}
}

// peerClosed reports whether the peer has closed or reset the connection,
// looking without blocking and without taking any bytes (on Linux by the
// socket's TCP state, elsewhere by a peek, which takes a TLS peer's
// close_notify for data and the connection for open). It is for an
// idle pooled connection about to carry a request: the upstream may have
// closed it while it idled, and a request that is not idempotent must not
// be sent into a connection that is already gone.
//
// The caller sets the deadline for its use first: the one armed on an
// idle connection has usually passed, and the runtime would not run the
// look at all; it is re-armed to the wanted one as a Read would.
func (c *turnConn) peerClosed() bool {
	closed := false
	peek := func(fd uintptr) bool {
		closed = sockPeekClosed(int(fd))
		return true // never wait
	}
	if c.inOrder != nil {
		err := c.raw.Control(func(fd uintptr) { peek(fd) })
		return err == nil && closed
	}
	err := c.raw.Read(peek)
	if err != nil && c.rd.firedEarly(err, c.armRd) {
		err = c.raw.Read(peek)
	}
	return err == nil && closed
}

// peek reports, without blocking or taking any bytes, what waits on c:
// peekNothing, peekBytes (an idle pooled connection with bytes waiting
// would hand them to the next request as its response) or peekClosed. A
// connection it cannot look into reads peekNothing.
func (c *turnConn) peek() int {
	if c.peekFn == nil {
		c.peekFn = c.peekStep
	}
	c.peeked = peekNothing
	if err := c.raw.Control(c.peekFn); err != nil {
		return peekNothing
	}
	return c.peeked
}

func (c *turnConn) peekStep(fd uintptr) { c.peeked = sockPeek(int(fd)) }

func (c *turnConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.lost != nil {
		return 0, c.lost
	}
	if c.readers == 0 && c.heldLen()+len(b) <= maxHeldWrite {
		if c.held == nil {
			c.held = heldBufs.Get().(*[]byte)
		}
		*c.held = append(*c.held, b...)
		return len(b), nil
	}
	if err := c.sendHeld(); err != nil {
		return 0, err
	}
	return c.write(b)
}

func (c *turnConn) heldLen() int {
	if c.held == nil {
		return 0
	}
	return len(*c.held)
}

// sendHeld writes the held-back bytes, blocking as a plain Write would.
// The caller holds wmu.
func (c *turnConn) sendHeld() error {
	if c.held == nil {
		return nil
	}
	_, err := c.write(*c.held)
	c.releaseHeld()
	return err
}

func (c *turnConn) releaseHeld() {
	*c.held = (*c.held)[:0]
	if cap(*c.held) <= maxHeldWrite {
		heldBufs.Put(c.held)
	}
	c.held = nil
}

// write writes b to the socket, re-arming a write deadline that fired
// before the one asked for.
func (c *turnConn) write(b []byte) (int, error) {
	total := 0
	for {
		var n int
		var err error
		if c.inOrder != nil && c.inOrder.sole {
			n, err = c.writeInOrder(b)
		} else {
			n, err = c.Conn.Write(b)
		}
		total += n
		if err == nil || !c.wd.firedEarly(err, c.armWd) {
			return total, err
		}
		b = b[n:]
	}
}

func (c *turnConn) Read(p []byte) (int, error) {
	for {
		n, err := c.read(p)
		if err == nil || !c.rd.firedEarly(err, c.armRd) {
			return n, err
		}
	}
}

// read is one Read attempt: it sends what is held back, waits for the
// answer and reads it.
func (c *turnConn) read(p []byte) (int, error) {
	if c.inOrder != nil {
		return c.readInOrder(p)
	}
	c.wmu.Lock()
	if c.lost != nil {
		c.wmu.Unlock()
		return 0, c.lost
	}
	c.readers++
	if c.held == nil || len(p) == 0 {
		c.wmu.Unlock()
		n, err := c.Conn.Read(p)
		c.endRead()
		return n, err
	}
	// wmu stays locked until the held bytes are out, so that no write
	// overtakes them.
	t := &c.turn
	*t = turn{held: *c.held, sending: true, p: p}
	err := c.raw.Read(c.step)
	if t.sending {
		// Not all was sent: the callback never ran (a deadline had passed
		// or the connection is closed), the socket buffer filled, or the
		// write failed. Send the rest as a plain Write would have.
		werr := t.werr
		if werr == nil {
			_, werr = c.write(t.held[t.sent:])
		}
		c.releaseHeld()
		c.wmu.Unlock()
		*t = turn{}
		if werr != nil {
			c.endRead()
			return 0, c.opError("write", werr)
		}
		if err == nil {
			n, err := c.Conn.Read(p)
			c.endRead()
			return n, err
		}
	}
	n, rerr := t.n, t.rerr
	*t = turn{}
	c.endRead()
	if err != nil {
		// RawConn names its errors "raw-read"; callers and logs expect a
		// read error, and os.ErrDeadlineExceeded still matches.
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		return 0, c.opError("read", err)
	}
	if rerr != nil && rerr != io.EOF {
		rerr = c.opError("read", rerr)
	}
	return n, rerr
}

// turn is the state of one Read that sends held-back bytes first; it
// lives in the turnConn so that the callback allocates nothing.
type turn struct {
	held    []byte // the bytes to send
	sent    int
	sending bool // held not all sent yet; wmu is locked
	p       []byte
	n       int
	werr    error // the send failed
	rerr    error // the read failed (io.EOF at the end of the stream)
	again   bool  // the read found nothing yet (readInOrder)
}

// sendSome sends what it can of b on the non-blocking socket fd: n bytes,
// and full when the socket buffer filled before all of b went out. It is
// the sending part of every turnConn callback.
func sendSome(fd uintptr, b []byte) (n int, full bool, err error) {
	for n < len(b) {
		m, err := sockSend(int(fd), b[n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return n, true, nil
		case err != nil:
			return n, false, os.NewSyscallError("write", err)
		}
		n += m
	}
	return n, false, nil
}

// readStep is the syscall.RawConn.Read callback: on its first call it
// sends the held-back bytes, then it reads, waiting for readiness while
// there is nothing. Returning true ends the Read.
func (c *turnConn) readStep(fd uintptr) bool {
	t := &c.turn
	if t.sending {
		n, full, err := sendSome(fd, t.held[t.sent:])
		t.sent += n
		if full || err != nil {
			t.werr = err
			return true // the socket buffer is full or broken: the caller finishes
		}
		t.sending = false
		c.releaseHeld()
		c.wmu.Unlock()
		// Look before waiting. The answer cannot be there yet, but bytes
		// that arrived before this Read may be: a pipelined request sent
		// while the response to the one before was being written. Their
		// readiness is gone (RawRead reset it before calling this), and
		// nothing would raise it again. readInOrder knows when it can
		// skip this recv; the runtime's poller does not say.
	}
	for {
		m, err := sockRecv(int(fd), t.p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false
		case err != nil:
			t.rerr = os.NewSyscallError("read", err)
		case m == 0:
			t.rerr = io.EOF
		default:
			t.n = m
		}
		return true
	}
}

func (c *turnConn) endRead() {
	c.wmu.Lock()
	c.readers--
	c.wmu.Unlock()
}

func (c *turnConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Close sends what is held back, as a plain connection would already
// have, then closes. If a write is in progress (blocked on a peer that
// does not read), Close does not wait for it: closing is what unblocks it.
func (c *turnConn) Close() error {
	if c.wmu.TryLock() {
		_ = c.sendHeld()
		c.wmu.Unlock()
	}
	w := c.inOrder
	if w == nil {
		return c.Conn.Close()
	}
	// A second Close (fasthttp's Shutdown closing an idle connection as
	// its serving goroutine ends it) waits in the Once until the first
	// has left readyOrder: were it to close the descriptor sooner, a
	// connection accepted in between could get the number, and the first
	// Close's removal would take that connection out of readyOrder.
	var err error
	first := false
	w.closing.Do(func() {
		first = true
		w.closed.Store(true)
		if hook := testHookClosing.Load(); hook != nil {
			(*hook)(c)
		}
		// Out of readyOrder while the descriptor is still this
		// socket's: its number, reused, must never wake c.
		w.order.remove(w.slot, w.fd)
		err = c.Conn.Close()
		c.rd.mu.Lock()
		w.rd.stop()
		c.rd.mu.Unlock()
		c.wd.mu.Lock()
		w.wr.stop()
		c.wd.mu.Unlock()
		w.rd.permit() // a Read or Write waiting finds the connection closed
		w.wr.permit()
	})
	if !first {
		return c.Conn.Close() // closed already: net.ErrClosed
	}
	return err
}

// testHookClosing, when set by a test, runs in the first Close of an
// ordered turnConn after it is marked closed and before it leaves
// readyOrder.
var testHookClosing atomic.Pointer[func(*turnConn)]

func (c *turnConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *turnConn) SetReadDeadline(t time.Time) error {
	return c.rd.set(t, c.armRd)
}

// SetWriteDeadline first sends what is held back: bytes Write accepted go
// out under the deadline in force when they were written, as a plain
// connection's would have. tls.Conn.Close writes its close_notify and then
// sets a write deadline of now; without this, the response held before it
// (every Connection: close answer over TLS) died of that deadline. In
// steady state nothing is held when fasthttp moves a write deadline (it
// does so before writing), so this is one TryLock. A Write in progress
// holds wmu and sends for itself: the new deadline must not wait for it.
func (c *turnConn) SetWriteDeadline(t time.Time) error {
	if c.wmu.TryLock() {
		if err := c.sendHeld(); err != nil {
			// Not the error itself: a deadline error is not sticky (the
			// next Write, under the new deadline, would succeed), and Read
			// would take it for its own deadline firing early.
			c.lost = c.opError("write", errors.New("bytes held back were not sent: "+err.Error()))
		}
		c.wmu.Unlock()
	}
	return c.wd.set(t, c.armWd)
}

// lazyDeadline is one direction's deadline: the one the caller wants and
// the one armed on the socket, never later than wanted while one is
// wanted. Both are deadlineNanos, 0 for none, in atomics: a deadline moved
// later, which is most of fasthttp's moves, is one store and one load, no
// lock. mu orders the arming.
type lazyDeadline struct {
	want, armed atomic.Int64
	mu          sync.Mutex
}

// deadlineEpoch is the origin of deadlineNanos: a reading of the monotonic
// clock, so that deadlines kept as numbers still ignore wall-clock steps.
var deadlineEpoch = time.Now()

// deadlineNanos is t as lazyDeadline keeps it: nanoseconds after
// deadlineEpoch (at least 1: a deadline before it has passed anyway), 0
// for the zero time.
func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(int64(t.Sub(deadlineEpoch)), 1)
}

// deadlineTime is the inverse of deadlineNanos.
func deadlineTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return deadlineEpoch.Add(time.Duration(n))
}

// set records t and arms it on the socket only if the armed deadline would
// not fire first. A deadline armed earlier than wanted, or armed when none
// is wanted any more, fires spuriously and firedEarly handles it.
func (d *lazyDeadline) set(t time.Time, arm func(time.Time) error) error {
	w := deadlineNanos(t)
	d.want.Store(w)
	if d.armedCovers(w) {
		return nil // a firedEarly arming meanwhile sees this want and arms it
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	w = d.want.Load() // a later set may have moved it
	if d.armedCovers(w) {
		return nil
	}
	d.armed.Store(w)
	return arm(deadlineTime(w))
}

// armedCovers reports whether wanting w needs no arming: none is wanted,
// or the armed deadline comes first and firedEarly will move it on.
func (d *lazyDeadline) armedCovers(w int64) bool {
	a := d.armed.Load()
	return w == 0 || a != 0 && w >= a
}

// firedEarly reports whether err is the socket's deadline firing before
// the wanted one, and if so arms the wanted one so the call can go on.
func (d *lazyDeadline) firedEarly(err error, arm func(time.Time) error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		w := d.want.Load()
		if w != 0 && int64(time.Since(deadlineEpoch)) >= w {
			return false // the wanted deadline passed: a real timeout
		}
		d.armed.Store(w)
		if err := arm(deadlineTime(w)); err != nil {
			return false
		}
		// A set on the fast path compared its want with the armed value
		// this replaced; if it moved the want meanwhile, arm that one.
		if d.want.Load() == w {
			return true
		}
	}
}
