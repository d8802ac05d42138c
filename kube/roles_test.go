//go:build integration

package kube_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost/internal/kubetest"
	"outpost/kube"
)

// seedTables reads the source document's Cluster Roles and Namespace Roles
// tables (testdata/kube/role-tables.txt, copied from it as written) into
// rules per role, renamed portainer-* to outpost-*.
func seedTables(t *testing.T) map[string][]rbacv1.PolicyRule {
	t.Helper()
	f, err := os.Open("../testdata/kube/role-tables.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]rbacv1.PolicyRule{}
	var role string
	split := func(s string) []string {
		var out []string
		for _, x := range strings.Split(s, ",") {
			out = append(out, strings.TrimSpace(x))
		}
		return out
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "portainer-"):
			role = "outpost-" + strings.TrimPrefix(line, "portainer-")
		case strings.Contains(line, "|") && !strings.HasPrefix(line, "API Group") && !strings.HasPrefix(line, "---"):
			cols := strings.Split(line, "|")
			group := strings.TrimSpace(cols[0])
			if group == "(Empty)" {
				group = ""
			}
			out[role] = append(out[role], rbacv1.PolicyRule{APIGroups: []string{group}, Resources: split(cols[1]), Verbs: split(cols[2])})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) != 5 {
		t.Fatalf("the tables name %d roles, want 5", len(out))
	}
	return out
}

// TestRolesAsTheTablesSay: the roles Outpost keeps in a real cluster hold
// exactly the rules of the source document's tables, row by row; a rule
// edited by hand is put back, and a role deleted by hand comes back.
func TestRolesAsTheTablesSay(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	roles, err := kube.NewRoles(kc.Admin, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go roles.Run(ctx)
	tables := seedTables(t)
	inCluster := func(name string) ([]rbacv1.PolicyRule, error) {
		cr, err := cs.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return cr.Rules, nil
	}
	asTable := func(name string) error {
		got, err := inCluster(name)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, tables[name]) {
			return &mismatch{name, got, tables[name]}
		}
		return nil
	}
	for _, name := range kube.RoleNames {
		eventually(t, 20*time.Second, func() error { return asTable(name) })
	}

	// By hand: the operator may delete deployments too, and view loses a
	// row.
	cr, err := cs.RbacV1().ClusterRoles().Get(ctx, kube.RoleOperator, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cr.Rules[2].Verbs = append(cr.Rules[2].Verbs, "delete")
	if _, err := cs.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.RbacV1().ClusterRoles().Delete(ctx, kube.RoleView, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{kube.RoleOperator, kube.RoleView} {
		eventually(t, 20*time.Second, func() error { return asTable(name) })
	}
}

type mismatch struct {
	role      string
	got, want []rbacv1.PolicyRule
}

func (m *mismatch) Error() string {
	return m.role + ": the cluster holds\n" + rulesText(m.got) + "want\n" + rulesText(m.want)
}

func rulesText(rs []rbacv1.PolicyRule) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("  " + strings.Join(r.APIGroups, ",") + " | " + strings.Join(r.Resources, ", ") + " | " + strings.Join(r.Verbs, ", ") + "\n")
	}
	return b.String()
}
