package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Buckets of edge stacks, edge jobs and the content they reference (schema 7).
var (
	bStacks      = []byte("edge_stacks")  // id -> EdgeStack
	bStackStatus = []byte("stack_status") // stack|env -> StackStatus
	bJobs        = []byte("edge_jobs")    // id -> EdgeJob
	bJobTargets  = []byte("job_targets")  // job|env -> JobTarget
	bJobRuns     = []byte("job_runs")     // job|env|run -> JobRun
	bBlobs       = []byte("blobs")        // hex sha256 -> content
	bBlobsSent   = []byte("blobs_sent")   // env|hex sha256 -> nothing: the device holds it
)

// createEdgeWork7 makes the buckets of edge stacks and jobs.
func createEdgeWork7(tx *bolt.Tx) error {
	for _, name := range []string{"edge_stacks", "stack_status", "edge_jobs", "job_targets", "job_runs", "blobs", "blobs_sent"} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	return nil
}

// EdgeStack is a compose project deployed to every environment of its edge
// groups. Its content lives once in the blobs bucket under Hash; its status
// per environment lives under its own key (StackStatus).
type EdgeStack struct {
	ID           uint64   `json:"id"`
	Name         string   `json:"name"` // also the compose project name on devices
	Version      uint64   `json:"version"`
	Hash         string   `json:"hash"` // hex SHA-256 of the content blob
	EdgeGroupIDs []uint64 `json:"edgeGroupIds"`
	// Registries holds the registry credentials sealed under the server's
	// secret key (the API views hide it); RegistryNames says which
	// registries, for display.
	Registries    []byte   `json:"registriesSealed,omitempty"`
	RegistryNames []string `json:"registries,omitempty"`
	Created       int64    `json:"created"`
	Updated       int64    `json:"updated"`
	By            string   `json:"by,omitempty"`
}

// StackStatus is one stack's state on one environment. Version is the
// stack version the environment should run; Remove is set once the
// environment left the stack's groups (or the stack was deleted) and the
// device was told to remove it.
type StackStatus struct {
	Stack   uint64 `json:"stackId"`
	Env     uint64 `json:"environmentId"`
	Version uint64 `json:"version"`
	Status  string `json:"status"` // pending, acknowledged, deploying, running, error, removing
	Error   string `json:"error,omitempty"`
	// Message is what the device says of a deploy in progress (which
	// replicas it waits for).
	Message string `json:"message,omitempty"`
	Remove  bool   `json:"remove,omitempty"`
	Updated int64  `json:"updated"`
	// Project and Hash are the compose project and content last sent.
	Project string `json:"project,omitempty"`
	Hash    string `json:"hash,omitempty"`
}

// EdgeJob is a cron script run on every environment it targets.
type EdgeJob struct {
	ID             uint64   `json:"id"`
	Name           string   `json:"name"`
	Cron           string   `json:"cron"`
	Hash           string   `json:"hash"` // hex SHA-256 of the script blob
	EnvironmentIDs []uint64 `json:"environmentIds"`
	EdgeGroupIDs   []uint64 `json:"edgeGroupIds"`
	Collect        bool     `json:"collectLogs"`
	Version        uint64   `json:"version"`
	Created        int64    `json:"created"`
	Updated        int64    `json:"updated"`
	By             string   `json:"by,omitempty"`
}

// JobTarget is one job on one environment: the version sent, and whether
// the device confirmed it.
type JobTarget struct {
	Job     uint64 `json:"jobId"`
	Env     uint64 `json:"environmentId"`
	Version uint64 `json:"version"`
	Status  string `json:"status"` // pending, scheduled, error, removing
	Error   string `json:"error,omitempty"`
	Remove  bool   `json:"remove,omitempty"`
	Updated int64  `json:"updated"`
	Hash    string `json:"hash,omitempty"` // the script last sent
}

// JobRun is one run of a job on one environment, as the device reported it.
type JobRun struct {
	Job        uint64 `json:"jobId"`
	Env        uint64 `json:"environmentId"`
	Run        uint64 `json:"run"`
	Started    int64  `json:"started"`
	DurationMs uint32 `json:"durationMs"`
	ExitCode   int    `json:"exitCode"`
	Error      string `json:"error,omitempty"`
	Output     string `json:"output,omitempty"`
	Full       bool   `json:"fullLog,omitempty"` // Output is the whole log, not its tail
	Received   int64  `json:"received"`
}

