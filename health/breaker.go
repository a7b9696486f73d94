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
	// Neutral, if set, names errors that say nothing of the upstream's
	// health, such as the caller's own connection pool being full: they
	// count neither as failures nor as successes.
	Neutral func(error) bool
	// OnStateChange, if set, is told of every transition. It runs under the
	// breaker's lock: it must be quick and must not call back into the
	// breaker.
	OnStateChange func(name string, from, to gobreaker.State)
}

// Breaker is one upstream's circuit breaker: gobreaker's state machine for
// the rare transitions (closed -> open -> half-open -> closed), and a
// lock-free closed state in front of it for the common case. A closed
// breaker counts outcomes in atomics (consecutive failures and a rolling
// window of one-second buckets) and calls gobreaker only for the failure
// that trips it: gobreaker counts under a mutex and reads the clock twice
// per call, which on the request path cost more than the rest of the
// breaker. An atomic mirror of the state lets the request path pass over
// an open upstream without locking either.
type Breaker struct {
	cb        *gobreaker.CircuitBreaker[struct{}]
	state     atomic.Int32 // gobreaker.State, mirrored by OnStateChange
	openUntil atomic.Int64 // unix nanoseconds at which an open breaker turns half-open

	failures    uint32 // consecutive failures that trip it
	ratio       float64
	minRequests uint32
	consecutive atomic.Uint32
	window      []windowBucket // len = window seconds
	neutral     func(error) bool
	now         func() time.Time
}

// windowBucket counts one second of outcomes of a closed breaker. A bucket
// is reused for a later second by whoever sees it stale first; an outcome
// counted by another caller in that instant may be lost. A breaker needs
// the rate, not an audit.
type windowBucket struct {
	sec      atomic.Int64
	requests atomic.Uint32
	failed   atomic.Uint32
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
	b := &Breaker{
		failures:    uint32(s.Failures),
		ratio:       s.FailureRatio,
		minRequests: uint32(s.MinRequests),
		window:      make([]windowBucket, int(s.Window/time.Second)),
		neutral:     s.Neutral,
		now:         time.Now,
	}
	openFor, notify := s.OpenFor, s.OnStateChange
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: uint32(s.HalfOpen),
		Timeout:     openFor,
		// gobreaker sees a closed breaker's calls only in a race with a
		// transition, and the tripping failure: the counts that decide are
		// ours.
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= b.failures || b.shouldTrip(b.now().Unix())
		},
		IsExcluded: b.isNeutral, // a half-open probe that says nothing decides nothing
		// Runs under gobreaker's lock: touch only our atomics.
		OnStateChange: func(name string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				b.openUntil.Store(time.Now().Add(openFor).UnixNano())
			case gobreaker.StateClosed:
				b.consecutive.Store(0) // a recovered upstream starts afresh
				for i := range b.window {
					b.window[i].sec.Store(0)
				}
			}
			b.state.Store(int32(to))
			if notify != nil {
				notify(name, from, to)
			}
		},
	})
	return b
}

// isNeutral reports whether err is one BreakerSettings.Neutral names.
func (b *Breaker) isNeutral(err error) bool { return b.neutral != nil && b.neutral(err) }

// count records one outcome of a closed breaker at unix second sec. One
// dated a window or more before the second its bucket holds now is
// dropped: taking the bucket back would wipe the newer second's counts.
func (b *Breaker) count(sec int64, failed bool) {
	w := &b.window[sec%int64(len(b.window))]
	for {
		old := w.sec.Load()
		if old > sec {
			return
		}
		if old == sec {
			break
		}
		if w.sec.CompareAndSwap(old, sec) {
			w.requests.Store(0)
			w.failed.Store(0)
			break
		}
	}
	w.requests.Add(1)
	if failed {
		w.failed.Add(1)
	}
}

// shouldTrip reports whether a closed breaker's counts at unix second sec
// call for opening it.
func (b *Breaker) shouldTrip(sec int64) bool {
	if b.consecutive.Load() >= b.failures {
		return true
	}
	var requests, failed uint32
	for i := range b.window {
		w := &b.window[i]
		if s := w.sec.Load(); s > sec-int64(len(b.window)) && s <= sec {
			requests += w.requests.Load()
			failed += w.failed.Load()
		}
	}
	return requests >= b.minRequests && float64(failed) >= b.ratio*float64(requests)
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
// a success; a neutral error is not counted) toward opening the breaker. It returns ErrBreakerOpen without
// running call when rejected.
func (b *Breaker) Do(call func() error) error { return b.DoAt(time.Time{}, call) }

// DoAt is Do for a caller that has read the clock already: at, about when
// the call started, dates a success in the failure window, whose buckets
// are a second wide (a success is most calls, and quick). A failure is
// dated when it ends, by the clock: a timeout ends upstream.timeout after
// it started, as long as the default window, and dated by its start it
// fell outside the window it was judged in, so timeouts alone never
// tripped the ratio. The zero time means the clock is read after the call.
func (b *Breaker) DoAt(at time.Time, call func() error) error {
	if gobreaker.State(b.state.Load()) != gobreaker.StateClosed {
		return b.guarded(call)
	}
	err := call()
	if err != nil && b.isNeutral(err) {
		return err
	}
	if at.IsZero() || err != nil {
		at = b.now()
	}
	sec := at.Unix()
	b.count(sec, err != nil)
	if err == nil {
		if b.consecutive.Load() != 0 {
			b.consecutive.Store(0)
		}
		return nil
	}
	b.consecutive.Add(1)
	if b.shouldTrip(sec) {
		// Hand gobreaker the failure that trips it; its ReadyToTrip reads
		// our counts. If another caller tripped it first, it rejects this
		// one without running anything.
		_, _ = b.cb.Execute(func() (struct{}, error) { return struct{}{}, err })
	}
	return err
}

// guarded runs call through gobreaker: an open breaker rejects it, a
// half-open one lets its probes through.
func (b *Breaker) guarded(call func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, call() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return ErrBreakerOpen
	}
	return err
}
