package health

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

var errUpstream = errors.New("upstream failed")

func TestBreakerOpensRejectsAndRecovers(t *testing.T) {
	var mu sync.Mutex
	var transitions []string
	const openFor = 500 * time.Millisecond // a loaded machine may pause the test for tens of ms
	b := NewBreaker("us-east/a", BreakerSettings{
		Failures: 3,
		OpenFor:  openFor,
		OnStateChange: func(_ string, from, to gobreaker.State) {
			mu.Lock()
			transitions = append(transitions, from.String()+">"+to.String())
			mu.Unlock()
		},
	})
	fail := func() error { return errUpstream }
	ok := func() error { return nil }

	for i := range 2 {
		if err := b.Do(fail); !errors.Is(err, errUpstream) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if b.State() != gobreaker.StateClosed || !b.Ready() {
		t.Fatal("breaker opened before 3 consecutive failures")
	}
	_ = b.Do(fail)
	if b.State() != gobreaker.StateOpen || b.Ready() {
		t.Fatalf("after 3 failures: state %v, ready %v", b.State(), b.Ready())
	}
	ran := false
	if err := b.Do(func() error { ran = true; return nil }); !errors.Is(err, ErrBreakerOpen) || ran {
		t.Fatalf("open breaker: err %v, ran %v", err, ran)
	}
	time.Sleep(openFor + 50*time.Millisecond)
	if !b.Ready() {
		t.Fatal("not ready once OpenFor has passed")
	}
	if err := b.Do(ok); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatalf("a successful probe left the breaker %v", b.State())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"closed>open", "open>half-open", "half-open>closed"}
	if len(transitions) != len(want) {
		t.Fatalf("transitions %v, want %v", transitions, want)
	}
	for i := range want {
		if transitions[i] != want[i] {
			t.Fatalf("transitions %v, want %v", transitions, want)
		}
	}
}

func TestBreakerSuccessResetsTheCount(t *testing.T) {
	b := NewBreaker("x", BreakerSettings{Failures: 2})
	for range 10 {
		_ = b.Do(func() error { return errUpstream })
		_ = b.Do(func() error { return nil })
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatal("alternating failures opened a breaker that needs 2 in a row")
	}
}

func TestStatic(t *testing.T) {
	var s Static
	if !s.Usable(0) || !s.Usable(63) {
		t.Fatal("zero Static has a datacenter down")
	}
	s.SetDown(5, true)
	s.SetDown(63, true)
	if s.Usable(5) || s.Usable(63) || !s.Usable(4) {
		t.Fatal("SetDown(true) did not take")
	}
	s.SetDown(5, false)
	if !s.Usable(5) || s.Usable(63) {
		t.Fatal("SetDown(false) did not take, or touched another datacenter")
	}
}

func BenchmarkBreakerDo(b *testing.B) {
	br := NewBreaker("x", BreakerSettings{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if br.Ready() {
				_ = br.Do(func() error { return nil })
			}
		}
	})
}

// The passive error-rate signal: an upstream failing every other request
// never fails 5 times in a row, but opens the breaker once 20 requests in
// the window show half of them failed.
func TestBreakerOpensOnFailureRatio(t *testing.T) {
	b := NewBreaker("x", BreakerSettings{Failures: 5, FailureRatio: 0.5, MinRequests: 20, Window: 10 * time.Second})
	for i := range 19 { // 9 failures in 19, never two in a row
		err := error(nil)
		if i%2 == 1 {
			err = errUpstream
		}
		_ = b.Do(func() error { return err })
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatal("opened before MinRequests")
	}
	_ = b.Do(func() error { return errUpstream }) // 10 of 20
	if b.State() != gobreaker.StateOpen {
		t.Fatalf("half of 20 requests failed and the breaker is %v", b.State())
	}
	healthy := NewBreaker("y", BreakerSettings{Failures: 5, FailureRatio: 0.5, MinRequests: 20})
	for i := range 100 {
		err := error(nil)
		if i%4 == 0 {
			err = errUpstream
		}
		_ = healthy.Do(func() error { return err })
	}
	if healthy.State() != gobreaker.StateClosed {
		t.Fatal("a 25% failure rate opened a breaker set to 50%")
	}
}

// The failure ratio is over the window only: failures older than it no
// longer count, so an upstream that failed a burst long ago and is fine
// now stays in.
func TestBreakerWindowForgets(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewBreaker("x", BreakerSettings{Failures: 100, FailureRatio: 0.5, MinRequests: 20, Window: 10 * time.Second})
	b.now = func() time.Time { return now }
	do := func(n int, failed bool) {
		for range n {
			_ = b.Do(func() error {
				if failed {
					return errUpstream
				}
				return nil
			})
		}
	}
	do(15, true) // 15 failures, under MinRequests
	now = now.Add(11 * time.Second)
	do(5, false)
	do(5, true) // 5 of 10 in the window: under MinRequests, the old 15 forgotten
	if b.State() != gobreaker.StateClosed {
		t.Fatal("failures from before the window opened the breaker")
	}
	now = now.Add(3 * time.Second)
	do(5, false)
	do(5, true) // 10 of 20 within 10 s
	if b.State() != gobreaker.StateOpen {
		t.Fatalf("half of 20 requests in the window failed and the breaker is %v", b.State())
	}
}

