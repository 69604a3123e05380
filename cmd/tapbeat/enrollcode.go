package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/api"
)

// enrollWithCode is `tapbeat enroll --code`: a workstation without any
// certificate trades a one-time code for a bundle from the sensor whose
// pin it was given.
func enrollWithCode(c *cli.Context) error {
	server, pin := c.String("server"), c.String("pin")
	if server == "" || pin == "" {
		return errors.New("--code needs --server https://ADDR:8348 and --pin sha256/..., both shown with the code")
	}
	if c.String("bundle") != "" || c.String("dir") != "" {
		return errors.New("--code enrolls without a certificate: drop --bundle and --dir")
	}
	name, admin := c.String("name"), c.Bool("admin")
	out := c.String("out")
	if out == "" {
		out = name + ".bundle.json"
		if admin {
			out = name + ".admin.json"
		}
	}
	cl, err := api.NewCodeClient(server, pin)
	if err != nil {
		return err
	}
	defer cl.Close()
	b, err := cl.EnrollWithCode(c.Context, name, c.String("code"))
	if err != nil {
		return err
	}
	if b.Admin != admin {
		fmt.Fprintf(c.App.ErrWriter, "note: the code was for %s, not %s, and so is the bundle\n", kindOf(b.Admin), kindOf(admin))
	}
	if err := b.WriteFile(out); err != nil {
		return fmt.Errorf("%w (the certificate %s is enrolled: revoke it with `tapbeat revoke --name %s` and ask for a new code)", err, b.ID, name)
	}
	kind := "endpoint"
	if b.Admin {
		kind = "administrator"
	}
	fmt.Fprintf(c.App.Writer, "enrolled %s %s (id %s, org %s)\nbundle: %s (mode 0600, holds the private key)\n", kind, name, b.ID, b.Org, out)
	return nil
}

func enrollCodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "enroll-code",
		Usage: "issue a one-time enrollment code (valid an hour) for `tapbeat enroll --code`",
		Description: "Prints a code that enrolls one endpoint (or, with --admin, one administrator) through\n" +
			"the admin API without a certificate, and the sensor's pin to trust it by. On the sensor\n" +
			"use --dir; elsewhere an administrator's --server URL --bundle ADMIN.json.",
		Flags: append(authorityFlags(),
			&cli.BoolFlag{Name: "admin", Usage: "the code enrolls an administrator"},
			&cli.BoolFlag{Name: "first", Usage: "with --dir: an administrator's code, only while no administrator is enrolled (what a new appliance shows)"},
		),
		Action: func(c *cli.Context) error {
			admin := c.Bool("admin")
			var code string
			var expires time.Time
			switch {
			case c.String("server") != "":
				if c.String("bundle") == "" {
					return errors.New("--server needs --bundle ADMIN.json (from `tapbeat enroll --admin`)")
				}
				b, err := pki.ReadBundle(c.String("bundle"))
				if err != nil {
					return err
				}
				cfg, err := pki.AdminClientConfig(b)
				if err != nil {
					return err
				}
				cl, err := api.NewTLSClient(c.String("server"), cfg)
				if err != nil {
					return err
				}
				defer cl.Close()
				a, err := cl.IssueCode(c.Context, admin)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "code: %s (for %s, until %s)\npin:  %s\n", a.Code, kindOf(admin), a.Expires.Local().Format(time.DateTime), b.Pin)
				return nil
			case c.String("dir") != "":
				now := time.Now()
				var err error
				if c.Bool("first") {
					admin = true
					code, err = pki.IssueFirstAdminCode(c.String("dir"), now)
				} else {
					code, err = pki.IssueCode(c.String("dir"), admin, now)
				}
				if err != nil {
					return err
				}
				expires = now.Add(pki.CodeValidity)
				pin, err := pki.ServerPin(c.String("dir"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "code: %s (for %s, until %s)\npin:  %s\n", code, kindOf(admin), expires.Local().Format(time.DateTime), pin)
				return nil
			}
			return errors.New("give --dir DIR on the sensor, or --server URL --bundle ADMIN.json from elsewhere")
		},
	}
}

func kindOf(admin bool) string {
	if admin {
		return "an administrator"
	}
	return "an endpoint"
}
