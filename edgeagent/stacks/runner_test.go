package stacks

import (
	"context"
	"errors"
	"testing"
)

// TestFailedPullKeepsUnsettled: unsettled means "the last up failed, the
// engine may still be creating containers for it", and makes Remove look
// again for them. A later Deploy that fails before up (a pull, an invalid
// compose file) does not settle the engine.
func TestFailedPullKeepsUnsettled(t *testing.T) {
	path := fakeHelper(t, `req=$(cat)
case "$req" in
*'"FAKE_ANSWER":"up"'*) echo '{"error":"up: Conflict. The container name is already in use","upFailed":true}' ;;
*) echo '{"error":"image not available: pull x: manifest unknown","kind":"image"}' ;;
esac
`)
	r, err := New(Config{Helper: path})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	s := Spec{Project: "test-unsettled", Compose: []byte("services: {web: {image: x}}"), Dir: t.TempDir(), Env: map[string]string{"FAKE_ANSWER": "up"}}
	if err := r.Deploy(context.Background(), s); err == nil {
		t.Fatal("the first Deploy succeeded")
	}
	r.mu.Lock()
	first := r.stacks[s.Project].unsettled
	r.mu.Unlock()
	if !first {
		t.Fatal("a failed up left the project settled")
	}
	s.Env = map[string]string{"FAKE_ANSWER": "pull"}
	if err := r.Deploy(context.Background(), s); err == nil || !errors.Is(err, ErrImage) {
		t.Fatalf("the second Deploy: %v", err)
	}
	r.mu.Lock()
	second := r.stacks[s.Project].unsettled
	r.mu.Unlock()
	if !second {
		t.Errorf("a Deploy that failed at its pull, before any up, marked the project settled after a failed up: Remove will not look again for the containers the engine may still be creating")
	}
}
