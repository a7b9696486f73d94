package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/health"
	"github.com/socialroute/socialroute/proxy"
)

// startGossip joins the fleet as cfg's gossip section says; nil when
// gossip is off.
func startGossip(ctx context.Context, cfg *configs.Config, link *fleetLink, log *slog.Logger) (*health.Cluster, error) {
	g := cfg.Gossip
	if g.LAN.Bind == "" {
		return nil, nil
	}
	key, err := gossipKey(cfg)
	if err != nil {
		return nil, err
	}
	o := health.Options{
		Node:          cfg.Node.Name,
		Datacenter:    cfg.Node.Datacenter,
		Key:           key,
		Label:         g.Label,
		CheckInterval: g.CheckInterval,
		CheckTimeout:  g.CheckTimeout,
		CheckPath:     g.CheckPath,
		LoadLimit:     cfg.Routing.LoadLimit,
		AutoApply:     cfg.Placement.AutoApply,
		SlowStart:     cfg.Routing.DrainRamp, // a datacenter back up ramps in as an undrain does
		Logger:        log.With("component", "gossip"),
		LAN:           poolOptions(g.LAN),
		WAN:           poolOptions(g.WAN),
		OnPlacement:   link.adopt,
		// reuse_port says two processes of this node may overlap (an
		// upgrade): then the new one serves at once and takes the gossip
		// ports over when the old one leaves the fleet (health/handover.go).
		// Without it, a held gossip port is an error, like a held HTTP port.
		WaitForBind: cfg.Listen.ReusePort,
	}
	for i, d := range cfg.Datacenters {
		o.Datacenters = append(o.Datacenters, health.Datacenter{Name: d.Name, Continent: d.Continent, MaxRPS: d.MaxRPS})
		if d.Name == cfg.Node.Datacenter {
			o.Upstreams = d.Upstreams
			if o.CheckTLS, err = proxy.UpstreamTLSConfig(cfg, i); err != nil {
				return nil, err
			}
		}
	}
	return health.Start(ctx, o)
}

func poolOptions(p configs.GossipPool) health.PoolOptions {
	return health.PoolOptions{
		Bind: p.Bind, Advertise: p.Advertise, Join: p.Join,
		ProbeInterval: p.ProbeInterval, ProbeTimeout: p.ProbeTimeout, SuspicionMult: p.SuspicionMult,
	}
}

// gossipKey reads the base64 gossip key from the environment or the
// key file, and checks its size.
func gossipKey(cfg *configs.Config) ([]byte, error) {
	text, from := os.Getenv(configs.GossipKeyEnv), configs.GossipKeyEnv
	if text == "" {
		path := cfg.Gossip.KeyFile
		if !filepath.IsAbs(path) && cfg.Path != "" {
			path = filepath.Join(filepath.Dir(cfg.Path), path) // relative to the config, like table
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("gossip key: %w", err)
		}
		text, from = string(b), path
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("gossip key in %s: not base64: %w", from, err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("gossip key in %s: %d bytes; want 16, 24 or 32 (make one with `socialroute keygen`)", from, n)
	}
	return key, nil
}

// sameDatacenters reports whether two configs list the same datacenters in
// the same order: the gossip view is indexed like the routing core, so a
// change needs a restart while gossip is on.
func sameDatacenters(a, b *configs.Config) bool {
	return slices.EqualFunc(a.Datacenters, b.Datacenters, func(x, y configs.Datacenter) bool {
		return x.Name == y.Name && x.Continent == y.Continent && x.MaxRPS == y.MaxRPS &&
			slices.Equal(x.Upstreams, y.Upstreams)
	})
}

const keygenAbout = `
Print a new random gossip key (32 bytes, base64) for gossip.key_file or the
SOCIALROUTE_GOSSIP_KEY environment variable. Every node of a fleet needs the
same key; a node with another key cannot join.`

func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen", "", keygenAbout, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return errors.New("no randomness: " + err.Error())
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
	return nil
}

// fleetLink connects the proxy to the fleet: bucket-map changes made here
// spread through gossip and newer ones made elsewhere are adopted; the hot
// keys this node detects are gossiped so every node spreads them.
type fleetLink struct {
	cluster *health.Cluster
	srv     atomic.Pointer[proxy.Server]
	log     *slog.Logger
}

// spread is the proxy's OnPlacementChange.
func (l *fleetLink) spread(snap *buckets.Snapshot) {
	payload, err := json.Marshal(snap.Overrides())
	if err != nil {
		l.log.Error("bucket map not spread", "error", err)
		return
	}
	l.cluster.SpreadPlacement(health.Placement{Version: snap.Version(), Origin: snap.Origin(), Payload: payload})
}

// adopt is the cluster's OnPlacement: it returns the map the proxy routes
// by afterwards (version 0 before the proxy exists). Placements that
// arrive before the proxy exists are held by the cluster and adopted by
// attach.
func (l *fleetLink) adopt(p health.Placement) (uint64, string) {
	srv := l.srv.Load()
	if srv == nil {
		return 0, ""
	}
	var o buckets.Overrides
	if err := json.Unmarshal(p.Payload, &o); err != nil {
		l.log.Error("bucket map from the fleet unreadable; ignored", "origin", p.Origin, "version", p.Version, "error", err)
	} else if _, err := srv.AdoptPlacement(p.Version, p.Origin, o); err != nil {
		l.log.Error("bucket map from the fleet does not fit this node's topology; ignored", "origin", p.Origin, "version", p.Version, "error", err)
	}
	snap := srv.Placement().Load()
	return snap.Version(), snap.Origin()
}

// attach starts adopting into srv, beginning with what arrived before, and
// gossips the version srv then routes by.
func (l *fleetLink) attach(srv *proxy.Server) {
	l.srv.Store(srv)
	v, origin := srv.Placement().Load().Version(), srv.Placement().Load().Origin()
	if p := l.cluster.HeldPlacement(); p != nil {
		v, origin = l.adopt(*p)
	}
	l.cluster.SetMap(v, origin)
}

// shareHot gossips this node's detected hot keys every second until ctx
// ends.
func (l *fleetLink) shareHot(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		srv := l.srv.Load()
		if srv == nil {
			continue
		}
		_, detected := srv.HotKeys()
		keys := make([]health.HotHash, 0, len(detected))
		for _, d := range detected {
			keys = append(keys, health.HotHash{Hash: d.Hash, Spread: uint8(d.Spread)})
		}
		l.cluster.SetHotKeys(keys)
	}
}
