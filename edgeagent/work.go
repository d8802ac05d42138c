package edgeagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"outpost/edgeagent/jobs"
	"outpost/edgeagent/stacks"
	"outpost/protocol"
)

// Command kinds of edge stacks and jobs. Args: "stack" and "job" are IDs,
// "version" the version to run, "project" the compose project, "cron" and
// "collect" a job's schedule and whether its results carry output. Blob is
// the hash of the content (stack files, job script).
const (
	KindStackDeploy = "stack.deploy"
	KindStackRemove = "stack.remove"
	KindJobUpsert   = "job.upsert"
	KindJobRemove   = "job.remove"
	KindJobCollect  = "job.collect"
)

var workKinds = map[string]bool{KindStackDeploy: true, KindStackRemove: true, KindJobUpsert: true, KindJobRemove: true, KindJobCollect: true}

// StackRunner deploys edge stacks on the device (package stacks).
type StackRunner interface {
	Deploy(ctx context.Context, s stacks.Spec) error
	Remove(ctx context.Context, project string) error
	Status(ctx context.Context, project string) (stacks.State, error)
}

// JobRunner runs edge jobs on the device (package jobs).
type JobRunner interface {
	Upsert(j jobs.Job) error
	Remove(id uint64) error
	Logs(id, run uint64) ([]byte, error)
}

// Bounds of what the agent owes the server.
const (
	// maxJobResultsPerRequest and maxJobOutputPerRequest bound the job
	// results one request carries; the rest go with the next ones.
	maxJobResultsPerRequest = 64
	maxJobOutputPerRequest  = 256 << 10
	// maxPendingResults bounds the job results kept while the link is down:
	// the oldest go first.
	maxPendingResults = 1000
	// stackCheck is how often the agent looks at what its stacks run.
	stackCheck = 5 * time.Second
)

func workPath(dir string) string { return filepath.Join(dir, "work.cbor") }
func blobDir(dir string) string  { return filepath.Join(dir, "blobs") }

// stackWant is what the server asked of one stack, and what the agent did.
type stackWant struct {
	Version uint64 `cbor:"1,keyasint"`
	Project string `cbor:"2,keyasint"`
	Hash    string `cbor:"3,keyasint,omitempty"`
	Remove  bool   `cbor:"4,keyasint,omitempty"`
	// Secret is the sealed registry credentials and the command they were
	// sealed for (they are bound to its ID); opened only in memory.
	Secret []byte `cbor:"5,keyasint,omitempty"`
	CmdID  uint64 `cbor:"6,keyasint,omitempty"`
	// Deployed is the version Compose last deployed without error; Failed
	// the version whose last deploy failed (retried with backoff, and at
	// once after a restart or when a new version comes).
	Deployed uint64 `cbor:"7,keyasint,omitempty"`
	Failed   uint64 `cbor:"8,keyasint,omitempty"`
}

// workState is the persisted state of stacks and jobs: what to run, and
// the reports not yet confirmed by an answered request.
type workState struct {
	Stacks map[uint64]*stackWant `cbor:"1,keyasint,omitempty"`
	// Jobs maps job ID to its script's hash, for blob collection.
	Jobs map[uint64]string `cbor:"2,keyasint,omitempty"`
	// Statuses holds the latest status of each stack not yet confirmed.
	Statuses map[uint64]protocol.StackStatus `cbor:"3,keyasint,omitempty"`
	// Results holds job runs not yet confirmed, oldest first.
	Results []protocol.JobResult `cbor:"4,keyasint,omitempty"`
	// LastRun is the latest run of each job, for job.collect.
	LastRun map[uint64]protocol.JobResult `cbor:"5,keyasint,omitempty"`
}

// work runs edge stacks and jobs: it takes their commands, keeps their
// content by hash, converges the stacks in the background and holds the
// reports owed to the server.
type work struct {
	dir    string
	prefix string // before every compose project name (Config.StackPrefix)
	log    *slog.Logger
	stacks StackRunner
	jobs   JobRunner
	now    func() time.Time
	mac    atomic.Pointer[[]byte] // the device's MAC key, to open secrets; set by the syncer once bound
	kick   chan struct{}

	mu sync.Mutex // guards st, unused and the files they stand for; never held across Compose or a job
	st workState
	// unused holds content hashes that may have no reference left (sweep).
	unused map[string]bool
	// reported is the status each stack last reported, to report changes
	// only; retry says when a failed deploy is tried again. Both belong to
	// the converge goroutine.
	reported map[uint64]protocol.StackStatus
	retry    map[uint64]retryAt
}

