package web

import (
	"fmt"
	"net/url"
	"strconv"
)

// pager is the line under a paged table: where this page sits in the
// matches, and links to the pages before and after it.
type pager struct {
	From, To, Total int
	Page, Pages     int
	Prev, Next      string // URLs; empty at the ends
}

// maxPage bounds ?page=, so that offsets stay far from overflow: a million
// pages of 50 is 50 times the largest fleet listed.
const maxPage = 1_000_000

// pageOf reads ?page= (from 1, at most maxPage).
func pageOf(v url.Values) int {
	p, err := strconv.Atoi(v.Get("page"))
	if err != nil || p < 1 {
		return 1
	}
	return min(p, maxPage)
}

// newPager is the pager of page (from 1) of total matches, per to a page,
// with links to path carrying the query v.
func newPager(path string, v url.Values, page, per, total int) pager {
	p := pager{Total: total, Page: page, Pages: max(1, (total+per-1)/per)}
	if total > 0 {
		p.From = min((page-1)*per+1, total)
		p.To = min(page*per, total)
	}
	link := func(n int) string {
		q := url.Values{}
		for k, vs := range v {
			q[k] = vs
		}
		q.Set("page", strconv.Itoa(n))
		return path + "?" + q.Encode()
	}
	if page > 1 {
		p.Prev = link(min(page-1, p.Pages))
	}
	if page < p.Pages {
		p.Next = link(page + 1)
	}
	return p
}

func (p pager) String() string {
	if p.Total == 0 {
		return "none"
	}
	return fmt.Sprintf("%d–%d of %d", p.From, p.To, p.Total)
}

// sortLink is a column heading's link: sort by key, ascending unless it is
// already, keeping the other parameters and going back to the first page.
type sortLink struct {
	URL     string
	Current bool
	Desc    bool
}

func newSortLink(path string, v url.Values, key, cur string, desc bool) sortLink {
	q := url.Values{}
	for k, vs := range v {
		q[k] = vs
	}
	q.Del("page")
	next := key
	if key == cur && !desc {
		next = "-" + key
	}
	q.Set("sort", next)
	return sortLink{URL: path + "?" + q.Encode(), Current: key == cur, Desc: desc && key == cur}
}
