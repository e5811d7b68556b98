/* Asynchronous data path: the vmfs_bdev_queue_* API.
 *
 * Three engines behind one queue object:
 *  - libaio on bd->fd (files and block devices): requests are batched into
 *    one io_submit() per kick; completions are reaped from the shared
 *    completion ring without a system call when there are any, else with
 *    a blocking io_getevents(); once vmfs_bdev_queue_fd() has been called,
 *    each request also raises the eventfd (io_set_eventfd);
 *  - a backend's native async path (bd->async: iSCSI through libiscsi's task
 *    API), driven from poll();
 *  - emulation for stacked devices without either (fault wrapper, LV): the
 *    request runs synchronously through the ops at kick time and completes on
 *    the next poll.
 *
 * Argument checks are the sync path's (vmfs_bdev_check_io): a bad request is
 * refused by vmfs_bdev_submit() with -EINVAL/-EROFS and nothing is queued.
 *
 * A queue belongs to one thread.  Completions are collected on a done list
 * (under done_lock, because a backend may complete a request from another
 * thread that drives the shared transport) and callbacks always run from
 * vmfs_bdev_queue_poll() on the owner's thread, after the request's slot has
 * been freed, so a callback may submit again.
 */
#include <errno.h>
#include <libaio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define VMFS_QUEUE_MAX_DEPTH 4096u
/* iocbs per io_submit().  The kernel plugs a batch of more than two and
 * dispatches none of it to the device before the last one is set up (a few
 * microseconds each through a filesystem's O_DIRECT path): 32 at once left a
 * virtio disk idle for ~100 us per round and cost 20-30% of 4K QD32 IOPS
 * against one at a time (bench/vhost).  Small groups start the device early
 * and still save most of the system calls. */
#define AIO_SUBMIT_GROUP 4

enum qkind { Q_AIO, Q_NATIVE, Q_EMUL };

#define MAX_FILTERS 4

struct vmfs_bdev_queue {
	struct vmfs_bdev *bd;          /* where requests go (below any pass-through) */
	struct vmfs_bdev *top;         /* the device the queue was made on */
	struct {
		vmfs_bdev_admit_fn fn;
		void *priv;
	} filt[MAX_FILTERS];           /* pass-through checks, top first */
	int nfilt;
	enum qkind kind;
	unsigned depth;
	unsigned inflight;             /* accepted, callback not yet run */
	unsigned nsent;                /* Q_AIO: owned by the kernel */
	struct vmfs_req *reqs;         /* depth slots */
	struct vmfs_req *free;
	struct vmfs_req *pend_head, *pend_tail;
	unsigned npend;
	pthread_mutex_t done_lock;
	struct vmfs_req *done_head, *done_tail;
	unsigned ndone;
	int efd;
	bool efd_armed;                /* Q_AIO: vmfs_bdev_queue_fd() was asked for */
	/* Q_AIO */
	io_context_t ctx;
	struct iocb *iocbs;            /* parallel to reqs */
	struct iocb **iocbp;
	struct io_event *events;
};

static void complete(struct vmfs_bdev_queue *q, struct vmfs_req *r, int result, bool signal)
{
	r->result = result;
	r->next = NULL;
	pthread_mutex_lock(&q->done_lock);
	if (q->done_tail)
		q->done_tail->next = r;
	else
		q->done_head = r;
	q->done_tail = r;
	q->ndone++;
	pthread_mutex_unlock(&q->done_lock);
	if (signal && q->efd >= 0) {
		uint64_t one = 1;
		ssize_t n = write(q->efd, &one, sizeof(one));
		(void)n; /* counter overflow is impossible at our depths */
	}
}

void vmfs_req_done(struct vmfs_req *r, int result)
{
	complete(r->q, r, result, true);
}

