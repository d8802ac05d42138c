package server

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"

	"outpost/protocol"
	"outpost/server/store"
)

// errIdentity is wrapped by every identity refusal.
var errIdentity = errors.New("identity refused")

// identities holds what checking device proofs needs in memory: derived MAC
// keys and the last counter accepted from each device.
type identities struct {
	dh        *ecdh.PrivateKey    // the server's key agreement key
	serverKey *protocol.ServerKey // dh's public half, signed by the tunnel host key

	mu      sync.Mutex // guards devices; never held across a store call
	devices map[uint64]*deviceProofs
}

// deviceProofs is what is cached of the device bound to one environment,
// for the key agreement key it was bound with: a device bound in its place
// (the edge key re-issued) starts afresh, whatever a request still in
// flight for the old one caches.
type deviceProofs struct {
	dh    []byte // the device's key agreement key these belong to
	mac   []byte // derived MAC key; nil until first needed
	last  uint64 // last accepted counter; from the stored floor after a restart
	floor uint64 // stored floor, as far as this process wrote it
}

// proofs returns env's cached state (id.mu held), made afresh from env for
// a device not seen yet or bound to another key agreement key.
func (id *identities) proofs(env *store.Environment) *deviceProofs {
	d := id.devices[env.ID]
	if d == nil || !bytes.Equal(d.dh, env.DeviceDH) {
		d = &deviceProofs{dh: bytes.Clone(env.DeviceDH), last: env.LastCounter, floor: env.LastCounter}
		id.devices[env.ID] = d
	}
	return d
}

func newIdentities(dataDir string, host ssh.Signer) (*identities, error) {
	dh, err := loadOrCreateDH(dataDir)
	if err != nil {
		return nil, err
	}
	pub := dh.PublicKey().Bytes()
	sig, err := host.Sign(rand.Reader, protocol.ServerKeyMessage(pub))
	if err != nil {
		return nil, fmt.Errorf("sign key agreement key: %w", err)
	}
	return &identities{
		dh:        dh,
		serverKey: &protocol.ServerKey{DH: pub, HostKey: host.PublicKey().Marshal(), Sig: ssh.Marshal(sig)},
		devices:   map[uint64]*deviceProofs{},
	}, nil
}

