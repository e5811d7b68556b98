/*
 * OpenVMFS provisioning: how virtual disks get space and give it back.
 *
 * A virtual disk is a regular file of the filesystem (the "-flat.vmdk").
 * Its provisioning type is a property of its block map, not a stored flag:
 *
 *   thin              holes; a block is allocated on the first write to it
 *   zeroedthick       every block allocated, flagged TBZ (to-be-zeroed): reads
 *                     return zeros, the first write zero-fills the block
 *   eagerzeroedthick  every block allocated and zeroed (ESX's legacy "thick",
 *                     allocated without TBZ, looks the same on disk)
 *
 * Every operation here works through the public filesystem API (fs.h) on a
 * file the caller holds (for a cluster host: vmfs_host_lock_file EXCL).
 *
 * Ordering.  A block that turns from hole/TBZ into data must never, after a
 * crash, show what the device held before.  The filesystem guarantees it:
 * a transaction that makes new data readable flushes that data before its
 * metadata is committed (fs/txn.c).  THINPROV_DOUBLE_WRITE adds a belt and
 * braces path that does not rely on it: allocate TBZ, write the content
 * straight to the LV and flush, then let the fs write it again.
 *
 * Reclaim.  Every call that frees blocks takes the file's extent map before
 * the operation and, after the filesystem transaction has committed, counts
 * each extent whose block is now free in the bitmap.  A fs that discards
 * freed blocks itself (VMFS_FS_DISCARD, every host mount) has passed them to
 * the device inside its transaction: thinprov reports those bytes
 * (vmfs_fs_discard_count) and does not discard them again.  Otherwise
 * thinprov passes them down (vmfs_bdev_discard: punch hole on a file, UNMAP
 * on an iSCSI LUN), unless THINPROV_NO_DISCARD.  Devices that cannot discard
 * are skipped silently.
 *
 * Functions return 0 (or a count where stated) or a negative errno.
 */
#ifndef VMFS_THINPROV_H
#define VMFS_THINPROV_H

#include <stdbool.h>
#include <stdint.h>

#include "vmfs/fs.h"

