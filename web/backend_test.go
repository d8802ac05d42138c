package web_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost/snapshot"
	"outpost/web"
)

// fakeBackend is an in-memory web.Backend: one user, a fixed set of
// environments, snapshots and histories.
type fakeBackend struct {
	mu       sync.Mutex // guards tokens
	user     string
	password string
	tokens   map[string]bool

	envs  []web.Environment
	snaps map[uint64]*web.Snapshot
	hist  map[uint64][]web.HistoryEntry
	// stacks and their targets, by stack ID
	stacks  []web.Stack
	targets map[uint64][]web.StackTarget
	err     error // when set, every read fails with it

	readOnly bool // the user may read, not act
	tags     []web.Option
	groups   []web.Option // edge groups
	envGroup []web.Option
	// past snapshots by environment and seq, for SnapshotAt
	past map[uint64]map[uint64]*web.Snapshot
	// the waiting room, its onboarding settings, and what was asked of it
	waiting   []web.WaitingDevice
	onboard   web.Onboarding
	trusted   []trustCall
	rejected  [][]uint64
	rulesSet  *web.OnboardingRules
	rulesErr  []string
	rotations int
	// commands queued, and the log the commands tab shows
	queued []queued
	log    web.CommandLog
	// environments added and deleted through the forms
	created []web.NewEnvironment
	deleted []uint64
	// data usage: an environment's days, and the fleet's top users
	usage []web.UsageDay
	top   []web.UsageRow
	// a cluster: the user's role there (empty: environment administrator)
	// and namespaces, who is assigned what, and the assignments saved
	kubeRole string
	kubeNS   []string
	nsAccess web.NamespaceAccess
	nsSet    []nsSetCall
}

type nsSetCall struct {
	ns           string
	users, teams []uint64
}

type trustCall struct {
	actor             web.Actor
	ids, groups, tags []uint64
}

func (f *fakeBackend) Login(username, password, _ string) (string, error) {
	if username != f.user || password != f.password {
		return "", errors.New("invalid username or password")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := fmt.Sprintf("tok-%d", len(f.tokens)+1)
	f.tokens[tok] = true
	return tok, nil
}

func (f *fakeBackend) Authenticate(token string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokens[token] {
		return f.user, true
	}
	return "", false
}

func (f *fakeBackend) Logout(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tokens, token)
}

func (f *fakeBackend) EnvironmentPage(q web.EnvQuery) (web.EnvPage, error) {
	if f.err != nil {
		return web.EnvPage{}, f.err
	}
	p := web.EnvPage{Counts: map[string]int{}}
	var match []web.Environment
	for _, e := range f.envs {
		p.Counts[e.Status]++
		if (q.Status != "" && e.Status != q.Status) || (q.Mode != "" && e.Mode != q.Mode) ||
			(q.Name != "" && !strings.Contains(strings.ToLower(e.Name), strings.ToLower(q.Name))) {
			continue
		}
		match = append(match, e)
	}
	if q.Sort == "name" {
		slices.SortFunc(match, func(a, b web.Environment) int { return strings.Compare(a.Name, b.Name) })
	}
	if q.Desc {
		slices.Reverse(match)
	}
	p.Total = len(match)
	p.Items = match[min(q.Offset, len(match)):min(q.Offset+q.Limit, len(match))]
	return p, nil
}

func (f *fakeBackend) Environment(id uint64) (web.Environment, error) {
	if f.err != nil {
		return web.Environment{}, f.err
	}
	for _, e := range f.envs {
		if e.ID == id {
			return e, nil
		}
	}
	return web.Environment{}, fmt.Errorf("environment %d: %w", id, web.ErrNotFound)
}

func (f *fakeBackend) Snapshot(id uint64) (*web.Snapshot, error) {
	if f.err != nil {
		return nil, f.err
	}
	if s, ok := f.snaps[id]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("snapshot %d: %w", id, web.ErrNotFound)
}

func (f *fakeBackend) History(id uint64) ([]web.HistoryEntry, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.hist[id], nil
}

func (f *fakeBackend) Stacks() ([]web.Stack, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.stacks, nil
}

