//go:build !unix

package agent

func raiseFileLimit() {}
