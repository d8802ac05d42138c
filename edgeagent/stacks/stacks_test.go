//go:build integration

package stacks_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/cli/cli/config"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"outpost/edgeagent/stacks"
	"outpost/internal/testenv"
)

// wait bounds every wait for containers to reach a state.
const wait = 60 * time.Second

// env is one test's engine, runner and project.
type env struct {
	t       *testing.T
	engine  *client.Client
	r       *stacks.Runner
	project string
	dir     string
}

// setup skips without an engine, makes the busybox image and a Runner, and
// picks a project name of the test's own; the project is removed when the
// test ends.
func setup(t *testing.T) *env {
	t.Helper()
	engine := testenv.RequireDocker(t)
	testenv.BusyboxImage(t, engine)
	r := newRunner(t, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	e := &env{t: t, engine: engine, r: r, project: projectName(t), dir: t.TempDir()}
	t.Cleanup(func() {
		if err := r.Remove(context.Background(), e.project); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return e
}

// projectName is "outpost-test-<test>-<random>", valid for Compose.
func projectName(t *testing.T) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-")
	return "outpost-test-" + strings.Trim(name, "-") + "-" + hex.EncodeToString(b)
}

// compose fills %[1]s in a compose file template with the busybox image.
func compose(tmpl string) []byte { return fmt.Appendf(nil, tmpl, testenv.BusyboxRef) }

func (e *env) spec(yaml []byte) stacks.Spec {
	return stacks.Spec{Project: e.project, Compose: yaml, Dir: e.dir}
}

func (e *env) deploy(yaml []byte) {
	e.t.Helper()
	if err := e.r.Deploy(context.Background(), e.spec(yaml)); err != nil {
		e.t.Fatalf("Deploy: %v", err)
	}
}

// waitPhase polls Status until it reports phase and returns that State.
func (e *env) waitPhase(phase stacks.Phase) stacks.State {
	e.t.Helper()
	var st stacks.State
	testenv.Eventually(e.t, wait, func() (bool, string) {
		var err error
		st, err = e.r.Status(context.Background(), e.project)
		if err != nil {
			return false, err.Error()
		}
		return st.Phase == phase, fmt.Sprintf("want %s, status %+v", phase, st)
	})
	return st
}

// containers returns the project's containers by service, as the engine
// lists them.
func (e *env) containers() map[string][]container.Summary {
	e.t.Helper()
	res, err := e.engine.ContainerList(context.Background(), client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", "com.docker.compose.project="+e.project),
	})
	if err != nil {
		e.t.Fatalf("list containers: %v", err)
	}
	m := map[string][]container.Summary{}
	for _, c := range res.Items {
		svc := c.Labels["com.docker.compose.service"]
		m[svc] = append(m[svc], c)
	}
	return m
}

// ids returns each service's one container ID, failing unless every
// service has exactly one container and it runs.
func (e *env) ids() map[string]string {
	e.t.Helper()
	ids := map[string]string{}
	for svc, cs := range e.containers() {
		if len(cs) != 1 {
			e.t.Fatalf("service %s has %d containers, want 1", svc, len(cs))
		}
		if cs[0].State != container.StateRunning {
			e.t.Fatalf("service %s: container %s is %s, want running", svc, cs[0].ID[:12], cs[0].State)
		}
		ids[svc] = cs[0].ID
	}
	return ids
}

func (e *env) inspect(id string) container.InspectResponse {
	e.t.Helper()
	res, err := e.engine.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		e.t.Fatalf("inspect %s: %v", id, err)
	}
	return res.Container
}

// A service that runs until stopped; init: true makes `sleep` stop at once
// on SIGTERM, so removals do not wait out the 10 s grace period.
const oneService = `
services:
  web:
    image: %[1]s
    init: true
    command: ["sleep", "3600"]
`

const twoServices = `
services:
  web:
    image: %[1]s
    init: true
    command: ["sleep", "3600"]
  worker:
    image: %[1]s
    init: true
    command: ["sleep", "3601"]
`

