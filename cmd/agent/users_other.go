//go:build !linux

package agent

// Users is not implemented outside Linux: no users are reported.
func Users() ([]string, error) { return nil, nil }
