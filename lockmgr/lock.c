/*
 * On-disk locks (DESIGN.md step 5, 7, 8): the 512-byte record in front of
 * every FD and resource cluster, changed only with ATS from the exact bytes
 * read.  Exclusive locks name one owner (slot + generation + uuid); shared
 * locks (read-only, multi-writer) list their holders, one entry per host.
 *
 * A holder is judged by its heartbeat slot:
 *   slot free, or live with another generation  -> stale: ignore / take over
 *   slot is ours, same generation                -> us
 *   slot being replayed, or same stamp for hb_timeout -> dead: -EOWNERDEAD
 *   otherwise                                    -> alive: -EBUSY
 * We never call up: on -EOWNERDEAD the caller reclaims (vmfs_hb_reclaim with
 * its journal replay) and retries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define ATS_RACE_MAX 64

void vmfs_lock_init(struct vmfs_lock *l, struct vmfs_hb *hb, struct vmfs_bdev *bd,
		    uint64_t off, uint32_t magic)
{
	memset(l, 0, sizeof(*l));
	l->hb = hb;
	l->bd = bd;
	l->off = off;
	l->magic = magic;
	l->mode = VMFS_LM_FREE;
}

static int read_rec(struct vmfs_lock *l, uint8_t raw[512], struct vmfs_lock_rec *r)
{
	int rc = vmfs_bdev_read(l->bd, raw, 512, l->off);

	if (rc)
		return rc;
	return vmfs_lock_rec_decode(raw, l->off, l->magic, r);
}

int vmfs_lock_read(struct vmfs_bdev *bd, uint64_t off, uint32_t magic, struct vmfs_lock_rec *r)
{
	uint8_t *raw = NULL;
	int rc;

	if (posix_memalign((void **)&raw, 4096, 512))
		return -ENOMEM;
	rc = vmfs_bdev_read(bd, raw, 512, off);
	if (!rc)
		rc = vmfs_lock_rec_decode(raw, off, magic, r);
	free(raw);
	return rc;
}

static void fill_conflict(struct vmfs_lock_conflict *c, enum vmfs_lm_mode mode, uint64_t pos,
			  uint64_t gen, const uint8_t uuid[16])
{
	if (!c)
		return;
	c->mode = mode;
	c->slot = vmfs_hb_slot_of(pos);
	c->hb_gen = gen;
	memcpy(c->uuid, uuid, 16);
}

/* Judge one holder; returns 0 and *st, or a negative errno. */
static int judge(struct vmfs_lock *l, uint64_t pos, uint64_t gen, uint64_t my_pos, uint64_t my_gen,
		 enum owner_state *st)
{
	if (pos == my_pos && gen == my_gen) {
		*st = OWNER_SELF;
		return 0;
	}
	return vmfs_hb_owner_state(l->hb, pos, gen, st, NULL);
}

static int conflict_err(enum owner_state st)
{
	return st == OWNER_DEAD ? -EOWNERDEAD : -EBUSY;
}

static bool shared_mode(enum vmfs_lm_mode m)
{
	return m == VMFS_LM_RO || m == VMFS_LM_MW;
}

static void set_excl(struct vmfs_lock_rec *r, uint64_t pos, uint64_t gen, const uint8_t uuid[16])
{
	r->mode = VMFS_LM_EXCL;
	r->hb_pos = pos;
	r->hb_seq = gen;
	memcpy(r->uuid, uuid, 16);
	r->num_holders = 0;
	memset(r->holders, 0, sizeof(r->holders));
}

static void set_free(struct vmfs_lock_rec *r)
{
	r->mode = VMFS_LM_FREE;
	r->hb_pos = 0;
	r->hb_seq = 0;
	memset(r->uuid, 0, 16);
	r->num_holders = 0;
	memset(r->holders, 0, sizeof(r->holders));
}

/* Remove holder i, keeping the list packed. */
static void drop_holder(struct vmfs_lock_rec *r, unsigned i)
{
	memmove(&r->holders[i], &r->holders[i + 1],
		(r->num_holders - i - 1) * sizeof(r->holders[0]));
	r->num_holders--;
	memset(&r->holders[r->num_holders], 0, sizeof(r->holders[0]));
}

