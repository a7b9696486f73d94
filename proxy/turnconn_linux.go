package proxy

import (
	"syscall"
	"unsafe"
)

const turnConnSupported = true

// sockSend and sockRecv are send(2) and recv(2) for turnConn's callback.
// On Linux, unlike write(2) and read(2), they skip the file layer (file
// position lock, VFS dispatch) that a socket does not need, and
// MSG_NOSIGNAL keeps a peer that reset from raising SIGPIPE. They are raw
// system calls, without the scheduler's entersyscall/exitsyscall (about
// 1% of the proxy's CPU at four calls a request): the socket is
// non-blocking, as every socket the runtime polls is, so a call never
// waits and there is nothing to hand the P over for.
func sockSend(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func sockRecv(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sockPeekClosed reports, without blocking or taking any bytes, whether
// the peer of socket fd has closed or reset it: the connection's TCP state
// (the first byte of struct tcp_info) is no longer ESTABLISHED. Looking at
// the state rather than at the bytes waiting sees a TLS peer's close too,
// whose close_notify record waits in front of its FIN.
func sockPeekClosed(fd int) bool {
	const tcpEstablished = 1 // include/net/tcp_states.h
	var info [8]byte
	size := uint32(len(info))
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	return e == 0 && info[0] != tcpEstablished
}
