package loadtest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// earlySend is how close to its scheduled time an open-loop request is
// sent at once instead of after a sleep: timers on a busy machine wake up
// a millisecond or more late, so sleeping through the last fraction would
// make the generator late, and the latency it measures, longer.
const earlySend = 200 * time.Microsecond

// sendFunc sends request number seq of a run from worker; at is when the
// request was due (open loop: its scheduled time; closed loop: now).
type sendFunc func(worker int, seq uint64, at time.Time)

// schedule is an open-loop arrival schedule: request i is due at
// start + i/rate, for every i due before end.
type schedule struct {
	start time.Time
	end   time.Time
	rate  float64 // requests per second
	next  atomic.Uint64
	sent  atomic.Uint64
}

func newSchedule(start time.Time, d time.Duration, rate float64) *schedule {
	return &schedule{start: start, end: start.Add(d), rate: rate}
}

// at returns when request i is due.
func (s *schedule) at(i uint64) time.Time {
	return s.start.Add(time.Duration(float64(i) * float64(time.Second) / s.rate))
}

// due returns how many requests are due before t (at most before end).
func (s *schedule) due(t time.Time) uint64 {
	if t.After(s.end) {
		t = s.end
	}
	if !t.After(s.start) {
		return 0
	}
	n := uint64(t.Sub(s.start).Seconds() * s.rate)
	// Round-off: count exactly the i with at(i) < t.
	for n > 0 && !s.at(n-1).Before(t) {
		n--
	}
	for s.at(n).Before(t) {
		n++
	}
	return n
}

// runOpenLoop sends the schedule's requests with at most workers in
// flight and returns when every request due before the schedule's end has
// been sent and answered, or ctx ends, or the end has come (requests still
// waiting for a free worker then are not sent: the schedule's notSent
// counts them).
//
// Each worker claims the next request of the schedule, waits for its time
// and sends it. A worker that finishes late claims a request whose time
// has passed and sends it at once, so the rate holds while the system
// keeps up, and when it does not, the backlog waits in the schedule:
// latency is measured from each request's scheduled time, including that
// wait (no coordinated omission).
func runOpenLoop(ctx context.Context, s *schedule, workers int, send sendFunc) {
	var wg sync.WaitGroup
	for w := range max(workers, 1) {
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for ctx.Err() == nil {
				i := s.next.Add(1) - 1
				at := s.at(i)
				if !at.Before(s.end) {
					return
				}
				now := time.Now()
				if !now.Before(s.end) {
					return // backlogged past the end: not sent
				}
				if wait := at.Sub(now); wait > earlySend {
					timer.Reset(wait - earlySend/2)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				}
				s.sent.Add(1)
				send(w, i, at)
			}
		})
	}
	wg.Wait()
}

// notSent returns how many requests due before the end (or before
// stopped, if earlier) were never sent: the generator could not keep up,
// all its workers busy waiting for answers.
func (s *schedule) notSent(stopped time.Time) uint64 {
	due := s.due(stopped)
	if sent := s.sent.Load(); sent < due {
		return due - sent
	}
	return 0
}

// runClosedLoop runs workers that each send a request, wait for its
// answer and send the next, until ctx ends, end passes (zero: no time
// limit) or limit requests have been sent (0: no limit).
// It returns how many requests it sent.
func runClosedLoop(ctx context.Context, workers int, end time.Time, limit uint64, send sendFunc) uint64 {
	var next, sent atomic.Uint64
	var wg sync.WaitGroup
	for w := range max(workers, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				now := time.Now()
				if !end.IsZero() && !now.Before(end) {
					return
				}
				i := next.Add(1) - 1
				if limit > 0 && i >= limit {
					return
				}
				sent.Add(1)
				send(w, i, now)
			}
		})
	}
	wg.Wait()
	return sent.Load()
}
