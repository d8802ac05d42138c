package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// envForm is the add and the edit form, with what was sent and what was
// wrong with it.
type envForm struct {
	base
	EnvID                   uint64 // 0 when adding
	Name, Mode, Platform    string
	Ping, Snapshot, Command string // as typed; "" is the default
	Tags                    []Option
	Groups                  []Option
	TagSet                  map[uint64]bool
	Group                   uint64
	Problems                []string
}

type createdPage struct {
	base
	Created CreatedEnvironment
}

type deletePage struct {
	base
	Env    Environment
	Impact DeleteImpact
}

// formOptions fills the form's tag and group choices.
func (h *handler) formOptions(w http.ResponseWriter, r *http.Request, user string, f *envForm) bool {
	var err error
	if f.Tags, err = h.b.Tags(); err == nil {
		f.Groups, err = h.b.EnvGroups()
	}
	if err != nil {
		h.internalError(w, r, user, "read the tags and groups", err)
		return false
	}
	return true
}

func (h *handler) handleNewEnvironment(w http.ResponseWriter, r *http.Request, user string) {
	f := envForm{base: h.base("Add an environment", user, "environments"), Mode: "async", TagSet: map[uint64]bool{}}
	if h.formOptions(w, r, user, &f) {
		h.render(w, http.StatusOK, "envform", f)
	}
}

// readEnvForm reads the fields both forms share; problems are the fields
// that are not what they must be.
func readEnvForm(r *http.Request, f *envForm) (ping, snap, cmd uint32, tags []uint64, problems []string) {
	v := r.PostForm
	f.Name, f.Mode, f.Platform = strings.TrimSpace(v.Get("name")), v.Get("mode"), v.Get("platform")
	f.Ping, f.Snapshot, f.Command = strings.TrimSpace(v.Get("ping")), strings.TrimSpace(v.Get("snapshot")), strings.TrimSpace(v.Get("command"))
	secs := func(label, s string) uint32 {
		if s == "" {
			return 0
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %q is not a number of seconds (leave it empty for the default)", label, s))
		}
		return uint32(n)
	}
	ping, snap, cmd = secs("Ping", f.Ping), secs("Snapshot", f.Snapshot), secs("Command", f.Command)
	f.TagSet = map[uint64]bool{}
	var err error
	if tags, err = formIDs(v["tag"], "tag"); err != nil {
		problems = append(problems, err.Error())
	}
	for _, t := range tags {
		f.TagSet[t] = true
	}
	if g := v.Get("group"); g != "" {
		if f.Group, err = strconv.ParseUint(g, 10, 64); err != nil {
			problems = append(problems, fmt.Sprintf("group %q is not an ID", g))
		}
	}
	return ping, snap, cmd, tags, problems
}

// parseForm reads a posted form of at most limit bytes, answering the error
// page itself (with a link to back) when it cannot.
func (h *handler) parseForm(w http.ResponseWriter, r *http.Request, user string, limit int64, back, backText string) bool {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := r.ParseForm(); err != nil {
		h.renderErrorBack(w, user, http.StatusBadRequest, "Bad request", "The form could not be read: "+err.Error(), back, backText)
		return false
	}
	return true
}

func (h *handler) handleCreateEnvironment(w http.ResponseWriter, r *http.Request, user string) {
	if !h.parseForm(w, r, user, 64<<10, "/environments", "the environments") {
		return
	}
	f := envForm{base: h.base("Add an environment", user, "environments")}
	ping, snap, cmd, tags, problems := readEnvForm(r, &f)
	if !h.formOptions(w, r, user, &f) {
		return
	}
	var created CreatedEnvironment
	if len(problems) == 0 {
		var err error
		created, err = h.b.CreateEnvironment(Actor{User: user, Remote: r.RemoteAddr},
			NewEnvironment{Name: f.Name, Mode: f.Mode, Platform: f.Platform, Ping: ping, Snapshot: snap, Command: cmd, Tags: tags, Group: f.Group})
		var fe *FormError
		switch {
		case errors.As(err, &fe):
			problems = fe.Problems
		case err != nil:
			h.internalError(w, r, user, "add the environment", err)
			return
		}
	}
	if len(problems) > 0 {
		f.Problems = problems
		h.render(w, http.StatusBadRequest, "envform", f)
		return
	}
	h.log.Info("ui: environment added", "user", user, "id", created.ID, "name", created.Name)
	// The edge key with its secret is shown here once: the page is the
	// answer to the post, not a page to come back to.
	h.render(w, http.StatusCreated, "envcreated", createdPage{base: h.base(created.Name, user, "environments"), Created: created})
}

