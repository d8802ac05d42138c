package edgeagent

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"outpost/protocol"
)

// A first contact under a pre-staged environment's key proves the key's
// enrollment secret; under the onboarding key it carries no proof of one.
func TestFirstContactProvesTheEnrollmentSecret(t *testing.T) {
	secret := strings.Repeat("k", protocol.EnrollSecretSize)
	for _, tc := range []struct {
		name   string
		key    protocol.EdgeKey
		enroll bool
	}{
		{"pre-staged", protocol.EdgeKey{EnvironmentID: 7, Secret: secret}, true},
		{"onboarding", protocol.EdgeKey{}, false},
	} {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		dh, _ := ecdh.X25519().GenerateKey(rand.Reader)
		st := &state{}
		id, err := newIdentity(Config{Key: tc.key}, key, dh, "edge-7", st)
		if err != nil {
			t.Fatal(err)
		}
		req := &protocol.SyncRequest{Version: protocol.Version, EnvID: tc.key.EnvironmentID, EdgeID: "edge-7", Include: protocol.IncludePing}
		if err := id.seal(req, st, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		body, _ := protocol.Marshal(req)
		input, p, err := protocol.ProofInput(body)
		if err != nil || !ed25519.Verify(key.Public().(ed25519.PublicKey), input, p.Tag) {
			t.Fatalf("%s: signature does not verify: %v", tc.name, err)
		}
		if got := protocol.CheckMAC(protocol.EnrollKey(secret), input, p.Enroll); got != tc.enroll || (!tc.enroll && p.Enroll != nil) {
			t.Errorf("%s: enrollment proof %x verifies %v, want %v", tc.name, p.Enroll, got, tc.enroll)
		}
	}
}
