//go:build !unix

package pki

import "errors"

// lock is not available here: the enrollment authority runs on the sensor
// (Linux). Agents only read bundles.
func lock(string) (func(), error) {
	return nil, errors.New("the enrollment authority needs a Unix system")
}
