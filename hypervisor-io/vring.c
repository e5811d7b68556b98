/*
 * Virtqueues, split and packed: one thread per started queue waits on its kick eventfd,
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

/* One data descriptor of a chain: inside one region, not empty, readable
 * ones before writable ones, at most VH_MAX_SEGS. */
static int add_seg(struct vh_dev *d, struct vh_req *r, uint64_t addr, uint32_t len, bool wr,
		   bool *seen_write)
{
	if (!len || r->niov >= VH_MAX_SEGS || (*seen_write && !wr))
		return -EINVAL;
	void *p = vh_gpa(d, addr, len);

	if (!p)
		return -EFAULT;
	*seen_write |= wr;
	r->iov[r->niov].iov_base = p;
	r->iov[r->niov].iov_len = len;
	r->writable[r->niov] = wr;
	r->niov++;
	return 0;
}

/* An indirect table: inside guest memory, a whole number of 16-byte
 * descriptors, at most VH_MAX_QSIZE of them.  NULL when not. */
static const void *indirect_table(struct vh_dev *d, uint64_t addr, uint32_t len)
{
	const void *tab;

	if (len % 16 || !len || len / 16 > VH_MAX_QSIZE)
		return NULL;
	tab = vh_gpa(d, addr, len);
	return tab && !((uintptr_t)tab & 7) ? tab : NULL;
}

