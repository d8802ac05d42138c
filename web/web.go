package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"outpost/snapshot"
)

// ErrNotFound is what a Backend wraps when an environment, its snapshot, or
// an edge stack does not exist. It is the package's only sentinel error.
var ErrNotFound = errors.New("not found")

// Environment is one edge environment as the UI shows it.
type Environment struct {
	ID           uint64
	Name         string
	Mode         string // async or standard
	Status       string // online, offline, never
	LastCheckIn  time.Time
	EdgeID       string
	EdgeKey      string
	AgentVersion string
	Hostname     string
	Platform     string
	Tags         []string // names
	Group        string   // environment group name, "" when none
	SnapshotAt   time.Time
	// Effective frequencies: the environment's own, else the global defaults.
	Ping, Snapshot, Command time.Duration
	// The environment's own frequencies in seconds (0: the default), tag
	// IDs and group ID, as the edit form shows them.
	OwnPing, OwnSnapshot, OwnCommand uint32
	TagIDs                           []uint64
	GroupID                          uint64
}

// Snapshot is an environment's latest snapshot.
type Snapshot struct {
	Seq     uint64
	Updated time.Time
	Kind    string // how it last changed: full or delta
	Docker  *snapshot.Snapshot
}

// HistoryEntry is one snapshot push that changed the stored snapshot.
type HistoryEntry struct {
	Seq, Base uint64
	Kind      string // full or delta
	Bytes     int    // size of the pushed data
	At        time.Time
	// Viewable: the history holds what it takes to rebuild the snapshot
	// as it was after this push.
	Viewable bool
}

// Stack is one edge stack: a compose project deployed to every environment
// of its edge groups.
type Stack struct {
	ID         uint64
	Name       string
	Version    uint64
	EdgeGroups []string // names, in the stack's order
	Registries []string // names of the registries it pulls from
	Created    time.Time
	Updated    time.Time
	By         string // who last changed it
	// Statuses counts the stack's environments by status (pending,
	// acknowledged, deploying, running, error, removing).
	Statuses map[string]int
}

// StackTarget is an edge stack's state on one environment.
type StackTarget struct {
	EnvID   uint64
	EnvName string // empty when the environment no longer exists
	Version uint64 // the stack version the environment should run
	Status  string // pending, acknowledged, deploying, running, error, removing
	Error   string // what the device reported, when Status is error
	Message string // what the device says of a deploy in progress
	Remove  bool   // the environment left the stack's groups
	Updated time.Time
}

// Backend is what the UI needs from the server.
type Backend interface {
	// Login checks a username and password from remote (the client's
	// address) and returns a session token. An error with a
	// RetryAfter() time.Duration method means too many failures: the form
	// says how long to wait.
	Login(username, password, remote string) (token string, err error)
	// Authenticate returns the user a token belongs to, if it is valid.
	Authenticate(token string) (username string, ok bool)
	// Can reports whether user's role allows a; pages show only the
	// actions it allows, and forms check it again when posted.
	Can(user string, a Action) bool
	// EnvironmentPage returns one page of the environments matching q.
	EnvironmentPage(q EnvQuery) (EnvPage, error)
	// Tags and EdgeGroups are what environments can be given, by name.
	Tags() ([]Option, error)
	EdgeGroups() ([]Option, error)
	EnvGroups() ([]Option, error)
	// Environment returns an error wrapping ErrNotFound when id is unknown.
	Environment(id uint64) (Environment, error)
	// Snapshot returns an error wrapping ErrNotFound when the environment
	// has not sent one yet.
	Snapshot(id uint64) (*Snapshot, error)
	// History returns the snapshot pushes, oldest first.
	History(id uint64) ([]HistoryEntry, error)
	// SnapshotAt returns the snapshot as it was right after push seq; an
	// error wrapping ErrNotFound when the history no longer holds enough
	// to rebuild it.
	SnapshotAt(id, seq uint64) (*Snapshot, error)
	// Stacks returns every edge stack with its status counts.
	Stacks() ([]Stack, error)
	// Stack returns an edge stack and its state on each environment it
	// targets or is being removed from; an error wrapping ErrNotFound when
	// id is unknown.
	Stack(id uint64) (Stack, []StackTarget, error)
	WaitingRoom
	Commands
	EnvironmentAdmin
	DataUsage
	KubeAccess
}

