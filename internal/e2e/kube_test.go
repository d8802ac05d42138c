//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost/internal/browser"
	"outpost/internal/kubetest"
	"outpost/internal/testenv"
	"outpost/kube"
)

// TestAsyncAgentOnKubernetes: the agent process, given a KUBECONFIG for a
// real API server, reports the platform kubernetes, and its snapshots carry
// the cluster: a deployment created in it, its pods from the controller
// manager, then its removal, which arrives as a delta.
func TestAsyncAgentOnKubernetes(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx := context.Background()
	ns := fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1_000_000)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t)
	env := srv.createEnvironment(t, "cluster-1", 1)
	startAgent(t, env.EdgeKey, t.TempDir(), "KUBECONFIG="+kc.Kubeconfig(t))

	type agentEnv struct {
		Agent struct {
			Platform string `json:"platform"`
		} `json:"agent"`
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var e agentEnv
		srv.do(t, "GET", fmt.Sprintf("/api/environments/%d", env.ID), nil, &e, http.StatusOK)
		return e.Agent.Platform == "kubernetes", fmt.Sprintf("agent %+v", e.Agent)
	})
	// The agent keeps the role tables' cluster roles in its cluster.
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, name := range kube.RoleNames {
			if _, err := cs.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); err != nil {
				return false, err.Error()
			}
		}
		return true, ""
	})

	labels := map[string]string{"app": "till"}
	two := int32(2)
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "till"},
		Spec: appsv1.DeploymentSpec{Replicas: &two, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "till", Image: "registry.local/till:3"}}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	section := func(name string) ([]kubeObject, uint64) { return srv.kubeSection(t, env.ID, name, ns) }
	var shown uint64
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		w, _ := section("workloads")
		p, seq := section("pods")
		shown = seq
		return len(w) == 1 && w[0].Kind == "Deployment" && len(p) == 2,
			fmt.Sprintf("snapshot seq %d: workloads %+v, pods %+v", seq, w, p)
	})

	// The console shows the cluster: its workloads and pods as tabs.
	b := browser.New(t)
	envPage := fmt.Sprintf("/environments/%d", env.ID)
	logIn(b, srv, envPage+"?tab=workloads&at="+fmt.Sprint(shown), chromedp.ID("workloads"))
	page := b.Text("main")
	for _, want := range []string{"Kubernetes", "v1.36.3", ns + "/till", "Deployment", "0/2 ready", "registry.local/till:3"} {
		if !strings.Contains(page, want) {
			t.Errorf("the cluster's workloads page lacks %q", want)
		}
	}
	b.Shot("kubernetes-workloads")
	b.Do("pods tab", chromedp.Navigate(srv.URL+envPage+"?tab=pods&at="+fmt.Sprint(shown)), chromedp.WaitVisible(chromedp.ID("pods")))
	if rows := len(b.Nodes(`#pods tbody tr`)); rows < 2 {
		t.Errorf("the pods tab has %d rows", rows)
	}
	if text := b.Text("#pods"); strings.Count(text, ns+"/till-") != 2 || !strings.Contains(text, "ReplicaSet/till-") {
		t.Errorf("the pods tab does not list the deployment's 2 pods:\n%s", text)
	}
	b.Shot("kubernetes-pods")

	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "till", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var w []kubeObject
		w, seq = section("workloads")
		return len(w) == 0, fmt.Sprintf("snapshot seq %d: workloads %+v", seq, w)
	})
	var hist []struct {
		Kind  string `json:"kind"`
		Delta *struct {
			Workloads *struct {
				Del []string `json:"del"`
			} `json:"workloads"`
		} `json:"delta"`
	}
	srv.do(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot/history?seq=%d", env.ID, seq), nil, &hist, http.StatusOK)
	if len(hist) != 1 || hist[0].Kind != "delta" || hist[0].Delta == nil || hist[0].Delta.Workloads == nil || len(hist[0].Delta.Workloads.Del) != 1 {
		t.Fatalf("the deployment's removal arrived as %+v, want a delta deleting one workload", hist)
	}
	// And the console's diff says so, once the garbage collector has taken
	// the pods too (it does after the deployment, in a later snapshot).
	var gone uint64
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var p []kubeObject
		p, gone = section("pods")
		return len(p) == 0, fmt.Sprintf("snapshot seq %d: pods %+v", gone, p)
	})
	b.Do("diff", chromedp.Navigate(fmt.Sprintf("%s%s/diff?from=%d&to=%d", srv.URL, envPage, shown, gone)), chromedp.WaitVisible(chromedp.CSS("section.points")))
	if text := b.Text("main"); !strings.Contains(text, "deployment "+ns+"/till removed") || !strings.Contains(text, ns+"/till-") {
		t.Errorf("the diff does not show the deployment and its pods removed:\n%s", text)
	}
	b.Shot("kubernetes-diff")
}

// kubeObject is an object of a Kubernetes snapshot section as the API
// lists it.
type kubeObject struct {
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Owner     string `json:"owner"`
}

// kubeSection returns the objects of namespace ns in section name of
// env's latest snapshot, and its seq; none when there is no snapshot yet.
func (s *server) kubeSection(t testing.TB, env uint64, name, ns string) ([]kubeObject, uint64) {
	t.Helper()
	var v struct {
		Seq     uint64       `json:"seq"`
		Section []kubeObject `json:"section"`
	}
	status, raw := s.call(t, "GET", fmt.Sprintf("/api/environments/%d/snapshot?section=%s", env, name), nil)
	if status != http.StatusOK || json.Unmarshal(raw, &v) != nil {
		return nil, 0
	}
	return slices.DeleteFunc(v.Section, func(o kubeObject) bool { return o.Namespace != ns }), v.Seq
}
