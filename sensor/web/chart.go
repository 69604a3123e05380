package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// Charts are inline SVG written on the server: no JavaScript library, no
// network, nothing to keep up to date, and the page renders complete in
// one response (printable, readable without JavaScript). Labels are
// escaped with template.HTMLEscapeString.

// bar is one bar of a bar chart.
type bar struct {
	Label string
	Value float64
	Class string // CSS class: a severity or status
}

// barChart draws bars left to right, scaled to the largest value.
func barChart(title string, bars []bar, width, height int) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" viewBox="0 0 %d %d" width="%d" height="%d"><title>%s</title>`,
		width, height+14, width, height+14, template.HTMLEscapeString(title))
	maxV := 0.0
	for _, x := range bars {
		maxV = max(maxV, x.Value)
	}
	if len(bars) == 0 || maxV == 0 {
		fmt.Fprintf(&b, `<text x="4" y="%d" class="muted">none</text></svg>`, height/2)
		return template.HTML(b.String())
	}
	bw := float64(width) / float64(len(bars))
	for i, x := range bars {
		h := x.Value / maxV * float64(height-2)
		fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %g</title></rect>`,
			template.HTMLEscapeString(x.Class), float64(i)*bw+1, float64(height)-h, max(bw-2, 1), h,
			template.HTMLEscapeString(x.Label), x.Value)
	}
	fmt.Fprintf(&b, `<text x="0" y="%d" class="axis">%s</text><text x="%d" y="%d" class="axis" text-anchor="end">%s</text>`,
		height+12, template.HTMLEscapeString(bars[0].Label), width, height+12, template.HTMLEscapeString(bars[len(bars)-1].Label))
	fmt.Fprintf(&b, `<text x="%d" y="10" class="axis" text-anchor="end">max %g</text></svg>`, width, maxV)
	return template.HTML(b.String())
}

// point is one sample of a line chart.
type point struct {
	T time.Time
	V float64
}

// lineChart draws samples over [from, to] as a polyline.
func lineChart(title string, pts []point, from, to time.Time, width, height int, unit string) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" viewBox="0 0 %d %d" width="%d" height="%d"><title>%s</title>`,
		width, height+14, width, height+14, template.HTMLEscapeString(title))
	maxV := 0.0
	for _, p := range pts {
		maxV = max(maxV, p.V)
	}
	span := to.Sub(from).Seconds()
	if len(pts) == 0 || maxV == 0 || span <= 0 {
		fmt.Fprintf(&b, `<text x="4" y="%d" class="muted">no traffic</text></svg>`, height/2)
		return template.HTML(b.String())
	}
	b.WriteString(`<polyline class="line" fill="none" points="`)
	for _, p := range pts {
		x := p.T.Sub(from).Seconds() / span * float64(width)
		y := float64(height) - p.V/maxV*float64(height-2)
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	b.WriteString(`"/>`)
	fmt.Fprintf(&b, `<text x="0" y="%d" class="axis">%s</text><text x="%d" y="%d" class="axis" text-anchor="end">%s</text>`,
		height+12, from.UTC().Format("01-02 15:04"), width, height+12, to.UTC().Format("01-02 15:04"))
	fmt.Fprintf(&b, `<text x="%d" y="10" class="axis" text-anchor="end">max %s</text></svg>`, width, template.HTMLEscapeString(humanBytes(maxV)+unit))
	return template.HTML(b.String())
}

// span is one stretch of a timeline.
type span struct {
	From, To time.Time
	Class    string
	Label    string
}

// timeline draws status spans over [from, to] as one coloured strip.
func timeline(title string, spans []span, from, to time.Time, width, height int) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" viewBox="0 0 %d %d" width="%d" height="%d"><title>%s</title>`,
		width, height+14, width, height+14, template.HTMLEscapeString(title))
	total := to.Sub(from).Seconds()
	for _, sp := range spans {
		if total <= 0 {
			break
		}
		x0 := max(sp.From.Sub(from).Seconds(), 0) / total * float64(width)
		x1 := min(sp.To.Sub(from).Seconds(), total) / total * float64(width)
		if x1 <= x0 {
			continue
		}
		fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="0" width="%.1f" height="%d"><title>%s</title></rect>`,
			template.HTMLEscapeString(sp.Class), x0, x1-x0, height, template.HTMLEscapeString(sp.Label))
	}
	fmt.Fprintf(&b, `<text x="0" y="%d" class="axis">%s</text><text x="%d" y="%d" class="axis" text-anchor="end">%s</text></svg>`,
		height+12, from.UTC().Format("01-02 15:04"), width, height+12, to.UTC().Format("01-02 15:04"))
	return template.HTML(b.String())
}

func humanBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
