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

/* Where the descriptors of a packed chain are read: the ring from a
 * position on, or the inflight region from an entry on (a resubmission). */
struct pk_src {
	const struct vring_packed_desc *ring;
	const struct vh_ifl_packed *ifl;
	uint16_t at, num;
};

static void pk_next(struct pk_src *s, struct vring_packed_desc *d)
{
	if (s->ifl) {
		const struct vh_ifl_packed_desc *e = &s->ifl->desc[s->at];

		d->addr = e->addr;
		d->len = e->len;
		d->id = e->id;
		d->flags = e->flags;
		s->at = e->next;   /* checked when the region was loaded, but it is */
		if (s->at >= s->num)   /* shared with the front-end: stay inside */
			s->at = 0;
	} else {
		memcpy(d, &s->ring[s->at], sizeof(*d));
		s->at = (uint16_t)(s->at + 1u == s->num ? 0 : s->at + 1);
	}
}

/* Build r->iov from the @n descriptors of @src (an indirect table is the
 * chain's only descriptor).  \return 0, -EINVAL. */
static int walk_packed(struct vh_vq *q, struct pk_src src, unsigned n, struct vh_req *r)
{
	struct vh_dev *d = q->dev;
	bool seen_write = false;
	int e;

	r->niov = 0;
	for (unsigned i = 0; i < n; i++) {
		struct vring_packed_desc dsc;

		pk_next(&src, &dsc);
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

/* ---- inflight tracking (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) -------------
 * Each step below is ordered as vhost-user.rst's "Inflight I/O tracking"
 * says, with a fence between steps, so that a back-end killed at any point
 * leaves a region a restarted one can make consistent again (vh_vq_start). */

/* store-store order (what a later reader of the region relies on) */
#define IFL_STEP() __atomic_thread_fence(__ATOMIC_RELEASE)

static void ifl_off(struct vh_vq *q, const char *why)
{
	vh_log(q->dev, 1, "queue %u: inflight region %s: not tracking in-flight requests",
	       q->idx, why);
	__atomic_store_n(&q->ifl, NULL, __ATOMIC_RELAXED);   /* (still mapped) */
}

/* Split ring: head @head received.  Under q->lock. */
static void ifl_get_split(struct vh_vq *q, uint16_t head)
{
	struct vh_ifl_split *s = q->ifl;

	s->desc[head].counter = q->ifl_counter++;
	IFL_STEP();
	s->desc[head].inflight = 1;
}

/* Packed ring: the @n descriptors at ring position @pos received, as
 * buffer @r.  Under q->lock. */
static void ifl_get_packed(struct vh_vq *q, uint16_t pos, unsigned n, struct vh_req *r)
{
	struct vh_ifl_packed *p = q->ifl;
	const struct vring_packed_desc *ring = q->desc;
	uint16_t h = p->old_free_head;

	r->ifl_head = h;
	for (unsigned i = 0; i < n; i++, pos = (uint16_t)(pos + 1u == q->num ? 0 : pos + 1)) {
		uint16_t fh = p->free_head;
		struct vh_ifl_packed_desc *e;

		if (fh >= q->num || h >= q->num) {   /* more in flight than the ring holds */
			ifl_off(q, "free list exhausted");
			return;
		}
		e = &p->desc[fh];
		if (i == 0) {
			p->desc[h].num = 0;
			p->desc[h].counter = q->ifl_counter++;
			IFL_STEP();
			p->desc[h].inflight = 1;
		}
		if (i == n - 1)
			p->desc[h].last = fh;
		p->desc[h].num++;
		e->addr = ring[pos].addr;
		e->len = ring[pos].len;
		e->flags = ring[pos].flags;
		e->id = ring[pos].id;
		IFL_STEP();
		p->free_head = e->next;
		if (i == n - 1) {
			IFL_STEP();
			p->old_free_head = p->free_head;
		}
	}
}

/* Claim buffer slot @id for a popped chain.  NULL (logged) when it cannot be
 * tracked: out of range, or made available again while in flight.  @record:
 * mark it in the inflight region (split: head @id; packed: the @n
 * descriptors at ring position @pos). */
static struct vh_req *claim(struct vh_vq *q, uint16_t id, bool record, uint16_t pos, unsigned n)
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
	if (record && q->ifl) {
		if (q->packed)
			ifl_get_packed(q, pos, n, r);
		else
			ifl_get_split(q, id);
	}
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
		r = claim(q, id, true, start, n);
		if (!r) {   /* cannot be returned: skip it */
			start = pos;
			n = 0;
			continue;
		}
		r->ndesc = (uint16_t)n;
		r->chain_err = walk_packed(q, (struct pk_src){ .ring = ring, .at = start, .num = (uint16_t)q->num }, n, r);
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
		r = claim(q, head, true, 0, 1);   /* out of range: its id is not a valid slot */
		if (!r)
			continue;
		r->chain_err = walk_chain(q, head, r);
		return r;
	}
	return NULL;
}

