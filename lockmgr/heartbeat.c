/*
 * Heartbeats (DESIGN.md "The protocol, step by step", steps 1-4 and 6):
 * join a free slot with ATS, renew it every hb_interval, fence ourselves when
 * a renewal is overdue, judge other hosts by how long we have seen the same
 * stamp, leave cleanly, reclaim dead hosts.
 *
 * Threads: a renewal thread (renew, then scan the region to keep our view of
 * every slot fresh) and a fence monitor (announces the fence deadline even
 * while the renewal thread hangs in a stalled I/O).  The fence itself needs no
 * thread: vmfs_hb_io_allowed() compares the clock with an atomic deadline.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "internal.h"

struct obs {
	uint32_t magic;
	uint64_t seq, stamp, replay_pos;
	uint64_t first_seen;       /* our clock when this (seq, stamp) first read */
	bool valid;
};

struct vmfs_hb {
	struct vmfs_bdev *bd;
	struct vmfs_timeouts to;
	struct vmfs_hb_opts o;
	char ip[46];
	uint8_t uuid[16];
	uint64_t t0;

	pthread_mutex_t mu;          /* slot, gen, last, stamps, thread state */
	pthread_mutex_t renew_mu;    /* one own-slot renewal at a time */
	pthread_cond_t cv;
	int slot;
	uint64_t gen;
	int lost_slot;               /* slot we lost, until its reclaimer is done */
	uint64_t lost_gen;
	uint64_t last_stamp;
	uint8_t last[512];           /* own slot as we last wrote it */
	bool stop, threads;
	pthread_t renew_thr, mon_thr;

	_Atomic uint64_t deadline;   /* fence deadline (us, monotonic); 0 = fenced */
	_Atomic uint64_t epoch;
	_Atomic bool fenced;         /* announced */
	_Atomic bool joined_once;

	pthread_mutex_t obs_mu;
	struct obs obs[VMFS_HB_NSLOTS];
};

void vmfs_hb_log(const struct vmfs_hb *hb, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (hb && hb->o.quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "vmfs-lockmgr: %s\n", buf);
}

static void event(struct vmfs_hb *hb, enum vmfs_hb_event ev, int slot, uint64_t gen)
{
	if (hb->o.on_event)
		hb->o.on_event(hb->o.event_arg, ev, slot < 0 ? 0u : (unsigned)slot, gen);
}

