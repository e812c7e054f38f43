package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// path is the way a scenario's client reaches the upstream.
type path string

const (
	direct    path = "direct"    // sandbox not attached, client trusts the upstream CA
	viaHermes path = "hermes"    // sandbox attached, client trusts the hermes CA
	viaMitm   path = "mitmproxy" // peer proxy, transparent mode
	viaSplit  path = "sslsplit"  // peer proxy, transparent mode
)

// How a row compares its two figures.
const (
	cmpRatio = "ratio" // hermes / direct (or peer / hermes)
	cmpAdded = "added" // hermes - direct
	cmpNone  = ""      // one figure only
)

// row is one line of the table. Direct and Hermes are medians over rounds;
// nil means the figure does not exist for that side. Rounds keeps every
// round's figure, so the JSON holds what the medians came from.
type row struct {
	Scenario string               `json:"scenario"`
	Metric   string               `json:"metric"`
	Unit     string               `json:"unit"`
	Direct   *float64             `json:"direct,omitempty"`
	Hermes   *float64             `json:"hermes,omitempty"`
	Compare  string               `json:"compare,omitempty"`
	Value    *float64             `json:"value,omitempty"` // the ratio or the added amount
	Target   string               `json:"target,omitempty"`
	Met      *bool                `json:"met,omitempty"`
	Note     string               `json:"note,omitempty"`
	Rounds   map[string][]float64 `json:"rounds,omitempty"`
	// Columns names the two sides when they are not direct and hermes-netd
	// (the peer rows compare hermes-netd with a peer).
	Columns [2]string `json:"columns"`
}

// report is everything a run measured.
type report struct {
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Quick    bool      `json:"quick"`
	Rounds   int       `json:"rounds"`
	Settings settings  `json:"settings"`
	Machine  machine   `json:"machine"`
	// LoadAverage is /proc/loadavg at the start and at the end: on a shared
	// machine, other work competes for the CPUs and every figure moves.
	LoadAverage [2]string `json:"load_average"`
	Notes       []string  `json:"notes,omitempty"`
	Rows        []row     `json:"rows"`
}

func (r *report) add(x row) {
	std := [2]string{string(direct), string(viaHermes)}
	if x.Columns == [2]string{} {
		x.Columns = std
	}
	// Rounds of a row made by compared are filed under direct and hermes;
	// file them under the columns' names instead.
	if _, ok := x.Rounds[string(direct)]; ok && x.Columns != std {
		x.Rounds = map[string][]float64{
			x.Columns[0]: x.Rounds[string(direct)],
			x.Columns[1]: x.Rounds[string(viaHermes)],
		}
	}
	r.Rows = append(r.Rows, x)
}

// unmeasurable records a scenario that could not run, and why.
func (r *report) unmeasurable(scenario, metric, why string) {
	r.add(row{Scenario: scenario, Metric: metric, Note: "not measurable: " + why})
}

