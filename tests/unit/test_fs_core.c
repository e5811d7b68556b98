/*
 * Unit tests of the filesystem core on in-memory devices: mkfs, allocation,
 * every addressing mode and conversion, directories and their errors,
 * truncate freeing blocks, TBZ, stale-data protection, hooks, corruption.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <pthread.h>

#include "vmfs/fs.h"
#include "vmfs/volume.h"
#include "memdev.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static void quiet(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }

/* One formatted 1 GiB volume per test. */
struct env {
	struct vmfs_bdev *dev[2];
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	struct vmfs_statfs initial;
	uint32_t data_start;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	struct vmfs_mkfs_opts mo = { .label = "unit", .log = quiet, .fresh = true };
	struct vmfs_mkfs_result res;
	struct vmfs_fs_opts fo = { .log = quiet };

	e->dev[0] = memdev_new(17 * MiB + 4 * 256 * MiB, "mem0", 0, NULL);
	assert_int_equal(vmfs_mkfs(e->dev, 1, &mo, &res), 0);
	e->data_start = res.data_start;
	{
		struct vmfs_volume_opts vo = { .log = quiet };
		assert_int_equal(vmfs_volume_open_bdevs(e->dev, 1, &vo, &e->vol), 0);
		assert_int_equal(vmfs_fs_open(e->vol, &fo, &e->fs), 0);
	}
	assert_int_equal(vmfs_fs_statfs(e->fs, &e->initial), 0);
	assert_true(e->initial.free_blocks == res.free_blocks);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	vmfs_fs_close(e->fs);
	vmfs_volume_close(e->vol);
	free(e);
	return 0;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 9)) ^ seed);
}

static uint32_t zla_of(struct vmfs_fs *fs, uint32_t a)
{
	struct vmfs_stat st;
	assert_int_equal(vmfs_stat(fs, a, &st), 0);
	return st.zla;
}

static void check_range(struct vmfs_fs *fs, uint32_t a, uint64_t off, const uint8_t *exp, size_t n)
{
	uint8_t *got = malloc(n);
	assert_int_equal(vmfs_pread(fs, a, got, n, off), (int64_t)n);
	assert_memory_equal(got, exp, n);
	free(got);
}

static void check_zero(struct vmfs_fs *fs, uint32_t a, uint64_t off, size_t n)
{
	uint8_t *z = calloc(1, n);
	check_range(fs, a, off, z, n);
	free(z);
}

static void assert_statfs_initial(struct env *e)
{
	struct vmfs_statfs s;
	assert_int_equal(vmfs_fs_statfs(e->fs, &s), 0);
	assert_true(s.free_blocks == e->initial.free_blocks);
	assert_true(s.free_fds == e->initial.free_fds);
	assert_true(s.free_sbs == e->initial.free_sbs);
	assert_true(s.free_pbs == e->initial.free_pbs);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_mkfs_layout(void **state)
{
	struct env *e = *state;
	const struct vmfs_fs_info *i = vmfs_fs_get_info(e->fs);
	struct vmfs_res_info ri;
	struct vmfs_cluster c;
	uint32_t a;

	assert_int_equal(i->lvm_major, 5);
	assert_int_equal(i->fs_major, 14);
	assert_int_equal(i->fs_minor, 81);
	assert_true(i->block_size == MiB);
	assert_true(i->subblock_size == 8192);
	assert_string_equal(i->label, "unit");
	assert_int_equal(i->fdc_base, 4);
	assert_true(e->initial.total_blocks == 1024);
	assert_true(e->initial.free_blocks == 1024 - e->data_start);
	assert_true(e->initial.free_fds == 1024 - 8);
	assert_int_equal(vmfs_res_get_info(e->fs, VMFS_RES_FBB, &ri), 0);
	assert_int_equal(ri.ipe, 512);
	assert_int_equal(vmfs_res_read_cluster(e->fs, VMFS_RES_FBB, 0, &c, NULL), 0);
	assert_int_equal(c.free, 512 - e->data_start);
	assert_int_equal(c.ffree, e->data_start);
	assert_int_equal(vmfs_resolve(e->fs, "/.fbb.sf", &a), 0);
	assert_int_equal(a, 0x00400004);
	assert_int_equal(vmfs_resolve(e->fs, "/.sdd.sf", &a), 0);
	assert_int_equal(vmfs_addr_allocated(e->fs, vmfs_fb_make(0, false)), 1);
	assert_int_equal(vmfs_addr_allocated(e->fs, vmfs_fb_make(e->data_start, false)), 0);
}

static void test_modes_grow_and_shrink(void **state)
{
	struct env *e = *state;
	struct vmfs_fs *fs = e->fs;
	uint8_t *buf = malloc(3 * MiB);
	uint32_t a;

	fill(buf, 3 * MiB, 1);
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, "f", 0644, 1, 2, &a), 0);
	assert_int_equal(zla_of(fs, a), VMFS_ZLA_RESIDENT);
	assert_int_equal(vmfs_pwrite(fs, a, buf, 700, 0), 700);
	assert_int_equal(zla_of(fs, a), VMFS_ZLA_RESIDENT);
	check_range(fs, a, 0, buf, 700);
	/* -> sub-block */
	assert_int_equal(vmfs_pwrite(fs, a, buf + 700, 4300, 700), 4300);
	assert_int_equal(zla_of(fs, a), VMFS_ZLA_SB);
	check_range(fs, a, 0, buf, 5000);
	/* -> direct file blocks */
	assert_int_equal(vmfs_pwrite(fs, a, buf + 5000, 3 * MiB - 5000, 5000), (int64_t)(3 * MiB - 5000));
	assert_int_equal(zla_of(fs, a), VMFS_ZLA_FB);
	check_range(fs, a, 0, buf, 3 * MiB);
	/* -> single indirect */
	assert_int_equal(vmfs_pwrite(fs, a, buf, 1000, 300 * MiB + 3), 1000);
	assert_int_equal(zla_of(fs, a), VMFS_ZLA_PB);
	check_range(fs, a, 0, buf, 3 * MiB);
	check_range(fs, a, 300 * MiB + 3, buf, 1000);
	check_zero(fs, a, 100 * MiB, 4096);
	/* -> double indirect */
	assert_int_equal(vmfs_pwrite(fs, a, buf, 5000, 300 * GiB - 17), 5000);
	assert_int_equal(zla_of(fs, a), VMFS_ZLA_DOUBLE);
	check_range(fs, a, 0, buf, 3 * MiB);
	check_range(fs, a, 300 * MiB + 3, buf, 1000);
	check_range(fs, a, 300 * GiB - 17, buf, 5000);
	assert_int_equal(vmfs_pwrite(fs, a, buf, 10, (61ull << 40)), 10);
	check_range(fs, a, 61ull << 40, buf, 10);
	/* beyond 62 TiB */
	assert_int_equal(vmfs_pwrite(fs, a, buf, 10, VMFS_MAX_FILE_SIZE), -EFBIG);
	assert_int_equal(vmfs_truncate(fs, a, VMFS_MAX_FILE_SIZE + 1), -EFBIG);
	/* shrink back down, mode by mode */
	assert_int_equal(vmfs_truncate(fs, a, 301 * MiB), 0);
	assert_int_equal(zla_of(fs, a), VMFS_ZLA_PB);
	check_range(fs, a, 300 * MiB + 3, buf, 1000);
	assert_int_equal(vmfs_truncate(fs, a, 2 * MiB + 1), 0);
	assert_int_equal(zla_of(fs, a), VMFS_ZLA_FB);
	check_range(fs, a, 0, buf, 2 * MiB + 1);
	assert_int_equal(vmfs_truncate(fs, a, 1000), 0);
	assert_int_equal(zla_of(fs, a), VMFS_ZLA_RESIDENT);
	check_range(fs, a, 0, buf, 1000);
	/* regrow: the cut tail reads as zeros */
	assert_int_equal(vmfs_truncate(fs, a, 4 * MiB), 0);
	check_range(fs, a, 0, buf, 1000);
	check_zero(fs, a, 1000, 3 * MiB);
	assert_int_equal(vmfs_unlink(fs, VMFS_ROOT_ADDR, "f"), 0);
	assert_statfs_initial(e);
	free(buf);
}

