package web

import (
	"testing"
	"time"

	"outpost/snapshot"
)

var now = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

func TestAgo(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-3 * time.Second, "just now"},
		{0, "just now"},
		{12 * time.Second, "12 s ago"},
		{3*time.Minute + 59*time.Second, "3 min ago"},
		{5 * time.Hour, "5 h ago"},
		{47 * time.Hour, "47 h ago"},
		{72 * time.Hour, "3 d ago"},
	} {
		if got := ago(now.Add(-tc.d), now); got != tc.want {
			t.Errorf("ago(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	if got := ago(time.Time{}, now); got != "never" {
		t.Errorf("ago(zero) = %q", got)
	}
}

func TestEvery(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "—", 5 * time.Second: "5 s", 5 * time.Minute: "5 min", 90 * time.Minute: "1 h 30 min",
		time.Hour: "1 h", 26 * time.Hour: "1 d 2 h", 7 * 24 * time.Hour: "7 d", 61 * time.Second: "1 min 1 s",
	} {
		if got := every(d); got != want {
			t.Errorf("every(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestContainerStatus(t *testing.T) {
	at := func(d time.Duration) int64 { return now.Add(-d).Unix() }
	for _, tc := range []struct {
		c    snapshot.Container
		want string
	}{
		{snapshot.Container{State: snapshot.StateRunning, Started: at(5*time.Minute + 10*time.Second)}, "Up 5 minutes"},
		{snapshot.Container{State: snapshot.StateRunning, Started: at(30 * time.Second)}, "Up 30 seconds"},
		{snapshot.Container{State: snapshot.StateRunning, Started: at(61 * time.Minute)}, "Up About an hour"},
		{snapshot.Container{State: snapshot.StateRunning, Started: at(3 * 24 * time.Hour)}, "Up 3 days"},
		{snapshot.Container{State: snapshot.StateRunning}, "Up"},
		{snapshot.Container{State: snapshot.StatePaused, Started: at(2 * time.Hour)}, "Up 2 hours (Paused)"},
		{snapshot.Container{State: snapshot.StateExited, ExitCode: 137, Started: at(5 * time.Hour), Finished: at(2 * time.Hour)}, "Exited (137) 2 hours ago"},
		{snapshot.Container{State: snapshot.StateExited, Started: at(time.Hour), Finished: at(3 * 7 * 24 * time.Hour)}, "Exited (0) 3 weeks ago"},
		{snapshot.Container{State: snapshot.StateExited, ExitCode: 1, Started: at(time.Hour)}, "Exited (1)"},
		{snapshot.Container{State: snapshot.StateRestarting, ExitCode: 1, Finished: at(20 * time.Second)}, "Restarting (1) 20 seconds ago"},
		{snapshot.Container{State: snapshot.StateCreated}, "Created"},
		{snapshot.Container{State: snapshot.StateDead}, "Dead"},
		{snapshot.Container{State: snapshot.StateRemoving}, "Removal In Progress"},
	} {
		if got := containerStatus(tc.c, now); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.c.State, got, tc.want)
		}
	}
}

func TestFormatPort(t *testing.T) {
	for _, tc := range []struct {
		p    snapshot.Port
		want string
	}{
		{snapshot.Port{Private: 80, Public: 8080, IP: "0.0.0.0"}, "0.0.0.0:8080->80/tcp"},
		{snapshot.Port{Private: 80, Public: 8080, IP: "::"}, "[::]:8080->80/tcp"},
		{snapshot.Port{Private: 53, Public: 53, IP: "127.0.0.1", Proto: "udp"}, "127.0.0.1:53->53/udp"},
		{snapshot.Port{Private: 5432}, "5432/tcp"},
	} {
		if got := formatPort(tc.p); got != tc.want {
			t.Errorf("formatPort(%+v) = %q, want %q", tc.p, got, tc.want)
		}
	}
	if got := ports([]snapshot.Port{{Private: 80}, {Private: 80}}); len(got) != 1 {
		t.Errorf("ports kept a repeat: %v", got)
	}
}

func TestSizes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 512: "512 B", 1000: "1.00 kB", 12_300_000: "12.3 MB", 412_345_678: "412 MB",
		999_700: "1.00 MB", 1_250_000_000: "1.25 GB",
	} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
	if got := humanMemory(8_254_169_088); got != "7.69 GiB" {
		t.Errorf("humanMemory = %q", got)
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"/environments/3?tab=images": "/environments/3?tab=images",
		"":                           "/environments",
		"environments":               "/environments",
		"//evil.example":             "/environments",
		"/\\evil.example":            "/environments",
		"https://evil.example/x":     "/environments",
		"/ok\r\nSet-Cookie: x":       "/environments",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestHistoryChart(t *testing.T) {
	h := []HistoryEntry{
		{Seq: 1, Kind: "full", Bytes: 20_000, At: now.Add(-10 * time.Minute)},
		{Seq: 2, Base: 1, Kind: "delta", Bytes: 10, At: now.Add(-5 * time.Minute)},
	}
	v := newHistoryView(h, now)
	if len(v.Chart.Bars) != 2 || v.Chart.Bars[0].H != "160.00" || v.Chart.Bars[1].H != "2.00" {
		t.Errorf("bars %+v: want the full one at full height, the tiny delta at the 2-unit minimum", v.Chart.Bars)
	}
	if len(v.Rows) != 2 || v.Rows[0].Seq != 2 {
		t.Errorf("rows %+v: want newest first", v.Rows)
	}
	if v.Max != "20.0 kB" {
		t.Errorf("max %q", v.Max)
	}
}
