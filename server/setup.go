package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"outpost/server/store"
)

// setupTTL is how long the first-start setup link is valid.
const setupTTL = 5 * time.Minute

// adminUsername is the first administrator's name.
const adminUsername = "admin"

// setupLink is the one-time link that lets the first administrator choose a
// password when the server started with none (no OUTPOST_ADMIN_PASSWORD, no
// --admin-password-file). Only the token's hash is kept.
type setupLink struct {
	mu      sync.Mutex // guards the fields below; held for no I/O
	hash    [sha256.Size]byte
	expires time.Time
	pending bool // a link was printed and not used yet
	used    bool
}

// Setup link refusals.
var (
	errSetupNone    = errors.New("there is no setup link to use: the administrator exists already, or the link is wrong")
	errSetupExpired = fmt.Errorf("this setup link has expired (links last %d minutes): restart outpost-server to get a new link, or start it with OUTPOST_ADMIN_PASSWORD set", int(setupTTL.Minutes()))
	errSetupUsed    = errors.New("this setup link was used already: log in as admin, or restart outpost-server for a new link if no administrator was made")
)

// ensureAdmin creates the administrator on first start with password. With
// no password it creates nobody and reports that a setup link is needed.
func (s *Server) ensureAdmin(password string) (needSetup bool, err error) {
	n, err := s.store.UserCount()
	if err != nil || n > 0 {
		return false, err
	}
	if password == "" {
		return true, nil
	}
	hash, err := hashPassword(password)
	if err != nil {
		return false, err
	}
	return false, s.store.CreateUser(&store.User{Username: adminUsername, PasswordHash: hash, Role: RoleAdmin})
}

// startSetup makes a new one-time setup link, valid for setupTTL from now,
// and returns it.
func (s *Server) startSetup() string {
	b := make([]byte, 32)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	l := &s.setup
	l.mu.Lock()
	l.hash, l.expires, l.pending, l.used = sha256.Sum256([]byte(tok)), s.now().Add(setupTTL), true, false
	l.mu.Unlock()
	return s.url + "/setup?token=" + url.QueryEscape(tok)
}

// announceSetup makes a setup link and prints it to w.
func (s *Server) announceSetup(w io.Writer) {
	link := s.startSetup()
	fmt.Fprintf(w, "\nNo administrator yet. Within %d minutes, open this one-time link to choose the password of %q:\n\n  %s\n\n"+
		"(After that, restart the server for a new link; or set OUTPOST_ADMIN_PASSWORD or --admin-password-file.)\n\n",
		int(setupTTL.Minutes()), adminUsername, link)
}

// check tells whether tok is the pending, unexpired link; with consume, it
// also marks it used, so only one request can go on with it.
func (l *setupLink) check(tok string, now time.Time, consume bool) error {
	sum := sha256.Sum256([]byte(tok))
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case tok == "" || (!l.pending && !l.used) || subtle.ConstantTimeCompare(sum[:], l.hash[:]) != 1:
		return errSetupNone
	case l.used:
		return errSetupUsed
	case !now.Before(l.expires):
		return errSetupExpired
	}
	if consume {
		l.used, l.pending = true, false
	}
	return nil
}

// release gives a consumed link back after the store refused the
// administrator, so the person can retry within its time.
func (l *setupLink) release() {
	l.mu.Lock()
	l.used, l.pending = false, true
	l.mu.Unlock()
}

func setupStatus(err error) int {
	if errors.Is(err, errSetupNone) {
		return http.StatusNotFound
	}
	return http.StatusGone
}

type setupPage struct {
	Token    string
	Username string
	Problems []string
	Refused  string
	Done     bool
}

var setupTmpl = template.Must(template.New("setup").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Outpost setup</title></head>
<body>
<h1>Outpost: first start</h1>
{{if .Done}}
<p>The administrator <b>{{.Username}}</b> is ready. <a href="/login">Log in</a>.</p>
{{else if .Refused}}
<p role="alert">{{.Refused}}</p>
{{else}}
<p>Choose the password of the administrator <b>{{.Username}}</b>. This link works once.</p>
{{if .Problems}}<ul role="alert">{{range .Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}
<form method="post" action="/setup">
<input type="hidden" name="token" value="{{.Token}}">
<p><label>Password <input type="password" name="password" autocomplete="new-password" required minlength="8" maxlength="72"></label></p>
<p><label>Repeat it <input type="password" name="confirm" autocomplete="new-password" required></label></p>
<p><button type="submit">Create administrator</button></p>
</form>
{{end}}
</body></html>
`))

func (s *Server) renderSetup(w http.ResponseWriter, status int, p setupPage) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Referrer-Policy", "no-referrer") // the token is in the URL
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	p.Username = adminUsername
	if err := setupTmpl.Execute(w, p); err != nil {
		s.log.Error("render setup page", "err", err)
	}
}

// handleSetupForm serves GET /setup?token=: the form, or why the link is
// refused.
func (s *Server) handleSetupForm(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if err := s.setup.check(tok, s.now(), false); err != nil {
		s.renderSetup(w, setupStatus(err), setupPage{Refused: err.Error()})
		return
	}
	s.renderSetup(w, http.StatusOK, setupPage{Token: tok})
}

// handleSetup serves POST /setup: token, password, confirm. It creates the
// administrator and spends the link.
func (s *Server) handleSetup(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.renderSetup(w, http.StatusBadRequest, setupPage{Refused: "the form could not be read; open the link again"})
		return
	}
	tok, pw := r.PostForm.Get("token"), r.PostForm.Get("password")
	if err := s.setup.check(tok, s.now(), false); err != nil {
		s.auditRefusal(r.RemoteAddr, "anonymous", auditSetup, userTarget(adminUsername), "refused: "+err.Error())
		s.renderSetup(w, setupStatus(err), setupPage{Refused: err.Error()})
		return
	}
	problems := checkPassword(nil, "password", pw)
	if pw != r.PostForm.Get("confirm") {
		problems = append(problems, "the two passwords differ")
	}
	if len(problems) > 0 {
		s.renderSetup(w, http.StatusBadRequest, setupPage{Token: tok, Problems: problems})
		return
	}
	hash, err := hashPassword(pw)
	if err != nil {
		s.log.Error("setup: hash", "err", err)
		s.renderSetup(w, http.StatusInternalServerError, setupPage{Token: tok, Problems: []string{"internal error; see the server log"}})
		return
	}
	// Checked again, and spent, after the slow hash: the link may have
	// expired or been used meanwhile.
	if err := s.setup.check(tok, s.now(), true); err != nil {
		s.renderSetup(w, setupStatus(err), setupPage{Refused: err.Error()})
		return
	}
	err = s.store.CreateUser(&store.User{Username: adminUsername, PasswordHash: hash, Role: RoleAdmin})
	if errors.Is(err, store.ErrExists) {
		s.renderSetup(w, http.StatusConflict, setupPage{Refused: "the administrator exists already: log in as " + adminUsername})
		return
	} else if err != nil {
		s.setup.release()
		s.log.Error("setup: create administrator", "err", err)
		s.renderSetup(w, http.StatusInternalServerError, setupPage{Token: tok, Problems: []string{"could not store the administrator; see the server log, then try again"}})
		return
	}
	s.audit(r, "setup link", auditSetup, userTarget(adminUsername), "administrator created")
	s.log.Info("administrator created through the setup link", "remote", r.RemoteAddr)
	s.renderSetup(w, http.StatusOK, setupPage{Done: true})
}
