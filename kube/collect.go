package kube

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"outpost/snapshot"
)

// WarningWindow is how far back a snapshot sums up warning events.
const WarningWindow = time.Hour

// MaxWarnings is how many warning records a snapshot carries at most, the
// latest first: a crash-looping namespace must not fill the device's link.
const MaxWarnings = 50

// Collector builds Kubernetes snapshots from informers: one watch per kind,
// kept by client-go, so a snapshot is read from memory and a steady cluster
// costs no API call per tick. Secrets and config maps are kept without their
// values (a transform drops them as they arrive), so their values are never
// held, let alone sent.
//
// It talks to the API server with REST clients of the four API groups it
// reads, decoding with a scheme of those groups only: client-go's clientset,
// informer factory and typed clients register every API group, which made
// the agent's binary 45 MB larger (typed clients alone: 26 MB); this way
// it grows by 10.5 MB (31.2 to 41.7 MB, stripped).
type Collector struct {
	core *rest.RESTClient
	now  func() time.Time

	nodes, namespaces, deploys, stateful, daemons, jobs, cronjobs, pods,
	services, ingresses, claims, configMaps, secrets, warnings cache.SharedIndexInformer

	started atomic.Bool

	mu        sync.Mutex // guards version and versionAt; held across the version call, which nothing else waits for
	version   snapshot.Cluster
	versionAt time.Time
}

// scheme holds the API groups the agent uses, and nothing else: the four a
// snapshot reads, RBAC for the roles and bindings it keeps, and
// authentication for the users' tokens.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, networkingv1.AddToScheme, rbacv1.AddToScheme, authnv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // the groups' own registration: cannot fail
		}
	}
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return s
}()

// restClient is a client of API group version gv of the cluster cfg reaches,
// decoding with scheme.
func restClient(cfg *rest.Config, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	if gv.Group == "" {
		c.APIPath = "/api"
	}
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = "outpost-agent"
	}
	return rest.RESTClientFor(c)
}

// NewCollector returns a collector watching the cluster cfg reaches. now
// is the clock warning events are aged by.
func NewCollector(cfg *rest.Config, now func() time.Time) (*Collector, error) {
	cr, cerr := restClient(cfg, corev1.SchemeGroupVersion)
	ar, aerr := restClient(cfg, appsv1.SchemeGroupVersion)
	br, berr := restClient(cfg, batchv1.SchemeGroupVersion)
	nr, nerr := restClient(cfg, networkingv1.SchemeGroupVersion)
	if err := errors.Join(cerr, aerr, berr, nerr); err != nil {
		return nil, fmt.Errorf("kube: clients: %w", err)
	}
	watch := func(c cache.Getter, resource string, obj runtime.Object, sel fields.Selector) cache.SharedIndexInformer {
		return cache.NewSharedIndexInformer(cache.NewListWatchFromClient(c, resource, metav1.NamespaceAll, sel), obj, 0, cache.Indexers{})
	}
	all := fields.Everything()
	c := &Collector{core: cr, now: now,
		nodes:      watch(cr, "nodes", &corev1.Node{}, all),
		namespaces: watch(cr, "namespaces", &corev1.Namespace{}, all),
		deploys:    watch(ar, "deployments", &appsv1.Deployment{}, all),
		stateful:   watch(ar, "statefulsets", &appsv1.StatefulSet{}, all),
		daemons:    watch(ar, "daemonsets", &appsv1.DaemonSet{}, all),
		jobs:       watch(br, "jobs", &batchv1.Job{}, all),
		cronjobs:   watch(br, "cronjobs", &batchv1.CronJob{}, all),
		pods:       watch(cr, "pods", &corev1.Pod{}, all),
		services:   watch(cr, "services", &corev1.Service{}, all),
		ingresses:  watch(nr, "ingresses", &networkingv1.Ingress{}, all),
		claims:     watch(cr, "persistentvolumeclaims", &corev1.PersistentVolumeClaim{}, all),
		configMaps: watch(cr, "configmaps", &corev1.ConfigMap{}, all),
		secrets:    watch(cr, "secrets", &corev1.Secret{}, all),
		warnings:   watch(cr, "events", &corev1.Event{}, fields.OneTermEqualSelector("type", corev1.EventTypeWarning)),
	}
	for _, inf := range c.informers() {
		// Before the informers start: drop values and bookkeeping as
		// objects arrive.
		if err := inf.SetTransform(dropValues); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Collector) informers() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{c.nodes, c.namespaces, c.deploys, c.stateful, c.daemons, c.jobs, c.cronjobs,
		c.pods, c.services, c.ingresses, c.claims, c.configMaps, c.secrets, c.warnings}
}

