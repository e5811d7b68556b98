/*
 * Heartbeat region and lock records (FORMAT.md §9).  A slot marked live is
 * watched for a short while: a host that lives renews its stamp every
 * hb_interval (3 s by default), so a stamp that does not move over the
 * observation window (2 x hb_interval) belongs to a dead host.  Before -y
 * frees such a slot, the stamp must have stood still for the whole dead-host
 * timeout (hb_timeout, 16 s by default): a host that is only stalled fences
 * itself within that time, so none of its writes can land after we free it.
 * Locks naming a free slot, a dead host or an older generation of the slot
 * are stale.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmfs/journal.h"
#include "vmfsck.h"

static int read_region(struct ck *c, uint8_t *buf)
{
	return vmfs_bdev_read(c->lv, buf, VMFS_HB_REGION_LEN, VMFS_HB_REGION_OFF);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Read the region, watch live slots; fills c->hb*.  \return number of live hosts. */
int hb_observe(struct ck *c)
{
	uint8_t *a = malloc(VMFS_HB_REGION_LEN), *b = malloc(VMFS_HB_REGION_LEN);
	unsigned nlive = 0, nalive = 0;
	int e;

	if (!a || !b) {
		e = -ENOMEM;
		goto out;
	}
	e = read_region(c, a);
	if (e) {
		fprintf(stderr, "vmfsck: cannot read the heartbeat region: %s\n", strerror(-e));
		goto out;
	}
	for (unsigned s = 0; s < VMFS_HB_NSLOTS; s++) {
		c->hb_ok[s] = vmfs_hb_slot_decode(a + (size_t)s * 512, vmfs_hb_slot_off(s), &c->hb[s]) == 0;
		c->hb_dead[s] = c->hb_alive[s] = false;
		if (c->hb_ok[s] && c->hb[s].magic == VMFS_HB_MAGIC_LIVE)
			nlive++;
	}
	if (nlive) {
		if (c->verbose)
			printf("watching %u live heartbeat slot%s for %u ms\n", nlive, nlive > 1 ? "s" : "",
			       c->hb_wait_ms);
		sleep_ms(c->hb_wait_ms);
		e = read_region(c, b);
		if (e) {
			fprintf(stderr, "vmfsck: cannot read the heartbeat region: %s\n", strerror(-e));
			goto out;
		}
	}
	for (unsigned s = 0; s < VMFS_HB_NSLOTS && nlive; s++) {
		struct vmfs_hb_slot n;
		char u[36];
		if (!c->hb_ok[s] || c->hb[s].magic != VMFS_HB_MAGIC_LIVE)
			continue;
		if (memcmp(a + (size_t)s * 512, b + (size_t)s * 512, 512)) {
			/* changed: renewed, left, or taken over; the newest content counts */
			if (vmfs_hb_slot_decode(b + (size_t)s * 512, vmfs_hb_slot_off(s), &n) == 0) {
				c->hb[s] = n;
				if (n.magic == VMFS_HB_MAGIC_LIVE) {
					c->hb_alive[s] = true;
					nalive++;
				}
			}
		} else {
			c->hb_dead[s] = true;
		}
		vmfs_uuid_str(c->hb[s].uuid, u);
		if (c->verbose && c->hb_alive[s])
			printf("heartbeat slot %u: live host %s, generation %llu, stamp %llu%s%s\n", s, u,
			       (unsigned long long)c->hb[s].seq, (unsigned long long)c->hb[s].uptime,
			       c->hb[s].ip[0] ? ", address " : "", c->hb[s].ip);
	}
	e = (int)nalive;
out:
	free(c->hb_raw);
	c->hb_raw = nlive ? b : a;  /* the newest view */
	if (nlive)
		free(a);
	else
		free(b);
	return e;
}

/* -y: keep watching the silent slots until they have been still for hb_timeout.
 * \return 0, or -EBUSY when one of them moved (a live host after all). */
