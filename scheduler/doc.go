// Package scheduler decides when things happen: the effective frequencies of
// an environment (global defaults overridden per environment) and, on the
// agent, when the next sync exchange is due and what it carries.
//
// # Caveats
//
//   - Plan is not safe for concurrent use; the agent's loop owns it.
//   - Plan never reads the wall clock or a global random source: callers pass
//     the time and a *rand.Rand, so tests run weeks of ticks in microseconds.
package scheduler
