package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/flags"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/docker/compose/v5/pkg/compose"
	"github.com/moby/moby/client"
	"github.com/spf13/pflag"

	"outpost/edgeagent/stacks"
)

// maxRequest bounds the request read from standard input: a stack's files
// arrive in one protocol body, at most protocol.MaxDecompressedBody (32
// MiB) inflated.
const maxRequest = 64 << 20

// Main serves one request: it reads a stacks.Request from stdin, runs it,
// writes a stacks.Result to stdout and logs on stderr (JSON lines, every
// level). It returns the exit status: 0 when it answered, also with an
// operation's error; 2 when the request could not be read or the answer
// not written.
func Main(stdin io.Reader, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var req stacks.Request
	if err := json.NewDecoder(io.LimitReader(stdin, maxRequest)).Decode(&req); err != nil {
		log.Error("read the request", "err", err)
		return 2
	}
	res := serve(ctx, log, req)
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		log.Error("write the result", "err", err)
		return 2
	}
	return 0
}

// serve runs one request.
func serve(ctx context.Context, log *slog.Logger, req stacks.Request) stacks.Result {
	switch {
	case req.Op == stacks.OpUp && req.Spec != nil:
	case req.Op == stacks.OpDown && req.Project != "":
	default:
		return stacks.ResultOf(fmt.Errorf("%w: compose helper: request %q without its spec or project", stacks.ErrInvalid, req.Op))
	}
	if req.Op == stacks.OpUp {
		// Before the engine is contacted: a bad Spec or compose file is
		// refused even when there is no engine.
		if err := req.Spec.Validate(); err != nil {
			return stacks.ResultOf(err)
		}
		p, err := load(ctx, *req.Spec)
		if err != nil {
			return stacks.ResultOf(err)
		}
		e, err := newEngine(log)
		if err != nil {
			return stacks.ResultOf(err)
		}
		defer func() { _ = e.close() }()
		return e.deploy(ctx, p, *req.Spec)
	}
	e, err := newEngine(log)
	if err != nil {
		return stacks.ResultOf(err)
	}
	defer func() { _ = e.close() }()
	if err := e.compose.Down(ctx, req.Project, api.DownOptions{RemoveOrphans: true}); err != nil {
		return stacks.ResultOf(stacks.EngineHint(err))
	}
	return stacks.Result{}
}

// engine is Compose over a Docker CLI on the local engine.
type engine struct {
	log     *slog.Logger
	cli     *command.DockerCli
	engine  client.APIClient // the engine client cli uses
	compose api.Compose      // for operations that need no credentials
}

// newEngine returns an engine for the engine the agent's own client uses:
// client.FromEnv (DOCKER_HOST, DOCKER_API_VERSION, DOCKER_TLS_VERIFY,
// DOCKER_CERT_PATH, else the default socket). The Docker CLI's contexts
// (DOCKER_CONTEXT, the current context of ~/.docker/config.json) are not
// followed: the Runner's Status and Remove look at the engine through
// client.FromEnv, and must see what Compose deployed. It does not contact
// the engine.
func newEngine(log *slog.Logger) (*engine, error) {
	opts := flags.NewClientOptions()
	fs := pflag.NewFlagSet("outpost", pflag.ContinueOnError)
	opts.InstallFlags(fs) // defaults from the environment, as the docker CLI has them
	opts.SetDefaultOptions(fs)
	// The default context is DOCKER_HOST (or the default socket) with
	// the environment's TLS settings: what client.FromEnv reads.
	opts.Context = command.DefaultContextName

	// Build the engine client here, as the agent builds its own: DockerCli
	// would build it lazily from the context, and call os.Exit when that
	// fails.
	ec, err := client.New(client.FromEnv, client.WithUserAgent(command.UserAgent()))
	if err != nil {
		return nil, fmt.Errorf("docker client: %w: check DOCKER_HOST", err)
	}
	cli, err := command.NewDockerCli(
		command.WithAPIClient(ec),
		command.WithInputStream(io.NopCloser(strings.NewReader(""))),
		command.WithOutputStream(io.Discard),
		command.WithErrorStream(&logWriter{log: log}),
	)
	if err == nil {
		err = cli.Initialize(opts)
	}
	if err != nil {
		_ = ec.Close()
		return nil, fmt.Errorf("docker cli: %w", err)
	}
	e := &engine{log: log, cli: cli, engine: ec}
	if e.compose, err = e.newCompose(cli); err != nil {
		_ = ec.Close()
		return nil, fmt.Errorf("compose: %w", err)
	}
	return e, nil
}

