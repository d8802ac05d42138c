package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// The cluster roles Outpost keeps in every cluster it manages, named for
// Outpost after the source document's portainer-* roles. The first three
// are the document's "Cluster Roles", bound cluster-wide; edit and view
// are its "Namespace Roles", bound in namespaces (RoleBindings of these
// ClusterRoles).
const (
	RoleBasic    = "outpost-basic"
	RoleHelpdesk = "outpost-helpdesk"
	RoleOperator = "outpost-operator"
	RoleEdit     = "outpost-edit"
	RoleView     = "outpost-view"
)

// ManagedBy labels what Outpost made in a cluster.
const ManagedBy = "app.kubernetes.io/managed-by"

var (
	get, list, watch = "get", "list", "watch"
	read             = []string{get, list, watch}
	write            = []string{"create", "delete", "deletecollection", "patch", "update"}
)

func rule(group string, resources []string, verbs ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{group}, Resources: resources, Verbs: verbs}
}

func res(r ...string) []string { return r }

// roleRules are the rules of each role, row by row as the source
// document's tables list them (API group "" is its "(Empty)"). Where the
// table says "namespace" (helpdesk's metrics row) it is kept as written.
var roleRules = map[string][]rbacv1.PolicyRule{
	RoleBasic: {
		rule("", res("namespaces", "nodes"), get, list),
		rule("storage.k8s.io", res("storageclasses"), list),
		rule("metrics.k8s.io", res("namespaces", "pods", "nodes"), get, list),
		rule("networking.k8s.io", res("ingressclasses"), list),
	},
	RoleHelpdesk: {
		rule("", res("componentstatuses", "endpoints", "events", "namespaces", "nodes"), read...),
		rule("storage.k8s.io", res("storageclasses"), read...),
		rule("networking.k8s.io", res("ingresses"), get, watch),
		rule("networking.k8s.io", res("ingressclasses"), list),
		rule("metrics.k8s.io", res("pods", "nodes", "nodes/stats", "namespace"), read...),
	},
	RoleOperator: {
		rule("", res("configmaps"), "update"),
		rule("", res("pods"), "delete"),
		rule("apps", res("daemonsets", "deployments", "statefulsets"), "patch"),
		rule("metrics.k8s.io", res("pods", "nodes", "nodes/stats", "namespaces"), read...),
	},
	RoleEdit: {
		rule("", res("configmaps", "endpoints", "persistentvolumeclaims", "pods", "pods/attach", "pods/exec", "pods/portforward",
			"pods/proxy", "replicationcontrollers", "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
			"services/proxy"), write...),
		rule("", res("pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"), read...),
		rule("apps", res("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
			"replicasets/scale", "statefulsets", "statefulsets/scale"), write...),
		rule("autoscaling", res("horizontalpodautoscalers"), write...),
		rule("batch", res("cronjobs", "jobs"), write...),
		rule("extensions", res("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
			"networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"), write...),
		rule("networking.k8s.io", res("ingresses", "networkpolicies"), write...),
		rule("policy", res("poddisruptionbudgets"), write...),
	},
	RoleView: {
		rule("", res("bindings", "componentstatuses", "configmaps", "endpoints", "events", "limitranges", "namespaces",
			"namespaces/status", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods", "pods/log", "pods/status",
			"replicationcontrollers", "replicationcontrollers/scale", "replicationcontrollers/status", "resourcequotas",
			"resourcequotas/status", "secrets", "serviceaccounts", "services", "services/status"), read...),
		rule("apps", res("controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
			"deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets", "statefulsets/scale",
			"statefulsets/status"), read...),
		rule("autoscaling", res("horizontalpodautoscalers", "horizontalpodautoscalers/status"), read...),
		rule("batch", res("cronjobs", "cronjobs/status", "jobs", "jobs/status"), read...),
		rule("extensions", res("daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status",
			"ingresses", "ingresses/status", "networkpolicies", "replicasets", "replicasets/scale", "replicasets/status",
			"replicationcontrollers/scale"), read...),
		rule("networking.k8s.io", res("ingresses", "ingresses/status", "networkpolicies"), read...),
		rule("policy", res("poddisruptionbudgets", "poddisruptionbudgets/status"), read...),
	},
}

