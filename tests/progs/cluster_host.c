/*
 * cluster_host: one "host" of the cluster protocol for the multi-process
 * system tests and bench/cluster.  The image is a plain (sparse) file used as
 * the LV: heartbeat region at 0x300000, one lock record at LOCK_OFF guarding
 * the data sector DATA_OFF, host journals from JOURNAL_BASE.
 *
 *   cluster_host format IMG
 *   cluster_host join   IMG [--hold-ms N]            join, print slot, leave
 *   cluster_host hold   IMG [--hold-ms N] [--journal I --commit]
 *                       take the lock (waiting, reclaiming dead holders),
 *                       optionally commit one journal transaction without
 *                       applying it, print "holding", hold, release
 *   cluster_host try    IMG                           one acquire attempt
 *   cluster_host worker IMG --run-ms N [--hold-ms N] [--stall-at-ms N --stall-ms N]
 *                       loop: acquire, write (token, host) to the data sector,
 *                       keep re-checking and rewriting it while holding; any
 *                       foreign content while we hold = VIOLATION (exit 3)
 *   cluster_host audit  IMG --run-ms N               watch the data sector with plain
 *                       reads; exit 3 if a token ever goes backwards
 *   cluster_host bench  IMG [--iters N]              lock latency
 *   cluster_host jbench IMG [--iters N]              journal transaction latency
 *
 * Common: --io-timeout-ms N (default 250), --journal I (journal index 0..7),
 * --no-guard (do not stack the fence guard: for proving the tests can fail),
 * --direct (open the image with O_DIRECT), --volume (IMG is a VMFS volume made
 * by mkvmfs: run on its LV; only join/hold/try make sense there).
 * Every event is one line "event k=v ..." on stdout, with t= monotonic us.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmfs/journal.h"
#include "vmfs/lockmgr.h"
#include "vmfs/volume.h"

#define LOCK_OFF      0x1000000ull
#define DATA_OFF      0x1000200ull
#define JTARGET_OFF   0x1000400ull     /* sector the held-lock journal txn names */
#define JOURNAL_BASE  0x2000000ull
#define JOURNAL_LEN   0x40000ull
#define BENCH_LOCKS   0x1100000ull     /* bench: 64 more lock records */
#define IMG_SIZE      (64ull << 20)

static struct {
	uint64_t io_timeout_us, hold_ms, run_ms, stall_at_ms, stall_ms, iters;
	int journal;
	bool commit, no_guard, direct, volume;
} opt = { .io_timeout_us = 250000, .hold_ms = 1000, .run_ms = 3000, .journal = -1, .iters = 2000 };

