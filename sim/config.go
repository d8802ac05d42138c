package sim

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"outpost/protocol"
)

// Config is one simulated fleet and what to report about it.
type Config struct {
	// Server is the server's base URL (https://host:port); devices and the
	// API client both reach it there, whatever public URL its edge keys name.
	Server   string
	User     string
	Password string
	// Devices is the number of async devices; each gets a pre-staged
	// environment named Name-1-1 ... (a bulk call's name, then its
	// number). 0 takes the default only when Standard is 0 too.
	Devices int
	Name    string
	// Freq is every async device's ping, snapshot and command frequency,
	// and a standard device's snapshot frequency, in seconds.
	Freq int
	// Standard is the number of standard devices (environments named
	// Name-std-...), polling /edge/v1/poll every PollFreq seconds.
	Standard int
	PollFreq int
	// Tunnels is how many standard devices the simulator asks a tunnel of
	// through the API, once each has checked in; the tunnels are held open
	// for the run. TunnelRequestsPerSec is the rate of requests sent
	// through the server's API and the tunnels to the devices' agent API,
	// spread over the first BusyTunnels of them (0: all).
	Tunnels              int
	BusyTunnels          int
	TunnelRequestsPerSec float64
	// StackGroup is how many devices (async ones first) an edge group
	// holds; an edge stack targets it once they have all checked in (or
	// Duration ended). 0: no stack.
	StackGroup int
	// Ramp spreads the devices' first contacts (0: one Freq).
	Ramp time.Duration
	// Duration is how long the fleet runs and commands are queued; Grace how
	// long it then runs on, without new commands, for the last acks and
	// stack reports (0: two Freq and 10 s).
	Duration time.Duration
	Grace    time.Duration
	// CommandsPerSec is the rate of commands queued across the fleet.
	CommandsPerSec float64
	// ChangesPerHour is the fraction of a device's containers that change
	// state each hour (0.2 of a 5-container capture: one change an hour).
	ChangesPerHour float64
	// Capture is the snapshot every device starts from, a file of Testdata
	// (docker-5.json, docker-50.json, docker-500.json).
	Capture  string
	Testdata string
	// ServerPID, when not 0, is the server process read from /proc;
	// Metrics, when set, its Prometheus URL (for go_goroutines).
	ServerPID int
	Metrics   string
	// JSON and HTML are the report files to write ("" for none).
	JSON string
	HTML string
	// Progress receives the live progress line every ProgressEvery.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Seed makes the run's randomness (jitter, changes, command targets)
	// repeatable.
	Seed uint64
}

// PerAddress is how many devices share one 127.0.0.x source address:
// loopback gives about 28,000 source ports per address pair.
const PerAddress = 20000

// Defaults are the values of every setting a Config leaves zero.
var Defaults = Config{
	User:           "admin",
	Devices:        200,
	Name:           "sim",
	Freq:           60,
	PollFreq:       5,
	Duration:       time.Minute,
	CommandsPerSec: 1,
	ChangesPerHour: 0.2,
	Capture:        "docker-5.json",
	Testdata:       "testdata/docker",
	Progress:       os.Stderr,
	ProgressEvery:  2 * time.Second,
	Seed:           1,
}

// withDefaults fills what c leaves zero from Defaults.
func (c Config) withDefaults() Config {
	d := Defaults
	or := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	or(&c.User, d.User)
	or(&c.Name, d.Name)
	or(&c.Capture, d.Capture)
	or(&c.Testdata, d.Testdata)
	if c.Devices == 0 && c.Standard == 0 {
		c.Devices = d.Devices
	}
	if c.Freq == 0 {
		c.Freq = d.Freq
	}
	if c.PollFreq == 0 {
		c.PollFreq = d.PollFreq
	}
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Ramp == 0 {
		c.Ramp = time.Duration(c.Freq) * time.Second
	}
	if c.Grace == 0 {
		c.Grace = 2*time.Duration(c.Freq)*time.Second + 10*time.Second
	}
	if c.Progress == nil {
		c.Progress = d.Progress
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = d.ProgressEvery
	}
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	return c
}