static unsigned ndone_peek(struct vmfs_bdev_queue *q)
{
	unsigned n;

	pthread_mutex_lock(&q->done_lock);
	n = q->ndone;
	pthread_mutex_unlock(&q->done_lock);
	return n;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vmfs_bdev_queue_create(struct vmfs_bdev *bd, unsigned depth, struct vmfs_bdev_queue **out)
{
	struct vmfs_bdev_queue *q;
	int r;

	if (!bd || !out || depth == 0 || depth > VMFS_QUEUE_MAX_DEPTH)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->top = bd;
	/* pass-through devices: their checks here, their lower device's engine */
	while (bd->pt_lower && q->nfilt < MAX_FILTERS) {
		q->filt[q->nfilt].fn = bd->pt_admit;
		q->filt[q->nfilt].priv = bd->priv;
		q->nfilt++;
		bd = bd->pt_lower;
	}
	if (bd->pt_lower) {
		free(q);
		return -ELOOP;
	}
	q->bd = bd;
	q->depth = depth;
	q->efd = -1;
	pthread_mutex_init(&q->done_lock, NULL);
	q->reqs = calloc(depth, sizeof(*q->reqs));
	if (!q->reqs) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < depth; i++) {
		q->reqs[i].q = q;
		q->reqs[i].next = i + 1 < depth ? &q->reqs[i + 1] : NULL;
	}
	q->free = &q->reqs[0];
	if (bd->fd >= 0)
		q->kind = Q_AIO;
	else if (bd->async)
		q->kind = Q_NATIVE;
	else
		q->kind = Q_EMUL;
	if (q->kind != Q_NATIVE) {
		q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (q->efd < 0) {
			r = -errno;
			goto fail;
		}
	}
	if (q->kind == Q_AIO) {
		q->iocbs = calloc(depth, sizeof(*q->iocbs));
		q->iocbp = calloc(depth, sizeof(*q->iocbp));
		q->events = calloc(depth, sizeof(*q->events));
		if (!q->iocbs || !q->iocbp || !q->events) {
			r = -ENOMEM;
			goto fail;
		}
		r = io_setup((int)depth, &q->ctx);
		if (r < 0) {
			q->ctx = 0;
			goto fail;
		}
	}
	*out = q;
	return 0;
fail:
	if (q->efd >= 0)
		close(q->efd);
	free(q->iocbs);
	free(q->iocbp);
	free(q->events);
	free(q->reqs);
	pthread_mutex_destroy(&q->done_lock);
	free(q);
	return r;
}

int vmfs_bdev_submit(struct vmfs_bdev_queue *q, enum vmfs_bdev_op op,
		     const struct iovec *iov, int iovcnt, uint64_t off,
		     vmfs_bdev_cb cb, void *arg)
{
	struct vmfs_req *r;
	size_t len = 0;
	int rc;

	if (!q)
		return -EINVAL;
	switch (op) {
	case VMFS_BDEV_OP_READ:
	case VMFS_BDEV_OP_WRITE:
		rc = vmfs_bdev_check_io(q->top, iov, iovcnt, off, op == VMFS_BDEV_OP_WRITE, &len);
		if (rc)
			return rc;
		break;
	case VMFS_BDEV_OP_FLUSH:
		iovcnt = 0;
		off = 0;
		break;
	default:
		return -EINVAL;
	}
	r = q->free;
	if (!r)
		return -EAGAIN;
	if (iovcnt > (int)(sizeof(r->iov_inline) / sizeof(r->iov_inline[0]))) {
		r->iov = malloc(sizeof(*iov) * (size_t)iovcnt);
		if (!r->iov)
			return -ENOMEM;
	} else {
		r->iov = r->iov_inline;
	}
	if (iovcnt)
		memcpy(r->iov, iov, sizeof(*iov) * (size_t)iovcnt);
	q->free = r->next;
	r->op = op;
	r->iovcnt = iovcnt;
	r->off = off;
	r->len = len;
	r->cb = cb;
	r->arg = arg;
	r->result = 0;
	r->retries = 0;
	r->be = NULL;
	r->next = NULL;
	if (q->pend_tail)
		q->pend_tail->next = r;
	else
		q->pend_head = r;
	q->pend_tail = r;
	q->npend++;
	q->inflight++;
	return 0;
}