// TestDeployFailedUpdateKeepsRunning: an update whose image cannot be
// pulled, and one whose compose file is invalid, fail with a clear error and
// leave v1's container running untouched.
func TestDeployFailedUpdateKeepsRunning(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.deploy(compose(oneService))
	e.waitPhase(stacks.Running)
	before := e.ids()

	const missing = "outpost-test/missing:v2"
	v2 := strings.Replace(string(compose(oneService)), testenv.BusyboxRef, missing, 1)
	err := e.r.Deploy(context.Background(), e.spec([]byte(v2)))
	t.Logf("missing image: %v", err)
	if !errors.Is(err, stacks.ErrImage) {
		t.Fatalf("Deploy(v2) = %v, want ErrImage", err)
	}
	for _, want := range []string{"deploy " + e.project + ": ", missing, "service web", "load the image onto the device"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Deploy(v2) = %q, want it to contain %q", err, want)
		}
	}
	if after := e.ids(); after["web"] != before["web"] {
		t.Errorf("web's container changed from %.12s to %.12s after a failed update", before["web"], after["web"])
	}

	for name, bad := range map[string]string{
		"syntax": "services:\n  web: [\n",
		"schema": "services:\n  web:\n    image: " + testenv.BusyboxRef + "\n    port: 80\n",
	} {
		err := e.r.Deploy(context.Background(), e.spec([]byte(bad)))
		t.Logf("invalid compose (%s): %v", name, err)
		if !errors.Is(err, stacks.ErrInvalid) || !strings.HasPrefix(err.Error(), "deploy "+e.project+": ") || !strings.Contains(err.Error(), "compose file") {
			t.Errorf("Deploy(%s) = %v, want a \"deploy %s: ... compose file\" error wrapping ErrInvalid", name, err, e.project)
		}
	}
	if after := e.ids(); after["web"] != before["web"] {
		t.Errorf("web's container changed after invalid compose files")
	}
	if st := e.waitPhase(stacks.Running); st.Services != 1 || st.Ready != 1 {
		t.Errorf("Status = %+v, want 1 of 1 ready", st)
	}
}

// TestDeployIdempotent: the same Spec twice keeps the same containers, one
// per service.
func TestDeployIdempotent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.deploy(compose(twoServices))
	first := e.ids()
	e.deploy(compose(twoServices))
	second := e.ids()
	if len(first) != 2 || !maps.Equal(first, second) {
		t.Errorf("containers after the first Deploy %v, after the second %v: want the same two", first, second)
	}
	if st := e.waitPhase(stacks.Running); st.Services != 2 || st.Ready != 2 {
		t.Errorf("Status = %+v, want 2 of 2 ready", st)
	}
}

const threeServices = twoServices + `
  cron:
    image: %[1]s
    init: true
    command: ["sleep", "3602"]
`

// interruptedDeploy starts a Deploy and cancels it as soon as the project's
// first container exists, as when the agent is killed mid-deploy.
func (e *env) interruptedDeploy(yaml []byte) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.r.Deploy(ctx, e.spec(yaml)) }()
	testenv.Eventually(e.t, wait, func() (bool, string) {
		return len(e.containers()) > 0, "no container yet"
	})
	cancel()
	e.t.Logf("interrupted Deploy: %v", <-done)
}

// TestDeployAfterInterruptedDeploy: after an interrupted Deploy the same
// Deploy again ends with one running container per service.
func TestDeployAfterInterruptedDeploy(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.interruptedDeploy(compose(threeServices))
	e.deploy(compose(threeServices))
	if ids := e.ids(); len(ids) != 3 {
		t.Errorf("services with a container: %v, want web, worker and cron", ids)
	}
	e.waitPhase(stacks.Running)
}

// TestRemoveAfterInterruptedDeploy: Remove right after an interrupted
// Deploy leaves no container behind, also none the engine was still
// creating for the interrupted Deploy.
func TestRemoveAfterInterruptedDeploy(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.interruptedDeploy(compose(threeServices))
	if err := e.r.Remove(context.Background(), e.project); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if cs := e.containers(); len(cs) != 0 {
		t.Errorf("containers after Remove: %v", cs)
	}
}

