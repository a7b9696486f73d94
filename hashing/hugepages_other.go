//go:build !linux

package hashing

// adviseHugePages does nothing: only Linux is given the advice.
func adviseHugePages([]uint64) {}