func (f *fakeBackend) Stack(id uint64) (web.Stack, []web.StackTarget, error) {
	if f.err != nil {
		return web.Stack{}, nil, f.err
	}
	for _, st := range f.stacks {
		if st.ID == id {
			return st, f.targets[id], nil
		}
	}
	return web.Stack{}, nil, fmt.Errorf("edge stack %d: %w", id, web.ErrNotFound)
}

// Environment IDs of the fake fleet.
const (
	envShop     = 1 // hand-built snapshot the tests assert on
	envVessel   = 2 // the real capture in testdata, when it exists
	envTruck    = 3 // never checked in
	envLab      = 4 // online, no snapshot yet
	envWindmill = 5
)

// newFake returns a fleet of edge devices whose times are relative to now.
func newFake(t testing.TB, now time.Time) *fakeBackend {
	f := &fakeBackend{
		user: "admin", password: "correct horse", tokens: map[string]bool{},
		snaps: map[uint64]*web.Snapshot{}, hist: map[uint64][]web.HistoryEntry{}, targets: map[uint64][]web.StackTarget{},
	}
	f.envs = []web.Environment{
		{ID: envShop, Name: "shop-042", Mode: "async", Status: "online", LastCheckIn: now.Add(-12 * time.Second),
			EdgeID: "shop-042-gw-7f3a", EdgeKey: "aHR0cHM6Ly9vdXRwb3N0LmV4YW1wbGUuY29tOjk0NDN8b3V0cG9zdC5leGFtcGxlLmNvbTo4MDAwfFNIQTI1NjpMTkM5VDRSdXVYK3YyNTJOcDRzTVIrMXVtNVp4UVZaQmRKWDl1KzQwVXRVfDE",
			AgentVersion: "0.3.1", Hostname: "shop-042-gw", Ping: 30 * time.Second, Snapshot: 5 * time.Minute, Command: time.Minute},
		{ID: envVessel, Name: "vessel-north-star", Mode: "async", Status: "offline", LastCheckIn: now.Add(-3*time.Hour - 4*time.Minute),
			EdgeID: "ns-vsat-01", EdgeKey: "aHR0cHM6Ly9vdXRwb3N0LmV4YW1wbGUuY29tOjk0NDN8b3V0cG9zdC5leGFtcGxlLmNvbTo4MDAwfFNIQTI1NjpMTkM5fDI",
			AgentVersion: "0.3.0", Hostname: "northstar-bridge", Ping: time.Hour, Snapshot: 6 * time.Hour, Command: 15 * time.Minute},
		{ID: envTruck, Name: "truck-1187", Mode: "async", Status: "never",
			EdgeKey: "aHR0cHM6Ly9vdXRwb3N0LmV4YW1wbGUuY29tOjk0NDN8b3V0cG9zdC5leGFtcGxlLmNvbTo4MDAwfFNIQTI1NjpMTkM5fDM",
			Ping:    5 * time.Minute, Snapshot: time.Hour, Command: 5 * time.Minute},
		{ID: envLab, Name: "lab-pi", Mode: "async", Status: "online", LastCheckIn: now.Add(-3 * time.Minute),
			EdgeID: "lab-pi-01", EdgeKey: "aHR0cHM6Ly9sb2NhbGhvc3Q6OTQ0M3xsb2NhbGhvc3Q6ODAwMHxTSEEyNTY6TE5DOXw0",
			AgentVersion: "0.3.1", Hostname: "raspberrypi", Ping: 30 * time.Second, Snapshot: 5 * time.Minute, Command: time.Minute},
		{ID: envWindmill, Name: "windfarm-07-t12", Mode: "standard", Status: "online", LastCheckIn: now.Add(-4 * time.Second),
			EdgeID: "wf07-t12", EdgeKey: "aHR0cHM6Ly9vdXRwb3N0LmV4YW1wbGUuY29tOjk0NDN8b3V0cG9zdC5leGFtcGxlLmNvbTo4MDAwfFNIQTI1NjpMTkM5fDU",
			AgentVersion: "0.3.1", Hostname: "t12-scada", Ping: 5 * time.Second, Snapshot: 5 * time.Second, Command: 5 * time.Second},
	}
	f.snaps[envShop] = &web.Snapshot{Seq: 42, Updated: now.Add(-3 * time.Minute), Kind: "delta", Docker: shopSnapshot(now)}
	f.hist[envShop] = shopHistory(now, 42)
	f.addStacks(now)
	if d := loadCapture(t); d != nil {
		f.snaps[envVessel] = &web.Snapshot{Seq: 7, Updated: now.Add(-3*time.Hour - 5*time.Minute), Kind: "full", Docker: d}
		f.hist[envVessel] = []web.HistoryEntry{{Seq: 7, Kind: "full", Bytes: 24_817, At: now.Add(-3*time.Hour - 5*time.Minute)}}
	}
	return f
}

