package web

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// uiCommands are the operations the snapshot pages offer, with what each
// names its target by and how the confirmation words it.
var uiCommands = map[string]struct{ arg, verb string }{
	"container.start":   {"id", "start"},
	"container.stop":    {"id", "stop"},
	"container.restart": {"id", "restart"},
	"container.kill":    {"id", "kill"},
	"container.remove":  {"id", "remove"},
	"image.remove":      {"id", "remove image"},
	"volume.remove":     {"name", "remove volume"},
	"snapshot.now":      {"", "take a snapshot"},
}

// commandRow is one line of the commands tab.
type commandRow struct {
	Command
	TargetName                  string // the container's name or the image's tag, when the snapshot knows it
	CreatedText, CreatedTitle   string
	FinishedText, FinishedTitle string
}

// commandsView is the commands tab: what waits, when the device should
// pull it, and what it ran.
type commandsView struct {
	EnvID    uint64
	Pending  []commandRow
	Results  []commandRow
	NextPull string // "in 40 s" or "overdue by 3 min"
	PullAt   string // absolute
	Overdue  bool
	Every    string // the command frequency
	Queued   uint64 // the command just queued, to mark
	CanWrite bool
}

// targetNames maps container and image IDs of a snapshot to their names.
func targetNames(s *Snapshot) map[string]string {
	out := map[string]string{}
	if s == nil || s.Docker == nil {
		return out
	}
	for _, c := range s.Docker.Containers {
		out[c.ID] = c.Name
	}
	for _, im := range s.Docker.Images {
		if len(im.Tags) > 0 {
			out[im.ID] = im.Tags[0]
		}
	}
	return out
}

func newCommandsView(env Environment, log CommandLog, now time.Time, names map[string]string) commandsView {
	v := commandsView{EnvID: env.ID, Every: every(env.Command)}
	row := func(c Command) commandRow {
		r := commandRow{Command: c, CreatedText: ago(c.Created, now), CreatedTitle: absTime(c.Created),
			FinishedText: ago(c.Finished, now), FinishedTitle: absTime(c.Finished)}
		if n := names[c.Target]; n != c.Target {
			r.TargetName = n
		}
		return r
	}
	for _, c := range log.Pending {
		v.Pending = append(v.Pending, row(c))
	}
	for _, c := range log.Results {
		v.Results = append(v.Results, row(c))
	}
	if !log.NextPull.IsZero() {
		v.PullAt = absTime(log.NextPull)
		// A device is late only past its jitter and a request's time.
		grace := max(env.Command/5, 5*time.Second)
		switch d := log.NextPull.Sub(now); {
		case d >= time.Second:
			v.NextPull = "in " + strings.ToLower(humanDuration(d))
		case d > -grace:
			v.NextPull = "about now"
		default:
			v.NextPull, v.Overdue = "overdue by "+strings.ToLower(humanDuration(-d)), true
		}
	}
	return v
}

// handleQueueCommand queues a container, image or volume operation, or a
// snapshot, from the snapshot pages, then shows the commands tab.
func (h *handler) handleQueueCommand(w http.ResponseWriter, r *http.Request, user string) {
	env, ok := h.envFromPath(w, r, user)
	if !ok {
		return
	}
	if !h.parseForm(w, r, user, 64<<10, fmt.Sprintf("/environments/%d", env.ID), env.Name) {
		return
	}
	kind, target := r.PostForm.Get("kind"), strings.TrimSpace(r.PostForm.Get("target"))
	spec, known := uiCommands[kind]
	back := fmt.Sprintf("/environments/%d", env.ID)
	if !known {
		kinds := make([]string, 0, len(uiCommands))
		for k := range uiCommands {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		h.renderErrorBack(w, user, http.StatusBadRequest, "Unknown command", fmt.Sprintf("%q is not a command here: %s.", kind, strings.Join(kinds, ", ")), back, env.Name)
		return
	}
	args := map[string]string{}
	if spec.arg != "" {
		if target == "" {
			h.renderErrorBack(w, user, http.StatusBadRequest, "Nothing to act on", "Name the container, image or volume to "+spec.verb+".", back, env.Name)
			return
		}
		args[spec.arg] = target
	}
	if kind == "container.stop" || kind == "container.restart" {
		args["timeout"] = "10"
	}
	id, err := h.b.QueueCommand(Actor{User: user, Remote: r.RemoteAddr}, env.ID, kind, args)
	var ce *FormError
	switch {
	case errors.As(err, &ce):
		h.renderErrorBack(w, user, http.StatusBadRequest, "Command refused", strings.Join(ce.Problems, "; "), back, env.Name)
		return
	case err != nil:
		h.internalError(w, r, user, "queue the command", err)
		return
	}
	h.log.Info("ui: command queued", "user", user, "env", env.ID, "kind", kind, "target", target, "id", id)
	http.Redirect(w, r, fmt.Sprintf("/environments/%d?tab=commands&queued=%d", env.ID, id), http.StatusSeeOther)
}