static int hb_confirm_dead(struct ck *c)
{
	uint8_t *now = NULL;
	unsigned ndead = 0;
	int e = 0;

	for (unsigned s = 0; s < VMFS_HB_NSLOTS; s++)
		ndead += c->hb_dead[s];
	if (!ndead || c->hb_timeout_ms <= c->hb_wait_ms || !c->hb_raw)
		return 0;
	printf("waiting %u ms more: %u silent heartbeat slot%s must stay unchanged for the dead-host "
	       "timeout before %s freed\n", c->hb_timeout_ms - c->hb_wait_ms, ndead, ndead > 1 ? "s" : "",
	       ndead > 1 ? "they are" : "it is");
	sleep_ms(c->hb_timeout_ms - c->hb_wait_ms);
	now = malloc(VMFS_HB_REGION_LEN);
	if (!now)
		return -ENOMEM;
	e = read_region(c, now);
	if (e)
		goto out;
	for (unsigned s = 0; s < VMFS_HB_NSLOTS; s++) {
		if (!c->hb_dead[s] || !memcmp(now + (size_t)s * 512, c->hb_raw + (size_t)s * 512, 512))
			continue;
		c->hb_dead[s] = false;
		if (vmfs_hb_slot_decode(now + (size_t)s * 512, vmfs_hb_slot_off(s), &c->hb[s]) == 0 &&
		    c->hb[s].magic == VMFS_HB_MAGIC_LIVE) {
			c->hb_alive[s] = true;
			if (!c->force) {
				char u[36];
				vmfs_uuid_str(c->hb[s].uuid, u);
				fprintf(stderr, "vmfsck: host %s in heartbeat slot %u renewed after a silence: it "
					"is live; not repairing while it is (use --force to override)\n", u, s);
				e = -EBUSY;
			}
		}
	}
	memcpy(c->hb_raw, now, VMFS_HB_REGION_LEN);
out:
	free(now);
	return e;
}

/* Report bad and stale slots; with -y free them (replaying a dead host's journal first). */
int hb_repair(struct ck *c)
{
	uint8_t *region = malloc(VMFS_HB_REGION_LEN);
	int e;

	if (!region)
		return -ENOMEM;
	if (c->mode == MODE_YES) {
		e = hb_confirm_dead(c);
		if (e)
			goto out;
	}
	e = read_region(c, region);
	if (e)
		goto out;
	for (unsigned s = 0; s < VMFS_HB_NSLOTS; s++) {
		uint8_t *cur = region + (size_t)s * 512, nb[512];
		struct vmfs_hb_slot n;
		char u[36];
		if (!c->hb_ok[s]) {
			problem(c, "heartbeat slot %u: bad magic 0x%08x or position 0x%llx", s, le32(cur),
				(unsigned long long)le64(cur + 4));
			if (c->mode != MODE_YES)
				continue;
			vmfs_hb_slot_format(s, nb);
		} else if (c->hb_dead[s]) {
			vmfs_uuid_str(c->hb[s].uuid, u);
			char jr[80] = "";
			if (c->hb[s].journal_off && c->hb[s].journal_len)
				snprintf(jr, sizeof(jr), " (its journal at LV 0x%llx is replayed before the slot is "
					 "freed)", (unsigned long long)c->hb[s].journal_off);
			problem(c, "heartbeat slot %u: host %s (generation %llu) is marked live but its stamp "
				"%llu did not change in %u ms: stale%s", s, u, (unsigned long long)c->hb[s].seq,
				(unsigned long long)c->hb[s].uptime, c->hb_wait_ms, jr);
			if (c->mode != MODE_YES)
				continue;
			if (c->hb[s].journal_off && c->hb[s].journal_len) {
				struct vmfs_journal_stats st;
				int r = vmfs_journal_replay(c->lv, c->hb[s].journal_off, c->hb[s].journal_len, &st);
				if (r == 0 && st.txns)
					printf("replayed %llu transaction%s from the journal of host %s\n",
					       (unsigned long long)st.txns, st.txns > 1 ? "s" : "", u);
				else if (r && r != -ENODATA) {
					unfixable(c, "heartbeat slot %u: cannot replay its journal at 0x%llx: %s; slot "
						  "kept", s, (unsigned long long)c->hb[s].journal_off, strerror(-r));
					continue;
				}
			}
			memset(&n, 0, sizeof(n));
			n.magic = VMFS_HB_MAGIC_FREE;
			n.pos = vmfs_hb_slot_off(s);
			n.seq = c->hb[s].seq + 1;
			n.uptime = c->hb[s].uptime;
			vmfs_hb_slot_encode(&n, nb);
		} else {
			continue;
		}
		/* atomically from the bytes we judged by: a host that just came back wins */
		int r = vmfs_bdev_ats(c->lv, vmfs_hb_slot_off(s), cur, nb, NULL);
		if (r == -EOPNOTSUPP)
			r = vmfs_bdev_write(c->lv, nb, 512, vmfs_hb_slot_off(s));
		if (r) {
			unfixable(c, "heartbeat slot %u: not freed: %s", s,
				  r == -ESTALE ? "it changed meanwhile" : strerror(-r));
			continue;
		}
		printf("FIXED: freed heartbeat slot %u\n", s);
		c->fixes++;
		c->hb_dead[s] = false;
		c->hb_ok[s] = true;
		vmfs_hb_slot_decode(nb, vmfs_hb_slot_off(s), &c->hb[s]);
	}
	e = vmfs_bdev_flush(c->lv);
out:
	free(region);
	return e;
}

