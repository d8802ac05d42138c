package sim

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Config is one simulated fleet and what to report about it.
type Config struct {
	// Server is the server's base URL (https://host:port); devices and the
	// API client both reach it there, whatever public URL its edge keys name.
	Server   string
	User     string
	Password string
	// Devices is the number of async devices; each gets a pre-staged
	// environment named Name-1 ... Name-N.
	Devices int
	Name    string
	// Freq is every device's ping, snapshot and command frequency, in seconds.
	Freq int
	// Ramp spreads the devices' first contacts (0: one Freq).
	Ramp time.Duration
	// Duration is how long the fleet runs and commands are queued; Grace how
	// long it then runs on, without new commands, for the last acks (0: two
	// Freq and 10 s).
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
	if c.Devices == 0 {
		c.Devices = d.Devices
	}
	if c.Freq == 0 {
		c.Freq = d.Freq
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
	if c.Devices < 1 || c.Devices > 255*PerAddress {
		errs = append(errs, fmt.Errorf("devices %d: want 1 to %d", c.Devices, 255*PerAddress))
	}
	if c.Freq < 1 || c.Freq > 604800 {
		errs = append(errs, fmt.Errorf("freq %d: want 1 to 604800 seconds", c.Freq))
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
