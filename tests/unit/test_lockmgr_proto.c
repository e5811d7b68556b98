/* Unit tests of the cluster protocol: several "hosts" in one process, each with
 * its own open of one sparse file (OFD-lock ATS works between them), stacked
 * file -> guard -> fault wrapper -> heartbeat/locks.  io_timeout 60 ms, so
 * hb_interval 90 ms, hb_timeout 480 ms, fence at 420 ms. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmfs/lockmgr.h"

#define IO_TIMEOUT 60000ull
#define LOCK_OFF   0x1000000ull   /* an FD's lock record */

static char path[64];

struct host {
	struct vmfs_bdev *file, *guard, *top;
	struct vmfs_hb *hb;
	int events[8];
	uint64_t fenced_at, lost_at, rejoined_at;
};

#define EVN(h, e) __atomic_load_n(&(h).events[e], __ATOMIC_SEQ_CST)

static void on_event(void *arg, enum vmfs_hb_event ev, unsigned slot, uint64_t gen)
{
	struct host *h = arg;

	(void)slot;
	(void)gen;
	__atomic_add_fetch(&h->events[ev], 1, __ATOMIC_SEQ_CST);
	if (ev == VMFS_HB_EV_FENCED)
		__atomic_store_n(&h->fenced_at, vmfs_now_us(), __ATOMIC_SEQ_CST);
	if (ev == VMFS_HB_EV_LOST)
		__atomic_store_n(&h->lost_at, vmfs_now_us(), __ATOMIC_SEQ_CST);
	if (ev == VMFS_HB_EV_REJOINED)
		__atomic_store_n(&h->rejoined_at, vmfs_now_us(), __ATOMIC_SEQ_CST);
}

#define MAX_OPEN 8
static struct host *open_hosts[MAX_OPEN];

static void host_open(struct host *h, bool no_rejoin)
{
	struct vmfs_hb_opts o = { .io_timeout_us = IO_TIMEOUT, .quiet = true, .on_event = on_event,
				  .event_arg = h, .journal_off = 0x2000000, .journal_len = 0x100000,
				  .no_rejoin = no_rejoin };

	memset(h, 0, sizeof(*h));
	o.event_arg = h;
	assert_int_equal(vmfs_bdev_open(path, 0, &h->file), 0);
	assert_int_equal(vmfs_hb_create(NULL, &o, &h->hb), 0);
	assert_int_equal(vmfs_hb_guard_wrap(h->hb, h->file, &h->guard), 0);
	assert_int_equal(vmfs_fault_wrap(h->guard, &h->top), 0);
	assert_int_equal(vmfs_hb_set_bdev(h->hb, h->top), 0);
	for (int i = 0; i < MAX_OPEN; i++)
		if (!open_hosts[i]) {
			open_hosts[i] = h;
			break;
		}
}

static void host_join(struct host *h, bool no_rejoin)
{
	host_open(h, no_rejoin);
	assert_int_equal(vmfs_hb_join(h->hb), 0);
}

static void host_close(struct host *h)
{
	for (int i = 0; i < MAX_OPEN; i++)
		if (open_hosts[i] == h)
			open_hosts[i] = NULL;
	vmfs_fault_stall(h->top, 0);
	vmfs_hb_destroy(h->hb);
	vmfs_bdev_close(h->top);   /* closes the guard under it */
	vmfs_bdev_close(h->file);
}

static bool uuid_is_null_check(const uint8_t *u)
{
	static const uint8_t z[16];

	return memcmp(u, z, 16) == 0;
}

static void msleep(unsigned ms)
{
	usleep(ms * 1000u);
}