/* Is the holder (slot offset, generation) gone? */
static const char *holder_stale(struct ck *c, uint64_t hb_pos, uint64_t gen)
{
	int s = vmfs_hb_slot_of(hb_pos);

	if (s < 0)
		return "names no heartbeat slot";
	if (!c->hb_ok[s])
		return "names a corrupt heartbeat slot";
	if (c->hb[s].magic == VMFS_HB_MAGIC_FREE)
		return "names a free heartbeat slot";
	if (c->hb[s].seq != gen)
		return "names an older generation of its heartbeat slot";
	if (c->hb_dead[s])
		return "is held by a dead host";
	return NULL;
}

void check_lock(struct ck *c, const uint8_t rec[512], uint64_t lv, uint32_t magic, const char *what)
{
	struct vmfs_lock_rec r;
	uint8_t nb[512];
	const char *why = NULL;
	struct fix *f;

	if (vmfs_lock_rec_decode(rec, lv, magic, &r)) {
		problem(c, "%s: corrupt lock record (mode %u, %u holders)", what, le32(rec + 0x24),
			le32(rec + 0x40));
		memcpy(nb, rec, 512);
		memset(&r, 0, sizeof(r));
		r.magic = magic;
		r.pos = lv;
		r.token = le64(rec + 0x1C) + 1;
		vmfs_lock_rec_encode(&r, nb);
		goto fix;
	}
	if (r.mode == VMFS_LM_FREE)
		return;
	if (r.mode == VMFS_LM_EXCL) {
		why = holder_stale(c, r.hb_pos, r.hb_seq);
		if (!why)
			return;
		/* A record naming a free slot or an older generation of its slot is
		 * what a reclaim leaves behind: by the protocol it is free (the next
		 * acquirer takes it over), so it is not damage. */
		if (vmfs_hb_slot_of(r.hb_pos) >= 0 && c->hb_ok[vmfs_hb_slot_of(r.hb_pos)] &&
		    (c->hb[vmfs_hb_slot_of(r.hb_pos)].magic == VMFS_HB_MAGIC_FREE ||
		     c->hb[vmfs_hb_slot_of(r.hb_pos)].seq != r.hb_seq)) {
			if (c->verbose)
				printf("%s: lock of slot %d %s: free by the protocol\n", what,
				       vmfs_hb_slot_of(r.hb_pos), why);
			return;
		}
		problem(c, "%s: exclusive lock of slot %d %s (stale)", what, vmfs_hb_slot_of(r.hb_pos), why);
		r.mode = VMFS_LM_FREE;
		r.hb_pos = r.hb_seq = 0;
		memset(r.uuid, 0, 16);
	} else {
		unsigned keep = 0;
		for (unsigned i = 0; i < r.num_holders; i++) {
			const char *w = holder_stale(c, r.holders[i].hb_pos, r.holders[i].hb_gen);
			if (w) {
				why = w;
				continue;
			}
			r.holders[keep++] = r.holders[i];
		}
		if (!why)
			return;
		problem(c, "%s: %u of the %u shared holders are stale (one %s)", what, r.num_holders - keep,
			r.num_holders, why);
		for (unsigned i = keep; i < VMFS_LOCK_MAX_HOLDERS; i++)
			memset(&r.holders[i], 0, sizeof(r.holders[i]));
		r.num_holders = keep;
		if (!keep)
			r.mode = VMFS_LM_FREE;
	}
	memcpy(nb, rec, 512);
	vmfs_lock_rec_encode(&r, nb);
fix:
	f = add_fix(c, FIX_LOCK, "released the stale lock of %s", what);
	if (f) {
		f->lv = lv;
		memcpy(f->sec, nb, 512);
	}
}
