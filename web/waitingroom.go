package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// waitingPerPage is the waiting room's page size.
const waitingPerPage = 50

// waitingSorts are the columns the waiting room sorts on.
var waitingSorts = []string{"firstSeen", "lastSeen", "hostname", "edgeId"}

type waitingRow struct {
	WaitingDevice
	FirstSeenText, FirstSeenTitle string
	LastSeenText, LastSeenTitle   string
}

type waitingPage struct {
	base
	Rows      []waitingRow
	Query     string
	Sort      map[string]sortLink
	Pager     pager
	Room, Max int
	Newest    uint64 // the highest device ID when the page was read
	Full      bool
	Arrivals  chart
	LastHour  int // arrivals in the last hour
	Peak      int // in the busiest minute of it
	Networks  []NetworkCount
	Groups    []Option // static edge groups a trusted device can join
	Tags      []Option
	Onboard   Onboarding
	Rules     OnboardingRules
	RuleErrs  []string
	Notice    string
}

func (h *handler) handleWaitingRoom(w http.ResponseWriter, r *http.Request, user string) {
	h.renderWaitingRoom(w, r, user, http.StatusOK, nil, nil, "")
}

// renderWaitingRoom shows the waiting room; rules and problems are a
// refused rules form to show again with what was wrong with it.
func (h *handler) renderWaitingRoom(w http.ResponseWriter, r *http.Request, user string, status int, rules *OnboardingRules, problems []string, notice string) {
	v := r.URL.Query()
	q := strings.TrimSpace(v.Get("q"))
	sortKey := v.Get("sort")
	desc := strings.HasPrefix(sortKey, "-")
	sortKey = strings.TrimPrefix(sortKey, "-")
	if !slices.Contains(waitingSorts, sortKey) {
		sortKey, desc = "firstSeen", false
	}
	page := pageOf(v)
	wp, err := h.b.WaitingRoom(WaitingQuery{Q: q, Sort: sortKey, Desc: desc, Limit: waitingPerPage, Offset: (page - 1) * waitingPerPage})
	if err != nil {
		h.internalError(w, r, user, "read the waiting room", err)
		return
	}
	onb, err := h.b.Onboarding()
	if err != nil {
		h.internalError(w, r, user, "read the onboarding key", err)
		return
	}
	groups, err := h.b.EdgeGroups()
	if err != nil {
		h.internalError(w, r, user, "read the edge groups", err)
		return
	}
	tags, err := h.b.Tags()
	if err != nil {
		h.internalError(w, r, user, "read the tags", err)
		return
	}
	now := h.now()
	keep := url.Values{}
	if q != "" {
		keep.Set("q", q)
	}
	if sortKey != "firstSeen" || desc {
		keep.Set("sort", map[bool]string{true: "-", false: ""}[desc]+sortKey)
	}
	p := waitingPage{base: h.base("Waiting room", user, "waiting"), Query: q,
		Pager: newPager("/waiting-room", keep, page, waitingPerPage, wp.Total),
		Room:  wp.Room, Max: wp.Max, Newest: wp.Newest, Full: wp.Max > 0 && wp.Room >= wp.Max, Networks: wp.Networks,
		Tags: tags, Onboard: onb, Rules: onb.Rules, RuleErrs: problems, Notice: notice,
		Sort: map[string]sortLink{}}
	if rules != nil {
		p.Rules = *rules
	}
	switch v.Get("saved") {
	case "rules":
		p.Notice = "The onboarding rules are saved; they apply to the next device that calls."
	case "key":
		p.Notice = "The onboarding key is new. Devices calling with the old one are refused, unless they are already trusted; give new devices the line below."
	}
	for _, g := range groups {
		if !g.Dynamic {
			p.Groups = append(p.Groups, g)
		}
	}
	sortParams := url.Values{}
	if q != "" {
		sortParams.Set("q", q)
	}
	for _, k := range waitingSorts {
		p.Sort[k] = newSortLink("/waiting-room", sortParams, k, sortKey, desc)
	}
	for _, d := range wp.Items {
		p.Rows = append(p.Rows, waitingRow{WaitingDevice: d,
			FirstSeenText: ago(d.FirstSeen, now), FirstSeenTitle: absTime(d.FirstSeen),
			LastSeenText: ago(d.LastSeen, now), LastSeenTitle: absTime(d.LastSeen)})
	}
	p.Arrivals, p.LastHour = arrivalsChart(wp.Arrivals)
	for _, n := range wp.Arrivals {
		p.Peak = max(p.Peak, n)
	}
	h.render(w, status, "waitingroom", p)
}

