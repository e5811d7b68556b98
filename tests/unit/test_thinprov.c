/*
 * Unit tests of thinprov/ on an in-memory volume: each disk type's block
 * accounting, random writes against a model, TBZ cleared only where written,
 * conversions, clone, punch-zero, and reclaim: every discard the device sees
 * covers only blocks that are free in the bitmap at that moment (a discard of
 * a referenced block would be data loss), and exactly the freed ones.
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
#include "vmfs/thinprov.h"
#include "vmfs/volume.h"
#include "memdev.h"

#define MiB (1ull << 20)

static struct vmfs_fs *g_fs;      /* for the discard check */
static int bad_discards;          /* discards of blocks still allocated */

/* Every discarded block must already be free in the bitmap. */
static void check_discard(struct memdev *m, uint64_t off, uint64_t len)
{
	(void)m;
	if (g_fs) {
		uint64_t bs = vmfs_fs_get_info(g_fs)->block_size;
		/* one extent: LV offset = device offset - 17 MiB (PE data start) */
		for (uint64_t o = off - 17 * MiB; o < off - 17 * MiB + len; o += bs)
			if (vmfs_addr_allocated(g_fs, vmfs_fb_make((uint32_t)(o / bs), false)) != 0)
				bad_discards++;
	}
}

static void quiet(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }

struct env {
	struct memdev *m;
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
};

static int setup_flags(void **state, unsigned fs_flags)
{
	struct env *e = calloc(1, sizeof(*e));
	struct vmfs_mkfs_opts mo = { .label = "tp", .log = quiet };
	struct vmfs_mkfs_result res;
	struct vmfs_volume_opts vo = { .log = quiet };
	struct vmfs_fs_opts fo = { .log = quiet, .flags = fs_flags };
	struct vmfs_bdev *bd = memdev_new(17 * MiB + 256 * MiB, "mem", 0x5A, &e->m);

	e->m->on_discard = check_discard;
	assert_int_equal(vmfs_mkfs(&bd, 1, &mo, &res), 0);
	assert_int_equal(vmfs_volume_open_bdevs(&bd, 1, &vo, &e->vol), 0);
	assert_int_equal(vmfs_fs_open(e->vol, &fo, &e->fs), 0);
	g_fs = e->fs;
	e->m->discards = e->m->discarded = 0;
	bad_discards = 0;
	*state = e;
	return 0;
}

static int setup(void **state)
{
	return setup_flags(state, VMFS_FS_NO_RESIDENT);
}

/* The fs discards what its transactions free (as on every host mount). */
static int setup_fs_discard(void **state)
{
	return setup_flags(state, VMFS_FS_NO_RESIDENT | VMFS_FS_DISCARD);
}

static int teardown(void **state)
{
	struct env *e = *state;

	g_fs = NULL;
	vmfs_fs_close(e->fs);
	vmfs_volume_close(e->vol);
	free(e);
	return 0;
}

static void usage_is(struct vmfs_fs *fs, uint32_t a, int type, uint64_t alloc, uint64_t written)
{
	struct thinprov_usage u;
	struct vmfs_stat st;

	assert_int_equal(thinprov_usage(fs, a, &u), 0);
	assert_int_equal(u.type, type);
	assert_true(u.allocated == alloc);
	assert_true(u.written == written);
	assert_true(u.tbz == alloc - written);
	assert_int_equal(vmfs_stat(fs, a, &st), 0);
	assert_true(st.blk_count * MiB == alloc);
	assert_true((uint64_t)st.tbz * MiB == alloc - written);
}

static void read_is(struct vmfs_fs *fs, uint32_t a, const uint8_t *model, uint64_t size)
{
	uint8_t *b = malloc(size);
	assert_int_equal(vmfs_pread(fs, a, b, size, 0), (int64_t)size);
	assert_memory_equal(b, model, size);
	free(b);
}

