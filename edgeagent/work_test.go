package edgeagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"outpost/edgeagent/jobs"
	"outpost/edgeagent/stacks"
	"outpost/protocol"
)

// fakeStacks records Compose calls; the real runner has its own tests
// against the engine (package stacks) and the e2e tests use it end to end.
type fakeStacks struct {
	mu      sync.Mutex
	deploys []stacks.Spec
	removed []string
	fail    error
	phase   stacks.Phase
}

func (f *fakeStacks) Deploy(_ context.Context, s stacks.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deploys = append(f.deploys, s)
	return f.fail
}

func (f *fakeStacks) Remove(_ context.Context, p string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, p)
	return nil
}

func (f *fakeStacks) Status(context.Context, string) (stacks.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return stacks.State{Phase: f.phase}, nil
}

type fakeJobs struct {
	upserts []jobs.Job
	removed []uint64
}

func (f *fakeJobs) Upsert(j jobs.Job) error { f.upserts = append(f.upserts, j); return nil }
func (f *fakeJobs) Remove(id uint64) error  { f.removed = append(f.removed, id); return nil }
func (f *fakeJobs) Logs(id, run uint64) ([]byte, error) {
	return []byte("whole log of run " + strconv.FormatUint(run, 10)), nil
}

func blobOf(t *testing.T, v any) protocol.Blob {
	t.Helper()
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	default:
		var err error
		if b, err = protocol.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(b)
	return protocol.Blob{Hash: sum[:], Data: b}
}

