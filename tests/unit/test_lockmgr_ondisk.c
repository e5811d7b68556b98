/* Unit tests: heartbeat slot and lock record encode/decode, timeouts. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmfs/lockmgr.h"

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static void test_timeouts(void **st)
{
	struct vmfs_timeouts t;

	(void)st;
	assert_int_equal(vmfs_timeouts_init(&t, 0), 0);
	assert_int_equal(t.io_timeout_us, 2000000);
	assert_int_equal(t.hb_interval_us, 3000000);
	assert_int_equal(t.hb_timeout_us, 16000000);
	assert_int_equal(t.fence_us, 14000000);
	assert_int_equal(vmfs_timeouts_init(&t, 250000), 0);
	assert_int_equal(t.hb_interval_us, 375000);
	assert_int_equal(t.hb_timeout_us, 2000000);
	assert_int_equal(t.fence_us, 1750000);
	assert_true(t.fence_us + t.io_timeout_us <= t.hb_timeout_us);
	assert_int_equal(vmfs_timeouts_init(&t, 5), -EINVAL);
}

static void test_slot_layout(void **st)
{
	struct vmfs_hb_slot s = { 0 }, d;
	uint8_t b[512];

	(void)st;
	s.magic = VMFS_HB_MAGIC_LIVE;
	s.pos = vmfs_hb_slot_off(1795);
	s.seq = 0x1122334455667788ull;
	s.uptime = 123456789;
	for (int i = 0; i < 16; i++)
		s.uuid[i] = (uint8_t)(i + 1);
	s.journal_block = 0x4000123;
	s.journal_off = 0x12345600;
	s.journal_len = 1 << 20;
	s.replay_hb_pos = vmfs_hb_slot_off(3);
	s.replay_hb_gen = 9;
	s.drv_major = 14;
	s.drv_minor = 81;
	strcpy(s.ip, "10.0.0.1");
	vmfs_hb_slot_encode(&s, b);
	/* vmfs-tools' view */
	assert_int_equal(le32(b + 0x00), 0xABCDEF02);
	assert_int_equal(le64(b + 0x04), 0x3E0600);
	assert_int_equal(le64(b + 0x0C), 0x1122334455667788ull);
	assert_int_equal(le64(b + 0x14), 123456789);
	assert_int_equal(b[0x1C], 1);
	assert_int_equal(b[0x2B], 16);
	assert_int_equal(le32(b + 0x2C), 0x4000123);
	assert_int_equal(le32(b + 0x30), 14);
	assert_int_equal(b[0x34], 81);
	assert_string_equal((char *)b + 0x36, "10.0.0.1");
	assert_int_equal(le64(b + 0x64), 0x12345600);
	assert_int_equal(le64(b + 0x94), 0x300600);
	assert_int_equal(le64(b + 0x9C), 9);
	assert_int_equal(vmfs_hb_slot_decode(b, 0x3E0600, &d), 0);
	assert_memory_equal(&d.uuid, s.uuid, 16);
	assert_int_equal(d.seq, s.seq);
	assert_int_equal(d.journal_len, 1 << 20);
	assert_int_equal(d.journal_off, s.journal_off);
	assert_int_equal(d.replay_hb_gen, 9);
	/* wrong position, bad magic, bad replay pointer */
	assert_int_equal(vmfs_hb_slot_decode(b, 0x3E0800, &d), -EUCLEAN);
	b[0] ^= 1;
	assert_int_equal(vmfs_hb_slot_decode(b, 0x3E0600, &d), -EUCLEAN);
	b[0] ^= 1;
	b[0x94] = 7;
	assert_int_equal(vmfs_hb_slot_decode(b, 0x3E0600, &d), -EUCLEAN);
}

static void test_slot_format(void **st)
{
	uint8_t b[512], z[512] = { 0 };
	struct vmfs_hb_slot d;

	(void)st;
	vmfs_hb_slot_format(2047, b);
	assert_int_equal(le32(b), VMFS_HB_MAGIC_FREE);
	assert_int_equal(le64(b + 4), 0x3FFE00);
	assert_memory_equal(b + 12, z, 500);
	assert_int_equal(vmfs_hb_slot_decode(b, 0x3FFE00, &d), 0);
	assert_int_equal(d.seq, 0);
	assert_int_equal(vmfs_hb_slot_of(0x3FFE00), 2047);
	assert_int_equal(vmfs_hb_slot_of(0x400000), -1);
	assert_int_equal(vmfs_hb_slot_of(0x300100), -1);
	assert_int_equal(vmfs_hb_slot_of(0x2FFE00), -1);
}

