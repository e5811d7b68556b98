/* Crash test of the journal on the fault wrapper: a metadata workload (every
 * transaction committed, written in place, applied) is cut by a simulated
 * power failure at a random I/O (random subset of unflushed writes kept,
 * sometimes one write torn).  After replay the sectors must equal exactly the
 * state after the last acknowledged commit, or after the one commit that was
 * in flight at the cut: every committed transaction fully applied, nothing of
 * an unacknowledged one visible except as a whole.  250 cut points. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmfs/journal.h"

#define JOFF   0x100000ull
#define JLEN   (161ull * 512)       /* 160 log blocks: wraps often */
#define DOFF   0x200000ull
#define NSEC   96
#define TXNS   30
#define RUNS   250              /* VMFS_CRASH_RUNS overrides (bench: more) */

static char path[128];

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Transaction t of workload @seed: its sectors (indexes) and contents. */
static size_t txn_make(uint64_t seed, int t, struct vmfs_jsector *s)
{
	uint64_t r = mix(seed * 1000003u + (uint64_t)t);
	size_t n = (t % 10 == 0) ? 70 : 1 + r % 6;

	for (size_t i = 0; i < n; i++) {
		unsigned idx = (unsigned)(mix(r + i) % NSEC);
		uint64_t v = mix(r ^ (i << 20));

		s[i].off = DOFF + (uint64_t)idx * 512;
		for (int b = 0; b < 512; b += 8) {
			uint64_t w = v + (uint64_t)b;

			memcpy(s[i].data + b, &w, 8);
		}
		memcpy(s[i].data, &t, sizeof(t));
	}
	return n;
}

/* Model: the sectors after transactions 1..k. */
static void model(uint64_t seed, int k, uint8_t *img, struct vmfs_jsector *s)
{
	memset(img, 0, NSEC * 512);
	for (int t = 1; t <= k; t++) {
		size_t n = txn_make(seed, t, s);

		for (size_t i = 0; i < n; i++)
			memcpy(img + (s[i].off - DOFF), s[i].data, 512);
	}
}

static int setup(void **st)
{
	int fd;

	(void)st;
	snprintf(path, sizeof(path), "%s/vmfs-jc-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 << 20), 0);
	close(fd);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	unlink(path);
	return 0;
}

/* One run.  Returns the number of I/Os the fault device saw. */
static uint64_t run(uint64_t seed, uint64_t cut_after, bool tear, bool lazy, int *committed, int *attempted)
{
	struct vmfs_bdev *bd;
	struct vmfs_journal *j;
	struct vmfs_jsector *s = calloc(70, sizeof(*s));
	char url[256];
	uint8_t *buf = aligned_alloc(4096, 4096);
	uint64_t ios;
	int r, fd;

	assert_non_null(s);
	assert_non_null(buf);
	/* fresh image, formatted journal */
	fd = open(path, O_RDWR | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 << 20), 0);
	close(fd);
	assert_int_equal(vmfs_bdev_open(path, 0, &bd), 0);
	assert_int_equal(vmfs_journal_format(bd, JOFF, JLEN), 0);
	vmfs_bdev_close(bd);

	snprintf(url, sizeof(url), "fault:%s?cut_after=%" PRIu64 "&seed=%" PRIu64 "&tear=%d",
		 path, cut_after, seed, tear ? 1 : 0);
	assert_int_equal(vmfs_bdev_open(url, 0, &bd), 0);
	*committed = *attempted = 0;
	r = vmfs_journal_open(bd, JOFF, JLEN, lazy ? VMFS_JOURNAL_LAZY : 0, &j, NULL);
	if (r == 0) {
		for (int t = 1; t <= TXNS; t++) {
			size_t n = txn_make(seed, t, s);

			*attempted = t;
			if (vmfs_journal_commit(j, s, n))
				break;
			*committed = t;
			r = 0;
			for (size_t i = 0; i < n && !r; i++) {
				memcpy(buf, s[i].data, 512);
				r = vmfs_bdev_write(bd, buf, 512, s[i].off);
			}
			if (r || vmfs_journal_applied(j))
				break;
			if (lazy && t % 7 == 0 && vmfs_journal_checkpoint(j))
				break;
		}
		vmfs_journal_close(j);
	}
	ios = vmfs_fault_io_count(bd);
	vmfs_fault_power_cut(bd, seed, tear);   /* no-op if already cut */
	vmfs_bdev_close(bd);
	free(s);
	free(buf);
	return ios;
}

static void test_crash_points(void **st)
{
	struct vmfs_jsector *s = calloc(70, sizeof(*s));
	uint8_t *img = malloc(NSEC * 512), *want = malloc(NSEC * 512), *want2 = malloc(NSEC * 512);
	uint64_t total, rng = 0x5eed;
	int committed, attempted, in_flight_applied = 0, torn_seen = 0, mid = 0, runs = RUNS;
	const char *env = getenv("VMFS_CRASH_RUNS");

	(void)st;
	if (env && atoi(env) > 0)
		runs = atoi(env);
	assert_non_null(s);
	assert_non_null(img);
	assert_non_null(want);
	assert_non_null(want2);
	/* calibrate: I/Os of a whole uncut run */
	total = run(1, 0, false, false, &committed, &attempted);
	assert_int_equal(committed, TXNS);
	assert_true(total > 100);
	for (int i = 0; i < runs; i++) {
		uint64_t seed = mix(rng += 77), cut = 1 + mix(seed) % (total + 10);
		bool tear = (seed >> 8) & 1, lazy = (seed >> 9) & 1;
		struct vmfs_bdev *bd;
		struct vmfs_journal_stats js;

		run(seed, cut, tear, lazy, &committed, &attempted);
		assert_int_equal(vmfs_bdev_open(path, 0, &bd), 0);
		assert_int_equal(vmfs_journal_replay(bd, JOFF, JLEN, &js), 0);
		torn_seen += js.torn;
		assert_int_equal(vmfs_bdev_read(bd, img, NSEC * 512, DOFF), 0);
		model(seed, committed, want, s);
		if (memcmp(img, want, NSEC * 512) != 0) {
			/* only acceptable: the in-flight commit landed whole */
			assert_true(attempted == committed + 1);
			model(seed, attempted, want2, s);
			if (memcmp(img, want2, NSEC * 512) != 0)
				fail_msg("run %d seed %" PRIu64 " cut %" PRIu64 " tear %d lazy %d: state is "
					 "neither txn %d nor %d", i, seed, cut, tear, lazy, committed, attempted);
			in_flight_applied++;
		}
		if (committed > 0 && committed < TXNS)
			mid++;
		/* a second replay changes nothing */
		assert_int_equal(vmfs_journal_replay(bd, JOFF, JLEN, &js), 0);
		assert_int_equal(js.txns, 0);
		vmfs_bdev_close(bd);
	}
	printf("journal crash: %d cut points (%d mid-workload, %d in-flight commits landed whole, "
	       "%d torn tails ignored), %" PRIu64 " I/Os per run\n",
	       runs, mid, in_flight_applied, torn_seen, total);
	assert_true(mid > runs / 2);
	free(s);
	free(img);
	free(want);
	free(want2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_crash_points, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
