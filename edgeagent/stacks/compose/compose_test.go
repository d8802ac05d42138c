package compose

import (
	"math/rand/v2"
	"strings"
	"testing"

	clicred "github.com/docker/cli/cli/config/credentials"
	"github.com/docker/compose/v5/pkg/api"

	"outpost/edgeagent/stacks"
)

// TestLabelsAreCompose: package stacks reads Compose's container labels
// without linking Compose; they must be Compose's.
func TestLabelsAreCompose(t *testing.T) {
	for ours, theirs := range map[string]string{
		stacks.ProjectLabel:         api.ProjectLabel,
		stacks.ServiceLabel:         api.ServiceLabel,
		stacks.ConfigHashLabel:      api.ConfigHashLabel,
		stacks.ContainerNumberLabel: api.ContainerNumberLabel,
		stacks.OneoffLabel:          api.OneoffLabel,
	} {
		if ours != theirs {
			t.Errorf("stacks has label %q, Compose %q", ours, theirs)
		}
	}
}

// TestAuthKeyIsTheCLIs: stacks.AuthKey (what Validate checks and the
// credentials are filed under) finds the host as the Docker CLI does, as
// the agent's key did when it called the CLI's function itself.
func TestAuthKeyIsTheCLIs(t *testing.T) {
	for _, server := range []string{
		"registry.example.com", "registry.example.com:5000", "registry.example.com/v2/", "https://registry.example.com:5000/v2/",
		"http://10.0.0.1:5000", "https://[::1]:5000/x", "https://fd00::1:5000/x", "https://fd00::1/x", "localhost:5000/x",
		"docker.io", "https://index.docker.io/v1/", "registry-1.docker.io", "", "/x", "https://", "ftp://host/x", " ghcr.io ",
	} {
		want := clicred.ConvertToHostname(strings.TrimSpace(server))
		switch want {
		case "docker.io", "index.docker.io", "registry-1.docker.io":
			want = "https://index.docker.io/v1/"
		}
		if got := stacks.AuthKey(server); got != want {
			t.Errorf("AuthKey(%q) = %q, the Docker CLI's host is %q", server, got, want)
		}
	}
}

// TestAuthKeyIsTheCLIsGenerated: stacks.AuthKey re-implements the Docker
// CLI's credentials.ConvertToHostname so that the agent need not link the
// CLI; they agree on many generated addresses.
func TestAuthKeyIsTheCLIsGenerated(t *testing.T) {
	parts := []string{"https://", "http://", "://", "a", "reg.example.com", ":", "5000", "/", "[", "]", "::1", "fd00::1", "@", "user:pw@", "%", "%zz", "?", "#", " ", "docker.io", "x", "0", "65536", ":abc", "\t"}
	rng := rand.New(rand.NewPCG(3, 4))
	bad := 0
	for range 200000 {
		var b strings.Builder
		for range 1 + rng.IntN(6) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		server := b.String()
		want := clicred.ConvertToHostname(strings.TrimSpace(server))
		switch want {
		case "docker.io", "index.docker.io", "registry-1.docker.io":
			want = "https://index.docker.io/v1/"
		}
		if got := stacks.AuthKey(server); got != want {
			if bad++; bad <= 10 {
				t.Errorf("AuthKey(%q) = %q, the Docker CLI's is %q", server, got, want)
			}
		}
	}
}
