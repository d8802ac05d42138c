package sim

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/snapshot"
)

// Every problem of a config is reported at once, each with its name.
func TestConfigReportsEveryProblem(t *testing.T) {
	cfg := Config{Server: "http://x", Devices: -1, Freq: -2, CommandsPerSec: -1, ChangesPerHour: -1, Capture: "none.json", Testdata: t.TempDir(),
		Standard: 2, PollFreq: 5000, Tunnels: 3, BusyTunnels: 4, TunnelRequestsPerSec: -1, StackGroup: 2}.withDefaults()
	err := cfg.check()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"server \"http://x\"", "password", "devices -1", "freq -2", "commands-per-sec -1", "changes-per-hour -1", "capture none.json",
		"poll-freq 5000", "tunnels 3", "busy-tunnels 4", "tunnel-requests-per-sec -1", "stack-group 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	ok := Config{Server: "https://127.0.0.1:9443", Password: "pw", Testdata: filepath.Join("..", "testdata", "docker")}.withDefaults()
	if err := ok.check(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if ok.Grace != 2*time.Minute+10*time.Second || ok.Ramp != time.Minute || ok.Devices != Defaults.Devices || ok.PollFreq != 5 {
		t.Errorf("grace %v, ramp %v, devices %d, poll %d: want two frequencies and 10 s, one frequency, the defaults", ok.Grace, ok.Ramp, ok.Devices, ok.PollFreq)
	}
	// Standard devices only: no async default.
	std := Config{Server: "https://127.0.0.1:9443", Password: "pw", Testdata: filepath.Join("..", "testdata", "docker"), Standard: 10, Tunnels: 10, TunnelRequestsPerSec: 1, StackGroup: 10}.withDefaults()
	if err := std.check(); err != nil || std.Devices != 0 {
		t.Fatalf("standard only: devices %d, %v", std.Devices, err)
	}
	if f := std.freq(true); f != (protocol.Frequencies{Ping: 5, Snapshot: 60, Command: 5}) {
		t.Errorf("standard frequencies %+v", f)
	}
}

func TestQuantile(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		q    float64
		want float64
	}{
		{nil, 0.99, 0},
		{[]float64{5}, 0.5, 5},
		{[]float64{3, 1, 2, 4}, 0.5, 2},
		{[]float64{3, 1, 2, 4}, 0.99, 4},
		{[]float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 0.9, 9},
	} {
		if got := quantile(append([]float64(nil), tc.xs...), tc.q); got != tc.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", tc.xs, tc.q, got, tc.want)
		}
	}
}

