package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/loadtest"
	"github.com/socialroute/socialroute/proxy"
)

const loadtestAbout = `
Offer load to socialroute and measure what it does: throughput, latency
(HDR histogram), errors by kind, each datacenter's share, locality (answers
from the user's home continent), spread evenness, and the web tier's cache
hit ratio.

Where the load goes:
  (default)        a simulated web tier for the datacenters of --config and a
                   proxy in front of it, started in this process: nothing to
                   install or set up
  --target ADDRS   running proxies: host:port[,host:port], or per continent of
                   the clients, us=host:port,eu=host:port; --config must
                   describe them (it says where each datacenter is and each
                   bucket's home continent)
  --compare        the same requests twice, in process, routed by plain
                   xxhash of the user and by a social-hash table computed
                   from the graph (or --table): the web tier's cache miss
                   rates side by side
  --webtier-only   only the simulated web tier of --config, on its upstream
                   addresses, with a control endpoint (--control) to fail,
                   slow and recover datacenters, until Ctrl-C; run
                   'socialroute serve' in front of it and load that with
                   --target (give both the same --graph, or --users and
                   --seed: the web tier reads the accounts users follow)

How: open loop (default) sends --rate requests per second whatever the
answers do and measures latency from each request's scheduled send time, so
a stall shows in full (no coordinated omission); closed loop runs --workers
workers that each wait for an answer before sending the next: the most the
system does.

The requests come from a follower graph: --graph (an edge list, "follower
followee" per line, plain or gzip) or a generated one (--users; planted
communities of friends, power-law followers). Viewers are drawn uniformly;
--mix says how many requests read the viewer's feed (GET /users/U/feed,
keyed by the viewer: the web tier reads U's data and that of every account U
follows), look at an account U follows (GET /accounts/A/profile, keyed by A),
or at one of the --hot most followed accounts. --origins says which
continents requests come from (with --target per continent, each goes to its
continent's proxies).

Examples:
  socialroute loadtest                                   # 10s open loop at 2000 req/s, in process
  socialroute loadtest --mode closed --workers 32 --duration 20s --plot run.html
  socialroute loadtest --compare                         # xxhash vs social hash, cache misses
  socialroute loadtest --webtier-only --config configs/two-continents.yaml
  socialroute loadtest --target 127.0.0.1:8080 --config configs/two-continents.yaml --rate 5000`

