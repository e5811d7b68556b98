/*
 * OpenVMFS filesystem core: VMFS5 (and reading VMFS3) on top of a volume.
 *
 * Objects are named by their FD address (32-bit "block id", FORMAT.md §6);
 * the root directory is VMFS_ROOT_ADDR.  Every call reads what it needs from
 * disk (no metadata cache survives a call), so several hosts can share a
 * volume once the lock hooks are set.
 *
 * Metadata changes: every operation that changes metadata collects the
 * 512-byte sectors it modifies in a transaction and writes them in place at
 * commit (after the commit hook, e.g. the journal, has logged them).  File
 * data is written directly.  The first 512 bytes of an FD / resource cluster
 * header (the lock record) are written only when the object is formatted
 * fresh; afterwards they belong to the lock manager.
 *
 * Errors: 0 (or a count) on success, negative errno on failure; the reason is
 * also sent to the log callback.
 *   -ENOENT no such entry      -EEXIST exists        -ENOTEMPTY dir not empty
 *   -EISDIR is a directory     -ENOTDIR not a dir    -ENAMETOOLONG name > 127 B
 *   -ENOSPC no free item       -EFBIG beyond 62 TiB  -EIO/-EUCLEAN corrupt metadata
 */
#ifndef VMFS_FS_H
#define VMFS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmfs/blockdev.h"
#include "vmfs/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- addresses (FORMAT.md §6) --------------------------------------------- */
enum vmfs_addr_type {
	VMFS_ADDR_NONE = 0, VMFS_ADDR_FB = 1, VMFS_ADDR_SB = 2, VMFS_ADDR_PB = 3,
	VMFS_ADDR_FD = 4, VMFS_ADDR_PB2 = 5,
};
#define VMFS_ROOT_ADDR   0x00000004u
#define VMFS_FB_TBZ      0x20u
#define VMFS_FB_COW      0x10u

static inline unsigned vmfs_addr_type(uint32_t a) { return a & 7u; }
static inline uint32_t vmfs_fb_make(uint32_t block, bool tbz)
{ return (block << 6) | (tbz ? VMFS_FB_TBZ : 0) | VMFS_ADDR_FB; }
static inline uint32_t vmfs_fb_block(uint32_t a) { return a >> 6; }
static inline bool vmfs_fb_tbz(uint32_t a) { return (a & VMFS_FB_TBZ) != 0; }
static inline uint32_t vmfs_sb_make(uint32_t cluster, uint32_t item)
{ return VMFS_ADDR_SB | (cluster & 0x3FFFFFu) << 6 | (item & 15u) << 28 | ((item >> 4) & 3u) << 3; }
static inline uint32_t vmfs_sb_cluster(uint32_t a) { return (a >> 6) & 0x3FFFFFu; }
static inline uint32_t vmfs_sb_item(uint32_t a) { return (a >> 28) | ((a >> 3) & 3u) << 4; }
static inline uint32_t vmfs_pb_make(uint32_t cluster, uint32_t item)
{ return VMFS_ADDR_PB | (cluster & 0x3FFFFFu) << 6 | (item & 15u) << 28; }
static inline uint32_t vmfs_pb_cluster(uint32_t a) { return (a >> 6) & 0x3FFFFFu; }
static inline uint32_t vmfs_pb_item(uint32_t a) { return a >> 28; }
static inline uint32_t vmfs_fd_make(uint32_t cluster, uint32_t item)
{ return VMFS_ADDR_FD | (cluster & 0xFFFFu) << 6 | (item & 0x3FFu) << 22; }
static inline uint32_t vmfs_fd_cluster(uint32_t a) { return (a >> 6) & 0xFFFFu; }
static inline uint32_t vmfs_fd_item(uint32_t a) { return a >> 22; }

/* ---- decoded on-disk objects (read API for vmfsck and tools) -------------- */
enum vmfs_ftype {
	VMFS_TYPE_VOLUME = 1, VMFS_TYPE_DIR = 2, VMFS_TYPE_FILE = 3,
	VMFS_TYPE_SYMLINK = 4, VMFS_TYPE_SYSTEM = 5, VMFS_TYPE_RDM = 6,
};
enum vmfs_zla {
	VMFS_ZLA_FB = 1, VMFS_ZLA_SB = 2, VMFS_ZLA_PB = 3, VMFS_ZLA_PB2 = 5,
	VMFS_ZLA_DOUBLE = 4304, VMFS_ZLA_RESIDENT = 4305,
};

