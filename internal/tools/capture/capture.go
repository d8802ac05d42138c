package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"outpost/internal/testenv"
	"outpost/snapshot"
)

// captureLabel marks every object the tool creates, for cleanup.
const captureLabel = "outpost.capture"

// Health checks: the interval is short so checks settle while the rest is
// created, but not so short that hundreds of execs load the engine; the
// timeout is long because on a loaded 2-core machine an exec of `true` can
// take seconds, and a timeout would turn healthy containers unhealthy.
const (
	healthInterval = 20 * time.Second
	healthTimeout  = 15 * time.Second
	healthRetries  = 3
	// settleTimeout bounds the wait for the last checks: a failing one needs
	// healthRetries intervals to turn unhealthy.
	settleTimeout = 3 * time.Minute
)

type config struct {
	sizes   []int
	out     string
	workers int
	keep    bool
	clean   bool
}

// hostDir holds the host side of the bind mounts.
var hostDir = filepath.Join(os.TempDir(), "outpost-capture")

func logf(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, cfg config) error {
	cli, err := testenv.Docker(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	// Cleanup must run even when ctx was cancelled by an interrupt.
	cleanCtx := context.WithoutCancel(ctx)
	if cfg.clean {
		return clean(cleanCtx, cli, cfg.workers, "clean")
	}
	if _, err := testenv.EnsureBusybox(ctx, cli); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	for i, n := range cfg.sizes {
		start := time.Now()
		err := captureSize(ctx, cli, cfg, n)
		if !cfg.keep || i < len(cfg.sizes)-1 {
			if cerr := clean(cleanCtx, cli, cfg.workers, fmt.Sprintf("size %d", n)); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		if err != nil {
			return fmt.Errorf("size %d: %w", n, err)
		}
		logf("size %d: done in %v", n, time.Since(start).Round(time.Second))
	}
	return nil
}

// captureSize fills the engine per newPlan(n), collects and writes the
// snapshot. Cleanup is the caller's.
func captureSize(ctx context.Context, cli *client.Client, cfg config, n int) error {
	tag := fmt.Sprintf("size %d", n)
	if err := clean(ctx, cli, cfg.workers, tag+" (leftovers)"); err != nil {
		return err
	}
	p := newPlan(n)
	logf("%s: plan: %d containers, %d projects, %d images", tag, len(p.containers), len(p.projects), len(p.images))

	imageIDs, err := createImages(ctx, cli, p)
	if err != nil {
		return err
	}
	logf("%s: created %d images", tag, len(p.images))
	if err := createProjects(ctx, cli, p); err != nil {
		return err
	}
	logf("%s: created %d project networks and their volumes", tag, len(p.projects))

	step := max(1, n/20)
	err = forEach(ctx, cfg.workers, p.containers, true, func(ctx context.Context, c ctPlan) error {
		return createContainer(ctx, cli, c, imageIDs)
	}, func(done int) {
		if done%step == 0 || done == n {
			logf("%s: created %d/%d containers", tag, done, n)
		}
	})
	if err != nil {
		return err
	}
	if err := settleHealth(ctx, cli, tag); err != nil {
		return err
	}

	d, err := snapshot.NewDockerCollector(cli).Collect(ctx)
	if err != nil {
		return err
	}
	keepImages := map[string]bool{}
	for _, id := range imageIDs {
		keepImages[snapshot.ShortID(id)] = true
	}
	projects := map[string]bool{}
	for _, pp := range p.projects {
		projects[pp.name] = true
	}
	own(d, keepImages, projects)
	if len(d.Containers) != n {
		return fmt.Errorf("snapshot holds %d of the %d containers", len(d.Containers), n)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep ">&2" in commands readable
	enc.SetIndent("", " ")
	if err := enc.Encode(d); err != nil {
		return err
	}
	b := buf.Bytes()
	file := filepath.Join(cfg.out, fmt.Sprintf("docker-%d.json", n))
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	logf("%s: wrote %s (%d bytes): %d containers, %d images, %d volumes, %d networks, %d projects",
		tag, file, len(b), len(d.Containers), len(d.Images), len(d.Volumes), len(d.Networks), len(d.Projects))
	return nil
}

// createImages imports one busybox variant per planned image, with its own
// filler file so sizes differ, and returns the image ID of every ref used,
// the busybox base included.
func createImages(ctx context.Context, cli *client.Client, p *plan) (map[string]string, error) {
	ids := map[string]string{}
	base, err := cli.ImageInspect(ctx, testenv.BusyboxRef)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", testenv.BusyboxRef, err)
	}
	ids[testenv.BusyboxRef] = base.ID
	for _, im := range p.images {
		ref := im.tags[0]
		repo, version := splitRef(ref)
		app := path.Base(repo)
		var seed [32]byte
		copy(seed[:], hash(ref))
		pad := make([]byte, im.pad)
		_, _ = rand.NewChaCha8(seed).Read(pad)
		rootfs, err := testenv.BusyboxRootfs(map[string][]byte{
			"opt/" + app + "/VERSION":    []byte(version + "\n"),
			"opt/" + app + "/assets.bin": pad,
		})
		if err != nil {
			return nil, err
		}
		id, err := testenv.ImportImage(ctx, cli, ref, bytes.NewReader(rootfs),
			"LABEL "+captureLabel+"=1",
			"LABEL org.opencontainers.image.title="+app,
			"LABEL org.opencontainers.image.version="+version,
			"ENV APP_VERSION="+version,
			"WORKDIR /opt/"+app,
			`CMD ["sh"]`,
		)
		if err != nil {
			return nil, err
		}
		for _, t := range im.tags {
			if t != ref {
				if _, err := cli.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: t}); err != nil {
					return nil, fmt.Errorf("tag %s: %w", t, err)
				}
			}
			ids[t] = id
		}
	}
	return ids, nil
}

