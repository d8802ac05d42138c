// Package kubetest starts a real Kubernetes control plane for tests: Debian's
// etcd, and the kube-apiserver and kube-controller-manager that
// scripts/kube.sh builds from the Go module proxy, on loopback ports in a
// temporary directory. No kubelet runs, so pods stay Pending; a test that
// needs a workload to look rolled out sets its status through the status
// subresource, as a kubelet and the controllers would.
//
// One control plane serves every test of a test binary (it takes about 20
// seconds to start); each test works in namespaces of its own. The
// processes die with the test binary (Pdeathsig). Their directory
// (outpost-kube-* in the system temp dir, with each process's log) stays
// for a look after the run; those older than a day are removed at the next
// start.
package kubetest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"outpost/internal/testenv"
)

// Cluster is a running control plane.
type Cluster struct {
	// Admin is a configuration with the admin token (group system:masters).
	Admin *rest.Config
	// Dir holds the control plane's files: etcd's data, certificates,
	// the service account keys and each process's log.
	Dir string
	// Host is the API server's URL.
	Host string

	procs []*exec.Cmd
}

var (
	once    sync.Once
	shared  *Cluster
	started error
)

// Start returns the test binary's control plane, starting it at the first
// call. Without etcd or the built binaries it skips the test (fails it
// under CI), saying what to run.
func Start(t testing.TB) *Cluster {
	t.Helper()
	once.Do(func() { shared, started = start() })
	if errors.Is(started, errMissing) {
		testenv.Require(t, "Kubernetes control plane", started)
	}
	if started != nil {
		t.Fatalf("kubetest: %v", started)
	}
	return shared
}

// Client returns a clientset with the admin token.
func (c *Cluster) Client(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// As returns a configuration that authenticates with bearer token.
func (c *Cluster) As(token string) *rest.Config {
	cfg := rest.CopyConfig(c.Admin)
	cfg.BearerToken = token
	return cfg
}

// Kubeconfig writes a kubeconfig file for the admin token and returns its
// path.
func (c *Cluster) Kubeconfig(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
`, c.Host, c.Admin.BearerToken)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var errMissing = errors.New("missing")

// binDir is where scripts/kube.sh puts the binaries.
func binDir() (string, error) {
	if d := os.Getenv("OUTPOST_KUBE_BIN"); d != "" {
		return d, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(root, "internal", "tools", "kube", "go.mod"))
	if err != nil {
		return "", err
	}
	var version string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "require" && f[1] == "k8s.io/kubernetes" {
			version = f[2]
		}
	}
	if version == "" {
		return "", errors.New("internal/tools/kube/go.mod names no k8s.io/kubernetes version")
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "outpost", "kube-"+version), nil
}

// moduleRoot is the directory of the project's go.mod, above the test's
// working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module outpost\n") {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("no go.mod of module outpost above the working directory")
		}
		dir = up
	}
}

func start() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	apiserver, cm := filepath.Join(bin, "kube-apiserver"), filepath.Join(bin, "kube-controller-manager")
	for _, p := range []string{apiserver, cm} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w: %s is not built (make test builds it, or run: bash scripts/kube.sh)", errMissing, p)
		}
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("%w: no etcd (apt-get install etcd-server; make test installs it)", errMissing)
	}
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "outpost-kube-*"))
	for _, d := range old {
		if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
			_ = os.RemoveAll(d)
		}
	}
	dir, err := os.MkdirTemp("", "outpost-kube-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	if err := c.run("etcd", etcd, "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL, "--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[1])); err != nil {
		return nil, err
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(
		os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600),
		os.WriteFile(saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600),
	); err != nil {
		return nil, err
	}
	tokBytes := make([]byte, 16)
	_, _ = rand.Read(tokBytes)
	token := hex.EncodeToString(tokBytes)
	cmTokBytes := make([]byte, 16)
	_, _ = rand.Read(cmTokBytes)
	cmToken := hex.EncodeToString(cmTokBytes)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"+
		cmToken+",system:kube-controller-manager,kcm,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	c.Host = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	if err := c.run("kube-apiserver", apiserver, "--etcd-servers="+etcdURL,
		fmt.Sprintf("--secure-port=%d", ports[2]), "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--service-account-issuer=https://kubernetes.default.svc", "--token-auth-file="+tokens,
		"--authorization-mode=RBAC", "--cert-dir="+filepath.Join(dir, "certs"),
		"--service-cluster-ip-range=10.0.0.0/24", "--enable-priority-and-fairness=false"); err != nil {
		return nil, err
	}
	c.Admin = &rest.Config{Host: c.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS: 200, Burst: 400}
	if err := c.waitReady(90 * time.Second); err != nil {
		c.stop()
		return nil, err
	}

	// The controller manager makes replica sets and pods of deployments,
	// jobs' pods, and service account tokens' plumbing.
	kubeconfig := filepath.Join(dir, "kcm.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: kcm, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: kcm}}]
current-context: test
`, c.Host, cmToken)), 0o600); err != nil {
		return nil, err
	}
	if err := c.run("kube-controller-manager", cm, "--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--service-account-private-key-file="+saKey, "--use-service-account-credentials=false",
		"--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-persistentvolume-binder,-attachdetach",
		fmt.Sprintf("--secure-port=%d", ports[3]), "--bind-address=127.0.0.1", "--leader-elect=false"); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// run starts a process of the control plane, logging to DIR/name.log.
func (c *Cluster) run(name, path string, args ...string) error {
	log, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	go func() { _ = cmd.Wait(); _ = log.Close() }()
	return nil
}

func (c *Cluster) stop() {
	for _, p := range c.procs {
		_ = p.Process.Kill()
	}
}

// waitReady polls /readyz with the admin token.
func (c *Cluster) waitReady(within time.Duration) error {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, c.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.Admin.BearerToken)
		res, err := hc.Do(req)
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			last = res.Status
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	logTail, _ := os.ReadFile(filepath.Join(c.Dir, "kube-apiserver.log"))
	if len(logTail) > 2000 {
		logTail = logTail[len(logTail)-2000:]
	}
	return fmt.Errorf("the API server was not ready within %v (last: %s); its log ends:\n%s", within, last, logTail)
}

// freePorts returns n ports free on 127.0.0.1 now.
func freePorts(n int) ([]int, error) {
	var out []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
