package server

import (
	"net/http"
	"runtime"
	"testing"

	"outpost/internal/corpus"
	"outpost/protocol"
	"outpost/snapshot"
)

// benchDevice returns a device bound to a fresh server that has pushed the
// 50-container capture, its requests served by the handler without a network.
func benchDevice(b *testing.B) (*device, *snapshot.Snapshot) {
	b.Helper()
	s, _ := testServer(b)
	env := stage(b, s, nil)
	dev := newDevice(b, s.routes(), env, "bench")
	if status, _, perr := dev.sync(dev.firstContact()); status != http.StatusOK {
		b.Fatalf("first contact: %d %+v", status, perr)
	}
	caps, err := corpus.Load("../testdata/docker")
	if err != nil {
		b.Fatal(err)
	}
	var base *snapshot.Snapshot
	for _, c := range caps {
		if len(c.Docker.Containers) == 50 {
			base = c.Docker
		}
	}
	req, err := corpus.FullPush(base, env, 1)
	if err != nil {
		b.Fatal(err)
	}
	if status, _, perr := dev.sync(req); status != http.StatusOK {
		b.Fatalf("full push: %d %+v", status, perr)
	}
	return dev, base
}

// sealed returns the bodies of n requests as the device would send them,
// each with its own counter and MAC, made before the timer starts.
func sealed(b *testing.B, dev *device, n int, next func(i int) *protocol.SyncRequest) (bodies [][]byte, encs []string) {
	b.Helper()
	for i := range n {
		req := next(i)
		req.Proof = &protocol.Proof{}
		dev.counter++
		req.Proof.Counter = dev.counter
		if err := protocol.Seal(req, req.Proof, func(in []byte) []byte { return protocol.MAC(dev.mac, in) }); err != nil {
			b.Fatal(err)
		}
		body, enc, err := protocol.WriteBody(req)
		if err != nil {
			b.Fatal(err)
		}
		bodies, encs = append(bodies, body), append(encs, enc)
	}
	return bodies, encs
}

func run(b *testing.B, dev *device, bodies [][]byte, encs []string) {
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if status, _, perr := dev.post(bodies[i], encs[i]); status != http.StatusOK {
			b.Fatalf("exchange %d: %d %+v", i, status, perr)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}

// BenchmarkSyncIdlePing: a bound device checking in with nothing to say,
// proof checked. Run with -cpu 1 for exchanges per second on one core.
func BenchmarkSyncIdlePing(b *testing.B) {
	dev, _ := benchDevice(b)
	bodies, encs := sealed(b, dev, b.N, func(int) *protocol.SyncRequest { return corpus.Ping(dev.env) })
	run(b, dev, bodies, encs)
}

// BenchmarkSyncDelta50: a 50-container device pushing a delta in which one
// container changed state, alternately stopped and started again.
func BenchmarkSyncDelta50(b *testing.B) {
	dev, base := benchDevice(b)
	stopped, _ := corpus.StopOne(base, 1_800_000_000)
	states := [2]*snapshot.Snapshot{base, stopped}
	bodies, encs := sealed(b, dev, b.N, func(i int) *protocol.SyncRequest {
		req, _, err := corpus.DeltaPush(states[i%2], states[(i+1)%2], dev.env, uint64(i+2))
		if err != nil {
			b.Fatal(err)
		}
		return req
	})
	run(b, dev, bodies, encs)
}
