/*
 * OpenVMFS block device layer.
 *
 * Every layer above (volume/LVM, filesystem core, lock manager, journal, the
 * services) does all its I/O to the shared device through this API.  A device
 * is opened by path or URL:
 *
 *   /path/to/file-or-blockdev          regular file or block device
 *   file:///path                       same
 *   iscsi://[user%password@]host[:port]/target-iqn/lun    libiscsi
 *   nfs://server/export/path           a file on an NFS server, libnfs
 *   fault:PATH-OR-URL[?k=v&...]        the fault-injection wrapper over that
 *                                      device (tests; keys: fail_nth, fail_err,
 *                                      stall_ms, cut_after, seed, tear — see
 *                                      docs/blockdev.md)
 *
 * Offsets and lengths are bytes and must be multiples of the logical sector
 * size (vmfs_bdev_info.lbs); anything else, and anything that crosses the end
 * of the device, fails with -EINVAL before any byte is transferred.
 *
 * Every function returns 0 (or a byte count where stated) on success and a
 * negative errno on failure.  A device handle may be used from several
 * threads at once for the synchronous calls; an async queue belongs to one
 * thread.
 *
 * Devices stack: the fault-injection wrapper and the volume (LVM
 * concatenation of extents) are themselves devices built with
 * vmfs_bdev_create() over a vmfs_bdev_ops table.
 */
#ifndef VMFS_BLOCKDEV_H
#define VMFS_BLOCKDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMFS_SECTOR_SIZE 512u

/* Open flags. */
#define VMFS_BDEV_RDONLY   0x01u /* open read-only; writes fail with -EROFS */
#define VMFS_BDEV_DIRECT   0x02u /* bypass the host page cache (O_DIRECT) */
#define VMFS_BDEV_CREATE   0x04u /* create a regular file if missing (size from vmfs_bdev_open_opts) */

/* How vmfs_bdev_ats() is made atomic on this device. */
enum vmfs_ats_mode {
	VMFS_ATS_NONE = 0,          /* no atomic primitive: multi-host use refused */
	VMFS_ATS_OFD_LOCK,          /* local file/blockdev: OFD byte-range lock + read/compare/write */
	VMFS_ATS_COMPARE_AND_WRITE, /* SCSI COMPARE AND WRITE (VAAI ATS) */
	VMFS_ATS_SCSI_RESERVE,      /* SCSI-2 RESERVE(6)/RELEASE(6) around read/compare/write */
	VMFS_ATS_NLM_LOCK,          /* NFS file: NLM byte-range lock around read/compare/write */
	VMFS_ATS_LOWER,             /* stacked device: whatever the device below does */
};

/* Name of an ATS mode, for logs and `vmfsctl`. */
const char *vmfs_ats_mode_name(enum vmfs_ats_mode m);

struct vmfs_bdev_info {
	uint64_t size;          /* bytes, multiple of lbs */
	uint32_t lbs;           /* logical sector size (I/O granularity) */
	uint32_t pbs;           /* physical sector size (alignment that avoids RMW) */
	uint32_t max_io;        /* largest single request in bytes (0 = no limit) */
	enum vmfs_ats_mode ats; /* how test-and-set is done */
	bool discard;           /* discard/unmap reaches the storage */
	bool rdonly;
	bool direct;            /* data bypasses the host's page cache (O_DIRECT, or
	                           a network transport) */
	char kind[16];          /* "file", "blockdev", "iscsi", "nfs", "fault", "lv" */
};

struct vmfs_bdev;

/* Extra options for vmfs_bdev_open_opts(); zero-initialise. */
struct vmfs_bdev_open_opts {
	unsigned flags;              /* VMFS_BDEV_* */
	uint64_t create_size;        /* with VMFS_BDEV_CREATE: size of a new sparse file */
	const char *initiator_iqn;   /* iSCSI: our initiator name (default derived from host) */
	bool force_ats_fallback;     /* iSCSI: do not use COMPARE AND WRITE even if supported */
};

/** Open a device by path or URL.  \return 0 and *out, or negative errno. */
int vmfs_bdev_open(const char *uri, unsigned flags, struct vmfs_bdev **out);
int vmfs_bdev_open_opts(const char *uri, const struct vmfs_bdev_open_opts *o,
			struct vmfs_bdev **out);

/** Close and free; flushes nothing by itself (call vmfs_bdev_flush first). */
void vmfs_bdev_close(struct vmfs_bdev *bd);

