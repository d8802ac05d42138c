// Package jobs runs edge jobs: shell scripts the server schedules with a cron
// expression, run on the device host. A Runner keeps the job definitions in
// its data dir, schedules them with gocron, runs each tick's script with
// /bin/sh, keeps the log of each run on the device and hands a Result of each
// run to the caller, who queues it for the server.
//
// # Caveats
//
//   - Host root: the agent runs in a container that mounts the device's root
//     file system at Config.HostRoot. Unless that is "/", each run chroots into
//     it (the agent must be root) and runs the host's /bin/sh, with the script
//     copied to HOSTROOT/tmp (which must exist) for the run. chroot changes the
//     file system only: the script shares the agent container's process,
//     network and user namespaces, so it sees the host's processes only if the
//     container has the host's PID namespace.
//   - A script starts in "/" with stdin from /dev/null and an environment of
//     its own (PATH, HOME, SHELL, OUTPOST_JOB_ID, OUTPOST_JOB_VERSION,
//     OUTPOST_JOB_RUN), never the agent's, which holds the edge key.
//   - Singleton runs: a tick that comes while the job's previous run goes on
//     is dropped, not queued. The Runner decides this itself, under its lock;
//     gocron's singleton mode is not used (see tick). Upsert of a new version
//     lets a running run of the old one finish; Remove and Close kill it.
//   - Bounds: a run is killed, with its whole process group, after
//     Config.Timeout (1 h by default); a process that left the group (setsid,
//     a daemon) is not. Output streams through a pipe into a ring file of
//     LogLimit bytes, so memory stays constant and a run's log is the tail of
//     its output. A Result carries the last TailSize bytes when the job
//     collects, and the last KeepRuns logs of each job are kept.
//   - What persists, written by rename (files 0600, dirs 0700): the job
//     definitions, so a restarted agent keeps its jobs; each job's run
//     counter, saved before the run starts and kept after Remove, so a
//     (job, run) pair is never used twice on a device; the kept logs.
//     Results do not: the caller's outbox keeps them. A run the agent dies in
//     reports nothing, its partial log is dropped at the next start, and its
//     processes run on. Ticks missed while the agent is down are not caught
//     up.
//   - Cron expressions are read in the agent's local time zone (its TZ,
//     often UTC in a container), unless they start with CRON_TZ=Zone.
//   - The schedule and Result.Started follow Config.Clock; Result.Duration
//     and the timeout are real time.
//   - OnResult runs on the run's goroutine, once the script has ended and
//     its log is saved, in run order for each job, and before Remove of that
//     job or Close returns. It must not call Upsert, Remove or Close.
package jobs
