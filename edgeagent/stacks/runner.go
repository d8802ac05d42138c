package stacks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/flags"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/docker/compose/v5/pkg/compose"
	"github.com/moby/moby/client"
	"github.com/spf13/pflag"
)

// Sentinel errors; Deploy, Remove and Status wrap them.
var (
	// ErrInvalid: the Spec or its compose file is wrong. Retrying the same
	// Spec cannot succeed; nothing was changed on the engine.
	ErrInvalid = errors.New("invalid stack")
	// ErrImage: an image is not on the device and could not be pulled.
	// Nothing was changed on the engine; the previous containers still run.
	ErrImage = errors.New("image not available")
)

// Runner deploys edge stacks with Compose on the local engine. Its methods
// are safe for concurrent use; Deploy and Remove of one project are
// serialized, different projects proceed in parallel.
type Runner struct {
	log     *slog.Logger
	cli     *command.DockerCli
	engine  client.APIClient // the engine client cli uses
	compose api.Compose      // for operations that need no credentials

	mu     sync.Mutex // guards stacks and the fields of its values marked so; never held across engine calls
	stacks map[string]*stack
}

// stack is what the Runner remembers of one project.
type stack struct {
	// op serializes Deploy and Remove of the project. It is held across
	// engine calls on purpose: ordering them is what it is for. Status does
	// not take it.
	op sync.Mutex

	services  []string // guarded by Runner.mu: services of the last successful Deploy
	deploying int      // guarded by Runner.mu: Deploy calls under way or waiting for op
	unsettled bool     // guarded by Runner.mu: the last up failed, the engine may still be creating containers for it
}

// newMu serializes New: docker/cli keeps its configuration directory in a
// package variable that flag setup reads and DockerCli.Initialize writes.
var newMu sync.Mutex

// New returns a Runner for the engine the environment names (DOCKER_HOST,
// DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_CONTEXT, as the docker CLI
// reads them). It does not contact the engine. log may be nil.
func New(log *slog.Logger) (*Runner, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	newMu.Lock()
	defer newMu.Unlock()
	opts := flags.NewClientOptions()
	fs := pflag.NewFlagSet("outpost", pflag.ContinueOnError)
	opts.InstallFlags(fs) // defaults from the environment, as the docker CLI has them
	opts.SetDefaultOptions(fs)

	// Build the engine client here: DockerCli builds it lazily and calls
	// os.Exit when that fails, which an agent cannot have.
	engine, err := command.NewAPIClientFromFlags(opts, config.LoadDefaultConfigFile(io.Discard))
	if err != nil {
		return nil, fmt.Errorf("stacks: docker client: %w: check DOCKER_HOST and DOCKER_CONTEXT", err)
	}
	stderr := &logWriter{log: log}
	cli, err := command.NewDockerCli(
		command.WithAPIClient(engine),
		command.WithInputStream(io.NopCloser(strings.NewReader(""))),
		command.WithOutputStream(io.Discard),
		command.WithErrorStream(stderr),
	)
	if err == nil {
		err = cli.Initialize(opts)
	}
	if err != nil {
		_ = engine.Close()
		return nil, fmt.Errorf("stacks: docker cli: %w", err)
	}
	r := &Runner{log: log, cli: cli, engine: engine, stacks: map[string]*stack{}}
	r.compose, err = r.newCompose(cli)
	if err != nil {
		_ = engine.Close()
		return nil, fmt.Errorf("stacks: compose: %w", err)
	}
	return r, nil
}

// newCompose returns a Compose service over cli that logs its progress and
// answers "no" to every question (the only one `up` asks is whether to
// delete a volume's data).
func (r *Runner) newCompose(cli command.Cli) (api.Compose, error) {
	return compose.NewComposeService(cli,
		compose.WithEventProcessor(events{log: r.log}),
		compose.WithPrompt(func(msg string, _ bool) (bool, error) {
			r.log.Warn("compose asked a question; answering no", "question", msg)
			return false, nil
		}),
	)
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
	p, err := s.load(ctx)
	if err != nil {
		return fmt.Errorf("deploy %s: %w", s.Project, err)
	}

	st := r.stackOf(s.Project, true)
	defer r.end(st)
	st.op.Lock()
	defer st.op.Unlock()

	// A Compose service per Deploy, over a CLI whose configuration holds
	// this Spec's credentials in memory: pulls read them from there.
	svc, err := r.newCompose(&memoryConfigCli{Cli: r.cli, config: s.credentials(r.cli.ConfigFile())})
	if err != nil {
		return fmt.Errorf("deploy %s: compose: %w", s.Project, err)
	}
	if err := r.ensureImages(ctx, svc, p); err != nil {
		return fmt.Errorf("deploy %s: %w", s.Project, err)
	}
	err = r.up(ctx, svc, p)
	r.mu.Lock()
	st.unsettled = err != nil
	if err == nil {
		st.services = p.ServiceNames()
	}
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("deploy %s: up: %w", s.Project, engineHint(err))
	}
	return nil
}

// upRetries is how many times up is tried again after the engine changed
// under it, waiting a second longer each time.
const upRetries = 3