// listOf returns the objects of type T an informer holds.
func listOf[T any](inf cache.SharedIndexInformer) []*T {
	objs := inf.GetStore().List()
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(*T); ok {
			out = append(out, t)
		}
	}
	return out
}

// dropValues keeps a secret's or config map's keys and drops the values.
func dropValues(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Secret:
		for k := range o.Data {
			o.Data[k] = nil
		}
		o.StringData = nil
		o.Annotations = nil // kubectl's last-applied configuration holds the values
	case *corev1.ConfigMap:
		for k := range o.Data {
			o.Data[k] = ""
		}
		for k := range o.BinaryData {
			o.BinaryData[k] = nil
		}
		o.Annotations = nil
	}
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil) // large, and not shown
	}
	return obj, nil
}

// Start starts the watches, which run until ctx ends, and returns at once:
// Collect answers once each has listed its kind (WaitSynced).
func (c *Collector) Start(ctx context.Context) {
	c.started.Store(true)
	for _, inf := range c.informers() {
		go inf.RunWithContext(ctx)
	}
}

// WaitSynced waits until every watch has listed its kind once, or ctx ends.
func (c *Collector) WaitSynced(ctx context.Context) error {
	var synced []cache.InformerSynced
	for _, inf := range c.informers() {
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("kube: the watches did not sync: %w", context.Cause(ctx))
	}
	return nil
}

