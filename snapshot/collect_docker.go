package snapshot

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Compose labels the collector reads to describe projects.
const (
	LabelProject     = "com.docker.compose.project"
	LabelService     = "com.docker.compose.service"
	LabelWorkingDir  = "com.docker.compose.project.working_dir"
	LabelConfigFiles = "com.docker.compose.project.config_files"
)

// DockerCollector reads Docker snapshots from an engine through the Engine API.
// It caches per-container inspect results while a container's state is
// unchanged, so a snapshot of a steady engine costs a handful of list calls.
type DockerCollector struct {
	cli *client.Client

	mu      sync.Mutex // guards inspect; never held across an API call
	inspect map[string]inspected
}

type inspected struct {
	state    State
	health   Health
	started  int64
	finished int64
	exit     int
	restart  string
}

// NewDockerCollector returns a collector using cli.
func NewDockerCollector(cli *client.Client) *DockerCollector {
	return &DockerCollector{cli: cli, inspect: map[string]inspected{}}
}

// ShortID returns the 12-character form of a Docker ID, without "sha256:".
func ShortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Collect reads a normalized snapshot of the engine.
func (c *DockerCollector) Collect(ctx context.Context) (*Snapshot, error) {
	d := &Snapshot{}
	info, err := c.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, fmt.Errorf("docker info: %w", err)
	}
	in := info.Info
	d.Engine = Engine{
		Hostname: in.Name, ServerVersion: in.ServerVersion, APIVersion: c.cli.ClientVersion(),
		OS: in.OperatingSystem, OSType: in.OSType, Arch: in.Architecture, Kernel: in.KernelVersion,
		CPUs: in.NCPU, Memory: in.MemTotal, StorageDriver: in.Driver,
		Swarm: in.Swarm.LocalNodeState == "active",
	}
	if err := c.containers(ctx, d); err != nil {
		return nil, err
	}
	imgs, err := c.cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, fmt.Errorf("docker image list: %w", err)
	}
	for _, im := range imgs.Items {
		var tags []string
		for _, t := range im.RepoTags {
			if t != "<none>:<none>" {
				tags = append(tags, t)
			}
		}
		d.Images = append(d.Images, Image{ID: ShortID(im.ID), Tags: tags, Size: im.Size, Created: im.Created})
	}
	vols, err := c.cli.VolumeList(ctx, client.VolumeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("docker volume list: %w", err)
	}
	for _, v := range vols.Items {
		vol := Volume{Name: v.Name, Labels: nilIfEmpty(v.Labels), Created: unixTime(v.CreatedAt)}
		if v.Driver != "local" {
			vol.Driver = v.Driver
		}
		d.Volumes = append(d.Volumes, vol)
	}
	nets, err := c.cli.NetworkList(ctx, client.NetworkListOptions{})
	if err != nil {
		return nil, fmt.Errorf("docker network list: %w", err)
	}
	for _, n := range nets.Items {
		nw := Network{ID: ShortID(n.ID), Name: n.Name, Driver: n.Driver, Scope: n.Scope, Internal: n.Internal, Labels: nilIfEmpty(n.Labels)}
		for _, cfg := range n.IPAM.Config {
			if cfg.Subnet.IsValid() {
				nw.Subnets = append(nw.Subnets, cfg.Subnet.String())
			}
		}
		d.Networks = append(d.Networks, nw)
	}
	d.Projects = projects(d.Containers)
	Normalize(d)
	return d, nil
}