// Logouter is an optional Backend method: when the backend has it, logging
// out also ends the session on the server, not only in the browser.
type Logouter interface {
	Logout(token string)
}

// cookieName is the session cookie. The server's API accepts it too.
const cookieName = "outpost_token"

var (
	//go:embed templates/*.html
	templateFS embed.FS
	//go:embed assets/style.css
	styleCSS string
	//go:embed assets/copy.js
	copyJS string
)

// csp allows nothing but the embedded stylesheet and script, by hash, and
// data: images (the favicon).
var csp = "default-src 'none'; style-src '" + hashSource(styleCSS) + "'; script-src '" + hashSource(copyJS) +
	"'; img-src data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// handler serves the UI.
type handler struct {
	b     Backend
	log   *slog.Logger
	now   func() time.Time
	pages map[string]*template.Template
	next  http.Handler // the routes behind the cross-origin check
}

// New returns the UI handler, to be mounted at the site root.
func New(b Backend, logger *slog.Logger) http.Handler {
	return newHandler(b, logger, time.Now)
}

func newHandler(b Backend, logger *slog.Logger, now func() time.Time) *handler {
	if logger == nil {
		logger = slog.Default()
	}
	h := &handler{b: b, log: logger, now: now, pages: parsePages()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.handleRoot)
	mux.HandleFunc("GET /login", h.handleLoginForm)
	mux.HandleFunc("POST /login", h.handleLogin)
	mux.HandleFunc("POST /logout", h.handleLogout)
	mux.HandleFunc("GET /environments", h.authed(h.handleEnvironments))
	mux.HandleFunc("GET /environments/new", h.authed(h.may(ActWrite, "add environments", h.handleNewEnvironment)))
	mux.HandleFunc("POST /environments", h.authed(h.may(ActWrite, "add environments", h.handleCreateEnvironment)))
	mux.HandleFunc("GET /environments/{id}", h.authed(h.handleEnvironment))
	mux.HandleFunc("GET /environments/{id}/contact", h.authed(h.handleContact))
	mux.HandleFunc("GET /environments/{id}/edit", h.authed(h.may(ActWrite, "change environments", h.handleEditForm)))
	mux.HandleFunc("POST /environments/{id}/edit", h.authed(h.may(ActWrite, "change environments", h.handleEdit)))
	mux.HandleFunc("GET /environments/{id}/delete", h.authed(h.may(ActWrite, "delete environments", h.handleDeleteForm)))
	mux.HandleFunc("POST /environments/{id}/delete", h.authed(h.may(ActWrite, "delete environments", h.handleDelete)))
	mux.HandleFunc("GET /environments/{id}/diff", h.authed(h.handleDiff))
	mux.HandleFunc("POST /environments/{id}/commands", h.authed(h.may(ActWrite, "queue commands", h.handleQueueCommand)))
	mux.HandleFunc("POST /environments/{id}/namespaces/{ns}/access", h.authed(h.may(ActKubeAccess, "assign namespaces", h.handleNamespaceAccess)))
	mux.HandleFunc("GET /waiting-room", h.authed(h.handleWaitingRoom))
	mux.HandleFunc("POST /waiting-room/action", h.authed(h.may(ActWrite, "trust or reject devices", h.handleWaitingAction)))
	mux.HandleFunc("POST /waiting-room/rules", h.authed(h.may(ActSettings, "change the onboarding rules", h.handleRules)))
	mux.HandleFunc("POST /waiting-room/rotate", h.authed(h.may(ActWrite, "rotate the onboarding key", h.handleRotate)))
	mux.HandleFunc("GET /stacks", h.authed(h.handleStacks))
	mux.HandleFunc("GET /stacks/{id}", h.authed(h.handleStack))
	mux.HandleFunc("/", h.authed(h.handleNotFound))
	// Mounted at the site root, the UI also receives whatever the API's
	// routes did not match; an API client gets a plain 404, not a login page.
	mux.HandleFunc("/api/", apiNotFound)
	mux.HandleFunc("/edge/", apiNotFound)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(h.handleCrossOrigin))
	h.next = cop.Handler(mux)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	h.next.ServeHTTP(w, r)
}

