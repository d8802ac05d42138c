package server

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"outpost/kube"
	"outpost/protocol"
	"outpost/server/store"
)

// agentImage is the agent image the docker run line starts.
const agentImage = "outpost/agent:local"

// dockerRun is the command that starts the agent for an environment of mode
// with edgeKey. The host's root is mounted at /host: edge jobs run there,
// and the agent API browses the volumes under it. EDGE_INSECURE_POLL=1 lets the agent accept the server's
// self-signed certificate; an operator whose server has a real certificate
// drops it (see README).
func dockerRun(mode, edgeKey string) string {
	var b strings.Builder
	b.WriteString("docker run -d --name outpost-agent --restart always" +
		" -v /var/run/docker.sock:/var/run/docker.sock -v /:/host -v outpost_agent_data:/data -e EDGE=1")
	if mode == store.ModeAsync {
		b.WriteString(" -e EDGE_ASYNC=1")
	}
	b.WriteString(" -e EDGE_KEY=" + edgeKey + " -e EDGE_INSECURE_POLL=1 " + agentImage)
	return b.String()
}

// createdEnvironment is the answer of POST /api/environments: the docker
// run line, or for a Kubernetes environment the manifest to apply.
type createdEnvironment struct {
	environmentView
	DockerRun          string `json:"dockerRun,omitempty"`
	KubernetesManifest string `json:"kubernetesManifest,omitempty"`
	// Warnings say why the device may not reach the server with this key.
	Warnings []string `json:"warnings,omitempty"`
}

// environmentPatch is the body of PATCH /api/environments/{id}; a field left
// out is left as it is.
type environmentPatch struct {
	Name *string `json:"name"`
	// Frequencies replaces the override; a zero field means the global
	// default, all zero (or {}) removes the override.
	Frequencies *protocol.Frequencies `json:"frequencies"`
	TagIDs      *[]uint64             `json:"tagIds"`
	GroupID     *uint64               `json:"groupId"` // 0: no group
	// Mode switches the environment between async and standard; the
	// device learns it in its next answer and switches too.
	Mode *string `json:"mode"`
}

func (s *Server) handlePatchEnvironment(w http.ResponseWriter, r *http.Request, ss session) {
	var req environmentPatch
	id, ok := idAndBody(w, r, "environment", &req)
	if !ok {
		return
	}
	e, problems, err := s.patchEnvironment(r.RemoteAddr, ss.user, id, req)
	if refuse(w, problems) || s.writeFailed(w, err, "update", "environment", id, "id", id) {
		return
	}
	writeJSON(w, http.StatusOK, s.view(e, s.edgeSettings()))
}