static void test_types_and_random_writes(void **state)
{
	struct env *e = *state;
	const uint64_t size = 24 * MiB;
	uint8_t *model = calloc(1, size), *buf = malloc(3 * MiB);
	unsigned seed = 7;

	for (int type = 0; type < 3; type++) {
		char name[16];
		uint32_t a;
		bool touched[24] = { 0 };
		unsigned nt = 0;

		snprintf(name, sizeof(name), "d%d", type);
		memset(model, 0, size);
		assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, name, size, type, NULL, &a), 0);
		assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, name, size, type, NULL, &a), -EEXIST);
		read_is(e->fs, a, model, size);
		usage_is(e->fs, a, type, type == THINPROV_THIN ? 0 : size,
			 type == THINPROV_EAGERZEROEDTHICK ? size : 0);
		for (int i = 0; i < 10; i++) {
			uint64_t off = (uint64_t)rand_r(&seed) % size;
			uint64_t len = 1 + (uint64_t)rand_r(&seed) % (3 * MiB);
			if (len > size - off)
				len = size - off;
			for (uint64_t k = 0; k < len; k++)
				buf[k] = (uint8_t)(rand_r(&seed) | 1);
			int64_t w = i % 2 ? thinprov_pwrite(e->fs, a, buf, len, off, NULL)
					  : vmfs_pwrite(e->fs, a, buf, len, off);
			assert_int_equal(w, (int64_t)len);
			memcpy(model + off, buf, len);
			for (uint64_t b = off / MiB; b <= (off + len - 1) / MiB; b++)
				if (!touched[b]) {
					touched[b] = true;
					nt++;
				}
		}
		read_is(e->fs, a, model, size);
		if (type == THINPROV_THIN)
			usage_is(e->fs, a, THINPROV_THIN, nt * MiB, nt * MiB);
		else if (type == THINPROV_ZEROEDTHICK)
			usage_is(e->fs, a, nt == 24 ? THINPROV_EAGERZEROEDTHICK : THINPROV_ZEROEDTHICK, size,
				 nt * MiB);
		else
			usage_is(e->fs, a, THINPROV_EAGERZEROEDTHICK, size, size);
		/* TBZ exactly where not written */
		for (uint64_t b = 0; b < 24; b++) {
			struct vmfs_extent x;
			assert_int_equal(vmfs_map(e->fs, a, b * MiB, MiB, &x), 0);
			if (type == THINPROV_ZEROEDTHICK)
				assert_int_equal(x.state, touched[b] ? VMFS_EXT_ALLOCATED : VMFS_EXT_TBZ);
			if (type == THINPROV_THIN)
				assert_int_equal(x.state, touched[b] ? VMFS_EXT_ALLOCATED : VMFS_EXT_HOLE);
		}
		/* inflate keeps content and leaves nothing TBZ or hole */
		assert_int_equal(thinprov_inflate(e->fs, a, NULL), 0);
		read_is(e->fs, a, model, size);
		usage_is(e->fs, a, THINPROV_EAGERZEROEDTHICK, size, size);
	}
	assert_int_equal(bad_discards, 0);
	free(model);
	free(buf);
}

static void test_extend_keeps_type_and_shrink_refused(void **state)
{
	struct env *e = *state;
	struct thinprov_opts force = { .flags = THINPROV_FORCE };
	struct thinprov_reclaim rc = { 0 };
	uint32_t a[3];

	for (int t = 0; t < 3; t++) {
		char n[16];
		snprintf(n, sizeof(n), "x%d", t);
		assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, n, 3 * MiB + 512, t, NULL, &a[t]), 0);
		assert_int_equal(thinprov_extend(e->fs, a[t], 9 * MiB, NULL, NULL), 0);
		usage_is(e->fs, a[t], t, t ? 9 * MiB : 0, t == 2 ? 9 * MiB : 0);
		assert_int_equal(thinprov_extend(e->fs, a[t], 2 * MiB, NULL, NULL), -EINVAL);
	}
	assert_int_equal(thinprov_extend(e->fs, a[2], 2 * MiB, &force, &rc), 0);
	assert_true(rc.freed == 7 * MiB && rc.discarded == 7 * MiB);
	usage_is(e->fs, a[2], THINPROV_EAGERZEROEDTHICK, 2 * MiB, 2 * MiB);
	assert_int_equal(bad_discards, 0);
	assert_int_equal(thinprov_type_parse("bogus", &(int){ 0 }), -EINVAL);
	assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "bad", MiB, 9, NULL, &a[0]), -EINVAL);
}

