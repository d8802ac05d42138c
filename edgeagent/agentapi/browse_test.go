package agentapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"outpost/edgeagent/agentapi"
)

// fixture is a fake volumes root with one volume, "vol", and a directory
// outside it that symlinks in the volume point at.
type fixture struct {
	srv     *httptest.Server
	data    string // vols/vol/_data
	outside string
}

// newFixture lays out
//
//	vol/_data/a.txt            "hello"
//	vol/_data/dir/b.txt        "bee"
//	vol/_data/in     -> dir                (relative, stays inside)
//	vol/_data/out    -> <outside>          (absolute, leads outside)
//	vol/_data/up     -> ../../..           (relative, leads outside)
//	vol/_data/absin  -> <data>/dir         (absolute, inside as a path, still refused)
//	vol/_data/fifo                         (a named pipe)
//	evil/_data       -> <outside>          (a volume whose data is a symlink)
//	<outside>/secret.txt
//
// and serves an API on it with a 1 KiB upload limit and no engine.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	vols := t.TempDir()
	f := &fixture{data: filepath.Join(vols, "vol", "_data"), outside: t.TempDir()}
	must(t, os.MkdirAll(filepath.Join(f.data, "dir"), 0o755))
	must(t, os.WriteFile(filepath.Join(f.data, "a.txt"), []byte("hello"), 0o644))
	must(t, os.WriteFile(filepath.Join(f.data, "dir", "b.txt"), []byte("bee"), 0o644))
	must(t, os.WriteFile(filepath.Join(f.outside, "secret.txt"), []byte("secret"), 0o600))
	must(t, os.Symlink("dir", filepath.Join(f.data, "in")))
	must(t, os.Symlink(f.outside, filepath.Join(f.data, "out")))
	must(t, os.Symlink("../../..", filepath.Join(f.data, "up")))
	must(t, os.Symlink(filepath.Join(f.data, "dir"), filepath.Join(f.data, "absin")))
	mkfifo(t, filepath.Join(f.data, "fifo"))
	must(t, os.MkdirAll(filepath.Join(vols, "evil"), 0o755))
	must(t, os.Symlink(f.outside, filepath.Join(vols, "evil", "_data")))

	api, err := agentapi.New(agentapi.Config{
		DockerHost:  "unix://" + filepath.Join(t.TempDir(), "no-engine.sock"),
		VolumesRoot: vols,
		Version:     "test",
		MaxUpload:   1024,
		Log:         slog.New(slog.DiscardHandler),
	})
	must(t, err)
	f.srv = httptest.NewServer(api)
	t.Cleanup(func() {
		f.srv.Close()
		_ = api.Close()
	})
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// do sends a request to the fixture's API and returns the status, the body,
// and the headers.
func (f *fixture) do(t *testing.T, method, route string, q url.Values, body io.Reader, contentType string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+route+"?"+q.Encode(), body)
	must(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := f.srv.Client().Do(req)
	must(t, err)
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	must(t, err)
	return res.StatusCode, b, res.Header
}

// q builds the query of a browse call: volume, path and, optionally, newPath.
func q(volume, path string, newPath ...string) url.Values {
	v := url.Values{"volume": {volume}, "path": {path}}
	if len(newPath) > 0 {
		v.Set("newPath", newPath[0])
	}
	return v
}

