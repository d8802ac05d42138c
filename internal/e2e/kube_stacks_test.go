//go:build integration

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost/internal/browser"
	"outpost/internal/kubetest"
	"outpost/internal/testenv"
	"outpost/kube"
)

const tillConfig = `apiVersion: v1
kind: ConfigMap
metadata:
  name: till-config
data:
  currency: EUR
---
`

const tillDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: till
spec:
  replicas: 2
  selector:
    matchLabels: {app: till}
  template:
    metadata:
      labels: {app: till}
    spec:
      containers:
      - name: till
        image: registry.local/till:3
`

// TestKubernetesStackOnAsyncAgent: an async agent in a real cluster gets a
// manifest stack. It reports deploying while the deployment's pods are
// pending and running once they run (set as a kubelet would: none runs
// here); an update that drops the config map prunes it from the cluster,
// and the snapshot history and the console's diff show it removed; the
// stack's removal deletes the rest. A Docker agent of the same group
// reports the Kubernetes stack as an error, and the Kubernetes agent a
// compose stack, each saying why.
func TestKubernetesStackOnAsyncAgent(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx := context.Background()
	ns := fmt.Sprintf("e2e-stack-%d", time.Now().UnixNano()%1_000_000)
	srv := startServer(t)
	cluster := srv.createEnvironment(t, "cluster-stacks", 1)
	docker := srv.createEnvironment(t, "docker-host", 1)
	startAgent(t, cluster.EdgeKey, t.TempDir(), "KUBECONFIG="+kc.Kubeconfig(t))
	startAgent(t, docker.EdgeKey, t.TempDir(), "EDGE_STACK_PREFIX=e2e-kube-stacks-")

	var group struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/edge-groups", map[string]any{"name": "tills", "environmentIds": []uint64{cluster.ID, docker.ID}}, &group, http.StatusCreated)
	var stack struct {
		ID      uint64 `json:"id"`
		Version uint64 `json:"version"`
		Type    string `json:"type"`
	}
	srv.do(t, "POST", "/api/edge-stacks", map[string]any{
		"name": "till", "type": "kubernetes", "namespace": ns, "manifests": tillConfig + tillDeployment, "edgeGroupIds": []uint64{group.ID},
	}, &stack, http.StatusCreated)
	if stack.Type != "kubernetes" {
		t.Fatalf("created %+v", stack)
	}
	waitStatus := func(what string, ok func(v stackStatusView) bool) stackStatusView {
		t.Helper()
		return srv.waitStackStatus(t, stack.ID, what, ok)
	}

	// Applied, but the pods are pending: deploying.
	waitStatus("deploying on the cluster, an error on Docker", func(v stackStatusView) bool {
		sc, _ := v.of(cluster.ID)
		sd, _ := v.of(docker.ID)
		return sc == "deploying" &&
			sd == "error" && strings.Contains(v.errorOf(docker.ID), "a kubernetes stack cannot run on this device, which runs compose stacks on Docker")
	})
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "till-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=till"}); err != nil || slices.ContainsFunc(pods.Items, func(p corev1.Pod) bool { return p.Status.Phase != corev1.PodPending }) {
		t.Fatalf("before the test plays the kubelet, a pod is not pending: %v", err)
	}
	if cm.Labels[kube.LabelStack] != "till" || cm.Labels[kube.LabelStackVersion] != "1" ||
		!slices.ContainsFunc(cm.ManagedFields, func(m metav1.ManagedFieldsEntry) bool { return m.Manager == "outpost" }) {
		t.Fatalf("the config map as applied: labels %v, managers %+v", cm.Labels, cm.ManagedFields)
	}
	kc.PodsRunning(t, ns, "app=till", 2)
	waitStatus("running version 1", func(v stackStatusView) bool {
		s, ver := v.of(cluster.ID)
		return s == "running" && ver == 1
	})

	section := func(name string) ([]kubeObject, uint64) { return srv.kubeSection(t, cluster.ID, name, ns) }
	var before uint64
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var m []kubeObject
		m, before = section("configMaps")
		return slices.ContainsFunc(m, func(k kubeObject) bool { return k.UID == string(cm.UID) }), fmt.Sprintf("snapshot seq %d: config maps %+v", before, m)
	})

	// Version 2 drops the config map: the agent prunes it.
	srv.do(t, "PUT", fmt.Sprintf("/api/edge-stacks/%d", stack.ID), map[string]any{"manifests": tillDeployment}, &stack, http.StatusOK)
	if stack.Version != 2 {
		t.Fatalf("version after the update: %d", stack.Version)
	}
	waitStatus("running version 2", func(v stackStatusView) bool {
		s, ver := v.of(cluster.ID)
		return s == "running" && ver == 2
	})
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "till-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the dropped config map is still in the cluster: %v", err)
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "till", metav1.GetOptions{})
	if err != nil || dep.Labels[kube.LabelStackVersion] != "2" {
		t.Fatalf("the deployment after the update: %v %v", dep.Labels, err)
	}
	var after uint64
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var m []kubeObject
		m, after = section("configMaps")
		return !slices.ContainsFunc(m, func(k kubeObject) bool { return k.UID == string(cm.UID) }), fmt.Sprintf("snapshot seq %d: config maps %+v", after, m)
	})
	// The history: one delta between the two deletes the config map's UID.
	var deleted []uint64
	for seq := before + 1; seq <= after; seq++ {
		var hist []struct {
			Kind  string `json:"kind"`
			Delta *struct {
				ConfigMaps *struct {
					Del []string `json:"del"`
				} `json:"configMaps"`
			} `json:"delta"`
		}
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot/history?seq=%d", cluster.ID, seq), nil, &hist, http.StatusOK)
		for _, h := range hist {
			if h.Delta != nil && h.Delta.ConfigMaps != nil && slices.Contains(h.Delta.ConfigMaps.Del, string(cm.UID)) {
				deleted = append(deleted, seq)
			}
		}
	}
	if len(deleted) != 1 {
		t.Fatalf("deltas %d to %d delete the config map in %v, want one", before+1, after, deleted)
	}
	// And the console's diff says so.
	b := browser.New(t)
	diff := fmt.Sprintf("/environments/%d/diff?from=%d&to=%d", cluster.ID, before, after)
	logIn(b, srv, diff, chromedp.CSS("section.points"))
	if text := b.Text("main"); !strings.Contains(text, ns+"/till-config removed") {
		t.Errorf("the diff does not show the config map removed:\n%s", text)
	}
	b.Shot("kubernetes-stack-prune-diff")

	// A compose stack on the cluster's agent: an error saying why.
	var only, compose struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/edge-groups", map[string]any{"name": "cluster only", "environmentIds": []uint64{cluster.ID}}, &only, http.StatusCreated)
	srv.do(t, "POST", "/api/edge-stacks", map[string]any{
		"name": "web", "composeFile": "services:\n  web:\n    image: busybox\n", "edgeGroupIds": []uint64{only.ID},
	}, &compose, http.StatusCreated)
	srv.waitStackStatus(t, compose.ID, "a compose stack on the cluster", func(v stackStatusView) bool {
		s, _ := v.of(cluster.ID)
		return s == "error" && strings.Contains(v.errorOf(cluster.ID), "a compose stack cannot run on this device, which is a Kubernetes cluster")
	})
	srv.do(t, "DELETE", fmt.Sprintf("/api/edge-stacks/%d", compose.ID), nil, nil, http.StatusNoContent)

	// Removing the stack deletes what it applied; the namespace stays.
	srv.do(t, "DELETE", fmt.Sprintf("/api/edge-stacks/%d", stack.ID), nil, nil, http.StatusNoContent)
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		_, err := cs.AppsV1().Deployments(ns).Get(ctx, "till", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprintf("the deployment after the stack's removal: %v", err)
	})
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("the stack's default namespace: %v", err)
	}
}