// retryAt is when a failed deploy is tried again, and the wait after that.
type retryAt struct {
	at     time.Time
	wait   time.Duration
	remove bool // a failed removal's, not a deploy's
}

// Backoff of failed deploys: a transient failure (the engine busy, a
// registry briefly away) heals on its own; a broken update fails fast
// again and keeps the previous containers running.
const (
	retryFirst = 30 * time.Second
	retryMax   = 30 * time.Minute
)

func newWork(dir string, log *slog.Logger, sr StackRunner, now func() time.Time) (*work, error) {
	w := &work{dir: dir, log: log, stacks: sr, now: now, kick: make(chan struct{}, 1), unused: map[string]bool{},
		reported: map[uint64]protocol.StackStatus{}, retry: map[uint64]retryAt{}}
	b, err := os.ReadFile(workPath(dir))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("work state: %w", err)
	default:
		if err := protocol.Unmarshal(b, &w.st); err != nil {
			return nil, fmt.Errorf("work state %s is damaged (%v): move it aside; the server sends the stacks and jobs again only when they change", workPath(dir), err)
		}
	}
	if w.st.Stacks == nil {
		w.st.Stacks = map[uint64]*stackWant{}
	}
	if w.st.Jobs == nil {
		w.st.Jobs = map[uint64]string{}
	}
	if w.st.Statuses == nil {
		w.st.Statuses = map[uint64]protocol.StackStatus{}
	}
	if w.st.LastRun == nil {
		w.st.LastRun = map[uint64]protocol.JobResult{}
	}
	// A failed deploy is tried again once after a restart.
	for _, s := range w.st.Stacks {
		s.Failed = 0
	}
	return w, os.MkdirAll(blobDir(dir), 0o700)
}

// saveLocked writes the state; the caller holds mu.
func (w *work) saveLocked() error {
	b, err := protocol.Marshal(&w.st)
	if err != nil {
		return err
	}
	return writeFileAtomic(workPath(w.dir), b, 0o600)
}

// keepBlobs stores the content an answer carries, each checked against its
// hash, before any command that needs it runs.
func (w *work) keepBlobs(bs []protocol.Blob) error {
	for _, b := range bs {
		sum := sha256.Sum256(b.Data)
		if !bytes.Equal(sum[:], b.Hash) {
			return fmt.Errorf("content %x does not match its hash", b.Hash)
		}
		if err := writeFileAtomic(filepath.Join(blobDir(w.dir), hex.EncodeToString(b.Hash)), b.Data, 0o600); err != nil {
			return fmt.Errorf("keep content %x: %w", b.Hash, err)
		}
		// Carried with a command that then fails, or one already run,
		// it would stay for good: sweep looks at it after the commands.
		w.mu.Lock()
		w.unused[hex.EncodeToString(b.Hash)] = true
		w.mu.Unlock()
	}
	return nil
}

func (w *work) blob(hash []byte) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(blobDir(w.dir), hex.EncodeToString(hash)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("content %x is not on this device (the server believes it sent it); update the stack or job to send it again", hash)
	}
	return b, err
}

// dropBlobLocked notes content that nothing may refer to any more. It is
// deleted by sweep, once the commands of the answer at hand have all run: a
// later command of the same answer may need it (a stack removed and another
// deployed with the same content).
func (w *work) dropBlobLocked(hash string) {
	if hash != "" {
		w.unused[hash] = true
	}
}

// sweep deletes the content noted by dropBlobLocked, and the content an
// answer carried, that no stack or job refers to. The syncer calls it after
// an answer's commands ran; nothing else deletes content.
func (w *work) sweep() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for hash := range w.unused {
		if w.referencedLocked(hash) {
			continue
		}
		if err := os.Remove(filepath.Join(blobDir(w.dir), hash)); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("could not delete unused content", "hash", hash, "err", err)
		}
	}
	clear(w.unused)
}

