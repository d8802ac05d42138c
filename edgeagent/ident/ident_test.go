package ident_test

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"outpost/edgeagent/ident"
	"outpost/protocol"
)

// fakeServer is the server's side of the proofs: its key agreement key
// signed by its tunnel host key, and the answers it seals.
type fakeServer struct {
	dh  *ecdh.PrivateKey
	key *protocol.ServerKey
	fp  string
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	host, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	dh, _ := ecdh.X25519().GenerateKey(rand.Reader)
	sig, err := host.Sign(rand.Reader, protocol.ServerKeyMessage(dh.PublicKey().Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeServer{dh: dh, fp: ssh.FingerprintSHA256(host.PublicKey()),
		key: &protocol.ServerKey{DH: dh.PublicKey().Bytes(), HostKey: host.PublicKey().Marshal(), Sig: ssh.Marshal(sig)}}
}

// answer seals ans for the device's request req as the server does, under
// the MAC key the server derives from the device's key agreement key.
func (s *fakeServer) answer(t *testing.T, req *protocol.SyncRequest, ans *protocol.SyncAnswer) []byte {
	t.Helper()
	pub, err := ecdh.X25519().NewPublicKey(req.Proof.DH)
	if err != nil {
		t.Fatal(err)
	}
	shared, _ := s.dh.ECDH(pub)
	key, err := protocol.MACKey(shared, ans.EnvID, req.EdgeID)
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.SealAnswer(ans, key, req.Proof.Counter); err != nil {
		t.Fatal(err)
	}
	raw, err := protocol.Marshal(ans)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// A device's life in proofs: a signed first contact proving the enrollment
// secret, the server's first answer verified under the pinned host key, a
// MAC'ed request after, and the fall back to a signed one when refused.
func TestFirstContactThenMAC(t *testing.T) {
	srv := newFakeServer(t)
	secret := strings.Repeat("s", protocol.EnrollSecretSize)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	dh, _ := ecdh.X25519().GenerateKey(rand.Reader)
	id := ident.New(key, dh, "edge-1", protocol.EdgeKey{EnvironmentID: 9, TunnelFingerprint: srv.fp, Secret: secret})

	var reserved []uint64
	req := &protocol.SyncRequest{Version: protocol.Version, EnvID: 9, EdgeID: "edge-1", Include: protocol.IncludePing}
	if err := id.Seal(req, func(c uint64) error { reserved = append(reserved, c); return nil }); err != nil {
		t.Fatal(err)
	}
	body, _ := protocol.Marshal(req)
	in, p, err := protocol.ProofInput(body)
	if err != nil || p.Counter != 1 || len(reserved) != 1 || reserved[0] != 1 ||
		!ed25519.Verify(key.Public().(ed25519.PublicKey), in, p.Tag) || !protocol.CheckMAC(protocol.EnrollKey(secret), in, p.Enroll) {
		t.Fatalf("first contact: counter %d, reserved %v, signature or enrollment proof does not verify (%v)", p.Counter, reserved, err)
	}

	ans := &protocol.SyncAnswer{Version: protocol.Version, EnvID: 9, Server: srv.key}
	raw := srv.answer(t, req, ans)
	var got protocol.SyncAnswer
	if err := protocol.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if _, _, err := id.VerifyAnswer(raw, &got, req.Proof.Counter+1); !errors.Is(err, ident.ErrUnverified) {
		t.Fatalf("an answer for another counter: %v, want ErrUnverified", err)
	}
	mac, env, err := id.VerifyAnswer(raw, &got, req.Proof.Counter)
	if err != nil || env != 9 {
		t.Fatalf("first answer: env %d, %v", env, err)
	}
	if id.MAC != nil {
		t.Fatal("VerifyAnswer adopted the key itself")
	}
	id.MAC, id.Env = mac, env

	next := &protocol.SyncRequest{Version: protocol.Version, EnvID: 9, Include: protocol.IncludePing}
	if err := id.Seal(next, nil); err != nil {
		t.Fatal(err)
	}
	body, _ = protocol.Marshal(next)
	in, p, err = protocol.ProofInput(body)
	if err != nil || p.Counter != 2 || p.Key != nil || !protocol.CheckMAC(mac, in, p.Tag) {
		t.Fatalf("MAC'ed request: %+v, %v", p, err)
	}

	id.Refused()
	if id.MAC != nil || id.Counter != 2+ident.CounterBlock {
		t.Fatalf("after a refusal: MAC %x, counter %d; want none and a block skipped", id.MAC, id.Counter)
	}
}

// The server's key is taken only from the server the edge key pins.
func TestServerKeyPinned(t *testing.T) {
	srv, other := newFakeServer(t), newFakeServer(t)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	dh, _ := ecdh.X25519().GenerateKey(rand.Reader)
	id := ident.New(key, dh, "edge-1", protocol.EdgeKey{EnvironmentID: 9, TunnelFingerprint: srv.fp})
	if _, err := id.ServerKeyFor(srv.key, 9); err != nil {
		t.Fatalf("pinned server: %v", err)
	}
	if _, err := id.ServerKeyFor(other.key, 9); err == nil || !strings.Contains(err.Error(), "pins") {
		t.Fatalf("another server's key: %v, want refused for the pin", err)
	}
	forged := *srv.key
	forged.DH = other.key.DH // the pinned host key did not sign this one
	if _, err := id.ServerKeyFor(&forged, 9); err == nil {
		t.Fatal("a key agreement key the host key did not sign was taken")
	}
}