func newTestWork(t *testing.T, dir string, fs *fakeStacks, fj *fakeJobs) *work {
	t.Helper()
	w, err := newWork(dir, slog.New(slog.NewTextHandler(io.Discard, nil)), fs, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	w.jobs = fj
	return w
}

func deployCmd(id, stack, version uint64, project string, blob protocol.Blob) protocol.Command {
	return protocol.Command{ID: id, Kind: KindStackDeploy, Blob: blob.Hash, Args: map[string]string{
		"stack": strconv.FormatUint(stack, 10), "version": strconv.FormatUint(version, 10), "project": project,
	}}
}

func TestWorkStackLifecycle(t *testing.T) {
	dir := t.TempDir()
	fs, fj := &fakeStacks{phase: stacks.Running}, &fakeJobs{}
	w := newTestWork(t, dir, fs, fj)
	ctx := context.Background()

	content := blobOf(t, &protocol.StackContent{Compose: []byte("services: {web: {image: x}}"), Env: map[string]string{"A": "1"}})
	if err := w.keepBlobs([]protocol.Blob{{Hash: content.Hash, Data: []byte("tampered")}}); err == nil {
		t.Fatal("content that does not match its hash was kept")
	}
	// A deploy whose content never arrived fails, naming the content.
	if err := w.execute(deployCmd(1, 7, 1, "web", content)); err == nil {
		t.Fatal("deploy without its content succeeded")
	}
	if err := w.keepBlobs([]protocol.Blob{content}); err != nil {
		t.Fatal(err)
	}
	if err := w.execute(deployCmd(2, 7, 1, "web", content)); err != nil {
		t.Fatal(err)
	}
	w.converge(ctx)
	if len(fs.deploys) != 1 || fs.deploys[0].Project != "web" || fs.deploys[0].Env["A"] != "1" {
		t.Fatalf("deploys: %+v", fs.deploys)
	}
	sts, _ := w.reports()
	if len(sts) != 1 || sts[0].Status != protocol.StatusRunning || sts[0].Version != 1 {
		t.Fatalf("status after deploy: %+v", sts)
	}
	// Confirmed: not sent again; converging again neither redeploys nor
	// reports an unchanged status.
	if err := w.confirm(sts, nil); err != nil {
		t.Fatal(err)
	}
	w.converge(ctx)
	if sts, _ := w.reports(); len(sts) != 0 || len(fs.deploys) != 1 {
		t.Fatalf("after confirm: statuses %+v, deploys %d", sts, len(fs.deploys))
	}

	// A restart (the agent killed after Compose returned but before it
	// recorded the deploy) keeps what was deployed.
	w2 := newTestWork(t, dir, fs, fj)
	w2.converge(ctx)
	if len(fs.deploys) != 1 {
		t.Fatalf("a restart redeployed a deployed version: %d deploys", len(fs.deploys))
	}

	// A failed update is reported with its error and not retried.
	v2 := blobOf(t, &protocol.StackContent{Compose: []byte("services: {web: {image: y}}")})
	if err := w2.keepBlobs([]protocol.Blob{v2}); err != nil {
		t.Fatal(err)
	}
	fs.fail = errors.New("pull y: no such image")
	if err := w2.execute(deployCmd(3, 7, 2, "web", v2)); err != nil {
		t.Fatal(err)
	}
	w2.converge(ctx)
	w2.converge(ctx)
	sts, _ = w2.reports()
	if len(fs.deploys) != 2 || len(sts) != 1 || sts[0].Status != protocol.StatusFailed || sts[0].Error != fs.fail.Error() {
		t.Fatalf("failed update: %d deploys, statuses %+v", len(fs.deploys), sts)
	}
	w2.sweep() // as the syncer does after an answer's commands
	if _, err := w2.blob(content.Hash); err == nil {
		t.Fatal("the content of version 1 is kept after the update")
	}
	// After the backoff it is tried again (a transient failure heals).
	w2.now = func() time.Time { return time.Now().Add(retryFirst + time.Second) }
	w2.converge(ctx)
	if len(fs.deploys) != 3 {
		t.Fatalf("no retry after the backoff: %d deploys", len(fs.deploys))
	}

	// Remove: Compose down, status removed, content dropped.
	fs.fail = nil
	if err := w2.execute(protocol.Command{ID: 4, Kind: KindStackRemove, Args: map[string]string{"stack": "7", "version": "2", "project": "web"}}); err != nil {
		t.Fatal(err)
	}
	w2.converge(ctx)
	sts, _ = w2.reports()
	if len(fs.removed) != 1 || len(sts) != 1 || sts[0].Status != protocol.StatusRemoved {
		t.Fatalf("remove: %v %+v", fs.removed, sts)
	}
	w2.sweep()
	if _, err := w2.blob(v2.Hash); err == nil {
		t.Fatal("content kept after the stack was removed")
	}
}

func TestWorkOpensSealedCredentials(t *testing.T) {
	fs := &fakeStacks{phase: stacks.Running}
	w := newTestWork(t, t.TempDir(), fs, &fakeJobs{})
	key := make([]byte, 32)
	w.mac.Store(&key)
	auths, _ := protocol.Marshal([]protocol.RegistryAuth{{Server: "registry.example.com", Username: "bot", Password: "pw"}})
	content := blobOf(t, &protocol.StackContent{Compose: []byte("services: {web: {image: x}}")})
	c := deployCmd(9, 1, 1, "web", content)
	var err error
	if c.Secret, err = protocol.SealSecret(key, c.ID, auths); err != nil {
		t.Fatal(err)
	}
	if err := w.keepBlobs([]protocol.Blob{content}); err != nil {
		t.Fatal(err)
	}
	if err := w.execute(c); err != nil {
		t.Fatal(err)
	}
	w.converge(context.Background())
	if len(fs.deploys) != 1 || fs.deploys[0].Auth["registry.example.com"].Password != "pw" {
		t.Fatalf("deploy auth: %+v", fs.deploys)
	}
	raw, err := os.ReadFile(workPath(w.dir))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("registry.example.com")) {
		t.Fatal("the work state holds the credentials in clear")
	}
}

