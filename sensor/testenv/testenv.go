// Package testenv decides whether tests that need root, network namespaces
// or outside programs can run, and builds the throw-away network namespaces
// and veth pairs those tests use.
//
// Outside CI a test that lacks what it needs is skipped with a message
// starting "[privileged]". In CI (CI=true) or with TAPBEAT_REQUIRE_PRIVILEGED=1
// it fails instead, so a green CI run means every privileged test ran.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Strict reports whether missing privileges or programs fail tests instead
// of skipping them.
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("TAPBEAT_REQUIRE_PRIVILEGED") == "1"
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("[privileged] %s (CI must run this test: run as root with the packages .ci/run installs)", why)
	}
	t.Skipf("[privileged] %s", why)
}

// RequireRoot skips (or in CI fails) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "needs root for network namespaces and raw sockets")
	}
}

// RequireCommands skips (or in CI fails) unless every named program is on PATH.
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			unavailable(t, fmt.Sprintf("needs %s on PATH", n))
		}
	}
}

// RequireAnyFile skips (or in CI fails) unless one of paths exists: a
// plug-in module a program loads, for instance. what names it and the
// package that provides it.
func RequireAnyFile(t testing.TB, what string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return
		}
	}
	unavailable(t, fmt.Sprintf("needs %s (none of %s)", what, strings.Join(paths, ", ")))
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(bytes.TrimSpace(out))
}

var counter atomic.Uint64

// UniqueName returns a short name unique to this process, for namespaces
// and interfaces (at most 15 bytes with the prefix).
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s%05d%d", prefix, os.Getpid()%100000, counter.Add(1))
}

// Netns is a network namespace the test created; it is deleted when the
// test ends.
type Netns struct {
	Name string
}

// NewNetns creates a namespace with its loopback up.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	RequireCommands(t, "ip")
	n := &Netns{Name: UniqueName("tbns")}
	Run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.Name).Run() })
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// Run runs a command inside the namespace.
func (n *Netns) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Command returns an unstarted command that runs inside the namespace.
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs f on an OS thread that has entered the namespace; sockets f opens
// stay in the namespace after it returns.
func (n *Netns) Do(t testing.TB, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked and so discarded when this goroutine
		// ends, so no other goroutine ever runs in the namespace.
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+n.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", n.Name, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", n.Name, err)
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// Veth creates a veth pair with one end in a and the other in b (nil means
// the test's own namespace), both up, and returns the two interface names.
func Veth(t testing.TB, a, b *Netns) (string, string) {
	t.Helper()
	RequireRoot(t)
	ea, eb := UniqueName("tva"), UniqueName("tvb")
	Run(t, "ip", "link", "add", ea, "type", "veth", "peer", "name", eb)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", ea).Run() })
	for _, side := range []struct {
		ns   *Netns
		name string
	}{{a, ea}, {b, eb}} {
		if side.ns != nil {
			Run(t, "ip", "link", "set", side.name, "netns", side.ns.Name)
			side.ns.Run(t, "ip", "link", "set", side.name, "up")
		} else {
			Run(t, "ip", "link", "set", side.name, "up")
		}
	}
	return ea, eb
}
