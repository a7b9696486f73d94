package health

import (
	"bytes"
	"context"
	"log"
	"log/slog"

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

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// events tracks which datacenter each node belongs to, so that a
// datacenter whose every node died is known to be down even though
// memberlist no longer lists dead nodes. Memberlist calls it synchronously:
// it takes only the cluster's short lock and never blocks.
type events struct {
	c    *Cluster
	pool string
}

var _ memberlist.EventDelegate = (*events)(nil)

func (e *events) NotifyJoin(n *memberlist.Node)   { e.track(n, true) }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.track(n, true) }

func (e *events) NotifyLeave(n *memberlist.Node) {
	// A node that left gracefully (a restart, a scale-down) says nothing
	// about its datacenter's web tier; one that died may have died with it.
	// Memberlist does not say which it was (Node.State is not kept up to
	// date), so a node counts as having left when its last word was that
	// it was draining (Close says so before leaving).
	m, err := DecodeMeta(n.Meta)
	e.track(n, err == nil && m.State != Draining)
}

// track records (keep) or forgets node n, if this pool is the one that
// judges n's datacenter: the LAN pool for this continent, the WAN pool for
// the others.
func (e *events) track(n *memberlist.Node, keep bool) {
	m, err := DecodeMeta(n.Meta)
	if err != nil {
		return
	}
	local := m.Continent == e.c.continent
	if local != (e.pool == "lan") {
		return
	}
	e.c.mu.Lock()
	if keep {
		e.c.seen[n.Name] = m.Datacenter
	} else {
		delete(e.c.seen, n.Name)
	}
	e.c.mu.Unlock()
	e.c.poke()
}

// newStdLogger adapts memberlist's log.Logger to slog: its "[ERR]" and
// "[WARN]" lines at warn, the rest at debug.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSpace(p))
	level := slog.LevelDebug
	if bytes.Contains(p, []byte("[ERR]")) || bytes.Contains(p, []byte("[WARN]")) {
		level = slog.LevelWarn
	}
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}
