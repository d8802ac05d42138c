package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/wI2L/jsondiff"

	"outpost/internal/corpus"
	"outpost/protocol"
	"outpost/snapshot"
)

// The Portainer way: the same exchanges as JSON, gzip at best compression
// and RFC 6902 JSON Patch for deltas (the bodies `make bench-protocol`
// builds, internal/tools/benchprotocol's jsonSync), over HTTPS/1.1 with
// the headers Portainer's async agent sends (portainer/agent
// edge/client/portainer_edge_async_client.go) and Go's client defaults,
// on a connection kept with Go's defaults: TCP keepalives every 30 s from
// the client, 15 s from the server, 90 s idle before the client closes.
const portainerPath = "/api/endpoints/edge/async"

// portainerHold is how long Go's default transport keeps an idle connection.
const portainerHold = 90 * time.Second

// twin is the JSON twin of a sync request (benchprotocol's jsonSync).
type twin struct {
	Version  uint       `json:"version"`
	EnvID    uint64     `json:"environmentId"`
	Include  uint8      `json:"include"`
	Proof    *twinProof `json:"proof,omitempty"`
	Snapshot *twinPush  `json:"snapshot,omitempty"`
}

type twinProof struct {
	Counter uint64 `json:"counter"`
	Tag     []byte `json:"tag"`
}

type twinPush struct {
	Seq  uint64 `json:"seq"`
	Base uint64 `json:"base,omitempty"`
	Hash string `json:"hash"`
	Data any    `json:"data"`
}

// portainerAnswer is the server side: it reads the gzipped JSON, and
// answers the JSON twin of Outpost's answer, gzipped, with the headers an
// ordinary Go JSON API sends.
func portainerAnswer(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != portainerPath {
		http.NotFound(w, r)
		return
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req twin
	if err := json.NewDecoder(zr).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ans := corpus.PingAnswer(req.EnvID, freqOf(req.EnvID))
	if req.Snapshot != nil {
		ans.Snapshot = &protocol.SnapshotAck{Stored: req.Snapshot.Seq}
	}
	body, _ := json.Marshal(ans)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Encoding", "gzip")
	h.Set("Vary", "Accept-Encoding")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Xss-Protection", "1; mode=block")
	_, _ = w.Write(gz(body))
}

// Profiles' frequencies, in seconds.
var (
	freq60    = protocol.Frequencies{Ping: 60, Snapshot: 60, Command: 60}
	freqMeter = protocol.Frequencies{Ping: 3600, Snapshot: 6 * 3600, Command: 3600}
)

// freqOf is the frequencies of environment env: 1 has Portainer's
// defaults, 2 the metered profile.
func freqOf(env uint64) protocol.Frequencies {
	if env == 2 {
		return freqMeter
	}
	return freq60
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// portainer is one device the Portainer way.
type portainer struct {
	url         string
	http        *http.Client
	tr          *http.Transport
	sock, dials atomic.Int64
	env, seq    uint64
	counter     uint64
	cur         *snapshot.Snapshot
}

func newPortainer(url string, env uint64, d50 *snapshot.Snapshot) *portainer {
	p := &portainer{url: url, env: env, cur: d50}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	p.tr = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			p.dials.Add(1)
			return countedConn{Conn: c, n: &p.sock}, nil
		},
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // self-signed, as Portainer's own
			CurvePreferences:   []tls.CurveID{tls.X25519},
			ClientSessionCache: tls.NewLRUClientSessionCache(4),
		},
		MaxIdleConns:    100,
		IdleConnTimeout: portainerHold,
	}
	p.http = &http.Client{Transport: p.tr, Timeout: time.Minute}
	return p
}

func (p *portainer) name() string                          { return "portainer" }
func (p *portainer) socket() int64                         { return p.sock.Load() }
func (p *portainer) dialed() int64                         { return p.dials.Load() }
func (p *portainer) close()                                { p.tr.CloseIdleConnections() }
func (p *portainer) after(time.Duration)                   {}
func (p *portainer) holds(gap time.Duration) time.Duration { return min(gap, portainerHold) }

// exchange posts the JSON twin of the exchange of kind k and returns the
// bytes of both bodies as sent.
func (p *portainer) exchange(ctx context.Context, k kind) (int64, error) {
	p.counter++
	tag := sha256.Sum256([]byte(fmt.Sprint("tag", p.counter)))
	req := twin{Version: protocol.Version, EnvID: p.env, Include: uint8(protocol.IncludePing | protocol.IncludeCommands),
		Proof: &twinProof{Counter: p.counter, Tag: tag[:protocol.MACSize]}}
	next := p.cur
	switch k {
	case kindFull:
		h, err := snapshot.Hash(p.cur)
		if err != nil {
			return 0, err
		}
		p.seq++
		req.Snapshot = &twinPush{Seq: p.seq, Hash: hex.EncodeToString(h[:snapshot.HashSize]), Data: p.cur}
	case kindDelta:
		next, _ = corpus.StopOne(p.cur, time.Now().Unix())
		a, _ := json.Marshal(p.cur)
		b, _ := json.Marshal(next)
		patch, err := jsondiff.CompareJSON(a, b)
		if err != nil {
			return 0, err
		}
		h, err := snapshot.Hash(next)
		if err != nil {
			return 0, err
		}
		p.seq++
		req.Snapshot = &twinPush{Seq: p.seq, Base: p.seq - 1, Hash: hex.EncodeToString(h[:snapshot.HashSize]), Data: patch}
	}
	if req.Snapshot != nil {
		req.Include |= uint8(protocol.IncludeSnapshot)
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	body := gz(raw)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+portainerPath, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	// What portainer/agent's async client sets; Go adds Host, User-Agent,
	// Content-Length and Accept-Encoding.
	hr.Header.Set("Content-Encoding", "gzip")
	hr.Header.Set("X-PortainerAgent-EdgeID", fmt.Sprintf("benchwire-%d", p.env))
	hr.Header.Set("Portainer-Agent", "2.23.0")
	hr.Header.Set("X-PortainerAgent-TimeZone", "UTC")
	hr.Header.Set("X-PortainerAgent-Update-ID", "0")
	hr.Header.Set("X-PortainerAgent-Platform", "1")
	resp, err := p.http.Do(hr)
	if err != nil {
		return 0, fmt.Errorf("portainer %v exchange: %w", k, err)
	}
	defer resp.Body.Close()
	ab, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("portainer %v exchange: %w", k, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("portainer %v exchange: %s: %s", k, resp.Status, ab)
	}
	var ans protocol.SyncAnswer
	if err := json.Unmarshal(ab, &ans); err != nil {
		return 0, fmt.Errorf("portainer %v exchange: %w", k, err)
	}
	p.cur = next
	// The transport inflated the answer; its body as sent is the gzip of it.
	return int64(len(body) + len(gz(ab))), nil
}
