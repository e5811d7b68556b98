/* Private to thinprov/: shared helpers. */
#ifndef THINPROV_INTERNAL_H
#define THINPROV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vmfs/thinprov.h"

#define TP_DEFAULT_CHUNK (64ull << 20)

/* A snapshot of the allocated extents of a file (LV ranges), and the fs's
 * discard counters at that moment (what the fs discarded since is the
 * freeing call's). */
struct tp_snap {
	struct { uint64_t lv, len; } *ext;
	size_t n, cap;
	struct vmfs_discard_count dc;
};

uint64_t tp_chunk(const struct thinprov_opts *o);
/* Blocks freed per transaction by punch-hole / punch-zero (bounded journal
 * record: freeing writes no data, so 16 chunks' worth, at most 1024). */
uint64_t tp_free_batch(struct vmfs_fs *fs, const struct thinprov_opts *o);
unsigned tp_flags(const struct thinprov_opts *o);
int tp_progress(const struct thinprov_opts *o, uint64_t done, uint64_t total);
uint64_t tp_bs(struct vmfs_fs *fs);
int tp_size(struct vmfs_fs *fs, uint32_t addr, uint64_t *size);

/* Record the ALLOCATED/TBZ extents of @addr in the blocks of [@from, @to). */
int tp_snap_take(struct vmfs_fs *fs, uint32_t addr, uint64_t from, uint64_t to, struct tp_snap *s);
int tp_snap_add(struct tp_snap *s, uint64_t lv, uint64_t len);
/* Note the fs's discard counters (tp_snap_take does it; call it right before
 * the freeing call when the snapshot was built with tp_snap_add). */
void tp_snap_mark(struct tp_snap *s);
void tp_snap_free(struct tp_snap *s);
/* After the freeing transaction committed: count every block of the
 * snapshot that is now free in the bitmap.  When the fs discards freed
 * blocks itself (vmfs_fs_discards), count what it discarded; else flush and
 * discard those blocks here.  Counts into @rc. */
int tp_snap_reclaim(struct vmfs_fs *fs, const struct tp_snap *s, const struct thinprov_opts *o,
		    struct thinprov_reclaim *rc);

/* Zero [off, off+len) of allocated TBZ blocks / holes in order (see header). */
int tp_zero_tbz(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len,
		const struct thinprov_opts *o);
/* Allocate holes of [off, off+len) as TBZ (KEEP_SIZE). */
int tp_alloc_holes_tbz(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len);

bool tp_is_zero(const void *buf, size_t len);

#endif
