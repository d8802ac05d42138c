package edgeagent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/snapshot"
)

// fakeExecutor records the commands it runs and fails those listed in fail.
type fakeExecutor struct {
	ran  []protocol.Command
	fail map[uint64]string
}

func (f *fakeExecutor) Execute(_ context.Context, c protocol.Command) error {
	f.ran = append(f.ran, c)
	if msg, ok := f.fail[c.ID]; ok {
		return errors.New(msg)
	}
	return nil
}

func (f *fakeExecutor) ids() []uint64 {
	var ids []uint64
	for _, c := range f.ran {
		ids = append(ids, c.ID)
	}
	return ids
}

// commandScript makes the scripted server hand out batch (when the request
// asks for commands) with status. Like the real server it takes a request's
// acks before it lists the pending commands, unless relist is set (as if it
// listed them first, or lost the acks).
type commandScript struct {
	batch  []protocol.Command
	status int
	relist bool
}

func (cs *commandScript) answer(req *protocol.SyncRequest) (int, any) {
	if cs.status != 0 && cs.status != http.StatusOK {
		return cs.status, &protocol.Error{Version: protocol.Version, Code: protocol.CodeInternal, Message: "scripted failure"}
	}
	if !cs.relist {
		cs.batch = slices.DeleteFunc(cs.batch, func(c protocol.Command) bool {
			return slices.ContainsFunc(req.Acks, func(a protocol.CommandAck) bool { return a.ID == c.ID })
		})
	}
	code, ans := ackAll(req)
	if req.Include&protocol.IncludeCommands != 0 {
		ans.(*protocol.SyncAnswer).Commands = cs.batch
	}
	return code, ans
}

func newCommandAgent(t *testing.T, cs *commandScript, dir string) (*syncer, *scriptedServer, *fakeExecutor) {
	t.Helper()
	srv := newScriptedServer(t, cs.answer)
	hs := httptest.NewTLSServer(srv)
	t.Cleanup(hs.Close)
	s := newTestSyncer(t, srv, hs.URL, dir, &fakeCollector{d: docker(snapshot.StateRunning)})
	ex := &fakeExecutor{fail: map[uint64]string{}}
	s.exec = ex
	return s, srv, ex
}

func ackIDs(acks []protocol.CommandAck) []uint64 {
	var ids []uint64
	for _, a := range acks {
		ids = append(ids, a.ID)
	}
	return ids
}

