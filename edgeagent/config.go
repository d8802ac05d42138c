package edgeagent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"outpost/protocol"
)

// Version is the agent's version, set at build time.
var Version = "dev"

// Config is the agent's configuration, read from the environment.
type Config struct {
	Key          protocol.EdgeKey
	EdgeID       string // from EDGE_ID; generated and kept in DataDir when empty
	Async        bool
	InsecurePoll bool // accept the server's self-signed certificate
	DataDir      string
	Groups, Tags []string
	Logger       *slog.Logger
}

// DefaultDataDir is where the agent keeps its state when OUTPOST_DATA_DIR is unset.
const DefaultDataDir = "/data"

// ConfigFromEnv reads the agent's environment variables. It reports every
// problem at once, naming the variable and its value.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	c := Config{
		EdgeID:       strings.TrimSpace(getenv("EDGE_ID")),
		Async:        getenv("EDGE_ASYNC") == "1",
		InsecurePoll: getenv("EDGE_INSECURE_POLL") == "1",
		DataDir:      getenv("OUTPOST_DATA_DIR"),
		Groups:       splitList(getenv("EDGE_GROUPS")),
		Tags:         splitList(getenv("EDGE_TAGS")),
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if v := getenv("EDGE"); v != "1" {
		errs = append(errs, fmt.Errorf("EDGE=%q: set EDGE=1; the agent only runs in edge mode", v))
	}
	if !c.Async {
		errs = append(errs, fmt.Errorf("EDGE_ASYNC=%q: this build runs async agents only; set EDGE_ASYNC=1", getenv("EDGE_ASYNC")))
	}
	key := getenv("EDGE_KEY")
	if key == "" {
		if b, err := os.ReadFile(keyPath(c.DataDir)); err == nil {
			key = string(b)
		}
	}
	if key == "" {
		errs = append(errs, errors.New("EDGE_KEY is empty: copy the edge key the server shows for this environment"))
	} else if k, err := protocol.ParseEdgeKey(key); err != nil {
		errs = append(errs, fmt.Errorf("EDGE_KEY: %w", err))
	} else {
		c.Key = k
	}
	if len(c.EdgeID) > 256 {
		errs = append(errs, fmt.Errorf("EDGE_ID: at most 256 characters, got %d", len(c.EdgeID)))
	}
	return c, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
