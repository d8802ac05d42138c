package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"outpost/protocol"
	"outpost/server/store"
)

// Command kinds of edge stacks and jobs, queued by the reconciler.
const (
	kindStackDeploy = "stack.deploy" // stack, version, project; Blob: content; Secret: registry credentials
	kindStackRemove = "stack.remove" // stack, version, project
	kindJobUpsert   = "job.upsert"   // job, version, cron, collect; Blob: script
	kindJobRemove   = "job.remove"   // job
	kindJobCollect  = "job.collect"  // job
)

// Stack statuses as the API shows them.
const (
	stackPending      = "pending"
	stackAcknowledged = "acknowledged"
	stackDeploying    = "deploying"
	stackRunning      = "running"
	stackError        = "error"
	stackRemoving     = "removing"
)

// reconcileEvery is how often the reconciler runs without being kicked:
// a safety net for a change that forgot to kick it.
const reconcileEvery = 30 * time.Second

// kickReconcile asks the reconciler to run soon. Every API change kicks it
// (routes.go), so group membership, tags and trust are followed too.
func (s *Server) kickReconcile() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// reconcileRest is how long the reconciler rests after a pass, as a
// multiple of the pass's own time. A pass reads every stack status: about
// 0.3 s at 100,000 environments (BenchmarkReconcile100k). Every API change
// kicks it, and a fleet's operators (or 100 commands a second) kick it far
// more often than that, so without a rest it would take a whole core; with
// it, at most a fifth, and a change waits at most five passes' time.
const reconcileRest = 4

// reconcileLoop runs the reconciler when kicked and every reconcileEvery.
func (s *Server) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		start := time.Now()
		if err := s.reconcile(); err != nil {
			s.log.Error("reconcile edge stacks and jobs", "err", err)
		}
		rest := time.NewTimer(reconcileRest * time.Since(start))
		select {
		case <-ctx.Done():
			rest.Stop()
			return
		case <-rest.C:
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
	}
}

// reconcile compares what each environment should run (the stacks of its
// edge groups, the jobs that target it) with what it was last told, and
// queues the commands that close the gap: a deploy or upsert where the
// environment is new to the stack or job or runs an older version, a
// remove where it no longer belongs. Each command and the status record it
// moves are written in one transaction. It runs on one goroutine only.
func (s *Server) reconcile() error {
	if err := s.reconcileStacks(); err != nil {
		return err
	}
	if err := s.reconcileKubeAccess(); err != nil {
		return err
	}
	return s.reconcileJobs()
}

func (s *Server) reconcileStacks() error {
	stacks, err := s.store.Stacks()
	if err != nil {
		return err
	}
	statuses, err := s.store.StackStatuses(0)
	if err != nil {
		return err
	}
	known := byTarget(statuses, func(x store.StackStatus) (uint64, uint64) { return x.Stack, x.Env })
	now := s.now().Unix()
	q := &queuer{s: s}
	live := map[uint64]bool{}
	for i := range stacks {
		st := &stacks[i]
		live[st.ID] = true
		want := map[uint64]bool{}
		for _, env := range s.stackTargets(st) {
			want[env] = true
			cur, ok := known[st.ID][env]
			if ok && !cur.Remove && cur.Version >= st.Version {
				continue
			}
			unsent := ""
			if ok && cur.Hash != st.Hash {
				unsent = cur.Hash
			}
			if err := q.stack(st.ID, env, kindStackDeploy, st.Version, st.Name, st.Hash, unsent, now); err != nil {
				return err
			}
		}
		for env, cur := range known[st.ID] {
			if !want[env] && !cur.Remove {
				if err := q.stack(st.ID, env, kindStackRemove, cur.Version, st.Name, "", cur.Hash, now); err != nil {
					return err
				}
			}
		}
	}
	// Stacks deleted: removed from wherever they still are.
	for id, envs := range known {
		if live[id] {
			continue
		}
		for env, cur := range envs {
			if cur.Remove {
				continue
			}
			if err := q.stack(id, env, kindStackRemove, cur.Version, cur.Project, "", cur.Hash, now); err != nil {
				return err
			}
		}
	}
	return q.flush()
}

