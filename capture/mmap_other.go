//go:build !linux

package capture

import "os"

type mmapPcap struct{ off int }

func mapPcap(*os.File) (*mmapPcap, error) { return nil, nil }

func (m *mmapPcap) next(*Packet) error { panic("unreachable") }

func (m *mmapPcap) prefetchAhead() {}

func (m *mmapPcap) close() error { return nil }
