package server

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"outpost/protocol"
	"outpost/scheduler"
	"outpost/server/store"
	"outpost/waitingroom"
)

// Audit actions of the waiting room.
const (
	auditDeviceArrived = "device.waiting"
	auditDeviceTrusted = "device.trusted"
)

// loadRoom builds the waiting room in memory from the store.
func loadRoom(st *store.Store, limiter *waitingroom.Limiter) (*waitingroom.Registry, error) {
	waiting, err := st.Waiting()
	if err != nil {
		return nil, err
	}
	rej, err := st.RejectedKeys()
	if err != nil {
		return nil, err
	}
	envs, err := st.Environments()
	if err != nil {
		return nil, err
	}
	var bindings []waitingroom.Binding
	for _, e := range envs {
		b := waitingroom.Binding{Env: e.ID, EdgeID: e.EdgeID}
		if len(e.PublicKey) == ed25519.PublicKeySize {
			b.KeyFingerprint = keyFingerprint(e.PublicKey)
		}
		bindings = append(bindings, b)
	}
	return waitingroom.NewRegistry(limiter, waiting, slices.Collect(maps.Keys(rej)), bindings), nil
}

// keyFingerprint is the SSH-style fingerprint of a device identity key, as
// the waiting room shows it and preauthorized keys name it.
func keyFingerprint(pub []byte) string {
	k, err := ssh.NewPublicKey(ed25519.PublicKey(pub))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}

// edgeIDTaken reports whether an environment is bound to edgeID. An entry
// whose environment was deleted since is dropped, unless another environment
// carries that edge ID.
func (s *Server) edgeIDTaken(edgeID string) (bool, error) {
	id, ok := s.room.EdgeEnv(edgeID)
	if !ok {
		return false, nil
	}
	_, err := s.store.Environment(id)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return err == nil, err
	}
	envs, err := s.store.Environments()
	if err != nil {
		return false, err
	}
	var other uint64
	for _, e := range envs {
		if e.EdgeID == edgeID {
			other = e.ID
			break
		}
	}
	return s.room.Rebind(edgeID, id, other), nil
}