static int setup(void **st)
{
	struct vmfs_bdev_open_opts o = { .flags = VMFS_BDEV_CREATE, .create_size = 64 << 20 };
	struct vmfs_bdev *bd;
	uint8_t rec[512];
	int fd;

	(void)st;
	/* tmpfs if possible: heartbeats of 60 ms must not queue behind a busy disk */
	snprintf(path, sizeof(path), "%s/vmfs-lm-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(vmfs_bdev_open_opts(path, &o, &bd), 0);
	assert_int_equal(vmfs_hb_region_format(bd), 0);
	vmfs_lock_rec_format(VMFS_MAGIC_FD, LOCK_OFF, rec);
	assert_int_equal(vmfs_bdev_write(bd, rec, 512, LOCK_OFF), 0);
	vmfs_bdev_close(bd);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	/* hosts a failed assertion left running */
	for (int i = 0; i < MAX_OPEN; i++)
		if (open_hosts[i])
			host_close(open_hosts[i]);
	unlink(path);
	return 0;
}

static void read_slot(unsigned slot, struct vmfs_hb_slot *s)
{
	struct vmfs_bdev *bd;
	uint8_t b[512];

	assert_int_equal(vmfs_bdev_open(path, 0, &bd), 0);
	assert_int_equal(vmfs_bdev_read(bd, b, 512, vmfs_hb_slot_off(slot)), 0);
	assert_int_equal(vmfs_hb_slot_decode(b, vmfs_hb_slot_off(slot), s), 0);
	vmfs_bdev_close(bd);
}

static void test_join_leave(void **st)
{
	static struct host h[3];   /* static: survives a failed assert for teardown */
	struct vmfs_hb_slot s;
	uint8_t u[16];
	uint64_t t0, stamp;

	(void)st;
	for (int i = 0; i < 3; i++) {
		t0 = vmfs_now_us();
		host_join(&h[i], false);
		assert_true(vmfs_now_us() - t0 < 1000000);  /* join under a second (bench: ms) */
		assert_int_equal(vmfs_hb_slot(h[i].hb), i);
		assert_int_equal(vmfs_hb_gen(h[i].hb), 1);
		assert_true(vmfs_hb_io_allowed(h[i].hb));
	}
	read_slot(1, &s);
	vmfs_hb_uuid(h[1].hb, u);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_LIVE);
	assert_memory_equal(s.uuid, u, 16);
	assert_int_equal(s.seq, 1);
	assert_int_equal(s.journal_off, 0x2000000);
	assert_int_equal(s.journal_len, 0x100000);
	stamp = s.uptime;
	assert_int_equal(vmfs_hb_set_journal(h[1].hb, 0x2100000, 0x80000, 42), 0);
	read_slot(1, &s);
	assert_int_equal(s.journal_off, 0x2100000);
	assert_int_equal(s.journal_len, 0x80000);
	assert_int_equal(s.journal_block, 42);
	assert_true(s.uptime > stamp);
	msleep(200);
	read_slot(1, &s);
	assert_true(s.uptime > stamp);                /* renewed */
	assert_int_equal(s.seq, 1);
	{
		struct vmfs_hb_host l[8];
		int n = vmfs_hb_list(h[0].hb, l, 8);

		assert_int_equal(n, 3);
		assert_int_equal(l[0].state, VMFS_HOST_SELF);
		/* alive; "suspect" only if this machine is too loaded to renew in time */
		assert_true(l[1].state == VMFS_HOST_ALIVE || l[1].state == VMFS_HOST_SUSPECT);
		assert_int_equal(vmfs_hb_find(h[0].hb, u), 1);
	}
	assert_int_equal(vmfs_hb_leave(h[1].hb), 0);
	assert_false(vmfs_hb_io_allowed(h[1].hb));
	read_slot(1, &s);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_FREE);
	assert_int_equal(s.seq, 2);
	assert_true(uuid_is_null_check(s.uuid));
	/* rejoin takes the free slot as a new generation */
	assert_int_equal(vmfs_hb_join(h[1].hb), 0);
	assert_int_equal(vmfs_hb_slot(h[1].hb), 1);
	assert_int_equal(vmfs_hb_gen(h[1].hb), 3);
	for (int i = 0; i < 3; i++)
		host_close(&h[i]);
	for (int i = 0; i < 3; i++) {
		read_slot((unsigned)i, &s);
		assert_int_equal(s.magic, VMFS_HB_MAGIC_FREE);
	}
}

static void test_lock_uncontended(void **st)
{
	static struct host a;   /* static: survives a failed assert for teardown */
	struct vmfs_lock l;
	struct vmfs_lock_rec r;
	uint8_t u[16];

	(void)st;
	host_join(&a, false);
	vmfs_hb_uuid(a.hb, u);
	vmfs_lock_init(&l, a.hb, a.top, LOCK_OFF, VMFS_MAGIC_FD);
	assert_int_equal(vmfs_lock_release(&l), -ENOLCK);
	assert_int_equal(vmfs_lock_acquire(&l, VMFS_LM_EXCL, NULL), 0);
	assert_true(vmfs_lock_token_moved(&l));     /* first hold */
	assert_int_equal(vmfs_lock_read(a.top, LOCK_OFF, VMFS_MAGIC_FD, &r), 0);
	assert_int_equal(r.mode, VMFS_LM_EXCL);
	assert_int_equal(r.hb_pos, vmfs_hb_slot_off(0));
	assert_int_equal(r.hb_seq, vmfs_hb_gen(a.hb));
	assert_memory_equal(r.uuid, u, 16);
	assert_int_equal(r.token, l.token);
	assert_int_equal(vmfs_lock_acquire(&l, VMFS_LM_EXCL, NULL), 0);  /* already held */
	assert_int_equal(vmfs_lock_verify(&l), 0);
	assert_int_equal(vmfs_lock_release(&l), 0);
	assert_int_equal(vmfs_lock_read(a.top, LOCK_OFF, VMFS_MAGIC_FD, &r), 0);
	assert_int_equal(r.mode, VMFS_LM_FREE);
	assert_true(uuid_is_null_check(r.uuid));
	assert_int_equal(r.token, l.token);         /* release keeps the token */
	for (int i = 0; i < 100; i++) {
		uint64_t t = l.token;

		assert_int_equal(vmfs_lock_acquire(&l, VMFS_LM_EXCL, NULL), 0);
		assert_int_equal(l.token, t + 1);
		assert_false(vmfs_lock_token_moved(&l));  /* nobody else took it */
		assert_int_equal(vmfs_lock_release(&l), 0);
	}
	/* a record that is not a lock is refused */
	vmfs_lock_init(&l, a.hb, a.top, LOCK_OFF + 512, 0);
	assert_int_equal(vmfs_lock_acquire(&l, VMFS_LM_EXCL, NULL), -EUCLEAN);
	host_close(&a);
}

