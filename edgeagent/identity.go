package edgeagent

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"

	"golang.org/x/crypto/ssh"

	"outpost/protocol"
)

// counterBlock is how many proof counters the agent reserves at a time: the
// state is written once per block, not once per exchange (flash wears).
const counterBlock = 1000

// identity proves the device's requests: a signature by its Ed25519 key until
// it holds the server's key agreement key, a MAC after.
type identity struct {
	key     ed25519.PrivateKey
	dh      *ecdh.PrivateKey
	edgeID  string
	env     uint64
	pin     string // tunnel host key fingerprint from the edge key
	counter uint64
	mac     []byte
	// enroll is the enrollment key of the edge key's secret (protocol.
	// EnrollKey): a signed first contact proves it. For a pre-staged
	// environment it is that environment's (enrollEnv); for the onboarding
	// key the fleet's (enrollEnv 0).
	enroll    []byte
	enrollEnv uint64
}

// newIdentity resumes the device's identity from its keys and state: counters
// start past the last reserved block, and the MAC key comes back if the
// server's key was kept. An error leaves a usable identity that signs.
func newIdentity(cfg Config, key ed25519.PrivateKey, dh *ecdh.PrivateKey, edgeID string, st *state) (*identity, error) {
	id := &identity{key: key, dh: dh, edgeID: edgeID, env: cfg.Key.EnvironmentID, pin: cfg.Key.TunnelFingerprint, counter: st.Reserved}
	if id.env == 0 {
		id.env = st.EnvID // onboarded on an earlier start
	}
	if cfg.Key.Secret != "" {
		id.enroll, id.enrollEnv = protocol.EnrollKey(cfg.Key.Secret), cfg.Key.EnvironmentID
	}
	if st.ServerDH != nil {
		if err := id.deriveMAC(st.ServerDH); err != nil {
			st.ServerDH = nil
			return id, err
		}
	}
	return id, nil
}

// seal gives req its proof with the next counter. reserve persists a new
// block of counters before one is used.
func (id *identity) seal(req *protocol.SyncRequest, st *state, reserve func() error) error {
	id.counter++
	if id.counter > st.Reserved {
		st.Reserved = id.counter + counterBlock
		if err := reserve(); err != nil {
			return fmt.Errorf("reserve proof counters: %w", err)
		}
	}
	req.Proof = &protocol.Proof{Counter: id.counter}
	if id.mac != nil {
		return protocol.Seal(req, req.Proof, func(in []byte) []byte { return protocol.MAC(id.mac, in) })
	}
	req.Proof.Key = id.key.Public().(ed25519.PublicKey)
	req.Proof.DH = id.dh.PublicKey().Bytes()
	return protocol.SealEnrolled(req, req.Proof, id.enroll, func(in []byte) []byte { return ed25519.Sign(id.key, in) })
}

// bodyProof is the body proof header for a body of a request to env, with
// the key the request's own proof uses: the MAC key, else the enrollment
// key, else the identity key. A request under the onboarding key (env 0)
// has none: nobody knows the device yet.
func (id *identity) bodyProof(env uint64, body []byte) string {
	if env == 0 {
		return ""
	}
	in := protocol.BodyProofInput(env, body)
	switch {
	case id.mac != nil:
		return protocol.FormatBodyProof(env, protocol.MAC(id.mac, in))
	case id.enroll != nil && id.enrollEnv == env:
		// The enrollment MAC for a server that has not bound the device
		// yet, and the signature for one that has (its answer was lost).
		return protocol.FormatBodyProof(env, append(protocol.MAC(id.enroll, in), ed25519.Sign(id.key, in)...))
	}
	return protocol.FormatBodyProof(env, ed25519.Sign(id.key, in))
}

// serverKeyFor checks the server's key agreement key against the pinned
// tunnel host key and returns the MAC key it gives for environment env.
// It changes nothing: the caller adopts the key once the answer it came in
// has verified under it.
func (id *identity) serverKeyFor(k *protocol.ServerKey, env uint64) ([]byte, error) {
	host, err := ssh.ParsePublicKey(k.HostKey)
	if err != nil {
		return nil, fmt.Errorf("server host key: %w", err)
	}
	if fp := ssh.FingerprintSHA256(host); fp != id.pin {
		return nil, fmt.Errorf("the server's tunnel host key is %s but the edge key pins %s: this is not the server the key was made for", fp, id.pin)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(k.Sig, &sig); err != nil {
		return nil, fmt.Errorf("server key signature: %w", err)
	}
	if err := host.Verify(protocol.ServerKeyMessage(k.DH), &sig); err != nil {
		return nil, fmt.Errorf("server key signature does not verify: %w", err)
	}
	return id.macFor(k.DH, env)
}

func (id *identity) deriveMAC(serverDH []byte) error {
	k, err := id.macFor(serverDH, id.env)
	if err == nil {
		id.mac = k
	}
	return err
}

// macFor derives the MAC key shared with the server for environment env.
func (id *identity) macFor(serverDH []byte, env uint64) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(serverDH)
	if err != nil {
		return nil, err
	}
	shared, err := id.dh.ECDH(pub)
	if err != nil {
		return nil, err
	}
	return protocol.MACKey(shared, env, id.edgeID)
}

// fingerprint is the identity key's SSH-style fingerprint, as the server's
// waiting room shows it.
func (id *identity) fingerprint() string {
	pk, err := ssh.NewPublicKey(id.key.Public())
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(pk)
}
