//go:build integration

package edgeagent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"outpost/edgeagent"
	"outpost/internal/testenv"
	"outpost/protocol"
	"outpost/snapshot"
)

func TestDockerExecutorRealEngine(t *testing.T) {
	cli := testenv.RequireDocker(t)
	img := testenv.BusyboxImage(t, cli)
	ctx := context.Background()
	suffix := fmt.Sprint(time.Now().UnixNano())
	ex := edgeagent.NewDockerExecutor(cli)
	var next uint64
	run := func(kind string, args map[string]string) error {
		t.Helper()
		next++
		return ex.Execute(ctx, protocol.Command{ID: next, Kind: kind, Args: args})
	}
	must := func(kind string, args map[string]string) {
		t.Helper()
		if err := run(kind, args); err != nil {
			t.Fatalf("%s %v: %v", kind, args, err)
		}
	}

	name := "outpost-exec-" + suffix
	r, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name,
		Config: &container.Config{Image: img, Cmd: []string{"sleep", "600"}, Labels: map[string]string{"outpost.test": t.Name()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), r.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(ctx, r.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	state := func() *container.State {
		t.Helper()
		res, err := cli.ContainerInspect(ctx, r.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Container.State
	}
	wantRunning := func(op string, want bool) {
		t.Helper()
		if st := state(); st.Running != want {
			t.Fatalf("after %s the container is %s, want running=%v", op, st.Status, want)
		}
	}

	// sleep as PID 1 ignores SIGTERM: the stop timeout is what ends it.
	must(edgeagent.KindContainerStop, map[string]string{"id": name, "timeout": "1"})
	if st := state(); st.Running || st.Status != "exited" {
		t.Fatalf("after stop the container is %s", st.Status)
	}
	must(edgeagent.KindContainerStart, map[string]string{"id": snapshot.ShortID(r.ID)})
	wantRunning("start", true)
	before := state().StartedAt
	must(edgeagent.KindContainerRestart, map[string]string{"id": r.ID, "timeout": "0"})
	wantRunning("restart", true)
	if after := state().StartedAt; after == before {
		t.Fatalf("restart did not start the container anew (started at %s both times)", after)
	}
	must(edgeagent.KindContainerKill, map[string]string{"id": name, "signal": "KILL"})
	wantRunning("kill", false)
	must(edgeagent.KindContainerStart, map[string]string{"id": name})
	must(edgeagent.KindContainerRemove, map[string]string{"id": name, "force": "true", "volumes": "true"})
	if _, err := cli.ContainerInspect(ctx, r.ID, client.ContainerInspectOptions{}); err == nil {
		t.Fatal("container still there after remove")
	}

	// A failure comes back in the engine's words, which name the object.
	missing := "outpost-missing-" + suffix
	if err := run(edgeagent.KindContainerStop, map[string]string{"id": missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("stopping a container that does not exist: %v", err)
	}
	// Bad arguments are refused before the engine is called, named.
	for _, c := range []struct {
		kind string
		args map[string]string
		want string
	}{
		{edgeagent.KindContainerStop, map[string]string{"id": name, "timeout": "soon"}, "timeout"},
		{edgeagent.KindContainerRemove, map[string]string{"id": name, "force": "yes please"}, "force"},
		{edgeagent.KindContainerStart, nil, `"id"`},
		{edgeagent.KindVolumeRemove, map[string]string{"id": "x"}, `"name"`},
		{"stack.deploy", nil, "upgrade the agent"},
	} {
		if err := run(c.kind, c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want an error naming %s", c.kind, c.args, err, c.want)
		}
	}

	vol := "outpost-exec-" + suffix
	if _, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: vol}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.VolumeRemove(context.Background(), vol, client.VolumeRemoveOptions{Force: true}) })
	must(edgeagent.KindVolumeRemove, map[string]string{"name": vol})
	if _, err := cli.VolumeInspect(ctx, vol, client.VolumeInspectOptions{}); err == nil {
		t.Fatal("volume still there after remove")
	}

	tag := "outpost-test/throwaway:" + suffix
	if _, err := cli.ImageTag(ctx, client.ImageTagOptions{Source: img, Target: tag}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{}) })
	must(edgeagent.KindImageRemove, map[string]string{"id": tag})
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		t.Fatal("image tag still there after remove")
	}
	if _, err := cli.ImageInspect(ctx, img); err != nil {
		t.Fatalf("removing a second tag removed the image itself: %v", err)
	}
	if err := run(edgeagent.KindImageRemove, map[string]string{"id": tag}); err == nil || !strings.Contains(err.Error(), "throwaway") {
		t.Fatalf("removing a tag that is gone: %v", err)
	}
}