// createProjects makes each project's network and volumes with the labels
// Docker Compose gives them. Subnets are picked from 10.200.0.0/14, as on a
// host whose default-address-pools was widened: the engine's default pools
// hold only about 30 networks.
func createProjects(ctx context.Context, cli *client.Client, p *plan) error {
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return fmt.Errorf("network list: %w", err)
	}
	var taken []netip.Prefix
	for _, nw := range nets.Items {
		for _, c := range nw.IPAM.Config {
			if c.Subnet.IsValid() {
				taken = append(taken, c.Subnet)
			}
		}
	}
	next := 0
	subnet := func() (netip.Prefix, error) {
	search:
		for ; next < 4*256; next++ {
			pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + next/256), byte(next % 256), 0}), 24)
			for _, t := range taken {
				if t.Overlaps(pfx) {
					continue search
				}
			}
			next++
			return pfx, nil
		}
		return netip.Prefix{}, errors.New("no free /24 left in 10.200.0.0/14")
	}
	for _, pp := range p.projects {
		pfx, err := subnet()
		if err != nil {
			return err
		}
		name := pp.name + "_default"
		_, err = cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver: "bridge",
			IPAM:   &network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: pfx}}},
			Labels: map[string]string{
				"com.docker.compose.network": "default",
				"com.docker.compose.project": pp.name,
				"com.docker.compose.version": composeVersion,
				captureLabel:                 "1",
			},
		})
		if err != nil {
			return fmt.Errorf("network create %s: %w", name, err)
		}
		for _, key := range pp.volumes {
			name := pp.name + "_" + key
			_, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{
				Name:   name,
				Driver: "local",
				Labels: map[string]string{
					"com.docker.compose.project": pp.name,
					"com.docker.compose.volume":  key,
					"com.docker.compose.version": composeVersion,
					captureLabel:                 "1",
				},
			})
			if err != nil {
				return fmt.Errorf("volume create %s: %w", name, err)
			}
		}
	}
	return nil
}

