package protocol_test

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"outpost/internal/golden"
	"outpost/protocol"
)

var update = flag.Bool("update", false, "rewrite testdata/protocol/*.golden from the vectors in golden_test.go")

// goldenDir holds the wire vectors, at the repository root so other packages'
// tests (and other implementations) can read them too.
const goldenDir = "../testdata/protocol"

// newMessage maps the type name written on a golden file's first line to a
// constructor of a zero value of that type. A golden file naming a type missing
// here fails TestGolden.
var newMessage = map[string]func() any{
	"SyncRequest": func() any { return new(protocol.SyncRequest) },
	"SyncAnswer":  func() any { return new(protocol.SyncAnswer) },
	"Error":       func() any { return new(protocol.Error) },
	"Frequencies": func() any { return new(protocol.Frequencies) },
}

// goldenVector is one wire vector: the Go value is the source of truth, the
// file under goldenDir its encoding.
type goldenVector struct {
	file  string // base name without .golden
	desc  string
	value any // pointer to a message
}

// Fixed bytes so the vectors are stable.
var (
	edgePubKey = seqBytes(0x00, 32) // Ed25519 public key
	proofTag   = seqBytes(0xa0, 16)
	dhPubKey   = seqBytes(0x40, 32) // X25519 public key
	signature  = seqBytes(0x60, 64) // Ed25519 signature
	snapHash   = seqBytes(0x10, 8)  // leading bytes of a snapshot hash
	blobData   = []byte("services:\n  web:\n    image: nginx:1.27\n")
	blobHash   = sha256Of(blobData)

	// Snapshot payloads are opaque CBOR to this package; these stand in for
	// package snapshot's Docker and Delta.
	snapshotFull  = mustMarshal(map[int]any{1: "docker", 2: []any{map[int]any{1: "c1", 2: "nginx:1.27", 3: "running"}}})
	snapshotDelta = mustMarshal(map[int]any{1: []any{map[int]any{1: "c1", 3: "exited"}}})
)