func (e *engine) close() error { return e.engine.Close() }

// newCompose returns a Compose service over cli that logs its progress and
// answers "no" to every question (the only one `up` asks is whether to
// delete a volume's data).
func (e *engine) newCompose(cli command.Cli) (api.Compose, error) {
	return compose.NewComposeService(cli,
		compose.WithEventProcessor(events{log: e.log}),
		compose.WithPrompt(func(msg string, _ bool) (bool, error) {
			e.log.Warn("compose asked a question; answering no", "question", msg)
			return false, nil
		}),
	)
}

// deploy is stacks.Runner.Deploy's work on the loaded project p: pull what
// is missing, then up.
func (e *engine) deploy(ctx context.Context, p *types.Project, s stacks.Spec) stacks.Result {
	// A Compose service over a CLI whose configuration holds this Spec's
	// credentials in memory: pulls read them from there.
	svc, err := e.newCompose(&memoryConfigCli{Cli: e.cli, config: credentials(s, e.cli.ConfigFile())})
	if err != nil {
		return stacks.ResultOf(fmt.Errorf("compose: %w", err))
	}
	if err := e.ensureImages(ctx, svc, p); err != nil {
		return stacks.ResultOf(err)
	}
	if err := e.up(ctx, svc, p); err != nil {
		res := stacks.ResultOf(fmt.Errorf("up: %w", stacks.EngineHint(err)))
		res.UpFailed = true
		return res
	}
	return stacks.Result{Services: p.ServiceNames()}
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
func (e *engine) up(ctx context.Context, svc api.Compose, p *types.Project) error {
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
		e.log.Info("deploy: the engine changed during up, trying again", "project", p.Name, "attempt", attempt, "err", err)
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
func (e *engine) ensureImages(ctx context.Context, svc api.Compose, p *types.Project) error {
	pulls := map[string][]string{} // image -> services
	var errs []error
	for _, name := range p.ServiceNames() {
		sc := p.Services[name]
		if _, ok := pulls[sc.Image]; ok {
			pulls[sc.Image] = append(pulls[sc.Image], name)
			continue
		}
		_, err := e.engine.ImageInspect(ctx, sc.Image)
		if err == nil {
			continue
		}
		if !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("inspect image %s: %w", sc.Image, stacks.EngineHint(err))
		}
		policy, _, err := sc.GetPullPolicy()
		if err != nil {
			return fmt.Errorf("%w: service %s: %w", stacks.ErrInvalid, name, err)
		}
		if policy == types.PullPolicyNever || policy == types.PullPolicyBuild {
			errs = append(errs, fmt.Errorf("%w: image %s (service %s) is not on the device and pull_policy is %q: load the image onto the device or allow pulls", stacks.ErrImage, sc.Image, name, policy))
			continue
		}
		pulls[sc.Image] = []string{name}
	}

	// One Pull per image, in parallel, so each error names its image.
	var wg sync.WaitGroup
	var mu sync.Mutex // guards errs while pulls run
	for _, image := range slices.Sorted(maps.Keys(pulls)) {
		services := pulls[image]
		one := *p
		one.Services = types.Services{services[0]: p.Services[services[0]]}
		wg.Go(func() {
			err := svc.Pull(ctx, &one, api.PullOptions{Quiet: true})
			if err == nil {
				return
			}
			err = fmt.Errorf("%w: pull %s (service %s): %w: check the image name, the registry credentials and that the device can reach the registry, or load the image onto the device",
				stacks.ErrImage, image, strings.Join(services, ", "), stacks.EngineHint(once(err)))
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
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
