/* Unit tests of the redo journal: CRC32C, commit/replay, wrap-around,
 * multi-descriptor transactions, torn commits, hostile headers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmfs/journal.h"

#define JOFF  0x100000ull
#define DOFF  0x200000ull

static char path[64];
static struct vmfs_bdev *bd;

static int setup(void **st)
{
	struct vmfs_bdev_open_opts o = { .flags = VMFS_BDEV_CREATE, .create_size = 4 << 20 };
	int fd;

	(void)st;
	strcpy(path, "/tmp/vmfs-jt-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(vmfs_bdev_open_opts(path, &o, &bd), 0);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	vmfs_bdev_close(bd);
	unlink(path);
	return 0;
}

static void fill(struct vmfs_jsector *s, uint64_t off, int v)
{
	s->off = off;
	memset(s->data, v, 512);
	memcpy(s->data, &off, 8);
}

static void expect_sector(uint64_t off, int v)
{
	uint8_t b[512], e[512];

	memset(e, v, 512);
	memcpy(e, &off, 8);
	assert_int_equal(vmfs_bdev_read(bd, b, 512, off), 0);
	assert_memory_equal(b, e, 512);
}

static void expect_zero(uint64_t off)
{
	uint8_t b[512], z[512] = { 0 };

	assert_int_equal(vmfs_bdev_read(bd, b, 512, off), 0);
	assert_memory_equal(b, z, 512);
}

static void test_crc32c(void **st)
{
	uint8_t buf[1000];

	(void)st;
	assert_int_equal(vmfs_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(vmfs_crc32c(0, "", 0), 0);
	for (int i = 0; i < 1000; i++)
		buf[i] = (uint8_t)(i * 7);
	/* incremental = one shot, any split and alignment */
	uint32_t whole = vmfs_crc32c(0, buf, 1000);

	for (int s = 0; s < 20; s++)
		assert_int_equal(vmfs_crc32c(vmfs_crc32c(0, buf, (size_t)s * 37), buf + s * 37, 1000 - (size_t)s * 37),
				 whole);
	assert_int_equal(vmfs_crc32c(0, buf + 1, 999), vmfs_crc32c(vmfs_crc32c(0, buf + 1, 3), buf + 4, 996));
}

static void test_not_formatted(void **st)
{
	struct vmfs_journal *j;

	(void)st;
	assert_int_equal(vmfs_journal_open(bd, JOFF, 64 * 512, 0, &j, NULL), -ENODATA);
	assert_int_equal(vmfs_journal_format(bd, JOFF, 64 * 512), 0);
	/* wrong length or base: refused */
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 32 * 512, NULL), -EUCLEAN);
	assert_int_equal(vmfs_journal_format(bd, JOFF + 100, 64 * 512), -EINVAL);
	assert_int_equal(vmfs_journal_format(bd, JOFF, 4 * 512), -EINVAL);
	/* a flipped header byte is caught by the CRC */
	uint8_t b[512];

	assert_int_equal(vmfs_bdev_read(bd, b, 512, JOFF), 0);
	b[0x28] ^= 0x40;
	assert_int_equal(vmfs_bdev_write(bd, b, 512, JOFF), 0);
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 64 * 512, NULL), -EUCLEAN);
}