static void test_reclaim_discards_only_freed_blocks(void **state)
{
	struct env *e = *state;
	struct thinprov_reclaim rc = { 0 };
	struct vmfs_statfs s0, s1;
	uint8_t *buf = malloc(MiB);
	uint32_t a, b;

	memset(buf, 0xC3, MiB);
	assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "k", 16 * MiB, THINPROV_EAGERZEROEDTHICK,
					 NULL, &a), 0);
	assert_int_equal(thinprov_pwrite(e->fs, a, buf, MiB, 5 * MiB, NULL), (int64_t)MiB);
	assert_int_equal(thinprov_pwrite(e->fs, a, buf, 100, 9 * MiB + 3, NULL), 100);
	assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "other", 4 * MiB, THINPROV_ZEROEDTHICK,
					 NULL, &b), 0);
	assert_int_equal(vmfs_fs_statfs(e->fs, &s0), 0);
	/* punch-zero: the 14 zero blocks freed in place, in batches of 2 blocks
	 * (chunk 128 KiB x 16), the file keeps its address */
	{
		struct thinprov_opts small = { .chunk = 128 << 10 };
		uint32_t a0 = a;
		assert_int_equal(thinprov_punch_zero(e->fs, VMFS_ROOT_ADDR, "k", &a, &small, &rc), 0);
		assert_true(a == a0);
	}
	usage_is(e->fs, a, THINPROV_THIN, 2 * MiB, 2 * MiB);
	assert_int_equal(vmfs_fs_statfs(e->fs, &s1), 0);
	assert_true(s1.free_blocks == s0.free_blocks + 14);
	assert_true(rc.freed == 14 * MiB && rc.discarded == 14 * MiB);
	{
		uint8_t got[100];
		assert_int_equal(vmfs_pread(e->fs, a, got, 100, 9 * MiB + 3), 100);
		assert_memory_equal(got, buf, 100);
	}
	/* a zeroedthick disk: every TBZ block is freed */
	memset(&rc, 0, sizeof(rc));
	assert_int_equal(thinprov_punch_zero(e->fs, VMFS_ROOT_ADDR, "other", &b, NULL, &rc), 0);
	assert_true(rc.freed == 4 * MiB);
	usage_is(e->fs, b, THINPROV_THIN, 0, 0);
	/* punch-hole at the tail frees, in the middle zeroes */
	memset(&rc, 0, sizeof(rc));
	assert_int_equal(thinprov_punch_hole(e->fs, a, 9 * MiB, 7 * MiB, NULL, &rc), 0);
	assert_true(rc.freed == MiB);
	usage_is(e->fs, a, THINPROV_THIN, MiB, MiB);
	/* unlink reclaims everything */
	memset(&rc, 0, sizeof(rc));
	assert_int_equal(thinprov_unlink(e->fs, VMFS_ROOT_ADDR, "k", NULL, &rc), 0);
	assert_true(rc.freed == MiB && rc.discarded == MiB);
	/* clone: holes stay holes */
	{
		uint32_t c, d;
		assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "c", 8 * MiB, THINPROV_EAGERZEROEDTHICK,
						 NULL, &c), 0);
		assert_int_equal(thinprov_pwrite(e->fs, c, buf, MiB, 2 * MiB, NULL), (int64_t)MiB);
		assert_int_equal(thinprov_clone(e->fs, c, VMFS_ROOT_ADDR, "c2", THINPROV_THIN, NULL, &d), 0);
		usage_is(e->fs, d, THINPROV_THIN, MiB, MiB);
		assert_int_equal(thinprov_clone(e->fs, c, VMFS_ROOT_ADDR, "c3", THINPROV_EAGERZEROEDTHICK, NULL,
						&d), 0);
		usage_is(e->fs, d, THINPROV_EAGERZEROEDTHICK, 8 * MiB, 8 * MiB);
		uint8_t *x = malloc(8 * MiB);
		assert_int_equal(vmfs_pread(e->fs, c, x, 8 * MiB, 0), (int64_t)(8 * MiB));
		read_is(e->fs, d, x, 8 * MiB);
		free(x);
	}
	/* datastore-wide: exactly the free blocks */
	memset(&rc, 0, sizeof(rc));
	assert_int_equal(vmfs_fs_statfs(e->fs, &s1), 0);
	assert_int_equal(thinprov_reclaim_free(e->fs, NULL, &rc), 0);
	assert_true(rc.freed == s1.free_blocks * MiB);
	assert_true(rc.discarded == rc.freed);
	assert_int_equal(bad_discards, 0);
	{
		struct thinprov_ds_usage du;
		assert_int_equal(thinprov_ds_usage(e->fs, &du), 0);
		assert_true(du.free == s1.free_blocks * MiB);
		assert_true(du.provisioned >= 4 * MiB + 24 * MiB);
		assert_true(du.allocated == du.written + du.tbz);
	}
	free(buf);
}

/* Extents of allocated blocks of @a (LV-contiguous runs). */
static unsigned extents(struct vmfs_fs *fs, uint32_t a, uint64_t size)
{
	unsigned n = 0;

	for (uint64_t off = 0; off < size;) {
		struct vmfs_extent x;
		assert_int_equal(vmfs_map(fs, a, off, 0, &x), 0);
		n += x.state == VMFS_EXT_ALLOCATED;
		off = x.file_off + x.len;
	}
	return n;
}

