/* Unit tests of the fault-injection wrapper: write-back cache, power cut,
 * torn writes, fail-nth, stall, ATS write-through, the fault: URL. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmfs/blockdev.h"

#define NSECT 256u          /* device: 128 KiB */
#define SECT 512u

static char path[64];

static int setup(void **state)
{
	int fd;

	strcpy(path, "/tmp/vmfs-fault-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, NSECT * SECT), 0);
	close(fd);
	*state = NULL;
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	return 0;
}

static struct vmfs_bdev *open_fault(void)
{
	struct vmfs_bdev *lower, *bd;

	assert_int_equal(vmfs_bdev_open(path, 0, &lower), 0);
	assert_int_equal(vmfs_fault_wrap(lower, &bd), 0);
	return bd;
}

/* Sector content that names its write and its sector: (id, lba) repeated. */
static void stamp(unsigned char *p, uint64_t id, uint64_t lba)
{
	for (unsigned i = 0; i < SECT; i += 16) {
		memcpy(p + i, &id, 8);
		memcpy(p + i + 8, &lba, 8);
	}
}

/* 0 for a zero sector, else the write id; -1 for anything else. */
static int64_t decode(const unsigned char *p, uint64_t lba)
{
	uint64_t id, l;
	static const unsigned char zero[SECT];

	if (!memcmp(p, zero, SECT))
		return 0;
	memcpy(&id, p, 8);
	memcpy(&l, p + 8, 8);
	if (l != lba)
		return -1;
	for (unsigned i = 0; i < SECT; i += 16)
		if (memcmp(p + i, &id, 8) || memcmp(p + i + 8, &l, 8))
			return -1;
	return (int64_t)id;
}

static void raw_read(unsigned char *buf)
{
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, NSECT * SECT, 0), (ssize_t)(NSECT * SECT));
	close(fd);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The model: per sector, the id at the last flush and the ids written since. */
struct model {
	int64_t flushed[NSECT];
	int64_t since[NSECT][64];
	unsigned nsince[NSECT];
};

static void test_power_cut_property(void **state)
{
	static struct model m;
	static unsigned char img[NSECT * SECT];
	unsigned total_kept = 0, total_unflushed = 0;

	for (uint64_t seed = 1; seed <= 40; seed++) {
		struct vmfs_bdev *bd;
		uint64_t s = seed * 7919 + 1, id = 1;
		int kept;

		memset(&m, 0, sizeof(m));
		bd = open_fault();
		for (int op = 0; op < 60; op++) {
			uint64_t k = rnd(&s) % 10;

			if (k == 0) {
				assert_int_equal(vmfs_bdev_flush(bd), 0);
				for (unsigned i = 0; i < NSECT; i++)
					if (m.nsince[i]) {
						m.flushed[i] = m.since[i][m.nsince[i] - 1];
						m.nsince[i] = 0;
					}
			} else {
				unsigned n = 1 + (unsigned)(rnd(&s) % 8);
				unsigned lba = (unsigned)(rnd(&s) % (NSECT - n));
				unsigned char buf[8 * SECT];

				for (unsigned i = 0; i < n; i++) {
					stamp(buf + i * SECT, id, lba + i);
					assert_true(m.nsince[lba + i] < 64);
					m.since[lba + i][m.nsince[lba + i]++] = (int64_t)id;
				}
				assert_int_equal(vmfs_bdev_write(bd, buf, n * SECT, (uint64_t)lba * SECT), 0);
				/* reads see the cache */
				{
					unsigned char chk[8 * SECT];

					assert_int_equal(vmfs_bdev_read(bd, chk, n * SECT, (uint64_t)lba * SECT), 0);
					assert_memory_equal(chk, buf, n * SECT);
				}
				id++;
				total_unflushed++;
			}
		}
		kept = vmfs_fault_power_cut(bd, seed, seed % 2 == 0);
		assert_true(kept >= 0);
		total_kept += (unsigned)kept;
		/* dead: every I/O fails */
		{
			unsigned char b[SECT];

			assert_int_equal(vmfs_bdev_read(bd, b, SECT, 0), -EIO);
			assert_int_equal(vmfs_bdev_write(bd, b, SECT, 0), -EIO);
			assert_int_equal(vmfs_bdev_flush(bd), -EIO);
		}
		vmfs_bdev_close(bd);
		raw_read(img);
		for (unsigned i = 0; i < NSECT; i++) {
			int64_t got = decode(img + i * SECT, i);
			bool ok = got == m.flushed[i];

			assert_true(got >= 0); /* never garbage, never a foreign sector */
			for (unsigned j = 0; j < m.nsince[i] && !ok; j++)
				ok = got == m.since[i][j];
			if (!ok)
				fprintf(stderr, "seed %llu sector %u: got %lld flushed %lld\n",
					(unsigned long long)seed, i, (long long)got, (long long)m.flushed[i]);
			assert_true(ok);
		}
		teardown(state);
		setup(state);
	}
	/* the cut keeps some unflushed writes and loses others */
	assert_true(total_kept > 0);
	assert_true(total_kept < total_unflushed);
}

