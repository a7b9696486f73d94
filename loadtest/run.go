package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/proxy"
)

// Mode is how a run offers load.
type Mode string

const (
	// OpenLoop sends requests at a constant rate whatever the answers
	// do, and measures each request's latency from its scheduled send
	// time: what users see when the system falls behind.
	OpenLoop Mode = "open-loop"
	// ClosedLoop runs a fixed number of workers, each sending its next
	// request when the last is answered: the most the system can do, but
	// it slows the offered load down as latency rises, hiding queueing.
	ClosedLoop Mode = "closed-loop"
)

// Defaults of RunOptions.
const (
	DefaultRate          = 2000
	DefaultOpenWorkers   = 256
	DefaultClosedWorkers = 16
	DefaultDuration      = 10 * time.Second
	DefaultWarmup        = 2 * time.Second
	// maxWorkers bounds workers: each holds a goroutine and a connection.
	maxWorkers = 8192
	// countWindow is the timeline's resolution for a run of a request
	// count.
	countWindow = 500 * time.Millisecond
)

// RunOptions configure Run.
type RunOptions struct {
	// Mode is OpenLoop (the default) or ClosedLoop.
	Mode Mode
	// Rate is the open loop's arrival rate in requests per second.
	// Default DefaultRate.
	Rate float64
	// Workers caps the open loop's requests in flight (default
	// DefaultOpenWorkers), or is the closed loop's number of workers
	// (default DefaultClosedWorkers).
	Workers int
	// Duration is how long load is measured, after Warmup, during which
	// load is sent but not measured (the timeline shows it). Defaults
	// DefaultDuration and DefaultWarmup; a negative Warmup means none.
	Duration time.Duration
	Warmup   time.Duration
	// Requests, in closed loop, measures this many requests instead of a
	// Duration, after WarmupRequests unmeasured ones: the same requests
	// in the same order (by the workload's seed) on every run.
	Requests       uint64
	WarmupRequests uint64
	// Targets are the proxies the load goes to.
	Targets []Target
	// Workload makes the requests; GraphName says where its graph came
	// from, for the report.
	Workload  *Workload
	GraphName string
	// Routing is a proxy.Server (it need not serve) whose topology and
	// bucket map say where each datacenter is and what each bucket's home
	// continent is: the figures of locality and spread come from it. It
	// should be configured as the targets are.
	Routing *proxy.Server
	// Timeout bounds each request. Default DefaultRequestTimeout.
	Timeout time.Duration
	// Window is the timeline's resolution. Default: about a hundredth
	// of the run, between 100ms and 10s (500ms for a request count).
	Window time.Duration
	// Out receives the live progress; nil prints nothing.
	Out io.Writer
	// Label starts each progress line.
	Label string
}