static void test_lock_layout(void **st)
{
	struct vmfs_lock_rec r, d;
	uint8_t b[512];

	(void)st;
	vmfs_lock_rec_format(VMFS_MAGIC_FD, 236560384, b);
	assert_int_equal(le32(b), 0x10C00001);
	assert_int_equal(le64(b + 4), 236560384);
	assert_int_equal(le64(b + 0x1C), 1);
	assert_int_equal(vmfs_lock_rec_decode(b, 236560384, 0, &d), 0);
	assert_int_equal(d.mode, VMFS_LM_FREE);
	assert_int_equal(d.token, 1);

	memset(b, 0xEE, sizeof(b));   /* bytes beyond the fields are kept */
	memset(&r, 0, sizeof(r));
	r.magic = VMFS_MAGIC_FDC;
	r.pos = 0x1000400;
	r.hb_pos = 0x3E7000;
	r.hb_seq = 6155;
	r.token = 44;
	r.mode = VMFS_LM_EXCL;
	r.uuid[0] = 0xAB;
	r.mtime = 23668;
	vmfs_lock_rec_encode(&r, b);
	assert_int_equal(le64(b + 0x0C), 0x3E7000);
	assert_int_equal(le64(b + 0x14), 6155);
	assert_int_equal(le64(b + 0x1C), 44);
	assert_int_equal(le32(b + 0x24), 1);
	assert_int_equal(b[0x28], 0xAB);
	assert_int_equal(le64(b + 0x38), 23668);
	assert_int_equal(le32(b + 0x40), 0);
	assert_int_equal(b[0x1FF], 0xEE);
	assert_int_equal(vmfs_lock_rec_decode(b, 0x1000400, VMFS_MAGIC_FDC, &d), 0);
	assert_int_equal(d.hb_seq, 6155);
	assert_int_equal(vmfs_lock_rec_decode(b, 0x1000400, VMFS_MAGIC_FD, &d), -EUCLEAN);
	assert_int_equal(vmfs_lock_rec_decode(b, 0x1000800, 0, &d), -EUCLEAN);

	/* shared: holders at 0x44, 32 bytes each */
	r.mode = VMFS_LM_RO;
	r.num_holders = 2;
	r.holders[1].hb_pos = 0x300200;
	r.holders[1].hb_gen = 3;
	r.holders[1].uuid[15] = 0x77;
	r.holders[0].hb_pos = 0x300000;
	vmfs_lock_rec_encode(&r, b);
	assert_int_equal(le32(b + 0x40), 2);
	assert_int_equal(le64(b + 0x44 + 32), 0x300200);
	assert_int_equal(le64(b + 0x44 + 40), 3);
	assert_int_equal(b[0x44 + 32 + 31], 0x77);
	assert_int_equal(vmfs_lock_rec_decode(b, 0x1000400, 0, &d), 0);
	assert_int_equal(d.num_holders, 2);
	/* hostile: 9 holders, unknown mode, owner outside the region */
	b[0x40] = 9;
	assert_int_equal(vmfs_lock_rec_decode(b, 0x1000400, 0, &d), -EUCLEAN);
	b[0x40] = 2;
	b[0x24] = 4;
	assert_int_equal(vmfs_lock_rec_decode(b, 0x1000400, 0, &d), -EUCLEAN);
	b[0x24] = 1;
	b[0x0C] = 0x10;
	assert_int_equal(vmfs_lock_rec_decode(b, 0x1000400, 0, &d), -EUCLEAN);
}

static void test_uuid_str(void **st)
{
	uint8_t u[16] = { 0x44, 0xf8, 0xed, 0x49, 0xf3, 0x28, 0xfc, 0xeb, 0xcb, 0x65,
			  0x00, 0x21, 0x28, 0x00, 0x83, 0xcf };
	char s[36];

	(void)st;
	vmfs_uuid_str(u, s);
	assert_string_equal(s, "49edf844-ebfc28f3-65cb-0021280083cf");
}

/* Hostile bytes: decoders return 0 or -EUCLEAN, never crash, and whatever
 * they accept re-encodes to a record that decodes the same. */
static void test_random_records(void **st)
{
	uint64_t x = 0x1234567;
	uint8_t b[512], e[512];
	int ok_slot = 0, ok_lock = 0;

	(void)st;
	for (int i = 0; i < 200000; i++) {
		struct vmfs_hb_slot s, s2;
		struct vmfs_lock_rec r, r2;

		for (int k = 0; k < 512; k += 8) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			memcpy(b + k, &x, 8);
		}
		/* make some of them nearly valid */
		if (i & 1) {
			uint32_t m = (i & 2) ? VMFS_HB_MAGIC_LIVE : VMFS_MAGIC_FD + (uint32_t)(i % 6);
			uint64_t pos = vmfs_hb_slot_off(7);

			memcpy(b, &m, 4);
			memcpy(b + 4, &pos, 8);
			if (i & 4)
				memset(b + 0x94, 0, 8);
			b[0x24] &= 3;
			memset(b + 0x25, 0, 3);
			b[0x40] &= 7;
			memset(b + 0x41, 0, 3);
			if (i & 8)
				memset(b + 0x0C, 0, 8), memcpy(b + 0x0C, &pos, 8);
		}
		int rs = vmfs_hb_slot_decode(b, vmfs_hb_slot_off(7), &s);
		int rl = vmfs_lock_rec_decode(b, vmfs_hb_slot_off(7), 0, &r);

		assert_true(rs == 0 || rs == -EUCLEAN);
		assert_true(rl == 0 || rl == -EUCLEAN);
		if (rs == 0) {
			ok_slot++;
			vmfs_hb_slot_encode(&s, e);
			assert_int_equal(vmfs_hb_slot_decode(e, vmfs_hb_slot_off(7), &s2), 0);
			assert_int_equal(s2.seq, s.seq);
			assert_memory_equal(s2.uuid, s.uuid, 16);
		}
		if (rl == 0) {
			ok_lock++;
			memcpy(e, b, 512);
			vmfs_lock_rec_encode(&r, e);
			assert_memory_equal(e, b, 512);   /* encode(decode(x)) == x */
			assert_int_equal(vmfs_lock_rec_decode(e, vmfs_hb_slot_off(7), 0, &r2), 0);
		}
	}
	assert_true(ok_slot > 1000);
	assert_true(ok_lock > 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_slot_layout),
		cmocka_unit_test(test_slot_format),
		cmocka_unit_test(test_lock_layout),
		cmocka_unit_test(test_uuid_str),
		cmocka_unit_test(test_random_records),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