/* One unflushed 8-sector write, tear: a prefix of 1..7 whole sectors lands. */
static void test_torn_write(void **state)
{
	static unsigned char img[NSECT * SECT];
	bool seen[8] = { false };

	for (uint64_t seed = 0; seed < 64; seed++) {
		struct vmfs_bdev *bd = open_fault();
		unsigned char buf[8 * SECT];
		unsigned k = 0;

		for (unsigned i = 0; i < 8; i++)
			stamp(buf + i * SECT, 5, 16 + i);
		assert_int_equal(vmfs_bdev_write(bd, buf, sizeof(buf), 16 * SECT), 0);
		assert_int_equal(vmfs_fault_power_cut(bd, seed, true), 1);
		vmfs_bdev_close(bd);
		raw_read(img);
		while (k < 8 && decode(img + (16 + k) * SECT, 16 + k) == 5)
			k++;
		for (unsigned i = k; i < 8; i++)
			assert_int_equal(decode(img + (16 + i) * SECT, 16 + i), 0);
		assert_true(k >= 1 && k <= 7);
		seen[k] = true;
		/* reset the image */
		teardown(state);
		setup(state);
	}
	assert_true(seen[1] || seen[2] || seen[3]);
	assert_true(seen[5] || seen[6] || seen[7]);
}

static void test_flush_reaches_lower(void **state)
{
	static unsigned char img[NSECT * SECT];
	struct vmfs_bdev *bd = open_fault();
	unsigned char buf[SECT];

	stamp(buf, 9, 3);
	assert_int_equal(vmfs_bdev_write(bd, buf, SECT, 3 * SECT), 0);
	raw_read(img);
	assert_int_equal(decode(img + 3 * SECT, 3), 0);   /* still only in the cache */
	assert_int_equal(vmfs_bdev_flush(bd), 0);
	raw_read(img);
	assert_int_equal(decode(img + 3 * SECT, 3), 9);
	/* a cut right after a flush keeps everything flushed, loses nothing */
	assert_int_equal(vmfs_fault_power_cut(bd, 1, true), 0);
	vmfs_bdev_close(bd);
	raw_read(img);
	assert_int_equal(decode(img + 3 * SECT, 3), 9);
}

static void test_fail_nth(void **state)
{
	struct vmfs_bdev *bd = open_fault();
	unsigned char buf[SECT] = { 0 };
	uint64_t base = vmfs_fault_io_count(bd);

	vmfs_fault_fail_nth(bd, 3, -ENOSPC);
	assert_int_equal(vmfs_bdev_read(bd, buf, SECT, 0), 0);
	assert_int_equal(vmfs_bdev_write(bd, buf, SECT, 0), 0);
	assert_int_equal(vmfs_bdev_flush(bd), -ENOSPC);     /* the 3rd */
	assert_int_equal(vmfs_bdev_flush(bd), 0);           /* one shot */
	assert_int_equal(vmfs_fault_io_count(bd), base + 4);
	vmfs_fault_fail_nth(bd, 1, -EIO);
	vmfs_fault_fail_nth(bd, 0, 0);                      /* disarm */
	assert_int_equal(vmfs_bdev_read(bd, buf, SECT, 0), 0);
	vmfs_fault_fail_nth(bd, 1, -EIO);
	assert_int_equal(vmfs_bdev_ats(bd, 0, buf, buf, NULL), -EIO);
	/* argument errors are not I/Os */
	assert_int_equal(vmfs_bdev_read(bd, buf, 100, 0), -EINVAL);
	assert_int_equal(vmfs_fault_io_count(bd), base + 6);
	vmfs_bdev_close(bd);
}

