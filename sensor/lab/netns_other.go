//go:build !linux

package lab

import (
	"errors"
	"fmt"
	"syscall"
)

// errUnsupported is returned on systems without Linux network namespaces.
var errUnsupported = errors.New("the lab needs Linux network namespaces")

func do(ns string, f func() error) error {
	return fmt.Errorf("enter network namespace %s: %w", ns, errUnsupported)
}

func kill(pid int, sig syscall.Signal) error {
	return fmt.Errorf("signal process %d: %w", pid, errUnsupported)
}