static void test_lock_contended(void **st)
{
	static struct host a, b;   /* static: survives a failed assert for teardown */
	struct vmfs_lock la, lb;
	struct vmfs_lock_conflict c;
	uint8_t ua[16];

	(void)st;
	host_join(&a, false);
	host_join(&b, false);
	vmfs_hb_uuid(a.hb, ua);
	vmfs_lock_init(&la, a.hb, a.top, LOCK_OFF, VMFS_MAGIC_FD);
	vmfs_lock_init(&lb, b.hb, b.top, LOCK_OFF, VMFS_MAGIC_FD);
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_EXCL, NULL), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(vmfs_lock_acquire(&lb, VMFS_LM_EXCL, &c), -EBUSY);
	assert_memory_equal(c.uuid, ua, 16);
	assert_int_equal(c.slot, vmfs_hb_slot(a.hb));
	assert_int_equal(vmfs_lock_acquire(&lb, VMFS_LM_RO, &c), -EBUSY);
	/* waiting helper: times out while A holds it */
	assert_int_equal(vmfs_lock_acquire_wait(&lb, VMFS_LM_EXCL, 30000, NULL, NULL, &c), -ETIMEDOUT);
	assert_int_equal(vmfs_lock_release(&la), 0);
	assert_int_equal(vmfs_lock_acquire(&lb, VMFS_LM_EXCL, &c), 0);
	assert_int_equal(vmfs_lock_release(&lb), 0);
	/* A re-takes it: the token moved (B held it in between) → re-read */
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_EXCL, NULL), 0);
	assert_true(vmfs_lock_token_moved(&la));
	assert_int_equal(vmfs_lock_release(&la), 0);

	/* shared read-only: both hold; upgrade refused while the other holds */
	struct vmfs_lock_rec r;

	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_RO, NULL), 0);
	assert_int_equal(vmfs_lock_acquire(&lb, VMFS_LM_RO, NULL), 0);
	assert_int_equal(vmfs_lock_read(a.top, LOCK_OFF, 0, &r), 0);
	assert_int_equal(r.mode, VMFS_LM_RO);
	assert_int_equal(r.num_holders, 2);
	assert_int_equal(vmfs_lock_acquire(&lb, VMFS_LM_RO, NULL), 0);  /* counted once per host */
	assert_int_equal(vmfs_lock_read(a.top, LOCK_OFF, 0, &r), 0);
	assert_int_equal(r.num_holders, 2);
	assert_int_equal(vmfs_lock_change_mode(&lb, VMFS_LM_EXCL, &c), -EBUSY);
	assert_memory_equal(c.uuid, ua, 16);
	assert_int_equal(vmfs_lock_verify(&lb), 0);                     /* still RO */
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_MW, &c), -EBUSY); /* other shared mode */
	assert_int_equal(vmfs_lock_verify(&la), 0);
	assert_int_equal(vmfs_lock_release(&la), 0);
	assert_int_equal(vmfs_lock_change_mode(&lb, VMFS_LM_EXCL, &c), 0);  /* upgrade */
	assert_int_equal(vmfs_lock_read(a.top, LOCK_OFF, 0, &r), 0);
	assert_int_equal(r.mode, VMFS_LM_EXCL);
	assert_int_equal(r.num_holders, 0);
	assert_int_equal(vmfs_lock_change_mode(&lb, VMFS_LM_MW, &c), 0);   /* downgrade */
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_MW, &c), 0);
	assert_int_equal(vmfs_lock_read(a.top, LOCK_OFF, 0, &r), 0);
	assert_int_equal(r.mode, VMFS_LM_MW);
	assert_int_equal(r.num_holders, 2);
	assert_int_equal(vmfs_lock_release(&lb), 0);
	assert_int_equal(vmfs_lock_release(&la), 0);
	assert_int_equal(vmfs_lock_read(a.top, LOCK_OFF, 0, &r), 0);
	assert_int_equal(r.mode, VMFS_LM_FREE);

	/* stale: the holder leaves without releasing; its generation is gone */
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_EXCL, NULL), 0);
	assert_int_equal(vmfs_hb_leave(a.hb), 0);
	assert_int_equal(vmfs_lock_acquire(&lb, VMFS_LM_EXCL, &c), 0);
	assert_int_equal(vmfs_lock_release(&la), -ENOLCK);
	assert_int_equal(vmfs_hb_join(a.hb), 0);
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_EXCL, &c), -EBUSY);
	assert_int_equal(vmfs_lock_release(&lb), 0);
	host_close(&a);
	host_close(&b);
}