// Timeouts trip the failure ratio, though each ends a window after it
// began (upstream.timeout is as long as the default window): dated by
// their start, they were counted outside the window they were judged in,
// and wiped the current second's counts on the way, so a datacenter whose
// every third request timed out was never taken out by the ratio.
func TestBreakerOpensOnTimeoutsThatEndAWindowLater(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewBreaker("x", BreakerSettings{Failures: 100, FailureRatio: 0.5, MinRequests: 20, Window: 10 * time.Second})
	b.now = func() time.Time { return now }
	for sec := range 30 {
		for range 2 { // quick successes, dated by their start: now
			_ = b.DoAt(now, func() error { return nil })
		}
		for range 3 { // timeouts that began 10 s ago
			_ = b.DoAt(now.Add(-10*time.Second), func() error { return errUpstream })
		}
		if b.State() == gobreaker.StateOpen {
			t.Logf("open after %d s of 60%% timeouts", sec+1)
			return
		}
		now = now.Add(time.Second)
	}
	t.Fatal("30 s of 60% timeouts (each ending 10 s after it began) never opened the breaker")
}

// A breaker that recovered (half-open -> closed) starts from clean counts:
// one failure after recovery does not reopen it on the strength of the
// failures that opened it.
func TestBreakerRecoveredStartsAfresh(t *testing.T) {
	b := NewBreaker("x", BreakerSettings{Failures: 3, OpenFor: 20 * time.Millisecond, FailureRatio: 0.5, MinRequests: 4})
	for range 3 {
		_ = b.Do(func() error { return errUpstream })
	}
	if b.State() != gobreaker.StateOpen {
		t.Fatal("3 failures did not open it")
	}
	time.Sleep(30 * time.Millisecond)
	if err := b.Do(func() error { return nil }); err != nil || b.State() != gobreaker.StateClosed {
		t.Fatalf("probe: %v, state %v", err, b.State())
	}
	_ = b.Do(func() error { return errUpstream })
	_ = b.Do(func() error { return nil })
	if b.State() != gobreaker.StateClosed {
		t.Fatal("a failure after recovery reopened the breaker with the old counts")
	}
}

// Many callers at once: the breaker opens exactly once and rejects after.
func TestBreakerConcurrentCallersTripOnce(t *testing.T) {
	var opened sync.WaitGroup
	var opens int32
	var mu sync.Mutex
	b := NewBreaker("x", BreakerSettings{Failures: 5, OpenFor: time.Hour, OnStateChange: func(_ string, _, to gobreaker.State) {
		if to == gobreaker.StateOpen {
			mu.Lock()
			opens++
			mu.Unlock()
		}
	}})
	for range 8 {
		opened.Add(1)
		go func() {
			defer opened.Done()
			for range 100 {
				_ = b.Do(func() error { return errUpstream })
			}
		}()
	}
	opened.Wait()
	if b.State() != gobreaker.StateOpen || opens != 1 {
		t.Fatalf("state %v after 800 failures, opened %d times", b.State(), opens)
	}
	if err := b.Do(func() error { return nil }); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("open breaker let a call through: %v", err)
	}
}

// An error the settings call neutral (the caller's own pool full, say)
// neither opens a closed breaker nor breaks a run of failures, and a
// half-open breaker's neutral probe decides nothing: the next probe does.
func TestBreakerNeutralErrorsCountForNothing(t *testing.T) {
	errPoolFull := errors.New("pool full")
	const openFor = 300 * time.Millisecond
	b := NewBreaker("x", BreakerSettings{
		Failures: 2,
		OpenFor:  openFor,
		Neutral:  func(err error) bool { return errors.Is(err, errPoolFull) },
	})
	neutral := func() error { return errPoolFull }
	for range 20 {
		if err := b.Do(neutral); !errors.Is(err, errPoolFull) {
			t.Fatalf("neutral call returned %v", err)
		}
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatalf("20 neutral errors left the breaker %v", b.State())
	}
	_ = b.Do(func() error { return errUpstream })
	_ = b.Do(neutral)
	_ = b.Do(func() error { return errUpstream })
	if b.State() != gobreaker.StateOpen {
		t.Fatalf("failure, neutral, failure left a 2-failure breaker %v: the neutral error broke the run", b.State())
	}
	time.Sleep(openFor + 50*time.Millisecond)
	if err := b.Do(neutral); !errors.Is(err, errPoolFull) {
		t.Fatalf("half-open neutral probe returned %v", err)
	}
	if b.State() != gobreaker.StateHalfOpen {
		t.Fatalf("a neutral probe moved the half-open breaker to %v", b.State())
	}
	if err := b.Do(func() error { return nil }); err != nil {
		t.Fatalf("the probe after a neutral one was refused: %v", err)
	}
	if b.State() != gobreaker.StateClosed {
		t.Fatalf("a successful probe left the breaker %v", b.State())
	}
}
