/* Private to fs/: the mounted filesystem, resources, transactions, inodes. */
#ifndef VMFS_FS_INTERNAL_H
#define VMFS_FS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ondisk.h"
#include "vmfs/fs.h"
#include "vmfs/volume.h"

/* An open resource file (.fbb/.fdc/.pbc/.sbc.sf). */
struct vmfs_res {
	int kind;
	uint32_t magic;
	struct od_res_hdr h;
	uint32_t fd_addr;
	uint64_t file_size;
	uint32_t nblocks;         /* file blocks mapped */
	uint64_t *blk_lv;         /* LV offset of each file block (0 = hole: error on use) */
	uint32_t nclusters;       /* area_count * epa */
	uint32_t hint;            /* next cluster to try */
};

struct vmfs_fs {
	struct vmfs_volume *vol;
	bool own_vol;
	struct vmfs_bdev *bd;     /* the LV */
	unsigned flags;
	struct vmfs_fs_hooks hooks;
	bool have_hooks;
	vmfs_log_fn log;
	void *log_ctx;
	struct od_fsdesc desc;
	struct vmfs_fs_info info;
	uint64_t bs;              /* file block size */
	uint64_t total_blocks;    /* LV blocks */
	struct vmfs_res res[VMFS_RES_COUNT];
	uint32_t gen_counter;
	uint8_t *zero_block;      /* bs bytes of zeros */
	pthread_mutex_t txn_lock; /* one metadata transaction at a time in this process */
	bool fresh_data;          /* the open txn wrote data that its commit exposes */
	char last_error[512];
};

void fs_log(struct vmfs_fs *fs, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define fs_err(fs, ...) fs_log(fs, VMFS_LOG_ERR, __VA_ARGS__)

/* ---- transactions (txn.c) ------------------------------------------------------ */
struct vmfs_inode;

struct vmfs_txn {
	struct vmfs_fs *fs;
	struct vmfs_txn_sector *secs;
	size_t nsecs, capsecs;
	uint64_t *locks;          /* LV offsets of lock records held */
	size_t nlocks, caplocks;
	struct vmfs_inode **inodes; /* inodes loaded in this txn (shared by address) */
	size_t ninodes, capinodes;
	uint64_t *freed;          /* FBs freed (VMFS_FS_DISCARD): discarded after commit */
	size_t nfreed, capfreed;
};

void txn_init(struct vmfs_txn *t, struct vmfs_fs *fs);
/* Read metadata at LV offset (512-aligned), seeing the txn's own writes. */
int txn_read(struct vmfs_txn *t, uint64_t off, void *buf, size_t len);
/* Stage metadata bytes (any offset/length: partial sectors are read-modify-written). */
int txn_write(struct vmfs_txn *t, uint64_t off, const void *buf, size_t len);
/* Remember a freed file block for discard after the commit. */
void txn_note_freed(struct vmfs_txn *t, uint64_t block);
/* Take the object lock at @lv_off once per txn (no-op without hooks). */
int txn_lock(struct vmfs_txn *t, uint64_t lv_off, int mode);
/* Encode dirty inodes, run the commit hook, write every sector in place. */
int txn_commit(struct vmfs_txn *t);
/* Drop everything staged, release locks and inodes. */
void txn_abort(struct vmfs_txn *t);
/* Finish: commit if r == 0 else abort; returns the first error. */
int txn_finish(struct vmfs_txn *t, int r);

/* ---- resources (res.c) ------------------------------------------------------------ */
int res_open_all(struct vmfs_fs *fs);
void res_close_all(struct vmfs_fs *fs);
/* LV offset of [off, off+len) inside a resource file (must not cross a block). */
int res_file_lv(struct vmfs_fs *fs, struct vmfs_res *r, uint64_t off, uint64_t len, uint64_t *lv);
int res_cluster_lv(struct vmfs_fs *fs, struct vmfs_res *r, uint32_t cluster, uint64_t *lv);
int res_item_lv(struct vmfs_fs *fs, struct vmfs_res *r, uint64_t index, uint64_t *lv);
/* Allocate one item; returns its global index (cluster*ipe + item). */
int res_alloc(struct vmfs_txn *t, int kind, uint32_t hint_cluster, uint64_t *index);
/* The same, trying global item index @near first (a file's next block goes
 * right after its previous one): when it is taken, a file block goes to the
 * start of a free window of that cluster, else its next free item; then the
 * host's clusters (first free item). */
#define RES_NO_NEAR UINT64_MAX
int res_alloc_near(struct vmfs_txn *t, int kind, uint32_t hint_cluster, uint64_t near,
		   uint64_t *index);
int res_free(struct vmfs_txn *t, int kind, uint64_t index);
/* Address <-> index helpers (validate against the resource). */
int addr_to_index(struct vmfs_fs *fs, uint32_t addr, int *kind, uint64_t *index);
uint32_t index_to_addr(struct vmfs_fs *fs, int kind, uint64_t index);
int res_is_allocated(struct vmfs_fs *fs, int kind, uint64_t index);

/* ---- inodes (inode.c) ------------------------------------------------------------- */
struct vmfs_inode {
	uint32_t addr;
	uint64_t lv_off;
	struct vmfs_fd fd;
	uint8_t raw[OD_FD_SIZE];
	bool dirty;
	bool fresh_lock;          /* lock sector must be formatted */
	bool loaded;              /* raw holds the FD as read in this txn (txn_commit
	                             stages nothing when the encoding is unchanged) */
};

int fd_lv(struct vmfs_fs *fs, uint32_t addr, uint64_t *lv);
/* Load (validated) inode into @t; for_write takes the FD lock first. */
int iget(struct vmfs_txn *t, uint32_t addr, bool for_write, struct vmfs_inode **out);
/* Read without a txn (read-only ops); caller frees. */
int iread(struct vmfs_fs *fs, uint32_t addr, struct vmfs_inode *ino);
int ino_validate(struct vmfs_fs *fs, struct vmfs_inode *ino);
static inline void idirty(struct vmfs_inode *i) { i->dirty = true; }
/* Allocate and format a new inode in @t. */
int ialloc(struct vmfs_txn *t, uint32_t type, uint32_t mode, uint32_t uid, uint32_t gid,
	   struct vmfs_inode **out);
/* Internal file I/O; @t may be NULL for reads.  Directories go through the txn. */
int64_t ino_read(struct vmfs_fs *fs, struct vmfs_txn *t, struct vmfs_inode *ino, void *buf,
		 size_t len, uint64_t off);
int64_t ino_write(struct vmfs_txn *t, struct vmfs_inode *ino, const void *buf, size_t len,
		  uint64_t off);
int ino_truncate(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t size);
int ino_fallocate(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t off, uint64_t len,
		  unsigned flags);
/* Allocate (zeroed) and un-TBZ every block of [off, off+len), extend the size. */
int ino_prepare_write(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t off, uint64_t len);
int ino_map(struct vmfs_fs *fs, struct vmfs_inode *ino, uint64_t off, uint64_t max_len,
	    struct vmfs_extent *ext);
/* Free the whole blocks inside [off, off+len), zero partial edges; size kept. */
int ino_punch(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t off, uint64_t len);
/* Free everything and mark the FD free (nlink 0). */
int ino_release(struct vmfs_txn *t, struct vmfs_inode *ino);
uint32_t fs_now(void);

#endif
