/*
 * OpenVMFS hypervisor I/O: a vhost-user-blk backend.
 *
 * QEMU (or any vhost-user front-end) connects to a Unix socket and hands us
 * its guest memory (memfd regions) and virtqueues (split or packed); we serve virtio-blk
 * requests straight between guest memory and the disk: iovecs point into the
 * mapped guest memory, no bounce copy.
 *
 * A disk is a small ops table.  Two are provided:
 *   vhost_disk_open_vmfs()  a file of a mounted datastore: the file layer's
 *                           extent map says where each byte lives on the LV
 *                           (vmfs_map / vmfs_map_write: allocate on first
 *                           write, TBZ zero-filled there), data goes to the LV
 *                           device at that offset (the LV splits by extent and
 *                           passes the fencing guard of a cluster host)
 *   vhost_disk_open_file()  a plain file or block device (tests, benches)
 *
 * One server thread per backend speaks the protocol (one front-end at a
 * time; after a disconnect it accepts the next one, which is how a
 * reconnecting QEMU finds a restarted or the same backend).  Each enabled
 * virtqueue has its own thread; requests of a batch beyond the first run on
 * a small worker pool so that several are in flight at once.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef VMFS_VHOST_H
#define VMFS_VHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmfs/fs.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vhost_disk;

struct vhost_disk_ops {
	/* [off, off+len of iov) lies inside the disk and is sector aligned */
	int (*readv)(struct vhost_disk *d, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*writev)(struct vhost_disk *d, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*flush)(struct vhost_disk *d);
	/* content of the range afterwards unspecified (may be NULL) */
	int (*discard)(struct vhost_disk *d, uint64_t off, uint64_t len);
	/* range reads as zeros afterwards; VHOST_WZ_UNMAP: its storage may be
	 * freed (a thin disk's blocks, a hole in a file) */
	int (*write_zeroes)(struct vhost_disk *d, uint64_t off, uint64_t len, unsigned flags);
	void (*close)(struct vhost_disk *d);
	/* Optional asynchronous reads/writes, one context per queue thread (all
	 * calls from that thread).  aq_submit: -EINVAL when this request cannot
	 * go this way (alignment: it is then done synchronously), -EAGAIN when
	 * full; the iovec array is copied, @cb runs from aq_poll/aq_destroy. */
	int (*aq_create)(struct vhost_disk *d, unsigned depth, void **aq);
	void (*aq_destroy)(void *aq);          /* waits for every request, runs callbacks */
	int (*aq_fd)(void *aq);                /* readable when completions are due */
	int (*aq_submit)(void *aq, bool wr, const struct iovec *iov, int n, uint64_t off,
			 void (*cb)(void *arg, int res), void *arg);
	int (*aq_kick)(void *aq);
	int (*aq_poll)(void *aq);              /* run due callbacks, never waits */
	bool (*aq_ready)(void *aq);            /* optional: aq_poll has work (no system
	                                          call: checked while busy-polling) */
};

struct vhost_disk {
	const struct vhost_disk_ops *ops;
	void *priv;
	uint64_t size;            /* bytes, multiple of 512 (a tail is not exported) */
	uint32_t blk_size;        /* advertised logical block size (512) */
	bool rdonly;
	bool unmap;               /* DISCARD / WRITE_ZEROES+UNMAP free storage
	                             (config write_zeroes_may_unmap) */
	uint32_t discard_align;   /* bytes; the guest aligns discards to it (0: blk_size) */
	char serial[21];          /* GET_ID answer (20 bytes, NUL padded) */
};

#define VHOST_DISK_RDONLY 0x1u
#define VHOST_DISK_DIRECT 0x2u   /* file disks: O_DIRECT when guest buffers allow */
#define VHOST_DISK_THIN   0x4u   /* datastore disks: thin whatever the block map
                                    shows (else thin = has a hole when opened) */
#define VHOST_DISK_THICK  0x8u   /* datastore disks: never free blocks */

#define VHOST_WZ_UNMAP 0x1u

/** Plain file or block device. */
int vhost_disk_open_file(const char *path, unsigned flags, struct vhost_disk **out);
/** File @addr of @fs (the caller holds it exclusively, e.g. with
 *  vmfs_host_lock_file EXCL, for as long as the disk is open: its block
 *  map is cached).  Thin (a hole when opened, or VHOST_DISK_THIN): DISCARD
 *  and WRITE_ZEROES+UNMAP free its blocks (vmfs_punch). */
int vhost_disk_open_vmfs(struct vmfs_fs *fs, uint32_t addr, unsigned flags,
			 struct vhost_disk **out);
void vhost_disk_close(struct vhost_disk *d);

typedef void (*vhost_log_fn)(void *ctx, int level, const char *msg); /* levels as vmfs_log_fn */

#define VHOST_POLL_US_DEFAULT 32
#define VHOST_POLL_US_MAX     1000

struct vhost_blk_opts {
	const char *socket_path;  /* created (an old socket file is replaced) */
	struct vhost_disk *disk;  /* borrowed until vhost_blk_destroy */
	unsigned num_queues;      /* 1..16 (0 = 1) */
	unsigned workers;         /* I/O worker threads (0 = 16) */
	int poll_us;              /* adaptive busy-polling: after work, watch the
	                             ring (and the async completions) for up to this
	                             many microseconds before sleeping on the kick
	                             eventfd (0 = VHOST_POLL_US_DEFAULT, < 0 never;
	                             at most VHOST_POLL_US_MAX) */
	vhost_log_fn log;
	void *log_ctx;
};

struct vhost_blk;

/** Bind the socket and start serving.  */
int vhost_blk_create(const struct vhost_blk_opts *o, struct vhost_blk **out);
/** Stop every thread, drop the connection, unlink the socket. */
void vhost_blk_destroy(struct vhost_blk *b);

struct vhost_blk_stats {
	uint64_t requests, errors, unsupported, connections;
	uint64_t async;           /* requests done on the disk's async queue (libaio) */
	bool connected;
};
void vhost_blk_get_stats(struct vhost_blk *b, struct vhost_blk_stats *st);

/** Test hook (unit tests, fuzzing): feed one raw message (header + payload)
 *  with @nfds file descriptors (duplicated; the caller keeps its own) to a
 *  backend that has no socket.  If @replylen is given, *@replylen is the
 *  capacity of @reply on entry and the reply's length (header included; 0
 *  when none) on return.  \return 0 handled, negative errno when refused
 *  (a connection would be dropped). */
int vhost_blk_feed_msg(struct vhost_blk *b, const uint8_t *msg, size_t len, const int *fds,
		       int nfds, uint8_t *reply, size_t *replylen);
/** Same; a file descriptor the reply carries (GET_INFLIGHT_FD) is returned
 *  in *@reply_fd (-1 when none; the caller closes it). */
int vhost_blk_feed_msg_fd(struct vhost_blk *b, const uint8_t *msg, size_t len, const int *fds,
			  int nfds, uint8_t *reply, size_t *replylen, int *reply_fd);
/** A backend for vhost_blk_feed_msg (no socket, no threads until rings start). */
int vhost_blk_create_detached(const struct vhost_blk_opts *o, struct vhost_blk **out);

#ifdef __cplusplus
}
#endif
#endif
