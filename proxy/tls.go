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
	"sync"
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
	files  []fileStamp  // what the set was read from, for the watcher
	certs  []servedCert // one per listen.tls.certificates entry, in order
	kept   []servedCert // entries whose file now holds an expired certificate: the valid one read before stays
}

// servedCert is one configured certificate: where it came from and when it
// expires, for the log and the expiry metric.
type servedCert struct {
	field    string // listen.tls.certificates[i]
	file     string // cert_file as configured
	path     string // cert_file resolved
	notAfter time.Time
	// fileNotAfter is when the certificate in the file expires: notAfter,
	// except for an entry whose file went back to an expired one while
	// the valid one read before stays (certSet.kept).
	fileNotAfter time.Time
	pair         *tls.Certificate // what handshakes get
}

// expired reports whether c has expired at now.
func (c servedCert) expired(now time.Time) bool { return now.After(c.notAfter) }

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

	mu     sync.Mutex
	warned map[servedCert]bool // expired certificates logged already
}

// loadCertSet reads every certificate of t, with paths resolved against
// cfg's folder. Any failure fails the whole set: half a set would serve the
// default certificate for names that were meant to have their own.
//
// An expired certificate is not a failure by itself. Refusing it would
// take every name down (at a start) or keep stale files for every name (at
// a reload) because one name's renewal is late; it is served, and its
// clients see the same error as when it expired while running (HAProxy
// does the same). Only when it would replace a certificate in force
// (inForce, read from the same file) that is still valid (a renewal tool
// wrote an old file back) does that one stay, for that entry alone: the
// set lists it in kept, and the others' new files are taken.
func loadCertSet(cfg *configs.Config, t *configs.ListenTLS, inForce *certSet) (*certSet, error) {
	set := &certSet{byName: map[string]*tls.Certificate{}}
	now := time.Now()
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
		if pair.Leaf == nil { // LoadX509KeyPair parses it
			if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
				return nil, fmt.Errorf("proxy: %s: %w", field, err)
			}
		}
		sc := servedCert{field: field, file: c.CertFile, path: certPath, notAfter: pair.Leaf.NotAfter, fileNotAfter: pair.Leaf.NotAfter, pair: &pair}
		if prev, ok := inForce.valid(certPath, now); ok && sc.expired(now) {
			set.kept = append(set.kept, sc)
			sc.notAfter, sc.pair = prev.notAfter, prev.pair // with its staple
		} else if ocspPath != "" {
			if pair.OCSPStaple, err = os.ReadFile(ocspPath); err != nil {
				return nil, fmt.Errorf("proxy: %s.ocsp_file: %w", field, err)
			}
		}
		set.certs = append(set.certs, sc)
		names := c.ServerNames
		if len(names) == 0 {
			names = sc.pair.Leaf.DNSNames
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if _, dup := set.byName[n]; !dup { // the first certificate naming it wins
				set.byName[n] = sc.pair
			}
		}
		if i == 0 || c.Default { // the first is the default unless one says otherwise
			set.def = sc.pair
		}
	}
	if set.def == nil {
		return nil, errors.New("proxy: listen.tls.certificates: none configured")
	}
	return set, nil
}

// valid returns the certificate of s read from path, if s has one and it
// has not expired at now. A nil set has none.
func (s *certSet) valid(path string, now time.Time) (servedCert, bool) {
	if s == nil {
		return servedCert{}, false
	}
	for _, c := range s.certs {
		if c.path == path && !c.expired(now) {
			return c, true
		}
	}
	return servedCert{}, false
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

// load reads cfg's certificates as a new set, weighed against the set in
// force (see loadCertSet). It does not swap the set in; whoever does calls
// swappedIn.
func (cs *certStore) load(cfg *configs.Config) (*certSet, error) {
	return cs.loadOver(cfg, cs.cur.Load())
}

// loadOver is load weighed against inForce, the set the caller read.
func (cs *certStore) loadOver(cfg *configs.Config, inForce *certSet) (*certSet, error) {
	return loadCertSet(cfg, cfg.Listen.TLS, inForce)
}

// swappedIn logs what a set just put in force holds that needs a person:
// entries whose file went back to an expired certificate (the valid one
// stays), and expired certificates it serves (logExpired).
func (cs *certStore) swappedIn(set *certSet) {
	now := time.Now()
	for _, k := range set.kept {
		prev := set.certs[slices.IndexFunc(set.certs, func(c servedCert) bool { return c.field == k.field })]
		cs.log.Warn("certificate file holds an expired certificate; the valid one read from it before stays in force until it is renewed",
			"field", k.field, "file", k.path, "expired", k.notAfter.Format(time.RFC3339),
			"in_force_until", prev.notAfter.Format(time.RFC3339), "in_force_for", prev.notAfter.Sub(now).Round(time.Second).String())
	}
	cs.logExpired()
}

// logExpired logs, once each, the certificates of the set in force that
// have expired: when a set that holds one is swapped in, and when one
// expires while it is served (the watcher looks every tick). Logged after
// the swap, so that the line never names one a failed reload did not
// serve.
func (cs *certStore) logExpired() {
	now := time.Now()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.cur.Load().certs {
		c.pair = nil // the same certificate read again is the same one
		if c.expired(now) && !cs.warned[c] {
			if cs.warned == nil {
				cs.warned = map[servedCert]bool{}
			}
			cs.warned[c] = true
			cs.log.Error("serving an EXPIRED certificate: clients that check will refuse it; renew it", "field", c.field,
				"file", c.path, "expired", c.notAfter.Format(time.RFC3339))
		}
	}
}

// reload reads the certificates again and swaps them in; on failure the
// ones in force stay and the error says why.
func (cs *certStore) reload(cfg *configs.Config) error {
	set, err := cs.load(cfg)
	if err != nil {
		return err
	}
	cs.cur.Store(set)
	cs.swappedIn(set)
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
		// The set first, then the config: Reload stores the config before
		// the set, so a set read first is never newer than the config,
		// and a SIGHUP's set cannot be replaced by one built from the
		// config it replaced (an older set fails the CompareAndSwap).
		cs.logExpired() // one may have expired since the last tick
		inForce := cs.cur.Load()
		c := cfg()
		if c.Listen.TLS == nil || !inForce.changed() {
			continue
		}
		if failed != nil && !(&certSet{files: failed}).changed() {
			continue // still the files that failed; said so already
		}
		set, err := cs.loadOver(c, inForce)
		if err != nil {
			failed = stampsOf(inForce.files)
			cs.log.Error("certificate reload failed; the certificates in force stay", "error", err)
			continue
		}
		failed = nil
		if testHookCertsLoaded != nil {
			testHookCertsLoaded(cs)
		}
		// A SIGHUP may have swapped in another config's set while this
		// one loaded; it is newer and wins. Its files are looked at on
		// the next tick.
		if !cs.cur.CompareAndSwap(inForce, set) {
			continue
		}
		cs.log.Info("certificates reloaded: files changed", "certificates", len(c.Listen.TLS.Certificates))
		cs.swappedIn(set)
	}
}

// testHookCertsLoaded, if set, runs in watch between loading a set and
// swapping it in (tests).
var testHookCertsLoaded func(*certStore)

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
