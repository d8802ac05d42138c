package server

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"outpost/kube"
	"outpost/protocol"
	"outpost/server/store"
	"outpost/snapshot"
)

// apiError is the JSON body of every refused API request.
type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, apiError{Error: fmt.Sprintf(format, args...)})
}

// decodeJSON reads a bounded JSON body, refusing unknown fields so a typo in
// a request is reported rather than ignored.
// The body must arrive within its deadline (bodyDeadline: 2.5 minutes for
// the largest), so a stalled client holds nothing for long.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	rc := http.NewResponseController(w)
	wait := bodyDeadline(bodyBaseTime, r.ContentLength, maxJSONBody)
	_ = rc.SetReadDeadline(time.Now().Add(wait)) // not every connection has one (tests)
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
		return true
	}
	// What is left of a refused body is not waited for (see readEdge).
	_ = rc.SetReadDeadline(time.Now())
	w.Header().Set("Connection", "close")
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		writeErr(w, http.StatusRequestTimeout, "the body did not arrive within %v", wait)
	} else {
		writeErr(w, http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	return false
}

// maxJSONBody bounds an API request's JSON body.
const maxJSONBody = 1 << 20

func (s *Server) handleAuth(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	tok, err := s.login(req.Username, req.Password, r.RemoteAddr)
	var locked *loginLocked
	if errors.As(err, &locked) {
		if s.auditRefusal(r.RemoteAddr, "anonymous", auditLoginLocked, userTarget(req.Username), "api: locked out") {
			s.log.Warn("login refused during a lockout (logged once a minute per user and network)", "user", req.Username, "remote", r.RemoteAddr)
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(locked.RetryAfter().Round(time.Second)/time.Second)))
		writeErr(w, http.StatusTooManyRequests, "%v", err)
		return
	}
	if err != nil {
		if s.auditRefusal(r.RemoteAddr, "anonymous", auditLoginFailed, userTarget(req.Username), "api") {
			s.log.Warn("failed login (logged once a minute per user and network)", "user", req.Username, "remote", r.RemoteAddr)
		}
		writeErr(w, http.StatusUnauthorized, "%v", err)
		return
	}
	s.audit(r, req.Username, auditLogin, userTarget(req.Username), "api")
	// The token is opaque (a random session ID, not a JWT). "jwt" is the
	// name it first had, kept as an alias for clients written against it.
	writeJSON(w, http.StatusOK, map[string]string{"token": tok, "jwt": tok})
}

// environmentView is an environment as the API shows it.
type environmentView struct {
	store.Environment
	Status      string               `json:"status"` // online, offline, never
	Effective   protocol.Frequencies `json:"effectiveFrequencies"`
	LastCheckIn int64                `json:"lastCheckIn,omitempty"`
	EdgeKey     string               `json:"edgeKey"`
	// Enrollment is "pending" while the environment waits for the device
	// that proves its edge key's secret, and "needed" for one not bound
	// that has no secret (re-issue its edge key); empty once bound.
	Enrollment string `json:"enrollment,omitempty"`
	PublicKey  []byte `json:"publicKey,omitempty"`
	Tunnel     string `json:"tunnel,omitempty"` // standard mode: idle, required, active
}

// view builds the API form of e; set is the server's edge settings,
// read once per request by the caller.
func (s *Server) view(e *store.Environment, set EdgeSettings) environmentView {
	v := environmentView{Environment: *e}
	v.Environment.EnrollKey, v.Environment.Resync = nil, nil // they stay on the server
	switch {
	case e.EdgeID != "":
		v.EdgeKey = s.edgeKey(e.ID, "") // bound: the secret is spent
	case e.EnrollKey != nil:
		// The key with its secret was shown once, when it was issued.
		v.Enrollment = enrollmentPending
	default:
		v.Enrollment = enrollmentNeeded
	}
	v.Effective = effectiveFrequencies(set, e.Mode, e.Frequencies)
	v.LastCheckIn = e.LastCheckIn
	if t, ok := s.checkins.get(e.ID); ok {
		v.LastCheckIn = t
	}
	if e.Mode == store.ModeStandard {
		v.Tunnel = tunnelNames[s.tunnelStatus(e.ID)]
	}
	v.Status = onlineStatus(v.LastCheckIn, v.Effective, s.now().Unix())
	return v
}

// tunnelNames is how the API shows a standard environment's tunnel.
var tunnelNames = map[protocol.TunnelStatus]string{
	protocol.TunnelIdle: "idle", protocol.TunnelRequired: "required", protocol.TunnelActive: "active",
}

// onlineStatus judges an environment by its own ping frequency: it is online
// while it has checked in within two ping intervals (plus slack for a slow
// link), so an hourly device is not offline after two minutes.
func onlineStatus(last int64, f protocol.Frequencies, now int64) string {
	if last == 0 {
		return "never"
	}
	if now-last <= onlineFor(f) {
		return "online"
	}
	return "offline"
}

