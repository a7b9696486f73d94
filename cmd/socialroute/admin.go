package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/socialroute/socialroute/configs"
	"github.com/socialroute/socialroute/health"
	"github.com/socialroute/socialroute/proxy"
)

// Timeouts of the admin listener. Not the hot path: generous, but bounded
// so a stuck client cannot hold a connection forever. The write timeout
// leaves room for a 60 s CPU profile.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 30 * time.Second
	adminWriteTimeout      = 90 * time.Second
	adminIdleTimeout       = 2 * time.Minute
	// adminShutdownGrace is how long admin requests in flight may finish
	// once the proxy has drained. A CPU profile runs up to a minute, and
	// the exit should not wait for it (or a supervisor's kill timeout
	// would end the process with SIGKILL): after the grace they are cut.
	adminShutdownGrace = 5 * time.Second
)

// adminEndpoint is the running admin listener. A nil *adminEndpoint (the
// endpoint is off) is valid: its methods do nothing.
type adminEndpoint struct {
	admin    *proxy.Admin
	http     *http.Server
	addr     string
	done     chan error
	hasToken bool // started with a token (not insecure_no_token)
}

// startAdmin starts the admin endpoint of srv if cfg.Admin.Enabled, on its
// own listener (admin.address), and returns at once; nil, nil when it is
// off. cluster is the gossip view (nil without gossip); reload does what
// SIGHUP does and must be safe to call from another goroutine (nil: the
// route answers 501). The token comes from SOCIALROUTE_ADMIN_TOKEN or
// admin.token_file and is never logged.
func startAdmin(cfg *configs.Config, srv *proxy.Server, cluster *health.Cluster, reload func() error, log *slog.Logger) (*adminEndpoint, error) {
	if !cfg.Admin.Enabled {
		return nil, nil
	}
	log = log.With("component", "admin")
	token, from, err := adminToken(cfg, log)
	if err != nil {
		return nil, err
	}
	opts := proxy.AdminOptions{Token: token, Reload: reload, Logger: log}
	if token == nil {
		opts.NoToken = true // Validate allowed it: insecure_no_token on loopback
	}
	if cluster != nil { // not a typed nil in the interface
		opts.Cluster = cluster
	}
	a, err := proxy.NewAdmin(srv, opts)
	if err != nil {
		return nil, err
	}
	// Under listen.reuse_port the admin address is shared during an
	// upgrade too, or the new process could not start beside the old.
	ln, err := proxy.Listen(context.Background(), configs.Listen{Address: cfg.Admin.Address, ReusePort: cfg.Listen.ReusePort})
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	e := &adminEndpoint{admin: a, addr: ln.Addr().String(), done: make(chan error, 1), hasToken: token != nil}
	e.http = &http.Server{
		Handler:           a,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() { e.done <- e.http.Serve(ln) }()
	if token == nil {
		log.Warn("admin endpoint listening WITHOUT a token (admin.insecure_no_token): anyone on this host can change routing", "address", e.addr)
	} else {
		log.Info("admin endpoint listening", "address", e.addr, "token_from", from)
	}
	return e, nil
}

// adminToken reads the admin token: the environment variable wins over
// the file. It returns nil (no token) only under insecure_no_token with
// neither set. from says where the token came from, for the log.
func adminToken(cfg *configs.Config, log *slog.Logger) (token []byte, from string, err error) {
	if env := strings.TrimSpace(os.Getenv(configs.AdminTokenEnv)); env != "" {
		token, from = []byte(env), configs.AdminTokenEnv
	} else if path := cfg.AdminTokenPath(); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("admin token: %w", err)
		}
		token, from = []byte(strings.TrimSpace(string(b))), path
		if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o044 != 0 {
			log.Warn("the admin token file is readable by other users; chmod 600 it", "file", path, "mode", info.Mode().Perm().String())
		}
	}
	switch {
	case token == nil && cfg.Admin.InsecureNoToken:
		return nil, "", nil
	case token == nil:
		return nil, "", fmt.Errorf("admin token: set %s or admin.token_file", configs.AdminTokenEnv)
	case len(token) < proxy.MinAdminToken:
		return nil, "", fmt.Errorf("admin token in %s: %d characters; want at least %d (make one with `socialroute keygen`)", from, len(token), proxy.MinAdminToken)
	}
	return token, from, nil
}

// nextToken reads the admin token cfg names, for a reload to apply with
// setToken: nil when the endpoint is off or runs without a token, or cfg
// names none (turning tokens off or on needs a restart, which the reload
// says).
func (e *adminEndpoint) nextToken(cfg *configs.Config, log *slog.Logger) ([]byte, error) {
	if e == nil || !e.hasToken || !cfg.Admin.Enabled {
		return nil, nil
	}
	token, _, err := adminToken(cfg, log)
	return token, err
}

// setToken puts a token read by nextToken in force; nil keeps the one in
// force.
func (e *adminEndpoint) setToken(token []byte) {
	if e != nil && token != nil {
		_ = e.admin.SetToken(token) // (adminToken checked its length)
	}
}

// Addr is the address the endpoint listens on ("" when off).
func (e *adminEndpoint) Addr() string {
	if e == nil {
		return ""
	}
	return e.addr
}

// SetDraining makes /readyz answer 503 from now on: call it when the drain
// starts, before the client listener closes, so balancers stop first.
func (e *adminEndpoint) SetDraining() {
	if e != nil {
		e.admin.SetDraining(true)
	}
}

// Shutdown stops the endpoint: no new requests; in-flight ones finish
// until ctx ends, and are cut then (their connections closed).
func (e *adminEndpoint) Shutdown(ctx context.Context) error {
	if e == nil {
		return nil
	}
	err := e.http.Shutdown(ctx)
	if err != nil && ctx.Err() != nil {
		err = errors.Join(err, e.http.Close())
	}
	if serr := <-e.done; !errors.Is(serr, http.ErrServerClosed) && serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}