var goldenVectors = []goldenVector{
	{"sync_request_first_contact", "signed first contact: edge ID, identity and key agreement keys, agent info",
		&protocol.SyncRequest{
			Version: protocol.Version,
			EdgeID:  "3f2a9c1e-7b4d-4e8a-9c61-0d5e2f7a8b90",
			Proof:   &protocol.Proof{Key: edgePubKey, Counter: 1, DH: dhPubKey, Tag: signature},
			Include: protocol.IncludePing,
			Agent: &protocol.AgentInfo{
				Version:  "0.1.0",
				Hostname: "shop-042",
				Platform: "docker",
				OS:       "linux",
				Arch:     "arm64",
				Groups:   []string{"shops"},
				Tags:     []string{"eu", "pos"},
			},
		}},
	{"sync_request_enroll", "signed first contact to pre-staged environment 7, proving its edge key's enrollment secret",
		&protocol.SyncRequest{
			Version: protocol.Version,
			EdgeID:  "3f2a9c1e-7b4d-4e8a-9c61-0d5e2f7a8b90",
			EnvID:   7,
			Proof:   &protocol.Proof{Key: edgePubKey, Counter: 1, DH: dhPubKey, Tag: signature, Enroll: proofTag},
			Include: protocol.IncludePing,
			Agent:   &protocol.AgentInfo{Version: "0.2.0", Hostname: "ship-7", Platform: "docker", OS: "linux", Arch: "arm64"},
		}},
	{"sync_request_idle_ping", "idle ping of a bound device",
		&protocol.SyncRequest{Version: protocol.Version, EnvID: 7, Include: protocol.IncludePing}},
	{"sync_request_proof", "ping with a counter and tag proof",
		&protocol.SyncRequest{Version: protocol.Version, EnvID: 7, Include: protocol.IncludePing,
			Proof: &protocol.Proof{Counter: 42, Tag: proofTag}}},
	{"sync_request_snapshot_full", "ping and full snapshot push",
		&protocol.SyncRequest{Version: protocol.Version, EnvID: 7, Include: protocol.IncludePing | protocol.IncludeSnapshot,
			Snapshot: &protocol.SnapshotPush{Seq: 1, Hash: snapHash, Data: snapshotFull}}},
	{"sync_request_snapshot_delta", "snapshot delta from seq 4 to 5 with the hash of seq 5",
		&protocol.SyncRequest{Version: protocol.Version, EnvID: 7, Include: protocol.IncludeSnapshot,
			Snapshot: &protocol.SnapshotPush{Seq: 5, Base: 4, Hash: snapHash, Data: snapshotDelta}}},
	{"sync_request_reports", "command pull with acks, stack statuses and job results",
		&protocol.SyncRequest{Version: protocol.Version, EnvID: 7, Include: protocol.IncludePing | protocol.IncludeCommands,
			Acks: []protocol.CommandAck{
				{ID: 11, Status: protocol.StatusOK, Finished: 1767225600},
				{ID: 12, Status: protocol.StatusFailed, Error: "image pull: not found", Finished: 1767225601},
			},
			StackStatuses: []protocol.StackStatus{
				{StackID: 3, Version: 2, Status: protocol.StatusRunning, Time: 1767225590},
				{StackID: 4, Version: 1, Status: protocol.StatusFailed, Error: "port 80 in use", Time: 1767225591},
			},
			JobResults: []protocol.JobResult{
				{JobID: 9, Run: 1, Started: 1767222000, Duration: 12, ExitCode: 0, Output: []byte("ok\n")},
				{JobID: 9, Run: 2, Started: 1767225600, Duration: 3, ExitCode: 2, Output: []byte("disk full\n")},
			},
		}},
	{"sync_answer_minimal", "environment, trust and effective frequencies",
		&protocol.SyncAnswer{Version: protocol.Version, EnvID: 7, Trust: protocol.TrustTrusted,
			Freq: &protocol.Frequencies{Ping: 60, Snapshot: 3600, Command: 300}}},
	{"sync_answer_first_contact", "answer to a first contact: the server's key agreement key, signed by its host key",
		&protocol.SyncAnswer{Version: protocol.Version, EnvID: 7, Trust: protocol.TrustTrusted,
			Freq:   &protocol.Frequencies{Ping: 60, Snapshot: 3600, Command: 300},
			Server: &protocol.ServerKey{DH: dhPubKey, HostKey: seqBytes(0x00, 51), Sig: seqBytes(0x80, 83)}}},
	{"sync_answer_waiting", "device in the waiting room",
		&protocol.SyncAnswer{Version: protocol.Version, EnvID: 8, Trust: protocol.TrustWaiting}},
	{"sync_answer_snapshot_stored", "snapshot seq 5 stored",
		&protocol.SyncAnswer{Version: protocol.Version, EnvID: 7, Trust: protocol.TrustTrusted,
			Snapshot: &protocol.SnapshotAck{Stored: 5}}},
	{"sync_answer_send_full", "delta did not rebuild: send a full snapshot",
		&protocol.SyncAnswer{Version: protocol.Version, EnvID: 7, Trust: protocol.TrustTrusted,
			Snapshot: &protocol.SnapshotAck{Stored: 4, SendFull: true}}},
	{"sync_answer_commands", "commands and the blob they reference",
		&protocol.SyncAnswer{Version: protocol.Version, EnvID: 7, Trust: protocol.TrustTrusted,
			Commands: []protocol.Command{
				{ID: 13, Kind: "stack.deploy", Args: map[string]string{"stack": "3", "version": "2"}, Blob: blobHash},
				{ID: 14, Kind: "container.restart", Args: map[string]string{"id": "c1"}},
			},
			Blobs: []protocol.Blob{{Hash: blobHash, Data: blobData}},
		}},
	{"poll_request_first_contact", "standard agent's first poll: signed, with its first snapshot",
		&protocol.PollRequest{Version: protocol.Version, EdgeID: "3f2a9c1e-7b4d-4e8a-9c61-0d5e2f7a8b90",
			Proof:    &protocol.Proof{Key: edgePubKey, Counter: 1, DH: dhPubKey, Tag: signature},
			Include:  protocol.IncludePing | protocol.IncludeSnapshot | protocol.IncludeCommands,
			Agent:    &protocol.AgentInfo{Version: "0.1.0", Hostname: "depot-1", Platform: "docker", OS: "linux", Arch: "amd64"},
			Snapshot: &protocol.SnapshotPush{Seq: 1, Hash: snapHash, Data: snapshotFull},
		}},
	{"poll_request", "poll with a command ack",
		&protocol.PollRequest{Version: protocol.Version, EnvID: 3, Proof: &protocol.Proof{Counter: 12, Tag: proofTag},
			Include: protocol.IncludePing | protocol.IncludeCommands,
			Acks:    []protocol.CommandAck{{ID: 21, Status: protocol.StatusOK, Finished: 1767225600}}}},
	{"poll_answer_idle", "nothing to do: tunnel idle",
		&protocol.PollAnswer{Version: protocol.Version, EnvID: 3, Trust: protocol.TrustTrusted,
			Freq: &protocol.Frequencies{Ping: 5, Command: 5}, Tag: proofTag}},
	{"poll_answer_required", "open the tunnel; a command",
		&protocol.PollAnswer{Version: protocol.Version, EnvID: 3, Trust: protocol.TrustTrusted,
			Freq: &protocol.Frequencies{Ping: 5, Command: 5}, Tunnel: protocol.TunnelRequired, Tag: proofTag,
			Commands: []protocol.Command{{ID: 22, Kind: "container.restart", Args: map[string]string{"id": "c1"}}},
		}},
	{"error_unsupported_version", "refusal of a version 3 request",
		&protocol.Error{Version: protocol.Version, Code: protocol.CodeUnsupportedVersion,
			Message: (&protocol.VersionError{Got: 3}).Error()}},
	{"sync_answer_mode_standard", "an async call to an environment the operator made standard: switch to polling",
		&protocol.SyncAnswer{Version: protocol.Version, EnvID: 7, Trust: protocol.TrustTrusted,
			Freq: &protocol.Frequencies{Ping: 5, Snapshot: 300, Command: 5}, Mode: protocol.ModeStandard, Tag: make([]byte, protocol.MACSize)}},
	{"error_slow_down", "a device calling far faster than its frequency: wait 37 s",
		&protocol.Error{Version: protocol.Version, Code: protocol.CodeSlowDown,
			Message: "environment 7 called 130 times in a minute; its interval allows 120", RetryAfter: 37}},
	{"sync_answer_resync", "the server's store was restored: nothing served; ask again echoing the nonce",
		&protocol.SyncAnswer{Version: protocol.Version, EnvID: 7, Trust: protocol.TrustTrusted, Resync: seqBytes(0x30, 16), Tag: make([]byte, protocol.MACSize)}},
	{"sync_request_resync", "a ping echoing the restored server's nonce",
		&protocol.SyncRequest{Version: protocol.Version, EnvID: 7, Include: protocol.IncludePing,
			Proof: &protocol.Proof{Counter: 43, Tag: proofTag}, Resync: seqBytes(0x30, 16)}},
	{"frequencies", "async frequencies: ping, snapshot, command seconds",
		&protocol.Frequencies{Ping: 60, Snapshot: 3600, Command: 300}},
}