// onlineFor is how long after a check-in a device still counts as online.
func onlineFor(f protocol.Frequencies) int64 { return 2*int64(f.Ping) + 30 }

// edgeKey is environment env's edge key, with an enrollment secret if one
// is given (env 0, the onboarding key, never has one).
func (s *Server) edgeKey(env uint64, secret string) string {
	return protocol.EdgeKey{ServerURL: s.url, TunnelAddr: s.tunnelAddr, TunnelFingerprint: s.fingerprint, EnvironmentID: env, Secret: secret}.String()
}

// Enrollment states an environment view shows.
const (
	enrollmentPending = "pending"
	enrollmentNeeded  = "needed"
)

// newEnrollSecret makes a one-time enrollment secret and the hash the
// store keeps of it.
func newEnrollSecret() (secret string, key []byte) {
	b := make([]byte, protocol.EnrollSecretSize)
	rand.Read(b) // never fails (crypto/rand)
	return string(b), protocol.EnrollKey(string(b))
}

func (s *Server) handleCreateEnvironment(w http.ResponseWriter, r *http.Request, ss session) {
	var req newEnvironment
	if !decodeJSON(w, r, &req) {
		return
	}
	ans, problems, err := s.createEnvironment(r.RemoteAddr, ss.user, req)
	if refuse(w, problems) {
		return
	}
	if err != nil {
		s.log.Error("create environment", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not store the environment")
		return
	}
	writeJSON(w, http.StatusCreated, ans)
}

// newEnvironment is the body of POST /api/environments.
type newEnvironment struct {
	Name        string                `json:"name"`
	Mode        string                `json:"mode"`
	Platform    string                `json:"platform"` // docker (default) or kubernetes
	Frequencies *protocol.Frequencies `json:"frequencies"`
}

// checkNewEnvironment says what is wrong with req, and fills in its
// defaults (mode async, platform docker, frequencies {} as none).
func checkNewEnvironment(req *newEnvironment) []string {
	var problems []string
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 128 {
		problems = append(problems, "name: required, at most 128 characters")
	} else if p := plainText("name", req.Name); p != "" {
		problems = append(problems, p)
	}
	if req.Mode == "" {
		req.Mode = store.ModeAsync
	}
	if req.Mode != store.ModeAsync && req.Mode != store.ModeStandard {
		problems = append(problems, fmt.Sprintf("mode %q: want async or standard", req.Mode))
	}
	switch req.Platform {
	case "", kube.PlatformDocker:
		req.Platform = ""
	case kube.PlatformKubernetes:
	default:
		problems = append(problems, fmt.Sprintf("platform %q: want docker or kubernetes", req.Platform))
	}
	if f := req.Frequencies; f != nil && (f.Ping > maxFrequency || f.Snapshot > maxFrequency || f.Command > maxFrequency) {
		problems = append(problems, "frequencies: each at most 604800 seconds (a week); 0 means the global default")
	}
	if f := req.Frequencies; f != nil && *f == (protocol.Frequencies{}) {
		req.Frequencies = nil
	}
	return problems
}

// stagedEnvironment is a new pre-staged environment of req named name,
// with the enrollment secret its edge key carries once.
func stagedEnvironment(req newEnvironment, name string, now int64) (*store.Environment, string) {
	secret, enroll := newEnrollSecret()
	return &store.Environment{Name: name, Mode: req.Mode, Platform: req.Platform, Frequencies: req.Frequencies, Trusted: true, Created: now, EnrollKey: enroll}, secret
}

// createEnvironment pre-stages an environment for user (from remote) and
// returns its edge key with the one-time enrollment secret; problems says
// what was wrong with req, and nothing is stored then.
func (s *Server) createEnvironment(remote, user string, req newEnvironment) (createdEnvironment, []string, error) {
	if problems := checkNewEnvironment(&req); len(problems) > 0 {
		return createdEnvironment{}, problems, nil
	}
	e, secret := stagedEnvironment(req, req.Name, s.now().Unix())
	if err := s.store.CreateEnvironment(e); err != nil {
		return createdEnvironment{}, nil, err
	}
	s.log.Info("environment created", "id", e.ID, "name", e.Name, "mode", e.Mode)
	s.indexEnvironment(e)
	s.auditAt(remote, user, auditEnvCreate, envTarget(e.ID), fmt.Sprintf("name %q, mode %s, platform %s", e.Name, e.Mode, cmp.Or(e.Platform, kube.PlatformDocker)))
	return s.issued(e, secret), nil, nil
}

// envFromPath loads the environment named by the {id} path value.
func (s *Server) envFromPath(w http.ResponseWriter, r *http.Request) (*store.Environment, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "environment id %q: want a positive integer", r.PathValue("id"))
		return nil, false
	}
	e, err := s.store.Environment(id)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "environment %d not found", id)
		return nil, false
	} else if err != nil {
		writeErr(w, http.StatusInternalServerError, "could not read environment %d", id)
		return nil, false
	}
	return e, true
}

