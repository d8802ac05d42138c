//go:build integration

package kube_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"outpost/internal/kubetest"
	"outpost/internal/testenv"
	"outpost/kube"
)

func deployment(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "outpost/busybox:test"}}},
			},
		},
	}
}

func pod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "outpost/busybox:test"}}},
	}
}

// TestEachRoleAsTheAPIServerSees: each environment role's service account,
// made by kube.Access as the Role Allocations table says, is judged by the
// real API server: what the tables allow succeeds, what they do not is 403
// from Kubernetes itself.
func TestEachRoleAsTheAPIServerSees(t *testing.T) {
	kc := kubetest.Start(t)
	admin := kc.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	roles, err := kube.NewRoles(kc.Admin, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := roles.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	acc, err := kube.NewAccess(kc.Admin, log)
	if err != nil {
		t.Fatal(err)
	}
	go acc.Run(ctx)

	const env = 41
	for _, ns := range []string{"acc-assigned", "acc-other"} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"acc-assigned", "acc-other", "kube-system"} {
		if _, err := admin.AppsV1().Deployments(ns).Create(ctx, deployment(ns, "web"), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// Pods need the namespace's default service account, which the
	// controller manager makes.
	testenv.Eventually(t, time.Minute, func() (bool, string) {
		_, err := admin.CoreV1().Pods("acc-other").Create(ctx, pod("acc-other", "victim"), metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), "pod acc-other/victim: " + errString(err)
	})

	as := func(role string, user uint64, assigned ...string) *kubernetes.Clientset {
		t.Helper()
		tok, exp, err := acc.Token(ctx, kube.Grant{Env: env, User: user, Role: role, Namespaces: assigned}, 10*time.Minute)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if time.Until(exp) < 9*time.Minute {
			t.Fatalf("%s: token expires %v, want about 10 minutes", role, exp)
		}
		return kubernetes.NewForConfigOrDie(kc.As(tok))
	}
	// expect runs call and checks Kubernetes' answer: allowed, or 403.
	expect := func(who, what string, allowed bool, call func() error) {
		t.Helper()
		err := call()
		switch {
		case allowed && err != nil:
			t.Errorf("%s: %s refused: %v", who, what, err)
		case !allowed && !apierrors.IsForbidden(err):
			t.Errorf("%s: %s: got %v, want 403 from the API server", who, what, err)
		}
	}
	listPods := func(c *kubernetes.Clientset, ns string) func() error {
		return func() error { _, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); return err }
	}
	createDeploy := func(c *kubernetes.Clientset, ns, name string) func() error {
		return func() error {
			_, err := c.AppsV1().Deployments(ns).Create(ctx, deployment(ns, name), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}
	}
	deletePod := func(c *kubernetes.Clientset, ns, name string) func() error {
		return func() error {
			return c.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}
	}
	patchDeploy := func(c *kubernetes.Clientset, ns string) func() error {
		return func() error {
			_, err := c.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"metadata":{"annotations":{"outpost.io/touched":"1"}}}`), metav1.PatchOptions{})
			return err
		}
	}
	listNodes := func(c *kubernetes.Clientset) func() error {
		return func() error { _, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); return err }
	}

	ro := as(kube.ReadOnly, 1, "acc-assigned")
	expect("read-only", "list pods in an assigned namespace", true, listPods(ro, "acc-assigned"))
	expect("read-only", "list pods in default", true, listPods(ro, "default"))
	expect("read-only", "list pods in a namespace not assigned", false, listPods(ro, "acc-other"))
	expect("read-only", "create a deployment in an assigned namespace", false, createDeploy(ro, "acc-assigned", "new"))
	expect("read-only", "list pods in kube-system", false, listPods(ro, "kube-system"))
	expect("read-only", "list nodes (outpost-basic)", true, listNodes(ro))

	std := as(kube.Standard, 2, "acc-assigned")
	expect("standard", "create a deployment in an assigned namespace", true, createDeploy(std, "acc-assigned", "new"))
	expect("standard", "create a deployment in a namespace not assigned", false, createDeploy(std, "acc-other", "new"))
	expect("standard", "list pods in kube-system", false, listPods(std, "kube-system"))

	hd := as(kube.Helpdesk, 3)
	expect("helpdesk", "list pods in a non-system namespace", true, listPods(hd, "acc-other"))
	expect("helpdesk", "list pods in an assigned one", true, listPods(hd, "acc-assigned"))
	expect("helpdesk", "delete a pod", false, deletePod(hd, "acc-other", "victim"))
	expect("helpdesk", "list pods in kube-system", false, listPods(hd, "kube-system"))

	op := as(kube.Operator, 4)
	expect("operator", "delete a pod", true, deletePod(op, "acc-other", "victim"))
	expect("operator", "patch a deployment", true, patchDeploy(op, "acc-other"))
	expect("operator", "create a deployment", false, createDeploy(op, "acc-other", "new"))
	expect("operator", "list pods in kube-system", false, listPods(op, "kube-system"))
	expect("operator", "patch a deployment in kube-system", false, patchDeploy(op, "kube-system"))
	expect("operator", "delete a pod in the agent's namespace", false, deletePod(op, kube.Namespace, "any"))

	ea := as(kube.EnvAdmin, 5)
	expect("environment administrator", "list pods in kube-system", true, listPods(ea, "kube-system"))
	expect("environment administrator", "patch a deployment in kube-system", true, patchDeploy(ea, "kube-system"))

	// A namespace made later is bound for the roles whose scope covers it,
	// as the cluster reports it.
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acc-later"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		err := listPods(hd, "acc-later")()
		return err == nil, "helpdesk in a namespace made later: " + errString(err)
	})
	expect("read-only", "list pods in a namespace made later, not assigned", false, listPods(ro, "acc-later"))

	// A new assignment, a changed role, a removed user: Sync holds exactly
	// what it is given.
	grants := []kube.Grant{
		{Env: env, User: 1, Role: kube.ReadOnly, Namespaces: []string{"acc-assigned", "acc-other"}},
		{Env: env, User: 2, Role: kube.ReadOnly, Namespaces: []string{"acc-assigned"}},
		{Env: env, User: 3, Role: kube.Helpdesk},
		{Env: env, User: 5, Role: kube.EnvAdmin},
	}
	if err := acc.Sync(ctx, env, grants); err != nil {
		t.Fatal(err)
	}
	// The API server's authorizer follows bindings through its own watch:
	// a change shows there a moment later.
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		err := listPods(ro, "acc-other")()
		return err == nil, "read-only, now assigned acc-other, lists pods there: " + errString(err)
	})
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		err := createDeploy(std, "acc-assigned", "new")()
		return apierrors.IsForbidden(err), "standard, now read-only, creates a deployment: " + errString(err)
	})
	expect("standard, now read-only", "list pods in an assigned namespace", true, listPods(std, "acc-assigned"))
	if _, err := admin.CoreV1().ServiceAccounts(kube.Namespace).Get(ctx, kube.UserServiceAccount(4, env), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the removed operator's service account: %v, want not found", err)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		err := listPods(op, "acc-other")()
		return apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err), "the removed operator's token: " + errString(err)
	})
	rbs, err := admin.RbacV1().RoleBindings("").List(ctx, metav1.ListOptions{LabelSelector: "outpost.io/user=4"})
	if err != nil || len(rbs.Items) != 0 {
		t.Errorf("the removed operator's role bindings: %d left (%v)", len(rbs.Items), err)
	}
	crbs, err := admin.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: "outpost.io/user=2"})
	if err != nil || len(crbs.Items) != 1 || crbs.Items[0].RoleRef.Name != kube.RoleBasic {
		t.Errorf("user 2's cluster role bindings: %+v (%v), want outpost-basic only", crbs.Items, err)
	}
	for _, ns := range []string{"kube-system", "kube-public", kube.Namespace} {
		rbs, err := admin.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{LabelSelector: "outpost.io/user"})
		if err != nil || len(rbs.Items) != 0 {
			t.Errorf("role bindings of users in system namespace %s: %d (%v), want none", ns, len(rbs.Items), err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