static int64_t ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void test_stall(void **state)
{
	struct vmfs_bdev *bd = open_fault();
	unsigned char buf[SECT];
	struct timespec t0;

	vmfs_fault_stall(bd, 150);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(vmfs_bdev_read(bd, buf, SECT, 0), 0);
	assert_true(ms_since(&t0) >= 150);
	vmfs_fault_stall(bd, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(vmfs_bdev_read(bd, buf, SECT, 0), 0);
	assert_true(ms_since(&t0) < 100);
	vmfs_bdev_close(bd);
}

/* ATS sees cached data, and is write-through: it survives a power cut that
 * drops every unflushed write, together with the cached writes to its own
 * sector that it depended on. */
static void test_ats_write_through(void **state)
{
	static unsigned char img[NSECT * SECT];
	struct vmfs_bdev *bd = open_fault();
	unsigned char a[SECT], b[SECT], cur[SECT];

	stamp(a, 1, 10);
	stamp(b, 2, 10);
	assert_int_equal(vmfs_bdev_write(bd, a, SECT, 10 * SECT), 0);      /* cached */
	assert_int_equal(vmfs_bdev_ats(bd, 10 * SECT, b, a, cur), -ESTALE);
	assert_memory_equal(cur, a, SECT);
	assert_int_equal(vmfs_bdev_ats(bd, 10 * SECT, a, b, cur), 0);
	assert_int_equal(vmfs_bdev_get_info(bd)->ats, VMFS_ATS_OFD_LOCK);
	assert_string_equal(vmfs_bdev_get_info(bd)->kind, "fault");
	raw_read(img);
	assert_int_equal(decode(img + 10 * SECT, 10), 2);                  /* on the medium */
	vmfs_fault_power_cut(bd, 3, false);
	vmfs_bdev_close(bd);
	raw_read(img);
	assert_int_equal(decode(img + 10 * SECT, 10), 2);
}

static void test_url(void **state)
{
	struct vmfs_bdev *bd;
	unsigned char buf[SECT] = { 0 };
	char url[128];

	snprintf(url, sizeof(url), "fault:%s?fail_nth=2&fail_err=28", path);
	assert_int_equal(vmfs_bdev_open(url, 0, &bd), 0);
	assert_string_equal(vmfs_bdev_get_info(bd)->kind, "fault");
	assert_int_equal(vmfs_bdev_read(bd, buf, SECT, 0), 0);
	assert_int_equal(vmfs_bdev_read(bd, buf, SECT, 0), -ENOSPC);
	vmfs_bdev_close(bd);

	/* cut_after: the 4th I/O cuts power; the unflushed write is dropped
	 * or kept by the seed, the flushed one is always there */
	snprintf(url, sizeof(url), "fault:%s?cut_after=4&seed=1", path);
	assert_int_equal(vmfs_bdev_open(url, 0, &bd), 0);
	stamp(buf, 7, 0);
	assert_int_equal(vmfs_bdev_write(bd, buf, SECT, 0), 0);
	assert_int_equal(vmfs_bdev_flush(bd), 0);
	assert_int_equal(vmfs_bdev_write(bd, buf, SECT, SECT), 0);
	assert_int_equal(vmfs_bdev_read(bd, buf, SECT, 0), -EIO);
	assert_int_equal(vmfs_bdev_read(bd, buf, SECT, 0), -EIO);
	vmfs_bdev_close(bd);
	{
		static unsigned char img[NSECT * SECT];

		raw_read(img);
		assert_int_equal(decode(img, 0), 7);
	}

	snprintf(url, sizeof(url), "fault:%s?bogus=1", path);
	assert_int_equal(vmfs_bdev_open(url, 0, &bd), -EINVAL);
	snprintf(url, sizeof(url), "fault:%s?stall_ms=x", path);
	assert_int_equal(vmfs_bdev_open(url, 0, &bd), -EINVAL);
	assert_int_equal(vmfs_bdev_open("fault:", 0, &bd), -EINVAL);
	assert_int_equal(vmfs_bdev_open("fault:fault:/x", 0, &bd), -EINVAL);
	/* non-fault devices are ignored by the control calls */
	assert_int_equal(vmfs_bdev_open(path, 0, &bd), 0);
	assert_int_equal(vmfs_fault_power_cut(bd, 1, true), -EINVAL);
	assert_int_equal(vmfs_fault_io_count(bd), 0);
	vmfs_bdev_close(bd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_power_cut_property, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_reaches_lower, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fail_nth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stall, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ats_write_through, setup, teardown),
		cmocka_unit_test_setup_teardown(test_url, setup, teardown),
	};
	return cmocka_run_group_tests_name("blockdev_fault", tests, NULL, NULL);
}
