//go:build integration

package kube_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"outpost/internal/kubetest"
	"outpost/internal/testenv"
	"outpost/kube"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000_000)
}

// tillManifests is a stack of a config map, a deployment and a cluster
// role (cluster-scoped, with a namespace it must lose), none naming a
// namespace; withConfig false leaves the config map out.
func tillManifests(role string, withConfig bool) string {
	var b strings.Builder
	if withConfig {
		b.WriteString(`apiVersion: v1
kind: ConfigMap
metadata:
  name: till-config
data:
  currency: EUR
---
`)
	}
	fmt.Fprintf(&b, `apiVersion: apps/v1
kind: Deployment
metadata:
  name: till
  labels:
    app: till
spec:
  replicas: 2
  selector:
    matchLabels:
      app: till
  template:
    metadata:
      labels:
        app: till
    spec:
      containers:
      - name: till
        image: registry.local/till:3
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: %s
  namespace: ignored-for-cluster-scoped
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
`, role)
	return b.String()
}

func status(t *testing.T, st *kube.Stacks, name string) kube.StackState {
	t.Helper()
	s, err := st.Status(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStackApplyPruneRemove: a stack's manifests are applied by
// server-side apply with the field manager outpost, labelled with the
// stack's name and version, in its default namespace (created for it); the
// stack runs once the deployment is rolled out; an update prunes what it
// dropped; and a runner made afresh on the same data dir (an agent
// restart) removes all of it, leaving the namespace and an object another
// stack took over.
func TestStackApplyPruneRemove(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx := context.Background()
	dir := t.TempDir()
	ns, role, name := unique("stk"), unique("outpost-test-till"), "till"
	runner, err := kube.NewStacks(kc.Admin, dir, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Deploy(ctx, kube.StackSpec{Name: name, Version: 1, Namespace: ns, Manifests: []byte(tillManifests(role, true))}); err != nil {
		t.Fatal(err)
	}
	nsObj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the default namespace was not created: %v", err)
	}
	if nsObj.Labels[kube.ManagedBy] != "outpost" {
		t.Errorf("namespace labels %v", nsObj.Labels)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "till-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Labels[kube.LabelStack] != name || cm.Labels[kube.LabelStackVersion] != "1" || cm.Data["currency"] != "EUR" {
		t.Errorf("config map: labels %v, data %v", cm.Labels, cm.Data)
	}
	if i := slices.IndexFunc(cm.ManagedFields, func(m metav1.ManagedFieldsEntry) bool { return m.Manager == kube.FieldManager }); i < 0 || cm.ManagedFields[i].Operation != metav1.ManagedFieldsOperationApply {
		t.Errorf("config map's managed fields: %+v, want an Apply by %q", cm.ManagedFields, kube.FieldManager)
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "till", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Labels[kube.LabelStack] != name || dep.Labels["app"] != "till" || !slices.ContainsFunc(dep.ManagedFields, func(m metav1.ManagedFieldsEntry) bool {
		return m.Manager == kube.FieldManager && m.Operation == metav1.ManagedFieldsOperationApply
	}) {
		t.Errorf("deployment: labels %v, managed fields %+v", dep.Labels, dep.ManagedFields)
	}
	cr, err := cs.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{})
	if err != nil || cr.Labels[kube.LabelStack] != name {
		t.Fatalf("cluster role: %+v %v", cr, err)
	}
	t.Cleanup(func() { _ = cs.RbacV1().ClusterRoles().Delete(ctx, role, metav1.DeleteOptions{}) })

	// Pods stay Pending without a kubelet: the stack is deploying until
	// they run and are ready.
	if s := status(t, runner, name); s.Phase != kube.StackDeploying || !strings.Contains(s.Message, "Deployment "+ns+"/till") {
		t.Fatalf("before the pods run: %+v", s)
	}
	kc.PodsRunning(t, ns, "app=till", 2)
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		s := status(t, runner, name)
		return s.Phase == kube.StackRunning, fmt.Sprintf("%+v", s)
	})

	// Version 2 drops the config map: it is pruned, the rest relabelled.
	if err := runner.Deploy(ctx, kube.StackSpec{Name: name, Version: 2, Namespace: ns, Manifests: []byte(tillManifests(role, false))}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "till-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the dropped config map is still there: %v", err)
	}
	if dep, err = cs.AppsV1().Deployments(ns).Get(ctx, "till", metav1.GetOptions{}); err != nil || dep.Labels[kube.LabelStackVersion] != "2" {
		t.Fatalf("deployment after the update: %v %v", dep.Labels, err)
	}
	if s := status(t, runner, name); s.Phase != kube.StackRunning {
		t.Fatalf("after an update that left the deployment's template alone: %+v", s)
	}

	// Another stack takes the cluster role over (applies it with its own
	// label): this stack's removal leaves it.
	cr, err = cs.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cr.Labels[kube.LabelStack] = "other"
	if _, err := cs.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// An agent restart: a new runner, the same data dir.
	again, err := kube.NewStacks(kc.Admin, dir, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Get(ctx, "till", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the deployment is still there after Remove: %v", err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{}); err != nil {
		t.Fatalf("the cluster role another stack took over was deleted: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("the default namespace went with the stack: %v", err)
	}
	if s := status(t, again, name); s.Phase != kube.StackMissing {
		t.Fatalf("after Remove: %+v", s)
	}
	if err := again.Remove(ctx, name); err != nil {
		t.Fatalf("a second Remove: %v", err)
	}
}

// TestStackStatusFromTheCluster: the status comes from what the
// controllers report. A deployment past its progress deadline and a job
// past its active deadline are failures with the controllers' messages,
// the first document's first; a job whose pod succeeded is complete; an
// object deleted by hand is a failure.
func TestStackStatusFromTheCluster(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx := context.Background()
	ns := unique("stk")
	runner, err := kube.NewStacks(kc.Admin, t.TempDir(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	stuck := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
spec:
  progressDeadlineSeconds: 1
  selector:
    matchLabels: {app: stuck}
  template:
    metadata:
      labels: {app: stuck}
    spec:
      containers:
      - name: stuck
        image: registry.local/stuck:1
---
apiVersion: batch/v1
kind: Job
metadata:
  name: late
spec:
  activeDeadlineSeconds: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: late
        image: registry.local/late:1
`
	if err := runner.Deploy(ctx, kube.StackSpec{Name: "stuck", Version: 1, Namespace: ns, Manifests: []byte(stuck)}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 90*time.Second, func() (bool, string) {
		s := status(t, runner, "stuck")
		return s.Phase == kube.StackFailed && strings.HasPrefix(s.Message, "Deployment "+ns+"/stuck: ") && strings.Contains(s.Message, "has timed out progressing"),
			fmt.Sprintf("%+v", s)
	})
	testenv.Eventually(t, 90*time.Second, func() (bool, string) {
		j, err := cs.BatchV1().Jobs(ns).Get(ctx, "late", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return slices.ContainsFunc(j.Status.Conditions, func(c batchv1.JobCondition) bool {
				return c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue
			}),
			fmt.Sprintf("job conditions %+v", j.Status.Conditions)
	})
	// The job alone: its failure is the controller's.
	late := stuck[strings.Index(stuck, "apiVersion: batch/v1"):]
	if err := runner.Deploy(ctx, kube.StackSpec{Name: "stuck", Version: 2, Namespace: ns, Manifests: []byte(late)}); err != nil {
		t.Fatal(err)
	}
	if s := status(t, runner, "stuck"); s.Phase != kube.StackFailed || !strings.Contains(s.Message, "Job "+ns+"/late: DeadlineExceeded: Job was active longer than specified deadline") {
		t.Fatalf("a failed job: %+v", s)
	}

	done := `apiVersion: batch/v1
kind: Job
metadata:
  name: once
spec:
  template:
    metadata:
      labels: {job: once}
    spec:
      restartPolicy: Never
      containers:
      - name: once
        image: registry.local/once:1
`
	if err := runner.Deploy(ctx, kube.StackSpec{Name: "once", Version: 1, Namespace: ns, Manifests: []byte(done)}); err != nil {
		t.Fatal(err)
	}
	if s := status(t, runner, "once"); s.Phase != kube.StackDeploying || !strings.Contains(s.Message, "Job "+ns+"/once: not complete") {
		t.Fatalf("a job not run yet: %+v", s)
	}
	kc.PodsSucceeded(t, ns, "job=once", 1)
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		s := status(t, runner, "once")
		return s.Phase == kube.StackRunning, fmt.Sprintf("%+v", s)
	})

	orphan := metav1.DeletePropagationOrphan // the job lingers while the garbage collector orphans its pod
	if err := cs.BatchV1().Jobs(ns).Delete(ctx, "once", metav1.DeleteOptions{PropagationPolicy: &orphan}); err != nil {
		t.Fatal(err)
	}
	if s := status(t, runner, "once"); s.Phase != kube.StackFailed || !strings.Contains(s.Message, "Job "+ns+"/once is ") {
		t.Fatalf("an object deleted by hand: %+v", s)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		s := status(t, runner, "once")
		return s.Phase == kube.StackFailed && strings.Contains(s.Message, "Job "+ns+"/once is not in the cluster (deleted by hand?)"), fmt.Sprintf("%+v", s)
	})
}

// TestStackRefusals: manifests that do not hold, and kinds the cluster
// does not serve, fail the deploy before anything is applied.
func TestStackRefusals(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx := context.Background()
	ns := unique("stk")
	runner, err := kube.NewStacks(kc.Admin, t.TempDir(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	err = runner.Deploy(ctx, kube.StackSpec{Name: "bad-", Version: 1, Manifests: []byte("kind: ConfigMap\nmetadata:\n  name: x\n---\n- a list\n")})
	if !errors.Is(err, kube.ErrManifests) {
		t.Fatalf("bad manifests: %v", err)
	}
	for _, want := range []string{`stack name "bad-"`, "document 1: apiVersion, kind and metadata.name are required", "document 2: not an object"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("bad manifests: %v, want %q", err, want)
		}
	}
	unknown := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n---\napiVersion: gadgets.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n---\napiVersion: v1\nkind: Gizmo\nmetadata:\n  name: z\n"
	err = runner.Deploy(ctx, kube.StackSpec{Name: "unknown", Version: 1, Namespace: ns, Manifests: []byte(unknown)})
	if err == nil || !strings.Contains(err.Error(), "nothing applied") || !strings.Contains(err.Error(), "apiVersion gadgets.example.com/v1 is not served by this cluster") ||
		!strings.Contains(err.Error(), "kind Gizmo of apiVersion v1 is not served by this cluster") {
		t.Fatalf("unknown kinds: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a refused stack created its namespace: %v", err)
	}
}

// TestStackWithItsOwnCRD: a kind the stack's own CustomResourceDefinition
// defines is applied once the API server serves it, and Remove deletes
// the CRD last.
func TestStackWithItsOwnCRD(t *testing.T) {
	kc := kubetest.Start(t)
	ctx := context.Background()
	ns := unique("stk")
	group := unique("g") + ".outpost.test"
	runner, err := kube.NewStacks(kc.Admin, t.TempDir(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	manifests := fmt.Sprintf(`apiVersion: %[1]s/v1
kind: Till
metadata:
  name: front
spec:
  lanes: 3
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: tills.%[1]s
spec:
  group: %[1]s
  scope: Namespaced
  names: {plural: tills, singular: till, kind: Till}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`, group)
	if err := runner.Deploy(ctx, kube.StackSpec{Name: "crd", Version: 1, Namespace: ns, Manifests: []byte(manifests)}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(kc.Admin)
	if err != nil {
		t.Fatal(err)
	}
	tills := dyn.Resource(schema.GroupVersionResource{Group: group, Version: "v1", Resource: "tills"})
	u, err := tills.Namespace(ns).Get(ctx, "front", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lanes, _, _ := unstructured.NestedInt64(u.Object, "spec", "lanes"); lanes != 3 || u.GetLabels()[kube.LabelStack] != "crd" {
		t.Fatalf("the custom object: %v", u.Object)
	}
	if s := status(t, runner, "crd"); s.Phase != kube.StackRunning {
		t.Fatalf("status: %+v", s)
	}
	if err := runner.Remove(ctx, "crd"); err != nil {
		t.Fatal(err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		_, err := crds.Get(ctx, "tills."+group, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprintf("the CRD: %v", err)
	})
}

// TestStackReviewCases: a namespace that was there before the stack is
// adopted, never deleted with it; an object whose apiVersion changes in an
// update stays; system namespaces are refused; a stack name no Deploy
// takes is removed at once (nothing can have been applied under it).
func TestStackReviewCases(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx := context.Background()
	runner, err := kube.NewStacks(kc.Admin, t.TempDir(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	victim := unique("victim")
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: victim}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(victim).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "precious"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	own := unique("own")
	manifests := func(hpaVersion string) []byte {
		return []byte(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %s
---
apiVersion: v1
kind: Namespace
metadata:
  name: %s
---
apiVersion: %s
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: %s
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 2
`, victim, own, hpaVersion, own))
	}
	if err := runner.Deploy(ctx, kube.StackSpec{Name: "adopt", Version: 1, Manifests: manifests("autoscaling/v1")}); err != nil {
		t.Fatal(err)
	}
	if err := runner.Deploy(ctx, kube.StackSpec{Name: "adopt", Version: 2, Manifests: manifests("autoscaling/v2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(own).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Errorf("the autoscaler after its apiVersion changed: %v", err)
	}
	if st := status(t, runner, "adopt"); st.Phase == kube.StackFailed {
		t.Errorf("status after the apiVersion change: %+v", st)
	}
	if err := runner.Remove(ctx, "adopt"); err != nil {
		t.Fatal(err)
	}
	v, err := cs.CoreV1().Namespaces().Get(ctx, victim, metav1.GetOptions{})
	if err != nil || v.DeletionTimestamp != nil {
		t.Errorf("the namespace that was there before the stack: %v, deleting %v", err, v.DeletionTimestamp)
	}
	if _, err := cs.CoreV1().ConfigMaps(victim).Get(ctx, "precious", metav1.GetOptions{}); err != nil {
		t.Errorf("what lived in it: %v", err)
	}
	o, err := cs.CoreV1().Namespaces().Get(ctx, own, metav1.GetOptions{})
	if err == nil && o.DeletionTimestamp == nil {
		t.Errorf("the namespace the stack made stays after its removal")
	}

	for _, m := range []string{
		"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-system\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: kube-public\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: " + kube.Namespace + "\n",
	} {
		if err := runner.Deploy(ctx, kube.StackSpec{Name: "sys", Version: 1, Manifests: []byte(m)}); !errors.Is(err, kube.ErrManifests) || !strings.Contains(err.Error(), "system namespace") {
			t.Errorf("a stack touching a system namespace: %v", err)
		}
	}
	if err := runner.Deploy(ctx, kube.StackSpec{Name: "sys", Version: 1, Namespace: "kube-system", Manifests: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")}); err == nil {
		t.Error("a stack whose default namespace is kube-system deployed")
	}
	for _, name := range []string{"web-", "shop_", "edge-" + strings.Repeat("a", 63)} {
		if err := runner.Remove(ctx, name); err != nil {
			t.Errorf("remove %q: %v", name, err)
		}
	}
}