static void test_handoff(void **st)
{
	static struct host a, b;   /* static: survives a failed assert for teardown */
	struct vmfs_lock la, lb;
	struct vmfs_lock_conflict c;
	struct vmfs_lock_rec r;
	uint8_t ub[16];

	(void)st;
	host_join(&a, false);
	host_join(&b, false);
	vmfs_hb_uuid(b.hb, ub);
	vmfs_lock_init(&la, a.hb, a.top, LOCK_OFF, VMFS_MAGIC_FD);
	vmfs_lock_init(&lb, b.hb, b.top, LOCK_OFF, VMFS_MAGIC_FD);
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_EXCL, NULL), 0);
	assert_int_equal(vmfs_lock_accept(&lb), -ENOLCK);
	uint64_t t0 = vmfs_now_us();
	assert_int_equal(vmfs_lock_handoff(&la, (unsigned)vmfs_hb_slot(b.hb)), 0);
	assert_int_equal(vmfs_lock_accept(&lb), 0);
	assert_true(vmfs_now_us() - t0 < 50000);    /* no timeout involved */
	assert_int_equal(vmfs_lock_read(a.top, LOCK_OFF, 0, &r), 0);
	assert_memory_equal(r.uuid, ub, 16);
	assert_int_equal(r.token, lb.token);
	assert_int_equal(vmfs_lock_release(&la), -ENOLCK);
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_EXCL, &c), -EBUSY);
	assert_int_equal(vmfs_lock_verify(&lb), 0);
	/* hand-off to a slot with nobody in it is refused */
	assert_int_equal(vmfs_lock_handoff(&lb, 100), -EHOSTDOWN);
	assert_int_equal(vmfs_lock_release(&lb), 0);
	host_close(&a);
	host_close(&b);
}

struct replay_ctx {
	int calls;
	unsigned slot;
	uint8_t uuid[16];
	uint64_t journal_off;
};

static int replay_cb(void *arg, const struct vmfs_hb_slot *dead)
{
	struct replay_ctx *rc = arg;

	rc->calls++;
	rc->slot = (unsigned)vmfs_hb_slot_of(dead->pos);
	memcpy(rc->uuid, dead->uuid, 16);
	rc->journal_off = dead->journal_off;
	return 0;
}

/* A's device stalls: A fences itself before B may break its lock; B reclaims A
 * (replay callback), takes the lock; A later finds its slot gone and rejoins. */