// sourceOf is the address a request comes from, without its port.
func sourceOf(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// onboard handles a request made with the onboarding key (environment 0). It
// returns the environment the device already is, for the caller to go on as
// with any sync; or it answers (waiting, refused) itself and returns nil.
//
// poll says which endpoint the device called, which is the mode it runs in:
// the waiting room shows it, and trusting the device keeps it.
func (s *Server) onboard(w http.ResponseWriter, r *http.Request, req *protocol.SyncRequest, input []byte, p *protocol.Proof, poll bool) *store.Environment {
	if p == nil || len(p.Key) != ed25519.PublicKeySize || len(p.DH) != 32 || req.EdgeID == "" || !ed25519.Verify(p.Key, input, p.Tag) {
		s.refuseUnverified(w, r, req, errors.New("a device calling with the onboarding key signs its request with its identity key and sends its edge ID and keys"))
		return nil
	}
	fp := keyFingerprint(p.Key)
	known := s.room.Lookup(fp)

	if _, enroll := s.onboardingKey(); known.Env == 0 && !protocol.CheckMAC(enroll, input, p.Enroll) {
		// A device already trusted by key may still call with an old key
		// until it learns its environment; every other needs the current.
		s.refuseUnverified(w, r, req, errors.New("the request does not prove the current onboarding key: it was rotated, or this is not an Outpost onboarding key; ask the operator for the current one (GET /api/edge/onboarding-key)"))
		return nil
	}
	switch {
	case known.Env != 0:
		env, err := s.store.Environment(known.Env)
		if err == nil {
			return env // the sync goes on and authenticates against its keys
		}
		if !errors.Is(err, store.ErrNotFound) {
			s.internalError(w, "onboard: load environment", err)
			return nil
		}
		// Deleted since: the device is new again.
	case known.Rejected:
		s.edgeError(w, http.StatusForbidden, protocol.CodeRejected, "an operator rejected this device; it cannot come back with the same key")
		return nil
	case known.Waiting != 0:
		if known.EdgeID != req.EdgeID {
			s.refuseIdentity(w, r, req, fmt.Errorf("this key waits under edge ID %q", known.EdgeID))
			return nil
		}
		// Its mode is kept in memory, as trust reads it from there.
		s.room.Touch(known.Waiting, s.now().Unix(), p.Counter, modeOf(poll))
		if s.slowedDown(w, "waiting", waitingPaceKey|known.Waiting, "waiting device "+req.EdgeID, s.waitingFrequencies(poll), s.now()) {
			return nil
		}
		s.answerWaiting(w, req.EdgeID, p, poll)
		return nil
	}

	es := s.edgeSettings()
	rules := waitingroom.Rules{
		TrustOnFirstConnect: es.TrustOnFirstConnect, PreauthorizedEdgeIDs: es.PreauthorizedEdgeIDs,
		PreauthorizedKeys: es.PreauthorizedKeys, Max: es.WaitingRoomMax, PerMinute: es.NewDevicesPerMinute,
		PerNetwork: es.NewDevicesPerNetwork, Total: es.NewDevicesTotal,
	}
	source := sourceOf(r)
	arrival := waitingroom.Arrival{EdgeID: req.EdgeID, KeyFP: fp, Source: source, KnownEnv: known.Env}
	if waitingroom.PreauthorizedPair(rules.PreauthorizedEdgeIDs, req.EdgeID, fp) {
		var err error
		if arrival.EdgeTaken, err = s.edgeIDTaken(req.EdgeID); err != nil {
			s.internalError(w, "onboard: look up edge ID", err)
			return nil
		}
	}
	place := s.room.Place(rules, arrival)
	if place.Again {
		// The same key, placed by a concurrent request: it learns which
		// on its next call.
		s.answerWaiting(w, req.EdgeID, p, poll)
		return nil
	}
	decision := place.Decision
	switch decision {
	case waitingroom.SlowDown:
		s.writeEdge(w, http.StatusTooManyRequests, &protocol.Error{Version: protocol.Version, Code: protocol.CodeSlowDown, RetryAfter: 60,
			Message: fmt.Sprintf("too many new devices from %s; retry in a minute", source)})
		return nil
	case waitingroom.Full:
		s.edgeError(w, http.StatusServiceUnavailable, protocol.CodeWaitingRoomFull,
			fmt.Sprintf("the waiting room is full (%d devices); retry later", es.WaitingRoomMax))
		return nil
	case waitingroom.Trust:
		env := newEnvironmentFor(&store.WaitingDevice{EdgeID: req.EdgeID, PublicKey: p.Key, DeviceDH: p.DH, Mode: modeOf(poll)}, req.Agent, s.now().Unix())
		if err := s.store.CreateEnvironment(env); err != nil {
			s.room.Release(fp, place)
			s.internalError(w, "onboard: create environment", err)
			return nil
		}
		s.room.Bound(fp, req.EdgeID, env.ID)
		s.room.Release(fp, place)
		s.fleetIndex().putEnv(env)
		s.audit(r, deviceActor(env.ID), auditDeviceTrusted, envTarget(env.ID), "trusted by rule on first contact: edge ID "+req.EdgeID+", key "+fp)
		return env
	}
	nd := &store.WaitingDevice{
		EdgeID: req.EdgeID, KeyFingerprint: fp, PublicKey: p.Key, DeviceDH: p.DH, Source: source,
		FirstSeen: s.now().Unix(), LastSeen: s.now().Unix(), Counter: p.Counter, Mode: modeOf(poll),
	}
	if a := req.Agent; a != nil {
		nd.Hostname, nd.AgentVersion, nd.Platform, nd.OS, nd.Arch, nd.Groups, nd.Tags = a.Hostname, a.Version, a.Platform, a.OS, a.Arch, a.Groups, a.Tags
	}
	if err := s.room.Add(nd, s.store.AddWaiting); err != nil {
		s.room.Release(fp, place)
		s.internalError(w, "onboard: add to the waiting room", err)
		return nil
	}
	detail := "key " + fp + ", hostname " + nd.Hostname
	if claimsPreauthorized(rules.PreauthorizedEdgeIDs, req.EdgeID, fp) {
		// Someone else's edge ID, or a re-flashed device: an operator decides.
		detail += "; claims a preauthorized edge ID under a key the rule does not name"
		s.log.Warn("a device claims a preauthorized edge ID under another key; it waits for an operator", "edge_id", req.EdgeID, "key", fp, "remote", source)
	}
	s.audit(r, "device "+req.EdgeID, auditDeviceArrived, "waiting device "+strconv.FormatUint(nd.ID, 10), detail)
	s.answerWaiting(w, req.EdgeID, p, poll)
	return nil
}

// claimsPreauthorized reports whether entries name edgeID with a key other
// than keyFP.
func claimsPreauthorized(entries []string, edgeID, keyFP string) bool {
	return slices.ContainsFunc(entries, func(e string) bool {
		id, fp, ok := waitingroom.SplitPreauthorized(e)
		return ok && id == edgeID && fp != keyFP
	})
}

// answerWaiting tells a device it waits: no environment, no commands, no
// snapshot ack; only when to call again, tagged so the device can trust it.
func (s *Server) answerWaiting(w http.ResponseWriter, edgeID string, p *protocol.Proof, poll bool) {
	f := s.waitingFrequencies(poll)
	ans := &protocol.SyncAnswer{Version: protocol.Version, Trust: protocol.TrustWaiting, Freq: &f}
	if err := s.sealWaiting(ans, edgeID, p); err != nil {
		s.internalError(w, "onboard: seal answer", err)
		return
	}
	s.writeEdge(w, http.StatusOK, ans)
}

// waitingPaceKey sets waiting devices' keys in the call guard apart from
// environment IDs.
const waitingPaceKey = 1 << 63

// waitingFrequencies is what a waiting device is told: check in at the global
// ping frequency (a standard device: the poll interval, so it learns of its
// trust as soon as it would have polled), with nothing else to do.
func (s *Server) waitingFrequencies(poll bool) protocol.Frequencies {
	p := scheduler.Effective(s.edgeSettings().Frequencies, nil).Ping
	if poll {
		p = s.edgeSettings().PollInterval
	}
	return protocol.Frequencies{Ping: p, Snapshot: p, Command: p}
}

// refuseIdentity answers and audits an identity refusal.
func (s *Server) refuseIdentity(w http.ResponseWriter, r *http.Request, req *protocol.SyncRequest, err error) {
	if s.auditRefusal(r.RemoteAddr, deviceActor(req.EnvID), auditIdentityRefused, envTarget(req.EnvID), "edge ID "+req.EdgeID+": "+err.Error()) {
		s.log.Warn("sync refused (logged once a minute per environment, network and reason)", "env", req.EnvID, "edge_id", req.EdgeID, "remote", r.RemoteAddr, "err", err)
	}
	s.edgeError(w, http.StatusForbidden, protocol.CodeIdentity, err.Error())
}

// unverifiedLogKey prefixes a source address in the room's limiter for the
// log of unverified requests, apart from its new-device buckets.
const unverifiedLogKey = "unverified-log "

// refuseUnverified answers an identity refusal of a request that proves no
// key: anyone can send those, so they write no audit entry, and are logged
// at most once a minute per source address.
func (s *Server) refuseUnverified(w http.ResponseWriter, r *http.Request, req *protocol.SyncRequest, err error) {
	if s.room.Limiter.Allow(unverifiedLogKey+sourceOf(r), 1) {
		s.log.Warn("sync refused, unverified (logged once a minute per address)", "env", req.EnvID, "edge_id", req.EdgeID, "remote", r.RemoteAddr, "err", err)
	}
	s.edgeError(w, http.StatusForbidden, protocol.CodeIdentity, err.Error())
}

// newEnvironmentFor is the trusted environment a device becomes.
func newEnvironmentFor(d *store.WaitingDevice, agent *protocol.AgentInfo, now int64) *store.Environment {
	name := d.EdgeID
	if agent != nil && agent.Hostname != "" {
		name = agent.Hostname
	} else if d.Hostname != "" {
		name = d.Hostname
	}
	if agent == nil && d.Hostname != "" {
		agent = &protocol.AgentInfo{Version: d.AgentVersion, Hostname: d.Hostname, Platform: d.Platform, OS: d.OS, Arch: d.Arch, Groups: d.Groups, Tags: d.Tags}
	}
	mode := d.Mode
	if mode == "" {
		mode = store.ModeAsync // placed by a server that did not record modes
	}
	return &store.Environment{
		Name: name, Mode: mode, Created: now, Trusted: true,
		EdgeID: d.EdgeID, PublicKey: d.PublicKey, DeviceDH: d.DeviceDH, LastCounter: d.Counter, Agent: agent,
	}
}

// waitingView is a waiting device as the API shows it.
type waitingView struct {
	store.WaitingDevice
	PublicKey []byte `json:"publicKey,omitempty"`
	DeviceDH  []byte `json:"deviceDH,omitempty"`
	// BoundTo is the environment already bound to this device's edge ID,
	// under another key: a re-flashed device, or a copied edge ID. Trusting
	// the device makes a new environment beside it; the bound one keeps its
	// key.
	BoundTo uint64 `json:"boundTo,omitempty"`
}

// waitingViews are listed waiting devices as the API shows them.
func waitingViews(l []waitingroom.Listed) []waitingView {
	out := make([]waitingView, 0, len(l))
	for _, d := range l {
		out = append(out, waitingView{WaitingDevice: d.WaitingDevice, BoundTo: d.BoundTo})
	}
	return out
}

// handleWaitingRoom serves GET /api/waiting-room: ?q= (a substring of the
// edge ID, hostname, key fingerprint or source address),
// ?sort=firstSeen|lastSeen|hostname|edgeId (- prefix for descending),
// ?limit=&offset=.
func (s *Server) handleWaitingRoom(w http.ResponseWriter, r *http.Request, _ session) {
	limit, offset, err := pageParams(r, 100, 1000)
	key, desc, serr := waitingroom.ParseSort(r.URL.Query().Get("sort"))
	if err = errors.Join(err, serr); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	p := s.room.List(waitingroom.Query{Q: r.URL.Query().Get("q"), Sort: key, Desc: desc, Limit: limit, Offset: offset})
	writeJSON(w, http.StatusOK, map[string]any{"items": waitingViews(p.Items), "total": p.Total})
}

// pageParams reads ?limit= and ?offset=.
func pageParams(r *http.Request, def, most int) (limit, offset int, err error) {
	limit, offset = def, 0
	var errs []error
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > most {
			errs = append(errs, fmt.Errorf("limit %q: want 1 to %d", v, most))
		}
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			errs = append(errs, fmt.Errorf("offset %q: want 0 or more", v))
		}
	}
	return limit, offset, errors.Join(errs...)
}