func (w *work) referencedLocked(hash string) bool {
	for _, s := range w.st.Stacks {
		if s.Hash == hash {
			return true
		}
	}
	for _, h := range w.st.Jobs {
		if h == hash {
			return true
		}
	}
	return false
}

func argID(c protocol.Command, name string) (uint64, error) {
	v, err := strconv.ParseUint(c.Args[name], 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%s: args.%s %q: want a positive integer", c.Kind, name, c.Args[name])
	}
	return v, nil
}

// execute takes one stack or job command. A stack command only records what
// the server wants and wakes the converge loop: its progress is reported as
// stack statuses, not in the ack.
func (w *work) execute(c protocol.Command) error {
	switch c.Kind {
	case KindStackDeploy, KindStackRemove:
		return w.takeStack(c)
	case KindJobUpsert:
		return w.upsertJob(c)
	case KindJobRemove:
		id, err := argID(c, "job")
		if err != nil {
			return err
		}
		if err := w.jobs.Remove(id); err != nil {
			return err
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		hash := w.st.Jobs[id]
		delete(w.st.Jobs, id)
		delete(w.st.LastRun, id)
		w.dropBlobLocked(hash)
		return w.saveLocked()
	case KindJobCollect:
		return w.collect(c)
	}
	return unknownKind(c.Kind)
}

func (w *work) takeStack(c protocol.Command) error {
	id, err := argID(c, "stack")
	if err != nil {
		return err
	}
	version, err := argID(c, "version")
	if err != nil {
		return err
	}
	if c.Args["project"] == "" {
		return fmt.Errorf("%s: args.project: required", c.Kind) // Deploy checks the name itself
	}
	want := &stackWant{Version: version, Project: w.prefix + c.Args["project"], Remove: c.Kind == KindStackRemove, Secret: c.Secret, CmdID: c.ID}
	if !want.Remove {
		if _, err := w.blob(c.Blob); err != nil {
			return err
		}
		want.Hash = hex.EncodeToString(c.Blob)
	}
	w.mu.Lock()
	old := w.st.Stacks[id]
	// A version already deployed stays deployed, unless it comes back with
	// other content: the server's store was restored from a backup and
	// the version number is reused for a new edit. The content decides.
	if old != nil && (old.Version != want.Version || (old.Hash == want.Hash && old.Project == want.Project)) {
		want.Deployed = old.Deployed
	}
	w.st.Stacks[id] = want
	if old != nil && old.Hash != want.Hash {
		w.dropBlobLocked(old.Hash)
	}
	err = w.saveLocked()
	w.mu.Unlock()
	if err != nil {
		return err
	}
	w.wake()
	return nil
}

func (w *work) upsertJob(c protocol.Command) error {
	id, err := argID(c, "job")
	if err != nil {
		return err
	}
	version, err := argID(c, "version")
	if err != nil {
		return err
	}
	script, err := w.blob(c.Blob)
	if err != nil {
		return err
	}
	j := jobs.Job{ID: id, Version: version, Cron: c.Args["cron"], Script: script, Collect: c.Args["collect"] == "true"}
	if err := w.jobs.Upsert(j); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.st.Jobs[id]
	w.st.Jobs[id] = hex.EncodeToString(c.Blob)
	if old != w.st.Jobs[id] {
		w.dropBlobLocked(old)
	}
	return w.saveLocked()
}

// collect queues the whole log of the job's latest run.
func (w *work) collect(c protocol.Command) error {
	id, err := argID(c, "job")
	if err != nil {
		return err
	}
	w.mu.Lock()
	last, ok := w.st.LastRun[id]
	w.mu.Unlock()
	if !ok {
		return fmt.Errorf("job %d has not run on this device yet: nothing to collect", id)
	}
	log, err := w.jobs.Logs(id, last.Run)
	if err != nil {
		return fmt.Errorf("job %d run %d: %w", id, last.Run, err)
	}
	last.Output, last.Full = log, true
	w.mu.Lock()
	defer w.mu.Unlock()
	w.addResultLocked(last)
	return w.saveLocked()
}

// onResult is the job runner's callback: a run ended.
func (w *work) onResult(r jobs.Result) {
	res := protocol.JobResult{
		JobID: r.JobID, Run: r.Run, Started: r.Started.Unix(), ExitCode: r.ExitCode, Error: r.Error, Output: r.Output,
		Duration: uint32(min(r.Duration.Milliseconds(), int64(^uint32(0)))),
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	meta := res
	meta.Output = nil
	w.st.LastRun[r.JobID] = meta
	w.addResultLocked(res)
	if err := w.saveLocked(); err != nil {
		w.log.Warn("could not keep a job result; it goes with the next request if the agent keeps running", "job", r.JobID, "run", r.Run, "err", err)
	}
}

func (w *work) addResultLocked(r protocol.JobResult) {
	w.st.Results = append(w.st.Results, r)
	if over := len(w.st.Results) - maxPendingResults; over > 0 {
		w.log.Warn("job results waiting for the link passed the bound; dropping the oldest", "dropped", over)
		w.st.Results = slices.Delete(w.st.Results, 0, over)
	}
}

// reports returns the stack statuses and job results the next request
// carries.
func (w *work) reports() ([]protocol.StackStatus, []protocol.JobResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var sts []protocol.StackStatus
	for _, s := range w.st.Statuses {
		sts = append(sts, s)
	}
	slices.SortFunc(sts, func(a, b protocol.StackStatus) int { return int(a.StackID) - int(b.StackID) })
	var res []protocol.JobResult
	size := 0
	for _, r := range w.st.Results {
		if len(res) == maxJobResultsPerRequest || (len(res) > 0 && size+len(r.Output) > maxJobOutputPerRequest) {
			break
		}
		size += len(r.Output)
		res = append(res, r)
	}
	return sts, res
}

// confirm drops the reports an answered request carried; a status that
// changed since stays.
func (w *work) confirm(sts []protocol.StackStatus, res []protocol.JobResult) error {
	if len(sts) == 0 && len(res) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range sts {
		if cur, ok := w.st.Statuses[s.StackID]; ok && cur == s {
			delete(w.st.Statuses, s.StackID)
		}
	}
	w.st.Results = slices.DeleteFunc(w.st.Results, func(r protocol.JobResult) bool {
		return slices.ContainsFunc(res, func(x protocol.JobResult) bool {
			return x.JobID == r.JobID && x.Run == r.Run && x.Full == r.Full
		})
	})
	return w.saveLocked()
}

func (w *work) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run converges the stacks until ctx ends: when woken by a command, and
// every stackCheck to notice what changed on the engine.
func (w *work) run(ctx context.Context) {
	t := time.NewTicker(stackCheck)
	defer t.Stop()
	for {
		w.converge(ctx)
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-t.C:
		}
	}
}

// converge brings each stack to what the server asked, then reports what
// runs. Compose runs without mu held.
func (w *work) converge(ctx context.Context) {
	w.mu.Lock()
	ids := make([]uint64, 0, len(w.st.Stacks))
	for id := range w.st.Stacks {
		ids = append(ids, id)
	}
	w.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		want := w.st.Stacks[id]
		var cp stackWant
		if want != nil {
			cp = *want
		}
		w.mu.Unlock()
		if want == nil {
			continue
		}
		w.convergeOne(ctx, id, cp)
	}
}