// loadCapture reads the real Docker capture another package records, or
// returns nil when it has not been recorded on this checkout.
func loadCapture(t testing.TB) *snapshot.Snapshot {
	b, err := os.ReadFile("../testdata/docker/docker-50.json")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		t.Fatalf("read capture: %v", err)
	}
	var d snapshot.Snapshot
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("decode capture: %v", err)
	}
	return &d
}

// shopSnapshot is a shop gateway: a telemetry stack, a point-of-sale stack,
// the agent, and the usual leftovers.
func shopSnapshot(now time.Time) *snapshot.Snapshot {
	ago := func(d time.Duration) int64 { return now.Add(-d).Unix() }
	compose := func(project, service string) map[string]string {
		return map[string]string{
			snapshot.LabelProject: project, snapshot.LabelService: service,
			snapshot.LabelWorkingDir: "/opt/stacks/" + project, snapshot.LabelConfigFiles: "/opt/stacks/" + project + "/compose.yaml",
		}
	}
	day := 24 * time.Hour
	d := &snapshot.Snapshot{
		Engine: snapshot.Engine{Hostname: "shop-042-gw", ServerVersion: "27.3.1", APIVersion: "1.47", OS: "Debian GNU/Linux 12 (bookworm)",
			OSType: "linux", Arch: "x86_64", Kernel: "6.1.0-26-amd64", CPUs: 4, Memory: 8_254_169_088, StorageDriver: "overlay2"},
		Containers: []snapshot.Container{
			{ID: "a1b2c3d4e5f6", Name: "outpost-agent", Image: "outpost/agent:0.3.1", ImageID: "0a1b2c3d4e5f", State: snapshot.StateRunning,
				Created: ago(3 * day), Started: ago(3*day - time.Minute), Restart: "always",
				Mounts: []snapshot.Mount{{Type: "volume", Source: "outpost-agent-data", Destination: "/data"}, {Type: "bind", Source: "/var/run/docker.sock", Destination: "/var/run/docker.sock"}}},
			{ID: "b1c2d3e4f5a6", Name: "telemetry-mosquitto-1", Image: "eclipse-mosquitto:2.0.18", ImageID: "1a2b3c4d5e6f", State: snapshot.StateRunning, Health: snapshot.HealthHealthy,
				Created: ago(9 * day), Started: ago(2*day + 3*time.Hour), Restart: "unless-stopped", Labels: compose("telemetry", "mosquitto"),
				Ports:    []snapshot.Port{{Private: 1883, Public: 1883, IP: "0.0.0.0"}, {Private: 1883, Public: 1883, IP: "::"}},
				Mounts:   []snapshot.Mount{{Type: "volume", Source: "telemetry_mosquitto-data", Destination: "/mosquitto/data"}},
				Networks: []string{"telemetry_default"}},
			{ID: "c1d2e3f4a5b6", Name: "telemetry-influxdb-1", Image: "influxdb:2.7", ImageID: "2a3b4c5d6e7f", State: snapshot.StateRunning, Health: snapshot.HealthHealthy,
				Created: ago(9 * day), Started: ago(2*day + 3*time.Hour), Restart: "unless-stopped", Labels: compose("telemetry", "influxdb"),
				Ports:    []snapshot.Port{{Private: 8086}},
				Mounts:   []snapshot.Mount{{Type: "volume", Source: "telemetry_influx-data", Destination: "/var/lib/influxdb2"}},
				Networks: []string{"telemetry_default"}},
			{ID: "d1e2f3a4b5c6", Name: "telemetry-grafana-1", Image: "grafana/grafana:10.4.2", ImageID: "3a4b5c6d7e8f", State: snapshot.StateRunning,
				Created: ago(9 * day), Started: ago(5*time.Minute + 10*time.Second), Restart: "unless-stopped", Labels: compose("telemetry", "grafana"),
				Ports: []snapshot.Port{{Private: 3000, Public: 3000, IP: "0.0.0.0"}}, Networks: []string{"telemetry_default"}},
			{ID: "e1f2a3b4c5d6", Name: "telemetry-node-red-1", Image: "nodered/node-red:3.1", ImageID: "4a5b6c7d8e9f", State: snapshot.StateRestarting, ExitCode: 1,
				Created: ago(9 * day), Started: ago(40 * time.Second), Finished: ago(20 * time.Second), Restart: "always", Labels: compose("telemetry", "node-red"),
				Ports: []snapshot.Port{{Private: 1880, Public: 1880, IP: "0.0.0.0"}}, Networks: []string{"telemetry_default"}},
			{ID: "f1a2b3c4d5e6", Name: "pos-db-1", Image: "postgres:16-alpine", ImageID: "5a6b7c8d9e0f", State: snapshot.StateRunning, Health: snapshot.HealthHealthy,
				Created: ago(30 * day), Started: ago(6 * day), Restart: "unless-stopped", Labels: compose("pos", "db"),
				Ports:    []snapshot.Port{{Private: 5432}},
				Mounts:   []snapshot.Mount{{Type: "volume", Source: "pos_pgdata", Destination: "/var/lib/postgresql/data"}},
				Networks: []string{"pos_backend"}},
			{ID: "a2b3c4d5e6f7", Name: "pos-api-1", Image: "registry.example.com/pos/api:2.14.0", ImageID: "6a7b8c9d0e1f", State: snapshot.StateRunning, Health: snapshot.HealthUnhealthy,
				Created: ago(2 * day), Started: ago(2 * day), Restart: "unless-stopped", Labels: compose("pos", "api"),
				Ports: []snapshot.Port{{Private: 8080}}, Networks: []string{"pos_backend", "pos_default"}},
			{ID: "b2c3d4e5f6a7", Name: "pos-web-1", Image: "nginx:1.27-alpine", ImageID: "7a8b9c0d1e2f", State: snapshot.StateRunning,
				Created: ago(2 * day), Started: ago(2 * day), Restart: "unless-stopped", Labels: compose("pos", "web"),
				Ports:    []snapshot.Port{{Private: 80, Public: 8080, IP: "0.0.0.0"}, {Private: 443, Public: 8443, IP: "0.0.0.0"}},
				Networks: []string{"pos_default"}},
			{ID: "c2d3e4f5a6b7", Name: "pos-migrate-1", Image: "registry.example.com/pos/api:2.14.0", ImageID: "6a7b8c9d0e1f", State: snapshot.StateExited,
				Created: ago(2 * day), Started: ago(2 * day), Finished: ago(2*day - 40*time.Second), Labels: compose("pos", "migrate"),
				Networks: []string{"pos_backend"}},
			{ID: "d2e3f4a5b6c7", Name: "backup-nightly", Image: "restic/restic:0.16.4", ImageID: "8a9b0c1d2e3f", State: snapshot.StateExited,
				Created: ago(20 * day), Started: ago(9 * time.Hour), Finished: ago(9*time.Hour - 4*time.Minute),
				Mounts: []snapshot.Mount{{Type: "volume", Source: "pos_pgdata", Destination: "/backup/pgdata", ReadOnly: true}}},
			{ID: "e2f3a4b5c6d7", Name: "label-printer", Image: "registry.example.com/shop/label-printer:1.8", ImageID: "9a0b1c2d3e4f", State: snapshot.StateExited, ExitCode: 137,
				Created: ago(20 * day), Started: ago(5 * time.Hour), Finished: ago(2*time.Hour + 30*time.Second), Restart: "on-failure"},
			{ID: "f2a3b4c5d6e7", Name: "camera-bridge", Image: "registry.example.com/shop/camera-bridge:0.9.2", ImageID: "0b1c2d3e4f5a", State: snapshot.StateCreated,
				Created: ago(50 * time.Minute)},
			{ID: "a3b4c5d6e7f8", Name: "firmware-updater", Image: "registry.example.com/shop/fw-updater:3.2", ImageID: "1b2c3d4e5f6a", State: snapshot.StatePaused,
				Created: ago(12 * day), Started: ago(12 * day)},
			{ID: "b3c4d5e6f7a8", Name: "<script>alert('name')</script>", Image: "busybox:1.36", ImageID: "2b3c4d5e6f7a", State: snapshot.StateExited,
				Created: ago(4 * day), Started: ago(4 * day), Finished: ago(4 * day), ExitCode: 0},
		},
		Images: []snapshot.Image{
			{ID: "0a1b2c3d4e5f", Tags: []string{"outpost/agent:0.3.1"}, Size: 14_212_096, Created: ago(6 * day)},
			{ID: "1a2b3c4d5e6f", Tags: []string{"eclipse-mosquitto:2.0.18"}, Size: 12_300_000, Created: ago(200 * day)},
			{ID: "2a3b4c5d6e7f", Tags: []string{"influxdb:2.7"}, Size: 412_345_678, Created: ago(60 * day)},
			{ID: "3a4b5c6d7e8f", Tags: []string{"grafana/grafana:10.4.2"}, Size: 439_012_345, Created: ago(180 * day)},
			{ID: "4a5b6c7d8e9f", Tags: []string{"nodered/node-red:3.1"}, Size: 555_444_333, Created: ago(300 * day)},
			{ID: "5a6b7c8d9e0f", Tags: []string{"postgres:16-alpine"}, Size: 243_876_543, Created: ago(25 * day)},
			{ID: "6a7b8c9d0e1f", Tags: []string{"registry.example.com/pos/api:2.14.0", "registry.example.com/pos/api:latest"}, Size: 98_765_432, Created: ago(3 * day)},
			{ID: "7a8b9c0d1e2f", Tags: []string{"nginx:1.27-alpine"}, Size: 47_951_234, Created: ago(40 * day)},
			{ID: "8a9b0c1d2e3f", Tags: []string{"restic/restic:0.16.4"}, Size: 31_456_789, Created: ago(250 * day)},
			{ID: "9a0b1c2d3e4f", Tags: []string{"registry.example.com/shop/label-printer:1.8"}, Size: 61_234_567, Created: ago(90 * day)},
			{ID: "0b1c2d3e4f5a", Tags: []string{"registry.example.com/shop/camera-bridge:0.9.2"}, Size: 187_654_321, Created: ago(day)},
			{ID: "1b2c3d4e5f6a", Tags: []string{"registry.example.com/shop/fw-updater:3.2"}, Size: 22_123_456, Created: ago(120 * day)},
			{ID: "2b3c4d5e6f7a", Tags: []string{"busybox:1.36"}, Size: 4_261_550, Created: ago(400 * day)},
			{ID: "3b4c5d6e7f8a", Size: 98_112_233, Created: ago(10 * day)},
		},
		Volumes: []snapshot.Volume{
			{Name: "outpost-agent-data", Created: ago(3 * day)},
			{Name: "pos_pgdata", Created: ago(30 * day), Labels: map[string]string{snapshot.LabelProject: "pos"}},
			{Name: "telemetry_influx-data", Created: ago(9 * day), Labels: map[string]string{snapshot.LabelProject: "telemetry"}},
			{Name: "telemetry_mosquitto-data", Created: ago(9 * day), Labels: map[string]string{snapshot.LabelProject: "telemetry"}},
			{Name: "5f0c9b3e8a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c", Created: ago(15 * day)},
		},
		Networks: []snapshot.Network{
			{ID: "4c5d6e7f8a9b", Name: "bridge", Driver: "bridge", Scope: "local", Subnets: []string{"172.17.0.0/16"}},
			{ID: "5c6d7e8f9a0b", Name: "host", Driver: "host", Scope: "local"},
			{ID: "6c7d8e9f0a1b", Name: "none", Driver: "null", Scope: "local"},
			{ID: "7c8d9e0f1a2b", Name: "telemetry_default", Driver: "bridge", Scope: "local", Subnets: []string{"172.20.0.0/16"}},
			{ID: "8c9d0e1f2a3b", Name: "pos_default", Driver: "bridge", Scope: "local", Subnets: []string{"172.21.0.0/16", "fd00:21::/64"}},
			{ID: "9c0d1e2f3a4b", Name: "pos_backend", Driver: "bridge", Scope: "local", Subnets: []string{"172.22.0.0/16"}, Internal: true},
		},
		Projects: []snapshot.Project{
			{Name: "pos", WorkingDir: "/opt/stacks/pos", ConfigFiles: "/opt/stacks/pos/compose.yaml", Services: []string{"api", "db", "migrate", "web"}},
			{Name: "telemetry", WorkingDir: "/opt/stacks/telemetry", ConfigFiles: "/opt/stacks/telemetry/compose.yaml", Services: []string{"grafana", "influxdb", "mosquitto", "node-red"}},
		},
	}
	snapshot.Normalize(d)
	return d
}

