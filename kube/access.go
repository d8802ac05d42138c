package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Allocation is what an environment role is bound to in a cluster.
type Allocation struct {
	// Cluster are the cluster roles bound cluster-wide (ClusterRoleBinding).
	Cluster []string
	// Namespaced are the cluster roles bound in each namespace of the
	// role's scope (RoleBinding): every non-system namespace, or default
	// and the assigned ones.
	Namespaced []string
}

// allocations is the Role Allocations table. Where the table binds a role
// to "all non-system namespaces", Outpost binds it namespace by namespace,
// since a ClusterRoleBinding would open kube-system too, and binds the
// namespaces that appear later as they appear. The table names only the
// view role for operator and helpdesk; the cluster roles named after them
// (Cluster Roles table) are bound to them the same way, or pod delete, which
// the Access Restrictions table gives the operator, would have no holder.
// Every role but the environment administrator also holds outpost-basic
// cluster-wide (namespaces and nodes to list, storage and ingress classes),
// whose rules are cluster-scoped reads.
var allocations = map[string]Allocation{
	EnvAdmin: {Cluster: []string{"cluster-admin"}},
	Operator: {Cluster: []string{RoleBasic}, Namespaced: []string{RoleView, RoleOperator}},
	Helpdesk: {Cluster: []string{RoleBasic}, Namespaced: []string{RoleView, RoleHelpdesk}},
	Standard: {Cluster: []string{RoleBasic}, Namespaced: []string{RoleEdit, RoleView}},
	ReadOnly: {Cluster: []string{RoleBasic}, Namespaced: []string{RoleView}},
}

// AllocationOf is role's row of the Role Allocations table; an unknown
// role gets the read-only user's.
func AllocationOf(role string) Allocation {
	if a, ok := allocations[role]; ok {
		return a
	}
	return allocations[ReadOnly]
}