/* A file descriptor (2 KiB, FORMAT.md §7). */
struct vmfs_fd {
	uint32_t lock_magic;      /* lock record magic (0x10C00001) */
	uint64_t lock_pos;        /* lock record pos (must be the FD's LV offset) */
	uint32_t id, gen, nlink, type, flags;
	uint64_t size, blk_size, blk_count;
	uint32_t mtime, ctime, atime, uid, gid, mode, zla, tbz, cow;
	uint32_t num_pb;          /* numPointerBlocks (0x25C) */
	uint32_t tbz_shift;       /* tbzGranularityShift (0x26C) */
	uint8_t block_shift;      /* blockOffsetShift (0x289) */
	union {
		uint32_t blocks[256];
		uint8_t content[1024];
	};
};

/* One resource cluster header (FORMAT.md §5.3). */
struct vmfs_cluster {
	uint32_t lock_magic;
	uint64_t lock_pos;
	uint32_t id, total, free, ffree;
	uint8_t bitmap[496];      /* bit set = item FREE */
};

struct vmfs_dirent {
	uint32_t type, addr, gen;
	char name[129];
};

enum vmfs_res_kind { VMFS_RES_FBB = 0, VMFS_RES_FDC, VMFS_RES_PBC, VMFS_RES_SBC, VMFS_RES_COUNT };

struct vmfs_res_info {
	uint32_t magic;           /* expected cluster magic */
	uint32_t fd_addr;         /* FD of the .xxx.sf file */
	uint32_t ipe, epa, hdr_size, data_size, area_size, total_items, area_count;
	uint32_t nclusters;       /* cluster headers present = area_count * epa */
	uint64_t file_size;
};

/* ---- volume-wide info -------------------------------------------------------- */
struct vmfs_fs_info {
	uint32_t lvm_major, fs_major, fs_minor;
	uint8_t uuid[16];
	char uuid_str[36];
	char lvm_uuid_str[36];
	char label[129];
	uint32_t config, ctime;
	uint64_t block_size, subblock_size, lv_size;
	uint32_t fdc_base;        /* first block of .fdc.sf */
	uint32_t num_extents;
};

struct vmfs_statfs {
	uint64_t block_size, total_blocks, free_blocks;
	uint64_t total_fds, free_fds, total_sbs, free_sbs, total_pbs, free_pbs;
};

struct vmfs_stat {
	uint32_t addr, gen, type, nlink, uid, gid, zla;
	uint32_t mode;            /* permission bits | S_IFDIR/S_IFLNK/S_IFREG */
	uint64_t size, blocks512, blk_size, blk_count;
	uint32_t atime, mtime, ctime, tbz;
};

/* ---- hooks for the cluster layer --------------------------------------------- */
enum vmfs_lock_mode { VMFS_LOCK_SHARED = 1, VMFS_LOCK_EXCL = 2 };
/* Or'ed into the mode: fail with -EBUSY at once instead of waiting for a live
 * holder (the allocator then tries another cluster). */
#define VMFS_LOCK_TRY 0x100

/* One metadata sector of a transaction. */
struct vmfs_txn_sector {
	uint64_t off;             /* LV offset, 512-aligned */
	uint8_t data[512];
};

struct vmfs_fs_hooks {
	void *ctx;
	/* Take the on-disk lock of the object whose lock record is at LV offset
	 * @lv_off (an FD or a resource cluster header), before fs reads it for
	 * modification.  -EBUSY from a cluster lock makes the allocator try
	 * another cluster; any other error aborts the operation. */
	int (*lock)(void *ctx, uint64_t lv_off, int mode);
	void (*unlock)(void *ctx, uint64_t lv_off);
	/* Called with every sector of a transaction (sorted by offset) before
	 * they are written in place; must make them durable (journal) or fail. */
	int (*commit)(void *ctx, const struct vmfs_txn_sector *secs, size_t n);
	/* After the in-place writes of a committed transaction. */
	void (*committed)(void *ctx);
};

