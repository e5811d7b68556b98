/* Unit tests of vmfs_host_want_direct(): the one rule vmfs-fuse and vmfsd use
 * to decide whether a volume's extents are opened with O_DIRECT. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmfs/host.h"

static char dir[64], file[96], blk[96];
static int mknod_errno;

static int setup(void **state)
{
	int fd;

	(void)state;
	strcpy(dir, "/tmp/vmfs-direct-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/img", dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	/* a block device node (loop 0's numbers; only stat() looks at it) */
	snprintf(blk, sizeof(blk), "%s/blk", dir);
	if (mknod(blk, S_IFBLK | 0600, makedev(7, 0))) {
		mknod_errno = errno;
		blk[0] = 0;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(file);
	if (blk[0])
		unlink(blk);
	rmdir(dir);
	return 0;
}

static void test_on_off_override(void **state)
{
	const char *url[] = { "iscsi://127.0.0.1/iqn.2026-01.x:t/0" };
	const char *f[] = { file };

	(void)state;
	assert_false(vmfs_host_want_direct(VMFS_HOST_DIRECT_OFF, url, 1));
	assert_true(vmfs_host_want_direct(VMFS_HOST_DIRECT_ON, f, 1));
}

static void test_auto_files_and_urls(void **state)
{
	const char *f[] = { file };
	const char *missing[] = { "/nonexistent/vmfs-direct-test" };
	const char *iscsi[] = { "iscsi://127.0.0.1/iqn.2026-01.x:t/0" };
	const char *nfs_then_file[] = { file, "nfs://127.0.0.1/export/lun.img" };

	(void)state;
	assert_false(vmfs_host_want_direct(VMFS_HOST_DIRECT_AUTO, f, 1));
	assert_false(vmfs_host_want_direct(VMFS_HOST_DIRECT_AUTO, missing, 1));
	assert_true(vmfs_host_want_direct(VMFS_HOST_DIRECT_AUTO, iscsi, 1));
	/* any shared extent makes the whole volume O_DIRECT */
	assert_true(vmfs_host_want_direct(VMFS_HOST_DIRECT_AUTO, nfs_then_file, 2));
	assert_false(vmfs_host_want_direct(VMFS_HOST_DIRECT_AUTO, nfs_then_file, 1));
}

static void test_auto_block_device(void **state)
{
	const char *b[] = { file, blk };

	(void)state;
	if (!blk[0]) {
		fprintf(stderr, "cannot create a block device node (not root?): %s\n", strerror(mknod_errno));
		skip();
	}
	assert_true(vmfs_host_want_direct(VMFS_HOST_DIRECT_AUTO, b, 2));
	assert_true(vmfs_host_want_direct(VMFS_HOST_DIRECT_AUTO, b + 1, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_on_off_override),
		cmocka_unit_test(test_auto_files_and_urls),
		cmocka_unit_test(test_auto_block_device),
	};

	return cmocka_run_group_tests_name("host_direct", tests, setup, teardown);
}