// TestBrowseConfinement runs each request against a fresh fixture and checks
// its status, that an error is JSON with a message, and that nothing outside
// the volume changed.
func TestBrowseConfinement(t *testing.T) {
	cases := []struct {
		name   string
		method string
		route  string
		q      url.Values
		body   string
		want   int
	}{
		{"ls root", "GET", "/v2/browse/ls", q("vol", ""), "", 200},
		{"ls dir", "GET", "/v2/browse/ls", q("vol", "dir"), "", 200},
		{"ls symlink inside", "GET", "/v2/browse/ls", q("vol", "in"), "", 200},
		{"ls dotdot that stays inside", "GET", "/v2/browse/ls", q("vol", "dir/.."), "", 200},
		{"ls dotdot", "GET", "/v2/browse/ls", q("vol", "../.."), "", 400},
		{"ls dotdot after a dir", "GET", "/v2/browse/ls", q("vol", "dir/../../.."), "", 400},
		{"ls absolute", "GET", "/v2/browse/ls", q("vol", "/etc"), "", 400},
		{"ls slash", "GET", "/v2/browse/ls", q("vol", "/"), "", 400},
		{"ls symlink to outside", "GET", "/v2/browse/ls", q("vol", "out"), "", 403},
		{"ls relative symlink to outside", "GET", "/v2/browse/ls", q("vol", "up"), "", 403},
		{"ls absolute symlink to inside", "GET", "/v2/browse/ls", q("vol", "absin"), "", 403},
		{"ls a file", "GET", "/v2/browse/ls", q("vol", "a.txt"), "", 400},
		{"ls missing path", "GET", "/v2/browse/ls", q("vol", "nope"), "", 404},
		{"ls missing volume", "GET", "/v2/browse/ls", q("novol", ""), "", 404},
		{"ls volume dotdot", "GET", "/v2/browse/ls", q("..", ""), "", 400},
		{"ls volume with slash", "GET", "/v2/browse/ls", q("vol/_data", ""), "", 400},
		{"ls no volume", "GET", "/v2/browse/ls", q("", ""), "", 400},
		{"ls volume data symlinked outside", "GET", "/v2/browse/ls", q("evil", ""), "", 403},
		{"get file", "GET", "/v2/browse/get", q("vol", "a.txt"), "", 200},
		{"get through inside symlink", "GET", "/v2/browse/get", q("vol", "in/b.txt"), "", 200},
		{"get passwd by dotdot", "GET", "/v2/browse/get", q("vol", "../../etc/passwd"), "", 400},
		{"get absolute", "GET", "/v2/browse/get", q("vol", "/etc/passwd"), "", 400},
		{"get through symlink to outside", "GET", "/v2/browse/get", q("vol", "out/secret.txt"), "", 403},
		{"get through relative symlink", "GET", "/v2/browse/get", q("vol", "up/etc/passwd"), "", 403},
		{"get a dir", "GET", "/v2/browse/get", q("vol", "dir"), "", 400},
		{"get a fifo does not hang", "GET", "/v2/browse/get", q("vol", "fifo"), "", 400},
		{"get root", "GET", "/v2/browse/get", q("vol", ""), "", 400},
		{"get nul", "GET", "/v2/browse/get", q("vol", "a\x00b"), "", 400},
		{"put through symlink to outside", "POST", "/v2/browse/put", q("vol", "out/evil.txt"), "x", 403},
		{"put through relative symlink", "POST", "/v2/browse/put", q("vol", "up/evil.txt"), "x", 403},
		{"put dotdot", "POST", "/v2/browse/put", q("vol", "../evil.txt"), "x", 400},
		{"put under a new dir through symlink", "POST", "/v2/browse/put", q("vol", "out/new/evil.txt"), "x", 403},
		{"put raw body on a dir", "POST", "/v2/browse/put", q("vol", "dir"), "x", 400},
		{"delete root", "DELETE", "/v2/browse/delete", q("vol", ""), "", 400},
		{"delete through symlink", "DELETE", "/v2/browse/delete", q("vol", "out/secret.txt"), "", 403},
		{"delete dotdot", "DELETE", "/v2/browse/delete", q("vol", "../_data"), "", 400},
		{"delete missing", "DELETE", "/v2/browse/delete", q("vol", "nope"), "", 404},
		{"delete the symlink, not its target", "DELETE", "/v2/browse/delete", q("vol", "out"), "", 204},
		{"rename out by dotdot", "POST", "/v2/browse/rename", q("vol", "a.txt", "../a.txt"), "", 400},
		{"rename out through symlink", "POST", "/v2/browse/rename", q("vol", "a.txt", "out/a.txt"), "", 403},
		{"rename in from outside", "POST", "/v2/browse/rename", q("vol", "out/secret.txt", "stolen.txt"), "", 403},
		{"rename onto existing", "POST", "/v2/browse/rename", q("vol", "a.txt", "dir/b.txt"), "", 409},
		{"rename absolute", "POST", "/v2/browse/rename", q("vol", "a.txt", "/tmp/a.txt"), "", 400},
		{"ls by POST", "POST", "/v2/browse/ls", q("vol", ""), "", 405},
		{"unknown v2 path", "GET", "/v2/nope", nil, "", 404},
		{"v2 itself", "GET", "/v2", nil, "", 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			status, body, hdr := f.do(t, c.method, c.route, c.q, strings.NewReader(c.body), "")
			if status != c.want {
				t.Fatalf("%s %s?%s: status %d, want %d; body %s", c.method, c.route, c.q.Encode(), status, c.want, body)
			}
			if hdr.Get(agentapi.HeaderAgentVersion) != "test" || hdr.Get(agentapi.HeaderAPIVersion) != agentapi.APIVersion {
				t.Errorf("headers %v lack the agent's version headers", hdr)
			}
			if status >= 400 {
				var e struct{ Message string }
				if err := json.Unmarshal(body, &e); err != nil || e.Message == "" {
					t.Errorf("error body %q is not {\"message\": ...}", body)
				}
			}
			secret, err := os.ReadFile(filepath.Join(f.outside, "secret.txt"))
			if err != nil || string(secret) != "secret" {
				t.Errorf("outside file after the call: %q, %v", secret, err)
			}
			if ents, _ := os.ReadDir(f.outside); len(ents) != 1 {
				t.Errorf("outside dir after the call has %d entries, want 1", len(ents))
			}
			if _, err := os.Stat(filepath.Join(f.data, "a.txt")); err != nil && !strings.HasPrefix(c.name, "rename") {
				t.Errorf("a.txt: %v", err)
			}
		})
	}
}