// createContainer creates c and brings it to its planned state.
func createContainer(ctx context.Context, cli *client.Client, c ctPlan, imageIDs map[string]string) error {
	labels := maps.Clone(c.labels)
	labels[captureLabel] = "1"
	if _, ok := labels["com.docker.compose.project"]; ok {
		labels["com.docker.compose.image"] = imageIDs[c.image]
	}
	cfg := &container.Config{Image: c.image, Cmd: c.cmd, Labels: labels}
	hc := &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyMode(c.restart)}}
	if c.health != nil {
		cfg.Healthcheck = &container.HealthConfig{Test: c.health, Interval: healthInterval, Timeout: healthTimeout, Retries: healthRetries}
	}
	for _, pt := range c.ports {
		port, err := network.ParsePort(pt.spec)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.name, err)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
			hc.PortBindings = network.PortMap{}
		}
		cfg.ExposedPorts[port] = struct{}{}
		if pt.publish {
			var b network.PortBinding // host port "" is an ephemeral one
			if pt.loopback {
				b.HostIP = netip.MustParseAddr("127.0.0.1")
			}
			hc.PortBindings[port] = []network.PortBinding{b}
		}
	}
	for _, v := range c.volumes {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: v.name, Target: v.target, ReadOnly: v.readOnly})
	}
	for _, b := range c.binds {
		src := filepath.Join(hostDir, b.sub)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return fmt.Errorf("container %s: %w", c.name, err)
		}
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: src, Target: b.target, ReadOnly: b.readOnly})
	}
	var nc *network.NetworkingConfig
	if c.network != "" {
		hc.NetworkMode = container.NetworkMode(c.network)
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{c.network: {Aliases: c.aliases}}}
	}
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: c.name, Config: cfg, HostConfig: hc, NetworkingConfig: nc})
	if err != nil {
		return fmt.Errorf("container create %s: %w", c.name, err)
	}
	if c.state == created {
		return nil
	}
	if _, err := cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("container start %s: %w", c.name, err)
	}
	if c.state == running {
		return nil
	}
	if c.exit == exitKilled {
		if _, err := cli.ContainerKill(ctx, res.ID, client.ContainerKillOptions{}); err != nil {
			return fmt.Errorf("container kill %s: %w", c.name, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	w := cli.ContainerWait(wctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-w.Result:
		if r.StatusCode != int64(c.exit) {
			return fmt.Errorf("container %s exited %d, want %d", c.name, r.StatusCode, c.exit)
		}
		return nil
	case err := <-w.Error:
		return fmt.Errorf("container wait %s: %w", c.name, err)
	}
}

// settleHealth waits until no container of ours is still in its health
// check's starting phase, so the capture shows healthy and unhealthy ones.
func settleHealth(ctx context.Context, cli *client.Client, tag string) error {
	f := make(client.Filters).Add("label", captureLabel+"=1").Add("health", "starting")
	deadline := time.Now().Add(settleTimeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := -1
	for {
		list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
		if err != nil {
			return fmt.Errorf("container list: %w", err)
		}
		n := len(list.Items)
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d containers still in health: starting after %v", n, settleTimeout)
		}
		if n != last {
			logf("%s: waiting for %d health checks to settle", tag, n)
			last = n
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// own cuts d down to what the tool made (and the engine's own networks), and
// drops the tool's marker label, which a real device would not carry.
func own(d *snapshot.Snapshot, images, projects map[string]bool) {
	var cs []snapshot.Container
	for _, c := range d.Containers {
		if c.Labels[captureLabel] == "1" {
			c.Labels = unmark(c.Labels)
			cs = append(cs, c)
		}
	}
	d.Containers = cs
	var is []snapshot.Image
	for _, im := range d.Images {
		if images[im.ID] {
			is = append(is, im)
		}
	}
	d.Images = is
	var vs []snapshot.Volume
	for _, v := range d.Volumes {
		if v.Labels[captureLabel] == "1" {
			v.Labels = unmark(v.Labels)
			vs = append(vs, v)
		}
	}
	d.Volumes = vs
	var ns []snapshot.Network
	for _, nw := range d.Networks {
		builtin := nw.Name == "bridge" || nw.Name == "host" || nw.Name == "none"
		if nw.Labels[captureLabel] == "1" || builtin && nw.Labels == nil {
			nw.Labels = unmark(nw.Labels)
			ns = append(ns, nw)
		}
	}
	d.Networks = ns
	var ps []snapshot.Project
	for _, p := range d.Projects {
		if projects[p.Name] {
			ps = append(ps, p)
		}
	}
	d.Projects = ps
	snapshot.Normalize(d)
}

func unmark(labels map[string]string) map[string]string {
	delete(labels, captureLabel)
	if len(labels) == 0 {
		return nil
	}
	return labels
}

// clean removes every object carrying the capture label, and the bind mount
// directories. It goes on past errors and returns them all.
func clean(ctx context.Context, cli *client.Client, workers int, tag string) error {
	f := make(client.Filters).Add("label", captureLabel+"=1")
	var errs []error
	cs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("clean: container list: %w", err)
	}
	var ids []string
	for _, c := range cs.Items {
		ids = append(ids, c.ID)
	}
	if err := forEach(ctx, workers, ids, false, func(ctx context.Context, id string) error {
		_, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		return err
	}, nil); err != nil {
		errs = append(errs, fmt.Errorf("clean: container remove: %w", err))
	}
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("clean: network list: %w", err))
	}
	for _, nw := range nets.Items {
		if _, err := cli.NetworkRemove(ctx, nw.ID, client.NetworkRemoveOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("clean: network remove %s: %w", nw.Name, err))
		}
	}
	vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("clean: volume list: %w", err))
	}
	for _, v := range vols.Items {
		if _, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("clean: volume remove %s: %w", v.Name, err))
		}
	}
	imgs, err := cli.ImageList(ctx, client.ImageListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("clean: image list: %w", err))
	}
	for _, im := range imgs.Items {
		if _, err := cli.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			errs = append(errs, fmt.Errorf("clean: image remove %s: %w", strings.Join(im.RepoTags, ","), err))
		}
	}
	if err := os.RemoveAll(hostDir); err != nil {
		errs = append(errs, fmt.Errorf("clean: %w", err))
	}
	if n := len(ids) + len(nets.Items) + len(vols.Items) + len(imgs.Items); n > 0 {
		logf("%s: removed %d containers, %d networks, %d volumes, %d images", tag, len(ids), len(nets.Items), len(vols.Items), len(imgs.Items))
	}
	return errors.Join(errs...)
}