// handleContact answers the created page's script: whether the device has
// called in yet.
func (h *handler) handleContact(w http.ResponseWriter, r *http.Request, user string) {
	env, ok := h.envFromPath(w, r, user)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": env.Status, "statusText": statusText(env.Status),
		"lastCheckIn": ago(env.LastCheckIn, h.now()), "edgeId": env.EdgeID})
}

func (h *handler) handleEditForm(w http.ResponseWriter, r *http.Request, user string) {
	env, ok := h.envFromPath(w, r, user)
	if !ok {
		return
	}
	f := envForm{base: h.base("Edit "+env.Name, user, "environments"), EnvID: env.ID, Name: env.Name, Mode: env.Mode,
		Ping: secsText(env.OwnPing), Snapshot: secsText(env.OwnSnapshot), Command: secsText(env.OwnCommand),
		TagSet: map[uint64]bool{}, Group: env.GroupID}
	for _, t := range env.TagIDs {
		f.TagSet[t] = true
	}
	if h.formOptions(w, r, user, &f) {
		h.render(w, http.StatusOK, "envform", f)
	}
}

func secsText(n uint32) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(n), 10)
}

func (h *handler) handleEdit(w http.ResponseWriter, r *http.Request, user string) {
	env, ok := h.envFromPath(w, r, user)
	if !ok {
		return
	}
	back := fmt.Sprintf("/environments/%d", env.ID)
	if !h.parseForm(w, r, user, 64<<10, back, env.Name) {
		return
	}
	f := envForm{base: h.base("Edit "+env.Name, user, "environments"), EnvID: env.ID}
	ping, snap, cmd, tags, problems := readEnvForm(r, &f)
	f.Mode = env.Mode // the edit form does not change the mode
	if !h.formOptions(w, r, user, &f) {
		return
	}
	if len(problems) == 0 {
		err := h.b.UpdateEnvironment(Actor{User: user, Remote: r.RemoteAddr}, env.ID,
			EnvUpdate{Name: f.Name, Ping: ping, Snapshot: snap, Command: cmd, Tags: tags, Group: f.Group})
		var fe *FormError
		switch {
		case errors.As(err, &fe):
			problems = fe.Problems
		case errors.Is(err, ErrNotFound):
			h.renderError(w, user, http.StatusNotFound, "Environment not found", fmt.Sprintf("Environment %d was deleted meanwhile.", env.ID))
			return
		case err != nil:
			h.internalError(w, r, user, "change the environment", err)
			return
		}
	}
	if len(problems) > 0 {
		f.Problems = problems
		h.render(w, http.StatusBadRequest, "envform", f)
		return
	}
	h.log.Info("ui: environment changed", "user", user, "id", env.ID)
	http.Redirect(w, r, back+"?saved=1", http.StatusSeeOther)
}

func (h *handler) handleDeleteForm(w http.ResponseWriter, r *http.Request, user string) {
	env, ok := h.envFromPath(w, r, user)
	if !ok {
		return
	}
	imp, err := h.b.DeleteImpact(env.ID)
	if err != nil {
		h.internalError(w, r, user, "read what goes with the environment", err)
		return
	}
	slices.Sort(imp.Stacks)
	h.render(w, http.StatusOK, "envdelete", deletePage{base: h.base("Delete "+env.Name, user, "environments"), Env: env, Impact: imp})
}

func (h *handler) handleDelete(w http.ResponseWriter, r *http.Request, user string) {
	env, ok := h.envFromPath(w, r, user)
	if !ok {
		return
	}
	if !h.parseForm(w, r, user, 64<<10, "/environments", "the environments") {
		return
	}
	// The confirmation names the environment; a stale or forged post for
	// another one deletes nothing.
	if r.PostForm.Get("confirm") != env.Name {
		h.renderErrorBack(w, user, http.StatusBadRequest, "Not deleted",
			fmt.Sprintf("Type the environment's name, %q, to confirm.", env.Name), fmt.Sprintf("/environments/%d/delete", env.ID), "the confirmation")
		return
	}
	if err := h.b.DeleteEnvironment(Actor{User: user, Remote: r.RemoteAddr}, env.ID); err != nil && !errors.Is(err, ErrNotFound) {
		h.internalError(w, r, user, "delete the environment", err)
		return
	}
	h.log.Info("ui: environment deleted", "user", user, "id", env.ID, "name", env.Name)
	flash(w, "/environments", env.Name+" is deleted; its device is refused from now on.")
	http.Redirect(w, r, "/environments", http.StatusSeeOther)
}
