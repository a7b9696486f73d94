package health

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/hashicorp/memberlist"
)

// Placement is one version of the bucket map's overrides as the fleet
// spreads it. Payload is opaque here (the proxy's JSON of the overrides).
type Placement struct {
	Version uint64
	Origin  string
	Payload []byte
}

// newer reports whether p wins over q: a higher version, then the greater
// origin name; every node settles concurrent changes the same way.
func (p *Placement) newer(q *Placement) bool {
	return q == nil || p.Version > q.Version || (p.Version == q.Version && p.Origin > q.Origin)
}

// placementMsg tags a user message carrying a Placement.
const placementMsg = 1

func (p *Placement) encode() []byte {
	b := make([]byte, 0, 10+len(p.Origin)+len(p.Payload))
	b = append(b, placementMsg)
	b = binary.LittleEndian.AppendUint64(b, p.Version)
	b = append(b, byte(len(p.Origin)))
	b = append(b, p.Origin...)
	return append(b, p.Payload...)
}

func decodePlacement(b []byte) (*Placement, error) {
	if len(b) < 10 || b[0] != placementMsg || len(b) < 10+int(b[9]) {
		return nil, errors.New("health: malformed placement message")
	}
	n := int(b[9])
	return &Placement{
		Version: binary.LittleEndian.Uint64(b[1:9]),
		Origin:  string(b[10 : 10+n]),
		Payload: append([]byte(nil), b[10+n:]...), // memberlist reuses b
	}, nil
}

// SpreadPlacement makes p this node's bucket map and sends it to every node
// it knows (reliably, over TCP), in the background. Nodes that miss it, or
// join later, get it in memberlist's push/pull exchanges. A p older than
// what the node already holds is ignored.
func (c *Cluster) SpreadPlacement(p Placement) {
	if !c.hold(&p) {
		if held := c.HeldPlacement(); held != nil {
			// The node made a change on a map older than the fleet's
			// newest, which it must have failed to adopt (its log says
			// why): the fleet would ignore this change, so say so.
			c.log.Warn("bucket map change not spread: the fleet holds a newer map this node did not adopt",
				"version", p.Version, "fleet_version", held.Version, "fleet_origin", held.Origin)
		}
		return
	}
	c.SetMap(p.Version, p.Origin)
	c.sendToAll(p.encode(), "the bucket map")
}

// hold makes p the held placement if it is newer; it reports whether it was.
func (c *Cluster) hold(p *Placement) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !p.newer(c.placement) {
		return false
	}
	c.placement = p
	return true
}

// received handles a placement heard from another node: if it is newer than
// the held one, it is held and handed to OnPlacement. Memberlist calls this
// from its receive loops, so the hand-off goes through a one-slot mailbox
// that keeps only the newest: it never blocks.
func (c *Cluster) received(b []byte) {
	p, err := decodePlacement(b)
	if err != nil {
		c.log.Debug("ignoring a gossip message", "error", err)
		return
	}
	if !c.hold(p) {
		return
	}
	c.inbox.Store(p)
	select {
	case c.arrived <- struct{}{}:
	default:
	}
}

// deliverLoop hands newly held placements to OnPlacement, in order, off
// memberlist's goroutines.
func (c *Cluster) deliverLoop(stop <-chan struct{}) {
	defer c.done.Done()
	for {
		select {
		case <-stop:
			return
		case <-c.arrived:
			if p := c.inbox.Swap(nil); p != nil && c.opts.OnPlacement != nil {
				// Gossip what the node routes by, not what it heard: a
				// node that could not adopt p must not pass for holding
				// a fence p holds.
				c.SetMap(c.opts.OnPlacement(*p))
			}
		}
	}
}

// HeldPlacement is the newest bucket map this node holds (its own latest
// change or the newest heard), nil if none.
func (c *Cluster) HeldPlacement() *Placement {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.placement
}

// heldState is what this node offers in push/pull: its placement.
func (c *Cluster) heldState() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.placement == nil {
		return nil
	}
	return c.placement.encode()
}

// offerHeld sends the held placement, if any, to node n, which just joined
// pool. A change spread a moment before n was listed here did not go to
// it, and the node it joined through may not have held the change yet;
// push/pull would bring it, but that can be a minute away.
//
// Only through the pool fleet-wide sends use (the WAN pool when there is
// one), so a node in both pools is offered the map once; and at most
// sendAtOnce offers at a time for the whole node, so a healed partition
// (memberlist reports every revived node as joining) does not fan out
// without bound: an offer that finds no slot is skipped, and push/pull
// covers it.
func (c *Cluster) offerHeld(pool string, n *memberlist.Node) {
	if n.Name == c.opts.Node {
		return
	}
	ml, fleetPool := c.fleetPool()
	p := c.HeldPlacement()
	if p == nil || ml == nil || pool != fleetPool {
		return
	}
	select {
	case c.offerSlots <- struct{}{}:
	default:
		return
	}
	to := &memberlist.Node{Name: n.Name, Addr: slices.Clone(n.Addr), Port: n.Port} // n is memberlist's
	msg := p.encode()
	go func() {
		defer func() { <-c.offerSlots }()
		if err := ml.SendReliable(to, msg); err != nil {
			c.log.Debug("offering the bucket map to a new member", "to", to.Name, "error", err)
		}
	}()
}
