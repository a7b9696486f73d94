//go:build unix

package proxy

import "syscall"

// sockPeekAny reports, without blocking or taking any bytes, whether a read
// of socket fd would return at once: bytes wait, the peer closed it, or it
// failed.
func sockPeekAny(fd int) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
}
