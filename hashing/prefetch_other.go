//go:build !amd64 && !arm64

package hashing

import "unsafe"

// prefetch does nothing on architectures without an assembly version.
func prefetch(unsafe.Pointer) {}