// arrivalsChart draws arrivals per minute, oldest first, as bars scaled to
// the busiest minute; it returns their sum too.
func arrivalsChart(perMinute []int) (chart, int) {
	c := chart{W: 600, H: 60}
	peak, sum := 0, 0
	for _, n := range perMinute {
		peak, sum = max(peak, n), sum+n
	}
	if peak == 0 {
		return c, 0
	}
	w := float64(c.W) / float64(len(perMinute))
	for i, n := range perMinute {
		if n == 0 {
			continue
		}
		hgt := float64(c.H) * float64(n) / float64(peak)
		ago := len(perMinute) - i - 1
		title := fmt.Sprintf("%d new in the minute %d min ago", n, ago)
		if ago == 0 {
			title = fmt.Sprintf("%d new in the last minute", n)
		}
		c.Bars = append(c.Bars, bar{X: num(float64(i) * w), Y: num(float64(c.H) - hgt), W: num(w * 0.85), H: num(hgt),
			Class: "arrival", Title: title})
	}
	return c, sum
}

type resultPage struct {
	base
	Action  string // trusted or rejected
	Results []WaitingResult
	OK      int
	Failed  int
}

// formIDs reads the uint64 values of a form field, refusing any that is not
// one.
func formIDs(vals []string, what string) ([]uint64, error) {
	var ids []uint64
	for _, s := range vals {
		if s == "" {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%s %q is not an ID", what, s)
		}
		ids = append(ids, n)
	}
	return ids, nil
}

// handleWaitingAction trusts or rejects the devices ticked on the waiting
// room's page, or, with all=1, every device matching the search sent with
// the form.
func (h *handler) handleWaitingAction(w http.ResponseWriter, r *http.Request, user string) {
	// Many ticked devices, or long lists of preauthorized keys.
	if !h.parseForm(w, r, user, 4<<20, "/waiting-room", "the waiting room") {
		return
	}
	f := r.PostForm
	action := f.Get("action")
	if action != "trust" && action != "reject" {
		h.renderErrorBack(w, user, http.StatusBadRequest, "Bad request", fmt.Sprintf("%q is not an action: trust or reject.", action), "/waiting-room", "the waiting room")
		return
	}
	var ids []uint64
	var err error
	if f.Get("all") == "1" {
		// All that matched when the page was read: later arrivals were
		// not shown, so they are not acted on.
		upTo, uerr := strconv.ParseUint(f.Get("upto"), 10, 64)
		shown, serr := strconv.Atoi(f.Get("shown"))
		if uerr != nil || serr != nil {
			h.renderErrorBack(w, user, http.StatusBadRequest, "Bad request",
				"The form does not say which devices it showed (upto and shown); load the waiting room again and choose from it.", "/waiting-room", "the waiting room")
			return
		}
		if ids, err = h.b.WaitingIDs(f.Get("q"), upTo); err != nil {
			h.internalError(w, r, user, "read the waiting room", err)
			return
		}
		if len(ids) > shown {
			h.renderErrorBack(w, user, http.StatusConflict, "The waiting room changed",
				fmt.Sprintf("%d devices match now, %d when the page was read: nothing was done. Look at the list again before you %s them all.", len(ids), shown, action),
				"/waiting-room", "the waiting room")
			return
		}
	} else if ids, err = formIDs(f["id"], "device"); err != nil {
		h.renderErrorBack(w, user, http.StatusBadRequest, "Bad request", err.Error(), "/waiting-room", "the waiting room")
		return
	}
	if len(ids) == 0 {
		h.renderErrorBack(w, user, http.StatusBadRequest, "No device selected",
			"Tick the devices to "+action+", or choose all that match the search.", "/waiting-room", "the waiting room")
		return
	}
	a := Actor{User: user, Remote: r.RemoteAddr}
	var res []WaitingResult
	if action == "trust" {
		groups, gerr := formIDs(f["group"], "edge group")
		tags, terr := formIDs(f["tag"], "tag")
		if err := errors.Join(gerr, terr); err != nil {
			h.renderErrorBack(w, user, http.StatusBadRequest, "Bad request", err.Error(), "/waiting-room", "the waiting room")
			return
		}
		res, err = h.b.Trust(a, ids, groups, tags)
	} else {
		res, err = h.b.Reject(a, ids)
	}
	if err != nil {
		h.internalError(w, r, user, action+" the devices", err)
		return
	}
	p := resultPage{base: h.base("Waiting room", user, "waiting"), Action: action + "ed", Results: res}
	if action == "trust" {
		p.Action = "trusted"
	}
	for _, x := range res {
		if x.Problem == "" || x.EnvID != 0 {
			p.OK++
		} else {
			p.Failed++
		}
	}
	status := http.StatusOK
	if p.OK == 0 {
		status = http.StatusBadRequest
	}
	h.log.Info("ui: waiting devices "+p.Action, "user", user, "devices", len(ids), "ok", p.OK, "failed", p.Failed)
	h.render(w, status, "waitingresult", p)
}

