package kube

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// TestRolloutOfPartitionsAndOnDelete: a partitioned statefulset update is
// done once the ordinals from the partition up are updated, and an
// OnDelete daemonset is not waited on for pods nobody will replace.
func TestRolloutOfPartitionsAndOnDelete(t *testing.T) {
	three, two := int32(3), int32(2)
	ss := &appsv1.StatefulSet{
		Spec: appsv1.StatefulSetSpec{Replicas: &three, UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
			Type: appsv1.RollingUpdateStatefulSetStrategyType, RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &two}}},
		Status: appsv1.StatefulSetStatus{UpdatedReplicas: 1, AvailableReplicas: 3},
	}
	if v, why := statefulSetRollout(ss); v != ready {
		t.Errorf("partition 2 of 3, 1 updated, 3 available: %v %q", v, why)
	}
	ss.Status.UpdatedReplicas = 0
	if v, _ := statefulSetRollout(ss); v != pending {
		t.Errorf("partition 2 of 3, none updated: %v", v)
	}
	ds := &appsv1.DaemonSet{
		Spec:   appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, NumberAvailable: 2},
	}
	if v, why := daemonSetRollout(ds); v != ready {
		t.Errorf("OnDelete daemonset, 0 of 2 updated, 2 available: %v %q", v, why)
	}
	ds.Spec.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
	if v, _ := daemonSetRollout(ds); v != pending {
		t.Errorf("rolling daemonset, 0 of 2 updated: %v", v)
	}
}
