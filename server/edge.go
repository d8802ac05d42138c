package server

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"outpost/protocol"
	"outpost/scheduler"
	"outpost/server/store"
)

// handleSync serves POST /edge/v1/sync, the async agent's one exchange per
// tick: check-in, snapshot push and command pull.
func (s *Server) handleSync(w http.ResponseWriter, r *http.Request) { s.exchange(w, r, false) }

// handlePoll serves POST /edge/v1/poll, the standard agent's poll: the same
// exchange, its commands released at every poll, and the tunnel status.
func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) { s.exchange(w, r, true) }

// exchange serves one sync or poll request.
func (s *Server) exchange(w http.ResponseWriter, r *http.Request, poll bool) {
	var req protocol.SyncRequest
	raw, ok := s.readEdge(w, r, &req)
	if !ok {
		return
	}
	if err := protocol.CheckVersion(req.Version); err != nil {
		s.edgeError(w, http.StatusBadRequest, protocol.CodeUnsupportedVersion, err.Error())
		return
	}
	if err := cmp.Or(checkRequestSizes(req.EdgeID, req.Agent), checkReports(&req)); err != nil {
		s.edgeError(w, http.StatusBadRequest, protocol.CodeLimit, err.Error())
		return
	}
	input, proof, err := protocol.ProofInput(raw)
	if err != nil {
		s.edgeError(w, http.StatusBadRequest, protocol.CodeMalformed, err.Error())
		return
	}
	var env *store.Environment
	if req.EnvID == 0 {
		// The onboarding key: a device the server may not know yet.
		if env = s.onboard(w, r, &req, input, proof, poll); env == nil {
			return
		}
	} else {
		env, err = s.store.Environment(req.EnvID)
		if errors.Is(err, store.ErrNotFound) {
			s.edgeError(w, http.StatusNotFound, protocol.CodeUnknownEnvironment,
				fmt.Sprintf("environment %d does not exist on this server; ask the operator for a new edge key", req.EnvID))
			return
		} else if err != nil {
			s.internalError(w, "sync: load environment", err)
			return
		}
	}
	var first bool
	if env, first, err = s.authenticate(env, req.EdgeID, req.Agent, input, proof); err != nil {
		if !errors.Is(err, errIdentity) {
			s.internalError(w, "sync: authenticate", err)
			return
		}
		s.refuseIdentity(w, r, &req, err)
		return
	}
	now := s.now()
	kind := "sync"
	if poll {
		kind = "poll"
	}
	// The environment's mode decides the answer, whichever endpoint the
	// device called: one that called the other mode's is told to switch.
	standard := env.Mode == store.ModeStandard
	freq := effectiveFrequencies(s.edgeSettings(), env.Mode, env.Frequencies)
	s.checkins.touch(env.ID, now.Unix(), onlineFor(freq))
	if s.slowedDown(w, kind, env.ID, fmt.Sprintf("environment %d", env.ID), freq, now) {
		return
	}

	ans := protocol.SyncAnswer{Version: protocol.Version, EnvID: env.ID, Trust: protocol.TrustTrusted, Freq: &freq}
	if first {
		ans.Server = s.ids.serverKey
	}
	if standard != poll {
		ans.Mode = wireMode(env.Mode)
	}
	if standard {
		ans.Tunnel = s.tunnelStatus(env.ID)
	}
	// The snapshot goes first: one refused for its size refuses the
	// request before any command is released or ack applied.
	if req.Snapshot != nil {
		ack, err := s.ingestSnapshot(env.ID, req.Snapshot, now)
		if errors.Is(err, protocol.ErrLimit) {
			s.edgeError(w, http.StatusBadRequest, protocol.CodeLimit, err.Error())
			return
		} else if err != nil {
			s.internalError(w, "sync: store snapshot", err)
			return
		}
		if ack.SendFull {
			kind := "full"
			if req.Snapshot.IsDelta() {
				kind = "delta"
			}
			s.metrics.snapshots.WithLabelValues(kind, "send_full").Inc()
		}
		ans.Snapshot = ack
	}
	if err = s.syncCommands(env, &req, freq, now, &ans, standard); err != nil {
		s.internalError(w, "sync: commands", err)
		return
	}
	// The answer is MACed for the device, bound to this request's counter:
	// an agent acts on no answer it cannot verify.
	key, err := s.ids.macKey(env)
	if err == nil {
		err = protocol.SealAnswer(&ans, key, proof.Counter)
	}
	if err != nil {
		s.internalError(w, "sync: seal answer", err)
		return
	}
	s.writeEdge(w, http.StatusOK, &ans)
}

