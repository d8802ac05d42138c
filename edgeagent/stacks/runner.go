package stacks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/client"
)

// Sentinel errors; Deploy, Remove and Status wrap them.
var (
	// ErrInvalid: the Spec or its compose file is wrong. Retrying the same
	// Spec cannot succeed; nothing was changed on the engine.
	ErrInvalid = errors.New("invalid stack")
	// ErrImage: an image is not on the device and could not be pulled.
	// Nothing was changed on the engine; the previous containers still run.
	ErrImage = errors.New("image not available")
	// ErrNoHelper: the compose helper (HelperName) is neither beside the
	// agent's executable nor on PATH.
	ErrNoHelper = errors.New("no compose helper")
)

// Runner deploys edge stacks with Compose on the local engine. Compose runs
// in a child process, the compose helper, one per Deploy or Remove; Status
// and the Runner's bookkeeping stay in this process. Its methods are safe
// for concurrent use; Deploy and Remove of one project are serialized,
// different projects proceed in parallel.
type Runner struct {
	log    *slog.Logger
	engine client.APIClient // for Status and Remove's look at what is left
	helper helper

	mu     sync.Mutex // guards stacks and the fields of its values marked so; never held across engine calls or the helper
	stacks map[string]*stack
}

// stack is what the Runner remembers of one project.
type stack struct {
	// op serializes Deploy and Remove of the project. It is held across
	// engine calls and the helper on purpose: ordering them is what it is
	// for. Status does not take it.
	op sync.Mutex

	services  []string // guarded by Runner.mu: services of the last successful Deploy
	deploying int      // guarded by Runner.mu: Deploy calls under way or waiting for op
	unsettled bool     // guarded by Runner.mu: the last up failed, the engine may still be creating containers for it
}

// Config configures a Runner.
type Config struct {
	Log *slog.Logger // nil: discard
	// Helper is the compose helper's executable. Empty: HelperName in the
	// directory of the running executable, else on PATH, looked up at the
	// first Deploy or Remove that needs it.
	Helper string
	// HelperEnv is added to the helper's environment, which is otherwise
	// this process's (DOCKER_HOST and the other variables the docker CLI
	// reads) less EDGE_KEY.
	HelperEnv []string
}

// New returns a Runner for the engine DOCKER_HOST names (with
// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH), the one the agent's snapshots
// read. It contacts neither the engine nor the helper.
func New(c Config) (*Runner, error) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	engine, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("stacks: docker client: %w: check DOCKER_HOST", err)
	}
	return &Runner{log: log, engine: engine, helper: helper{path: c.Helper, env: c.HelperEnv, log: log}, stacks: map[string]*stack{}}, nil
}

// Close closes the connection to the engine.
func (r *Runner) Close() error {
	return r.engine.Close()
}

// Deploy brings project s.Project to what s.Compose describes, like
// `docker compose up -d --remove-orphans`: it loads and validates the compose
// file, pulls the images that are not on the device (with s.Auth), then
// creates, recreates (services whose configuration changed) and starts
// containers and removes those of services no longer in the file. It
// returns once the containers are started; Status says whether they run.
// All of that happens in the compose helper; cancelling ctx stops it
// (SIGTERM, SIGKILL 15 s later), and it dies with this process.
//
// Deploy is idempotent: calling it again with the same Spec, also after an
// interrupted Deploy, converges to one container per service replica (an up
// that finds the engine still busy with an interrupted Deploy's container is
// tried again, up to 3 times). When the Spec is invalid or an image cannot
// be had, the error wraps ErrInvalid or ErrImage and the project's
// containers are left as they were.
func (r *Runner) Deploy(ctx context.Context, s Spec) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("deploy %s: %w", s.Project, err)
	}
	st := r.stackOf(s.Project, true)
	defer r.end(st)
	st.op.Lock()
	defer st.op.Unlock()

	res, err := r.helper.run(ctx, Request{Op: OpUp, Spec: &s}, s.Project)
	r.mu.Lock()
	// Without an answer (the helper was killed) nobody knows how far up
	// got: count it as failed. A failure before up (an invalid file, a
	// pull) touched no container: it leaves unsettled as an earlier up
	// left it.
	switch {
	case err == nil:
		st.unsettled = false
	case res == nil || res.UpFailed:
		st.unsettled = true
	}
	if err == nil {
		st.services = slices.Clone(res.Services)
	}
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("deploy %s: %w", s.Project, err)
	}
	return nil
}

// downRetries is how many times Remove looks again for containers an
// interrupted Deploy left the engine creating, waiting a second longer each
// time.
const downRetries = 3

// Remove takes project down like `docker compose down --remove-orphans`:
// its containers and networks go, named volumes stay. Removing a project
// that has nothing on the engine is not an error, and starts no helper.
// After a Deploy of project whose up failed, Remove checks again for
// containers the engine was still creating, for up to 6 s.
func (r *Runner) Remove(ctx context.Context, project string) error {
	if err := validProject(project); err != nil {
		return fmt.Errorf("remove %s: %w: %w", project, ErrInvalid, err)
	}
	st := r.stackOf(project, false)
	defer r.forget(project, st)
	st.op.Lock()
	defer st.op.Unlock()

	r.mu.Lock()
	unsettled := st.unsettled
	r.mu.Unlock()
	// After a failed up the engine may still be creating containers the
	// client gave up on, which the first down does not see: look again,
	// a second later each time.
	for attempt := 0; ; attempt++ {
		exists, err := r.exists(ctx, project)
		if err != nil {
			return fmt.Errorf("remove %s: %w", project, EngineHint(err))
		}
		// Without anything to remove Compose would only warn "No
		// resource found" on stderr.
		if exists {
			if _, err := r.helper.run(ctx, Request{Op: OpDown, Project: project}, project); err != nil && (!unsettled || attempt == downRetries) {
				return fmt.Errorf("remove %s: down: %w", project, err)
			}
		}
		if !unsettled || attempt == downRetries {
			break
		}
		if !exists && attempt > 0 {
			break
		}
		if err := pause(ctx, time.Duration(attempt+1)*time.Second); err != nil {
			return fmt.Errorf("remove %s: %w", project, err)
		}
	}
	r.mu.Lock()
	st.services, st.unsettled = nil, false
	r.mu.Unlock()
	return nil
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// exists reports whether the engine has a container or network of project.
func (r *Runner) exists(ctx context.Context, project string) (bool, error) {
	f := make(client.Filters).Add("label", ProjectLabel+"="+project)
	cs, err := r.engine.ContainerList(ctx, client.ContainerListOptions{All: true, Limit: 1, Filters: f})
	if err != nil {
		return false, err
	}
	if len(cs.Items) > 0 {
		return true, nil
	}
	ns, err := r.engine.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return false, err
	}
	return len(ns.Items) > 0, nil
}

// stackOf returns the stack of project, counting a Deploy under way if
// deploy is set.
func (r *Runner) stackOf(project string, deploy bool) *stack {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stacks[project]
	if st == nil {
		st = &stack{}
		r.stacks[project] = st
	}
	if deploy {
		st.deploying++
	}
	return st
}

// end counts a Deploy done.
func (r *Runner) end(st *stack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st.deploying--
}

// forget drops what the Runner remembers of a removed project, unless a
// Deploy of it is under way or waiting.
func (r *Runner) forget(project string, st *stack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stacks[project] == st && st.deploying == 0 {
		delete(r.stacks, project)
	}
}

// EngineHint adds what to check when the engine could not be reached.
func EngineHint(err error) error {
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("%w (is the Docker engine running, and DOCKER_HOST right?)", err)
	}
	return err
}
