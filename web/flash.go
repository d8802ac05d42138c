package web

import (
	"net/http"
	"net/url"
)

// flashCookie carries a notice from an action to the page it redirects to,
// shown once. A notice in the URL would be text anyone can put into a link
// and have the console say; a cookie for this origin only the server sets.
const flashCookie = "outpost_flash"

// flash sets notice for the next page under path the browser loads.
func flash(w http.ResponseWriter, path, notice string) {
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: url.QueryEscape(notice), Path: path, MaxAge: 60,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

// takeFlash returns the notice flash set for this page, and clears it.
func takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil || c.Value == "" {
		return ""
	}
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: "", Path: r.URL.Path, MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	notice, err := url.QueryUnescape(c.Value)
	if err != nil {
		return ""
	}
	return notice
}
