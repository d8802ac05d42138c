package snapshot_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"outpost/protocol"
	"outpost/snapshot"
)

// captures loads the real Docker captures in testdata/docker.
func captures(t testing.TB) map[string]*snapshot.Snapshot {
	t.Helper()
	return loadCaptures(t, "../testdata/docker/docker-*.json", "go run ./internal/tools/capture")
}

// kubeCaptures loads the real Kubernetes captures in testdata/kube.
func kubeCaptures(t testing.TB) map[string]*snapshot.Snapshot {
	t.Helper()
	return loadCaptures(t, "../testdata/kube/kube-*.json", "OUTPOST_CAPTURE=1 go test -tags integration -run TestCaptureKube ./kube")
}

func loadCaptures(t testing.TB, pattern, regenerate string) map[string]*snapshot.Snapshot {
	t.Helper()
	files, _ := filepath.Glob(pattern)
	if len(files) == 0 {
		t.Fatalf("no captures %s; regenerate them with %s", pattern, regenerate)
	}
	out := map[string]*snapshot.Snapshot{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d snapshot.Snapshot
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		snapshot.Normalize(&d)
		out[filepath.Base(f)] = &d
	}
	return out
}

// wire sends v through the CBOR codec, as the protocol does.
func wire[T any](t testing.TB, v *T) *T {
	t.Helper()
	b, err := protocol.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := protocol.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func clone(t testing.TB, d *snapshot.Snapshot) *snapshot.Snapshot { return wire(t, d) }

// mutate applies a few random changes of the kinds an engine sees.
func mutate(r *rand.Rand, d *snapshot.Snapshot, gen *int) {
	newID := func() string { *gen++; return fmt.Sprintf("%012x", 0xa00000000000+*gen) }
	for range 1 + r.IntN(4) {
		switch r.IntN(12) {
		case 0, 1, 2: // a container changes state
			if len(d.Containers) > 0 {
				c := &d.Containers[r.IntN(len(d.Containers))]
				c.State = snapshot.State(1 + r.IntN(7))
				c.ExitCode = r.IntN(2) * 137
				c.Finished = int64(1_700_000_000 + r.IntN(1000))
				if r.IntN(2) == 0 {
					c.Health = snapshot.Health(r.IntN(4))
				}
			}
		case 3: // a new container, copied from another
			if len(d.Containers) > 0 {
				c := d.Containers[r.IntN(len(d.Containers))]
				c.ID, c.Name = newID(), fmt.Sprintf("new-%d", *gen)
				c.Labels = map[string]string{"added": fmt.Sprint(*gen)}
				d.Containers = append(d.Containers, c)
			}
		case 4: // a container removed
			if len(d.Containers) > 0 {
				i := r.IntN(len(d.Containers))
				d.Containers = slices.Delete(d.Containers, i, i+1)
			}
		case 5: // labels edited: one added, one removed
			if len(d.Containers) > 0 {
				c := &d.Containers[r.IntN(len(d.Containers))]
				m := map[string]string{}
				for k, v := range c.Labels {
					m[k] = v
				}
				for k := range m {
					delete(m, k)
					break
				}
				m[fmt.Sprintf("l%d", r.IntN(100))] = "v"
				c.Labels = m
			}
		case 6: // ports or mounts cleared (fields unset, not just changed)
			if len(d.Containers) > 0 {
				c := &d.Containers[r.IntN(len(d.Containers))]
				c.Ports, c.Mounts = nil, nil
			}
		case 7: // an image pulled or removed
			if r.IntN(2) == 0 || len(d.Images) == 0 {
				d.Images = append(d.Images, snapshot.Image{ID: newID(), Tags: []string{fmt.Sprintf("img:%d", *gen)}, Size: int64(r.IntN(1 << 30))})
			} else {
				i := r.IntN(len(d.Images))
				d.Images = slices.Delete(d.Images, i, i+1)
			}
		case 8:
			if r.IntN(2) == 0 || len(d.Volumes) == 0 {
				d.Volumes = append(d.Volumes, snapshot.Volume{Name: "vol-" + newID()})
			} else {
				i := r.IntN(len(d.Volumes))
				d.Volumes = slices.Delete(d.Volumes, i, i+1)
			}
		case 9:
			if r.IntN(2) == 0 || len(d.Networks) == 0 {
				id := newID()
				d.Networks = append(d.Networks, snapshot.Network{ID: id, Name: "net-" + id, Driver: "bridge"})
			} else {
				i := r.IntN(len(d.Networks))
				d.Networks = slices.Delete(d.Networks, i, i+1)
			}
		case 10: // engine facts change
			d.Engine.ServerVersion = fmt.Sprintf("27.%d.0", r.IntN(9))
		case 11: // a compose project gains a service
			if len(d.Projects) > 0 {
				p := &d.Projects[r.IntN(len(d.Projects))]
				p.Services = append(slices.Clone(p.Services), fmt.Sprintf("svc-%d", *gen))
			}
		}
	}
	snapshot.Normalize(d)
}

// TestDeltaProperty: over random mutations of real captures,
// Apply(base, Compute(base, next)) == next, with the delta sent through the
// wire codec between the two.
func TestDeltaProperty(t *testing.T) {
	for name, capture := range captures(t) {
		t.Run(name, func(t *testing.T) { property(t, capture, mutate) })
	}
}

// TestDeltaPropertyKube is TestDeltaProperty over the Kubernetes captures,
// with the changes a cluster sees.
func TestDeltaPropertyKube(t *testing.T) {
	for name, capture := range kubeCaptures(t) {
		t.Run(name, func(t *testing.T) { property(t, capture, mutateKube) })
	}
}

// property checks Apply(base, Compute(base, next)) == next over random
// mutations of capture, each step's result the next step's base.
func property(t *testing.T, capture *snapshot.Snapshot, mutate func(*rand.Rand, *snapshot.Snapshot, *int)) {
	r := rand.New(rand.NewPCG(42, uint64(len(capture.Containers)+len(capture.Pods))))
	gen := 0
	base := clone(t, capture)
	iterations := 300
	if testing.Short() {
		iterations = 30
	}
	for i := range iterations {
		next := clone(t, base)
		mutate(r, next, &gen)
		d, err := snapshot.Compute(base, next)
		if err != nil {
			t.Fatal(err)
		}
		got, err := snapshot.Apply(base, wire(t, d))
		if err != nil {
			t.Fatalf("step %d: apply: %v", i, err)
		}
		want := clone(t, next)
		if g := clone(t, got); !reflect.DeepEqual(g, want) {
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(want)
			t.Fatalf("step %d: apply(base, compute(base, next)) != next\n got %s\nwant %s", i, firstDiff(gj, wj), firstDiff(wj, gj))
		}
		hg, _ := snapshot.Hash(got)
		hn, _ := snapshot.Hash(next)
		if hg != hn {
			t.Fatalf("step %d: hash differs after apply", i)
		}
		base = got
	}
}

// mutateKube applies a few random changes of the kinds a cluster sees.
func mutateKube(r *rand.Rand, d *snapshot.Snapshot, gen *int) {
	uid := func() string { *gen++; return fmt.Sprintf("00000000-0000-4000-8000-%012x", *gen) }
	for range 1 + r.IntN(4) {
		switch r.IntN(10) {
		case 0, 1: // a pod changes phase, a container restarts
			if len(d.Pods) > 0 {
				p := &d.Pods[r.IntN(len(d.Pods))]
				p.Phase = []string{"Pending", "Running", "Succeeded", "Failed"}[r.IntN(4)]
				p.Node = fmt.Sprintf("node-%d", r.IntN(3))
				if len(p.Containers) > 0 {
					c := &p.Containers[0]
					c.Restarts++
					p.Restarts++
					c.State, c.Reason = "waiting", "CrashLoopBackOff"
					c.Ready = r.IntN(2) == 0
				}
			}
		case 2: // a pod replaced by its replica set
			if len(d.Pods) > 0 {
				i := r.IntN(len(d.Pods))
				p := d.Pods[i]
				p.UID, p.Name, p.Phase = uid(), fmt.Sprintf("%s-%d", p.Name, *gen), "Pending"
				p.Containers = slices.Clone(p.Containers)
				d.Pods = append(slices.Delete(d.Pods, i, i+1), p)
			}
		case 3: // a workload scales or rolls out a new image
			if len(d.Workloads) > 0 {
				w := &d.Workloads[r.IntN(len(d.Workloads))]
				w.Desired, w.Ready, w.Available = int32(r.IntN(5)), int32(r.IntN(5)), int32(r.IntN(5))
				w.Generation++
				if r.IntN(2) == 0 {
					w.Images = []string{fmt.Sprintf("registry.local/app:%d", *gen)}
					w.Problem = ""
				} else {
					w.Problem = "ProgressDeadlineExceeded: ReplicaSet has timed out progressing."
				}
			}
		case 4: // a namespace of a new site, or one gone
			if r.IntN(2) == 0 || len(d.Namespaces) == 0 {
				d.Namespaces = append(d.Namespaces, snapshot.Namespace{UID: uid(), Name: fmt.Sprintf("site-new-%d", *gen), Phase: "Active"})
			} else {
				i := r.IntN(len(d.Namespaces))
				d.Namespaces = slices.Delete(d.Namespaces, i, i+1)
			}
		case 5: // a warning repeats, or a new one
			if r.IntN(2) == 0 && len(d.Warnings) > 0 {
				w := &d.Warnings[r.IntN(len(d.Warnings))]
				w.Count++
				w.Last++
			} else {
				d.Warnings = append(d.Warnings, snapshot.Warning{ID: fmt.Sprintf("ns/Pod/p-%d/BackOff", *gen), Object: "Pod/p", Reason: "BackOff",
					Message: "Back-off restarting failed container", Count: 1, Last: int64(1_800_000_000 + *gen)})
			}
		case 6: // a secret or config map gains a key
			if len(d.Secrets) > 0 {
				k := &d.Secrets[r.IntN(len(d.Secrets))]
				k.Keys = append(slices.Clone(k.Keys), fmt.Sprintf("key-%d", *gen))
			}
		case 7: // a service's ports change, or its selector is dropped
			if len(d.Services) > 0 {
				s := &d.Services[r.IntN(len(d.Services))]
				s.Ports = append(slices.Clone(s.Ports), snapshot.ServicePort{Port: int32(8000 + *gen%1000), Proto: "UDP"})
				if r.IntN(3) == 0 {
					s.Selector = nil
				}
			}
		case 8: // a claim binds
			if len(d.Claims) > 0 {
				c := &d.Claims[r.IntN(len(d.Claims))]
				c.Phase, c.Volume, c.Capacity = "Bound", fmt.Sprintf("pv-%d", *gen), "2Gi"
			}
		case 9: // the cluster is upgraded, a node joins
			d.Cluster.Version = fmt.Sprintf("v1.36.%d", r.IntN(9))
			d.Nodes = append(d.Nodes, snapshot.Node{UID: uid(), Name: fmt.Sprintf("node-%d", *gen), Ready: true, Roles: []string{"worker"}})
		}
	}
	snapshot.Normalize(d)
}

func TestDeltaOneContainerStopIsAFieldPatch(t *testing.T) {
	base := captures(t)["docker-50.json"]
	if base == nil {
		t.Fatal("docker-50.json missing")
	}
	next := clone(t, base)
	i := slices.IndexFunc(next.Containers, func(c snapshot.Container) bool { return c.State == snapshot.StateRunning })
	if i < 0 {
		t.Fatal("no running container in the capture")
	}
	next.Containers[i].State, next.Containers[i].ExitCode, next.Containers[i].Finished = snapshot.StateExited, 137, 1_800_000_000
	d, err := snapshot.Compute(base, next)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Containers
	if c == nil || len(c.Put) != 0 || len(c.Del) != 0 || len(c.Patch) != 1 || d.Images != nil || d.Engine != nil {
		t.Fatalf("delta = %+v, want one container patch", d)
	}
	var fields []uint64
	for k := range c.Patch[0].Set {
		fields = append(fields, k)
	}
	slices.Sort(fields)
	// State (6), ExitCode (8), Finished (11): the record's other fields stay home.
	if !slices.Equal(fields, []uint64{6, 8, 11}) || c.Patch[0].Key != next.Containers[i].ID {
		t.Fatalf("patch %+v sets fields %v, want [6 8 11] of %s", c.Patch[0], fields, next.Containers[i].ID)
	}
	b, _ := protocol.Marshal(d)
	t.Logf("one-container stop: %d bytes of CBOR", len(b))
}

func TestDeltaEmptyWhenNothingChanged(t *testing.T) {
	for name, c := range captures(t) {
		d, err := snapshot.Compute(c, clone(t, c))
		if err != nil {
			t.Fatal(err)
		}
		if !d.Empty() {
			t.Errorf("%s: delta of a snapshot against itself is not empty: %+v", name, d)
		}
	}
}

func TestApplyRefusesAForeignBase(t *testing.T) {
	c := captures(t)["docker-50.json"]
	next := clone(t, c)
	next.Containers[0].State = snapshot.StateDead
	next.Containers = next.Containers[:len(next.Containers)-1]
	d, err := snapshot.Compute(c, next)
	if err != nil {
		t.Fatal(err)
	}
	other := &snapshot.Snapshot{Engine: c.Engine}
	if _, err := snapshot.Apply(other, d); !errors.Is(err, snapshot.ErrBase) {
		t.Fatalf("apply to a foreign base: err = %v, want ErrBase", err)
	}
}

func TestHashStableAcrossEncodeDecode(t *testing.T) {
	for name, c := range captures(t) {
		h1, err := snapshot.Hash(c)
		if err != nil {
			t.Fatal(err)
		}
		h2, _ := snapshot.Hash(clone(t, clone(t, c)))
		if h1 != h2 {
			t.Errorf("%s: hash changed across encode/decode", name)
		}
		// And through JSON, the API's form, after normalizing.
		b, _ := json.Marshal(c)
		var j snapshot.Snapshot
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatal(err)
		}
		snapshot.Normalize(&j)
		if h3, _ := snapshot.Hash(&j); h3 != h1 {
			t.Errorf("%s: hash changed across JSON", name)
		}
		m := clone(t, c)
		m.Engine.Hostname += "x"
		if h4, _ := snapshot.Hash(m); h4 == h1 {
			t.Errorf("%s: hash did not change with the content", name)
		}
	}
}

// firstDiff returns the neighbourhood of the first byte where a and b differ.
func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo, hi := max(0, i-150), min(len(a), i+150)
	return string(a[lo:hi])
}

func TestNormalizeDropsDuplicateKeys(t *testing.T) {
	d := &snapshot.Snapshot{Volumes: []snapshot.Volume{{Name: "b"}, {Name: "a", Driver: "first"}, {Name: "a", Driver: "second"}}}
	snapshot.Normalize(d)
	if len(d.Volumes) != 2 || d.Volumes[0].Name != "a" || d.Volumes[0].Driver != "first" || d.Volumes[1].Name != "b" {
		t.Fatalf("normalized volumes = %+v", d.Volumes)
	}
}
