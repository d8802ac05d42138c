package tunnel_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"outpost/internal/testenv"
	"outpost/tunnel"
)

// transferSize is the size of the bulk GET the throughput benchmarks make.
const transferSize = 64 << 20

// bulk is an agent API whose /bulk answers transferSize bytes and /ping
// a 204.
func bulk() http.Handler {
	chunk := make([]byte, 1<<20)
	mux := http.NewServeMux()
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(transferSize))
		for range transferSize / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// fetch GETs url and reads the body to the end, in 64 KiB reads.
func fetch(b *testing.B, c *http.Client, url string, buf []byte) {
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	// Plain Reader and Writer: io.Discard's ReadFrom would read in 8 KiB.
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{resp.Body}, buf)
	_ = resp.Body.Close()
	if err != nil || n != transferSize {
		b.Fatalf("read %d bytes, %v", n, err)
	}
}

// route is one way to move transferSize bytes: get does one transfer.
type route struct {
	name string
	get  func(b *testing.B, buf []byte)
}

// routes returns the bulk API reached directly over loopback TCP, and
// through a tunnel over ws:// and over wss://; with raw, also a bare SSH
// channel over loopback TCP, no WebSocket and no HTTP: the floor set by
// x/crypto/ssh alone.
func routes(b *testing.B, raw bool) []route {
	direct := httptest.NewServer(bulk())
	b.Cleanup(direct.Close)
	rs := []route{{"direct", func(b *testing.B, buf []byte) { fetch(b, direct.Client(), direct.URL+"/bulk", buf) }}}
	for _, secure := range []bool{false, true} {
		h := start(b, secure, tunnel.ServerConfig{})
		dial(b, h.config(1, h.bind(b, 1), bulk()))
		conn, err := h.srv.Wait(b.Context(), 1)
		if err != nil {
			b.Fatal(err)
		}
		c := &http.Client{Transport: conn.Transport()}
		name := map[bool]string{false: "tunnel", true: "tunnel-wss"}[secure]
		rs = append(rs, route{name, func(b *testing.B, buf []byte) { fetch(b, c, "http://agent/bulk", buf) }})
	}
	if raw {
		ch := sshChannel(b)
		rs = append(rs, route{"ssh-tcp", func(b *testing.B, buf []byte) {
			n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, io.LimitReader(ch, transferSize), buf)
			if err != nil || n != transferSize {
				b.Fatalf("read %d bytes, %v", n, err)
			}
		}})
	}
	return rs
}