static void test_partial_block_tail_zeroed_after_shrink(void **state)
{
	struct env *e = *state;
	uint8_t *buf = malloc(2 * MiB);
	uint32_t a;

	fill(buf, 2 * MiB, 2);
	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "t", 0644, 0, 0, &a), 0);
	assert_int_equal(vmfs_pwrite(e->fs, a, buf, 2 * MiB, 0), (int64_t)(2 * MiB));
	assert_int_equal(vmfs_truncate(e->fs, a, MiB + 100), 0);
	assert_int_equal(vmfs_truncate(e->fs, a, 2 * MiB), 0);
	check_range(e->fs, a, 0, buf, MiB + 100);
	check_zero(e->fs, a, MiB + 100, MiB - 100);
	free(buf);
}

static void test_fresh_blocks_never_expose_stale_data(void **state)
{
	struct env *e = *state;
	struct vmfs_bdev *lv = vmfs_fs_bdev(e->fs);
	uint8_t *junk = malloc(8 * MiB);
	uint8_t x[10] = "0123456789";
	uint32_t a;

	/* stale data in every free block the next allocations will use */
	memset(junk, 0xAA, 8 * MiB);
	assert_int_equal(vmfs_bdev_write(lv, junk, 8 * MiB, (uint64_t)e->data_start * MiB), 0);
	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "s", 0644, 0, 0, &a), 0);
	assert_int_equal(vmfs_truncate(e->fs, a, 5 * MiB), 0); /* hole, no allocation */
	assert_int_equal(vmfs_pwrite(e->fs, a, x, 10, 2 * MiB + 5000), 10);
	check_zero(e->fs, a, 0, 2 * MiB + 5000);
	check_range(e->fs, a, 2 * MiB + 5000, x, 10);
	check_zero(e->fs, a, 2 * MiB + 5010, 3 * MiB - 5010);
	/* eager preallocation zeroes too */
	assert_int_equal(vmfs_fallocate(e->fs, a, 0, 5 * MiB, VMFS_ALLOC_ZERO), 0);
	check_zero(e->fs, a, 0, 2 * MiB + 5000);
	check_zero(e->fs, a, 3 * MiB, 2 * MiB);
	free(junk);
}

static void test_tbz(void **state)
{
	struct env *e = *state;
	struct vmfs_bdev *lv = vmfs_fs_bdev(e->fs);
	uint8_t *junk = malloc(4 * MiB);
	uint8_t x[100];
	struct vmfs_stat st;
	struct vmfs_extent ext;
	uint32_t a;

	memset(junk, 0x55, 4 * MiB);
	assert_int_equal(vmfs_bdev_write(lv, junk, 4 * MiB, (uint64_t)e->data_start * MiB), 0);
	fill(x, sizeof(x), 3);
	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "z", 0600, 0, 0, &a), 0);
	assert_int_equal(vmfs_fallocate(e->fs, a, 0, 4 * MiB, VMFS_ALLOC_TBZ), 0);
	assert_int_equal(vmfs_stat(e->fs, a, &st), 0);
	assert_int_equal(st.tbz, 4);
	assert_true(st.size == 4 * MiB);
	assert_int_equal(st.zla, VMFS_ZLA_FB);
	check_zero(e->fs, a, 0, 4 * MiB); /* TBZ reads as zeros despite stale data */
	assert_int_equal(vmfs_map(e->fs, a, MiB, 0, &ext), 0);
	assert_int_equal(ext.state, VMFS_EXT_TBZ);
	assert_true(ext.len == 3 * MiB && ext.file_off == MiB);
	assert_int_equal(vmfs_pwrite(e->fs, a, x, sizeof(x), MiB + 77), (int64_t)sizeof(x));
	assert_int_equal(vmfs_stat(e->fs, a, &st), 0);
	assert_int_equal(st.tbz, 3);
	check_zero(e->fs, a, 0, MiB + 77);
	check_range(e->fs, a, MiB + 77, x, sizeof(x));
	check_zero(e->fs, a, MiB + 177, 3 * MiB - 177);
	assert_int_equal(vmfs_map(e->fs, a, MiB, 0, &ext), 0);
	assert_int_equal(ext.state, VMFS_EXT_ALLOCATED);
	assert_true(ext.len == MiB && ext.file_off == MiB);
	assert_int_equal(vmfs_unlink(e->fs, VMFS_ROOT_ADDR, "z"), 0);
	assert_statfs_initial(e);
	free(junk);
}

