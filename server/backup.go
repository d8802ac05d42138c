package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"outpost/server/store"
)

// storeFile is the store's file name in the data dir.
const storeFile = "outpost.db"

// Backup writes a consistent copy of the store in dataDir to the file out,
// for `outpost-server backup`. A stopped server's store is read directly; a
// running server holds the store's lock, and is asked for the copy over its
// control socket in the data dir. out is written through a temporary file in
// its directory and renamed into place when complete, so a failed backup
// never leaves a truncated file under the name asked for.
func Backup(ctx context.Context, dataDir, out string) (int64, error) {
	if dataDir == "" {
		dataDir = Defaults.DataDir
	}
	if out == "" {
		return 0, errors.New("backup: --out FILE is required")
	}
	db := filepath.Join(dataDir, storeFile)
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("backup: no store at %s: is --data the server's data directory?", db)
	} else if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	if sameFile(db, out) {
		return 0, fmt.Errorf("backup: --out %s is the store itself; write the backup elsewhere", out)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename there is nothing left to remove
	n, err := store.BackupFile(db, ctxWriter{ctx, tmp})
	if err != nil && ctx.Err() != nil {
		err = ctx.Err() // bbolt words the writer's error with %s, losing it
	}
	if errors.Is(err, store.ErrLocked) {
		// A server runs on this data dir: it makes the copy.
		if _, serr := tmp.Seek(0, io.SeekStart); serr != nil {
			tmp.Close()
			return 0, serr
		}
		if terr := tmp.Truncate(0); terr != nil {
			tmp.Close()
			return 0, terr
		}
		n, err = backupThroughServer(ctx, dataDir, tmp)
		if err != nil && ctx.Err() == nil {
			tmp.Close()
			return 0, fmt.Errorf("backup %s: %w: the server is running and did not answer on its control socket (%v); use GET /api/backup (administrator) or stop it first", dataDir, store.ErrLocked, err)
		}
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		return 0, fmt.Errorf("backup %s to %s: %w", dataDir, out, err)
	}
	return n, nil
}

// sameFile reports whether paths a and b name one existing file.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// ctxWriter fails writes once ctx is done, so an interrupted backup stops.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// handleBackup serves GET /api/backup (administrators): a consistent copy of
// the store, taken while the server keeps running.
//
// The copy goes to a temporary file first and is sent from there. Sending
// straight from the store would hold its read transaction for as long as the
// client takes to download, and a write that grows the file waits for every
// read transaction to end: a slow download would stall the fleet's writes.
func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request, ss session) {
	s.sendBackup(w, r, ss.user)
}

// sendBackup answers with a backup file, audited as taken by actor.
func (s *Server) sendBackup(w http.ResponseWriter, r *http.Request, actor string) {
	f, err := os.CreateTemp(s.cfg.DataDir, ".backup-*.tmp")
	if err != nil {
		s.log.Error("backup: temporary file", "err", err)
		writeErr(w, http.StatusInternalServerError, "could not make room for the backup; see the server log")
		return
	}
	// Unlinked at once where the system allows it, so a crash leaves no
	// copy of the store behind; the open file stays readable.
	_ = os.Remove(f.Name())
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	n, err := s.store.Backup(f)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		s.log.Error("backup", "err", err)
		writeErr(w, http.StatusInternalServerError, "backup failed; see the server log")
		return
	}
	s.audit(r, actor, auditBackup, storeFile, strconv.FormatInt(n, 10)+" bytes")
	name := "outpost-" + s.now().UTC().Format("20060102T150405Z") + ".db"
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if sent, err := io.Copy(w, f); err != nil {
		s.log.Warn("backup download interrupted", "by", actor, "sent", sent, "of", n, "err", err)
	}
}
