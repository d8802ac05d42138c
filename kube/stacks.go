package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	sigsyaml "sigs.k8s.io/yaml"

	"outpost/internal/atomicfile"
)

// What a Kubernetes edge stack puts on the objects it applies.
const (
	// LabelStack is on every object a stack applied: the stack's name on
	// the device (its project name, with the agent's stack prefix).
	LabelStack = "outpost.io/stack"
	// LabelStackVersion is the stack version that last applied the object.
	LabelStackVersion = "outpost.io/stack-version"
	// FieldManager is the agent's server-side apply field manager.
	FieldManager = "outpost"
)

// ErrManifests: a stack's manifests or name are wrong. Applying the same
// stack again cannot succeed; nothing was changed in the cluster.
var ErrManifests = errors.New("invalid Kubernetes stack")

// StackSpec is one Kubernetes edge stack to apply.
type StackSpec struct {
	Name      string // the stack's name on the device: LabelStack's value, at most 63 characters
	Version   uint64 // LabelStackVersion's value
	Manifests []byte // YAML documents, "---" between them
	Namespace string // where namespaced objects without a namespace go; "" is "default"
}

// StackPhase is where a stack is, judged from what the API server reports.
type StackPhase string

// The phases. See Stacks.Status for the rules.
const (
	StackMissing   StackPhase = "missing"   // nothing of the stack is recorded as applied
	StackDeploying StackPhase = "deploying" // a workload is not rolled out yet
	StackRunning   StackPhase = "running"   // every object is there and every workload rolled out
	StackFailed    StackPhase = "failed"    // a workload reports a failure, or an object is gone
)

// StackState is a stack's state.
type StackState struct {
	Phase   StackPhase
	Message string // for deploying and failed: which objects and why, short
}

// Stacks applies Kubernetes edge stacks: their manifests go to the API
// server by server-side apply (field manager "outpost", conflicts forced:
// the stack is the source of what it declares), each object labelled with
// the stack's name and version. What a stack applied is kept in an
// inventory, a file per stack in the agent's data dir, so an update
// deletes what it no longer declares and Remove deletes all of it, also
// after the agent restarted.
//
// It reaches the API server through the dynamic client and finds each
// kind's resource by asking the API server for that group version's
// resource list (cached, asked again for a kind it lacks). client-go's
// discovery client and RESTMapper would link every API group's types into
// the agent (the clientset's scheme), which the collector avoids too.
//
// Its methods are safe for concurrent use; Deploy and Remove are
// serialized.
type Stacks struct {
	dyn  *dynamic.DynamicClient
	core *rest.RESTClient // for the resource lists (AbsPath)
	dir  string
	log  *slog.Logger
	now  func() time.Time

	// op serializes Deploy and Remove. It is held across API calls on
	// purpose: ordering them, and the inventory files, is what it is for.
	// Status does not take it.
	op sync.Mutex

	mu        sync.Mutex // guards resources; never held across API calls
	resources map[schema.GroupVersion][]metav1.APIResource
}

// NewStacks returns a stack runner for the cluster cfg reaches, keeping its
// inventories in dir (created if missing). log may be nil.
func NewStacks(cfg *rest.Config, dir string, log *slog.Logger) (*Stacks, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := rest.CopyConfig(cfg)
	if c.UserAgent == "" {
		c.UserAgent = "outpost-agent"
	}
	// client-go's default of 5 requests a second would make a stack of a
	// hundred objects take 20 s per status check.
	if c.QPS == 0 {
		c.QPS, c.Burst = 50, 100
	}
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kube: stacks: %w", err)
	}
	core, err := restClient(c, schema.GroupVersion{Version: "v1"})
	if err != nil {
		return nil, fmt.Errorf("kube: stacks: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kube: stacks: %w", err)
	}
	return &Stacks{dyn: dyn, core: core, dir: dir, log: log, now: time.Now, resources: map[schema.GroupVersion][]metav1.APIResource{}}, nil
}

// ref names one object of a stack, as the inventory keeps it.
type ref struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

func (r ref) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

