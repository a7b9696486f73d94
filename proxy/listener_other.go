//go:build !unix

package proxy

import (
	"errors"
	"syscall"
)

// reusePort fails where SO_REUSEPORT does not exist.
func reusePort(network, address string, c syscall.RawConn) error {
	return errors.New("proxy: listen.reuse_port: SO_REUSEPORT is not available on this system")
}
