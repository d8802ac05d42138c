// Package dockerhost answers questions about this machine's Docker engine
// that make run and the tests share.
package dockerhost

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/moby/moby/client"
)

// BridgeGateway asks the Docker engine for its default bridge's gateway:
// the address containers on this host reach the host at.
func BridgeGateway(ctx context.Context) (string, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return "", fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := cli.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect the docker bridge network: %w", err)
	}
	for _, c := range res.Network.IPAM.Config {
		if c.Gateway.IsValid() {
			return c.Gateway.String(), nil
		}
	}
	// Older engines name only the subnet: the gateway is the bridge
	// interface's address in it.
	name := res.Network.Options["com.docker.network.bridge.name"]
	if name == "" {
		name = "docker0"
	}
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return "", fmt.Errorf("the docker bridge network names no gateway, and its interface %s: %w", name, err)
	}
	addrs, err := iface.Addrs()
	if err != nil {
		return "", fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		for _, c := range res.Network.IPAM.Config {
			if c.Subnet.Contains(p.Addr()) {
				return p.Addr().String(), nil
			}
		}
	}
	return "", fmt.Errorf("the docker bridge network names no gateway, and %s has no address in its subnet", name)
}
