package health

import (
	"net"
	"sync"

	"github.com/hashicorp/memberlist"
)

// relay passes a bound memberlist transport's packets and connections on
// through channels of its own, for transports that stand in front of one
// (FaultTransport drops some; waitingTransport has none until it binds).
// Its zero value is not usable: make one with newRelay.
//
// Stopping has an order, and this is the one place that keeps it: shut the
// inner transport first, while the relay still takes what it delivers (its
// listeners block until a packet is taken, and memberlist stops reading only
// once the outer Shutdown returns), then stop the relay.
type relay struct {
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	running sync.WaitGroup
}

func newRelay() *relay {
	return &relay{packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), done: make(chan struct{})}
}

// start relays from inner until stop, dropping what comes from an IP that
// drop reports (nil drops nothing). A dropped connection is closed.
func (r *relay) start(inner memberlist.Transport, drop func(ip string) bool) {
	dropped := func(addr string) bool { return drop != nil && drop(ipOf(addr)) }
	r.running.Add(2)
	go func() {
		defer r.running.Done()
		for {
			select {
			case p := <-inner.PacketCh():
				if dropped(p.From.String()) {
					continue
				}
				select {
				case r.packets <- p:
				case <-r.done:
					return
				}
			case <-r.done:
				return
			}
		}
	}()
	go func() {
		defer r.running.Done()
		for {
			select {
			case c := <-inner.StreamCh():
				if dropped(c.RemoteAddr().String()) {
					c.Close()
					continue
				}
				select {
				case r.streams <- c:
				case <-r.done:
					c.Close()
					return
				}
			case <-r.done:
				return
			}
		}
	}()
}

// stop ends the relaying and waits for it; the inner transport must be
// shut down first (see relay).
func (r *relay) stop() {
	close(r.done)
	r.running.Wait()
}

func ipOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