static struct vmfs_req *pend_pop(struct vmfs_bdev_queue *q)
{
	struct vmfs_req *r = q->pend_head;

	if (r) {
		q->pend_head = r->next;
		if (!q->pend_head)
			q->pend_tail = NULL;
		q->npend--;
		r->next = NULL;
	}
	return r;
}

/* Run one request synchronously through the ops (emulation, fallbacks). */
static int run_sync(struct vmfs_bdev *bd, struct vmfs_req *r)
{
	switch (r->op) {
	case VMFS_BDEV_OP_READ:
		return r->len ? bd->ops->readv(bd->priv, r->iov, r->iovcnt, r->off) : 0;
	case VMFS_BDEV_OP_WRITE:
		return r->len ? bd->ops->writev(bd->priv, r->iov, r->iovcnt, r->off) : 0;
	case VMFS_BDEV_OP_FLUSH:
		return vmfs_bdev_flush(bd);
	}
	return -EINVAL;
}

/* The pass-through checks, as the request is handed to the lower device. */
static int admit(struct vmfs_bdev_queue *q, const struct vmfs_req *r)
{
	for (int i = 0; i < q->nfilt; i++) {
		int rc = q->filt[i].fn(q->filt[i].priv, r->op, r->off, r->len);

		if (rc)
			return rc;
	}
	return 0;
}

static int kick_aio(struct vmfs_bdev_queue *q)
{
	while (q->pend_head) {
		struct vmfs_req *r;
		int n = 0, got;

		for (r = q->pend_head; r; r = r->next) {
			struct iocb *cb;
			/* a zero-length request completes without the kernel, a
			 * refused one with its error: alone, at the head */
			int rc = r->op != VMFS_BDEV_OP_FLUSH && r->len == 0 ? 1 : admit(q, r);

			if (rc) {
				if (n == 0)
					complete(q, pend_pop(q), rc > 0 ? 0 : rc, true);
				break;
			}
			cb = &q->iocbs[r - q->reqs];
			if (r->op == VMFS_BDEV_OP_READ)
				io_prep_preadv(cb, q->bd->fd, r->iov, r->iovcnt, (long long)r->off);
			else if (r->op == VMFS_BDEV_OP_WRITE)
				io_prep_pwritev(cb, q->bd->fd, r->iov, r->iovcnt, (long long)r->off);
			else
				io_prep_fdsync(cb, q->bd->fd);
			cb->data = r;
			if (q->efd_armed)
				io_set_eventfd(cb, q->efd);
			q->iocbp[n++] = cb;
			if (n == AIO_SUBMIT_GROUP)
				break;
		}
		if (n == 0)
			continue;
		got = io_submit(q->ctx, n, q->iocbp);
		if (got == -EAGAIN || got == -EINTR)
			return 0; /* stays pending; the next poll retries */
		if (got < 0) {
			/* The head was refused: fdsync without kernel support
			 * runs synchronously, anything else fails alone. */
			r = pend_pop(q);
			if (r->op == VMFS_BDEV_OP_FLUSH && got == -EINVAL)
				complete(q, r, run_sync(q->bd, r), true);
			else
				complete(q, r, got, true);
			continue;
		}
		for (int i = 0; i < got; i++)
			pend_pop(q);
		q->nsent += (unsigned)got;
		if (got < n)
			return 0;
	}
	return 0;
}

