package edgeagent

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/moby/moby/client"

	"outpost/protocol"
)

// Command kinds this agent runs. Args are strings: "id" is a container ID,
// short ID or name (an image ID or reference for image.remove); "name" a
// volume name; "timeout" seconds; "force" and "volumes" "true" or "false".
const (
	KindContainerStart   = "container.start"   // id
	KindContainerStop    = "container.stop"    // id, timeout
	KindContainerRestart = "container.restart" // id, timeout
	KindContainerKill    = "container.kill"    // id, signal
	KindContainerRemove  = "container.remove"  // id, force, volumes
	KindImageRemove      = "image.remove"      // id, force
	KindVolumeRemove     = "volume.remove"     // name, force
	KindSnapshotNow      = "snapshot.now"      // no args; the syncer handles it
	KindKubeAccess       = "kube.access"       // environment, grants (JSON); Kubernetes only
)

// engineKinds are the kinds an Executor runs.
var engineKinds = map[string]bool{
	KindContainerStart: true, KindContainerStop: true, KindContainerRestart: true, KindContainerKill: true,
	KindContainerRemove: true, KindImageRemove: true, KindVolumeRemove: true,
}

// unknownKind is the error a command of a kind this agent does not know is
// acked with: a newer server sent it.
func unknownKind(kind string) error {
	return fmt.Errorf("unknown command kind %s; upgrade the agent", kind)
}

// notDocker is the executor of an agent on Kubernetes: container, image
// and volume commands are the Docker engine's.
type notDocker struct{}

func (notDocker) Execute(_ context.Context, c protocol.Command) error {
	return fmt.Errorf("%s: this agent runs on Kubernetes, which has no Docker containers, images or volumes to act on", c.Kind)
}

// Executor runs a command against the device's engine.
type Executor interface {
	Execute(ctx context.Context, c protocol.Command) error
}

// commandTimeout bounds one engine call, on top of the stop timeout a stop or
// restart carries.
const commandTimeout = 2 * time.Minute

// DockerExecutor runs commands through the Engine API.
type DockerExecutor struct {
	cli *client.Client
}

// NewDockerExecutor returns an executor using cli.
func NewDockerExecutor(cli *client.Client) *DockerExecutor { return &DockerExecutor{cli: cli} }

// Execute runs c. An engine error is returned as the engine worded it (it
// names the object), since it goes back to the server as the command's
// result; errors in the arguments name the command and the argument.
func (e *DockerExecutor) Execute(ctx context.Context, c protocol.Command) error {
	a := args{kind: c.Kind, m: c.Args}
	id := c.Args["id"]
	timeout := a.seconds("timeout")
	force := a.flag("force")
	volumes := a.flag("volumes")
	name := c.Args["name"]
	if a.err != nil {
		return a.err
	}
	limit := commandTimeout
	if timeout != nil && *timeout > 0 {
		limit += time.Duration(*timeout) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()

	var err error
	switch c.Kind {
	case KindContainerStart:
		if err = a.need("id", id); err == nil {
			_, err = e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
		}
	case KindContainerStop:
		if err = a.need("id", id); err == nil {
			_, err = e.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: timeout})
		}
	case KindContainerRestart:
		if err = a.need("id", id); err == nil {
			_, err = e.cli.ContainerRestart(ctx, id, client.ContainerRestartOptions{Timeout: timeout})
		}
	case KindContainerKill:
		if err = a.need("id", id); err == nil {
			_, err = e.cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: a.m["signal"]})
		}
	case KindContainerRemove:
		if err = a.need("id", id); err == nil {
			_, err = e.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: force, RemoveVolumes: volumes})
		}
	case KindImageRemove:
		if err = a.need("id", id); err == nil {
			_, err = e.cli.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: force})
		}
	case KindVolumeRemove:
		if err = a.need("name", name); err == nil {
			_, err = e.cli.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: force})
		}
	default:
		err = unknownKind(c.Kind)
	}
	return err
}

// args reads a command's string arguments, keeping the first problem.
type args struct {
	kind string
	m    map[string]string
	err  error
}

func (a *args) need(k, v string) error {
	if v == "" {
		return fmt.Errorf("%s: missing argument %q", a.kind, k)
	}
	return nil
}

func (a *args) flag(k string) bool {
	v, ok := a.m[k]
	if !ok || v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil && a.err == nil {
		a.err = fmt.Errorf("%s: argument %s=%q is not true or false", a.kind, k, v)
	}
	return b
}

func (a *args) seconds(k string) *int {
	v, ok := a.m[k]
	if !ok || v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < -1 {
		if a.err == nil {
			a.err = fmt.Errorf("%s: argument %s=%q is not a number of seconds", a.kind, k, v)
		}
		return nil
	}
	return &n
}