static void test_punch_hole(void **state)
{
	struct env *e = *state;
	uint8_t *buf = malloc(5 * MiB), *big = malloc(MiB);
	struct vmfs_statfs sf0, sf1;
	struct vmfs_stat st;
	struct vmfs_extent ext;
	uint8_t small[600];
	uint32_t a, r, s;

	/* a file-block file: block 2 freed, the half blocks around it zeroed */
	fill(buf, 5 * MiB, 11);
	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "p", 0600, 0, 0, &a), 0);
	assert_int_equal(vmfs_pwrite(e->fs, a, buf, 5 * MiB, 0), (int64_t)(5 * MiB));
	assert_int_equal(vmfs_fs_statfs(e->fs, &sf0), 0);
	assert_int_equal(vmfs_punch(e->fs, a, 3 * MiB / 2, 2 * MiB), 0);
	assert_int_equal(vmfs_fs_statfs(e->fs, &sf1), 0);
	assert_true(sf1.free_blocks == sf0.free_blocks + 1);
	assert_int_equal(vmfs_stat(e->fs, a, &st), 0);
	assert_true(st.size == 5 * MiB && st.blk_count == 4);
	check_range(e->fs, a, 0, buf, 3 * MiB / 2);
	check_zero(e->fs, a, 3 * MiB / 2, 2 * MiB);
	check_range(e->fs, a, 7 * MiB / 2, buf + 7 * MiB / 2, 3 * MiB / 2);
	assert_int_equal(vmfs_map(e->fs, a, 2 * MiB, 0, &ext), 0);
	assert_int_equal(ext.state, VMFS_EXT_HOLE);
	assert_true(ext.file_off == 2 * MiB && ext.len == MiB);
	/* writing into the hole again allocates a fresh, zero-filled block */
	assert_int_equal(vmfs_pwrite(e->fs, a, small, 1, 2 * MiB + 5), 1);
	check_zero(e->fs, a, 2 * MiB, 5);
	/* punching past the end, or nothing, changes nothing */
	assert_int_equal(vmfs_punch(e->fs, a, 6 * MiB, MiB), 0);
	assert_int_equal(vmfs_punch(e->fs, a, 0, 0), 0);
	assert_int_equal(vmfs_punch(e->fs, a, UINT64_MAX - 10, 100), -EFBIG);
	/* the whole file: every block goes back */
	assert_int_equal(vmfs_punch(e->fs, a, 0, 5 * MiB), 0);
	assert_int_equal(vmfs_stat(e->fs, a, &st), 0);
	assert_true(st.blk_count == 0 && st.size == 5 * MiB);
	check_zero(e->fs, a, 0, 5 * MiB);
	assert_int_equal(vmfs_unlink(e->fs, VMFS_ROOT_ADDR, "p"), 0);

	/* a pointer-block file: a block far out freed through its PB */
	fill(big, MiB, 12);
	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "pb", 0600, 0, 0, &r), 0);
	assert_int_equal(vmfs_pwrite(e->fs, r, big, MiB, 300 * MiB), (int64_t)MiB);
	assert_int_equal(vmfs_stat(e->fs, r, &st), 0);
	assert_int_equal(st.zla, VMFS_ZLA_PB);
	assert_int_equal(vmfs_punch(e->fs, r, 300 * MiB, MiB), 0);
	assert_int_equal(vmfs_stat(e->fs, r, &st), 0);
	assert_true(st.blk_count == 0);
	check_zero(e->fs, r, 300 * MiB, MiB);
	assert_int_equal(vmfs_unlink(e->fs, VMFS_ROOT_ADDR, "pb"), 0);

	/* a resident file: bytes zeroed inside the FD */
	fill(small, sizeof(small), 13);
	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "r", 0600, 0, 0, &s), 0);
	assert_int_equal(vmfs_pwrite(e->fs, s, small, sizeof(small), 0), (int64_t)sizeof(small));
	assert_int_equal(vmfs_punch(e->fs, s, 100, 200), 0);
	check_range(e->fs, s, 0, small, 100);
	check_zero(e->fs, s, 100, 200);
	check_range(e->fs, s, 300, small + 300, sizeof(small) - 300);
	assert_int_equal(vmfs_unlink(e->fs, VMFS_ROOT_ADDR, "r"), 0);
	/* not a file */
	assert_int_equal(vmfs_punch(e->fs, VMFS_ROOT_ADDR, 0, 10), -EISDIR);
	assert_statfs_initial(e);
	free(buf);
	free(big);
}

static void test_extent_map(void **state)
{
	struct env *e = *state;
	uint8_t *buf = calloc(1, 3 * MiB);
	struct vmfs_extent x;
	uint32_t a;

	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "m", 0644, 0, 0, &a), 0);
	assert_int_equal(vmfs_pwrite(e->fs, a, "hi", 2, 0), 2);
	assert_int_equal(vmfs_map(e->fs, a, 0, 0, &x), 0);
	assert_int_equal(x.state, VMFS_EXT_INLINE);
	assert_int_equal(vmfs_map(e->fs, a, 2, 0, &x), -ENXIO);
	assert_int_equal(vmfs_pwrite(e->fs, a, buf, 3 * MiB, 5 * MiB), (int64_t)(3 * MiB));
	assert_int_equal(vmfs_map(e->fs, a, 0, 0, &x), 0);
	assert_int_equal(x.state, VMFS_EXT_ALLOCATED); /* block 0 holds the converted "hi" */
	assert_int_equal(vmfs_map(e->fs, a, MiB + 3, 0, &x), 0);
	assert_int_equal(x.state, VMFS_EXT_HOLE);
	assert_true(x.file_off == MiB && x.len == 4 * MiB);
	assert_int_equal(vmfs_map(e->fs, a, 6 * MiB, 0, &x), 0);
	assert_int_equal(x.state, VMFS_EXT_ALLOCATED);
	assert_true(x.file_off == 6 * MiB && x.len == 2 * MiB);
	assert_int_equal(vmfs_map(e->fs, a, 5 * MiB, MiB, &x), 0);
	assert_true(x.len == MiB);
	free(buf);
}

static void test_map_write(void **state)
{
	struct env *e = *state;
	struct vmfs_bdev *lv = vmfs_fs_bdev(e->fs);
	uint8_t *buf = malloc(3 * MiB);
	struct vmfs_extent x;
	struct vmfs_stat st;
	uint32_t a;

	fill(buf, 3 * MiB, 5);
	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "zc", 0644, 0, 0, &a), 0);
	assert_int_equal(vmfs_pwrite(e->fs, a, "head", 4, 0), 4);
	assert_int_equal(vmfs_fallocate(e->fs, a, 4 * MiB, 2 * MiB, VMFS_ALLOC_TBZ), 0);
	/* a write of 3 MiB at 3.5 MiB: hole block 3, TBZ blocks 4-5, hole block 6 */
	uint64_t off = 3 * MiB + MiB / 2, done = 0;
	while (done < 3 * MiB) {
		assert_int_equal(vmfs_map_write(e->fs, a, off + done, 3 * MiB - done, &x), 0);
		assert_int_equal(x.state, VMFS_EXT_ALLOCATED);
		uint64_t in = off + done - x.file_off, n = x.len - in;
		if (n > 3 * MiB - done)
			n = 3 * MiB - done;
		assert_int_equal(vmfs_bdev_write(lv, buf + done, n, x.lv_off + in), 0);
		done += n;
	}
	assert_int_equal(vmfs_stat(e->fs, a, &st), 0);
	assert_true(st.size == off + 3 * MiB);
	assert_int_equal(st.tbz, 0);
	assert_int_equal(st.zla, VMFS_ZLA_FB);
	check_range(e->fs, a, 0, (const uint8_t *)"head", 4);
	check_zero(e->fs, a, 4, off - 4);   /* converted resident block and hole: zeros */
	check_range(e->fs, a, off, buf, 3 * MiB);
	free(buf);
}

