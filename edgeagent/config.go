package edgeagent

import (
	"crypto/tls"
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
	InsecurePoll bool             // accept the server's self-signed certificate
	ClientCert   *tls.Certificate // EDGE_CLIENT_CERT and EDGE_CLIENT_KEY, for a server with --client-ca
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
	cert, key := getenv("EDGE_CLIENT_CERT"), getenv("EDGE_CLIENT_KEY")
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		errs = append(errs, fmt.Errorf("EDGE_CLIENT_CERT=%q, EDGE_CLIENT_KEY=%q: set both (the device's client certificate and its key, PEM files) or neither", cert, key))
	default:
		if kp, err := tls.LoadX509KeyPair(cert, key); err != nil {
			errs = append(errs, fmt.Errorf("EDGE_CLIENT_CERT=%q, EDGE_CLIENT_KEY=%q: %w", cert, key, err))
		} else {
			c.ClientCert = &kp
		}
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
