#!/usr/bin/env bash
# bench/fifo-go.sh DIR: a copy of this machine's Go toolchain in DIR whose
# runtime hands ready connections to the scheduler in the order epoll
# reports them, for an experiment, not for shipping:
#
#   bash bench/fifo-go.sh /tmp/go-fifo
#   bash bench/run.sh --go /tmp/go-fifo/bin/go --targets haproxy,socialroute
#
# The stock netpoller (runtime/netpoll_epoll.go) walks epoll's events in
# order and pushes each readied goroutine onto a list whose head is the
# last pushed, and the scheduler runs the list from its head: under
# saturation the connection that became ready first in a batch is served
# last. Walking the events backwards makes the list, and so the service,
# first come first served, which is what an event loop such as HAProxy's
# does. bench/README.md says what it changes.
set -euo pipefail
dir=${1:?usage: bash bench/fifo-go.sh DIR}
src=$(go env GOROOT)
[ -e "$dir" ] && { echo "fifo-go.sh: $dir exists; give a new directory" >&2; exit 2; }
cp -a "$src" "$dir"
file=$dir/src/runtime/netpoll_epoll.go
old='for i := int32(0); i < n; i++ {'
grep -qF "$old" "$file" || { echo "fifo-go.sh: $file has no '$old' (another Go version?); nothing patched" >&2; rm -rf "$dir"; exit 1; }
sed -i "s/$old/for i := n - 1; i >= 0; i-- { \/\/ bench\/fifo-go.sh: first ready, first served/" "$file"
echo "$dir/bin/go ($("$dir/bin/go" env GOVERSION), runtime/netpoll_epoll.go patched)"
