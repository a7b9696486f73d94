package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// clientLimit is listen.max_conns_per_ip: at most max connections open at
// once per client. A client is an IPv4 address, or an IPv6 /64: a
// subscriber is given a whole /64 and its hosts pick any address in it
// (privacy addresses change daily), so counting single IPv6 addresses
// would cap nobody.
//
// fasthttp's own MaxConnsPerIP counts single addresses, and counts in its
// accept loop: with the PROXY protocol the address is the header's, so a
// balancer connection that sent nothing held up every accept for the
// header timeout. This one counts on the connection's first read, in the
// connection's goroutine, after the PROXY header (limitListener sits above
// the PROXY protocol and below TLS).
type clientLimit struct {
	max int
	// tls: the connection speaks TLS, where a plain-text 429 would be
	// garbage to the client; a refusal is a close.
	tls bool
	log *slog.Logger

	mu   sync.Mutex
	open map[netip.Prefix]int

	refused atomic.Uint64
	warn    logEvery
}

func newClientLimit(max int, tls bool, log *slog.Logger) *clientLimit {
	return &clientLimit{max: max, tls: tls, log: log, open: map[netip.Prefix]int{}, warn: logEvery{every: time.Minute}}
}

// clientOf is the client a remote address belongs to; ok is false for an
// address that is not IP (a Unix socket, a test pipe), which is not
// counted.
func clientOf(a net.Addr) (netip.Prefix, bool) {
	tcp, isTCP := a.(*net.TCPAddr)
	if !isTCP {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	if ip = ip.Unmap(); ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, _ := ip.Prefix(64)
	return p, true
}

// enter counts a connection of client k, unless k holds max already.
func (l *clientLimit) enter(k netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[k] >= l.max {
		return false
	}
	l.open[k]++
	return true
}

func (l *clientLimit) leave(k netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[k]--; l.open[k] <= 0 {
		delete(l.open, k)
	}
}

// refuse answers a connection over the limit (429 in plain HTTP, a close
// under TLS) and logs it, once a minute at most: an attacker's thousands
// of connections must not flood the log.
func (l *clientLimit) refuse(c net.Conn, k netip.Prefix) {
	l.refused.Add(1)
	if !l.tls {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, refusedResponse)
	}
	if ok, held := l.warn.due(); ok {
		l.log.Warn("refusing connections past listen.max_conns_per_ip (logged once a minute)",
			"client", k.String(), "max_conns_per_ip", l.max, "refused_since_last_line", held)
	}
}

const refusedBody = "Too many connections from your address.\n"

var refusedResponse = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
	strconv.Itoa(len(refusedBody)) + "\r\nConnection: close\r\n\r\n" + refusedBody

// limitListener gives each accepted connection to l's count.
type limitListener struct {
	net.Listener
	l *clientLimit
}

func (ln limitListener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &limitedConn{Conn: c, l: ln.l}, nil
}

// Connection states of a limitedConn.
const (
	unchecked int32 = iota
	counted
	closedConn
)

// limitedConn counts itself for its client on its first Read and stops
// counting on Close.
type limitedConn struct {
	net.Conn
	l       *clientLimit
	checked bool // touched only by Read, which one goroutine calls at a time
	key     netip.Prefix
	state   atomic.Int32 // what Close must undo; Read and Close race on it
}

func (c *limitedConn) Read(b []byte) (int, error) {
	if !c.checked {
		c.checked = true
		if !c.admit() {
			return 0, io.EOF // fasthttp closes quietly
		}
	}
	return c.Conn.Read(b)
}

// admit counts c for its client, or refuses it.
func (c *limitedConn) admit() bool {
	k, ok := clientOf(c.Conn.RemoteAddr()) // under the PROXY protocol, reads the header
	if !ok {
		return true
	}
	if !c.l.enter(k) {
		c.l.refuse(c.Conn, k)
		return false
	}
	c.key = k
	if !c.state.CompareAndSwap(unchecked, counted) {
		c.l.leave(k) // closed while we looked
		return false
	}
	return true
}

func (c *limitedConn) Close() error {
	if c.state.Swap(closedConn) == counted {
		c.l.leave(c.key)
	}
	return c.Conn.Close()
}
