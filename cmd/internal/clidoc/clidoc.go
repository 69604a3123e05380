// Package clidoc turns a command line's own definition into its manual page
// and shell completion, so that what is installed always matches the flags
// the binary accepts.
package clidoc

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// Command is the hidden `docs` command of a tapbeat binary: `docs man`
// prints the roff manual page, `docs fish` the fish completion. Bash and
// zsh complete through the binary itself (--generate-bash-completion).
func Command() *cli.Command {
	return &cli.Command{
		Name:   "docs",
		Usage:  "print the manual page or the fish completion generated from this command line",
		Hidden: true,
		Subcommands: []*cli.Command{
			{
				Name:  "man",
				Usage: "print the manual page (roff, section 8: system administration)",
				Action: func(c *cli.Context) error {
					page, err := c.App.ToMan()
					if err != nil {
						return fmt.Errorf("generate the manual page: %w", err)
					}
					_, err = fmt.Fprint(c.App.Writer, page)
					return err
				},
			},
			{
				Name:  "fish",
				Usage: "print the fish completion",
				Action: func(c *cli.Context) error {
					script, err := c.App.ToFishCompletion()
					if err != nil {
						return fmt.Errorf("generate the fish completion: %w", err)
					}
					_, err = fmt.Fprint(c.App.Writer, script)
					return err
				},
			},
		},
	}
}
