/* Unit tests: VMFS address codecs and on-disk encode/decode (fs/ondisk.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../fs/ondisk.h"

static void test_addr_examples(void **state)
{
	(void)state;
	/* FORMAT.md §6 examples */
	assert_int_equal(vmfs_addr_type(0x00000141), VMFS_ADDR_FB);
	assert_int_equal(vmfs_fb_block(0x00000141), 5);
	assert_int_equal(vmfs_sb_cluster(0x00000782), 30);
	assert_int_equal(vmfs_sb_item(0x00000782), 0);
	assert_int_equal(vmfs_sb_cluster(0xf000005a), 1);
	assert_int_equal(vmfs_sb_item(0xf000005a), 63);
	assert_int_equal(vmfs_fd_cluster(0x01400004), 0);
	assert_int_equal(vmfs_fd_item(0x01400004), 5);
	assert_int_equal(vmfs_fd_cluster(0x01000184), 6);
	assert_int_equal(vmfs_fd_item(0x01000184), 4);
	assert_int_equal(vmfs_fb_block(0x000096e1), 0x25B);
	assert_true(vmfs_fb_tbz(0x000096e1));
	assert_int_equal(vmfs_fb_make(0x25B, true), 0x000096e1);
	assert_int_equal(vmfs_fd_make(0, 5), 0x01400004);
	assert_int_equal(vmfs_fd_make(6, 4), 0x01000184);
	assert_int_equal(vmfs_sb_make(1, 63), 0xf000005a);
	assert_int_equal(vmfs_sb_make(30, 0), 0x00000782);
	assert_int_equal(VMFS_ROOT_ADDR, vmfs_fd_make(0, 0));
}

static void test_addr_roundtrip(void **state)
{
	(void)state;
	for (uint32_t c = 0; c < (1u << 22); c += 4099)
		for (uint32_t i = 0; i < 64; i++) {
			uint32_t a = vmfs_sb_make(c, i);
			assert_int_equal(vmfs_addr_type(a), VMFS_ADDR_SB);
			assert_int_equal(vmfs_sb_cluster(a), c);
			assert_int_equal(vmfs_sb_item(a), i);
			assert_false(a & 0x20); /* never the TBZ/COW bit on SB */
			if (i < 16) {
				a = vmfs_pb_make(c, i);
				assert_int_equal(vmfs_addr_type(a), VMFS_ADDR_PB);
				assert_int_equal(vmfs_pb_cluster(a), c);
				assert_int_equal(vmfs_pb_item(a), i);
			}
		}
	for (uint32_t c = 0; c < 65536; c += 97)
		for (uint32_t i = 0; i < 1024; i += 31) {
			uint32_t a = vmfs_fd_make(c, i);
			assert_int_equal(vmfs_fd_cluster(a), c);
			assert_int_equal(vmfs_fd_item(a), i);
		}
	for (uint32_t b = 0; b < (1u << 26); b += 65521) {
		assert_int_equal(vmfs_fb_block(vmfs_fb_make(b, false)), b);
		assert_int_equal(vmfs_fb_block(vmfs_fb_make(b, true)), b);
	}
}

static void test_le_helpers(void **state)
{
	uint8_t b[8];
	(void)state;
	od_put32(b, 0x11223344);
	assert_int_equal(b[0], 0x44);
	assert_int_equal(b[3], 0x11);
	od_put64(b, 0x0102030405060708ull);
	assert_int_equal(b[0], 8);
	assert_int_equal(b[7], 1);
	assert_true(od_get64(b) == 0x0102030405060708ull);
	od_put16(b, 0xBEEF);
	assert_int_equal(od_get16(b), 0xBEEF);
}

static void test_fd_roundtrip_keeps_unknown_bytes(void **state)
{
	uint8_t raw[OD_FD_SIZE];
	struct vmfs_fd fd, back;
	(void)state;

	for (unsigned i = 0; i < OD_FD_SIZE; i++)
		raw[i] = (uint8_t)(i * 7 + 3);
	od_fd_decode(raw, &fd);
	fd.size = 123456789012ull;
	fd.zla = OD_ZLA_PB;
	fd.blocks[255] = 0xdeadbeef;
	fd.nlink = 3;
	od_fd_encode(&fd, raw);
	od_fd_decode(raw, &back);
	assert_true(back.size == 123456789012ull);
	assert_int_equal(back.nlink, 3);
	assert_int_equal(back.blocks[255], 0xdeadbeef);
	/* bytes the encoder does not own survive: lock record, ESX fields 0x290.. */
	for (int i = 0; i < 0x200; i++)
		assert_int_equal(raw[i], (uint8_t)(i * 7 + 3));
	for (int i = 0x290; i < 0x400; i++)
		assert_int_equal(raw[i], (uint8_t)(i * 7 + 3));
	/* field offsets (FORMAT.md §7) */
	assert_int_equal(od_get32(raw + 0x208), 3);
	assert_true(od_get64(raw + 0x214) == 123456789012ull);
	assert_int_equal(od_get32(raw + 0x244), OD_ZLA_PB);
	assert_int_equal(od_get32(raw + 0x7FC), 0xdeadbeef);
}

static void test_fd_resident(void **state)
{
	uint8_t raw[OD_FD_SIZE] = { 0 };
	struct vmfs_fd fd = { 0 }, back;
	(void)state;

	fd.zla = OD_ZLA_RESIDENT;
	fd.size = 11;
	memcpy(fd.content, "hello world", 11);
	od_fd_encode(&fd, raw);
	assert_memory_equal(raw + 0x400, "hello world", 11);
	od_fd_decode(raw, &back);
	assert_memory_equal(back.content, "hello world", 11);
}

