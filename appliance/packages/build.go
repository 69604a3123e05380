package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// DefaultMaintainer fills the Maintainer field nfpm and Debian require.
const DefaultMaintainer = "tapbeat maintainers <maintainers@tapbeat.invalid>"

// Programs are the binaries packaged, each by the nfpm configuration
// NAME.yaml in this directory.
var Programs = []string{"tapbeat", "tapbeat-agent"}

// Formats are the package formats built for each program.
var Formats = []string{"deb", "rpm"}

// options says where the binaries are and what to build.
type options struct {
	Bin        string // directory of the static binaries
	Out        string // directory the packages go to
	Version    string // package version; empty: from git describe
	Maintainer string
	// Root is the repository's root, where nfpm's relative source paths
	// start; empty: the current directory.
	Root string
}

// Build writes a package of every program in every format to o.Out and
// returns their paths.
func Build(ctx context.Context, o options) ([]string, error) {
	root := o.Root
	if root == "" {
		root = "."
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(o.Bin)
	if err != nil {
		return nil, err
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return nil, err
	}
	if o.Maintainer == "" {
		o.Maintainer = DefaultMaintainer
	}
	mtime, err := commitTime(ctx, root)
	if err != nil {
		return nil, err
	}
	if o.Version == "" {
		o.Version, err = gitVersion(ctx, root)
		if err != nil {
			return nil, err
		}
	}
	gen := filepath.Join(out, "gen")
	if err := os.MkdirAll(gen, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", gen, err)
	}
	for _, p := range Programs {
		if err := generateDocs(ctx, root, filepath.Join(bin, p), gen); err != nil {
			return nil, err
		}
	}
	vars := map[string]string{"VERSION": o.Version, "MAINTAINER": o.Maintainer, "BIN": bin, "GEN": gen}
	var built []string
	for _, p := range Programs {
		for _, f := range Formats {
			path, err := pack(root, filepath.Join(root, "appliance", "packages", p+".yaml"), f, vars, mtime, out)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", p, f, err)
			}
			built = append(built, path)
		}
	}
	return built, nil
}