// Grant is one user's access to one cluster: their role there and the
// namespaces assigned to them or their teams. The server computes it; the
// agent turns it into a service account and its bindings.
type Grant struct {
	Env        uint64   `json:"env"`
	User       uint64   `json:"user"`
	Role       string   `json:"role"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// UserServiceAccount is the name of the service account of user in the cluster
// of environment env, in Namespace.
func UserServiceAccount(user, env uint64) string {
	return fmt.Sprintf("outpost-sa-user-%d-%d", user, env)
}

// Labels of the objects Access makes.
const (
	labelUser = "outpost.io/user"
	labelEnv  = "outpost.io/environment"
)

// fieldManager is the name Outpost applies under (server-side apply).
const fieldManager = "outpost"

// Access keeps the users' service accounts and their bindings in a cluster:
// what Sync or Ensure were last given, with the namespaces of each user's
// scope as they come and go.
type Access struct {
	core, rbac *rest.RESTClient
	log        *slog.Logger
	nsInf      cache.SharedIndexInformer
	kick       chan struct{}

	// op orders what Access does to the cluster (Sync, Ensure, Run's
	// binding of new namespaces), so a re-binding never brings back a
	// grant Sync has just removed or changed. It is held across calls to
	// the cluster; only Access's own work waits on it.
	op     sync.Mutex
	mu     sync.Mutex          // guards grants; never held across a call to the cluster
	grants map[[2]uint64]Grant // (env, user) -> grant
}

// NewAccess returns the keeper of users' access to the cluster cfg reaches.
func NewAccess(cfg *rest.Config, log *slog.Logger) (*Access, error) {
	core, cerr := restClient(cfg, corev1.SchemeGroupVersion)
	rb, rerr := restClient(cfg, rbacv1.SchemeGroupVersion)
	if err := errors.Join(cerr, rerr); err != nil {
		return nil, fmt.Errorf("kube: access clients: %w", err)
	}
	a := &Access{core: core, rbac: rb, log: log, kick: make(chan struct{}, 1), grants: map[[2]uint64]Grant{}}
	a.nsInf = cache.NewSharedIndexInformer(cache.NewListWatchFromClient(core, "namespaces", metav1.NamespaceAll, fields.Everything()),
		&corev1.Namespace{}, 0, cache.Indexers{})
	kick := func(any) {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
	if _, err := a.nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: kick, DeleteFunc: kick}); err != nil {
		return nil, err
	}
	return a, nil
}

// Run watches namespaces until ctx ends, and binds each user in the new
// ones their scope covers.
func (a *Access) Run(ctx context.Context) {
	go a.nsInf.RunWithContext(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		}
		if !a.nsInf.HasSynced() {
			continue
		}
		a.rebind(ctx)
	}
}

// rebind applies every grant known, binding the namespaces that appeared.
func (a *Access) rebind(ctx context.Context) {
	a.op.Lock()
	defer a.op.Unlock()
	a.mu.Lock()
	all := slices.Collect(maps.Values(a.grants))
	a.mu.Unlock()
	if err := a.agentNamespace(ctx); err != nil {
		a.log.Warn("kubernetes access: could not bind users in a new namespace", "err", err)
		return
	}
	for _, g := range all {
		if err := a.apply(ctx, g, a.bindings(g)); err != nil && ctx.Err() == nil {
			a.log.Warn("kubernetes access: could not bind a user in a new namespace", "user", g.User, "err", err)
		}
	}
}

// Sync makes the cluster hold exactly grants for environment env: each
// user's service account and bindings, and nothing of users not listed.
func (a *Access) Sync(ctx context.Context, env uint64, grants []Grant) error {
	a.op.Lock()
	defer a.op.Unlock()
	if err := a.agentNamespace(ctx); err != nil {
		return err
	}
	var errs []error
	// want holds each listed user's bindings by key; a user whose apply
	// failed keeps whatever they have (nil: nothing of theirs is pruned).
	want := map[uint64]map[string]bool{}
	for _, g := range grants {
		if g.Env != env {
			errs = append(errs, fmt.Errorf("grant of user %d names environment %d, not %d", g.User, g.Env, env))
			continue
		}
		a.remember(g)
		bs := a.bindings(g)
		if err := a.apply(ctx, g, bs); err != nil {
			errs = append(errs, err)
			want[g.User] = nil
			continue
		}
		want[g.User] = keys(bs)
	}
	a.mu.Lock()
	for k := range a.grants {
		if _, ok := want[k[1]]; k[0] == env && !ok {
			delete(a.grants, k)
		}
	}
	a.mu.Unlock()
	errs = append(errs, a.prune(ctx, env, func(user uint64, binding string) bool {
		w, listed := want[user]
		return listed && (binding == "" || w == nil || w[binding])
	}))
	return errors.Join(errs...)
}

// Ensure makes the cluster hold g: the user's service account and exactly
// the bindings of their role and scope, dropping any others of theirs.
func (a *Access) Ensure(ctx context.Context, g Grant) error {
	a.op.Lock()
	defer a.op.Unlock()
	if err := a.agentNamespace(ctx); err != nil {
		return err
	}
	a.remember(g)
	bs := a.bindings(g)
	if err := a.apply(ctx, g, bs); err != nil {
		return err
	}
	want := keys(bs)
	return a.prune(ctx, g.Env, func(user uint64, binding string) bool {
		return user != g.User || binding == "" || want[binding]
	})
}

// remember records g as the grant its user holds, for the namespaces that
// appear later.
func (a *Access) remember(g Grant) {
	a.mu.Lock()
	a.grants[[2]uint64{g.Env, g.User}] = g
	a.mu.Unlock()
}

// Token ensures g and returns a token of the user's service account, valid
// for ttl (at least 10 minutes, the API server's floor).
func (a *Access) Token(ctx context.Context, g Grant, ttl time.Duration) (string, time.Time, error) {
	if err := a.Ensure(ctx, g); err != nil {
		return "", time.Time{}, err
	}
	secs := int64(max(ttl, 10*time.Minute) / time.Second)
	req := &authnv1.TokenRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"},
		Spec:     authnv1.TokenRequestSpec{ExpirationSeconds: &secs},
	}
	var out authnv1.TokenRequest
	err := a.core.Post().Namespace(Namespace).Resource("serviceaccounts").Name(UserServiceAccount(g.User, g.Env)).
		SubResource("token").Body(req).Do(ctx).Into(&out)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("kube: token of user %d: %w", g.User, err)
	}
	return out.Status.Token, out.Status.ExpirationTimestamp.Time, nil
}

// binding is one binding a grant calls for: a RoleBinding in ns, or a
// ClusterRoleBinding when ns is empty, of cluster role role.
type binding struct{ ns, name, role string }

// key is how prune names a binding: "namespace/name", "/name" cluster-wide.
func (b binding) key() string { return b.ns + "/" + b.name }

func keys(bs []binding) map[string]bool {
	out := make(map[string]bool, len(bs))
	for _, b := range bs {
		out[b.key()] = true
	}
	return out
}

// bindings are the bindings g calls for: its role's cluster-wide ones,
// then its namespaced ones in each namespace of its scope that exists.
func (a *Access) bindings(g Grant) []binding {
	al := AllocationOf(g.Role)
	var out []binding
	for _, r := range al.Cluster {
		out = append(out, binding{"", bindingName("crb", g, r), r})
	}
	for _, ns := range a.scopeNamespaces(g) {
		for _, r := range al.Namespaced {
			out = append(out, binding{ns, bindingName("rb", g, r), r})
		}
	}
	return out
}

func bindingName(kind string, g Grant, role string) string {
	return fmt.Sprintf("outpost-%s-user-%d-%d-%s", kind, g.User, g.Env, role)
}

// scopeNamespaces are the namespaces that exist and g's scope covers.
func (a *Access) scopeNamespaces(g Grant) []string {
	var out []string
	for _, o := range a.nsInf.GetStore().List() {
		ns := o.(*corev1.Namespace)
		if ns.DeletionTimestamp == nil && RoleScope(g.Role) != ScopeAll && InScope(g.Role, g.Namespaces, ns.Name) {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out)
	return out
}

func (a *Access) labels(g Grant) map[string]string {
	return map[string]string{ManagedBy: "outpost", labelUser: strconv.FormatUint(g.User, 10), labelEnv: strconv.FormatUint(g.Env, 10)}
}

// applyObject server-side-applies obj (with its apiVersion and kind) to
// the resource at c's path.
func applyObject(ctx context.Context, c *rest.RESTClient, ns, resource, name string, obj any) error {
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	req := c.Patch(types.ApplyPatchType).Resource(resource).Name(name).
		Param("fieldManager", fieldManager).Param("force", "true").Body(body)
	if ns != "" {
		req = req.Namespace(ns)
	}
	return req.Do(ctx).Error()
}

// agentNamespace waits for the namespaces to be listed and makes sure the
// namespace of the users' service accounts exists (the install manifest
// makes it; an agent run with KUBECONFIG may find none).
func (a *Access) agentNamespace(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), a.nsInf.HasSynced) {
		return fmt.Errorf("kube: access: namespaces not listed yet: %w", ctx.Err())
	}
	if err := applyObject(ctx, a.core, "", "namespaces", Namespace, &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: Namespace},
	}); err != nil {
		return fmt.Errorf("kube: namespace %s: %w", Namespace, err)
	}
	return nil
}

// apply creates or updates g's service account and the bindings bs,
// without dropping any.
func (a *Access) apply(ctx context.Context, g Grant, bs []binding) error {
	sa := UserServiceAccount(g.User, g.Env)
	if err := applyObject(ctx, a.core, Namespace, "serviceaccounts", sa, &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: Namespace, Labels: a.labels(g)},
	}); err != nil {
		return fmt.Errorf("kube: service account %s: %w", sa, err)
	}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: Namespace}}
	var errs []error
	for _, b := range bs {
		ref := rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: b.role}
		if b.ns == "" {
			errs = append(errs, applyObject(ctx, a.rbac, "", "clusterrolebindings", b.name, &rbacv1.ClusterRoleBinding{
				TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
				ObjectMeta: metav1.ObjectMeta{Name: b.name, Labels: a.labels(g)},
				Subjects:   subject,
				RoleRef:    ref,
			}))
			continue
		}
		err := applyObject(ctx, a.rbac, b.ns, "rolebindings", b.name, &rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: b.name, Namespace: b.ns, Labels: a.labels(g)},
			Subjects:   subject,
			RoleRef:    ref,
		})
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			continue // the namespace went (or is going) away meanwhile
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kube: bindings of user %d: %w", g.User, err)
	}
	return nil
}

// prune deletes Outpost's service accounts and bindings of environment env
// that keep refuses: keep(user, "") for a user's service account,
// keep(user, "namespace/name") for a binding.
func (a *Access) prune(ctx context.Context, env uint64, keep func(user uint64, binding string) bool) error {
	sel := labelEnv + "=" + strconv.FormatUint(env, 10) + "," + labelUser
	var errs []error
	del := func(c *rest.RESTClient, ns, resource, name string) {
		req := c.Delete().Resource(resource).Name(name)
		if ns != "" {
			req = req.Namespace(ns)
		}
		if err := req.Do(ctx).Error(); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s %s/%s: %w", resource, ns, name, err))
		}
	}
	userOf := func(m metav1.ObjectMeta) uint64 {
		u, _ := strconv.ParseUint(m.Labels[labelUser], 10, 64)
		return u
	}
	var sas corev1.ServiceAccountList
	if err := a.core.Get().Namespace(Namespace).Resource("serviceaccounts").Param("labelSelector", sel).Do(ctx).Into(&sas); err != nil {
		return fmt.Errorf("kube: list service accounts: %w", err)
	}
	for _, sa := range sas.Items {
		if !keep(userOf(sa.ObjectMeta), "") {
			del(a.core, Namespace, "serviceaccounts", sa.Name)
		}
	}
	var crbs rbacv1.ClusterRoleBindingList
	if err := a.rbac.Get().Resource("clusterrolebindings").Param("labelSelector", sel).Do(ctx).Into(&crbs); err != nil {
		return fmt.Errorf("kube: list cluster role bindings: %w", err)
	}
	for _, b := range crbs.Items {
		if !keep(userOf(b.ObjectMeta), "/"+b.Name) {
			del(a.rbac, "", "clusterrolebindings", b.Name)
		}
	}
	var rbs rbacv1.RoleBindingList
	if err := a.rbac.Get().Resource("rolebindings").Param("labelSelector", sel).Do(ctx).Into(&rbs); err != nil {
		return fmt.Errorf("kube: list role bindings: %w", err)
	}
	for _, b := range rbs.Items {
		if !keep(userOf(b.ObjectMeta), b.Namespace+"/"+b.Name) {
			del(a.rbac, b.Namespace, "rolebindings", b.Name)
		}
	}
	return errors.Join(errs...)
}