func (s *Server) handleGetEnvironment(w http.ResponseWriter, r *http.Request, _ session) {
	if e, ok := s.envFromPath(w, r); ok {
		writeJSON(w, http.StatusOK, s.view(e, s.edgeSettings()))
	}
}

// snapshotView is the API's form of a stored snapshot.
type snapshotView struct {
	Seq      uint64             `json:"seq"`
	Updated  int64              `json:"updated"`
	Kind     string             `json:"kind"`
	Hash     string             `json:"hash"`
	Snapshot *snapshot.Snapshot `json:"snapshot,omitempty"`
	Section  any                `json:"section,omitempty"`
}

func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request, ss session) {
	e, ok := s.envFromPath(w, r)
	if !ok {
		return
	}
	sec := r.URL.Query().Get("section")
	if role := kubeRole(ss.role); isKube(e) && !kube.SectionAllowed(role, sec) {
		f, _ := kube.SectionFunction(sec)
		writeErr(w, http.StatusForbidden, "section %s (%s): role %s has no access (Access Restrictions table)", sec, f, role)
		return
	}
	sn, err := s.store.Snapshot(e.ID)
	if errors.Is(err, store.ErrNotFound) {
		writeErr(w, http.StatusNotFound, "environment %d has not sent a snapshot yet", e.ID)
		return
	} else if err != nil {
		writeErr(w, http.StatusInternalServerError, "could not read the snapshot")
		return
	}
	var d snapshot.Snapshot
	if err := protocol.Unmarshal(sn.Data, &d); err != nil {
		writeErr(w, http.StatusInternalServerError, "stored snapshot is corrupt")
		return
	}
	if isKube(e) {
		if err := s.kubeView(e.ID, ss, &d); err != nil {
			writeErr(w, http.StatusInternalServerError, "could not read the caller's access")
			return
		}
	}
	v := snapshotView{Seq: sn.Seq, Updated: sn.Updated, Kind: sn.Kind, Hash: fmt.Sprintf("%x", sn.Hash)}
	switch sec {
	case "":
		v.Snapshot = &d
	case "engine":
		v.Section = d.Engine
	case "containers":
		v.Section = d.Containers
	case "images":
		v.Section = d.Images
	case "volumes":
		v.Section = d.Volumes
	case "networks":
		v.Section = d.Networks
	case "projects":
		v.Section = d.Projects
	case "cluster":
		v.Section = d.Cluster
	case "nodes":
		v.Section = d.Nodes
	case "namespaces":
		v.Section = d.Namespaces
	case "workloads":
		v.Section = d.Workloads
	case "pods":
		v.Section = d.Pods
	case "services":
		v.Section = d.Services
	case "ingresses":
		v.Section = d.Ingresses
	case "claims":
		v.Section = d.Claims
	case "configMaps":
		v.Section = d.ConfigMaps
	case "secrets":
		v.Section = d.Secrets
	case "warnings":
		v.Section = d.Warnings
	default:
		writeErr(w, http.StatusBadRequest, "section %q: want engine, containers, images, volumes, networks or projects (Docker); "+
			"cluster, nodes, namespaces, workloads, pods, services, ingresses, claims, configMaps, secrets or warnings (Kubernetes)", sec)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// historyView is one history entry; Delta is filled when one seq is asked for.
type historyView struct {
	store.HistoryEntry
	Delta *snapshot.Delta `json:"delta,omitempty"`
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request, ss session) {
	e, ok := s.envFromPath(w, r)
	if !ok {
		return
	}
	// A cluster's delta names objects of every namespace, by UID: only a
	// role that sees them all reads one (the console's history shows each
	// point cut to the caller's namespaces instead).
	if role := kubeRole(ss.role); isKube(e) && r.URL.Query().Get("seq") != "" && kube.RoleScope(role) != kube.ScopeAll {
		writeErr(w, http.StatusForbidden, "a cluster's deltas span every namespace; role %s sees only some: read the snapshot, or the console's history", role)
		return
	}
	hist, err := s.store.History(e.ID)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "could not read the history")
		return
	}
	want := r.URL.Query().Get("seq")
	out := make([]historyView, 0, len(hist))
	for _, h := range hist {
		v := historyView{HistoryEntry: h}
		v.HistoryEntry.Data = nil
		if want != "" && want == strconv.FormatUint(h.Seq, 10) && len(h.Data) > 0 {
			v.Delta = &snapshot.Delta{}
			if err := protocol.Unmarshal(h.Data, v.Delta); err != nil {
				writeErr(w, http.StatusInternalServerError, "stored delta %d is corrupt", h.Seq)
				return
			}
		}
		if want == "" || v.Delta != nil || want == strconv.FormatUint(h.Seq, 10) {
			out = append(out, v)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
