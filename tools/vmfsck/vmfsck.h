/* vmfsck internals shared by its source files.  See docs/vmfsck.8. */
#ifndef VMFSCK_H
#define VMFSCK_H

#include <stdbool.h>
#include <stdint.h>

#include "vmfs/fs.h"
#include "vmfs/fsck.h"
#include "vmfs/lockmgr.h"
#include "vmfs/volume.h"

/* fsck(8) exit codes */
#define EX_CLEAN     0
#define EX_FIXED     1
#define EX_UNFIXED   4
#define EX_OPER      8
#define EX_USAGE     16

enum ck_mode { MODE_DEFAULT = 0, MODE_NO, MODE_YES };

/* Per FDC item, what the scan learned. */
enum { FD_NONE = 0, FD_VALID, FD_INVALID };
struct fdi {
	uint32_t gen, nlink, type, zla;
	uint64_t size;
	uint32_t refs;            /* names in reachable directories (+ "." / ".." links) */
	uint32_t parent;          /* directory holding its name (dirs) */
	uint32_t nblocks;         /* data blocks counted */
	uint8_t state;
	bool alloc;               /* allocated in .fdc.sf */
	bool reached;             /* reachable from the root */
	bool named_by_orphan;
	bool walked;              /* blocks counted */
	bool kept;                /* counts as used in .fdc.sf after the repairs */
	bool deferred;            /* valid, linked, but free in .fdc.sf: walk only if reached */
	bool skipped;             /* in an all-free cluster: not read (yet) */
};

/* Repairs, collected during a check pass and applied after it. */
enum fix_kind {
	FIX_CLUSTER = 1, FIX_LOCK, FIX_PTR_CLEAR, FIX_CLONE, FIX_FD_COUNTS, FIX_DIRENT_SET,
	FIX_DIRENT_REMOVE, FIX_DIRENT_ADD, FIX_DROP, FIX_CLEAR_FD, FIX_REATTACH,
};
struct fix {
	int kind;
	int res;                  /* resource kind (FIX_CLUSTER) */
	uint32_t idx;             /* cluster / dirent index / pointer slot */
	uint32_t addr;            /* FD or directory address */
	uint32_t pb;              /* pointer block holding the pointer (0 = FD array) */
	uint32_t old;             /* old pointer (clone) */
	uint64_t lv;              /* lock record offset */
	bool fresh_lock;
	struct vmfs_fsck_fd_fix fd;
	struct vmfs_dirent de;
	uint8_t sec[512];
	char what[200];           /* what the fix does, for the report */
};

struct ck {
	/* options */
	int mode;
	bool verbose, force;
	unsigned hb_wait_ms;              /* watch live-marked slots this long (liveness) */
	unsigned hb_timeout_ms;           /* unchanged this long = dead: only then freed by -y */
	const char *const *paths;
	int npaths;
	/* the volume */
	struct vmfs_volume *vol;
	struct vmfs_bdev *lv;
	struct vmfs_fs *fs;
	const struct vmfs_fs_info *info;
	struct vmfs_res_info ri[VMFS_RES_COUNT];
	uint64_t bs;
	char logmsg[512];
	/* heartbeat view: dead[] = live-marked slots that did not renew */
	struct vmfs_hb_slot hb[VMFS_HB_NSLOTS];
	bool hb_ok[VMFS_HB_NSLOTS];
	bool hb_dead[VMFS_HB_NSLOTS];
	bool hb_alive[VMFS_HB_NSLOTS];
	uint8_t *hb_raw;                  /* the region as last read by hb_observe */
	/* per pass */
	uint8_t *alloc[VMFS_RES_COUNT];   /* bit set = allocated on disk */
	uint8_t *used[VMFS_RES_COUNT];    /* bit set = referenced by a kept file */
	uint8_t *dup[VMFS_RES_COUNT];     /* bit set = referenced more than once */
	uint8_t *cl_bad[VMFS_RES_COUNT];  /* per cluster: header needs a rewrite */
	uint8_t *cl_fresh[VMFS_RES_COUNT];/* per cluster: lock record must be formatted */
	uint32_t *cl_total[VMFS_RES_COUNT];
	uint8_t *fdc_allfree;             /* per .fdc.sf cluster: valid header, every item free */
	uint64_t ndups;
	struct fdi *fds;
	uint64_t nfds;
	struct vmfs_fd *deferred;         /* FDs walked after the tree walk */
	uint32_t *deferred_addr;
	size_t ndeferred, capdeferred;
	bool tree_incomplete;
	bool io_error;                    /* a device error made the check incomplete */
	uint32_t lost_found;              /* address, 0 = none */
	/* results */
	unsigned problems;                /* this pass */
	unsigned fixes;                   /* applied, all passes */
	unsigned unfixable;               /* this pass */
	struct fix *fixv;
	size_t nfix, capfix;
	unsigned nfiles, ndirs;
	uint64_t nused[VMFS_RES_COUNT];    /* items in use, per resource */
	uint64_t ntbz;                    /* TBZ block pointers */
};

/* reporting (vmfsck.c): one line per problem; add_fix queues a repair (NULL without -y) */
void problem(struct ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void unfixable(struct ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct fix *add_fix(struct ck *c, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* check.c */
int check_pass(struct ck *c);
void pass_free(struct ck *c);
extern const char *const res_name[VMFS_RES_COUNT];
extern const char *const item_name[VMFS_RES_COUNT];

/* repair.c */
int apply_fixes(struct ck *c);

/* hb.c */
int hb_observe(struct ck *c);
int hb_repair(struct ck *c);
void check_lock(struct ck *c, const uint8_t rec[512], uint64_t lv, uint32_t magic, const char *what);

static inline bool bit_get(const uint8_t *b, uint64_t i) { return (b[i / 8] >> (i % 8)) & 1; }
static inline void bit_set(uint8_t *b, uint64_t i) { b[i / 8] |= (uint8_t)(1u << (i % 8)); }
static inline void bit_clr(uint8_t *b, uint64_t i) { b[i / 8] &= (uint8_t)~(1u << (i % 8)); }
static inline uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

#endif
