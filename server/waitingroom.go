package server

import (
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
	"outpost/server/store"
	"outpost/waitingroom"
)

// Audit actions of the waiting room.
const (
	auditDeviceArrived = "device.waiting"
	auditDeviceTrusted = "device.trusted"
)

// room is the waiting room in memory: its devices with their live last-seen
// times, rejected keys, and which environment a trusted key became.
type room struct {
	limiter *waitingroom.Limiter

	mu       sync.Mutex // guards the maps; never held across a store call
	devices  map[uint64]*store.WaitingDevice
	byKey    map[string]uint64 // key fingerprint -> waiting device ID
	envByKey map[string]uint64 // key fingerprint -> environment bound to it
	rejected map[string]bool
	seen     map[uint64]store.WaitingSeen // not yet flushed
}

func loadRoom(st *store.Store, limiter *waitingroom.Limiter) (*room, error) {
	rm := &room{limiter: limiter, devices: map[uint64]*store.WaitingDevice{}, byKey: map[string]uint64{},
		envByKey: map[string]uint64{}, rejected: map[string]bool{}, seen: map[uint64]store.WaitingSeen{}}
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

// bound records that an environment is bound to the key with fingerprint fp.
func (rm *room) bound(fp string, env uint64) {
	rm.mu.Lock()
	rm.envByKey[fp] = env
	rm.mu.Unlock()
}

func (rm *room) takeSeen() map[uint64]store.WaitingSeen {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	d := rm.seen
	rm.seen = map[uint64]store.WaitingSeen{}
	return d
}

// onboard handles a request made with the onboarding key (environment 0). It
// returns the environment the device already is, for the caller to go on as
// with any sync; or it answers (waiting, refused) itself and returns nil.
func (s *Server) onboard(w http.ResponseWriter, r *http.Request, req *protocol.SyncRequest, input []byte, p *protocol.Proof) *store.Environment {
	if p == nil || len(p.Key) != ed25519.PublicKeySize || len(p.DH) != 32 || req.EdgeID == "" || !ed25519.Verify(p.Key, input, p.Tag) {
		s.refuseIdentity(w, r, req, errors.New("a device calling with the onboarding key signs its request with its identity key and sends its edge ID and keys"))
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
		rm.mu.Unlock()
		s.answerWaiting(w)
		return nil
	}

	es := s.edgeSettings()
	rules := waitingroom.Rules{
		TrustOnFirstConnect: es.TrustOnFirstConnect, PreauthorizedEdgeIDs: es.PreauthorizedEdgeIDs,
		PreauthorizedKeys: es.PreauthorizedKeys, Max: es.WaitingRoomMax, PerMinute: es.NewDevicesPerMinute,
	}
	source := r.RemoteAddr
	if h, _, err := net.SplitHostPort(source); err == nil {
		source = h
	}
	// The size is read, then the device added, without one lock across the
	// store write: two devices arriving together may overshoot Max by one.
	switch waitingroom.Decide(rules, rm.limiter, req.EdgeID, fp, source, rm.size()) {
	case waitingroom.SlowDown:
		s.edgeError(w, http.StatusTooManyRequests, protocol.CodeSlowDown,
			fmt.Sprintf("too many new devices from %s; retry in a minute", source))
		return nil
	case waitingroom.Full:
		s.edgeError(w, http.StatusServiceUnavailable, protocol.CodeWaitingRoomFull,
			fmt.Sprintf("the waiting room is full (%d devices); retry later", es.WaitingRoomMax))
		return nil
	case waitingroom.Trust:
		env := newEnvironmentFor(&store.WaitingDevice{EdgeID: req.EdgeID, PublicKey: p.Key, DeviceDH: p.DH}, req.Agent, s.now().Unix())
		if err := s.store.CreateEnvironment(env); err != nil {
			s.internalError(w, "onboard: create environment", err)
			return nil
		}
		rm.bound(fp, env.ID)
		s.fleetIndex().putEnv(env)
		s.audit(r, deviceActor(env.ID), auditDeviceTrusted, envTarget(env.ID), "trusted by rule on first contact: edge ID "+req.EdgeID+", key "+fp)
		return env
	}
	nd := &store.WaitingDevice{
		EdgeID: req.EdgeID, KeyFingerprint: fp, PublicKey: p.Key, DeviceDH: p.DH, Source: source,
		FirstSeen: s.now().Unix(), LastSeen: s.now().Unix(), Counter: p.Counter,
	}
	if a := req.Agent; a != nil {
		nd.Hostname, nd.AgentVersion, nd.Platform, nd.OS, nd.Arch, nd.Groups, nd.Tags = a.Hostname, a.Version, a.Platform, a.OS, a.Arch, a.Groups, a.Tags
	}
	if err := s.store.AddWaiting(nd); err != nil {
		s.internalError(w, "onboard: add to the waiting room", err)
		return nil
	}
	rm.mu.Lock()
	rm.devices[nd.ID], rm.byKey[fp] = nd, nd.ID
	rm.mu.Unlock()
	s.audit(r, "device "+req.EdgeID, auditDeviceArrived, "waiting device "+strconv.FormatUint(nd.ID, 10), "key "+fp+", hostname "+nd.Hostname)
	s.answerWaiting(w)
	return nil
}

// answerWaiting tells a device it waits: no environment, no commands, no
// snapshot ack; only when to call again.
func (s *Server) answerWaiting(w http.ResponseWriter) {
	f := s.edgeSettings().Frequencies
	s.writeEdge(w, http.StatusOK, &protocol.SyncAnswer{Version: protocol.Version, Trust: protocol.TrustWaiting,
		Freq: &protocol.Frequencies{Ping: f.Ping, Snapshot: f.Ping, Command: f.Ping}})
}

// refuseIdentity answers and audits an identity refusal.
func (s *Server) refuseIdentity(w http.ResponseWriter, r *http.Request, req *protocol.SyncRequest, err error) {
	s.log.Warn("sync refused", "env", req.EnvID, "edge_id", req.EdgeID, "remote", r.RemoteAddr, "err", err)
	s.audit(r, deviceActor(req.EnvID), auditIdentityRefused, envTarget(req.EnvID), "edge ID "+req.EdgeID+": "+err.Error())
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
	return &store.Environment{
		Name: name, Mode: store.ModeAsync, Created: now, Trusted: true,
		EdgeID: d.EdgeID, PublicKey: d.PublicKey, DeviceDH: d.DeviceDH, LastCounter: d.Counter, Agent: agent,
	}
}

// waitingView is a waiting device as the API shows it.
type waitingView struct {
	store.WaitingDevice
	PublicKey []byte `json:"publicKey,omitempty"`
	DeviceDH  []byte `json:"deviceDH,omitempty"`
}

// handleWaitingRoom serves GET /api/waiting-room: ?q= (edge ID or hostname
// substring), ?sort=firstSeen|lastSeen|hostname|edgeId (- prefix for
// descending), ?limit=&offset=.
func (s *Server) handleWaitingRoom(w http.ResponseWriter, r *http.Request, _ session) {
	q := strings.ToLower(r.URL.Query().Get("q"))
	limit, offset, err := pageParams(r, 100, 1000)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	rm := s.room
	rm.mu.Lock()
	items := make([]waitingView, 0, len(rm.devices))
	for id, d := range rm.devices {
		v := waitingView{WaitingDevice: *d}
		if ws, ok := rm.seen[id]; ok && ws.At > v.LastSeen {
			v.LastSeen = ws.At
		}
		if q == "" || strings.Contains(strings.ToLower(d.EdgeID), q) || strings.Contains(strings.ToLower(d.Hostname), q) {
			items = append(items, v)
		}
	}
	rm.mu.Unlock()
	sortKey := r.URL.Query().Get("sort")
	desc := strings.HasPrefix(sortKey, "-")
	sortKey = strings.TrimPrefix(sortKey, "-")
	var cmp func(a, b waitingView) int
	switch sortKey {
	case "", "firstSeen":
		cmp = func(a, b waitingView) int { return int(a.FirstSeen - b.FirstSeen) }
	case "lastSeen":
		cmp = func(a, b waitingView) int { return int(a.LastSeen - b.LastSeen) }
	case "hostname":
		cmp = func(a, b waitingView) int { return strings.Compare(a.Hostname, b.Hostname) }
	case "edgeId":
		cmp = func(a, b waitingView) int { return strings.Compare(a.EdgeID, b.EdgeID) }
	default:
		writeErr(w, http.StatusBadRequest, "sort %q: want firstSeen, lastSeen, hostname or edgeId, with - for descending", sortKey)
		return
	}
	slices.SortStableFunc(items, func(a, b waitingView) int {
		c := cmp(a, b)
		if c == 0 {
			c = int(a.ID) - int(b.ID)
		}
		if desc {
			return -c
		}
		return c
	})
	total := len(items)
	items = items[min(offset, total):min(offset+limit, total)]
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

// waitingProblem words why waiting device id could not be acted on.
func (s *Server) waitingProblem(id uint64, action string, err error) string {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Sprintf("waiting device %d: not in the waiting room", id)
	}
	s.log.Error(action+" waiting device", "id", id, "err", err)
	return fmt.Sprintf("waiting device %d: could not be %s", id, action)
}

// handleTrust serves POST /api/waiting-room/trust: each device becomes a
// trusted environment, with the given tags and edge groups.
func (s *Server) handleTrust(w http.ResponseWriter, r *http.Request, ss session) {
	req, ok := readWaitingAction(w, r)
	if !ok {
		return
	}
	var created []environmentView
	var problems []string
	global := s.globalFrequencies()
	for _, id := range req.IDs {
		s.room.mu.Lock()
		seen := s.room.seen[id]
		s.room.mu.Unlock()
		env, err := s.store.TrustWaiting(id, func(d *store.WaitingDevice) *store.Environment {
			d.Counter = max(d.Counter, seen.Counter)
			return newEnvironmentFor(d, nil, s.now().Unix())
		})
		if err != nil {
			problems = append(problems, s.waitingProblem(id, "trusted", err))
			continue
		}
		fp := keyFingerprint(env.PublicKey)
		s.room.mu.Lock()
		s.room.leave(id, fp)
		s.room.envByKey[fp] = env.ID
		s.room.mu.Unlock()
		s.fleetIndex().putEnv(env)
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
		s.audit(r, ss.user, auditDeviceTrusted, envTarget(env.ID), "edge ID "+env.EdgeID+", key "+fp)
		created = append(created, s.view(env, global))
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
	var rejected []uint64
	var problems []string
	for _, id := range req.IDs {
		d, err := s.store.RejectWaiting(id, store.RejectedKey{At: s.now().Unix(), By: ss.user})
		if err != nil {
			problems = append(problems, s.waitingProblem(id, "rejected", err))
			continue
		}
		s.room.mu.Lock()
		s.room.leave(id, d.KeyFingerprint)
		s.room.rejected[d.KeyFingerprint] = true
		s.room.mu.Unlock()
		s.audit(r, ss.user, auditDeviceRejected, "waiting device "+strconv.FormatUint(id, 10), "edge ID "+d.EdgeID+", key "+d.KeyFingerprint)
		rejected = append(rejected, id)
	}
	status := http.StatusOK
	if len(rejected) == 0 {
		status = http.StatusBadRequest
	}
	writeJSON(w, status, map[string]any{"rejected": rejected, "problems": problems})
}

// handleOnboardingKey serves GET /api/edge/onboarding-key: the edge key any
// device may use to call in and land in the waiting room.
func (s *Server) handleOnboardingKey(w http.ResponseWriter, _ *http.Request, _ session) {
	writeJSON(w, http.StatusOK, map[string]string{"edgeKey": s.edgeKey(0)})
}