/* The next request left in flight by the previous back-end (already in the
 * inflight region: not recorded again). */
static struct vh_req *pop_resubmit(struct vh_vq *q)
{
	while (q->resub_pos < q->nresub) {
		uint16_t e = q->resub[q->resub_pos++];
		const struct vh_ifl_packed *p = __atomic_load_n(&q->ifl, __ATOMIC_RELAXED);
		struct vh_req *r;

		if (q->packed && !p) {   /* tracking turned off: the chains are lost */
			q->resub_pos = q->nresub;
			break;
		}

		if (!q->packed) {
			r = claim(q, e, false, 0, 1);
			if (r)
				r->chain_err = walk_chain(q, e, r);
		} else {
			uint16_t last = p->desc[e].last, n = p->desc[e].num;

			r = last < q->num ? claim(q, p->desc[last].id, false, 0, 0) : NULL;
			if (r) {
				r->ifl_head = e;
				r->ndesc = n;
				r->chain_err = walk_packed(q, (struct pk_src){ .ifl = p, .at = e,
							   .num = (uint16_t)q->num }, n, r);
			}
		}
		if (r)
			return r;
	}
	return NULL;
}

static struct vh_req *pop(struct vh_vq *q)
{
	if (q->resub_pos < q->nresub)
		return pop_resubmit(q);
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

/* Supply used buffer @r (packed ring), the inflight region kept in step. */
static void publish_packed(struct vh_vq *q, struct vh_req *r, uint32_t used_len)
{
	/* one used descriptor per chain, at the used position (only
	 * descriptors already popped lie there), then skip the chain */
	struct vring_packed_desc *e = (struct vring_packed_desc *)q->desc + q->used_idx;
	struct vh_ifl_packed *p = q->ifl;
	uint16_t h = r->ifl_head;
	bool wrap = q->used_wrap;

	q->used_idx = (uint16_t)(q->used_idx + r->ndesc);
	if (q->used_idx >= q->num) {
		q->used_idx = (uint16_t)(q->used_idx - q->num);
		q->used_wrap = !q->used_wrap;
		q->signalled_valid = false;   /* positions restart: call once */
	}
	uint16_t last = p ? p->desc[h].last : 0;

	if (p && last >= q->num) {   /* the front-end wrote there */
		ifl_off(q, "corrupted");
		p = NULL;
	}
	if (p) {   /* its entries back on the free list, the new used position */
		p->desc[last].next = p->free_head;
		IFL_STEP();
		p->free_head = h;
		IFL_STEP();
		p->used_idx = q->used_idx;
		p->used_wrap_counter = q->used_wrap;
		IFL_STEP();
	}
	e->id = r->head;
	e->len = used_len;
	__atomic_store_n(&e->flags, (uint16_t)(wrap ? PK_AVAIL | PK_USED : 0), __ATOMIC_RELEASE);
	if (p) {
		IFL_STEP();
		p->desc[h].inflight = 0;
		IFL_STEP();
		p->old_free_head = p->free_head;
		p->old_used_idx = p->used_idx;
		p->old_used_wrap_counter = p->used_wrap_counter;
	}
}

/* Supply used buffer @r (split ring), the inflight region kept in step. */
static void publish_split(struct vh_vq *q, struct vh_req *r, uint32_t used_len)
{
	struct vring_used *u = q->used;
	struct vring_used_elem *e = &u->ring[q->used_idx % q->num];
	struct vh_ifl_split *s = q->ifl;

	if (s) {   /* a batch of one: this head */
		s->desc[r->head].next = s->last_batch_head;
		s->last_batch_head = r->head;
		IFL_STEP();
	}
	e->id = r->head;
	e->len = used_len;
	q->used_idx++;
	__atomic_store_n(&u->idx, q->used_idx, __ATOMIC_RELEASE);
	if (s) {
		IFL_STEP();
		s->desc[r->head].inflight = 0;
		IFL_STEP();
		s->used_idx = q->used_idx;
	}
}

static void publish(struct vh_req *r, uint32_t used_len)
{
	struct vh_vq *q = r->vq;

	if (q->packed)
		publish_packed(q, r, used_len);
	else
		publish_split(q, r, used_len);
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

/* ---- restart with an inflight region ---------------------------------------- */

struct ifl_ent {
	uint64_t counter;
	uint16_t e;
};

static int ifl_cmp(const void *a, const void *b)
{
	const struct ifl_ent *x = a, *y = b;

	return x->counter < y->counter ? -1 : x->counter > y->counter;
}

/* The @n entries of @v to resubmit, in fetch order; the counter continues
 * after the last. */
static void ifl_queue_resubmit(struct vh_vq *q, struct ifl_ent *v, unsigned n)
{
	qsort(v, n, sizeof(*v), ifl_cmp);
	for (unsigned i = 0; i < n; i++)
		q->resub[i] = v[i].e;
	q->nresub = n;
	q->resub_pos = 0;
	q->ifl_counter = n ? v[n - 1].counter + 1 : 0;
}

static void ifl_init_split(struct vh_vq *q)
{
	struct vh_ifl_split *s = q->ifl;

	memset(s->desc, 0, q->num * sizeof(s->desc[0]));
	s->features = 0;
	s->desc_num = (uint16_t)q->num;
	s->last_batch_head = 0;
	s->used_idx = q->used_idx;
	IFL_STEP();
	s->version = 1;
}

/* Split ring: finish a completion cut short, then resubmit the heads still
 * marked, from the used index on.  \return 0, -EINVAL: region unusable. */
static int ifl_start_split(struct vh_vq *q, struct ifl_ent *v)
{
	struct vh_ifl_split *s = q->ifl;
	uint16_t idx = q->used_idx;
	unsigned n = 0;

	if (s->used_idx != idx) {   /* used index published, entries not cleared yet */
		uint16_t batch = (uint16_t)(idx - s->used_idx), h = s->last_batch_head;

		if (batch > q->num)
			return -EINVAL;
		for (unsigned i = 0; i < batch && h < q->num; i++, h = s->desc[h].next)
			s->desc[h].inflight = 0;
		IFL_STEP();
		s->used_idx = idx;
	}
	for (unsigned i = 0; i < q->num; i++)
		if (s->desc[i].inflight == 1)
			v[n++] = (struct ifl_ent){ s->desc[i].counter, (uint16_t)i };
	ifl_queue_resubmit(q, v, n);
	/* every popped chain is either used or in flight */
	q->last_avail = (uint16_t)(idx + n);
	return 0;
}

static void ifl_init_packed(struct vh_vq *q)
{
	struct vh_ifl_packed *p = q->ifl;

	memset(p->desc, 0, q->num * sizeof(p->desc[0]));
	for (unsigned i = 0; i < q->num; i++)
		p->desc[i].next = (uint16_t)(i + 1);
	p->features = 0;
	p->desc_num = (uint16_t)q->num;
	p->free_head = p->old_free_head = 0;
	p->used_idx = p->old_used_idx = q->used_idx;
	p->used_wrap_counter = p->old_used_wrap_counter = q->used_wrap;
	IFL_STEP();
	p->version = 1;
}

/* Packed ring: commit a completion whose used descriptor was written, roll
 * back anything else cut short, then resubmit the chains still marked; the
 * ring positions are the region's (QEMU cannot tell a restarted back-end
 * where a packed ring was).  \return 0, -EINVAL: region unusable. */
static int ifl_start_packed(struct vh_vq *q, struct ifl_ent *v, uint8_t *mark)
{
	struct vh_ifl_packed *p = q->ifl;
	const struct vring_packed_desc *ring = q->desc;
	unsigned n = 0, ndesc = 0, num = q->num;
	uint16_t h;

	if (p->old_used_idx >= num || p->used_idx >= num || p->old_free_head > num)
		return -EINVAL;
	if (p->used_idx != p->old_used_idx || p->used_wrap_counter != p->old_used_wrap_counter) {
		uint16_t f = ld16(&ring[p->old_used_idx].flags) & (PK_AVAIL | PK_USED);

		if (f != (p->old_used_wrap_counter ? PK_AVAIL : PK_USED)) {   /* it was written */
			p->old_free_head = p->free_head;
			p->old_used_idx = p->used_idx;
			p->old_used_wrap_counter = p->used_wrap_counter;
			IFL_STEP();
		}
	}
	p->free_head = p->old_free_head;
	p->used_idx = p->old_used_idx;
	p->used_wrap_counter = p->old_used_wrap_counter;
	if (p->free_head > num)
		return -EINVAL;
	/* the free list: nothing on it is in flight (1: free, 2: in a chain) */
	memset(mark, 0, num);
	for (h = p->free_head; h < num; h = p->desc[h].next) {
		if (mark[h])
			return -EINVAL;
		mark[h] = 1;
		p->desc[h].inflight = 0;
	}
	for (unsigned i = 0; i < num; i++) {
		const struct vh_ifl_packed_desc *e = &p->desc[i];
		unsigned k;

		if (mark[i] || e->inflight != 1)
			continue;
		if (!e->num || e->num > num - ndesc)
			return -EINVAL;
		for (k = 0, h = (uint16_t)i; ; k++, h = p->desc[h].next) {
			if (h >= num || mark[h])
				return -EINVAL;
			mark[h] = 2;
			if (k + 1 == e->num)
				break;
		}
		if (h != e->last)
			return -EINVAL;
		ndesc += e->num;
		v[n++] = (struct ifl_ent){ e->counter, (uint16_t)i };
	}
	ifl_queue_resubmit(q, v, n);
	/* the chains in flight lie between the used and the avail positions */
	q->used_idx = p->used_idx;
	q->used_wrap = p->used_wrap_counter;
	q->last_avail = (uint16_t)(q->used_idx + ndesc);
	q->avail_wrap = q->used_wrap;
	if (q->last_avail >= num) {
		q->last_avail = (uint16_t)(q->last_avail - num);
		q->avail_wrap = !q->avail_wrap;
	}
	return 0;
}

/* A queue starts with an inflight region: a new one is initialised from the
 * ring's state; an initialised one is made consistent and what it has in
 * flight is resubmitted first. */
static int ifl_start(struct vh_vq *q)
{
	struct vh_ifl_split *hdr = q->ifl;   /* version, desc_num: same place in both */
	struct ifl_ent *v = malloc(q->num * sizeof(*v));
	uint8_t *mark = malloc(q->num);
	int r = 0;

	if (!v || !mark) {
		r = -ENOMEM;
	} else if (hdr->version != 1 || hdr->desc_num != q->num) {
		if (hdr->version)
			vh_log(q->dev, 1, "queue %u: inflight region version %u for %u entries: "
			       "initialised again", q->idx, hdr->version, hdr->desc_num);
		if (q->packed)
			ifl_init_packed(q);
		else
			ifl_init_split(q);
	} else if ((r = q->packed ? ifl_start_packed(q, v, mark) : ifl_start_split(q, v)) != 0) {
		vh_log(q->dev, 1, "queue %u: inflight region inconsistent: initialised again", q->idx);
		q->nresub = 0;
		if (q->packed)
			ifl_init_packed(q);
		else
			ifl_init_split(q);
		r = 0;
	} else {
		vh_log(q->dev, 2, "queue %u: inflight region: resubmitting %u request(s) left in "
		       "flight; avail position %u%s, used %u%s", q->idx, q->nresub, q->last_avail,
		       q->packed ? (q->avail_wrap ? " (lap 1)" : " (lap 0)") : "", q->used_idx,
		       q->packed ? (q->used_wrap ? " (lap 1)" : " (lap 0)") : "");
	}
	free(v);
	free(mark);
	return r;
}

int vh_vq_start(struct vh_vq *q)
{
	int r;

	if (q->running)
		return 0;
	if (!q->reqs)
		return -EINVAL;
	if (!q->packed)
		q->used_idx = __atomic_load_n(&((struct vring_used *)q->used)->idx, __ATOMIC_ACQUIRE);
	q->nresub = q->resub_pos = 0;
	if (q->ifl && (r = ifl_start(q)) != 0)
		return r;
	if (q->packed && (q->last_avail >= q->num || q->used_idx >= q->num))
		return -EINVAL;   /* a base outside the ring */
	q->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (q->stop_fd < 0)
		return -errno;
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
	q->ifl = NULL;
	q->nresub = q->resub_pos = 0;
}
