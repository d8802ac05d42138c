package edgeagent

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"outpost/internal/atomicfile"
	"outpost/protocol"
)

// Files in the data dir.
func keyPath(dir string) string      { return filepath.Join(dir, "edge_key") }
func identityPath(dir string) string { return filepath.Join(dir, "identity.key") }
func edgeIDPath(dir string) string   { return filepath.Join(dir, "edge_id") }
func statePath(dir string) string    { return filepath.Join(dir, "state.cbor") }
func dhPath(dir string) string       { return filepath.Join(dir, "sync_dh.key") }

// identity is the device's Ed25519 key, made on first start.
func loadOrCreateIdentity(dir string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(identityPath(dir))
	if err == nil {
		if len(b) != ed25519.SeedSize {
			return nil, fmt.Errorf("identity key %s is damaged (%d bytes); remove it only if this device may be bound anew", identityPath(dir), len(b))
		}
		return ed25519.NewKeyFromSeed(b), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(identityPath(dir), priv.Seed(), 0o600); err != nil {
		return nil, err
	}
	return priv, nil
}

// loadOrCreateDH returns the device's X25519 key agreement key.
func loadOrCreateDH(dir string) (*ecdh.PrivateKey, error) {
	b, err := os.ReadFile(dhPath(dir))
	if err == nil {
		return ecdh.X25519().NewPrivateKey(b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return k, writeFileAtomic(dhPath(dir), k.Bytes(), 0o600)
}

// loadOrCreateEdgeID returns the configured edge ID, or the one made on an
// earlier start, or a new random one.
func loadOrCreateEdgeID(dir, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if b, err := os.ReadFile(edgeIDPath(dir)); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	r := make([]byte, 16)
	if _, err := rand.Read(r); err != nil {
		return "", err
	}
	id := hex.EncodeToString(r)
	return id, writeFileAtomic(edgeIDPath(dir), []byte(id), 0o600)
}

// state is what the agent remembers of its exchanges.
type state struct {
	Seq   uint64              `cbor:"1,keyasint,omitempty"` // last snapshot seq sent
	Acked uint64              `cbor:"2,keyasint,omitempty"` // seq the server stored
	Base  protocol.RawMessage `cbor:"3,keyasint,omitempty"` // snapshot at Acked
	Bound bool                `cbor:"4,keyasint,omitempty"` // server has our edge ID and key
	// Reserved is the end of the block of proof counters this agent may use;
	// a restarted agent starts past it, so counters never repeat.
	Reserved uint64 `cbor:"5,keyasint,omitempty"`
	// ServerDH is the server's key agreement key, checked against the edge
	// key's fingerprint when it arrived.
	ServerDH []byte `cbor:"6,keyasint,omitempty"`
	// EnvID is the environment the server made of this device when it came
	// in with the onboarding key (environment 0).
	EnvID uint64 `cbor:"7,keyasint,omitempty"`
	// Mode is the mode the server last switched this device to; it wins
	// over EDGE_ASYNC on later starts. Unset: EDGE_ASYNC decides.
	Mode protocol.Mode `cbor:"8,keyasint,omitempty"`
}

func loadState(dir string) (*state, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return &state{}, nil
	} else if err != nil {
		return nil, err
	}
	var s state
	if err := protocol.Unmarshal(b, &s); err != nil {
		// A damaged state costs one full snapshot, nothing more.
		return &state{}, nil
	}
	return &s, nil
}

func (s *state) save(dir string) error {
	b, err := protocol.Marshal(s)
	if err != nil {
		return err
	}
	return writeFileAtomic(statePath(dir), b, 0o600)
}

// writeFileAtomic replaces path with b: the old file or the new survives a
// crash, never a torn one.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	return atomicfile.Write(path, b, mode)
}