static void test_dir_errors(void **state)
{
	struct env *e = *state;
	struct vmfs_fs *fs = e->fs;
	char name[200];
	uint32_t f, d, x;

	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "nope", &x), -ENOENT);
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, "file", 0644, 0, 0, &f), 0);
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, "file", 0644, 0, 0, &x), -EEXIST);
	assert_int_equal(vmfs_mkdir(fs, VMFS_ROOT_ADDR, "file", 0755, 0, 0, &x), -EEXIST);
	assert_int_equal(vmfs_mkdir(fs, VMFS_ROOT_ADDR, "dir", 0755, 0, 0, &d), 0);
	assert_int_equal(vmfs_create(fs, d, "inner", 0644, 0, 0, &x), 0);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "dir"), -ENOTEMPTY);
	assert_int_equal(vmfs_unlink(fs, VMFS_ROOT_ADDR, "dir"), -EISDIR);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "file"), -ENOTDIR);
	assert_int_equal(vmfs_lookup(fs, f, "x", &x), -ENOTDIR);
	assert_int_equal(vmfs_create(fs, f, "x", 0644, 0, 0, &x), -ENOTDIR);
	assert_int_equal(vmfs_resolve(fs, "/file/x", &x), -ENOTDIR);
	assert_int_equal(vmfs_unlink(fs, VMFS_ROOT_ADDR, "missing"), -ENOENT);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "missing"), -ENOENT);
	assert_int_equal(vmfs_unlink(fs, VMFS_ROOT_ADDR, ".fbb.sf"), -EPERM);
	assert_int_equal(vmfs_pwrite(fs, d, "x", 1, 0), -EISDIR);
	memset(name, 'n', sizeof(name));
	name[128] = 0;
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, name, 0644, 0, 0, &x), -ENAMETOOLONG);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, name, &x), -ENAMETOOLONG);
	name[127] = 0;
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, name, 0644, 0, 0, &x), 0);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, name, &f), 0);
	assert_int_equal(f, x);
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, "a/b", 0644, 0, 0, &x), -EINVAL);
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, "", 0644, 0, 0, &x), -ENOENT);
	assert_int_equal(vmfs_unlink(fs, d, "inner"), 0);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "dir"), 0);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "dir", &x), -ENOENT);
}

static void test_links_and_nlink(void **state)
{
	struct env *e = *state;
	struct vmfs_fs *fs = e->fs;
	struct vmfs_stat st;
	uint32_t f, d, sub, x;
	char t[64];

	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, "orig", 0644, 0, 0, &f), 0);
	assert_int_equal(vmfs_pwrite(fs, f, "data", 4, 0), 4);
	assert_int_equal(vmfs_mkdir(fs, VMFS_ROOT_ADDR, "d", 0755, 0, 0, &d), 0);
	assert_int_equal(vmfs_stat(fs, VMFS_ROOT_ADDR, &st), 0);
	assert_int_equal(st.nlink, 3);
	assert_int_equal(vmfs_mkdir(fs, d, "sub", 0755, 0, 0, &sub), 0);
	assert_int_equal(vmfs_stat(fs, d, &st), 0);
	assert_int_equal(st.nlink, 3);
	assert_int_equal(vmfs_lookup(fs, sub, "..", &x), 0);
	assert_int_equal(x, d);
	assert_int_equal(vmfs_link(fs, f, d, "hard"), 0);
	assert_int_equal(vmfs_link(fs, d, VMFS_ROOT_ADDR, "dirlink"), -EPERM);
	assert_int_equal(vmfs_stat(fs, f, &st), 0);
	assert_int_equal(st.nlink, 2);
	assert_int_equal(vmfs_unlink(fs, VMFS_ROOT_ADDR, "orig"), 0);
	assert_int_equal(vmfs_resolve(fs, "/d/hard", &x), 0);
	assert_int_equal(x, f);
	assert_int_equal(vmfs_stat(fs, f, &st), 0);
	assert_int_equal(st.nlink, 1);
	check_range(fs, f, 0, (const uint8_t *)"data", 4);
	assert_int_equal(vmfs_symlink(fs, d, "ln", "/vmfs/volumes/v/x", &x), 0);
	assert_int_equal(vmfs_readlink(fs, x, t, sizeof(t)), 17);
	assert_string_equal(t, "/vmfs/volumes/v/x");
	assert_int_equal(vmfs_stat(fs, x, &st), 0);
	assert_int_equal(st.mode & 0170000, 0120000);
	assert_int_equal(vmfs_readlink(fs, f, t, sizeof(t)), -EINVAL);
	assert_int_equal(vmfs_setattr(fs, f, VMFS_SET_MODE | VMFS_SET_UID | VMFS_SET_GID | VMFS_SET_MTIME,
				      04711, 5, 6, 0, 1234), 0);
	assert_int_equal(vmfs_stat(fs, f, &st), 0);
	assert_int_equal(st.mode, 0104711);
	assert_int_equal(st.uid, 5);
	assert_int_equal(st.gid, 6);
	assert_int_equal(st.mtime, 1234);
	/* tear down: counts back to the start */
	assert_int_equal(vmfs_unlink(fs, d, "hard"), 0);
	assert_int_equal(vmfs_unlink(fs, d, "ln"), 0);
	assert_int_equal(vmfs_rmdir(fs, d, "sub"), 0);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "d"), 0);
	assert_int_equal(vmfs_stat(fs, VMFS_ROOT_ADDR, &st), 0);
	assert_int_equal(st.nlink, 2);
	assert_int_equal(vmfs_stat(fs, f, &st), -ENOENT);
	assert_statfs_initial(e);
}

static int count_cb(void *ctx, const struct vmfs_dirent *de)
{
	(void)de;
	(*(int *)ctx)++;
	return 0;
}