func TestBrowseLifecycle(t *testing.T) {
	f := newFixture(t)
	names := func(path string) []string {
		t.Helper()
		status, body, _ := f.do(t, "GET", "/v2/browse/ls", q("vol", path), nil, "")
		if status != 200 {
			t.Fatalf("ls %q: %d %s", path, status, body)
		}
		var ents []agentapi.Entry
		must(t, json.Unmarshal(body, &ents))
		var ns []string
		for _, e := range ents {
			ns = append(ns, e.Name)
		}
		return ns
	}
	get := func(path string) (int, string) {
		t.Helper()
		status, body, _ := f.do(t, "GET", "/v2/browse/get", q("vol", path), nil, "")
		return status, string(body)
	}
	multipartBody := func(field, filename, content string) (io.Reader, string) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		must(t, mw.WriteField("note", "ignored"))
		fw, err := mw.CreateFormFile(field, filename)
		must(t, err)
		_, err = io.WriteString(fw, content)
		must(t, err)
		must(t, mw.Close())
		return &buf, mw.FormDataContentType()
	}

	if got, want := names(""), []string{"a.txt", "absin", "dir", "fifo", "in", "out", "up"}; !slices.Equal(got, want) {
		t.Fatalf("ls root: %v, want %v", got, want)
	}

	// A multipart upload to a new path, parents created.
	body, ct := multipartBody("file", "ignored-name.txt", "new content")
	status, resp, _ := f.do(t, "POST", "/v2/browse/put", q("vol", "docs/sub/n.txt"), body, ct)
	if status != 201 {
		t.Fatalf("put multipart: %d %s", status, resp)
	}
	var e agentapi.Entry
	must(t, json.Unmarshal(resp, &e))
	if e.Name != "n.txt" || e.Size != int64(len("new content")) || e.Dir {
		t.Errorf("put answered %+v", e)
	}
	if s, b := get("docs/sub/n.txt"); s != 200 || b != "new content" {
		t.Errorf("get after put: %d %q", s, b)
	}

	// A multipart upload into a directory takes the file's name.
	body, ct = multipartBody("file", "../../named.txt", "named")
	if status, resp, _ := f.do(t, "POST", "/v2/browse/put", q("vol", "dir"), body, ct); status != 201 {
		t.Fatalf("put into dir: %d %s", status, resp)
	}
	if s, b := get("dir/named.txt"); s != 200 || b != "named" {
		t.Errorf("get dir/named.txt: %d %q", s, b)
	}

	// A raw-body upload replaces a file and keeps its mode.
	must(t, os.Chmod(filepath.Join(f.data, "a.txt"), 0o600))
	if status, resp, _ := f.do(t, "POST", "/v2/browse/put", q("vol", "a.txt"), strings.NewReader("replaced"), "application/octet-stream"); status != 201 {
		t.Fatalf("put raw: %d %s", status, resp)
	}
	if s, b := get("a.txt"); s != 200 || b != "replaced" {
		t.Errorf("get after replace: %d %q", s, b)
	}
	if fi, err := os.Stat(filepath.Join(f.data, "a.txt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("replaced file: %v, %v; want mode 0600", fi.Mode(), err)
	}

	// Past the limit: 413, and the old file and no temporary file remain.
	big := strings.Repeat("x", 1025)
	if status, resp, _ := f.do(t, "POST", "/v2/browse/put", q("vol", "a.txt"), strings.NewReader(big), ""); status != 413 {
		t.Errorf("put 1025 bytes with a 1024-byte limit: %d %s", status, resp)
	}
	body, ct = multipartBody("file", "big.txt", big)
	if status, resp, _ := f.do(t, "POST", "/v2/browse/put", q("vol", "big.txt"), body, ct); status != 413 {
		t.Errorf("multipart put past the limit: %d %s", status, resp)
	}
	body, ct = multipartBody("other", "x.txt", "x")
	if status, resp, _ := f.do(t, "POST", "/v2/browse/put", q("vol", "x.txt"), body, ct); status != 400 {
		t.Errorf("multipart without a file field: %d %s", status, resp)
	}
	if s, b := get("a.txt"); s != 200 || b != "replaced" {
		t.Errorf("get after refused put: %d %q", s, b)
	}
	if got, want := names(""), []string{"a.txt", "absin", "dir", "docs", "fifo", "in", "out", "up"}; !slices.Equal(got, want) {
		t.Errorf("ls root after puts: %v, want %v (no temporary files)", got, want)
	}

	// Rename, then delete a file and a directory tree.
	if status, resp, _ := f.do(t, "POST", "/v2/browse/rename", q("vol", "a.txt", "moved/a2.txt"), nil, ""); status != 204 {
		t.Fatalf("rename: %d %s", status, resp)
	}
	if s, _ := get("a.txt"); s != 404 {
		t.Errorf("get old name after rename: %d, want 404", s)
	}
	if s, b := get("moved/a2.txt"); s != 200 || b != "replaced" {
		t.Errorf("get new name: %d %q", s, b)
	}
	if status, resp, _ := f.do(t, "DELETE", "/v2/browse/delete", q("vol", "moved/a2.txt"), nil, ""); status != 204 {
		t.Fatalf("delete file: %d %s", status, resp)
	}
	if status, resp, _ := f.do(t, "DELETE", "/v2/browse/delete", q("vol", "docs"), nil, ""); status != 204 {
		t.Fatalf("delete tree: %d %s", status, resp)
	}
	if got, want := names(""), []string{"absin", "dir", "fifo", "in", "moved", "out", "up"}; !slices.Equal(got, want) {
		t.Errorf("ls root at the end: %v, want %v", got, want)
	}
}
