package stacks_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"outpost/edgeagent/stacks"
	helper "outpost/edgeagent/stacks/compose"
)

// helperEnv makes this test binary the compose helper: the Runners of these
// tests start it instead of outpost-compose, so they need no build of it
// and run the helper's real code over the real pipe.
const helperEnv = "OUTPOST_STACKS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helper.Main(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// newRunner returns a Runner whose compose helper is this test binary.
func newRunner(t *testing.T, log *slog.Logger) *stacks.Runner {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, err := stacks.New(stacks.Config{Log: log, Helper: exe, HelperEnv: []string{helperEnv + "=1"}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// registrySecret is a registry password the helper must not show.
const registrySecret = "S3cr3t-R3gistry-Passw0rd"

// TestHelperEnvironmentHoldsNoSecret: a fake helper records its environment
// and arguments; neither holds EDGE_KEY nor the registry password.
func TestHelperEnvironmentHoldsNoSecret(t *testing.T) {
	t.Setenv("EDGE_KEY", "edge-key-secret-value")
	dir := t.TempDir()
	helper := filepath.Join(dir, stacks.HelperName)
	if err := os.WriteFile(helper, []byte("#!/bin/sh\nenv > "+dir+"/env\necho \"$0 $*\" > "+dir+"/args\ncat > /dev/null\necho '{}'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := stacks.New(stacks.Config{Helper: helper})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	spec := stacks.Spec{Project: "test-env", Compose: []byte("services: {web: {image: x}}"), Dir: dir,
		Auth: map[string]stacks.Auth{"registry.example.com": {Username: "u", Password: registrySecret}}}
	if err := r.Deploy(context.Background(), spec); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	for _, f := range []string{"env", "args"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"edge-key-secret-value", registrySecret} {
			if strings.Contains(string(b), secret) {
				t.Errorf("the helper's %s holds %q", f, secret)
			}
		}
	}
}
