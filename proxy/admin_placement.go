package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/socialroute/socialroute/buckets"
)

// placementRoutes registers the placement advisor's and moves' routes:
//
//	GET    /admin/placement/recommendations  the advisor's last evaluation: recommendations, candidates, moves
//	POST   /admin/placement/evaluate         run the advisor now and answer as the GET does
//	POST   /admin/buckets/{id}/move          {"to": "eu"}: start moving the bucket's home (copying)
//	POST   /admin/buckets/{id}/move/advance  next phase: copying -> fenced -> cutover -> done
//	DELETE /admin/buckets/{id}/move          abort a move no write has followed yet
//
// Every step is a new map version, spread to the fleet like a pin. A move
// starts on any node; advance and abort answer 409 except on the node that
// drives moves (the view's "driver").
func (a *Admin) placementRoutes(closed func(string, http.HandlerFunc)) {
	closed("GET /admin/placement/recommendations", a.recommendations)
	closed("POST /admin/placement/evaluate", a.evaluate)
	closed("POST /admin/buckets/{id}/move", a.moveStart)
	closed("POST /admin/buckets/{id}/move/advance", a.moveAdvance)
	closed("DELETE /admin/buckets/{id}/move", a.moveAbort)
}

// placementView is GET /admin/placement/recommendations.
type placementView struct {
	AutoApply bool `json:"auto_apply"`
	// Driver is the node that steps moves (advance, abort; see
	// placer.driver): the others refuse to.
	Driver string `json:"driver"`
	// EvaluatedAt is when the advisor last ran (absent before its first
	// run, placement.advise_every after the start).
	EvaluatedAt   *time.Time `json:"evaluated_at,omitempty"`
	MapVersion    uint64     `json:"map_version"`
	AccessReports int        `json:"access_reports"` // nodes whose counts were weighed
	MovesLastHour int        `json:"moves_in_last_hour"`
	MovesPerHour  int        `json:"moves_per_hour"`
	// Recommendations are the moves the advisor would start now.
	Recommendations []buckets.Recommendation `json:"recommendations"`
	// Candidates are buckets whose hysteresis window is running.
	Candidates []buckets.Candidate `json:"candidates"`
	Moves      []moveView          `json:"moves"`
}

// moveView is one bucket's move in progress.
type moveView struct {
	Bucket uint32            `json:"bucket"`
	From   string            `json:"from"`
	To     string            `json:"to"`
	Phase  buckets.MovePhase `json:"phase"`
	// Since is when this node first saw the phase.
	Since time.Time `json:"since"`
}

// placementView reports the advisor's last evaluation. It does not run the
// advisor: an evaluation moves the candidates' hysteresis windows (starts
// them, or drops one whose share dipped), so a view that ran it would make
// when a bucket moves depend on how often someone looks.
func (s *Server) placementView() placementView {
	p := s.placer
	snap := s.Placement().Load()
	driver, _ := p.driver()
	p.mu.Lock()
	defer p.mu.Unlock()
	v := placementView{
		AutoApply: p.opts.AutoApply, Driver: driver, MapVersion: snap.Version(),
		AccessReports: p.reports, MovesLastHour: p.advisor.MovesInLastHour(p.now()),
		MovesPerHour: p.advisor.Options().MovesPerHour, Recommendations: slices.Clone(p.recs),
		Candidates: p.advisor.Candidates(snap), Moves: []moveView{},
	}
	if !p.evaluated.IsZero() {
		at := p.evaluated
		v.EvaluatedAt = &at
	}
	if v.Recommendations == nil {
		v.Recommendations = []buckets.Recommendation{}
	}
	for b, m := range snap.Moves() {
		v.Moves = append(v.Moves, moveView{
			Bucket: b, From: snap.Topology().Continents[snap.Home(b)].Name, To: m.To, Phase: m.Phase,
			Since: p.seenPhase(b, snap),
		})
	}
	slices.SortFunc(v.Moves, func(x, y moveView) int { return int(x.Bucket) - int(y.Bucket) })
	return v
}

func (a *Admin) recommendations(w http.ResponseWriter, r *http.Request) {
	reply(w, r, a.s.placementView())
}

