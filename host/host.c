/* A process's membership of the cluster on one volume (include/vmfs/host.h). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmfs/host.h"
#include "vmfs/journal.h"
#include "vmfs/volume.h"

/* One on-disk lock this host holds (or is taking), shared by every user. */
struct held_lock {
	uint64_t off;
	unsigned refs;
	struct vmfs_lock lk;
	struct held_lock *next;
};

struct vmfs_host {
	unsigned flags;
	vmfs_log_fn log;
	void *log_ctx;
	int n;
	struct vmfs_bdev *ext[VMFS_MAX_EXTENTS];    /* physical extents (we own) */
	struct vmfs_bdev *guard[VMFS_MAX_EXTENTS];  /* guards over them (volume owns) */
	struct vmfs_volume *vol;
	struct vmfs_bdev *lv;
	struct vmfs_hb *hb;
	struct vmfs_fs *fs;
	struct vmfs_journal *jnl;
	uint64_t jbc_lv;          /* LV offset of journal 0 .. (per-slot lookup) */
	uint32_t jbc_addr;        /* FD of /.jbc.sf */
	unsigned njournals;
	uint64_t lock_wait_us;
	atomic_bool lost;         /* heartbeat lost: every change refused */

	pthread_t reaper;         /* reclaims dead hosts in the background */
	bool reaper_running, reaper_stop;
	pthread_cond_t reaper_cv;
	pthread_mutex_t mu;       /* lock table */
	struct held_lock *locks;
	struct vmfs_fs_hooks hooks;
};

