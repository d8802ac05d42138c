//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"outpost/internal/testenv"
)

type containerView struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
}

type snapshotView struct {
	Seq     uint64          `json:"seq"`
	Kind    string          `json:"kind"`
	Section []containerView `json:"section"`
}

type historyView struct {
	Seq   uint64 `json:"seq"`
	Base  uint64 `json:"base"`
	Kind  string `json:"kind"`
	Bytes int    `json:"bytes"`
	Delta *struct {
		Containers *struct {
			Put   []containerView `json:"put"`
			Patch []struct {
				Key string `json:"key"`
			} `json:"patch"`
		} `json:"containers"`
	} `json:"delta"`
}

// TestAsyncSyncEndToEnd: a pre-staged async environment, an agent process on
// the real engine, a container started and stopped; the snapshot API follows,
// and the stop arrives as a delta, not a new full snapshot.
func TestAsyncSyncEndToEnd(t *testing.T) {
	cli := testenv.RequireDocker(t)
	ctx := context.Background()

	srv := startServer(t)
	env := srv.createEnvironment(t, "e2e-device", 1)
	agent := startAgent(t, env.EdgeKey, t.TempDir())

	// The agent binds its identity and checks in.
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var e environment
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e, http.StatusOK)
		return e.Status == "online" && e.EdgeID != "" && e.LastCheckIn > 0, fmt.Sprintf("environment %+v", e)
	})

	createdID, name := startSleeper(t, cli, "outpost-e2e")

	find := func() (containerView, snapshotView, bool) {
		var sv snapshotView
		status, raw := srv.call(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot?section=containers", env.ID), nil)
		if status != http.StatusOK || json.Unmarshal(raw, &sv) != nil {
			return containerView{}, sv, false
		}
		for _, c := range sv.Section {
			if c.Name == name {
				return c, sv, true
			}
		}
		return containerView{}, sv, false
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		c, sv, ok := find()
		return ok && c.State == "running", fmt.Sprintf("container %s not running in snapshot seq %d (%d containers)", name, sv.Seq, len(sv.Section))
	})

	timeout := 1
	if _, err := cli.ContainerStop(ctx, createdID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	var stoppedSeq uint64
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		c, sv, ok := find()
		stoppedSeq = sv.Seq
		return ok && c.State == "exited", fmt.Sprintf("container %s is %q in snapshot seq %d", name, c.State, sv.Seq)
	})

	// The snapshot that shows it stopped came as a delta patching this
	// container, not as a new full snapshot.
	var hist []historyView
	srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot/history?seq=%d", env.ID, stoppedSeq), nil, &hist, http.StatusOK)
	if len(hist) != 1 {
		t.Fatalf("history for seq %d: %d entries", stoppedSeq, len(hist))
	}
	h := hist[0]
	if h.Kind != "delta" || h.Base == 0 || h.Delta == nil || h.Delta.Containers == nil {
		t.Fatalf("the stop arrived as %+v, want a delta on containers", h)
	}
	short := createdID[:12]
	if !slices.ContainsFunc(h.Delta.Containers.Patch, func(p struct {
		Key string `json:"key"`
	}) bool {
		return p.Key == short
	}) {
		t.Fatalf("delta %d does not patch container %s: %+v", h.Seq, short, h.Delta.Containers)
	}
	t.Logf("stop carried by delta seq %d (base %d), %d bytes of CBOR", h.Seq, h.Base, h.Bytes)

	var all []historyView
	srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot/history", env.ID), nil, &all, http.StatusOK)
	fulls := 0
	for _, e := range all {
		if e.Kind == "full" {
			fulls++
		}
	}
	if fulls != 1 {
		t.Errorf("%d full snapshots in history, want exactly the first one: %+v", fulls, all)
	}
	if errs := agent.lines("level=ERROR"); len(errs) > 0 {
		t.Errorf("agent logged errors: %v", errs)
	}
}