func ackOf(t *testing.T, acks []protocol.CommandAck, id uint64) protocol.CommandAck {
	t.Helper()
	for _, a := range acks {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("no ack for command %d in %+v", id, acks)
	return protocol.CommandAck{}
}

func TestCommandsRunOnceInOrderAndAcksLeaveOnlyAfterAnAnswer(t *testing.T) {
	cs := &commandScript{batch: []protocol.Command{
		{ID: 1, Kind: KindContainerStop, Args: map[string]string{"id": "web", "timeout": "3"}},
		{ID: 2, Kind: KindContainerStart, Args: map[string]string{"id": "gone"}},
		{ID: 3, Kind: KindContainerRemove, Args: map[string]string{"id": "db", "force": "true"}},
	}}
	dir := t.TempDir()
	s, srv, ex := newCommandAgent(t, cs, dir)
	ex.fail[2] = "Error response from daemon: No such container: gone"
	ctx := context.Background()

	// 1. The batch runs in order; a failure does not stop the ones after it.
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if got := ex.ids(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("ran %v, want 1 2 3", got)
	}
	if ex.ran[0].Args["timeout"] != "3" || ex.ran[2].Args["force"] != "true" {
		t.Fatalf("args not passed through: %+v", ex.ran)
	}
	if len(srv.last().Acks) != 0 {
		t.Fatalf("first request carried acks %+v", srv.last().Acks)
	}
	// The results are on disk before any ack leaves.
	j, err := loadJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ackIDs(j.Outbox), []uint64{1, 2, 3}) {
		t.Fatalf("persisted outbox %+v", j.Outbox)
	}

	// 2. The server is down: the acks stay for the next request.
	cs.status = http.StatusBadGateway
	if err := s.exchange(ctx, protocol.IncludePing); err == nil {
		t.Fatal("a 502 did not fail the exchange")
	}
	if got := ackIDs(srv.last().Acks); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("ping without commands due carried acks %v, want 1 2 3", got)
	}
	if len(s.cmds.Outbox) != 3 {
		t.Fatalf("acks dropped after a 502: outbox %+v", s.cmds.Outbox)
	}

	// 3. The same batch arrives again (listed before the server took the
	// acks) with a new command: only the new one runs.
	cs.status, cs.relist = http.StatusOK, true
	cs.batch = append(cs.batch, protocol.Command{ID: 4, Kind: KindContainerKill, Args: map[string]string{"id": "web", "signal": "HUP"}})
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if got := ex.ids(); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("ran %v, want 1 2 3 4 (nothing twice)", got)
	}
	sent := srv.last().Acks
	if !slices.Equal(ackIDs(sent), []uint64{1, 2, 3}) {
		t.Fatalf("request carried acks %v", ackIDs(sent))
	}
	if a := ackOf(t, sent, 1); a.Status != protocol.StatusOK || a.Error != "" || a.Finished == 0 {
		t.Fatalf("ack 1 = %+v", a)
	}
	if a := ackOf(t, sent, 2); a.Status != protocol.StatusFailed || !strings.Contains(a.Error, "No such container: gone") {
		t.Fatalf("ack 2 = %+v, want Failed with the engine's words", a)
	}

	// 4. Nothing new: the acks of step 3 (4, and 1-3 again since they were
	// delivered again after they ran) go out and are dropped after the 200.
	cs.batch, cs.relist = nil, false
	if err := s.exchange(ctx, protocol.IncludePing); err != nil {
		t.Fatal(err)
	}
	sent = srv.last().Acks
	if !slices.Equal(ackIDs(sent), []uint64{1, 2, 3, 4}) {
		t.Fatalf("request carried acks %v", ackIDs(sent))
	}
	if a := ackOf(t, sent, 1); a.Status != protocol.StatusOK {
		t.Fatalf("re-sent ack 1 = %+v, want its stored status", a)
	}
	if a := ackOf(t, sent, 2); a.Status != protocol.StatusFailed {
		t.Fatalf("re-sent ack 2 = %+v, want its stored status", a)
	}
	if err := s.exchange(ctx, protocol.IncludePing); err != nil {
		t.Fatal(err)
	}
	if len(srv.last().Acks) != 0 || len(s.cmds.Outbox) != 0 {
		t.Fatalf("acks still sent after a 200: %+v", srv.last().Acks)
	}
	j, err = loadJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Outbox) != 0 || !j.seen(1) || !j.seen(4) || j.seen(5) {
		t.Fatalf("persisted journal %+v", j)
	}

	// 5. A restarted agent given the batch again runs none of it.
	s2, _, ex2 := newCommandAgent(t, &commandScript{}, dir)
	if err := s2.runCommands(ctx, []protocol.Command{{ID: 3, Kind: KindContainerRemove}, {ID: 4, Kind: KindContainerKill}}); err != nil {
		t.Fatal(err)
	}
	if len(ex2.ran) != 0 {
		t.Fatalf("restarted agent ran %v again", ex2.ids())
	}
}

func TestCommandKilledHalfWayIsAckedFailedNotRunAgain(t *testing.T) {
	dir := t.TempDir()
	// The agent recorded command 5 as started, then died before its result.
	j, err := loadJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := j.start(5); err != nil {
		t.Fatal(err)
	}

	cs := &commandScript{batch: []protocol.Command{
		{ID: 5, Kind: KindContainerRestart, Args: map[string]string{"id": "web"}},
		{ID: 6, Kind: KindContainerStart, Args: map[string]string{"id": "web"}},
	}}
	s, srv, ex := newCommandAgent(t, cs, dir) // a new agent on the same data dir
	ctx := context.Background()
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if got := ex.ids(); !slices.Equal(got, []uint64{6}) {
		t.Fatalf("ran %v, want only 6", got)
	}
	a := ackOf(t, srv.last().Acks, 5)
	if a.Status != protocol.StatusFailed || a.Error != errInterrupted {
		t.Fatalf("ack of the interrupted command = %+v", a)
	}
	// The answer to the request carrying ack 5 confirmed it; 6 goes next.
	cs.batch = nil
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if got := ackIDs(srv.last().Acks); !slices.Equal(got, []uint64{6}) {
		t.Fatalf("second request carried acks %v, want 6", got)
	}
}

func TestUnknownCommandKindIsAckedFailed(t *testing.T) {
	cs := &commandScript{batch: []protocol.Command{{ID: 9, Kind: "stack.frobnicate"}}}
	s, srv, ex := newCommandAgent(t, cs, t.TempDir())
	ctx := context.Background()
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if len(ex.ran) != 0 {
		t.Fatalf("executor given an unknown kind: %+v", ex.ran)
	}
	if err := s.exchange(ctx, protocol.IncludePing); err != nil {
		t.Fatal(err)
	}
	a := ackOf(t, srv.last().Acks, 9)
	if a.Status != protocol.StatusFailed || a.Error != "unknown command kind stack.frobnicate; upgrade the agent" {
		t.Fatalf("ack = %+v", a)
	}
}

