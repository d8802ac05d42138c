package edgeagent

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/moby/moby/client"

	"outpost/scheduler"
	"outpost/snapshot"
)

// Run starts the agent and runs until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
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
	s := &syncer{
		cfg: cfg, log: log, id: id, st: st, now: now,
		cl:   newClient(cfg.Key.ServerURL, cfg.InsecurePoll, cfg.ClientCert, nil),
		col:  snapshot.NewDockerCollector(docker),
		cmds: cmds, exec: NewDockerExecutor(docker),
		plan: scheduler.NewPlan(scheduler.Defaults, now(), rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))),
	}
	log.Info("outpost agent started", "server", cfg.Key.ServerURL, "environment", cfg.Key.EnvironmentID, "edge_id", edgeID,
		"key", id.fingerprint(), "data", cfg.DataDir, "version", Version)
	return s.run(ctx)
}
