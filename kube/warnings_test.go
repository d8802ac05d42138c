package kube

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TestWarningSeriesAgesByLastObserved: an event written through
// events.k8s.io/v1 (the scheduler's FailedScheduling, the kubelet's
// BackOff) reads in core/v1 with eventTime its first occurrence, no
// lastTimestamp, and series.lastObservedTime the latest. A warning that
// started two hours ago and recurred a minute ago is in the snapshot,
// dated a minute ago; one whose latest occurrence is older is not.
func TestWarningSeriesAgesByLastObserved(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	first, latest := now.Add(-2*time.Hour), now.Add(-time.Minute)
	ev := func(name string, last time.Time) *corev1.Event {
		return &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name + ".x", Namespace: "site-01", CreationTimestamp: metav1.NewTime(first)},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "site-01", Name: name},
			Type:           corev1.EventTypeWarning, Reason: "FailedScheduling", Message: "0/1 nodes are available",
			EventTime: metav1.NewMicroTime(first),
			Series:    &corev1.EventSeries{Count: 120, LastObservedTime: metav1.NewMicroTime(last)},
		}
	}
	got := warnings([]*corev1.Event{ev("db-0", latest), ev("db-1", now.Add(-90*time.Minute))}, now.Add(-WarningWindow))
	if len(got) != 1 || got[0].Object != "Pod/db-0" {
		t.Fatalf("warnings: %+v, want db-0's alone", got)
	}
	if got[0].Last != latest.Unix() || got[0].Count != 120 {
		t.Errorf("Last %d, count %d; want the series' last observation %d and its count 120", got[0].Last, got[0].Count, latest.Unix())
	}
}

// TestManifestQuotingRoundTrips: every value Manifest writes reads back,
// through the YAML parser kubectl uses, as that value; a byte that is not
// UTF-8 (which Go would escape as \xNN, YAML's U+00NN) as U+FFFD.
func TestManifestQuotingRoundTrips(t *testing.T) {
	for image, want := range map[string]string{
		"registry.local/agent:1": "registry.local/agent:1",
		"a\"b: c\n- d":           "a\"b: c\n- d",
		"caf\u00e9":              "caf\u00e9",
		"bad\xffbyte":            "bad\uFFFDbyte",
	} {
		m := Manifest(Install{EdgeKey: "k", Image: image})
		docs := strings.Split(m, "\n---\n")
		var dep struct {
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct{ Image string } `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(docs[len(docs)-1]), &dep); err != nil {
			t.Errorf("image %q: %v", image, err)
			continue
		}
		if c := dep.Spec.Template.Spec.Containers; len(c) != 1 || c[0].Image != want {
			t.Errorf("image %q reads back as %q, want %q", image, c, want)
		}
	}
}
