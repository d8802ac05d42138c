package web

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"outpost/snapshot"
)

// ago says how long before now t was, compactly: "12 s ago", "3 min ago",
// "5 h ago", "3 d ago". A zero t is "never"; a t slightly ahead of the
// server's clock is "just now".
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d d ago", int(d/(24*time.Hour)))
	}
}

// absTime is the full timestamp shown in tooltips.
func absTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// unix turns a snapshot's Unix seconds into a time; 0 stays the zero time.
func unix(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// every writes a frequency: "30 s", "5 min", "1 h 30 min", "2 d".
func every(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	d = d.Round(time.Second)
	var parts []string
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "min"}, {time.Second, "s"}} {
		if n := d / u.d; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, u.name))
			d -= n * u.d
		}
		if len(parts) == 2 {
			break
		}
	}
	return strings.Join(parts, " ")
}

// humanDuration is Docker's wording for a container's age ("5 minutes",
// "About an hour", "3 days"), so the UI reads like `docker ps`.
func humanDuration(d time.Duration) string {
	if s := int(d.Seconds()); s < 1 {
		return "Less than a second"
	} else if s == 1 {
		return "1 second"
	} else if s < 60 {
		return fmt.Sprintf("%d seconds", s)
	} else if m := int(d.Minutes()); m == 1 {
		return "About a minute"
	} else if m < 60 {
		return fmt.Sprintf("%d minutes", m)
	} else if h := int(d.Hours() + 0.5); h == 1 {
		return "About an hour"
	} else if h < 48 {
		return fmt.Sprintf("%d hours", h)
	} else if h < 24*7*2 {
		return fmt.Sprintf("%d days", h/24)
	} else if h < 24*30*2 {
		return fmt.Sprintf("%d weeks", h/24/7)
	} else if h < 24*365*2 {
		return fmt.Sprintf("%d months", h/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

// containerStatus is the status text `docker ps` would show, derived from
// the snapshot's state and times (the snapshot does not carry Docker's own
// text, which changes every minute).
func containerStatus(c snapshot.Container, now time.Time) string {
	started, finished := unix(c.Started), unix(c.Finished)
	since := func(t time.Time) string { return humanDuration(now.Sub(t)) }
	switch c.State {
	case snapshot.StateRunning:
		if started.IsZero() {
			return "Up"
		}
		return "Up " + since(started)
	case snapshot.StatePaused:
		if started.IsZero() {
			return "Up (Paused)"
		}
		return "Up " + since(started) + " (Paused)"
	case snapshot.StateRestarting:
		if finished.IsZero() {
			return fmt.Sprintf("Restarting (%d)", c.ExitCode)
		}
		return fmt.Sprintf("Restarting (%d) %s ago", c.ExitCode, since(finished))
	case snapshot.StateRemoving:
		return "Removal In Progress"
	case snapshot.StateDead:
		return "Dead"
	case snapshot.StateCreated:
		return "Created"
	case snapshot.StateExited:
		if finished.IsZero() {
			if started.IsZero() {
				return "Created"
			}
			return fmt.Sprintf("Exited (%d)", c.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s ago", c.ExitCode, since(finished))
	}
	return ""
}

// formatPort writes a port the way `docker ps` does: 0.0.0.0:8080->80/tcp
// when published, 80/tcp when only exposed.
func formatPort(p snapshot.Port) string {
	proto := p.Proto
	if proto == "" {
		proto = "tcp"
	}
	private := strconv.Itoa(int(p.Private)) + "/" + proto
	if p.Public == 0 {
		return private
	}
	return net.JoinHostPort(p.IP, strconv.Itoa(int(p.Public))) + "->" + private
}

// ports formats a container's ports, without repeats.
func ports(ps []snapshot.Port) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range ps {
		s := formatPort(p)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// humanSize writes a byte count in decimal units with three significant
// digits, as `docker images` does: "512 B", "12.3 MB", "1.25 GB".
func humanSize(n int64) string {
	return scaled(n, 1000, []string{"B", "kB", "MB", "GB", "TB", "PB"})
}

// humanMemory writes a byte count in binary units: "15.6 GiB".
func humanMemory(n int64) string {
	return scaled(n, 1024, []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"})
}

func scaled(n int64, base float64, units []string) string {
	if n < 0 {
		n = 0
	}
	v := float64(n)
	i := 0
	// 999.7 kB would print as "1000 kB": step up a unit as well.
	for (v >= base || i > 0 && v >= 999.5) && i < len(units)-1 {
		v /= base
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d %s", n, units[0])
	}
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f %s", v, units[i])
	case v < 100:
		return fmt.Sprintf("%.1f %s", v, units[i])
	default:
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
}

// plural writes "1 container", "3 containers".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
