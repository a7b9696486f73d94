package proxy

import (
	"sync/atomic"
	"time"
)

// logEvery lets a warning through at most once an interval, so that what
// a stranger can repeat at will (connections past the cap, wrong admin
// tokens) cannot flood the log; a metric counts every occurrence, and the
// line names how many it stands for.
type logEvery struct {
	every time.Duration
	last  atomic.Int64 // unix nanoseconds of the last line let through
	held  atomic.Uint64
}

// due reports whether a line may go out now; if so, held is how many were
// held back since the last one.
func (l *logEvery) due() (ok bool, held uint64) {
	now := time.Now().UnixNano()
	if last := l.last.Load(); now-last >= int64(l.every) && l.last.CompareAndSwap(last, now) {
		return true, l.held.Swap(0)
	}
	l.held.Add(1)
	return false, 0
}