type waitingAction struct {
	IDs          []uint64 `json:"ids"`
	EdgeGroupIDs []uint64 `json:"edgeGroupIds"`
	TagIDs       []uint64 `json:"tagIds"`
}

// readWaitingAction reads the body of trust and reject.
func readWaitingAction(w http.ResponseWriter, r *http.Request) (waitingAction, bool) {
	var req waitingAction
	if !decodeJSON(w, r, &req) {
		return req, false
	}
	if len(req.IDs) == 0 {
		writeErr(w, http.StatusBadRequest, "ids: name at least one waiting device")
		return req, false
	}
	return req, true
}

// expireWaiting lets the waiting devices not seen for the edge settings'
// waitingExpiry go, so devices that called once and never again (a flood)
// do not hold the room. One that comes back later waits again. It runs after
// the last-seen times were flushed, so the store's are the live ones.
func (s *Server) expireWaiting(now int64) {
	cutoff := now - int64(s.edgeSettings().WaitingExpiry)
	stale := s.room.Stale(cutoff)
	if len(stale) == 0 {
		return
	}
	gone, err := s.store.ExpireWaiting(stale, cutoff)
	if err != nil {
		s.log.Error("expire stale waiting devices", "err", err)
		return
	}
	s.room.Expired(gone)
	s.log.Info("stale waiting devices expired", "devices", len(gone), "not_seen_for_s", s.edgeSettings().WaitingExpiry)
}

