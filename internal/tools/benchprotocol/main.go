// Command benchprotocol prints, one line per case, the body bytes Outpost
// sends for a sync exchange next to the same content as JSON compressed with
// gzip at best compression, with RFC 6902 JSON Patch for deltas (the encoding
// Portainer's async agent uses). `make bench-protocol` runs it:
//
//	go run ./internal/tools/benchprotocol [-captures testdata/docker]
//
// Two extra columns keep the dictionary honest: the Outpost body compressed
// without a dictionary, and with a dictionary trained on the other captures
// only (the measured capture held out).
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/klauspost/compress/zstd"
	"github.com/wI2L/jsondiff"

	"outpost/internal/corpus"
	"outpost/protocol"
	"outpost/snapshot"
)

// Targets from the foundation issue.
const (
	targetFullRatio  = 4.0 // full snapshot of 50 containers vs JSON + gzip
	targetDeltaBytes = 160 // one-container delta
	targetPingBytes  = 96  // idle ping exchange, both bodies
)

func main() {
	dir := flag.String("captures", "testdata/docker", "directory of docker-*.json captures")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintf(os.Stderr, "benchprotocol: %v\n", err)
		os.Exit(1)
	}
}

// row is one measured case.
type row struct {
	name            string
	outpost, jsonGz int
	plain, heldOut  int // Outpost body without a dictionary / with a held-out one
	target          string
}

func run(dir string) error {
	caps, err := corpus.Load(dir)
	if err != nil {
		return err
	}
	var rows []row
	var d50 *snapshot.Snapshot
	for i, c := range caps {
		if len(c.Docker.Containers) == 50 {
			d50 = c.Docker
		}
		held, err := heldOutEncoder(caps, i)
		if err != nil {
			return err
		}
		req, err := corpus.FullPush(c.Docker, 1234, 17)
		if err != nil {
			return err
		}
		r, err := measure(fmt.Sprintf("full snapshot, %d containers", len(c.Docker.Containers)), req, jsonSync(req, c.Docker), held)
		if err != nil {
			return err
		}
		if len(c.Docker.Containers) == 50 {
			r.target = fmt.Sprintf("ratio >= %.0f", targetFullRatio)
		}
		rows = append(rows, r)
	}
	if d50 == nil {
		return fmt.Errorf("no 50-container capture in %s", dir)
	}

	// One container changes state.
	next, id := corpus.StopOne(d50, 1_795_400_000)
	dreq, _, err := corpus.DeltaPush(d50, next, 1234, 18)
	if err != nil {
		return err
	}
	baseJSON, _ := json.Marshal(d50)
	nextJSON, _ := json.Marshal(next)
	patch, err := jsondiff.CompareJSON(baseJSON, nextJSON)
	if err != nil {
		return err
	}
	held, err := heldOutEncoder(caps, indexOf(caps, d50))
	if err != nil {
		return err
	}
	r, err := measure("delta, container "+id+" stopped (of 50)", dreq, jsonSync(dreq, patch), held)
	if err != nil {
		return err
	}
	r.target = fmt.Sprintf("outpost <= %d B", targetDeltaBytes)
	rows = append(rows, r)

	// Idle ping: request and answer together.
	ping, ans := corpus.Ping(1234), corpus.PingAnswer(1234, protocol.Frequencies{Ping: 60, Snapshot: 300, Command: 60})
	rp, err := measure("", ping, jsonSync(ping, nil), nil)
	if err != nil {
		return err
	}
	ra, err := measure("", ans, ans, nil)
	if err != nil {
		return err
	}
	rows = append(rows, row{
		name: "idle ping exchange (request + answer)", outpost: rp.outpost + ra.outpost, jsonGz: rp.jsonGz + ra.jsonGz,
		plain: rp.plain + ra.plain, target: fmt.Sprintf("outpost <= %d B", targetPingBytes),
	})

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "case\toutpost B\tJSON+gzip B\tratio\tno dict B\theld-out dict B\ttarget\t\n")
	for _, r := range rows {
		ho := "-"
		if r.heldOut > 0 {
			ho = fmt.Sprint(r.heldOut)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1fx\t%d\t%s\t%s\t\n", r.name, r.outpost, r.jsonGz, float64(r.jsonGz)/float64(r.outpost), r.plain, ho, verdict(r))
	}
	tw.Flush()
	fmt.Printf("\ndictionary ID %#x; bodies only (no TLS or HTTP headers); ratio = JSON+gzip / outpost\n", protocol.DictionaryID())
	return nil
}