struct vmfs_fs;

struct vmfs_fs_opts {
	unsigned flags;            /* VMFS_FS_* */
	const struct vmfs_fs_hooks *hooks;  /* NULL = single host */
	vmfs_log_fn log;           /* NULL: errors to stderr */
	void *log_ctx;
	uint32_t preferred_cluster[VMFS_RES_COUNT]; /* allocation hint per resource (0 = default) */
};
#define VMFS_FS_RDONLY       0x1u
#define VMFS_FS_NO_RESIDENT  0x2u  /* never store file data inline (vmfs-tools fsck friendly) */
#define VMFS_FS_DISCARD      0x4u  /* pass freed file blocks down as discard (punch hole /
                                      UNMAP), after the commit, before the cluster unlock */

/** Open the filesystem on an open volume (the fs borrows it). */
int vmfs_fs_open(struct vmfs_volume *vol, const struct vmfs_fs_opts *o, struct vmfs_fs **out);
/** Convenience: open extents by path and the fs; vmfs_fs_close closes both. */
int vmfs_fs_open_paths(const char *const *paths, int n, const struct vmfs_fs_opts *o,
		       struct vmfs_fs **out);
/** Allocation locality for a cluster host in heartbeat slot @slot: each
 *  resource's first cluster to allocate from is spread over the volume by
 *  slot (slots 0, 1, 2, 3 start at 0, 1/2, 1/4, 3/4 of its clusters), so
 *  hosts allocate from clusters of their own. */
void vmfs_fs_set_alloc_slot(struct vmfs_fs *fs, unsigned slot);
/** Flush the LV. */
int vmfs_fs_sync(struct vmfs_fs *fs);

/* Discards the fs itself did (VMFS_FS_DISCARD: the blocks a committed
 * transaction freed, discarded in the committing thread, after the journal
 * commit, before the cluster locks are released).  The counters are per
 * calling thread and cumulative over every fs since the thread started:
 * read them before and after a call (vmfs_punch, vmfs_unlink, ...) to learn
 * what that call discarded.  A discard is advisory: a failed one is counted
 * here and logged, the call still succeeds. */
struct vmfs_discard_count {
	uint64_t bytes;            /* bytes the device accepted */
	uint64_t failed;           /* bytes whose discard failed */
	int last_err;              /* error of the last failed discard (-EOPNOTSUPP, ...), or 0 */
};
/** Whether @fs discards the blocks its transactions free (VMFS_FS_DISCARD). */
bool vmfs_fs_discards(const struct vmfs_fs *fs);
/** The calling thread's discard counters. */
void vmfs_fs_discard_count(struct vmfs_discard_count *c);
void vmfs_fs_close(struct vmfs_fs *fs);

const struct vmfs_fs_info *vmfs_fs_get_info(const struct vmfs_fs *fs);
struct vmfs_bdev *vmfs_fs_bdev(struct vmfs_fs *fs);
struct vmfs_volume *vmfs_fs_volume(struct vmfs_fs *fs);
int vmfs_fs_statfs(struct vmfs_fs *fs, struct vmfs_statfs *st);
/** Last error message (thread-unsafe convenience for tools). */
const char *vmfs_fs_last_error(const struct vmfs_fs *fs);

/* ---- names and paths ------------------------------------------------------------ */
int vmfs_lookup(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t *addr);
/** Resolve an absolute or root-relative path ("/a/b", "a/b"); symlinks are
 *  not followed. */
int vmfs_resolve(struct vmfs_fs *fs, const char *path, uint32_t *addr);
/** Split "/a/b/c" into the parent's address and the last component. */
int vmfs_resolve_parent(struct vmfs_fs *fs, const char *path, uint32_t *dir, char name[129]);

int vmfs_create(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t mode,
		uint32_t uid, uint32_t gid, uint32_t *addr);
int vmfs_mkdir(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t mode,
	       uint32_t uid, uint32_t gid, uint32_t *addr);
int vmfs_symlink(struct vmfs_fs *fs, uint32_t dir, const char *name, const char *target,
		 uint32_t *addr);
