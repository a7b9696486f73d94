package health

import (
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// FaultTransport is memberlist's UDP/TCP transport with a fault switch: all
// traffic to or from an address for which Cut returns true is lost, as in a
// network partition, and with a Cut that is always true, as when the host
// dies (Cluster.Close would say goodbye, which a crash does not). Tests and
// the demo use it, through Options.Transport, to break the network of one
// node without touching the machine's. Cut must be safe for concurrent use.
type FaultTransport struct {
	memberlist.NodeAwareTransport
	cut   func(ip string) bool
	relay *relay
}

var _ memberlist.NodeAwareTransport = (*FaultTransport)(nil)

// NewFaultTransport binds a transport to bind (host:port, port 0 for any)
// that drops what cut says.
func NewFaultTransport(bind string, cut func(ip string) bool) (*FaultTransport, error) {
	host, port, err := splitHostPort(bind)
	if err != nil {
		return nil, fmt.Errorf("health: fault transport: %w", err)
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{host}, BindPort: port,
		Logger: log.New(io.Discard, "", 0), // its messages are about the network it is cut from
	})
	if err != nil {
		return nil, fmt.Errorf("health: fault transport: %w", err)
	}
	t := &FaultTransport{NodeAwareTransport: nt, cut: cut, relay: newRelay()}
	t.relay.start(nt, cut)
	return t, nil
}

// PacketCh delivers the packets that were not cut.
func (t *FaultTransport) PacketCh() <-chan *memberlist.Packet { return t.relay.packets }

// StreamCh delivers the connections that were not cut.
func (t *FaultTransport) StreamCh() <-chan net.Conn { return t.relay.streams }

// WriteToAddress sends b unless its destination is cut; then it is lost.
func (t *FaultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.cut(ipOf(a.Addr)) {
		return time.Now(), nil // lost in the network
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

// WriteTo is WriteToAddress.
func (t *FaultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// DialAddressTimeout dials unless the destination is cut; then it times
// out, as a connection into a partition does.
func (t *FaultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.cut(ipOf(a.Addr)) {
		time.Sleep(min(timeout, 100*time.Millisecond))
		return nil, fmt.Errorf("dial %s: i/o timeout (cut off)", a.Addr)
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// DialTimeout is DialAddressTimeout.
func (t *FaultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// Shutdown stops the inner transport, then the relay (in relay's order).
func (t *FaultTransport) Shutdown() error {
	err := t.NodeAwareTransport.Shutdown()
	t.relay.stop()
	return err
}