func (w *work) convergeOne(ctx context.Context, id uint64, want stackWant) {
	if want.Remove {
		if r, waiting := w.retry[id]; waiting && r.remove && w.now().Before(r.at) {
			return // its error stands until the retry
		}
		w.report(id, want.Version, protocol.StatusRemoving, "")
		if err := w.stacks.Remove(ctx, want.Project); err != nil {
			w.backoff(id, true)
			w.report(id, want.Version, protocol.StatusFailed, err.Error())
			return
		}
		delete(w.retry, id)
		w.mu.Lock()
		if cur := w.st.Stacks[id]; cur != nil && cur.Remove && cur.Version == want.Version {
			delete(w.st.Stacks, id)
			w.dropBlobLocked(cur.Hash)
		}
		w.mu.Unlock()
		w.report(id, want.Version, protocol.StatusRemoved, "")
		delete(w.reported, id)
		return
	}
	r, waiting := w.retry[id]
	waiting = waiting && !r.remove
	if want.Failed == want.Version && waiting && w.now().Before(r.at) {
		return // its error stands until the retry
	}
	if want.Deployed != want.Version {
		w.report(id, want.Version, protocol.StatusDeploying, "")
		w.log.Info("deploying stack", "stack", id, "project", want.Project, "version", want.Version)
		err := w.deploy(ctx, want)
		w.mu.Lock()
		if cur := w.st.Stacks[id]; cur != nil && cur.Version == want.Version && !cur.Remove {
			if err == nil {
				cur.Deployed, cur.Failed = want.Version, 0
			} else {
				cur.Failed = want.Version
			}
			if serr := w.saveLocked(); serr != nil {
				w.log.Warn("could not record a deploy", "stack", id, "err", serr)
			}
		}
		w.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return // shutting down: the next start deploys again
			}
			if !waiting || want.Failed != want.Version {
				delete(w.retry, id) // a new version starts the backoff afresh
			}
			next := w.backoff(id, false)
			w.log.Warn("stack deploy failed", "stack", id, "project", want.Project, "version", want.Version, "retry_in", next, "err", err)
			w.report(id, want.Version, protocol.StatusFailed, err.Error())
			return
		}
		delete(w.retry, id)
		w.log.Info("stack deployed", "stack", id, "project", want.Project, "version", want.Version)
	}
	st, err := w.stacks.Status(ctx, want.Project)
	if err != nil {
		w.report(id, want.Version, protocol.StatusFailed, err.Error())
		return
	}
	switch st.Phase {
	case stacks.Running:
		w.report(id, want.Version, protocol.StatusRunning, "")
	case stacks.Failed:
		w.report(id, want.Version, protocol.StatusFailed, st.Message)
	case stacks.Missing:
		w.report(id, want.Version, protocol.StatusFailed, "no container of the stack is on the engine")
	default:
		w.report(id, want.Version, protocol.StatusDeploying, st.Message)
	}
}