int vmfs_bdev_queue_kick(struct vmfs_bdev_queue *q)
{
	struct vmfs_req *r;

	if (!q)
		return -EINVAL;
	switch (q->kind) {
	case Q_AIO:
		return kick_aio(q);
	case Q_NATIVE:
		if (!q->pend_head)
			return 0;
		while ((r = pend_pop(q))) {
			int rc = admit(q, r);

			if (!rc)
				rc = q->bd->async->start(q->bd->priv, r);
			if (rc < 0)
				complete(q, r, rc, true);
		}
		return q->bd->async->wait(q->bd->priv, 0);
	case Q_EMUL:
		while ((r = pend_pop(q))) {
			int rc = admit(q, r);

			complete(q, r, rc ? rc : run_sync(q->bd, r), true);
		}
		return 0;
	}
	return -EINVAL;
}

static void aio_event(struct vmfs_bdev_queue *q, const struct io_event *ev)
{
	struct vmfs_req *r = ev->data;
	long res = (long)ev->res;
	int result;

	q->nsent--;
	if (res < 0) {
		if (r->op == VMFS_BDEV_OP_FLUSH && res == -EINVAL)
			result = run_sync(q->bd, r);
		else
			result = (int)res;
	} else if (r->op != VMFS_BDEV_OP_FLUSH && (size_t)res != r->len) {
		result = -EIO; /* short transfer inside the device */
	} else {
		result = 0;
	}
	complete(q, r, result, false);
}

/* The completion ring the kernel shares with us at the io_context_t address
 * (stable ABI, what fio's userspace_reap reads): reaping from it costs no
 * system call.  Only this queue's thread moves head. */
struct aio_ring_abi {
	unsigned id, nr, head, tail;
	unsigned magic, compat_features, incompat_features, header_length;
	struct io_event io_events[];
};
#define AIO_RING_MAGIC_ABI 0xa10a10a1u

static int reap_ring(struct vmfs_bdev_queue *q)
{
	struct aio_ring_abi *ring = (struct aio_ring_abi *)q->ctx;
	unsigned head, tail;
	int n = 0;

	if (ring->magic != AIO_RING_MAGIC_ABI || ring->incompat_features)
		return -1;
	head = ring->head;
	tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
	while (head != tail) {
		struct io_event ev = ring->io_events[head];

		head = (head + 1) % ring->nr;
		aio_event(q, &ev);
		n++;
	}
	__atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
	return n;
}

