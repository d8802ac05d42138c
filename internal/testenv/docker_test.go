//go:build integration

package testenv_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"outpost/internal/testenv"
)

func TestBusyboxEcho(t *testing.T) {
	cli := testenv.RequireDocker(t)
	ref := testenv.BusyboxImage(t, cli)
	ctx := context.Background()

	ct, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:  ref,
			Cmd:    []string{"busybox", "echo", "hi"},
			Labels: map[string]string{"outpost.test": t.Name()},
		},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if _, err := cli.ContainerRemove(context.Background(), ct.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove %s: %v", ct.ID, err)
		}
	})
	if _, err := cli.ContainerStart(ctx, ct.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		in, err := cli.ContainerInspect(ctx, ct.ID, client.ContainerInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := in.Container.State
		return s.Status == container.StateExited, fmt.Sprintf("state %s", s.Status)
	})
	in, err := cli.ContainerInspect(ctx, ct.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if code := in.Container.State.ExitCode; code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}

	logs, err := cli.ContainerLogs(ctx, ct.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		t.Fatalf("read logs: %v", err)
	}
	if got := stdout.String(); got != "hi\n" {
		t.Errorf("stdout %q, want %q (stderr %q)", got, "hi\n", stderr.String())
	}
}

// Parallel callers in one process must not import the image twice.
func TestBusyboxImageParallel(t *testing.T) {
	cli := testenv.RequireDocker(t)
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			if ref := testenv.BusyboxImage(t, cli); ref != testenv.BusyboxRef {
				t.Errorf("ref %q, want %q", ref, testenv.BusyboxRef)
			}
		})
	}
	t.Cleanup(func() {
		imgs, err := cli.ImageList(context.Background(), client.ImageListOptions{
			Filters: make(client.Filters).Add("reference", testenv.BusyboxRef),
		})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		if len(imgs.Items) != 1 {
			t.Errorf("%d images tagged %s, want 1", len(imgs.Items), testenv.BusyboxRef)
		}
	})
}
