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
func checkLen(field, limit, value string, most int) error {
	if len(value) <= most {
		return nil
	}
	return fmt.Errorf("%s: %d bytes: %w", field, len(value), &protocol.LimitError{Limit: limit, Max: most})
}
