package server

import (
	"cmp"
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"outpost/protocol"
	"outpost/scheduler"
	"outpost/server/store"
	"outpost/throttle"
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
	body, ok := s.readEdge(w, r, &req)
	if !ok {
		return
	}
	defer body.hold.Release()
	raw := body.raw
	if body.proved != 0 && body.proved != req.EnvID {
		s.edgeError(w, http.StatusForbidden, protocol.CodeIdentity,
			fmt.Sprintf("the body proof is for environment %d, the request for %d", body.proved, req.EnvID))
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
	// A version 1 agent knows no resync and could never echo the nonce: it
	// is served as before (its requests' version is under their proof, so
	// a version 2 request cannot pass for one).
	// From here the exchange is the device's: what it costs on the wire is
	// counted against it once answered.
	defer s.countUsage(env.ID, body.sent, w)
	if env.Resync != nil && req.Version >= 2 && !s.resynced(w, env, &req, proof, first) {
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

// resynced serves the resync of a restored store (Environment.Resync): a
// request that does not echo env's nonce is answered with it and nothing
// else; one that does clears it and goes on. It reports whether to go on.
// A signed request (first) is answered with the server's key, as always,
// for the device to check the answer with.
func (s *Server) resynced(w http.ResponseWriter, env *store.Environment, req *protocol.SyncRequest, proof *protocol.Proof, first bool) bool {
	if subtle.ConstantTimeCompare(req.Resync, env.Resync) == 1 {
		if _, err := s.store.UpdateEnvironmentShared(env.ID, func(e *store.Environment) error { e.Resync = nil; return nil }); err != nil {
			s.internalError(w, "sync: clear resync", err)
			return false
		}
		s.log.Info("device confirmed itself after the restore", "env", env.ID)
		return true
	}
	ans := protocol.SyncAnswer{Version: protocol.Version, EnvID: env.ID, Trust: protocol.TrustTrusted, Resync: env.Resync}
	if first {
		ans.Server = s.ids.serverKey
	}
	key, err := s.ids.macKey(env)
	if err == nil {
		err = protocol.SealAnswer(&ans, key, proof.Counter)
	}
	if err != nil {
		s.internalError(w, "sync: seal resync", err)
		return false
	}
	s.writeEdge(w, http.StatusOK, &ans)
	return false
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

// edgeBody is an edge request's body, read and decoded.
type edgeBody struct {
	raw  []byte // the body's CBOR, which identity proofs cover
	sent int    // the body's length as sent
	// proved is the environment whose device the body proof proved, 0 for
	// a body without one (kept to protocol.MaxUnprovedBody).
	proved uint64
	// hold is the request's share of the in-flight budget; the handler
	// releases it when it is done.
	hold *throttle.Hold
}

// Slow links and body deadlines: a body must arrive within
// bodyBaseTime plus its length at slowLinkRate (64 kbit/s, a satellite
// link), bounded by the endpoint's largest body: 4 MiB takes 9 minutes.
const (
	bodyBaseTime = 30 * time.Second
	slowLinkRate = 8 << 10 // bytes per second
)

// bodyDeadline is how long a body of length n (negative: unknown) up to
// most bytes may take to arrive: base, and n at slowLinkRate.
func bodyDeadline(base time.Duration, n, most int64) time.Duration {
	if n < 0 || n > most {
		n = most
	}
	return base + time.Duration(n)*time.Second/slowLinkRate
}

// readEdge reads and decodes an edge request body within the protocol
// bounds. The body is read against a deadline and the in-flight budget;
// it inflates past protocol.MaxUnprovedBody only under a body proof that
// verifies, checked on the bytes as sent. On success the caller releases
// the body's hold when done.
// unprovedReadMax is how much of a body without a body proof is read: what
// inflates to MaxUnprovedBody, with room for a zstd frame's own bytes
// around data that does not compress.
const unprovedReadMax = protocol.MaxUnprovedBody + 4<<10

func (s *Server) readEdge(w http.ResponseWriter, r *http.Request, msg any) (edgeBody, bool) {
	if ct := r.Header.Get("Content-Type"); ct != protocol.ContentType {
		s.edgeError(w, http.StatusUnsupportedMediaType, protocol.CodeMalformed,
			fmt.Sprintf("content type %q: edge endpoints take only %s", ct, protocol.ContentType))
		return edgeBody{}, false
	}
	b := edgeBody{hold: s.inflight.Hold()}
	// A body without a body proof inflates to MaxUnprovedBody at most, so
	// one larger than that as sent is refused whatever it holds: it is not
	// read (nor held in the in-flight budget) past that.
	readMax, readLimit := int64(protocol.MaxCompressedBody), "MaxCompressedBody"
	if r.Header.Get(protocol.BodyProofHeader) == "" {
		readMax, readLimit = unprovedReadMax, "MaxUnprovedBody"
	}
	rc := http.NewResponseController(w)
	wait := bodyDeadline(cmp.Or(s.bodyBase, bodyBaseTime), r.ContentLength, readMax)
	_ = rc.SetReadDeadline(time.Now().Add(wait)) // not every connection has one (tests)
	ok := false
	defer func() {
		if !ok {
			b.hold.Release()
			// A body left unread is not waited for: net/http would read
			// what is left before it answers, from a client that may be
			// stalling on purpose.
			_ = rc.SetReadDeadline(time.Now())
			w.Header().Set("Connection", "close")
		}
	}()
	body, err := io.ReadAll(b.hold.Reader(http.MaxBytesReader(w, r.Body, readMax)))
	s.metrics.bytesIn.Add(float64(len(body)))
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe) && readLimit == "MaxUnprovedBody":
			s.edgeError(w, http.StatusRequestEntityTooLarge, protocol.CodeLimit, fmt.Sprintf("%s; a body past %d bytes must carry a body proof (%s); agents of protocol version 2 send one",
				(&protocol.LimitError{Limit: readLimit, Max: protocol.MaxUnprovedBody}).Error(), protocol.MaxUnprovedBody, protocol.BodyProofHeader))
		case errors.As(err, &mbe):
			s.edgeError(w, http.StatusRequestEntityTooLarge, protocol.CodeLimit, (&protocol.LimitError{Limit: readLimit, Max: protocol.MaxCompressedBody}).Error())
		case errors.Is(err, throttle.ErrBudgetSpent):
			s.busy(w)
		case errors.As(err, &ne) && ne.Timeout():
			s.edgeError(w, http.StatusRequestTimeout, protocol.CodeMalformed, fmt.Sprintf("the body did not arrive within %v", wait))
		default:
			s.edgeError(w, http.StatusBadRequest, protocol.CodeMalformed, "read body: "+err.Error())
		}
		return edgeBody{}, false
	}
	enc := r.Header.Get("Content-Encoding")
	limit := protocol.MaxUnprovedBody
	if v := r.Header.Get(protocol.BodyProofHeader); v != "" {
		env, tag, err := protocol.ParseBodyProof(v)
		if err != nil {
			s.edgeError(w, http.StatusBadRequest, protocol.CodeMalformed, err.Error())
			return edgeBody{}, false
		}
		if err := s.checkBodyProof(env, tag, body); err != nil {
			if !errors.Is(err, errIdentity) {
				s.internalError(w, "check body proof", err)
				return edgeBody{}, false
			}
			if s.auditRefusal(r.RemoteAddr, "device", auditIdentityRefused, envTarget(env), err.Error()) {
				s.log.Warn("edge request refused (logged once a minute per network and environment)", "env", env, "remote", r.RemoteAddr, "err", err)
			}
			s.edgeError(w, http.StatusForbidden, protocol.CodeIdentity, err.Error())
			return edgeBody{}, false
		}
		limit, b.proved = protocol.MaxDecompressedBody, env
	}
	if err := b.hold.Take(int64(protocol.InflatedBound(body, enc, limit))); err != nil {
		s.busy(w)
		return edgeBody{}, false
	}
	raw, err := protocol.InflateLimit(body, enc, limit)
	if err == nil {
		b.hold.Keep(int64(len(body) + len(raw))) // what it holds now
		err = protocol.Unmarshal(raw, msg)
	}
	if err != nil {
		code := protocol.CodeLimit
		var le *protocol.LimitError
		switch {
		case errors.As(err, &le) && le.Limit == "MaxUnprovedBody":
			err = fmt.Errorf("%w: a body that inflates past %d bytes must carry a body proof (%s); agents of protocol version 2 send one", err, protocol.MaxUnprovedBody, protocol.BodyProofHeader)
		case !errors.Is(err, protocol.ErrLimit):
			code = protocol.CodeMalformed
		}
		s.edgeError(w, http.StatusBadRequest, code, err.Error())
		return edgeBody{}, false
	}
	b.raw, b.sent, ok = raw, len(body), true
	return b, true
}

// busy answers a request the in-flight budget cannot take: slow_down.
func (s *Server) busy(w http.ResponseWriter) {
	s.writeEdge(w, http.StatusTooManyRequests, &protocol.Error{Version: protocol.Version, Code: protocol.CodeSlowDown, RetryAfter: busyRetry,
		Message: throttle.ErrBudgetSpent.Error()})
}

// busyRetry is how long, in seconds, a device told the server is busy waits.
const busyRetry = 5

// checkBodyProof checks a body proof for env against the body as sent: the
// MAC under the bound device's key or the environment's enrollment key, or
// the bound device's signature.
func (s *Server) checkBodyProof(env uint64, tag, body []byte) error {
	e, err := s.store.Environment(env)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: the body proof names environment %d, which does not exist", errIdentity, env)
	} else if err != nil {
		return err
	}
	in := protocol.BodyProofInput(env, body)
	switch len(tag) {
	case protocol.MACSize:
		if e.EdgeID != "" && e.DeviceDH != nil {
			key, err := s.ids.macKey(e)
			if err != nil {
				return err
			}
			if protocol.CheckMAC(key, in, tag) {
				return nil
			}
		}
		if e.EnrollKey != nil && protocol.CheckMAC(e.EnrollKey, in, tag) {
			return nil
		}
	case ed25519.SignatureSize:
		if len(e.PublicKey) == ed25519.PublicKeySize && ed25519.Verify(e.PublicKey, in, tag) {
			return nil
		}
	case protocol.MACSize + ed25519.SignatureSize:
		// A first contact's: the enrollment MAC, then the signature for
		// when this server bound the device already.
		mac, sig := tag[:protocol.MACSize], tag[protocol.MACSize:]
		if e.EnrollKey != nil && protocol.CheckMAC(e.EnrollKey, in, mac) {
			return nil
		}
		if len(e.PublicKey) == ed25519.PublicKeySize && ed25519.Verify(e.PublicKey, in, sig) {
			return nil
		}
	}
	return fmt.Errorf("%w: the body proof does not verify for environment %d", errIdentity, env)
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

// countUsage counts one exchange of env: in bytes of request body as sent,
// and the answer's body as written (w counts it, see metrics.edge).
func (s *Server) countUsage(env uint64, in int, w http.ResponseWriter) {
	out := 0
	if cw, ok := w.(*countingWriter); ok {
		out = cw.n
	}
	s.usage.Add(env, s.now(), in, out)
}
