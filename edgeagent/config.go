package edgeagent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
	// HostRoot is where the device's root file system is, for edge jobs:
	// EDGE_HOST_ROOT, else /host when it exists (the agent's container
	// mounts it there), else / (the agent runs on the host).
	HostRoot string
	// StackPrefix is put before every edge stack's compose project name
	// (EDGE_STACK_PREFIX), so that several agents can share one engine.
	StackPrefix string
	// Inactivity closes a standard agent's tunnel after that long without
	// a request (EDGE_INACTIVITY_TIMEOUT, a Go duration or seconds).
	Inactivity   time.Duration
	Groups, Tags []string
	Logger       *slog.Logger
}

// DefaultInactivity is how long a standard agent's tunnel stays open
// without a request.
const DefaultInactivity = 5 * time.Minute

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
		HostRoot:     getenv("EDGE_HOST_ROOT"),
		StackPrefix:  getenv("EDGE_STACK_PREFIX"),
		Groups:       splitList(getenv("EDGE_GROUPS")),
		Tags:         splitList(getenv("EDGE_TAGS")),
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	// Resolved once, here: compose projects and job scripts need absolute
	// paths, and the agent must not depend on its working directory.
	if abs, err := filepath.Abs(c.DataDir); err != nil {
		errs = append(errs, fmt.Errorf("OUTPOST_DATA_DIR=%q: %w", c.DataDir, err))
	} else {
		c.DataDir = abs
	}
	if c.HostRoot == "" {
		c.HostRoot = "/"
		if fi, err := os.Stat("/host"); err == nil && fi.IsDir() {
			c.HostRoot = "/host"
		}
	} else if fi, err := os.Stat(c.HostRoot); err != nil || !fi.IsDir() {
		errs = append(errs, fmt.Errorf("EDGE_HOST_ROOT=%q: not a directory; mount the device's root there (-v /:/host) or unset it", c.HostRoot))
	}
	if v := getenv("EDGE"); v != "1" {
		errs = append(errs, fmt.Errorf("EDGE=%q: set EDGE=1; the agent only runs in edge mode", v))
	}
	if v := getenv("EDGE_ASYNC"); v != "" && v != "0" && v != "1" {
		errs = append(errs, fmt.Errorf("EDGE_ASYNC=%q: 1 for an async agent, unset or 0 for a standard one", v))
	}
	c.Inactivity = DefaultInactivity
	if v := strings.TrimSpace(getenv("EDGE_INACTIVITY_TIMEOUT")); v != "" {
		d, err := time.ParseDuration(v)
		if n, nerr := strconv.Atoi(v); nerr == nil {
			d, err = time.Duration(n)*time.Second, nil
		}
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf("EDGE_INACTIVITY_TIMEOUT=%q: a duration such as 5m or 300 (seconds), at least 1s", v))
		} else {
			c.Inactivity = d
		}
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
