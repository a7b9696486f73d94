//go:build !unix

package proxy

import "errors"

// turnConn relies on the Unix semantics of syscall.RawConn.Read (the
// callback runs again once the socket is readable); elsewhere connections
// stay as they are.
const turnConnSupported = false

var errNoTurnConn = errors.New("proxy: turnConn is Unix-only")

func sockSend(int, []byte) (int, error) { return 0, errNoTurnConn }

func sockRecv(int, []byte) (int, error) { return 0, errNoTurnConn }

func sockPeekClosed(int) bool { return false }

const (
	peekNothing = iota
	peekBytes
	peekClosed
)

func sockPeek(int) int { return peekNothing }
