package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/socialroute/socialroute/loadtest"
)

const demoAbout = `
Run the whole two-continent topology on this machine, with nothing to set up,
and watch a datacenter die and come back.

In this one process the demo starts:
  - a follower graph of --users users (generated: planted communities of
    friends, power-law followers);
  - a simulated web tier for the 8 datacenters of the built-in example
    configs/two-continents.yaml (5 in the US, 3 in Europe), each a pair of
    web servers on 127.0.1.N in front of an LRU cache of users' data: a
    request for user U reads U's data and that of every account U follows;
  - three socialroute proxy nodes, in us-east, us-west and eu-west (on
    127.0.1.101, .104 and .106), gossiping their health over loopback: a
    LAN pool per continent, a WAN pool for all, probes every 200ms;
  - open-loop load at --rate requests per second: US clients send to the
    us-east node, European clients to the eu-west node; 80% feed reads
    (GET /users/U/feed), 15% profiles of followed accounts
    (GET /accounts/A/profile), 5% the most followed accounts.

It runs three phases of --seconds each:
  1. steady        every datacenter up
  2. us-west down  us-west's web servers crash (connections refused,
                   requests in flight cut off) and so does its proxy node
  3. recovered     both come back, on the same addresses

While it runs it prints what the fleet does: breakers opening at the
surviving nodes, gossip declaring us-west down, then up again. Then, per
datacenter, its share of its continent's requests in each phase against its
share of capacity; per phase, requests, errors, locality (answers from the
user's home continent), latency (HDR, from the scheduled send time) and the
web tier's cache hit ratio; and how the failover went: failed client
requests (expected: none, since the GETs the crash broke are retried on the
next datacenter), proxy retries, how soon breakers and gossip routed around
us-west, where its share went, and how soon it served again.

Everything stops on Ctrl-C. Linux binds 127.0.1.N out of the box; where it
cannot (macOS without loopback aliases) everything listens on 127.0.0.1.`

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "[--seconds S] [--rate R] [--users N] [--json] [--plot FILE]", demoAbout, stderr)
	seconds := fs.Float64("seconds", loadtest.DefaultDemoPhase.Seconds(), "length of each of the three phases, in `seconds`")
	rate := fs.Float64("rate", loadtest.DefaultDemoRate, "open-loop arrival `rate`, requests per second")
	workers := fs.Int("workers", loadtest.DefaultDemoWorkers, "at most `N` requests in flight")
	users := fs.Int("users", loadtest.DefaultDemoUsers, "`N` users in the generated follower graph")
	seed := fs.Uint64("seed", 1, "`seed` of the graph and the requests")
	asJSON := fs.Bool("json", false, "also print the figures as JSON after the report")
	jsonOut := fs.String("json-out", "", "write the figures as JSON to this `file`")
	plot := fs.String("plot", "", "write an HTML plot of latency and throughput over time to this `file`")
	logs := fs.Bool("logs", false, "show the proxies' and gossip's warnings on stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	phase := time.Duration(*seconds * float64(time.Second))
	switch {
	case phase < 500*time.Millisecond || phase > time.Hour:
		fmt.Fprintf(stderr, "--seconds must be between 0.5 and 3600, got %v\n", *seconds)
		return errUsage
	case !(*rate >= 1 && *rate <= 1e6):
		fmt.Fprintf(stderr, "--rate must be between 1 and 1000000, got %v\n", *rate)
		return errUsage
	case *workers < 1 || *workers > 8192:
		fmt.Fprintf(stderr, "--workers must be between 1 and 8192, got %d\n", *workers)
		return errUsage
	case *users < 10 || *users > 10_000_000:
		fmt.Fprintf(stderr, "--users must be between 10 and 10000000, got %d\n", *users)
		return errUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := loadtest.DemoOptions{Phase: phase, Rate: *rate, Workers: *workers, Users: *users, Seed: *seed, Out: stdout}
	if *logs {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	rep, err := loadtest.RunDemo(ctx, opts)
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	if err != nil {
		return err
	}
	if *plot != "" {
		if err := writeReportFile(*plot, func(w io.Writer) error { return rep.WritePlot(w) }); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nplot written to %s\n", *plot)
	}
	if *jsonOut != "" {
		if err := writeReportFile(*jsonOut, func(w io.Writer) error { return encodeJSON(w, rep) }); err != nil {
			return err
		}
	}
	if *asJSON {
		fmt.Fprintln(stdout)
		return encodeJSON(stdout, rep)
	}
	return nil
}

func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeReportFile creates path and fills it with write.
func writeReportFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
