/*
 * OpenVMFS host: one process's membership of the cluster on one volume.
 *
 * Every process that writes to a volume (vmfsd, vmfs-fuse, vmkfstools,
 * vmfsck -y) mounts it through this layer, which stacks the pieces below in
 * the one order that is safe:
 *
 *   extents (blockdev) -> heartbeat guard (fails I/O while fenced)
 *     -> volume (LV device) -> heartbeat slot joined with ATS
 *     -> filesystem with lock/commit hooks -> per-host journal
 *
 * The filesystem's lock hook takes the on-disk lock of each FD / resource
 * cluster it modifies (waiting for a live holder, reclaiming a dead one after
 * replaying its journal); its commit hook logs each transaction in this
 * host's journal and flushes it before the sectors are written in place.
 * Journals live in the system file /.jbc.sf (created by the first host to
 * mount the volume): journal i (1 MiB) belongs to heartbeat slot i.
 *
 * A read-only mount joins nothing and takes no locks.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef VMFS_HOST_H
#define VMFS_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "vmfs/fs.h"
#include "vmfs/lockmgr.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMFS_HOST_RDONLY 0x1u   /* no heartbeat, no locks, no journal */
#define VMFS_HOST_DIRECT 0x2u   /* open extents with O_DIRECT */
/* Our host UUID's earlier incarnation is known to be gone (the caller holds a
 * lock that proves it, e.g. vmfsd's state-dir lock): reclaim its slots at
 * once (journal replayed) instead of waiting for the dead-host timeout. */
#define VMFS_HOST_RECLAIM_OWN 0x4u
/* Do not pass freed file blocks down to the device (by default they are
 * discarded once the transaction that freed them has committed, while the
 * resource cluster is still locked: punch hole on a file, UNMAP on a LUN). */
#define VMFS_HOST_NO_DISCARD 0x8u

/* Whether a process opens a volume's extents with O_DIRECT (VMFS_HOST_DIRECT). */
enum vmfs_host_direct {
	VMFS_HOST_DIRECT_AUTO,   /* vmfs_host_want_direct() decides */
	VMFS_HOST_DIRECT_ON,
	VMFS_HOST_DIRECT_OFF,
};

/** Whether to open the extents @paths[0..n-1] with O_DIRECT under @mode.
 *  AUTO: yes as soon as one extent is a block device or an iscsi:// / nfs://
 *  URL (a LUN other hosts write to: this host's page cache would not see
 *  their writes), no when all are regular files (image files).  The one rule
 *  vmfs-fuse and vmfsd share. */
bool vmfs_host_want_direct(enum vmfs_host_direct mode, const char *const *paths, int n);

#define VMFS_HOST_JOURNAL_SIZE (1u << 20)   /* one journal per slot */
#define VMFS_HOST_JOURNAL_FILE ".jbc.sf"

struct vmfs_host_opts {
	unsigned flags;              /* VMFS_HOST_* */
	uint8_t uuid[16];            /* host UUID; all zero = generate */
	uint64_t io_timeout_us;      /* 0 = default (2 s: heartbeat 3 s, dead after 16 s) */
	uint64_t lock_wait_us;       /* how long a metadata lock waits for a live holder
	                                (0 = 2 x hb_timeout) */
	vmfs_log_fn log;             /* NULL: messages to stderr */
	void *log_ctx;
	unsigned fs_flags;           /* extra VMFS_FS_* flags */
};

struct vmfs_host;

/** Mount the volume whose extents are @paths[0..n-1] (any order). */
int vmfs_host_mount(const char *const *paths, int n, const struct vmfs_host_opts *o,
		    struct vmfs_host **out);
/** Flush, release every lock, leave the heartbeat cleanly, close. */
int vmfs_host_unmount(struct vmfs_host *h);

struct vmfs_fs *vmfs_host_fs(struct vmfs_host *h);
/** NULL for read-only mounts. */
struct vmfs_hb *vmfs_host_hb(struct vmfs_host *h);
/** The LV device every layer uses. */
struct vmfs_bdev *vmfs_host_bdev(struct vmfs_host *h);
bool vmfs_host_rdonly(const struct vmfs_host *h);
/** Slot index of this host (-1 for read-only mounts). */
int vmfs_host_slot(const struct vmfs_host *h);
/** False once the heartbeat was lost (another host reclaimed us): every
 *  further change fails with -EIO; unmount and mount again. */
bool vmfs_host_healthy(const struct vmfs_host *h);

/** Take a long-lived lock on the file @addr (e.g. open for writing: EXCL;
 *  shared readers: RO; clustered VMs: MW).  Nested calls by this host are
 *  counted.  \return 0, -EBUSY with @c naming the holder when a live host
 *  holds it, or another error. */
int vmfs_host_lock_file(struct vmfs_host *h, uint32_t addr, enum vmfs_lm_mode mode,
			struct vmfs_lock_conflict *c);
/** Drop one reference taken by vmfs_host_lock_file. */
int vmfs_host_unlock_file(struct vmfs_host *h, uint32_t addr);
/** Hand the exclusive lock on @addr to the live host in @slot (live migration). */
int vmfs_host_handoff_file(struct vmfs_host *h, uint32_t addr, unsigned slot);
/** Accept a lock handed to us on @addr.  0 when the record names us. */
int vmfs_host_accept_file(struct vmfs_host *h, uint32_t addr);

/** Read the lock record of file @addr (for `vmfsctl locks`). */
int vmfs_host_file_lock_state(struct vmfs_host *h, uint32_t addr, struct vmfs_lock_rec *r);

#ifdef __cplusplus
}
#endif
#endif
