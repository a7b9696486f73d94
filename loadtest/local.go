package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/proxy"
)

// DefaultCacheRatio sizes each simulated datacenter's cache: this many
// times its share of the users (users × its capacity / all capacity). At
// 1 a datacenter could hold exactly the users whose buckets it serves, but
// not the accounts they follow elsewhere; so locality, friends served
// together, decides how often a read misses.
const DefaultCacheRatio = 1.0

// LocalOptions configure StartLocal.
type LocalOptions struct {
	// Config is the topology and routing; nil is the embedded
	// DemoExample. Its upstream addresses' hosts are kept (with free
	// ports) where they can be bound, else 127.0.0.1 is used; its gossip
	// section is ignored: one proxy, every datacenter up unless failed.
	Config *configs.Config
	// Buckets, if set, replaces the config's bucket count.
	Buckets int
	// Table is the social-hash table of the proxy; nil: xxhash.
	Table *hashing.Table
	// Graph is the follower graph behind the web tier's reads.
	Graph *hashing.Graph
	// CacheRatio sizes each datacenter's cache against its share of the
	// graph's users. Default DefaultCacheRatio.
	CacheRatio float64
	// CacheSize, if set, is every datacenter's cache in users, whatever
	// its capacity.
	CacheSize int
	// BreakerFailures and BreakerOpenFor, if set, replace the config's
	// breaker settings.
	BreakerFailures int
	BreakerOpenFor  time.Duration
	// Logger receives the proxy's logs. Default: discarded.
	Logger *slog.Logger
}

// Local is a simulated web tier and one proxy in front of it, in this
// process: what a load run needs when there is nothing installed.
type Local struct {
	Web    *WebTier
	Proxy  *proxy.Server
	Addr   string          // the proxy's address
	Config *configs.Config // the proxy's configuration
	// CacheSize is each datacenter's cache, in users.
	CacheSize map[string]int
	HostNote  string // set when 127.0.1.N could not be bound
	ln        net.Listener
	served    chan struct{}
}

// StartLocal starts the web tier for o.Config's datacenters and a proxy
// in front of it. Close stops both.
func StartLocal(o LocalOptions) (*Local, error) {
	cfg, err := localConfig(o.Config)
	if err != nil {
		return nil, err
	}
	if o.Buckets > 0 {
		cfg.Buckets = o.Buckets
	}
	if o.BreakerFailures > 0 {
		cfg.Upstream.Breaker.ConsecutiveFailures = o.BreakerFailures
	}
	if o.BreakerOpenFor > 0 {
		cfg.Upstream.Breaker.OpenFor = o.BreakerOpenFor
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	upstreams, note := demoUpstreams(cfg)
	l := &Local{Config: cfg, HostNote: note}
	users := 0
	if o.Graph != nil {
		users = o.Graph.Users()
	}
	l.CacheSize = CacheSizes(cfg, users, o.CacheRatio, o.CacheSize)
	l.Web, err = StartWebTier(WebTierOptions{Upstreams: upstreams, Graph: o.Graph, CacheSize: l.CacheSize})
	if err != nil {
		return nil, err
	}
	for i := range cfg.Datacenters {
		cfg.Datacenters[i].Upstreams = l.Web.Addrs(cfg.Datacenters[i].Name)
	}
	if err := cfg.Validate(); err != nil {
		l.Web.Close()
		return nil, fmt.Errorf("loadtest: local config: %w", err)
	}
	l.Proxy, err = proxy.New(cfg, o.Table, proxy.Options{Logger: o.Logger})
	if err != nil {
		l.Web.Close()
		return nil, err
	}
	l.ln, err = net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		l.Web.Close()
		return nil, fmt.Errorf("loadtest: local proxy: %w", err)
	}
	l.Addr = l.ln.Addr().String()
	l.served = make(chan struct{})
	go func() {
		defer close(l.served)
		_ = l.Proxy.Serve(l.ln)
	}()
	waitServing(l.Proxy, l.served)
	return l, nil
}

// Close stops the proxy (draining at most a few seconds) and the web tier.
func (l *Local) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), demoShutdownTimeout)
	defer cancel()
	_ = l.Proxy.Shutdown(ctx)
	_ = l.ln.Close() // in case Serve had not taken it yet
	<-l.served
	l.Web.Close()
}

// localConfig copies cfg (nil: the embedded example) for an in-process
// run: listening on a free loopback port, gossip off, warnings only.
func localConfig(cfg *configs.Config) (*configs.Config, error) {
	if cfg == nil {
		var err error
		if cfg, err = configs.Example(DemoExample); err != nil {
			return nil, err
		}
	}
	c := *cfg
	c.Datacenters = slices.Clone(cfg.Datacenters)
	c.Gossip.LAN, c.Gossip.WAN = configs.GossipPool{}, configs.GossipPool{}
	c.Listen.Address = "127.0.0.1:0"
	c.Log.Level = "warn"
	return &c, nil
}

// CacheSizes gives each datacenter of cfg a cache of fixed users, or, if
// fixed is 0, of ratio (0: DefaultCacheRatio) times its share of users:
// users × its capacity / the whole topology's capacity.
func CacheSizes(cfg *configs.Config, users int, ratio float64, fixed int) map[string]int {
	if ratio <= 0 {
		ratio = DefaultCacheRatio
	}
	total := 0.0
	for _, d := range cfg.Datacenters {
		total += d.Capacity
	}
	out := make(map[string]int, len(cfg.Datacenters))
	for _, d := range cfg.Datacenters {
		n := fixed
		if n <= 0 && total > 0 {
			n = int(ratio * float64(users) * d.Capacity / total)
		}
		out[d.Name] = max(n, 1)
	}
	return out
}
