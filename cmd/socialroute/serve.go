package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/health"
	"github.com/socialroute/socialroute/proxy"
)

const serveAbout = `
Run the edge proxy described by a config file until SIGTERM or SIGINT.

Signals:
  SIGHUP    reload the config and the assignment table; requests in flight
            finish on the old ones, none is dropped. A config that fails to
            load or validate is logged and the old one stays in force.
            Settings only a restart applies (the listener's address and
            sockets, admin, log.format, hot.detect_rate/detect_tick/
            max_spread, placement.stats_tick/advise_every,
            listen.tls.watch_interval) are kept and named in a warning.
            With gossip on, a file that changes datacenters, gossip or
            node is refused whole (nothing of it applies): those need a
            restart of every node.
  SIGTERM   drain: /readyz answers 503 at once; after listen.drain_delay
  SIGINT    (default 0; what your load balancer needs to notice) stop
            accepting, finish in-flight requests (at most
            listen.shutdown_timeout), then exit 0 (1 if that ran out).
            A second signal stops at once.

Certificates (listen.tls) are also reloaded when their files change; a
certificate that fails to load is logged and the old one keeps serving.

Upgrading without downtime: set listen.reuse_port: true, start the new
binary with the same config, wait until it logs "serving", then SIGTERM
the old one; it drains as above while the new one takes new connections.
With gossip on, the new process serves at once without gossip (its
breakers judge the datacenters) and binds the gossip ports as soon as the
old one, on SIGTERM, has left the fleet (after listen.drain_delay,
before the connection drain); it then rejoins under the same node name. The fleet takes a node
that leaves for one that left, not one that died: no datacenter goes down.
Give every node a gossip join list, so that it finds the fleet again.

Logs are structured (slog) on stderr; log.format and log.level choose how.`

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "--config FILE", serveAbout, stderr)
	cfgPath := fs.String("config", "", "YAML config `file` (see configs/two-continents.yaml)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "serve needs --config FILE")
		fs.Usage()
		return errUsage
	}
	// A SIGHUP before the loop below takes signals (while the table loads,
	// say: seconds for millions of users) would take its default action
	// and kill the process, which a service manager counts as a clean
	// stop and leaves down. It is kept, and reloads once serving: the
	// file may have changed since it was read. (SIGTERM keeps its default
	// until then: there is nothing to drain yet.)
	early := make(chan os.Signal, 1)
	signal.Notify(early, syscall.SIGHUP)
	defer signal.Stop(early)
	cfg, table, err := loadAll(*cfgPath)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar) // log.level is reloadable; the format is not
	level.Set(parseLevel(cfg.Log.Level))
	log := newLogger(cfg.Log.Format, level, stderr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	link := &fleetLink{log: log}
	cluster, err := startGossip(ctx, cfg, link, log)
	if err != nil {
		return err
	}
	opts := proxy.Options{Logger: log, Version: buildVersion()}
	if cluster != nil {
		defer cluster.Close()
		link.cluster = cluster
		opts.Status = cluster
		opts.OnPlacementChange = link.spread
		opts.FleetHot = cluster
		opts.Fleet = cluster // access reports for the placement advisor; map versions for a move's fence
	}
	srv, err := proxy.New(cfg, table, opts)
	if err != nil {
		return err
	}
	if cluster != nil {
		link.attach(srv)
		go link.shareHot(ctx)
	}
	// With listen.reuse_port, a new binary binds this address while this
	// one serves: the zero-downtime upgrade (see serveAbout).
	ln, err := proxy.Listen(ctx, cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	sigs := make(chan os.Signal, 4) // a SIGHUP and a SIGTERM close together are both kept
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	// Stopped last, after the admin endpoint's grace: a SIGHUP then
	// (logrotate's) must not take its default action and kill the process
	// with status 129 on its way out.
	defer signal.Stop(sigs)
	exited := make(chan struct{}) // closed on the way out, after the admin endpoint's grace
	defer close(exited)
	signal.Stop(early)
	select {
	case sig := <-early:
		sigs <- sig // reloaded once serving, like any SIGHUP
	default:
	}
	// The admin endpoint's reloads run in the loop below, like SIGHUP's,
	// so the running config has one owner.
	// draining closes when the drain starts: the loop takes no reloads
	// from then on, so one waiting for it is answered at once.
	reloads, draining := make(chan chan error), make(chan struct{})
	admin, err := startAdmin(cfg, srv, cluster, func() error {
		done := make(chan error, 1)
		select {
		case reloads <- done:
			return <-done
		case <-draining:
			return proxy.ErrShuttingDown
		case <-ctx.Done():
			return proxy.ErrShuttingDown
		}
	}, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminShutdownGrace)
		defer cancel()
		if err := admin.Shutdown(ctx); err != nil {
			log.Warn("admin requests still running were cut", "grace", adminShutdownGrace, "error", err)
		}
	}()
	defer cancel() // before admin.Shutdown: a reload waiting for the loop gives up

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	for {
		select {
		case err := <-served:
			return err
		case done := <-reloads:
			next, err := reload(srv, cluster, admin, cfg, *cfgPath, log, level)
			if err == nil {
				cfg = next
			}
			done <- err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if next, err := reload(srv, cluster, admin, cfg, *cfgPath, log, level); err == nil {
					cfg = next
				}
				continue
			}
			log.Info("draining", "signal", sig.String(), "timeout", cfg.Listen.ShutdownTimeout)
			admin.SetDraining() // /readyz answers 503 from now on
			close(draining)
			// A second SIGTERM or SIGINT ends the wait and the drain at once.
			stop, stopNow := context.WithCancel(context.Background())
			// Signals are taken until the process exits, the admin
			// endpoint's grace included, so none goes unanswered.
			go func() {
				for {
					select {
					case sig := <-sigs:
						if sig != syscall.SIGHUP {
							log.Warn("second signal: stopping without waiting", "signal", sig.String())
							stopNow()
							continue
						}
						log.Info("SIGHUP while stopping: not reloaded")
					case <-exited:
						return
					}
				}
			}()
			// Every answer from now on closes its connection, drain delay or
			// not: leaving the fleet below takes seconds, and connections
			// kept alive through them would be cut by the drain.
			srv.AnnounceDrain()
			if d := cfg.Listen.DrainDelay; d > 0 {
				log.Info("still accepting while load balancers see /readyz fail", "drain_delay", d)
				select {
				case <-time.After(d):
				case <-stop.Done():
				}
			}
			if cluster != nil {
				// Leave the fleet after the drain delay (while it still
				// accepts, the node must stay listed: a move's fence waits
				// for listed nodes only) and before the drain: the fleet
				// learns this node is going, not dead, and the gossip ports
				// are free at once for the next process of an upgrade,
				// instead of after a drain of up to shutdown_timeout.
				// Meanwhile this process routes by the fleet's view as it
				// was when it left, and by its breakers: only the requests
				// of connections it already holds, each answered with
				// Connection: close, within shutdown_timeout.
				start := time.Now()
				if err := cluster.Close(); err != nil {
					log.Warn("leaving the fleet failed in part; its peers will find it gone", "error", err, "took", time.Since(start).Round(time.Millisecond))
				} else {
					log.Info("left the fleet; gossip ports released", "took", time.Since(start).Round(time.Millisecond))
				}
			}
			ctx, cancel := context.WithTimeout(stop, cfg.Listen.ShutdownTimeout)
			err := srv.Shutdown(ctx)
			cancel()
			stopNow()
			// Serve may not have taken the listener yet if the signal came
			// early; closing it here makes sure Serve returns.
			ln.Close()
			if err != nil {
				return err
			}
			<-served
			log.Info("stopped")
			return nil
		}
	}
}