func TestWorkJobs(t *testing.T) {
	dir := t.TempDir()
	fj := &fakeJobs{}
	w := newTestWork(t, dir, &fakeStacks{}, fj)
	script := blobOf(t, []byte("echo hi\n"))
	if err := w.keepBlobs([]protocol.Blob{script}); err != nil {
		t.Fatal(err)
	}
	up := protocol.Command{ID: 1, Kind: KindJobUpsert, Blob: script.Hash, Args: map[string]string{"job": "3", "version": "1", "cron": "* * * * *", "collect": "true"}}
	if err := w.execute(up); err != nil {
		t.Fatal(err)
	}
	if len(fj.upserts) != 1 || string(fj.upserts[0].Script) != "echo hi\n" || !fj.upserts[0].Collect {
		t.Fatalf("upserts: %+v", fj.upserts)
	}
	if err := w.execute(protocol.Command{ID: 2, Kind: KindJobCollect, Args: map[string]string{"job": "3"}}); err == nil {
		t.Fatal("collect before any run succeeded")
	}
	w.onResult(jobs.Result{JobID: 3, Run: 1, Started: time.Unix(1_800_000_000, 0), Duration: 1500 * time.Millisecond, Output: []byte("hi\n")})
	// Results survive a restart until confirmed.
	w = newTestWork(t, dir, &fakeStacks{}, fj)
	_, res := w.reports()
	if len(res) != 1 || res[0].Run != 1 || res[0].Duration != 1500 || string(res[0].Output) != "hi\n" {
		t.Fatalf("results: %+v", res)
	}
	if err := w.execute(protocol.Command{ID: 3, Kind: KindJobCollect, Args: map[string]string{"job": "3"}}); err != nil {
		t.Fatal(err)
	}
	_, res2 := w.reports()
	if len(res2) != 2 || !res2[1].Full || string(res2[1].Output) != "whole log of run 1" {
		t.Fatalf("after collect: %+v", res2)
	}
	if err := w.confirm(nil, res2); err != nil {
		t.Fatal(err)
	}
	if _, res := w.reports(); len(res) != 0 {
		t.Fatalf("confirmed results still pending: %+v", res)
	}
	if err := w.execute(protocol.Command{ID: 4, Kind: KindJobRemove, Args: map[string]string{"job": "3"}}); err != nil {
		t.Fatal(err)
	}
	if len(fj.removed) != 1 {
		t.Fatalf("removed: %v", fj.removed)
	}
	w.sweep()
	if _, err := w.blob(script.Hash); err == nil {
		t.Fatal("script kept after its job was removed")
	}
}

// One answer removes a stack and deploys another with the same content:
// the content it carries is still there for the deploy, and goes only once
// nothing refers to it.
func TestWorkKeepsContentALaterCommandNeeds(t *testing.T) {
	fs := &fakeStacks{phase: stacks.Running}
	w := newTestWork(t, t.TempDir(), fs, &fakeJobs{})
	content := blobOf(t, &protocol.StackContent{Compose: []byte("services: {web: {image: x}}")})
	if err := w.keepBlobs([]protocol.Blob{content}); err != nil {
		t.Fatal(err)
	}
	if err := w.execute(deployCmd(1, 1, 1, "a", content)); err != nil {
		t.Fatal(err)
	}
	w.sweep()
	// The next answer: remove stack 1, deploy stack 2 with the same
	// content, which the server sends again.
	if err := w.keepBlobs([]protocol.Blob{content}); err != nil {
		t.Fatal(err)
	}
	if err := w.execute(protocol.Command{ID: 2, Kind: KindStackRemove, Args: map[string]string{"stack": "1", "version": "1", "project": "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.execute(deployCmd(3, 2, 1, "b", content)); err != nil {
		t.Fatalf("deploy after a remove of the same content in one answer: %v", err)
	}
	w.sweep()
	if _, err := w.blob(content.Hash); err != nil {
		t.Fatalf("content in use was deleted: %v", err)
	}
	if err := w.execute(protocol.Command{ID: 4, Kind: KindStackRemove, Args: map[string]string{"stack": "2", "version": "1", "project": "b"}}); err != nil {
		t.Fatal(err)
	}
	w.converge(context.Background())
	w.sweep()
	if _, err := w.blob(content.Hash); err == nil {
		t.Fatal("content nothing refers to is kept")
	}
}
