package server

import (
	"bytes"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"outpost/protocol"
)

// bombBody is what the probe sent: a small zstd frame inflating to some
// 31 MiB of valid CBOR, a sync request to env with a forged MAC.
func bombBody(t testing.TB, env uint64) []byte {
	t.Helper()
	data, err := protocol.Marshal(make([]byte, 31<<20)) // a CBOR byte string
	if err != nil {
		t.Fatal(err)
	}
	req := &protocol.SyncRequest{Version: protocol.Version, EnvID: env, Include: protocol.IncludeSnapshot,
		Proof:    &protocol.Proof{Counter: 1 << 40, Tag: bytes.Repeat([]byte{0xee}, protocol.MACSize)},
		Snapshot: &protocol.SnapshotPush{Seq: 2, Hash: make([]byte, 8), Data: data}}
	raw, err := protocol.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	z, err := protocol.Compress(raw)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// bombResult is what a bomb run measured.
type bombResult struct {
	baseline, peak uint64 // heap in use before and at most during, bytes
	bombs          int64  // bomb requests answered
	refused        map[int]int
	syncs, syncErr int64 // the trusted device's exchanges, and those that failed
}

// runBombs sends 64 concurrent streams of bomb requests at a real HTTP
// listener for d (half of them with a forged body proof), while a trusted
// device syncs every 20 ms, sampling the heap every 5 ms.
func runBombs(t testing.TB, d time.Duration) bombResult {
	s, hs := testServer(t)
	dev := bound(t, s, hs.Config.Handler, "trusted")
	bomb := bombBody(t, dev.env)
	forged := protocol.FormatBodyProof(dev.env, bytes.Repeat([]byte{1}, protocol.MACSize))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res := bombResult{baseline: ms.HeapInuse, refused: map[int]int{}}
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	})
	var mu sync.Mutex
	var bombs atomic.Int64
	for i := range 64 {
		wg.Go(func() {
			cl := &http.Client{Timeout: 30 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, _ := http.NewRequest("POST", hs.URL+"/edge/v1/sync", bytes.NewReader(bomb))
				r.Header.Set("Content-Type", protocol.ContentType)
				r.Header.Set("Content-Encoding", protocol.EncodingZstd)
				if i%2 == 1 {
					r.Header.Set(protocol.BodyProofHeader, forged)
				}
				resp, err := cl.Do(r)
				if err != nil {
					continue
				}
				resp.Body.Close()
				bombs.Add(1)
				mu.Lock()
				res.refused[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if status, _, _ := dev.sync(dev.ping()); status != http.StatusOK {
			res.syncErr++
		}
		res.syncs++
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	res.peak, res.bombs = peak.Load(), bombs.Load()
	return res
}

// TestBombsBeforeAuthentication: 64 concurrent bomb requests, each a 31 MiB
// inflation, are refused having inflated no more than MaxUnprovedBody, so the
// heap stays within a bound far under what inflating them would take (64 ×
// 31 MiB), while a trusted device keeps syncing.
func TestBombsBeforeAuthentication(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-second load test")
	}
	res := runBombs(t, 3*time.Second)
	grew := int64(res.peak) - int64(res.baseline)
	t.Logf("%d bomb requests (%v), heap in use %d MiB before, %d MiB at most (+%d MiB); trusted device: %d syncs, %d failed",
		res.bombs, res.refused, res.baseline>>20, res.peak>>20, grew>>20, res.syncs, res.syncErr)
	const bound = 96 << 20
	if grew > bound {
		t.Errorf("the heap grew by %d MiB under the bombs, over the %d MiB bound", grew>>20, bound>>20)
	}
	if res.bombs < 64 {
		t.Errorf("only %d bomb requests were answered", res.bombs)
	}
	for status := range res.refused {
		if status == http.StatusOK {
			t.Errorf("a bomb was answered 200: %v", res.refused)
		}
	}
	if res.syncErr > 0 {
		t.Errorf("the trusted device failed %d of its %d syncs during the bombs", res.syncErr, res.syncs)
	}
}

// BenchmarkBombsBeforeAuthentication reports the heap growth under 64
// concurrent bomb streams and the bombs answered per second.
func BenchmarkBombsBeforeAuthentication(b *testing.B) {
	for b.Loop() {
		res := runBombs(b, 2*time.Second)
		b.ReportMetric(float64(int64(res.peak)-int64(res.baseline))/(1<<20), "heap-MiB")
		b.ReportMetric(float64(res.bombs)/2, "bombs/s")
	}
}
