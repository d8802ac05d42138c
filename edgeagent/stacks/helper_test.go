package stacks_test

import (
	"log/slog"
	"os"
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