func runLoadtest(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("loadtest", "[--target ADDRS | --compare | --webtier-only] [flags]", loadtestAbout, stderr)
	target := fs.String("target", "", "proxies to load: `ADDRS` host:port[,...] or us=host:port,eu=host:port (default: in process)")
	compare := fs.Bool("compare", false, "compare xxhash and a social-hash table on the same requests: cache miss rates")
	webOnly := fs.Bool("webtier-only", false, "run only the simulated web tier of --config until Ctrl-C")
	control := fs.String("control", "127.0.0.1:9100", "with --webtier-only: the control endpoint's `address`")
	cfgPath := fs.String("config", "", "topology and routing `file` (default: the built-in two-continents.yaml)")
	tablePath := fs.String("table", "", "social-hash `table` for the in-process proxy or --compare (default: the config's table)")
	mode := fs.String("mode", "open", "`mode`: open (a constant rate) or closed (workers waiting for answers)")
	rate := fs.Float64("rate", loadtest.DefaultRate, "open loop: `requests` per second")
	workers := fs.Int("workers", 0, fmt.Sprintf("closed loop: `N` workers (default %d); open loop: at most N in flight (default %d)", loadtest.DefaultClosedWorkers, loadtest.DefaultOpenWorkers))
	duration := fs.Duration("duration", loadtest.DefaultDuration, "how long load is measured, after the warm-up")
	warmup := fs.Duration("warmup", loadtest.DefaultWarmup, "load sent before measuring starts (0s: none)")
	requests := fs.Uint64("requests", 0, fmt.Sprintf("closed loop: measure `N` requests instead of a duration, after a warm-up of N/4 (--compare: per run, default %d)", loadtest.DefaultCompareRequests))
	timeout := fs.Duration("timeout", loadtest.DefaultRequestTimeout, "bound on one request")
	graph := fs.String("graph", "", "follower graph edge-list `file` (plain or gzip); default: generated")
	undirected := fs.Bool("undirected", false, "read each --graph line as a mutual edge")
	users := fs.Int("users", loadtest.DefaultDemoUsers, "generated graph: `N` users")
	edges := fs.Int64("edges", 0, "generated graph: `N` follows (default 20 per user)")
	community := fs.Int("community", loadtest.DefaultCommunitySize, "generated graph: average community `size`")
	seed := fs.Uint64("seed", 1, "`seed` of the generated graph and of the requests")
	mix := fs.String("mix", loadtest.DefaultMix.String(), "request `mix`: shares of feed, profile and hot requests")
	hot := fs.Int("hot", loadtest.DefaultHotAccounts, "hot requests go to the `N` most followed accounts")
	origins := fs.String("origins", "", "continents requests come from and their `shares`, e.g. us=0.66,eu=0.34 (default: by capacity)")
	cacheRatio := fs.Float64("cache-ratio", loadtest.DefaultCacheRatio, "web tier: each datacenter caches this `multiple` of its share of the users")
	cacheSize := fs.Int("cache", 0, "web tier: every datacenter caches `N` users (overrides --cache-ratio)")
	buckets := fs.Int("buckets", 0, "in process: the bucket count (--compare default: about one bucket per 200 users)")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of text")
	jsonOut := fs.String("json-out", "", "also write the report as JSON to this `file`")
	plot := fs.String("plot", "", "write an HTML plot of latency and throughput over time to this `file`")
	quiet := fs.Bool("quiet", false, "no live progress")
	if err := parse(fs, args); err != nil {
		return err
	}
	usage := func(format string, a ...any) error {
		fmt.Fprintf(stderr, format+"\n", a...)
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	runMode := loadtest.OpenLoop
	switch *mode {
	case "open":
	case "closed":
		runMode = loadtest.ClosedLoop
	default:
		return usage("--mode must be open or closed, got %q", *mode)
	}
	switch {
	case *target != "" && (*compare || *webOnly), *compare && *webOnly:
		return usage("--target, --compare and --webtier-only exclude each other")
	case !(*rate > 0 && *rate <= 1e7):
		return usage("--rate must be between 0 and 10000000, got %v", *rate)
	case *workers < 0 || *workers > 8192:
		return usage("--workers must be between 1 and 8192, got %d", *workers)
	case *duration <= 0:
		return usage("--duration must be positive, got %v", *duration)
	case *warmup < 0:
		return usage("--warmup must not be negative, got %v", *warmup)
	case *requests > 0 && runMode == loadtest.OpenLoop && !*compare:
		return usage("--requests needs --mode closed: the open loop runs for a --duration")
	case *requests > 0 && (set["duration"] || set["warmup"] && *warmup != 0):
		return usage("--requests counts the run instead of --duration and --warmup (it warms up on a quarter as many requests; --warmup 0s: none): use one or the other")
	case *users < 2 || *users > 50_000_000:
		return usage("--users must be between 2 and 50000000, got %d", *users)
	case *buckets < 0 || *buckets > hashing.MaxBuckets:
		return usage("--buckets must be between 1 and %d, got %d", hashing.MaxBuckets, *buckets)
	case *cacheRatio <= 0 || *cacheSize < 0:
		return usage("--cache-ratio must be positive and --cache not negative")
	}
	mixV, err := loadtest.ParseMix(*mix)
	if err != nil {
		return usage("--mix: %v", err)
	}

	cfg, err := loadtestConfig(*cfgPath)
	if err != nil {
		return err
	}
	var originsV []loadtest.Origin
	if *origins != "" {
		if originsV, err = loadtest.ParseOrigins(*origins); err != nil {
			return usage("--origins: %v", err)
		}
	} else {
		originsV = originsByCapacity(cfg)
	}
	var targets []loadtest.Target
	if *target != "" {
		if targets, err = loadtest.ParseTargets(*target); err != nil {
			return usage("--target: %v", err)
		}
	}
	// A continent the config does not have would go unnoticed: its
	// clients would load the other continents' proxies, and origin
	// locality would be reported as if they had their own.
	known := map[string]bool{}
	for _, c := range cfg.Continents {
		known[c.Name] = true
	}
	for _, o := range originsV {
		if !known[o.Continent] {
			return usage("--origins: continent %q is not in the config (%s)", o.Continent, continentNames(cfg))
		}
	}
	for _, t := range targets {
		if t.Continent != "" && !known[t.Continent] {
			return usage("--target: continent %q is not in the config (%s)", t.Continent, continentNames(cfg))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	progress := stderr
	if *quiet {
		progress = io.Discard
	}
	logf := func(format string, a ...any) { fmt.Fprintf(progress, format+"\n", a...) }

	// The graph.
	graphName := *graph
	var g *hashing.Graph
	start := time.Now()
	if *graph != "" {
		logf("reading %s", *graph)
		g, err = loadtest.LoadFollowerGraph(*graph, *undirected)
	} else {
		graphName = fmt.Sprintf("generated: seed %d, communities of about %d, power-law followers", *seed, *community)
		logf("generating a follower graph of %d users", *users)
		g, err = loadtest.GenerateFollowerGraph(loadtest.GraphOptions{Users: *users, Edges: *edges, Seed: *seed, CommunitySize: *community})
	}
	if err != nil {
		return err
	}
	logf("graph: %d users, %d follows (%.1fs)", g.Users(), g.Edges(), time.Since(start).Seconds())
	wopts := loadtest.WorkloadOptions{Seed: *seed, Mix: mixV, HotAccounts: *hot, Origins: originsV}

	var table *hashing.Table
	switch {
	case *tablePath != "":
		table, err = hashing.LoadTable(*tablePath)
	case cfg.Table != "" && !*compare:
		table, err = hashing.LoadTable(cfg.TablePath())
	}
	if err != nil {
		return err
	}

	if *webOnly {
		return serveWebTier(ctx, cfg, g, *cacheRatio, *cacheSize, *control, stdout)
	}

	if *compare {
		n := *requests
		if n == 0 {
			n = loadtest.DefaultCompareRequests
		}
		rep, err := loadtest.Compare(ctx, loadtest.CompareOptions{
			Config: cfg, Buckets: *buckets, Graph: g, GraphName: graphName, Workload: wopts,
			Requests: n, Workers: *workers, CacheRatio: *cacheRatio, CacheSize: *cacheSize, Table: table, Out: progress,
		})
		if err != nil {
			return interrupted(err)
		}
		return writeReports(rep, rep.WriteText, rep.WritePlot, *asJSON, *jsonOut, *plot, stdout)
	}

	wl, err := loadtest.NewWorkload(g, wopts)
	if err != nil {
		return err
	}
	ro := loadtest.RunOptions{
		Mode: runMode, Rate: *rate, Workers: *workers, Duration: *duration, Warmup: *warmup, Requests: *requests,
		Targets: targets, Workload: wl, GraphName: graphName, Timeout: *timeout, Out: progress,
	}
	if !set["warmup"] && *requests > 0 {
		ro.WarmupRequests = *requests / 4
	}
	if *warmup == 0 {
		ro.Warmup = -1
	}
	if len(targets) == 0 {
		local, err := loadtest.StartLocal(loadtest.LocalOptions{Config: cfg, Buckets: *buckets, Table: table, Graph: g,
			CacheRatio: *cacheRatio, CacheSize: *cacheSize})
		if err != nil {
			return err
		}
		defer local.Close()
		if local.HostNote != "" {
			logf("%s", local.HostNote)
		}
		logf("in process: a web tier for %d datacenters and a proxy on %s", len(local.Config.Datacenters), local.Addr)
		ro.Targets = []loadtest.Target{{Addr: local.Addr}}
		ro.Routing = local.Proxy
		rep, err := loadtest.Run(ctx, ro)
		if rep != nil {
			rep.Load.CacheSize = local.CacheSize
		}
		if err != nil {
			return interrupted(err)
		}
		return writeReports(rep, rep.WriteText, rep.WritePlot, *asJSON, *jsonOut, *plot, stdout)
	}
	oracleCfg := *cfg
	oracle, err := proxy.New(&oracleCfg, table, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("--config does not make a proxy: %w", err)
	}
	ro.Routing = oracle
	rep, err := loadtest.Run(ctx, ro)
	if err != nil {
		return interrupted(err)
	}
	return writeReports(rep, rep.WriteText, rep.WritePlot, *asJSON, *jsonOut, *plot, stdout)
}

// interrupted turns a cancelled run into a short message.
func interrupted(err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	return err
}

// writeReports prints rep as text or JSON and writes the JSON and plot
// files asked for.
func writeReports(rep any, text, plot func(io.Writer) error, asJSON bool, jsonOut, plotOut string, stdout io.Writer) error {
	if plotOut != "" {
		if err := writeReportFile(plotOut, plot); err != nil {
			return err
		}
	}
	if jsonOut != "" {
		if err := writeReportFile(jsonOut, func(w io.Writer) error { return encodeJSON(w, rep) }); err != nil {
			return err
		}
	}
	if asJSON {
		return encodeJSON(stdout, rep)
	}
	if err := text(stdout); err != nil {
		return err
	}
	if plotOut != "" {
		fmt.Fprintf(stdout, "\nplot written to %s\n", plotOut)
	}
	return nil
}

// loadtestConfig loads path, or the built-in example.
func loadtestConfig(path string) (*configs.Config, error) {
	if path == "" {
		return configs.Example(loadtest.DemoExample)
	}
	return configs.Load(path)
}

// originsByCapacity has each continent's clients send a share of the
// requests equal to its share of the capacity.
func originsByCapacity(cfg *configs.Config) []loadtest.Origin {
	var out []loadtest.Origin
	for _, c := range cfg.Continents {
		o := loadtest.Origin{Continent: c.Name}
		for _, d := range cfg.Datacenters {
			if d.Continent == c.Name {
				o.Share += d.Capacity
			}
		}
		out = append(out, o)
	}
	return out
}

// serveWebTier runs the simulated web tier of cfg, on its upstream
// addresses, until ctx ends.
func serveWebTier(ctx context.Context, cfg *configs.Config, g *hashing.Graph, ratio float64, size int, control string, stdout io.Writer) error {
	upstreams := map[string][]string{}
	for _, d := range cfg.Datacenters {
		upstreams[d.Name] = d.Upstreams
	}
	cache := loadtest.CacheSizes(cfg, g.Users(), ratio, size)
	web, err := loadtest.StartWebTier(loadtest.WebTierOptions{Upstreams: upstreams, Graph: g, CacheSize: cache})
	if err != nil {
		return err
	}
	defer web.Close()
	addr, err := web.ServeControl(control)
	if err != nil {
		return err
	}
	name := cfg.Path
	if name == "" {
		name = loadtest.DemoExample
	}
	fmt.Fprintf(stdout, "simulated web tier of %s: %d datacenters, a graph of %d users\n", name, len(cfg.Datacenters), g.Users())
	for _, d := range cfg.Datacenters {
		fmt.Fprintf(stdout, "  %-12s %s  (caches %d users)\n", d.Name, strings.Join(web.Addrs(d.Name), " "), cache[d.Name])
	}
	fmt.Fprintf(stdout, "control endpoint http://%s/ :\n", addr)
	fmt.Fprintf(stdout, "  curl -X POST http://%s/datacenters/%s/fail       # crash it\n", addr, loadtest.DemoFailedDatacenter)
	fmt.Fprintf(stdout, "  curl -X POST http://%s/datacenters/%s/recover\n", addr, loadtest.DemoFailedDatacenter)
	fmt.Fprintf(stdout, "  curl http://%s/datacenters                     # counters and cache hit ratios\n", addr)
	fmt.Fprintln(stdout, "Ctrl-C stops it.")
	<-ctx.Done()
	return nil
}

// continentNames lists cfg's continents for an error message.
func continentNames(cfg *configs.Config) string {
	names := make([]string, len(cfg.Continents))
	for i, c := range cfg.Continents {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}
