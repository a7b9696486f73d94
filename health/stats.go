package health

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// AccessReport is one proxy node's decayed per-bucket request counts, by
// origin continent (the buckets package's Counts, which converts to it).
//
// How reports travel, and why so: every node sends its whole report (the
// buckets with a non-zero count, nothing else) to every other node over
// memberlist's TCP user messages, like bucket maps, every stats tick.
// Node metadata cannot carry it: its 512 bytes already hold the node's
// rates and hot keys. Nor can a node send only its buckets with the most
// cross-continent traffic: a node counts only its own continent's
// requests, so a bucket's home-continent nodes would then report nothing
// for exactly the buckets the advisor weighs, and every such bucket would
// look 100% foreign. Whole reports are small: a bucket costs 2 bytes of id
// and a varint per continent (about 5 bytes), so 4096 buckets are at most
// ~20 KB per node per tick. Reports are soft state: one lost is replaced by
// the next, so there is no push/pull for them.
type AccessReport struct {
	Continents int
	ByBucket   map[uint32][]uint32
}

// statsMsg tags a user message carrying an AccessReport.
const statsMsg = 2

// statsVersion is the report encoding's version.
const statsVersion = 1

var errBadStats = errors.New("health: malformed access report")

func encodeReport(node string, r AccessReport) []byte {
	b := make([]byte, 0, 4+len(node)+len(r.ByBucket)*(2+3*r.Continents))
	b = append(b, statsMsg, statsVersion, byte(len(node)))
	b = append(b, node...)
	b = append(b, byte(r.Continents))
	b = binary.AppendUvarint(b, uint64(len(r.ByBucket)))
	for bucket, row := range r.ByBucket {
		b = binary.LittleEndian.AppendUint16(b, uint16(bucket))
		for i := range r.Continents {
			var v uint32
			if i < len(row) {
				v = row[i]
			}
			b = binary.AppendUvarint(b, uint64(v))
		}
	}
	return b
}

func decodeReport(b []byte) (string, AccessReport, error) {
	var r AccessReport
	if len(b) < 4 || b[0] != statsMsg || b[1] != statsVersion || len(b) < 4+int(b[2]) {
		return "", r, errBadStats
	}
	n := int(b[2])
	node := string(b[3 : 3+n])
	b = b[3+n:]
	r.Continents = int(b[0])
	b = b[1:]
	count, k := binary.Uvarint(b)
	if k <= 0 || count > 1<<16 {
		return "", r, errBadStats
	}
	b = b[k:]
	r.ByBucket = make(map[uint32][]uint32, count)
	for range count {
		if len(b) < 2 {
			return "", r, errBadStats
		}
		bucket := uint32(binary.LittleEndian.Uint16(b))
		b = b[2:]
		row := make([]uint32, r.Continents)
		for i := range row {
			v, k := binary.Uvarint(b)
			if k <= 0 || v > uint64(^uint32(0)) {
				return "", r, errBadStats
			}
			row[i], b = uint32(v), b[k:]
		}
		r.ByBucket[bucket] = row
	}
	return node, r, nil
}

// accessBook holds the newest report heard from each node, and this node's
// own. Its lock is its own: memberlist's receive loop stores into it.
type accessBook struct {
	mu      sync.Mutex
	reports map[string]heardReport
}

type heardReport struct {
	at time.Time
	r  AccessReport
}

func (a *accessBook) store(node string, at time.Time, r AccessReport) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reports == nil {
		a.reports = map[string]heardReport{}
	}
	a.reports[node] = heardReport{at: at, r: r}
}

// receivedStats handles a report another node sent. Never blocks long.
func (c *Cluster) receivedStats(b []byte) {
	node, r, err := decodeReport(b)
	if err != nil {
		c.log.Debug("ignoring a gossip message", "error", err)
		return
	}
	c.access.store(node, c.now(), r)
}

// ShareAccess makes r this node's access report and sends it to every node
// it knows (over TCP), in the background. Call it every stats tick.
func (c *Cluster) ShareAccess(r AccessReport) {
	c.access.store(c.opts.Node, c.now(), r)
	msg := encodeReport(c.opts.Node, r)
	c.sendToAll(msg, "the access report")
}

// sendAtOnce bounds the reliable sends sendToAll runs at the same time.
const sendAtOnce = 8

// sendToAll sends msg reliably (over TCP) to every node peers lists, in
// the background, up to sendAtOnce at a time: one after another, each
// peer gone but still listed held the rest back by its dial timeout (10 s
// on the LAN profile, 30 s on the WAN), and sends from successive ticks
// piled up behind it.
func (c *Cluster) sendToAll(msg []byte, what string) {
	ml, to := c.peers()
	if len(to) == 0 {
		return
	}
	go func() {
		slots := make(chan struct{}, sendAtOnce)
		for _, n := range to {
			slots <- struct{}{}
			go func() {
				defer func() { <-slots }()
				if err := ml.SendReliable(n, msg); err != nil {
					c.log.Debug("sending "+what, "to", n.Name, "error", err)
				}
			}()
		}
	}()
}

// fleetPool is the pool fleet-wide messages go through, and its name: the
// WAN pool reaches every node; without it, the LAN pool reaches this
// continent's.
func (c *Cluster) fleetPool() (*memberlist.Memberlist, string) {
	if c.wan != nil {
		return c.wan, "wan"
	}
	return c.lan, "lan"
}

// peers lists the nodes to send fleet-wide messages to, and the pool to
// send them through: the WAN pool reaches every node; without it, the LAN
// pool reaches this continent's.
func (c *Cluster) peers() (*memberlist.Memberlist, []*memberlist.Node) {
	ml, pool := c.fleetPool()
	var to []*memberlist.Node
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, n := range c.listed[pool] {
		host, port, err := splitHostPort(n.addr)
		if name == c.opts.Node || err != nil {
			continue
		}
		to = append(to, &memberlist.Node{Name: name, Addr: net.ParseIP(host), Port: uint16(port)})
	}
	return ml, to
}

// FleetAccess sums the reports of this node and of every node gossip still
// lists, heard within maxAge: the fleet's per-bucket, per-origin counts,
// what the placement advisor weighs. Reports of nodes that died or went
// quiet drop out, so a departed node's traffic does not linger.
func (c *Cluster) FleetAccess(maxAge time.Duration) (AccessReport, int) {
	c.mu.Lock()
	live := map[string]bool{c.opts.Node: true}
	for _, pool := range c.listed {
		for name := range pool {
			live[name] = true
		}
	}
	c.mu.Unlock()
	now := c.now()
	c.access.mu.Lock()
	defer c.access.mu.Unlock()
	return mergeReports(c.access.reports, live, now, maxAge)
}

// mergeReports sums the reports of live nodes no older than maxAge; it
// returns the sum and how many reports went into it.
func mergeReports(reports map[string]heardReport, live map[string]bool, now time.Time, maxAge time.Duration) (AccessReport, int) {
	out := AccessReport{ByBucket: map[uint32][]uint32{}}
	for _, h := range reports {
		out.Continents = max(out.Continents, h.r.Continents)
	}
	used := 0
	for node, h := range reports {
		if !live[node] || now.Sub(h.at) > maxAge {
			continue
		}
		used++
		for b, row := range h.r.ByBucket {
			dst := out.ByBucket[b]
			if dst == nil {
				dst = make([]uint32, out.Continents)
				out.ByBucket[b] = dst
			}
			for i := 0; i < len(row) && i < len(dst); i++ {
				dst[i] = uint32(min(uint64(dst[i])+uint64(row[i]), uint64(^uint32(0))))
			}
		}
	}
	return out, used
}
