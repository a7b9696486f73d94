package health

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Breaker defaults, used where BreakerSettings leaves a field zero.
const (
	DefaultBreakerFailures = 5
	DefaultBreakerOpenFor  = 5 * time.Second
	DefaultBreakerHalfOpen = 1
	DefaultBreakerRatio    = 0.5
	DefaultBreakerMinReqs  = 20
	DefaultBreakerWindow   = 10 * time.Second
)

// ErrBreakerOpen is returned by Breaker.Do when the breaker rejects the call
// without running it (open, or half-open with its probes in flight).
var ErrBreakerOpen = errors.New("health: circuit breaker open")

// BreakerSettings configures a Breaker.
type BreakerSettings struct {
	// Failures is how many consecutive failures open the breaker. Default 5.
	Failures int
	// OpenFor is how long an open breaker rejects before it lets probes
	// through (half-open). Default 5s.
	OpenFor time.Duration
	// HalfOpen is how many probe requests a half-open breaker lets through;
	// that many successes close it. Default 1.
	HalfOpen int
	// FailureRatio also opens the breaker when at least this share of the
	// requests in the last Window failed, once there were MinRequests:
	// the passive signal of an upstream that fails often but not in a
	// row. Defaults 0.5, 20 and 10s (one-second buckets).
	FailureRatio float64
	MinRequests  int
	Window       time.Duration
	// OnStateChange, if set, is told of every transition. It runs under the
	// breaker's lock: it must be quick and must not call back into the
	// breaker.
	OnStateChange func(name string, from, to gobreaker.State)
}

// Breaker is one upstream's circuit breaker: gobreaker's state machine, plus
// an atomic mirror of its state so the request path can pass over an open
// upstream without taking gobreaker's lock.
type Breaker struct {
	cb        *gobreaker.CircuitBreaker[struct{}]
	state     atomic.Int32 // gobreaker.State, mirrored by OnStateChange
	openUntil atomic.Int64 // unix nanoseconds at which an open breaker turns half-open
}

// NewBreaker returns a closed breaker named name (used in logs and metrics).
func NewBreaker(name string, s BreakerSettings) *Breaker {
	if s.Failures <= 0 {
		s.Failures = DefaultBreakerFailures
	}
	if s.OpenFor <= 0 {
		s.OpenFor = DefaultBreakerOpenFor
	}
	if s.HalfOpen <= 0 {
		s.HalfOpen = DefaultBreakerHalfOpen
	}
	if s.FailureRatio <= 0 {
		s.FailureRatio = DefaultBreakerRatio
	}
	if s.MinRequests <= 0 {
		s.MinRequests = DefaultBreakerMinReqs
	}
	if s.Window < time.Second {
		s.Window = DefaultBreakerWindow
	}
	b := &Breaker{}
	failures, openFor, notify := uint32(s.Failures), s.OpenFor, s.OnStateChange
	ratio, minReqs := s.FailureRatio, uint32(s.MinRequests)
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		MaxRequests:  uint32(s.HalfOpen),
		Timeout:      openFor,
		Interval:     s.Window,
		BucketPeriod: time.Second,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= failures ||
				(c.Requests >= minReqs && float64(c.TotalFailures) >= ratio*float64(c.Requests))
		},
		// Runs under gobreaker's lock: touch only our atomics.
		OnStateChange: func(name string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openUntil.Store(time.Now().Add(openFor).UnixNano())
			}
			b.state.Store(int32(to))
			if notify != nil {
				notify(name, from, to)
			}
		},
	})
	return b
}

// Name is the breaker's name.
func (b *Breaker) Name() string { return b.cb.Name() }

// State is the last state the breaker moved to. An open breaker whose
// OpenFor has passed still reads open until a request probes it.
func (b *Breaker) State() gobreaker.State { return gobreaker.State(b.state.Load()) }

// Ready reports, without locking, whether a call would be let through: the
// breaker is closed or half-open, or open for longer than OpenFor (the next
// call will probe). Only an open breaker reads the clock.
func (b *Breaker) Ready() bool {
	return gobreaker.State(b.state.Load()) != gobreaker.StateOpen || time.Now().UnixNano() >= b.openUntil.Load()
}

// Do runs call if the breaker lets it through, and counts its error (nil is
// a success) toward opening the breaker. It returns ErrBreakerOpen without
// running call when rejected.
func (b *Breaker) Do(call func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, call() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return ErrBreakerOpen
	}
	return err
}