static int find_holder(const struct vmfs_lock_rec *r, uint64_t pos, uint64_t gen)
{
	for (unsigned i = 0; i < r->num_holders; i++)
		if (r->holders[i].hb_pos == pos && r->holders[i].hb_gen == gen)
			return (int)i;
	return -1;
}

/*
 * Compute the record that gives us @mode, from the current record @r.
 * \return 0 (r rewritten, *noop when nothing to write), or -EBUSY/-EOWNERDEAD/
 * -EUSERS with @c filled.
 */
static int plan(struct vmfs_lock *l, struct vmfs_lock_rec *r, enum vmfs_lm_mode mode,
		uint64_t my_pos, uint64_t my_gen, const uint8_t my_uuid[16], bool *noop,
		struct vmfs_lock_conflict *c)
{
	enum owner_state st;
	int rc;

	*noop = false;
	if (r->mode == VMFS_LM_EXCL) {
		rc = judge(l, r->hb_pos, r->hb_seq, my_pos, my_gen, &st);
		if (rc)
			return rc;
		if (st == OWNER_SELF && mode == VMFS_LM_EXCL) {
			*noop = true;
			return 0;
		}
		if (st != OWNER_SELF && st != OWNER_STALE) {
			fill_conflict(c, VMFS_LM_EXCL, r->hb_pos, r->hb_seq, r->uuid);
			return conflict_err(st);
		}
		/* ours (mode change) or stale: the record is free for us */
		set_free(r);
	} else if (shared_mode((enum vmfs_lm_mode)r->mode)) {
		bool same = r->mode == (uint32_t)mode;

		/* Prune stale holders; a different mode needs every other holder gone. */
		for (unsigned i = 0; i < r->num_holders;) {
			struct vmfs_lock_holder *h = &r->holders[i];

			rc = judge(l, h->hb_pos, h->hb_gen, my_pos, my_gen, &st);
			if (rc)
				return rc;
			if (st == OWNER_STALE) {
				drop_holder(r, i);
				continue;
			}
			if (!same && st != OWNER_SELF) {
				fill_conflict(c, (enum vmfs_lm_mode)r->mode, h->hb_pos, h->hb_gen, h->uuid);
				return conflict_err(st);
			}
			i++;
		}
		if (same) {
			if (find_holder(r, my_pos, my_gen) < 0) {
				if (r->num_holders >= VMFS_LOCK_MAX_HOLDERS) {
					fill_conflict(c, mode, r->holders[0].hb_pos, r->holders[0].hb_gen,
						      r->holders[0].uuid);
					return -EUSERS;
				}
				r->holders[r->num_holders].hb_pos = my_pos;
				r->holders[r->num_holders].hb_gen = my_gen;
				memcpy(r->holders[r->num_holders].uuid, my_uuid, 16);
				r->num_holders++;
			} else if (l->mode == mode && l->epoch == vmfs_hb_epoch(l->hb)) {
				*noop = true;
				return 0;
			}
			r->token++;
			return 0;
		}
		set_free(r);
	}
	/* Free (or made free above): take it. */
	if (mode == VMFS_LM_EXCL) {
		set_excl(r, my_pos, my_gen, my_uuid);
	} else {
		set_free(r);
		r->mode = mode;
		r->num_holders = 1;
		r->holders[0].hb_pos = my_pos;
		r->holders[0].hb_gen = my_gen;
		memcpy(r->holders[0].uuid, my_uuid, 16);
	}
	r->token++;
	return 0;
}

