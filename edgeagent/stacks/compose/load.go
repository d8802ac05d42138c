package compose

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/cli/cli/config/configfile"
	clitypes "github.com/docker/cli/cli/config/types"
	"github.com/docker/compose/v5/pkg/api"

	"outpost/edgeagent/stacks"
)

// composeFile is the name the compose file is given inside Spec.Dir.
// Nothing is written there: it names the file in errors and in the
// com.docker.compose.project.config_files label.
const composeFile = "compose.yaml"

// load parses, interpolates and validates the compose file the way
// `docker compose` does, with two differences on purpose: the variables are
// Spec.Env alone (Compose's own loader would add the process environment,
// so ${HOME} or an agent secret could leak into a stack) and nothing is
// fetched from a remote `include`. The error wraps stacks.ErrInvalid.
func load(ctx context.Context, s stacks.Spec) (*types.Project, error) {
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
		return nil, fmt.Errorf("%w: compose file: %w: fix the stack's compose file", stacks.ErrInvalid, err)
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
		return nil, fmt.Errorf("%w: compose file: %w", stacks.ErrInvalid, errors.Join(errs...))
	}
	return p, nil
}

// credentials returns a Docker CLI configuration that lives in memory only:
// its credentials are s.Auth and nothing else (no credential helper, no
// ~/.docker/config.json logins), and it has no file name, so saving it fails
// instead of writing to disk. Proxies are copied from base so containers get
// the proxy variables `docker compose` would give them.
func credentials(s stacks.Spec, base *configfile.ConfigFile) *configfile.ConfigFile {
	cfg := configfile.New("")
	if base != nil && len(base.Proxies) > 0 {
		cfg.Proxies = maps.Clone(base.Proxies)
	}
	for server, a := range s.Auth {
		key := stacks.AuthKey(server)
		cfg.AuthConfigs[key] = clitypes.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: key}
	}
	return cfg
}
