package loadtest

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestScheduleTimes(t *testing.T) {
	start := time.Unix(1000, 0)
	s := newSchedule(start, time.Second, 300)
	if got := s.at(0); !got.Equal(start) {
		t.Fatalf("at(0) = %v", got)
	}
	if got, want := s.at(3), start.Add(10*time.Millisecond); !got.Equal(want) {
		t.Fatalf("at(3) = %v, want %v", got, want)
	}
	for _, c := range []struct {
		after time.Duration
		want  uint64
	}{{0, 0}, {time.Nanosecond, 1}, {10 * time.Millisecond, 3}, {10*time.Millisecond + 1, 4}, {time.Second, 300}, {time.Hour, 300}} {
		if got := s.due(start.Add(c.after)); got != c.want {
			t.Errorf("due(start+%v) = %d, want %d", c.after, got, c.want)
		}
	}
}

// timed records, per sequence number, when a request was due and when it
// was sent and answered.
type timed struct {
	mu             sync.Mutex
	due, sent, end map[uint64]time.Time
}

func newTimed() *timed {
	return &timed{due: map[uint64]time.Time{}, sent: map[uint64]time.Time{}, end: map[uint64]time.Time{}}
}

// sender returns a sendFunc that takes service(seq) to answer.
func (tm *timed) sender(service func(seq uint64) time.Duration) sendFunc {
	return func(_ int, seq uint64, due time.Time) {
		sent := time.Now()
		time.Sleep(service(seq))
		tm.mu.Lock()
		tm.due[seq], tm.sent[seq], tm.end[seq] = due, sent, time.Now()
		tm.mu.Unlock()
	}
}

