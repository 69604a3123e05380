package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// debianInclude is what the clean Debian root gets beyond minbase: systemd
// (systemctl enable, systemd-analyze verify) and man-db (man), as on any
// Debian server.
var debianInclude = []string{"systemd", "man-db"}

// debFiles are the files each .deb must install; the .rpm carries the same
// files at the paths RPM distributions use (rpmPath).
var debFiles = map[string][]string{
	"tapbeat": {
		"/etc/default/tapbeat",
		"/lib/systemd/system/tapbeat.service",
		"/usr/bin/tapbeat",
		"/usr/share/bash-completion/completions/tapbeat",
		"/usr/share/doc/tapbeat/DEPLOYMENT.md",
		"/usr/share/doc/tapbeat/README.md",
		"/usr/share/fish/vendor_completions.d/tapbeat.fish",
		"/usr/share/man/man8/tapbeat.8.gz",
		"/usr/share/zsh/vendor-completions/_tapbeat",
	},
	"tapbeat-agent": {
		"/etc/default/tapbeat-agent",
		"/lib/systemd/system/tapbeat-agent.service",
		"/usr/bin/tapbeat-agent",
		"/usr/share/bash-completion/completions/tapbeat-agent",
		"/usr/share/fish/vendor_completions.d/tapbeat-agent.fish",
		"/usr/share/man/man8/tapbeat-agent.8.gz",
		"/usr/share/zsh/vendor-completions/_tapbeat-agent",
	},
}

func rpmPath(p string) string {
	p = strings.Replace(p, "/lib/systemd/", "/usr/lib/systemd/", 1)
	return strings.Replace(p, "/zsh/vendor-completions/", "/zsh/site-functions/", 1)
}