static void test_stall_fence_reclaim(void **st)
{
	static struct host a, b;   /* static: survives a failed assert for teardown */
	struct vmfs_lock la, lb;
	struct vmfs_lock_conflict c;
	struct replay_ctx rc = { 0 };
	struct vmfs_hb_slot s;
	uint8_t ua[16], data[512];
	uint64_t stall_at, took_at = 0, gen_a;
	int r, a_slot;

	(void)st;
	host_join(&a, false);
	host_join(&b, false);
	vmfs_hb_uuid(a.hb, ua);
	a_slot = vmfs_hb_slot(a.hb);
	gen_a = vmfs_hb_gen(a.hb);
	vmfs_lock_init(&la, a.hb, a.top, LOCK_OFF, VMFS_MAGIC_FD);
	vmfs_lock_init(&lb, b.hb, b.top, LOCK_OFF, VMFS_MAGIC_FD);
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_EXCL, NULL), 0);
	msleep(100);
	stall_at = vmfs_now_us();
	vmfs_fault_stall(a.top, 1500);
	/* B polls: busy while A may still be alive, then owner-dead. */
	for (;;) {
		memset(&c, 0, sizeof(c));
		r = vmfs_lock_acquire(&lb, VMFS_LM_EXCL, &c);
		if (r == -EOWNERDEAD)
			break;
		assert_int_equal(r, -EBUSY);
		assert_memory_equal(c.uuid, ua, 16);
		assert_true(vmfs_now_us() - stall_at < 2000000);
		msleep(10);
	}
	assert_int_equal(c.slot, a_slot);
	assert_int_equal(c.hb_gen, gen_a);
	/* the waiting helper without a replay callback hands recovery back at once */
	uint64_t t1 = vmfs_now_us();
	assert_int_equal(vmfs_lock_acquire_wait(&lb, VMFS_LM_EXCL, 5000000, NULL, NULL, &c), -EOWNERDEAD);
	assert_true(vmfs_now_us() - t1 < 100000);
	assert_int_equal(c.slot, a_slot);
	/* A must have fenced itself already (its deadline passed), and says so */
	assert_false(vmfs_hb_io_allowed(a.hb));
	assert_true(vmfs_hb_fence_deadline(a.hb) <= vmfs_now_us());
	for (int i = 0; i < 100 && !EVN(a, VMFS_HB_EV_FENCED); i++)
		msleep(5);
	assert_int_equal(EVN(a, VMFS_HB_EV_FENCED), 1);
	assert_int_equal(vmfs_hb_reclaim(b.hb, (unsigned)c.slot, replay_cb, &rc), 0);
	assert_int_equal(rc.calls, 1);
	assert_int_equal(rc.slot, a_slot);
	assert_memory_equal(rc.uuid, ua, 16);
	assert_int_equal(rc.journal_off, 0x2000000);
	read_slot((unsigned)a_slot, &s);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_FREE);
	assert_int_equal(s.seq, gen_a + 1);
	assert_int_equal(vmfs_lock_acquire(&lb, VMFS_LM_EXCL, &c), 0);
	took_at = vmfs_now_us();
	assert_true(vmfs_hb_fence_deadline(a.hb) < took_at);   /* fenced before B took it */
	/* A writes while stalled: the write reaches the guard after the stall and
	 * is refused there. */
	memset(data, 'A', sizeof(data));
	r = vmfs_bdev_write(a.top, data, 512, LOCK_OFF + 1024);
	if (r == 0)
		r = vmfs_bdev_flush(a.top);
	assert_int_equal(r, -EIO);
	/* the stall ends: A's renewal miscompares → lost, locks void, rejoin */
	vmfs_fault_stall(a.top, 0);
	for (int i = 0; i < 300 && !EVN(a, VMFS_HB_EV_REJOINED); i++)
		msleep(10);
	assert_int_equal(EVN(a, VMFS_HB_EV_LOST), 1);
	assert_int_equal(EVN(a, VMFS_HB_EV_REJOINED), 1);
	assert_true(vmfs_hb_io_allowed(a.hb));
	assert_true(vmfs_hb_gen(a.hb) > gen_a);
	assert_int_equal(vmfs_lock_release(&la), -ENOLCK);
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_EXCL, &c), -EBUSY);
	assert_int_equal(vmfs_lock_release(&lb), 0);
	host_close(&a);
	host_close(&b);
}

/* A short stall (shorter than the fence) changes nothing; a stall past the
 * fence with nobody reclaiming unfences on the next good renewal. */
static void test_fence_unfence(void **st)
{
	static struct host a;   /* static: survives a failed assert for teardown */
	struct vmfs_lock la;

	(void)st;
	host_join(&a, true);
	vmfs_lock_init(&la, a.hb, a.top, LOCK_OFF, VMFS_MAGIC_FD);
	assert_int_equal(vmfs_lock_acquire(&la, VMFS_LM_EXCL, NULL), 0);
	vmfs_fault_stall(a.top, 50);
	msleep(200);
	vmfs_fault_stall(a.top, 0);
	msleep(150);
	assert_int_equal(EVN(a, VMFS_HB_EV_FENCED), 0);
	vmfs_fault_stall(a.top, 800);
	msleep(700);
	assert_int_equal(EVN(a, VMFS_HB_EV_FENCED), 1);
	assert_false(vmfs_hb_io_allowed(a.hb));
	assert_int_equal(vmfs_lock_verify(&la), -EIO);
	vmfs_fault_stall(a.top, 0);
	for (int i = 0; i < 200 && !EVN(a, VMFS_HB_EV_UNFENCED); i++)
		msleep(10);
	assert_int_equal(EVN(a, VMFS_HB_EV_UNFENCED), 1);
	assert_int_equal(EVN(a, VMFS_HB_EV_LOST), 0);
	assert_true(vmfs_hb_io_allowed(a.hb));
	assert_int_equal(vmfs_lock_verify(&la), 0);
	assert_int_equal(vmfs_lock_release(&la), 0);
	host_close(&a);
}

