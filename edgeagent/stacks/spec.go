package stacks

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	clitypes "github.com/docker/cli/cli/config/types"
	"github.com/docker/compose/v5/pkg/api"

	"outpost/protocol"
)

// Spec is one edge stack to deploy.
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

// composeFile is the name the compose file is given inside Dir. Nothing is
// written there: it names the file in errors and in the
// com.docker.compose.project.config_files label.
const composeFile = "compose.yaml"

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
	for _, server := range sortedKeys(s.Auth) {
		if authKey(server) == "" {
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

// validProject checks a compose project name the way Compose does.
func validProject(name string) error {
	if name == "" {
		return errors.New("project name is empty")
	}
	if loader.NormalizeProjectName(name) != name {
		return fmt.Errorf("project name %q: use only lowercase letters, digits, '-' and '_', starting with a letter or digit", name)
	}
	return nil
}

// load parses, interpolates and validates the compose file the way
// `docker compose` does, with two differences on purpose: the variables are
// Spec.Env alone (Compose's own loader would add the agent's process
// environment, so ${HOME} or an agent secret could leak into a stack) and
// nothing is fetched from a remote `include`. The error wraps ErrInvalid.
func (s Spec) load(ctx context.Context) (*types.Project, error) {
	env := maps.Clone(s.Env) // the loader writes COMPOSE_PROJECT_NAME into it
	if env == nil {
		env = map[string]string{}
	}
	details := types.ConfigDetails{
		WorkingDir:  s.Dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(s.Dir, composeFile), Content: s.Compose}},
		Environment: env,
	}
	p, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName(s.Project, true)
		o.PruneUnnecessaryResources = true
	})
	if err != nil {
		return nil, fmt.Errorf("%w: compose file: %w: fix the stack's compose file", ErrInvalid, err)
	}
	p.ComposeFiles = []string{details.ConfigFiles[0].Filename}

	var errs []error
	for _, name := range p.ServiceNames() {
		svc := p.Services[name]
		if svc.Image == "" {
			errs = append(errs, fmt.Errorf("service %q has no image: images are not built on the device; push it to a registry and name it in image", name))
			continue
		}
		// The labels Compose's own loader puts on every service: they are
		// how Compose (and Status) finds the project's containers.
		svc.CustomLabels = map[string]string{
			api.ProjectLabel:     p.Name,
			api.ServiceLabel:     name,
			api.VersionLabel:     api.ComposeVersion,
			api.WorkingDirLabel:  p.WorkingDir,
			api.ConfigFilesLabel: strings.Join(p.ComposeFiles, ","),
			api.OneoffLabel:      "False",
		}
		p.Services[name] = svc
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: compose file: %w", ErrInvalid, errors.Join(errs...))
	}
	return p, nil
}

// credentials returns a Docker CLI configuration that lives in memory only:
// its credentials are s.Auth and nothing else (no credential helper, no
// ~/.docker/config.json logins), and it has no file name, so saving it fails
// instead of writing to disk. Proxies are copied from base so containers get
// the proxy variables `docker compose` would give them.
func (s Spec) credentials(base *configfile.ConfigFile) *configfile.ConfigFile {
	cfg := configfile.New("")
	if base != nil && len(base.Proxies) > 0 {
		cfg.Proxies = maps.Clone(base.Proxies)
	}
	for server, a := range s.Auth {
		key := authKey(server)
		cfg.AuthConfigs[key] = clitypes.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: key}
	}
	return cfg
}

// authKey is the key the Docker CLI looks credentials up by: the registry's
// host[:port], or Docker Hub's historical index URL.
func authKey(server string) string {
	host := credentials.ConvertToHostname(strings.TrimSpace(server))
	switch host {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "https://index.docker.io/v1/"
	}
	return host
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
