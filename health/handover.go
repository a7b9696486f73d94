package health

// Gossip across a zero-downtime upgrade.
//
// An upgrade under listen.reuse_port runs two processes of one node side by
// side for a while: the new one starts and serves HTTP beside the old one,
// then the old one gets SIGTERM and drains. The HTTP port can be shared
// (SO_REUSEPORT); the gossip ports cannot, and should not be: memberlist's
// UDP packets for one node would be split at random between two processes,
// one of them on its way out, so acks and probes would go to the wrong one.
// Handing the sockets over (file descriptors passed to the new process, as
// tableflip does) would not help either: a node's membership lives in its
// memberlist state (incarnation, members, suspicion timers), not in its
// sockets, and two processes cannot be one node at once.
//
// So the node leaves and comes back, which is what memberlist is made for:
//
//   - The new process does not wait for the gossip ports to serve. With
//     Options.WaitForBind, a pool whose port another process holds starts on
//     a waitingTransport: the pool exists (Status, Members, Usable work) but
//     is bound to nothing, knows no one, and its joins fail and are retried.
//     Meanwhile the node judges other datacenters by its breakers alone (a
//     datacenter no node has reported on counts as up), which is what a node
//     without gossip does. The transport binds in the background with a
//     bounded backoff and, once bound, asks joinLoop to join at once.
//   - The old process, on SIGTERM, leaves the fleet before it drains HTTP
//     (Cluster.Close): it makes sure every peer knows it is draining, leaves
//     (so the fleet records it as left, not dead, and its datacenter stays
//     up) and closes the gossip ports.
//   - The new process binds, joins with the same node name and address,
//     hears that the fleet has it as "left", refutes that with a higher
//     incarnation, and the fleet lists it alive again.
//
// The alternative, a new process that refuses to serve until it holds the
// gossip ports, would deadlock the operator's sequence (start the new one,
// wait until it serves, then stop the old one) and leave no moment where a
// process both serves and is in the fleet anyway.

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// Backoff between attempts to bind a held gossip port: it starts short (the
// old process frees the port within a second or so of SIGTERM) and stays
// bounded, so the node rejoins at most bindRetryMax after the port is free. A bind attempt costs two syscalls; retrying forever is
// cheap, and a node that keeps serving without gossip is better than one
// that gives up serving.
const (
	bindRetryFirst = 50 * time.Millisecond
	bindRetryMax   = 500 * time.Millisecond
	// bindRetryLog is how often a port that stays held is logged again.
	bindRetryLog = 10 * time.Second
)

// portHeld reports whether err is a bind failing because another socket
// holds the address. memberlist's transport formats its errors with %v, so
// the text is all there is (memberlist itself tests it the same way).
func portHeld(err error) bool {
	return err != nil && (errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), syscall.EADDRINUSE.Error()))
}

// errNotBound is what a waiting transport answers while its port is held.
var errNotBound = errors.New("gossip port not bound yet: another process holds it")

// waitingTransport is a memberlist transport whose port another process
// holds. It binds memberlist's own UDP/TCP transport as soon as it can and
// from then on passes everything through to it.
type waitingTransport struct {
	host     string
	port     int
	pool     string
	log      *slog.Logger
	mlLog    *log.Logger
	onBound  func()
	since    time.Time
	inner    atomic.Pointer[memberlist.NetTransport]
	relay    *relay        // from inner, once bound
	stopBind chan struct{} // closed by Shutdown: stop trying to bind
	binding  sync.WaitGroup
	shutOnce sync.Once
}

var _ memberlist.NodeAwareTransport = (*waitingTransport)(nil)

// newWaitingTransport starts trying to bind host:port in the background;
// onBound runs once when it has.
func newWaitingTransport(pool, host string, port int, l *slog.Logger, mlLog *log.Logger, onBound func()) *waitingTransport {
	t := &waitingTransport{
		host: host, port: port, pool: pool, log: l, mlLog: mlLog, onBound: onBound, since: time.Now(),
		relay: newRelay(), stopBind: make(chan struct{}),
	}
	t.binding.Add(1)
	go t.bindLoop()
	return t
}

func (t *waitingTransport) address() string { return net.JoinHostPort(t.host, fmt.Sprint(t.port)) }

// bindLoop tries to bind until it does or Shutdown stops it.
func (t *waitingTransport) bindLoop() {
	defer t.binding.Done()
	wait, attempts, said := bindRetryFirst, 0, t.since
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-t.stopBind:
			return
		case <-timer.C:
		}
		attempts++
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{t.host}, BindPort: t.port, Logger: t.mlLog})
		if err != nil {
			if time.Since(said) >= bindRetryLog {
				said = time.Now()
				t.log.Warn("gossip port still not free; serving without this pool, datacenters judged by breakers alone",
					"pool", t.pool, "address", t.address(), "waited", time.Since(t.since).Round(time.Millisecond), "attempts", attempts, "error", err)
			}
			wait = min(2*wait, bindRetryMax)
			timer.Reset(wait)
			continue
		}
		t.inner.Store(nt)
		t.relay.start(nt, nil)
		t.log.Info("gossip port bound; joining the fleet", "pool", t.pool, "address", t.address(),
			"waited", time.Since(t.since).Round(time.Millisecond), "attempts", attempts)
		if t.onBound != nil {
			t.onBound()
		}
		return
	}
}

// FinalAdvertiseAddr is the configured address: it cannot be learned from
// a socket not bound yet, so it must be a concrete one.
func (t *waitingTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		ip = t.host
	}
	addr := net.ParseIP(ip)
	if addr == nil || addr.IsUnspecified() {
		return nil, 0, fmt.Errorf("%s is held by another process, and binding it later needs a concrete advertise address, got %q", t.address(), ip)
	}
	if v4 := addr.To4(); v4 != nil {
		addr = v4
	}
	if port == 0 {
		port = t.port
	}
	return addr, port, nil
}

// WriteToAddress sends a packet once bound; before, there is no one to
// send to (the pool has joined no one), and the packet is refused.
func (t *waitingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if nt := t.inner.Load(); nt != nil {
		return nt.WriteToAddress(b, a)
	}
	return time.Time{}, errNotBound
}

// WriteTo is WriteToAddress.
func (t *waitingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// DialAddressTimeout dials once bound; before, joins fail at once and
// joinLoop retries them.
func (t *waitingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if nt := t.inner.Load(); nt != nil {
		return nt.DialAddressTimeout(a, timeout)
	}
	return nil, errNotBound
}

// DialTimeout is DialAddressTimeout.
func (t *waitingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// PacketCh delivers the bound transport's packets (none before).
func (t *waitingTransport) PacketCh() <-chan *memberlist.Packet { return t.relay.packets }

// StreamCh delivers the bound transport's connections (none before).
func (t *waitingTransport) StreamCh() <-chan net.Conn { return t.relay.streams }

// Shutdown stops binding, then the bound transport, then the relay (in
// relay's order).
func (t *waitingTransport) Shutdown() error {
	var err error
	t.shutOnce.Do(func() {
		close(t.stopBind)
		t.binding.Wait()
		if nt := t.inner.Load(); nt != nil {
			err = nt.Shutdown()
		}
		t.relay.stop()
	})
	return err
}