// pack builds one package from an nfpm configuration whose ${VAR}s come
// from vars, with relative source paths taken from root.
func pack(root, config, format string, vars map[string]string, mtime time.Time, out string) (string, error) {
	cfg, err := nfpm.ParseFileWithEnvMapping(config, func(k string) string { return vars[k] })
	if err != nil {
		return "", fmt.Errorf("read %s: %w", config, err)
	}
	info, err := cfg.Get(format)
	if err != nil {
		return "", err
	}
	for _, c := range info.Contents {
		if !filepath.IsAbs(c.Source) {
			c.Source = filepath.Join(root, c.Source)
		}
	}
	for _, s := range []*string{&info.Scripts.PostInstall, &info.Scripts.PreRemove, &info.Scripts.PostRemove} {
		if *s != "" && !filepath.IsAbs(*s) {
			*s = filepath.Join(root, *s)
		}
	}
	info.MTime = mtime
	info = nfpm.WithDefaults(info)
	pkgr, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	path := filepath.Join(out, pkgr.ConventionalFileName(info))
	var buf bytes.Buffer
	if err := pkgr.Package(info, &buf); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// generateDocs writes NAME.8.gz, NAME.fish, NAME.bash and NAME.zsh to gen:
// the manual page and fish completion the binary prints from its own
// command-line definition (`NAME docs man|fish`), and urfave/cli's bash
// and zsh scripts, which ask the binary itself for completions.
func generateDocs(ctx context.Context, root, binary, gen string) error {
	name := filepath.Base(binary)
	if _, err := os.Stat(binary); err != nil {
		return fmt.Errorf("%w: run `make build` first", err)
	}
	page, err := run(ctx, root, binary, "docs", "man")
	if err != nil {
		return err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.Name = name + ".8"
	if _, err := zw.Write(page); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	fish, err := run(ctx, root, binary, "docs", "fish")
	if err != nil {
		return err
	}
	cliDir, err := run(ctx, root, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/urfave/cli/v2")
	if err != nil {
		return err
	}
	scripts := filepath.Join(strings.TrimSpace(string(cliDir)), "autocomplete")
	bash, err := os.ReadFile(filepath.Join(scripts, "bash_autocomplete"))
	if err != nil {
		return fmt.Errorf("urfave/cli's bash completion: %w", err)
	}
	zsh, err := os.ReadFile(filepath.Join(scripts, "zsh_autocomplete"))
	if err != nil {
		return fmt.Errorf("urfave/cli's zsh completion: %w", err)
	}
	files := map[string][]byte{
		name + ".8.gz": gz.Bytes(),
		name + ".fish": fish,
		// The bash script names the command after its own file, which
		// bash-completion calls NAME.
		name + ".bash": bash,
		// The zsh script expects $PROG to be set by whoever sources it; as
		// an autoloaded completion file it must name the command itself.
		name + ".zsh": bytes.ReplaceAll(zsh, []byte("$PROG"), []byte(name)),
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(gen, f), b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f, err)
		}
	}
	return nil
}

// run runs a program in dir and returns its standard output.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// gitVersion is the package version of the commit checked out in root.
func gitVersion(ctx context.Context, root string) (string, error) {
	describe, err := run(ctx, root, "git", "describe", "--tags", "--long", "--dirty", "--always", "--abbrev=12")
	if err != nil {
		return "", fmt.Errorf("version from git (or give -version): %w", err)
	}
	count, err := run(ctx, root, "git", "rev-list", "--count", "HEAD")
	if err != nil {
		return "", fmt.Errorf("version from git (or give -version): %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(count)))
	if err != nil {
		return "", fmt.Errorf("git rev-list --count: %w", err)
	}
	return PackageVersion(strings.TrimSpace(string(describe)), n)
}

// commitTime is the time of the commit checked out in root: every file in
// the packages carries it, so building the same commit twice gives the
// same file times.
func commitTime(ctx context.Context, root string) (time.Time, error) {
	out, err := run(ctx, root, "git", "log", "-1", "--format=%ct")
	if err != nil {
		return time.Time{}, fmt.Errorf("commit time: %w", err)
	}
	s, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("commit time %q: %w", out, err)
	}
	return time.Unix(s, 0).UTC(), nil
}

// PackageVersion turns the output of `git describe --tags --long --dirty
// --always` and the number of commits in the history into a version that
// Debian and RPM both accept and order by history:
//
//	v1.2.0-0-g0123456789ab        1.2.0
//	v1.2.0-3-g0123456789ab        1.2.0+git3.0123456789ab
//	v1.3.0-rc1-0-g0123456789ab    1.3.0~rc1 (before 1.3.0)
//	0123456789ab (no tag)         0.0.0+git<commits>.0123456789ab
//
// A tree with uncommitted changes adds ".dirty".
func PackageVersion(describe string, commits int) (string, error) {
	dirty := ""
	if d, ok := strings.CutSuffix(describe, "-dirty"); ok {
		describe, dirty = d, ".dirty"
	}
	parts := strings.Split(describe, "-")
	if len(parts) < 3 || !strings.HasPrefix(parts[len(parts)-1], "g") {
		if !isHex(describe) {
			return "", fmt.Errorf("git describe gave %q: neither a tag description nor a commit", describe)
		}
		return fmt.Sprintf("0.0.0+git%d.%s%s", commits, describe, dirty), nil
	}
	hash := strings.TrimPrefix(parts[len(parts)-1], "g")
	since, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil || !isHex(hash) {
		return "", fmt.Errorf("git describe gave %q: not TAG-N-gHASH", describe)
	}
	tag := strings.TrimPrefix(strings.Join(parts[:len(parts)-2], "-"), "v")
	if tag == "" || tag[0] < '0' || tag[0] > '9' {
		return "", fmt.Errorf("tag %q does not start with a version number (v1.2.3): tag releases vX.Y.Z, or give -version", tag)
	}
	for _, r := range tag {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '-' || r == '+') {
			return "", errors.New("tag " + strconv.Quote(tag) + " holds a character package versions cannot: use letters, digits, '.', '-', '+'")
		}
	}
	v := strings.ReplaceAll(tag, "-", "~")
	if since > 0 {
		v += fmt.Sprintf("+git%d.%s", since, hash)
	}
	return v + dirty, nil
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