/** Geometry and capabilities. */
const struct vmfs_bdev_info *vmfs_bdev_get_info(const struct vmfs_bdev *bd);
uint64_t vmfs_bdev_size(const struct vmfs_bdev *bd);
const char *vmfs_bdev_uri(const struct vmfs_bdev *bd);

/** Vectored synchronous I/O at a byte offset.  The total length and offset
 *  must be multiples of lbs and lie inside the device.
 *  \return 0 when every byte was transferred, negative errno otherwise. */
int vmfs_bdev_readv(struct vmfs_bdev *bd, const struct iovec *iov, int iovcnt, uint64_t off);
int vmfs_bdev_writev(struct vmfs_bdev *bd, const struct iovec *iov, int iovcnt, uint64_t off);
int vmfs_bdev_read(struct vmfs_bdev *bd, void *buf, size_t len, uint64_t off);
int vmfs_bdev_write(struct vmfs_bdev *bd, const void *buf, size_t len, uint64_t off);

/** Make every completed write durable. */
int vmfs_bdev_flush(struct vmfs_bdev *bd);

/** Tell the storage that [off, off+len) is unused (punch hole / SCSI UNMAP).
 *  Subsequent reads of the range return zeros on files; on other devices
 *  the content is unspecified.  -EOPNOTSUPP when the device cannot. */
int vmfs_bdev_discard(struct vmfs_bdev *bd, uint64_t off, uint64_t len);

/** Atomic test-and-set of one 512-byte sector at @off (512-aligned):
 *  if the sector equals @expect, replace it with @newdata.
 *  \return 0 when replaced; -ESTALE when it did not match (then the current
 *  content is copied to @current if non-NULL); other negative errno on I/O
 *  failure (the sector is then unchanged or replaced, never torn). */
int vmfs_bdev_ats(struct vmfs_bdev *bd, uint64_t off, const void *expect,
		  const void *newdata, void *current);

/* ---- Asynchronous data path ------------------------------------------- */

enum vmfs_bdev_op { VMFS_BDEV_OP_READ, VMFS_BDEV_OP_WRITE, VMFS_BDEV_OP_FLUSH };

/** Completion callback: @result is 0 or a negative errno. */
typedef void (*vmfs_bdev_cb)(void *arg, int result);

struct vmfs_bdev_queue;

/** Create a submission queue of @depth slots (1..4096) on @bd (libaio for
 *  files and block devices, libiscsi async for iSCSI, emulated elsewhere:
 *  stacked devices run each request synchronously through their ops at kick
 *  time and complete it on the next poll).
 *  vmfs_bdev_queue_destroy() first waits for every accepted request to
 *  complete (running its callback).  Callbacks run only from
 *  vmfs_bdev_queue_poll() (and destroy), never from submit or kick, and may
 *  submit new requests.  A FLUSH covers writes that completed before it was
 *  submitted, not those still in flight beside it.  Argument checks are the
 *  sync path's: a bad request is refused by vmfs_bdev_submit() (-EINVAL,
 *  -EROFS) and nothing is queued; @cb may be NULL. */
int vmfs_bdev_queue_create(struct vmfs_bdev *bd, unsigned depth, struct vmfs_bdev_queue **out);
void vmfs_bdev_queue_destroy(struct vmfs_bdev_queue *q);

/** Queue one request.  The iovec array is copied; the buffers must stay valid
 *  until the callback runs.  -EAGAIN when the queue is full (poll first).
 *  With VMFS_BDEV_DIRECT, buffers must be aligned as O_DIRECT requires (the
 *  kernel's -EINVAL then comes back through the callback).  On iSCSI a
 *  request larger than info.max_io (when non-zero) completes with -EINVAL.
 *  Requests are only guaranteed to be sent after vmfs_bdev_queue_kick() or
 *  vmfs_bdev_queue_poll(). */
int vmfs_bdev_submit(struct vmfs_bdev_queue *q, enum vmfs_bdev_op op,
		     const struct iovec *iov, int iovcnt, uint64_t off,
		     vmfs_bdev_cb cb, void *arg);
/** Send everything queued so far (batched io_submit). */
int vmfs_bdev_queue_kick(struct vmfs_bdev_queue *q);
/** Reap completions, running callbacks: waits until at least @min completed
 *  or @timeout_ms passed (-1 = forever).  \return number completed. */
