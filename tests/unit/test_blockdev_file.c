/* Unit tests of the block device API on regular files. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmfs/blockdev.h"
#include "memdev.h"

static char path[64];

static int setup(void **state)
{
	*state = tmpfile_bdev(path, 1 << 20, 0);
	assert_non_null(*state);
	return 0;
}

static void test_info(void **state)
{
	struct vmfs_bdev *bd = *state;
	const struct vmfs_bdev_info *i = vmfs_bdev_get_info(bd);

	assert_int_equal(i->size, 1 << 20);
	assert_int_equal(i->lbs, 512);
	assert_int_equal(i->ats, VMFS_ATS_OFD_LOCK);
	assert_string_equal(i->kind, "file");
}

static void test_rw_roundtrip(void **state)
{
	struct vmfs_bdev *bd = *state;
	char a[1024], b[512], c[1536];
	struct iovec v[2] = { { a, sizeof(a) }, { b, sizeof(b) } };

	memset(a, 'A', sizeof(a));
	memset(b, 'B', sizeof(b));
	assert_int_equal(vmfs_bdev_writev(bd, v, 2, 4096), 0);
	assert_int_equal(vmfs_bdev_read(bd, c, sizeof(c), 4096), 0);
	assert_memory_equal(c, a, sizeof(a));
	assert_memory_equal(c + 1024, b, sizeof(b));
	assert_int_equal(vmfs_bdev_flush(bd), 0);
}

static void test_bad_ranges(void **state)
{
	struct vmfs_bdev *bd = *state;
	char buf[1024] = { 0 }, chk[512], zero[512] = { 0 };

	assert_int_equal(vmfs_bdev_write(bd, buf, 512, 100), -EINVAL);   /* misaligned offset */
	assert_int_equal(vmfs_bdev_write(bd, buf, 100, 512), -EINVAL);   /* misaligned length */
	/* crosses the end: refused whole, nothing written */
	memset(buf, 'X', sizeof(buf));
	assert_int_equal(vmfs_bdev_write(bd, buf, 1024, (1 << 20) - 512), -EINVAL);
	assert_int_equal(vmfs_bdev_read(bd, chk, 512, (1 << 20) - 512), 0);
	assert_memory_equal(chk, zero, 512);
	assert_int_equal(vmfs_bdev_read(bd, buf, 512, 1 << 20), -EINVAL);
	assert_int_equal(vmfs_bdev_read(bd, buf, 512, UINT64_MAX - 511), -EINVAL);
}

static void test_ats(void **state)
{
	struct vmfs_bdev *bd = *state;
	char old[512] = { 0 }, new[512], cur[512];

	memset(new, 7, sizeof(new));
	assert_int_equal(vmfs_bdev_ats(bd, 8192, old, new, cur), 0);
	/* second attempt with the stale expectation fails and reports the truth */
	assert_int_equal(vmfs_bdev_ats(bd, 8192, old, new, cur), -ESTALE);
	assert_memory_equal(cur, new, 512);
	assert_int_equal(vmfs_bdev_ats(bd, 8191, old, new, cur), -EINVAL);
}