#ifdef __cplusplus
extern "C" {
#endif

enum thinprov_type {
	THINPROV_THIN = 0,
	THINPROV_ZEROEDTHICK = 1,
	THINPROV_EAGERZEROEDTHICK = 2,
};

/** "thin", "zeroedthick", "eagerzeroedthick". */
const char *thinprov_type_name(int type);
/** Parse a type name (also "thick" = zeroedthick, "eagerzeroed", as vmkfstools
 *  -d accepts).  \return 0 or -EINVAL. */
int thinprov_type_parse(const char *s, int *type);

/** Progress: @done of @total bytes.  A non-zero return aborts the operation
 *  (which then returns -ECANCELED). */
typedef int (*thinprov_progress_fn)(void *ctx, uint64_t done, uint64_t total);

#define THINPROV_NO_DISCARD      0x1u  /* do not pass freed ranges to the device */
#define THINPROV_FORCE           0x2u  /* allow shrinking (data past the new end is lost) */
#define THINPROV_DOUBLE_WRITE    0x4u  /* write new blocks and flush before the fs does (see above) */

struct thinprov_opts {
	unsigned flags;                /* THINPROV_* */
	thinprov_progress_fn progress; /* NULL: none */
	void *progress_ctx;
	uint64_t chunk;                /* bytes per transaction for long operations (0 = 64 MiB;
	                                  freeing: 16 chunks' worth of blocks, at most 1024) */
};

/* Accounting of one file (bytes). */
struct thinprov_usage {
	uint64_t provisioned;   /* file size */
	uint64_t allocated;     /* blocks held, TBZ included */
	uint64_t written;       /* allocated and not TBZ */
	uint64_t tbz;           /* allocated, TBZ */
	uint64_t block_size;
	int type;               /* enum thinprov_type as the block map shows it */
};

/* Accounting of a datastore (bytes). */
struct thinprov_ds_usage {
	uint64_t capacity, free, used;       /* statfs: file blocks */
	uint64_t provisioned, allocated, written, tbz;  /* sums over regular files */
	uint64_t files;
};

/* Counters of a reclaim. */
struct thinprov_reclaim {
	uint64_t freed;          /* bytes of blocks freed by the operation */
	uint64_t discarded;      /* bytes passed to the device */
	int discard_err;         /* first discard error (0, -EOPNOTSUPP, ...) */
};

/** Create file @name in directory @dir as a disk of @size bytes and @type.
 *  -EEXIST if it exists.  On failure the file is removed again. */
int thinprov_create(struct vmfs_fs *fs, uint32_t dir, const char *name, uint64_t size, int type,
		    const struct thinprov_opts *o, uint32_t *addr);

/** Provision an existing (empty or thin) file as @type over [0, @size):
 *  size set, then blocks allocated as the type requires. */
int thinprov_provision(struct vmfs_fs *fs, uint32_t addr, uint64_t size, int type,
		       const struct thinprov_opts *o);

/** Usage and type of one file, from its block map. */
int thinprov_usage(struct vmfs_fs *fs, uint32_t addr, struct thinprov_usage *u);

/** Extend to @size keeping the type (new blocks: none, TBZ or zeroed).
 *  A smaller @size is refused with -EINVAL unless THINPROV_FORCE (then the
 *  file is truncated and the freed blocks reclaimed into @rc, may be NULL). */
int thinprov_extend(struct vmfs_fs *fs, uint32_t addr, uint64_t size, const struct thinprov_opts *o,
		    struct thinprov_reclaim *rc);

/** Inflate: allocate every hole and zero it, zero every TBZ block: the file
 *  becomes eagerzeroedthick (written content kept). */
int thinprov_inflate(struct vmfs_fs *fs, uint32_t addr, const struct thinprov_opts *o);

/** Eager-zero: zero every TBZ block (holes stay holes). */
int thinprov_eagerzero(struct vmfs_fs *fs, uint32_t addr, const struct thinprov_opts *o);

/** Truncate to @size, reclaiming what is freed. */
int thinprov_truncate(struct vmfs_fs *fs, uint32_t addr, uint64_t size, const struct thinprov_opts *o,
		      struct thinprov_reclaim *rc);

/** Unlink @name in @dir, reclaiming its blocks when the last link goes. */
int thinprov_unlink(struct vmfs_fs *fs, uint32_t dir, const char *name, const struct thinprov_opts *o,
		    struct thinprov_reclaim *rc);

/** Punch a hole: [off, off+len) reads as zeros afterwards.  Every whole
 *  block inside is freed and reclaimed (vmfs_punch, one transaction per
 *  batch of blocks), partial blocks at the edges are zeroed in place. */
int thinprov_punch_hole(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len,
			const struct thinprov_opts *o, struct thinprov_reclaim *rc);

/** Punch-zero: free every allocated block that holds only zeros (TBZ blocks
 *  too), in place: the file's blocks are scanned through its extent map
 *  (holes never read) and the zero ones freed with vmfs_punchv, a bounded
 *  batch per transaction (see thinprov_opts.chunk), each batch reclaimed
 *  after its commit.  A crash leaves every block either freed or intact.  A
 *  partial last block is kept.  @name/@dir name the file: a ".NAME.tpz"
 *  sparse copy left by an interrupted punch-zero of an older version is
 *  removed.  *@addr does not change. */
int thinprov_punch_zero(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t *addr,
			const struct thinprov_opts *o, struct thinprov_reclaim *rc);

/** Clone @src into a new file @dname in @ddir of @type (sparse-aware: holes,
 *  TBZ and all-zero blocks of @src are not written; a thin target keeps them
 *  as holes).  The source is read in pieces of up to 64 MiB (chunk); the
 *  non-zero runs of each piece are written with one vmfs_pwritev (one
 *  transaction). */
int thinprov_clone(struct vmfs_fs *fs, uint32_t src, uint32_t ddir, const char *dname, int type,
		   const struct thinprov_opts *o, uint32_t *daddr);

/** Write @len bytes at @off with the ordering described above (holes and
 *  TBZ blocks: allocate TBZ, write + flush, then let the fs clear TBZ). */
int64_t thinprov_pwrite(struct vmfs_fs *fs, uint32_t addr, const void *buf, size_t len, uint64_t off,
			const struct thinprov_opts *o);

/** Datastore-wide reclaim: discard every free file block (walks the FBB
 *  bitmap).  \return 0; bytes discarded in @rc->discarded. */
int thinprov_reclaim_free(struct vmfs_fs *fs, const struct thinprov_opts *o, struct thinprov_reclaim *rc);

/** Datastore accounting: statfs plus the sums over every regular file. */
int thinprov_ds_usage(struct vmfs_fs *fs, struct thinprov_ds_usage *u);

/* ---- VMDK descriptors ----------------------------------------------------------------- */
/* A descriptor ("# Disk DescriptorFile") that the services can follow has
 * exactly one flat extent line, ACCESS SECTORS TYPE "NAME" with ACCESS RW or
 * RDONLY and TYPE VMFS or FLAT; its data is in NAME, next to the descriptor
 * unless NAME is absolute. */
#define THINPROV_VMDK_MAX 8192        /* longest descriptor read */
struct thinprov_vmdk {
	char flat[256];          /* NAME as written */
	uint64_t sectors;        /* extent length in 512-byte sectors */
	bool rdonly;             /* ACCESS RDONLY */
	bool thin;               /* ddb.thinProvisioned = "1" */
};
/** Parse descriptor @text.  \return 1 for a descriptor with one flat extent,
 *  0 when @text is no descriptor, -EOPNOTSUPP for one with no or several
 *  flat extents. */
int thinprov_vmdk_parse(const char *text, struct thinprov_vmdk *d);
/** Read file @addr (named @path) and, if it is a descriptor, set @flat_path
 *  to its data file's path (relative names resolved against @path's
 *  directory).  \return as thinprov_vmdk_parse, or a read/-ENAMETOOLONG error. */
int thinprov_vmdk_read(struct vmfs_fs *fs, uint32_t addr, const char *path, struct thinprov_vmdk *d,
		       char *flat_path, size_t flat_len);

#ifdef __cplusplus
}
#endif
#endif
