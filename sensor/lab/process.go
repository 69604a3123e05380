package lab

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxOutput bounds the output a Process keeps: the latest maxOutput bytes.
const maxOutput = 4 << 20

// StopGrace is how long Process.Stop waits after SIGTERM before SIGKILL.
const StopGrace = 5 * time.Second

// Command returns an unstarted command that runs argv inside the named
// host's namespace (through "ip netns exec", which execs argv in place, so
// the command's PID is argv's).
func (l *Lab) Command(ctx context.Context, host string, argv ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("lab %s: no command given to run on %s", l.Name, host)
	}
	ns, err := l.Namespace(host)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = StopGrace
	return cmd, nil
}

// Run runs argv inside the named host's namespace and returns its combined
// output; a failure's error includes that output.
func (l *Lab) Run(ctx context.Context, host string, argv ...string) (string, error) {
	ns, err := l.Namespace(host)
	if err != nil {
		return "", err
	}
	if len(argv) == 0 {
		return "", fmt.Errorf("lab %s: no command given to run on %s", l.Name, host)
	}
	return run(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// Process is a long-lived program the lab started inside one of its
// namespaces. Its standard output and error are captured together. The lab
// stops it on Down; cancelling the context it was started with stops it
// too.
type Process struct {
	// Host is the lab host it runs on.
	Host string
	// Cmd is the running command; Cmd.Process.Pid is the program's PID.
	Cmd *exec.Cmd

	out  *limitedBuffer
	done chan struct{}
	err  error
}

// Start starts argv inside the named host's namespace and returns at once.
func (l *Lab) Start(ctx context.Context, host string, argv ...string) (*Process, error) {
	cmd, err := l.Command(ctx, host, argv...)
	if err != nil {
		return nil, err
	}
	p := &Process{Host: host, Cmd: cmd, out: &limitedBuffer{max: maxOutput}, done: make(chan struct{})}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s on lab host %s: %w", strings.Join(argv, " "), host, err)
	}
	l.mu.Lock()
	if l.procs == nil {
		l.procs = make(map[*Process]struct{})
	}
	l.procs[p] = struct{}{}
	l.mu.Unlock()
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%s on lab host %s: %w", strings.Join(argv, " "), host, err)
		}
		p.err = err
		l.mu.Lock()
		delete(l.procs, p)
		l.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Output returns what the process has written to standard output and
// error so far (the latest 4 MiB of it).
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its exit error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM, then SIGKILL if the process is still running after
// StopGrace, and waits for it to exit. It returns nil when the process was
// stopped by the signal or had already exited cleanly.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopGrace):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) && !ee.Exited() {
		return nil // ended by our signal
	}
	return p.err
}

// limitedBuffer is a goroutine-safe buffer that keeps the last max bytes
// written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		// Drop the oldest bytes, in steps of at least a quarter of max so
		// the copy is amortised.
		drop := min(len(b.buf), max(over, b.max/4))
		b.buf = append(b.buf[:0], b.buf[drop:]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
