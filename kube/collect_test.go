//go:build integration

package kube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"outpost/internal/kubetest"
	"outpost/internal/testenv"
	"outpost/kube"
	"outpost/protocol"
	"outpost/snapshot"
)

// site creates, in namespace ns, one object of each kind a snapshot holds,
// shaped like an edge site's: a deployment and its service and ingress, a
// statefulset with a claim, a daemonset, a job, a cronjob, a config map and
// a secret. It returns the secret's value, which no snapshot may carry.
func site(t *testing.T, cs kubernetes.Interface, ns string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"site": ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "pos"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pos", Image: "registry.local/pos:1.4"}}}}
	three := int32(3)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "pos", Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: &three, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "pos"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}, metav1.CreateOptions{}))
	prefix := networkingv1.PathTypePrefix
	must(cs.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "pos"},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: ns + ".shop.example", IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "pos", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}}}, metav1.CreateOptions{}))
	dbLabels := map[string]string{"app": "db"}
	one := int32(1)
	must(cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: dbLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dbLabels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "registry.local/db:15"}}}}}}, metav1.CreateOptions{}))
	must(cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "db-data"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}}}}, metav1.CreateOptions{}))
	agentLabels := map[string]string{"app": "sensor"}
	must(cs.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "sensor"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: agentLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: agentLabels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sensor", Image: "registry.local/sensor:2"}}}}}}, metav1.CreateOptions{}))
	jobSpec := batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{{Name: "sync", Image: "registry.local/sync:1"}}}}}
	must(cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "price-sync"}, Spec: jobSpec}, metav1.CreateOptions{}))
	must(cs.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly"},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: jobSpec}}}, metav1.CreateOptions{}))
	must(cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pos-config"},
		Data: map[string]string{"currency": "EUR", "store.yaml": "id: 42"}}, metav1.CreateOptions{}))
	secret := "s3cr3t-" + ns
	must(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pos-db",
		Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"stringData":{"password":"` + secret + `"}}`}},
		StringData: map[string]string{"password": secret, "user": "pos"}}, metav1.CreateOptions{}))
	return secret
}

// TestCollectorAgainstARealAPIServer: the collector's snapshot of a real
// cluster holds each kind with the fields the UI shows, never a secret's
// value, and follows changes through its watches.
func TestCollectorAgainstARealAPIServer(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ns := fmt.Sprintf("shop-%d", time.Now().UnixNano()%100000)
	secret := site(t, cs, ns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	col, err := kube.NewCollector(kc.Admin, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	col.Start(ctx)
	if err := col.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	var snap *snapshot.Snapshot
	eventually(t, 30*time.Second, func() error {
		var err error
		if snap, err = col.Collect(ctx); err != nil {
			return err
		}
		// The controller manager makes the deployment's replica set and
		// pods, and the job's pod.
		var pods int
		for _, p := range snap.Pods {
			if p.Namespace == ns && strings.HasPrefix(p.Owner, "ReplicaSet/pos-") {
				pods++
			}
		}
		if pods != 3 {
			return fmt.Errorf("%d pods of deployment pos, want 3", pods)
		}
		return nil
	})
	raw, err := protocol.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) {
		t.Fatal("the snapshot carries a secret's value")
	}
	if snap.Cluster.Version == "" || !slices.ContainsFunc(snap.Namespaces, func(n snapshot.Namespace) bool { return n.Name == ns && n.Labels["site"] == ns }) {
		t.Fatalf("cluster %+v, namespaces %+v", snap.Cluster, snap.Namespaces)
	}
	kinds := map[string]snapshot.Workload{}
	for _, w := range snap.Workloads {
		if w.Namespace == ns {
			kinds[w.Kind] = w
		}
	}
	if d := kinds[snapshot.KindDeployment]; d.Name != "pos" || d.Desired != 3 || !slices.Equal(d.Images, []string{"registry.local/pos:1.4"}) {
		t.Errorf("deployment: %+v", d)
	}
	if c := kinds[snapshot.KindCronJob]; c.Schedule != "0 3 * * *" {
		t.Errorf("cronjob: %+v", c)
	}
	for _, k := range []string{snapshot.KindStatefulSet, snapshot.KindDaemonSet, snapshot.KindJob} {
		if kinds[k].UID == "" {
			t.Errorf("no %s in the snapshot", k)
		}
	}
	pod := snap.Pods[slices.IndexFunc(snap.Pods, func(p snapshot.Pod) bool { return p.Namespace == ns && strings.HasPrefix(p.Owner, "ReplicaSet/") })]
	if pod.Phase != "Pending" || len(pod.Containers) != 1 || pod.Containers[0].Image != "registry.local/pos:1.4" {
		t.Errorf("pod: %+v", pod)
	}
	find := func(name string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("no %s in the snapshot", name)
		}
	}
	find("service pos:80->8080", slices.ContainsFunc(snap.Services, func(s snapshot.Service) bool {
		return s.Namespace == ns && len(s.Ports) == 1 && s.Ports[0].Port == 80 && s.Ports[0].Target == "8080" && s.ClusterIP != ""
	}))
	find("ingress to pos", slices.ContainsFunc(snap.Ingresses, func(i snapshot.Ingress) bool {
		return i.Namespace == ns && len(i.Rules) == 1 && i.Rules[0].Host == ns+".shop.example" && i.Rules[0].Service == "pos" && i.Rules[0].Port == "80"
	}))
	find("claim db-data of 2Gi", slices.ContainsFunc(snap.Claims, func(c snapshot.Claim) bool {
		return c.Namespace == ns && c.Name == "db-data" && c.Requested == "2Gi" && c.Phase == "Pending"
	}))
	find("config map keys", slices.ContainsFunc(snap.ConfigMaps, func(k snapshot.KeySet) bool {
		return k.Namespace == ns && slices.Equal(k.Keys, []string{"currency", "store.yaml"})
	}))
	find("secret keys", slices.ContainsFunc(snap.Secrets, func(k snapshot.KeySet) bool {
		return k.Namespace == ns && k.Type == "Opaque" && slices.Equal(k.Keys, []string{"password", "user"})
	}))

	// A change reaches the next snapshot through the watches, as a delta
	// of one field.
	scale := &autoscaling{cs: cs, ns: ns}
	scale.deployment(t, "pos", 1)
	eventually(t, 20*time.Second, func() error {
		next, err := col.Collect(ctx)
		if err != nil {
			return err
		}
		d, err := snapshot.Compute(snap, next)
		if err != nil {
			return err
		}
		if d.Workloads == nil || !slices.ContainsFunc(d.Workloads.Patch, func(p snapshot.Patch) bool { return p.Key == kinds[snapshot.KindDeployment].UID }) {
			return fmt.Errorf("no patch of the deployment yet: %+v", d.Workloads)
		}
		return nil
	})
}

// eventually waits for cond to return nil, failing with its last error.
func eventually(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	testenv.Eventually(t, within, func() (bool, string) {
		if err := cond(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

type autoscaling struct {
	cs kubernetes.Interface
	ns string
}

func (a *autoscaling) deployment(t *testing.T, name string, replicas int32) {
	t.Helper()
	ctx := context.Background()
	s, err := a.cs.AppsV1().Deployments(a.ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = replicas
	if _, err := a.cs.AppsV1().Deployments(a.ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCaptureKube writes the real captures of testdata/kube: a cluster of 5
// and of 50 edge sites, one namespace each with the objects site creates,
// as the collector reads them. It runs only with OUTPOST_CAPTURE=1, on a
// fresh control plane (the captures hold nothing but their sites):
//
//	OUTPOST_CAPTURE=1 go test -tags integration -run TestCaptureKube ./kube
func TestCaptureKube(t *testing.T) {
	if os.Getenv("OUTPOST_CAPTURE") != "1" {
		t.Skip("writes testdata/kube; set OUTPOST_CAPTURE=1 to regenerate")
	}
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	made := 0
	for _, n := range []int{5, 50} {
		for ; made < n; made++ {
			site(t, cs, fmt.Sprintf("site-%02d", made+1))
		}
		col, err := kube.NewCollector(kc.Admin, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		col.Start(ctx)
		var snap *snapshot.Snapshot
		eventually(t, 60*time.Second, func() error {
			var err error
			if snap, err = col.Collect(ctx); err != nil {
				return err
			}
			if want := n * 5; len(snap.Pods) < want { // 3 of pos, db-0, the job's
				return fmt.Errorf("%d pods, want %d", len(snap.Pods), want)
			}
			return nil
		})
		b, err := json.MarshalIndent(snap, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll("../testdata/kube", 0o755); err != nil {
			t.Fatal(err)
		}
		p := fmt.Sprintf("../testdata/kube/kube-%d.json", n)
		if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d namespaces, %d workloads, %d pods", p, len(snap.Namespaces), len(snap.Workloads), len(snap.Pods))
	}
}
