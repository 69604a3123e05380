package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/sensor/labdeploy"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "play the demo scenario in a namespace lab: endpoints, agents, a mirror port, every alert (root)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bin", Usage: "`DIR` holding tapbeat and tapbeat-agent (default: this binary's directory)"},
			&cli.StringFlag{Name: "name", Value: "tbdemo", Usage: "lab `NAME`"},
			&cli.BoolFlag{Name: "keep", Usage: "leave the lab up at the end"},
		},
		Action: func(c *cli.Context) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("the demo builds network namespaces: run it as root")
			}
			bin := c.String("bin")
			if bin == "" {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				bin = filepath.Dir(self)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return labdeploy.Demo(ctx, c.App.Writer, labdeploy.DemoOptions{Bin: bin, Name: c.String("name"), Keep: c.Bool("keep")})
		},
	}
}