// reload applies a changed config and table and returns the new config, or
// logs and returns why it cannot (the running one stays in force).
func reload(srv *proxy.Server, cluster *health.Cluster, admin *adminEndpoint, running *configs.Config, path string, log *slog.Logger, level *slog.LevelVar) (*configs.Config, error) {
	cfg, table, err := loadAll(path)
	var token []byte
	switch {
	case err != nil:
	case cluster != nil && (!sameDatacenters(running, cfg) || !reflect.DeepEqual(running.Gossip, cfg.Gossip) || running.Node != cfg.Node):
		err = errors.New("with gossip on, changes to datacenters, gossip or node need a restart")
	default:
		// The admin token is read again (a rotation: the leaked one must
		// stop working without a restart), before anything applies.
		if token, err = admin.nextToken(cfg, log); err == nil {
			err = srv.Reload(cfg, table)
		}
	}
	if err == nil {
		admin.setToken(token)
		if cluster != nil {
			cluster.SetRouting(cfg.Routing.LoadLimit, cfg.Routing.DrainRamp) // the fleet view's headroom and slow start
		}
	}
	srv.RecordReload(err)
	if err != nil {
		log.Error("reload failed; the running configuration stays in force", "error", err)
		return nil, err
	}
	level.Set(parseLevel(cfg.Log.Level))
	return cfg, nil
}

// parseLevel is log.level as a slog level (validated already).
func parseLevel(s string) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(s)))
	return level
}

// loadAll reads the config and the assignment table it names.
func loadAll(path string) (*configs.Config, *hashing.Table, error) {
	cfg, err := configs.Load(path)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Table == "" {
		return cfg, nil, nil
	}
	table, err := hashing.LoadTable(cfg.TablePath())
	if err != nil {
		return nil, nil, err
	}
	return cfg, table, nil
}

// newLogger builds the process logger: text or JSON (log.format), at a
// level the caller may change while it runs (log.level reloads).
func newLogger(format string, level slog.Leveler, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