func typeName(v any) string { return reflect.TypeOf(v).Elem().Name() }

func TestGolden(t *testing.T) {
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, v := range goldenVectors {
			data, err := protocol.Marshal(v.value)
			if err != nil {
				t.Fatalf("%s: %v", v.file, err)
			}
			text, err := golden.Format(typeName(v.value), v.desc, data)
			if err != nil {
				t.Fatalf("%s: %v", v.file, err)
			}
			if err := os.WriteFile(filepath.Join(goldenDir, v.file+".golden"), text, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	goldens := golden.ReadDir(t, goldenDir)

	// The table is the source: each vector has its file, and the file holds
	// exactly its encoding, which decodes back to the same value.
	covered := map[string]bool{}
	for _, v := range goldenVectors {
		t.Run("vector/"+v.file, func(t *testing.T) {
			name := typeName(v.value)
			covered[name] = true
			g, ok := goldens[v.file]
			if !ok {
				t.Fatalf("%s/%s.golden is missing; run go test ./protocol -run TestGolden -update", goldenDir, v.file)
			}
			if g.TypeName != name {
				t.Errorf("file names type %s, vector is a %s", g.TypeName, name)
			}
			want, err := protocol.Marshal(v.value)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(g.Data, want) {
				t.Errorf("file bytes differ from the vector's encoding; if the change is deliberate run -update\nfile:   %x\nvector: %x", g.Data, want)
			}
			got := newMessage[name]()
			if err := protocol.Unmarshal(g.Data, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, v.value) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, v.value)
			}
		})
	}
	for name := range newMessage {
		if !covered[name] {
			t.Errorf("no golden vector of type %s", name)
		}
	}

	// Every file, including ones no vector names: decode into the named
	// type, re-encode byte for byte, and check the diagnostic line.
	names := make([]string, 0, len(goldens))
	for n := range goldens {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := goldens[n]
		t.Run("file/"+n, func(t *testing.T) {
			mk, ok := newMessage[g.TypeName]
			if !ok {
				t.Fatalf("unknown type %q on line 1", g.TypeName)
			}
			v := mk()
			if err := protocol.Unmarshal(g.Data, v); err != nil {
				t.Fatalf("decode: %v", err)
			}
			again, err := protocol.Marshal(v)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(again, g.Data) {
				t.Errorf("re-encoding differs\nfile:  %x\nagain: %x", g.Data, again)
			}
			diag, err := cbor.Diagnose(g.Data)
			if err != nil {
				t.Fatalf("diagnose: %v", err)
			}
			if diag != g.Diag {
				t.Errorf("diag line\n got %s\nwant %s", g.Diag, diag)
			}
		})
	}
}

func seqBytes(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func sha256Of(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func mustMarshal(v any) []byte {
	b, err := protocol.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
