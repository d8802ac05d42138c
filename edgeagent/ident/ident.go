package ident

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"

	"outpost/protocol"
)

// CounterBlock is how many proof counters a device reserves at a time: the
// agent writes its state once per block, not once per exchange (flash
// wears), and skips a block when the server refuses its counter.
const CounterBlock = 1000

// ErrUnverified: an answer that does not prove it comes from the server the
// edge key names.
var ErrUnverified = errors.New("the answer's tag does not verify: it did not come from the server the edge key names")

// Identity proves a device's requests: a signature by its Ed25519 key until
// it holds the server's key agreement key, a MAC after.
type Identity struct {
	Key    ed25519.PrivateKey
	DH     *ecdh.PrivateKey
	EdgeID string
	// Env is the environment the device proves itself to; 0 until an
	// onboarding key's device is placed.
	Env uint64
	// Pin is the tunnel host key fingerprint from the edge key.
	Pin string
	// Counter is the last proof counter used.
	Counter uint64
	// MAC is the key shared with the server; nil until bound.
	MAC []byte
	// Enroll is the enrollment key of the edge key's secret (protocol.
	// EnrollKey): a signed first contact proves it. For a pre-staged
	// environment it is that environment's (EnrollEnv); for the onboarding
	// key the fleet's (EnrollEnv 0).
	Enroll    []byte
	EnrollEnv uint64
}

// New is the identity of a device holding key and dh under edge ID edgeID,
// for the edge key k. It signs until Bind or SetServerKey gives it a MAC key.
func New(key ed25519.PrivateKey, dh *ecdh.PrivateKey, edgeID string, k protocol.EdgeKey) *Identity {
	id := &Identity{Key: key, DH: dh, EdgeID: edgeID, Env: k.EnvironmentID, Pin: k.TunnelFingerprint}
	if k.Secret != "" {
		id.Enroll, id.EnrollEnv = protocol.EnrollKey(k.Secret), k.EnvironmentID
	}
	return id
}

// Generate is New with fresh keys: a device that keeps none (the fleet
// simulator's, a benchmark's). The agent keeps its own in its state.
func Generate(edgeID string, k protocol.EdgeKey) (*Identity, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	dh, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return New(key, dh, edgeID, k), nil
}

// Seal gives req its proof with the next counter. reserve, when not nil, is
// called with that counter before it is used: the agent persists a new block
// of counters there when the counter passes its last reserved one. An error
// from reserve leaves req unsealed.
func (id *Identity) Seal(req *protocol.SyncRequest, reserve func(counter uint64) error) error {
	id.Counter++
	if reserve != nil {
		if err := reserve(id.Counter); err != nil {
			return fmt.Errorf("reserve proof counters: %w", err)
		}
	}
	req.Proof = &protocol.Proof{Counter: id.Counter}
	if id.MAC != nil {
		return protocol.Seal(req, req.Proof, func(in []byte) []byte { return protocol.MAC(id.MAC, in) })
	}
	req.Proof.Key = id.Key.Public().(ed25519.PublicKey)
	req.Proof.DH = id.DH.PublicKey().Bytes()
	return protocol.SealEnrolled(req, req.Proof, id.Enroll, func(in []byte) []byte { return ed25519.Sign(id.Key, in) })
}

// Refused is what a device does when the server refuses its proof
// (protocol.CodeIdentity): it skips a block of counters and goes back to a
// signed contact.
func (id *Identity) Refused() {
	id.Counter += CounterBlock
	id.MAC = nil
}

// BodyProof is the body proof header for a body of a request to env, with
// the key the request's own proof uses: the MAC key, else the enrollment
// key, else the identity key. A request under the onboarding key (env 0)
// has none: nobody knows the device yet.
func (id *Identity) BodyProof(env uint64, body []byte) string {
	if env == 0 {
		return ""
	}
	in := protocol.BodyProofInput(env, body)
	switch {
	case id.MAC != nil:
		return protocol.FormatBodyProof(env, protocol.MAC(id.MAC, in))
	case id.Enroll != nil && id.EnrollEnv == env:
		// The enrollment MAC for a server that has not bound the device
		// yet, and the signature for one that has (its answer was lost).
		return protocol.FormatBodyProof(env, append(protocol.MAC(id.Enroll, in), ed25519.Sign(id.Key, in)...))
	}
	return protocol.FormatBodyProof(env, ed25519.Sign(id.Key, in))
}

// ServerKeyFor checks the server's key agreement key against the pinned
// tunnel host key and returns the MAC key it gives for environment env.
// It changes nothing: the caller adopts the key once the answer it came in
// has verified under it.
func (id *Identity) ServerKeyFor(k *protocol.ServerKey, env uint64) ([]byte, error) {
	host, err := ssh.ParsePublicKey(k.HostKey)
	if err != nil {
		return nil, fmt.Errorf("server host key: %w", err)
	}
	if fp := ssh.FingerprintSHA256(host); fp != id.Pin {
		return nil, fmt.Errorf("the server's tunnel host key is %s but the edge key pins %s: this is not the server the key was made for", fp, id.Pin)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(k.Sig, &sig); err != nil {
		return nil, fmt.Errorf("server key signature: %w", err)
	}
	if err := host.Verify(protocol.ServerKeyMessage(k.DH), &sig); err != nil {
		return nil, fmt.Errorf("server key signature does not verify: %w", err)
	}
	return id.MACFor(k.DH, env)
}

// Bind adopts the MAC key of environment env, once an answer verified
// under it (VerifyAnswer) bound the device there.
func (id *Identity) Bind(key []byte, env uint64) { id.MAC, id.Env = key, env }

// SetServerKey adopts the MAC key a kept server key agreement key gives for
// the identity's environment (an agent resuming from its state).
func (id *Identity) SetServerKey(serverDH []byte) error {
	k, err := id.MACFor(serverDH, id.Env)
	if err == nil {
		id.MAC = k
	}
	return err
}

// MACFor derives the MAC key shared with the server for environment env.
func (id *Identity) MACFor(serverDH []byte, env uint64) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(serverDH)
	if err != nil {
		return nil, err
	}
	shared, err := id.DH.ECDH(pub)
	if err != nil {
		return nil, err
	}
	return protocol.MACKey(shared, env, id.EdgeID)
}

// VerifyAnswer checks an answer's tag for the request that carried counter;
// raw is the answer's CBOR as received. The key is the MAC key, or, when the
// answer brings the server's key agreement key (first contact, onboarding,
// waiting), the key it gives for the environment: the device's own, or the
// one the answer assigns (0 while waiting). It returns that key and
// environment, and changes nothing.
func (id *Identity) VerifyAnswer(raw []byte, ans *protocol.SyncAnswer, counter uint64) (key []byte, env uint64, err error) {
	key, env = id.MAC, id.Env
	if ans.Server != nil {
		if env == 0 {
			env = ans.EnvID
		}
		if key, err = id.ServerKeyFor(ans.Server, env); err != nil {
			return nil, 0, err
		}
	}
	if key == nil {
		return nil, 0, ErrUnverified
	}
	in, tag, err := protocol.AnswerInput(raw, counter)
	if err != nil || !protocol.CheckMAC(key, in, tag) {
		return nil, 0, ErrUnverified
	}
	return key, env, nil
}

// Fingerprint is the identity key's SSH-style fingerprint, as the server's
// waiting room shows it.
func (id *Identity) Fingerprint() string {
	pk, err := ssh.NewPublicKey(id.Key.Public())
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(pk)
}
