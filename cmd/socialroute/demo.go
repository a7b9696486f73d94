package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/socialroute/socialroute/loadtest"
)

const demoAbout = `
Run the whole two-continent topology on this machine, with nothing to set up,
and watch a datacenter die and come back.

In this one process the demo starts:
  - a simulated web tier for the 8 datacenters of the built-in example
    configs/two-continents.yaml (5 in the US, 3 in Europe), each a pair of
    web servers on 127.0.1.N that answer with the name of their datacenter;
  - a socialroute proxy in front of them, configured by that example;
  - closed-loop load: workers that each send GET /users/<id>/feed for a
    random user, wait for the answer and check it, over and over.

It runs three phases of --seconds each:
  1. steady        every datacenter up
  2. us-west down  us-west's web servers crash: connections refused, requests
                   in flight cut off
  3. recovered     us-west comes back on the same addresses

It then prints, per datacenter, its share of its continent's requests in each
phase against its share of the continent's capacity; per phase, requests,
req/s, client-side errors, and locality (answers from the user's home
continent); and how the failover went: client requests that failed (expected:
none, since GETs the crash broke are retried on the next datacenter), the
proxy's retries, how soon the proxy routed around us-west and how soon
us-west served again, and how us-west's share spread over the other US
datacenters in proportion to their capacity.

Everything stops on Ctrl-C. Linux binds 127.0.1.N out of the box; where it
cannot (macOS without loopback aliases) the web servers use 127.0.0.1.`

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "[--seconds S] [--workers N] [--users N] [--json]", demoAbout, stderr)
	seconds := fs.Float64("seconds", loadtest.DefaultDemoPhase.Seconds(), "length of each of the three phases, in `seconds`")
	workers := fs.Int("workers", loadtest.DefaultDemoWorkers, "`N` closed-loop workers, each with one request in flight")
	users := fs.Int("users", loadtest.DefaultDemoUsers, "`N` distinct users; ids are drawn uniformly from [0, N)")
	asJSON := fs.Bool("json", false, "also print the figures as JSON after the report")
	logs := fs.Bool("logs", false, "show the proxy's warnings (breakers opening) on stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	phase := time.Duration(*seconds * float64(time.Second))
	switch {
	case phase < 100*time.Millisecond || phase > time.Hour:
		fmt.Fprintf(stderr, "--seconds must be between 0.1 and 3600, got %v\n", *seconds)
		return errUsage
	case *workers < 1 || *workers > 4096:
		fmt.Fprintf(stderr, "--workers must be between 1 and 4096, got %d\n", *workers)
		return errUsage
	case *users < 1:
		fmt.Fprintf(stderr, "--users must be at least 1, got %d\n", *users)
		return errUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := loadtest.DemoOptions{Phase: phase, Workers: *workers, Users: *users, Out: stdout}
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
	if *asJSON {
		fmt.Fprintln(stdout)
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return nil
}