// splitLines is a textarea's non-empty lines, trimmed.
func splitLines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// handleRules saves the onboarding rules form; on refusal the form comes
// back as it was sent, with every problem.
func (h *handler) handleRules(w http.ResponseWriter, r *http.Request, user string) {
	// Many ticked devices, or long lists of preauthorized keys.
	if !h.parseForm(w, r, user, 4<<20, "/waiting-room", "the waiting room") {
		return
	}
	f := r.PostForm
	rules := OnboardingRules{
		TrustOnFirstConnect:  f.Get("trustOnFirstConnect") == "on",
		PreauthorizedEdgeIDs: splitLines(f.Get("preauthorizedEdgeIds")),
		PreauthorizedKeys:    splitLines(f.Get("preauthorizedKeys")),
	}
	var problems []string
	for _, n := range []struct {
		field, label string
		dst          *int
	}{
		{"waitingRoomMax", "Room cap", &rules.WaitingRoomMax},
		{"perSource", "New devices per source address", &rules.PerSource},
		{"perNetwork", "New devices per network", &rules.PerNetwork},
		{"total", "New devices in all", &rules.Total},
		{"expiry", "Expiry", &rules.ExpirySeconds},
	} {
		v := strings.TrimSpace(f.Get(n.field))
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 {
			problems = append(problems, fmt.Sprintf("%s: %q is not a whole number of at least 1", n.label, v))
			continue
		}
		*n.dst = i
	}
	if len(problems) == 0 {
		err := h.b.SetOnboardingRules(Actor{User: user, Remote: r.RemoteAddr}, rules)
		var re *FormError
		switch {
		case errors.As(err, &re):
			problems = re.Problems
		case err != nil:
			h.internalError(w, r, user, "save the onboarding rules", err)
			return
		}
	}
	if len(problems) > 0 {
		h.renderWaitingRoom(w, r, user, http.StatusBadRequest, &rules, problems, "")
		return
	}
	h.log.Info("ui: onboarding rules changed", "user", user)
	http.Redirect(w, r, "/waiting-room?saved=rules#rules", http.StatusSeeOther)
}

// handleRotate replaces the onboarding key.
func (h *handler) handleRotate(w http.ResponseWriter, r *http.Request, user string) {
	if err := h.b.RotateOnboardingKey(Actor{User: user, Remote: r.RemoteAddr}); err != nil {
		h.internalError(w, r, user, "rotate the onboarding key", err)
		return
	}
	h.log.Info("ui: onboarding key rotated", "user", user)
	http.Redirect(w, r, "/waiting-room?saved=key#onboarding", http.StatusSeeOther)
}
