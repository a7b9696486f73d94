package health

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// NodeState is a proxy node's own state, as it gossips it.
type NodeState uint8

const (
	// Serving: the node takes client traffic.
	Serving NodeState = iota
	// Draining: the node is shutting down; it finishes what it has.
	Draining
)

func (s NodeState) String() string {
	if s == Draining {
		return "draining"
	}
	return "serving"
}

// Meta is what a proxy node tells the fleet about itself and its
// datacenter, carried in memberlist's node metadata (at most 512 bytes).
type Meta struct {
	Continent  string
	Datacenter string
	State      NodeState
	MapVersion uint64
	// MapOrigin is the node that made map version MapVersion: two nodes
	// can make the same number at once, and a move's fence must know
	// which map a node holds, not only its number. Empty from a release
	// that did not gossip it.
	MapOrigin string
	// Upstreams and Healthy are the node's last active check of its own
	// datacenter's web tier: how many upstreams, how many answered.
	Upstreams, Healthy uint16
	// Rates is the request rate (per second) this node sends to each
	// datacenter, by topology index; nil when it sends nothing.
	Rates []float32
	// Hot are the keys this node detected hot, by key hash, with their
	// spread: the fleet spreads the union (at most MaxHotInMeta).
	Hot []HotHash
	// AutoApply is the node's placement.auto_apply: the fleet's moves are
	// driven by a node that has it on. Nil from a release that did not
	// gossip it.
	AutoApply *bool
}

// HotHash is a hot routing key as gossip carries it.
type HotHash struct {
	Hash   uint64 `json:"hash"`
	Spread uint8  `json:"spread"`
}

// MaxHotInMeta bounds the hot keys one node gossips. With 64 datacenters'
// rates and long names not all fit in memberlist's 512 bytes; Encode then
// gossips as many as do.
const MaxHotInMeta = 16

// metaVersion is the encoding's version byte; decoders reject others so a
// mixed-version fleet fails loudly instead of misreading.
const metaVersion = 2

// The flags byte: metaFlagsSet marks it written (a zero byte is not), then
// one bit a flag.
const (
	metaAutoApply = 1 << 0
	metaFlagsSet  = 1 << 7
)

func boolBit(v bool) byte {
	if v {
		return metaAutoApply
	}
	return 0
}

// MaxMetaSize is memberlist's cap on node metadata.
const MaxMetaSize = 512

var errMetaTooLarge = errors.New("health: node metadata over 512 bytes")

// Encode appends m's compact binary form to b.
func (m *Meta) Encode(b []byte) ([]byte, error) {
	if len(m.Continent) > 255 || len(m.Datacenter) > 255 || len(m.Rates) > 255 {
		return nil, errMetaTooLarge
	}
	b = append(b, metaVersion, byte(m.State))
	b = append(b, byte(len(m.Continent)))
	b = append(b, m.Continent...)
	b = append(b, byte(len(m.Datacenter)))
	b = append(b, m.Datacenter...)
	b = binary.LittleEndian.AppendUint64(b, m.MapVersion)
	b = binary.LittleEndian.AppendUint16(b, m.Upstreams)
	b = binary.LittleEndian.AppendUint16(b, m.Healthy)
	b = append(b, byte(len(m.Rates)))
	for _, r := range m.Rates {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(r))
	}
	// Hot keys are a hint the fleet unions: those that do not fit under
	// the cap are left out, rather than the whole metadata failing (with
	// it the node's health and its draining word).
	// The map's origin goes before hot keys, unless it cannot fit at all
	// (a long name beside 64 datacenters' rates): then it is left out, and
	// the fleet knows this node's map by its number alone.
	flags := 0
	if m.AutoApply != nil {
		flags = 1
	}
	origin := m.MapOrigin
	if len(b)+2+len(origin)+flags > MaxMetaSize {
		origin = ""
	}
	room := (MaxMetaSize - len(b) - 1 - 1 - len(origin) - flags) / 9
	hot := m.Hot[:max(0, min(len(m.Hot), MaxHotInMeta, room))]
	b = append(b, byte(len(hot)))
	for _, h := range hot {
		b = binary.LittleEndian.AppendUint64(b, h.Hash)
		b = append(b, h.Spread)
	}
	// Last, so that a decoder of the release before, which stops after
	// the hot keys, still reads the rest.
	b = append(b, byte(len(origin)))
	b = append(b, origin...)
	if m.AutoApply != nil { // after the origin, for the same reason
		b = append(b, metaFlagsSet|boolBit(*m.AutoApply))
	}
	if len(b) > MaxMetaSize {
		return nil, errMetaTooLarge
	}
	return b, nil
}

// DecodeMeta parses what Encode wrote.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	d := decoder{b: b}
	if v := d.byte(); v != metaVersion {
		return m, fmt.Errorf("health: node metadata version %d, want %d", v, metaVersion)
	}
	m.State = NodeState(d.byte())
	m.Continent = d.str()
	m.Datacenter = d.str()
	m.MapVersion = d.uint64()
	m.Upstreams = d.uint16()
	m.Healthy = d.uint16()
	if n := int(d.byte()); n > 0 {
		m.Rates = make([]float32, n)
		for i := range m.Rates {
			m.Rates[i] = math.Float32frombits(d.uint32())
		}
	}
	if n := int(d.byte()); n > 0 {
		m.Hot = make([]HotHash, n)
		for i := range m.Hot {
			m.Hot[i] = HotHash{Hash: d.uint64(), Spread: d.byte()}
		}
	}
	if len(d.b) > 0 { // absent from the releases before
		m.MapOrigin = d.str()
	}
	if len(d.b) > 0 {
		if f := d.byte(); f&metaFlagsSet != 0 {
			auto := f&metaAutoApply != 0
			m.AutoApply = &auto
		}
	}
	if d.short {
		return Meta{}, errors.New("health: node metadata truncated")
	}
	return m, nil
}

// decoder reads fixed fields, remembering if the input ran out.
type decoder struct {
	b     []byte
	short bool
}

func (d *decoder) take(n int) []byte {
	if len(d.b) < n {
		d.short = true
		d.b = nil
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte     { return d.take(1)[0] }
func (d *decoder) str() string    { return string(d.take(int(d.byte()))) }
func (d *decoder) uint16() uint16 { return binary.LittleEndian.Uint16(d.take(2)) }
func (d *decoder) uint32() uint32 { return binary.LittleEndian.Uint32(d.take(4)) }
func (d *decoder) uint64() uint64 { return binary.LittleEndian.Uint64(d.take(8)) }
