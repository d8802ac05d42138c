package server

import (
	"fmt"

	"outpost/protocol"
)

// Bounds on the identifying strings a sync request carries. A device calling
// with the onboarding key is anonymous, and what it sends is stored (waiting
// room, environment) and shown to operators, so each string is bounded well
// below the protocol's body limits.
const (
	maxEdgeIDBytes     = 128
	maxHostnameBytes   = 255 // a DNS name
	maxAgentFieldBytes = 64  // agent version, platform, OS, arch
	maxAgentListLen    = 32  // edge groups, tags
	maxAgentEntryBytes = 64  // one edge group or tag
)

// Bounds on the reports one request carries. The agent sends at most 256
// acks, every stack's status and 64 job results a request (edgeagent), so
// these refuse only a device that is not the agent.
const (
	maxReportAcks    = 1024
	maxReportStacks  = 1024
	maxReportJobs    = 256
	maxReportError   = 4 << 10 // an ack's, a stack's or a run's error text
	maxReportTail    = 16 << 10
	maxReportFullLog = 1<<20 + 4<<10 // a run's whole log (job.collect), as the agent bounds it
)

// checkReports bounds the acks, stack statuses and job results of a request.
func checkReports(req *protocol.SyncRequest) error {
	for _, n := range []struct {
		field, limit string
		got, most    int
	}{
		{"acks", "maxReportAcks", len(req.Acks), maxReportAcks},
		{"stack statuses", "maxReportStacks", len(req.StackStatuses), maxReportStacks},
		{"job results", "maxReportJobs", len(req.JobResults), maxReportJobs},
	} {
		if n.got > n.most {
			return fmt.Errorf("%s: %d entries: %w", n.field, n.got, &protocol.LimitError{Limit: n.limit, Max: n.most})
		}
	}
	for i, a := range req.Acks {
		if err := checkLen(fmt.Sprintf("acks[%d].error", i), "maxReportError", a.Error, maxReportError); err != nil {
			return err
		}
	}
	for i, x := range req.StackStatuses {
		if err := checkLen(fmt.Sprintf("stackStatuses[%d].error", i), "maxReportError", x.Error, maxReportError); err != nil {
			return err
		}
	}
	for i, r := range req.JobResults {
		if err := checkLen(fmt.Sprintf("jobResults[%d].error", i), "maxReportError", r.Error, maxReportError); err != nil {
			return err
		}
		limit, most := "maxReportTail", maxReportTail
		if r.Full {
			limit, most = "maxReportFullLog", maxReportFullLog
		}
		if len(r.Output) > most {
			return fmt.Errorf("jobResults[%d].output: %d bytes: %w", i, len(r.Output), &protocol.LimitError{Limit: limit, Max: most})
		}
	}
	return nil
}

// checkRequestSizes checks a sync request's edge ID and agent information
// against the bounds above. The error names the field and matches
// protocol.ErrLimit: answer it 400 with protocol.CodeLimit.
func checkRequestSizes(edgeID string, agent *protocol.AgentInfo) error {
	if err := checkLen("edge ID", "maxEdgeIDBytes", edgeID, maxEdgeIDBytes); err != nil {
		return err
	}
	if agent == nil {
		return nil
	}
	for _, f := range []struct{ field, value string }{
		{"agent version", agent.Version}, {"platform", agent.Platform}, {"OS", agent.OS}, {"arch", agent.Arch},
	} {
		if err := checkLen(f.field, "maxAgentFieldBytes", f.value, maxAgentFieldBytes); err != nil {
			return err
		}
	}
	if err := checkLen("hostname", "maxHostnameBytes", agent.Hostname, maxHostnameBytes); err != nil {
		return err
	}
	for _, l := range []struct {
		field  string
		values []string
	}{{"groups", agent.Groups}, {"tags", agent.Tags}} {
		if len(l.values) > maxAgentListLen {
			return fmt.Errorf("%s: %d entries: %w", l.field, len(l.values), &protocol.LimitError{Limit: "maxAgentListLen", Max: maxAgentListLen})
		}
		for i, v := range l.values {
			if err := checkLen(fmt.Sprintf("%s[%d]", l.field, i), "maxAgentEntryBytes", v, maxAgentEntryBytes); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLen reports field's value being longer than most bytes, under the
// name of its bound.
// A value with a control character is refused as malformed-in-limits too:
// it is stored and shown to operators.
func checkLen(field, limit, value string, most int) error {
	if len(value) > most {
		return fmt.Errorf("%s: %d bytes: %w", field, len(value), &protocol.LimitError{Limit: limit, Max: most})
	}
	if p := plainText(field, value); p != "" {
		return fmt.Errorf("%s: %w", p, protocol.ErrLimit)
	}
	return nil
}