func (r ref) gvk() schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(r.APIVersion, r.Kind)
}

// same reports whether r and o name one object: the API version does not
// count, since one object is served under each version of its group (an
// update from autoscaling/v1 to v2 changes how it is written, not which
// object it is).
func (r ref) same(o ref) bool {
	return r.gvk().GroupKind() == o.gvk().GroupKind() && r.Namespace == o.Namespace && r.Name == o.Name
}

func (r ref) isNamespace() bool { return r.Kind == "Namespace" && r.APIVersion == "v1" }

// nsRes is the namespaces resource.
var nsRes = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// object is one document of a stack, ready to apply.
type object struct {
	u   *unstructured.Unstructured
	ref ref
	res *metav1.APIResource // nil until the kind is found (a kind the stack's own CRD defines)
}

// Deploy applies spec: it checks the manifests, finds each kind in the
// cluster (an unknown kind fails the deploy before anything is applied,
// unless a CustomResourceDefinition of the stack defines it), creates the
// default namespace when an object goes there and it is missing, applies
// namespaces, then CRDs, then the rest in the order of the documents, and
// deletes what the previous version applied and this one does not declare.
// It returns once the API server took every object, not once workloads
// are rolled out: poll Status.
//
// The inventory lists, during the apply, what the previous version applied
// as well as this one's objects, so a deploy cut short leaves nothing
// behind that an update or Remove would not find.
func (s *Stacks) Deploy(ctx context.Context, spec StackSpec) error {
	objs, err := spec.parse()
	if err != nil {
		return err
	}
	s.op.Lock()
	defer s.op.Unlock()
	ns := spec.namespace()
	// The kinds the stack's CRDs define, and whether they are namespaced.
	defined := map[schema.GroupKind]bool{}
	for _, o := range objs {
		if o.ref.Kind == "CustomResourceDefinition" && o.u.GroupVersionKind().Group == "apiextensions.k8s.io" {
			group, _, _ := unstructured.NestedString(o.u.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.u.Object, "spec", "names", "kind")
			scope, _, _ := unstructured.NestedString(o.u.Object, "spec", "scope")
			defined[schema.GroupKind{Group: group, Kind: kind}] = scope == "Namespaced"
		}
	}
	var errs []error
	needNamespace := false
	for _, o := range objs {
		namespaced, ours := defined[o.ref.gvk().GroupKind()]
		res, err := s.resource(ctx, o.ref.gvk())
		switch {
		case err == nil:
			o.res, namespaced = &res, res.Namespaced
		case !ours:
			errs = append(errs, fmt.Errorf("%s: %w", o.ref, err))
			continue
		}
		if o.place(namespaced, ns) {
			needNamespace = true
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("deploy %s: nothing applied: %w", spec.Name, errors.Join(errs...))
	}

	old, err := s.load(spec.Name)
	if err != nil {
		return err
	}
	refs := make([]ref, 0, len(objs))
	for _, o := range objs {
		refs = append(refs, o.ref)
	}
	// A namespace the manifests declare that was there before the stack
	// (not made by an earlier version of it) is adopted: the stack labels
	// it but never deletes it, nor what else lives in it.
	adopted, err := s.adopted(ctx, spec.Name, objs, old)
	if err != nil {
		return fmt.Errorf("deploy %s: nothing applied: %w", spec.Name, err)
	}
	if err := s.save(spec.Name, inventory{Version: spec.Version, Objects: union(refs, old.Objects), Adopted: union(adopted, old.Adopted)}); err != nil {
		return err
	}
	for _, o := range objs {
		if o.ref.isNamespace() && o.ref.Name == ns {
			needNamespace = false // the stack makes it
		}
	}
	if needNamespace {
		if err := s.ensureNamespace(ctx, ns); err != nil {
			return fmt.Errorf("deploy %s: %w", spec.Name, err)
		}
	}
	version := strconv.FormatUint(spec.Version, 10)
	for _, o := range applyOrder(objs) {
		if o.res == nil {
			if err := s.waitKind(ctx, o); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		labels := o.u.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[LabelStack], labels[LabelStackVersion] = spec.Name, version
		o.u.SetLabels(labels)
		_, err := s.client(o.res, o.ref).Apply(ctx, o.ref.Name, o.u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			errs = append(errs, fmt.Errorf("apply %s: %w", o.ref, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("deploy %s version %d: %w", spec.Name, spec.Version, errors.Join(errs...))
	}
	// What the previous version applied and this one does not declare.
	keep := slices.Clone(refs)
	for _, r := range deleteOrder(old.Objects) {
		if slices.ContainsFunc(refs, r.same) {
			continue
		}
		if slices.ContainsFunc(old.Adopted, r.same) {
			s.log.Info("the stack no longer declares a namespace it adopted; the namespace stays", "stack", spec.Name, "object", r.String())
			continue
		}
		if err := s.delete(ctx, spec.Name, r); err != nil {
			errs = append(errs, err)
			keep = append(keep, r) // found again by the next deploy or Remove
			continue
		}
		s.log.Info("pruned an object the stack no longer declares", "stack", spec.Name, "object", r.String())
	}
	if err := s.save(spec.Name, inventory{Version: spec.Version, Objects: keep, Adopted: adopted}); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("deploy %s version %d: %w", spec.Name, spec.Version, errors.Join(errs...))
	}
	return nil
}

// place puts a namespaced object without a namespace into ns, and takes
// the namespace off a cluster-scoped one (the API server's URL for it has
// none). It reports whether the object goes to ns by default.
func (o *object) place(namespaced bool, ns string) bool {
	if !namespaced {
		o.u.SetNamespace("")
		o.ref.Namespace = ""
		return false
	}
	if o.ref.Namespace != "" {
		return false
	}
	o.u.SetNamespace(ns)
	o.ref.Namespace = ns
	return true
}

// applyOrder is objs with namespaces first, then CRDs, then the rest, each
// in the order of the documents.
func applyOrder(objs []*object) []*object {
	rank := func(o *object) int {
		switch {
		case o.ref.isNamespace():
			return 0
		case o.ref.Kind == "CustomResourceDefinition":
			return 1
		}
		return 2
	}
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b *object) int { return rank(a) - rank(b) })
	return out
}

// deleteOrder is refs in reverse, CRDs and then namespaces last: deleting
// either takes what is in them along.
func deleteOrder(refs []ref) []ref {
	rank := func(r ref) int {
		switch {
		case r.isNamespace():
			return 2
		case r.Kind == "CustomResourceDefinition":
			return 1
		}
		return 0
	}
	out := slices.Clone(refs)
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b ref) int { return rank(a) - rank(b) })
	return out
}

