//go:build !linux

package daemon

import (
	"context"
	"errors"
)

func (s *Sensor) runCapture(ctx context.Context) error {
	return errors.New("live capture needs Linux (AF_PACKET); run without capture interfaces")
}