/* Commit without applying (a crash right after the commit): replay applies. */
static void test_commit_replay(void **st)
{
	struct vmfs_journal *j;
	struct vmfs_journal_stats s;
	struct vmfs_jsector t[3];

	(void)st;
	assert_int_equal(vmfs_journal_format(bd, JOFF, 64 * 512), 0);
	assert_int_equal(vmfs_journal_open(bd, JOFF, 64 * 512, 0, &j, &s), 0);
	assert_int_equal(s.txns, 0);
	fill(&t[0], DOFF, 1);
	fill(&t[1], DOFF + 512, 1);
	assert_int_equal(vmfs_journal_commit(j, t, 2), 0);
	fill(&t[0], DOFF, 2);                /* second txn rewrites sector 0 */
	fill(&t[1], DOFF + 4096, 2);
	fill(&t[2], DOFF + 4096, 3);         /* same offset twice: the later wins */
	assert_int_equal(vmfs_journal_commit(j, t, 3), 0);
	assert_int_equal(vmfs_journal_seq(j), 2);
	/* sectors inside the journal or unaligned are refused */
	fill(&t[0], JOFF + 512, 9);
	assert_int_equal(vmfs_journal_commit(j, t, 1), -EINVAL);
	fill(&t[0], DOFF + 1, 9);
	assert_int_equal(vmfs_journal_commit(j, t, 1), -EINVAL);
	expect_zero(DOFF);
	vmfs_journal_close(j);          /* not applied: no checkpoint */
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 64 * 512, &s), 0);
	assert_int_equal(s.txns, 2);
	assert_int_equal(s.sectors, 5);
	assert_int_equal(s.first_seq, 1);
	assert_int_equal(s.last_seq, 2);
	assert_false(s.torn);
	expect_sector(DOFF, 2);
	expect_sector(DOFF + 512, 1);
	expect_sector(DOFF + 4096, 3);
	/* never twice: a second replay does nothing, even over newer content */
	fill(&t[0], DOFF, 7);
	assert_int_equal(vmfs_bdev_write(bd, t[0].data, 512, DOFF), 0);
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 64 * 512, &s), 0);
	assert_int_equal(s.txns, 0);
	assert_int_equal(s.last_seq, 2);
	expect_sector(DOFF, 7);
	/* reopen continues the sequence */
	assert_int_equal(vmfs_journal_open(bd, JOFF, 64 * 512, 0, &j, &s), 0);
	fill(&t[0], DOFF, 8);
	assert_int_equal(vmfs_journal_write(j, t, 1), 0);
	assert_int_equal(vmfs_journal_seq(j), 3);
	vmfs_journal_close(j);
	expect_sector(DOFF, 8);
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 64 * 512, &s), 0);
	assert_int_equal(s.txns, 0);
}

/* A small log wraps many times; old transactions left in it never replay. */
static void test_wrap(void **st)
{
	struct vmfs_journal *j;
	struct vmfs_journal_stats s;
	struct vmfs_jsector t[5];
	const uint64_t len = 16 * 512;     /* 15 log blocks */

	(void)st;
	for (int lazy = 0; lazy < 2; lazy++) {
		assert_int_equal(vmfs_journal_format(bd, JOFF, len), 0);
		assert_int_equal(vmfs_journal_open(bd, JOFF, len, lazy ? VMFS_JOURNAL_LAZY : 0, &j, NULL), 0);
		for (int i = 1; i <= 100; i++) {
			int n = 1 + i % 5;

			for (int k = 0; k < n; k++)
				fill(&t[k], DOFF + (uint64_t)((i + k) % 11) * 512, i);
			assert_int_equal(vmfs_journal_write(j, t, (size_t)n), 0);
		}
		/* one more, committed but not applied */
		fill(&t[0], DOFF + 20 * 512, 101);
		assert_int_equal(vmfs_journal_commit(j, t, 1), 0);
		/* log full with an unapplied transaction: -EAGAIN, not overwrite */
		for (int k = 0; k < 5; k++)
			fill(&t[k], DOFF + 30 * 512, 102);
		int r;
		do {
			r = vmfs_journal_commit(j, t, 5);
		} while (r == 0);
		assert_int_equal(r, -EAGAIN);
		vmfs_journal_abandon(j);   /* crash: no further I/O */
		assert_int_equal(vmfs_journal_replay(bd, JOFF, len, &s), 0);
		assert_false(s.torn);
		assert_true(s.txns >= 1);
		expect_sector(DOFF + 20 * 512, 101);
		expect_sector(DOFF + 30 * 512, 102);
		/* the final state of the 11 rotating sectors is that of txn 100 */
		for (int k = 0; k < 11; k++) {
			int last = 0;

			for (int i = 1; i <= 100; i++)
				for (int m = 0; m < 1 + i % 5; m++)
					if ((i + m) % 11 == k)
						last = i;
			expect_sector(DOFF + (uint64_t)k * 512, last);
		}
	}
}

