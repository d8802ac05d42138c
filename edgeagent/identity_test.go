package edgeagent

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
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
		if err := id.Seal(req, reserveIn(st, func() error { return nil })); err != nil {
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

// A large body's proof uses the key the request's own proof uses, and none
// goes with the onboarding key.
func TestBodyProofKeys(t *testing.T) {
	secret := strings.Repeat("k", protocol.EnrollSecretSize)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	dh, _ := ecdh.X25519().GenerateKey(rand.Reader)
	id, err := newIdentity(Config{Key: protocol.EdgeKey{EnvironmentID: 7, Secret: secret}}, key, dh, "edge-7", &state{})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("a large body")
	check := func(name string, verify func(in, tag []byte) bool) {
		t.Helper()
		env, tag, err := protocol.ParseBodyProof(id.BodyProof(7, body))
		if err != nil || env != 7 || !verify(protocol.BodyProofInput(7, body), tag) {
			t.Fatalf("%s: body proof does not verify: %v", name, err)
		}
	}
	// Before binding: the enrollment MAC, then the signature for a server
	// that bound the device already (a first answer lost).
	check("enrollment", func(in, tag []byte) bool {
		return len(tag) == protocol.MACSize+ed25519.SignatureSize && protocol.CheckMAC(protocol.EnrollKey(secret), in, tag[:protocol.MACSize]) &&
			ed25519.Verify(key.Public().(ed25519.PublicKey), in, tag[protocol.MACSize:])
	})
	id.MAC = make([]byte, 32)
	check("MAC", func(in, tag []byte) bool { return protocol.CheckMAC(id.MAC, in, tag) })
	id.MAC, id.Enroll = nil, nil
	check("signature", func(in, tag []byte) bool { return ed25519.Verify(key.Public().(ed25519.PublicKey), in, tag) })
	if v := id.BodyProof(0, body); v != "" {
		t.Fatalf("a body proof under the onboarding key: %q", v)
	}
}

// A counter block whose reservation could not be written is not reserved:
// the next counter asks again, so no counter goes out that a restart,
// reading the reservation on disk, would hand out once more.
func TestFailedReservationReservesNothing(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	dh, _ := ecdh.X25519().GenerateKey(rand.Reader)
	st := &state{Reserved: 5}
	id, err := newIdentity(Config{Key: protocol.EdgeKey{EnvironmentID: 7}}, key, dh, "edge-7", st)
	if err != nil {
		t.Fatal(err)
	}
	onDisk := st.Reserved
	fail := true
	save := func() error {
		if fail {
			return errors.New("disk full")
		}
		onDisk = st.Reserved
		return nil
	}
	req := func() *protocol.SyncRequest {
		return &protocol.SyncRequest{Version: protocol.Version, EnvID: 7, EdgeID: "edge-7", Include: protocol.IncludePing}
	}
	if err := id.Seal(req(), reserveIn(st, save)); err == nil {
		t.Fatal("a seal whose reservation failed went through")
	}
	r := req()
	if err := id.Seal(r, reserveIn(st, save)); err == nil {
		t.Fatalf("the retry used counter %d with only %d reserved on disk", r.Proof.Counter, onDisk)
	}
	fail = false
	r = req()
	if err := id.Seal(r, reserveIn(st, save)); err != nil {
		t.Fatal(err)
	}
	if r.Proof.Counter > onDisk {
		t.Errorf("counter %d used with %d reserved on disk", r.Proof.Counter, onDisk)
	}
}