// patchEnvironment changes what req sets of environment id for user (from
// remote); problems says what was wrong with req, and nothing changes then.
func (s *Server) patchEnvironment(remote, user string, id uint64, req environmentPatch) (*store.Environment, []string, error) {
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()

	var problems, changes []string
	if req.Name != nil {
		n := strings.TrimSpace(*req.Name)
		if n == "" || len(n) > 128 {
			problems = append(problems, "name: required, at most 128 characters")
		} else if p := plainText("name", n); p != "" {
			problems = append(problems, p)
		}
		req.Name = &n
		changes = append(changes, fmt.Sprintf("name %q", n))
	}
	if fr := req.Frequencies; fr != nil {
		if fr.Ping > maxFrequency || fr.Snapshot > maxFrequency || fr.Command > maxFrequency {
			problems = append(problems, fmt.Sprintf("frequencies %d/%d/%d: each at most %d seconds (a week); 0 means the global default", fr.Ping, fr.Snapshot, fr.Command, maxFrequency))
		}
		changes = append(changes, fmt.Sprintf("frequencies %d/%d/%d", fr.Ping, fr.Snapshot, fr.Command))
	}
	if req.Mode != nil {
		if *req.Mode != store.ModeAsync && *req.Mode != store.ModeStandard {
			problems = append(problems, fmt.Sprintf("mode %q: want async or standard", *req.Mode))
		}
		changes = append(changes, "mode "+*req.Mode)
	}
	f.mu.RLock()
	if req.TagIDs != nil {
		problems = append(problems, unknownIDs("tagIds", "tags", *req.TagIDs, f.tags)...)
		changes = append(changes, fmt.Sprintf("tags %v", *req.TagIDs))
	}
	if req.GroupID != nil {
		if _, ok := f.envGroups[*req.GroupID]; *req.GroupID != 0 && !ok {
			problems = append(problems, fmt.Sprintf("groupId %d: no such environment group", *req.GroupID))
		}
		changes = append(changes, fmt.Sprintf("group %d", *req.GroupID))
	}
	f.mu.RUnlock()
	if len(problems) > 0 {
		return nil, problems, nil
	}
	e, err := s.store.UpdateEnvironment(id, func(e *store.Environment) error {
		if req.Name != nil {
			e.Name = *req.Name
		}
		if fr := req.Frequencies; fr != nil {
			e.Frequencies = fr
			if *fr == (protocol.Frequencies{}) {
				e.Frequencies = nil
			}
		}
		if req.TagIDs != nil {
			e.TagIDs = sortedIDs(*req.TagIDs)
		}
		if req.GroupID != nil {
			e.GroupID = *req.GroupID
		}
		if req.Mode != nil {
			e.Mode = *req.Mode
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	f.putEnv(e)
	if e.Mode != store.ModeStandard {
		s.tunnels.drop(id) // an async device has no tunnel
	}
	s.auditAt(remote, user, auditEnvUpdate, envTarget(id), strings.Join(changes, ", "))
	return e, nil, nil
}

// handleDeleteEnvironment deletes an environment with its snapshot and
// history. Its device is refused from then on (unknown environment).
func (s *Server) handleDeleteEnvironment(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "environment")
	if !ok {
		return
	}
	if s.writeFailed(w, s.deleteEnvironment(r.RemoteAddr, ss.user, id), "delete", "environment", id, "id", id) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteEnvironment deletes environment id with its snapshot, history,
// commands and stack and job records, for user (from remote). Its device
// is refused from then on.
func (s *Server) deleteEnvironment(remote, user string, id uint64) error {
	f := s.fleetIndex()
	f.changeMu.Lock()
	defer f.changeMu.Unlock()
	if err := s.store.DeleteEnvironment(id); err != nil {
		return err
	}
	f.removeEnv(id)
	s.pace.Forget(id)
	s.tunnels.drop(id) // the device is no longer ours to reach
	s.log.Info("environment deleted", "id", id)
	s.auditAt(remote, user, auditEnvDelete, envTarget(id), "with its snapshot, history, commands and edge stack and job records")
	return nil
}

// issued is the answer that hands out e's edge key with its enrollment
// secret, and the docker run line that carries it: the only time the
// secret is shown.
func (s *Server) issued(e *store.Environment, secret string) createdEnvironment {
	v := s.view(e, s.edgeSettings())
	v.EdgeKey, v.Enrollment = s.edgeKey(e.ID, secret), enrollmentPending
	ans := createdEnvironment{environmentView: v}
	if e.Platform == kube.PlatformKubernetes {
		ans.KubernetesManifest = kube.Manifest(kube.Install{EdgeKey: v.EdgeKey, Async: e.Mode == store.ModeAsync, Image: agentImage, InsecurePoll: true})
	} else {
		ans.DockerRun = dockerRun(e.Mode, v.EdgeKey)
	}
	if loopbackURL(s.url) {
		ans.Warnings = append(ans.Warnings, loopbackWarning(s.url))
	}
	return ans
}

// handleReissueEdgeKey serves POST /api/environments/{id}/edge-key: a new
// edge key with a new enrollment secret, which revokes the old one. A device
// bound to the environment is unbound and refused from then on; the device
// the new key is installed on binds at its first contact, as a new one.
func (s *Server) handleReissueEdgeKey(w http.ResponseWriter, r *http.Request, ss session) {
	id, ok := idFromPath(w, r, "environment")
	if !ok {
		return
	}
	secret, enroll := newEnrollSecret()
	var old store.Environment
	e, err := s.store.UpdateEnvironment(id, func(e *store.Environment) error {
		old = *e
		e.EnrollKey = enroll
		e.EdgeID, e.PublicKey, e.DeviceDH, e.LastCounter = "", nil, nil, 0
		return nil
	})
	if s.writeFailed(w, err, "update", "environment", id, "id", id) {
		return
	}
	s.ids.forget(id)
	if old.EdgeID != "" {
		s.room.Unbound(keyFingerprint(old.PublicKey), old.EdgeID, id)
		s.tunnels.drop(id)
	}
	s.indexEnvironment(e)
	detail := "new enrollment secret; the old key is revoked"
	if old.EdgeID != "" {
		detail += fmt.Sprintf("; unbound from edge ID %s, key %s", old.EdgeID, keyFingerprint(old.PublicKey))
	}
	s.log.Info("edge key re-issued", "id", id, "unbound", old.EdgeID)
	s.audit(r, ss.user, auditEdgeKeyReissue, envTarget(id), detail)
	writeJSON(w, http.StatusOK, s.issued(e, secret))
}

// Environment list bounds.
const (
	listDefaultLimit = 100
	listMaxLimit     = 1000
)

// environmentPage is the answer of GET /api/environments.
type environmentPage struct {
	Items []environmentView `json:"items"`
	Total int               `json:"total"` // matching the filters, all pages
}

// listQuery is GET /api/environments' query, parsed.
type listQuery struct {
	name          string // lower-case substring
	status        string
	group, tag    uint64
	hasGroup      bool
	hasTag        bool
	trusted       *bool
	mode          string
	sort          string // id, name, lastCheckIn
	desc          bool
	limit, offset int
	settings      EdgeSettings
	now           int64
	lastCheckIn   func(uint64) (int64, bool)
}

func parseListQuery(r *http.Request) (listQuery, []string) {
	v := r.URL.Query()
	q := listQuery{name: strings.ToLower(strings.TrimSpace(v.Get("name"))), sort: "id", limit: listDefaultLimit}
	var problems []string
	uintParam := func(name string) (uint64, bool) {
		s := v.Get(name)
		if s == "" {
			return 0, false
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %q: want an id", name, s))
		}
		return n, true
	}
	intParam := func(name string, lo, hi int, dst *int) {
		s := v.Get(name)
		if s == "" {
			return
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			problems = append(problems, fmt.Sprintf("%s %q: want an integer from %d to %d", name, s, lo, hi))
			return
		}
		*dst = n
	}
	q.group, q.hasGroup = uintParam("group")
	q.tag, q.hasTag = uintParam("tag")
	switch s := v.Get("status"); s {
	case "", "online", "offline", "never":
		q.status = s
	default:
		problems = append(problems, fmt.Sprintf("status %q: want online, offline or never", s))
	}
	switch s := v.Get("trusted"); s {
	case "":
	case "true", "false":
		t := s == "true"
		q.trusted = &t
	default:
		problems = append(problems, fmt.Sprintf("trusted %q: want true or false", s))
	}
	switch s := v.Get("mode"); s {
	case "", store.ModeAsync, store.ModeStandard:
		q.mode = s
	default:
		problems = append(problems, fmt.Sprintf("mode %q: want async or standard", s))
	}
	switch s := v.Get("sort"); s {
	case "", "id":
	case "name", "lastCheckIn":
		q.sort = s
	default:
		problems = append(problems, fmt.Sprintf("sort %q: want id, name or lastCheckIn", s))
	}
	switch s := v.Get("order"); s {
	case "", "asc":
	case "desc":
		q.desc = true
	default:
		problems = append(problems, fmt.Sprintf("order %q: want asc or desc", s))
	}
	intParam("limit", 1, listMaxLimit, &q.limit)
	intParam("offset", 0, 1<<31-1, &q.offset)
	return q, problems
}

// last is an environment's live last check-in.
func (q *listQuery) last(sum *envSummary) int64 {
	if t, ok := q.lastCheckIn(sum.id); ok {
		return t
	}
	return sum.lastCheckIn
}

// keep reports whether sum passes the filters.
func (q *listQuery) keep(sum *envSummary) bool {
	switch {
	case q.mode != "" && sum.mode != q.mode,
		q.trusted != nil && sum.trusted != *q.trusted,
		q.hasGroup && sum.group != q.group,
		q.name != "" && !strings.Contains(sum.nameLower, q.name):
		return false
	}
	if q.hasTag {
		if _, ok := slices.BinarySearch(sum.tags, q.tag); !ok {
			return false
		}
	}
	if q.status != "" {
		f := effectiveFrequencies(q.settings, sum.mode, sum.freq)
		if onlineStatus(q.last(sum), f, q.now) != q.status {
			return false
		}
	}
	return true
}

// nameOrderLocked returns the index sorted by name, rebuilding it when a
// create, rename or delete made it stale. f.mu must be held for writing.
func (f *fleet) nameOrderLocked() []*envSummary {
	if f.byName == nil {
		f.byName = slices.Clone(f.byID)
		slices.SortFunc(f.byName, func(a, b *envSummary) int {
			return cmp.Or(strings.Compare(a.nameLower, b.nameLower), cmp.Compare(a.id, b.id))
		})
	}
	return f.byName
}

// page filters, sorts and cuts the index, returning the IDs of one page and
// the number of matches. A pass over memory: no store read.
func (f *fleet) page(q *listQuery) ([]uint64, int) {
	order := func() []*envSummary { return f.byID }
	if q.sort == "name" {
		f.mu.RLock()
		stale := f.byName == nil
		f.mu.RUnlock()
		if stale {
			f.mu.Lock()
			f.nameOrderLocked()
			f.mu.Unlock()
		}
		order = func() []*envSummary {
			if f.byName == nil { // changed between the two locks
				return f.byID
			}
			return f.byName
		}
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	all := order()
	var (
		ids   []uint64
		total int
	)
	if q.sort == "lastCheckIn" {
		type hit struct {
			id   uint64
			last int64
		}
		var hits []hit
		for _, sum := range all {
			if q.keep(sum) {
				hits = append(hits, hit{sum.id, q.last(sum)})
			}
		}
		slices.SortFunc(hits, func(a, b hit) int { return cmp.Or(cmp.Compare(a.last, b.last), cmp.Compare(a.id, b.id)) })
		if q.desc {
			slices.Reverse(hits)
		}
		total = len(hits)
		from := min(q.offset, total)
		for _, h := range hits[from : from+min(q.limit, total-from)] {
			ids = append(ids, h.id)
		}
		return ids, total
	}
	visit := func(sum *envSummary) {
		if !q.keep(sum) {
			return
		}
		if total >= q.offset && len(ids) < q.limit {
			ids = append(ids, sum.id)
		}
		total++
	}
	if q.desc {
		for i := len(all) - 1; i >= 0; i-- {
			visit(all[i])
		}
	} else {
		for _, sum := range all {
			visit(sum)
		}
	}
	return ids, total
}

// statusCounts counts every environment of the index by status, with q's
// settings, clock and check-ins (not its filters).
func (f *fleet) statusCounts(q *listQuery) map[string]int {
	out := map[string]int{"online": 0, "offline": 0, "never": 0}
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, sum := range f.byID {
		out[onlineStatus(q.last(sum), effectiveFrequencies(q.settings, sum.mode, sum.freq), q.now)]++
	}
	return out
}

// handleListEnvironments serves GET /api/environments: filters name
// (substring), status, group, tag, trusted, mode; sort id|name|lastCheckIn,
// order asc|desc; limit and offset. The page is cut from the in-memory
// index, then only its environments are read from the store.
func (s *Server) handleListEnvironments(w http.ResponseWriter, r *http.Request, _ session) {
	q, problems := parseListQuery(r)
	if refuse(w, problems) {
		return
	}
	q.settings, q.now, q.lastCheckIn = s.edgeSettings(), s.now().Unix(), s.checkins.get
	ids, total := s.fleetIndex().page(&q)
	envs, err := s.store.EnvironmentsByID(ids)
	if err != nil {
		s.log.Error("list environments", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not read environments")
		return
	}
	out := environmentPage{Items: make([]environmentView, 0, len(envs)), Total: total}
	for i := range envs {
		out.Items = append(out.Items, s.view(&envs[i], q.settings))
	}
	writeJSON(w, http.StatusOK, out)
}

// maxBulkEnvironments bounds one POST /api/environments/bulk: one store
// transaction and one answer of that many edge keys.
const maxBulkEnvironments = 10000

// bulkEnvironments is the body of POST /api/environments/bulk: count
// environments named Name-1 ... Name-count, each as POST /api/environments
// makes it.
type bulkEnvironments struct {
	newEnvironment
	Count int `json:"count"`
}

// bulkCreated is one environment of the answer of POST
// /api/environments/bulk: its ID and edge key with its enrollment secret,
// shown this once.
type bulkCreated struct {
	ID      uint64 `json:"id"`
	EdgeKey string `json:"edgeKey"`
}

// handleBulkCreateEnvironments serves POST /api/environments/bulk: many
// pre-staged environments in one store transaction and one audit entry
// (staging a fleet, and the fleet simulator), answered with their edge keys.
func (s *Server) handleBulkCreateEnvironments(w http.ResponseWriter, r *http.Request, ss session) {
	var req bulkEnvironments
	if !decodeJSON(w, r, &req) {
		return
	}
	problems := checkNewEnvironment(&req.newEnvironment)
	if req.Count < 1 || req.Count > maxBulkEnvironments {
		problems = append(problems, fmt.Sprintf("count %d: want 1 to %d", req.Count, maxBulkEnvironments))
	}
	if refuse(w, problems) {
		return
	}
	now := s.now().Unix()
	es := make([]*store.Environment, req.Count)
	secrets := make([]string, req.Count)
	for i := range es {
		es[i], secrets[i] = stagedEnvironment(req.newEnvironment, fmt.Sprintf("%s-%d", req.Name, i+1), now)
	}
	if err := s.store.CreateEnvironments(es); err != nil {
		s.log.Error("create environments", "count", req.Count, "err", err)
		writeErr(w, http.StatusInternalServerError, "could not store the environments")
		return
	}
	out := make([]bulkCreated, len(es))
	for i, e := range es {
		s.indexEnvironment(e)
		out[i] = bulkCreated{ID: e.ID, EdgeKey: s.edgeKey(e.ID, secrets[i])}
	}
	s.log.Info("environments created", "count", len(es), "first", es[0].ID, "mode", req.Mode)
	s.auditAt(r.RemoteAddr, ss.user, auditEnvCreate, envTarget(es[0].ID), fmt.Sprintf("%d environments %s-1 to %s-%d (ids %d to %d), mode %s, platform %s",
		len(es), req.Name, req.Name, len(es), es[0].ID, es[len(es)-1].ID, req.Mode, cmp.Or(req.Platform, kube.PlatformDocker)))
	writeJSON(w, http.StatusCreated, map[string]any{"items": out})
}