// shopHistory is a day of pushes every 5 minutes up to seq last: a full
// snapshot first, deltas after, and one full resend after a gap.
func shopHistory(now time.Time, last uint64) []web.HistoryEntry {
	var out []web.HistoryEntry
	for seq := uint64(1); seq <= last; seq++ {
		at := now.Add(-time.Duration(last-seq)*5*time.Minute - 3*time.Minute)
		e := web.HistoryEntry{Seq: seq, Base: seq - 1, Kind: "delta", Bytes: 180 + int(seq*37%520), At: at}
		if seq == 1 || seq == 23 {
			e = web.HistoryEntry{Seq: seq, Kind: "full", Bytes: 18_944 + int(seq)*11, At: at}
		}
		out = append(out, e)
	}
	return out
}

// Edge stack IDs of the fake fleet.
const (
	stackTelemetry = 1 // over the whole fleet, in every status
	stackPOS       = 2 // two running, one still pending
	stackEmpty     = 3 // its group has no environment yet
)

// addStacks deploys three stacks over the fleet. Each stack's Statuses
// count its targets, as the server's do.
func (f *fakeBackend) addStacks(now time.Time) {
	at := func(d time.Duration) time.Time { return now.Add(-d) }
	f.targets[stackTelemetry] = []web.StackTarget{
		{EnvID: envShop, EnvName: "shop-042", Version: 3, Status: "running", Updated: at(2 * time.Minute)},
		{EnvID: envVessel, EnvName: "vessel-north-star", Version: 3, Status: "error", Updated: at(3 * time.Hour),
			Error: "service \"grafana\": pull grafana/grafana:10.4.2: <html>503 Service Unavailable</html>"},
		{EnvID: envTruck, EnvName: "truck-1187", Version: 3, Status: "pending", Updated: at(20 * time.Minute)},
		{EnvID: envLab, EnvName: "lab-pi", Version: 3, Status: "deploying", Message: "Deployment shop/web: 1 of 2 replicas available", Updated: at(40 * time.Second)},
		{EnvID: envWindmill, EnvName: "windfarm-07-t12", Version: 3, Status: "running", Updated: at(5 * time.Second)},
		{EnvID: 6, EnvName: "kiosk-<b>9</b>", Version: 2, Status: "acknowledged", Updated: at(9 * time.Second)},
		{EnvID: 7, Version: 2, Status: "removing", Remove: true, Updated: at(time.Hour)},
		{EnvID: 8, EnvName: "shop-043", Version: 3, Status: "running", Updated: at(4 * time.Minute)},
	}
	f.targets[stackPOS] = []web.StackTarget{
		{EnvID: envShop, EnvName: "shop-042", Version: 1, Status: "running", Updated: at(2 * 24 * time.Hour)},
		{EnvID: 8, EnvName: "shop-043", Version: 1, Status: "running", Updated: at(2 * 24 * time.Hour)},
		{EnvID: envLab, EnvName: "lab-pi", Version: 1, Status: "pending", Updated: at(time.Minute)},
	}
	f.stacks = []web.Stack{
		{ID: stackTelemetry, Name: "telemetry", Version: 3, EdgeGroups: []string{"shops", "vessels", "wind"},
			Registries: []string{"registry.example.com"}, Created: at(9 * 24 * time.Hour), Updated: at(25 * time.Minute), By: "admin"},
		{ID: stackPOS, Name: "pos", Version: 1, EdgeGroups: []string{"shops"}, Created: at(2 * 24 * time.Hour), Updated: at(2 * 24 * time.Hour), By: "ops"},
		{ID: stackEmpty, Name: "camera-bridge", Version: 1, EdgeGroups: []string{"cameras"}, Created: at(time.Hour), Updated: at(time.Hour), By: "admin"},
	}
	for i := range f.stacks {
		by := map[string]int{}
		for _, t := range f.targets[f.stacks[i].ID] {
			by[t.Status]++
		}
		f.stacks[i].Statuses = by
	}
}
