package snapshot_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"outpost/internal/golden"
	"outpost/protocol"
	"outpost/snapshot"
)

var update = flag.Bool("update", false, "rewrite testdata/snapshot/*.golden from the vectors in golden_test.go")

// goldenDir holds the snapshot vectors, beside the protocol's.
const goldenDir = "../testdata/snapshot"

// kubeSite is a small Kubernetes snapshot with one record of each kind.
var kubeSite = &snapshot.Snapshot{
	Cluster:    snapshot.Cluster{Version: "v1.36.3", Platform: "linux/arm64"},
	Nodes:      []snapshot.Node{{UID: "n1", Name: "gw-1", Roles: []string{"control-plane"}, Ready: true, Kubelet: "v1.36.3", Arch: "arm64", CPU: "4", Memory: "8Gi"}},
	Namespaces: []snapshot.Namespace{{UID: "ns1", Name: "shop", Phase: "Active"}},
	Workloads: []snapshot.Workload{{UID: "w1", Kind: snapshot.KindDeployment, Namespace: "shop", Name: "pos", Images: []string{"pos:1.4"},
		Desired: 2, Ready: 2, Available: 2, Updated: 2, Generation: 3, Observed: 3}},
	Pods: []snapshot.Pod{{UID: "p1", Namespace: "shop", Name: "pos-7d9-abcde", Phase: "Running", Node: "gw-1", Owner: "ReplicaSet/pos-7d9",
		Containers: []snapshot.PodContainer{{Name: "pos", Image: "pos:1.4", Ready: true, State: "running"}}}},
	Services:   []snapshot.Service{{UID: "s1", Namespace: "shop", Name: "pos", Type: "ClusterIP", ClusterIP: "10.0.0.12", Ports: []snapshot.ServicePort{{Port: 80, Target: "8080"}}}},
	Ingresses:  []snapshot.Ingress{{UID: "i1", Namespace: "shop", Name: "pos", Rules: []snapshot.IngressRule{{Host: "shop.example", Path: "/", Service: "pos", Port: "80"}}}},
	Claims:     []snapshot.Claim{{UID: "c1", Namespace: "shop", Name: "data", Phase: "Bound", Requested: "2Gi", AccessModes: []string{"ReadWriteOnce"}}},
	ConfigMaps: []snapshot.KeySet{{UID: "m1", Namespace: "shop", Name: "pos-config", Keys: []string{"currency"}}},
	Secrets:    []snapshot.KeySet{{UID: "x1", Namespace: "shop", Name: "pos-db", Type: "Opaque", Keys: []string{"password"}}},
	Warnings:   []snapshot.Warning{{ID: "shop/Pod/pos-7d9-abcde/BackOff", Object: "Pod/pos-7d9-abcde", Reason: "BackOff", Message: "Back-off restarting failed container", Count: 3, Last: 1800000000}},
}

// kubePodCrashed is the delta of kubeSite's pod starting to crash-loop:
// one patch of the pod's fields, the warning's count.
func kubePodCrashed(t testing.TB) *snapshot.Delta {
	next := clone(t, kubeSite)
	p := &next.Pods[0]
	p.Phase, p.Restarts = "Running", 1
	p.Containers[0] = snapshot.PodContainer{Name: "pos", Image: "pos:1.4", Restarts: 1, State: "waiting", Reason: "CrashLoopBackOff"}
	next.Warnings[0].Count, next.Warnings[0].Last = 4, 1800000060
	d, err := snapshot.Compute(kubeSite, next)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestGolden: the Kubernetes snapshot and delta encode to the bytes in
// testdata/snapshot, and those decode back to the same values, so a change
// of field numbers or of the delta's shape is seen.
func TestGolden(t *testing.T) {
	vectors := []struct {
		file, desc string
		value      any
		zero       func() any
	}{
		{"kube_snapshot", "a Kubernetes snapshot with one record of each kind", kubeSite, func() any { return &snapshot.Snapshot{} }},
		{"kube_delta_pod_crashed", "the pod of kube_snapshot crash-loops: one pod patch, one warning patch", kubePodCrashed(t), func() any { return &snapshot.Delta{} }},
	}
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range vectors {
		want, err := protocol.Marshal(v.value)
		if err != nil {
			t.Fatal(err)
		}
		name := reflect.TypeOf(v.value).Elem().Name()
		if *update {
			text, err := golden.Format(name, v.desc, want)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(goldenDir, v.file+".golden"), text, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files := golden.ReadDir(t, goldenDir)
	for _, v := range vectors {
		t.Run(v.file, func(t *testing.T) {
			g, ok := files[v.file]
			if !ok {
				t.Fatalf("%s/%s.golden is missing; run go test ./snapshot -run TestGolden -update", goldenDir, v.file)
			}
			want, _ := protocol.Marshal(v.value)
			if !bytes.Equal(g.Data, want) {
				t.Errorf("file bytes differ from the vector's encoding; if the change is deliberate run -update\nfile:   %x\nvector: %x", g.Data, want)
			}
			got := v.zero()
			if err := protocol.Unmarshal(g.Data, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, v.value) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, v.value)
			}
		})
	}
	// The delta is what it says: one pod patch and one warning patch.
	d := kubePodCrashed(t)
	if d.Pods == nil || len(d.Pods.Patch) != 1 || d.Pods.Put != nil || d.Warnings == nil || len(d.Warnings.Patch) != 1 || d.Workloads != nil {
		t.Fatalf("delta %+v", d)
	}
}
