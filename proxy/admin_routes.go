package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/socialroute/socialroute/buckets"
	"github.com/socialroute/socialroute/hashing"
	"github.com/socialroute/socialroute/health"
	"github.com/valyala/fasthttp"
)

// Limits on what the admin routes read from a request.
const (
	maxAdminBody = 64 << 10 // a pin is a few bytes of JSON
	maxAdminPath = 8 << 10
)

// ExplainUser explains where a request of user to path (with an optional
// ?query) would go: user is put in every header and cookie the routing
// rules read, and the rules run in their order, so a path rule (e.g.
// /accounts/{key}) can win over the user's own id, as in
// `socialroute route`. GET /admin/route shows it.
func (s *Server) ExplainUser(user, path string) Explanation {
	var req fasthttp.Request
	req.SetRequestURI(path)
	if user != "" {
		for _, r := range s.cur.Load().cfg.Routing.Rules {
			if r.Header != "" {
				req.Header.Set(r.Header, user)
			}
			if r.Cookie != "" {
				req.Header.SetCookie(r.Cookie, user)
			}
		}
	}
	return s.Explain(&req)
}

// route is GET /admin/route?user=U&path=P.
func (a *Admin) route(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	user, path := q.Get("user"), q.Get("path")
	switch {
	case user == "" && path == "":
		writeError(w, http.StatusBadRequest, "user", "give user=U (the user id), path=P (a request path), or both")
		return
	case strings.ContainsFunc(user, func(c rune) bool { return c < ' ' || c == 0x7f }) || len(user) > maxKeyLengthLimit:
		writeError(w, http.StatusBadRequest, "user", fmt.Sprintf("must be at most %d characters, without control characters", maxKeyLengthLimit))
		return
	case path != "" && !strings.HasPrefix(path, "/"):
		writeError(w, http.StatusBadRequest, "path", fmt.Sprintf("must start with \"/\", got %q", path))
		return
	case strings.ContainsFunc(path, func(c rune) bool { return c <= ' ' || c == 0x7f }) || len(path) > maxAdminPath:
		writeError(w, http.StatusBadRequest, "path", fmt.Sprintf("must be at most %d characters, without spaces or control characters", maxAdminPath))
		return
	}
	if path == "" {
		path = "/"
	}
	reply(w, r, a.s.ExplainUser(user, path))
}

// maxKeyLengthLimit bounds a user id given to /admin/route, like
// routing.max_key_length's own limit.
const maxKeyLengthLimit = 4096

func (a *Admin) bucketList(w http.ResponseWriter, r *http.Request) {
	reply(w, r, a.s.look(a.cluster).buckets())
}

// bucketID reads the {id} path value of r as a bucket of snap, or answers
// 400 (not a number) or 404 (no such bucket) naming "id".
func bucketID(w http.ResponseWriter, r *http.Request, snap *buckets.Snapshot) (uint32, bool) {
	raw := r.PathValue("id")
	id, err := strconv.ParseUint(raw, 10, 32)
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, "id", fmt.Sprintf("want a bucket number, got %q", raw))
		return 0, false
	case id >= uint64(snap.Buckets()):
		writeError(w, http.StatusNotFound, "id", fmt.Sprintf("no bucket %d: buckets are 0-%d", id, snap.Buckets()-1))
		return 0, false
	}
	return uint32(id), true
}

func (a *Admin) bucketGet(w http.ResponseWriter, r *http.Request) {
	v := a.s.look(a.cluster)
	id, ok := bucketID(w, r, v.snap)
	if !ok {
		return
	}
	reply(w, r, v.bucket(id))
}

// changeResult is the answer to a pin, unpin, drain or undrain.
type changeResult struct {
	// Changed is false when the map already said so: nothing was
	// published and the version did not move.
	Changed    bool   `json:"changed"`
	MapVersion uint64 `json:"map_version"`
	Warning    string `json:"warning,omitempty"`
}

// errNoChange aborts a ChangePlacement that would change nothing.
var errNoChange = errors.New("proxy: no change")

// change applies fn through ChangePlacement and answers what happened: 200
// with the new version, 200 unchanged, or 400 naming field if the map
// refuses it.
func (a *Admin) change(w http.ResponseWriter, r *http.Request, field string, fn func(*buckets.Overrides) error, logMsg string, logArgs ...any) (changeResult, bool) {
	snap, err := a.s.ChangePlacement(fn)
	switch {
	case errors.Is(err, errNoChange):
		return changeResult{MapVersion: a.s.Placement().Load().Version()}, true
	case err != nil:
		writeError(w, http.StatusBadRequest, field, err.Error())
		return changeResult{}, false
	}
	a.log.Info("admin: "+logMsg, append(logArgs, "map_version", snap.Version(), "remote", r.RemoteAddr)...)
	return changeResult{Changed: true, MapVersion: snap.Version()}, true
}