/* Files a and b (4 bytes), directories d1, d2 and d1/sub in the root. */
static void rename_tree(struct vmfs_fs *fs, uint32_t *a, uint32_t *b, uint32_t *d1, uint32_t *d2,
			uint32_t *sub)
{
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, "a", 0644, 0, 0, a), 0);
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, "b", 0644, 0, 0, b), 0);
	assert_int_equal(vmfs_pwrite(fs, *b, "bbbb", 4, 0), 4);
	assert_int_equal(vmfs_mkdir(fs, VMFS_ROOT_ADDR, "d1", 0755, 0, 0, d1), 0);
	assert_int_equal(vmfs_mkdir(fs, VMFS_ROOT_ADDR, "d2", 0755, 0, 0, d2), 0);
	assert_int_equal(vmfs_mkdir(fs, *d1, "sub", 0755, 0, 0, sub), 0);
}

static void test_rename(void **state)
{
	struct env *e = *state;
	struct vmfs_fs *fs = e->fs;
	uint32_t a, b, d1, d2, sub, x;
	int n = 0;

	rename_tree(fs, &a, &b, &d1, &d2, &sub);
	/* within a directory */
	assert_int_equal(vmfs_rename(fs, VMFS_ROOT_ADDR, "a", VMFS_ROOT_ADDR, "a2"), 0);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "a", &x), -ENOENT);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "a2", &x), 0);
	assert_int_equal(x, a);
	/* replacing a target: b's blocks/FD are released */
	assert_int_equal(vmfs_rename(fs, VMFS_ROOT_ADDR, "a2", VMFS_ROOT_ADDR, "b"), 0);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "b", &x), 0);
	assert_int_equal(x, a);
	assert_int_equal(vmfs_stat(fs, b, &(struct vmfs_stat){ 0 }), -ENOENT);
	/* across directories, a directory: ".." and link counts follow */
	assert_int_equal(vmfs_rename(fs, d1, "sub", d2, "moved"), 0);
	assert_int_equal(vmfs_lookup(fs, sub, "..", &x), 0);
	assert_int_equal(x, d2);
	struct vmfs_stat st;
	assert_int_equal(vmfs_stat(fs, d1, &st), 0);
	assert_int_equal(st.nlink, 2);
	assert_int_equal(vmfs_stat(fs, d2, &st), 0);
	assert_int_equal(st.nlink, 3);
	/* errors */
	assert_int_equal(vmfs_rename(fs, VMFS_ROOT_ADDR, "d2", sub, "loop"), -EINVAL);
	assert_int_equal(vmfs_rename(fs, VMFS_ROOT_ADDR, "d1", VMFS_ROOT_ADDR, "d2"), -ENOTEMPTY);
	assert_int_equal(vmfs_rename(fs, VMFS_ROOT_ADDR, "d1", VMFS_ROOT_ADDR, "b"), -ENOTDIR);
	assert_int_equal(vmfs_rename(fs, VMFS_ROOT_ADDR, "b", VMFS_ROOT_ADDR, "d1"), -EISDIR);
	assert_int_equal(vmfs_rename(fs, VMFS_ROOT_ADDR, "none", VMFS_ROOT_ADDR, "x"), -ENOENT);
	/* a directory onto an empty directory */
	assert_int_equal(vmfs_rename(fs, d2, "moved", VMFS_ROOT_ADDR, "d1"), 0);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "d1", &x), 0);
	assert_int_equal(x, sub);
	assert_int_equal(vmfs_readdir(fs, d2, count_cb, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(vmfs_unlink(fs, VMFS_ROOT_ADDR, "b"), 0);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "d1"), 0);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "d2"), 0);
	assert_statfs_initial(e);
}

/* RENAME_EXCHANGE: both names stay, their objects swap, in one transaction */
static void test_rename_exchange(void **state)
{
	struct env *e = *state;
	struct vmfs_fs *fs = e->fs;
	uint32_t a, b, d1, d2, sub, x;
	struct vmfs_stat st;

	rename_tree(fs, &a, &b, &d1, &d2, &sub);
	/* two files in one directory */
	assert_int_equal(vmfs_rename_exchange(fs, VMFS_ROOT_ADDR, "a", VMFS_ROOT_ADDR, "b"), 0);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "a", &x), 0);
	assert_int_equal(x, b);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "b", &x), 0);
	assert_int_equal(x, a);
	assert_int_equal(vmfs_stat(fs, b, &st), 0);
	assert_int_equal(st.size, 4);
	assert_int_equal(st.nlink, 1);
	/* a file and a directory across directories: ".." and link counts follow */
	assert_int_equal(vmfs_rename_exchange(fs, d1, "sub", VMFS_ROOT_ADDR, "a"), 0);
	assert_int_equal(vmfs_lookup(fs, d1, "sub", &x), 0);
	assert_int_equal(x, b);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "a", &x), 0);
	assert_int_equal(x, sub);
	assert_int_equal(vmfs_lookup(fs, sub, "..", &x), 0);
	assert_int_equal(x, VMFS_ROOT_ADDR);
	assert_int_equal(vmfs_stat(fs, d1, &st), 0);
	assert_int_equal(st.nlink, 2);
	/* two directories: each ".." points at its new parent */
	assert_int_equal(vmfs_rename_exchange(fs, VMFS_ROOT_ADDR, "a", d2, "."), -EINVAL);
	assert_int_equal(vmfs_mkdir(fs, d2, "in2", 0755, 0, 0, &x), 0);
	assert_int_equal(vmfs_rename_exchange(fs, VMFS_ROOT_ADDR, "a", d2, "in2"), 0);
	assert_int_equal(vmfs_lookup(fs, sub, "..", &x), 0);
	assert_int_equal(x, d2);
	assert_int_equal(vmfs_lookup(fs, d2, "in2", &x), 0);
	assert_int_equal(x, sub);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "a", &x), 0);
	assert_int_equal(vmfs_lookup(fs, x, "..", &x), 0);
	assert_int_equal(x, VMFS_ROOT_ADDR);
	/* errors: a missing side, a directory below itself, system files, same name */
	assert_int_equal(vmfs_rename_exchange(fs, VMFS_ROOT_ADDR, "a", VMFS_ROOT_ADDR, "none"), -ENOENT);
	assert_int_equal(vmfs_rename_exchange(fs, VMFS_ROOT_ADDR, "none", VMFS_ROOT_ADDR, "a"), -ENOENT);
	assert_int_equal(vmfs_rename_exchange(fs, VMFS_ROOT_ADDR, "d2", d2, "in2"), -EINVAL);
	assert_int_equal(vmfs_rename_exchange(fs, d2, "in2", VMFS_ROOT_ADDR, "d2"), -EINVAL);
	assert_int_equal(vmfs_rename_exchange(fs, VMFS_ROOT_ADDR, ".fbb.sf", VMFS_ROOT_ADDR, "b"), -EPERM);
	assert_int_equal(vmfs_rename_exchange(fs, VMFS_ROOT_ADDR, "b", VMFS_ROOT_ADDR, "b"), 0);
	assert_int_equal(vmfs_lookup(fs, VMFS_ROOT_ADDR, "b", &x), 0);
	assert_int_equal(x, a);
	assert_int_equal(vmfs_rmdir(fs, d2, "in2"), 0);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "a"), 0);
	assert_int_equal(vmfs_unlink(fs, VMFS_ROOT_ADDR, "b"), 0);
	assert_int_equal(vmfs_unlink(fs, d1, "sub"), 0);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "d1"), 0);
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "d2"), 0);
	assert_statfs_initial(e);
}

