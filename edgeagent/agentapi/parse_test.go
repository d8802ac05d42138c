package agentapi

import (
	"slices"
	"testing"
)

func TestMemTotal(t *testing.T) {
	cases := []struct {
		in   string
		want uint64
	}{
		{"MemTotal:       16314880 kB\nMemFree:         1234 kB\n", 16314880 * 1024},
		{"MemFree: 1 kB\nMemTotal: 2048\n", 2048},
		{"MemTotal: lots kB\n", 0},
		{"", 0},
	}
	for _, c := range cases {
		if got := memTotal([]byte(c.in)); got != c.want {
			t.Errorf("memTotal(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestParseCmd(t *testing.T) {
	cases := []struct {
		in      []string
		want    []string
		wantErr bool
	}{
		{[]string{"sh"}, []string{"sh"}, false},
		{[]string{"echo", "hello", "world"}, []string{"echo", "hello", "world"}, false},
		{[]string{`["sh","-c","exit 3"]`}, []string{"sh", "-c", "exit 3"}, false},
		{[]string{` ["ls"]`}, []string{"ls"}, false},
		{[]string{`[broken`}, nil, true},
		{[]string{`[]`}, nil, true},
		{nil, nil, true},
	}
	for _, c := range cases {
		got, err := parseCmd(c.in)
		if (err != nil) != c.wantErr || !slices.Equal(got, c.want) {
			t.Errorf("parseCmd(%q) = %q, %v; want %q, error %v", c.in, got, err, c.want, c.wantErr)
		}
	}
}