// pinRequest is the body of POST /admin/buckets/{id}/pin.
type pinRequest struct {
	Datacenter *string `json:"datacenter"`
}

// readJSON decodes r's body into v strictly (no unknown fields, one
// value), or answers 400 naming the field at fault.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("one JSON object expected, found more after it")
	}
	if err == nil {
		return true
	}
	var typeErr *json.UnmarshalTypeError
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		writeError(w, http.StatusBadRequest, typeErr.Field, fmt.Sprintf("want a JSON %s, got %s", typeErr.Type, typeErr.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		writeError(w, http.StatusBadRequest, name, "unknown field")
	case errors.As(err, &maxErr):
		writeError(w, http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("larger than %d bytes", maxErr.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "body", "empty; want a JSON object")
	default:
		writeError(w, http.StatusBadRequest, "body", "not a JSON object: "+err.Error())
	}
	return false
}

// datacenterIndex finds name in snap's topology, or answers code naming
// field.
func datacenterIndex(w http.ResponseWriter, snap *buckets.Snapshot, name, field string, code int) (int, bool) {
	if name == "" {
		writeError(w, http.StatusBadRequest, field, "is required: name a datacenter")
		return 0, false
	}
	i, ok := snap.Topology().DatacenterIndex(name)
	if !ok {
		var names []string
		for _, d := range snap.Topology().Datacenters {
			names = append(names, d.Name)
		}
		writeError(w, code, field, fmt.Sprintf("unknown datacenter %q (known: %s)", name, strings.Join(names, ", ")))
		return 0, false
	}
	return i, true
}

// bucketPin is POST /admin/buckets/{id}/pin {"datacenter": "us-west"}: the
// datacenter goes first on the bucket's list, on every node.
func (a *Admin) bucketPin(w http.ResponseWriter, r *http.Request) {
	snap := a.s.Placement().Load()
	id, ok := bucketID(w, r, snap)
	if !ok {
		return
	}
	var body pinRequest
	if !readJSON(w, r, &body) {
		return
	}
	if body.Datacenter == nil {
		writeError(w, http.StatusBadRequest, "datacenter", `is required: {"datacenter": "NAME"}`)
		return
	}
	dc := *body.Datacenter
	if _, ok := datacenterIndex(w, snap, dc, "datacenter", http.StatusBadRequest); !ok {
		return
	}
	res, ok := a.change(w, r, "datacenter", func(o *buckets.Overrides) error {
		if o.Pins[id] == dc {
			return errNoChange
		}
		o.Pins[id] = dc
		return nil
	}, "bucket pinned", "bucket", id, "datacenter", dc)
	if !ok {
		return
	}
	a.answerBucket(w, r, id, res)
}

// bucketUnpin is DELETE /admin/buckets/{id}/pin.
func (a *Admin) bucketUnpin(w http.ResponseWriter, r *http.Request) {
	id, ok := bucketID(w, r, a.s.Placement().Load())
	if !ok {
		return
	}
	res, ok := a.change(w, r, "id", func(o *buckets.Overrides) error {
		if _, pinned := o.Pins[id]; !pinned {
			return errNoChange
		}
		delete(o.Pins, id)
		return nil
	}, "bucket unpinned", "bucket", id)
	if !ok {
		return
	}
	a.answerBucket(w, r, id, res)
}

// answerBucket answers a pin change with the bucket's placement after it.
func (a *Admin) answerBucket(w http.ResponseWriter, r *http.Request, id uint32, res changeResult) {
	writeJSON(w, http.StatusOK, struct {
		changeResult
		Bucket BucketView `json:"bucket"`
	}{res, a.s.look(a.cluster).bucket(id)})
}

func (a *Admin) datacenterList(w http.ResponseWriter, r *http.Request) {
	reply(w, r, a.datacentersView(a.s.look(a.cluster)))
}

func (a *Admin) datacentersView(v *view) DatacentersView {
	cfg := v.st.cfg
	out := DatacentersView{
		Node: cfg.Node.Name, Datacenter: cfg.Node.Datacenter,
		MapVersion: v.snap.Version(), MapOrigin: v.snap.Origin(), Buckets: v.snap.Buckets(),
		UnservedBuckets: v.counts.unserved, DrainRamp: v.st.router.drainRamp.String(),
		Gossip: a.cluster != nil || v.gossip != nil, Members: len(v.members),
		Datacenters: v.datacenters(),
	}
	for _, c := range v.snap.Topology().Continents {
		out.Continents = append(out.Continents, c.Name)
	}
	out.Ready, out.NotReady = a.Ready()
	return out
}

func (a *Admin) datacenterGet(w http.ResponseWriter, r *http.Request) {
	v := a.s.look(a.cluster)
	i, ok := datacenterIndex(w, v.snap, r.PathValue("dc"), "dc", http.StatusNotFound)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, v.datacenters()[i])
}