// up runs Compose's up. A Deploy interrupted while the engine was creating a
// container leaves the engine busy with that container after the client gave
// up: it finishes the create, then removes the container again. A Deploy
// right after can miss the container and collide with its name (conflict),
// or see it and find it gone (not found). Compose observes the engine afresh
// on every up, so trying again converges.
func (r *Runner) up(ctx context.Context, svc api.Compose, p *types.Project) error {
	for attempt := 1; ; attempt++ {
		err := svc.Up(ctx, p, api.UpOptions{
			Create: api.CreateOptions{
				RemoveOrphans:        true,
				Recreate:             api.RecreateDiverged,
				RecreateDependencies: api.RecreateDiverged,
				Inherit:              true,
				QuietPull:            true,
			},
			Start: api.StartOptions{Project: p},
		})
		if err == nil || !(cerrdefs.IsConflict(err) || cerrdefs.IsNotFound(err)) || attempt > upRetries {
			return err
		}
		r.log.Info("deploy: the engine changed during up, trying again", "project", p.Name, "attempt", attempt, "err", err)
		if perr := pause(ctx, time.Duration(attempt)*time.Second); perr != nil {
			return errors.Join(err, perr)
		}
	}
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

// ensureImages pulls the services' images that are not on the device, all
// of them before anything else is touched, so a failed pull leaves the
// running containers alone. Images already present are never pulled here
// (Compose's default pull_policy, "missing"); a service that asks for
// pull_policy: always or a refresh interval gets that from Compose's up.
func (r *Runner) ensureImages(ctx context.Context, svc api.Compose, p *types.Project) error {
	pulls := map[string][]string{} // image -> services
	var errs []error
	for _, name := range p.ServiceNames() {
		sc := p.Services[name]
		if _, ok := pulls[sc.Image]; ok {
			pulls[sc.Image] = append(pulls[sc.Image], name)
			continue
		}
		_, err := r.engine.ImageInspect(ctx, sc.Image)
		if err == nil {
			continue
		}
		if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("inspect image %s: %w", sc.Image, engineHint(err))
		}
		policy, _, err := sc.GetPullPolicy()
		if err != nil {
			return fmt.Errorf("%w: service %s: %w", ErrInvalid, name, err)
		}
		if policy == types.PullPolicyNever || policy == types.PullPolicyBuild {
			errs = append(errs, fmt.Errorf("%w: image %s (service %s) is not on the device and pull_policy is %q: load the image onto the device or allow pulls", ErrImage, sc.Image, name, policy))
			continue
		}
		pulls[sc.Image] = []string{name}
	}

	// One Pull per image, in parallel, so each error names its image.
	var wg sync.WaitGroup
	var mu sync.Mutex // guards errs while pulls run
	for _, image := range sortedKeys(pulls) {
		services := pulls[image]
		one := *p
		one.Services = types.Services{services[0]: p.Services[services[0]]}
		wg.Go(func() {
			err := svc.Pull(ctx, &one, api.PullOptions{Quiet: true})
			if err == nil {
				return
			}
			err = fmt.Errorf("%w: pull %s (service %s): %w: check the image name, the registry credentials and that the device can reach the registry, or load the image onto the device",
				ErrImage, image, strings.Join(services, ", "), engineHint(once(err)))
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Remove takes project down like `docker compose down --remove-orphans`:
// its containers and networks go, named volumes stay. Removing a project
// that has nothing on the engine is not an error. After a Deploy of project
// whose up failed, Remove checks again for containers the engine was still
// creating, for up to 6 s.
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
			return fmt.Errorf("remove %s: %w", project, engineHint(err))
		}
		// Without anything to remove Compose would only warn "No
		// resource found" on stderr.
		if exists {
			if err := r.compose.Down(ctx, project, api.DownOptions{RemoveOrphans: true}); err != nil && (!unsettled || attempt == upRetries) {
				return fmt.Errorf("remove %s: down: %w", project, engineHint(err))
			}
		}
		if !unsettled || attempt == upRetries {
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

// exists reports whether the engine has a container or network of project.
func (r *Runner) exists(ctx context.Context, project string) (bool, error) {
	f := make(client.Filters).Add("label", api.ProjectLabel+"="+project)
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

// once drops repeated messages from a joined error: Compose's Pull returns
// the same failure both as the pull's error and as the service's.
func once(err error) error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	var unique []error
	seen := map[string]bool{}
	for _, e := range joined.Unwrap() {
		if e != nil && !seen[e.Error()] {
			seen[e.Error()] = true
			unique = append(unique, e)
		}
	}
	if len(unique) == 1 {
		return unique[0]
	}
	return errors.Join(unique...)
}

// engineHint adds what to check when the engine could not be reached.
func engineHint(err error) error {
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("%w (is the Docker engine running, and DOCKER_HOST right?)", err)
	}
	return err
}

// memoryConfigCli is a Docker CLI whose configuration (credentials) is the
// given in-memory one instead of ~/.docker/config.json.
type memoryConfigCli struct {
	command.Cli
	config *configfile.ConfigFile
}

// ConfigFile returns the in-memory configuration.
func (c *memoryConfigCli) ConfigFile() *configfile.ConfigFile { return c.config }

// events logs Compose's progress events at debug level, warnings and errors
// at warn level; pull progress of single layers is left out.
type events struct{ log *slog.Logger }

func (e events) Start(ctx context.Context, operation string) {
	e.log.Debug("compose start", "op", operation)
}

func (e events) On(rs ...api.Resource) {
	for _, res := range rs {
		switch {
		case res.Status == api.Warning || res.Status == api.Error:
			e.log.Warn("compose", "resource", res.ID, "status", res.StatusText(), "text", res.Text, "details", res.Details)
		case res.ParentID == "" && res.Status == api.Done:
			e.log.Debug("compose", "resource", res.ID, "text", res.Text, "details", res.Details)
		}
	}
}

// Done's second argument is true when the operation failed, whatever
// Compose's interface names it: its Run passes err != nil.
func (e events) Done(operation string, failed bool) {
	e.log.Debug("compose done", "op", operation, "failed", failed)
}

// logWriter logs each line written to it; it stands for the CLI's stderr.
type logWriter struct {
	log *slog.Logger
	mu  sync.Mutex // guards buf
	buf []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(w.buf[:i])); line != "" {
			w.log.Info("compose", "stderr", line)
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}
