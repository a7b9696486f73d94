package loadtest

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// A plot is a self-contained HTML page: inline SVG drawn here, inline CSS,
// no script and nothing fetched from anywhere, so it opens from a file on
// any machine and can be attached to a bug report.

// plotSeries is one line of a chart; NaN values break the line.
type plotSeries struct {
	name   string
	color  string
	dashed bool
	xs, ys []float64
}

// plotChart is one chart: lines over time, with vertical event markers.
type plotChart struct {
	title   string
	yLabel  string
	logY    bool
	series  []plotSeries
	markers []Event
	xMax    float64
}

// Chart geometry, in SVG units.
const (
	plotW, plotH               = 960.0, 300.0
	plotLeft, plotRight        = 64.0, 16.0
	plotTop, plotBottom        = 48.0, 40.0
	plotInnerW                 = plotW - plotLeft - plotRight
	plotInnerH                 = plotH - plotTop - plotBottom
	colorP50, colorP90         = "#2b8a3e", "#1971c2"
	colorP99, colorMax         = "#e8590c", "#c92a2a"
	colorOK, colorErr, colorB2 = "#1971c2", "#c92a2a", "#2b8a3e"
)

// timelineCharts draws a run's latency percentiles and throughput over
// time.
func timelineCharts(tl []Window, events []Event) []plotChart {
	xMax := 0.0
	var mid, p50, p90, p99, mx, ok, errs []float64
	for _, w := range tl {
		xMax = max(xMax, w.Start+w.Seconds)
		mid = append(mid, w.Start+w.Seconds/2)
		if w.OK+w.Errors == 0 {
			for _, s := range []*[]float64{&p50, &p90, &p99, &mx} {
				*s = append(*s, math.NaN())
			}
		} else {
			p50, p90, p99, mx = append(p50, w.P50), append(p90, w.P90), append(p99, w.P99), append(mx, w.Max)
		}
		ok = append(ok, float64(w.OK)/w.Seconds)
		errs = append(errs, float64(w.Errors)/w.Seconds)
	}
	return []plotChart{
		{
			title: "Latency percentiles over time (from the scheduled send time)", yLabel: "ms (log scale)", logY: true, xMax: xMax, markers: events,
			series: []plotSeries{
				{name: "p50", color: colorP50, xs: mid, ys: p50},
				{name: "p90", color: colorP90, xs: mid, ys: p90},
				{name: "p99", color: colorP99, xs: mid, ys: p99},
				{name: "max", color: colorMax, xs: mid, ys: mx, dashed: true},
			},
		},
		{
			title: "Throughput over time", yLabel: "answers per second", xMax: xMax, markers: events,
			series: []plotSeries{
				{name: "good answers/s", color: colorOK, xs: mid, ys: ok},
				{name: "errors/s", color: colorErr, xs: mid, ys: errs},
			},
		},
	}
}