// drain is POST /admin/datacenters/{dc}/drain (on) or /undrain (!on). The
// datacenter stays on every list, but its traffic ramps off (or back) over
// routing.drain_ramp, from now, on every node.
func (a *Admin) drain(on bool) http.HandlerFunc {
	verb := map[bool]string{true: "datacenter drained", false: "datacenter undrained"}[on]
	return func(w http.ResponseWriter, r *http.Request) {
		dc := r.PathValue("dc")
		if _, ok := datacenterIndex(w, a.s.Placement().Load(), dc, "dc", http.StatusNotFound); !ok {
			return
		}
		res, ok := a.change(w, r, "dc", func(o *buckets.Overrides) error {
			if o.Drained[dc] == on {
				return errNoChange
			}
			if on {
				o.Drained[dc] = true
			} else {
				delete(o.Drained, dc)
			}
			return nil
		}, verb, "datacenter", dc)
		if !ok {
			return
		}
		v := a.s.look(a.cluster)
		i, _ := v.snap.Topology().DatacenterIndex(dc)
		d := v.datacenters()[i]
		if on && res.Changed {
			res.Warning = continentWarning(v, d.Continent)
		}
		writeJSON(w, http.StatusOK, struct {
			changeResult
			DrainRamp  string         `json:"drain_ramp"`
			Datacenter DatacenterView `json:"datacenter"`
		}{res, v.st.router.drainRamp.String(), d})
	}
}

// continentWarning says when a drain left no usable datacenter on a
// continent: its buckets then fail over (failover_to) or get 503.
func continentWarning(v *view, continent string) string {
	for i, d := range v.snap.Topology().Datacenters {
		if d.Continent == continent && v.dcs[i].usable() {
			return ""
		}
	}
	return fmt.Sprintf("no datacenter of continent %s is usable now: its buckets fail over to other continents where failover_to allows, or get 503 (%d buckets unserved)", continent, v.counts.unserved)
}

func (a *Admin) members(w http.ResponseWriter, r *http.Request) {
	cfg := a.s.cur.Load().cfg
	out := struct {
		Gossip  bool            `json:"gossip"`
		Node    string          `json:"node"`
		Members []health.Member `json:"members"`
	}{Node: cfg.Node.Name, Members: []health.Member{}}
	if a.cluster != nil {
		out.Gossip = true
		out.Members = a.cluster.Members()
	}
	if wantsText(r) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !out.Gossip {
			fmt.Fprintln(w, "gossip is off: this node works alone")
			return
		}
		membersText(w, out.Members) //nolint:errcheck // the client went away
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// hot is GET /admin/hot: the static hot list in force, what this node's
// detector holds hot now, and (with gossip) what the fleet spreads.
func (a *Admin) hot(w http.ResponseWriter, r *http.Request) {
	static, detected := a.s.HotKeys()
	out := struct {
		Static   []hashing.HotKey      `json:"static"`
		Detected []hashing.DetectedKey `json:"detected"`
		Fleet    []health.HotHash      `json:"fleet,omitempty"`
	}{static, detected, nil}
	if out.Static == nil {
		out.Static = []hashing.HotKey{}
	}
	if out.Detected == nil {
		out.Detected = []hashing.DetectedKey{}
	}
	if f, ok := a.cluster.(interface{ FleetHot() []health.HotHash }); ok {
		out.Fleet = f.FleetHot()
	}
	writeJSON(w, http.StatusOK, out)
}

// reloadConfig is POST /admin/reload: what SIGHUP does.
func (a *Admin) reloadConfig(w http.ResponseWriter, r *http.Request) {
	if a.reload == nil {
		writeError(w, http.StatusNotImplemented, "", "reload is not available on this node")
		return
	}
	a.log.Info("admin: reload requested", "remote", r.RemoteAddr)
	if err := a.reload(); err != nil {
		if errors.Is(err, ErrShuttingDown) {
			// Refused for the node's sake (SIGTERM came while the reload
			// waited), not the file's: a deploy script must not roll back.
			writeError(w, http.StatusServiceUnavailable, "node", "draining: this node is shutting down and took no reload; send it to another node")
			return
		}
		// The file on disk is what is at fault, not this node.
		writeError(w, http.StatusUnprocessableEntity, "config", "reload failed; the running configuration stays in force: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Reloaded   bool   `json:"reloaded"`
		MapVersion uint64 `json:"map_version"`
	}{true, a.s.Placement().Load().Version()})
}
