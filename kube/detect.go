package kube

import (
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Platform names, as agents report them.
const (
	PlatformDocker     = "docker"
	PlatformKubernetes = "kubernetes"
)

// Detect says which platform the agent runs on: Kubernetes when it runs in
// a pod (the service account's in-cluster configuration) or KUBECONFIG
// names a kubeconfig file, else Docker. For Kubernetes it returns the
// configuration to reach the API server with and how it was found.
//
// A KUBECONFIG that is set but cannot be read is an error, not Docker: an
// operator who set it meant the cluster.
func Detect(getenv func(string) string) (platform string, cfg *rest.Config, how string, err error) {
	if getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return "", nil, "", fmt.Errorf("kubernetes: in a pod, but no in-cluster configuration: %w", err)
		}
		return PlatformKubernetes, cfg, "in-cluster service account", nil
	}
	if path := getenv("KUBECONFIG"); path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", nil, "", fmt.Errorf("kubernetes: KUBECONFIG=%s: %w", path, err)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return "", nil, "", fmt.Errorf("kubernetes: KUBECONFIG=%s: %w", path, err)
		}
		return PlatformKubernetes, cfg, "KUBECONFIG " + path, nil
	}
	return PlatformDocker, nil, "", nil
}
