package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/socialroute/socialroute/configs"
)

// certSet is one immutable generation of the listener's certificates:
// what a handshake reads. A reload builds a new one and swaps it in through
// certStore.cur; connections already up keep the certificate they
// negotiated.
type certSet struct {
	byName map[string]*tls.Certificate // lower-case SNI name or "*.rest"
	def    *tls.Certificate
	files  []fileStamp // what the set was read from, for the watcher
}

// fileStamp identifies one version of a file cheaply: a change of either
// field means the file was rewritten.
type fileStamp struct {
	path string
	mod  time.Time
	size int64
}

// certStore holds the certificates in force for the listener.
type certStore struct {
	cur atomic.Pointer[certSet]
	log *slog.Logger
}

// loadCertSet reads every certificate of t, with paths resolved against
// cfg's folder. Any failure fails the whole set: half a set would serve the
// default certificate for names that were meant to have their own.
func loadCertSet(cfg *configs.Config, t *configs.ListenTLS) (*certSet, error) {
	set := &certSet{byName: map[string]*tls.Certificate{}}
	for i, c := range t.Certificates {
		field := fmt.Sprintf("listen.tls.certificates[%d]", i)
		certPath, keyPath, ocspPath := cfg.FilePath(c.CertFile), cfg.FilePath(c.KeyFile), cfg.FilePath(c.OCSPFile)
		// Stamp before reading: a file rewritten while we read shows up
		// as changed at the next look.
		for _, p := range []string{certPath, keyPath, ocspPath} {
			if p == "" {
				continue
			}
			st, err := os.Stat(p)
			if err != nil {
				return nil, fmt.Errorf("proxy: %s: %w", field, err)
			}
			set.files = append(set.files, fileStamp{path: p, mod: st.ModTime(), size: st.Size()})
		}
		pair, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return nil, fmt.Errorf("proxy: %s: %w", field, err)
		}
		leaf := pair.Leaf // parsed by LoadX509KeyPair
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
				return nil, fmt.Errorf("proxy: %s: %w", field, err)
			}
			pair.Leaf = leaf
		}
		if now := time.Now(); now.After(leaf.NotAfter) {
			return nil, fmt.Errorf("proxy: %s: certificate %s expired on %s", field, certPath, leaf.NotAfter.Format(time.RFC3339))
		}
		if ocspPath != "" {
			if pair.OCSPStaple, err = os.ReadFile(ocspPath); err != nil {
				return nil, fmt.Errorf("proxy: %s.ocsp_file: %w", field, err)
			}
		}
		names := c.ServerNames
		if len(names) == 0 {
			names = leaf.DNSNames
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if _, dup := set.byName[n]; !dup { // the first certificate naming it wins
				set.byName[n] = &pair
			}
		}
		if i == 0 || c.Default { // the first is the default unless one says otherwise
			set.def = &pair
		}
	}
	if set.def == nil {
		return nil, errors.New("proxy: listen.tls.certificates: none configured")
	}
	return set, nil
}

// get chooses the certificate for a handshake: the exact server name, then
// a wildcard for its first label, then the default.
func (s *certSet) get(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c, ok := s.byName[name]; ok {
			return c
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c, ok := s.byName["*"+name[i:]]; ok {
				return c
			}
		}
	}
	return s.def
}

// changed reports whether any file the set was read from differs now.
func (s *certSet) changed() bool {
	for _, f := range s.files {
		st, err := os.Stat(f.path)
		if err != nil || !st.ModTime().Equal(f.mod) || st.Size() != f.size {
			return true
		}
	}
	return false
}

// serverTLSConfig is the listener's tls.Config. Certificates come from
// store at each handshake, so swapping the store's set changes what new
// connections get without touching the listener or open connections.
// Session tickets (resumption) are on, with keys crypto/tls rotates itself.
func serverTLSConfig(t *configs.ListenTLS, store *certStore) *tls.Config {
	minVersion := uint16(tls.VersionTLS12)
	if t.MinVersion == configs.TLS13 {
		minVersion = tls.VersionTLS13
	}
	return &tls.Config{
		MinVersion: minVersion,
		// fasthttp speaks HTTP/1.1 only.
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return store.cur.Load().get(hello), nil
		},
	}
}

// reload reads the certificates again and swaps them in; on failure the
// ones in force stay and the error says why.
func (cs *certStore) reload(cfg *configs.Config) error {
	set, err := loadCertSet(cfg, cfg.Listen.TLS)
	if err != nil {
		return err
	}
	cs.cur.Store(set)
	return nil
}

// watch reloads the certificates whenever their files change, until ctx
// ends. cfg returns the configuration in force (a SIGHUP may change the
// file list). A set that fails to load is logged once per change of the
// files and the old one keeps serving.
func (cs *certStore) watch(ctx context.Context, every time.Duration, cfg func() *configs.Config) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var failed []fileStamp // the files as they were at the last failed load
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c := cfg()
		if c.Listen.TLS == nil || !cs.cur.Load().changed() {
			continue
		}
		if failed != nil && !(&certSet{files: failed}).changed() {
			continue // still the files that failed; said so already
		}
		set, err := loadCertSet(c, c.Listen.TLS)
		if err != nil {
			failed = stampsOf(cs.cur.Load().files)
			cs.log.Error("certificate reload failed; the certificates in force stay", "error", err)
			continue
		}
		failed = nil
		cs.cur.Store(set)
		cs.log.Info("certificates reloaded: files changed", "certificates", len(c.Listen.TLS.Certificates))
	}
}

// stampsOf stamps the files of a set as they are now.
func stampsOf(files []fileStamp) []fileStamp {
	out := slices.Clone(files)
	for i := range out {
		if st, err := os.Stat(out[i].path); err == nil {
			out[i].mod, out[i].size = st.ModTime(), st.Size()
		} else {
			out[i].mod, out[i].size = time.Time{}, -1
		}
	}
	return out
}
