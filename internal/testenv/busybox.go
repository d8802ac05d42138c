package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// BusyboxRef is the tag of the busybox image EnsureBusybox makes.
const BusyboxRef = "outpost-test/busybox:local"

// BusyboxPath is where Debian's busybox-static package puts its static binary.
const BusyboxPath = "/bin/busybox"

// ErrNoBusybox is returned when BusyboxPath does not exist.
var ErrNoBusybox = errors.New("no " + BusyboxPath + " (apt-get install busybox-static)")

// coreApplets are linked even if `busybox --list` cannot be run.
var coreApplets = []string{
	"sh", "sleep", "echo", "cat", "ls", "true", "false", "date", "touch", "mkdir",
	"rm", "wc", "env", "wget", "nc", "httpd", "kill", "ps", "test", "[",
}

// busyboxMu serializes EnsureBusybox within a process: parallel tests would
// otherwise each see the image missing and import it at once. It is held
// across the engine calls on purpose, since that is what it orders; nothing
// else takes it.
var busyboxMu sync.Mutex

// BusyboxImage returns BusyboxRef after making sure the engine has it. Without
// /bin/busybox the test is skipped (failed under CI) as Require does; any
// other failure fails the test.
func BusyboxImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	ref, err := EnsureBusybox(context.Background(), cli)
	if errors.Is(err, ErrNoBusybox) {
		Require(t, "busybox for the test image", err)
	}
	if err != nil {
		t.Fatalf("busybox image: %v", err)
	}
	return ref
}

// EnsureBusybox imports BusyboxRef from the host's /bin/busybox unless the
// engine has it already, and returns the ref. It is safe to call from
// parallel tests; two processes racing both import, and the later tag wins,
// which is harmless.
func EnsureBusybox(ctx context.Context, cli *client.Client) (string, error) {
	busyboxMu.Lock()
	defer busyboxMu.Unlock()
	imgs, err := cli.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("reference", BusyboxRef)})
	if err != nil {
		return "", fmt.Errorf("busybox image: list: %w", err)
	}
	if len(imgs.Items) > 0 {
		return BusyboxRef, nil
	}
	rootfs, err := BusyboxRootfs(nil)
	if err != nil {
		return "", err
	}
	if _, err := ImportImage(ctx, cli, BusyboxRef, bytes.NewReader(rootfs), `CMD ["sh"]`); err != nil {
		return "", err
	}
	return BusyboxRef, nil
}

// BusyboxRootfs returns a root file system tar: bin/busybox, a symlink in
// bin/ for each of its applets, etc/passwd and etc/group with root and
// nobody, an empty tmp/ (mode 1777), and the extra files (path without
// leading slash, mode 0644; parent directories are added). The tar is the same
// bytes for the same busybox and extras, so the engine shares its layer.
func BusyboxRootfs(extra map[string][]byte) ([]byte, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoBusybox
	}
	if err != nil {
		return nil, fmt.Errorf("busybox rootfs: %w", err)
	}
	files := map[string][]byte{
		"etc/passwd": []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		"etc/group":  []byte("root:x:0:\nnobody:x:65534:\n"),
	}
	for name, b := range extra {
		files[strings.TrimPrefix(name, "/")] = b
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	dirs := map[string]bool{}
	dir := func(name string, mode int64) error {
		if dirs[name] {
			return nil
		}
		dirs[name] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: mtime})
	}
	file := func(name string, mode int64, b []byte) error {
		// Parents first, outermost first.
		parts := strings.Split(path.Dir(name), "/")
		for i := range parts {
			if p := strings.Join(parts[:i+1], "/"); p != "." {
				if err := dir(p, 0o755); err != nil {
					return err
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}

	if err := dir("tmp", 0o1777); err != nil {
		return nil, fmt.Errorf("busybox rootfs: %w", err)
	}
	if err := dir("root", 0o700); err != nil {
		return nil, fmt.Errorf("busybox rootfs: %w", err)
	}
	if err := file("bin/busybox", 0o755, bin); err != nil {
		return nil, fmt.Errorf("busybox rootfs: %w", err)
	}
	for _, a := range applets() {
		h := &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mtime}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("busybox rootfs: %w", err)
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := file(name, 0o644, files[name]); err != nil {
			return nil, fmt.Errorf("busybox rootfs: %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("busybox rootfs: %w", err)
	}
	return buf.Bytes(), nil
}

// applets lists busybox's applets, sorted, falling back to coreApplets.
func applets() []string {
	set := map[string]bool{}
	for _, a := range coreApplets {
		set[a] = true
	}
	if out, err := exec.Command(BusyboxPath, "--list").Output(); err == nil {
		for _, a := range strings.Fields(string(out)) {
			if a != "busybox" && !strings.Contains(a, "/") {
				set[a] = true
			}
		}
	}
	list := make([]string, 0, len(set))
	for a := range set {
		list = append(list, a)
	}
	sort.Strings(list)
	return list
}

// ImportImage imports rootfs (a tar) as image ref with the given Dockerfile
// changes (`CMD ["sh"]`, `ENV K=V`, `LABEL k=v`, ...) and returns the new
// image's full ID ("sha256:...").
func ImportImage(ctx context.Context, cli *client.Client, ref string, rootfs io.Reader, changes ...string) (string, error) {
	res, err := cli.ImageImport(ctx, client.ImageImportSource{Source: rootfs, SourceName: "-"}, ref, client.ImageImportOptions{Changes: changes})
	if err != nil {
		return "", fmt.Errorf("import %s: %w", ref, err)
	}
	defer res.Close()
	// The engine answers with a stream of JSON messages; the last status is
	// the image ID, an error message means the import failed.
	var id string
	dec := json.NewDecoder(res)
	for {
		var m struct {
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("import %s: read answer: %w", ref, err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return "", fmt.Errorf("import %s: %s", ref, m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return "", fmt.Errorf("import %s: %s", ref, m.Error)
		}
		if strings.HasPrefix(m.Status, "sha256:") {
			id = strings.TrimSpace(m.Status)
		}
	}
	if id == "" {
		return "", fmt.Errorf("import %s: engine returned no image ID", ref)
	}
	return id, nil
}
