//go:build integration

package kube_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"outpost/internal/kubetest"
	"outpost/kube"
)

// apply creates each document of manifest in the cluster, as kubectl apply
// would on an empty cluster, and returns the objects.
func apply(t *testing.T, cs kubernetes.Interface, manifest string) []runtime.Object {
	t.Helper()
	ctx := context.Background()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("document %d does not decode: %v\n%s", len(out)+1, err, doc)
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			_, err = cs.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Secret:
			_, err = cs.CoreV1().Secrets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.PersistentVolumeClaim:
			_, err = cs.CoreV1().PersistentVolumeClaims(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_, err = cs.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("document %d is a %T, which the test does not apply", len(out)+1, obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("document %d (%T): %v", len(out)+1, obj, err)
		}
		out = append(out, obj)
	}
}

// TestInstallManifestAgainstARealAPIServer: the install manifest applies
// to a real API server; the agent's deployment runs as its service
// account with the edge key from the secret and its data on the claim; and
// that service account is cluster-admin, as a token the API server issues
// for it shows (it may list pods in kube-system and create namespaces).
func TestInstallManifestAgainstARealAPIServer(t *testing.T) {
	kc := kubetest.Start(t)
	cs := kc.Client(t)
	ctx := context.Background()
	const key = "aHR0cHM6Ly9vdXRwb3N0LmV4YW1wbGU6OTQ0M3wxMnxrZXk"
	objs := apply(t, cs, kube.Manifest(kube.Install{EdgeKey: key, Async: true, Image: "outpost/agent:local", InsecurePoll: true}))
	if len(objs) != 6 {
		t.Fatalf("%d documents, want namespace, service account, binding, secret, claim, deployment", len(objs))
	}
	d, err := cs.AppsV1().Deployments(kube.Namespace).Get(ctx, kube.AgentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	env := map[string]corev1.EnvVar{}
	for _, e := range spec.Containers[0].Env {
		env[e.Name] = e
	}
	if spec.ServiceAccountName != kube.ServiceAccount || env["EDGE_ASYNC"].Value != "1" || env["EDGE_KEY"].ValueFrom == nil ||
		env["OUTPOST_DATA_DIR"].Value != "/data" || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Fatalf("deployment: service account %q, env %+v, strategy %s", spec.ServiceAccountName, env, d.Spec.Strategy.Type)
	}
	sec, err := cs.CoreV1().Secrets(kube.Namespace).Get(ctx, "outpost-agent-key", metav1.GetOptions{})
	if err != nil || string(sec.Data["EDGE_KEY"]) != key {
		t.Fatalf("edge key secret: %v %q", err, sec.Data["EDGE_KEY"])
	}

	tok, err := cs.CoreV1().ServiceAccounts(kube.Namespace).CreateToken(ctx, kube.ServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := kubernetes.NewForConfig(kc.As(tok.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("the agent's service account cannot list pods in kube-system: %v", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "by-agent-"}}
	if _, err := agent.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the agent's service account cannot create a namespace: %v", err)
	}
	// A service account without the binding is refused: the check above
	// means something.
	if _, err := cs.CoreV1().ServiceAccounts(kube.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	nt, err := cs.CoreV1().ServiceAccounts(kube.Namespace).CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nobody, _ := kubernetes.NewForConfig(kc.As(nt.Status.Token))
	if _, err := nobody.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("a service account without the binding lists kube-system's pods: %v", err)
	}
}