/** \return length of the target copied (NUL-terminated, truncated to bufsz-1). */
int vmfs_readlink(struct vmfs_fs *fs, uint32_t addr, char *buf, size_t bufsz);
int vmfs_link(struct vmfs_fs *fs, uint32_t addr, uint32_t dir, const char *name);
int vmfs_unlink(struct vmfs_fs *fs, uint32_t dir, const char *name);
int vmfs_rmdir(struct vmfs_fs *fs, uint32_t dir, const char *name);
int vmfs_rename(struct vmfs_fs *fs, uint32_t sdir, const char *sname, uint32_t ddir,
		const char *dname);
/** Swap the objects two existing names refer to (renameat2 RENAME_EXCHANGE),
 *  in one transaction; a directory must not move below itself (-EINVAL). */
int vmfs_rename_exchange(struct vmfs_fs *fs, uint32_t sdir, const char *sname, uint32_t ddir,
			 const char *dname);

/** Call @cb for every entry (including "." and ".."); a non-zero return from
 *  @cb stops the walk and is returned. */
int vmfs_readdir(struct vmfs_fs *fs, uint32_t dir,
		 int (*cb)(void *ctx, const struct vmfs_dirent *de), void *ctx);

/* ---- attributes ------------------------------------------------------------------- */
int vmfs_stat(struct vmfs_fs *fs, uint32_t addr, struct vmfs_stat *st);
#define VMFS_SET_MODE  0x1u
#define VMFS_SET_UID   0x2u
#define VMFS_SET_GID   0x4u
#define VMFS_SET_ATIME 0x8u
#define VMFS_SET_MTIME 0x10u
int vmfs_setattr(struct vmfs_fs *fs, uint32_t addr, unsigned mask, uint32_t mode,
		 uint32_t uid, uint32_t gid, uint32_t atime, uint32_t mtime);

/* ---- file data ------------------------------------------------------------------------ */
#define VMFS_MAX_FILE_SIZE (62ull << 40)

/** \return bytes read (short at EOF), or negative errno. */
int64_t vmfs_pread(struct vmfs_fs *fs, uint32_t addr, void *buf, size_t len, uint64_t off);
/** \return bytes written, or negative errno (nothing partial is committed). */
int64_t vmfs_pwrite(struct vmfs_fs *fs, uint32_t addr, const void *buf, size_t len, uint64_t off);
int vmfs_truncate(struct vmfs_fs *fs, uint32_t addr, uint64_t size);
/** Punch a hole: free every whole block inside [off, off+len) (its pointer
 *  cleared, the block returned to the bitmap and, with VMFS_FS_DISCARD,
 *  discarded after the commit) and zero the partial blocks at the edges.
 *  The size does not change; the range reads as zeros afterwards. */
int vmfs_punch(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len);

/* One piece of a vectored call: @len bytes at file offset @off (@buf: the
 * data for vmfs_pwritev, unused by vmfs_punchv). */
struct vmfs_seg {
	const void *buf;
	uint64_t off, len;
};
/** vmfs_pwrite of several pieces in one transaction (one commit, one flush
 *  of the new data before it).  \return bytes written or negative errno. */
int64_t vmfs_pwritev(struct vmfs_fs *fs, uint32_t addr, const struct vmfs_seg *s, size_t n);
/** vmfs_punch of several ranges in one transaction. */
int vmfs_punchv(struct vmfs_fs *fs, uint32_t addr, const struct vmfs_seg *s, size_t n);

#define VMFS_ALLOC_TBZ       0x1u  /* zeroedthick: blocks marked to-be-zeroed */
#define VMFS_ALLOC_ZERO      0x2u  /* eagerzeroedthick: blocks zeroed now */
#define VMFS_ALLOC_KEEP_SIZE 0x4u
/** Allocate file blocks for the holes in [off, off+len) (file-block modes;
 *  resident/sub-block files are converted first). */
int vmfs_fallocate(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len, unsigned flags);

