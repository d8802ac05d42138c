//go:build integration

package kube

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"outpost/internal/kubetest"
)

type failVersion struct {
	rt   http.RoundTripper
	fail *atomic.Bool
}

func (f failVersion) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/version" && f.fail.Load() {
		return nil, errors.New("connection reset by peer")
	}
	return f.rt.RoundTrip(r)
}

// TestVersionBlipKeepsCluster: the cluster's version is asked at most every
// versionEvery, and a failed ask keeps the last answer: a blip must not
// push a delta clearing the version, and the next tick one putting it back.
func TestVersionBlipKeepsCluster(t *testing.T) {
	kc := kubetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fail atomic.Bool
	cfg := rest.CopyConfig(kc.Admin)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return failVersion{rt, &fail} }
	var now atomic.Int64
	now.Store(time.Now().Unix())
	c, err := NewCollector(cfg, func() time.Time { return time.Unix(now.Load(), 0) })
	if err != nil {
		t.Fatal(err)
	}
	c.Start(ctx)
	if err := c.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := c.Collect(ctx)
	if err != nil || first.Cluster.Version == "" {
		t.Fatalf("first collect: %+v %v", first, err)
	}
	fail.Store(true)
	now.Add(int64(versionEvery/time.Second) + 1) // due to be asked again
	second, err := c.Collect(ctx)
	if err != nil || second.Cluster != first.Cluster {
		t.Errorf("after a failed /version the snapshot's cluster is %+v (was %+v), err %v", second.Cluster, first.Cluster, err)
	}
	fail.Store(false)
	if c.versionAt.Unix() == now.Load() {
		t.Fatal("a failed ask counted as an answer")
	}
	if _, err := c.Collect(ctx); err != nil || c.versionAt.Unix() != now.Load() {
		t.Errorf("the version was not asked again after the failure: at %v, now %d, %v", c.versionAt, now.Load(), err)
	}
}