func (c *DockerCollector) containers(ctx context.Context, d *Snapshot) error {
	list, err := c.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return fmt.Errorf("docker container list: %w", err)
	}
	seen := make(map[string]bool, len(list.Items))
	for _, s := range list.Items {
		ct := Container{
			ID: ShortID(s.ID), Image: s.Image, ImageID: ShortID(s.ImageID), Command: s.Command,
			State: ParseState(string(s.State)), Health: summaryHealth(s), Created: s.Created,
			Labels: nilIfEmpty(s.Labels),
		}
		if len(s.Names) > 0 {
			ct.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		for _, p := range s.Ports {
			pt := Port{Private: p.PrivatePort, Public: p.PublicPort}
			if p.Type != "tcp" {
				pt.Proto = p.Type
			}
			if p.IP.IsValid() {
				pt.IP = p.IP.String()
			}
			ct.Ports = append(ct.Ports, pt)
		}
		for _, m := range s.Mounts {
			mt := Mount{Type: string(m.Type), Source: m.Source, Destination: m.Destination, ReadOnly: !m.RW}
			if m.Type == "volume" {
				mt.Source = m.Name
			}
			ct.Mounts = append(ct.Mounts, mt)
		}
		if s.NetworkSettings != nil {
			for name := range s.NetworkSettings.Networks {
				ct.Networks = append(ct.Networks, name)
			}
		}
		seen[s.ID] = true
		in, err := c.inspected(ctx, s.ID, ct.State, ct.Health)
		if err != nil {
			// Removed between list and inspect: leave it for the next snapshot.
			continue
		}
		ct.Health, ct.Started, ct.Finished, ct.ExitCode, ct.Restart = in.health, in.started, in.finished, in.exit, in.restart
		d.Containers = append(d.Containers, ct)
	}
	c.mu.Lock()
	for id := range c.inspect {
		if !seen[id] {
			delete(c.inspect, id)
		}
	}
	c.mu.Unlock()
	return nil
}

// inspected returns the inspect facts of a container, from the cache while its
// state and health are what they were when it was last inspected.
func (c *DockerCollector) inspected(ctx context.Context, id string, st State, h Health) (inspected, error) {
	c.mu.Lock()
	in, ok := c.inspect[id]
	c.mu.Unlock()
	if ok && in.state == st && in.health == h {
		return in, nil
	}
	r, err := c.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return inspected{}, fmt.Errorf("docker inspect %s: %w", ShortID(id), err)
	}
	in = inspected{state: st, health: h}
	if s := r.Container.State; s != nil {
		in.started, in.finished, in.exit = unixTime(s.StartedAt), unixTime(s.FinishedAt), s.ExitCode
		if s.Health != nil {
			in.health = ParseHealth(string(s.Health.Status))
		}
	}
	if hc := r.Container.HostConfig; hc != nil && hc.RestartPolicy.Name != "no" {
		in.restart = string(hc.RestartPolicy.Name)
	}
	c.mu.Lock()
	c.inspect[id] = in
	c.mu.Unlock()
	return in, nil
}

// summaryHealth reads health from the list entry: the Health field on newer
// engines, the status text ("Up 3 minutes (healthy)") on older ones.
func summaryHealth(s container.Summary) Health {
	if s.Health != nil {
		return ParseHealth(string(s.Health.Status))
	}
	switch {
	case strings.Contains(s.Status, "(healthy)"):
		return HealthHealthy
	case strings.Contains(s.Status, "(unhealthy)"):
		return HealthUnhealthy
	case strings.Contains(s.Status, "(health: starting)"):
		return HealthStarting
	}
	return HealthNone
}

// projects describes the compose projects found in container labels.
func projects(cs []Container) []Project {
	byName := map[string]*Project{}
	services := map[string]map[string]bool{}
	for _, c := range cs {
		name := c.Labels[LabelProject]
		if name == "" {
			continue
		}
		p := byName[name]
		if p == nil {
			p = &Project{Name: name, WorkingDir: c.Labels[LabelWorkingDir], ConfigFiles: c.Labels[LabelConfigFiles]}
			byName[name] = p
			services[name] = map[string]bool{}
		}
		if s := c.Labels[LabelService]; s != "" && !services[name][s] {
			services[name][s] = true
			p.Services = append(p.Services, s)
		}
	}
	out := make([]Project, 0, len(byName))
	for _, p := range byName {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(out) == 0 {
		return nil
	}
	return out
}

// unixTime parses an engine timestamp; the zero time and garbage give 0.
func unixTime(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 1971 {
		return 0
	}
	return t.Unix()
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
