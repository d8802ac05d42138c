package web

import (
	"fmt"
	"slices"
	"time"
)

// chart is an inline SVG drawn in a viewBox of W×H user units and stretched
// to the page's width by the stylesheet. Bars carry a class (their colour
// comes from the stylesheet) and a title (the browser's tooltip).
type chart struct {
	W, H int
	Bars []bar
}

type bar struct {
	X, Y, W, H string // user units, formatted
	Class      string
	Title      string
}

func num(f float64) string { return fmt.Sprintf("%.2f", f) }

// stateBar is one horizontal bar split by container state.
func stateBar(states []stateCount) chart { return splitBar(states, "st-") }

// splitBar is one horizontal bar split into parts as wide as their share of
// the total; a part's class is prefix and its state. Parts of zero draw
// nothing. The widths stay exactly proportional: one error among ten
// thousand is a sliver, and the legend's counts are what name it.
func splitBar(parts []stateCount, prefix string) chart {
	c := chart{W: 1000, H: 10}
	total := 0
	for _, s := range parts {
		total += s.N
	}
	if total == 0 {
		return c
	}
	x := 0.0
	for _, s := range parts {
		if s.N == 0 {
			continue
		}
		w := float64(c.W) * float64(s.N) / float64(total)
		c.Bars = append(c.Bars, bar{X: num(x), Y: "0", W: num(w), H: num(float64(c.H)),
			Class: prefix + s.State, Title: fmt.Sprintf("%d %s", s.N, s.State)})
		x += w
	}
	return c
}

type historyRow struct {
	Seq, Base uint64
	Kind      string
	Bytes     string
	When      string
	Title     string
	Viewable  bool
}

type historyView struct {
	Rows    []historyRow // newest first
	Chart   chart        // oldest on the left
	Max     string       // the chart's top, in bytes
	From    string       // when the first bar was pushed
	Summary string
	EnvID   uint64
	Current uint64 // the point shown above the tab
	// Newest is the latest seq, the diff form's default "to".
	Newest uint64
}

// newHistoryView lists the pushes and draws bytes per push. The scale is
// linear: full snapshots dwarf deltas, which is the point the chart makes;
// every bar keeps a minimum height so a small delta is still visible.
func newHistoryView(hist []HistoryEntry, now time.Time) historyView {
	var v historyView
	if len(hist) == 0 {
		return v
	}
	c := chart{W: 1000, H: 160}
	maxBytes, total := 1, 0
	var full, delta, fullBytes, deltaBytes int
	for _, h := range hist {
		maxBytes = max(maxBytes, h.Bytes)
		total += h.Bytes
		if h.Kind == "full" {
			full++
			fullBytes += h.Bytes
		} else {
			delta++
			deltaBytes += h.Bytes
		}
	}
	// Bars are at most 40 units wide, so a short history does not draw a
	// few slabs across the whole width.
	slot := min(float64(c.W)/float64(len(hist)), 40)
	gap := slot * 0.2
	for i, h := range hist {
		bh := max(float64(c.H)*float64(h.Bytes)/float64(maxBytes), 2)
		kind := "delta"
		if h.Kind == "full" {
			kind = "full"
		}
		c.Bars = append(c.Bars, bar{
			X: num(float64(i)*slot + gap/2), Y: num(float64(c.H) - bh), W: num(slot - gap), H: num(bh),
			Class: "h-" + kind,
			Title: fmt.Sprintf("seq %d, %s, %s, %s", h.Seq, kind, humanSize(int64(h.Bytes)), absTime(h.At)),
		})
	}
	v.Chart = c
	v.Max = humanSize(int64(maxBytes))
	v.From = ago(hist[0].At, now)

	for _, h := range slices.Backward(hist) {
		v.Rows = append(v.Rows, historyRow{Seq: h.Seq, Base: h.Base, Kind: h.Kind, Bytes: humanSize(int64(h.Bytes)),
			When: ago(h.At, now), Title: absTime(h.At), Viewable: h.Viewable})
	}
	v.Newest = hist[len(hist)-1].Seq

	v.Summary = fmt.Sprintf("%s since %s, %s in all", plural(len(hist), "push", "pushes"), ago(hist[0].At, now), humanSize(int64(total)))
	if full > 0 {
		v.Summary += fmt.Sprintf("; %s averaging %s", plural(full, "full snapshot", "full snapshots"), humanSize(int64(fullBytes/full)))
	}
	if delta > 0 {
		v.Summary += fmt.Sprintf("; %s averaging %s", plural(delta, "delta", "deltas"), humanSize(int64(deltaBytes/delta)))
	}
	return v
}
