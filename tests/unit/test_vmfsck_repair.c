/*
 * Unit tests of the repair primitives vmfsck uses (fs/repair.c,
 * include/vmfs/fsck.h) on an in-memory 1 GiB volume: each changes exactly
 * what it says and keeps free counts, hints and statfs consistent.
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

#include "vmfs/fs.h"
#include "vmfs/fsck.h"
#include "vmfs/volume.h"

#define MiB (1ull << 20)

/* ---- sparse memory device --------------------------------------------------------- */
struct mem {
	uint8_t **chunk;
	size_t n;
};

static int mem_io(struct mem *m, const struct iovec *iov, int cnt, uint64_t off, int wr)
{
	for (int i = 0; i < cnt; i++) {
		uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		while (len) {
			size_t c = (size_t)(off / MiB), in = (size_t)(off % MiB);
			size_t k = MiB - in < len ? MiB - in : len;
			if (c >= m->n)
				return -EINVAL;
			if (wr) {
				if (!m->chunk[c] && !(m->chunk[c] = calloc(1, MiB)))
					return -ENOMEM;
				memcpy(m->chunk[c] + in, p, k);
			} else if (m->chunk[c]) {
				memcpy(p, m->chunk[c] + in, k);
			} else {
				memset(p, 0, k);
			}
			p += k;
			off += k;
			len -= k;
		}
	}
	return 0;
}
static int rd(void *p, const struct iovec *v, int c, uint64_t o) { return mem_io(p, v, c, o, 0); }
static int wr(void *p, const struct iovec *v, int c, uint64_t o) { return mem_io(p, v, c, o, 1); }
static int fl(void *p) { (void)p; return 0; }
static int ats(void *p, uint64_t off, const void *exp, const void *nd, void *cur)
{
	uint8_t b[512];
	struct iovec v = { b, 512 };
	mem_io(p, &v, 1, off, 0);
	if (memcmp(b, exp, 512)) {
		if (cur)
			memcpy(cur, b, 512);
		return -ESTALE;
	}
	v.iov_base = (void *)nd;
	return mem_io(p, &v, 1, off, 1);
}
static void cl(void *p)
{
	struct mem *m = p;
	for (size_t i = 0; i < m->n; i++)
		free(m->chunk[i]);
	free(m->chunk);
	free(m);
}
static const struct vmfs_bdev_ops ops = { rd, wr, fl, NULL, ats, cl };

static void quiet(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }

struct env {
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	struct vmfs_statfs st0;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	struct mem *m = calloc(1, sizeof(*m));
	struct vmfs_bdev_info info = { .size = 17 * MiB + 4 * 256 * MiB, .lbs = 512, .pbs = 512,
				       .ats = VMFS_ATS_OFD_LOCK };
	struct vmfs_mkfs_opts mo = { .label = "fsck", .log = quiet, .fresh = true };
	struct vmfs_volume_opts vo = { .log = quiet };
	struct vmfs_fs_opts fo = { .log = quiet, .flags = VMFS_FS_NO_RESIDENT };
	struct vmfs_bdev *bd;