static void hlog(struct vmfs_host *h, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void hlog(struct vmfs_host *h, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (h->log)
		h->log(h->log_ctx, level, msg);
	else
		fprintf(stderr, "vmfs host: %s\n", msg);
}

/* ---- journal location --------------------------------------------------- */

/* LV offset of the journal of heartbeat slot @slot; -ERANGE beyond the pool. */
static int journal_of_slot(struct vmfs_host *h, unsigned slot, uint64_t *off)
{
	struct vmfs_extent e;
	int r;

	if (!h->jbc_addr || slot >= h->njournals)
		return -ERANGE;
	r = vmfs_map(h->fs, h->jbc_addr, (uint64_t)slot * VMFS_HOST_JOURNAL_SIZE,
		     VMFS_HOST_JOURNAL_SIZE, &e);
	if (r)
		return r;
	if (e.state != VMFS_EXT_ALLOCATED || e.len < VMFS_HOST_JOURNAL_SIZE ||
	    e.file_off != (uint64_t)slot * VMFS_HOST_JOURNAL_SIZE)
		return -EUCLEAN;
	*off = e.lv_off;
	return 0;
}

/* Replay callback for the reclaim of a dead host: its journal is the one of
 * its slot.  Slot numbers come from the record's pos, validated by lockmgr. */
static int replay_dead(void *arg, const struct vmfs_hb_slot *dead)
{
	struct vmfs_host *h = arg;
	struct vmfs_journal_stats st;
	int slot = vmfs_hb_slot_of(dead->pos);
	uint64_t off;
	int r;

	if (slot < 0)
		return -EUCLEAN;
	r = journal_of_slot(h, (unsigned)slot, &off);
	if (r == -ERANGE)
		return 0;            /* no journal: the host could not have logged */
	if (r)
		return r;
	r = vmfs_journal_replay(h->lv, off, VMFS_HOST_JOURNAL_SIZE, &st);
	if (r == -ENODATA)
		return 0;            /* never formatted: nothing to replay */
	if (r == 0)
		hlog(h, VMFS_LOG_WARN, "replayed journal of dead host in slot %d: %llu transaction(s)%s",
		     slot, (unsigned long long)st.txns, st.torn ? ", torn tail ignored" : "");
	return r;
}

/* ---- lock table --------------------------------------------------------- */

static struct held_lock *find_lock(struct vmfs_host *h, uint64_t off)
{
	for (struct held_lock *l = h->locks; l; l = l->next)
		if (l->off == off)
			return l;
	return NULL;
}

/* Take the lock at @off in @mode for one more user.  @wait: wait for a live
 * holder up to lock_wait_us (metadata) or fail at once with -EBUSY. */
static int take(struct vmfs_host *h, uint64_t off, enum vmfs_lm_mode mode, bool wait,
		struct vmfs_lock_conflict *c)
{
	struct held_lock *hl;
	uint64_t until = vmfs_now_us() + h->lock_wait_us;
	int r;

	if (atomic_load(&h->lost))
		return -EIO;
	pthread_mutex_lock(&h->mu);
	hl = find_lock(h, off);
	if (hl) {
		/* Held already: an exclusive hold covers every use; a shared hold
		 * covers shared uses only. */
		if (hl->lk.mode == VMFS_LM_EXCL || hl->lk.mode == mode) {
			hl->refs++;
			pthread_mutex_unlock(&h->mu);
			return 0;
		}
		pthread_mutex_unlock(&h->mu);
		return -EBUSY;
	}
	hl = calloc(1, sizeof(*hl));
	if (!hl) {
		pthread_mutex_unlock(&h->mu);
		return -ENOMEM;
	}
	hl->off = off;
	vmfs_lock_init(&hl->lk, h->hb, h->lv, off, 0);
	for (;;) {
		struct vmfs_lock_conflict cc;

		memset(&cc, 0, sizeof(cc));
		r = vmfs_lock_acquire(&hl->lk, mode, &cc);
		if (r == -EOWNERDEAD) {
			r = vmfs_hb_reclaim(h->hb, (unsigned)cc.slot, replay_dead, h);
			if (r == 0)
				continue;
			if (r != -EBUSY && r != -EAGAIN && r != -ETIMEDOUT)
				break;
			r = -EAGAIN;
		}
		if (c)
			*c = cc;
		if (r != -EBUSY && r != -EAGAIN)
			break;
		if (!wait || vmfs_now_us() >= until) {
			r = -EBUSY;
			break;
		}
		struct timespec ts = { 0, (long)(vmfs_hb_timeouts(h->hb)->lock_retry_us * 1000) };
		nanosleep(&ts, NULL);
	}
	if (r) {
		free(hl);
		pthread_mutex_unlock(&h->mu);
		return r;
	}
	hl->refs = 1;
	hl->next = h->locks;
	h->locks = hl;
	pthread_mutex_unlock(&h->mu);
	return 0;
}

static int drop(struct vmfs_host *h, uint64_t off)
{
	struct held_lock **pp, *hl;
	int r = 0;

	pthread_mutex_lock(&h->mu);
	for (pp = &h->locks; *pp && (*pp)->off != off; pp = &(*pp)->next)
		;
	hl = *pp;
	if (!hl) {
		pthread_mutex_unlock(&h->mu);
		return -ENOLCK;
	}
	if (--hl->refs == 0) {
		*pp = hl->next;
		r = vmfs_lock_release(&hl->lk);
		if (r)
			hlog(h, VMFS_LOG_ERR, "lock at LV 0x%llx was broken while held (%s)",
			     (unsigned long long)off, strerror(-r));
		free(hl);
	}
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* ---- filesystem hooks ---------------------------------------------------- */

/* An FD slot never used since mkvmfs has an all-zero lock sector; the fs
 * formats it in the transaction that allocates it, under the lock of the
 * FDC cluster the item belongs to, so nobody else can reach it meanwhile. */
static bool never_formatted(struct vmfs_host *h, uint64_t off)
{
	static const uint8_t zero[512];
	uint8_t *buf;
	bool z = false;

	if (posix_memalign((void **)&buf, 4096, 512))
		return false;
	if (vmfs_bdev_read(h->lv, buf, 512, off) == 0)
		z = !memcmp(buf, zero, 512);
	free(buf);
	return z;
}

static int hook_lock(void *ctx, uint64_t lv_off, int mode)
{
	struct vmfs_host *h = ctx;
	int r;

	/* metadata changes always take the object exclusively */
	r = take(h, lv_off, VMFS_LM_EXCL, !(mode & VMFS_LOCK_TRY), NULL);
	if (r == -EUCLEAN && never_formatted(h, lv_off))
		return 0;   /* a fresh item: its resource cluster's lock covers it */
	return r;
}

static void hook_unlock(void *ctx, uint64_t lv_off)
{
	drop(ctx, lv_off);
}

static int hook_commit(void *ctx, const struct vmfs_txn_sector *secs, size_t n)
{
	struct vmfs_host *h = ctx;

	_Static_assert(sizeof(struct vmfs_txn_sector) == sizeof(struct vmfs_jsector),
		       "fs and journal sector records differ");
	if (atomic_load(&h->lost))
		return -EIO;
	if (!h->jnl)
		return 0;   /* bootstrap of the journal file itself */
	return vmfs_journal_commit(h->jnl, (const struct vmfs_jsector *)secs, n);
}

static void hook_committed(void *ctx)
{
	struct vmfs_host *h = ctx;

	if (h->jnl) {
		int r = vmfs_journal_applied(h->jnl);

		if (r)
			hlog(h, VMFS_LOG_ERR, "journal checkpoint failed: %s", strerror(-r));
	}
}

static void hb_event(void *arg, enum vmfs_hb_event ev, unsigned slot, uint64_t gen)
{
	struct vmfs_host *h = arg;

	switch (ev) {
	case VMFS_HB_EV_FENCED:
		hlog(h, VMFS_LOG_ERR, "heartbeat renewal overdue in slot %u: volume I/O stopped (fenced)",
		     slot);
		break;
	case VMFS_HB_EV_UNFENCED:
		hlog(h, VMFS_LOG_WARN, "heartbeat renewed in slot %u: volume I/O resumed", slot);
		break;
	case VMFS_HB_EV_LOST:
		atomic_store(&h->lost, true);
		hlog(h, VMFS_LOG_ERR, "heartbeat slot %u (generation %llu) was reclaimed by another "
		     "host: every lock is lost; unmount and mount again", slot,
		     (unsigned long long)gen);
		break;
	case VMFS_HB_EV_REJOINED:
		break;
	}
}

/* ---- journal file bootstrap ---------------------------------------------- */

static int setup_journal(struct vmfs_host *h)
{
	const struct vmfs_volume_info *vi = vmfs_volume_get_info(h->vol);
	uint64_t want, off;
	struct vmfs_stat st;
	unsigned slot = (unsigned)vmfs_hb_slot(h->hb);
	int r;

	/* Pool size: 8..64 journals of 1 MiB, about 1/64 of the volume. */
	want = vi->lv_size / 64 / VMFS_HOST_JOURNAL_SIZE;
	want = want < 8 ? 8 : want > 64 ? 64 : want;
	r = vmfs_lookup(h->fs, VMFS_ROOT_ADDR, VMFS_HOST_JOURNAL_FILE, &h->jbc_addr);
	if (r == 0 && (h->flags & VMFS_HOST_RECLAIM_OWN)) {
		/* Before any change: our earlier incarnation may hold locks on what
		 * we are about to touch, and its journal must be replayed first.
		 * Finding the journals needs only reads. */
		r = vmfs_stat(h->fs, h->jbc_addr, &st);
		if (r == 0) {
			h->njournals = (unsigned)(st.size / VMFS_HOST_JOURNAL_SIZE);
			r = vmfs_hb_reclaim_own(h->hb, replay_dead, h);
			if (r > 0)
				hlog(h, VMFS_LOG_WARN, "reclaimed %d slot(s) of our earlier incarnation", r);
			r = r < 0 ? r : 0;
		}
		if (r) {
			hlog(h, VMFS_LOG_ERR, "cannot reclaim our earlier incarnation: %s", strerror(-r));
			return r;
		}
	}
	if (r == -ENOENT) {
		r = vmfs_create(h->fs, VMFS_ROOT_ADDR, VMFS_HOST_JOURNAL_FILE, 0400, 0, 0,
				&h->jbc_addr);
		if (r == 0)
			hlog(h, VMFS_LOG_INFO, "created journal area /%s (%llu journals)",
			     VMFS_HOST_JOURNAL_FILE, (unsigned long long)want);
		else if (r == -EEXIST)
			r = vmfs_lookup(h->fs, VMFS_ROOT_ADDR, VMFS_HOST_JOURNAL_FILE, &h->jbc_addr);
	}
	/* Every host makes sure the area is complete: allocation only fills
	 * holes, so this is a no-op once done, and it finishes the work of a
	 * host that died between creating the file and allocating it. */
	if (r == 0)
		r = vmfs_stat(h->fs, h->jbc_addr, &st);
	if (r == 0 && st.size < want * VMFS_HOST_JOURNAL_SIZE && st.size % VMFS_HOST_JOURNAL_SIZE == 0)
		r = vmfs_fallocate(h->fs, h->jbc_addr, 0, want * VMFS_HOST_JOURNAL_SIZE,
				   VMFS_ALLOC_ZERO);
	if (r) {
		hlog(h, VMFS_LOG_ERR, "journal area /%s: %s", VMFS_HOST_JOURNAL_FILE, strerror(-r));
		return r;
	}
	r = vmfs_stat(h->fs, h->jbc_addr, &st);
	if (r)
		return r;
	h->njournals = (unsigned)(st.size / VMFS_HOST_JOURNAL_SIZE);
	r = journal_of_slot(h, slot, &off);
	if (r == -ERANGE) {
		hlog(h, VMFS_LOG_ERR, "heartbeat slot %u has no journal (the volume has %u): too many "
		     "hosts on this volume", slot, h->njournals);
		return -EUSERS;
	}
	if (r)
		return r;
	r = vmfs_journal_open(h->lv, off, VMFS_HOST_JOURNAL_SIZE, 0, &h->jnl, NULL);
	if (r == -ENODATA || r == -EUCLEAN) {
		r = vmfs_journal_format(h->lv, off, VMFS_HOST_JOURNAL_SIZE);
		if (r == 0)
			r = vmfs_journal_open(h->lv, off, VMFS_HOST_JOURNAL_SIZE, 0, &h->jnl, NULL);
	}
	/* Say where it is in our slot, as ESXi does ("jrnl <FB n>"). */
	if (r == 0)
		r = vmfs_hb_set_journal(h->hb, off, VMFS_HOST_JOURNAL_SIZE,
					vmfs_fb_make((uint32_t)(off / vmfs_fs_get_info(h->fs)->block_size),
						     false));
	if (r)
		hlog(h, VMFS_LOG_ERR, "journal of slot %u: %s", slot, strerror(-r));
	return r;
}

/* ---- dead-host reaper ----------------------------------------------------- */

/* Every hb_interval, look at every slot; a host whose stamp has not moved for
 * hb_timeout (on our clock) is reclaimed: its journal replayed, its slot
 * freed, so its locks turn stale.  Lock waiters do the same on contention;
 * the reaper makes it happen even when nobody needs the dead host's locks,
 * so its slot and journal never linger. */
static void *reaper_main(void *arg)
{
	struct vmfs_host *h = arg;
	const struct vmfs_timeouts *t = vmfs_hb_timeouts(h->hb);
	struct vmfs_hb_host *hosts = calloc(VMFS_HB_NSLOTS, sizeof(*hosts));

	if (!hosts)
		return NULL;
	pthread_mutex_lock(&h->mu);
	while (!h->reaper_stop) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)(t->hb_interval_us / 1000000);
		ts.tv_nsec += (long)(t->hb_interval_us % 1000000) * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&h->reaper_cv, &h->mu, &ts);
		if (h->reaper_stop)
			break;
		pthread_mutex_unlock(&h->mu);
		if (!atomic_load(&h->lost) && vmfs_hb_io_allowed(h->hb)) {
			int n = vmfs_hb_list(h->hb, hosts, VMFS_HB_NSLOTS);

			for (int i = 0; i < n; i++) {
				if (hosts[i].state != VMFS_HOST_DEAD)
					continue;
				int r = vmfs_hb_reclaim(h->hb, hosts[i].slot, replay_dead, h);

				if (r == 0)
					hlog(h, VMFS_LOG_WARN, "reclaimed dead host in slot %u",
					     hosts[i].slot);
			}
		}
		pthread_mutex_lock(&h->mu);
	}
	pthread_mutex_unlock(&h->mu);
	free(hosts);
	return NULL;
}

