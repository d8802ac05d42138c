//go:build integration

package snapshot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"outpost/internal/testenv"
	"outpost/snapshot"
)

func TestDockerCollectorRealEngine(t *testing.T) {
	cli := testenv.RequireDocker(t)
	img := testenv.BusyboxImage(t, cli)
	ctx := context.Background()
	suffix := fmt.Sprint(time.Now().UnixNano())
	const secret = "s3cret-value-never-collected"

	vol := "outpost-collect-" + suffix
	create := func(name string, cfg *container.Config, hc *container.HostConfig) string {
		t.Helper()
		r, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = cli.ContainerRemove(context.Background(), r.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		})
		return r.ID
	}
	web := create("collect-web-"+suffix, &container.Config{
		Image: img, Cmd: []string{"sleep", "600"}, Env: []string{"API_TOKEN=" + secret},
		Labels:       map[string]string{snapshot.LabelProject: "shop-" + suffix, snapshot.LabelService: "web", "tier": "front"},
		ExposedPorts: network.PortSet{network.MustParsePort("8080/tcp"): {}},
		Healthcheck:  &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: 500 * time.Millisecond},
	}, &container.HostConfig{
		Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}},
		RestartPolicy: container.RestartPolicy{Name: "unless-stopped"},
	})
	job := create("collect-job-"+suffix, &container.Config{Image: img, Cmd: []string{"sh", "-c", "exit 3"}}, nil)
	for _, id := range []string{web, job} {
		if _, err := cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = cli.VolumeRemove(context.Background(), vol, client.VolumeRemoveOptions{Force: true}) })

	col := snapshot.NewDockerCollector(cli)
	var d *snapshot.Snapshot
	get := func(id string) *snapshot.Container {
		for i := range d.Containers {
			if d.Containers[i].ID == snapshot.ShortID(id) {
				return &d.Containers[i]
			}
		}
		return nil
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var err error
		if d, err = col.Collect(ctx); err != nil {
			return false, err.Error()
		}
		w, j := get(web), get(job)
		return w != nil && j != nil && w.Health == snapshot.HealthHealthy && j.State == snapshot.StateExited,
			fmt.Sprintf("web %+v, job %+v", w, j)
	})
	w, j := get(web), get(job)
	if w.Name != "collect-web-"+suffix || w.Image != img || w.State != snapshot.StateRunning || w.Started == 0 || w.Restart != "unless-stopped" {
		t.Errorf("web container = %+v", w)
	}
	if w.Labels["tier"] != "front" || !slices.Contains(w.Networks, "bridge") {
		t.Errorf("web labels/networks = %v / %v", w.Labels, w.Networks)
	}
	if len(w.Mounts) != 1 || w.Mounts[0].Type != "volume" || w.Mounts[0].Source != vol || w.Mounts[0].Destination != "/data" {
		t.Errorf("web mounts = %+v", w.Mounts)
	}
	if !slices.ContainsFunc(w.Ports, func(p snapshot.Port) bool { return p.Private == 8080 && p.Proto == "" }) {
		t.Errorf("web ports = %+v", w.Ports)
	}
	if j.ExitCode != 3 || j.Finished == 0 {
		t.Errorf("job container = %+v", j)
	}
	if !slices.ContainsFunc(d.Volumes, func(v snapshot.Volume) bool { return v.Name == vol }) {
		t.Errorf("volume %s missing", vol)
	}
	if !slices.ContainsFunc(d.Images, func(i snapshot.Image) bool { return slices.Contains(i.Tags, img) }) {
		t.Errorf("image %s missing", img)
	}
	if !slices.ContainsFunc(d.Projects, func(p snapshot.Project) bool {
		return p.Name == "shop-"+suffix && slices.Equal(p.Services, []string{"web"})
	}) {
		t.Errorf("project shop-%s missing: %+v", suffix, d.Projects)
	}
	if d.Engine.ServerVersion == "" || d.Engine.CPUs == 0 {
		t.Errorf("engine = %+v", d.Engine)
	}
	all, _ := json.Marshal(d)
	if strings.Contains(string(all), secret) {
		t.Fatal("a container environment variable reached the snapshot")
	}

	// Stopping the web container shows in the next collection.
	timeout := 1
	if _, err := cli.ContainerStop(ctx, web, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	d2, err := col.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d = d2
	if w := get(web); w == nil || w.State != snapshot.StateExited || w.Finished == 0 {
		t.Fatalf("after stop: %+v", w)
	}
}
