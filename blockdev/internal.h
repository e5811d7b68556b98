/* Private to blockdev/: the device object, backend constructors and the
 * request object shared by the async queue and the backends. */
#ifndef VMFS_BLOCKDEV_INTERNAL_H
#define VMFS_BLOCKDEV_INTERNAL_H

#include <pthread.h>

#include "vmfs/blockdev.h"

struct vmfs_req;

/* A backend with a native asynchronous path other than libaio on bd->fd
 * (iSCSI).  start() sends one request and arranges for vmfs_req_done() to be
 * called when it completes (from whichever thread drives the transport);
 * wait() drives the transport for at most @timeout_ms (-1 forever, 0 no
 * wait) and returns 0 or a negative errno. */
struct vmfs_bdev_async {
	int (*start)(void *priv, struct vmfs_req *r);
	int (*wait)(void *priv, int timeout_ms);
};

struct vmfs_bdev {
	const struct vmfs_bdev_ops *ops;
	void *priv;
	struct vmfs_bdev_info info;
	char *uri;
	int fd;            /* file/blockdev backends: the fd libaio submits on, else -1 */
	bool fd_direct;    /* fd was opened with O_DIRECT */
	const struct vmfs_bdev_async *async; /* native async path, or NULL */
	struct vmfs_bdev *pt_lower;  /* pass-through device: where requests go */
	vmfs_bdev_admit_fn pt_admit;
};

/* One queued request.  Owned by a vmfs_bdev_queue (aio.c). */
struct vmfs_req {
	struct vmfs_bdev_queue *q;
	enum vmfs_bdev_op op;
	int iovcnt;
	struct iovec *iov;        /* iov_inline or heap */
	uint64_t off;
	size_t len;
	vmfs_bdev_cb cb;
	void *arg;
	int result;
	unsigned retries;         /* backend use (e.g. RESERVATION CONFLICT) */
	int64_t due_us;           /* backend use: when to retry */
	void *be;                 /* backend use (e.g. the libiscsi task) */
	struct vmfs_req *next;
	struct iovec iov_inline[4];
};

/* Completion from a backend; thread-safe. */
void vmfs_req_done(struct vmfs_req *r, int result);

/* Backends: parse their URL and open. */
int vmfs_file_open(const char *path, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out);
int vmfs_iscsi_open(const char *url, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out);
int vmfs_nfs_open(const char *url, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out);
/* "fault:PATH-OR-URL[?opt=val&...]" (fault.c). */
int vmfs_fault_open_url(const char *spec, const struct vmfs_bdev_open_opts *o,
			struct vmfs_bdev **out);

/* Check that [off, off+len) is lbs-aligned and inside the device. */
int vmfs_bdev_check_range(const struct vmfs_bdev *bd, uint64_t off, uint64_t len);
/* Argument checks shared by the sync and async paths: iovec sanity, range,
 * read-only for writes.  Stores the total length in *len. */
int vmfs_bdev_check_io(const struct vmfs_bdev *bd, const struct iovec *iov, int iovcnt,
		       uint64_t off, bool write, size_t *len);
/* TCP connect to host:port and close: 0 or -errno (-EHOSTUNREACH when the
 * name does not resolve).  Turns vague transport errors into clear ones. */
int vmfs_tcp_probe(const char *host, const char *port);
/* Sum of iovec lengths; SIZE_MAX on overflow. */
size_t vmfs_iov_len(const struct iovec *iov, int iovcnt);

#endif