// RunsKept is how many runs are kept per job and environment.
const RunsKept = 50

func key3(a, b, c uint64) []byte {
	k := make([]byte, 24)
	binary.BigEndian.PutUint64(k, a)
	binary.BigEndian.PutUint64(k[8:], b)
	binary.BigEndian.PutUint64(k[16:], c)
	return k
}

func blobSentKey(env uint64, hash string) []byte { return append(u64(env), hash...) }

// PutBlob stores content under its hash, in the caller's transaction.
func putBlob(tx *bolt.Tx, hash string, data []byte) error {
	b := tx.Bucket(bBlobs)
	if b.Get([]byte(hash)) != nil {
		return nil
	}
	return b.Put([]byte(hash), data)
}

// Blob returns the content stored under hash.
func (s *Store) Blob(hash string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bBlobs).Get([]byte(hash))
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

// BlobsSent reports, for each hash, whether env's device holds it.
func (s *Store) BlobsSent(env uint64, hashes []string) (map[string]bool, error) {
	out := make(map[string]bool, len(hashes))
	if len(hashes) == 0 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bBlobsSent)
		for _, h := range hashes {
			out[h] = b.Get(blobSentKey(env, h)) != nil
		}
		return nil
	})
	return out, err
}

// CreateStack stores st (version 1) and its content.
func (s *Store) CreateStack(st *EdgeStack, content []byte) error {
	return s.createWithBlob(bStacks, func(id uint64) { st.ID, st.Version = id, 1 }, st, st.Hash, content)
}

// UpdateStack applies fn to stack id and stores content (nil: unchanged)
// in one transaction.
func (s *Store) UpdateStack(id uint64, content []byte, fn func(*EdgeStack) error) (*EdgeStack, error) {
	return updateWithBlob(s, bStacks, id, content, func(st *EdgeStack) string { return st.Hash }, fn)
}

// Stack returns stack id.
func (s *Store) Stack(id uint64) (*EdgeStack, error) { return getRecord[EdgeStack](s, bStacks, id) }

// Stacks returns every stack, by ID.
func (s *Store) Stacks() ([]EdgeStack, error) { return listRecords[EdgeStack](s, bStacks) }

// DeleteStack deletes stack id. Its statuses stay until each device has
// removed it.
func (s *Store) DeleteStack(id uint64) error { return deleteRecord(s, bStacks, id) }

// StackStatuses returns the statuses of stack id (0: of every stack), by
// stack then environment.
func (s *Store) StackStatuses(id uint64) ([]StackStatus, error) {
	return scanPrefix[StackStatus](s, bStackStatus, id)
}

// UpdateStackStatus applies fn to the status of stack on env, if there is
// one. fn returns false to delete the status.
func (s *Store) UpdateStackStatus(stack, env uint64, fn func(*StackStatus) (keep bool)) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bStackStatus)
		var st StackStatus
		if err := getJSON(b, key2(stack, env), &st); err != nil {
			return nil // gone: nothing to update
		}
		if !fn(&st) {
			return b.Delete(key2(stack, env))
		}
		return putJSON(b, key2(stack, env), &st)
	})
}

// UpdateStackStatuses applies fn to env's status of each stack in stacks
// that has one, all in one transaction. fn returns false to delete it.
func (s *Store) UpdateStackStatuses(env uint64, stacks []uint64, fn func(i int, st *StackStatus) (keep bool)) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bStackStatus)
		for i, stack := range stacks {
			var st StackStatus
			if getJSON(b, key2(stack, env), &st) != nil {
				continue // none: a report about a stack this environment does not run
			}
			if !fn(i, &st) {
				if err := b.Delete(key2(stack, env)); err != nil {
					return err
				}
				continue
			}
			if err := putJSON(b, key2(stack, env), &st); err != nil {
				return err
			}
		}
		return nil
	})
}

// Job returns job id.
func (s *Store) Job(id uint64) (*EdgeJob, error) { return getRecord[EdgeJob](s, bJobs, id) }

