package server

import (
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

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

// room is the waiting room in memory: its devices with their live last-seen
// times, rejected keys, and which environment a trusted key or edge ID became.
type room struct {
	limiter *waitingroom.Limiter

	mu        sync.Mutex // guards the maps; never held across a store call
	devices   map[uint64]*store.WaitingDevice
	byKey     map[string]uint64 // key fingerprint -> waiting device ID
	envByKey  map[string]uint64 // key fingerprint -> environment bound to it
	envByEdge map[string]uint64 // edge ID -> an environment bound to it
	rejected  map[string]bool
	seen      map[uint64]store.WaitingSeen // not yet flushed

	// New devices between their decision and their store write, so that
	// concurrent arrivals see each other: adding holds their key
	// fingerprints, reserved the room slots held by those that will wait,
	// claims the preauthorized edge IDs being trusted.
	adding   map[string]bool
	reserved int
	claims   map[string]bool
}

func loadRoom(st *store.Store, limiter *waitingroom.Limiter) (*room, error) {
	rm := &room{limiter: limiter, devices: map[uint64]*store.WaitingDevice{}, byKey: map[string]uint64{},
		envByKey: map[string]uint64{}, envByEdge: map[string]uint64{}, rejected: map[string]bool{},
		seen: map[uint64]store.WaitingSeen{}, adding: map[string]bool{}, claims: map[string]bool{}}
	waiting, err := st.Waiting()
	if err != nil {
		return nil, err
	}
	for i := range waiting {
		d := &waiting[i]
		rm.devices[d.ID], rm.byKey[d.KeyFingerprint] = d, d.ID
	}
	rej, err := st.RejectedKeys()
	if err != nil {
		return nil, err
	}
	for fp := range rej {
		rm.rejected[fp] = true
	}
	envs, err := st.Environments()
	if err != nil {
		return nil, err
	}
	for _, e := range envs {
		if len(e.PublicKey) == ed25519.PublicKeySize {
			rm.envByKey[keyFingerprint(e.PublicKey)] = e.ID
		}
		if e.EdgeID != "" {
			rm.envByEdge[e.EdgeID] = e.ID
		}
	}
	return rm, nil
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

func (rm *room) size() int {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return len(rm.devices)
}

// bound records that an environment is bound to the key with fingerprint fp
// and to edgeID.
func (rm *room) bound(fp, edgeID string, env uint64) {
	rm.mu.Lock()
	rm.envByKey[fp] = env
	if edgeID != "" {
		rm.envByEdge[edgeID] = env
	}
	rm.mu.Unlock()
}

// unbound forgets that env was bound to the key with fingerprint fp and to
// edgeID (its edge key was re-issued).
func (rm *room) unbound(fp, edgeID string, env uint64) {
	rm.mu.Lock()
	if rm.envByKey[fp] == env {
		delete(rm.envByKey, fp)
	}
	if rm.envByEdge[edgeID] == env {
		delete(rm.envByEdge, edgeID)
	}
	rm.mu.Unlock()
}

// takeSeen hands the last-seen times not yet flushed to the caller, to write
// to the store. The devices in memory keep them meanwhile, so the waiting
// room shows them before the write and if it fails.
func (rm *room) takeSeen() map[uint64]store.WaitingSeen {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	d := rm.seen
	for id, ws := range d {
		if dev := rm.devices[id]; dev != nil {
			dev.LastSeen, dev.Counter = max(dev.LastSeen, ws.At), max(dev.Counter, ws.Counter)
		}
	}
	rm.seen = map[uint64]store.WaitingSeen{}
	return d
}

// putBackSeen returns last-seen times takeSeen gave out that could not be
// written, for the next flush; those of devices gone meanwhile are dropped.
func (rm *room) putBackSeen(ws map[uint64]store.WaitingSeen) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for id, w := range ws {
		if rm.devices[id] == nil {
			continue
		}
		cur := rm.seen[id]
		rm.seen[id] = store.WaitingSeen{At: max(cur.At, w.At), Counter: max(cur.Counter, w.Counter)}
	}
}

// release ends the placement of new device fp that reserved a slot (slot)
// or claimed edgeID, once it is stored or failed.
func (rm *room) release(fp, edgeID string, slot bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	delete(rm.adding, fp)
	if slot {
		rm.reserved--
	}
	if edgeID != "" {
		delete(rm.claims, edgeID)
	}
}

// edgeIDTaken reports whether an environment is bound to edgeID. An entry
// whose environment was deleted since is dropped, unless another environment
// carries that edge ID.
func (s *Server) edgeIDTaken(edgeID string) (bool, error) {
	rm := s.room
	rm.mu.Lock()
	id, ok := rm.envByEdge[edgeID]
	rm.mu.Unlock()
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
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if cur := rm.envByEdge[edgeID]; cur != id {
		return cur != 0, nil // bound again meanwhile
	}
	delete(rm.envByEdge, edgeID)
	for _, e := range envs {
		if e.EdgeID == edgeID {
			rm.envByEdge[edgeID] = e.ID
			return true, nil
		}
	}
	return false, nil
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
	rm := s.room
	rm.mu.Lock()
	envID, isEnv := rm.envByKey[fp]
	rejected := rm.rejected[fp]
	waitID, isWaiting := rm.byKey[fp]
	var d *store.WaitingDevice
	if isWaiting {
		d = rm.devices[waitID]
	}
	rm.mu.Unlock()

	if _, enroll := s.onboardingKey(); !isEnv && !protocol.CheckMAC(enroll, input, p.Enroll) {
		// A device already trusted by key may still call with an old key
		// until it learns its environment; every other needs the current.
		s.refuseUnverified(w, r, req, errors.New("the request does not prove the current onboarding key: it was rotated, or this is not an Outpost onboarding key; ask the operator for the current one (GET /api/edge/onboarding-key)"))
		return nil
	}
	switch {
	case isEnv:
		env, err := s.store.Environment(envID)
		if err == nil {
			return env // the sync goes on and authenticates against its keys
		}
		if !errors.Is(err, store.ErrNotFound) {
			s.internalError(w, "onboard: load environment", err)
			return nil
		}
		// Deleted since: the device is new again.
	case rejected:
		s.edgeError(w, http.StatusForbidden, protocol.CodeRejected, "an operator rejected this device; it cannot come back with the same key")
		return nil
	case isWaiting:
		if d.EdgeID != req.EdgeID {
			s.refuseIdentity(w, r, req, fmt.Errorf("this key waits under edge ID %q", d.EdgeID))
			return nil
		}
		now := s.now().Unix()
		rm.mu.Lock()
		if ws := rm.seen[waitID]; p.Counter > ws.Counter || now > ws.At {
			rm.seen[waitID] = store.WaitingSeen{At: now, Counter: max(ws.Counter, p.Counter)}
		}
		// Its latest call says its mode: the agent may have restarted in
		// the other one. Kept in memory, as trust reads it from there.
		d.Mode = modeOf(poll)
		rm.mu.Unlock()
		if s.slowedDown(w, "waiting", waitingPaceKey|waitID, "waiting device "+req.EdgeID, s.waitingFrequencies(poll), s.now()) {
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
	// A preauthorized edge ID trusts the key it names, once: the same
	// device under a second environment waits for an operator.
	preauthEdge := waitingroom.PreauthorizedPair(rules.PreauthorizedEdgeIDs, req.EdgeID, fp)
	var taken bool
	if preauthEdge {
		var err error
		if taken, err = s.edgeIDTaken(req.EdgeID); err != nil {
			s.internalError(w, "onboard: look up edge ID", err)
			return nil
		}
	}
	// Decide and reserve under one lock; the store write comes after it,
	// and a Full decision counts the slots reserved by devices not yet stored.
	rm.mu.Lock()
	curEnv, hasEnv := rm.envByKey[fp]
	if _, waitsNow := rm.byKey[fp]; rm.adding[fp] || waitsNow || (hasEnv && (!isEnv || curEnv != envID)) {
		// The same key, placed by a concurrent request: it learns which
		// on its next call.
		rm.mu.Unlock()
		s.answerWaiting(w, req.EdgeID, p, poll)
		return nil
	}
	if preauthEdge {
		if _, bound := rm.envByEdge[req.EdgeID]; taken || bound || rm.claims[req.EdgeID] {
			rules.PreauthorizedEdgeIDs, preauthEdge = nil, false // Decide checks req.EdgeID only
		}
	}
	decision := waitingroom.Decide(rules, rm.limiter, req.EdgeID, fp, source, len(rm.devices)+rm.reserved)
	var claim string // the preauthorized edge ID this device claims
	switch decision {
	case waitingroom.Wait:
		rm.adding[fp] = true
		rm.reserved++
	case waitingroom.Trust:
		rm.adding[fp] = true
		if preauthEdge {
			claim = req.EdgeID
			rm.claims[claim] = true
		}
	}
	rm.mu.Unlock()

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
			rm.release(fp, claim, false)
			s.internalError(w, "onboard: create environment", err)
			return nil
		}
		rm.bound(fp, req.EdgeID, env.ID)
		rm.release(fp, claim, false)
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
	if err := s.store.AddWaiting(nd); err != nil {
		rm.release(fp, "", true)
		s.internalError(w, "onboard: add to the waiting room", err)
		return nil
	}
	rm.mu.Lock()
	rm.devices[nd.ID], rm.byKey[fp] = nd, nd.ID
	delete(rm.adding, fp) // its slot is now a device
	rm.reserved--
	rm.mu.Unlock()
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
	if s.room.limiter.Allow(unverifiedLogKey+sourceOf(r), 1) {
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

// waitingQuery selects and orders waiting devices: q is a substring of the
// edge ID, hostname, key fingerprint or source address (any case); sort is
// firstSeen, lastSeen, hostname or edgeId.
type waitingQuery struct {
	q             string
	sort          string
	desc          bool
	limit, offset int
}

// waitingHit is a waiting device as the list sorts it: the record and its
// live last-seen time. Sorting these, not the views, keeps a page of a
// 10,000-device room to a pass and a sort of pointers.
type waitingHit struct {
	d    *store.WaitingDevice
	last int64
}

// waitingSorts are the orders the waiting room lists in.
var waitingSorts = map[string]func(a, b waitingHit) int{
	"firstSeen": func(a, b waitingHit) int { return cmp.Compare(a.d.FirstSeen, b.d.FirstSeen) },
	"lastSeen":  func(a, b waitingHit) int { return cmp.Compare(a.last, b.last) },
	"hostname":  func(a, b waitingHit) int { return strings.Compare(a.d.Hostname, b.d.Hostname) },
	"edgeId":    func(a, b waitingHit) int { return strings.Compare(a.d.EdgeID, b.d.EdgeID) },
}

// parseWaitingSort reads a sort parameter: a key of waitingSorts, - before
// it for descending, empty for firstSeen.
func parseWaitingSort(v string) (key string, desc bool, err error) {
	desc = strings.HasPrefix(v, "-")
	key = strings.TrimPrefix(v, "-")
	if key == "" {
		key = "firstSeen"
	}
	if waitingSorts[key] == nil {
		return "", false, fmt.Errorf("sort %q: want firstSeen, lastSeen, hostname or edgeId, with - for descending", v)
	}
	return key, desc, nil
}

// matchesWaiting reports whether d matches the lower-case search q.
func matchesWaiting(d *store.WaitingDevice, q string) bool {
	if q == "" {
		return true
	}
	for _, f := range [...]string{d.EdgeID, d.Hostname, d.KeyFingerprint, d.Source} {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}

// waitingPage returns one page of the waiting devices matching q, with the
// number that match. Each carries its live last-seen time and, when its
// edge ID is already bound to an environment (under another key, or it
// would not wait), that environment's ID.
func (s *Server) waitingPage(q waitingQuery) ([]waitingView, int) {
	q.q = strings.ToLower(strings.TrimSpace(q.q))
	by := waitingSorts[q.sort]
	if by == nil {
		by = waitingSorts["firstSeen"]
	}
	rm := s.room
	rm.mu.Lock()
	defer rm.mu.Unlock()
	hits := make([]waitingHit, 0, len(rm.devices))
	for id, d := range rm.devices {
		if !matchesWaiting(d, q.q) {
			continue
		}
		h := waitingHit{d: d, last: d.LastSeen}
		if ws, ok := rm.seen[id]; ok && ws.At > h.last {
			h.last = ws.At
		}
		hits = append(hits, h)
	}
	slices.SortFunc(hits, func(a, b waitingHit) int {
		c := cmp.Or(by(a, b), cmp.Compare(a.d.ID, b.d.ID))
		if q.desc {
			return -c
		}
		return c
	})
	total := len(hits)
	page := hits[min(q.offset, total):min(q.offset+q.limit, total)]
	items := make([]waitingView, 0, len(page))
	for _, h := range page {
		v := waitingView{WaitingDevice: *h.d, BoundTo: rm.envByEdge[h.d.EdgeID]}
		v.LastSeen = h.last
		items = append(items, v)
	}
	return items, total
}

// waitingIDs returns the IDs of every waiting device matching the search q
// (as in waitingQuery), in ID order.
func (s *Server) waitingIDs(q string) []uint64 {
	q = strings.ToLower(strings.TrimSpace(q))
	rm := s.room
	rm.mu.Lock()
	var ids []uint64
	for id, d := range rm.devices {
		if matchesWaiting(d, q) {
			ids = append(ids, id)
		}
	}
	rm.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// handleWaitingRoom serves GET /api/waiting-room: ?q= (a substring of the
// edge ID, hostname, key fingerprint or source address),
// ?sort=firstSeen|lastSeen|hostname|edgeId (- prefix for descending),
// ?limit=&offset=.
func (s *Server) handleWaitingRoom(w http.ResponseWriter, r *http.Request, _ session) {
	limit, offset, err := pageParams(r, 100, 1000)
	key, desc, serr := parseWaitingSort(r.URL.Query().Get("sort"))
	if err = errors.Join(err, serr); err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	items, total := s.waitingPage(waitingQuery{q: r.URL.Query().Get("q"), sort: key, desc: desc, limit: limit, offset: offset})
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "total": total})
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

// leave takes waiting device id, with key fingerprint fp, out of the room.
// The caller holds rm.mu.
func (rm *room) leave(id uint64, fp string) {
	delete(rm.devices, id)
	delete(rm.byKey, fp)
	delete(rm.seen, id)
}

// expireWaiting lets the waiting devices not seen for the edge settings'
// waitingExpiry go, so devices that called once and never again (a flood)
// do not hold the room. One that comes back later waits again. It runs after
// the last-seen times were flushed, so the store's are the live ones.
func (s *Server) expireWaiting(now int64) {
	cutoff := now - int64(s.edgeSettings().WaitingExpiry)
	rm := s.room
	var stale []uint64
	rm.mu.Lock()
	for id, d := range rm.devices {
		if ws, ok := rm.seen[id]; d.LastSeen < cutoff && (!ok || ws.At < cutoff) {
			stale = append(stale, id)
		}
	}
	rm.mu.Unlock()
	if len(stale) == 0 {
		return
	}
	gone, err := s.store.ExpireWaiting(stale, cutoff)
	if err != nil {
		s.log.Error("expire stale waiting devices", "err", err)
		return
	}
	rm.mu.Lock()
	for _, id := range gone {
		if d := rm.devices[id]; d != nil {
			rm.leave(id, d.KeyFingerprint)
		}
	}
	rm.mu.Unlock()
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
		s.room.mu.Lock()
		seen := s.room.seen[id]
		var mode, edgeID string
		if d := s.room.devices[id]; d != nil {
			seen.Counter = max(seen.Counter, d.Counter) // taken by a flush not yet written
			mode, edgeID = d.Mode, d.EdgeID             // mode from its latest call
		}
		boundTo := s.room.envByEdge[edgeID]
		s.room.mu.Unlock()
		res := waitingResult{ID: id, EdgeID: edgeID, BoundTo: boundTo}
		env, err := s.store.TrustWaiting(id, func(d *store.WaitingDevice) *store.Environment {
			d.Counter = max(d.Counter, seen.Counter)
			if mode != "" {
				d.Mode = mode
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
		s.room.mu.Lock()
		s.room.leave(id, fp)
		s.room.envByKey[fp] = env.ID
		s.room.envByEdge[env.EdgeID] = env.ID
		s.room.mu.Unlock()
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
		if boundTo != 0 {
			detail += fmt.Sprintf("; the edge ID was already bound to environment %d, which keeps its key", boundTo)
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
		s.room.mu.Lock()
		s.room.leave(id, d.KeyFingerprint)
		s.room.rejected[d.KeyFingerprint] = true
		s.room.mu.Unlock()
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
