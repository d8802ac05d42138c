package server

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"outpost/protocol"
	"outpost/scheduler"
	"outpost/server/store"
	"outpost/waitingroom"
)

// EdgeSettings are the server-wide settings of the edge fleet, stored as one
// setting ("edge") and served at /api/settings/edge.
type EdgeSettings struct {
	// Frequencies are the defaults (a standard environment's ping and command
	// default to PollInterval instead); an environment overrides them
	// field by field.
	Frequencies protocol.Frequencies `json:"frequencies"`
	// PollInterval is the standard-mode poll interval, in seconds.
	PollInterval uint32 `json:"pollInterval"`
	// TrustOnFirstConnect trusts every unknown device that calls in with the
	// onboarding key, skipping the waiting room. Off by default.
	TrustOnFirstConnect bool `json:"trustOnFirstConnect"`
	// PreauthorizedEdgeIDs and PreauthorizedKeys are trusted on first
	// contact; keys are SSH-style fingerprints ("SHA256:...") of the
	// device's Ed25519 identity key, and an edge ID entry names the device
	// with its key, "EDGE_ID SHA256:...": an edge ID alone proves nothing.
	PreauthorizedEdgeIDs []string `json:"preauthorizedEdgeIds"`
	PreauthorizedKeys    []string `json:"preauthorizedKeys"`
	// WaitingRoomMax caps the number of untrusted devices waiting.
	WaitingRoomMax int `json:"waitingRoomMax"`
	// NewDevicesPerMinute caps new unknown devices per source address.
	NewDevicesPerMinute int `json:"newDevicesPerMinute"`
	// NewDevicesPerNetwork caps them per source network (/24, /64) and
	// minute, NewDevicesTotal per minute from everywhere.
	NewDevicesPerNetwork int `json:"newDevicesPerNetwork"`
	NewDevicesTotal      int `json:"newDevicesTotal"`
	// WaitingExpiry is how long, in seconds, a waiting device that stops
	// calling stays in the room.
	WaitingExpiry int `json:"waitingExpiry"`
}

// Edge settings defaults and bounds, in one table.
const (
	defaultPollInterval        = 5
	defaultWaitingRoomMax      = 1000
	defaultNewDevicesPerMinute = 10
	defaultNewDevicesPerNet    = 30
	defaultNewDevicesTotal     = 300
	defaultWaitingExpiry       = 3600
	minWaitingExpiry           = 300
	maxFrequency               = 7 * 86400 // a week, in seconds
	maxPollInterval            = 3600
	maxPreauthorized           = 10000
)

// auditSettingsUpdate records a change of server-wide settings.
const auditSettingsUpdate = "settings.update"

// edgeSettingsKey is the store setting holding EdgeSettings;
// legacyFrequenciesKey is the older setting of the frequencies alone.
const (
	edgeSettingsKey      = "edge"
	legacyFrequenciesKey = "frequencies"
)

// withDefaults fills zero fields with their defaults.
func (e EdgeSettings) withDefaults() EdgeSettings {
	e.Frequencies = scheduler.Effective(e.Frequencies, nil)
	if e.PollInterval == 0 {
		e.PollInterval = defaultPollInterval
	}
	if e.WaitingRoomMax == 0 {
		e.WaitingRoomMax = defaultWaitingRoomMax
	}
	if e.NewDevicesPerMinute == 0 {
		e.NewDevicesPerMinute = defaultNewDevicesPerMinute
	}
	if e.NewDevicesPerNetwork == 0 {
		e.NewDevicesPerNetwork = defaultNewDevicesPerNet
	}
	if e.NewDevicesTotal == 0 {
		e.NewDevicesTotal = defaultNewDevicesTotal
	}
	if e.WaitingExpiry == 0 {
		e.WaitingExpiry = defaultWaitingExpiry
	}
	if e.PreauthorizedEdgeIDs == nil {
		e.PreauthorizedEdgeIDs = []string{}
	}
	if e.PreauthorizedKeys == nil {
		e.PreauthorizedKeys = []string{}
	}
	return e
}