// TestPackagesInstallOnDebian12 builds the packages and installs both .debs
// into a clean Debian 12 root (debootstrap --variant=minbase, cached), then
// removes and purges them.
func TestPackagesInstallOnDebian12(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "debootstrap", "rpm", "tar", "chroot", "dpkg-deb", "go", "git")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	version := "0.0.0+test1.0123456789ab"
	pkgs := buildPackages(ctx, t, version)
	t.Logf("packages built in %v", time.Since(start).Round(100*time.Millisecond))

	rootStart := time.Now()
	root := debianRoot(ctx, t)
	t.Logf("Debian 12 root ready in %v", time.Since(rootStart).Round(100*time.Millisecond))
	in := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "chroot", append([]string{root}, args...)...).CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := in(args...)
		if err != nil {
			t.Fatalf("in the Debian root: %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	exists := func(p string) bool {
		_, err := os.Lstat(filepath.Join(root, p))
		return err == nil
	}

	var debs []string
	for _, p := range pkgs {
		if strings.HasSuffix(p, ".deb") {
			dst := filepath.Join("/tmp", filepath.Base(p))
			copyFile(t, p, filepath.Join(root, dst))
			debs = append(debs, dst)
		}
	}
	out := must(append([]string{"dpkg", "-i"}, debs...)...)
	t.Logf("dpkg -i:\n%s", out)
	for _, say := range []string{"the sensor is not configured yet, so it was not started", "waiting for this endpoint's enrollment bundle"} {
		if !strings.Contains(out, say) {
			t.Errorf("dpkg -i output does not say %q", say)
		}
	}

	t.Run("files", func(t *testing.T) {
		for pkg, files := range debFiles {
			for _, f := range files {
				if !exists(f) {
					t.Errorf("%s: %s not installed", pkg, f)
				}
			}
			conffiles := must("dpkg-query", "-W", "-f", "${Conffiles}", pkg)
			if !strings.Contains(conffiles, "/etc/default/"+pkg+" ") {
				t.Errorf("%s: /etc/default/%s is not a conffile: %q", pkg, pkg, conffiles)
			}
		}
	})

	t.Run("state directories", func(t *testing.T) {
		uid := strings.TrimSpace(must("id", "-u", "tapbeat"))
		for dir, owner := range map[string]string{"/var/lib/tapbeat": uid, "/var/lib/tapbeat-agent": "0"} {
			st, err := os.Stat(filepath.Join(root, dir))
			if err != nil {
				t.Errorf("%s: %v", dir, err)
				continue
			}
			if st.Mode().Perm() != 0o700 || fmt.Sprint(st.Sys().(*syscall.Stat_t).Uid) != owner {
				t.Errorf("%s: mode %v owner %d, want 0700 owned by uid %s", dir, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid, owner)
			}
		}
	})

	t.Run("units", func(t *testing.T) {
		// The agent starts at boot and waits for its bundle; the sensor
		// stays off until `tapbeat init` and the administrator enable it.
		if !exists("/etc/systemd/system/multi-user.target.wants/tapbeat-agent.service") {
			t.Error("tapbeat-agent.service is not enabled after installation")
		}
		if exists("/etc/systemd/system/multi-user.target.wants/tapbeat.service") {
			t.Error("tapbeat.service is enabled before the sensor is configured")
		}
		if out, err := in("systemd-analyze", "verify", "tapbeat.service", "tapbeat-agent.service"); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("commands, manual pages and completions", func(t *testing.T) {
		if got := strings.TrimSpace(must("tapbeat", "--version")); got != "tapbeat version "+version+" (commit test)" {
			t.Errorf("tapbeat --version = %q", got)
		}
		if got := strings.TrimSpace(must("tapbeat-agent", "--version")); got != "tapbeat-agent version "+version+" (commit test)" {
			t.Errorf("tapbeat-agent --version = %q", got)
		}
		if page := must("env", "MANWIDTH=200", "man", "-P", "cat", "tapbeat"); !strings.Contains(page, "Security Heartbeat sensor") || !strings.Contains(page, "enroll") {
			t.Errorf("man tapbeat does not show the sensor's page:\n%.600s", page)
		}
		if page := must("env", "MANWIDTH=200", "man", "-P", "cat", "tapbeat-agent"); !strings.Contains(page, "--wait-for-bundle") {
			t.Errorf("man tapbeat-agent does not document --wait-for-bundle:\n%.600s", page)
		}
		must("bash", "-n", "/usr/share/bash-completion/completions/tapbeat")
		// What the bash and zsh scripts ask the binary for.
		if words := strings.Fields(must("tapbeat", "--generate-bash-completion")); !slices.Contains(words, "enroll") || !slices.Contains(words, "run") {
			t.Errorf("tapbeat --generate-bash-completion = %q, want the commands", words)
		}
		if fish, err := os.ReadFile(filepath.Join(root, "/usr/share/fish/vendor_completions.d/tapbeat-agent.fish")); err != nil || !strings.Contains(string(fish), "wait-for-bundle") {
			t.Errorf("fish completion of tapbeat-agent lacks its flags (%v)", err)
		}
		if zsh, err := os.ReadFile(filepath.Join(root, "/usr/share/zsh/vendor-completions/_tapbeat")); err != nil || !strings.HasPrefix(string(zsh), "#compdef tapbeat\n") {
			t.Errorf("zsh completion of tapbeat does not name the command (%v):\n%.80s", err, zsh)
		}
	})

	t.Run("agent waits for its bundle", func(t *testing.T) {
		agentWaits(ctx, t, root)
	})

	t.Run("the documented first steps", func(t *testing.T) {
		// What the postinst message and README say to do next, as the
		// service user, so the daemon can read what they write.
		must("runuser", "-u", "tapbeat", "--", "tapbeat", "init", "--dir", "/var/lib/tapbeat", "--org", "Example Corp", "--lan", "127.0.0.1")
		must("runuser", "-u", "tapbeat", "--", "tapbeat", "enroll", "--dir", "/var/lib/tapbeat", "--name", "ep1", "--out", "/tmp/ep1.bundle.json")
		if !exists("/var/lib/tapbeat/tapbeat.toml") || !exists("/tmp/ep1.bundle.json") {
			t.Fatal("init and enroll left no configuration or bundle")
		}
	})
	// The sensor's state (here its configuration and CA): removal must
	// keep it, purge must not.
	if !exists("/var/lib/tapbeat/tapbeat.toml") {
		if err := os.WriteFile(filepath.Join(root, "/var/lib/tapbeat/tapbeat.toml"), []byte("# kept\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	must("dpkg", "-r", "tapbeat", "tapbeat-agent")
	for _, f := range []string{"/var/lib/tapbeat/tapbeat.toml", "/var/lib/tapbeat-agent", "/etc/default/tapbeat", "/etc/default/tapbeat-agent"} {
		if !exists(f) {
			t.Errorf("dpkg -r removed %s: removal must keep state and settings", f)
		}
	}
	for _, f := range []string{"/usr/bin/tapbeat", "/usr/bin/tapbeat-agent", "/etc/systemd/system/multi-user.target.wants/tapbeat-agent.service"} {
		if exists(f) {
			t.Errorf("dpkg -r left %s", f)
		}
	}
	must("dpkg", "-P", "tapbeat", "tapbeat-agent")
	for _, f := range []string{"/var/lib/tapbeat", "/var/lib/tapbeat-agent", "/etc/default/tapbeat", "/etc/default/tapbeat-agent", "/etc/tapbeat-agent"} {
		if exists(f) {
			t.Errorf("dpkg -P left %s", f)
		}
	}

	t.Run("rpm file lists", func(t *testing.T) {
		for _, p := range pkgs {
			if !strings.HasSuffix(p, ".rpm") {
				continue
			}
			name := strings.TrimSpace(testenv.Run(t, "rpm", "-qp", "--qf", "%{NAME}", p))
			var want []string
			for _, f := range debFiles[name] {
				want = append(want, rpmPath(f))
			}
			sort.Strings(want)
			got := strings.Fields(testenv.Run(t, "rpm", "-qpl", p))
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("rpm -qpl %s:\n got %q\nwant %q", filepath.Base(p), got, want)
			}
			if conf := testenv.Run(t, "rpm", "-qpc", p); conf != "/etc/default/"+name {
				t.Errorf("rpm -qpc %s = %q, want /etc/default/%s", filepath.Base(p), conf, name)
			}
		}
	})
	t.Logf("whole test: %v", time.Since(start).Round(100*time.Millisecond))
}

// agentWaits runs the installed agent the way its unit does, inside the
// root: without a bundle it must keep running and say what it waits for,
// and it must notice the file once it appears.
func agentWaits(ctx context.Context, t *testing.T, root string) {
	unit, err := os.ReadFile(filepath.Join(root, "/lib/systemd/system/tapbeat-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	var execStart []string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
	}
	if len(execStart) == 0 {
		t.Fatal("the agent's unit has no ExecStart")
	}
	cmd := exec.CommandContext(ctx, "chroot", append([]string{root}, execStart...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer func() { _ = cmd.Process.Kill() }()
	waitFor := func(what string, within time.Duration) string {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the agent exited before saying %q", what)
				}
				if strings.Contains(l, what) {
					return l
				}
			case <-deadline:
				t.Fatalf("the agent did not say %q within %v", what, within)
			}
		}
	}
	l := waitFor("waiting for the enrollment bundle", 30*time.Second)
	if !strings.Contains(l, "/etc/tapbeat-agent/bundle.json") {
		t.Errorf("the waiting message does not name the bundle's path: %s", l)
	}
	// A service that failed would have exited by now and been restarted.
	select {
	case err := <-exited:
		t.Fatalf("the agent exited while waiting for its bundle: %v", err)
	case <-time.After(5 * time.Second):
	}
	bundle := filepath.Join(root, "/etc/tapbeat-agent/bundle.json")
	if err := os.WriteFile(bundle, []byte("not a bundle\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("enrollment bundle found", 30*time.Second)
	go func() {
		for range lines {
		}
	}()
	select {
	case err := <-exited:
		if err == nil {
			t.Fatal("the agent accepted a file that is no bundle")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent kept running on a file that is no bundle")
	}
	if err := os.Remove(bundle); err != nil {
		t.Fatal(err)
	}
}

// buildPackages builds static binaries of the current tree into a temporary
// bin directory and packages them.
func buildPackages(ctx context.Context, t *testing.T, version string) []string {
	t.Helper()
	bin := t.TempDir()
	for _, p := range Programs {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
			"-ldflags", "-s -w -X main.version="+version+" -X main.commit=test",
			"-o", filepath.Join(bin, p), "./cmd/"+p)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", p, err, out)
		}
	}
	built, err := Build(ctx, options{Bin: bin, Out: t.TempDir(), Version: version, Root: "../.."})
	if err != nil {
		t.Fatal(err)
	}
	return built
}

// debianRoot returns a fresh copy of a clean Debian 12 root. The root is
// built once with debootstrap and kept as a tarball in the cache directory
// (TAPBEAT_TEST_CACHE, default /var/cache/tapbeat-test); later runs only
// unpack it.
func debianRoot(ctx context.Context, t *testing.T) string {
	t.Helper()
	cache := os.Getenv("TAPBEAT_TEST_CACHE")
	if cache == "" {
		cache = "/var/cache/tapbeat-test"
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(cache, "debian12-minbase-"+strings.Join(debianInclude, "-")+".tar.gz")
	lock, err := os.OpenFile(tarball+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	// One builder at a time; the others wait and then unpack its result.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tarball); err != nil {
		buildDebianTarball(ctx, t, tarball)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	start := time.Now()
	testenv.Run(t, "tar", "-C", root, "-xzf", tarball)
	t.Logf("unpacked %s in %v", tarball, time.Since(start).Round(100*time.Millisecond))
	return root
}

func buildDebianTarball(ctx context.Context, t *testing.T, tarball string) {
	t.Helper()
	mirror := DebianMirror("/etc/apt", "bookworm")
	dir := t.TempDir()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(debianInclude, ","), "bookworm", dir, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap from %s: %v\n%s", mirror, err, tail(out, 3000))
	}
	// Downloaded archives are not part of a clean system.
	archives, _ := filepath.Glob(filepath.Join(dir, "var/cache/apt/archives/*.deb"))
	for _, a := range archives {
		_ = os.Remove(a)
	}
	tmp := tarball + ".tmp"
	testenv.Run(t, "tar", "-C", dir, "-czf", tmp, ".")
	if err := os.Rename(tmp, tarball); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the Debian 12 root from %s and cached it as %s in %v", mirror, tarball, time.Since(start).Round(100*time.Millisecond))
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