// union is a, then what of b is not in a.
func union(a, b []ref) []ref {
	out := slices.Clone(a)
	for _, r := range b {
		if !slices.ContainsFunc(out, r.same) {
			out = append(out, r)
		}
	}
	return out
}

// adopted lists the namespaces of objs that exist in the cluster without
// being this stack's: made by hand, by another tool or stack, or by
// Kubernetes itself. Those the stack adopted before stay adopted.
func (s *Stacks) adopted(ctx context.Context, stack string, objs []*object, old inventory) ([]ref, error) {
	var out []ref
	for _, o := range objs {
		if !o.ref.isNamespace() {
			continue
		}
		if slices.ContainsFunc(old.Adopted, o.ref.same) {
			out = append(out, o.ref)
			continue
		}
		u, err := s.dyn.Resource(nsRes).Get(ctx, o.ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // the stack makes it, and removes it
		}
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", o.ref.Name, err)
		}
		if u.GetLabels()[LabelStack] != stack || !slices.ContainsFunc(old.Objects, o.ref.same) {
			out = append(out, o.ref)
		}
	}
	return out, nil
}

// waitKind finds the resource of a kind the stack's own CRD defines, which
// the API server serves a moment after the CRD is applied.
func (s *Stacks) waitKind(ctx context.Context, o *object) error {
	deadline := s.now().Add(30 * time.Second)
	for {
		res, err := s.resource(ctx, o.ref.gvk())
		if err == nil {
			o.res = &res
			return nil
		}
		if s.now().After(deadline) {
			return fmt.Errorf("%s: %w (its CustomResourceDefinition was applied 30 s ago)", o.ref, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// ensureNamespace creates namespace ns when it is missing. It is not part
// of the stack: Remove leaves it, as other things may live in it.
func (s *Stacks) ensureNamespace(ctx context.Context, ns string) error {
	_, err := s.dyn.Resource(nsRes).Get(ctx, ns, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Namespace")
	u.SetName(ns)
	u.SetLabels(map[string]string{ManagedBy: "outpost"})
	if _, err := s.dyn.Resource(nsRes).Create(ctx, u, metav1.CreateOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	s.log.Info("created the stacks' default namespace", "namespace", ns)
	return nil
}

// client is the dynamic client of r's resource, in its namespace.
func (s *Stacks) client(res *metav1.APIResource, r ref) dynamic.ResourceInterface {
	gv := r.gvk().GroupVersion()
	c := s.dyn.Resource(gv.WithResource(res.Name))
	if res.Namespaced {
		return c.Namespace(r.Namespace)
	}
	return c
}

// delete deletes r, unless it is already gone or another stack's label is
// on it now (the other stack declares it too, and applied it since).
// Dependents (a deployment's replica sets and pods) go with it, by the
// garbage collector.
func (s *Stacks) delete(ctx context.Context, stack string, r ref) error {
	res, err := s.resource(ctx, r.gvk())
	if errors.Is(err, errNotServed) {
		return nil // its kind is gone (a CRD removed), and with it the object
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", r, err)
	}
	c := s.client(&res, r)
	u, err := c.Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", r, err)
	}
	if owner := u.GetLabels()[LabelStack]; owner != stack {
		s.log.Warn("not deleting an object another stack applied since", "stack", stack, "object", r.String(), "label", owner)
		return nil
	}
	uid := u.GetUID()
	background := metav1.DeletePropagationBackground
	err = c.Delete(ctx, r.Name, metav1.DeleteOptions{PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", r, err)
	}
	return nil
}

// Remove deletes everything the stack applied, as its inventory lists it,
// namespaces last, and forgets the stack. A stack never applied here is
// removed at once. It returns once the API server accepted each deletion;
// dependents (replica sets, pods) and objects with finalizers go after.
// The default namespace Deploy created stays; a Namespace object the
// manifests declare is deleted, with all that is in it.
func (s *Stacks) Remove(ctx context.Context, name string) error {
	if !validStackName(name) {
		return nil // nothing by that name can have been applied (Deploy refuses it)
	}
	s.op.Lock()
	defer s.op.Unlock()
	inv, err := s.load(name)
	if err != nil {
		return err
	}
	if inv.Objects == nil {
		return s.forget(name)
	}
	var errs []error
	var left []ref
	for _, r := range deleteOrder(inv.Objects) {
		if slices.ContainsFunc(inv.Adopted, r.same) {
			continue // there before the stack: it stays
		}
		if err := s.delete(ctx, name, r); err != nil {
			errs = append(errs, err)
			left = append(left, r)
		}
	}
	if len(errs) > 0 {
		inv.Objects = left
		return fmt.Errorf("remove %s: %w", name, errors.Join(append(errs, s.save(name, inv))...))
	}
	return s.forget(name)
}

// Status judges the stack from the objects of its inventory as the API
// server reports them now, not from how Deploy returned:
//
//   - Deployment: rolled out when the controller has seen its latest spec
//     (observedGeneration), and updated, total and available replicas all
//     equal the desired count; failed when its Progressing condition says
//     ProgressDeadlineExceeded or a ReplicaFailure condition is true.
//   - StatefulSet: seen, and available and updated replicas equal desired
//     (updated is not asked of an OnDelete strategy).
//   - DaemonSet: seen, and updated and available equal the pods it should
//     schedule.
//   - Job: rolled out when Complete; failed when Failed (or FailureTarget).
//   - Pod: ready when Running and Ready, or Succeeded; failed when Failed.
//   - Any other object: there.
//
// An object of the inventory that is gone, or being deleted, is a failure. The phase is
// failed with the first failure's message in the order of the documents,
// else deploying if a workload is not rolled out, else running. A stack
// without an inventory is missing.
func (s *Stacks) Status(ctx context.Context, name string) (StackState, error) {
	inv, err := s.load(name)
	if err != nil {
		return StackState{}, err
	}
	if inv.Objects == nil {
		return StackState{Phase: StackMissing, Message: "nothing of the stack is applied in this cluster"}, nil
	}
	var failures, waiting []string
	for _, r := range inv.Objects {
		res, err := s.resource(ctx, r.gvk())
		if errors.Is(err, errNotServed) {
			failures = append(failures, fmt.Sprintf("%s: %v", r, err))
			continue
		}
		if err != nil {
			return StackState{}, fmt.Errorf("status %s: %s: %w", name, r, err)
		}
		u, err := s.client(&res, r).Get(ctx, r.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			failures = append(failures, fmt.Sprintf("%s is not in the cluster (deleted by hand?): deploy the stack again", r))
			continue
		}
		if err != nil {
			return StackState{}, fmt.Errorf("status %s: %s: %w", name, r, err)
		}
		if u.GetDeletionTimestamp() != nil {
			failures = append(failures, fmt.Sprintf("%s is being deleted (by hand?): deploy the stack again once it is gone", r))
			continue
		}
		v, why := judge(u)
		switch v {
		case failed:
			failures = append(failures, r.String()+": "+why)
		case pending:
			waiting = append(waiting, r.String()+": "+why)
		}
	}
	switch {
	case len(failures) > 0:
		return StackState{Phase: StackFailed, Message: failures[0]}, nil
	case len(waiting) > 0:
		return StackState{Phase: StackDeploying, Message: shortList(waiting)}, nil
	}
	return StackState{Phase: StackRunning}, nil
}

// shortList joins the first three of msgs, and says how many more.
func shortList(msgs []string) string {
	const most = 3
	if len(msgs) <= most {
		return strings.Join(msgs, "; ")
	}
	return strings.Join(msgs[:most], "; ") + fmt.Sprintf("; and %d more", len(msgs)-most)
}

// errNotServed: the cluster does not serve a kind (its API group version,
// or the kind in it).
var errNotServed = errors.New("not served by this cluster")

// resource finds gvk's resource in the cluster: from the cached resource
// list of its group version, asked again when the kind is not in it (a
// CRD applied since).
func (s *Stacks) resource(ctx context.Context, gvk schema.GroupVersionKind) (metav1.APIResource, error) {
	gv := gvk.GroupVersion()
	find := func() (metav1.APIResource, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.resources[gv] {
			if r.Kind == gvk.Kind && !strings.Contains(r.Name, "/") {
				return r, true
			}
		}
		return metav1.APIResource{}, false
	}
	if r, ok := find(); ok {
		return r, nil
	}
	path := "/apis/" + gv.Group + "/" + gv.Version
	if gv.Group == "" {
		path = "/api/" + gv.Version
	}
	raw, err := s.core.Get().AbsPath(path).DoRaw(ctx)
	if apierrors.IsNotFound(err) {
		return metav1.APIResource{}, fmt.Errorf("apiVersion %s is %w", gv, errNotServed)
	}
	if err != nil {
		return metav1.APIResource{}, fmt.Errorf("resources of %s: %w", gv, err)
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(raw, &list); err != nil {
		return metav1.APIResource{}, fmt.Errorf("resources of %s: %w", gv, err)
	}
	s.mu.Lock()
	s.resources[gv] = list.APIResources
	s.mu.Unlock()
	if r, ok := find(); ok {
		return r, nil
	}
	return metav1.APIResource{}, fmt.Errorf("kind %s of apiVersion %s is %w", gvk.Kind, gv, errNotServed)
}

// namespace is where namespaced objects without one go.
func (spec StackSpec) namespace() string {
	if spec.Namespace == "" {
		return metav1.NamespaceDefault
	}
	return spec.Namespace
}

// parse checks spec and reads its manifests, reporting every problem at
// once; the error wraps ErrManifests. The server checks the same before it
// sends a stack (stackfile.CheckManifests), so this catches what a device
// got from elsewhere.
func (spec StackSpec) parse() ([]*object, error) {
	var errs []error
	for _, msg := range validation.IsValidLabelValue(spec.Name) {
		errs = append(errs, fmt.Errorf("stack name %q labels its objects: %s", spec.Name, msg))
	}
	if spec.Name == "" {
		errs = append(errs, errors.New("stack name is empty"))
	}
	if spec.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(spec.Namespace) {
			errs = append(errs, fmt.Errorf("namespace %q: %s", spec.Namespace, msg))
		}
		if System(spec.Namespace) {
			errs = append(errs, fmt.Errorf("namespace %s is a system namespace: a stack may not deploy there", spec.Namespace))
		}
	}
	var objs []*object
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(spec.Manifests)))
	for n := 1; ; n++ {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", n, err))
			break
		}
		js, err := sigsyaml.YAMLToJSON(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", n, err))
			continue
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue // an empty document, as between two "---"
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(js, &head); err != nil {
			errs = append(errs, fmt.Errorf("document %d: not an object with apiVersion, kind and metadata: %w", n, err))
			continue
		}
		if head.APIVersion == "" || head.Kind == "" || head.Metadata.Name == "" {
			errs = append(errs, fmt.Errorf("document %d: apiVersion, kind and metadata.name are required (have %q, %q, %q)", n, head.APIVersion, head.Kind, head.Metadata.Name))
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", n, err))
			continue
		}
		r := ref{APIVersion: head.APIVersion, Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name}
		if System(r.Namespace) || (r.isNamespace() && System(r.Name)) {
			errs = append(errs, fmt.Errorf("document %d: %s: a system namespace: a stack may not touch it (nor the agent's own, %s)", n, r, Namespace))
			continue
		}
		if slices.ContainsFunc(objs, func(o *object) bool { return o.ref.same(r) }) {
			errs = append(errs, fmt.Errorf("document %d: %s is declared twice", n, r))
			continue
		}
		objs = append(objs, &object{u: u, ref: r})
	}
	if len(objs) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no Kubernetes object in the manifests"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrManifests, errors.Join(errs...))
	}
	return objs, nil
}

// inventory is what a stack applied, in the order of its documents.
type inventory struct {
	Version uint64 `json:"version"`
	Objects []ref  `json:"objects"`
	// Adopted are the namespaces of Objects that were there before the
	// stack: never deleted by it.
	Adopted []ref `json:"adopted,omitempty"`
}

func validStackName(name string) bool {
	return name != "" && len(validation.IsValidLabelValue(name)) == 0
}

func (s *Stacks) path(name string) string { return filepath.Join(s.dir, name+".json") }

// load reads the stack's inventory; without one, Objects is nil.
func (s *Stacks) load(name string) (inventory, error) {
	var inv inventory
	if !validStackName(name) {
		return inv, fmt.Errorf("%w: stack name %q: not a label value", ErrManifests, name)
	}
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return inv, nil
	}
	if err != nil {
		return inv, fmt.Errorf("inventory of %s: %w", name, err)
	}
	if err := json.Unmarshal(b, &inv); err != nil {
		return inv, fmt.Errorf("inventory of %s (%s) is damaged: %w", name, s.path(name), err)
	}
	if inv.Objects == nil {
		inv.Objects = []ref{}
	}
	return inv, nil
}

// save writes the stack's inventory: a new file synced and renamed over
// the old, so a crash or a power cut leaves one or the other.
func (s *Stacks) save(name string, inv inventory) error {
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path(name), b, 0o600); err != nil {
		return fmt.Errorf("inventory of %s: %w", name, err)
	}
	return nil
}

func (s *Stacks) forget(name string) error {
	if err := os.Remove(s.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("inventory of %s: %w", name, err)
	}
	return nil
}
