/*
 * OpenVMFS repair primitives for vmfsck (fs/repair.c).
 *
 * Each call is one filesystem transaction: it stages whole 512-byte metadata
 * sectors and writes them in place through the LV device at commit (after the
 * commit hook, when the fs has one).  They change exactly what they say and
 * keep the invariants of FORMAT.md §10.3 that depend on them (a cluster
 * header's free count and first-free hint always match its bitmap; a cloned
 * block is allocated before it is referenced).  They trust the caller's
 * analysis: vmfsck decides *what* is wrong, these only do the writing.
 *
 * Every function returns 0 or a negative errno (-EROFS on a read-only fs,
 * -EINVAL for bad arguments, -EUCLEAN when the object cannot be addressed).
 */
#ifndef VMFS_FSCK_H
#define VMFS_FSCK_H

#include <stdint.h>

#include "vmfs/fs.h"

#ifdef __cplusplus
extern "C" {
#endif

/** LV offset of bytes [@off, @off+@len) of resource file @kind (the range
 *  must not cross a file block).  For bulk reads of cluster headers and FDs. */
int vmfs_fsck_res_file_lv(struct vmfs_fs *fs, int kind, uint64_t off, uint64_t len, uint64_t *lv);

/** Rewrite cluster header @idx of resource @kind: id = @idx, total = @total,
 *  bitmap = @free_bits (bit set = item free; bits at and above @total are
 *  cleared), free = popcount, ffree = first free item (0 if none).  With
 *  @fresh_lock the lock record is formatted too (magic, pos, token 1). */
int vmfs_fsck_cluster_write(struct vmfs_fs *fs, int kind, uint32_t idx, uint32_t total,
			    const uint8_t free_bits[496], int fresh_lock);

/* Fields of vmfs_fsck_fd_set(). */
#define VMFS_FSCK_FD_NLINK     0x1u
#define VMFS_FSCK_FD_BLKCOUNT  0x2u
#define VMFS_FSCK_FD_TBZ       0x4u
#define VMFS_FSCK_FD_NUMPB     0x8u
struct vmfs_fsck_fd_fix {
	unsigned mask;
	uint32_t nlink;
	uint64_t blk_count;
	uint32_t tbz;
	uint32_t num_pb;
};
/** Change counters of the FD at @addr in place (no validation of the rest of
 *  the FD: also used to clear nlink of an invalid descriptor). */
int vmfs_fsck_fd_set(struct vmfs_fs *fs, uint32_t addr, const struct vmfs_fsck_fd_fix *fix);

/** Set block pointer @slot of a file: in the FD's block array (@pb == 0,
 *  slot < 256) or inside pointer block @pb (slot < 1024). */
int vmfs_fsck_ptr_set(struct vmfs_fs *fs, uint32_t fd_addr, uint32_t pb, unsigned slot, uint32_t value);

/** Give the file a private copy of the data block @old referenced at
 *  (@pb, @slot): allocate a file block (or sub-block for an SB address), copy
 *  the content (a TBZ block is not copied and stays TBZ) and repoint.
 *  \return 0 and *@new_addr. */
int vmfs_fsck_clone_block(struct vmfs_fs *fs, uint32_t fd_addr, uint32_t pb, unsigned slot,
			  uint32_t old, uint32_t *new_addr);

/** Append an entry to directory @dir (no link count change). */
int vmfs_fsck_dir_add(struct vmfs_fs *fs, uint32_t dir, const struct vmfs_dirent *de);
/** Overwrite entry @idx of directory @dir. */
int vmfs_fsck_dirent_set(struct vmfs_fs *fs, uint32_t dir, uint32_t idx, const struct vmfs_dirent *de);
/** Remove entry @idx (the last entry moves into its place; the directory
 *  shrinks by one entry), no link count change. */
int vmfs_fsck_dirent_remove(struct vmfs_fs *fs, uint32_t dir, uint32_t idx);

/** Free every block of a (valid) FD and the FD itself (nlink 0). */
int vmfs_fsck_fd_release(struct vmfs_fs *fs, uint32_t addr);

/** Write one whole metadata sector (lock record, heartbeat slot) at LV @off. */
int vmfs_fsck_write_sector(struct vmfs_fs *fs, uint64_t off, const uint8_t data[512]);

#ifdef __cplusplus
}
#endif
#endif