/* Build r->iov from the chain at @head.  \return 0, -EINVAL for a bad chain. */
static int walk_chain(struct vh_vq *q, uint16_t head, struct vh_req *r)
{
	struct vh_dev *d = q->dev;
	const struct vring_desc *tab = q->desc;
	unsigned tabn = q->num, idx = head, steps = 0;
	bool indirect = false, seen_write = false;
	int e;

	r->niov = 0;
	if (head >= q->num)
		return -EINVAL;
	for (;;) {
		struct vring_desc dsc;

		if (idx >= tabn || ++steps > tabn + 1)
			return -EINVAL;
		memcpy(&dsc, &tab[idx], sizeof(dsc));
		if (dsc.flags & VRING_DESC_F_INDIRECT) {
			if (indirect || (dsc.flags & VRING_DESC_F_NEXT) || r->niov)
				return -EINVAL;
			tab = indirect_table(d, dsc.addr, dsc.len);
			if (!tab)
				return -EINVAL;
			tabn = dsc.len / 16;
			idx = 0;
			steps = 0;
			indirect = true;
			continue;
		}
		e = add_seg(d, r, dsc.addr, dsc.len, dsc.flags & VRING_DESC_F_WRITE, &seen_write);
		if (e)
			return e;
		if (!(dsc.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = dsc.next;
	}
}

/* ---- packed rings ---------------------------------------------------------- */

#define PK_AVAIL (1u << VRING_PACKED_DESC_F_AVAIL)
#define PK_USED  (1u << VRING_PACKED_DESC_F_USED)

/* Is the descriptor at @pos available to us in the lap of wrap counter @wrap? */
static bool packed_avail(const struct vh_vq *q, uint16_t pos, bool wrap)
{
	const struct vring_packed_desc *ring = q->desc;
	uint16_t f = ld16(&ring[pos].flags);

	return !!(f & PK_AVAIL) == wrap && !!(f & PK_USED) != wrap;
}

/* Build r->iov from the @n descriptors starting at ring position @pos (an
 * indirect table is the chain's only descriptor).  \return 0, -EINVAL. */
static int walk_packed(struct vh_vq *q, uint16_t pos, unsigned n, struct vh_req *r)
{
	struct vh_dev *d = q->dev;
	const struct vring_packed_desc *ring = q->desc;
	bool seen_write = false;
	int e;

	r->niov = 0;
	for (unsigned i = 0; i < n; i++, pos = (uint16_t)(pos + 1u == q->num ? 0 : pos + 1)) {
		struct vring_packed_desc dsc;

		memcpy(&dsc, &ring[pos], sizeof(dsc));
		if (dsc.flags & VRING_DESC_F_INDIRECT) {
			const struct vring_packed_desc *tab = indirect_table(d, dsc.addr, dsc.len);

			if (n != 1 || !tab)
				return -EINVAL;
			for (unsigned k = 0; k < dsc.len / 16; k++) {
				struct vring_packed_desc t;

				memcpy(&t, &tab[k], sizeof(t));
				if (t.flags & VRING_DESC_F_INDIRECT)
					return -EINVAL;
				e = add_seg(d, r, t.addr, t.len, t.flags & VRING_DESC_F_WRITE, &seen_write);
				if (e)
					return e;
			}
			return 0;
		}
		e = add_seg(d, r, dsc.addr, dsc.len, dsc.flags & VRING_DESC_F_WRITE, &seen_write);
		if (e)
			return e;
	}
	return 0;
}

/* Claim buffer slot @id for a popped chain.  NULL (logged) when it cannot be
 * tracked: out of range, or made available again while in flight. */
static struct vh_req *claim(struct vh_vq *q, uint16_t id)
{
	struct vh_req *r;

	if (id >= q->num) {
		vh_log(q->dev, 1, "queue %u: buffer id %u out of range", q->idx, id);
		return NULL;
	}
	r = &q->reqs[id];
	pthread_mutex_lock(&q->lock);
	if (r->busy) {
		pthread_mutex_unlock(&q->lock);
		vh_log(q->dev, 1, "queue %u: head %u made available while in flight", q->idx, id);
		return NULL;
	}
	r->busy = true;
	q->inflight++;
	pthread_mutex_unlock(&q->lock);
	r->vq = q;
	r->head = id;
	r->next = NULL;
	r->ndesc = 1;
	return r;
}

/* The next chain of a packed ring, claimed and parsed; NULL when none (or
 * the ring broke: a chain longer than the ring). */
static struct vh_req *pop_packed(struct vh_vq *q)
{
	const struct vring_packed_desc *ring = q->desc;
	uint16_t start = q->last_avail, pos = start, id;
	bool wrap = q->avail_wrap;
	unsigned n = 0;
	struct vh_req *r;

	while (q->pass_budget && packed_avail(q, start, q->avail_wrap)) {
		uint16_t f;

		/* the head's flags are written last: the chain is complete */
		do {
			f = ring[pos].flags;
			id = ring[pos].id;
			n++;
			if (++pos == q->num) {
				pos = 0;
				wrap = !wrap;
			}
		} while ((f & VRING_DESC_F_NEXT) && n < q->num);
		if (f & VRING_DESC_F_NEXT) {
			vh_log(q->dev, 1, "queue %u: descriptor chain longer than the ring: "
			       "ignoring the queue until restarted", q->idx);
			q->broken = true;
			return NULL;
		}
		q->last_avail = pos;
		q->avail_wrap = wrap;
		q->pass_budget = n < q->pass_budget ? q->pass_budget - n : 0;
		r = claim(q, id);
		if (!r) {   /* cannot be returned: skip it */
			start = pos;
			n = 0;
			continue;
		}
		r->ndesc = (uint16_t)n;
		r->chain_err = walk_packed(q, start, n, r);
		return r;
	}
	return NULL;
}

/* The next chain of a split ring (up to pass_end), claimed and parsed. */
static struct vh_req *pop_split(struct vh_vq *q)
{
	const struct vring_avail *av = q->avail;

	while (q->last_avail != q->pass_end) {
		uint16_t head = __atomic_load_n(&av->ring[q->last_avail % q->num], __ATOMIC_RELAXED);
		struct vh_req *r;

		q->last_avail++;
		r = claim(q, head);   /* out of range: its id is not a valid slot */
		if (!r)
			continue;
		r->chain_err = walk_chain(q, head, r);
		return r;
	}
	return NULL;
}

static struct vh_req *pop(struct vh_vq *q)
{
	return q->packed ? pop_packed(q) : pop_split(q);
}

/* Anything new in the ring? */
static bool avail_pending(const struct vh_vq *q)
{
	const struct vring_avail *av = q->avail;

	if (q->packed)
		return packed_avail(q, q->last_avail, q->avail_wrap);
	return ld16(&av->idx) != q->last_avail;
}

uint32_t vh_vq_get_base(const struct vh_vq *q)
{
	if (!q->packed)
		return q->last_avail;
	return (uint32_t)(q->last_avail | q->avail_wrap << 15) |
	       (uint32_t)(q->used_idx | q->used_wrap << 15) << 16;
}

int vh_vq_set_base(struct vh_vq *q, uint32_t v)
{
	if (!q->packed) {
		if (v > 0xffff)
			return -EINVAL;
		q->last_avail = (uint16_t)v;
		return 0;
	}
	if (!(v >> 16))
		v |= v << 16;   /* no used half: the used position is the avail one */
	q->last_avail = v & 0x7fff;
	q->avail_wrap = v >> 15 & 1;
	q->used_idx = v >> 16 & 0x7fff;
	q->used_wrap = v >> 31;
	return 0;
}

/* Does the driver want a call for what was published since the last one?
 * With EVENT_IDX: when the used index passed its used_event (stored after
 * the avail ring); else unless it set NO_INTERRUPT.  Under q->lock. */
static bool want_call(struct vh_vq *q)
{
	const struct vring_avail *av = q->avail;
	const struct vring_packed_desc_event *ev = q->avail;   /* packed: driver area */
	uint16_t old = q->signalled_used, nw = q->used_idx, ev_off;
	bool valid = q->signalled_valid;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->packed) {
		uint16_t fl = ld16(&ev->flags);

		if (fl != VRING_PACKED_EVENT_FLAG_DESC || !q->event_idx)
			return fl != VRING_PACKED_EVENT_FLAG_DISABLE;
		/* an event offset in the other lap counts from one ring earlier */
		uint16_t ow = ld16(&ev->off_wrap);

		ev_off = ow & 0x7fff;
		if (!!(ow >> VRING_PACKED_EVENT_F_WRAP_CTR) != q->used_wrap)
			ev_off = (uint16_t)(ev_off - q->num);
	} else if (!q->event_idx) {
		return !(ld16(&av->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	} else {
		ev_off = ld16(&av->ring[q->num]);
	}
	q->signalled_valid = true;
	q->signalled_used = nw;
	return !valid || vring_need_event(ev_off, nw, old);
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

	if (q->packed) {
		/* one used descriptor per chain, at the used position (only
		 * descriptors already popped lie there), then skip the chain */
		struct vring_packed_desc *e = (struct vring_packed_desc *)q->desc + q->used_idx;

		e->id = r->head;
		e->len = used_len;
		__atomic_store_n(&e->flags, (uint16_t)(q->used_wrap ? PK_AVAIL | PK_USED : 0),
				 __ATOMIC_RELEASE);
		q->used_idx = (uint16_t)(q->used_idx + r->ndesc);
		if (q->used_idx >= q->num) {
			q->used_idx = (uint16_t)(q->used_idx - q->num);
			q->used_wrap = !q->used_wrap;
			q->signalled_valid = false;   /* positions restart: call once */
		}
	} else {
		struct vring_used_elem *e = &u->ring[q->used_idx % q->num];

		e->id = r->head;
		e->len = used_len;
		q->used_idx++;
		__atomic_store_n(&u->idx, q->used_idx, __ATOMIC_RELEASE);
	}
	r->busy = false;
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

/* Append @r to the list for the workers.  \return 1 */
static unsigned list_add(struct vh_req **first, struct vh_req **last, struct vh_req *r)
{
	if (*last)
		(*last)->next = r;
	else
		*first = r;
	*last = r;
	return 1;
}

/* Pop everything available.  \return requests handled. */
static unsigned drain(struct vh_vq *q)
{
	struct vh_req *first = NULL, *last = NULL, *inline_req = NULL, *r, *next;
	unsigned n = 0, queued = 0, async = 0;

	if (q->broken)
		return 0;
	if (q->packed) {
		q->pass_budget = q->num;   /* a ring's worth per pass */
	} else {
		const struct vring_avail *av = q->avail;
		uint16_t avail_idx = ld16(&av->idx);

		if ((uint16_t)(avail_idx - q->last_avail) > q->num) {
			vh_log(q->dev, 1, "queue %u: avail index %u runs %u ahead of %u (ring %u): "
			       "ignoring the queue until restarted", q->idx, avail_idx,
			       (uint16_t)(avail_idx - q->last_avail), q->last_avail, q->num);
			q->broken = true;
			return 0;
		}
		q->pass_end = avail_idx;
	}
	/* one chain of look-ahead: is the first one alone? */
	r = pop(q);
	next = r ? pop(q) : NULL;
	for (bool lone = !next; r; r = next, next = r ? pop(q) : NULL, lone = false) {
		n++;
		if (r->chain_err) {
			bad_chain(q, r, r->chain_err);
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
		if (inline_req)
			queued += list_add(&first, &last, inline_req);
		inline_req = r;
	}
	if (async && q->dev->disk->ops->aq_kick(q->aq))
		vh_log(q->dev, 1, "queue %u: async submission failed", q->idx);
	/* Not inline while this thread's async requests are in flight: only
	 * this thread reaps them, and a synchronous request may wait for them
	 * (a thin disk's punch does). */
	if (inline_req && q->aq_inflight) {
		queued += list_add(&first, &last, inline_req);
		inline_req = NULL;
	}
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
	struct vring_packed_desc_event *ev = q->used;   /* packed: device area */

	if (q->packed)
		__atomic_store_n(&ev->flags, on ? VRING_PACKED_EVENT_FLAG_DISABLE
					 : VRING_PACKED_EVENT_FLAG_ENABLE, __ATOMIC_RELAXED);
	else if (q->event_idx)
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
	set_no_notify(q, false);
	return avail_pending(q) && !q->broken &&
	       !__atomic_load_n(&q->stopping, __ATOMIC_ACQUIRE);
}

/* Adaptive polling, as QEMU's AioContext does it (poll-max-ns = poll_us,
 * grow x2 from 4 us, shrink /2): @waited is the time from the end of work
 * to the next work, polling included.  Found while polling: the window is
 * right.  Longer than the maximum: polling that long would not have found
 * it, so poll less (a queue that stays idle or CPU-starved ends at 0 and
 * sleeps at once).  In between: a longer window would have found it. */
static void adapt(struct vh_vq *q, uint64_t waited)
{
	uint64_t max = q->dev->poll_ns;

	if (waited <= q->spin_ns)
		return;
	if (waited > max)
		q->spin_ns = q->spin_ns / 2 < 1000 ? 0 : q->spin_ns / 2;
	else if (q->spin_ns < max)
		q->spin_ns = q->spin_ns ? q->spin_ns * 2 : 4000;
	if (q->spin_ns > max)
		q->spin_ns = max;
}

/* Async completions waiting (no system call when the disk can tell). */
static bool aq_due(struct vh_vq *q)
{
	const struct vhost_disk_ops *ops = q->dev->disk->ops;

	return q->aq_inflight && (!ops->aq_ready || ops->aq_ready(q->aq));
}

/* After work, watch the ring (and the async completions) for up to the
 * window without sleeping and without asking for kicks: a front-end that
 * submits again right after a completion is served without a wake-up on
 * either side.  Completions found restart the window (the front-end is
 * likely to answer them).  \return true if requests came (else kicks are
 * on again and the caller sleeps on the kick eventfd). */
static bool spin(struct vh_vq *q)
{
	uint64_t end;

	q->idle_since = now_ns();
	if (q->spin_ns == 0 || q->broken || __atomic_load_n(&q->stopping, __ATOMIC_ACQUIRE))
		return kicks_on(q);
	end = q->idle_since + q->spin_ns;
	set_no_notify(q, true);
	do {
		if (aq_due(q)) {
			aq_reap(q);
			q->idle_since = now_ns();
			end = q->idle_since + q->spin_ns;
		}
		for (int i = 0; i < 64; i++) {
			if (avail_pending(q)) {
				adapt(q, now_ns() - q->idle_since);
				return !__atomic_load_n(&q->stopping, __ATOMIC_ACQUIRE);
			}
			__builtin_ia32_pause();
		}
	} while (now_ns() < end && !__atomic_load_n(&q->stopping, __ATOMIC_ACQUIRE));
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
		uint64_t v;

		if (poll(pf, afd >= 0 ? 3 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		if (pf[0].revents | pf[2].revents)
			adapt(q, now_ns() - q->idle_since);
		if (afd >= 0 && pf[2].revents) {
			aq_reap(q);
			/* completions out: the front-end is likely to submit again */
			while (!pf[0].revents && spin(q))
				drain(q);
		}
		if (!pf[0].revents)
			continue;
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
	if (!q->packed)
		q->used_idx = __atomic_load_n(&((struct vring_used *)q->used)->idx, __ATOMIC_ACQUIRE);
	else if (q->last_avail >= q->num || q->used_idx >= q->num)
		return -EINVAL;   /* a base outside the ring */
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
	q->last_avail = q->used_idx = 0;
	q->avail_wrap = q->used_wrap = true;   /* a packed ring starts in lap 1 */
	q->desc = q->avail = q->used = NULL;
}