/* A host that died long ago: a live slot nobody renews. */
static void fake_dead(unsigned slot, uint64_t gen)
{
	struct vmfs_hb_slot d = { .magic = VMFS_HB_MAGIC_LIVE, .pos = vmfs_hb_slot_off(slot), .seq = gen,
				  .uptime = 777, .journal_off = 0x3000000, .journal_len = 4096 };
	struct vmfs_bdev *bd;
	uint8_t b[512];

	memset(d.uuid, 0xDD, 16);
	vmfs_hb_slot_encode(&d, b);
	assert_int_equal(vmfs_bdev_open(path, 0, &bd), 0);
	assert_int_equal(vmfs_bdev_write(bd, b, 512, d.pos), 0);
	vmfs_bdev_close(bd);
}

static int slow_calls;

static int slow_replay(void *arg, const struct vmfs_hb_slot *dead)
{
	(void)arg;
	assert_int_equal(dead->journal_off, 0x3000000);
	__atomic_add_fetch(&slow_calls, 1, __ATOMIC_SEQ_CST);
	msleep(150);
	return 0;
}

struct rarg { struct host *h; int r; };

static void *reclaim_thread(void *p)
{
	struct rarg *a = p;

	a->r = vmfs_hb_reclaim(a->h->hb, 10, slow_replay, NULL);
	return NULL;
}

static int failing_replay(void *arg, const struct vmfs_hb_slot *dead)
{
	(void)arg;
	(void)dead;
	return -EIO;
}

/* Two hosts reclaim one dead host at once: one replays, the other waits for
 * the slot to turn free; a reclaimer whose replay fails keeps the claim until
 * it is gone itself, then another takes the replay over. */
static void test_reclaim_races(void **st)
{
	static struct host b, c;   /* static: survives a failed assert for teardown */
	struct rarg rb = { &b, 1 }, rc = { &c, 1 };
	struct vmfs_hb_host hh;
	struct vmfs_hb_slot s;
	pthread_t tb, tc;
	int r;

	(void)st;
	host_join(&b, false);
	host_join(&c, false);
	fake_dead(10, 5);
	uint64_t t0 = vmfs_now_us();
	/* just seen: counts as alive (-EBUSY); silent a while: -EAGAIN; then dead
	 * (the first two checks only while the clock allows them: sanitizers) */
	r = vmfs_hb_reclaim(b.hb, 10, slow_replay, NULL);
	if (vmfs_now_us() - t0 < 450000)
		assert_true(r == -EBUSY || r == -EAGAIN);
	msleep(150);
	r = vmfs_hb_reclaim(b.hb, 10, slow_replay, NULL);
	if (vmfs_now_us() - t0 < 450000)       /* never reclaimed before hb_timeout */
		assert_true(r == -EAGAIN || r == -EBUSY);
	assert_int_equal(vmfs_hb_peek(b.hb, 10, &hh), 0);
	if (vmfs_now_us() - t0 < 450000)
		assert_true(hh.state == VMFS_HOST_ALIVE || hh.state == VMFS_HOST_SUSPECT);
	if (slow_calls) {       /* (sanitizer-slow: already reclaimed) fake it again */
		fake_dead(10, 5);
		slow_calls = 0;
	}
	for (int i = 0; i < 300; i++) {        /* both reclaimers must see it dead */
		struct vmfs_hb_host hc;

		assert_int_equal(vmfs_hb_peek(b.hb, 10, &hh), 0);
		assert_int_equal(vmfs_hb_peek(c.hb, 10, &hc), 0);
		if (hh.state == VMFS_HOST_DEAD && hc.state == VMFS_HOST_DEAD)
			break;
		msleep(10);
	}
	assert_int_equal(hh.state, VMFS_HOST_DEAD);
	assert_true(hh.age_us >= 8 * IO_TIMEOUT);
	/* a live host is never reclaimed (-EAGAIN if its renewal is merely late) */
	r = vmfs_hb_reclaim(b.hb, (unsigned)vmfs_hb_slot(c.hb), NULL, NULL);
	assert_true(r == -EBUSY || r == -EAGAIN);
	pthread_create(&tb, NULL, reclaim_thread, &rb);
	pthread_create(&tc, NULL, reclaim_thread, &rc);
	pthread_join(tb, NULL);
	pthread_join(tc, NULL);
	assert_int_equal(rb.r, 0);
	assert_int_equal(rc.r, 0);
	assert_int_equal(slow_calls, 1);
	read_slot(10, &s);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_FREE);
	assert_int_equal(s.seq, 6);

	/* replay failure: the claim stays; others wait, then take over once the
	 * failed reclaimer is gone */
	fake_dead(10, 7);
	for (int i = 0; i < 300; i++) {
		struct vmfs_hb_host hc;

		assert_int_equal(vmfs_hb_peek(b.hb, 10, &hh), 0);
		assert_int_equal(vmfs_hb_peek(c.hb, 10, &hc), 0);   /* c watches it too */
		if (hh.state == VMFS_HOST_DEAD && hc.state == VMFS_HOST_DEAD)
			break;
		msleep(10);
	}
	assert_int_equal(vmfs_hb_reclaim(b.hb, 10, failing_replay, NULL), -EIO);
	read_slot(10, &s);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_LIVE);
	assert_int_equal(s.replay_hb_pos, vmfs_hb_slot_off((unsigned)vmfs_hb_slot(b.hb)));
	assert_int_equal(vmfs_hb_peek(c.hb, 10, &hh), 0);
	assert_int_equal(hh.state, VMFS_HOST_REPLAYING);
	assert_int_equal(vmfs_hb_reclaim(c.hb, 10, slow_replay, NULL), -ETIMEDOUT);
	assert_int_equal(vmfs_hb_leave(b.hb), 0);
	slow_calls = 0;
	assert_int_equal(vmfs_hb_reclaim(c.hb, 10, slow_replay, NULL), 0);
	assert_int_equal(slow_calls, 1);
	read_slot(10, &s);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_FREE);
	assert_int_equal(s.seq, 8);
	host_close(&b);
	host_close(&c);
}