// check reports every problem of c at once, each with its setting's name
// and value.
func (c Config) check() error {
	var errs []error
	if u, err := url.Parse(c.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, fmt.Errorf("server %q: want the server's https://host:port", c.Server))
	}
	if c.Password == "" {
		errs = append(errs, errors.New("password: required (the API user's; -password or OUTPOST_SIM_PASSWORD)"))
	}
	if c.Devices < 0 || c.Standard < 0 || c.Devices+c.Standard < 1 || c.Devices+c.Standard > 255*PerAddress {
		errs = append(errs, fmt.Errorf("devices %d, standard %d: want 0 or more of each, 1 to %d in all", c.Devices, c.Standard, 255*PerAddress))
	}
	if c.Freq < 1 || c.Freq > 604800 {
		errs = append(errs, fmt.Errorf("freq %d: want 1 to 604800 seconds", c.Freq))
	}
	if c.PollFreq < 1 || c.PollFreq > 3600 {
		errs = append(errs, fmt.Errorf("poll-freq %d: want 1 to 3600 seconds", c.PollFreq))
	}
	if c.Tunnels < 0 || c.Tunnels > c.Standard {
		errs = append(errs, fmt.Errorf("tunnels %d: want 0 to the standard devices' %d", c.Tunnels, c.Standard))
	}
	if c.BusyTunnels < 0 || c.BusyTunnels > c.Tunnels {
		errs = append(errs, fmt.Errorf("busy-tunnels %d: want 0 (all) to the tunnels' %d", c.BusyTunnels, c.Tunnels))
	}
	if c.TunnelRequestsPerSec < 0 || (c.TunnelRequestsPerSec > 0 && c.Tunnels == 0) {
		errs = append(errs, fmt.Errorf("tunnel-requests-per-sec %v: want 0 or more, and tunnels to carry them", c.TunnelRequestsPerSec))
	}
	if c.StackGroup < 0 || c.StackGroup > c.Devices+c.Standard {
		errs = append(errs, fmt.Errorf("stack-group %d: want 0 to the %d devices", c.StackGroup, c.Devices+c.Standard))
	}
	if c.Duration < 0 || c.Grace < 0 || c.Ramp < 0 {
		errs = append(errs, fmt.Errorf("duration %v, grace %v, ramp %v: none may be negative", c.Duration, c.Grace, c.Ramp))
	}
	if c.CommandsPerSec < 0 {
		errs = append(errs, fmt.Errorf("commands-per-sec %v: want 0 or more", c.CommandsPerSec))
	}
	if c.ChangesPerHour < 0 {
		errs = append(errs, fmt.Errorf("changes-per-hour %v: want 0 or more", c.ChangesPerHour))
	}
	if _, err := os.Stat(filepath.Join(c.Testdata, c.Capture)); err != nil {
		errs = append(errs, fmt.Errorf("capture %s in %s: %w (run from the repository's root, or set -testdata)", c.Capture, c.Testdata, err))
	}
	return errors.Join(errs...)
}

// freq is the frequencies of a device of the mode, as its environment is
// staged with them: an async device's all Freq; a standard device polls
// (ping and command) every PollFreq and pushes snapshots every Freq.
func (c Config) freq(standard bool) protocol.Frequencies {
	f := protocol.Frequencies{Ping: uint32(c.Freq), Snapshot: uint32(c.Freq), Command: uint32(c.Freq)}
	if standard {
		f.Ping, f.Command = uint32(c.PollFreq), uint32(c.PollFreq)
	}
	return f
}

// files is how many connections the simulator holds: one per device and
// one per tunnel.
func (c Config) files() int { return c.Devices + c.Standard + c.Tunnels }