func TestSnapshotNowMakesTheSnapshotDue(t *testing.T) {
	cs := &commandScript{}
	s, srv, ex := newCommandAgent(t, cs, t.TempDir())
	ctx := context.Background()
	if err := s.exchange(ctx, all); err != nil { // snapshot sent; the next one is 10s away
		t.Fatal(err)
	}
	if _, inc := s.plan.Next(); inc&protocol.IncludeSnapshot != 0 {
		t.Fatal("snapshot due right after one was sent")
	}
	cs.batch = []protocol.Command{{ID: 1, Kind: KindSnapshotNow}}
	if err := s.exchange(ctx, protocol.IncludePing|protocol.IncludeCommands); err != nil {
		t.Fatal(err)
	}
	at, inc := s.plan.Next()
	if inc&protocol.IncludeSnapshot == 0 || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("after snapshot.now the next exchange is at %v carrying %v; want a snapshot now", at, inc)
	}
	if len(ex.ran) != 0 {
		t.Fatalf("snapshot.now went to the executor: %+v", ex.ran)
	}
	cs.batch = nil
	if err := s.exchange(ctx, inc); err != nil {
		t.Fatal(err)
	}
	if r := srv.last(); ackOf(t, r.Acks, 1).Status != protocol.StatusOK {
		t.Fatalf("snapshot.now ack = %+v", r.Acks)
	}
}

