package protocol_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"testing"

	"outpost/protocol"
)

func sealedPing(t *testing.T, key []byte) (*protocol.SyncRequest, []byte) {
	t.Helper()
	req := &protocol.SyncRequest{Version: protocol.Version, EnvID: 7, Include: protocol.IncludePing, Proof: &protocol.Proof{Counter: 42}}
	var signed []byte
	if err := protocol.Seal(req, req.Proof, func(in []byte) []byte {
		signed = append([]byte(nil), in...)
		return protocol.MAC(key, in)
	}); err != nil {
		t.Fatal(err)
	}
	return req, signed
}

func TestProofInputIsWhatWasSealed(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	req, signed := sealedPing(t, key)
	body, err := protocol.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	input, p, err := protocol.ProofInput(body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(input, signed) || p.Counter != 42 || !protocol.CheckMAC(key, input, p.Tag) {
		t.Fatalf("input %x, sealed %x, proof %+v", input, signed, p)
	}

	// A field this version does not know (key 99, added by a newer agent)
	// is covered too: the server checks the body as sent.
	var top map[uint64]protocol.RawMessage
	if err := protocol.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	top[99] = protocol.RawMessage{0x63, 'n', 'e', 'w'}
	withNew, _ := protocol.Marshal(top)
	in2, p2, err := protocol.ProofInput(withNew)
	if err != nil {
		t.Fatal(err)
	}
	if protocol.CheckMAC(key, in2, p2.Tag) {
		t.Fatal("a field added after sealing went unnoticed")
	}
	// Sealing with the new field present verifies.
	var m map[uint64]protocol.RawMessage
	_ = protocol.Unmarshal(withNew, &m)
	var pm map[uint64]protocol.RawMessage
	_ = protocol.Unmarshal(m[4], &pm)
	delete(pm, 3)
	m[4], _ = protocol.Marshal(pm)
	in3, _ := protocol.Marshal(m)
	pm[3], _ = protocol.Marshal(protocol.MAC(key, in3))
	m[4], _ = protocol.Marshal(pm)
	sealedNew, _ := protocol.Marshal(m)
	in4, p4, err := protocol.ProofInput(sealedNew)
	if err != nil || !protocol.CheckMAC(key, in4, p4.Tag) {
		t.Fatalf("a request with an unknown field, sealed as sent, does not verify: %v", err)
	}
}

func TestProofDetectsTampering(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	req, _ := sealedPing(t, key)
	for name, change := range map[string]func(r *protocol.SyncRequest){
		"environment": func(r *protocol.SyncRequest) { r.EnvID = 8 },
		"counter":     func(r *protocol.SyncRequest) { r.Proof.Counter = 43 },
		"include":     func(r *protocol.SyncRequest) { r.Include |= protocol.IncludeCommands },
	} {
		c := *req
		p := *req.Proof
		c.Proof = &p
		change(&c)
		body, _ := protocol.Marshal(&c)
		input, got, err := protocol.ProofInput(body)
		if err != nil {
			t.Fatal(err)
		}
		if protocol.CheckMAC(key, input, got.Tag) {
			t.Errorf("changed %s: MAC still verifies", name)
		}
	}
	if protocol.CheckMAC(bytes.Repeat([]byte{8}, 32), mustInput(t, req), req.Proof.Tag) {
		t.Error("MAC verifies under another key")
	}
}

func mustInput(t *testing.T, req *protocol.SyncRequest) []byte {
	body, _ := protocol.Marshal(req)
	in, _, err := protocol.ProofInput(body)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestMACKeyAgreement(t *testing.T) {
	dev, _ := ecdh.X25519().GenerateKey(rand.Reader)
	srv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	a, _ := dev.ECDH(srv.PublicKey())
	b, _ := srv.ECDH(dev.PublicKey())
	ka, _ := protocol.MACKey(a, 7, "edge-1")
	kb, _ := protocol.MACKey(b, 7, "edge-1")
	if !bytes.Equal(ka, kb) {
		t.Fatal("both sides derive different keys")
	}
	other, _ := protocol.MACKey(a, 8, "edge-1")
	if bytes.Equal(ka, other) {
		t.Fatal("key not bound to the environment")
	}
}

func TestProofInputWithoutProof(t *testing.T) {
	body, _ := protocol.Marshal(&protocol.SyncRequest{Version: 1, EnvID: 3})
	in, p, err := protocol.ProofInput(body)
	if err != nil || p != nil || in != nil {
		t.Fatalf("%x %+v %v", in, p, err)
	}
}

func TestAnswerTag(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	ans := &protocol.SyncAnswer{Version: protocol.Version, EnvID: 7, Trust: protocol.TrustTrusted,
		Commands: []protocol.Command{{ID: 3, Kind: "container.stop", Args: map[string]string{"id": "web"}}}}
	if err := protocol.SealAnswer(ans, key, 42); err != nil {
		t.Fatal(err)
	}
	raw, _ := protocol.Marshal(ans)
	in, tag, err := protocol.AnswerInput(raw, 42)
	if err != nil || !protocol.CheckMAC(key, in, tag) {
		t.Fatalf("a sealed answer does not verify: %v", err)
	}
	// Bound to its request: the same answer for another counter fails.
	if in, tag, _ := protocol.AnswerInput(raw, 43); protocol.CheckMAC(key, in, tag) {
		t.Fatal("an answer verified for another request")
	}
	// A forged command does not verify.
	forged := *ans
	forged.Commands = []protocol.Command{{ID: 3, Kind: "volume.remove", Args: map[string]string{"name": "db"}}}
	fb, _ := protocol.Marshal(&forged)
	if in, tag, _ := protocol.AnswerInput(fb, 42); protocol.CheckMAC(key, in, tag) {
		t.Fatal("a forged answer verified")
	}
	// An answer without a tag does not verify.
	forged.Tag = nil
	fb, _ = protocol.Marshal(&forged)
	if in, tag, _ := protocol.AnswerInput(fb, 42); protocol.CheckMAC(key, in, tag) {
		t.Fatal("an untagged answer verified")
	}
}

// A first contact's Enroll and Tag cover the same bytes, neither covering
// the other: the server checks both from what it received, and an Enroll
// made with another secret does not verify.
func TestEnrollCoversTheSignedBytes(t *testing.T) {
	secret := string(bytes.Repeat([]byte{7}, protocol.EnrollSecretSize))
	sign := bytes.Repeat([]byte{3}, 32)
	req := &protocol.SyncRequest{Version: protocol.Version, EnvID: 7, EdgeID: "edge-1", Include: protocol.IncludePing,
		Proof: &protocol.Proof{Counter: 1, Key: bytes.Repeat([]byte{1}, 32), DH: bytes.Repeat([]byte{2}, 32)}}
	if err := protocol.SealEnrolled(req, req.Proof, protocol.EnrollKey(secret), func(in []byte) []byte { return protocol.MAC(sign, in) }); err != nil {
		t.Fatal(err)
	}
	body, _ := protocol.Marshal(req)
	input, p, err := protocol.ProofInput(body)
	if err != nil {
		t.Fatal(err)
	}
	if !protocol.CheckMAC(sign, input, p.Tag) || !protocol.CheckMAC(protocol.EnrollKey(secret), input, p.Enroll) {
		t.Fatalf("tag or enroll does not verify over the proof input: %+v", p)
	}
	other := string(bytes.Repeat([]byte{8}, protocol.EnrollSecretSize))
	if protocol.CheckMAC(protocol.EnrollKey(other), input, p.Enroll) {
		t.Fatal("an enroll MAC verifies under another secret's key")
	}
	if bytes.Contains(body, []byte(secret)) || bytes.Contains(body, protocol.EnrollKey(secret)) {
		t.Fatal("the request carries the secret or its key in the clear")
	}
	// Seal (no enrollment) leaves Enroll out.
	if err := protocol.Seal(req, req.Proof, func(in []byte) []byte { return protocol.MAC(sign, in) }); err != nil || req.Proof.Enroll != nil {
		t.Fatalf("Seal kept an Enroll: %v %x", err, req.Proof.Enroll)
	}
}

// BenchmarkEnrollCheck is the server's cost of the enrollment step on a
// first contact: the key from the stored hash is at hand, so it is one MAC
// over the proof input.
func BenchmarkEnrollCheck(b *testing.B) {
	secret := string(bytes.Repeat([]byte{7}, protocol.EnrollSecretSize))
	req := &protocol.SyncRequest{Version: protocol.Version, EnvID: 7, EdgeID: "3f2a9c1e-7b4d-4e8a-9c61-0d5e2f7a8b90", Include: protocol.IncludePing,
		Agent: &protocol.AgentInfo{Version: "0.2.0", Hostname: "ship-7", Platform: "docker", OS: "linux", Arch: "arm64"},
		Proof: &protocol.Proof{Counter: 1, Key: bytes.Repeat([]byte{1}, 32), DH: bytes.Repeat([]byte{2}, 32)}}
	key := protocol.EnrollKey(secret)
	_ = protocol.SealEnrolled(req, req.Proof, key, func(in []byte) []byte { return make([]byte, 64) })
	body, _ := protocol.Marshal(req)
	input, p, _ := protocol.ProofInput(body)
	b.ReportAllocs()
	for b.Loop() {
		if !protocol.CheckMAC(key, input, p.Enroll) {
			b.Fatal("does not verify")
		}
	}
}