// writePlot writes an HTML page with a title, a few lines of summary and
// the charts.
func writePlot(w io.Writer, title string, summary []string, charts []plotChart) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%s</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1000px;color:#212529;padding:0 12px}
h1{font-size:20px;margin:0 0 8px} h2{font-size:15px;margin:24px 0 4px}
.summary{font:13px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f8f9fa;border:1px solid #dee2e6;padding:8px 12px;white-space:pre-wrap}
.legend span{display:inline-block;margin-right:16px;font-size:13px}
.legend i{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:5px}
svg{display:block;max-width:100%%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#495057}
</style></head><body>
<h1>%s</h1>
`, html.EscapeString(title), html.EscapeString(title))
	if len(summary) > 0 {
		fmt.Fprintf(bw, "<div class=\"summary\">%s</div>\n", html.EscapeString(strings.Join(summary, "\n")))
	}
	for _, c := range charts {
		writeChart(bw, c)
	}
	fmt.Fprintln(bw, "</body></html>")
	return bw.Flush()
}

func writeChart(w *bufio.Writer, c plotChart) {
	fmt.Fprintf(w, "<h2>%s</h2>\n<div class=\"legend\">", html.EscapeString(c.title))
	for _, s := range c.series {
		style := "background:" + s.color
		if s.dashed {
			style = "background:repeating-linear-gradient(90deg," + s.color + " 0 4px,transparent 4px 7px)"
		}
		fmt.Fprintf(w, "<span><i style=\"%s\"></i>%s</span>", style, html.EscapeString(s.name))
	}
	fmt.Fprintln(w, "</div>")
	fmt.Fprintf(w, "<svg viewBox=\"0 0 %.0f %.0f\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"%s\">\n",
		plotW, plotH, html.EscapeString(c.title))

	// Y range.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range c.series {
		for _, y := range s.ys {
			if math.IsNaN(y) || (c.logY && y <= 0) {
				continue
			}
			lo, hi = min(lo, y), max(hi, y)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	var yTicks []float64
	var yOf func(float64) float64
	if c.logY {
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
		for t := lo; t <= hi*1.0001; t *= 10 {
			yTicks = append(yTicks, t)
		}
		l0, l1 := math.Log10(lo), math.Log10(hi)
		yOf = func(v float64) float64 {
			v = max(v, lo)
			return plotTop + plotInnerH*(1-(math.Log10(v)-l0)/(l1-l0))
		}
	} else {
		lo = 0
		step := niceStep(hi / 5)
		hi = math.Max(step, math.Ceil(hi/step)*step)
		for t := 0.0; t <= hi*1.0001; t += step {
			yTicks = append(yTicks, t)
		}
		yOf = func(v float64) float64 { return plotTop + plotInnerH*(1-v/hi) }
	}
	xMax := max(c.xMax, 1e-9)
	xOf := func(x float64) float64 { return plotLeft + plotInnerW*x/xMax }

	// Grid and axes.
	for _, t := range yTicks {
		y := yOf(t)
		fmt.Fprintf(w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e9ecef\"/>", plotLeft, y, plotLeft+plotInnerW, y)
		fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", plotLeft-6, y+4, tickLabel(t))
	}
	xStep := niceStep(xMax / 10)
	for t := 0.0; t <= xMax*1.0001; t += xStep {
		x := xOf(t)
		fmt.Fprintf(w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#f1f3f5\"/>", x, plotTop, x, plotTop+plotInnerH)
		fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%ss</text>\n", x, plotTop+plotInnerH+16, tickLabel(t))
	}
	fmt.Fprintf(w, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#adb5bd\"/>\n", plotLeft, plotTop, plotInnerW, plotInnerH)
	fmt.Fprintf(w, "<text x=\"14\" y=\"%.1f\" transform=\"rotate(-90 14 %.1f)\" text-anchor=\"middle\">%s</text>\n",
		plotTop+plotInnerH/2, plotTop+plotInnerH/2, html.EscapeString(c.yLabel))
	fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">time since the start of the run</text>\n", plotLeft+plotInnerW/2, plotH-4)

	// Event markers; each label goes on the highest of three rows where it
	// does not run into the label before it.
	var rowEnd [3]float64
	for _, m := range c.markers {
		if m.At < 0 || m.At > xMax {
			continue
		}
		x := xOf(m.At)
		fmt.Fprintf(w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#868e96\" stroke-dasharray=\"3 3\"/>", x, plotTop, x, plotTop+plotInnerH)
		width := 6 * float64(len(m.What)) // about 6 units a character at 11px
		anchor, from, to := "start", x+3, x+3+width
		if to > plotW {
			anchor, from, to = "end", x-3-width, x-3
		}
		row := 0
		for row < len(rowEnd)-1 && rowEnd[row] > from {
			row++
		}
		rowEnd[row] = to + 8
		tx := x + 3
		if anchor == "end" {
			tx = x - 3
		}
		fmt.Fprintf(w, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">%s</text>\n", tx, plotTop-32+float64(row)*12, anchor, html.EscapeString(m.What))
	}

	// Lines.
	for _, s := range c.series {
		var d strings.Builder
		pen := false
		for i := range s.xs {
			y := s.ys[i]
			if math.IsNaN(y) || (c.logY && y <= 0) {
				pen = false
				continue
			}
			cmd := "L"
			if !pen {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f", cmd, xOf(s.xs[i]), yOf(y))
			pen = true
		}
		dash := ""
		if s.dashed {
			dash = " stroke-dasharray=\"5 3\""
		}
		fmt.Fprintf(w, "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s><title>%s</title></path>\n",
			d.String(), s.color, dash, html.EscapeString(s.name))
	}
	fmt.Fprintln(w, "</svg>")
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func tickLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", math.Round(v*1000)/1000)
}

// WritePlot writes the run's latency percentiles and throughput over time
// as a self-contained HTML page.
func (r *Report) WritePlot(w io.Writer) error {
	title := fmt.Sprintf("socialroute loadtest: %s", r.Mode)
	if r.Mode == string(OpenLoop) {
		title += fmt.Sprintf(" at %.0f req/s", r.Rate)
	}
	summary := []string{
		fmt.Sprintf("%s requests measured in %.1fs (after %.1fs of warm-up): %.0f good answers/s, %s errors",
			thousands(r.Requests), r.Seconds, r.Warmup, r.Throughput, thousands(r.Errors)),
		fmt.Sprintf("latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f",
			r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max),
		fmt.Sprintf("locality %s, web-tier cache hit ratio %s", pctOr(r.Locality), pctOr(r.Cache.HitRatio)),
	}
	return writePlot(w, title, summary, timelineCharts(r.Timeline, r.Events))
}

// WritePlot writes the demo's latency percentiles and throughput over
// time, with the crash, gossip's verdicts and the recovery marked, as a
// self-contained HTML page.
func (r *DemoReport) WritePlot(w io.Writer) error {
	var summary []string
	for _, p := range r.Phases {
		summary = append(summary, fmt.Sprintf("%-13s %s requests, %d errors, locality %s, p50 %.2f ms, p99 %.2f ms, cache hits %s",
			p.Name, thousands(p.Requests), p.Errors, pct(p.Locality), p.Latency.P50, p.Latency.P99, pctOr(p.CacheHitRatio)))
	}
	return writePlot(w, fmt.Sprintf("socialroute demo: %s crashes and comes back (open loop, %.0f req/s)", r.Failover.Datacenter, r.Rate),
		summary, timelineCharts(r.Timeline, r.Events))
}