static void test_iovec_edges(void **state)
{
	struct vmfs_bdev *bd = *state;
	char a[100], b[412], c[512], chk[1024], zero[1024] = { 0 };
	struct iovec v[3] = { { a, sizeof(a) }, { NULL, 0 }, { b, sizeof(b) } };
	struct iovec big[2] = { { a, SIZE_MAX }, { b, 2 } };
	struct iovec w2[2] = { { c, 512 }, { chk, 512 } };

	/* unaligned segments whose total is aligned are fine on a buffered file */
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	assert_int_equal(vmfs_bdev_writev(bd, v, 3, 512), 0);
	assert_int_equal(vmfs_bdev_read(bd, c, 512, 512), 0);
	assert_memory_equal(c, a, 100);
	assert_memory_equal(c + 100, b, 412);
	/* empty vectors transfer nothing and succeed */
	assert_int_equal(vmfs_bdev_writev(bd, v, 0, 0), 0);
	assert_int_equal(vmfs_bdev_readv(bd, NULL, 0, 0), 0);
	/* bad vectors */
	assert_int_equal(vmfs_bdev_readv(bd, NULL, 1, 0), -EINVAL);
	assert_int_equal(vmfs_bdev_readv(bd, v, -1, 0), -EINVAL);
	assert_int_equal(vmfs_bdev_readv(bd, v, 100000, 0), -EINVAL);
	assert_int_equal(vmfs_bdev_writev(bd, big, 2, 0), -EINVAL);  /* length overflow */
	assert_int_equal(vmfs_bdev_writev(bd, v, 1, 0), -EINVAL);    /* 100 bytes */
	/* a two-segment write that crosses the end is refused whole */
	memset(c, 'X', 512);
	memset(chk, 'Y', 512);
	assert_int_equal(vmfs_bdev_writev(bd, w2, 2, (1 << 20) - 512), -EINVAL);
	assert_int_equal(vmfs_bdev_read(bd, chk, 1024, (1 << 20) - 1024), 0);
	assert_memory_equal(chk, zero, 1024);
}

static void test_rdonly_discard_errors(void **state)
{
	struct vmfs_bdev *bd = *state, *ro;
	char buf[4096], zero[4096] = { 0 };

	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(vmfs_bdev_write(bd, buf, sizeof(buf), 65536), 0);
	assert_int_equal(vmfs_bdev_discard(bd, 65536, 4096), 0);
	assert_int_equal(vmfs_bdev_read(bd, buf, sizeof(buf), 65536), 0);
	assert_memory_equal(buf, zero, sizeof(buf));
	assert_int_equal(vmfs_bdev_discard(bd, 65536, 100), -EINVAL);
	assert_int_equal(vmfs_bdev_discard(bd, 1 << 20, 512), -EINVAL);

	assert_int_equal(vmfs_bdev_open(path, VMFS_BDEV_RDONLY, &ro), 0);
	assert_true(vmfs_bdev_get_info(ro)->rdonly);
	assert_int_equal(vmfs_bdev_write(ro, buf, 512, 0), -EROFS);
	assert_int_equal(vmfs_bdev_discard(ro, 0, 512), -EROFS);
	assert_int_equal(vmfs_bdev_ats(ro, 0, zero, buf, NULL), -EROFS);
	assert_int_equal(vmfs_bdev_read(ro, buf, 512, 0), 0);
	vmfs_bdev_close(ro);

	assert_int_equal(vmfs_bdev_open("/nonexistent/x.img", 0, &ro), -ENOENT);
	assert_int_equal(vmfs_bdev_open("", 0, &ro), -EINVAL);
	assert_int_equal(vmfs_bdev_open("gopher://x/y", 0, &ro), -EPROTONOSUPPORT);
	assert_int_equal(vmfs_bdev_open("/dev/null", 0, &ro), -ENOTBLK);
}

static void test_direct(void **state)
{
	struct vmfs_bdev *bd;
	void *buf = NULL;

	(void)state;
	assert_int_equal(vmfs_bdev_open(path, VMFS_BDEV_DIRECT, &bd), 0);
	assert_int_equal(posix_memalign(&buf, 4096, 8192), 0);
	memset(buf, 0x33, 8192);
	assert_int_equal(vmfs_bdev_write(bd, buf, 8192, 8192), 0);
	memset(buf, 0, 8192);
	assert_int_equal(vmfs_bdev_read(bd, buf, 8192, 8192), 0);
	assert_int_equal(((unsigned char *)buf)[8191], 0x33);
	assert_int_equal(vmfs_bdev_flush(bd), 0);
	free(buf);
	vmfs_bdev_close(bd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_info, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_rw_roundtrip, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_bad_ranges, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_ats, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_iovec_edges, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_rdonly_discard_errors, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_direct, setup, tmpfile_teardown),
	};
	return cmocka_run_group_tests_name("blockdev_file", tests, NULL, NULL);
}