// sshChannel returns an SSH channel over loopback TCP whose far end writes
// without end.
func sshChannel(b *testing.B) ssh.Channel {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(newSigner(b))
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
		if err != nil {
			return
		}
		b.Cleanup(func() { _ = sc.Close() })
		go ssh.DiscardRequests(reqs)
		for n := range chans {
			ch, reqs, err := n.Accept()
			if err != nil {
				return
			}
			go ssh.DiscardRequests(reqs)
			go func() {
				chunk := make([]byte, 1<<20)
				for {
					if _, err := ch.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, "bench", &ssh.ClientConfig{
		User: "bench", HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a loopback benchmark
	})
	if err != nil {
		b.Fatal(err)
	}
	client := ssh.NewClient(cc, chans, reqs)
	b.Cleanup(func() { _ = client.Close() })
	ch, creqs, err := client.OpenChannel("bulk", nil)
	if err != nil {
		b.Fatal(err)
	}
	go ssh.DiscardRequests(creqs)
	return ch
}

// BenchmarkThroughput is a 64 MiB GET through the tunnel next to the same
// over loopback TCP, in one run.
func BenchmarkThroughput(b *testing.B) {
	for _, r := range routes(b, false) {
		b.Run(r.name, func(b *testing.B) {
			buf := make([]byte, 64<<10)
			b.SetBytes(transferSize)
			for b.Loop() {
				r.get(b, buf)
			}
		})
	}
}

// BenchmarkThroughputRatio alternates the routes, transfer by transfer, and
// reports the median of each one's speed ratio to direct (the tunnel's
// target is at least 0.5), so all see the same noise on a shared machine,
// and the CPU time (both ends, user and system) per MB each costs.
func BenchmarkThroughputRatio(b *testing.B) {
	rs := routes(b, true)
	buf := make([]byte, 64<<10)
	took := make([]time.Duration, len(rs))
	cpu := make([]time.Duration, len(rs))
	ratios := make([][]float64, len(rs))
	for b.Loop() {
		var direct time.Duration
		for i, r := range rs {
			t0, c0 := time.Now(), cpuTime()
			r.get(b, buf)
			d := time.Since(t0)
			cpu[i] += cpuTime() - c0
			if i == 0 {
				direct = d
			}
			took[i] += d
			ratios[i] = append(ratios[i], float64(direct)/float64(d))
		}
	}
	mb := float64(b.N) * transferSize / 1e6
	for i, r := range rs {
		b.ReportMetric(mb/took[i].Seconds(), r.name+"-MB/s")
		b.ReportMetric(cpu[i].Seconds()*1e3/mb, r.name+"-cpu-ms/MB")
		if i > 0 {
			b.ReportMetric(median(ratios[i]), r.name+"/direct")
		}
	}
}

// cpuTime is the CPU time the process has used, user and system: both
// ends of each route run in it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkFirstByte is the time from the agent's Dial to the first byte
// of an answer the server reads through the new tunnel (wss).
func BenchmarkFirstByte(b *testing.B) {
	h := start(b, true, tunnel.ServerConfig{})
	key := h.bind(b, 1)
	cfg := h.config(1, key, bulk())
	var total time.Duration
	for b.Loop() {
		t0 := time.Now()
		c, err := tunnel.Dial(b.Context(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		conn, err := h.srv.Wait(b.Context(), 1)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := (&http.Client{Transport: conn.Transport()}).Get("http://agent/ping")
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		_ = resp.Body.Close()
		_ = c.Close()
		<-conn.Done()
		for h.srv.Conn(1) != nil { // unregistered right after Done
			runtime.Gosched()
		}
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-to-first-byte")
}

// fleetEnv tells TestFleet, run as a child process by
// BenchmarkIdleTunnels, to open tunnels: "URL FINGERPRINT N".
const fleetEnv = "OUTPOST_TUNNEL_FLEET"

// BenchmarkIdleTunnels opens 1,000 idle tunnels to one server and reports
// the server's heap and goroutines per tunnel. The agents run in a child
// process so that only the server's side is counted.
func BenchmarkIdleTunnels(b *testing.B) {
	const n = 1000
	h := start(b, false, tunnel.ServerConfig{
		Authorize: func(user string, _ ssh.PublicKey) (uint64, error) { return strconv.ParseUint(user, 10, 64) },
	})
	for b.Loop() {
		heap0, stack0, g0 := settle()
		cmd := exec.Command(os.Args[0], "-test.run=^TestFleet$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", fleetEnv, h.url, h.fp, n))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		testenv.Eventually(b, 2*time.Minute, func() (bool, string) {
			return h.srv.Count() == n, fmt.Sprintf("%d of %d tunnels up", h.srv.Count(), n)
		})
		heap1, stack1, g1 := settle()
		b.ReportMetric(float64(heap1-heap0)/n, "heap-B/tunnel")
		b.ReportMetric(float64(stack1-stack0)/n, "stack-B/tunnel")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/tunnel")
		_ = stdin.Close() // the fleet closes its tunnels and exits
		if err := cmd.Wait(); err != nil {
			b.Fatalf("fleet: %v", err)
		}
		testenv.Eventually(b, time.Minute, func() (bool, string) {
			return h.srv.Count() == 0, fmt.Sprintf("%d tunnels still up", h.srv.Count())
		})
	}
}

// settle collects garbage and returns the heap and stacks in use and the
// goroutine count.
func settle() (heap, stack uint64, goroutines int) {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine()
}

// TestFleet is BenchmarkIdleTunnels's agent side, in a child process: it
// opens the tunnels, then holds them until its stdin closes. Without
// OUTPOST_TUNNEL_FLEET it is skipped.
func TestFleet(t *testing.T) {
	spec := strings.Fields(os.Getenv(fleetEnv))
	if len(spec) != 3 {
		t.Skip("run by BenchmarkIdleTunnels only")
	}
	n, _ := strconv.Atoi(spec[2])
	key := newSigner(t)
	clients := make([]*tunnel.Client, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := tunnel.Dial(t.Context(), tunnel.ClientConfig{
				URL: spec[0], User: strconv.Itoa(i + 1), Signer: key, HostKeyFingerprint: spec[1],
				Handler: bulk(), Inactivity: -1,
			})
			if err != nil {
				t.Error(err)
				return
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	for _, c := range clients {
		if c != nil {
			_ = c.Close()
		}
	}
}