// Synced reports whether every watch has listed its kind once.
func (c *Collector) Synced() bool {
	for _, inf := range c.informers() {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// Collect returns the cluster as the watches see it now.
func (c *Collector) Collect(ctx context.Context) (*snapshot.Snapshot, error) {
	if !c.started.Load() {
		return nil, errors.New("kube: the collector's watches are not started")
	}
	if !c.Synced() {
		return nil, errors.New("kube: the watches have not listed the cluster yet")
	}
	d := &snapshot.Snapshot{
		Cluster:    c.cluster(ctx),
		Nodes:      convert(c.nodes, node),
		Namespaces: convert(c.namespaces, namespace),
		Workloads: slices.Concat(convert(c.deploys, deployment), convert(c.stateful, statefulSet), convert(c.daemons, daemonSet),
			convert(c.jobs, job), convert(c.cronjobs, cronJob)),
		Pods:       convert(c.pods, pod),
		Services:   convert(c.services, service),
		Ingresses:  convert(c.ingresses, ingress),
		Claims:     convert(c.claims, claim),
		ConfigMaps: convert(c.configMaps, configMap),
		Secrets:    convert(c.secrets, secret),
	}
	evs := listOf[corev1.Event](c.warnings)
	d.Warnings = warnings(evs, c.now().Add(-WarningWindow))
	snapshot.Normalize(d)
	return d, nil
}

// versionEvery is how often the cluster's version is asked again: the one
// fact no watch brings.
const versionEvery = 10 * time.Minute

// cluster returns the API server's version and platform, asked at most
// every versionEvery; the last known when asking fails.
func (c *Collector) cluster(ctx context.Context) snapshot.Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.versionAt.IsZero() && c.now().Sub(c.versionAt) < versionEvery {
		return c.version
	}
	var v version.Info
	if raw, err := c.core.Get().AbsPath("/version").DoRaw(ctx); err == nil && json.Unmarshal(raw, &v) == nil {
		c.version, c.versionAt = snapshot.Cluster{Version: v.GitVersion, Platform: v.Platform}, c.now()
	}
	return c.version
}

// convert returns the objects of type T an informer holds, each through f.
func convert[T, R any](inf cache.SharedIndexInformer, f func(*T) R) []R {
	objs := listOf[T](inf)
	out := make([]R, 0, len(objs))
	for _, o := range objs {
		out = append(out, f(o))
	}
	return out
}

func namespace(n *corev1.Namespace) snapshot.Namespace {
	return snapshot.Namespace{UID: string(n.UID), Name: n.Name, Phase: string(n.Status.Phase),
		Created: n.CreationTimestamp.Unix(), Labels: userLabels(n.Labels)}
}

func configMap(m *corev1.ConfigMap) snapshot.KeySet {
	return snapshot.KeySet{UID: string(m.UID), Namespace: m.Namespace, Name: m.Name,
		Keys: append(mapKeys(m.Data), mapKeys(m.BinaryData)...), Created: m.CreationTimestamp.Unix()}
}

func secret(s *corev1.Secret) snapshot.KeySet {
	return snapshot.KeySet{UID: string(s.UID), Namespace: s.Namespace, Name: s.Name, Type: string(s.Type),
		Keys: mapKeys(s.Data), Created: s.CreationTimestamp.Unix()}
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// userLabels drops the labels Kubernetes sets on every object of a kind.
func userLabels(l map[string]string) map[string]string {
	var out map[string]string
	for k, v := range l {
		if k == "kubernetes.io/metadata.name" || k == "pod-template-hash" || k == "controller-revision-hash" || k == "pod-template-generation" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

func node(n *corev1.Node) snapshot.Node {
	out := snapshot.Node{UID: string(n.UID), Name: n.Name, Unschedulable: n.Spec.Unschedulable,
		Kubelet: n.Status.NodeInfo.KubeletVersion, OS: n.Status.NodeInfo.OSImage, Arch: n.Status.NodeInfo.Architecture,
		Created: n.CreationTimestamp.Unix()}
	for k := range n.Labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			out.Roles = append(out.Roles, r)
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Ready = c.Status == corev1.ConditionTrue
		}
	}
	if q, ok := n.Status.Capacity[corev1.ResourceCPU]; ok {
		out.CPU = q.String()
	}
	if q, ok := n.Status.Capacity[corev1.ResourceMemory]; ok {
		out.Memory = q.String()
	}
	return out
}

func images(spec corev1.PodSpec) []string {
	var out []string
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		out = append(out, c.Image)
	}
	return out
}

// problem is the message of the first condition that says something is
// wrong: one whose type names a failure and is true, or one whose type
// names health and is false.
func problem(conds []metav1.Condition) string {
	for _, c := range conds {
		if c.Message != "" && (c.Status == metav1.ConditionFalse) == healthy(c.Type) {
			return c.Reason + ": " + c.Message
		}
	}
	return ""
}

// problemOf is problem over a kind's own conditions, each read by f.
func problemOf[C any](cs []C, f func(C) metav1.Condition) string {
	conds := make([]metav1.Condition, 0, len(cs))
	for _, c := range cs {
		conds = append(conds, f(c))
	}
	return problem(conds)
}

// healthy reports whether a condition of type t is good when true.
func healthy(t string) bool {
	switch t {
	case "ReplicaFailure", "Failed", "FailureTarget":
		return false
	}
	return true
}

// workload is what every kind of workload records: its identity, the
// images of its pod template, its generation, when it was made, its labels.
func workload(kind string, m metav1.ObjectMeta, spec corev1.PodSpec) snapshot.Workload {
	return snapshot.Workload{UID: string(m.UID), Kind: kind, Namespace: m.Namespace, Name: m.Name, Images: images(spec),
		Generation: m.Generation, Created: m.CreationTimestamp.Unix(), Labels: userLabels(m.Labels)}
}

func deployment(o *appsv1.Deployment) snapshot.Workload {
	w := workload(snapshot.KindDeployment, o.ObjectMeta, o.Spec.Template.Spec)
	w.Desired, w.Ready, w.Available, w.Updated, w.Observed = 1, o.Status.ReadyReplicas, o.Status.AvailableReplicas, o.Status.UpdatedReplicas, o.Status.ObservedGeneration
	if o.Spec.Replicas != nil {
		w.Desired = *o.Spec.Replicas
	}
	w.Problem = problemOf(o.Status.Conditions, func(c appsv1.DeploymentCondition) metav1.Condition {
		return metav1.Condition{Type: string(c.Type), Status: metav1.ConditionStatus(c.Status), Reason: c.Reason, Message: c.Message}
	})
	return w
}

func statefulSet(o *appsv1.StatefulSet) snapshot.Workload {
	w := workload(snapshot.KindStatefulSet, o.ObjectMeta, o.Spec.Template.Spec)
	w.Desired, w.Ready, w.Available, w.Updated, w.Observed = 1, o.Status.ReadyReplicas, o.Status.AvailableReplicas, o.Status.UpdatedReplicas, o.Status.ObservedGeneration
	if o.Spec.Replicas != nil {
		w.Desired = *o.Spec.Replicas
	}
	w.Problem = problemOf(o.Status.Conditions, func(c appsv1.StatefulSetCondition) metav1.Condition {
		return metav1.Condition{Type: string(c.Type), Status: metav1.ConditionStatus(c.Status), Reason: c.Reason, Message: c.Message}
	})
	return w
}

func daemonSet(o *appsv1.DaemonSet) snapshot.Workload {
	w := workload(snapshot.KindDaemonSet, o.ObjectMeta, o.Spec.Template.Spec)
	w.Desired, w.Ready, w.Available, w.Updated, w.Observed = o.Status.DesiredNumberScheduled, o.Status.NumberReady, o.Status.NumberAvailable, o.Status.UpdatedNumberScheduled, o.Status.ObservedGeneration
	w.Problem = problemOf(o.Status.Conditions, func(c appsv1.DaemonSetCondition) metav1.Condition {
		return metav1.Condition{Type: string(c.Type), Status: metav1.ConditionStatus(c.Status), Reason: c.Reason, Message: c.Message}
	})
	return w
}

func job(o *batchv1.Job) snapshot.Workload {
	w := workload(snapshot.KindJob, o.ObjectMeta, o.Spec.Template.Spec)
	w.Desired, w.Ready, w.Active, w.Failed = 1, o.Status.Succeeded, o.Status.Active, o.Status.Failed
	if o.Spec.Completions != nil {
		w.Desired = *o.Spec.Completions
	}
	if o.Spec.Suspend != nil {
		w.Suspended = *o.Spec.Suspend
	}
	var conds []metav1.Condition
	for _, c := range o.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
			w.Complete = true
		}
		if c.Type == batchv1.JobComplete || c.Type == batchv1.JobSuspended || c.Type == batchv1.JobSuccessCriteriaMet {
			continue // not a failure either way
		}
		conds = append(conds, metav1.Condition{Type: string(c.Type), Status: metav1.ConditionStatus(c.Status), Reason: c.Reason, Message: c.Message})
	}
	w.Problem = problem(conds)
	return w
}