// TestDeployUpdate: changing one service's command and environment
// recreates that service's container only, and the stack runs again.
func TestDeployUpdate(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.deploy(compose(twoServices))
	before := e.ids()

	v2 := strings.Replace(twoServices, `["sleep", "3600"]`, `["sleep", "3700"]
    environment:
      VERSION: "2"`, 1)
	e.deploy(compose(v2))
	after := e.ids()
	if after["web"] == before["web"] {
		t.Errorf("web's container %.12s was kept, want it recreated", after["web"])
	}
	if after["worker"] != before["worker"] {
		t.Errorf("worker's container changed from %.12s to %.12s, want it kept", before["worker"], after["worker"])
	}
	web := e.inspect(after["web"])
	if !slices.Equal(web.Config.Cmd, []string{"sleep", "3700"}) || !slices.Contains(web.Config.Env, "VERSION=2") {
		t.Errorf("web runs %v with %v, want sleep 3700 with VERSION=2", web.Config.Cmd, web.Config.Env)
	}
	if st := e.waitPhase(stacks.Running); st.Ready != 2 {
		t.Errorf("Status = %+v, want 2 ready", st)
	}
}

// TestStatusHealth: a service with a health check counts as ready only once
// healthy. "ok" passes its check at once; "gated" checks for a file in a
// bind-mounted directory (relative to Spec.Dir) that the test creates later,
// so the stack is Deploying until then.
func TestStatusHealth(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if err := os.Mkdir(filepath.Join(e.dir, "gate"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.deploy(compose(`
services:
  ok:
    image: %[1]s
    init: true
    command: ["sleep", "3600"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
  gated:
    image: %[1]s
    init: true
    command: ["sleep", "3600"]
    volumes: ["./gate:/gate:ro"]
    healthcheck:
      test: ["CMD", "test", "-f", "/gate/ready"]
      interval: 1s
      start_period: 5m
`))
	var st stacks.State
	testenv.Eventually(t, wait, func() (bool, string) {
		var err error
		st, err = e.r.Status(context.Background(), e.project)
		if err != nil {
			return false, err.Error()
		}
		if st.Phase == stacks.Running {
			t.Fatalf("Status = %+v before gated can be healthy", st)
		}
		return st.Phase == stacks.Deploying && st.Ready == 1, fmt.Sprintf("want deploying with ok ready, status %+v", st)
	})
	t.Logf("before the gate opens: %+v", st)
	if !strings.Contains(st.Message, "service gated: health check starting") {
		t.Errorf("Message = %q, want it to say gated's health check is starting", st.Message)
	}
	ok := e.inspect(e.ids()["ok"])
	if ok.State.Health == nil || ok.State.Health.Status != container.Healthy {
		t.Errorf("ok counted ready with health %+v, want healthy", ok.State.Health)
	}

	if err := os.WriteFile(filepath.Join(e.dir, "gate", "ready"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st = e.waitPhase(stacks.Running)
	if st.Services != 2 || st.Ready != 2 || st.Message != "" {
		t.Errorf("Status = %+v, want 2 of 2 ready, no message", st)
	}
	for svc, id := range e.ids() {
		if h := e.inspect(id).State.Health; h == nil || h.Status != container.Healthy {
			t.Errorf("%s: health %+v while Running, want healthy", svc, h)
		}
	}
}

// TestStatusUnhealthy: a failing health check makes the stack Failed, with
// a message naming the service and saying unhealthy.
func TestStatusUnhealthy(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.deploy(compose(`
services:
  sick:
    image: %[1]s
    init: true
    command: ["sleep", "3600"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      retries: 1
`))
	st := e.waitPhase(stacks.Failed)
	t.Logf("%+v", st)
	if !strings.Contains(st.Message, "service sick: unhealthy") || st.Ready != 0 || st.Services != 1 {
		t.Errorf("Status = %+v, want 0 of 1 ready, message \"service sick: unhealthy...\"", st)
	}
}

// TestStatusExits: a one-shot service that exits 0 under restart "no"
// counts as ready; one that exits non-zero fails the stack with its code.
func TestStatusExits(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.deploy(compose(`
services:
  job:
    image: %[1]s
    command: ["true"]
    restart: "no"
  web:
    image: %[1]s
    init: true
    command: ["sleep", "3600"]
`))
	testenv.Eventually(t, wait, func() (bool, string) {
		cs := e.containers()["job"]
		return len(cs) == 1 && cs[0].State == container.StateExited, "job has not exited yet"
	})
	if st := e.waitPhase(stacks.Running); st.Services != 2 || st.Ready != 2 {
		t.Errorf("Status = %+v, want 2 of 2 ready", st)
	}

	e.deploy(compose(`
services:
  job:
    image: %[1]s
    command: ["sh", "-c", "exit 3"]
    restart: "no"
  web:
    image: %[1]s
    init: true
    command: ["sleep", "3600"]
`))
	st := e.waitPhase(stacks.Failed)
	t.Logf("%+v", st)
	if st.Message != "service job: exited with code 3" || st.Ready != 1 {
		t.Errorf("Status = %+v, want 1 ready and message \"service job: exited with code 3\"", st)
	}
}

// TestRemove: containers and the network go, the named volume stays,
// Status says Missing; removing again, or an unknown project, is no error.
func TestRemove(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.deploy(compose(`
services:
  web:
    image: %[1]s
    init: true
    command: ["sleep", "3600"]
    volumes: ["data:/data"]
volumes:
  data:
`))
	volume := e.project + "_data"
	t.Cleanup(func() { _, _ = e.engine.VolumeRemove(context.Background(), volume, client.VolumeRemoveOptions{}) })
	e.waitPhase(stacks.Running)

	ctx := context.Background()
	if err := e.r.Remove(ctx, e.project); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if cs := e.containers(); len(cs) != 0 {
		t.Errorf("containers after Remove: %v", cs)
	}
	nets, err := e.engine.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("label", "com.docker.compose.project="+e.project)})
	if err != nil || len(nets.Items) != 0 {
		t.Errorf("networks after Remove: %v, %v; want none", nets.Items, err)
	}
	if _, err := e.engine.VolumeInspect(ctx, volume, client.VolumeInspectOptions{}); err != nil {
		t.Errorf("named volume %s after Remove: %v, want it kept", volume, err)
	}
	if st, err := e.r.Status(ctx, e.project); err != nil || st.Phase != stacks.Missing {
		t.Errorf("Status after Remove = %+v, %v; want missing", st, err)
	}
	if err := e.r.Remove(ctx, e.project); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if err := e.r.Remove(ctx, "outpost-test-never-deployed"); err != nil {
		t.Errorf("Remove of an unknown project: %v", err)
	}
	if st, err := e.r.Status(ctx, "outpost-test-never-deployed"); err != nil || st != (stacks.State{Phase: stacks.Missing}) {
		t.Errorf("Status of an unknown project = %+v, %v; want missing", st, err)
	}
}

// TestDeployEnv: ${GREETING} comes from Spec.Env, the agent's own
// environment is not visible to the compose file (${HOME}), and Deploy
// neither sets process environment variables nor changes Spec.Env.
func TestDeployEnv(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if _, ok := os.LookupEnv("GREETING"); ok {
		t.Skip("GREETING is set in the test's environment")
	}
	if os.Getenv("HOME") == "" {
		t.Skip("HOME is not set in the test's environment")
	}
	s := e.spec(compose(`
services:
  web:
    image: %[1]s
    init: true
    command: ["sleep", "3600"]
    environment:
      G: "${GREETING}"
      HOME_SEEN: "${HOME:-unset}"
`))
	s.Env = map[string]string{"GREETING": "hello from spec"}
	if err := e.r.Deploy(context.Background(), s); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	env := e.inspect(e.ids()["web"]).Config.Env
	for _, want := range []string{"G=hello from spec", "HOME_SEEN=unset"} {
		if !slices.Contains(env, want) {
			t.Errorf("container environment %v, want %s", env, want)
		}
	}
	if v, ok := os.LookupEnv("GREETING"); ok {
		t.Errorf("GREETING=%q leaked into the process environment", v)
	}
	if len(s.Env) != 1 {
		t.Errorf("Spec.Env changed to %v", s.Env)
	}
}

// TestDeployPullAuth: a missing image is pulled with Spec.Auth. A fake
// registry on 127.0.0.1 (an insecure registry to the engine by default)
// asks for basic auth, records what the engine sends and answers "manifest
// unknown"; the credentials must arrive, and the Docker CLI's configuration
// directory must not change.
func TestDeployPullAuth(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var mu sync.Mutex
	var got []string // user:password pairs the engine sent
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="outpost-test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = append(got, user+":"+pass)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`))
	}))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	before := snapshot(t, config.Dir())

	image := host + "/outpost/app:v1"
	s := e.spec([]byte("services:\n  app:\n    image: " + image + "\n"))
	s.Auth = map[string]stacks.Auth{host: {Username: "edge", Password: "s3cret"}}
	err := e.r.Deploy(context.Background(), s)
	t.Logf("%v", err)
	if !errors.Is(err, stacks.ErrImage) || !strings.Contains(err.Error(), image) {
		t.Errorf("Deploy = %v, want ErrImage naming %s", err, image)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(got, "edge:s3cret") {
		t.Errorf("registry got credentials %q, want edge:s3cret", got)
	}
	if after := snapshot(t, config.Dir()); after != before {
		t.Errorf("Docker CLI config dir %s changed:\nbefore %s\nafter  %s", config.Dir(), before, after)
	}
	if cs := e.containers(); len(cs) != 0 {
		t.Errorf("containers after a failed pull: %v", cs)
	}
}

