package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor/access"
)

func accessDirFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "dir", Usage: "sensor state `DIR`", EnvVars: []string{"TAPBEAT_DIR"}, Required: true}
}

// readPassword reads a password from path ("-" is standard input): the
// first line, without its line ending.
func readPassword(c *cli.Context, path string) ([]byte, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(c.App.Reader, 4096))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read the password: %w", err)
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	}
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return nil, errors.New("the password file is empty")
	}
	return data, nil
}

func userCommand() *cli.Command {
	role := &cli.StringFlag{Name: "role", Usage: "`ROLE`: admin (enroll, revoke, triage) or viewer (read only)", Required: true}
	name := &cli.StringFlag{Name: "name", Usage: "account `NAME`", Required: true}
	pwFile := &cli.StringFlag{Name: "password-file", Usage: "`FILE` whose first line is the password (- for standard input)", Required: true}
	return &cli.Command{
		Name:  "user",
		Usage: "manage the console's local accounts (DIR/console/users.json, argon2id)",
		Subcommands: []*cli.Command{
			{
				Name: "add", Usage: "add an account",
				Flags: []cli.Flag{accessDirFlag(), name, role, pwFile},
				Action: func(c *cli.Context) error {
					r, err := access.ParseRole(c.String("role"))
					if err != nil {
						return err
					}
					pw, err := readPassword(c, c.String("password-file"))
					if err != nil {
						return err
					}
					if err := access.Open(c.String("dir"), access.Params{}).AddUser(c.String("name"), r, pw, time.Now()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "added %s (%s)\n", c.String("name"), r)
					return nil
				},
			},
			{
				Name: "passwd", Usage: "set an account's password",
				Flags: []cli.Flag{accessDirFlag(), name, pwFile},
				Action: func(c *cli.Context) error {
					pw, err := readPassword(c, c.String("password-file"))
					if err != nil {
						return err
					}
					if err := access.Open(c.String("dir"), access.Params{}).SetPassword(c.String("name"), pw, time.Now()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "password of %s changed\n", c.String("name"))
					return nil
				},
			},
			{
				Name: "remove", Usage: "remove an account (its sessions end at their next request)",
				Flags: []cli.Flag{accessDirFlag(), name},
				Action: func(c *cli.Context) error {
					if err := access.Open(c.String("dir"), access.Params{}).RemoveUser(c.String("name")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed %s\n", c.String("name"))
					return nil
				},
			},
			{
				Name: "list", Usage: "list the accounts",
				Flags: []cli.Flag{accessDirFlag()},
				Action: func(c *cli.Context) error {
					l, err := access.Open(c.String("dir"), access.Params{}).Users()
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tPASSWORD CHANGED")
					for _, u := range l {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, u.Created.Format(time.RFC3339), u.Changed.Format(time.RFC3339))
					}
					return tw.Flush()
				},
			},
		},
	}
}

func tokenCommand() *cli.Command {
	name := &cli.StringFlag{Name: "name", Usage: "token `NAME` (who uses it, e.g. siem)", Required: true}
	return &cli.Command{
		Name:  "token",
		Usage: "manage API tokens (sent as Authorization: Bearer TOKEN; only a hash is kept)",
		Subcommands: []*cli.Command{
			{
				Name: "add", Usage: "create a token and print it once",
				Flags: []cli.Flag{accessDirFlag(), name,
					&cli.StringFlag{Name: "role", Usage: "`ROLE`: admin or viewer", Value: "viewer"}},
				Action: func(c *cli.Context) error {
					r, err := access.ParseRole(c.String("role"))
					if err != nil {
						return err
					}
					tok, err := access.Open(c.String("dir"), access.Params{}).AddToken(c.String("name"), r, time.Now())
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, tok)
					fmt.Fprintf(c.App.ErrWriter, "token %s (%s) created; it is shown only now\n", c.String("name"), r)
					return nil
				},
			},
			{
				Name: "remove", Usage: "remove a token",
				Flags: []cli.Flag{accessDirFlag(), name},
				Action: func(c *cli.Context) error {
					if err := access.Open(c.String("dir"), access.Params{}).RemoveToken(c.String("name")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed token %s\n", c.String("name"))
					return nil
				},
			},
			{
				Name: "list", Usage: "list the tokens",
				Flags: []cli.Flag{accessDirFlag()},
				Action: func(c *cli.Context) error {
					l, err := access.Open(c.String("dir"), access.Params{}).Tokens()
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
					for _, t := range l {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Role, t.Created.Format(time.RFC3339))
					}
					return tw.Flush()
				},
			},
		},
	}
}
