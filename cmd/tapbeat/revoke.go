package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/pki"
)

func revokeCommand() *cli.Command {
	return &cli.Command{
		Name:  "revoke",
		Usage: "remove an endpoint's (or administrator's) certificate from the trust store",
		Description: "A running sensor closes the endpoint's connection within a few seconds, forgets the\n" +
			"endpoint and refuses its certificate from then on (session resumption included).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR`", Required: true},
			&cli.StringFlag{Name: "name", Usage: "endpoint host `NAME` or endpoint id", Required: true},
			&cli.BoolFlag{Name: "admin", Usage: "revoke an administrator certificate"},
		},
		Action: func(c *cli.Context) error {
			a, err := pki.Open(c.String("dir"))
			if err != nil {
				return err
			}
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