func loadOrCreateDH(dir string) (*ecdh.PrivateKey, error) {
	path := filepath.Join(dir, "sync_dh.key")
	if b, err := os.ReadFile(path); err == nil {
		return ecdh.X25519().NewPrivateKey(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return k, os.WriteFile(path, k.Bytes(), 0o600)
}

// macKey returns the MAC key shared with the device bound to env.
func (id *identities) macKey(env *store.Environment) ([]byte, error) {
	id.mu.Lock()
	k := id.proofs(env).mac
	id.mu.Unlock()
	if k != nil {
		return k, nil
	}
	pub, err := ecdh.X25519().NewPublicKey(env.DeviceDH)
	if err != nil {
		return nil, fmt.Errorf("environment %d: stored device key: %w", env.ID, err)
	}
	shared, err := id.dh.ECDH(pub)
	if err != nil {
		return nil, err
	}
	if k, err = protocol.MACKey(shared, env.ID, env.EdgeID); err != nil {
		return nil, err
	}
	id.mu.Lock()
	id.proofs(env).mac = k
	id.mu.Unlock()
	return k, nil
}

// forget drops what is cached of env's device: its MAC key and counters.
func (id *identities) forget(env uint64) {
	id.mu.Lock()
	delete(id.devices, env)
	id.mu.Unlock()
}

// counterFloorStep is how far ahead of the last accepted counter the stored
// floor is set. The floor is written (synchronously) only when a device's
// counter passes it: one store write per counterFloorStep requests.
const counterFloorStep = 1000

// advance accepts counter c from env's device if it is higher than any
// accepted before; a replayed or reordered request is refused.
//
// Every counter ever accepted is at most the floor kept in the store
// (Environment.LastCounter), so a restarted server, starting from the
// floor, refuses every old request: a crash forgets no replay protection.
// A device whose next counter is below the floor after such a restart is
// refused once and skips ahead a block (edgeagent).
func (s *Server) advance(env *store.Environment, c uint64) error {
	id := s.ids
	id.mu.Lock()
	d := id.proofs(env)
	if c <= d.last {
		last := d.last
		id.mu.Unlock()
		return fmt.Errorf("%w: counter %d is not above %d: a replayed or reordered request", errIdentity, c, last)
	}
	d.last = c
	floor := d.floor
	id.mu.Unlock()
	if c <= floor {
		return nil
	}
	next := c + counterFloorStep
	if err := s.store.RaiseCounterFloor(env.ID, next); err != nil {
		return fmt.Errorf("store the counter floor of environment %d: %w", env.ID, err)
	}
	id.mu.Lock()
	d.floor = max(d.floor, next)
	id.mu.Unlock()
	return nil
}

// authenticate checks a request's proof against env and binds env to the
// device on its first signed contact. first reports a signed first-contact
// proof, which the answer meets with the server's key agreement key.
//
// A proof is either an Ed25519 signature by the device key (first contact,
// carrying Key and DH) or a MAC under the key derived from DH; either way
// the counter must rise. Nothing in the edge key or on the wire lets a
// second device pass: it lacks the private keys.
func (s *Server) authenticate(env *store.Environment, edgeID string, agent *protocol.AgentInfo, input []byte, p *protocol.Proof) (_ *store.Environment, first bool, _ error) {
	if p == nil || p.Counter == 0 || len(p.Tag) == 0 {
		return nil, false, fmt.Errorf("%w: every request must carry a proof of the device key (counter and tag)", errIdentity)
	}
	if edgeID != "" && env.EdgeID != "" && edgeID != env.EdgeID {
		return nil, false, fmt.Errorf("%w: environment %d is bound to another device", errIdentity, env.ID)
	}
	if p.Key == nil {
		if env.EdgeID == "" {
			return nil, false, fmt.Errorf("%w: environment %d is not bound yet; the first contact must be signed", errIdentity, env.ID)
		}
		key, err := s.ids.macKey(env)
		if err != nil {
			return nil, false, err
		}
		if !protocol.CheckMAC(key, input, p.Tag) {
			return nil, false, fmt.Errorf("%w: the request's MAC does not verify for environment %d", errIdentity, env.ID)
		}
		return env, false, s.advance(env, p.Counter)
	}
	if len(p.Key) != ed25519.PublicKeySize || len(p.DH) != 32 {
		return nil, false, fmt.Errorf("%w: a signed first contact carries a 32-byte Ed25519 key and a 32-byte X25519 key", errIdentity)
	}
	if !ed25519.Verify(p.Key, input, p.Tag) {
		return nil, false, fmt.Errorf("%w: the first-contact signature does not verify", errIdentity)
	}
	if env.EdgeID != "" {
		// The bound device again (its answer was lost), or a copy of it.
		if !bytes.Equal(p.Key, env.PublicKey) || !bytes.Equal(p.DH, env.DeviceDH) {
			return nil, false, fmt.Errorf("%w: environment %d is bound to another identity key", errIdentity, env.ID)
		}
		return env, true, s.advance(env, p.Counter)
	}
	if edgeID == "" {
		return nil, false, fmt.Errorf("%w: the first contact must carry the edge ID", errIdentity)
	}
	if err := checkEnroll(env, input, p); err != nil {
		return nil, false, err
	}
	bound, err := s.store.UpdateEnvironmentShared(env.ID, func(e *store.Environment) error {
		if e.EdgeID != "" {
			return fmt.Errorf("%w: environment %d was bound meanwhile", errIdentity, e.ID)
		}
		if err := checkEnroll(e, input, p); err != nil {
			return err // re-issued meanwhile
		}
		e.EdgeID, e.PublicKey, e.DeviceDH, e.Agent = edgeID, p.Key, p.DH, agent
		e.EnrollKey = nil // spent
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if err := s.advance(bound, p.Counter); err != nil {
		return nil, false, err
	}
	s.room.Bound(keyFingerprint(p.Key), edgeID, bound.ID)
	return bound, true, nil
}

// checkEnroll checks that a first contact binding env proves the enrollment
// secret of env's edge key. Knowing an environment's ID is not enough to
// take it: without the secret, a device that calls first is refused, and the
// environment still waits for the device that was given its key.
func checkEnroll(env *store.Environment, input []byte, p *protocol.Proof) error {
	switch {
	case env.EnrollKey == nil:
		return fmt.Errorf("%w: environment %d has no enrollment secret to bind with; an operator re-issues its edge key (POST /api/environments/%d/edge-key)", errIdentity, env.ID, env.ID)
	case p.Enroll == nil:
		return fmt.Errorf("%w: the first contact with environment %d does not prove its edge key's enrollment secret (an agent older than protocol version 2, or a key without its secret)", errIdentity, env.ID)
	case !protocol.CheckMAC(env.EnrollKey, input, p.Enroll):
		return fmt.Errorf("%w: the first contact's enrollment proof does not verify for environment %d: not the secret of its current edge key", errIdentity, env.ID)
	}
	return nil
}

// sealWaiting tags an answer to a device that is not an environment yet
// (waiting, or onboarding), under the key its request's key agreement key
// gives for environment 0, and hands it the server's key to check that with.
func (s *Server) sealWaiting(ans *protocol.SyncAnswer, edgeID string, p *protocol.Proof) error {
	pub, err := ecdh.X25519().NewPublicKey(p.DH)
	if err != nil {
		return err
	}
	shared, err := s.ids.dh.ECDH(pub)
	if err != nil {
		return err
	}
	key, err := protocol.MACKey(shared, 0, edgeID)
	if err != nil {
		return err
	}
	ans.Server = s.ids.serverKey
	return protocol.SealAnswer(ans, key, p.Counter)
}
