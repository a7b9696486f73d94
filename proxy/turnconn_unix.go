//go:build unix && !linux

package proxy

import "syscall"

const turnConnSupported = true

// sockSend and sockRecv are turnConn's callback's system calls; see the
// Linux version for why they are not simply write and read there.
func sockSend(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }

func sockRecv(fd int, b []byte) (int, error) { return syscall.Read(fd, b) }

// sockPeekClosed reports, without blocking or taking any bytes, whether
// the peer of socket fd has closed or reset it: a peek that finds the end
// of the stream or an error other than "nothing yet". Bytes waiting (a
// TLS session ticket, or a TLS peer's close_notify) read as open; the
// Linux version looks at the TCP state instead.
func sockPeekClosed(fd int) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if err != nil {
		return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
	}
	return n == 0
}
