package stackfile

import (
	"reflect"
	"strings"
	"testing"
)

func TestCheckNamesEverySchemaProblemWithItsLine(t *testing.T) {
	compose := `services:
  web:
    image: busybox
    bogus: 1
  db:
    image: 3
    restart: always
    colour: blue
`
	got := Check("shop", compose, nil)
	want := []Problem{
		{Line: 4, Message: "services.web.bogus: not allowed here"},
		{Line: 6, Message: "services.db.image must be a string"},
		{Line: 8, Message: "services.db.colour: not allowed here"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestCheckAcceptsWhatComposeLoads(t *testing.T) {
	compose := "services:\n  web:\n    image: busybox\n    ports: [\"${PORT}:80\"]\n    mem_limit: ${MEM}\n    x-note: kept\n"
	if got := Check("shop", compose, map[string]string{"PORT": "8080", "MEM": "64m"}); got != nil {
		t.Fatalf("a valid file was refused: %v", got)
	}
}

func TestCheckSyntaxErrorComesAloneWithItsLine(t *testing.T) {
	got := Check("shop", "services:\n  web:\n    image: busybox\n  db: [\n", nil)
	if len(got) != 1 || got[0].Line != 5 {
		t.Fatalf("got %v, want one problem on line 5", got)
	}
}

func TestCheckReportsTheLoadersProblemAfterTheSchema(t *testing.T) {
	got := Check("shop", "services:\n  web:\n    image: busybox\n    depends_on: [nope]\n", nil)
	if len(got) != 1 || !strings.Contains(got[0].Message, `undefined service "nope"`) {
		t.Fatalf("got %v, want the loader's depends_on problem", got)
	}
}

func TestCheckRefusesAFileWithNoServices(t *testing.T) {
	for _, compose := range []string{"services: {}\n", "name: x\n", "- a\n- b\n"} {
		if got := Check("shop", compose, nil); len(got) == 0 {
			t.Errorf("%q: accepted", compose)
		}
	}
}

func TestCheckInterpolatesBeforeTheSchema(t *testing.T) {
	// The schema sees the file as the device will, with the operator's
	// values in place of the variables.
	compose := "services:\n  web:\n    image: busybox\n    cpu_count: ${N}\n"
	if got := Check("shop", compose, map[string]string{"N": "2"}); got != nil {
		t.Fatalf("refused with N=2: %v", got)
	}
	if got := Check("shop", compose, map[string]string{"N": "two"}); len(got) == 0 {
		t.Fatal("accepted cpu_count: two")
	}
}
