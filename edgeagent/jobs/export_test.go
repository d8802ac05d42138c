package jobs

import "time"

// SetCloseGrace sets how long Close waits for running scripts before it
// kills them, so a test of the kill path takes milliseconds, not seconds.
func SetCloseGrace(r *Runner, d time.Duration) { r.grace = d }
