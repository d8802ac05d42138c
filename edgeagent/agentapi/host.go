package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// HostInfo is the answer of GET /v2/host/info. Fields the agent could not
// read are empty; DockerError says why the engine's are.
type HostInfo struct {
	Hostname         string  `json:"hostname"`
	OS               string  `json:"os"`     // GOOS, e.g. "linux"
	Arch             string  `json:"arch"`   // GOARCH, e.g. "amd64"
	Kernel           string  `json:"kernel"` // kernel release, e.g. "6.1.0-18-amd64"
	CPUs             int     `json:"cpus"`
	MemoryTotal      uint64  `json:"memoryTotal"` // bytes
	DockerVersion    string  `json:"dockerVersion"`
	DockerAPIVersion string  `json:"dockerApiVersion"`
	DockerError      string  `json:"dockerError,omitempty"`
	AgentVersion     string  `json:"agentVersion"`
	APIVersion       string  `json:"apiVersion"`
	Uptime           float64 `json:"uptime"`      // host uptime, seconds
	AgentUptime      float64 `json:"agentUptime"` // seconds since New
}

// engineTimeout bounds the engine call of /v2/host/info.
const engineTimeout = 10 * time.Second

// hostInfo answers HostInfo. It answers 200 without the engine's fields when
// the engine is down: the host's own are still worth having.
func (a *API) hostInfo(w http.ResponseWriter, r *http.Request) error {
	info := HostInfo{
		OS:           runtime.GOOS,
		Arch:         runtime.GOARCH,
		CPUs:         runtime.NumCPU(),
		AgentVersion: a.cfg.Version,
		APIVersion:   APIVersion,
		AgentUptime:  time.Since(a.started).Seconds(),
	}
	info.Hostname, _ = os.Hostname()
	// Linux only; elsewhere these stay empty.
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		info.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		info.MemoryTotal = memTotal(b)
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			info.Uptime, _ = strconv.ParseFloat(f[0], 64)
		}
	}

	ctx, cancel := context.WithTimeout(r.Context(), engineTimeout)
	defer cancel()
	if v, err := a.cli.ServerVersion(ctx, client.ServerVersionOptions{}); err != nil {
		info.DockerError = err.Error()
	} else {
		info.DockerVersion, info.DockerAPIVersion = v.Version, v.APIVersion
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// memTotal returns MemTotal from /proc/meminfo's text, in bytes, or 0.
func memTotal(meminfo []byte) uint64 {
	s := bufio.NewScanner(bytes.NewReader(meminfo))
	for s.Scan() {
		f := strings.Fields(s.Text()) // "MemTotal:", "16314880", "kB"
		if len(f) >= 2 && f[0] == "MemTotal:" {
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0
			}
			if len(f) >= 3 && f[2] == "kB" {
				n *= 1024
			}
			return n
		}
	}
	return 0
}
