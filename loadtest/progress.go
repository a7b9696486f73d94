package loadtest

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/schollz/progressbar/v3"
)

// live is the live display of a run: on a terminal, a progress bar whose
// description carries the running figures, with events printed above it;
// elsewhere (a pipe, a log, a test), one plain line per update and per
// event. Safe for concurrent use.
type live struct {
	mu  sync.Mutex
	w   io.Writer
	tty bool
	bar *progressbar.ProgressBar
}

func newLive(w io.Writer) *live {
	l := &live{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			l.tty = true
		}
	}
	return l
}

// begin starts a bar that will count up to total (in whatever unit the
// updates use: milliseconds, requests).
func (l *live) begin(total int64, status string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.tty {
		return
	}
	l.bar = progressbar.NewOptions64(max(total, 1),
		progressbar.OptionSetWriter(l.w),
		progressbar.OptionSetWidth(24),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetDescription(status),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetTheme(progressbar.Theme{Saucer: "=", SaucerHead: ">", SaucerPadding: " ", BarStart: "[", BarEnd: "]"}),
	)
}

// update moves the bar to done and shows status; without a terminal it
// prints status as a line.
func (l *live) update(done int64, status string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bar == nil {
		fmt.Fprintln(l.w, status)
		return
	}
	l.bar.Describe(status)
	_ = l.bar.Set64(min(done, l.bar.GetMax64()-1)) // reaching the end would print a newline
}

// event prints a line above the bar.
func (l *live) event(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bar != nil {
		_ = l.bar.Clear()
		fmt.Fprintln(l.w, line)
		_ = l.bar.RenderBlank()
		return
	}
	fmt.Fprintln(l.w, line)
}

// end removes the bar and prints the final status line.
func (l *live) end(status string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bar != nil {
		_ = l.bar.Clear()
		l.bar = nil
	}
	if status != "" {
		fmt.Fprintln(l.w, status)
	}
}
