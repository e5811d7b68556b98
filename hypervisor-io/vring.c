/*
 * Split virtqueues: one thread per started queue waits on its kick eventfd,
 * pops available descriptor chains, turns each into an iovec list pointing
 * into guest memory (every descriptor checked to lie inside one mapped
 * region, chains and indirect tables bounded), and runs the request.  When a
 * kick brings several requests, all but the last go to the worker pool and
 * the last runs in the queue thread: QD1 pays no hand-off, deep queues get
 * several requests in flight.  Completions are added to the used ring under
 * the queue lock and signalled on the call eventfd.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_ring.h>

#include "internal.h"

static uint16_t ld16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

/* Build r->iov from the chain at @head.  \return 0, -EINVAL for a bad chain. */
static int walk_chain(struct vh_vq *q, uint16_t head, struct vh_req *r)
{
	struct vh_dev *d = q->dev;
	const struct vring_desc *tab = q->desc;
	unsigned tabn = q->num, idx = head, steps = 0;
	bool indirect = false, seen_write = false;

	r->niov = 0;
	if (head >= q->num)
		return -EINVAL;
	for (;;) {
		struct vring_desc dsc;

		if (idx >= tabn || ++steps > tabn + 1)
			return -EINVAL;
		memcpy(&dsc, &tab[idx], sizeof(dsc));
		if (dsc.flags & VRING_DESC_F_INDIRECT) {
			if (indirect || (dsc.flags & VRING_DESC_F_NEXT) || dsc.len % 16 ||
			    !dsc.len || dsc.len / 16 > VH_MAX_QSIZE || r->niov)
				return -EINVAL;
			tab = vh_gpa(d, dsc.addr, dsc.len);
			if (!tab || ((uintptr_t)tab & 7))
				return -EINVAL;
			tabn = dsc.len / 16;
			idx = 0;
			steps = 0;
			indirect = true;
			continue;
		}
		bool wr = dsc.flags & VRING_DESC_F_WRITE;

		if (!dsc.len || r->niov >= VH_MAX_SEGS || (seen_write && !wr))
			return -EINVAL;
		void *p = vh_gpa(d, dsc.addr, dsc.len);

		if (!p)
			return -EFAULT;
		seen_write |= wr;
		r->iov[r->niov].iov_base = p;
		r->iov[r->niov].iov_len = dsc.len;
		r->writable[r->niov] = wr;
		r->niov++;
		if (!(dsc.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = dsc.next;
	}
}

/* Does the driver want a call for what was published since the last one?
 * With EVENT_IDX: when the used index passed its used_event (stored after
 * the avail ring); else unless it set NO_INTERRUPT.  Under q->lock. */
static bool want_call(struct vh_vq *q)
{
	const struct vring_avail *av = q->avail;
	uint16_t old = q->signalled_used, nw = q->used_idx;
	bool valid = q->signalled_valid;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(ld16(&av->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	q->signalled_valid = true;
	q->signalled_used = nw;
	return !valid || vring_need_event(ld16(&av->ring[q->num]), nw, old);
}

static void signal_call(struct vh_vq *q)
{
	uint64_t one = 1;

	q->call_pending = false;
	if (q->call_fd >= 0 && want_call(q))
		if (write(q->call_fd, &one, 8) != 8)
			vh_log(q->dev, 1, "queue %u: call eventfd write failed", q->idx);
}

static void publish(struct vh_req *r, uint32_t used_len)
{
	struct vh_vq *q = r->vq;
	struct vring_used *u = q->used;
	struct vring_used_elem *e = &u->ring[q->used_idx % q->num];

	e->id = r->head;
	e->len = used_len;
	r->busy = false;
	q->used_idx++;
	__atomic_store_n(&u->idx, q->used_idx, __ATOMIC_RELEASE);
	if (--q->inflight == 0)
		pthread_cond_broadcast(&q->idle);
}

void vh_req_complete(struct vh_req *r, uint32_t used_len)
{
	struct vh_vq *q = r->vq;

	pthread_mutex_lock(&q->lock);
	publish(r, used_len);
	signal_call(q);
	pthread_mutex_unlock(&q->lock);
}

void vh_req_complete_batched(struct vh_req *r, uint32_t used_len)
{
	struct vh_vq *q = r->vq;

	pthread_mutex_lock(&q->lock);
	publish(r, used_len);
	q->call_pending = true;
	pthread_mutex_unlock(&q->lock);
}

static void flush_calls(struct vh_vq *q)
{
	if (q->call_pending) {
		pthread_mutex_lock(&q->lock);
		signal_call(q);
		pthread_mutex_unlock(&q->lock);
	}
}

/* The async completions of a poll: one call for all of them. */
static void aq_reap(struct vh_vq *q)
{
	q->dev->disk->ops->aq_poll(q->aq);
	flush_calls(q);
}

static void run_req(struct vh_req *r)
{
	uint32_t len = vh_blk_exec(r->vq->dev, r);

	vh_req_complete(r, len);
}

/* A chain we cannot even parse: return it with nothing written. */
static void bad_chain(struct vh_vq *q, struct vh_req *r, int err)
{
	vh_log(q->dev, 1, "queue %u: bad descriptor chain at head %u (%s)", q->idx, r->head,
	       strerror(-err));
	__atomic_add_fetch(&q->dev->st_errors, 1, __ATOMIC_RELAXED);
	vh_req_complete(r, 0);
}

static void *pool_main(void *arg)
{
	struct vh_dev *d = arg;

	pthread_mutex_lock(&d->wlock);
	for (;;) {
		while (!d->whead && !d->wstop)
			pthread_cond_wait(&d->wcond, &d->wlock);
		if (!d->whead)
			break;
		struct vh_req *r = d->whead;

		d->whead = r->next;
		if (!d->whead)
			d->wtail = NULL;
		pthread_mutex_unlock(&d->wlock);
		run_req(r);
		pthread_mutex_lock(&d->wlock);
	}
	pthread_mutex_unlock(&d->wlock);
	return NULL;
}

static void pool_push(struct vh_dev *d, struct vh_req *first, struct vh_req *last, unsigned n)
{
	pthread_mutex_lock(&d->wlock);
	if (d->wtail)
		d->wtail->next = first;
	else
		d->whead = first;
	d->wtail = last;
	if (n > 1)
		pthread_cond_broadcast(&d->wcond);
	else
		pthread_cond_signal(&d->wcond);
	pthread_mutex_unlock(&d->wlock);
}

int vh_pool_start(struct vh_dev *d)
{
	d->wthr = calloc(d->nworkers, sizeof(*d->wthr));
	if (!d->wthr)
		return -ENOMEM;
	for (unsigned i = 0; i < d->nworkers; i++) {
		int r = pthread_create(&d->wthr[i], NULL, pool_main, d);

		if (r) {
			d->nworkers = i;
			return -r;
		}
	}
	return 0;
}

void vh_pool_stop(struct vh_dev *d)
{
	pthread_mutex_lock(&d->wlock);
	d->wstop = true;
	pthread_cond_broadcast(&d->wcond);
	pthread_mutex_unlock(&d->wlock);
	for (unsigned i = 0; d->wthr && i < d->nworkers; i++)
		pthread_join(d->wthr[i], NULL);
	free(d->wthr);
	d->wthr = NULL;
}

/* Pop everything available.  \return requests handled. */
static unsigned drain(struct vh_vq *q)
{
	const struct vring_avail *av = q->avail;
	struct vh_req *first = NULL, *last = NULL, *inline_req = NULL;
	unsigned n = 0, queued = 0, async = 0;
	uint16_t avail_idx = ld16(&av->idx);
	bool lone;

	if (q->broken)
		return 0;
	if ((uint16_t)(avail_idx - q->last_avail) > q->num) {
		vh_log(q->dev, 1, "queue %u: avail index %u runs %u ahead of %u (ring %u): "
		       "ignoring the queue until restarted", q->idx, avail_idx,
		       (uint16_t)(avail_idx - q->last_avail), q->last_avail, q->num);
		q->broken = true;
		return 0;
	}
	lone = (uint16_t)(avail_idx - q->last_avail) == 1;
	while (q->last_avail != avail_idx) {
		uint16_t head = __atomic_load_n(&av->ring[q->last_avail % q->num], __ATOMIC_RELAXED);
		struct vh_req *r;
		int e;

		q->last_avail++;
		if (head >= q->num) {
			vh_log(q->dev, 1, "queue %u: avail head %u out of range", q->idx, head);
			continue;   /* cannot be returned: its id is not a valid slot */
		}
		r = &q->reqs[head];
		pthread_mutex_lock(&q->lock);
		if (r->busy) {
			pthread_mutex_unlock(&q->lock);
			vh_log(q->dev, 1, "queue %u: head %u made available while in flight", q->idx, head);
			continue;
		}
		r->busy = true;
		q->inflight++;
		pthread_mutex_unlock(&q->lock);
		r->vq = q;
		r->head = head;
		r->next = NULL;
		n++;
		e = walk_chain(q, head, r);
		if (e) {
			bad_chain(q, r, e);
			continue;
		}
		/* a lone request with nothing in flight (QD1) is cheaper done
		 * synchronously: one preadv/pwritev instead of io_submit, an
		 * eventfd wake-up and a reap */
		if (q->aq && (!lone || q->aq_inflight) &&
		    vh_blk_submit_async(q->dev, r, q->aq)) {
			async++;
			continue;
		}
		if (inline_req) {
			if (last)
				last->next = inline_req;
			else
				first = inline_req;
			last = inline_req;
			queued++;
		}
		inline_req = r;
	}
	if (async && q->dev->disk->ops->aq_kick(q->aq))
		vh_log(q->dev, 1, "queue %u: async submission failed", q->idx);
	if (first)
		pool_push(q->dev, first, last, queued);
	if (inline_req)
		run_req(inline_req);
	return n;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Kicks off while we watch the ring, on before we sleep.  With EVENT_IDX
 * the avail_event field (after the used ring) says after which avail index
 * the driver kicks: the next one (on) or half the index space away (off). */
static void set_no_notify(struct vh_vq *q, bool on)
{
	struct vring_used *u = q->used;

	if (q->event_idx)
		__atomic_store_n((uint16_t *)&u->ring[q->num],
				 (uint16_t)(q->last_avail + (on ? 0x8000 : 0)), __ATOMIC_RELAXED);
	else
		__atomic_store_n(&u->flags, on ? VRING_USED_F_NO_NOTIFY : 0, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Before sleeping: kicks on, then a last look (a request posted while they
 * were off would otherwise wait).  \return true if work is there. */
static bool kicks_on(struct vh_vq *q)
{
	const struct vring_avail *av = q->avail;

	set_no_notify(q, false);
	return ld16(&av->idx) != q->last_avail && !q->broken &&
	       !__atomic_load_n(&q->stopping, __ATOMIC_ACQUIRE);
}

/* After work, watch the ring for a while without sleeping (and without
 * asking for kicks): a front-end that submits again right after a
 * completion is served without a wake-up.  The window adapts as QEMU's
 * does: halved when it ran out, doubled (up to poll_us) when a sleep turned
 * out shorter than poll_us, so an idle or CPU-starved queue stops burning
 * the CPU its front-end needs.  \return true if work came. */
static bool spin(struct vh_vq *q)
{
	const struct vring_avail *av = q->avail;
	uint64_t end;

	if (q->spin_ns == 0 || q->broken || __atomic_load_n(&q->stopping, __ATOMIC_ACQUIRE))
		return kicks_on(q);
	end = now_ns() + q->spin_ns;
	set_no_notify(q, true);
	do {
		if (q->aq_inflight)
			aq_reap(q);
		for (int i = 0; i < 64; i++) {
			if (ld16(&av->idx) != q->last_avail)
				return !__atomic_load_n(&q->stopping, __ATOMIC_ACQUIRE);
			__builtin_ia32_pause();
		}
	} while (now_ns() < end);
	q->spin_ns = q->spin_ns / 2 < 1000 ? 0 : q->spin_ns / 2;
	return kicks_on(q);
}

static void *vq_main(void *arg)
{
	struct vh_vq *q = arg;
	const struct vhost_disk_ops *ops = q->dev->disk->ops;
	int afd = -1;

	q->aq = NULL;
	q->aq_inflight = 0;
	if (ops->aq_create && ops->aq_create(q->dev->disk, q->num, &q->aq) == 0)
		afd = ops->aq_fd(q->aq);
	else
		q->aq = NULL;
	q->spin_ns = q->dev->poll_ns;
	do
		drain(q);
	while (spin(q));
	for (;;) {
		struct pollfd pf[3] = { { .fd = q->kick_fd, .events = POLLIN },
					{ .fd = q->stop_fd, .events = POLLIN },
					{ .fd = afd, .events = POLLIN } };
		uint64_t v, t0 = now_ns(), slept;

		if (poll(pf, afd >= 0 ? 3 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		slept = now_ns() - t0;
		if (afd >= 0 && pf[2].revents) {
			aq_reap(q);
			/* completions out: the front-end is likely to submit again */
			while (!(pf[0].revents | pf[1].revents) && spin(q))
				drain(q);
		}
		if (!(pf[0].revents | pf[1].revents))
			continue;
		if (slept < q->dev->poll_ns) {
			q->spin_ns = q->spin_ns * 2 < 4000 ? 4000 : q->spin_ns * 2;
			if (q->spin_ns > q->dev->poll_ns)
				q->spin_ns = q->dev->poll_ns;
		}
		if (pf[1].revents)
			break;
		if (pf[0].revents & (POLLERR | POLLHUP | POLLNVAL))
			break;
		if (read(q->kick_fd, &v, 8) < 0 && errno != EAGAIN)
			break;
		do
			drain(q);
		while (spin(q));
	}
	set_no_notify(q, false);
	if (q->aq)
		ops->aq_destroy(q->aq);   /* completes what is in flight */
	q->aq = NULL;
	flush_calls(q);
	return NULL;
}

int vh_vq_start(struct vh_vq *q)
{
	int r;

	if (q->running)
		return 0;
	if (!q->reqs)
		return -EINVAL;
	q->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (q->stop_fd < 0)
		return -errno;
	q->used_idx = __atomic_load_n(&((struct vring_used *)q->used)->idx, __ATOMIC_ACQUIRE);
	q->inflight = 0;
	q->broken = false;
	q->stopping = false;
	q->event_idx = q->dev->features & 1ull << VIRTIO_RING_F_EVENT_IDX;
	q->signalled_valid = false;
	q->call_pending = false;
	r = pthread_create(&q->thr, NULL, vq_main, q);
	if (r) {
		close(q->stop_fd);
		q->stop_fd = -1;
		return -r;
	}
	q->running = true;
	return 0;
}

void vh_vq_stop(struct vh_vq *q)
{
	uint64_t one = 1;

	if (!q->running)
		return;
	__atomic_store_n(&q->stopping, true, __ATOMIC_RELEASE);
	if (write(q->stop_fd, &one, 8) != 8)
		vh_log(q->dev, 1, "queue %u: cannot stop its thread", q->idx);
	pthread_join(q->thr, NULL);
	pthread_mutex_lock(&q->lock);
	while (q->inflight)
		pthread_cond_wait(&q->idle, &q->lock);
	pthread_mutex_unlock(&q->lock);
	close(q->stop_fd);
	q->stop_fd = -1;
	q->running = false;
}

void vh_vq_reset(struct vh_vq *q)
{
	vh_vq_stop(q);
	if (q->kick_fd >= 0)
		close(q->kick_fd);
	if (q->call_fd >= 0)
		close(q->call_fd);
	if (q->err_fd >= 0)
		close(q->err_fd);
	q->kick_fd = q->call_fd = q->err_fd = -1;
	q->have_addr = false;
	q->enabled = false;
	q->last_avail = 0;
	q->desc = q->avail = q->used = NULL;
}
