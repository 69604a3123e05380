package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// CheckResult is one health check's verdict.
type CheckResult struct {
	Health schema.Health
	Reason string // the plugin's first output line, or why the check failed
}

// RunCheck runs one check following the Nagios plugin convention: the
// command line is run by /bin/sh; exit 0 is green, 1 yellow, 2 red, anything
// else (3 UNKNOWN, a crash, a timeout) yellow "check failed". The first line
// of standard output is the reason.
func RunCheck(ctx context.Context, cmdline string, timeout time.Duration) CheckResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, n: 4096}
	err := cmd.Run()
	line := firstLine(out.Bytes())
	if ctx.Err() == context.DeadlineExceeded {
		return CheckResult{Health: schema.HealthYellow, Reason: fmt.Sprintf("check failed: %q timed out after %v", cmdline, timeout)}
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return CheckResult{Health: schema.HealthYellow, Reason: fmt.Sprintf("check failed: %q: %v", cmdline, err)}
		}
		code = ee.ExitCode()
	}
	switch code {
	case 0:
		return CheckResult{Health: schema.HealthGreen, Reason: line}
	case 1:
		return CheckResult{Health: schema.HealthYellow, Reason: orDefault(line, cmdline+": warning")}
	case 2:
		return CheckResult{Health: schema.HealthRed, Reason: orDefault(line, cmdline+": critical")}
	}
	r := fmt.Sprintf("check failed: %q exited %d", cmdline, code)
	if line != "" {
		r += ": " + line
	}
	return CheckResult{Health: schema.HealthYellow, Reason: r}
}

// SignatureCheck is the built-in signature-age check: a file older than
// maxAge (or missing) makes the endpoint yellow.
func SignatureCheck(path string, maxAge time.Duration, now time.Time) CheckResult {
	st, err := os.Stat(path)
	if err != nil {
		return CheckResult{Health: schema.HealthYellow, Reason: fmt.Sprintf("signature file %s: %v", path, err)}
	}
	age := now.Sub(st.ModTime())
	if age > maxAge {
		return CheckResult{Health: schema.HealthYellow, Reason: fmt.Sprintf("signatures are %s old (limit %s)", age.Round(time.Minute), maxAge)}
	}
	return CheckResult{Health: schema.HealthGreen}
}

// Worst combines results: the worst health wins, with the reasons of every
// result that is not green.
func Worst(results []CheckResult) (schema.Health, []string) {
	h := schema.HealthGreen
	var reasons []string
	for _, r := range results {
		if r.Health > h {
			h = r.Health
		}
		if r.Health != schema.HealthGreen && r.Reason != "" {
			reasons = append(reasons, truncate(r.Reason, 256))
		}
	}
	if len(reasons) > 64 {
		reasons = reasons[:64]
	}
	return h, reasons
}

func firstLine(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	if sc.Scan() {
		return truncate(strings.TrimSpace(sc.Text()), 256)
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

type limitedWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if room := l.n - l.w.Len(); room > 0 {
		if len(p) > room {
			l.w.Write(p[:room])
		} else {
			l.w.Write(p)
		}
	}
	return len(p), nil
}
