package health

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// delegate hands memberlist this node's metadata. Memberlist calls it from
// its packet loops: every method returns at once.
type delegate struct{ c *Cluster }

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte {
	b := *d.c.meta.Load()
	if len(b) > limit {
		return nil // Encode enforces MaxMetaSize; a smaller limit is a memberlist change
	}
	return b
}

// NotifyMsg receives a bucket map or an access report another node sent.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) > 0 && b[0] == statsMsg {
		d.c.receivedStats(b)
		return
	}
	d.c.received(b)
}

// GetBroadcasts has nothing to add: bucket maps travel over TCP, too large
// for gossip packets.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState offers this node's bucket map in push/pull, so nodes that
// missed a change, or join later, converge.
func (d *delegate) LocalState(join bool) []byte { return d.c.heldState() }

// MergeRemoteState takes the other side's bucket map if it is newer.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) > 0 {
		d.c.received(buf)
	}
}

// events tracks which datacenter each node belongs to, so that a
// datacenter whose every node died is known to be down even though
// memberlist no longer lists dead nodes. Memberlist calls it synchronously:
// it takes only the cluster's short lock and never blocks.
type events struct {
	c    *Cluster
	pool string
}

var _ memberlist.EventDelegate = (*events)(nil)

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.track(n, true)
	e.c.offerHeld(e.pool, n)
}

func (e *events) NotifyUpdate(n *memberlist.Node) { e.track(n, true) }

func (e *events) NotifyLeave(n *memberlist.Node) {
	// A node that left gracefully (a restart, a scale-down) says nothing
	// about its datacenter's web tier; one that died may have died with it.
	// Memberlist does not say which it was (Node.State is not kept up to
	// date), so a node counts as having left when its last word was that
	// it was draining (Close says so before leaving).
	m, err := DecodeMeta(n.Meta)
	e.track(n, false)
	if err == nil && m.State != Draining && e.judges(m) {
		e.c.mu.Lock()
		e.c.seen[n.Name] = m.Datacenter
		e.c.addrs[n.Name] = n.Address() // to join again: it may be alive behind a partition
		e.c.mu.Unlock()
	}
}

// judges reports whether this pool is the one that judges the datacenter of
// a node with meta m: the LAN pool for this continent, the WAN pool for the
// others.
func (e *events) judges(m Meta) bool {
	return (m.Continent == e.c.continent) == (e.pool == "lan")
}

// track records node n as listed (copying what it needs: n belongs to
// memberlist) or, when listed is false, forgets it.
func (e *events) track(n *memberlist.Node, listed bool) {
	m, err := DecodeMeta(n.Meta)
	if err != nil {
		// Another version of socialroute, say. It says nothing of its
		// datacenter, but it stays listed (as "unreadable", map version
		// 0), so a move's fence waits for it instead of passing over a
		// node whose map nobody knows.
		e.c.log.Debug("member with unreadable metadata", "node", n.Name, "error", err)
		e.c.mu.Lock()
		if listed {
			// A node listed before with readable metadata keeps it for
			// judging its datacenter (dropped, a live node would read as
			// dead); the fence sees "unreadable" all the same.
			prev := e.c.listed[e.pool][n.Name]
			e.c.listed[e.pool][n.Name] = listedNode{addr: n.Address(), meta: prev.meta, unreadable: true}
		} else {
			delete(e.c.listed[e.pool], n.Name)
		}
		e.c.mu.Unlock()
		return
	}
	e.c.mu.Lock()
	if listed {
		e.c.listed[e.pool][n.Name] = listedNode{addr: n.Address(), meta: m}
		if e.judges(m) {
			e.c.seen[n.Name] = m.Datacenter
			e.c.addrs[n.Name] = n.Address()
			// A live node of the datacenter answers for the ones of it
			// that died earlier: forget them, or a later clean leave of
			// every live one (a restart under new pod names) would read
			// as "all its proxy nodes are dead" because of a crash long
			// past. The map would also grow by every crashed name.
			for name, dc := range e.c.seen {
				if _, live := e.c.listed[e.pool][name]; dc == m.Datacenter && !live {
					delete(e.c.seen, name)
					delete(e.c.addrs, name)
				}
			}
		}
	} else {
		delete(e.c.listed[e.pool], n.Name)
		if e.judges(m) {
			delete(e.c.seen, n.Name)
			delete(e.c.addrs, n.Name)
		}
	}
	e.c.mu.Unlock()
	e.c.poke()
}

// newStdLogger adapts memberlist's log.Logger to slog: its "[ERR]" and
// "[WARN]" lines at warn, the rest at debug, with two exceptions. A node
// that comes back under its name (a restart, an upgrade) hears that it
// left and refutes it, which memberlist logs as a warning: that one is
// expected and said at info, in plain words (self is this node's name).
// And once the node is closing, memberlist's loops may still try a socket
// Shutdown just closed: those errors are at debug.
func newStdLogger(l *slog.Logger, self string, closing *atomic.Bool) *log.Logger {
	return log.New(slogWriter{l: l, rejoin: []byte("Refuting a dead message (from: " + self + ")"), closing: closing}, "", 0)
}

type slogWriter struct {
	l       *slog.Logger
	rejoin  []byte
	closing *atomic.Bool
}

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	level := slog.LevelDebug
	switch {
	case bytes.Contains(p, w.rejoin):
		w.l.Info("back in the fleet under this node's name: it had been recorded as left (a restart or an upgrade)", "memberlist", msg)
		return len(p), nil
	case w.closing != nil && w.closing.Load() && bytes.Contains(p, []byte("use of closed network connection")):
	case bytes.Contains(p, []byte("[ERR]")) || bytes.Contains(p, []byte("[WARN]")):
		level = slog.LevelWarn
	}
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}
