package buckets

import (
	"slices"
	"testing"
	"time"
)

// shiftWorld simulates a fleet's merged access counts minute by minute:
// every US-homed bucket gets 100 requests a minute, all from the US, until
// shiftAt, when the buckets in shifted start getting 80% of them from the
// EU. Counts decay by half every minute, as the proxy's do.
type shiftWorld struct {
	snap    *Snapshot
	acc     *Access
	shifted map[uint32]bool
	shiftAt time.Duration
	// extra, if set, gives a bucket's EU share at minute t instead.
	extra map[uint32]func(t time.Duration) float64
}

func (w *shiftWorld) minute(t time.Duration) Counts {
	us := w.snap.HomedIn(0)
	for _, b := range us {
		eu := 0.0
		if f, ok := w.extra[b]; ok {
			eu = f(t)
		} else if w.shifted[b] && t >= w.shiftAt {
			eu = 0.8
		}
		nEU := int(100 * eu)
		for range nEU {
			w.acc.Record(b, 1)
		}
		for range 100 - nEU {
			w.acc.Record(b, 0)
		}
	}
	c := w.acc.Snapshot()
	w.acc.Decay()
	return c
}

func TestAdvisorRecommendsExactlyTheShiftedBucketsAfterTheWindowWithinTheRate(t *testing.T) {
	snap := mustBuild(t, 512, twoContinents(), Overrides{})
	us := snap.HomedIn(0)
	w := &shiftWorld{snap: snap, acc: NewAccess(512, 2), shifted: map[uint32]bool{}, shiftAt: 10 * time.Minute,
		extra: map[uint32]func(time.Duration) float64{}}
	var shifted []uint32
	for _, b := range us[:12] {
		w.shifted[b] = true
		shifted = append(shifted, b)
	}
	// Distractors: one bucket at 55% EU (a majority, but under the 60%
	// threshold), one with a 20-minute burst of EU traffic (shorter than
	// the window), one that hovers 52-65% (it stays a candidate once it is
	// one: hysteresis) and so must be recommended too.
	w.extra[us[20]] = func(time.Duration) float64 { return 0.55 }
	w.extra[us[21]] = func(t time.Duration) float64 {
		if t >= 15*time.Minute && t < 35*time.Minute {
			return 0.9
		}
		return 0
	}
	hover := us[22]
	w.extra[hover] = func(t time.Duration) float64 {
		if t < 10*time.Minute {
			return 0
		}
		if (t/time.Minute)%2 == 0 {
			return 0.65
		}
		return 0.52
	}
	shifted = append(shifted, hover)
	slices.Sort(shifted)

	opts := AdvisorOptions{Majority: 0.6, Release: 0.5, Window: 30 * time.Minute, MovesPerHour: 5, MinRequests: 50}
	a := NewAdvisor(opts)
	start := time.Unix(1_700_000_000, 0)
	var moved []uint32
	firstAt := map[uint32]time.Duration{}
	perHour := map[int]int{}
	for at := time.Duration(0); at < 5*time.Hour; at += time.Minute {
		now := start.Add(at)
		recs := a.Advise(AdvisorInput{Now: now, Snapshot: snap, Traffic: w.minute(at)})
		for _, r := range recs {
			if r.From != "us" || r.To != "eu" {
				t.Fatalf("recommendation %+v", r)
			}
			if now.Sub(r.Since) < opts.Window {
				t.Fatalf("bucket %d recommended %v into its window", r.Bucket, now.Sub(r.Since))
			}
			if _, again := firstAt[r.Bucket]; again {
				t.Fatalf("bucket %d recommended twice", r.Bucket)
			}
			firstAt[r.Bucket] = at
			moved = append(moved, r.Bucket)
			a.Started(r.Bucket, now) // applied
			perHour[int(at/time.Hour)]++
		}
		if n := a.MovesInLastHour(now); n > opts.MovesPerHour {
			t.Fatalf("%d moves in the hour before %v", n, at)
		}
	}
	slices.Sort(moved)
	if !slices.Equal(moved, shifted) {
		t.Fatalf("recommended %v\nwant        %v", moved, shifted)
	}
	earliest := 5 * time.Hour
	for _, at := range firstAt {
		earliest = min(earliest, at)
	}
	// The shift starts at 10m; the decayed counts cross 60% within a
	// couple of minutes; the window is 30m.
	if earliest < 40*time.Minute || earliest > 45*time.Minute {
		t.Fatalf("first recommendation at %v, want 40-45m", earliest)
	}
	t.Logf("13 buckets moved: first at %v; per hour %v", earliest, perHour)
}

