// Package supervise runs one long-lived program (tapbeat run) and keeps it
// running: it restarts it with exponential backoff when it exits, copies its
// output line by line to the console and to a log sink, notices the line
// that says it is ready, and stops it with SIGTERM (then SIGKILL) when the
// context ends.
package supervise

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Supervisor runs Path with Args. Set the fields before calling Run.
type Supervisor struct {
	// Path and Args are the program and its arguments (Args excludes argv[0]).
	Path string
	Args []string
	// Env is the child's environment (nil means the init's).
	Env []string
	// Log receives the supervisor's own events.
	Log *slog.Logger
	// Output receives every line the child writes to stdout or stderr.
	Output func(line string)
	// ReadyText marks the child ready when a line contains it (default "sensor ready").
	ReadyText string
	// MinBackoff and MaxBackoff bound the delay between restarts (default 1s and 1m).
	MinBackoff, MaxBackoff time.Duration
	// ResetAfter: a run that lasted this long resets the backoff (default 2m).
	ResetAfter time.Duration
	// StopTimeout is how long the child gets after SIGTERM (default 20s).
	StopTimeout time.Duration

	mu    sync.Mutex
	state State
}

// State is what the status screen shows about the child.
type State struct {
	// Running is true while a child process exists.
	Running bool
	// PID of the current child.
	PID int
	// Starts counts the processes started.
	Starts int
	// Ready is true once the current child printed ReadyText.
	Ready bool
	// Since is when the current child started (or the last one exited).
	Since time.Time
	// LastExit describes how the previous child ended.
	LastExit string
	// NextStart is when a restart is due while the child is down.
	NextStart time.Time
}

// State returns a snapshot of the child's state.
func (s *Supervisor) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

func (s *Supervisor) update(f func(*State)) {
	s.mu.Lock()
	f(&s.state)
	s.mu.Unlock()
}

// Backoff returns the delay before restart number n (n >= 1 after the first
// failure): min doubled per failure, capped at max.
func Backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

func (s *Supervisor) defaults() {
	if s.ReadyText == "" {
		s.ReadyText = "sensor ready"
	}
	if s.MinBackoff <= 0 {
		s.MinBackoff = time.Second
	}
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = time.Minute
	}
	if s.ResetAfter <= 0 {
		s.ResetAfter = 2 * time.Minute
	}
	if s.StopTimeout <= 0 {
		s.StopTimeout = 20 * time.Second
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Output == nil {
		s.Output = func(string) {}
	}
}

// Run keeps the child running until ctx ends, then stops it and returns
// ctx's error. It returns early only if the program cannot be started at
// all (not found, not executable).
func (s *Supervisor) Run(ctx context.Context) error {
	s.defaults()
	failures := 0
	for {
		began := time.Now()
		started, err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !started {
			return fmt.Errorf("start %s: %w", s.Path, err)
		}
		if time.Since(began) >= s.ResetAfter {
			failures = 0
		}
		failures++
		delay := Backoff(failures, s.MinBackoff, s.MaxBackoff)
		s.update(func(st *State) { st.NextStart = time.Now().Add(delay) })
		s.Log.Warn("tapbeat run exited, restarting", "err", err, "after", delay, "restarts", failures)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// runOnce runs the child once; started is false when it could not be
// started at all.
func (s *Supervisor) runOnce(ctx context.Context) (started bool, err error) {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = s.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pw.Close()
		return false, err
	}
	s.update(func(st *State) {
		st.Running, st.PID, st.Ready, st.Since, st.NextStart = true, cmd.Process.Pid, false, time.Now(), time.Time{}
		st.Starts++
	})
	s.Log.Info("tapbeat run started", "pid", cmd.Process.Pid, "args", strings.Join(s.Args, " "))
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, s.ReadyText) {
				s.update(func(st *State) { st.Ready = true })
			}
			s.Output(line)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Log.Info("stopping tapbeat run", "pid", cmd.Process.Pid)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-done:
		case <-time.After(s.StopTimeout):
			s.Log.Warn("tapbeat run ignored SIGTERM, killing it", "pid", cmd.Process.Pid, "waited", s.StopTimeout)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
	}
	<-lines
	exit := "exited cleanly"
	if err != nil {
		exit = err.Error()
	}
	s.update(func(st *State) {
		st.Running, st.PID, st.Ready, st.Since, st.LastExit = false, 0, false, time.Now(), exit
	})
	if ctx.Err() != nil {
		s.Log.Info("tapbeat run stopped", "result", exit)
	}
	if err == nil {
		return true, errors.New("exited with status 0")
	}
	return true, err
}
