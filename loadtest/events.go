package loadtest

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// The log messages of the proxy (proxy/upstream.go) and of gossip
// (health/evaluate.go) that tell the story of a failover.
const (
	msgBreaker = "upstream breaker"
	msgDCDown  = "datacenter down"
	msgDCUp    = "datacenter up"
)

// fleetEventKind is what a fleetEvent reports.
type fleetEventKind uint8

const (
	evBreaker fleetEventKind = iota // an upstream's breaker changed state
	evDCDown                        // gossip: a datacenter is down
	evDCUp                          // gossip: a datacenter is up again
	evDemo                          // the demo did something (crash, recover)
)

// fleetEvent is one thing that happened on one node.
type fleetEvent struct {
	at       time.Time
	node     string
	kind     fleetEventKind
	subject  string // upstream ("dc/addr") or datacenter
	from, to string // breaker states
	detail   string // gossip's reason, or the demo's words
}

// eventLog collects fleet events from the nodes' loggers as they happen,
// for the live display (drain) and the report (all).
type eventLog struct {
	mu      sync.Mutex
	events  []fleetEvent
	drained int
}

func (l *eventLog) add(e fleetEvent) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// drain returns the events added since the last drain.
func (l *eventLog) drain() []fleetEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.events[l.drained:])
	l.drained = len(l.events)
	return out
}

// all returns every event so far, in order.
func (l *eventLog) all() []fleetEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// first returns the first event after since that match says yes to.
func (l *eventLog) first(since time.Time, match func(fleetEvent) bool) (fleetEvent, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if !e.at.Before(since) && match(e) {
			return e, true
		}
	}
	return fleetEvent{}, false
}

// captureHandler is a slog.Handler that turns one node's breaker and
// gossip log records into events, and passes every record on to next
// (nil: nowhere). It never blocks: memberlist and the breakers log from
// their own goroutines, under their own locks.
type captureHandler struct {
	log  *eventLog
	node string
	next slog.Handler
}

var _ slog.Handler = (*captureHandler)(nil)

func (h *captureHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || (h.next != nil && h.next.Enabled(ctx, l))
}

func (h *captureHandler) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case msgBreaker, msgDCDown, msgDCUp:
		e := fleetEvent{at: r.Time, node: h.node}
		if e.at.IsZero() {
			e.at = time.Now()
		}
		r.Attrs(func(a slog.Attr) bool {
			v := a.Value.String()
			switch a.Key {
			case "upstream", "datacenter":
				e.subject = v
			case "from":
				e.from = v
			case "to":
				e.to = v
			case "reason":
				e.detail = v
			}
			return true
		})
		switch r.Message {
		case msgBreaker:
			e.kind = evBreaker
		case msgDCDown:
			e.kind = evDCDown
		default:
			e.kind = evDCUp
		}
		h.log.add(e)
	}
	if h.next != nil && h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *captureHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	if h.next != nil {
		c.next = h.next.WithAttrs(attrs)
	}
	return &c
}

func (h *captureHandler) WithGroup(name string) slog.Handler {
	c := *h
	if h.next != nil {
		c.next = h.next.WithGroup(name)
	}
	return &c
}