static void test_big_and_torn(void **st)
{
	struct vmfs_journal *j;
	struct vmfs_journal_stats s;
	struct vmfs_jsector *t = calloc(505, sizeof(*t));
	uint8_t b[512];

	(void)st;
	assert_non_null(t);
	assert_int_equal(vmfs_journal_format(bd, JOFF, 512 * 512), 0);
	assert_int_equal(vmfs_journal_open(bd, JOFF, 512 * 512, 0, &j, NULL), 0);
	for (int i = 0; i < 130; i++)           /* 3 descriptors */
		fill(&t[i], DOFF + (uint64_t)i * 512, 0x11);
	assert_int_equal(vmfs_journal_commit(j, t, 130), 0);
	assert_int_equal(vmfs_journal_txn_blocks(130), 3 + 130 + 1);
	for (int i = 0; i < 60; i++)
		fill(&t[i], DOFF + (uint64_t)i * 512, 0x22);
	assert_int_equal(vmfs_journal_commit(j, t, 60), 0);
	for (int i = 0; i < 200; i++)
		fill(&t[i], DOFF + (uint64_t)i * 512, 0x33);
	assert_int_equal(vmfs_journal_commit(j, t, 200), 0);
	assert_int_equal(vmfs_journal_commit(j, t, 505), -E2BIG);
	vmfs_journal_abandon(j);
	/* tear the second transaction: one data sector of it is lost */
	assert_int_equal(vmfs_bdev_read(bd, b, 512, JOFF + 512 + (134 + 2 + 5) * 512), 0);
	b[100] ^= 1;
	assert_int_equal(vmfs_bdev_write(bd, b, 512, JOFF + 512 + (134 + 2 + 5) * 512), 0);
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 512 * 512, &s), 0);
	assert_int_equal(s.txns, 1);
	assert_true(s.torn);
	assert_int_equal(s.sectors, 130);
	for (int i = 0; i < 130; i++)
		expect_sector(DOFF + (uint64_t)i * 512, 0x11);
	expect_zero(DOFF + 130 * 512);
	/* reopen: new transactions continue after the last good one */
	assert_int_equal(vmfs_journal_open(bd, JOFF, 512 * 512, 0, &j, &s), 0);
	assert_int_equal(vmfs_journal_seq(j), 1);
	fill(&t[0], DOFF, 0x44);
	assert_int_equal(vmfs_journal_commit(j, t, 1), 0);
	vmfs_journal_abandon(j);
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 512 * 512, &s), 0);
	assert_int_equal(s.txns, 1);
	assert_int_equal(s.first_seq, 2);
	expect_sector(DOFF, 0x44);
	expect_sector(DOFF + 512, 0x11);
	free(t);
}

/* A reformatted region: the old transactions carry another journal id. */
static void test_reformat_forgets(void **st)
{
	struct vmfs_journal *j;
	struct vmfs_journal_stats s;
	struct vmfs_jsector t;

	(void)st;
	assert_int_equal(vmfs_journal_format(bd, JOFF, 64 * 512), 0);
	assert_int_equal(vmfs_journal_open(bd, JOFF, 64 * 512, 0, &j, NULL), 0);
	fill(&t, DOFF, 5);
	assert_int_equal(vmfs_journal_commit(j, &t, 1), 0);
	vmfs_journal_abandon(j);
	assert_int_equal(vmfs_journal_format(bd, JOFF, 64 * 512), 0);
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 64 * 512, &s), 0);
	assert_int_equal(s.txns, 0);
	expect_zero(DOFF);
}

/* Garbage in the log is never replayed; a transaction with valid CRCs that
 * names a sector inside the journal itself is refused as corrupt. */
static void test_hostile_log(void **st)
{
	struct vmfs_journal *j;
	struct vmfs_journal_stats s;
	struct vmfs_jsector t;
	uint8_t b[3 * 512];
	uint64_t x = 99;

	(void)st;
	assert_int_equal(vmfs_journal_format(bd, JOFF, 64 * 512), 0);
	for (int blk = 1; blk < 64; blk++) {
		for (int k = 0; k < 512; k += 8) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			memcpy(b + k, &x, 8);
		}
		assert_int_equal(vmfs_bdev_write(bd, b, 512, JOFF + (uint64_t)blk * 512), 0);
	}
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 64 * 512, &s), 0);
	assert_int_equal(s.txns, 0);

	assert_int_equal(vmfs_journal_open(bd, JOFF, 64 * 512, 0, &j, NULL), 0);
	fill(&t, DOFF, 0x5A);
	assert_int_equal(vmfs_journal_commit(j, &t, 1), 0);
	vmfs_journal_abandon(j);
	/* descriptor | data | commit at log blocks 0..2: retarget the sector */
	assert_int_equal(vmfs_bdev_read(bd, b, sizeof(b), JOFF + 512), 0);
	uint64_t evil = JOFF + 512, crc;

	memcpy(b + 0x28, &evil, 8);
	crc = vmfs_crc32c(0, b, 2 * 512);
	memcpy(b + 2 * 512 + 0x20, &crc, 4);
	crc = vmfs_crc32c(0, b + 2 * 512, 0x28);
	memcpy(b + 2 * 512 + 0x28, &crc, 4);
	assert_int_equal(vmfs_bdev_write(bd, b, sizeof(b), JOFF + 512), 0);
	assert_int_equal(vmfs_journal_replay(bd, JOFF, 64 * 512, &s), -EUCLEAN);
	expect_zero(DOFF);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test_setup_teardown(test_not_formatted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_and_torn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reformat_forgets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_log, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
