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

	"github.com/pires/go-proxyproto"
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
	if nat64.Contains(ip) || nat64Local.Contains(ip) {
		// An IPv4 client translated to IPv6 (NAT64, SIIT): each address
		// is a client of its own. Their /64 holds the whole IPv4 Internet.
		return netip.PrefixFrom(ip, 128), true
	}
	p, _ := ip.Prefix(64)
	return p, true
}

// The well-known NAT64 prefix (RFC 6052) and the local-use one (RFC 8215).
var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
)

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
		_ = c.SetDeadline(time.Now().Add(refuseLinger))
		_, _ = io.WriteString(c, refusedResponse)
		// Read what the client sends until it closes (it reads the 429's
		// Connection: close), within refuseLinger: closing with its
		// request unread would send a reset, which clients report instead
		// of the 429.
		buf := make([]byte, 4096)
		for n := 0; n < refuseDrain; {
			m, err := c.Read(buf)
			if n += m; err != nil {
				break
			}
		}
	}
	if ok, held := l.warn.due(); ok {
		l.log.Warn("refusing connections past listen.max_conns_per_ip (logged once a minute)",
			"client", k.String(), "max_conns_per_ip", l.max, "refused_since_last_line", held)
	}
}

// A refused plain-HTTP connection is held at most refuseLinger, reading at
// most refuseDrain bytes, so that its 429 arrives.
const (
	refuseLinger = 250 * time.Millisecond
	refuseDrain  = 16 << 10
)

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
	refused bool // likewise: every Read after a refusal is EOF
	key     netip.Prefix
	state   atomic.Int32 // what Close must undo; Read and Close race on it
}

func (c *limitedConn) Read(b []byte) (int, error) {
	if !c.checked {
		c.checked = true
		c.refused = !c.admit()
	}
	if c.refused {
		return 0, io.EOF // fasthttp closes quietly
	}
	return c.Conn.Read(b)
}

// admit counts c for its client, or refuses it.
func (c *limitedConn) admit() bool {
	k, ok := clientOf(c.Conn.RemoteAddr()) // under the PROXY protocol, reads the header
	if !ok || balancerOwn(c.Conn) {
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

// balancerOwn reports whether c is a trusted balancer's connection made on
// its own behalf: a PROXY LOCAL header (its health checks), or none read.
// Its address is then the balancer's, and counting it would refuse real
// clients for the balancer's probes.
func balancerOwn(c net.Conn) bool {
	pc, ok := c.(*proxyproto.Conn)
	if !ok {
		return false // not from a trusted balancer
	}
	h := pc.ProxyHeader()
	return h == nil || h.Command.IsLocal()
}
