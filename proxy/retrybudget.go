package proxy

import (
	"sync/atomic"
)

// retryBudget caps a node's retries at a share of its requests, as
// Envoy's retry budgets and Finagle's do: a continent at its limit sheds
// load with failures, and a retry for each would double the load on
// what is left of it. Requests are read off the server's running total
// (Stats.Requests, counted anyway), so a request that is not retried pays
// nothing; the window is the current second and the one before.
type retryBudget struct {
	requests *atomic.Uint64 // the server's running total of requests

	sec                  atomic.Int64  // unix second of the current bucket
	atStart, atPrevStart atomic.Uint64 // requests when the current and the previous second began
	retries, prevRetries atomic.Int64
}

// minRetriesPerSecond lets a quiet node retry at all: a 20% share of a
// few requests a second is none.
const minRetriesPerSecond = 10

// allow reports whether one more retry fits share of the requests at unix
// second now, and if so counts it.
func (b *retryBudget) allow(now int64, share float64) bool {
	if share == 0 {
		return false // upstream.retry_budget: 0, no retries of shed load
	}
	b.roll(now)
	requests := b.requests.Load() - b.atPrevStart.Load()
	limit := max(2*minRetriesPerSecond, int64(share*float64(requests)))
	if b.retries.Load()+b.prevRetries.Load() >= limit {
		return false
	}
	b.retries.Add(1)
	return true
}

// roll starts a new second's bucket when now has moved on (never back: a
// caller late with its clock counts in the current second). Racing
// callers may lose a count or two at the turn: a budget, not a ledger.
func (b *retryBudget) roll(now int64) {
	s := b.sec.Load()
	if now <= s || !b.sec.CompareAndSwap(s, now) {
		return
	}
	total := b.requests.Load()
	if now == s+1 {
		b.atPrevStart.Store(b.atStart.Load())
		b.prevRetries.Store(b.retries.Load())
	} else { // a second or more without a retry: nothing to carry
		b.atPrevStart.Store(total)
		b.prevRetries.Store(0)
	}
	b.atStart.Store(total)
	b.retries.Store(0)
}
