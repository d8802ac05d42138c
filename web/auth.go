package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

type loginPage struct {
	base
	Username string
	Next     string
	Error    string
}

// loginURL is the login page that returns to next afterwards.
func loginURL(next string) string {
	if next == "" || next == "/" || next == "/environments" {
		return "/login"
	}
	return "/login?next=" + url.QueryEscape(next)
}

// safeNext returns next if it is a path on this site, else /environments,
// so the login form cannot be used to send a user elsewhere.
func safeNext(next string) string {
	const home = "/environments"
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return home
	}
	return next
}

func (h *handler) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if _, ok := h.user(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	h.render(w, http.StatusOK, "login", loginPage{base: h.base("Log in", "", ""), Next: next})
}

func (h *handler) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		h.renderError(w, "", http.StatusBadRequest, "Bad request", "The login form could not be read. Reload the page and try again.")
		return
	}
	user := strings.TrimSpace(r.PostForm.Get("username"))
	pass := r.PostForm.Get("password")
	next := safeNext(r.PostForm.Get("next"))
	fail := func(msg string) {
		h.render(w, http.StatusUnauthorized, "login", loginPage{base: h.base("Log in", "", ""), Username: user, Next: next, Error: msg})
	}
	if user == "" || pass == "" {
		fail("Enter your username and password.")
		return
	}
	tok, err := h.b.Login(user, pass, r.RemoteAddr)
	var wait interface{ RetryAfter() time.Duration }
	if errors.As(err, &wait) {
		h.log.Warn("ui: login refused: too many failures", "user", user, "remote", r.RemoteAddr)
		secs := int(wait.RetryAfter().Round(time.Second) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		h.render(w, http.StatusTooManyRequests, "login", loginPage{base: h.base("Log in", "", ""), Username: user, Next: next,
			Error: fmt.Sprintf("Too many failed logins. Try again in %s.", wait.RetryAfter().Round(time.Second))})
		return
	}
	if err != nil || tok == "" {
		// One message for every failure, so the form tells nothing about
		// which usernames exist; the log keeps the detail.
		h.log.Warn("ui: failed login", "user", user, "remote", r.RemoteAddr, "err", err)
		fail("Invalid username or password.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: tok, Path: "/",
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	h.log.Info("ui: login", "user", user, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *handler) handleLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil && c.Value != "" {
		if lo, ok := h.b.(Logouter); ok {
			lo.Logout(c.Value)
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
