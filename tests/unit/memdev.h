/* Test devices for unit tests (linked into every tests/unit/test_*.c by the
 * Makefile): a lazily allocated in-memory device, and a temporary file. */
#ifndef VMFS_TEST_MEMDEV_H
#define VMFS_TEST_MEMDEV_H

#include <stdint.h>

#include "vmfs/blockdev.h"

struct memdev {
	uint64_t size;
	uint8_t **chunks;          /* 1 MiB chunks, allocated on first write */
	size_t nchunks;
	uint8_t fill;              /* what never-written bytes hold (0x5A: "stale") */
	uint64_t discards;         /* discard calls */
	uint64_t discarded;        /* discarded bytes */
	/* called on every discard before it is counted (may be NULL) */
	void (*on_discard)(struct memdev *m, uint64_t off, uint64_t len);
};

/** A device of @size bytes whose unwritten bytes read as @fill; @out (may
 *  be NULL) receives the memdev for counters and hooks.  Aborts on ENOMEM. */
struct vmfs_bdev *memdev_new(uint64_t size, const char *name, uint8_t fill, struct memdev **out);

/** A temporary file of @size bytes (name written to @path) opened with
 *  @flags (VMFS_BDEV_*); NULL on failure.  tmpfile_teardown() closes the
 *  device in *state and removes the last file made. */
struct vmfs_bdev *tmpfile_bdev(char path[64], uint64_t size, unsigned flags);
int tmpfile_teardown(void **state);

#endif