static void test_big_directory(void **state)
{
	struct env *e = *state;
	struct vmfs_fs *fs = e->fs;
	uint32_t d, x;
	char n[32];
	int cnt = 0;

	assert_int_equal(vmfs_mkdir(fs, VMFS_ROOT_ADDR, "big", 0755, 0, 0, &d), 0);
	assert_int_equal(zla_of(fs, d), VMFS_ZLA_SB);
	for (int i = 0; i < 300; i++) {
		snprintf(n, sizeof(n), "entry-%04d", i);
		assert_int_equal(vmfs_create(fs, d, n, 0644, 0, 0, &x), 0);
	}
	assert_int_equal(zla_of(fs, d), VMFS_ZLA_FB);
	assert_int_equal(vmfs_readdir(fs, d, count_cb, &cnt), 0);
	assert_int_equal(cnt, 302);
	for (int i = 0; i < 300; i += 2) {
		snprintf(n, sizeof(n), "entry-%04d", i);
		assert_int_equal(vmfs_unlink(fs, d, n), 0);
	}
	for (int i = 0; i < 300; i++) {
		snprintf(n, sizeof(n), "entry-%04d", i);
		assert_int_equal(vmfs_lookup(fs, d, n, &x), i % 2 ? 0 : -ENOENT);
	}
	for (int i = 1; i < 300; i += 2) {
		snprintf(n, sizeof(n), "entry-%04d", i);
		assert_int_equal(vmfs_unlink(fs, d, n), 0);
	}
	assert_int_equal(vmfs_rmdir(fs, VMFS_ROOT_ADDR, "big"), 0);
	assert_statfs_initial(e);
}

static void test_fdc_exhaustion_enospc(void **state)
{
	struct env *e = *state;
	char n[32];
	uint32_t x;
	int i, r = 0;

	for (i = 0; i < 2000; i++) {
		snprintf(n, sizeof(n), "f%d", i);
		r = vmfs_create(e->fs, VMFS_ROOT_ADDR, n, 0644, 0, 0, &x);
		if (r)
			break;
	}
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(i, (int)e->initial.free_fds);
	while (i-- > 0) {
		snprintf(n, sizeof(n), "f%d", i);
		assert_int_equal(vmfs_unlink(e->fs, VMFS_ROOT_ADDR, n), 0);
	}
	assert_statfs_initial(e);
}

/* ---- randomized operations against a model ----------------------------------------- */
static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void test_random_ops_against_model(void **state)
{
	struct env *e = *state;
	const size_t M = 24 * MiB;
	uint8_t *model = calloc(1, M), *buf = malloc(3 * MiB), *got = malloc(M);
	uint64_t size = 0;
	uint32_t a;

	if (getenv("VMFS_TEST_SEED"))  /* explore other sequences by hand */
		rnd_state = strtoull(getenv("VMFS_TEST_SEED"), NULL, 0) | 1;
	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "rnd", 0644, 0, 0, &a), 0);
	for (int op = 0; op < 400; op++) {
		uint64_t r = rnd() % 100, off, len;
		if (r < 55) {                      /* write, often small, sometimes big */
			len = rnd() % 8 == 0 ? rnd() % (3 * MiB) + 1 : rnd() % 9000 + 1;
			off = rnd() % 4 == 0 ? rnd() % 2000 : rnd() % (M - len);
			fill(buf, len, (unsigned)op);
			assert_int_equal(vmfs_pwrite(e->fs, a, buf, len, off), (int64_t)len);
			memcpy(model + off, buf, len);
			if (off + len > size)
				size = off + len;
		} else if (r < 80) {               /* truncate up or down */
			uint64_t ns = rnd() % 3 == 0 ? rnd() % 3000 : rnd() % M;
			assert_int_equal(vmfs_truncate(e->fs, a, ns), 0);
			if (ns < size)
				memset(model + ns, 0, size - ns);
			size = ns;
		} else if (r < 90) {               /* preallocate (TBZ or zeroed), keep size */
			off = rnd() % (M - 4 * MiB);
			len = rnd() % (4 * MiB) + 1;
			assert_int_equal(vmfs_fallocate(e->fs, a, off, len,
							(rnd() & 1 ? VMFS_ALLOC_TBZ : VMFS_ALLOC_ZERO) |
							VMFS_ALLOC_KEEP_SIZE), 0);
		} else {                           /* verify a random range */
			off = size ? rnd() % size : 0;
			len = size - off < 2 * MiB ? size - off : 2 * MiB;
			if (len)
				check_range(e->fs, a, off, model + off, len);
		}
		struct vmfs_stat st;
		assert_int_equal(vmfs_stat(e->fs, a, &st), 0);
		assert_true(st.size == size);
	}
	assert_int_equal(vmfs_pread(e->fs, a, got, M, 0), (int64_t)size);
	assert_memory_equal(got, model, size);
	assert_int_equal(vmfs_unlink(e->fs, VMFS_ROOT_ADDR, "rnd"), 0);
	assert_statfs_initial(e);
	free(model);
	free(buf);
	free(got);
}

/* ---- threads --------------------------------------------------------------------- */
struct thr {
	struct vmfs_fs *fs;
	uint32_t dir;
	int id, err;
};

static void *creator(void *arg)
{
	struct thr *t = arg;
	uint8_t buf[3000];
	char n[32];
	uint32_t a;

	fill(buf, sizeof(buf), (unsigned)t->id);
	for (int i = 0; i < 100 && !t->err; i++) {
		snprintf(n, sizeof(n), "t%d-%d", t->id, i);
		t->err = vmfs_create(t->fs, t->dir, n, 0644, 0, 0, &a);
		if (!t->err && vmfs_pwrite(t->fs, a, buf, sizeof(buf), (uint64_t)i * 100000) < 0)
			t->err = -EIO;
	}
	return NULL;
}

