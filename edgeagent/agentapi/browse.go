package agentapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Entry is one file in the answer of /v2/browse/ls, and the answer of
// /v2/browse/put.
type Entry struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	Mode    string    `json:"mode"` // e.g. "-rw-r--r--", "drwxr-xr-x", "Lrwxrwxrwx"
	ModTime time.Time `json:"modTime"`
	Dir     bool      `json:"dir"`
}

func entry(fi fs.FileInfo) Entry {
	return Entry{Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode().String(), ModTime: fi.ModTime(), Dir: fi.IsDir()}
}

// volumeName is a name the engine's local driver accepts, minus its
// two-character minimum; it is one path element and never "." or "..".
var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// openVolume opens the root of the data of the volume the query names. Every
// file operation goes through that os.Root, which refuses any path that
// leads outside it, by ".." or by a symlink.
func (a *API) openVolume(r *http.Request) (*os.Root, error) {
	name := r.URL.Query().Get("volume")
	if name == "" {
		return nil, errorf(http.StatusBadRequest, "volume is required (?volume=NAME)")
	}
	if !volumeName.MatchString(name) {
		return nil, errorf(http.StatusBadRequest, "volume %q is not a volume name", name)
	}
	vols, err := os.OpenRoot(a.cfg.VolumesRoot)
	if err != nil {
		return nil, &statusError{status: http.StatusInternalServerError,
			msg: fmt.Sprintf("volumes root %s cannot be opened (check the agent's VolumesRoot and its mount)", a.cfg.VolumesRoot), err: err}
	}
	defer func() { _ = vols.Close() }()
	root, err := vols.OpenRoot(filepath.Join(name, "_data"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errorf(http.StatusNotFound, "volume %q not found (no %s)", name, filepath.Join(a.cfg.VolumesRoot, name, "_data"))
	}
	if err != nil {
		return nil, fsError("volume "+name, name, err)
	}
	return root, nil
}

// volumePath opens the volume a browse request names and checks its "path"
// parameter (the volume's root allowed when root is set). The caller closes
// the root.
func (a *API) volumePath(r *http.Request, root bool) (*os.Root, string, error) {
	name, err := localPath(r, "path", root)
	if err != nil {
		return nil, "", err
	}
	vol, err := a.openVolume(r)
	if err != nil {
		return nil, "", err
	}
	return vol, name, nil
}

// localPath turns the query parameter param, a slash-separated path relative
// to the volume's root, into a clean local name for an os.Root. Empty is the
// root itself, which only a caller passing allowRoot accepts.
func localPath(r *http.Request, param string, allowRoot bool) (string, error) {
	p := r.URL.Query().Get(param)
	switch {
	case strings.ContainsRune(p, 0):
		return "", errorf(http.StatusBadRequest, "%s %q contains a NUL byte", param, p)
	case strings.HasPrefix(p, "/"):
		return "", errorf(http.StatusBadRequest, "%s %q is absolute: paths are relative to the volume's root (empty is the root)", param, p)
	}
	name := "."
	if p != "" {
		name = filepath.FromSlash(p)
		if !filepath.IsLocal(name) {
			return "", errorf(http.StatusBadRequest, "%s %q leads outside the volume", param, p)
		}
		name = filepath.Clean(name)
	}
	if name == "." && !allowRoot {
		return "", errorf(http.StatusBadRequest, "%s is required and must not be the volume's root", param)
	}
	return name, nil
}

// fsError maps an error of an os.Root operation on path to a status.
func fsError(op, path string, err error) error {
	status, what := http.StatusInternalServerError, "failed"
	switch {
	case escapes(err):
		status, what = http.StatusForbidden, "leads outside the volume (through a symlink or ..)"
	case errors.Is(err, fs.ErrNotExist):
		status, what = http.StatusNotFound, "no such file or directory"
	case errors.Is(err, fs.ErrExist):
		status, what = http.StatusConflict, "already exists"
	case errors.Is(err, fs.ErrPermission):
		status, what = http.StatusForbidden, "permission denied"
	case errors.Is(err, syscall.ENOTDIR):
		status, what = http.StatusBadRequest, "has a parent that is not a directory"
	case errors.Is(err, syscall.ELOOP):
		status, what = http.StatusBadRequest, "has too many levels of symlinks"
	case errors.Is(err, syscall.EINVAL):
		status, what = http.StatusBadRequest, "is not valid for this operation"
	}
	se := &statusError{status: status, msg: fmt.Sprintf("%s: %q %s", op, filepath.ToSlash(path), what)}
	if status >= 500 {
		se.err = err // logged; the others say all there is
	}
	return se
}

// escapes reports whether err is os.Root refusing a path that leads outside
// it, at any depth of wrapping. The os package keeps that error unexported
// (its text is "path escapes from parent"); TestBrowseConfinement notices if
// that changes.
func escapes(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

// browseList answers the entries of a directory, sorted by name.
func (a *API) browseList(w http.ResponseWriter, r *http.Request) error {
	root, name, err := a.volumePath(r, true)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	fi, err := root.Stat(name)
	if err != nil {
		return fsError("ls", name, err)
	}
	if !fi.IsDir() {
		return errorf(http.StatusBadRequest, "ls: %q is not a directory (use /v2/browse/get)", filepath.ToSlash(name))
	}
	f, err := root.Open(name)
	if err != nil {
		return fsError("ls", name, err)
	}
	defer func() { _ = f.Close() }()
	des, err := f.ReadDir(-1)
	if err != nil {
		return fsError("ls", name, err)
	}
	entries := make([]Entry, 0, len(des))
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		entries = append(entries, entry(fi))
	}
	slices.SortFunc(entries, func(x, y Entry) int { return strings.Compare(x.Name, y.Name) })
	writeJSON(w, http.StatusOK, entries)
	return nil
}

// browseGet streams a regular file, with ranges and conditional requests.
func (a *API) browseGet(w http.ResponseWriter, r *http.Request) error {
	root, name, err := a.volumePath(r, false)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	// O_NONBLOCK: opening a FIFO a container left in the volume must not
	// hang the request; on a regular file it changes nothing.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fsError("get", name, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return fsError("get", name, err)
	}
	if !fi.Mode().IsRegular() {
		return errorf(http.StatusBadRequest, "get: %q is not a regular file (%s)", filepath.ToSlash(name), fi.Mode().Type())
	}
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fi.Name()}))
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	return nil
}

