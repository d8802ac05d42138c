package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Require skips the test when err is not nil, with the message
// "no <what>: <err>"; under CI (CI set and non-empty) it fails the test
// instead, so a CI run cannot pass by skipping.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no %s: %v (CI is set: a missing component fails the test)", what, err)
		return
	}
	t.Skipf("no %s: %v", what, err)
}

// RequireDocker returns a client of the Docker engine the environment points
// at (DOCKER_HOST, or the default socket) after a successful ping. It skips or
// fails the test as Require does when the engine cannot be reached. The client
// is closed when the test ends.
func RequireDocker(t testing.TB) *client.Client {
	t.Helper()
	cli, host, err := connect(context.Background())
	Require(t, "Docker engine at "+host, err)
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Docker connects to the Docker engine the environment points at and pings
// it, negotiating the API version. It is RequireDocker for programs.
func Docker(ctx context.Context) (*client.Client, error) {
	cli, host, err := connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("no Docker engine at %s: %w", host, err)
	}
	return cli, nil
}

// connect returns a pinged client, or the host it tried and why it failed.
func connect(ctx context.Context) (*client.Client, string, error) {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = client.DefaultDockerHost
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, host, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		_ = cli.Close()
		return nil, cli.DaemonHost(), err
	}
	return cli, cli.DaemonHost(), nil
}