// byTarget indexes records by their stack or job, then their environment.
func byTarget[T any](rs []T, key func(T) (uint64, uint64)) map[uint64]map[uint64]T {
	out := map[uint64]map[uint64]T{}
	for _, r := range rs {
		of, env := key(r)
		if out[of] == nil {
			out[of] = map[uint64]T{}
		}
		out[of][env] = r
	}
	return out
}

// queueChunk is how many commands the reconciler writes per transaction.
// One transaction per command made a stack over 100,000 environments take
// about 100 s of fsyncs (BenchmarkReconcile100k); a chunk holds the writer
// for a few milliseconds, so device exchanges hardly wait behind it.
const queueChunk = 1000

// queuer gathers one reconcile pass's commands and writes them queueChunk
// at a time, each command with its target record in one transaction. What
// a failed pass did not write, the next pass queues again.
type queuer struct {
	s  *Server
	qs []store.Queued
}

func (q *queuer) add(c *store.Command, supersedes func(store.Command) bool, t store.Target) error {
	q.qs = append(q.qs, store.Queued{Command: c, Supersedes: supersedes, Target: t})
	if len(q.qs) < queueChunk {
		return nil
	}
	return q.flush()
}

// flush writes what add gathered.
func (q *queuer) flush() error {
	if len(q.qs) == 0 {
		return nil
	}
	err := q.s.store.QueueTargetCommands(q.qs)
	if err != nil {
		c := q.qs[0].Command
		err = fmt.Errorf("queue %d commands (the first: %s for environment %d): %w", len(q.qs), c.Kind, c.Env, err)
	}
	q.qs = q.qs[:0]
	return err
}

// stack queues a deploy or remove of stack for env and sets its status.
func (q *queuer) stack(stack, env uint64, kind string, version uint64, project, hash, unsent string, now int64) error {
	id := strconv.FormatUint(stack, 10)
	c := &store.Command{Env: env, Kind: kind, Created: now, By: "reconciler", Blob: hash, Args: map[string]string{
		"stack": id, "version": strconv.FormatUint(version, 10), "project": project,
	}}
	status := &store.StackStatus{Stack: stack, Env: env, Version: version, Status: stackPending, Updated: now, Project: project, Hash: hash}
	if kind == kindStackRemove {
		// The device forgets the content it held; the record keeps nothing
		// to unmark again.
		status.Remove, status.Status, status.Hash = true, stackRemoving, ""
	}
	supersedes := func(old store.Command) bool {
		return (old.Kind == kindStackDeploy || old.Kind == kindStackRemove) && old.Args["stack"] == id
	}
	return q.add(c, supersedes, store.Target{Stack: status, Unsent: unsent})
}

func (s *Server) reconcileJobs() error {
	jobs, err := s.store.Jobs()
	if err != nil {
		return err
	}
	targets, err := s.store.JobTargets(0)
	if err != nil {
		return err
	}
	known := byTarget(targets, func(x store.JobTarget) (uint64, uint64) { return x.Job, x.Env })
	now := s.now().Unix()
	q := &queuer{s: s}
	live := map[uint64]bool{}
	for i := range jobs {
		j := &jobs[i]
		live[j.ID] = true
		want := map[uint64]bool{}
		for _, env := range s.targets(j.EnvironmentIDs, j.EdgeGroupIDs) {
			want[env] = true
			cur, ok := known[j.ID][env]
			if ok && !cur.Remove && cur.Version >= j.Version {
				continue
			}
			if err := q.job(j.ID, env, j, cur.Hash, now); err != nil {
				return err
			}
		}
		for env, cur := range known[j.ID] {
			if !want[env] && !cur.Remove {
				if err := q.job(j.ID, env, nil, cur.Hash, now); err != nil {
					return err
				}
			}
		}
	}
	for id, envs := range known {
		if live[id] {
			continue
		}
		for env, cur := range envs {
			if !cur.Remove {
				if err := q.job(id, env, nil, cur.Hash, now); err != nil {
					return err
				}
			}
		}
	}
	return q.flush()
}

