package server

import (
	"errors"
	"strings"
	"testing"

	"outpost/protocol"
)

func TestCheckRequestSizes(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	list := func(n int) []string { return make([]string, n) }
	ok := func() *protocol.AgentInfo {
		return &protocol.AgentInfo{Version: long(64), Hostname: long(255), Platform: long(64), OS: long(64), Arch: long(64),
			Groups: append(list(31), long(64)), Tags: append(list(31), long(64))}
	}
	for _, tc := range []struct {
		name   string
		edgeID string
		agent  func(*protocol.AgentInfo)
		field  string // named in the error; "" for no error
		limit  string
	}{
		{"all at their bounds", long(128), nil, "", ""},
		{"no agent information", "e", func(a *protocol.AgentInfo) { *a = protocol.AgentInfo{} }, "", ""},
		{"edge ID", long(129), nil, "edge ID", "maxEdgeIDBytes"},
		{"hostname", "e", func(a *protocol.AgentInfo) { a.Hostname = long(256) }, "hostname", "maxHostnameBytes"},
		{"version", "e", func(a *protocol.AgentInfo) { a.Version = long(65) }, "agent version", "maxAgentFieldBytes"},
		{"platform", "e", func(a *protocol.AgentInfo) { a.Platform = long(65) }, "platform", "maxAgentFieldBytes"},
		{"os", "e", func(a *protocol.AgentInfo) { a.OS = long(65) }, "OS", "maxAgentFieldBytes"},
		{"arch", "e", func(a *protocol.AgentInfo) { a.Arch = long(65) }, "arch", "maxAgentFieldBytes"},
		{"too many groups", "e", func(a *protocol.AgentInfo) { a.Groups = list(33) }, "groups", "maxAgentListLen"},
		{"too many tags", "e", func(a *protocol.AgentInfo) { a.Tags = list(33) }, "tags", "maxAgentListLen"},
		{"long group", "e", func(a *protocol.AgentInfo) { a.Groups[3] = long(65) }, "groups[3]", "maxAgentEntryBytes"},
		{"long tag", "e", func(a *protocol.AgentInfo) { a.Tags[0] = long(65) }, "tags[0]", "maxAgentEntryBytes"},
	} {
		a := ok()
		if tc.agent != nil {
			tc.agent(a)
		}
		err := checkRequestSizes(tc.edgeID, a)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var le *protocol.LimitError
		if !errors.As(err, &le) || le.Limit != tc.limit || !errors.Is(err, protocol.ErrLimit) {
			t.Errorf("%s: %v, want a LimitError for %s", tc.name, err, tc.limit)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: %q does not name %s", tc.name, err, tc.field)
		}
	}
	if err := checkRequestSizes("e", nil); err != nil {
		t.Errorf("nil agent: %v", err)
	}
}