static void test_dirent(void **state)
{
	uint8_t raw[OD_DIRENT_SIZE];
	struct vmfs_dirent d = { .type = 3, .addr = 0x00400044, .gen = 7 }, back;
	(void)state;

	memset(d.name, 'x', 128);
	d.name[128] = 0;
	od_dirent_encode(&d, raw);
	od_dirent_decode(raw, &back);
	assert_int_equal(back.type, 3);
	assert_int_equal(back.addr, 0x00400044);
	assert_int_equal(back.gen, 7);
	assert_int_equal(strlen(back.name), 127); /* always NUL-terminated on disk */
	assert_int_equal(raw[12 + 127], 0);
}

static void test_fsdesc_lvm(void **state)
{
	uint8_t b[512];
	struct od_fsdesc d = { 0 }, db;
	struct od_lvm_hdr h = { 0 }, hb;
	struct od_lvm_vol v = { 0 }, vb;
	(void)state;

	d.magic = OD_FS_MAGIC;
	d.major = 14;
	d.minor = 81;
	d.block_size = 1 << 20;
	strcpy(d.label, "lbl");
	d.subblock_size = 8192;
	d.lvm_uuid[3] = 9;
	od_fsdesc_encode(&d, b);
	assert_int_equal(od_get32(b), 0x2FABF15E);
	assert_true(od_get64(b + 0xA1) == 1 << 20);
	assert_int_equal(b[0xB1 + 3], 9);
	od_fsdesc_decode(b, &db);
	assert_string_equal(db.label, "lbl");
	assert_int_equal(db.subblock_size, 8192);

	h.magic = OD_LVM_MAGIC;
	h.major = 5;
	h.total_bytes = 0x123456789ull;
	h.num_pes = 4;
	od_lvm_hdr_encode(&h, b);
	assert_int_equal(od_get32(b + 0x5F), (uint32_t)(0x123456789ull >> 8));
	od_lvm_hdr_decode(b, &hb);
	assert_true(hb.total_bytes == 0x123456789ull);
	assert_int_equal(hb.num_pes, 4);

	v.logical_size = 1ull << 30;
	v.first_pe = 2;
	v.last_pe = 5;
	v.num_devs = 2;
	v.lv_uuid[15] = 0x77;
	od_lvm_vol_encode(&v, b);
	assert_int_equal(b[0x54 + 15], 0x77);
	od_lvm_vol_decode(b, &vb);
	assert_true(vb.logical_size == 1ull << 30);
	assert_int_equal(vb.first_pe, 2);
	assert_int_equal(vb.last_pe, 5);
	assert_int_equal(vb.num_devs, 2);
}

static void test_uuid(void **state)
{
	uint8_t u[16], u2[16];
	char s[36];
	(void)state;

	assert_int_equal(od_uuid_parse("49edf844-ebfc28f3-65cb-0021280083cf", u), 0);
	od_uuid_format(u, s);
	assert_string_equal(s, "49edf844-ebfc28f3-65cb-0021280083cf");
	assert_int_equal(u[0], 0x44); /* LE time-low */
	assert_int_equal(u[10], 0x00);
	assert_int_equal(u[15], 0xcf);
	assert_int_equal(od_uuid_parse("49edf844-ebfc28f3-65cb-0021280083c", u2), -EINVAL);
	assert_int_equal(od_uuid_parse("49edf844xebfc28f3-65cb-0021280083cf", u2), -EINVAL);
	assert_int_equal(od_uuid_parse("49edf84g-ebfc28f3-65cb-0021280083cf", u2), -EINVAL);
}

static void test_cluster_and_locks(void **state)
{
	uint8_t b[1024];
	struct vmfs_cluster c = { 0 }, back;
	(void)state;

	memset(b, 0xEE, sizeof(b));
	od_lock_fresh(b, OD_MAGIC_FBB, 0x12345600ull);
	assert_int_equal(od_lock_magic(b), OD_MAGIC_FBB);
	assert_true(od_lock_pos(b) == 0x12345600ull);
	assert_true(od_get64(b + 0x1C) == 1); /* obj_seq */
	assert_int_equal(od_get32(b + 0x24), 0); /* mode free */
	c.id = 9;
	c.total = 200;
	c.free = 199;
	c.ffree = 1;
	memset(c.bitmap, 0xFF, 25);
	c.bitmap[0] = 0xFE;
	od_cluster_meta_encode(&c, b + 512);
	od_cluster_decode(b, &back);
	assert_int_equal(back.lock_magic, OD_MAGIC_FBB);
	assert_int_equal(back.id, 9);
	assert_int_equal(back.total, 200);
	assert_int_equal(back.free, 199);
	assert_int_equal(back.bitmap[0], 0xFE);
	assert_int_equal(b[0x210 + 25], 0xEE); /* bytes past the bitmap are not ours */
	od_hb_fresh(b, 0x300200);
	assert_int_equal(od_get32(b), OD_HB_MAGIC_FREE);
	assert_true(od_get64(b + 4) == 0x300200);
	assert_true(od_get64(b + 0xC) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_examples),
		cmocka_unit_test(test_addr_roundtrip),
		cmocka_unit_test(test_le_helpers),
		cmocka_unit_test(test_fd_roundtrip_keeps_unknown_bytes),
		cmocka_unit_test(test_fd_resident),
		cmocka_unit_test(test_dirent),
		cmocka_unit_test(test_fsdesc_lvm),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_cluster_and_locks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
