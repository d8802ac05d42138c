//go:build integration

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"outpost/internal/testenv"
)

// TestCommandsRunAfterARestore: a backup is taken, commands run, the server
// is restored from the backup, and commands queued after the restore run on
// the device too: none takes the ID of one the agent already ran. The agent
// confirms itself to the restored server (resync) first.
func TestCommandsRunAfterARestore(t *testing.T) {
	cli := testenv.RequireDocker(t)
	ctx := context.Background()
	_, before := startSleeper(t, cli, "outpost-e2e-restore-a")
	_, after := startSleeper(t, cli, "outpost-e2e-restore-b")
	data, bind, taddr := t.TempDir(), freeAddr(t), freeAddr(t)
	flags := []string{"--data", data, "--bind", bind, "--tunnel-addr", taddr}
	srv := startServer(t, flags...)
	env := srv.createEnvironment(t, "restore", 1)
	agent := startAgent(t, env.EdgeKey, t.TempDir())
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var e environment
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e, http.StatusOK)
		return e.EdgeID != "", "waiting for the agent to bind"
	})

	// The backup, as an administrator downloads it.
	req, _ := http.NewRequest("GET", srv.URL+"/api/backup", nil)
	req.Header.Set("Authorization", "Bearer "+srv.token)
	resp, err := srv.http.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("backup: %v %v", resp, err)
	}
	backup, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}

	stop := func(srv *server, name string) uint64 {
		t.Helper()
		var cmd struct {
			ID uint64 `json:"id"`
		}
		srv.do(t, "POST", fmt.Sprintf("/api/environments/%d/commands", env.ID), map[string]any{
			"kind": "container.stop", "args": map[string]any{"id": name, "timeout": 1},
		}, &cmd, http.StatusAccepted)
		testenv.Eventually(t, 30*time.Second, func() (bool, string) {
			c, err := cli.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
			return err == nil && !c.Container.State.Running, fmt.Sprintf("%s still running (command %d)", name, cmd.ID)
		})
		return cmd.ID
	}
	first := stop(srv, before)

	// Restore: stop the server, put the backup in place, start it again.
	if err := srv.proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = srv.proc.Cmd.Wait()
	if err := os.WriteFile(filepath.Join(data, "outpost.db"), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	srv2 := startServer(t, flags...)
	second := stop(srv2, after)
	if second <= first {
		t.Errorf("the command queued after the restore has ID %d, not above %d, which the agent ran before", second, first)
	}
	// The restored server had the agent confirm itself before serving it.
	if len(agent.lines("the server was restored from a backup")) == 0 {
		t.Error("the agent was not asked to confirm itself after the restore")
	}
}