static void reaper_stop(struct vmfs_host *h)
{
	if (!h->reaper_running)
		return;
	pthread_mutex_lock(&h->mu);
	h->reaper_stop = true;
	pthread_cond_signal(&h->reaper_cv);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->reaper, NULL);
	h->reaper_running = false;
}

/* ---- mount / unmount ------------------------------------------------------ */

static void close_all(struct vmfs_host *h)
{
	if (h->fs)
		vmfs_fs_close(h->fs);
	if (h->vol)
		vmfs_volume_close(h->vol);     /* closes the guards */
	if (h->hb)
		vmfs_hb_destroy(h->hb);
	for (int i = 0; i < h->n; i++)
		if (h->ext[i])
			vmfs_bdev_close(h->ext[i]);
	pthread_cond_destroy(&h->reaper_cv);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

int vmfs_host_mount(const char *const *paths, int n, const struct vmfs_host_opts *o,
		    struct vmfs_host **out)
{
	struct vmfs_host_opts def = { 0 };
	struct vmfs_volume_opts vo = { 0 };
	struct vmfs_fs_opts fo = { 0 };
	struct vmfs_hb_opts ho = { 0 };
	struct vmfs_host *h;
	bool rdonly;
	int r;

	if (!paths || n < 1 || n > VMFS_MAX_EXTENTS || !out)
		return -EINVAL;
	if (!o)
		o = &def;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->mu, NULL);
	{
		/* the reaper waits on CLOCK_MONOTONIC deadlines */
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&h->reaper_cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	h->flags = o->flags;
	h->log = o->log;
	h->log_ctx = o->log_ctx;
	rdonly = o->flags & VMFS_HOST_RDONLY;
	vo.log = o->log;
	vo.log_ctx = o->log_ctx;
	vo.bdev_flags = (rdonly ? VMFS_BDEV_RDONLY : 0) | (o->flags & VMFS_HOST_DIRECT ? VMFS_BDEV_DIRECT : 0);

	if (!rdonly) {
		memcpy(ho.uuid, o->uuid, 16);
		ho.io_timeout_us = o->io_timeout_us;
		ho.no_rejoin = true;
		ho.quiet = true;
		ho.on_event = hb_event;
		ho.event_arg = h;
		r = vmfs_hb_create(NULL, &ho, &h->hb);
		if (r) {
			hlog(h, VMFS_LOG_ERR, "heartbeat: %s", strerror(-r));
			goto fail;
		}
		h->lock_wait_us = o->lock_wait_us ? o->lock_wait_us
						  : 2 * vmfs_hb_timeouts(h->hb)->hb_timeout_us;
	}
	/* extents, each under a fencing guard */
	h->n = n;
	for (int i = 0; i < n; i++) {
		r = vmfs_bdev_open(paths[i], vo.bdev_flags, &h->ext[i]);
		if (r) {
			hlog(h, VMFS_LOG_ERR, "cannot open %s: %s", paths[i], strerror(-r));
			goto fail;
		}
		if (!rdonly) {
			/* The fencing guard sits on the extent itself, so a request is
			 * checked when it reaches the disk; heartbeat I/O (on the extent
			 * holding LV segment 0) always passes, reads pass before the
			 * first join so the volume's headers can be read. */
			struct vmfs_hb_guard_opts go = { .hb_region_off = UINT64_MAX,
							 .reads_before_join = true };
			uint64_t dev_off;

			if (vmfs_bdev_get_info(h->ext[i])->ats == VMFS_ATS_NONE) {
				hlog(h, VMFS_LOG_ERR, "%s has no atomic test-and-set: it cannot be shared "
				     "by hosts (mount it read-only)", paths[i]);
				r = -EOPNOTSUPP;
				goto fail;
			}
			r = vmfs_volume_extent_locate(h->ext[i], VMFS_HB_REGION_OFF, &dev_off);
			if (r == 0)
				go.hb_region_off = dev_off;
			r = vmfs_hb_guard_wrap_opts(h->hb, h->ext[i], &go, &h->guard[i]);
			if (r)
				goto fail;
		}
	}
	if (rdonly) {
		/* the volume takes ownership of the devices */
		r = vmfs_volume_open_bdevs(h->ext, n, &vo, &h->vol);
		memset(h->ext, 0, sizeof(h->ext));
	} else {
		r = vmfs_volume_open_bdevs(h->guard, n, &vo, &h->vol);
	}
	memset(h->guard, 0, sizeof(h->guard));
	if (r)
		goto fail;
	h->lv = vmfs_volume_bdev(h->vol);
	if (!rdonly) {
		r = vmfs_hb_set_bdev(h->hb, h->lv);
		if (r == 0)
			r = vmfs_hb_join(h->hb);
		if (r) {
			hlog(h, VMFS_LOG_ERR, "cannot join the volume's heartbeat region: %s",
			     strerror(-r));
			goto fail;
		}
		h->hooks = (struct vmfs_fs_hooks){
			.ctx = h, .lock = hook_lock, .unlock = hook_unlock,
			.commit = hook_commit, .committed = hook_committed,
		};
		fo.hooks = &h->hooks;
	}
	fo.flags = o->fs_flags | (rdonly ? VMFS_FS_RDONLY : 0) |
		   (rdonly || (o->flags & VMFS_HOST_NO_DISCARD) ? 0 : VMFS_FS_DISCARD);
	fo.log = o->log;
	fo.log_ctx = o->log_ctx;
	r = vmfs_fs_open(h->vol, &fo, &h->fs);
	if (r)
		goto fail;
	if (!rdonly) {
		/* allocate from resource clusters of our own, spread by slot */
		vmfs_fs_set_alloc_slot(h->fs, (unsigned)vmfs_hb_slot(h->hb));
		r = setup_journal(h);
		if (r)
			goto fail;

		if (pthread_create(&h->reaper, NULL, reaper_main, h) == 0)
			h->reaper_running = true;
	}
	*out = h;
	return 0;
fail:
	if (h->jnl)
		vmfs_journal_close(h->jnl);
	if (h->hb)
		vmfs_hb_leave(h->hb);
	for (int i = 0; i < n; i++)
		if (h->guard[i])
			vmfs_bdev_close(h->guard[i]);
	close_all(h);
	return r;
}

int vmfs_host_unmount(struct vmfs_host *h)
{
	int r = 0, e;

	if (!h)
		return 0;
	reaper_stop(h);
	/* locks first (they are checkpointed), then the journal, then leave */
	while (h->locks) {
		struct held_lock *hl = h->locks;

		h->locks = hl->next;
		e = vmfs_lock_release(&hl->lk);
		if (e && !r)
			r = e;
		free(hl);
	}
	if (h->jnl) {
		vmfs_journal_close(h->jnl);
		h->jnl = NULL;
	}
	if (h->fs) {
		e = vmfs_fs_sync(h->fs);
		if (e && !r)
			r = e;
	}
	if (h->hb && !atomic_load(&h->lost)) {
		e = vmfs_hb_leave(h->hb);
		if (e && !r)
			r = e;
	}
	close_all(h);
	return r;
}

struct vmfs_fs *vmfs_host_fs(struct vmfs_host *h) { return h->fs; }
struct vmfs_hb *vmfs_host_hb(struct vmfs_host *h) { return h->hb; }
struct vmfs_bdev *vmfs_host_bdev(struct vmfs_host *h) { return h->lv; }
bool vmfs_host_rdonly(const struct vmfs_host *h) { return h->flags & VMFS_HOST_RDONLY; }
int vmfs_host_slot(const struct vmfs_host *h) { return h->hb ? vmfs_hb_slot(h->hb) : -1; }
bool vmfs_host_healthy(const struct vmfs_host *h) { return !atomic_load(&h->lost); }

bool vmfs_host_want_direct(enum vmfs_host_direct mode, const char *const *paths, int n)
{
	if (mode != VMFS_HOST_DIRECT_AUTO)
		return mode == VMFS_HOST_DIRECT_ON;
	for (int i = 0; i < n; i++) {
		struct stat st;

		if (strstr(paths[i], "://") || (stat(paths[i], &st) == 0 && S_ISBLK(st.st_mode)))
			return true;
	}
	return false;
}

/* ---- file locks ------------------------------------------------------------- */

static int fd_lock_off(struct vmfs_host *h, uint32_t addr, uint64_t *off)
{
	struct vmfs_fd fd;

	if (vmfs_addr_type(addr) != VMFS_ADDR_FD)
		return -EINVAL;
	return vmfs_fd_read(h->fs, addr, &fd, off);
}

int vmfs_host_lock_file(struct vmfs_host *h, uint32_t addr, enum vmfs_lm_mode mode,
			struct vmfs_lock_conflict *c)
{
	uint64_t off;
	int r;

	if (!h->hb)
		return mode == VMFS_LM_RO ? 0 : -EROFS;
	r = fd_lock_off(h, addr, &off);
	if (r)
		return r;
	return take(h, off, mode, false, c);
}

int vmfs_host_unlock_file(struct vmfs_host *h, uint32_t addr)
{
	uint64_t off;
	int r;

	if (!h->hb)
		return 0;
	r = fd_lock_off(h, addr, &off);
	if (r)
		return r;
	return drop(h, off);
}

int vmfs_host_handoff_file(struct vmfs_host *h, uint32_t addr, unsigned slot)
{
	struct held_lock **pp, *hl;
	uint64_t off;
	int r;

	if (!h->hb)
		return -EROFS;
	r = fd_lock_off(h, addr, &off);
	if (r)
		return r;
	pthread_mutex_lock(&h->mu);
	for (pp = &h->locks; *pp && (*pp)->off != off; pp = &(*pp)->next)
		;
	hl = *pp;
	if (!hl || hl->lk.mode != VMFS_LM_EXCL) {
		pthread_mutex_unlock(&h->mu);
		return -ENOLCK;
	}
	r = vmfs_lock_handoff(&hl->lk, slot);
	if (r == 0) {
		*pp = hl->next;
		free(hl);
	}
	pthread_mutex_unlock(&h->mu);
	return r;
}

int vmfs_host_accept_file(struct vmfs_host *h, uint32_t addr)
{
	struct held_lock *hl;
	uint64_t off;
	int r;

	if (!h->hb)
		return -EROFS;
	r = fd_lock_off(h, addr, &off);
	if (r)
		return r;
	hl = calloc(1, sizeof(*hl));
	if (!hl)
		return -ENOMEM;
	hl->off = off;
	vmfs_lock_init(&hl->lk, h->hb, h->lv, off, 0);
	r = vmfs_lock_accept(&hl->lk);
	if (r) {
		free(hl);
		return r;
	}
	pthread_mutex_lock(&h->mu);
	hl->refs = 1;
	hl->next = h->locks;
	h->locks = hl;
	pthread_mutex_unlock(&h->mu);
	return 0;
}

int vmfs_host_file_lock_state(struct vmfs_host *h, uint32_t addr, struct vmfs_lock_rec *r)
{
	uint64_t off;
	int e = fd_lock_off(h, addr, &off);

	if (e)
		return e;
	return vmfs_lock_read(h->lv, off, VMFS_MAGIC_FD, r);
}
