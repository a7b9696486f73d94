package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// controlHelp is what GET / on the control endpoint answers.
const controlHelp = `socialroute simulated web tier: control endpoint

GET  /datacenters                          every datacenter's state, answers and cache counters (JSON)
POST /datacenters/{dc}/fail[?mode=crash]   crash it: listeners and connections close
POST /datacenters/{dc}/fail?mode=error     keep it reachable, answering 503 to everything
POST /datacenters/{dc}/slow?delay=50ms     add a delay to every answer (0 removes it)
POST /datacenters/{dc}/recover             undo fail and slow; the cache is kept
POST /reset[?caches=true]                  zero the counters (and empty the caches)
`

// controlServer is the web tier's control endpoint.
type controlServer struct {
	srv  *http.Server
	done chan struct{}
}

// ServeControl starts the web tier's control endpoint on addr (port 0
// picks a free one) and returns the address it listens on. It is a plain
// HTTP API for people and scripts (see controlHelp, or GET / on it) to
// fail, slow down and recover datacenters and read their counters; it
// stops with Close. A web tier has at most one.
func (w *WebTier) ServeControl(addr string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return "", errors.New("loadtest: web tier closed")
	}
	if w.control != nil {
		return "", errors.New("loadtest: control endpoint already running")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("loadtest: control endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(rw, controlHelp)
	})
	mux.HandleFunc("GET /datacenters", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, http.StatusOK, w.Stats())
	})
	mux.HandleFunc("POST /datacenters/{dc}/fail", func(rw http.ResponseWriter, r *http.Request) {
		mode, err := ParseFailMode(r.URL.Query().Get("mode"))
		if err == nil {
			err = w.FailWith(r.PathValue("dc"), mode)
		}
		w.answerControl(rw, r, err)
	})
	mux.HandleFunc("POST /datacenters/{dc}/slow", func(rw http.ResponseWriter, r *http.Request) {
		delay, err := time.ParseDuration(r.URL.Query().Get("delay"))
		if err != nil {
			err = fmt.Errorf("loadtest: delay: want a duration such as 50ms: %w", err)
		} else {
			err = w.Slow(r.PathValue("dc"), delay)
		}
		w.answerControl(rw, r, err)
	})
	mux.HandleFunc("POST /datacenters/{dc}/recover", func(rw http.ResponseWriter, r *http.Request) {
		w.answerControl(rw, r, w.Recover(r.PathValue("dc")))
	})
	mux.HandleFunc("POST /reset", func(rw http.ResponseWriter, r *http.Request) {
		w.ResetStats()
		if r.URL.Query().Get("caches") == "true" {
			w.ResetCaches()
		}
		writeJSON(rw, http.StatusOK, w.Stats())
	})
	c := &controlServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(c.done)
		_ = c.srv.Serve(ln)
	}()
	w.control = c
	return ln.Addr().String(), nil
}

// answerControl answers a control request: the datacenter's new state, or
// the error (404 for an unknown datacenter, 400 otherwise).
func (w *WebTier) answerControl(rw http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrUnknownDatacenter):
		writeJSON(rw, http.StatusNotFound, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(rw, http.StatusBadRequest, map[string]string{"error": err.Error()})
	default:
		for _, s := range w.Stats() {
			if s.Name == r.PathValue("dc") {
				writeJSON(rw, http.StatusOK, s)
				return
			}
		}
	}
}

func writeJSON(rw http.ResponseWriter, code int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	enc := json.NewEncoder(rw)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away
}

// close stops the endpoint and its connections.
func (c *controlServer) close() {
	_ = c.srv.Close()
	<-c.done
}
