//go:build amd64 || arm64

package hashing

import "unsafe"

// prefetch starts loading the cache line at p and returns at once: the
// CPU's prefetch instruction, which Go has no name for. Unlike a load, it
// does not hold up the instructions after it while the line arrives.
//
//go:noescape
func prefetch(p unsafe.Pointer)
