//go:build !linux

package main

import "errors"

func run() error { return errors.New("the appliance init runs only on Linux") }