static int acquire_common(struct vmfs_lock *l, enum vmfs_lm_mode mode, struct vmfs_lock_conflict *c,
			  bool change)
{
	uint8_t *raw = NULL, *nb = NULL, *cur = NULL;
	uint64_t my_pos, my_gen, epoch;
	uint8_t my_uuid[16];
	bool have, guessed;
	int rc;

	if (!l || !l->hb || !l->bd || (mode != VMFS_LM_EXCL && !shared_mode(mode)))
		return -EINVAL;
	rc = vmfs_hb_self(l->hb, &my_pos, &my_gen, my_uuid, &epoch);
	if (rc)
		return rc;
	if (change && (l->mode == VMFS_LM_FREE || l->epoch != epoch))
		return -ENOLCK;
	if (posix_memalign((void **)&raw, 4096, 512) || posix_memalign((void **)&nb, 4096, 512) ||
	    posix_memalign((void **)&cur, 4096, 512)) {
		rc = -ENOMEM;
		goto out;
	}
	/* Uncontended fast path: guess the record is as we last left it and
	 * skip the read; a wrong guess costs nothing but a miscompare, which
	 * hands us the current bytes. */
	have = guessed = !change && l->valid;
	if (have)
		memcpy(raw, l->last, 512);
	for (int tries = 0; tries < ATS_RACE_MAX; tries++) {
		struct vmfs_lock_rec r;
		bool noop;

		if (have && vmfs_lock_rec_decode(raw, l->off, l->magic, &r) != 0)
			have = guessed = false;
		if (!have) {
			rc = read_rec(l, raw, &r);
			if (rc)
				goto out;
			guessed = false;
		}
		have = false;
		if (change) {
			/* We must still be on the record as we left it. */
			bool held = l->mode == VMFS_LM_EXCL
				? (r.mode == VMFS_LM_EXCL && r.hb_pos == my_pos && r.hb_seq == my_gen)
				: (r.mode == (uint32_t)l->mode && find_holder(&r, my_pos, my_gen) >= 0);

			if (!held) {
				l->mode = VMFS_LM_FREE;
				rc = -ENOLCK;
				goto out;
			}
			if (l->mode == VMFS_LM_EXCL && shared_mode(mode))
				set_free(&r);   /* downgrade: nobody else can be on it */
			else if (shared_mode(l->mode) && shared_mode(mode) && mode != l->mode)
				drop_holder(&r, (unsigned)find_holder(&r, my_pos, my_gen));
			else if (shared_mode(l->mode) && mode == VMFS_LM_EXCL) {
				drop_holder(&r, (unsigned)find_holder(&r, my_pos, my_gen));
				if (r.num_holders == 0)
					set_free(&r);
			}
			if (r.mode != VMFS_LM_FREE && r.num_holders == 0 && shared_mode((enum vmfs_lm_mode)r.mode))
				set_free(&r);
		}
		memcpy(nb, raw, 512);
		rc = plan(l, &r, mode, my_pos, my_gen, my_uuid, &noop, c);
		if ((rc || noop) && guessed)
			continue;       /* only a write may rest on a guess: read the disk */
		if (rc)
			goto out;
		if (noop) {
			memcpy(l->last, raw, 512);
			l->valid = true;
			l->mode = mode;
			l->epoch = epoch;
			l->my_pos = my_pos;
			l->my_gen = my_gen;
			rc = 0;
			goto out;
		}
		vmfs_lock_rec_encode(&r, nb);
		rc = vmfs_bdev_ats(l->bd, l->off, raw, nb, cur);
		if (rc == -ESTALE) {
			memcpy(raw, cur, 512);
			have = true;
			guessed = false;
			continue;
		}
		if (rc)
			goto out;
		memcpy(l->last, nb, 512);
		l->valid = true;
		if (!change)
			l->prev_token = l->token;   /* a new hold: remember the previous one */
		l->token = r.token;
		l->mode = mode;
		l->epoch = epoch;
		l->my_pos = my_pos;
		l->my_gen = my_gen;
		goto out;
	}
	rc = -EBUSY;   /* lost the ATS race too often: report as contended */
out:
	free(raw);
	free(nb);
	free(cur);
	return rc;
}

