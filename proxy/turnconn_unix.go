//go:build unix && !linux

package proxy

import "syscall"

const turnConnSupported = true

// sockSend and sockRecv are turnConn's callback's system calls; see the
// Linux version for why they are not simply write and read there.
func sockSend(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }

func sockRecv(fd int, b []byte) (int, error) { return syscall.Read(fd, b) }

// sockPeekClosed: see the Linux version.
func sockPeekClosed(fd int) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	e, _ := err.(syscall.Errno)
	return peekSaysClosed(n, e)
}
