package stacks

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"outpost/protocol"
)

// Spec is one edge stack to deploy. It travels to the compose helper as
// JSON on its standard input (credentials included: never on its command
// line or in its environment).
type Spec struct {
	Project string            // compose project name, e.g. "outpost-stack-12": lowercase letters, digits, '-' and '_', starting with a letter or digit
	Compose []byte            // the compose YAML
	Env     map[string]string // variables for interpolation in the compose file, like an .env file; the only variables it sees
	Auth    map[string]Auth   // registry credentials by server address ("registry.example.com:5000", "docker.io"), for pulls, in memory only
	Dir     string            // absolute working directory for relative paths in the compose file (env_file, bind mounts)

	// Type is "" or protocol.StackCompose for a compose stack, the only
	// kind this package runs. A Kubernetes stack (protocol.StackKubernetes)
	// has its YAML documents in Manifests and its default namespace in
	// Namespace, for the runner of an agent in a cluster (kube.Stacks).
	Type      string
	Manifests []byte
	Namespace string
	// Version is the stack's version, which a Kubernetes stack labels its
	// objects with; Compose does not use it.
	Version uint64
}

// Auth is a registry login.
type Auth struct{ Username, Password string }

// Validate reports every problem of s at once, each with the offending value;
// the error wraps ErrInvalid. It does not parse the compose file: Deploy does.
func (s Spec) Validate() error {
	if s.Type != "" && s.Type != protocol.StackCompose {
		return fmt.Errorf("%w: a %s stack cannot run on this device, which runs compose stacks on Docker: target it at environments whose agent runs in a Kubernetes cluster", ErrInvalid, s.Type)
	}
	var errs []error
	if err := validProject(s.Project); err != nil {
		errs = append(errs, err)
	}
	if len(strings.TrimSpace(string(s.Compose))) == 0 {
		errs = append(errs, errors.New("compose file is empty: give the stack's compose YAML"))
	}
	if s.Dir == "" {
		errs = append(errs, errors.New("dir is empty: give the stack's working directory"))
	} else if !filepath.IsAbs(s.Dir) {
		errs = append(errs, fmt.Errorf("dir %q is not absolute", s.Dir))
	}
	for _, server := range slices.Sorted(maps.Keys(s.Auth)) {
		if AuthKey(server) == "" {
			errs = append(errs, fmt.Errorf("auth: server address %q has no host", server))
		}
		if s.Auth[server].Username == "" {
			errs = append(errs, fmt.Errorf("auth %s: username is empty", server))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// validProject checks a compose project name the way Compose does: its
// loader's NormalizeProjectName must leave it as it is, that is, lowercase
// letters, digits, '-' and '_', not starting with '-' or '_'.
func validProject(name string) error {
	if name == "" {
		return errors.New("project name is empty")
	}
	ok := name[0] != '-' && name[0] != '_'
	for _, c := range name {
		ok = ok && (c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	}
	if !ok {
		return fmt.Errorf("project name %q: use only lowercase letters, digits, '-' and '_', starting with a letter or digit", name)
	}
	return nil
}

// AuthKey is the key the Docker CLI looks credentials up by: the registry's
// host[:port], or Docker Hub's historical index URL. The host is what the
// Docker CLI's credentials.ConvertToHostname makes of server (the compose
// helper's tests hold the two equal).
func AuthKey(server string) string {
	host := hostname(strings.TrimSpace(server))
	switch host {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "https://index.docker.io/v1/"
	}
	return host
}

// hostname is docker/cli's credentials.ConvertToHostname: the host[:port]
// of a URL, else what comes before the first '/'.
func hostname(maybeURL string) string {
	if strings.Contains(maybeURL, "://") {
		if u, err := url.Parse(maybeURL); err == nil && u.Hostname() != "" {
			if u.Port() == "" {
				return u.Hostname()
			}
			return net.JoinHostPort(u.Hostname(), u.Port())
		}
		// Unbracketed IPv6 literals, which net/url refuses.
		_, rest, _ := strings.Cut(maybeURL, "://")
		if host, _, _ := strings.Cut(rest, "/"); host != "" {
			if strings.Count(host, ":") > 1 && !strings.HasPrefix(host, "[") {
				i := strings.LastIndex(host, ":")
				if addr, port := host[:i], host[i+1:]; addr != "" && isPort(port) {
					return net.JoinHostPort(addr, port)
				}
			}
			return host
		}
	}
	host, _, _ := strings.Cut(maybeURL, "/")
	return host
}

func isPort(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