// A recommendation that is not applied stays recommended (the limit counts
// moves started, not advice given), and a continent at capacity takes none.
func TestAdvisorRespectsCapacityAndUnappliedAdviceRepeats(t *testing.T) {
	snap := mustBuild(t, 512, twoContinents(), Overrides{})
	us := snap.HomedIn(0)
	traffic := Counts{Continents: 2, ByBucket: map[uint32][]uint32{}}
	for _, b := range us[:4] {
		traffic.ByBucket[b] = []uint32{10, 190}
	}
	a := NewAdvisor(AdvisorOptions{Window: time.Minute})
	now := time.Unix(0, 0)
	a.Advise(AdvisorInput{Now: now, Snapshot: snap, Traffic: traffic})
	recs := a.Advise(AdvisorInput{Now: now.Add(time.Minute), Snapshot: snap, Traffic: traffic})
	if len(recs) != 4 || recs[0].Share != 0.95 {
		t.Fatalf("recs %+v", recs)
	}
	again := a.Advise(AdvisorInput{Now: now.Add(2 * time.Minute), Snapshot: snap, Traffic: traffic})
	if len(again) != 4 {
		t.Fatalf("unapplied advice not repeated: %+v", again)
	}
	eu := len(snap.HomedIn(1))
	full := a.Advise(AdvisorInput{Now: now.Add(3 * time.Minute), Snapshot: snap, Traffic: traffic, Capacity: []int{512, eu + 2}})
	if len(full) != 2 {
		t.Fatalf("with room for 2 more EU buckets: %d recommended", len(full))
	}
	// A bucket already moving is no candidate; so is one cooling down.
	m := NewMap(snap)
	moving, _ := m.Update(func(o *Overrides) error { return StartMove(o, snap, us[0], "eu", now) })
	a.Started(us[1], now.Add(3*time.Minute))
	later := a.Advise(AdvisorInput{Now: now.Add(4 * time.Minute), Snapshot: moving, Traffic: traffic})
	for _, r := range later {
		if r.Bucket == us[0] || r.Bucket == us[1] {
			t.Fatalf("moving or cooling bucket recommended: %+v", r)
		}
	}
	if len(later) != 2 {
		t.Fatalf("later: %+v", later)
	}
	if c := a.Candidates(moving); len(c) != 2 {
		t.Fatalf("candidates %+v", c)
	}
}

// A pinned bucket is where the operator put it: the advisor does not
// recommend moving it, however its traffic shifts.
func TestAdvisorLeavesPinnedBucketsAlone(t *testing.T) {
	base := mustBuild(t, 512, twoContinents(), Overrides{})
	us := base.HomedIn(0)
	snap := mustBuild(t, 512, twoContinents(), Overrides{Pins: map[uint32]string{us[1]: "us-west"}})
	traffic := Counts{Continents: 2, ByBucket: map[uint32][]uint32{us[0]: {10, 190}, us[1]: {10, 190}}}
	a := NewAdvisor(AdvisorOptions{Window: time.Minute})
	now := time.Unix(0, 0)
	a.Advise(AdvisorInput{Now: now, Snapshot: snap, Traffic: traffic})
	recs := a.Advise(AdvisorInput{Now: now.Add(time.Minute), Snapshot: snap, Traffic: traffic})
	if len(recs) != 1 || recs[0].Bucket != us[0] {
		t.Fatalf("recommendations %+v, want only bucket %d (bucket %d is pinned)", recs, us[0], us[1])
	}
}

func TestBucketCapacityFollowsContinentCapacity(t *testing.T) {
	snap := mustBuild(t, 1000, twoContinents(), Overrides{})
	c := BucketCapacity(snap, 1)
	t.Logf("capacity of 1000 buckets: %v", c) // US 460/700 of the capacity, EU 240/700
	if c[0] != 658 || c[1] != 343 {
		t.Fatalf("capacity %v, want [658 343]", c)
	}
	if c[0]+c[1] < 1000 || c[0]+c[1] > 1002 {
		t.Fatalf("capacity %v does not add up to the buckets", c)
	}
}