// problems lists everything wrong with e at once, each naming the field and
// the value.
func (e EdgeSettings) problems() []string {
	var p []string
	for _, f := range []struct {
		name string
		v    uint32
	}{{"frequencies.ping", e.Frequencies.Ping}, {"frequencies.snapshot", e.Frequencies.Snapshot}, {"frequencies.command", e.Frequencies.Command}} {
		if f.v < scheduler.MinFrequency || f.v > maxFrequency {
			p = append(p, fmt.Sprintf("%s %d: want 1 to %d seconds", f.name, f.v, maxFrequency))
		}
	}
	if e.PollInterval < 1 || e.PollInterval > maxPollInterval {
		p = append(p, fmt.Sprintf("pollInterval %d: want 1 to %d seconds", e.PollInterval, maxPollInterval))
	}
	if e.WaitingRoomMax < 1 {
		p = append(p, fmt.Sprintf("waitingRoomMax %d: want at least 1", e.WaitingRoomMax))
	}
	if e.NewDevicesPerMinute < 1 {
		p = append(p, fmt.Sprintf("newDevicesPerMinute %d: want at least 1", e.NewDevicesPerMinute))
	}
	if e.NewDevicesPerNetwork < 1 || e.NewDevicesTotal < 1 {
		p = append(p, fmt.Sprintf("newDevicesPerNetwork %d, newDevicesTotal %d: want at least 1 each", e.NewDevicesPerNetwork, e.NewDevicesTotal))
	}
	if e.WaitingExpiry < minWaitingExpiry {
		p = append(p, fmt.Sprintf("waitingExpiry %d: want at least %d seconds", e.WaitingExpiry, minWaitingExpiry))
	}
	if len(e.PreauthorizedEdgeIDs) > maxPreauthorized || len(e.PreauthorizedKeys) > maxPreauthorized {
		p = append(p, fmt.Sprintf("preauthorized lists: at most %d entries each", maxPreauthorized))
	}
	for _, entry := range e.PreauthorizedEdgeIDs {
		id, fp, ok := waitingroom.SplitPreauthorized(entry)
		switch {
		case !ok:
			p = append(p, fmt.Sprintf("preauthorizedEdgeIds %q: an edge ID alone is a claim any device can make; give it with the device's key fingerprint, \"EDGE_ID SHA256:...\" (the agent logs its key at start, and the waiting room shows it), or list the key in preauthorizedKeys", entry))
		case id == "" || len(id) > 256:
			p = append(p, fmt.Sprintf("preauthorizedEdgeIds %q: want a non-empty edge ID of at most 256 characters before the fingerprint", entry))
		case plainText("preauthorizedEdgeIds", entry) != "":
			p = append(p, plainText("preauthorizedEdgeIds", entry))
		case !validFingerprint(fp):
			p = append(p, fmt.Sprintf("preauthorizedEdgeIds %q: want an SSH SHA256 fingerprint like \"SHA256:\" followed by 43 base64 characters after the edge ID", entry))
		}
	}
	for _, k := range e.PreauthorizedKeys {
		if !validFingerprint(k) {
			p = append(p, fmt.Sprintf("preauthorizedKeys %q: want an SSH SHA256 fingerprint like \"SHA256:\" followed by 43 base64 characters (ssh-keygen -lf key.pub)", k))
		}
	}
	return p
}

// validFingerprint reports whether fp has the form ssh.FingerprintSHA256
// gives: "SHA256:" and the unpadded base64 of a 32-byte digest.
func validFingerprint(fp string) bool {
	rest, ok := strings.CutPrefix(fp, "SHA256:")
	if !ok {
		return false
	}
	b, err := base64.RawStdEncoding.DecodeString(rest)
	return err == nil && len(b) == 32
}

// settingsCache holds the edge settings in memory so the sync hot path never
// reads the store for them.
type settingsCache struct {
	mu   sync.Mutex // serializes loads and writes; never held across network I/O
	edge atomic.Pointer[EdgeSettings]
}

// edgeSettings returns the edge settings with defaults filled. The first call
// reads the store; later ones answer from memory, refreshed by PUT
// /api/settings/edge. The caller must not modify the slices.
func (s *Server) edgeSettings() EdgeSettings {
	if e := s.settings.edge.Load(); e != nil {
		return *e
	}
	s.settings.mu.Lock()
	defer s.settings.mu.Unlock()
	if e := s.settings.edge.Load(); e != nil {
		return *e
	}
	e := s.loadEdgeSettings().withDefaults()
	s.settings.edge.Store(&e)
	return e
}