static void reap_aio(struct vmfs_bdev_queue *q, unsigned want, int ms)
{
	struct timespec ts, *tsp = NULL;
	uint64_t cnt;
	int n, got;

	/* Clear the eventfd before reaping (only once an event loop asked for
	 * it): a completion that lands after this read raises it again.  Also
	 * with nothing in flight: that completion may have been reaped from
	 * the ring already, and an eventfd left readable would wake the event
	 * loop again and again. */
	if (q->efd_armed && read(q->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		return;
	if (q->nsent == 0)
		return;
	if (want > q->nsent)
		want = q->nsent;
	got = reap_ring(q);
	if (got >= 0 && ((unsigned)got >= want || ms == 0))
		return;
	if (got < 0)
		got = 0;
	if (ms >= 0) {
		ts.tv_sec = ms / 1000;
		ts.tv_nsec = (long)(ms % 1000) * 1000000L;
		tsp = &ts;
	}
	n = io_getevents(q->ctx, ms == 0 ? 0 : (long)(want - (unsigned)got), (long)q->depth,
			 q->events, tsp);
	for (int i = 0; i < n; i++)
		aio_event(q, &q->events[i]);
}

static int run_done(struct vmfs_bdev_queue *q)
{
	struct vmfs_req *list;
	int n = 0;

	pthread_mutex_lock(&q->done_lock);
	list = q->done_head;
	q->done_head = q->done_tail = NULL;
	q->ndone = 0;
	pthread_mutex_unlock(&q->done_lock);
	if (list && q->kind != Q_AIO && q->efd >= 0) {
		uint64_t cnt;
		ssize_t rr = read(q->efd, &cnt, sizeof(cnt));
		(void)rr;
	}
	while (list) {
		struct vmfs_req *r = list;
		vmfs_bdev_cb cb = r->cb;
		void *arg = r->arg;
		int res = r->result;

		list = r->next;
		if (r->iov != r->iov_inline)
			free(r->iov);
		r->iov = NULL;
		r->next = q->free;
		q->free = r;
		q->inflight--;
		if (cb)
			cb(arg, res);
		n++;
	}
	return n;
}

int vmfs_bdev_queue_poll(struct vmfs_bdev_queue *q, unsigned min, int timeout_ms)
{
	int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	unsigned total = 0;
	bool first = true;

	if (!q)
		return -EINVAL;
	vmfs_bdev_queue_kick(q);
	for (;;) {
		int ms;

		if (first || ndone_peek(q))
			ms = 0;
		else if (timeout_ms < 0)
			ms = -1;
		else {
			int64_t left = deadline - now_ms();
			ms = left > 0 ? (int)left : 0;
		}
		if (q->kind == Q_AIO)
			reap_aio(q, min > total ? min - total : 1, ms);
		else if (q->kind == Q_NATIVE && vmfs_bdev_queue_inflight(q) > ndone_peek(q))
			q->bd->async->wait(q->bd->priv, ms);
		total += (unsigned)run_done(q);
		if (q->pend_head)
			vmfs_bdev_queue_kick(q);
		first = false;
		if (total >= min || q->inflight == 0)
			break;
		if (timeout_ms == 0 || (timeout_ms > 0 && now_ms() >= deadline))
			break;
	}
	return (int)total;
}

bool vmfs_bdev_queue_ready(struct vmfs_bdev_queue *q)
{
	if (!q || !q->inflight)
		return false;
	if (q->kind == Q_AIO && q->nsent) {
		const struct aio_ring_abi *ring = (const struct aio_ring_abi *)q->ctx;

		if (ring->magic != AIO_RING_MAGIC_ABI || ring->incompat_features)
			return true;   /* no ring to look at: let poll ask the kernel */
		if (__atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE) != ring->head)
			return true;
	}
	return q->pend_head || ndone_peek(q);
}

int vmfs_bdev_set_passthrough(struct vmfs_bdev *bd, struct vmfs_bdev *lower, vmfs_bdev_admit_fn fn)
{
	if (!bd || !lower || !fn || bd == lower)
		return -EINVAL;
	bd->pt_lower = lower;
	bd->pt_admit = fn;
	return 0;
}

struct vmfs_bdev *vmfs_bdev_queue_bdev(const struct vmfs_bdev_queue *q)
{
	return q ? q->top : NULL;
}

bool vmfs_bdev_queue_blocking(const struct vmfs_bdev_queue *q)
{
	return !q || q->kind == Q_EMUL || (q->kind == Q_AIO && !q->bd->fd_direct);
}

unsigned vmfs_bdev_queue_inflight(const struct vmfs_bdev_queue *q)
{
	return q ? q->inflight : 0;
}

int vmfs_bdev_queue_fd(const struct vmfs_bdev_queue *q)
{
	if (!q)
		return -1;
	/* libaio queues raise the eventfd only once someone asked for it: a
	 * queue driven by poll alone saves the signal and its read.  The
	 * queue object is ours (heap), so arming it through a const pointer is
	 * well defined. */
	((struct vmfs_bdev_queue *)q)->efd_armed = true;
	return q->efd;
}

void vmfs_bdev_queue_destroy(struct vmfs_bdev_queue *q)
{
	if (!q)
		return;
	/* The kernel (or the transport) may still own buffers and slots: let
	 * everything accepted complete, callbacks included. */
	while (q->inflight)
		vmfs_bdev_queue_poll(q, q->inflight, 1000);
	if (q->kind == Q_AIO)
		io_destroy(q->ctx);
	if (q->efd >= 0)
		close(q->efd);
	free(q->iocbs);
	free(q->iocbp);
	free(q->events);
	free(q->reqs);
	pthread_mutex_destroy(&q->done_lock);
	free(q);
}
