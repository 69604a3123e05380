package main

import (
	"context"
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/api"
)

// authorityFlags select the enrollment authority: the state directory on
// this machine, or a sensor's admin API.
func authorityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dir", Usage: "sensor state `DIR` (on the sensor itself)", EnvVars: []string{"TAPBEAT_DIR"}},
		&cli.StringFlag{Name: "server", Usage: "a sensor's admin API `URL` (https://HOST:PORT), with --bundle"},
		&cli.StringFlag{Name: "bundle", Usage: "administrator bundle `FILE` from `tapbeat enroll --admin`, for --server"},
	}
}

// openAuthority returns the local authority of --dir, or one reached
// through --server; close releases it.
func openAuthority(c *cli.Context) (a api.Enroller, close func(), err error) {
	if url := c.String("server"); url != "" {
		if c.String("bundle") == "" {
			return nil, nil, errors.New("--server needs --bundle ADMIN.json (from `tapbeat enroll --admin`)")
		}
		b, err := pki.ReadBundle(c.String("bundle"))
		if err != nil {
			return nil, nil, err
		}
		cfg, err := pki.AdminClientConfig(b)
		if err != nil {
			return nil, nil, err
		}
		cl, err := api.NewTLSClient(url, cfg)
		if err != nil {
			return nil, nil, err
		}
		return remoteAuthority{ctx: c.Context, c: cl}, cl.Close, nil
	}
	if c.String("dir") == "" {
		return nil, nil, errors.New("give --dir DIR on the sensor, or --server URL --bundle ADMIN.json from elsewhere")
	}
	local, err := pki.Open(c.String("dir"))
	if err != nil {
		return nil, nil, err
	}
	return local, func() {}, nil
}

// remoteAuthority is the enrollment authority behind a sensor's admin API.
type remoteAuthority struct {
	ctx context.Context
	c   *api.Client
}

func (r remoteAuthority) Enroll(name string, opts pki.EnrollOptions) (*pki.Bundle, error) {
	return r.c.Enroll(r.ctx, name, opts.Admin)
}

func (r remoteAuthority) Revoke(name string, admin bool) ([]pki.Entry, error) {
	n, err := r.c.Revoke(r.ctx, name, admin)
	out := make([]pki.Entry, n)
	for i := range out {
		out[i] = pki.Entry{Name: name, Admin: admin}
	}
	return out, err
}