// latencies returns, in sequence order, each request's latency as the
// generator measures it: from its due time (or its send, if earlier).
func (tm *timed) latencies() []time.Duration {
	seqs := make([]uint64, 0, len(tm.due))
	for s := range tm.due {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	out := make([]time.Duration, len(seqs))
	for i, s := range seqs {
		from := tm.due[s]
		if tm.sent[s].Before(from) {
			from = tm.sent[s]
		}
		out[i] = tm.end[s].Sub(from)
	}
	return out
}

// The open loop sends at the rate asked, each request close to its
// scheduled time, and stops by itself at the end.
func TestOpenLoopKeepsTheRate(t *testing.T) {
	tm := newTimed()
	s := newSchedule(time.Now(), 600*time.Millisecond, 500)
	// 64 workers claim up to 64 requests ahead (128ms at 500/s), so a
	// stall of the test process near the end, which CI's loaded runners
	// have, must be that long to make the last request miss the end.
	runOpenLoop(context.Background(), s, 64, tm.sender(func(uint64) time.Duration { return 0 }))
	if len(tm.due) != 300 {
		t.Fatalf("sent %d requests, want 300 (500/s for 0.6s)", len(tm.due))
	}
	if n := s.notSent(time.Now()); n != 0 {
		t.Fatalf("notSent = %d", n)
	}
	lateness := make([]time.Duration, 0, len(tm.due))
	for seq, due := range tm.due {
		if !due.Equal(s.at(seq)) {
			t.Fatalf("request %d was given due time %v, scheduled %v", seq, due, s.at(seq))
		}
		d := tm.sent[seq].Sub(due)
		if d < -earlySend {
			t.Fatalf("request %d sent %v before its time", seq, -d)
		}
		lateness = append(lateness, d)
	}
	// The median, not a count over a threshold: one stall of the machine
	// makes every request due during it late, but a loop that paces
	// badly (falls behind, sleeps after sending) is late for most.
	slices.Sort(lateness)
	if med := lateness[len(lateness)/2]; med > 10*time.Millisecond {
		t.Errorf("the median request was sent %v late, want each close to its time", med)
	}
}

// The point of the open loop: when the system stalls, the requests due
// during the stall wait, and their latency, counted from their scheduled
// time, shows the stall. A closed loop hides it: its workers wait with the
// stalled request and send nothing meanwhile (coordinated omission), so
// one sample is slow and the rest look fine.
func TestOpenLoopMeasuresAStallInFull(t *testing.T) {
	const (
		rate  = 200 // a request every 5ms
		stall = 300 * time.Millisecond
	)
	// Every request but the stalled one answers at once, so catching up
	// on the backlog costs no sleeps: on a loaded CI machine a 1ms sleep
	// can take several, and the backlog then ran past the end of the run.
	service := func(seq uint64) time.Duration {
		if seq == 20 {
			return stall
		}
		return 0
	}
	open := newTimed()
	runOpenLoop(context.Background(), newSchedule(time.Now(), time.Second, rate), 1, open.sender(service))

	closed := newTimed()
	closedService := func(seq uint64) time.Duration { // the same system, paced as the open loop asks
		return service(seq) + 5*time.Millisecond
	}
	runClosedLoop(context.Background(), 1, time.Now().Add(time.Second), 0, closed.sender(closedService))

	slow := func(ls []time.Duration) (n int) {
		for _, l := range ls {
			if l >= 100*time.Millisecond {
				n++
			}
		}
		return n
	}
	ol, cl := open.latencies(), closed.latencies()
	// About stall/5ms = 60 requests were due during the stall; those due
	// in its first two thirds waited 100ms or more.
	if n := slow(ol); n < 30 {
		t.Errorf("open loop: %d requests of %d took 100ms or more, want the ~40 due during the %v stall", n, len(ol), stall)
	}
	if m := slices.Max(ol); m < stall {
		t.Errorf("open loop: slowest request %v, want at least the stall %v", m, stall)
	}
	// Against the open loop's 30 or more: a stall of the machine itself
	// may add a slow sample or two.
	if n := slow(cl); n < 1 || n > 3 {
		t.Errorf("closed loop: %d slow requests, want the stalled one (this is what the open loop is for)", n)
	}
	// The open loop caught up after the stall: every request due in the
	// first 900ms was sent. The last few may fall past the end when the
	// machine stalls there; that is the end check, not catching up.
	for seq := uint64(0); seq < rate*9/10; seq++ {
		if _, ok := open.sent[seq]; !ok {
			t.Fatalf("open loop never sent request %d of %d: it did not catch up after the stall", seq, rate)
		}
	}
}

// A system that never answers within the run: the open loop does not run
// past its end, and counts the requests it could not send.
func TestOpenLoopStopsAtTheEndAndCountsWhatItCouldNotSend(t *testing.T) {
	s := newSchedule(time.Now(), 300*time.Millisecond, 1000)
	var sent atomic.Int64
	start := time.Now()
	runOpenLoop(context.Background(), s, 4, func(int, uint64, time.Time) {
		sent.Add(1)
		time.Sleep(400 * time.Millisecond) // past the end
	})
	if d := time.Since(start); d > 5*time.Second { // ends with its run, not with its stuck requests' successors
		t.Fatalf("the open loop took %v for a 300ms run whose requests take 400ms", d)
	}
	if sent.Load() != 4 {
		t.Errorf("sent %d requests with 4 workers stuck, want 4", sent.Load())
	}
	if n := s.notSent(time.Now()); n != 296 {
		t.Errorf("notSent = %d, want 300 due - 4 sent = 296", n)
	}
}

func TestLoopsStopWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	runOpenLoop(ctx, newSchedule(start, time.Hour, 100), 4, func(int, uint64, time.Time) {})
	runClosedLoop(ctx, 4, time.Time{}, 0, func(int, uint64, time.Time) { time.Sleep(time.Millisecond) })
	if d := time.Since(start); d > 5*time.Second { // stops, rather than waiting out the hour; generous for noise
		t.Fatalf("loops took %v to notice a cancelled context", d)
	}
}

func TestClosedLoopSendsExactlyTheRequestsAsked(t *testing.T) {
	var mu sync.Mutex
	seen := map[uint64]int{}
	n := runClosedLoop(context.Background(), 7, time.Time{}, 1000, func(_ int, seq uint64, _ time.Time) {
		mu.Lock()
		seen[seq]++
		mu.Unlock()
	})
	if n != 1000 || len(seen) != 1000 {
		t.Fatalf("sent %d, %d distinct; want 1000", n, len(seen))
	}
	for seq, c := range seen {
		if seq >= 1000 || c != 1 {
			t.Fatalf("request %d sent %d times", seq, c)
		}
	}
}