// f points at v; NaN (no figure) is nil, which JSON cannot hold otherwise.
func f(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// val is the figure p points at, NaN when there is none; every comparison
// with NaN is false, so a missing figure never meets a target.
func val(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank percentile p (0-100) of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// compared fills a row from per-round figures of both sides; the caller
// sets the target and whether it is met.
func compared(scenario, metric, unit, how string, d, h []float64) row {
	x := row{Scenario: scenario, Metric: metric, Unit: unit, Compare: how,
		Rounds: map[string][]float64{string(direct): d, string(viaHermes): h}}
	dm, hm := median(d), median(h)
	x.Direct, x.Hermes = f(dm), f(hm)
	switch how {
	case cmpRatio:
		x.Value = f(hm / dm)
	case cmpAdded:
		x.Value = f(hm - dm)
	}
	return x
}

func (x row) withTarget(target string, met bool) row {
	x.Target, x.Met = target, &met
	return x
}

func (x row) withNote(n string) row {
	x.Note = n
	return x
}

// printTable writes the table: scenario, metric, direct, hermes, ratio or
// added, target, met.
func (r *report) printTable(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmetric\tdirect\thermes\tratio/added\ttarget\tmet")
	for _, x := range r.Rows {
		d, h, cmp, met := cells(x)
		metric := x.Metric
		if x.Note != "" && x.Direct == nil && x.Hermes == nil {
			// The first line only; the JSON has all of it.
			n, _, _ := strings.Cut(x.Note, "\n")
			if len(n) > 160 {
				n = n[:160] + "..."
			}
			metric += " (" + n + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Scenario, metric, d, h, cmp,
			orDash(x.Target), met)
	}
	tw.Flush()
	fmt.Fprintf(out, "load average (1, 5, 15 min) at start: %s; at end: %s\n",
		r.LoadAverage[0], r.LoadAverage[1])
	notes := r.Notes
	for _, x := range r.Rows {
		if x.Note != "" && (x.Direct != nil || x.Hermes != nil) {
			notes = append(notes, x.Scenario+" "+x.Metric+": "+x.Note)
		}
	}
	for _, n := range notes {
		fmt.Fprintln(out, "note:", n)
	}
}

// cells formats a row's direct, hermes, comparison and met columns.
func cells(x row) (d, h, cmp, met string) {
	d, h = fmtVal(x.Direct, x.Unit), fmtVal(x.Hermes, x.Unit)
	if x.Columns != [2]string{string(direct), string(viaHermes)} {
		d = x.Columns[0] + " " + d
		h = x.Columns[1] + " " + h
	}
	cmp = "-"
	switch {
	case x.Value != nil && x.Compare == cmpRatio:
		cmp = fmt.Sprintf("%.2fx", val(x.Value))
	case x.Value != nil && x.Compare == cmpAdded:
		cmp = "+" + fmtVal(x.Value, x.Unit)
		if val(x.Value) < 0 {
			cmp = fmtVal(x.Value, x.Unit)
		}
	}
	met = "-"
	if x.Met != nil {
		met = map[bool]string{true: "yes", false: "NO"}[*x.Met]
	}
	return d, h, cmp, met
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtVal(v *float64, unit string) string {
	if v == nil {
		return "-"
	}
	a := math.Abs(*v)
	var s string
	switch {
	case a == 0 || a >= 100 || (a < 1e6 && a == math.Trunc(a)):
		s = strconv.FormatFloat(*v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(*v, 'f', 1, 64)
	default:
		s = strconv.FormatFloat(*v, 'f', 2, 64)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func (r *report) writeJSON(file string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}

// machine describes where the numbers come from.
type machine struct {
	Uname     string `json:"uname"`
	Kernel    string `json:"kernel"`
	CPU       string `json:"cpu"`
	NumCPU    int    `json:"nproc"`
	MemoryKiB int64  `json:"memory_kib"`
	Go        string `json:"go"`
	H2load    string `json:"h2load,omitempty"`
	Wrk       string `json:"wrk,omitempty"`
	Mitmproxy string `json:"mitmproxy,omitempty"`
	SSLsplit  string `json:"sslsplit,omitempty"`
}

func describeMachine() machine {
	m := machine{NumCPU: runtime.NumCPU(), Go: runtime.Version()}
	m.Uname = firstLine(cmdOut("uname", "-a"))
	m.Kernel = firstLine(cmdOut("uname", "-r"))
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if fs := strings.Fields(l); len(fs) >= 2 && fs[0] == "MemTotal:" {
				m.MemoryKiB, _ = strconv.ParseInt(fs[1], 10, 64)
			}
		}
	}
	m.H2load = firstLine(cmdOut("h2load", "--version"))
	m.Wrk = firstLine(cmdOut("wrk", "-v"))
	m.Mitmproxy = firstLine(cmdOut("mitmdump", "--version"))
	m.SSLsplit = firstLine(cmdOut("sslsplit", "-V"))
	return m
}

func cmdOut(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	return string(out)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "unknown"
	}
	return strings.Join(fs[:3], " ")
}

// writeMarkdown writes the table as Markdown, for the README.
func (r *report) writeMarkdown(file string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | metric | direct | hermes-netd | ratio / added | target | met |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|\n")
	for _, x := range r.Rows {
		d, h, cmp, met := cells(x)
		if met == "NO" {
			met = "**NO**"
		}
		metric := x.Metric
		if n, _, _ := strings.Cut(x.Note, "\n"); x.Direct == nil && x.Hermes == nil && n != "" {
			metric += " (" + n + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", x.Scenario, metric, d, h,
			cmp, orDash(x.Target), met)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}