/* A restarted host with the same UUID reclaims its old slot at once. */
static void test_reclaim_own(void **st)
{
	struct vmfs_hb_opts o = { .io_timeout_us = IO_TIMEOUT, .quiet = true };
	struct vmfs_bdev *bd;
	struct vmfs_hb *hb;
	struct vmfs_lock l;
	struct vmfs_hb_slot s;
	int r;

	(void)st;
	memset(o.uuid, 0xDD, 16);              /* same uuid as fake_dead() */
	fake_dead(10, 3);
	fake_dead(11, 1);
	{
		struct vmfs_hb_slot other = { .magic = VMFS_HB_MAGIC_LIVE, .pos = vmfs_hb_slot_off(12), .seq = 1 };
		uint8_t b[512];

		memset(other.uuid, 0xEE, 16);
		vmfs_hb_slot_encode(&other, b);
		assert_int_equal(vmfs_bdev_open(path, 0, &bd), 0);
		assert_int_equal(vmfs_bdev_write(bd, b, 512, other.pos), 0);
		vmfs_bdev_close(bd);
	}
	assert_int_equal(vmfs_bdev_open(path, 0, &bd), 0);
	assert_int_equal(vmfs_hb_create(bd, &o, &hb), 0);
	assert_int_equal(vmfs_hb_join(hb), 0);
	slow_calls = 0;
	r = vmfs_hb_reclaim_own(hb, slow_replay, NULL);
	assert_int_equal(r, 2);
	assert_int_equal(slow_calls, 2);
	read_slot(10, &s);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_FREE);
	read_slot(11, &s);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_FREE);
	read_slot(12, &s);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_LIVE);     /* someone else's: untouched */
	read_slot((unsigned)vmfs_hb_slot(hb), &s);
	assert_int_equal(s.magic, VMFS_HB_MAGIC_LIVE);
	/* no guard here: plain device; locks still work */
	vmfs_lock_init(&l, hb, bd, LOCK_OFF, VMFS_MAGIC_FD);
	assert_int_equal(vmfs_lock_acquire(&l, VMFS_LM_EXCL, NULL), 0);
	assert_int_equal(vmfs_lock_release(&l), 0);
	vmfs_hb_destroy(hb);
	vmfs_bdev_close(bd);
}

/* The guard on an extent: heartbeat region at a device offset; reads allowed
 * before the first join, nothing else; everything after; only the region
 * once the heartbeat is gone. */