// Jobs returns every job, by ID.
func (s *Store) Jobs() ([]EdgeJob, error) { return listRecords[EdgeJob](s, bJobs) }

// CreateJob stores j (version 1) and its script.
func (s *Store) CreateJob(j *EdgeJob, script []byte) error {
	return s.createWithBlob(bJobs, func(id uint64) { j.ID, j.Version = id, 1 }, j, j.Hash, script)
}

// UpdateJob applies fn to job id and stores script (nil: unchanged).
func (s *Store) UpdateJob(id uint64, script []byte, fn func(*EdgeJob) error) (*EdgeJob, error) {
	return updateWithBlob(s, bJobs, id, script, func(j *EdgeJob) string { return j.Hash }, fn)
}

// DeleteJob deletes job id. Its targets stay until each device removed it;
// its runs stay readable until then too.
func (s *Store) DeleteJob(id uint64) error { return deleteRecord(s, bJobs, id) }

// JobTargets returns the targets of job id (0: of every job).
func (s *Store) JobTargets(id uint64) ([]JobTarget, error) {
	return scanPrefix[JobTarget](s, bJobTargets, id)
}

// UpdateJobTarget applies fn to the target of job on env, if there is one.
// fn returns false to delete it, and with it the runs of job on env.
func (s *Store) UpdateJobTarget(job, env uint64, fn func(*JobTarget) (keep bool)) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bJobTargets)
		var t JobTarget
		if err := getJSON(b, key2(job, env), &t); err != nil {
			return nil
		}
		if fn(&t) {
			return putJSON(b, key2(job, env), &t)
		}
		if err := b.Delete(key2(job, env)); err != nil {
			return err
		}
		return deletePrefix(tx.Bucket(bJobRuns), key2(job, env))
	})
}

// AddJobRuns stores runs reported by env's device. A run already stored is
// replaced only by its full log; RunsKept runs are kept per job and
// environment. It returns how many were new.
func (s *Store) AddJobRuns(env uint64, runs []JobRun) (int, error) {
	n := 0
	err := s.update(func(tx *bolt.Tx) error {
		n = 0
		b := tx.Bucket(bJobRuns)
		for _, r := range runs {
			r.Env = env
			if tx.Bucket(bJobTargets).Get(key2(r.Job, env)) == nil {
				continue // a job this server did not send there, or took back
			}
			k := key3(r.Job, env, r.Run)
			var old JobRun
			if getJSON(b, k, &old) == nil {
				if !r.Full || old.Full {
					continue // a duplicate
				}
			} else {
				n++
			}
			if err := putJSON(b, k, &r); err != nil {
				return err
			}
			if err := trimPrefix(b, key2(r.Job, env), RunsKept); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// JobRuns returns up to limit runs of job per environment, newest first per
// environment, environments by ID.
func (s *Store) JobRuns(job uint64, limit int) ([]JobRun, error) {
	var out []JobRun
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bJobRuns).Cursor()
		prefix := u64(job)
		var cur []JobRun
		var env uint64
		flush := func() {
			for i := len(cur) - 1; i >= 0 && len(cur)-i <= limit; i-- {
				out = append(out, cur[i])
			}
			cur = cur[:0]
		}
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var r JobRun
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.Env != env {
				flush()
				env = r.Env
			}
			cur = append(cur, r)
		}
		flush()
		return nil
	})
	return out, err
}

// Target is what a command queued for a stack or job moves: the status (or
// job target) record it sets, in the same transaction.
type Target struct {
	Stack *StackStatus
	Job   *JobTarget
	// Unsent is a blob hash the device is told to forget with this command
	// (the content it held before): it is unmarked so the next command that
	// needs it sends it again.
	Unsent string
	// KubeAccess is the hash of the grants a kube.access command carries,
	// recorded as sent (KubeAccessSent).
	KubeAccess string
}

// Queued is one command of QueueTargetCommands: the command, which of its
// environment's pending commands it supersedes, and the record it moves.
type Queued struct {
	Command    *Command
	Supersedes func(Command) bool
	Target     Target
}

