package hashing

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSpreadPolicyFactor(t *testing.T) {
	p := SpreadPolicy{FollowersPerBucket: 1_000_000, Max: 16}
	for _, c := range []struct{ followers, want int }{
		{0, 1}, {999_999, 1}, {1_000_000, 1}, {1_000_001, 2}, {5_500_000, 6}, {100_000_000, 16},
	} {
		if got := p.Factor(c.followers); got != c.want {
			t.Errorf("Factor(%d) = %d, want %d", c.followers, got, c.want)
		}
	}
	if got := (SpreadPolicy{}).Factor(1 << 30); got != 1 {
		t.Errorf("a zero policy spreads: %d", got)
	}
}

func TestReadHotKeys(t *testing.T) {
	keys, err := ReadHotKeys(strings.NewReader("user,followers\n# celebrities\n7,3000000\n\n 42 , 12 \n"))
	if err != nil || len(keys) != 2 || keys[0] != (HotKey{Key: "7", Followers: 3_000_000}) || keys[1] != (HotKey{Key: "42", Followers: 12}) {
		t.Fatalf("keys %+v, err %v", keys, err)
	}
	for _, c := range []struct{ in, want string }{
		{"7,100\n8\n", "line 2"},
		{"7,100\n,5\n", "line 2"},
		{"7,many\n", `line 1: followers "many"`},
		{"7,-1\n", "line 1"},
	} {
		if _, err := ReadHotKeys(strings.NewReader(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want one naming %q", c.in, err, c.want)
		}
	}
}

func TestHotListSpreadsOnlyAboveOneBucket(t *testing.T) {
	l := NewHotList([]HotKey{{Key: "star", Followers: 5_000_000}, {Key: "nobody", Followers: 10}}, SpreadPolicy{FollowersPerBucket: 1_000_000, Max: 8})
	if got := l.Spread(HashString("star")); got != 5 {
		t.Fatalf("star spreads over %d, want 5", got)
	}
	if got := l.Spread(HashString("nobody")); got != 1 || len(l.Keys()) != 1 {
		t.Fatalf("nobody spreads over %d; keys %v", got, l.Keys())
	}
	var nilList *HotList
	if nilList.Spread(1) != 1 || nilList.Keys() != nil {
		t.Fatal("a nil list is not empty")
	}
}

// A viewer keeps hitting one sibling; anonymous requests spread evenly.
func TestPickSibling(t *testing.T) {
	const k = 5
	for v := range 100 {
		viewer := HashString(strconv.Itoa(v))
		first := PickSibling(k, viewer, true, 0)
		for r := range uint64(20) {
			if PickSibling(k, viewer, true, r) != first {
				t.Fatalf("viewer %d moved between siblings", v)
			}
		}
	}
	counts := make([]int, k)
	for range 50_000 {
		counts[PickSibling(k, 0, false, rand.Uint64())]++
	}
	for i, c := range counts {
		if c < 9000 || c > 11000 {
			t.Fatalf("sibling %d took %d of 50000 anonymous requests: %v", i, c, counts)
		}
	}
	if PickSibling(1, 99, true, 99) != 0 {
		t.Fatal("a key that is not spread picked a sibling")
	}
}

// drain promotes the candidates Observe handed over, as Run would.
func drain(d *HeavyHitters) {
	for {
		select {
		case c := <-d.found:
			d.promoteKey(c)
		default:
			return
		}
	}
}

// A key taking a large share of requests is promoted within a bounded
// number of its requests, stays hot while hot, and is demoted after it
// cools, not before: hysteresis.
func TestHeavyHittersPromoteAndDemote(t *testing.T) {
	d := NewHeavyHitters(DetectOptions{Rate: 1000, Max: 8, Tick: time.Second})
	star := []byte("star")
	hs := HashString("star")
	background := func(n int) {
		for range n {
			k := strconv.Itoa(rand.IntN(1_000_000))
			d.Observe(HashString(k), []byte(k))
		}
	}
	background(20_000)
	drain(d)
	if len(d.Hot()) != 0 {
		t.Fatalf("uniform traffic made keys hot: %v", d.Hot())
	}
	sent := 0
	for d.Spread(hs) == 1 {
		d.Observe(hs, star)
		background(2) // the star is a third of the traffic
		sent++
		drain(d)
		if sent > 2000 {
			t.Fatal("not promoted after 2000 of its requests")
		}
	}
	if sent > 1000+10 {
		t.Fatalf("promoted after %d of its requests, want about Rate·Tick = 1000", sent)
	}
	hot := d.Hot()
	if len(hot) != 1 || hot[0].Key != "star" || hot[0].Spread < 2 {
		t.Fatalf("hot set %+v", hot)
	}
	t.Logf("promoted after %d requests; spread %d", sent, hot[0].Spread)

	// Still hot: traffic continues through decays.
	for range 5 {
		for range 1500 {
			d.Observe(hs, star)
		}
		d.decay()
	}
	if d.Spread(hs) == 1 {
		t.Fatal("demoted while still hot")
	}
	// Cooling: the star stops. It survives a few ticks (hysteresis), then
	// goes.
	ticks := 0
	for d.Spread(hs) > 1 {
		d.decay()
		ticks++
		if ticks > 20 {
			t.Fatal("never demoted")
		}
	}
	if ticks < demoteTicks {
		t.Fatalf("demoted after %d ticks, want at least %d", ticks, demoteTicks)
	}
	t.Logf("demoted %d ticks after it stopped", ticks)
	var nilD *HeavyHitters
	if nilD.Observe(1, nil) != 1 || nilD.Spread(1) != 1 || nilD.Hot() != nil {
		t.Fatal("a nil detector is not inert")
	}
}

func BenchmarkHeavyHittersObserve(b *testing.B) {
	d := NewHeavyHitters(DetectOptions{Rate: 1e9, Max: 8})
	keys := make([][]byte, 4096)
	hashes := make([]uint64, len(keys))
	for i := range keys {
		keys[i] = []byte(strconv.Itoa(i))
		hashes[i] = HashKey(keys[i])
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			d.Observe(hashes[i&4095], keys[i&4095])
			i++
		}
	})
}

