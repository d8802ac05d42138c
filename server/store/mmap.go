package store

import (
	"runtime"
	"strconv"
)

// initialMmapSize is how much address space Open maps for the file up front.
//
// bbolt remaps the file when a write transaction grows it past the mapping,
// and a remap waits for every open read transaction to end; new readers then
// queue behind it. A long reader (a backup, a scan of every environment)
// would stall every write, and then every read, until it finishes. With the
// file mapped ahead of its size, a write only extends the file and no remap
// happens until the store outgrows the mapping.
//
// The mapping is address space, not memory: the pages the file does not have
// yet are never touched. On 32-bit systems there is not enough address space
// to spare, and on Windows bbolt would grow the file itself to the mapping's
// size, so both keep bbolt's default (map what the file holds).
var initialMmapSize = func() int {
	if strconv.IntSize < 64 || runtime.GOOS == "windows" {
		return 0
	}
	return 1 << 30
}()
