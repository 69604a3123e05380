package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func revokeCommand() *cli.Command {
	return &cli.Command{
		Name:  "revoke",
		Usage: "remove an endpoint's (or administrator's) certificate from the trust store",
		Description: "A running sensor closes the endpoint's connection within a few seconds, forgets the\n" +
			"endpoint and refuses its certificate from then on (session resumption included).",
		Flags: append(authorityFlags(),
			&cli.StringFlag{Name: "name", Usage: "endpoint host `NAME` or endpoint id", Required: true},
			&cli.BoolFlag{Name: "admin", Usage: "revoke an administrator certificate"},
		),
		Action: func(c *cli.Context) error {
			a, closeAuthority, err := openAuthority(c)
			if err != nil {
				return err
			}
			defer closeAuthority()
			rev, err := a.Revoke(c.String("name"), c.Bool("admin"))
			if err != nil {
				return err
			}
			for _, e := range rev {
				fmt.Fprintf(c.App.Writer, "revoked %s (id %s, org %s)\n", e.Name, e.ID, e.Org)
			}
			return nil
		},
	}
}
