package web

import "fmt"

// usageView is an environment's data usage chart: bytes a day over the last
// 30 days, oldest on the left.
type usageView struct {
	Chart    chart
	Max      string
	Total    string
	PerDay   string // average over the days with exchanges
	PerExch  string // average per exchange
	From, To string
	Empty    bool
}

func newUsageView(days []UsageDay) usageView {
	v := usageView{Empty: true}
	if len(days) == 0 {
		return v
	}
	c := chart{W: 600, H: 80}
	var peak, total, exch uint64
	active := 0
	for _, d := range days {
		peak, total, exch = max(peak, d.Total), total+d.Total, exch+d.Exchanges
		if d.Exchanges > 0 {
			active++
		}
	}
	v.From, v.To = days[0].Day.Format("2 Jan"), days[len(days)-1].Day.Format("2 Jan")
	if exch == 0 {
		return v
	}
	v.Empty = false
	slot := float64(c.W) / float64(len(days))
	for i, d := range days {
		if d.Total == 0 {
			continue
		}
		h := max(float64(c.H)*float64(d.Total)/float64(peak), 1)
		c.Bars = append(c.Bars, bar{X: num(float64(i)*slot + slot*0.1), Y: num(float64(c.H) - h), W: num(slot * 0.8), H: num(h),
			Class: "usage", Title: fmt.Sprintf("%s: %s in %d exchanges (%s up, %s down, bodies)", d.Day.Format("Mon 2 Jan"),
				humanSize(int64(d.Total)), d.Exchanges, humanSize(int64(d.In)), humanSize(int64(d.Out)))})
	}
	v.Chart, v.Max, v.Total = c, humanSize(int64(peak)), humanSize(int64(total))
	v.PerDay = humanSize(int64(total) / int64(max(active, 1)))
	v.PerExch = humanSize(int64(total / exch))
	return v
}

// topUsageView is the fleet's biggest users over the last week, with bars
// as long as their share of the first.
type topUsageView struct {
	Rows []topUsageRow
}

type topUsageRow struct {
	UsageRow
	Size  string
	Width string // percent of the first row
}

func newTopUsage(rows []UsageRow) topUsageView {
	var v topUsageView
	for _, r := range rows {
		w := 100.0
		if rows[0].Total > 0 {
			w = 100 * float64(r.Total) / float64(rows[0].Total)
		}
		v.Rows = append(v.Rows, topUsageRow{UsageRow: r, Size: humanSize(int64(r.Total)), Width: fmt.Sprintf("%.1f", max(w, 0.5))})
	}
	return v
}