static void *xalloc(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len))
		return NULL;
	return p;
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = { .tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void abs_time(uint64_t mono_us, struct timespec *ts)
{
	ts->tv_sec = (time_t)(mono_us / 1000000);
	ts->tv_nsec = (long)(mono_us % 1000000) * 1000;
}

int vmfs_hb_region_format(struct vmfs_bdev *bd)
{
	uint8_t *buf = xalloc(VMFS_HB_REGION_LEN);
	int r;

	if (!buf)
		return -ENOMEM;
	for (unsigned i = 0; i < VMFS_HB_NSLOTS; i++)
		vmfs_hb_slot_format(i, buf + (size_t)i * VMFS_HB_SLOT_SIZE);
	r = vmfs_bdev_write(bd, buf, VMFS_HB_REGION_LEN, VMFS_HB_REGION_OFF);
	if (!r)
		r = vmfs_bdev_flush(bd);
	free(buf);
	return r;
}

/* ---- observations -------------------------------------------------------- */

/* Note what we read in @slot at @now (after the read completed). */
static void observe(struct vmfs_hb *hb, unsigned slot, const struct vmfs_hb_slot *s, uint64_t now)
{
	struct obs *ob = &hb->obs[slot];

	pthread_mutex_lock(&hb->obs_mu);
	if (!ob->valid || ob->magic != s->magic || ob->seq != s->seq || ob->stamp != s->uptime ||
	    ob->replay_pos != s->replay_hb_pos) {
		ob->valid = true;
		ob->magic = s->magic;
		ob->seq = s->seq;
		ob->stamp = s->uptime;
		ob->replay_pos = s->replay_hb_pos;
		ob->first_seen = now;
	}
	pthread_mutex_unlock(&hb->obs_mu);
}

/* Age of the current observation of @slot (0 if none). */
static uint64_t obs_age(struct vmfs_hb *hb, unsigned slot, uint64_t now)
{
	uint64_t age = 0;

	pthread_mutex_lock(&hb->obs_mu);
	if (hb->obs[slot].valid && now > hb->obs[slot].first_seen)
		age = now - hb->obs[slot].first_seen;
	pthread_mutex_unlock(&hb->obs_mu);
	return age;
}

static enum vmfs_host_state classify(struct vmfs_hb *hb, unsigned slot, const struct vmfs_hb_slot *s,
				     uint64_t now, uint64_t *age_out)
{
	uint64_t age = obs_age(hb, slot, now);
	int me;

	if (age_out)
		*age_out = age;
	if (s->magic != VMFS_HB_MAGIC_LIVE)
		return VMFS_HOST_FREE;
	pthread_mutex_lock(&hb->mu);
	me = hb->slot;
	pthread_mutex_unlock(&hb->mu);
	if ((int)slot == me)
		return VMFS_HOST_SELF;
	if (s->replay_hb_pos)
		return VMFS_HOST_REPLAYING;
	if (age >= hb->to.hb_timeout_us)
		return VMFS_HOST_DEAD;
	if (age > hb->to.hb_interval_us + hb->to.io_timeout_us)
		return VMFS_HOST_SUSPECT;
	return VMFS_HOST_ALIVE;
}

/* Read one slot, decode, observe. */
static int read_slot(struct vmfs_hb *hb, unsigned slot, uint8_t raw[512], struct vmfs_hb_slot *s)
{
	int r = vmfs_bdev_read(hb->bd, raw, VMFS_HB_SLOT_SIZE, vmfs_hb_slot_off(slot));

	if (r)
		return r;
	r = vmfs_hb_slot_decode(raw, vmfs_hb_slot_off(slot), s);
	if (r)
		return r;
	observe(hb, slot, s, vmfs_now_us());
	return 0;
}

/* Read the whole region into @buf and observe every valid slot. */
static int scan_region(struct vmfs_hb *hb, uint8_t *buf)
{
	uint64_t now;
	int r = vmfs_bdev_read(hb->bd, buf, VMFS_HB_REGION_LEN, VMFS_HB_REGION_OFF);

	if (r)
		return r;
	now = vmfs_now_us();
	for (unsigned i = 0; i < VMFS_HB_NSLOTS; i++) {
		struct vmfs_hb_slot s;

		if (vmfs_hb_slot_decode(buf + (size_t)i * VMFS_HB_SLOT_SIZE, vmfs_hb_slot_off(i), &s) == 0)
			observe(hb, i, &s, now);
	}
	return 0;
}

/* ---- create / destroy ---------------------------------------------------- */

int vmfs_hb_create(struct vmfs_bdev *bd, const struct vmfs_hb_opts *o, struct vmfs_hb **out)
{
	struct vmfs_hb *hb;
	int r;

	if (!out)
		return -EINVAL;
	hb = calloc(1, sizeof(*hb));
	if (!hb)
		return -ENOMEM;
	if (o)
		hb->o = *o;
	r = vmfs_timeouts_init(&hb->to, hb->o.io_timeout_us);
	if (r)
		goto fail;
	if (hb->o.journal_len && (hb->o.journal_off % VMFS_SECTOR_SIZE || hb->o.journal_len % VMFS_SECTOR_SIZE)) {
		r = -EINVAL;
		goto fail;
	}
	if (hb->o.ip)
		snprintf(hb->ip, sizeof(hb->ip), "%s", hb->o.ip);
	hb->o.ip = NULL;
	if (uuid_is_zero(hb->o.uuid))
		uuid_generate_time(hb->uuid);
	else
		memcpy(hb->uuid, hb->o.uuid, 16);
	hb->bd = bd;
	hb->slot = -1;
	hb->lost_slot = -1;
	hb->t0 = vmfs_now_us();
	pthread_mutex_init(&hb->mu, NULL);
	pthread_mutex_init(&hb->renew_mu, NULL);
	pthread_mutex_init(&hb->obs_mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&hb->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	*out = hb;
	return 0;
fail:
	free(hb);
	return r;
}

void vmfs_hb_destroy(struct vmfs_hb *hb)
{
	if (!hb)
		return;
	vmfs_hb_leave(hb);
	pthread_cond_destroy(&hb->cv);
	pthread_mutex_destroy(&hb->mu);
	pthread_mutex_destroy(&hb->renew_mu);
	pthread_mutex_destroy(&hb->obs_mu);
	free(hb);
}

/* ---- accessors ------------------------------------------------------------ */

int vmfs_hb_slot(const struct vmfs_hb *hb)
{
	int s;

	pthread_mutex_lock((pthread_mutex_t *)&hb->mu);
	s = hb->slot;
	pthread_mutex_unlock((pthread_mutex_t *)&hb->mu);
	return s;
}

uint64_t vmfs_hb_gen(const struct vmfs_hb *hb)
{
	uint64_t g;

	pthread_mutex_lock((pthread_mutex_t *)&hb->mu);
	g = hb->gen;
	pthread_mutex_unlock((pthread_mutex_t *)&hb->mu);
	return g;
}

void vmfs_hb_uuid(const struct vmfs_hb *hb, uint8_t uuid[16])
{
	memcpy(uuid, hb->uuid, 16);
}

const struct vmfs_timeouts *vmfs_hb_timeouts(const struct vmfs_hb *hb)
{
	return &hb->to;
}

uint64_t vmfs_hb_epoch(const struct vmfs_hb *hb)
{
	return atomic_load(&hb->epoch);
}

uint64_t vmfs_hb_fence_deadline(const struct vmfs_hb *hb)
{
	return atomic_load(&hb->deadline);
}

bool vmfs_hb_io_allowed(const struct vmfs_hb *hb)
{
	uint64_t d = atomic_load(&hb->deadline);

	return d && vmfs_now_us() < d;
}

int vmfs_hb_self(struct vmfs_hb *hb, uint64_t *pos, uint64_t *gen, uint8_t uuid[16], uint64_t *epoch)
{
	int r = 0;

	pthread_mutex_lock(&hb->mu);
	if (hb->slot < 0) {
		r = -ESHUTDOWN;
	} else {
		*pos = vmfs_hb_slot_off((unsigned)hb->slot);
		*gen = hb->gen;
	}
	pthread_mutex_unlock(&hb->mu);
	if (uuid)
		memcpy(uuid, hb->uuid, 16);
	if (epoch)
		*epoch = atomic_load(&hb->epoch);
	if (!r && !vmfs_hb_io_allowed(hb))
		r = -EIO;
	return r;
}

/* ---- join / renew / leave -------------------------------------------------- */

static uint64_t next_stamp(struct vmfs_hb *hb)
{
	uint64_t s = vmfs_now_us() - hb->t0 + 1;

	if (s <= hb->last_stamp)
		s = hb->last_stamp + 1;
	hb->last_stamp = s;
	return s;
}

static void build_live(struct vmfs_hb *hb, unsigned slot, uint64_t seq, uint64_t stamp,
		       struct vmfs_hb_slot *s)
{
	memset(s, 0, sizeof(*s));
	s->magic = VMFS_HB_MAGIC_LIVE;
	s->pos = vmfs_hb_slot_off(slot);
	s->seq = seq;
	s->uptime = stamp;
	memcpy(s->uuid, hb->uuid, 16);
	s->journal_block = hb->o.journal_block;
	s->journal_off = hb->o.journal_off;
	s->journal_len = hb->o.journal_len;
	s->drv_major = 14;   /* VMFS5 "14.81" as ESXi 6.x writes */
	s->drv_minor = 81;
	memcpy(s->ip, hb->ip, sizeof(s->ip));
}

/* Take a free slot.  Called with nothing locked; sets slot/gen/last/deadline. */
static int do_join(struct vmfs_hb *hb)
{
	uint8_t *buf = xalloc(VMFS_HB_REGION_LEN);
	uint8_t *nb = xalloc(VMFS_HB_SLOT_SIZE);
	int r;

	if (!buf || !nb) {
		r = -ENOMEM;
		goto out;
	}
	r = scan_region(hb, buf);
	if (r)
		goto out;
	r = -ENOSPC;
	unsigned valid = 0;
	for (unsigned i = 0; i < VMFS_HB_NSLOTS; i++) {
		uint8_t *cur = buf + (size_t)i * VMFS_HB_SLOT_SIZE;
		struct vmfs_hb_slot s, ns;
		uint64_t submit;
		int a;

		if (vmfs_hb_slot_decode(cur, vmfs_hb_slot_off(i), &s))
			continue;
		valid++;
		if (s.magic != VMFS_HB_MAGIC_FREE)
			continue;
		pthread_mutex_lock(&hb->mu);
		build_live(hb, i, s.seq + 1, next_stamp(hb), &ns);
		pthread_mutex_unlock(&hb->mu);
		vmfs_hb_slot_encode(&ns, nb);
		submit = vmfs_now_us();
		a = vmfs_bdev_ats(hb->bd, vmfs_hb_slot_off(i), cur, nb, NULL);
		if (a == -ESTALE)
			continue;       /* someone else took it: pick another */
		if (a) {
			r = a;
			goto out;
		}
		pthread_mutex_lock(&hb->mu);
		hb->slot = (int)i;
		hb->gen = ns.seq;
		memcpy(hb->last, nb, VMFS_HB_SLOT_SIZE);
		atomic_store(&hb->deadline, submit + hb->to.fence_us);
		atomic_store(&hb->fenced, false);
		atomic_store(&hb->joined_once, true);
		pthread_cond_broadcast(&hb->cv);
		pthread_mutex_unlock(&hb->mu);
		observe(hb, i, &ns, vmfs_now_us());
		r = 0;
		break;
	}
	if (r == -ENOSPC && valid == 0)
		r = -EUCLEAN;   /* no heartbeat region here (not a formatted volume/LV) */
out:
	free(buf);
	free(nb);
	return r;
}

/* Our slot was changed by someone else: we were declared dead. */
static void lost(struct vmfs_hb *hb, const uint8_t *cur)
{
	int slot;
	uint64_t gen;
	char u[36] = "?";

	pthread_mutex_lock(&hb->mu);
	slot = hb->slot;
	gen = hb->gen;
	hb->slot = -1;
	hb->lost_slot = slot;
	hb->lost_gen = gen;
	atomic_store(&hb->deadline, 0);
	atomic_fetch_add(&hb->epoch, 1);
	pthread_cond_broadcast(&hb->cv);
	pthread_mutex_unlock(&hb->mu);
	if (cur) {
		struct vmfs_hb_slot s;

		if (vmfs_hb_slot_decode(cur, vmfs_hb_slot_off((unsigned)slot), &s) == 0)
			vmfs_uuid_str(s.replay_uuid, u);
	}
	vmfs_hb_log(hb, "HEARTBEAT LOST: slot %d gen %llu was taken over (replayer %s): "
		    "all I/O stopped, every lock dropped", slot, (unsigned long long)gen, u);
	event(hb, VMFS_HB_EV_LOST, slot, gen);
}

/* One renewal.  0 ok, -ESTALE lost, other errno = try again. */
static int renew_once(struct vmfs_hb *hb, uint8_t *nb, uint8_t *cur)
{
	struct vmfs_hb_slot s;
	uint8_t expect[512];
	uint64_t submit;
	int slot, r;
	bool was_fenced;

	pthread_mutex_lock(&hb->mu);
	slot = hb->slot;
	if (slot < 0) {
		pthread_mutex_unlock(&hb->mu);
		return -ESHUTDOWN;
	}
	memcpy(expect, hb->last, 512);
	build_live(hb, (unsigned)slot, hb->gen, next_stamp(hb), &s);
	pthread_mutex_unlock(&hb->mu);
	vmfs_hb_slot_encode(&s, nb);
	submit = vmfs_now_us();
	r = vmfs_bdev_ats(hb->bd, vmfs_hb_slot_off((unsigned)slot), expect, nb, cur);
	if (r)
		return r;
	pthread_mutex_lock(&hb->mu);
	if (hb->slot == slot) {
		/* also while stopping: leave frees the slot from these bytes */
		memcpy(hb->last, nb, 512);
		if (submit + hb->to.fence_us > atomic_load(&hb->deadline))
			atomic_store(&hb->deadline, submit + hb->to.fence_us);
	}
	pthread_cond_broadcast(&hb->cv);
	pthread_mutex_unlock(&hb->mu);
	was_fenced = atomic_exchange(&hb->fenced, false);
	if (was_fenced && vmfs_hb_io_allowed(hb)) {
		vmfs_hb_log(hb, "heartbeat slot %d renewed, slot unchanged: I/O resumed", slot);
		event(hb, VMFS_HB_EV_UNFENCED, slot, s.seq);
	} else if (was_fenced) {
		atomic_store(&hb->fenced, true);
	}
	return 0;
}

static bool wait_until(struct vmfs_hb *hb, uint64_t when)
{
	struct timespec ts;
	bool stop;

	abs_time(when, &ts);
	pthread_mutex_lock(&hb->mu);
	while (!hb->stop && vmfs_now_us() < when)
		if (pthread_cond_timedwait(&hb->cv, &hb->mu, &ts) == ETIMEDOUT)
			break;
	stop = hb->stop;
	pthread_mutex_unlock(&hb->mu);
	return stop;
}

static void *renew_main(void *arg)
{
	struct vmfs_hb *hb = arg;
	uint8_t *nb = xalloc(512), *cur = xalloc(512), *region = xalloc(VMFS_HB_REGION_LEN);
	uint64_t next = vmfs_now_us() + hb->to.hb_interval_us;

	if (!nb || !cur || !region) {
		vmfs_hb_log(hb, "renewal thread: out of memory: heartbeat not renewed");
		goto out;
	}
	while (!wait_until(hb, next)) {
		uint64_t start = vmfs_now_us();
		int r;

		next = start + hb->to.hb_interval_us;
		if (vmfs_hb_slot(hb) < 0) {
			struct vmfs_hb_host old;

			if (hb->o.no_rejoin)
				continue;
			/* Rejoin only once the reclaimer is done with our old slot
			 * (it replayed our journal and freed the slot): then the
			 * owner may reopen its journal without racing that replay. */
			if (hb->lost_slot >= 0) {
				if (vmfs_hb_peek(hb, (unsigned)hb->lost_slot, &old) != 0 ||
				    (old.rec.magic == VMFS_HB_MAGIC_LIVE && old.rec.seq == hb->lost_gen))
					continue;
				hb->lost_slot = -1;
			}
			r = do_join(hb);
			if (r == 0) {
				vmfs_hb_log(hb, "rejoined as slot %d gen %llu", vmfs_hb_slot(hb),
					    (unsigned long long)vmfs_hb_gen(hb));
				event(hb, VMFS_HB_EV_REJOINED, vmfs_hb_slot(hb), vmfs_hb_gen(hb));
			}
			continue;
		}
		pthread_mutex_lock(&hb->renew_mu);
		r = renew_once(hb, nb, cur);
		pthread_mutex_unlock(&hb->renew_mu);
		if (r == -ESTALE) {
			lost(hb, cur);
			continue;
		}
		if (r && r != -ESHUTDOWN)
			vmfs_hb_log(hb, "heartbeat renewal of slot %d failed: %s (fence in %lld ms)",
				    vmfs_hb_slot(hb), strerror(-r),
				    (long long)((int64_t)atomic_load(&hb->deadline) - (int64_t)vmfs_now_us()) / 1000);
		/* Keep our view of the other slots fresh for liveness decisions. */
		if (r == 0)
			scan_region(hb, region);
	}
out:
	free(nb);
	free(cur);
	free(region);
	return NULL;
}

/* Announces the fence even while the renewal thread hangs in I/O. */
static void *monitor_main(void *arg)
{
	struct vmfs_hb *hb = arg;

	pthread_mutex_lock(&hb->mu);
	while (!hb->stop) {
		uint64_t d = atomic_load(&hb->deadline), now = vmfs_now_us();
		struct timespec ts;

		if (hb->slot >= 0 && d && now >= d && !atomic_load(&hb->fenced)) {
			int slot = hb->slot;
			uint64_t gen = hb->gen;

			atomic_store(&hb->fenced, true);
			pthread_mutex_unlock(&hb->mu);
			vmfs_hb_log(hb, "FENCED: heartbeat slot %d not renewed for %llu ms "
				    "(hb_timeout %llu ms - io_timeout): all volume I/O stopped until it is",
				    slot, (unsigned long long)(hb->to.fence_us / 1000),
				    (unsigned long long)(hb->to.hb_timeout_us / 1000));
			event(hb, VMFS_HB_EV_FENCED, slot, gen);
			pthread_mutex_lock(&hb->mu);
			continue;
		}
		abs_time(d && now < d ? d : now + hb->to.hb_interval_us, &ts);
		pthread_cond_timedwait(&hb->cv, &hb->mu, &ts);
	}
	pthread_mutex_unlock(&hb->mu);
	return NULL;
}

int vmfs_hb_set_journal(struct vmfs_hb *hb, uint64_t off, uint64_t len, uint32_t block)
{
	uint8_t *nb = xalloc(512), *cur = xalloc(512);
	int r = 0;

	if (!hb || off % VMFS_SECTOR_SIZE || len % VMFS_SECTOR_SIZE) {
		r = -EINVAL;
		goto out;
	}
	if (!nb || !cur) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&hb->renew_mu);
	pthread_mutex_lock(&hb->mu);
	hb->o.journal_off = off;
	hb->o.journal_len = len;
	hb->o.journal_block = block;
	pthread_mutex_unlock(&hb->mu);
	if (vmfs_hb_slot(hb) >= 0) {
		r = renew_once(hb, nb, cur);   /* on disk before the caller's first commit */
		if (r == -ESTALE)
			r = -ESHUTDOWN;            /* the renewal thread will notice and rejoin */
	}
	pthread_mutex_unlock(&hb->renew_mu);
out:
	free(nb);
	free(cur);
	return r;
}

/* Stop and join the threads that were started (none: no-op). */
static void stop_threads(struct vmfs_hb *hb, bool renew, bool mon)
{
	pthread_mutex_lock(&hb->mu);
	hb->stop = true;
	pthread_cond_broadcast(&hb->cv);
	pthread_mutex_unlock(&hb->mu);
	if (renew)
		pthread_join(hb->renew_thr, NULL);
	if (mon)
		pthread_join(hb->mon_thr, NULL);
}

/* Give our slot back: free, seq+1, uuid cleared.  Threads must be stopped. */
static int free_own_slot(struct vmfs_hb *hb)
{
	struct vmfs_hb_slot s;
	uint8_t *nb;
	int slot, r;

	pthread_mutex_lock(&hb->mu);
	slot = hb->slot;
	hb->slot = -1;
	atomic_store(&hb->deadline, 0);
	atomic_fetch_add(&hb->epoch, 1);
	pthread_mutex_unlock(&hb->mu);
	if (slot < 0)
		return 0;       /* never joined, or already lost */
	nb = xalloc(512);
	if (!nb)
		return -ENOMEM;
	memset(&s, 0, sizeof(s));
	s.magic = VMFS_HB_MAGIC_FREE;
	s.pos = vmfs_hb_slot_off((unsigned)slot);
	s.seq = hb->gen + 1;
	s.uptime = hb->last_stamp;
	vmfs_hb_slot_encode(&s, nb);
	r = vmfs_bdev_ats(hb->bd, s.pos, hb->last, nb, NULL);
	if (r == -ESTALE) {
		vmfs_hb_log(hb, "leave: slot %d was already taken over by a reclaimer", slot);
		r = 0;
	} else if (r) {
		vmfs_hb_log(hb, "leave: freeing slot %d failed: %s", slot, strerror(-r));
	}
	free(nb);
	return r;
}

int vmfs_hb_join(struct vmfs_hb *hb)
{
	bool renew = false;
	int r;

	if (!hb)
		return -EINVAL;
	pthread_mutex_lock(&hb->mu);
	r = hb->threads ? -EALREADY : !hb->bd ? -EINVAL : 0;
	pthread_mutex_unlock(&hb->mu);
	if (r)
		return r;
	r = do_join(hb);
	if (r) {
		vmfs_hb_log(hb, "join: no slot taken: %s", strerror(-r));
		return r;
	}
	hb->stop = false;
	r = -pthread_create(&hb->renew_thr, NULL, renew_main, hb);
	if (r)
		goto fail;
	renew = true;
	r = -pthread_create(&hb->mon_thr, NULL, monitor_main, hb);
	if (r)
		goto fail;
	pthread_mutex_lock(&hb->mu);
	hb->threads = true;
	pthread_mutex_unlock(&hb->mu);
	return 0;
fail:
	stop_threads(hb, renew, false);
	free_own_slot(hb);
	return r;
}

int vmfs_hb_leave(struct vmfs_hb *hb)
{
	bool threads;

	if (!hb)
		return -EINVAL;
	pthread_mutex_lock(&hb->mu);
	threads = hb->threads;
	hb->threads = false;
	pthread_mutex_unlock(&hb->mu);
	if (!threads)
		return 0;
	stop_threads(hb, true, true);
	return free_own_slot(hb);
}

/* ---- other hosts ------------------------------------------------------------ */

int vmfs_hb_peek(struct vmfs_hb *hb, unsigned slot, struct vmfs_hb_host *out)
{
	uint8_t *raw;
	int r;

	if (!hb || !out || slot >= VMFS_HB_NSLOTS)
		return -EINVAL;
	raw = xalloc(512);
	if (!raw)
		return -ENOMEM;
	memset(out, 0, sizeof(*out));
	out->slot = slot;
	r = read_slot(hb, slot, raw, &out->rec);
	if (!r)
		out->state = classify(hb, slot, &out->rec, vmfs_now_us(), &out->age_us);
	free(raw);
	return r;
}

int vmfs_hb_list(struct vmfs_hb *hb, struct vmfs_hb_host *out, unsigned max)
{
	uint8_t *buf = xalloc(VMFS_HB_REGION_LEN);
	unsigned n = 0;
	uint64_t now;
	int r;

	if (!buf)
		return -ENOMEM;
	r = scan_region(hb, buf);
	if (r)
		goto out;
	now = vmfs_now_us();
	for (unsigned i = 0; i < VMFS_HB_NSLOTS && n < max; i++) {
		struct vmfs_hb_slot s;

		if (vmfs_hb_slot_decode(buf + (size_t)i * VMFS_HB_SLOT_SIZE, vmfs_hb_slot_off(i), &s))
			continue;
		if (s.magic != VMFS_HB_MAGIC_LIVE)
			continue;
		out[n].slot = i;
		out[n].rec = s;
		out[n].state = classify(hb, i, &s, now, &out[n].age_us);
		n++;
	}
	r = (int)n;
out:
	free(buf);
	return r;
}

int vmfs_hb_find(struct vmfs_hb *hb, const uint8_t uuid[16])
{
	struct vmfs_hb_host *h = calloc(VMFS_HB_NSLOTS, sizeof(*h));
	int n, r = -ENOENT;

	if (!h)
		return -ENOMEM;
	n = vmfs_hb_list(hb, h, VMFS_HB_NSLOTS);
	if (n < 0)
		r = n;
	for (int i = 0; i < n; i++)
		if (memcmp(h[i].rec.uuid, uuid, 16) == 0 && !h[i].rec.replay_hb_pos) {
			r = (int)h[i].slot;
			break;
		}
	free(h);
	return r;
}

int vmfs_hb_owner_state(struct vmfs_hb *hb, uint64_t pos, uint64_t gen, enum owner_state *st,
			uint8_t uuid_out[16])
{
	struct vmfs_hb_host h;
	int slot = vmfs_hb_slot_of(pos), r;

	if (slot < 0)
		return -EUCLEAN;
	r = vmfs_hb_peek(hb, (unsigned)slot, &h);
	if (r)
		return r;
	if (uuid_out)
		memcpy(uuid_out, h.rec.uuid, 16);
	if (h.rec.magic != VMFS_HB_MAGIC_LIVE || h.rec.seq != gen) {
		*st = OWNER_STALE;
		return 0;
	}
	switch (h.state) {
	case VMFS_HOST_SELF: *st = OWNER_SELF; break;
	case VMFS_HOST_REPLAYING:
	case VMFS_HOST_DEAD: *st = OWNER_DEAD; break;
	case VMFS_HOST_SUSPECT: *st = OWNER_SUSPECT; break;
	default: *st = OWNER_ALIVE; break;
	}
	return 0;
}

/* ---- reclaim ------------------------------------------------------------------ */

static int reclaim(struct vmfs_hb *hb, unsigned slot, vmfs_hb_replay_fn replay, void *arg, bool own);

int vmfs_hb_reclaim(struct vmfs_hb *hb, unsigned slot, vmfs_hb_replay_fn replay, void *arg)
{
	return reclaim(hb, slot, replay, arg, false);
}

int vmfs_hb_reclaim_own(struct vmfs_hb *hb, vmfs_hb_replay_fn replay, void *arg)
{
	uint8_t *buf = xalloc(VMFS_HB_REGION_LEN);
	int me, n = 0, r;

	if (!buf)
		return -ENOMEM;
	me = vmfs_hb_slot(hb);
	r = scan_region(hb, buf);
	for (unsigned i = 0; i < VMFS_HB_NSLOTS && !r; i++) {
		struct vmfs_hb_slot s;

		if ((int)i == me ||
		    vmfs_hb_slot_decode(buf + (size_t)i * VMFS_HB_SLOT_SIZE, vmfs_hb_slot_off(i), &s) ||
		    s.magic != VMFS_HB_MAGIC_LIVE || memcmp(s.uuid, hb->uuid, 16))
			continue;
		r = reclaim(hb, i, replay, arg, true);
		if (!r)
			n++;
	}
	free(buf);
	return r ? r : n;
}

static int reclaim(struct vmfs_hb *hb, unsigned slot, vmfs_hb_replay_fn replay, void *arg, bool own)
{
	uint8_t *cur = xalloc(512), *nb = xalloc(512);
	uint64_t my_pos, my_gen, until;
	struct vmfs_hb_slot s;
	int r;

	if (!cur || !nb) {
		r = -ENOMEM;
		goto out;
	}
	if (!hb || slot >= VMFS_HB_NSLOTS) {
		r = -EINVAL;
		goto out;
	}
	r = vmfs_hb_self(hb, &my_pos, &my_gen, NULL, NULL);
	if (r)
		goto out;
	if (my_pos == vmfs_hb_slot_off(slot)) {
		r = -EINVAL;
		goto out;
	}
	until = vmfs_now_us() + hb->to.reclaim_wait_us;
	for (;;) {
		struct vmfs_hb_host h;
		bool mine;

		/* decide from the very bytes the ATS below will compare against */
		r = read_slot(hb, slot, cur, &s);
		if (r)
			goto out;
		h.rec = s;
		h.state = classify(hb, slot, &s, vmfs_now_us(), &h.age_us);
		if (s.magic == VMFS_HB_MAGIC_FREE) {
			r = 0;      /* nothing (left) to reclaim */
			goto out;
		}
		mine = s.replay_hb_pos == my_pos && s.replay_hb_gen == my_gen;
		if (s.replay_hb_pos && !mine) {
			enum owner_state os;

			r = vmfs_hb_owner_state(hb, s.replay_hb_pos, s.replay_hb_gen, &os, NULL);
			if (r)
				goto out;
			if (os == OWNER_ALIVE || os == OWNER_SUSPECT) {
				/* Someone live is replaying it: wait for the slot to turn free. */
				if (vmfs_now_us() >= until) {
					r = -ETIMEDOUT;
					goto out;
				}
				sleep_us(hb->to.lock_retry_us);
				continue;
			}
			/* The reclaimer died or restarted: take the replay over. */
		} else if (!mine && own) {
			if (memcmp(s.uuid, hb->uuid, 16)) {
				r = -EPERM;    /* slot reused by another host meanwhile */
				goto out;
			}
		} else if (!mine) {
			if (h.state == VMFS_HOST_ALIVE) {
				r = -EBUSY;
				goto out;
			}
			if (h.state != VMFS_HOST_DEAD) {
				r = -EAGAIN;
				goto out;
			}
		}
		if (!mine) {
			s.replay_hb_pos = my_pos;
			s.replay_hb_gen = my_gen;
			memcpy(s.replay_uuid, hb->uuid, 16);
			vmfs_hb_slot_encode(&s, nb);
			r = vmfs_bdev_ats(hb->bd, vmfs_hb_slot_off(slot), cur, nb, NULL);
			if (r == -ESTALE)
				continue;
			if (r)
				goto out;
			memcpy(cur, nb, 512);
		}
		{
			char u[36];

			vmfs_uuid_str(s.uuid, u);
			vmfs_hb_log(hb, "reclaiming dead host %s (slot %u gen %llu): replaying its journal",
				    u, slot, (unsigned long long)s.seq);
		}
		if (replay) {
			r = replay(arg, &s);
			if (r) {
				vmfs_hb_log(hb, "reclaim of slot %u: replay failed: %s", slot, strerror(-r));
				goto out;
			}
		}
		{
			struct vmfs_hb_slot f;

			memset(&f, 0, sizeof(f));
			f.magic = VMFS_HB_MAGIC_FREE;
			f.pos = vmfs_hb_slot_off(slot);
			f.seq = s.seq + 1;
			f.uptime = s.uptime;
			vmfs_hb_slot_encode(&f, nb);
		}
		r = vmfs_bdev_ats(hb->bd, vmfs_hb_slot_off(slot), cur, nb, NULL);
		if (r == -ESTALE)
			continue;  /* someone took the replay over from us; look again */
		goto out;
	}
out:
	free(cur);
	free(nb);
	return r;
}

/* ---- guard device --------------------------------------------------------------- */

struct guard {
	struct vmfs_bdev *lower;
	struct vmfs_hb *hb;
	uint64_t hb_off;            /* device offset of the heartbeat region, or UINT64_MAX */
	bool reads_before_join;
};

static bool guard_ok(struct guard *g, uint64_t off, uint64_t len, bool read)
{
	struct vmfs_hb *hb = g->hb;

	if (g->hb_off != UINT64_MAX && off >= g->hb_off && len <= VMFS_HB_REGION_LEN &&
	    off - g->hb_off <= VMFS_HB_REGION_LEN - len)
		return true;
	if (read && g->reads_before_join && !atomic_load(&hb->joined_once))
		return true;
	return vmfs_hb_io_allowed(hb);
}

static uint64_t iov_total(const struct iovec *iov, int n)
{
	uint64_t t = 0;

	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static int guard_readv(void *priv, const struct iovec *iov, int n, uint64_t off)
{
	struct guard *g = priv;

	if (!guard_ok(g, off, iov_total(iov, n), true))
		return -EIO;
	return vmfs_bdev_readv(g->lower, iov, n, off);
}

static int guard_writev(void *priv, const struct iovec *iov, int n, uint64_t off)
{
	struct guard *g = priv;

	if (!guard_ok(g, off, iov_total(iov, n), false))
		return -EIO;
	return vmfs_bdev_writev(g->lower, iov, n, off);
}

static int guard_flush(void *priv)
{
	struct guard *g = priv;

	if (!guard_ok(g, UINT64_MAX - 1, 1, false))
		return -EIO;
	return vmfs_bdev_flush(g->lower);
}

static int guard_discard(void *priv, uint64_t off, uint64_t len)
{
	struct guard *g = priv;

	if (!guard_ok(g, off, len, false))
		return -EIO;
	return vmfs_bdev_discard(g->lower, off, len);
}

static int guard_ats(void *priv, uint64_t off, const void *e, const void *n, void *c)
{
	struct guard *g = priv;

	if (!guard_ok(g, off, 512, false))
		return -EIO;
	return vmfs_bdev_ats(g->lower, off, e, n, c);
}

/* The same checks for requests of async queues on the guard, which go to
 * the lower device's engine (vmfs_bdev_set_passthrough). */
static int guard_admit(void *priv, enum vmfs_bdev_op op, uint64_t off, uint64_t len)
{
	if (op == VMFS_BDEV_OP_FLUSH)
		return guard_ok(priv, UINT64_MAX - 1, 1, false) ? 0 : -EIO;
	return guard_ok(priv, off, len, op == VMFS_BDEV_OP_READ) ? 0 : -EIO;
}

static void guard_close(void *priv)
{
	free(priv);
}

static const struct vmfs_bdev_ops guard_ops = {
	.readv = guard_readv, .writev = guard_writev, .flush = guard_flush,
	.discard = guard_discard, .ats = guard_ats, .close = guard_close,
};

int vmfs_hb_guard_wrap_opts(struct vmfs_hb *hb, struct vmfs_bdev *lower,
			    const struct vmfs_hb_guard_opts *o, struct vmfs_bdev **out)
{
	struct vmfs_bdev_info info;
	struct guard *g;
	int r;

	if (!hb || !lower || !o || !out)
		return -EINVAL;
	if (o->hb_region_off != UINT64_MAX && o->hb_region_off % VMFS_SECTOR_SIZE)
		return -EINVAL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->lower = lower;
	g->hb = hb;
	g->hb_off = o->hb_region_off;
	g->reads_before_join = o->reads_before_join;
	info = *vmfs_bdev_get_info(lower);
	snprintf(info.kind, sizeof(info.kind), "guard");
	r = vmfs_bdev_create(&guard_ops, g, &info, vmfs_bdev_uri(lower), out);
	if (r) {
		free(g);
		return r;
	}
	return vmfs_bdev_set_passthrough(*out, lower, guard_admit);
}

int vmfs_hb_guard_wrap(struct vmfs_hb *hb, struct vmfs_bdev *lower, struct vmfs_bdev **out)
{
	struct vmfs_hb_guard_opts o = { .hb_region_off = VMFS_HB_REGION_OFF };

	return vmfs_hb_guard_wrap_opts(hb, lower, &o, out);
}

int vmfs_hb_set_bdev(struct vmfs_hb *hb, struct vmfs_bdev *bd)
{
	int r = 0;

	if (!hb || !bd)
		return -EINVAL;
	pthread_mutex_lock(&hb->mu);
	if (hb->threads)
		r = -EBUSY;
	else
		hb->bd = bd;
	pthread_mutex_unlock(&hb->mu);
	return r;
}
