package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor/history"
)

// backupCommand is "tapbeat backup --out FILE": an online, compressed
// backup of the history, through the daemon when it runs.
func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "write a compressed backup of the history (online: through the daemon when it runs)",
		Flags: append(connFlags(),
			&cli.StringFlag{Name: "out", Required: true, Usage: "backup `FILE` to write (refuses to overwrite one)"},
		),
		Action: func(c *cli.Context) error {
			out := c.String("out")
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("--out %s already exists: choose another file or remove it", out)
			}
			b, via, closeFn, err := openBackend(c)
			if err != nil {
				return err
			}
			defer closeFn()
			tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".partial-*")
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			defer os.Remove(tmp.Name())
			start := time.Now()
			if err := b.Backup(c.Context, tmp); err != nil {
				tmp.Close()
				return fmt.Errorf("backup from %s: %w (nothing written to %s)", via, err, out)
			}
			if err := tmp.Sync(); err != nil {
				tmp.Close()
				return fmt.Errorf("backup: %w", err)
			}
			fi, _ := tmp.Stat()
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			if err := os.Chmod(tmp.Name(), 0o600); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			if err := os.Link(tmp.Name(), out); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			fmt.Fprintf(c.App.Writer, "wrote %s (%d bytes) from %s in %s\n", out, fi.Size(), via, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
}

// restoreCommand is "tapbeat restore --in FILE": load a backup into
// DIR/history while no daemon runs.
func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "load a backup into DIR/history (stop the daemon first)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: defaultStateDir, EnvVars: []string{"TAPBEAT_DIR"}, Usage: "state `DIR` (history in DIR/history)"},
			&cli.StringFlag{Name: "in", Required: true, Usage: "backup `FILE` written by tapbeat backup"},
			&cli.BoolFlag{Name: "force", Usage: "move an existing DIR/history aside (to DIR/history.before-restore-TIME) first"},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			hdir := filepath.Join(dir, "history")
			sock := filepath.Join(dir, "tapbeat.sock")
			if conn, err := net.DialTimeout("unix", sock, time.Second); err == nil {
				conn.Close()
				return fmt.Errorf("a daemon answers on %s: stop it before restoring into %s", sock, hdir)
			}
			f, err := os.Open(c.String("in"))
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			defer f.Close()
			if _, err := os.Stat(filepath.Join(hdir, "MANIFEST")); err == nil {
				if !c.Bool("force") {
					return fmt.Errorf("%s already holds a history database: give --force to move it aside, or another --dir", hdir)
				}
				aside := hdir + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
				if err := os.Rename(hdir, aside); err != nil {
					return fmt.Errorf("restore: move the old history aside: %w", err)
				}
				fmt.Fprintf(c.App.Writer, "moved the old history to %s\n", aside)
			}
			if err := history.Restore(hdir, f, history.Options{Logger: quietLogger()}); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "restored %s into %s\n", c.String("in"), hdir)
			return nil
		},
	}
}
