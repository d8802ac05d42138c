package server

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"outpost/internal/corpus"
	"outpost/protocol"
	"outpost/snapshot"
)

// benchEnv returns a server's handler and an environment bound to a device
// that has pushed the 50-container capture.
func benchEnv(b *testing.B) (http.Handler, uint64, *snapshot.Docker) {
	b.Helper()
	s, _ := testServer(b)
	env := stage(b, s, nil)
	h := s.routes()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	first := &protocol.SyncRequest{Version: protocol.Version, EnvID: env, EdgeID: "bench", Include: protocol.IncludePing,
		Proof: &protocol.Proof{Key: key.Public().(ed25519.PublicKey)}}
	serve(b, h, first)
	caps, err := corpus.Load("../testdata/docker")
	if err != nil {
		b.Fatal(err)
	}
	var base *snapshot.Docker
	for _, c := range caps {
		if len(c.Docker.Containers) == 50 {
			base = c.Docker
		}
	}
	req, err := corpus.FullPush(base, env, 1)
	if err != nil {
		b.Fatal(err)
	}
	serve(b, h, req)
	return h, env, base
}

// serve runs one exchange through the handler, without a network.
func serve(b *testing.B, h http.Handler, msg any) {
	body, enc, err := protocol.WriteBody(msg)
	if err != nil {
		b.Fatal(err)
	}
	serveBody(b, h, body, enc)
}

func serveBody(b *testing.B, h http.Handler, body []byte, enc string) {
	r := httptest.NewRequest("POST", "/edge/v1/sync", bytes.NewReader(body))
	if enc != "" {
		r.Header.Set("Content-Encoding", enc)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		b.Fatalf("status %d", w.Code)
	}
}

// BenchmarkSyncIdlePing: one bound device checking in with nothing to say.
// Run with -cpu 1 for exchanges per second on one core.
func BenchmarkSyncIdlePing(b *testing.B) {
	h, env, _ := benchEnv(b)
	body, enc, err := protocol.WriteBody(corpus.Ping(env))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serveBody(b, h, body, enc)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}

// BenchmarkSyncDelta50: a 50-container device pushing a delta in which one
// container changed state, alternately stopped and started again.
func BenchmarkSyncDelta50(b *testing.B) {
	h, env, base := benchEnv(b)
	stopped, _ := corpus.StopOne(base, 1_800_000_000)
	// Bodies are made before timing: seq k+1 on base k, alternating.
	bodies := make([][]byte, b.N)
	encs := make([]string, b.N)
	states := [2]*snapshot.Docker{base, stopped}
	for i := range b.N {
		req, _, err := corpus.DeltaPush(states[i%2], states[(i+1)%2], env, uint64(i+2))
		if err != nil {
			b.Fatal(err)
		}
		if bodies[i], encs[i], err = protocol.WriteBody(req); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		serveBody(b, h, bodies[i], encs[i])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}
