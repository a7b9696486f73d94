//go:build unix

package proxy

import "syscall"

// What a peek at a socket found.
const (
	peekNothing = iota // nothing to read yet
	peekBytes          // bytes wait
	peekClosed         // the peer closed it, or it failed
)

// sockPeek looks, without blocking or taking any bytes, at what a read of
// socket fd would return.
func sockPeek(fd int) int {
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR:
		return peekNothing
	case err == nil && n > 0:
		return peekBytes
	}
	return peekClosed
}