func (o *RunOptions) applyDefaults() error {
	if o.Mode == "" {
		o.Mode = OpenLoop
	}
	if o.Mode != OpenLoop && o.Mode != ClosedLoop {
		return fmt.Errorf("loadtest: mode %q: want %s or %s", o.Mode, OpenLoop, ClosedLoop)
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Mode == OpenLoop && !(o.Rate > 0 && o.Rate <= 1e7) {
		return fmt.Errorf("loadtest: rate %v: want a positive number of requests per second", o.Rate)
	}
	if o.Workers == 0 {
		o.Workers = DefaultClosedWorkers
		if o.Mode == OpenLoop {
			o.Workers = DefaultOpenWorkers
		}
	}
	if o.Workers < 1 || o.Workers > maxWorkers {
		return fmt.Errorf("loadtest: workers %d: want 1 to %d", o.Workers, maxWorkers)
	}
	if o.Requests > 0 && o.Mode != ClosedLoop {
		return errors.New("loadtest: a request count needs the closed loop; the open loop runs for a duration")
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Warmup == 0 {
		o.Warmup = DefaultWarmup
	}
	o.Warmup = max(o.Warmup, 0)
	if o.Requests == 0 && o.Duration < 0 {
		return fmt.Errorf("loadtest: duration %v must be positive", o.Duration)
	}
	if o.Workload == nil || o.Routing == nil || len(o.Targets) == 0 {
		return errors.New("loadtest: a run needs a workload, targets and a routing oracle")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultRequestTimeout
	}
	if o.Window <= 0 {
		o.Window = windowFor(o.Warmup + o.Duration)
		if o.Requests > 0 {
			o.Window = countWindow // the run's length is not known ahead
		}
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return nil
}

// windowFor picks a round timeline resolution of about a hundredth of d.
func windowFor(d time.Duration) time.Duration {
	for _, w := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond,
		500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second} {
		if d/w <= 120 {
			return w
		}
	}
	return 10 * time.Second
}

// Run offers load to the targets as o says, shows live progress on o.Out
// and returns what it measured after the warm-up. When ctx ends it stops
// and returns the report so far with ctx.Err().
func Run(ctx context.Context, o RunOptions) (*Report, error) {
	if err := o.applyDefaults(); err != nil {
		return nil, err
	}
	place := placementOf(o.Routing)
	snd, err := newSender(o.Workload, place, o.Targets, o.Workers, o.Timeout)
	if err != nil {
		return nil, err
	}
	defer snd.close()

	start := time.Now()
	measureFrom := start.Add(o.Warmup)
	countBased := o.Requests > 0
	if countBased {
		measureFrom = time.Time{} // set when the first measured request is sent
	}
	var firstMeasured atomic.Int64
	var completed atomic.Uint64 // answers, warm-up included, for the progress display
	rec := newRecorder(start, o.Window, place.dcContinent, len(place.continents))
	bufs := make([]sendBuf, o.Workers)
	send := func(w int, seq uint64, due time.Time) {
		var out outcome
		phase := 0
		if countBased {
			if seq < o.WarmupRequests {
				phase = -1
			} else {
				firstMeasured.CompareAndSwap(0, time.Now().UnixNano())
			}
		}
		snd.do(&bufs[w], seq, due, &out)
		now := time.Now()
		if !countBased && now.Before(measureFrom) {
			phase = -1
		}
		rec.record(w, phase, &out, now)
		completed.Add(1)
	}

	disp := newLive(o.Out)
	total := int64(o.Warmup+o.Duration) / int64(time.Millisecond)
	if countBased {
		total = int64(o.Requests + o.WarmupRequests)
	}
	label := o.Label
	if label == "" {
		label = string(o.Mode)
	}
	disp.begin(total, label)
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	progressDone.Go(func() {
		showProgress(disp, rec, &completed, label, start, o, countBased, stopProgress)
	})

	var sched *schedule
	switch o.Mode {
	case OpenLoop:
		sched = newSchedule(start, o.Warmup+o.Duration, o.Rate)
		runOpenLoop(ctx, sched, o.Workers, send)
	default:
		end := start.Add(o.Warmup + o.Duration)
		if countBased {
			end = time.Time{}
		}
		runClosedLoop(ctx, o.Workers, end, o.Requests+o.WarmupRequests, send)
	}
	stopped := time.Now()
	close(stopProgress)
	progressDone.Wait()

	if countBased {
		if f := firstMeasured.Load(); f != 0 {
			measureFrom = time.Unix(0, f)
		} else {
			measureFrom = stopped
		}
	}
	measured := stopped.Sub(measureFrom)
	if o.Mode == OpenLoop {
		// The schedule's period, not the drain of the last answers.
		measured = min(measured, o.Duration)
	}
	rep := &Report{
		Mode:     string(o.Mode),
		Targets:  o.Targets,
		Workers:  o.Workers,
		Warmup:   max(measureFrom.Sub(start), 0).Seconds(),
		Load:     describeWorkload(o.Workload, o.GraphName, o.Workload.seed),
		Measured: measure(rec.merged(0), place, max(measured, 0)),
		Timeline: rec.timeline(stopped),
	}
	if o.Mode == OpenLoop {
		rep.Rate = o.Rate
		rep.NotSent = sched.notSent(stopped)
	}
	if rep.Warmup > 0 {
		rep.Events = append(rep.Events, Event{At: rep.Warmup, What: "warm-up over"})
	}
	disp.end(fmt.Sprintf("%s done: %s requests measured in %.1fs, %.0f good answers/s, %s errors, p99 %.2f ms",
		label, thousands(rep.Requests), rep.Seconds, rep.Throughput, thousands(rep.Errors), rep.Latency.P99))
	return rep, ctx.Err()
}

// showProgress updates the display every tick until stop: the answer
// rate of the last tick, the p99 of the last complete timeline window, and
// the errors measured so far.
func showProgress(disp *live, rec *recorder, completed *atomic.Uint64, label string, start time.Time, o RunOptions, countBased bool, stop <-chan struct{}) {
	tick := time.NewTicker(progressInterval)
	if disp.tty {
		tick.Reset(progressInterval / 4)
	}
	defer tick.Stop()
	var lastCount uint64
	lastAt := start
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			n := completed.Load()
			_, errs := rec.counts(0)
			p99 := 0.0
			if ws := rec.windowAt(max(int(now.Sub(start)/rec.window)-1, 0)); ws != nil {
				p99 = usToMS(ws.hist.ValueAtQuantile(99))
			}
			rate := float64(n-lastCount) / now.Sub(lastAt).Seconds()
			lastCount, lastAt = n, now
			elapsed := now.Sub(start)
			done := int64(elapsed / time.Millisecond)
			warm := elapsed < o.Warmup
			if countBased {
				done = int64(n)
				warm = n < o.WarmupRequests
			}
			phase := "measuring"
			if warm {
				phase = "warming up"
			}
			disp.update(done, fmt.Sprintf("%s %5.1fs %-10s %7.0f req/s  p99 %6.2f ms  %s errors",
				label, elapsed.Seconds(), phase, rate, p99, thousands(errs)))
		}
	}
}