func verdict(r row) string {
	switch {
	case r.target == "":
		return ""
	case r.name[:4] == "full":
		return r.target + pass(float64(r.jsonGz)/float64(r.outpost) >= targetFullRatio)
	case r.name[:5] == "delta":
		return r.target + pass(r.outpost <= targetDeltaBytes)
	default:
		return r.target + pass(r.outpost <= targetPingBytes)
	}
}

func pass(ok bool) string {
	if ok {
		return ": met"
	}
	return ": MISSED"
}

func indexOf(caps []corpus.Capture, d *snapshot.Snapshot) int {
	for i, c := range caps {
		if c.Docker == d {
			return i
		}
	}
	return -1
}

// measure encodes msg as Outpost would send it, and its JSON twin as
// JSON + gzip -9.
func measure(name string, msg any, twin any, held *zstd.Encoder) (row, error) {
	body, _, err := protocol.WriteBody(msg)
	if err != nil {
		return row{}, err
	}
	raw, err := protocol.Marshal(msg)
	if err != nil {
		return row{}, err
	}
	plain := len(raw)
	if len(raw) >= protocol.CompressThreshold {
		z, err := protocol.CompressPlain(raw)
		if err != nil {
			return row{}, err
		}
		plain = min(plain, len(z))
	}
	r := row{name: name, outpost: len(body), plain: plain}
	if held != nil {
		r.heldOut = min(len(raw), len(held.EncodeAll(raw, nil)))
	}
	j, err := json.Marshal(twin)
	if err != nil {
		return row{}, err
	}
	r.jsonGz = gz(j)
	return r, nil
}

func gz(b []byte) int {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Len()
}

// jsonSync is the JSON twin of a sync request: the same fields by name, with
// the snapshot (or JSON Patch) as JSON.
func jsonSync(req *protocol.SyncRequest, data any) any {
	type push struct {
		Seq  uint64 `json:"seq"`
		Base uint64 `json:"base,omitempty"`
		Hash string `json:"hash"`
		Data any    `json:"data"`
	}
	type proof struct {
		Counter uint64 `json:"counter"`
		Tag     []byte `json:"tag"` // base64, as encoding/json writes bytes
	}
	out := struct {
		Version  uint   `json:"version"`
		EnvID    uint64 `json:"environmentId"`
		Include  uint8  `json:"include"`
		Proof    *proof `json:"proof,omitempty"`
		Snapshot *push  `json:"snapshot,omitempty"`
	}{Version: req.Version, EnvID: req.EnvID, Include: uint8(req.Include)}
	if p := req.Proof; p != nil {
		out.Proof = &proof{Counter: p.Counter, Tag: p.Tag}
	}
	if p := req.Snapshot; p != nil {
		out.Snapshot = &push{Seq: p.Seq, Base: p.Base, Hash: hex.EncodeToString(p.Hash), Data: data}
	}
	return out
}

// heldOutEncoder returns an encoder whose dictionary was trained without
// capture i, so the measurement of capture i does not see its own content.
func heldOutEncoder(caps []corpus.Capture, i int) (*zstd.Encoder, error) {
	var rest []corpus.Capture
	for j, c := range caps {
		if j != i {
			rest = append(rest, c)
		}
	}
	if len(rest) == 0 {
		return nil, nil
	}
	d, err := corpus.TrainDict(rest, 32<<10, 0x4F5000FF)
	if err != nil {
		return nil, err
	}
	return zstd.NewWriter(nil, zstd.WithEncoderDict(d), zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(1))
}