// waitingProblem words why waiting device id could not be acted on.
func (s *Server) waitingProblem(id uint64, action string, err error) string {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Sprintf("waiting device %d: not in the waiting room", id)
	}
	s.log.Error(action+" waiting device", "id", id, "err", err)
	return fmt.Sprintf("waiting device %d: could not be %s", id, action)
}

// waitingResult is what became of one waiting device an operator acted on:
// Env is set when it was trusted, Problem when the action failed or was
// only partly done (trusted, but a tag or group could not be set).
type waitingResult struct {
	ID      uint64
	EdgeID  string
	Env     *store.Environment
	BoundTo uint64 // the environment that already had this edge ID, left as it was
	Problem string
}

// trustWaiting makes each waiting device of req a trusted environment, with
// its tags and edge groups, on behalf of user (from remote). A device whose
// edge ID is bound to another environment becomes a new environment beside
// it; the other keeps its key and its device.
func (s *Server) trustWaiting(remote, user string, req waitingAction) []waitingResult {
	var out []waitingResult
	for _, id := range req.IDs {
		live, _ := s.room.Pending(id) // counter taken by a flush not yet written, mode from its latest call
		res := waitingResult{ID: id, EdgeID: live.EdgeID, BoundTo: live.BoundTo}
		env, err := s.store.TrustWaiting(id, func(d *store.WaitingDevice) *store.Environment {
			d.Counter = max(d.Counter, live.Counter)
			if live.Mode != "" {
				d.Mode = live.Mode
			}
			return newEnvironmentFor(d, nil, s.now().Unix())
		})
		if err != nil {
			res.Problem = s.waitingProblem(id, "trusted", err)
			out = append(out, res)
			continue
		}
		res.Env, res.EdgeID = env, env.EdgeID
		fp := keyFingerprint(env.PublicKey)
		s.room.Trusted(id, fp, env.EdgeID, env.ID)
		s.fleetIndex().putEnv(env)
		var problems []string
		if len(req.TagIDs) > 0 {
			if err := s.setEnvironmentTags(env.ID, req.TagIDs); err != nil {
				problems = append(problems, fmt.Sprintf("environment %d: %v", env.ID, err))
			}
		}
		if len(req.EdgeGroupIDs) > 0 {
			if err := s.addToEdgeGroups(env.ID, req.EdgeGroupIDs); err != nil {
				problems = append(problems, fmt.Sprintf("environment %d: %v", env.ID, err))
			}
		}
		res.Problem = strings.Join(problems, "; ")
		if e, err := s.store.Environment(env.ID); err == nil {
			res.Env = e // with its tags
		}
		detail := "edge ID " + env.EdgeID + ", key " + fp
		if live.BoundTo != 0 {
			detail += fmt.Sprintf("; the edge ID was already bound to environment %d, which keeps its key", live.BoundTo)
		}
		s.auditAt(remote, user, auditDeviceTrusted, envTarget(env.ID), detail)
		out = append(out, res)
	}
	return out
}