// A hot key's reported rate is its rate, and its spread follows it: up at
// once after a spike, back down once the rate has halved for good (not
// stuck at the spike's), and with Max 1 the key is listed but not spread.
func TestHeavyHittersRateAndSpreadFollowTheKey(t *testing.T) {
	d := NewHeavyHitters(DetectOptions{Rate: 1000, Max: 16, Tick: time.Second})
	star, hs := []byte("star"), HashString("star")
	tick := func(n int) {
		for range n {
			d.Observe(hs, star)
		}
		drain(d)
		d.decay()
	}
	for range 10 {
		tick(1500)
	}
	hot := d.Hot()
	if len(hot) != 1 || hot[0].Rate < 1200 || hot[0].Rate > 1800 || hot[0].Spread != 2 {
		t.Fatalf("a key at 1500/s: %+v, want a rate of about 1500 and spread 2", hot)
	}
	for _, phase := range []struct {
		ticks, rate, spread int
		what                string
	}{
		// Its count after the halving: about 20000, a rate of 20000/s.
		{1, 40_000, 16, "after a spike of 40000 in a tick (Max)"},
		{20, 1500, 2, "20 ticks back at 1500/s (it follows the rate down)"},
		{10, 2200, 3, "at 2200/s"},
		// A wobble just under the line: no move of the key's readers.
		{10, 1900, 3, "back at 1900/s, still (a quarter's margin before it shrinks)"},
		{10, 1400, 2, "at 1400/s"},
	} {
		for range phase.ticks {
			tick(phase.rate)
		}
		if got := d.Spread(hs); got != phase.spread {
			t.Fatalf("%s: spread %d, want %d", phase.what, got, phase.spread)
		}
	}

	one := NewHeavyHitters(DetectOptions{Rate: 10, Max: 1, Tick: time.Second})
	for range 50 {
		one.Observe(hs, star)
	}
	drain(one)
	if len(one.Hot()) != 1 || one.Spread(hs) != 1 {
		t.Fatalf("Max 1: hot %+v, spread %d; want the key listed and not spread", one.Hot(), one.Spread(hs))
	}
}