// browsePut writes the upload to path, atomically: readers see the old file
// or the whole new one. The upload is the multipart field "file" or, with any
// other content type, the raw body. When path is a directory (or empty, the
// root), the multipart file name is used inside it.
func (a *API) browsePut(w http.ResponseWriter, r *http.Request) error {
	root, name, err := a.volumePath(r, true)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	r.Body = http.MaxBytesReader(w, r.Body, a.cfg.MaxUpload)
	src, filename, err := a.upload(r)
	if err != nil {
		return err
	}
	dest := name
	if fi, err := root.Stat(name); err == nil && fi.IsDir() {
		base := filepath.Base(filepath.FromSlash(filename))
		if filename == "" || !filepath.IsLocal(base) {
			return errorf(http.StatusBadRequest, "put: %q is a directory: give the file's path, or upload a multipart file with a file name", filepath.ToSlash(name))
		}
		dest = filepath.Join(name, base)
	}
	if fi, err := root.Stat(dest); err == nil && fi.IsDir() {
		return errorf(http.StatusConflict, "put: %q is a directory", filepath.ToSlash(dest))
	}
	if err := a.writeAtomic(root, dest, src); err != nil {
		return err
	}
	fi, err := root.Lstat(dest)
	if err != nil {
		return fsError("put", dest, err)
	}
	writeJSON(w, http.StatusCreated, entry(fi))
	return nil
}

// upload returns the uploaded bytes of r and the file name the client gave.
func (a *API) upload(r *http.Request) (io.Reader, string, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		return r.Body, "", nil
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, "", errorf(http.StatusBadRequest, "put: multipart body: %v", err)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, "", errorf(http.StatusBadRequest, `put: the multipart form has no "file" field`)
		}
		if err != nil {
			return nil, "", a.uploadError(err)
		}
		if part.FormName() == "file" {
			return part, part.FileName(), nil
		}
	}
}

// uploadError maps an error reading the upload to a status.
func (a *API) uploadError(err error) error {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return errorf(http.StatusRequestEntityTooLarge, "put: upload larger than %d bytes, the agent's limit", mb.Limit)
	}
	return errorf(http.StatusBadRequest, "put: reading the upload: %v", err)
}

// writeAtomic writes src to a temporary file beside dest, syncs it, and
// renames it over dest, creating dest's parents. A file it replaces keeps
// its permission bits; the owner is the agent's user.
func (a *API) writeAtomic(root *os.Root, dest string, src io.Reader) error {
	dir := filepath.Dir(dest)
	if err := root.MkdirAll(dir, 0o755); err != nil {
		return fsError("put", dir, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:]) // never fails
	tmp := filepath.Join(dir, "."+filepath.Base(dest)+".upload-"+hex.EncodeToString(rnd[:]))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fsError("put", tmp, err)
	}
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, src); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fsError("put", tmp, err) // a write failed, e.g. disk full
		}
		return a.uploadError(err)
	}
	if err := f.Sync(); err != nil {
		return fsError("put", tmp, err)
	}
	if old, err := root.Stat(dest); err == nil {
		_ = f.Chmod(old.Mode().Perm())
	}
	if err := root.Rename(tmp, dest); err != nil {
		return fsError("put", dest, err)
	}
	done = true
	if err := f.Close(); err != nil {
		return fsError("put", dest, err)
	}
	// The rename is durable once the directory is.
	if d, err := root.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// browseDelete removes a file, or a directory with everything in it. A
// symlink is removed itself, never what it points to.
func (a *API) browseDelete(w http.ResponseWriter, r *http.Request) error {
	root, name, err := a.volumePath(r, false)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	if _, err := root.Lstat(name); err != nil {
		return fsError("delete", name, err)
	}
	if err := root.RemoveAll(name); err != nil {
		return fsError("delete", name, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// browseRename moves path to newPath, creating newPath's parents. It refuses
// to replace an existing newPath; a file created there between the check and
// the rename is replaced all the same.
func (a *API) browseRename(w http.ResponseWriter, r *http.Request) error {
	root, from, err := a.volumePath(r, false)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	to, err := localPath(r, "newPath", false)
	if err != nil {
		return err
	}
	if _, err := root.Lstat(from); err != nil {
		return fsError("rename", from, err)
	}
	if _, err := root.Lstat(to); err == nil {
		return errorf(http.StatusConflict, "rename: newPath %q exists: delete it first", filepath.ToSlash(to))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fsError("rename", to, err)
	}
	if err := root.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return fsError("rename", filepath.Dir(to), err)
	}
	if err := root.Rename(from, to); err != nil {
		return fsError("rename", to, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