// wireMode is an environment's mode as the protocol says it.
func wireMode(m string) protocol.Mode {
	if m == store.ModeStandard {
		return protocol.ModeStandard
	}
	return protocol.ModeAsync
}

// modeOf is the mode a device runs in, by the endpoint it called.
func modeOf(poll bool) string {
	if poll {
		return store.ModeStandard
	}
	return store.ModeAsync
}

// slowedDown counts an authenticated call by key and, if the device calls far
// faster than freq allows (scheduler.Guard), answers slow_down with how long
// to wait, logs it once a minute per device, and reports true. Only calls
// that proved the device's key count: nobody else can get a device slowed.
func (s *Server) slowedDown(w http.ResponseWriter, kind string, key uint64, who string, freq protocol.Frequencies, now time.Time) bool {
	every := time.Duration(min(freq.Ping, freq.Snapshot, freq.Command)) * time.Second
	v := s.pace.Check(key, every, now)
	if v.RetryAfter == 0 {
		return false
	}
	s.metrics.slowDowns.WithLabelValues(kind).Inc()
	limit := scheduler.Limit(every)
	if v.Log {
		s.log.Warn("device calls far faster than its frequency allows; told to slow down (logged once a minute)",
			"device", who, "calls_this_minute", v.Calls, "allowed", limit, "interval", every, "retry_after", v.RetryAfter)
	}
	retry := uint32((v.RetryAfter + time.Second - 1) / time.Second)
	s.writeEdge(w, http.StatusTooManyRequests, &protocol.Error{Version: protocol.Version, Code: protocol.CodeSlowDown, RetryAfter: retry,
		Message: fmt.Sprintf("%s called %d times this minute; its interval of %v allows %d; wait %d s", who, v.Calls, every, limit, retry)})
	return true
}

// readEdge reads and decodes an edge request body within the protocol bounds.
// It returns the body's CBOR, which identity proofs cover.
func (s *Server) readEdge(w http.ResponseWriter, r *http.Request, msg any) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != protocol.ContentType {
		s.edgeError(w, http.StatusUnsupportedMediaType, protocol.CodeMalformed,
			fmt.Sprintf("content type %q: edge endpoints take only %s", ct, protocol.ContentType))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, protocol.MaxCompressedBody))
	s.metrics.bytesIn.Add(float64(len(body)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.edgeError(w, http.StatusRequestEntityTooLarge, protocol.CodeLimit, (&protocol.LimitError{Limit: "MaxCompressedBody", Max: protocol.MaxCompressedBody}).Error())
			return nil, false
		}
		s.edgeError(w, http.StatusBadRequest, protocol.CodeMalformed, "read body: "+err.Error())
		return nil, false
	}
	raw, err := protocol.Inflate(body, r.Header.Get("Content-Encoding"))
	if err == nil {
		err = protocol.Unmarshal(raw, msg)
	}
	if err != nil {
		code := protocol.CodeMalformed
		if errors.Is(err, protocol.ErrLimit) {
			code = protocol.CodeLimit
		}
		s.edgeError(w, http.StatusBadRequest, code, err.Error())
		return nil, false
	}
	return raw, true
}

func (s *Server) writeEdge(w http.ResponseWriter, status int, msg any) {
	body, enc, err := protocol.WriteBody(msg)
	if err != nil {
		s.log.Error("encode edge answer", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", protocol.ContentType)
	h["Date"] = nil // a device never reads it; 37 bytes per exchange on a metered link
	if enc != "" {
		h.Set("Content-Encoding", enc)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) edgeError(w http.ResponseWriter, status int, code, msg string) {
	s.writeEdge(w, status, &protocol.Error{Version: protocol.Version, Code: code, Message: msg})
}

func (s *Server) internalError(w http.ResponseWriter, op string, err error) {
	s.log.Error(op, "err", err)
	s.edgeError(w, http.StatusInternalServerError, protocol.CodeInternal, "internal error; see the server log")
}