// evaluate is POST /admin/placement/evaluate: the advisor runs now, as on
// its placement.advise_every tick (without carrying out recommendations,
// even with auto_apply), and the answer is the view after it.
func (a *Admin) evaluate(w http.ResponseWriter, r *http.Request) {
	a.s.placer.evaluate()
	reply(w, r, a.s.placementView())
}

// moveRequest is the body of POST /admin/buckets/{id}/move.
type moveRequest struct {
	To *string `json:"to"`
}

// moveResult answers a move's start, step or abort.
type moveResult struct {
	changeResult
	Bucket uint32 `json:"bucket"`
	Home   string `json:"home"`
	// Phase is the move's phase now ("done" once the new home is the
	// home; empty after an abort).
	Phase buckets.MovePhase `json:"phase,omitempty"`
	To    string            `json:"to,omitempty"`
}

func (a *Admin) answerMove(w http.ResponseWriter, id uint32, snap *buckets.Snapshot, phase buckets.MovePhase) {
	res := moveResult{changeResult: changeResult{Changed: true, MapVersion: snap.Version()}, Bucket: id,
		Home: snap.Topology().Continents[snap.Home(id)].Name, Phase: phase}
	if m, ok := snap.Moving(id); ok {
		res.To, res.Phase = m.To, m.Phase
	}
	writeJSON(w, http.StatusOK, res)
}

// moveStart is POST /admin/buckets/{id}/move {"to": "eu"}.
func (a *Admin) moveStart(w http.ResponseWriter, r *http.Request) {
	snap := a.s.Placement().Load()
	id, ok := bucketID(w, r, snap)
	if !ok {
		return
	}
	var body moveRequest
	if !readJSON(w, r, &body) {
		return
	}
	if body.To == nil || *body.To == "" {
		writeError(w, http.StatusBadRequest, "to", `is required: {"to": "CONTINENT"}`)
		return
	}
	to := *body.To
	if _, known := snap.Topology().ContinentIndex(to); !known {
		var names []string
		for _, c := range snap.Topology().Continents {
			names = append(names, c.Name)
		}
		writeError(w, http.StatusBadRequest, "to", fmt.Sprintf("unknown continent %q (known: %s)", to, strings.Join(names, ", ")))
		return
	}
	next, err := a.s.StartMove(id, to)
	switch {
	case errors.Is(err, buckets.ErrMoving), errors.Is(err, buckets.ErrSameHome):
		writeError(w, http.StatusConflict, "to", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "to", err.Error())
		return
	}
	a.log.Info("admin: bucket move started", "bucket", id, "to", to, "map_version", next.Version(), "remote", r.RemoteAddr)
	a.answerMove(w, id, next, "")
}

// moveAdvance is POST /admin/buckets/{id}/move/advance. Leaving the fence
// answers 409 until every node holds it.
func (a *Admin) moveAdvance(w http.ResponseWriter, r *http.Request) {
	id, ok := bucketID(w, r, a.s.Placement().Load())
	if !ok {
		return
	}
	next, phase, err := a.s.AdvanceMove(id)
	switch {
	case errors.Is(err, buckets.ErrNotMoving), errors.Is(err, errFenceNotHeld), errors.Is(err, errMoveChanged), errors.Is(err, errNotDriver):
		writeError(w, http.StatusConflict, "id", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "id", err.Error())
		return
	}
	a.log.Info("admin: bucket move advanced", "bucket", id, "phase", phase, "map_version", next.Version(), "remote", r.RemoteAddr)
	a.answerMove(w, id, next, phase)
}

// moveAbort is DELETE /admin/buckets/{id}/move.
func (a *Admin) moveAbort(w http.ResponseWriter, r *http.Request) {
	id, ok := bucketID(w, r, a.s.Placement().Load())
	if !ok {
		return
	}
	next, err := a.s.AbortMove(id)
	switch {
	case errors.Is(err, buckets.ErrNotMoving), errors.Is(err, buckets.ErrPastFence), errors.Is(err, errNotDriver), errors.Is(err, errFenceNotHeld):
		writeError(w, http.StatusConflict, "id", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "id", err.Error())
		return
	}
	a.log.Info("admin: bucket move aborted", "bucket", id, "map_version", next.Version(), "remote", r.RemoteAddr)
	a.answerMove(w, id, next, "")
}
