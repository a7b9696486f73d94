//go:build !linux

package proxy

import "sync/atomic"

// readyOrder is Linux-only (it needs epoll); elsewhere turnConns wait in
// the runtime's poller. See wakeorder_linux.go.
type readyOrder struct{}

func readyOrderFor(int) *readyOrder { return nil }

func (r *readyOrder) add(*orderedWait, int) (int32, error) { return 0, nil }

func (r *readyOrder) remove(int32, int) {}

func (r *readyOrder) takeFromRuntime(int) bool { return false }

// yieldsBeforeSend: turnConns wait in order on Linux only, so readInOrder
// never runs here.
var yieldsBeforeSend atomic.Bool
