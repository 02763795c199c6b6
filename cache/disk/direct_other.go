//go:build !linux

package disk

// oDirect is 0 where there is no O_DIRECT: block files go through the page cache.
const oDirect = 0
