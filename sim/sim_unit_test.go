package sim

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost/protocol"
	"outpost/snapshot"
)

// Every problem of a config is reported at once, each with its name.
func TestConfigReportsEveryProblem(t *testing.T) {
	cfg := Config{Server: "http://x", Devices: -1, Freq: -2, CommandsPerSec: -1, ChangesPerHour: -1, Capture: "none.json", Testdata: t.TempDir()}.withDefaults()
	err := cfg.check()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"server \"http://x\"", "password", "devices -1", "freq -2", "commands-per-sec -1", "changes-per-hour -1", "capture none.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	ok := Config{Server: "https://127.0.0.1:9443", Password: "pw", Testdata: filepath.Join("..", "testdata", "docker")}.withDefaults()
	if err := ok.check(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if ok.Grace != 2*time.Minute+10*time.Second || ok.Ramp != time.Minute {
		t.Errorf("grace %v, ramp %v: want two frequencies and 10 s, one frequency", ok.Grace, ok.Ramp)
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