// job queues job.upsert of j (or job.remove when j is nil) for env.
// prev is the script the device held for the job: the device drops it when
// the job moves on, so it is unmarked unless the script stays the same.
func (q *queuer) job(id, env uint64, j *store.EdgeJob, prev string, now int64) error {
	sid := strconv.FormatUint(id, 10)
	c := &store.Command{Env: env, Kind: kindJobRemove, Created: now, By: "reconciler", Args: map[string]string{"job": sid}}
	t := &store.JobTarget{Job: id, Env: env, Status: stackRemoving, Remove: true, Updated: now}
	if j != nil {
		c.Kind, c.Blob = kindJobUpsert, j.Hash
		c.Args["version"] = strconv.FormatUint(j.Version, 10)
		c.Args["cron"] = j.Cron
		c.Args["collect"] = strconv.FormatBool(j.Collect)
		t.Version, t.Status, t.Remove, t.Hash = j.Version, stackPending, false, j.Hash
	}
	unsent := prev
	if j != nil && prev == j.Hash {
		unsent = ""
	}
	supersedes := func(old store.Command) bool {
		return (old.Kind == kindJobUpsert || old.Kind == kindJobRemove) && old.Args["job"] == sid
	}
	return q.add(c, supersedes, store.Target{Job: t, Unsent: unsent})
}