enum vmfs_extent_state {
	VMFS_EXT_HOLE = 0, VMFS_EXT_ALLOCATED = 1, VMFS_EXT_TBZ = 2, VMFS_EXT_INLINE = 3,
};
struct vmfs_extent {
	uint64_t file_off;        /* start of the extent in the file */
	uint64_t len;             /* bytes (may end past EOF up to the block end) */
	uint64_t lv_off;          /* LV offset (ALLOCATED and TBZ only) */
	int state;                /* enum vmfs_extent_state */
};
/** Extent map: the extent containing @off (contiguous run of the same state,
 *  capped at @max_len or 1 GiB).  -ENXIO when @off >= size. */
int vmfs_map(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t max_len,
	     struct vmfs_extent *ext);
/** Extent map for a zero-copy write of [off, off+len): holes are allocated
 *  as zeroed blocks, TBZ blocks zero-filled, the size raised to off+len (one
 *  transaction); then the extent containing @off is returned (ALLOCATED; it
 *  may be shorter than len: call again for the rest).  The caller writes the
 *  data straight to the LV.  Resident/sub-block files become block files. */
int vmfs_map_write(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len,
		   struct vmfs_extent *ext);

/* A file handle: an FD address plus the fs (no state is cached). */
struct vmfs_fh {
	struct vmfs_fs *fs;
	uint32_t addr;
};
int vmfs_fh_open(struct vmfs_fs *fs, const char *path, struct vmfs_fh *f);
int vmfs_fh_open_addr(struct vmfs_fs *fs, uint32_t addr, struct vmfs_fh *f);

/* ---- low-level read API (vmfsck, tools) ---------------------------------------- */
int vmfs_res_get_info(struct vmfs_fs *fs, int kind, struct vmfs_res_info *ri);
/** Read cluster header @idx (0..nclusters-1) of resource @kind.  -ENODATA if
 *  the header was never written (magic 0). */
int vmfs_res_read_cluster(struct vmfs_fs *fs, int kind, uint32_t idx, struct vmfs_cluster *c,
			  uint64_t *lv_off);
/** LV offset of item @index (global index cluster*ipe+item) of SBC/PBC/FDC. */
int vmfs_res_item_lv(struct vmfs_fs *fs, int kind, uint64_t index, uint64_t *lv_off);
/** Is the item named by @addr (FB/SB/PB/FD) allocated in its bitmap?
 *  \return 1 allocated, 0 free, negative errno. */
int vmfs_addr_allocated(struct vmfs_fs *fs, uint32_t addr);
/** Read and validate the FD at @addr (magic, id).  @lv_off optional. */
int vmfs_fd_read(struct vmfs_fs *fs, uint32_t addr, struct vmfs_fd *fd, uint64_t *lv_off);
/** Read the FD stored in FDC item @index without validating it (fsck scan). */
int vmfs_fd_read_raw(struct vmfs_fs *fs, uint64_t index, struct vmfs_fd *fd, uint64_t *lv_off);
/** Read the 1024 pointers of pointer block @pb_addr. */
int vmfs_pb_read(struct vmfs_fs *fs, uint32_t pb_addr, uint32_t ptrs[1024]);
/** Total items, addresses: item index of an SB/PB/FD address (cluster*ipe+item). */
int vmfs_addr_index(struct vmfs_fs *fs, uint32_t addr, uint64_t *index);

/* ---- mkfs ------------------------------------------------------------------------------- */
struct vmfs_mkfs_opts {
	const char *label;
	uint8_t uuid[16];         /* FS UUID */
	bool have_uuid;           /* else generated */
	uint8_t lvm_uuid[16];
	bool have_lvm_uuid;
	uint32_t now;             /* creation time (0 = time()) */
	vmfs_log_fn log;
	void *log_ctx;
	bool fresh;               /* devices are new sparse files: skip zeroing */
};
struct vmfs_mkfs_result {
	uint8_t uuid[16], lvm_uuid[16];
	uint64_t lv_size, total_blocks, free_blocks, max_files;
	uint32_t data_start;      /* first data block */
};
/** Format a VMFS5 volume over @bdevs[0..n-1] (segment order = array order).
 *  Devices stay owned by the caller. */
int vmfs_mkfs(struct vmfs_bdev **bdevs, int n, const struct vmfs_mkfs_opts *o,
	      struct vmfs_mkfs_result *res);

#ifdef __cplusplus
}
#endif
#endif
