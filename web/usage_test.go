package web_test

import (
	"strings"
	"testing"
	"time"

	"outpost/web"
)

func TestDataUsageCharts(t *testing.T) {
	s := newSite(t)
	_, body := s.get("/environments/1")
	mustContain(t, body, "Data on the wire, last 30 days", "No exchange yet")
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for i := range 30 {
		d := web.UsageDay{Day: today.AddDate(0, 0, i-29)}
		if i%3 == 0 {
			d.In, d.Out, d.Exchanges = uint64(1000*i), 500, 10
			d.Total = d.In + d.Out + 10*180
		}
		s.b.usage = append(s.b.usage, d)
	}
	_, body = s.get("/environments/1")
	// 10 days with exchanges, one bar each, the biggest full height.
	if n := strings.Count(body, `<rect class="usage"`); n != 10 {
		t.Fatalf("%d usage bars, want 10", n)
	}
	mustContain(t, body, `height="80.00"`, "in 30 days", "an exchange", "estimated 180 B of HTTP and TLS")
	s.b.top = []web.UsageRow{{EnvID: 2, Name: "vessel-north-star", Total: 9_000_000, Exchanges: 4000}, {EnvID: 1, Name: "shop-042", Total: 900_000, Exchanges: 20000}}
	_, body = s.get("/environments")
	mustContain(t, body, "Most data on the wire, last 7 days", `href="/environments/2">vessel-north-star`, "4000 exchanges",
		`width="100.0"`, `width="10.0"`)
	if i, j := strings.Index(body, "vessel-north-star</a></td>"), strings.Index(body, "shop-042</a></td><td class=\"num nowrap\""); i < 0 || j < i {
		t.Error("the top list is not biggest first")
	}
}