static struct vmfs_bdev *file_bd, *guard_bd, *top;
static struct vmfs_volume *vol;
static struct vmfs_hb *hb;
static uint8_t my_uuid[16];
static char my_uuid_s[36];

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...)
{
	va_list ap;

	printf("t=%" PRIu64 " ", vmfs_now_us());
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void on_event(void *arg, enum vmfs_hb_event ev, unsigned slot, uint64_t gen)
{
	static const char *n[] = { "?", "fenced", "unfenced", "lost", "rejoined" };

	(void)arg;
	emit("hb_event ev=%s slot=%u gen=%" PRIu64, n[ev <= 4 ? ev : 0], slot, gen);
}

static void msleep(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int open_host(const char *img, bool join)
{
	struct vmfs_hb_opts o = { .io_timeout_us = opt.io_timeout_us, .on_event = on_event };
	int r;

	if (opt.journal >= 0) {
		o.journal_off = JOURNAL_BASE + (uint64_t)opt.journal * JOURNAL_LEN;
		o.journal_len = JOURNAL_LEN;
	}
	if (opt.volume) {
		/* a real VMFS volume (mkvmfs): the protocol runs on its LV */
		struct vmfs_volume_opts vo = { .bdev_flags = opt.direct ? VMFS_BDEV_DIRECT : 0 };

		r = vmfs_volume_open(&img, 1, &vo, &vol);
		if (r)
			return r;
	} else {
		r = vmfs_bdev_open(img, opt.direct ? VMFS_BDEV_DIRECT : 0, &file_bd);
		if (r)
			return r;
	}
	if (vol) {
		/* the guard must not own the LV device: the volume does */
		r = vmfs_hb_create(NULL, &o, &hb);
		if (r)
			return r;
		r = vmfs_hb_guard_wrap(hb, vmfs_volume_bdev(vol), &guard_bd);
		if (!r)
			r = vmfs_fault_wrap(guard_bd, &top);
		if (!r)
			r = vmfs_hb_set_bdev(hb, top);
		goto joined;
	}
	r = vmfs_hb_create(NULL, &o, &hb);
	if (r)
		return r;
	if (opt.no_guard) {
		r = vmfs_fault_wrap(file_bd, &top);
		file_bd = NULL;
	} else {
		r = vmfs_hb_guard_wrap(hb, file_bd, &guard_bd);
		if (!r)
			r = vmfs_fault_wrap(guard_bd, &top);
	}
	if (r)
		return r;
	r = vmfs_hb_set_bdev(hb, top);
joined:
	if (r)
		return r;
	vmfs_hb_uuid(hb, my_uuid);
	vmfs_uuid_str(my_uuid, my_uuid_s);
	if (join) {
		uint64_t t0 = vmfs_now_us();

		r = vmfs_hb_join(hb);
		if (r)
			return r;
		emit("joined slot=%d gen=%" PRIu64 " uuid=%s join_us=%" PRIu64, vmfs_hb_slot(hb),
		     vmfs_hb_gen(hb), my_uuid_s, vmfs_now_us() - t0);
	}
	return 0;
}

static void close_host(void)
{
	vmfs_hb_destroy(hb);
	if (top)
		vmfs_bdev_close(top);
	if (file_bd)
		vmfs_bdev_close(file_bd);
	if (vol)
		vmfs_volume_close(vol);
}

static int cmd_format(const char *img)
{
	struct vmfs_bdev_open_opts o = { .flags = VMFS_BDEV_CREATE, .create_size = IMG_SIZE };
	struct vmfs_bdev *bd;
	uint8_t rec[512] __attribute__((aligned(512)));
	int r;

	r = vmfs_bdev_open_opts(img, &o, &bd);
	if (r)
		return r;
	r = vmfs_hb_region_format(bd);
	vmfs_lock_rec_format(VMFS_MAGIC_FD, LOCK_OFF, rec);
	if (!r)
		r = vmfs_bdev_write(bd, rec, 512, LOCK_OFF);
	for (unsigned i = 0; i < 64 && !r; i++) {
		vmfs_lock_rec_format(VMFS_MAGIC_FD, BENCH_LOCKS + i * 2048ull, rec);
		r = vmfs_bdev_write(bd, rec, 512, BENCH_LOCKS + i * 2048ull);
	}
	for (int i = 0; i < 8 && !r; i++)
		r = vmfs_journal_format(bd, JOURNAL_BASE + (uint64_t)i * JOURNAL_LEN, JOURNAL_LEN);
	if (!r)
		r = vmfs_bdev_flush(bd);
	vmfs_bdev_close(bd);
	return r;
}

/* Reclaim callback: replay the dead host's journal from its slot. */
static int replay_cb(void *arg, const struct vmfs_hb_slot *dead)
{
	struct vmfs_journal_stats st = { 0 };
	char u[36];
	int r = 0;

	(void)arg;
	vmfs_uuid_str(dead->uuid, u);
	if (dead->journal_len)
		r = vmfs_journal_replay(top, dead->journal_off, dead->journal_len, &st);
	emit("reclaim slot=%d dead=%s journal_off=%" PRIu64 " txns=%" PRIu64 " sectors=%" PRIu64 " r=%d",
	     vmfs_hb_slot_of(dead->pos), u, dead->journal_off, st.txns, st.sectors, r);
	return r;
}

static int acquire(struct vmfs_lock *l, uint64_t timeout_ms)
{
	struct vmfs_lock_conflict c;
	uint64_t t0 = vmfs_now_us();
	int r = vmfs_lock_acquire_wait(l, VMFS_LM_EXCL, timeout_ms * 1000, replay_cb, NULL, &c);

	if (r == 0)
		emit("acquired token=%" PRIu64 " moved=%d wait_us=%" PRIu64, l->token,
		     vmfs_lock_token_moved(l), vmfs_now_us() - t0);
	else
		emit("acquire_failed r=%d", r);
	return r;
}

struct rec { uint64_t token; uint8_t uuid[16]; uint64_t seq; };

static int write_data(uint64_t token, uint64_t seq)
{
	uint8_t b[512] __attribute__((aligned(512))) = { 0 };
	struct rec rc = { .token = token, .seq = seq };
	int r;

	memcpy(rc.uuid, my_uuid, 16);
	memcpy(b, &rc, sizeof(rc));
	r = vmfs_bdev_write(top, b, 512, DATA_OFF);
	if (!r)
		r = vmfs_bdev_flush(top);
	return r;
}

static int read_data(struct rec *rc)
{
	uint8_t b[512] __attribute__((aligned(512)));
	int r = vmfs_bdev_read(top, b, 512, DATA_OFF);

	if (!r)
		memcpy(rc, b, sizeof(*rc));
	return r;
}

static int cmd_hold(void)
{
	struct vmfs_lock l;
	struct vmfs_journal *j = NULL;
	int r;

	vmfs_lock_init(&l, hb, top, LOCK_OFF, VMFS_MAGIC_FD);
	r = acquire(&l, 60000);
	if (r)
		return r;
	if (opt.commit && opt.journal >= 0) {
		struct vmfs_jsector s = { .off = JTARGET_OFF };

		r = vmfs_journal_open(top, JOURNAL_BASE + (uint64_t)opt.journal * JOURNAL_LEN, JOURNAL_LEN,
				      0, &j, NULL);
		if (r)
			return r;
		snprintf((char *)s.data, sizeof(s.data), "journaled by %s token %" PRIu64, my_uuid_s, l.token);
		r = vmfs_journal_commit(j, &s, 1);   /* durable, not applied in place */
		if (r)
			return r;
		emit("committed seq=%" PRIu64, vmfs_journal_seq(j));
	}
	r = write_data(l.token, 0);
	emit("holding token=%" PRIu64 " write=%d", l.token, r);
	msleep(opt.hold_ms);
	r = vmfs_lock_release(&l);
	emit("released r=%d", r);
	if (j)
		vmfs_journal_abandon(j);
	return 0;
}

static int cmd_try(void)
{
	struct vmfs_lock l;
	struct vmfs_lock_conflict c;
	char u[36];
	int r;

	vmfs_lock_init(&l, hb, top, LOCK_OFF, VMFS_MAGIC_FD);
	memset(&c, 0, sizeof(c));
	r = vmfs_lock_acquire(&l, VMFS_LM_EXCL, &c);
	vmfs_uuid_str(c.uuid, u);
	emit("try r=%d owner=%s owner_slot=%d", r, u, c.slot);
	if (r == 0)
		vmfs_lock_release(&l);
	return 0;
}

static int cmd_worker(void)
{
	uint64_t start = vmfs_now_us(), end = start + opt.run_ms * 1000, seq = 0;
	uint64_t acquisitions = 0, eio = 0;
	bool stalled = false;
	struct vmfs_lock l;
	int r;

	vmfs_lock_init(&l, hb, top, LOCK_OFF, VMFS_MAGIC_FD);
	while (vmfs_now_us() < end) {
		uint64_t hold_end;

		r = vmfs_lock_acquire_wait(&l, VMFS_LM_EXCL, end - vmfs_now_us() < 1000 ? 1 : (end - vmfs_now_us()),
					   replay_cb, NULL, NULL);
		if (r == -ETIMEDOUT)
			break;
		if (r) {
			emit("acquire_failed r=%d", r);
			msleep(opt.io_timeout_us / 1000);
			continue;
		}
		acquisitions++;
		emit("acquired token=%" PRIu64 " moved=%d", l.token, vmfs_lock_token_moved(&l));
		hold_end = vmfs_now_us() + opt.hold_ms * 1000;
		while (vmfs_now_us() < hold_end) {
			struct rec rc;

			if (opt.stall_ms && !stalled && vmfs_now_us() - start >= opt.stall_at_ms * 1000) {
				stalled = true;
				emit("stall ms=%" PRIu64, opt.stall_ms);
				vmfs_fault_stall(top, (unsigned)opt.stall_ms);
			}
			r = write_data(l.token, ++seq);
			if (r) {
				eio++;
				emit("write_failed r=%d token=%" PRIu64, r, l.token);
				break;
			}
			r = read_data(&rc);
			if (r) {
				eio++;
				break;
			}
			if (rc.token != l.token || memcmp(rc.uuid, my_uuid, 16) || rc.seq != seq) {
				char u[36];

				vmfs_uuid_str(rc.uuid, u);
				emit("VIOLATION held=%" PRIu64 " found_token=%" PRIu64 " found_host=%s",
				     l.token, rc.token, u);
				return 3;
			}
			msleep(5);
		}
		if (stalled && opt.stall_ms)
			vmfs_fault_stall(top, 0);
		r = vmfs_lock_release(&l);
		emit("released r=%d", r);
		msleep(2);
	}
	emit("done acquisitions=%" PRIu64 " eio=%" PRIu64, acquisitions, eio);
	return 0;
}

/* Watch the data sector from outside the protocol (plain reads of the file)
 * and check the tokens written there never go backwards: a write of a host
 * whose lock was broken that lands late would show as an older token after a
 * newer one. */
static int cmd_audit(const char *img)
{
	uint64_t end = vmfs_now_us() + opt.run_ms * 1000, changes = 0, max_token = 0;
	struct rec last = { 0 };
	struct vmfs_bdev *bd;
	int r, regressions = 0;

	r = vmfs_bdev_open(img, VMFS_BDEV_RDONLY, &bd);
	if (r)
		return r;
	top = bd;
	while (vmfs_now_us() < end) {
		struct rec rc;

		r = read_data(&rc);
		if (r)
			break;
		if (memcmp(&rc, &last, sizeof(rc))) {
			char u[36];

			changes++;
			vmfs_uuid_str(rc.uuid, u);
			if (rc.token < max_token) {
				regressions++;
				emit("REGRESSION token=%" PRIu64 " after=%" PRIu64 " host=%s seq=%" PRIu64,
				     rc.token, max_token, u, rc.seq);
			}
			if (rc.token > max_token) {
				max_token = rc.token;
				emit("audit_token token=%" PRIu64 " host=%s", rc.token, u);
			}
			last = rc;
		}
		usleep(100);
	}
	top = NULL;
	vmfs_bdev_close(bd);
	emit("audit changes=%" PRIu64 " max_token=%" PRIu64 " regressions=%d", changes, max_token, regressions);
	return r ? r : regressions ? 3 : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmd_bench(void)
{
	uint64_t *lat = calloc(opt.iters, sizeof(*lat));
	struct vmfs_lock l[64];
	int r = 0;

	if (!lat)
		return -ENOMEM;
	for (unsigned i = 0; i < 64; i++)
		vmfs_lock_init(&l[i], hb, top, BENCH_LOCKS + i * 2048ull, VMFS_MAGIC_FD);
	for (uint64_t i = 0; i < opt.iters && !r; i++) {
		uint64_t t0 = vmfs_now_us();

		r = vmfs_lock_acquire(&l[i % 64], VMFS_LM_EXCL, NULL);
		if (!r)
			r = vmfs_lock_release(&l[i % 64]);
		lat[i] = vmfs_now_us() - t0;
	}
	if (!r) {
		qsort(lat, opt.iters, sizeof(*lat), cmp_u64);
		emit("bench_lock iters=%" PRIu64 " p50_us=%" PRIu64 " p99_us=%" PRIu64 " max_us=%" PRIu64,
		     opt.iters, lat[opt.iters / 2], lat[opt.iters * 99 / 100], lat[opt.iters - 1]);
	}
	free(lat);
	return r;
}

/* Journal: commit + in-place write + applied of 4-sector transactions. */
static int cmd_jbench(bool lazy)
{
	uint64_t *lat = calloc(opt.iters, sizeof(*lat)), t0, t_all;
	struct vmfs_jsector s[4];
	struct vmfs_journal *j;
	int r;

	if (!lat)
		return -ENOMEM;
	r = vmfs_journal_open(top, JOURNAL_BASE, JOURNAL_LEN, lazy ? VMFS_JOURNAL_LAZY : 0, &j, NULL);
	if (r)
		goto out;
	t_all = vmfs_now_us();
	for (uint64_t i = 0; i < opt.iters && !r; i++) {
		for (int k = 0; k < 4; k++) {
			s[k].off = DATA_OFF + 0x10000 + (uint64_t)((i * 4 + (uint64_t)k) % 64) * 512;
			memset(s[k].data, (int)i, 512);
		}
		t0 = vmfs_now_us();
		r = vmfs_journal_write(j, s, 4);
		lat[i] = vmfs_now_us() - t0;
	}
	t_all = vmfs_now_us() - t_all;
	if (!r)
		r = vmfs_journal_checkpoint(j);
	vmfs_journal_close(j);
	if (!r) {
		qsort(lat, opt.iters, sizeof(*lat), cmp_u64);
		emit("bench_journal mode=%s iters=%" PRIu64 " p50_us=%" PRIu64 " p99_us=%" PRIu64
		     " txn_per_s=%" PRIu64, lazy ? "lazy" : "eager", opt.iters, lat[opt.iters / 2],
		     lat[opt.iters * 99 / 100], opt.iters * 1000000 / (t_all ? t_all : 1));
	}
out:
	free(lat);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "io-timeout-ms", required_argument, NULL, 'i' },
		{ "hold-ms", required_argument, NULL, 'h' },
		{ "run-ms", required_argument, NULL, 'r' },
		{ "stall-at-ms", required_argument, NULL, 'a' },
		{ "stall-ms", required_argument, NULL, 's' },
		{ "journal", required_argument, NULL, 'j' },
		{ "iters", required_argument, NULL, 'n' },
		{ "commit", no_argument, NULL, 'c' },
		{ "no-guard", no_argument, NULL, 'g' },
		{ "direct", no_argument, NULL, 'd' },
		{ "volume", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd, *img;
	int c, r;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'i': opt.io_timeout_us = strtoull(optarg, NULL, 0) * 1000; break;
		case 'h': opt.hold_ms = strtoull(optarg, NULL, 0); break;
		case 'r': opt.run_ms = strtoull(optarg, NULL, 0); break;
		case 'a': opt.stall_at_ms = strtoull(optarg, NULL, 0); break;
		case 's': opt.stall_ms = strtoull(optarg, NULL, 0); break;
		case 'j': opt.journal = atoi(optarg); break;
		case 'n': opt.iters = strtoull(optarg, NULL, 0); break;
		case 'c': opt.commit = true; break;
		case 'g': opt.no_guard = true; break;
		case 'd': opt.direct = true; break;
		case 'v': opt.volume = true; break;
		default: return 2;
		}
	}
	if (argc - optind != 2 || opt.iters == 0 || opt.journal > 7) {
		fprintf(stderr, "usage: %s format|join|hold|try|worker|bench IMG [options]\n", argv[0]);
		return 2;
	}
	cmd = argv[optind];
	img = argv[optind + 1];
	if (!strcmp(cmd, "format")) {
		r = cmd_format(img);
		goto out;
	}
	if (!strcmp(cmd, "audit")) {
		r = cmd_audit(img);
		if (r == 3)
			return 3;
		goto out;
	}
	r = open_host(img, true);
	if (r)
		goto out_close;
	if (!strcmp(cmd, "join"))
		msleep(opt.hold_ms);
	else if (!strcmp(cmd, "hold"))
		r = cmd_hold();
	else if (!strcmp(cmd, "try"))
		r = cmd_try();
	else if (!strcmp(cmd, "worker"))
		r = cmd_worker();
	else if (!strcmp(cmd, "bench"))
		r = cmd_bench();
	else if (!strcmp(cmd, "jbench"))
		r = cmd_jbench(false) ?: cmd_jbench(true);
	else
		r = -EINVAL;
	if (r == 3) {
		fflush(stdout);
		_exit(3);
	}
	emit("leaving");
out_close:
	close_host();
out:
	if (r)
		fprintf(stderr, "cluster_host %s: %s\n", cmd, strerror(r < 0 ? -r : r));
	return r ? 1 : 0;
}
