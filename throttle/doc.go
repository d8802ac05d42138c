// Package throttle slows down repeated failures (failed logins) with a
// lockout that grows per key and forgets.
//
// A key (a user at a network, a network) gets a few free failures; each
// failure past them locks it for twice as long as the last, up to a cap.
// A key that fails no more for its reset period is forgotten, so a lockout
// never lasts forever, and a success clears it at once.
//
// # Caveats
//
//   - The caller passes the time: tests run hours of attempts in
//     microseconds.
//   - Keys stay in memory until forgotten; Sweep drops the stale ones.
//   - Lockouts are per process: several server replicas each keep their own.
package throttle
