package server

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"outpost/server/store"
	"outpost/throttle"
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
	created time.Time
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
	s.byTok[tok] = session{user: u.Username, role: u.Role, created: now, expires: now.Add(tokenTTL)}
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

// sessionID names a session without being its token: the first 8 bytes of
// the token's SHA-256, in hex. Listing it gives nobody the token.
func sessionID(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:8])
}

// sessionView is a session as the API lists it.
type sessionView struct {
	ID      string `json:"id"`
	Created int64  `json:"created"`
	Expires int64  `json:"expires"`
	Current bool   `json:"current,omitempty"` // the caller's own
}

// of lists user's live sessions, oldest first; current is the caller's
// token, marked.
func (s *sessions) of(user, current string) []sessionView {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := []sessionView{}
	for tok, ss := range s.byTok {
		if ss.user == user && !now.After(ss.expires) {
			out = append(out, sessionView{ID: sessionID(tok), Created: ss.created.Unix(), Expires: ss.expires.Unix(), Current: tok == current})
		}
	}
	slices.SortFunc(out, func(a, b sessionView) int { return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.ID, b.ID)) })
	return out
}

// revokeID ends user's session with ID id, reporting whether there was one.
func (s *sessions) revokeID(user, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, ss := range s.byTok {
		if ss.user == user && sessionID(tok) == id {
			delete(s.byTok, tok)
			return true
		}
	}
	return false
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

// login checks a username and password from remote (an address, with or
// without its port). Failures lock out the user at remote's network, and
// the network for every user, for a while that grows (loginLimits); a
// locked attempt is refused with *loginLocked before the password is looked
// at. Another network is not locked out, so the real administrator can
// always log in from elsewhere, and every lockout ends.
func (s *Server) login(username, password, remote string) (string, error) {
	now := s.now()
	l := s.logins.get()
	network := throttle.Network(remote)
	pair := username + "@" + network
	if d := max(l.pair.Locked(pair, now), l.network.Locked(network, now)); d > 0 {
		return "", &loginLocked{wait: d}
	}
	u, err := s.store.UserByName(username)
	if err != nil {
		// Spend the same time as a real comparison.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		l.fail(pair, network, now)
		return "", errBadLogin
	}
	if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password)) != nil {
		l.fail(pair, network, now)
		return "", errBadLogin
	}
	l.pair.Succeed(pair)
	return s.sessions.issue(u), nil
}

// loginLimits are the lockouts of failed logins: per user at a network
// (/24, /64) after 5 failures, and per network for every user after 20;
// each starts at a second and doubles, at most 15 minutes, and is forgotten
// after an hour without failures. The zero value makes them on first use.
type loginLimits struct {
	once          sync.Once
	pair, network *throttle.Throttle
}

var (
	pairLogins    = throttle.Policy{Free: 5, Base: time.Second, Max: 15 * time.Minute, Reset: time.Hour}
	networkLogins = throttle.Policy{Free: 20, Base: time.Second, Max: 15 * time.Minute, Reset: time.Hour}
)

func (l *loginLimits) get() *loginLimits {
	l.once.Do(func() { l.pair, l.network = throttle.New(pairLogins), throttle.New(networkLogins) })
	return l
}

func (l *loginLimits) fail(pair, network string, now time.Time) {
	l.pair.Fail(pair, now)
	l.network.Fail(network, now)
}

// loginLocked refuses a login attempt made during a lockout.
type loginLocked struct{ wait time.Duration }

func (e *loginLocked) Error() string {
	return fmt.Sprintf("too many failed logins for this user from your network; try again in %v", e.wait.Round(time.Second))
}

// RetryAfter is how long the lockout still lasts (web reads it).
func (e *loginLocked) RetryAfter() time.Duration { return e.wait }

var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("outpost-dummy"), bcrypt.DefaultCost)