// afterAcks moves the stack statuses and job targets of acked commands: a
// deploy the device took is acknowledged (its progress follows in
// StackStatuses), a failed one is an error; a remove or upsert the device
// confirmed is done.
func (s *Server) afterAcks(env uint64, done []store.Command, now int64) error {
	for _, c := range done {
		version, _ := strconv.ParseUint(c.Args["version"], 10, 64)
		switch c.Kind {
		case kindStackDeploy, kindStackRemove:
			stack, _ := strconv.ParseUint(c.Args["stack"], 10, 64)
			err := s.store.UpdateStackStatus(stack, env, func(st *store.StackStatus) bool {
				if st.Version != version || st.Remove != (c.Kind == kindStackRemove) {
					return true // a newer command superseded it
				}
				switch {
				case c.Status != "ok":
					st.Status, st.Error = stackError, c.Error
				case c.Kind == kindStackRemove:
					// Taken: the device reports removed once Compose
					// has taken the project down.
				case st.Status == stackPending:
					st.Status = stackAcknowledged
				}
				st.Updated = now
				return true
			})
			if err != nil {
				return err
			}
		case kindKubeAccess:
			if c.Status == "ok" {
				continue
			}
			// The cluster does not hold these grants: the reconciler
			// sends them again, after kubeAccessRetry.
			s.log.Warn("kubernetes access not applied; sending it again later", "env", env, "command", c.ID, "retry_in", kubeAccessRetry, "err", c.Error)
			if err := s.store.RetryKubeAccess(env, grantsHash(c.Args["grants"]), now+int64(kubeAccessRetry/time.Second)); err != nil {
				return err
			}
		case kindJobUpsert, kindJobRemove:
			job, _ := strconv.ParseUint(c.Args["job"], 10, 64)
			err := s.store.UpdateJobTarget(job, env, func(t *store.JobTarget) bool {
				if t.Remove != (c.Kind == kindJobRemove) || (!t.Remove && t.Version != version) {
					return true
				}
				if c.Status == "ok" && t.Remove {
					return false
				}
				t.Status, t.Error, t.Updated = "scheduled", "", now
				if c.Status != "ok" {
					t.Status, t.Error = stackError, c.Error
				}
				return true
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// stackStatusNames maps the device's stack states to the API's.
var stackStatusNames = map[protocol.Status]string{
	protocol.StatusAcknowledged: stackAcknowledged,
	protocol.StatusDeploying:    stackDeploying,
	protocol.StatusRunning:      stackRunning,
	protocol.StatusFailed:       stackError,
	protocol.StatusRemoving:     stackRemoving,
	protocol.StatusRemoved:      "removed",
}

// ingestStackStatuses applies what a device says of its stacks, in one
// transaction. A report about another version than the one the
// environment should run is stale and ignored; removed deletes the status;
// a failed removal keeps it removing, with the error.
func (s *Server) ingestStackStatuses(env uint64, in []protocol.StackStatus, now int64) error {
	if len(in) == 0 {
		return nil
	}
	ids := make([]uint64, len(in))
	for i, x := range in {
		ids[i] = x.StackID
	}
	err := s.store.UpdateStackStatuses(env, ids, func(i int, st *store.StackStatus) bool {
		x := in[i]
		name, ok := stackStatusNames[x.Status]
		switch {
		case !ok:
		case st.Remove && x.Status == protocol.StatusRemoved:
			return false
		case st.Remove:
			if x.Status == protocol.StatusFailed {
				st.Error, st.Updated = x.Error, now
			}
		case x.Version != st.Version || x.Status == protocol.StatusRemoved || x.Status == protocol.StatusRemoving:
		default:
			st.Status, st.Error, st.Message, st.Updated = name, x.Error, "", now
			if x.Status != protocol.StatusFailed {
				st.Error = ""
			}
			if x.Status == protocol.StatusDeploying {
				st.Message = x.Error // the device's progress, not an error
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("stack statuses: %w", err)
	}
	return nil
}

// ingestJobResults stores the job runs a device reports.
func (s *Server) ingestJobResults(env uint64, in []protocol.JobResult, now int64) error {
	if len(in) == 0 {
		return nil
	}
	runs := make([]store.JobRun, 0, len(in))
	for _, r := range in {
		runs = append(runs, store.JobRun{
			Job: r.JobID, Run: r.Run, Started: r.Started, DurationMs: r.Duration, ExitCode: r.ExitCode,
			Error: r.Error, Output: string(r.Output), Full: r.Full, Received: now,
		})
	}
	_, err := s.store.AddJobRuns(env, runs)
	return err
}

// maxBlobBytes bounds the content one answer carries; commands whose
// content does not fit wait for the next exchange.
const maxBlobBytes = 1 << 20

// releaseCommands turns pending commands into what the device receives:
// content it does not hold yet rides along once per answer, and registry
// credentials are sealed for the device.
func (s *Server) releaseCommands(env *store.Environment, pending []store.Command) ([]protocol.Command, []protocol.Blob, error) {
	var hashes []string
	for _, c := range pending {
		if c.Blob != "" {
			hashes = append(hashes, c.Blob)
		}
	}
	held, err := s.store.BlobsSent(env.ID, hashes)
	if err != nil {
		return nil, nil, err
	}
	out := make([]protocol.Command, 0, len(pending))
	var blobs []protocol.Blob
	size := 0
	for _, c := range pending {
		pc := protocol.Command{ID: c.ID, Kind: c.Kind, Args: c.Args}
		if c.Blob != "" {
			h, err := hex.DecodeString(c.Blob)
			if err != nil {
				return nil, nil, fmt.Errorf("command %d: blob %q: %w", c.ID, c.Blob, err)
			}
			pc.Blob = h
			if !held[c.Blob] {
				data, err := s.store.Blob(c.Blob)
				if err != nil {
					return nil, nil, fmt.Errorf("command %d: %w", c.ID, err)
				}
				if size+len(data) > maxBlobBytes && len(out) > 0 {
					break
				}
				size += len(data)
				blobs = append(blobs, protocol.Blob{Hash: h, Data: data})
				held[c.Blob] = true // once per answer
			}
		}
		if c.Kind == kindStackDeploy {
			if pc.Secret, err = s.stackSecret(env, c); err != nil {
				return nil, nil, fmt.Errorf("command %d: %w", c.ID, err)
			}
		}
		out = append(out, pc)
	}
	return out, blobs, nil
}

// stackSecret seals a stack's registry credentials for env's device, bound
// to command c. The credentials are read from the stack as it is now.
func (s *Server) stackSecret(env *store.Environment, c store.Command) ([]byte, error) {
	id, _ := strconv.ParseUint(c.Args["stack"], 10, 64)
	st, err := s.store.Stack(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // deleted since: its remove follows
	} else if err != nil {
		return nil, err
	}
	plain, err := s.registryAuths(st)
	if err != nil || plain == nil {
		return nil, err
	}
	key, err := s.ids.macKey(env)
	if err != nil {
		return nil, err
	}
	return protocol.SealSecret(key, c.ID, plain)
}