// rejectWaiting refuses each waiting device of ids from now on; their keys
// cannot come back.
func (s *Server) rejectWaiting(remote, user string, ids []uint64) []waitingResult {
	var out []waitingResult
	for _, id := range ids {
		d, err := s.store.RejectWaiting(id, store.RejectedKey{At: s.now().Unix(), By: user})
		if err != nil {
			out = append(out, waitingResult{ID: id, Problem: s.waitingProblem(id, "rejected", err)})
			continue
		}
		s.room.Rejected(id, d.KeyFingerprint)
		s.auditAt(remote, user, auditDeviceRejected, "waiting device "+strconv.FormatUint(id, 10), "edge ID "+d.EdgeID+", key "+d.KeyFingerprint)
		out = append(out, waitingResult{ID: id, EdgeID: d.EdgeID})
	}
	return out
}

// handleTrust serves POST /api/waiting-room/trust: each device becomes a
// trusted environment, with the given tags and edge groups.
func (s *Server) handleTrust(w http.ResponseWriter, r *http.Request, ss session) {
	req, ok := readWaitingAction(w, r)
	if !ok {
		return
	}
	created := []environmentView{}
	var problems []string
	set := s.edgeSettings()
	for _, res := range s.trustWaiting(r.RemoteAddr, ss.user, req) {
		if res.Env != nil {
			created = append(created, s.view(res.Env, set))
		}
		if res.Problem != "" {
			problems = append(problems, res.Problem)
		}
	}
	status := http.StatusOK
	if len(created) == 0 {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, map[string]any{"environments": created, "problems": problems})
}

// handleReject serves POST /api/waiting-room/reject: the devices are refused
// from now on, and their keys cannot come back.
func (s *Server) handleReject(w http.ResponseWriter, r *http.Request, ss session) {
	req, ok := readWaitingAction(w, r)
	if !ok {
		return
	}
	rejected := []uint64{}
	var problems []string
	for _, res := range s.rejectWaiting(r.RemoteAddr, ss.user, req.IDs) {
		if res.Problem != "" {
			problems = append(problems, res.Problem)
		} else {
			rejected = append(rejected, res.ID)
		}
	}
	status := http.StatusOK
	if len(rejected) == 0 {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, map[string]any{"rejected": rejected, "problems": problems})
}