// snapshot lists dir's files with size and modification time ("" if dir
// does not exist).
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s\n", p, info.Size(), info.ModTime())
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return b.String()
}

// TestFailedPullLogNoSecret: the real helper (this test binary) fails a
// pull with credentials; neither the relayed log nor the error holds the
// password.
func TestFailedPullLogNoSecret(t *testing.T) {
	t.Parallel()
	testenv.RequireDocker(t)
	var out testenv.Buffer
	r := newRunner(t, slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	spec := stacks.Spec{Project: "outpost-test-secret", Compose: []byte("services: {web: {image: 127.0.0.1:1/test/nope:1}}"), Dir: t.TempDir(),
		Auth: map[string]stacks.Auth{"127.0.0.1:1": {Username: "test", Password: registrySecret}}}
	err := r.Deploy(context.Background(), spec)
	if err == nil {
		t.Fatal("Deploy of an image on no registry succeeded")
	}
	t.Logf("err: %v", err)
	t.Logf("log:\n%s", out.String())
	if strings.Contains(err.Error(), registrySecret) || strings.Contains(out.String(), registrySecret) {
		t.Errorf("the registry password is in the error or the relayed log")
	}
}

// TestHelperAndRunnerSameEngine: the helper deploys on the engine the
// Runner's Status and Remove look at, also when ~/.docker/config.json names
// a current context (`docker context use`) elsewhere.
func TestHelperAndRunnerSameEngine(t *testing.T) {
	e := setup(t)
	cfg := t.TempDir()
	// A current context whose endpoint is not the engine the agent reads.
	const name = "test-elsewhere"
	sum := sha256.Sum256([]byte(name))
	meta := filepath.Join(cfg, "contexts", "meta", hex.EncodeToString(sum[:]))
	if err := os.MkdirAll(meta, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(meta, "meta.json"), []byte(`{"Name":"`+name+`","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///nonexistent/test-elsewhere.sock","SkipTLSVerify":false}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"currentContext":"`+name+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", cfg)

	if err := e.r.Deploy(context.Background(), e.spec(compose("services: {web: {image: %[1]s, command: sleep 3600}}"))); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	if st, err := e.r.Status(context.Background(), e.project); err != nil || st.Phase == stacks.Missing {
		t.Errorf("after a Deploy the Runner's Status sees %v (err %v): the helper deployed on another engine", st.Phase, err)
	}
}
