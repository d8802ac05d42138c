package edgeagent

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/moby/moby/client"

	"outpost/edgeagent/agentapi"
	"outpost/edgeagent/jobs"
	"outpost/edgeagent/stacks"
	"outpost/kube"
	"outpost/protocol"
	"outpost/snapshot"
)

// Run starts the agent and runs until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Logger = log
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := writeFileAtomic(keyPath(cfg.DataDir), []byte(cfg.Key.String()), 0o600); err != nil {
		return fmt.Errorf("keep edge key: %w", err)
	}
	key, err := loadOrCreateIdentity(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	edgeID, err := loadOrCreateEdgeID(cfg.DataDir, cfg.EdgeID)
	if err != nil {
		return fmt.Errorf("edge ID: %w", err)
	}
	dh, err := loadOrCreateDH(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("key agreement key: %w", err)
	}
	st, err := loadState(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	cmds, err := loadJournal(cfg.DataDir, time.Now())
	if err != nil {
		return err
	}
	id, err := newIdentity(cfg, key, dh, edgeID, st)
	if err != nil {
		log.Warn("stored server key unusable; contacting the server signed", "err", err)
	}
	docker, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer docker.Close()

	now := time.Now
	runner, err := stacks.New(stacks.Config{Log: log})
	if err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	defer func() { _ = runner.Close() }()
	w, err := newWork(cfg.DataDir, log, runner, now)
	if err != nil {
		return err
	}
	w.prefix = cfg.StackPrefix
	hostRoot := cfg.HostRoot
	if hostRoot == "" {
		hostRoot = "/"
	}
	jr, err := jobs.New(jobs.Config{Dir: filepath.Join(cfg.DataDir, "jobs"), HostRoot: hostRoot, OnResult: w.onResult, Log: log})
	if err != nil {
		return fmt.Errorf("edge jobs: %w", err)
	}
	defer func() { _ = jr.Close() }()
	w.jobs = jr
	s := &syncer{
		cfg: cfg, log: log, id: id, st: st, now: now,
		cl:   newClient(cfg.Key.ServerURL, cfg.InsecurePoll, cfg.ClientCert, nil),
		col:  snapshot.NewDockerCollector(docker),
		cmds: cmds, exec: NewDockerExecutor(docker), work: w,
	}
	// In a pod, or with KUBECONFIG: the device is a Kubernetes cluster.
	platform, kcfg, how, err := kube.Detect(os.Getenv)
	if err != nil {
		return err
	}
	if platform == kube.PlatformKubernetes {
		col, err := kube.NewCollector(kcfg, now)
		if err != nil {
			return err
		}
		col.Start(ctx)
		roles, err := kube.NewRoles(kcfg, log)
		if err != nil {
			return err
		}
		go roles.Run(ctx) // the role tables' cluster roles, kept as they say
		if s.access, err = kube.NewAccess(kcfg, log); err != nil {
			return err
		}
		go s.access.Run(ctx) // users' service accounts, bound in new namespaces as they come
		ks, err := kube.NewStacks(kcfg, filepath.Join(cfg.DataDir, "kube-stacks"), log)
		if err != nil {
			return err
		}
		w.stacks = kubeStacks{ks} // manifests, not compose
		s.col, s.exec, s.platform = col, notDocker{}, platform
		log.Info("platform: kubernetes", "via", how, "api_server", kcfg.Host)
	}
	// EDGE_ASYNC chooses the mode until the server switches it (state.go).
	standard := !cfg.Async
	if st.Mode != protocol.ModeUnset {
		standard = st.Mode == protocol.ModeStandard
	}
	s.plan = newPlan(now(), rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	log.Info("outpost agent started", "mode", modeName(standard), "server", cfg.Key.ServerURL, "environment", cfg.Key.EnvironmentID, "edge_id", edgeID,
		"key", id.Fingerprint(), "data", cfg.DataDir, "version", Version)
	if standard != !cfg.Async {
		log.Info("running in the mode the server set, not EDGE_ASYNC's", "mode", modeName(standard))
	}
	var api *agentapi.API
	defer func() {
		if s.tun != nil {
			s.tun.wait()
		}
		if api != nil {
			_ = api.Close()
		}
	}()
	// The agent API and the tunnel keeper exist once the device is
	// standard: at start, or when the server switches it.
	s.newTunnel = func() (*tunnelKeeper, error) {
		// In the agent's container the engine's volumes are under the
		// host root; on the host itself, where they are.
		a, err := agentapi.New(agentapi.Config{Version: Version, Log: log, VolumesRoot: filepath.Join(hostRoot, agentapi.DefaultVolumesRoot),
			KubeConfig: kcfg, KubeAccess: s.access})
		if err != nil {
			return nil, fmt.Errorf("agent API: %w", err)
		}
		t, err := newTunnelKeeper(ctx, cfg, key, a)
		if err != nil {
			_ = a.Close()
			return nil, err
		}
		api = a
		return t, nil
	}
	if standard {
		if s.tun, err = s.newTunnel(); err != nil {
			return fmt.Errorf("tunnel: %w", err)
		}
		s.standard = true
	}
	s.shareKey()
	workCtx, stopWork := context.WithCancel(ctx)
	workDone := make(chan struct{})
	go func() { defer close(workDone); w.run(workCtx) }()
	defer func() { stopWork(); <-workDone }()
	return s.run(ctx)
}
