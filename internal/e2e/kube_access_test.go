//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost/internal/kubetest"
	"outpost/internal/testenv"
	"outpost/kube"
)

// TestKubernetesLiveAccessByRole: a standard agent on a real API server;
// users of each role reach the cluster through Outpost's API and the
// tunnel. Outpost refuses what the Access Restrictions table refuses; what
// it lets through is made with a short-lived token of the user's own
// service account, so the API server's RBAC refuses the rest (its own 403,
// a Status object). Namespace assignments (to a user, and through a team),
// a role change and a user's removal reach the cluster.
func TestKubernetesLiveAccessByRole(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx := context.Background()
	sfx := fmt.Sprint(time.Now().UnixNano() % 1_000_000)
	assigned, other := "ka-assigned-"+sfx, "ka-other-"+sfx
	for _, ns := range []string{assigned, other} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": "web"}
	for _, ns := range []string{assigned, other} {
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.local/web:1"}}}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, time.Minute, func() (bool, string) {
		_, err := cs.CoreV1().Pods(other).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "victim"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.local/web:1"}}}}, metav1.CreateOptions{})
		return err == nil || apierrors.IsAlreadyExists(err), fmt.Sprint("pod victim: ", err)
	})

	srv := startServer(t)
	var env environment
	srv.do(t, "POST", "/api/environments", map[string]any{
		"name": "cluster-live", "mode": "standard", "platform": "kubernetes", "frequencies": map[string]int{"ping": 1},
	}, &env, http.StatusCreated)
	startStandardAgent(t, env.EdgeKey, t.TempDir(), "KUBECONFIG="+kc.Kubeconfig(t))

	// A user of each role, logged in.
	type user struct {
		id    uint64
		token string
	}
	users := map[string]user{}
	for _, role := range kube.EnvRoles {
		var u struct {
			ID uint64 `json:"id"`
		}
		name := strings.ReplaceAll(role, "-", "") + sfx
		srv.do(t, "POST", "/api/users", map[string]string{"username": name, "password": "pass-" + name, "role": role}, &u, http.StatusCreated)
		var auth struct{ Token string }
		srv.do(t, "POST", "/api/auth", map[string]string{"username": name, "password": "pass-" + name}, &auth, http.StatusOK)
		users[role] = user{u.ID, auth.Token}
	}
	// The standard user is assigned a namespace directly; the read-only
	// user through a team.
	var team struct {
		ID uint64 `json:"id"`
	}
	srv.do(t, "POST", "/api/teams", map[string]any{"name": "tills" + sfx, "members": []uint64{users[kube.ReadOnly].id}}, &team, http.StatusCreated)
	access := func(ns string) string {
		return fmt.Sprintf("/api/environments/%d/kubernetes/namespaces/%s/access", env.ID, ns)
	}
	srv.do(t, "PUT", access(assigned), map[string]any{"userIds": []uint64{users[kube.Standard].id}, "teamIds": []uint64{team.ID}}, nil, http.StatusOK)
	var got struct {
		UserIDs []uint64 `json:"userIds"`
		TeamIDs []uint64 `json:"teamIds"`
	}
	srv.do(t, "GET", access(assigned), nil, &got, http.StatusOK)
	if fmt.Sprint(got.UserIDs, got.TeamIDs) != fmt.Sprint([]uint64{users[kube.Standard].id}, []uint64{team.ID}) {
		t.Errorf("namespace access reads back %+v", got)
	}

	// call makes a request as role through the tunnel and returns the
	// status and who refused it: "outpost" or "kubernetes".
	call := func(role, method, path, ctype, body string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, fmt.Sprintf("%s/api/environments/%d/kubernetes%s", srv.URL, env.ID, path), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+users[role].token)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		client := &http.Client{Timeout: 30 * time.Second, Transport: srv.http.Transport}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s as %s: %v", method, path, role, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var st struct {
			Kind    string `json:"kind"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(raw, &st)
		who := ""
		if resp.StatusCode == http.StatusForbidden {
			who = "outpost"
			if st.Kind == "Status" && st.Reason == "Forbidden" {
				who = "kubernetes"
			}
		}
		return resp.StatusCode, who, string(raw)
	}
	pods := func(ns string) string { return "/api/v1/namespaces/" + ns + "/pods" }
	deploy := func(ns, name string) string {
		return fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":%q,"namespace":%q},"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"x"}},"spec":{"containers":[{"name":"x","image":"registry.local/x:1"}]}}}}`, name, ns)
	}
	const apply = "application/apply-patch+yaml"
	deployments := func(ns string) string { return "/apis/apps/v1/namespaces/" + ns + "/deployments" }
	type step struct {
		role, what, method, path, ctype, body string
		want                                  int
		by                                    string // who refuses: "outpost" or "kubernetes"
	}
	steps := []step{
		// Read-only user: reads its namespaces, creates nothing.
		{kube.ReadOnly, "list pods in a namespace assigned to its team", "GET", pods(assigned), "", "", 200, ""},
		{kube.ReadOnly, "list pods in default", "GET", pods("default"), "", "", 200, ""},
		{kube.ReadOnly, "list pods elsewhere", "GET", pods(other), "", "", 403, "outpost"},
		{kube.ReadOnly, "create a deployment", "POST", deployments(assigned) + "?dryRun=All", "application/json", deploy(assigned, "new"), 403, "outpost"},
		{kube.ReadOnly, "list pod templates (not in the view role)", "GET", "/api/v1/namespaces/" + assigned + "/podtemplates", "", "", 403, "kubernetes"},
		{kube.ReadOnly, "list nodes", "GET", "/api/v1/nodes", "", "", 403, "outpost"},
		// Standard user: creates deployments in its namespace only.
		{kube.Standard, "create a deployment in its namespace", "POST", deployments(assigned) + "?dryRun=All", "application/json", deploy(assigned, "new"), 201, ""},
		{kube.Standard, "create a deployment elsewhere", "POST", deployments(other) + "?dryRun=All", "application/json", deploy(other, "new"), 403, "outpost"},
		{kube.Standard, "create a resource quota (not in the edit role)", "POST", "/api/v1/namespaces/" + assigned + "/resourcequotas?dryRun=All", "application/json",
			`{"apiVersion":"v1","kind":"ResourceQuota","metadata":{"name":"q"},"spec":{"hard":{"pods":"1"}}}`, 403, "kubernetes"},
		// Helpdesk: reads every non-system namespace, deletes nothing.
		{kube.Helpdesk, "list pods in a namespace not assigned to anyone", "GET", pods(other), "", "", 200, ""},
		{kube.Helpdesk, "delete a pod", "DELETE", pods(other) + "/victim?dryRun=All", "", "", 403, "outpost"},
		{kube.Helpdesk, "list pod templates (not in its roles)", "GET", "/api/v1/namespaces/" + other + "/podtemplates", "", "", 403, "kubernetes"},
		// Operator: deletes a pod, patches a deployment, creates none.
		{kube.Operator, "delete a pod", "DELETE", pods(other) + "/victim?dryRun=All", "", "", 200, ""},
		{kube.Operator, "patch a deployment (server-side apply)", "PATCH", deployments(other) + "/web?fieldManager=ops&dryRun=All", apply,
			`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","annotations":{"outpost.io/note":"x"}}}`, 200, ""},
		{kube.Operator, "create a deployment (server-side apply of a new one)", "PATCH", deployments(other) + "/fresh?fieldManager=ops&dryRun=All", apply, deploy(other, "fresh"), 403, "kubernetes"},
		{kube.Operator, "create a deployment (POST)", "POST", deployments(other) + "?dryRun=All", "application/json", deploy(other, "new"), 403, "outpost"},
		{kube.Operator, "apply a cluster role binding", "PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/mine?fieldManager=ops&dryRun=All", apply,
			`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"mine"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"x"}]}`, 403, "outpost"},
		{kube.Standard, "delete every pod of its namespace", "DELETE", pods(assigned) + "?dryRun=All", "", "", 403, "outpost"},
		// kube-system: nobody but the environment administrator.
		{kube.ReadOnly, "list pods in kube-system", "GET", pods("kube-system"), "", "", 403, "outpost"},
		{kube.Standard, "list pods in kube-system", "GET", pods("kube-system"), "", "", 403, "outpost"},
		{kube.Helpdesk, "list pods in kube-system", "GET", pods("kube-system"), "", "", 403, "outpost"},
		{kube.Operator, "list pods in kube-system", "GET", pods("kube-system"), "", "", 403, "outpost"},
		{kube.EnvAdmin, "list pods in kube-system", "GET", pods("kube-system"), "", "", 200, ""},
		{kube.EnvAdmin, "create a deployment anywhere", "POST", deployments(other) + "?dryRun=All", "application/json", deploy(other, "new"), 201, ""},
	}
	for _, s := range steps {
		status, who, body := call(s.role, s.method, s.path, s.ctype, s.body)
		if status != s.want || who != s.by {
			t.Errorf("%s: %s: %d refused by %q, want %d (refused by %q): %.300s", s.role, s.what, status, who, s.want, s.by, body)
		}
	}
	// The agent API route (operators may use it) does not reach the
	// cluster's gateway: a grant sent there could name anyone's role.
	for _, path := range []string{"/agent/kubernetes/token", "/agent/kubernetes/api/v1/namespaces/kube-system/secrets"} {
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/environments/%d%s", srv.URL, env.ID, path),
			strings.NewReader(fmt.Sprintf(`{"env":%d,"user":%d,"role":"environment-administrator"}`, env.ID, users[kube.Operator].id)))
		req.Header.Set("Authorization", "Bearer "+users[kube.Operator].token)
		resp, err := srv.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("an operator posts to %s: %d, want 403", path, resp.StatusCode)
		}
	}
	crbs, err := cs.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: fmt.Sprintf("outpost.io/user=%d", users[kube.Operator].id)})
	if err != nil || len(crbs.Items) != 1 || crbs.Items[0].RoleRef.Name != kube.RoleBasic {
		t.Errorf("the operator's cluster role bindings: %+v (%v), want outpost-basic only", crbs.Items, err)
	}
	// Namespace access is the environment administrator's.
	req, _ := http.NewRequest("PUT", srv.URL+access(other), bytes.NewReader([]byte(`{"userIds":[]}`)))
	req.Header.Set("Authorization", "Bearer "+users[kube.Operator].token)
	if resp, err := srv.http.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("an operator sets namespace access: %v %v, want 403", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}

	// Assigning the team another namespace lets its member in there, as
	// Kubernetes sees it too.
	srv.do(t, "PUT", access(other), map[string]any{"teamIds": []uint64{team.ID}}, nil, http.StatusOK)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		status, who, body := call(kube.ReadOnly, "GET", pods(other), "", "")
		return status == 200, fmt.Sprintf("read-only in a namespace newly assigned to its team: %d %s %.200s", status, who, body)
	})
	// The service accounts of the users who worked with the cluster are
	// there, one per user; removing a user removes theirs (kube.access).
	sa := func(id uint64) error {
		_, err := cs.CoreV1().ServiceAccounts(kube.Namespace).Get(ctx, kube.UserServiceAccount(id, env.ID), metav1.GetOptions{})
		return err
	}
	for role, u := range users {
		if role == kube.EnvAdmin {
			continue // reaches the cluster with the agent's credentials
		}
		if err := sa(u.id); err != nil {
			t.Errorf("the %s's service account: %v", role, err)
		}
	}
	srv.do(t, "DELETE", fmt.Sprintf("/api/users/%d", users[kube.Helpdesk].id), nil, nil, http.StatusNoContent)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		err := sa(users[kube.Helpdesk].id)
		return apierrors.IsNotFound(err), fmt.Sprint("the removed helpdesk user's service account: ", err)
	})
	// A role change reaches the cluster: the standard user made read-only
	// loses the edit role's bindings.
	srv.do(t, "PATCH", fmt.Sprintf("/api/users/%d", users[kube.Standard].id), map[string]string{"role": kube.ReadOnly}, nil, http.StatusOK)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		rbs, err := cs.RbacV1().RoleBindings(assigned).List(ctx, metav1.ListOptions{LabelSelector: fmt.Sprintf("outpost.io/user=%d", users[kube.Standard].id)})
		if err != nil {
			return false, err.Error()
		}
		var roles []string
		for _, b := range rbs.Items {
			roles = append(roles, b.RoleRef.Name)
		}
		return len(roles) == 1 && roles[0] == kube.RoleView, fmt.Sprintf("the demoted user's bindings in %s: %v", assigned, roles)
	})
}
