// Package corpus turns the real Docker captures in testdata/docker into the
// message bodies agents and the server exchange: training samples for the
// zstd dictionary and the cases the protocol size benchmark measures.
package corpus

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"

	"outpost/protocol"
	"outpost/snapshot"
)

// Capture is one real capture.
type Capture struct {
	Name   string // file name, e.g. docker-50.json
	Docker *snapshot.Snapshot
}

// Load reads every testdata/docker/docker-*.json under dir, smallest first.
func Load(dir string) ([]Capture, error) {
	files, err := filepath.Glob(filepath.Join(dir, "docker-*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no captures in %s: regenerate them with go run ./internal/tools/capture", dir)
	}
	var out []Capture
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d snapshot.Snapshot
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		snapshot.Normalize(&d)
		out = append(out, Capture{Name: filepath.Base(f), Docker: &d})
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].Docker.Containers) < len(out[j].Docker.Containers) })
	return out, nil
}

// Messages an agent sends and receives, built on a capture.

// FullPush is the sync request that carries d whole.
func FullPush(d *snapshot.Snapshot, env, seq uint64) (*protocol.SyncRequest, error) {
	data, err := protocol.Marshal(d)
	if err != nil {
		return nil, err
	}
	h, err := snapshot.Hash(d)
	if err != nil {
		return nil, err
	}
	return &protocol.SyncRequest{
		Version: protocol.Version, EnvID: env,
		Include:  protocol.IncludePing | protocol.IncludeSnapshot | protocol.IncludeCommands,
		Snapshot: &protocol.SnapshotPush{Seq: seq, Hash: h[:snapshot.HashSize], Data: data},
		Proof:    proof(env),
	}, nil
}

// DeltaPush is the sync request that carries the delta from base to next.
func DeltaPush(base, next *snapshot.Snapshot, env, seq uint64) (*protocol.SyncRequest, *snapshot.Delta, error) {
	d, err := snapshot.Compute(base, next)
	if err != nil {
		return nil, nil, err
	}
	data, err := protocol.Marshal(d)
	if err != nil {
		return nil, nil, err
	}
	h, err := snapshot.Hash(next)
	if err != nil {
		return nil, nil, err
	}
	return &protocol.SyncRequest{
		Version: protocol.Version, EnvID: env,
		Include:  protocol.IncludePing | protocol.IncludeSnapshot | protocol.IncludeCommands,
		Snapshot: &protocol.SnapshotPush{Seq: seq, Base: seq - 1, Hash: h[:snapshot.HashSize], Data: data},
		Proof:    proof(env),
	}, d, nil
}

// Ping is an idle check-in of a bound device that also pulls commands, with
// its proof.
func Ping(env uint64) *protocol.SyncRequest {
	return &protocol.SyncRequest{Version: protocol.Version, EnvID: env, Include: protocol.IncludePing | protocol.IncludeCommands,
		Proof: proof(env)}
}

// proof is what a bound device's request carries: a counter a year of
// minute pings reaches and a MAC tag (random-looking, as real ones are).
func proof(env uint64) *protocol.Proof {
	tag := sha256.Sum256([]byte(fmt.Sprint("tag", env)))
	return &protocol.Proof{Counter: 526_000, Tag: tag[:protocol.MACSize]}
}

// PingAnswer is the server's answer to an idle ping, with its tag.
func PingAnswer(env uint64, f protocol.Frequencies) *protocol.SyncAnswer {
	ans := &protocol.SyncAnswer{Version: protocol.Version, EnvID: env, Trust: protocol.TrustTrusted, Freq: &f}
	key := sha256.Sum256([]byte(fmt.Sprint("key", env)))
	if err := protocol.SealAnswer(ans, key[:], proof(env).Counter); err != nil {
		panic(err)
	}
	return ans
}

// Clone deep-copies a snapshot through the codec.
func Clone(d *snapshot.Snapshot) *snapshot.Snapshot {
	b, err := protocol.Marshal(d)
	if err != nil {
		panic(err)
	}
	var out snapshot.Snapshot
	if err := protocol.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return &out
}

