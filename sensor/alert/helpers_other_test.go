//go:build !linux

package alert

import "os/exec"

func dieWithTest(*exec.Cmd) {}