// QueueTargetCommand, in one transaction: does nothing if the environment
// is gone; else drops env's pending commands
// that c supersedes (the same stack's or job's deploy/remove or
// upsert/remove), appends c (setting its ID), and stores the target record.
func (s *Store) QueueTargetCommand(c *Command, supersedes func(Command) bool, t Target) error {
	return s.QueueTargetCommands([]Queued{{Command: c, Supersedes: supersedes, Target: t}})
}

// QueueTargetCommands does what QueueTargetCommand does for each of qs, in
// order, all in one transaction: a stack over a whole fleet costs one
// commit per chunk the caller gives, not one per environment.
func (s *Store) QueueTargetCommands(qs []Queued) error {
	return s.update(func(tx *bolt.Tx) error {
		for _, q := range qs {
			if err := queueTarget(tx, q.Command, q.Supersedes, q.Target); err != nil {
				return err
			}
		}
		return nil
	})
}

// queueTarget is one command of QueueTargetCommands, inside its transaction.
func queueTarget(tx *bolt.Tx, c *Command, supersedes func(Command) bool, t Target) error {
	if tx.Bucket(bEnvironments).Get(u64(c.Env)) == nil {
		return nil // deleted since the reconciler listed it: nothing to queue
	}
	cb := tx.Bucket(bCommands)
	prefix := u64(c.Env)
	var drop [][]byte
	cur := cb.Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		var old Command
		if err := json.Unmarshal(v, &old); err != nil {
			return err
		}
		if supersedes(old) {
			drop = append(drop, bytes.Clone(k))
		}
	}
	for _, k := range drop {
		if err := cb.Delete(k); err != nil {
			return err
		}
	}
	id, err := cb.NextSequence()
	if err != nil {
		return err
	}
	c.ID, c.Status = id, "pending"
	if err := putJSON(cb, key2(c.Env, id), c); err != nil {
		return err
	}
	if t.Unsent != "" {
		if err := tx.Bucket(bBlobsSent).Delete(blobSentKey(c.Env, t.Unsent)); err != nil {
			return err
		}
	}
	if t.KubeAccess != "" {
		if err := tx.Bucket(bKube).Put(kubeKey('s', c.Env, nil), []byte(t.KubeAccess)); err != nil {
			return err
		}
	}
	switch {
	case t.Stack != nil:
		return putJSON(tx.Bucket(bStackStatus), key2(t.Stack.Stack, t.Stack.Env), t.Stack)
	case t.Job != nil:
		return putJSON(tx.Bucket(bJobTargets), key2(t.Job.Job, t.Job.Env), t.Job)
	}
	return nil
}

// createWithBlob stores v in bucket under a new ID, set through setID
// first, and content under hash, in one transaction.
func (s *Store) createWithBlob(bucket []byte, setID func(uint64), v any, hash string, content []byte) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		setID(id)
		if err := putBlob(tx, hash, content); err != nil {
			return err
		}
		return putJSON(b, u64(id), v)
	})
}

// updateWithBlob applies fn to record id of bucket and stores content
// (nil: unchanged) under the hash the record has after fn, in one
// transaction.
func updateWithBlob[T any](s *Store, bucket []byte, id uint64, content []byte, hash func(*T) string, fn func(*T) error) (*T, error) {
	var r T
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if err := getJSON(b, u64(id), &r); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		if content != nil {
			if err := putBlob(tx, hash(&r), content); err != nil {
				return err
			}
		}
		return putJSON(b, u64(id), &r)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// getRecord decodes record id of bucket.
func getRecord[T any](s *Store, bucket []byte, id uint64) (*T, error) {
	var r T
	err := s.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bucket), u64(id), &r) })
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// deleteRecord deletes record id of bucket; ErrNotFound when there is none.
func deleteRecord(s *Store, bucket []byte, id uint64) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get(u64(id)) == nil {
			return ErrNotFound
		}
		return b.Delete(u64(id))
	})
}

// scanPrefix decodes the records of bucket whose key starts with id (every
// record when id is 0), in key order.
func scanPrefix[T any](s *Store, bucket []byte, id uint64) ([]T, error) {
	var out []T
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		var prefix []byte
		if id != 0 {
			prefix = u64(id)
		}
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var r T
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
