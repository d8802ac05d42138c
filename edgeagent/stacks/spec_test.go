package stacks_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"outpost/edgeagent/stacks"
)

const okCompose = "services:\n  web:\n    image: busybox\n"

func TestSpecValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		spec stacks.Spec
		want []string // substrings of the error; none: valid
	}{
		{"ok", stacks.Spec{Project: "outpost-stack-1", Compose: []byte(okCompose), Dir: dir}, nil},
		{"ok with auth", stacks.Spec{Project: "s_2", Compose: []byte(okCompose), Dir: dir,
			Auth: map[string]stacks.Auth{"registry.example.com:5000": {Username: "u", Password: "p"}}}, nil},
		{"empty project", stacks.Spec{Compose: []byte(okCompose), Dir: dir}, []string{"project name is empty"}},
		{"upper case", stacks.Spec{Project: "Outpost", Compose: []byte(okCompose), Dir: dir}, []string{`project name "Outpost"`}},
		{"space", stacks.Spec{Project: "my stack", Compose: []byte(okCompose), Dir: dir}, []string{`project name "my stack"`}},
		{"leading dash", stacks.Spec{Project: "-x", Compose: []byte(okCompose), Dir: dir}, []string{`project name "-x"`}},
		{"empty compose", stacks.Spec{Project: "a", Compose: []byte(" \n"), Dir: dir}, []string{"compose file is empty"}},
		{"typed compose", stacks.Spec{Project: "a", Compose: []byte(okCompose), Dir: dir, Type: "compose"}, nil},
		{"kubernetes on Docker", stacks.Spec{Project: "a", Manifests: []byte("kind: ConfigMap\n"), Dir: dir, Type: "kubernetes"},
			[]string{"a kubernetes stack cannot run on this device, which runs compose stacks on Docker"}},
		{"relative dir", stacks.Spec{Project: "a", Compose: []byte(okCompose), Dir: "stacks/a"}, []string{`dir "stacks/a" is not absolute`}},
		{"no user", stacks.Spec{Project: "a", Compose: []byte(okCompose), Dir: dir,
			Auth: map[string]stacks.Auth{"docker.io": {Password: "p"}}}, []string{"auth docker.io: username is empty"}},
		{"all at once", stacks.Spec{Project: "A B"}, []string{"project name", "compose file is empty", "dir is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, stacks.ErrInvalid) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestDeployRejectsBeforeEngine: a bad Spec or compose file is refused
// before the engine is contacted (DOCKER_HOST points nowhere here), with
// the operation and project in front of the error.
func TestDeployRejectsBeforeEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-engine.sock")
	r := newRunner(t, nil)
	dir := t.TempDir()
	tests := []struct {
		name    string
		spec    stacks.Spec
		want    []string
		wantErr error
	}{
		{"bad name", stacks.Spec{Project: "Bad", Compose: []byte(okCompose), Dir: dir},
			[]string{"deploy Bad: ", `project name "Bad"`}, stacks.ErrInvalid},
		{"yaml syntax", stacks.Spec{Project: "s1", Compose: []byte("services: [\n"), Dir: dir},
			[]string{"deploy s1: ", "compose file"}, stacks.ErrInvalid},
		{"schema", stacks.Spec{Project: "s2", Compose: []byte("services:\n  web:\n    image: busybox\n    restart: sometimes\n    bogus: 1\n"), Dir: dir},
			[]string{"deploy s2: ", "compose file", "bogus"}, stacks.ErrInvalid},
		{"required variable", stacks.Spec{Project: "s3", Compose: []byte("services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n"), Dir: dir},
			[]string{"deploy s3: ", "set IMAGE"}, stacks.ErrInvalid},
		{"no image", stacks.Spec{Project: "s4", Compose: []byte("services:\n  web:\n    build: .\n"), Dir: dir},
			[]string{"deploy s4: ", `service "web" has no image`}, stacks.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Deploy(context.Background(), tt.spec)
			t.Log(err)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Deploy() = %v, want an error wrapping %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Deploy() = %q, want it to contain %q", err, w)
				}
			}
		})
	}

	for name, f := range map[string]func() error{
		"remove": func() error { return r.Remove(context.Background(), "No Such") },
		"status": func() error { _, err := r.Status(context.Background(), "No Such"); return err },
	} {
		if err := f(); !errors.Is(err, stacks.ErrInvalid) || !strings.HasPrefix(err.Error(), name+" No Such: ") {
			t.Errorf("%s of a bad name = %v, want %q prefix and ErrInvalid", name, err, name+" No Such: ")
		}
	}
}