func TestJournalStaysBounded(t *testing.T) {
	dir := t.TempDir()
	j, err := loadJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const n = keepDone + 5
	for id := uint64(1); id <= n; id++ {
		if err := j.start(id); err != nil {
			t.Fatal(err)
		}
		if err := j.finish(protocol.CommandAck{ID: id, Status: protocol.StatusOK, Finished: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.confirm(j.Outbox); err != nil {
		t.Fatal(err)
	}
	j, err = loadJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Done) != keepDone || j.Mark != 5 || len(j.Outbox) != 0 {
		t.Fatalf("journal has %d done, mark %d, %d acks; want %d, 5, 0", len(j.Done), j.Mark, len(j.Outbox), keepDone)
	}
	for _, id := range []uint64{1, 5, 6, n} {
		if !j.seen(id) {
			t.Errorf("command %d forgotten", id)
		}
	}
	if j.seen(n + 1) {
		t.Error("a new command counts as seen")
	}
	if err := j.start(3); err == nil {
		t.Error("a compacted command could start again")
	}
	// A compacted command that comes back is acked, not run.
	if err := j.reack(3, time.Now()); err != nil {
		t.Fatal(err)
	}
	if a := ackOf(t, j.Outbox, 3); a.Status != protocol.StatusFailed || a.Error != errForgotten {
		t.Fatalf("re-ack of a compacted command = %+v", a)
	}
}

func TestAckErrorTextIsBounded(t *testing.T) {
	j, err := loadJournal(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := j.start(1); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", maxAckError) // two bytes each: the cut must not split one
	if err := j.finish(protocol.CommandAck{ID: 1, Status: protocol.StatusFailed, Error: long}); err != nil {
		t.Fatal(err)
	}
	e := j.Outbox[0].Error
	if len(e) > maxAckError || !strings.HasSuffix(e, "[cut]") || !strings.HasPrefix(e, "éé") || strings.ContainsRune(e, '\uFFFD') {
		t.Fatalf("cut error text (%d bytes) = %q...", len(e), e[:min(len(e), 20)])
	}
	if _, err := loadJournal(filepath.Dir(j.path), time.Now()); err != nil {
		t.Fatalf("journal with a cut text does not load: %v", err)
	}
}

func TestDamagedJournalIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := writeFileAtomic(commandsPath(dir), []byte{0xff, 0x00}, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadJournal(dir, time.Now())
	if err == nil || !strings.Contains(err.Error(), "move it aside") {
		t.Fatalf("damaged journal: %v", err)
	}
}

// breakJournal makes the journal's saves fail (as on a full disk or an I/O
// error) until the returned func is called: the test runs as root, so a
// read-only data dir would not stop it.
func breakJournal(t *testing.T, j *journal) (mend func()) {
	t.Helper()
	good := j.path
	j.path = filepath.Join(t.TempDir(), "missing", "commands.cbor")
	return func() { j.path = good }
}

// A command whose "started" entry cannot be saved does not run, and leaves
// nothing behind in memory: it runs (once) when it comes again.
func TestCommandRetriedAfterStartFailsToSave(t *testing.T) {
	cs := &commandScript{batch: []protocol.Command{{ID: 5, Kind: KindContainerStart, Args: map[string]string{"id": "web"}}}}
	dir := t.TempDir()
	s, srv, ex := newCommandAgent(t, cs, dir)
	ctx := context.Background()

	mend := breakJournal(t, s.cmds)
	if err := s.exchange(ctx, all); err == nil {
		t.Fatal("a failed journal write did not fail the exchange")
	}
	mend()
	if len(ex.ran) != 0 {
		t.Fatalf("ran %v without having recorded its start", ex.ids())
	}
	if s.cmds.seen(5) || len(s.cmds.Done) != 0 {
		t.Fatalf("the unsaved start stayed in memory: %+v", s.cmds.Done)
	}

	for range 3 {
		if err := s.exchange(ctx, all); err != nil {
			t.Fatal(err)
		}
	}
	if got := ex.ids(); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("ran %v, want 5 exactly once", got)
	}
	acked := false
	for _, r := range srv.requests {
		for _, a := range r.Acks {
			acked = acked || (a.ID == 5 && a.Status == protocol.StatusOK)
		}
	}
	if !acked || len(cs.batch) != 0 {
		t.Fatalf("command 5 not acked OK: server still lists %+v", cs.batch)
	}
	j, err := loadJournal(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !j.seen(5) || len(j.Outbox) != 0 {
		t.Fatalf("persisted journal %+v", j)
	}
}

// breakingExecutor breaks the journal while a command runs, so its result
// cannot be saved.
type breakingExecutor struct {
	fakeExecutor
	j    *journal
	t    *testing.T
	mend func()
}

func (b *breakingExecutor) Execute(ctx context.Context, c protocol.Command) error {
	b.mend = breakJournal(b.t, b.j)
	return b.fakeExecutor.Execute(ctx, c)
}

// A command whose result cannot be saved ran: it is not run again, and its
// result is acked when it comes again.
func TestCommandResultSavedWhenItComesAgain(t *testing.T) {
	cs := &commandScript{batch: []protocol.Command{{ID: 7, Kind: KindContainerStop, Args: map[string]string{"id": "web"}}}}
	dir := t.TempDir()
	s, srv, _ := newCommandAgent(t, cs, dir)
	ex := &breakingExecutor{fakeExecutor: fakeExecutor{fail: map[uint64]string{7: "boom"}}, j: s.cmds, t: t}
	s.exec = ex
	ctx := context.Background()

	if err := s.exchange(ctx, all); err == nil {
		t.Fatal("a failed journal write did not fail the exchange")
	}
	ex.mend()
	// Memory says what the disk says: started, no result, nothing to ack.
	if len(s.cmds.Done) != 1 || s.cmds.Done[0].Status != protocol.StatusUnknown || len(s.cmds.Outbox) != 0 {
		t.Fatalf("in memory: done %+v outbox %+v", s.cmds.Done, s.cmds.Outbox)
	}
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if err := s.exchange(ctx, all); err != nil {
		t.Fatal(err)
	}
	if got := ex.ids(); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("ran %v, want 7 exactly once", got)
	}
	if a := ackOf(t, srv.last().Acks, 7); a.Status != protocol.StatusFailed || a.Error != "boom" {
		t.Fatalf("ack of 7 = %+v, want its real result", a)
	}
}

// A re-ack that cannot be saved is not kept in memory either.
func TestReackUndoneWhenItFailsToSave(t *testing.T) {
	j, err := loadJournal(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := j.start(3); err != nil {
		t.Fatal(err)
	}
	if err := j.finish(protocol.CommandAck{ID: 3, Status: protocol.StatusOK, Finished: 1}); err != nil {
		t.Fatal(err)
	}
	if err := j.confirm(j.pending()); err != nil {
		t.Fatal(err)
	}
	mend := breakJournal(t, j)
	if err := j.reack(3, time.Now()); err == nil {
		t.Fatal("reack saved into a missing dir")
	}
	if err := j.start(4); err == nil {
		t.Fatal("start saved into a missing dir")
	}
	mend()
	if len(j.Outbox) != 0 || j.seen(4) {
		t.Fatalf("unsaved changes stayed in memory: done %+v outbox %+v", j.Done, j.Outbox)
	}
	if err := j.reack(3, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := ackIDs(j.Outbox); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("outbox %v, want 3", got)
	}
}
