package kubetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost/internal/testenv"
)

// PodsRunning plays the kubelet for the pods in namespace ns that match
// the label selector sel: it waits until there are want of them (their
// controller makes them) and sets each one's status, through the status
// subresource as a kubelet does, to Running with every container ready.
// The controllers then count them available, so a deployment's rollout
// completes. No kubelet runs here, so nothing else would.
func (c *Cluster) PodsRunning(t testing.TB, ns, sel string, want int) {
	t.Helper()
	c.setPods(t, ns, sel, want, corev1.PodRunning)
}

// PodsSucceeded is PodsRunning for pods that ran to completion (phase
// Succeeded, exit code 0), as a job's pod reports when its work is done.
func (c *Cluster) PodsSucceeded(t testing.TB, ns, sel string, want int) {
	t.Helper()
	c.setPods(t, ns, sel, want, corev1.PodSucceeded)
}

func (c *Cluster) setPods(t testing.TB, ns, sel string, want int, phase corev1.PodPhase) {
	t.Helper()
	cs := c.Client(t)
	ctx := context.Background()
	var pods []corev1.Pod
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return false, err.Error()
		}
		pods = list.Items
		return len(pods) >= want, fmt.Sprintf("%d pods in %s match %q, want %d", len(pods), ns, sel, want)
	})
	now := metav1.Now()
	for _, p := range pods {
		ready := corev1.ConditionTrue
		if phase != corev1.PodRunning {
			ready = corev1.ConditionFalse
		}
		p.Status.Phase = phase
		p.Status.StartTime = &now
		p.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: ready, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: ready, LastTransitionTime: now},
		}
		p.Status.ContainerStatuses = nil
		for _, ctr := range p.Spec.Containers {
			st := corev1.ContainerStatus{Name: ctr.Name, Image: ctr.Image, ImageID: ctr.Image, Ready: ready == corev1.ConditionTrue}
			if phase == corev1.PodRunning {
				st.State.Running = &corev1.ContainerStateRunning{StartedAt: now}
				started := true
				st.Started = &started
			} else {
				st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}
			}
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, st)
		}
		if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, &p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("kubetest: set pod %s/%s %s: %v", ns, p.Name, phase, err)
		}
	}
}