int vmfs_bdev_queue_poll(struct vmfs_bdev_queue *q, unsigned min, int timeout_ms);
/** Completions are waiting for vmfs_bdev_queue_poll() (or requests wait to
 *  be sent): a busy-polling loop's cheap check, no system call (libaio:
 *  the kernel's completion ring, mapped in user space). */
bool vmfs_bdev_queue_ready(struct vmfs_bdev_queue *q);
/** Requests submitted and not yet completed. */
unsigned vmfs_bdev_queue_inflight(const struct vmfs_bdev_queue *q);
/** The device the queue was made on. */
struct vmfs_bdev *vmfs_bdev_queue_bdev(const struct vmfs_bdev_queue *q);
/** Kick and poll may wait for the I/O itself: the queue is emulated (a
 *  stacked device that is not a pass-through), or libaio on a descriptor
 *  without O_DIRECT (io_submit then copies through the page cache before it
 *  returns).  An event loop serving many requests wants false. */
bool vmfs_bdev_queue_blocking(const struct vmfs_bdev_queue *q);
/** A file descriptor that becomes readable when completions are pending
 *  (eventfd), for event loops; -1 if the backend has none (iSCSI: the
 *  transport must be driven by vmfs_bdev_queue_poll()). */
int vmfs_bdev_queue_fd(const struct vmfs_bdev_queue *q);

/* ---- Stacking: devices implemented above this layer ------------------- */

/** Admission check of a pass-through device (see below): 0 lets the request
 *  go on to the lower device, a negative errno fails it with that error. */
typedef int (*vmfs_bdev_admit_fn)(void *priv, enum vmfs_bdev_op op, uint64_t off, uint64_t len);

/** Declare @bd (made by vmfs_bdev_create() with private data @priv) a
 *  pass-through of @lower: its ops only check a request and hand it on
 *  unchanged (same offset, same length) to @lower.  Async queues on @bd then
 *  run on @lower's engine (libaio on its descriptor, not the synchronous
 *  emulation) and call @admit(@priv, ...) for each request at the moment it
 *  is handed to @lower, so the check is as late as the sync path's.  @lower
 *  must outlive @bd's queues. */
int vmfs_bdev_set_passthrough(struct vmfs_bdev *bd, struct vmfs_bdev *lower, vmfs_bdev_admit_fn admit);

struct vmfs_bdev_ops {
	int (*readv)(void *priv, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*writev)(void *priv, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*flush)(void *priv);
	int (*discard)(void *priv, uint64_t off, uint64_t len);          /* may be NULL */
	int (*ats)(void *priv, uint64_t off, const void *expect, const void *newdata, void *current);
	void (*close)(void *priv);
};

/** Make a device from an ops table.  Argument checking (alignment, range,
 *  read-only) is done by this layer before the ops are called. */
int vmfs_bdev_create(const struct vmfs_bdev_ops *ops, void *priv,
		     const struct vmfs_bdev_info *info, const char *uri,
		     struct vmfs_bdev **out);

/* ---- Fault injection (tests) ------------------------------------------ */

/** Wrap @lower (taking ownership) in a fault-injecting device.  Writes are
 *  held in a volatile write-back cache until flush, as a disk with a write
 *  cache would, so that a simulated power cut can lose them.  Reads see the
 *  cache.  ATS and discard are write-through: the cached writes overlapping
 *  them are written to @lower first, then the operation goes to @lower (an
 *  ATS result is visible to other hosts at once on real storage).  The
 *  wrapper reports @lower's ATS mode and kind "fault". */
int vmfs_fault_wrap(struct vmfs_bdev *lower, struct vmfs_bdev **out);
/** Fail the @n-th I/O (1 = next one; reads, writes, flushes and ATS count)
 *  with @err.  n = 0 disarms. */
void vmfs_fault_fail_nth(struct vmfs_bdev *fault, uint64_t n, int err);
/** Every I/O from now on sleeps @ms before it runs (a lost path); 0 ends it. */
void vmfs_fault_stall(struct vmfs_bdev *fault, unsigned ms);
/** Simulated power cut: write to the lower device what was flushed plus a
 *  random subset (seeded) of the unflushed writes; when @tear, one multi-
 *  sector write may be cut at a sector boundary.  Afterwards every I/O fails
 *  with -EIO.  \return number of unflushed writes that were kept. */
int vmfs_fault_power_cut(struct vmfs_bdev *fault, uint64_t seed, bool tear);
/** Number of I/Os seen so far (to pick crash points). */
uint64_t vmfs_fault_io_count(const struct vmfs_bdev *fault);

#ifdef __cplusplus
}
#endif
#endif
