package protocol

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// EdgeKey is what an installer passes to an agent: where the server is, where
// its tunnel listens, the fingerprint of the tunnel's SSH host key, the
// environment (0 for the onboarding key), and for a pre-staged environment
// its one-time enrollment secret.
type EdgeKey struct {
	ServerURL         string
	TunnelAddr        string
	TunnelFingerprint string // "SHA256:" + unpadded base64 of the key's SHA-256
	EnvironmentID     uint64
	// Secret is the enrollment secret (EnrollSecretSize random bytes) of a
	// pre-staged environment: the first contact proves it knows it
	// (Proof.Enroll), and the server spends it at binding. In the
	// onboarding key it is the fleet's onboarding secret, which every call
	// with that key proves, and which the server rotates. Empty in the key
	// of an environment already bound. It
	// holds the raw bytes (a string keeps EdgeKey comparable).
	Secret string
}

// EnrollSecretSize is the length of an enrollment secret.
const EnrollSecretSize = 32

// String encodes the key: unpadded base64 of
// server_url|tunnel_addr|tunnel_fingerprint|environment_id, followed by
// |secret (unpadded URL-safe base64) when the key has one.
func (k EdgeKey) String() string {
	f := []string{k.ServerURL, k.TunnelAddr, k.TunnelFingerprint, strconv.FormatUint(k.EnvironmentID, 10)}
	if k.Secret != "" {
		f = append(f, base64.RawURLEncoding.EncodeToString([]byte(k.Secret)))
	}
	return base64.RawStdEncoding.EncodeToString([]byte(strings.Join(f, "|")))
}

// ParseEdgeKey decodes and validates an edge key. Each malformed form returns
// its own error (ErrKeyEncoding, ErrKeyFields, ErrKeyServerURL, ...).
func ParseEdgeKey(s string) (EdgeKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return EdgeKey{}, ErrKeyEmpty
	}
	raw, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return EdgeKey{}, fmt.Errorf("%w: %v", ErrKeyEncoding, err)
	}
	f := strings.Split(string(raw), "|")
	if len(f) != 4 && len(f) != 5 {
		return EdgeKey{}, fmt.Errorf("%w (found %d)", ErrKeyFields, len(f))
	}
	k := EdgeKey{ServerURL: f[0], TunnelAddr: f[1], TunnelFingerprint: f[2]}
	if u, err := url.Parse(k.ServerURL); err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return EdgeKey{}, fmt.Errorf("%w: %q", ErrKeyServerURL, k.ServerURL)
	}
	if host, port, err := net.SplitHostPort(k.TunnelAddr); err != nil || host == "" || !validPort(port) {
		return EdgeKey{}, fmt.Errorf("%w: %q", ErrKeyTunnelAddr, k.TunnelAddr)
	}
	if !validFingerprint(k.TunnelFingerprint) {
		return EdgeKey{}, fmt.Errorf("%w: %q", ErrKeyFingerprint, k.TunnelFingerprint)
	}
	if k.EnvironmentID, err = strconv.ParseUint(f[3], 10, 64); err != nil {
		return EdgeKey{}, fmt.Errorf("%w: %q", ErrKeyEnvironment, f[3])
	}
	if len(f) == 5 {
		b, err := base64.RawURLEncoding.DecodeString(f[4])
		if err != nil || len(b) != EnrollSecretSize {
			return EdgeKey{}, ErrKeySecret
		}
		k.Secret = string(b)
	}
	return k, nil
}

func validPort(p string) bool {
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n > 0
}

func validFingerprint(fp string) bool {
	b64, ok := strings.CutPrefix(fp, "SHA256:")
	if !ok || len(b64) != 43 {
		return false
	}
	b, err := base64.RawStdEncoding.DecodeString(b64)
	return err == nil && len(b) == 32
}
