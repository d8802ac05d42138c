// Package waitingroom decides what happens to a device that calls in with the
// onboarding key and is not yet known: trusted at once by a rule, held in the
// waiting room for an operator, or refused because the room is full or its
// source address sends new devices too fast.
//
// The server owns the room's records and their storage; this package holds
// the rules, the rate limiter (with an injected clock), and the Registry:
// the room in memory, which places new devices, lists the room and says who
// is waiting, rejected or bound, without waiting on I/O under its lock.
//
// # Caveats
//
//   - Limiter and Registry are safe for concurrent use; their locks are
//     never held across I/O.
//   - Only new devices are rate limited and counted against the room's size:
//     a known device, waiting or trusted, is never refused by a cap.
package waitingroom