// backoff schedules the next try of stack id after a failed deploy or
// removal: retryFirst, doubling up to retryMax while the same kind keeps
// failing. It returns the wait.
func (w *work) backoff(id uint64, remove bool) time.Duration {
	next := retryAt{wait: retryFirst, remove: remove}
	if r, ok := w.retry[id]; ok && r.remove == remove {
		next.wait = min(2*r.wait, retryMax)
	}
	next.at = w.now().Add(next.wait)
	w.retry[id] = next
	return next.wait
}

func (w *work) deploy(ctx context.Context, want stackWant) error {
	raw, err := w.blob(mustHex(want.Hash))
	if err != nil {
		return err
	}
	var content protocol.StackContent
	if err := protocol.Unmarshal(raw, &content); err != nil {
		return fmt.Errorf("stack content %s: %w", want.Hash, err)
	}
	spec := stacks.Spec{Project: want.Project, Compose: content.Compose, Env: content.Env, Dir: filepath.Join(w.dir, "stacks", want.Project),
		Type: content.Type, Manifests: content.Manifests, Namespace: content.Namespace, Version: want.Version}
	if len(want.Secret) > 0 {
		k := w.mac.Load()
		if k == nil {
			return errors.New("registry credentials arrived before this device was bound")
		}
		plain, err := protocol.OpenSecret(*k, want.CmdID, want.Secret)
		if err != nil {
			return fmt.Errorf("registry credentials: %w", err)
		}
		var auths []protocol.RegistryAuth
		if err := protocol.Unmarshal(plain, &auths); err != nil {
			return fmt.Errorf("registry credentials: %w", err)
		}
		spec.Auth = map[string]stacks.Auth{}
		for _, a := range auths {
			spec.Auth[a.Server] = stacks.Auth{Username: a.Username, Password: a.Password}
		}
	}
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	return w.stacks.Deploy(ctx, spec)
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// report queues a stack's status for the server when it changed.
func (w *work) report(id, version uint64, status protocol.Status, msg string) {
	st := protocol.StackStatus{StackID: id, Version: version, Status: status, Error: cutText(msg, maxAckError)}
	if prev, ok := w.reported[id]; ok && prev == st {
		return
	}
	w.reported[id] = st
	st.Time = w.now().Unix()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st.Statuses[id] = st
	if err := w.saveLocked(); err != nil {
		w.log.Warn("could not keep a stack status", "stack", id, "err", err)
	}
}