func (h *handler) handleCrossOrigin(w http.ResponseWriter, r *http.Request) {
	h.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path,
		"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "remote", r.RemoteAddr)
	h.renderError(w, "", http.StatusForbidden, "Request refused",
		"This form was sent from another site. Open Outpost directly and try again.")
}

// authed runs next only for a request carrying a valid session cookie; others
// are sent to the login page, which brings them back afterwards.
func (h *handler) authed(next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, ok := h.user(r)
		if !ok {
			http.Redirect(w, r, loginURL(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		next(w, r, user)
	}
}

func (h *handler) user(r *http.Request) (string, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return "", false
	}
	return h.b.Authenticate(c.Value)
}

func (h *handler) handleRoot(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.user(r); !ok {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/environments", http.StatusSeeOther)
}

func (h *handler) handleNotFound(w http.ResponseWriter, r *http.Request, user string) {
	h.renderError(w, user, http.StatusNotFound, "Page not found",
		"There is nothing at "+r.URL.Path+".")
}

func apiNotFound(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "no such API endpoint: "+r.Method+" "+r.URL.Path, http.StatusNotFound)
}

// base is what every page's layout needs.
type base struct {
	Title string
	User  string // empty on the login and error pages of anonymous users
	Nav   string // the header link to mark current
	// CanWrite and CanSettings say which action buttons the page shows.
	CanWrite, CanSettings bool
	// Refresh, when set, reloads the page after that many seconds: a page
	// waiting on a device shows what arrives without any script.
	Refresh int
	CSS     template.CSS
	JS      template.JS
}

func (h *handler) base(title, user, nav string) base {
	b := base{Title: title, User: user, Nav: nav, CSS: template.CSS(styleCSS), JS: template.JS(copyJS)}
	if user != "" {
		b.CanWrite, b.CanSettings = h.b.Can(user, ActWrite), h.b.Can(user, ActSettings)
	}
	return b
}

// may runs next only for a user whose role allows a; others get a 403
// page that says they may not do what.
func (h *handler) may(a Action, what string, next func(http.ResponseWriter, *http.Request, string)) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, user string) {
		if !h.b.Can(user, a) {
			h.forbidden(w, r, user, what)
			return
		}
		next(w, r, user)
	}
}

// forbidden answers a form the user's role does not allow.
func (h *handler) forbidden(w http.ResponseWriter, r *http.Request, user, what string) {
	h.log.Warn("ui: action refused by role", "user", user, "path", r.URL.Path)
	h.renderError(w, user, http.StatusForbidden, "Not allowed",
		"Your role does not allow you to "+what+". Ask an administrator.")
}

// parsePages parses each page template together with the layout.
func parsePages() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t := template.Must(template.Must(layout.Clone()).ParseFS(templateFS, n))
		pages[n[len("templates/"):len(n)-len(".html")]] = t
	}
	return pages
}

var funcs = template.FuncMap{"join": strings.Join}

// render executes page into a buffer first, so a template error becomes a
// clean 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, status int, page string, data any) {
	var buf bytes.Buffer
	if err := h.pages[page].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		h.log.Error("render page", "page", page, "err", err)
		http.Error(w, "internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorPage struct {
	base
	Status   int
	Message  string
	Back     string // the list to go back to
	BackText string
}

func (h *handler) renderError(w http.ResponseWriter, user string, status int, title, msg string) {
	h.renderErrorBack(w, user, status, title, msg, "/environments", "the environments")
}

// renderErrorBack is renderError with a link back to another list than the
// environments.
func (h *handler) renderErrorBack(w http.ResponseWriter, user string, status int, title, msg, back, backText string) {
	h.render(w, status, "error", errorPage{base: h.base(title, user, ""), Status: status, Message: msg, Back: back, BackText: backText})
}

// internalError logs err and shows a page that says what failed, not why.
func (h *handler) internalError(w http.ResponseWriter, r *http.Request, user, what string, err error) {
	h.log.Error("ui: "+what, "path", r.URL.Path, "err", err)
	h.renderError(w, user, http.StatusInternalServerError, "Something went wrong",
		"Outpost could not "+what+". The error is in the server log; try again in a moment.")
}