// StopOne returns d with one running container stopped (exit 137, finished
// at the given time), and that container's ID.
func StopOne(d *snapshot.Snapshot, at int64) (*snapshot.Snapshot, string) {
	next := Clone(d)
	i := slices.IndexFunc(next.Containers, func(c snapshot.Container) bool { return c.State == snapshot.StateRunning })
	if i < 0 {
		return next, ""
	}
	c := &next.Containers[i]
	c.State, c.ExitCode, c.Finished, c.Health = snapshot.StateExited, 137, at, snapshot.HealthNone
	return next, c.ID
}

// Subset returns a snapshot of n random containers of d with the images,
// volumes, networks and projects they use: a smaller device of the same kind.
func Subset(r *rand.Rand, d *snapshot.Snapshot, n int) *snapshot.Snapshot {
	out := &snapshot.Snapshot{Engine: d.Engine}
	perm := r.Perm(len(d.Containers))
	images, vols, nets, projs := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, i := range perm[:min(n, len(perm))] {
		c := d.Containers[i]
		out.Containers = append(out.Containers, c)
		images[c.ImageID] = true
		for _, m := range c.Mounts {
			vols[m.Source] = true
		}
		for _, nw := range c.Networks {
			nets[nw] = true
		}
		projs[c.Labels[snapshot.LabelProject]] = true
	}
	for _, im := range d.Images {
		if images[im.ID] {
			out.Images = append(out.Images, im)
		}
	}
	for _, v := range d.Volumes {
		if vols[v.Name] {
			out.Volumes = append(out.Volumes, v)
		}
	}
	for _, nw := range d.Networks {
		if nets[nw.Name] {
			out.Networks = append(out.Networks, nw)
		}
	}
	for _, p := range d.Projects {
		if projs[p.Name] {
			out.Projects = append(out.Projects, p)
		}
	}
	snapshot.Normalize(out)
	return out
}

// Samples returns CBOR bodies of the kinds agents exchange, built from the
// captures: full snapshots of devices of many sizes, deltas, pings and
// answers. They train the zstd dictionary.
func Samples(caps []Capture, seed uint64) ([][]byte, error) {
	r := rand.New(rand.NewPCG(seed, 1))
	var out [][]byte
	add := func(v any) error {
		b, err := protocol.Marshal(v)
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	}
	for _, c := range caps {
		d := c.Docker
		for range 150 {
			sub := Subset(r, d, 1+r.IntN(min(60, len(d.Containers))))
			req, err := FullPush(sub, uint64(1+r.IntN(5000)), uint64(1+r.IntN(1000)))
			if err != nil {
				return nil, err
			}
			if err := add(req); err != nil {
				return nil, err
			}
			next, _ := StopOne(sub, 1_795_000_000+int64(r.IntN(1_000_000)))
			if r.IntN(3) == 0 && len(d.Containers) > 0 {
				// A new container appears as a whole record.
				nc := d.Containers[r.IntN(len(d.Containers))]
				nc.ID = fmt.Sprintf("%012x", r.Uint64()&0xffffffffffff)
				next.Containers = append(next.Containers, nc)
				snapshot.Normalize(next)
			}
			dreq, _, err := DeltaPush(sub, next, uint64(1+r.IntN(5000)), uint64(2+r.IntN(1000)))
			if err != nil {
				return nil, err
			}
			if err := add(dreq); err != nil {
				return nil, err
			}
		}
	}
	for range 200 {
		env := uint64(1 + r.IntN(100000))
		if err := add(Ping(env)); err != nil {
			return nil, err
		}
		f := protocol.Frequencies{Ping: uint32(1 + r.IntN(3600)), Snapshot: uint32(1 + r.IntN(3600)), Command: uint32(1 + r.IntN(3600))}
		ans := PingAnswer(env, f)
		ans.Snapshot = &protocol.SnapshotAck{Stored: uint64(r.IntN(1000))}
		if err := add(ans); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TrainDict builds a zstd dictionary of at most size bytes with the given ID
// from the sample bodies of the captures.
func TrainDict(caps []Capture, size int, id uint32) ([]byte, error) {
	samples, err := Samples(caps, 1)
	if err != nil {
		return nil, err
	}
	return dict.BuildZstdDict(samples, dict.Options{
		MaxDictSize: size, HashBytes: 6, ZstdDictID: id, ZstdLevel: zstd.SpeedBestCompression,
	})
}
