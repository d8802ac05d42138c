package kube

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// verdict is an object's readiness, worst last.
type verdict int

const (
	ready verdict = iota
	pending
	failed
)

// judge applies Stacks.Status's rules to one object as the API server
// returned it; why is empty when it is ready.
func judge(u *unstructured.Unstructured) (verdict, string) {
	gvk := u.GroupVersionKind()
	var typed any
	switch {
	case gvk.Group == "apps" && gvk.Kind == "Deployment":
		typed = &appsv1.Deployment{}
	case gvk.Group == "apps" && gvk.Kind == "StatefulSet":
		typed = &appsv1.StatefulSet{}
	case gvk.Group == "apps" && gvk.Kind == "DaemonSet":
		typed = &appsv1.DaemonSet{}
	case gvk.Group == "batch" && gvk.Kind == "Job":
		typed = &batchv1.Job{}
	case gvk.Group == "" && gvk.Kind == "Pod":
		typed = &corev1.Pod{}
	default:
		return ready, "" // no rollout to wait for: it is there
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, typed); err != nil {
		return pending, fmt.Sprintf("cannot read its status: %v", err)
	}
	switch o := typed.(type) {
	case *appsv1.Deployment:
		return deploymentRollout(o)
	case *appsv1.StatefulSet:
		return statefulSetRollout(o)
	case *appsv1.DaemonSet:
		return daemonSetRollout(o)
	case *batchv1.Job:
		return jobRollout(o)
	case *corev1.Pod:
		return podRollout(o)
	}
	return ready, ""
}

func replicas(n *int32) int32 {
	if n == nil {
		return 1
	}
	return *n
}

// deploymentRollout follows `kubectl rollout status`: the controller has
// seen the latest spec, every replica is updated, no old one is left, and
// all are available; a progress deadline passed or a replica failure is a
// failure.
func deploymentRollout(d *appsv1.Deployment) (verdict, string) {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return failed, c.Message
		}
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return failed, conditionText(c.Reason, c.Message)
		}
	}
	want := replicas(d.Spec.Replicas)
	st := d.Status
	switch {
	case st.ObservedGeneration < d.Generation:
		return pending, "waiting for the deployment controller to see the new spec"
	case st.UpdatedReplicas < want:
		return pending, fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want)
	case st.Replicas > st.UpdatedReplicas:
		return pending, fmt.Sprintf("%d old replicas still there", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < want:
		return pending, fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
	}
	return ready, ""
}

func statefulSetRollout(s *appsv1.StatefulSet) (verdict, string) {
	want := replicas(s.Spec.Replicas)
	// A partitioned rolling update updates only the ordinals from the
	// partition up: that many is the whole rollout.
	wantUpdated := want
	if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition > 0 {
		wantUpdated = max(0, want-*ru.Partition)
	}
	st := s.Status
	switch {
	case st.ObservedGeneration < s.Generation:
		return pending, "waiting for the statefulset controller to see the new spec"
	case s.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType && st.UpdatedReplicas < wantUpdated:
		return pending, fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, wantUpdated)
	case st.AvailableReplicas < want:
		return pending, fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
	}
	return ready, ""
}

func daemonSetRollout(d *appsv1.DaemonSet) (verdict, string) {
	st := d.Status
	switch {
	case st.ObservedGeneration < d.Generation:
		return pending, "waiting for the daemonset controller to see the new spec"
	case d.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType && st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		return pending, fmt.Sprintf("%d of %d pods updated", st.UpdatedNumberScheduled, st.DesiredNumberScheduled)
	case st.NumberAvailable < st.DesiredNumberScheduled:
		return pending, fmt.Sprintf("%d of %d pods available", st.NumberAvailable, st.DesiredNumberScheduled)
	}
	return ready, ""
}

func jobRollout(j *batchv1.Job) (verdict, string) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			return failed, conditionText(c.Reason, c.Message)
		case batchv1.JobComplete:
			return ready, ""
		}
	}
	return pending, fmt.Sprintf("not complete: %d active, %d succeeded, %d failed", j.Status.Active, j.Status.Succeeded, j.Status.Failed)
}

func podRollout(p *corev1.Pod) (verdict, string) {
	switch p.Status.Phase {
	case corev1.PodSucceeded:
		return ready, ""
	case corev1.PodFailed:
		return failed, conditionText(p.Status.Reason, p.Status.Message)
	case corev1.PodRunning:
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return ready, ""
			}
		}
		return pending, "running, not ready"
	}
	return pending, fmt.Sprintf("phase %s", p.Status.Phase)
}

// conditionText is a condition's message, with its reason when that says
// more.
func conditionText(reason, message string) string {
	switch {
	case message == "":
		return reason
	case reason == "":
		return message
	}
	return reason + ": " + message
}