static void test_threads_share_one_fs(void **state)
{
	struct env *e = *state;
	struct thr t[4];
	pthread_t th[4];
	struct vmfs_statfs s;
	uint32_t d;
	int cnt = 0;

	assert_int_equal(vmfs_mkdir(e->fs, VMFS_ROOT_ADDR, "mt", 0755, 0, 0, &d), 0);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){ e->fs, d, i, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, creator, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].err, 0);
	}
	assert_int_equal(vmfs_readdir(e->fs, d, count_cb, &cnt), 0);
	assert_int_equal(cnt, 402);
	assert_int_equal(vmfs_fs_statfs(e->fs, &s), 0);
	assert_true(s.free_fds == e->initial.free_fds - 401);
	/* every file got blocks of its own: each reads back its own pattern */
	for (int i = 0; i < 4; i++) {
		uint8_t exp[3000];
		char n[32];
		uint32_t a;
		fill(exp, sizeof(exp), (unsigned)i);
		for (int k = 0; k < 100; k += 33) {
			snprintf(n, sizeof(n), "t%d-%d", i, k);
			assert_int_equal(vmfs_lookup(e->fs, d, n, &a), 0);
			check_range(e->fs, a, (uint64_t)k * 100000, exp, sizeof(exp));
		}
	}
}

/* ---- hooks ------------------------------------------------------------------------- */
struct hookrec {
	int locks, unlocks, commits;
	size_t sectors;
	uint64_t busy_off;  /* lock on this offset fails with -EBUSY */
	int fail_commit;
	uint64_t fd0_lv;    /* lock sector that must never be written */
	bool saw_lock_sector;
};
static int h_lock(void *c, uint64_t off, int mode)
{
	struct hookrec *h = c;
	(void)mode;
	if (off == h->busy_off)
		return -EBUSY;
	h->locks++;
	return 0;
}
static void h_unlock(void *c, uint64_t off) { (void)off; ((struct hookrec *)c)->unlocks++; }
static int h_commit(void *c, const struct vmfs_txn_sector *s, size_t n)
{
	struct hookrec *h = c;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(s[i].off % 512, 0);
		if (i)
			assert_true(s[i].off > s[i - 1].off);
		if (s[i].off == h->fd0_lv)
			h->saw_lock_sector = true;
	}
	if (h->fail_commit)
		return -EIO;
	h->commits++;
	h->sectors += n;
	return 0;
}

static void test_hooks(void **state)
{
	struct env *e = *state;
	struct hookrec h = { 0 };
	struct vmfs_fs_hooks hooks = { &h, h_lock, h_unlock, h_commit, NULL };
	struct vmfs_fs_opts fo = { .log = quiet, .hooks = &hooks };
	struct vmfs_extent x;
	struct vmfs_fd fd;
	struct vmfs_fs *hfs;
	uint32_t b;
	uint64_t cl0;

	assert_int_equal(vmfs_fd_read(e->fs, VMFS_ROOT_ADDR, &fd, &h.fd0_lv), 0);
	assert_int_equal(vmfs_res_read_cluster(e->fs, VMFS_RES_FBB, 0, &(struct vmfs_cluster){ 0 }, &cl0), 0);
	assert_int_equal(vmfs_fs_open(e->vol, &fo, &hfs), 0);
	h.busy_off = cl0; /* FBB cluster 0 is busy (another host's) */
	assert_int_equal(vmfs_create(hfs, VMFS_ROOT_ADDR, "hooked", 0644, 0, 0, &b), 0);
	assert_int_equal(vmfs_pwrite(hfs, b, "x", 1, 3 * MiB), 1);
	assert_int_equal(vmfs_map(hfs, b, 3 * MiB, 0, &x), 0);
	assert_int_equal(x.state, VMFS_EXT_ALLOCATED);
	assert_true(x.lv_off >= 512 * MiB); /* allocated from cluster 1 */
	assert_true(h.locks > 0);
	assert_int_equal(h.locks, h.unlocks);
	assert_true(h.commits >= 2);
	assert_false(h.saw_lock_sector);
	/* a failing commit hook leaves the disk untouched */
	h.fail_commit = 1;
	assert_int_equal(vmfs_create(hfs, VMFS_ROOT_ADDR, "lost", 0644, 0, 0, &b), -EIO);
	assert_int_equal(vmfs_lookup(hfs, VMFS_ROOT_ADDR, "lost", &b), -ENOENT);
	assert_int_equal(h.locks, h.unlocks);
	vmfs_fs_close(hfs);
}

/* A rewrite of allocated blocks changes no metadata once the mtime is
 * current: its transaction must hand nothing to the journal (no record, no
 * flush).  Three rewrites in a row cross at most one second boundary, so at
 * most one of them may commit; an allocating write always commits. */
static void test_unchanged_inode_commits_nothing(void **state)
{
	struct env *e = *state;
	struct hookrec h = { 0 };
	struct vmfs_fs_hooks hooks = { &h, h_lock, h_unlock, h_commit, NULL };
	struct vmfs_fs_opts fo = { .log = quiet, .hooks = &hooks, .flags = VMFS_FS_NO_RESIDENT };
	struct vmfs_fs *hfs;
	uint8_t *buf = malloc(MiB);
	uint32_t b;
	int c0;

	memset(buf, 0x3C, MiB);
	assert_int_equal(vmfs_fs_open(e->vol, &fo, &hfs), 0);
	assert_int_equal(vmfs_create(hfs, VMFS_ROOT_ADDR, "rw", 0644, 0, 0, &b), 0);
	c0 = h.commits;
	assert_int_equal(vmfs_pwrite(hfs, b, buf, MiB, 0), (int64_t)MiB);
	assert_int_equal(h.commits, c0 + 1);
	c0 = h.commits;
	for (int i = 0; i < 3; i++)
		assert_int_equal(vmfs_pwrite(hfs, b, buf, MiB, 0), (int64_t)MiB);
	assert_true(h.commits - c0 <= 1);
	assert_int_equal(vmfs_pwrite(hfs, b, buf, MiB, MiB), (int64_t)MiB);   /* allocates */
	assert_true(h.commits - c0 >= 1 && h.commits - c0 <= 2);
	assert_int_equal(h.locks, h.unlocks);
	vmfs_fs_close(hfs);
	free(buf);
}

/* ---- volumes and corruption -------------------------------------------------------- */