static void test_allocation_locality(void **state)
{
	struct env *e = *state;
	uint8_t *buf = malloc(MiB);
	uint32_t a, b, f, c;

	memset(buf, 0x6B, MiB);
	/* two disks growing at the same time do not interleave block by block:
	 * each continues after its own previous block, a run that cannot
	 * continue starts a free window of 32 blocks */
	assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "a", 64 * MiB, THINPROV_THIN, NULL, &a), 0);
	assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "b", 64 * MiB, THINPROV_THIN, NULL, &b), 0);
	for (uint64_t off = 0; off < 64 * MiB; off += MiB) {
		assert_int_equal(vmfs_pwrite(e->fs, a, buf, MiB, off), (int64_t)MiB);
		assert_int_equal(vmfs_pwrite(e->fs, b, buf, MiB, off), (int64_t)MiB);
	}
	assert_true(extents(e->fs, a, 64 * MiB) <= 3);
	assert_true(extents(e->fs, b, 64 * MiB) <= 3);
	assert_int_equal(thinprov_unlink(e->fs, VMFS_ROOT_ADDR, "a", NULL, NULL), 0);
	assert_int_equal(thinprov_unlink(e->fs, VMFS_ROOT_ADDR, "b", NULL, NULL), 0);
	/* fragmented free space (every other block of f freed): a sequential
	 * write does not fill the single-block holes */
	assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "f", 64 * MiB, THINPROV_EAGERZEROEDTHICK, NULL,
					 &f), 0);
	for (uint64_t blk = 0; blk < 64; blk += 2)
		assert_int_equal(vmfs_punch(e->fs, f, blk * MiB, MiB), 0);
	assert_int_equal(extents(e->fs, f, 64 * MiB), 32);
	assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "c", 32 * MiB, THINPROV_THIN, NULL, &c), 0);
	for (uint64_t off = 0; off < 32 * MiB; off += MiB)
		assert_int_equal(vmfs_pwrite(e->fs, c, buf, MiB, off), (int64_t)MiB);
	assert_true(extents(e->fs, c, 32 * MiB) <= 2);
	/* and so is a clone of it (one write of 32 blocks) */
	assert_int_equal(thinprov_clone(e->fs, c, VMFS_ROOT_ADDR, "c2", THINPROV_THIN, NULL, &a), 0);
	assert_true(extents(e->fs, a, 32 * MiB) <= 2);
	free(buf);
}

/* With VMFS_FS_DISCARD the fs discards freed blocks inside the committing
 * transaction; thinprov must report those bytes and not discard them again:
 * the device sees every freed byte exactly once. */
static void test_fs_discard_counted_once(void **state)
{
	struct env *e = *state;
	struct thinprov_reclaim rc = { 0 };
	struct thinprov_opts force = { .flags = THINPROV_FORCE };
	uint8_t *buf = malloc(MiB);
	uint64_t freed = 0, discarded = 0;
	uint32_t a, b;

	assert_true(vmfs_fs_discards(e->fs));
	memset(buf, 0x6B, MiB);
	assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "d", 16 * MiB, THINPROV_THIN, NULL, &a), 0);
	for (uint64_t off = 0; off < 12 * MiB; off += MiB)
		assert_int_equal(thinprov_pwrite(e->fs, a, buf, MiB, off, NULL), (int64_t)MiB);
	assert_true(e->m->discards == 0 && e->m->discarded == 0);
	/* punch-hole of 3 whole blocks */
	assert_int_equal(thinprov_punch_hole(e->fs, a, 2 * MiB, 3 * MiB, NULL, &rc), 0);
	assert_true(rc.freed == 3 * MiB);
	assert_true(rc.discarded == 3 * MiB);
	assert_true(e->m->discarded == 3 * MiB);
	freed += rc.freed;
	discarded += rc.discarded;
	/* punch-zero: 4 zero blocks in place (6, 7, 8 and 10) */
	memset(buf, 0, MiB);
	for (uint64_t blk = 6; blk <= 10; blk++)
		if (blk != 9)
			assert_int_equal(vmfs_pwrite(e->fs, a, buf, MiB, blk * MiB), (int64_t)MiB);
	memset(&rc, 0, sizeof(rc));
	assert_int_equal(thinprov_punch_zero(e->fs, VMFS_ROOT_ADDR, "d", &a, NULL, &rc), 0);
	assert_true(rc.freed == 4 * MiB);
	assert_true(rc.discarded == 4 * MiB);
	freed += rc.freed;
	discarded += rc.discarded;
	/* a forced shrink to 11 MiB frees block 11 */
	memset(&rc, 0, sizeof(rc));
	assert_int_equal(thinprov_extend(e->fs, a, 11 * MiB, &force, &rc), 0);
	assert_true(rc.freed == MiB && rc.discarded == MiB);
	freed += rc.freed;
	discarded += rc.discarded;
	/* delete: the rest (blocks 0, 1, 5, 9) */
	memset(&rc, 0, sizeof(rc));
	assert_int_equal(thinprov_unlink(e->fs, VMFS_ROOT_ADDR, "d", NULL, &rc), 0);
	assert_true(rc.freed == 4 * MiB && rc.discarded == 4 * MiB);
	freed += rc.freed;
	discarded += rc.discarded;
	/* THINPROV_NO_DISCARD cannot stop the fs: the report says what happened */
	{
		struct thinprov_opts nod = { .flags = THINPROV_NO_DISCARD };
		assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "z", 2 * MiB, THINPROV_ZEROEDTHICK,
						 NULL, &b), 0);
		memset(&rc, 0, sizeof(rc));
		assert_int_equal(thinprov_unlink(e->fs, VMFS_ROOT_ADDR, "z", &nod, &rc), 0);
		assert_true(rc.freed == 2 * MiB && rc.discarded == 2 * MiB);
		freed += rc.freed;
		discarded += rc.discarded;
	}
	assert_true(freed == 14 * MiB);
	assert_true(discarded == freed);
	assert_true(e->m->discarded == freed);     /* once each, not twice */
	assert_int_equal(bad_discards, 0);
	free(buf);
}

