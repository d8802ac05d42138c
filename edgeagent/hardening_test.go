package edgeagent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"outpost/edgeagent/stacks"
	"outpost/protocol"
	"outpost/snapshot"
)

// TestFirstContactBodyProofHoldsForABoundRetry: the agent's first contact
// with a pre-staged environment carries a snapshot past MaxUnprovedBody.
// The server binds it (spending the enrollment key) but the answer is
// lost. The retry's body proof must still verify: the enrollment MAC for a
// server that never saw the first try, and the device's signature for one
// that bound it. Before, it was the MAC alone, and the device was refused
// for good.
func TestFirstContactBodyProofHoldsForABoundRetry(t *testing.T) {
	secret := strings.Repeat("k", protocol.EnrollSecretSize)
	var mu sync.Mutex
	var proofs []string
	var lastBody []byte // the body as sent
	srv := newScriptedServer(t, ackAll)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		proofs = append(proofs, r.Header.Get(protocol.BodyProofHeader))
		lastBody, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(lastBody))
		n := len(proofs)
		mu.Unlock()
		if n == 1 {
			srv.ServeHTTP(httptest.NewRecorder(), r) // bound, answer lost
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		srv.ServeHTTP(w, r)
	})
	hs := httptest.NewTLSServer(h)
	defer hs.Close()
	d := &snapshot.Snapshot{Engine: snapshot.Engine{Hostname: "dev"}}
	for i := range 300 {
		d.Containers = append(d.Containers, snapshot.Container{ID: fmt.Sprintf("%064x", i), Name: fmt.Sprintf("svc-%d", i), State: snapshot.StateRunning,
			Labels: map[string]string{"com.docker.compose.config-hash": fmt.Sprintf("%064x", i*7), "com.docker.compose.project.path": "/srv/shop"}})
	}
	snapshot.Normalize(d)
	s := newTestSyncer(t, srv, hs.URL, t.TempDir(), &fakeCollector{d: d})
	s.id.Enroll, s.id.EnrollEnv = protocol.EnrollKey(secret), 7 // the key's secret
	ctx := context.Background()
	if err := s.exchange(ctx, all); err == nil {
		t.Fatal("the lost answer did not fail the exchange")
	}
	_ = s.exchange(ctx, all)
	mu.Lock()
	defer mu.Unlock()
	if len(proofs) != 2 || proofs[0] == "" || proofs[1] == "" {
		t.Fatalf("body proofs sent: %q", proofs)
	}
	_, tag, err := protocol.ParseBodyProof(proofs[1])
	if err != nil {
		t.Fatal(err)
	}
	if len(tag) != protocol.MACSize+ed25519.SignatureSize {
		t.Fatalf("the retry's body proof is %d bytes, want the enrollment MAC and the signature (%d)", len(tag), protocol.MACSize+ed25519.SignatureSize)
	}
	// The server has bound the device and spent the enrollment key: the
	// signature half must verify under the device's own key.
	if in := protocol.BodyProofInput(7, lastBody); !ed25519.Verify(s.id.Key.Public().(ed25519.PublicKey), in, tag[protocol.MACSize:]) {
		t.Fatal("the signature half of the body proof does not verify under the device's key")
	}
}

// TestReusedStackVersionWithNewContentIsDeployed: after a server restore,
// stack versions go back with the store. A stack edited after the restore
// reaches a version number the device already deployed, with other
// content. Before, the device compared versions only and skipped it; the
// content now decides.
func TestReusedStackVersionWithNewContentIsDeployed(t *testing.T) {
	fs := &fakeStacks{phase: stacks.Running}
	w := newTestWork(t, t.TempDir(), fs, &fakeJobs{})
	ctx := context.Background()
	a := blobOf(t, &protocol.StackContent{Compose: []byte("services: {web: {image: a}}")})
	b := blobOf(t, &protocol.StackContent{Compose: []byte("services: {shop: {image: b}}")})
	if err := w.keepBlobs([]protocol.Blob{a, b}); err != nil {
		t.Fatal(err)
	}
	// Before the restore: stack 7 version 2 deployed.
	if err := w.execute(deployCmd(1<<40, 7, 2, "web", a)); err != nil {
		t.Fatal(err)
	}
	w.converge(ctx)
	// After the restore (backup held stack 7 at version 1), the operator
	// edits it: version 2 again, new content. The command ID is new.
	if err := w.execute(deployCmd(2<<40, 7, 2, "shop", b)); err != nil {
		t.Fatal(err)
	}
	w.converge(ctx)
	if len(fs.deploys) != 2 {
		t.Fatalf("%d deploys: the new content of stack 7 under a version number reused after a restore was never deployed (%+v)", len(fs.deploys), fs.deploys)
	}
	// The same command again (a re-sent answer) deploys nothing more.
	if err := w.execute(deployCmd(3<<40, 7, 2, "shop", b)); err != nil {
		t.Fatal(err)
	}
	w.converge(ctx)
	if len(fs.deploys) != 2 {
		t.Fatalf("%d deploys after the same version and content came again, want 2", len(fs.deploys))
	}
}

// TestChangingResyncNonceIsNotChasedAtOnce: an answer asking for a resync
// is retried at once with its nonce, once; a server that answers the echo
// with yet another nonce gets the next try after the backoff. Before, the
// agent retried at once for as long as the nonce kept changing.
func TestChangingResyncNonceIsNotChasedAtOnce(t *testing.T) {
	srv := newScriptedServer(t, nil)
	calls := 0
	srv.answer = func(req *protocol.SyncRequest) (int, any) {
		calls++
		nonce := bytes.Repeat([]byte{byte(calls)}, 16)
		return http.StatusOK, &protocol.SyncAnswer{Version: protocol.Version, EnvID: req.EnvID, Trust: protocol.TrustTrusted, Resync: nonce}
	}
	hs := httptest.NewTLSServer(srv)
	defer hs.Close()
	s := newTestSyncer(t, srv, hs.URL, t.TempDir(), &fakeCollector{d: &snapshot.Snapshot{}})
	if err := s.exchange(context.Background(), all); err == nil {
		t.Fatal("an exchange whose every answer asks for a new nonce succeeded")
	}
	if calls != 2 {
		t.Fatalf("%d requests in one exchange, want 2: the first, and one echoing its nonce", calls)
	}
}