static void test_spanned_any_order(void **state)
{
	struct vmfs_bdev *d[2] = { memdev_new(17 * MiB + 256 * MiB, "e0", 0, NULL), memdev_new(17 * MiB + 512 * MiB, "e1", 0, NULL) };
	struct vmfs_mkfs_opts mo = { .log = quiet, .fresh = true };
	struct vmfs_mkfs_result res;
	struct vmfs_fs_opts fo = { .log = quiet };
	struct vmfs_volume_opts vo = { .log = quiet };
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	uint8_t *buf = malloc(8 * MiB);
	uint32_t a;
	(void)state;

	assert_int_equal(vmfs_mkfs(d, 2, &mo, &res), 0);
	assert_true(res.lv_size == 768 * MiB);
	/* reversed order */
	struct vmfs_bdev *rev[2] = { d[1], d[0] };
	assert_int_equal(vmfs_volume_open_bdevs(rev, 2, &vo, &vol), 0);
	assert_int_equal(vmfs_volume_get_info(vol)->num_extents, 2);
	assert_int_equal(vmfs_fs_open(vol, &fo, &fs), 0);
	fill(buf, 8 * MiB, 9);
	assert_int_equal(vmfs_create(fs, VMFS_ROOT_ADDR, "big", 0644, 0, 0, &a), 0);
	/* fill past the first extent: 250 MiB of TBZ, then real data */
	assert_int_equal(vmfs_fallocate(fs, a, 0, 250 * MiB, VMFS_ALLOC_TBZ), 0);
	assert_int_equal(vmfs_pwrite(fs, a, buf, 8 * MiB, 250 * MiB), (int64_t)(8 * MiB));
	check_range(fs, a, 250 * MiB, buf, 8 * MiB);
	vmfs_fs_close(fs);
	vmfs_volume_close(vol);
	free(buf);
}

static void test_volume_validation(void **state)
{
	struct vmfs_bdev *d[2] = { memdev_new(17 * MiB + 256 * MiB, "a", 0, NULL), memdev_new(17 * MiB + 256 * MiB, "b", 0, NULL) };
	struct vmfs_mkfs_opts mo = { .log = quiet, .fresh = true };
	struct vmfs_volume_opts vo = { .log = quiet };
	struct vmfs_volume *vol;
	uint8_t b[512];
	(void)state;

	assert_int_equal(vmfs_mkfs(d, 2, &mo, NULL), 0);
	/* one extent of two: missing */
	struct vmfs_bdev *one[1] = { d[0] };
	struct vmfs_bdev *other = d[1];
	assert_int_equal(vmfs_volume_open_bdevs(one, 1, &vo, &vol), -ENXIO); /* closes d[0] */
	/* corrupt LVM header of the remaining one */
	assert_int_equal(vmfs_bdev_read(other, b, 512, 0x100000), 0);
	b[4] = 7; /* version 7 */
	assert_int_equal(vmfs_bdev_write(other, b, 512, 0x100000), 0);
	struct vmfs_bdev *o1[1] = { other };
	vo.allow_missing = 1;
	assert_int_equal(vmfs_volume_open_bdevs(o1, 1, &vo, &vol), -EOPNOTSUPP);
}

static void test_corrupt_root_fd(void **state)
{
	struct env *e = *state;
	struct vmfs_fs_opts fo = { .log = quiet };
	struct vmfs_fs *fs2;
	struct vmfs_fd fd;
	uint64_t lv;
	uint8_t b[512];
	struct vmfs_volume *vol = e->vol;

	assert_int_equal(vmfs_fd_read(e->fs, VMFS_ROOT_ADDR, &fd, &lv), 0);
	assert_int_equal(vmfs_bdev_read(vmfs_fs_bdev(e->fs), b, 512, lv + 512), 0);
	b[0] ^= 0xFF; /* id no longer matches the address */
	assert_int_equal(vmfs_bdev_write(vmfs_fs_bdev(e->fs), b, 512, lv + 512), 0);
	assert_int_equal(vmfs_fs_open(vol, &fo, &fs2), -EUCLEAN);
	assert_int_equal(vmfs_lookup(e->fs, VMFS_ROOT_ADDR, "x", &(uint32_t){ 0 }), -EUCLEAN);
	b[0] ^= 0xFF;
	b[0x44] = 0x77; /* absurd addressing mode */
	assert_int_equal(vmfs_bdev_write(vmfs_fs_bdev(e->fs), b, 512, lv + 512), 0);
	assert_int_equal(vmfs_fs_open(vol, &fo, &fs2), -EUCLEAN);
}

static void test_rdm_and_unknown_modes(void **state)
{
	struct env *e = *state;
	struct vmfs_extent x;
	struct vmfs_fd fd;
	uint8_t b[512], buf[16];
	uint64_t lv;
	uint32_t a;

	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "rdm", 0600, 0, 0, &a), 0);
	assert_int_equal(vmfs_pwrite(e->fs, a, "0123456789", 10, 0), 10);
	assert_int_equal(vmfs_fd_read(e->fs, a, &fd, &lv), 0);
	assert_int_equal(vmfs_bdev_read(vmfs_fs_bdev(e->fs), b, 512, lv + 512), 0);
	b[0x0C] = VMFS_TYPE_RDM;              /* type */
	b[0x1C] = 0; b[0x1D] = 0;             /* blk_size 0 */
	b[0x44] = 0x77; b[0x45] = 0;          /* unknown addressing mode */
	assert_int_equal(vmfs_bdev_write(vmfs_fs_bdev(e->fs), b, 512, lv + 512), 0);
	assert_int_equal(vmfs_map(e->fs, a, 0, 0, &x), -EOPNOTSUPP);
	assert_int_equal(vmfs_pread(e->fs, a, buf, sizeof(buf), 0), -EOPNOTSUPP);
	assert_int_equal(vmfs_truncate(e->fs, a, 0), -EPERM);
	assert_int_equal(vmfs_unlink(e->fs, VMFS_ROOT_ADDR, "rdm"), 0);
	assert_statfs_initial(e);
}

static void test_readonly(void **state)
{
	struct env *e = *state;
	struct vmfs_fs_opts fo = { .log = quiet, .flags = VMFS_FS_RDONLY };
	struct vmfs_fs *ro;
	uint32_t a;

	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "r", 0644, 0, 0, &a), 0);
	assert_int_equal(vmfs_fs_open(e->vol, &fo, &ro), 0);
	assert_int_equal(vmfs_create(ro, VMFS_ROOT_ADDR, "w", 0644, 0, 0, &a), -EROFS);
	assert_int_equal(vmfs_pwrite(ro, a, "x", 1, 0), -EROFS);
	assert_int_equal(vmfs_unlink(ro, VMFS_ROOT_ADDR, "r"), -EROFS);
	vmfs_fs_close(ro);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mkfs_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modes_grow_and_shrink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_block_tail_zeroed_after_shrink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fresh_blocks_never_expose_stale_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tbz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_punch_hole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extent_map, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_links_and_nlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_exchange, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fdc_exhaustion_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_ops_against_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_share_one_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hooks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unchanged_inode_commits_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_root_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rdm_and_unknown_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
		cmocka_unit_test(test_spanned_any_order),
		cmocka_unit_test(test_volume_validation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