static int cancel_cb(void *ctx, uint64_t done, uint64_t total)
{
	(void)total;
	*(uint64_t *)ctx = done;
	return done >= 2 * MiB;
}

static void test_progress_and_cancel(void **state)
{
	struct env *e = *state;
	uint64_t seen = 0;
	struct thinprov_opts o = { .progress = cancel_cb, .progress_ctx = &seen, .chunk = MiB };
	uint32_t a;

	assert_int_equal(thinprov_create(e->fs, VMFS_ROOT_ADDR, "p", 8 * MiB, THINPROV_EAGERZEROEDTHICK, &o, &a),
			 -ECANCELED);
	assert_true(seen == 2 * MiB);
	assert_int_equal(vmfs_lookup(e->fs, VMFS_ROOT_ADDR, "p", &a), -ENOENT);   /* removed again */
}

/* VMDK descriptors: one flat extent is followed; none or several, or text
 * that is no descriptor, are told apart. */
static void test_vmdk_descriptor_parse(void **st)
{
	struct thinprov_vmdk d;

	(void)st;
	assert_int_equal(thinprov_vmdk_parse("# Disk DescriptorFile\nversion=1\n"
					     "createType=\"vmfs\"\n\n# Extent description\n"
					     "RW 8192 VMFS \"d-flat.vmdk\"\n\n"
					     "ddb.thinProvisioned = \"1\"\n", &d), 1);
	assert_string_equal(d.flat, "d-flat.vmdk");
	assert_int_equal(d.sectors, 8192);
	assert_true(d.thin);
	assert_false(d.rdonly);
	assert_int_equal(thinprov_vmdk_parse("# Disk DescriptorFile\nRDONLY 16 FLAT \"/x/y.img\"", &d), 1);
	assert_string_equal(d.flat, "/x/y.img");
	assert_true(d.rdonly);
	assert_false(d.thin);
	assert_int_equal(thinprov_vmdk_parse("# Disk DescriptorFile\nRW 1 VMFS \"a\"\nRW 1 VMFS \"b\"\n", &d),
			 -EOPNOTSUPP);
	assert_int_equal(thinprov_vmdk_parse("# Disk DescriptorFile\nRW 1 VMFSSPARSE \"a-delta.vmdk\"\n", &d),
			 -EOPNOTSUPP);
	assert_int_equal(thinprov_vmdk_parse("KDMV raw bytes of a sparse extent", &d), 0);
	assert_int_equal(thinprov_vmdk_parse("", &d), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_types_and_random_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extend_keeps_type_and_shrink_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_discards_only_freed_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fs_discard_counted_once, setup_fs_discard, teardown),
		cmocka_unit_test_setup_teardown(test_progress_and_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_allocation_locality, setup, teardown),
		cmocka_unit_test(test_vmdk_descriptor_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
