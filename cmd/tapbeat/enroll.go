package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/pki"
)

func enrollCommand() *cli.Command {
	return &cli.Command{
		Name:  "enroll",
		Usage: "issue an endpoint (or administrator) certificate and write its bundle",
		Description: "Issues a certificate (O = organisation, CN = a new endpoint id, DNS SAN = HOST), adds it\n" +
			"(with --code: asks the sensor at --server, trusted by --pin, to issue it; the code is used up)\n" +
			"to the sensor's trust store and writes ONE bundle file (mode 0600) holding the key, the\n" +
			"certificate, the CA certificate, every LAN-zone address and the sensor's pin. Copy it to\n" +
			"the endpoint and run `tapbeat-agent run --bundle FILE`. With --admin the certificate is\n" +
			"for the admin API only and the LAN zone refuses it.",
		Flags: append(authorityFlags(),
			&cli.StringFlag{Name: "name", Usage: "endpoint host `NAME` (or administrator name with --admin)", Required: true},
			&cli.StringFlag{Name: "out", Usage: "bundle `FILE` (default NAME.bundle.json, or NAME.admin.json with --admin)"},
			&cli.BoolFlag{Name: "admin", Usage: "issue an administrator certificate for the admin API"},
			&cli.StringFlag{Name: "code", Usage: "one-time enrollment `CODE` (from the appliance's console or `tapbeat enroll-code`), with --server and --pin instead of --bundle"},
			&cli.StringFlag{Name: "pin", Usage: "the sensor certificate's `sha256/...` pin, shown with the code: --code trusts only that sensor"},
		),
		Action: func(c *cli.Context) error {
			if c.String("code") != "" {
				return enrollWithCode(c)
			}
			a, closeAuthority, err := openAuthority(c)
			if err != nil {
				return err
			}
			defer closeAuthority()
			name, admin := c.String("name"), c.Bool("admin")
			out := c.String("out")
			if out == "" {
				out = name + ".bundle.json"
				if admin {
					out = name + ".admin.json"
				}
			}
			b, err := a.Enroll(name, pki.EnrollOptions{Admin: admin})
			if err != nil {
				return err
			}
			if err := b.WriteFile(out); err != nil {
				// The certificate is enrolled but its key is lost: take it back.
				if _, rerr := a.Revoke(b.ID, admin); rerr != nil {
					return fmt.Errorf("%w; revoking the unusable certificate %s also failed: %v", err, b.ID, rerr)
				}
				return fmt.Errorf("%w (the certificate was revoked again; nothing changed)", err)
			}
			kind := "endpoint"
			if admin {
				kind = "administrator"
			}
			fmt.Fprintf(c.App.Writer, "enrolled %s %s (id %s, org %s)\nbundle: %s (mode 0600, holds the private key)\n", kind, name, b.ID, b.Org, out)
			return nil
		},
	}
}
