//go:build tools

// Package kube is a tool module of its own: it builds the Kubernetes API
// server and controller manager the tests run against (scripts/kube.sh),
// without bringing k8s.io/kubernetes into the project's own go.mod.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