func cronJob(o *batchv1.CronJob) snapshot.Workload {
	w := workload(snapshot.KindCronJob, o.ObjectMeta, o.Spec.JobTemplate.Spec.Template.Spec)
	w.Schedule, w.Active = o.Spec.Schedule, int32(len(o.Status.Active))
	if o.Spec.Suspend != nil {
		w.Suspended = *o.Spec.Suspend
	}
	if o.Status.LastScheduleTime != nil {
		w.LastRun = o.Status.LastScheduleTime.Unix()
	}
	return w
}

func pod(p *corev1.Pod) snapshot.Pod {
	out := snapshot.Pod{UID: string(p.UID), Namespace: p.Namespace, Name: p.Name, Phase: string(p.Status.Phase),
		Node: p.Spec.NodeName, Reason: p.Status.Reason, Created: p.CreationTimestamp.Unix(), Labels: userLabels(p.Labels)}
	if ref := metav1.GetControllerOf(p); ref != nil {
		out.Owner = ref.Kind + "/" + ref.Name
	}
	status := map[string]corev1.ContainerStatus{}
	for _, s := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
		status[s.Name] = s
	}
	add := func(cs []corev1.Container, init bool) {
		for _, c := range cs {
			pc := snapshot.PodContainer{Name: c.Name, Image: c.Image, Init: init}
			if s, ok := status[c.Name]; ok {
				pc.Ready, pc.Restarts = s.Ready, s.RestartCount
				switch {
				case s.State.Running != nil:
					pc.State = "running"
				case s.State.Waiting != nil:
					pc.State, pc.Reason = "waiting", s.State.Waiting.Reason
				case s.State.Terminated != nil:
					pc.State, pc.Reason = "terminated", s.State.Terminated.Reason
				}
				out.Restarts += s.RestartCount
			}
			out.Containers = append(out.Containers, pc)
		}
	}
	add(p.Spec.InitContainers, true)
	add(p.Spec.Containers, false)
	if out.Reason == "" {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason != "" {
				out.Reason = c.Reason
			}
		}
	}
	return out
}