func TestNiceCeil(t *testing.T) {
	for _, tc := range []struct{ v, want float64 }{{0, 1}, {0.3, 0.5}, {1, 1}, {1.2, 2}, {3, 5}, {7, 10}, {180, 200}, {504, 1000}} {
		if got := niceCeil(tc.v); got != tc.want {
			t.Errorf("niceCeil(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// A device's engine is the capture made its own, and its changes make
// keyed deltas that apply to the base and give the hash of the next
// snapshot, as the server checks them.
func TestDeviceSnapshots(t *testing.T) {
	capture, err := loadCapture(filepath.Join("..", "testdata", "docker"), "docker-50.json")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	d := &device{n: 7, rnd: rand.New(rand.NewPCG(1, 7))}
	d.eng = newContent(capture, 7, 1, now, d.rnd) // every container changes about once an hour
	if d.eng.cur.Engine.Hostname != "sim-7" || strings.Contains(d.eng.cur.Containers[0].ID, capture.Containers[0].ID) {
		t.Fatalf("engine not made the device's own: %s %s", d.eng.cur.Engine.Hostname, d.eng.cur.Containers[0].ID)
	}
	push, p, err := d.prepareSnapshot()
	if err != nil || push == nil || push.Base != 0 || push.Seq != 1 {
		t.Fatalf("first push %+v, %v: want full snapshot 1", push, err)
	}
	d.acked, d.base, d.baseVersion = p.seq, p.snap, p.version
	if push, _, _ := d.prepareSnapshot(); push != nil {
		t.Fatalf("push with nothing changed: %+v", push)
	}
	d.eng.nextChange = now // due now
	if n := d.eng.advance(now.Add(time.Minute), d.rnd); n == 0 {
		t.Fatal("no change applied")
	}
	delta, p2, err := d.prepareSnapshot()
	if err != nil || delta == nil || delta.Base != 1 || delta.Seq != 2 {
		t.Fatalf("delta push %+v, %v: want delta 1 -> 2", delta, err)
	}
	var dd snapshot.Delta
	if err := protocol.Unmarshal(delta.Data, &dd); err != nil {
		t.Fatal(err)
	}
	next, err := snapshot.Apply(d.base, &dd)
	if err != nil {
		t.Fatal(err)
	}
	h, err := snapshot.Hash(next)
	if err != nil || string(h[:snapshot.HashSize]) != string(delta.Hash) {
		t.Fatalf("the delta applied to the base does not give the pushed hash: %v", err)
	}
	if p2.version != d.eng.version {
		t.Errorf("pending at version %d, engine at %d", p2.version, d.eng.version)
	}
}

func TestReadProc(t *testing.T) {
	ps, err := readProc(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if ps.rss <= 0 || ps.cpu < 0 {
		t.Fatalf("own process: %+v", ps)
	}
	if n, err := fileLimit(os.Getpid()); err != nil || n == 0 {
		t.Fatalf("own open-file limit: %d, %v", n, err)
	}
}

// A device takes stack commands as the agent does: a deploy needs its
// content, held only when it matches its hash; the stack is then owed as
// running until a request carrying that status is answered, and a status
// that changed meanwhile stays owed.
func TestDeviceStacks(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	content := []byte("services: {}")
	sum := sha256.Sum256(content)
	deploy := protocol.Command{ID: 10, Kind: kindStackDeploy, Blob: sum[:], Args: map[string]string{"stack": "3", "version": "2", "project": "web"}}
	var s stackState

	if _, err := s.take(deploy, now); err == nil || !strings.Contains(err.Error(), "not on this device") {
		t.Fatalf("deploy without its content: %v", err)
	}
	if err := s.keep([]protocol.Blob{{Hash: sum[:], Data: []byte("other")}}); err == nil {
		t.Fatal("content that does not match its hash was kept")
	}
	if err := s.keep([]protocol.Blob{{Hash: sum[:], Data: content}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []map[string]string{{"version": "2", "project": "web"}, {"stack": "3", "project": "web"}, {"stack": "3", "version": "2"}} {
		c := deploy
		c.Args = bad
		if _, err := s.take(c, now); err == nil {
			t.Errorf("args %v taken", bad)
		}
	}
	stack, err := s.take(deploy, now)
	if err != nil || stack != 3 {
		t.Fatalf("deploy: stack %d, %v", stack, err)
	}
	owed := s.owed()
	want := protocol.StackStatus{StackID: 3, Version: 2, Status: protocol.StatusRunning, Time: now.Unix()}
	if len(owed) != 1 || owed[0] != want {
		t.Fatalf("owed %+v, want %+v", owed, want)
	}
	// The stack is removed before the report is answered: the answered
	// report still says it ran, and the removal stays owed.
	remove := protocol.Command{ID: 11, Kind: kindStackRemove, Args: map[string]string{"stack": "3", "version": "2", "project": "web"}}
	if _, err := s.take(remove, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if ran := s.confirm(owed); len(ran) != 1 || ran[0] != want {
		t.Errorf("confirm: %+v, want the running report", ran)
	}
	if o := s.owed(); len(o) != 1 || o[0].Status != protocol.StatusRemoved {
		t.Errorf("after the answer, owed %+v, want the removal", o)
	}
	if s.confirm(s.owed()); s.owed() != nil {
		t.Errorf("owed %+v after every report was answered", s.owed())
	}
	if !bringsStack([]protocol.Command{{Kind: "container.restart"}, remove}) || bringsStack([]protocol.Command{{Kind: "container.restart"}}) {
		t.Error("bringsStack")
	}
}

// A device's agent API answers what the simulator asks through its tunnel,
// from its engine.
func TestAgentAPI(t *testing.T) {
	capture, err := loadCapture(filepath.Join("..", "testdata", "docker"), "docker-5.json")
	if err != nil {
		t.Fatal(err)
	}
	eng := newContent(capture, 9, 0, time.Now(), rand.New(rand.NewPCG(1, 9))).cur
	h := newAgentAPI(eng)
	for _, tc := range []struct {
		method, path string
		code         int
		has          string
	}{
		{"GET", "/_ping", http.StatusOK, "OK"},
		{"HEAD", "/v1.47/_ping", http.StatusOK, ""},
		{"GET", "/containers/json", http.StatusOK, `"Names":["/` + eng.Containers[0].Name + `"]`},
		{"GET", "/v1.47/containers/json", http.StatusOK, eng.Containers[len(eng.Containers)-1].ID},
		{"GET", "/v2/ping", http.StatusNoContent, ""},
		{"GET", "/v2/host/info", http.StatusOK, `"hostname":"sim-9"`},
		{"GET", "/v2/browse/ls", http.StatusNotFound, ""},
		{"GET", "/v1.47/v2/ping", http.StatusNotFound, ""},
		{"POST", "/containers/json", http.StatusMethodNotAllowed, ""},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.has) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, w.Code, w.Body.String(), tc.code, tc.has)
		}
	}
	var list []struct{ ID, State string }
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/containers/json", nil))
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || len(list) != len(eng.Containers) || list[0].State == "" {
		t.Errorf("containers: %v, %+v", err, list)
	}
}

// pace keeps its rate with slow work, and says when it falls behind.
func TestPace(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var ran atomic.Int64
	ticks, behind := 0, 0
	release := make(chan struct{})
	go func() { <-ctx.Done(); close(release) }()
	pace(ctx, 1000, 2, func() func() {
		ticks++
		if ticks%2 == 0 {
			return nil // nothing this tick
		}
		return func() { <-release; ran.Add(1) }
	}, func() { behind++ })
	// 2 workers blocked and 64 queued (a tick may slip in as ctx ends and
	// the work is released); the rest of the odd ticks found them all busy.
	work := (ticks + 1) / 2
	if ticks < 150 || ran.Load() < 66 || int(ran.Load())+behind != work {
		t.Errorf("%d ticks, %d behind, %d ran: want 2 run and 64 queued, the rest behind", ticks, behind, ran.Load())
	}
}

// The report's stack delivery and per-day bytes per mode.
func TestReportFill(t *testing.T) {
	rec := newRecorder()
	t0 := time.Unix(1_800_000_000, 0)
	rec.stackCreated(&stackRun{id: 4, version: 1, created: t0, targets: []int{1, 2, 3}})
	for i, d := range []int{1, 2, 3} {
		rec.stackCommand(uint64(100+d), 4, d, t0.Add(time.Duration(i+1)*time.Second))
		rec.commandAcked(uint64(100+d), t0.Add(5*time.Second))
		rec.stackReported(4, d, t0.Add(time.Duration(i+5)*time.Second))
	}
	rec.commandAcked(103, t0.Add(6*time.Second)) // device 3's ack carried twice
	for range 10 {
		rec.exchange(1, kindPing, time.Millisecond, wireBytes{body: 70, socket: 300}, false)
		rec.exchange(4, kindPoll, time.Millisecond, wireBytes{body: 80, socket: 330}, false)
	}
	rec.exchange(4, kindPoll, time.Millisecond, wireBytes{body: 2000, socket: 9000}, true) // a reconnect: not in the per-day mean
	rec.exchange(1, kindStack, time.Millisecond, wireBytes{body: 900, socket: 1200}, false)
	r := &Report{Devices: 3, Standard: 1, FreqSeconds: 60, PollSeconds: 5, Stack: &Stack{GroupSize: 3}}
	r.fill(rec)
	s := r.Stack
	if s.ID != 4 || s.Targets != 3 || s.Delivered != 3 || s.Running != 3 || s.AllRunningMs != 7000 || s.Reported.P50 != 6000 || s.Delivery.Max != 3000 {
		t.Errorf("stack %+v", s)
	}
	if s.Commands != 3 || s.Acked != 3 || s.AckedMoreThanOnce != 1 {
		t.Errorf("stack commands %d, acked %d, twice %d", s.Commands, s.Acked, s.AckedMoreThanOnce)
	}
	if r.DevicesUp != 2 || r.StandardUp != 1 {
		t.Errorf("up %d, standard %d", r.DevicesUp, r.StandardUp)
	}
	if got := r.PerDevicePerDay; got != (DayBytes{Body: 70 * 1440, Socket: 300 * 1440}) {
		t.Errorf("async per day %+v", got)
	}
	if got := r.PerStandardDevicePerDay; got != (DayBytes{Body: 80 * 17280, Socket: 330 * 17280}) {
		t.Errorf("standard per day %+v", got)
	}
	// One device not yet running: no all-running time.
	rec.stackCreated(&stackRun{id: 4, version: 1, created: t0, targets: []int{1, 2, 3, 5}})
	if rec.stackPending() != 1 {
		t.Errorf("%d pending, want 1", rec.stackPending())
	}
	r = &Report{Stack: &Stack{}}
	r.fill(rec)
	if r.Stack.Running != 3 || r.Stack.AllRunningMs != 0 {
		t.Errorf("stack with one device missing: %+v", r.Stack)
	}
}

func TestStackName(t *testing.T) {
	for in, want := range map[string]string{"sim": "sim-stack", "Fleet A.1": "fleet-a-1-stack", "--x": "x-stack", "!!": "sim-stack"} {
		if got := stackName(in); got != want {
			t.Errorf("stackName(%q) = %q, want %q", in, got, want)
		}
	}
}