// loadEdgeSettings reads the stored settings, falling back to the older
// frequencies-only setting. A store error is logged and gives the defaults.
func (s *Server) loadEdgeSettings() EdgeSettings {
	var e EdgeSettings
	ok, err := s.store.Setting(edgeSettingsKey, &e)
	if err != nil {
		s.log.Error("read edge settings; using defaults", "err", err)
		return EdgeSettings{}
	}
	if !ok {
		if _, err := s.store.Setting(legacyFrequenciesKey, &e.Frequencies); err != nil {
			s.log.Error("read default frequencies; using defaults", "err", err)
		}
	}
	// Edge IDs stored alone, before they had to come with their key, trust
	// nobody now; they are dropped so the settings stay valid to send back.
	if bare := slices.DeleteFunc(slices.Clone(e.PreauthorizedEdgeIDs), func(entry string) bool {
		_, _, ok := waitingroom.SplitPreauthorized(entry)
		return ok
	}); len(bare) > 0 {
		s.log.Warn("preauthorized edge IDs without a key fingerprint trust nobody and are dropped; add them back as \"EDGE_ID SHA256:...\"", "edge_ids", bare)
		e.PreauthorizedEdgeIDs = slices.DeleteFunc(e.PreauthorizedEdgeIDs, func(entry string) bool {
			_, _, ok := waitingroom.SplitPreauthorized(entry)
			return !ok
		})
	}
	return e
}

// putEdgeSettings stores e (defaults filled) and makes it the cached value.
func (s *Server) putEdgeSettings(e EdgeSettings) error {
	e = e.withDefaults()
	s.settings.mu.Lock()
	defer s.settings.mu.Unlock()
	if err := s.store.PutSetting(edgeSettingsKey, e); err != nil {
		return err
	}
	s.settings.edge.Store(&e)
	return nil
}

// effectiveFrequencies is the one rule for an environment's frequencies, in
// either mode: field by field its own when set (not 0), else the server's
// default for its mode. The defaults are the global frequencies, except that
// a standard environment's ping and command default to the poll interval: it
// pulls its commands as often as it polls.
func effectiveFrequencies(set EdgeSettings, mode string, own *protocol.Frequencies) protocol.Frequencies {
	def := set.Frequencies
	if mode == store.ModeStandard {
		def.Ping, def.Command = set.PollInterval, set.PollInterval
	}
	return scheduler.Effective(def, own)
}

func (s *Server) handleGetEdgeSettings(w http.ResponseWriter, _ *http.Request, _ session) {
	writeJSON(w, http.StatusOK, s.edgeSettings())
}

// handlePutEdgeSettings replaces the edge settings. Fields left out of the
// body keep their default (not their current value): the body is the whole
// settings document.
func (s *Server) handlePutEdgeSettings(w http.ResponseWriter, r *http.Request, ss session) {
	var req EdgeSettings
	if !decodeJSON(w, r, &req) {
		return
	}
	req = req.withDefaults()
	if p := req.problems(); len(p) > 0 {
		writeErr(w, http.StatusBadRequest, "%s", strings.Join(p, "; "))
		return
	}
	if err := s.putEdgeSettings(req); err != nil {
		s.log.Error("store edge settings", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not store the settings")
		return
	}
	s.audit(r, ss.user, auditSettingsUpdate, "settings edge", fmt.Sprintf(
		"frequencies %d/%d/%d, poll %d, trust on first connect %t, %d preauthorized edge IDs, %d keys, waiting room max %d, %d new devices/min",
		req.Frequencies.Ping, req.Frequencies.Snapshot, req.Frequencies.Command, req.PollInterval, req.TrustOnFirstConnect,
		len(req.PreauthorizedEdgeIDs), len(req.PreauthorizedKeys), req.WaitingRoomMax, req.NewDevicesPerMinute))
	writeJSON(w, http.StatusOK, s.edgeSettings())
}