func service(s *corev1.Service) snapshot.Service {
	out := snapshot.Service{UID: string(s.UID), Namespace: s.Namespace, Name: s.Name, Type: string(s.Spec.Type),
		ClusterIP: s.Spec.ClusterIP, Selector: s.Spec.Selector, Created: s.CreationTimestamp.Unix()}
	for _, p := range s.Spec.Ports {
		sp := snapshot.ServicePort{Name: p.Name, Port: p.Port, Target: p.TargetPort.String(), NodePort: p.NodePort}
		if p.Protocol != corev1.ProtocolTCP {
			sp.Proto = string(p.Protocol)
		}
		if sp.Target == "0" {
			sp.Target = ""
		}
		out.Ports = append(out.Ports, sp)
	}
	return out
}

func ingress(i *networkingv1.Ingress) snapshot.Ingress {
	out := snapshot.Ingress{UID: string(i.UID), Namespace: i.Namespace, Name: i.Name, Created: i.CreationTimestamp.Unix()}
	if i.Spec.IngressClassName != nil {
		out.Class = *i.Spec.IngressClassName
	}
	backend := func(b *networkingv1.IngressBackend) (svc, port string) {
		if b == nil || b.Service == nil {
			return "", ""
		}
		if b.Service.Port.Name != "" {
			return b.Service.Name, b.Service.Port.Name
		}
		return b.Service.Name, strconv.Itoa(int(b.Service.Port.Number))
	}
	if i.Spec.DefaultBackend != nil {
		svc, port := backend(i.Spec.DefaultBackend)
		out.Rules = append(out.Rules, snapshot.IngressRule{Service: svc, Port: port})
	}
	for _, r := range i.Spec.Rules {
		if r.HTTP == nil {
			out.Rules = append(out.Rules, snapshot.IngressRule{Host: r.Host})
			continue
		}
		for _, p := range r.HTTP.Paths {
			svc, port := backend(&p.Backend)
			out.Rules = append(out.Rules, snapshot.IngressRule{Host: r.Host, Path: p.Path, Service: svc, Port: port})
		}
	}
	for _, t := range i.Spec.TLS {
		out.TLS = append(out.TLS, t.Hosts...)
	}
	return out
}

func claim(p *corev1.PersistentVolumeClaim) snapshot.Claim {
	out := snapshot.Claim{UID: string(p.UID), Namespace: p.Namespace, Name: p.Name, Phase: string(p.Status.Phase),
		Volume: p.Spec.VolumeName, Created: p.CreationTimestamp.Unix()}
	if p.Spec.StorageClassName != nil {
		out.StorageClass = *p.Spec.StorageClassName
	}
	if q, ok := p.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		out.Requested = q.String()
	}
	if q, ok := p.Status.Capacity[corev1.ResourceStorage]; ok {
		out.Capacity = q.String()
	}
	for _, m := range p.Spec.AccessModes {
		out.AccessModes = append(out.AccessModes, string(m))
	}
	return out
}

// warnings sums up the warning events since cutoff per object and reason,
// latest first, at most MaxWarnings.
func warnings(evs []*corev1.Event, cutoff time.Time) []snapshot.Warning {
	by := map[string]*snapshot.Warning{}
	for _, e := range evs {
		// The latest occurrence: an event written through events.k8s.io
		// (the scheduler's, the kubelet's) keeps it in its series, its
		// first in EventTime, and no LastTimestamp.
		last := e.CreationTimestamp.Time
		for _, t := range []time.Time{e.EventTime.Time, e.LastTimestamp.Time} {
			if t.After(last) {
				last = t
			}
		}
		if e.Series != nil && e.Series.LastObservedTime.After(last) {
			last = e.Series.LastObservedTime.Time
		}
		if e.Type != corev1.EventTypeWarning || last.Before(cutoff) {
			continue
		}
		o := e.InvolvedObject
		id := o.Namespace + "/" + o.Kind + "/" + o.Name + "/" + e.Reason
		count := max(e.Count, 1)
		if e.Series != nil {
			count = max(count, e.Series.Count)
		}
		w := by[id]
		if w == nil {
			w = &snapshot.Warning{ID: id, Object: o.Kind + "/" + o.Name, Reason: e.Reason}
			by[id] = w
		}
		w.Count += count
		if last.Unix() >= w.Last {
			w.Last, w.Message = last.Unix(), e.Message
		}
	}
	out := make([]snapshot.Warning, 0, len(by))
	for _, w := range by {
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b snapshot.Warning) int {
		return cmp.Or(cmp.Compare(b.Last, a.Last), strings.Compare(a.ID, b.ID))
	})
	if len(out) > MaxWarnings {
		out = out[:MaxWarnings]
	}
	return out
}
