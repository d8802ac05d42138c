package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"outpost/server/store"
)

// tokenTTL is how long an API token lives.
const tokenTTL = 8 * time.Hour

// sessions holds API tokens in memory; a restart logs everyone out.
type sessions struct {
	mu    sync.Mutex // guards byTok
	byTok map[string]session
	now   func() time.Time
}

type session struct {
	user    string
	role    string
	expires time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{byTok: map[string]session{}, now: now}
}

func (s *sessions) issue(u *store.User) string {
	b := make([]byte, 32)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for t, ss := range s.byTok {
		if now.After(ss.expires) {
			delete(s.byTok, t)
		}
	}
	s.byTok[tok] = session{user: u.Username, role: u.Role, expires: now.Add(tokenTTL)}
	return tok
}

func (s *sessions) lookup(tok string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byTok[tok]
	if !ok || s.now().After(ss.expires) {
		return session{}, false
	}
	return ss, true
}

func (s *sessions) revoke(tok string) {
	s.mu.Lock()
	delete(s.byTok, tok)
	s.mu.Unlock()
}

// bearer extracts the API token from the Authorization header. The API takes
// no cookie: a browser's ambient cookie must not authorize a JSON request
// another site made it send (the UI has its own cookie check and CSRF guard).
func bearer(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return t
	}
	return ""
}

// errBadLogin is the one answer to every failed login, so it leaks nothing.
var errBadLogin = errors.New("invalid username or password")

func (s *Server) login(username, password string) (string, error) {
	u, err := s.store.UserByName(username)
	if err != nil {
		// Spend the same time as a real comparison.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return "", errBadLogin
	}
	if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password)) != nil {
		return "", errBadLogin
	}
	return s.sessions.issue(u), nil
}

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("outpost-dummy"), bcrypt.DefaultCost)