	assert_non_null(e);
	assert_non_null(m);
	m->n = info.size / MiB;
	m->chunk = calloc(m->n, sizeof(*m->chunk));
	strcpy(info.kind, "mem");
	assert_int_equal(vmfs_bdev_create(&ops, m, &info, "mem", &bd), 0);
	assert_int_equal(vmfs_mkfs(&bd, 1, &mo, NULL), 0);
	assert_int_equal(vmfs_volume_open_bdevs(&bd, 1, &vo, &e->vol), 0);
	assert_int_equal(vmfs_fs_open(e->vol, &fo, &e->fs), 0);
	assert_int_equal(vmfs_fs_statfs(e->fs, &e->st0), 0);
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

static uint32_t mkfile(struct vmfs_fs *fs, uint32_t dir, const char *name, size_t size, unsigned seed)
{
	uint32_t a;
	uint8_t *b = malloc(size ? size : 1);
	assert_non_null(b);
	for (size_t i = 0; i < size; i++)
		b[i] = (uint8_t)(i * 31 + seed);
	assert_int_equal(vmfs_create(fs, dir, name, 0644, 0, 0, &a), 0);
	if (size)
		assert_int_equal(vmfs_pwrite(fs, a, b, size, 0), (int64_t)size);
	free(b);
	return a;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_cluster_write_recomputes_counts(void **state)
{
	struct env *e = *state;
	struct vmfs_cluster c;
	struct vmfs_statfs st;
	uint64_t lv;

	assert_int_equal(vmfs_res_read_cluster(e->fs, VMFS_RES_FBB, 1, &c, &lv), 0);
	uint32_t before = c.free;
	/* allocate items 3 and 9, and set garbage above total in the last byte */
	c.bitmap[0] &= (uint8_t)~(1u << 3);
	c.bitmap[1] &= (uint8_t)~(1u << 1);
	assert_int_equal(vmfs_fsck_cluster_write(e->fs, VMFS_RES_FBB, 1, c.total, c.bitmap, 0), 0);
	assert_int_equal(vmfs_res_read_cluster(e->fs, VMFS_RES_FBB, 1, &c, NULL), 0);
	assert_int_equal(c.free, before - 2);
	assert_int_equal(c.ffree, 0);
	assert_int_equal(vmfs_addr_allocated(e->fs, vmfs_fb_make(c.id * 512 + 3, false)), 1);
	assert_int_equal(vmfs_fs_statfs(e->fs, &st), 0);
	assert_int_equal(st.free_blocks, e->st0.free_blocks - 2);
	/* first free moves when item 0 is taken */
	c.bitmap[0] &= (uint8_t)~1u;
	assert_int_equal(vmfs_fsck_cluster_write(e->fs, VMFS_RES_FBB, 1, c.total, c.bitmap, 1), 0);
	assert_int_equal(vmfs_res_read_cluster(e->fs, VMFS_RES_FBB, 1, &c, &lv), 0);
	assert_int_equal(c.ffree, 1);
	assert_int_equal(c.lock_pos, lv);  /* fresh lock record: magic and position */
	assert_int_equal(vmfs_fsck_cluster_write(e->fs, VMFS_RES_FBB, 999999, 1, c.bitmap, 0), -EINVAL);
}

static void test_fd_set_changes_only_counters(void **state)
{
	struct env *e = *state;
	uint32_t a = mkfile(e->fs, VMFS_ROOT_ADDR, "f", 3 * MiB, 1);
	struct vmfs_fsck_fd_fix fx = { .mask = VMFS_FSCK_FD_NLINK | VMFS_FSCK_FD_TBZ, .nlink = 4, .tbz = 2 };
	struct vmfs_stat st;

	assert_int_equal(vmfs_fsck_fd_set(e->fs, a, &fx), 0);
	assert_int_equal(vmfs_stat(e->fs, a, &st), 0);
	assert_int_equal(st.nlink, 4);
	assert_int_equal(st.tbz, 2);
	assert_int_equal(st.blk_count, 3);
	assert_int_equal(st.size, 3 * MiB);
	fx.mask = VMFS_FSCK_FD_BLKCOUNT;
	fx.blk_count = 9;
	assert_int_equal(vmfs_fsck_fd_set(e->fs, a, &fx), 0);
	assert_int_equal(vmfs_stat(e->fs, a, &st), 0);
	assert_int_equal(st.blk_count, 9);
	assert_int_equal(st.nlink, 4);
	assert_int_equal(vmfs_fsck_fd_set(e->fs, 0x12345671u, &fx), -EUCLEAN);
}

static void test_clone_gives_a_private_copy(void **state)
{
	struct env *e = *state;
	uint32_t a = mkfile(e->fs, VMFS_ROOT_ADDR, "a", 2 * MiB, 2);
	uint32_t b = mkfile(e->fs, VMFS_ROOT_ADDR, "b", 2 * MiB, 3);
	struct vmfs_fd fa, fb;
	struct vmfs_statfs s1, s2;
	uint8_t *x = malloc(MiB), *y = malloc(MiB);
	uint32_t na;

	assert_int_equal(vmfs_fd_read(e->fs, a, &fa, NULL), 0);
	assert_int_equal(vmfs_fd_read(e->fs, b, &fb, NULL), 0);
	/* b's second block now shares a's first (b's own becomes unreferenced) */
	assert_int_equal(vmfs_fsck_ptr_set(e->fs, b, 0, 1, fa.blocks[0]), 0);
	assert_int_equal(vmfs_fs_statfs(e->fs, &s1), 0);
	assert_int_equal(vmfs_fsck_clone_block(e->fs, b, 0, 1, fa.blocks[0], &na), 0);
	assert_int_not_equal(na, fa.blocks[0]);
	assert_int_equal(vmfs_addr_allocated(e->fs, na), 1);
	assert_int_equal(vmfs_fs_statfs(e->fs, &s2), 0);
	assert_int_equal(s2.free_blocks, s1.free_blocks - 1);
	assert_int_equal(vmfs_pread(e->fs, a, x, MiB, 0), (int64_t)MiB);
	assert_int_equal(vmfs_pread(e->fs, b, y, MiB, MiB), (int64_t)MiB);
	assert_memory_equal(x, y, MiB);
	assert_int_equal(vmfs_fd_read(e->fs, b, &fb, NULL), 0);
	assert_int_equal(fb.blocks[1], na);
	/* TBZ: no copy, the flag stays */
	uint32_t t;
	assert_int_equal(vmfs_create(e->fs, VMFS_ROOT_ADDR, "t", 0644, 0, 0, &t), 0);
	assert_int_equal(vmfs_fallocate(e->fs, t, 0, MiB, VMFS_ALLOC_TBZ), 0);
	struct vmfs_fd ft;
	assert_int_equal(vmfs_fd_read(e->fs, t, &ft, NULL), 0);
	assert_true(vmfs_fb_tbz(ft.blocks[0]));
	assert_int_equal(vmfs_fsck_clone_block(e->fs, t, 0, 0, ft.blocks[0], &na), 0);
	assert_true(vmfs_fb_tbz(na));
	assert_int_equal(vmfs_pread(e->fs, t, x, MiB, 0), (int64_t)MiB);
	for (size_t i = 0; i < MiB; i++)
		if (x[i])
			fail_msg("TBZ clone reads non-zero at %zu", i);
	assert_int_equal(vmfs_fsck_clone_block(e->fs, t, 0, 0, 0x12345672u, &na), -EUCLEAN);
	free(x);
	free(y);
}

struct names {
	char n[16][129];
	unsigned cnt;
};
static int collect(void *ctx, const struct vmfs_dirent *de)
{
	struct names *n = ctx;
	if (n->cnt < 16)
		snprintf(n->n[n->cnt++], 129, "%s", de->name);
	return 0;
}

static void test_dirent_add_set_remove(void **state)
{
	struct env *e = *state;
	uint32_t d, f;
	struct names n = { .cnt = 0 };
	struct vmfs_stat st;

	assert_int_equal(vmfs_mkdir(e->fs, VMFS_ROOT_ADDR, "d", 0755, 0, 0, &d), 0);
	f = mkfile(e->fs, d, "a", 10, 4);
	mkfile(e->fs, d, "b", 10, 5);
	mkfile(e->fs, d, "c", 10, 6);
	/* remove "a" (index 2): "c" moves into its place */
	assert_int_equal(vmfs_fsck_dirent_remove(e->fs, d, 2), 0);
	assert_int_equal(vmfs_readdir(e->fs, d, collect, &n), 0);
	assert_int_equal(n.cnt, 4);
	assert_string_equal(n.n[2], "c");
	assert_string_equal(n.n[3], "b");
	assert_int_equal(vmfs_stat(e->fs, d, &st), 0);
	assert_int_equal(st.size, 4 * 140);
	/* put "a" back at the end, rename entry 3 in place */
	struct vmfs_dirent de = { .type = VMFS_TYPE_FILE, .addr = f };
	assert_int_equal(vmfs_stat(e->fs, f, &st), 0);
	de.gen = st.gen;
	strcpy(de.name, "a-again");
	assert_int_equal(vmfs_fsck_dir_add(e->fs, d, &de), 0);
	assert_int_equal(vmfs_lookup(e->fs, d, "a-again", &f), 0);
	strcpy(de.name, "renamed");
	assert_int_equal(vmfs_fsck_dirent_set(e->fs, d, 3, &de), 0);
	n.cnt = 0;
	assert_int_equal(vmfs_readdir(e->fs, d, collect, &n), 0);
	assert_int_equal(n.cnt, 5);
	assert_string_equal(n.n[3], "renamed");
	assert_int_equal(vmfs_fsck_dirent_remove(e->fs, d, 5), -EINVAL);
	assert_int_equal(vmfs_fsck_dirent_set(e->fs, f, 0, &de), -ENOTDIR);
}

static void test_release_frees_everything(void **state)
{
	struct env *e = *state;
	struct vmfs_statfs st;
	uint32_t a = mkfile(e->fs, VMFS_ROOT_ADDR, "big", 3 * MiB + 5, 7);

	assert_int_equal(vmfs_fsck_dirent_remove(e->fs, VMFS_ROOT_ADDR, 9), 0);  /* the name */
	assert_int_equal(vmfs_fsck_fd_release(e->fs, a), 0);
	assert_int_equal(vmfs_fs_statfs(e->fs, &st), 0);
	assert_int_equal(st.free_blocks, e->st0.free_blocks);
	assert_int_equal(st.free_fds, e->st0.free_fds);
	assert_int_equal(vmfs_addr_allocated(e->fs, a), 0);
}

static void test_sector_and_res_offsets(void **state)
{
	struct env *e = *state;
	const struct vmfs_fs_info *i = vmfs_fs_get_info(e->fs);
	uint8_t b[512], r[512];
	uint64_t lv;

	assert_int_equal(vmfs_fsck_res_file_lv(e->fs, VMFS_RES_FDC, 0, 512, &lv), 0);
	assert_int_equal(lv, (uint64_t)i->fdc_base * i->block_size);
	assert_int_equal(vmfs_fsck_res_file_lv(e->fs, VMFS_RES_FDC, MiB - 512, 1024, &lv), -EUCLEAN);
	assert_int_equal(vmfs_fsck_res_file_lv(e->fs, 9, 0, 512, &lv), -EINVAL);
	memset(b, 0xA5, sizeof(b));
	assert_int_equal(vmfs_fsck_write_sector(e->fs, 0x300000 + 512 * 100, b), 0);
	assert_int_equal(vmfs_bdev_read(vmfs_fs_bdev(e->fs), r, 512, 0x300000 + 512 * 100), 0);
	assert_memory_equal(b, r, 512);
	assert_int_equal(vmfs_fsck_write_sector(e->fs, 0x300001, b), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cluster_write_recomputes_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_set_changes_only_counters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clone_gives_a_private_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirent_add_set_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_frees_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sector_and_res_offsets, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