static void test_guard_opts(void **st)
{
	struct vmfs_hb_opts o = { .io_timeout_us = IO_TIMEOUT, .quiet = true };
	struct vmfs_hb_guard_opts go = { .hb_region_off = 0x1000000, .reads_before_join = true };
	struct vmfs_bdev *bd, *g;
	struct vmfs_hb *hb;
	uint8_t b[512] = { 0 }, c[512];

	(void)st;
	assert_int_equal(vmfs_bdev_open(path, 0, &bd), 0);
	assert_int_equal(vmfs_hb_create(bd, &o, &hb), 0);
	{	/* an unformatted region is refused clearly */
		uint8_t *z = calloc(1, VMFS_HB_REGION_LEN);
		struct vmfs_bdev *bd2;

		assert_int_equal(vmfs_bdev_open(path, 0, &bd2), 0);
		assert_int_equal(vmfs_bdev_write(bd2, z, VMFS_HB_REGION_LEN, 0x400000), 0);
		assert_int_equal(vmfs_bdev_write(bd2, z, VMFS_HB_REGION_LEN, VMFS_HB_REGION_OFF), 0);
		assert_int_equal(vmfs_hb_join(hb), -EUCLEAN);
		assert_int_equal(vmfs_hb_region_format(bd2), 0);
		vmfs_bdev_close(bd2);
		free(z);
	}
	go.hb_region_off = 100;
	assert_int_equal(vmfs_hb_guard_wrap_opts(hb, bd, &go, &g), -EINVAL);
	go.hb_region_off = 0x1000000;
	assert_int_equal(vmfs_hb_guard_wrap_opts(hb, bd, &go, &g), 0);
	assert_string_equal(vmfs_bdev_get_info(g)->kind, "guard");
	assert_int_equal(vmfs_bdev_read(g, c, 512, 0x2000000), 0);
	assert_int_equal(vmfs_bdev_write(g, b, 512, 0x2000000), -EIO);
	assert_int_equal(vmfs_bdev_ats(g, 0x2000000, b, b, NULL), -EIO);
	assert_int_equal(vmfs_bdev_flush(g), -EIO);
	assert_int_equal(vmfs_bdev_write(g, b, 512, 0x1000000 + 0xFFE00), 0);   /* region */
	assert_int_equal(vmfs_bdev_write(g, b, 1024, 0x1000000 + 0xFFE00), -EIO); /* crosses its end */
	assert_int_equal(vmfs_hb_join(hb), 0);
	assert_int_equal(vmfs_bdev_write(g, b, 512, 0x2000000), 0);
	assert_int_equal(vmfs_bdev_flush(g), 0);
	assert_int_equal(vmfs_hb_leave(hb), 0);
	assert_int_equal(vmfs_bdev_read(g, c, 512, 0x2000000), -EIO);   /* joined once: no more */
	assert_int_equal(vmfs_bdev_read(g, c, 512, 0x1000000), 0);
	vmfs_bdev_close(g);
	vmfs_hb_destroy(hb);
	vmfs_bdev_close(bd);
}

static uint64_t replay_end;

static int slow_replay2(void *arg, const struct vmfs_hb_slot *dead)
{
	(void)arg;
	(void)dead;
	msleep(1200);           /* longer than one stalled request of A (900 ms) */
	__atomic_store_n(&replay_end, vmfs_now_us(), __ATOMIC_SEQ_CST);
	return 0;
}

struct rarg2 { struct host *h; unsigned slot; int r; };

static void *reclaim_thread2(void *p)
{
	struct rarg2 *a = p;

	a->r = vmfs_hb_reclaim(a->h->hb, a->slot, slow_replay2, NULL);
	return NULL;
}

/* A host that finds its slot taken while the reclaimer is still replaying its
 * journal rejoins only after the reclaimer freed the old slot. */
static void test_rejoin_waits_for_replay(void **st)
{
	static struct host a, b;   /* static: survives a failed assert for teardown */
	struct vmfs_hb_host hh;
	struct rarg2 ra;
	pthread_t t;
	int a_slot;

	(void)st;
	host_join(&a, false);
	host_join(&b, false);
	a_slot = vmfs_hb_slot(a.hb);
	vmfs_fault_stall(a.top, 900);
	for (int i = 0; i < 200; i++) {
		assert_int_equal(vmfs_hb_peek(b.hb, (unsigned)a_slot, &hh), 0);
		if (hh.state == VMFS_HOST_DEAD)
			break;
		msleep(10);
	}
	assert_int_equal(hh.state, VMFS_HOST_DEAD);
	ra = (struct rarg2){ &b, (unsigned)a_slot, 1 };
	pthread_create(&t, NULL, reclaim_thread2, &ra);
	for (int i = 0; i < 100; i++) {        /* B's claim is on disk */
		assert_int_equal(vmfs_hb_peek(b.hb, (unsigned)a_slot, &hh), 0);
		if (hh.state == VMFS_HOST_REPLAYING)
			break;
		msleep(5);
	}
	assert_int_equal(hh.state, VMFS_HOST_REPLAYING);
	vmfs_fault_stall(a.top, 0);            /* A comes back during the replay */
	pthread_join(t, NULL);
	assert_int_equal(ra.r, 0);
	for (int i = 0; i < 300 && !EVN(a, VMFS_HB_EV_REJOINED); i++)
		msleep(10);
	assert_int_equal(EVN(a, VMFS_HB_EV_LOST), 1);
	assert_int_equal(EVN(a, VMFS_HB_EV_REJOINED), 1);
	assert_true(__atomic_load_n(&a.lost_at, __ATOMIC_SEQ_CST) < __atomic_load_n(&replay_end, __ATOMIC_SEQ_CST));
	assert_true(__atomic_load_n(&a.rejoined_at, __ATOMIC_SEQ_CST) > __atomic_load_n(&replay_end, __ATOMIC_SEQ_CST));
	host_close(&a);
	host_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_join_leave, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_uncontended, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_contended, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handoff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stall_fence_reclaim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fence_unfence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_races, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_own, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guard_opts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejoin_waits_for_replay, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