int vmfs_lock_acquire(struct vmfs_lock *l, enum vmfs_lm_mode mode, struct vmfs_lock_conflict *c)
{
	if (l && l->mode != VMFS_LM_FREE && l->hb && l->epoch != vmfs_hb_epoch(l->hb))
		l->mode = VMFS_LM_FREE;     /* that hold died with our old heartbeat */
	if (l && l->mode != VMFS_LM_FREE && l->mode != mode)
		return vmfs_lock_change_mode(l, mode, c);
	return acquire_common(l, mode, c, false);
}

int vmfs_lock_change_mode(struct vmfs_lock *l, enum vmfs_lm_mode mode, struct vmfs_lock_conflict *c)
{
	if (l && l->mode == mode)
		return 0;
	return acquire_common(l, mode, c, true);
}

bool vmfs_lock_token_moved(const struct vmfs_lock *l)
{
	return l->prev_token == 0 || l->token != l->prev_token + 1;
}

static void sleep_us(uint64_t us)
{
	struct timespec ts = { .tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int vmfs_lock_acquire_wait(struct vmfs_lock *l, enum vmfs_lm_mode mode, uint64_t timeout_us,
			   vmfs_hb_replay_fn replay, void *arg, struct vmfs_lock_conflict *c)
{
	struct vmfs_lock_conflict cc;
	uint64_t until = vmfs_now_us() + timeout_us;
	int rc;

	if (!l || !l->hb)
		return -EINVAL;
	for (;;) {
		memset(&cc, 0, sizeof(cc));
		rc = vmfs_lock_acquire(l, mode, &cc);
		if (rc == -EOWNERDEAD) {
			if (!replay)
				break;          /* the caller runs recovery itself */
			rc = vmfs_hb_reclaim(l->hb, (unsigned)cc.slot, replay, arg);
			if (rc == 0)
				continue;       /* slot freed: the lock is stale now */
			if (rc != -EBUSY && rc != -EAGAIN && rc != -ETIMEDOUT)
				break;          /* replay failed: report it */
			rc = -EBUSY;            /* came back to life, or another reclaimer is slow */
		}
		if (rc != -EBUSY)
			break;
		if (vmfs_now_us() >= until) {
			rc = -ETIMEDOUT;
			break;
		}
		sleep_us(vmfs_hb_timeouts(l->hb)->lock_retry_us);
	}
	if (c)
		*c = cc;
	return rc;
}

int vmfs_lock_release(struct vmfs_lock *l)
{
	uint8_t *raw = NULL, *nb = NULL;
	int rc;

	if (!l || !l->hb)
		return -EINVAL;
	if (l->mode == VMFS_LM_FREE)
		return -ENOLCK;
	if (l->epoch != vmfs_hb_epoch(l->hb)) {
		l->mode = VMFS_LM_FREE;
		return -ENOLCK;
	}
	if (posix_memalign((void **)&raw, 4096, 512) || posix_memalign((void **)&nb, 4096, 512)) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(raw, l->last, 512);
	for (int tries = 0; tries < ATS_RACE_MAX; tries++) {
		struct vmfs_lock_rec r;
		int i;

		rc = vmfs_lock_rec_decode(raw, l->off, l->magic, &r);
		if (rc)
			goto out;
		if (l->mode == VMFS_LM_EXCL) {
			if (r.mode != VMFS_LM_EXCL || r.hb_pos != l->my_pos || r.hb_seq != l->my_gen) {
				rc = -ENOLCK;
				goto out;
			}
			set_free(&r);
		} else {
			i = find_holder(&r, l->my_pos, l->my_gen);
			if (r.mode != (uint32_t)l->mode || i < 0) {
				rc = -ENOLCK;
				goto out;
			}
			drop_holder(&r, (unsigned)i);
			if (r.num_holders == 0)
				set_free(&r);
		}
		memcpy(nb, raw, 512);
		vmfs_lock_rec_encode(&r, nb);
		rc = vmfs_bdev_ats(l->bd, l->off, raw, nb, raw);
		if (rc == 0) {
			memcpy(l->last, nb, 512);
			l->valid = true;
			goto out;
		}
		if (rc != -ESTALE)
			goto out;
		/* raw now holds the current record: try again from it */
	}
	rc = -EBUSY;
out:
	if (rc == 0 || rc == -ENOLCK)
		l->mode = VMFS_LM_FREE;
	free(raw);
	free(nb);
	return rc;
}

int vmfs_lock_verify(struct vmfs_lock *l)
{
	uint8_t *raw = NULL;
	struct vmfs_lock_rec r;
	int rc;

	if (!l || !l->hb)
		return -EINVAL;
	if (l->mode == VMFS_LM_FREE || l->epoch != vmfs_hb_epoch(l->hb))
		return -ENOLCK;
	if (posix_memalign((void **)&raw, 4096, 512))
		return -ENOMEM;
	rc = read_rec(l, raw, &r);
	if (rc)
		goto out;
	if (l->mode == VMFS_LM_EXCL)
		rc = (r.mode == VMFS_LM_EXCL && r.hb_pos == l->my_pos && r.hb_seq == l->my_gen &&
		      r.token == l->token) ? 0 : -ENOLCK;
	else
		rc = (r.mode == (uint32_t)l->mode && find_holder(&r, l->my_pos, l->my_gen) >= 0) ? 0 : -ENOLCK;
out:
	free(raw);
	return rc;
}

int vmfs_lock_handoff(struct vmfs_lock *l, unsigned slot)
{
	uint8_t *raw = NULL, *nb = NULL;
	struct vmfs_hb_host h;
	struct vmfs_lock_rec r;
	int rc;

	if (!l || !l->hb || slot >= VMFS_HB_NSLOTS)
		return -EINVAL;
	if (l->mode != VMFS_LM_EXCL || l->epoch != vmfs_hb_epoch(l->hb))
		return -ENOLCK;
	if (!vmfs_hb_io_allowed(l->hb))
		return -EIO;
	rc = vmfs_hb_peek(l->hb, slot, &h);
	if (rc)
		return rc;
	if (h.state != VMFS_HOST_ALIVE && h.state != VMFS_HOST_SUSPECT)
		return -EHOSTDOWN;   /* the target must be a live other host */
	if (posix_memalign((void **)&raw, 4096, 512) || posix_memalign((void **)&nb, 4096, 512)) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(raw, l->last, 512);
	rc = vmfs_lock_rec_decode(raw, l->off, l->magic, &r);
	if (rc)
		goto out;
	set_excl(&r, vmfs_hb_slot_off(slot), h.rec.seq, h.rec.uuid);
	r.token++;
	memcpy(nb, raw, 512);
	vmfs_lock_rec_encode(&r, nb);
	rc = vmfs_bdev_ats(l->bd, l->off, raw, nb, NULL);
	if (rc == -ESTALE)
		rc = -ENOLCK;    /* our hold was broken meanwhile */
	if (rc == 0 || rc == -ENOLCK)
		l->mode = VMFS_LM_FREE;
out:
	free(raw);
	free(nb);
	return rc;
}

int vmfs_lock_accept(struct vmfs_lock *l)
{
	uint8_t *raw = NULL;
	uint64_t my_pos, my_gen, epoch;
	struct vmfs_lock_rec r;
	int rc;

	if (!l || !l->hb)
		return -EINVAL;
	rc = vmfs_hb_self(l->hb, &my_pos, &my_gen, NULL, &epoch);
	if (rc)
		return rc;
	if (posix_memalign((void **)&raw, 4096, 512))
		return -ENOMEM;
	rc = read_rec(l, raw, &r);
	if (rc)
		goto out;
	if (r.mode != VMFS_LM_EXCL || r.hb_pos != my_pos || r.hb_seq != my_gen) {
		rc = -ENOLCK;
		goto out;
	}
	if (l->mode == VMFS_LM_FREE || l->epoch != epoch)
		l->prev_token = l->token;
	memcpy(l->last, raw, 512);
	l->valid = true;
	l->token = r.token;
	l->mode = VMFS_LM_EXCL;
	l->epoch = epoch;
	l->my_pos = my_pos;
	l->my_gen = my_gen;
out:
	free(raw);
	return rc;
}