// RoleNames are the roles Outpost keeps, in the tables' order.
var RoleNames = []string{RoleBasic, RoleHelpdesk, RoleOperator, RoleEdit, RoleView}

// Rules returns a copy of role's rules.
func Rules(role string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range roleRules[role] {
		out = append(out, *r.DeepCopy())
	}
	return out
}

// ClusterRole is role as the cluster keeps it.
func ClusterRole(role string) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: role, Labels: map[string]string{ManagedBy: "outpost"}},
		Rules:      Rules(role),
	}
}

// Roles keeps Outpost's cluster roles in a cluster as the tables say: it
// creates those missing and puts back any rule edited by hand, at start,
// whenever the cluster reports a change to one of them, and every resync
// period besides.
type Roles struct {
	rbac *rest.RESTClient
	log  *slog.Logger
	inf  cache.SharedIndexInformer
	kick chan struct{}
}

// resync is how often the roles are checked without a change reported.
const resync = 10 * time.Minute

// NewRoles returns the keeper of the cluster cfg reaches.
func NewRoles(cfg *rest.Config, log *slog.Logger) (*Roles, error) {
	rc, err := restClient(cfg, rbacv1.SchemeGroupVersion)
	if err != nil {
		return nil, fmt.Errorf("kube: rbac client: %w", err)
	}
	r := &Roles{rbac: rc, log: log, kick: make(chan struct{}, 1)}
	lw := cache.NewFilteredListWatchFromClient(rc, "clusterroles", metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.LabelSelector = ManagedBy + "=outpost"
	})
	// No informer resync: Run's ticker checks every resync period already.
	r.inf = cache.NewSharedIndexInformer(lw, &rbacv1.ClusterRole{}, 0, cache.Indexers{})
	kick := func(any) {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	if _, err := r.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick, UpdateFunc: func(_, n any) { kick(n) }, DeleteFunc: kick,
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// Run keeps the roles until ctx ends.
func (r *Roles) Run(ctx context.Context) {
	go r.inf.RunWithContext(ctx)
	tick := time.NewTicker(resync)
	defer tick.Stop()
	select { // a first check, unless a change already asked for one
	case r.kick <- struct{}{}:
	default:
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-tick.C:
		}
		if err := r.Ensure(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("kubernetes roles: could not put them as the tables say; trying again at the next change", "err", err)
		}
	}
}

// Ensure creates the roles that are missing and puts back the rules and
// label of those that differ, reporting what it changed.
func (r *Roles) Ensure(ctx context.Context) error {
	var errs []error
	for _, name := range RoleNames {
		want := ClusterRole(name)
		var cur rbacv1.ClusterRole
		err := r.rbac.Get().Resource("clusterroles").Name(name).Do(ctx).Into(&cur)
		switch {
		case apierrors.IsNotFound(err):
			err = r.rbac.Post().Resource("clusterroles").Body(want).Do(ctx).Error()
			if err == nil {
				r.log.Info("kubernetes role created", "role", name)
			}
		case err == nil && (!reflect.DeepEqual(cur.Rules, want.Rules) || cur.Labels[ManagedBy] != "outpost"):
			cur.Rules = want.Rules
			cur.Labels = maps.Clone(cur.Labels)
			if cur.Labels == nil {
				cur.Labels = map[string]string{}
			}
			cur.Labels[ManagedBy] = "outpost"
			cur.AggregationRule = nil
			err = r.rbac.Put().Resource("clusterroles").Name(name).Body(&cur).Do(ctx).Error()
			if err == nil {
				r.log.Warn("kubernetes role edited in the cluster; its rules are put back as the tables say", "role", name)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
