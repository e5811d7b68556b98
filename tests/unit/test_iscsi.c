/* Unit tests of the iSCSI target's pieces: CRC32C, key=value text, PDU
 * header checks, LUN specs, and the SCSI command set on a temp-file LUN
 * (no network). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../iscsi/crc32c.h"
#include "../../iscsi/pdu.h"
#include "../../iscsi/scsi.h"
#include "../../iscsi/target.h"

static void test_crc32c_vectors(void **state)
{
	uint8_t b[32];

	for (int soft = 0; soft < 2; soft++) {
		iscsi_crc32c_force_soft(soft);
		memset(b, 0, sizeof(b));
		assert_int_equal(iscsi_crc32c(b, 32), 0x8a9136aau);  /* RFC 3720 B.4 */
		memset(b, 0xff, sizeof(b));
		assert_int_equal(iscsi_crc32c(b, 32), 0x62a8ab43u);
		for (int i = 0; i < 32; i++)
			b[i] = (uint8_t)i;
		assert_int_equal(iscsi_crc32c(b, 32), 0x46dd794eu);
		for (int i = 0; i < 32; i++)
			b[i] = (uint8_t)(31 - i);
		assert_int_equal(iscsi_crc32c(b, 32), 0x113fdb5cu);
	}
	iscsi_crc32c_force_soft(0);
}

static void test_crc32c_hw_equals_soft(void **state)
{
	uint8_t buf[4099];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (size_t off = 0; off < 9; off++) {
		uint32_t a, b;

		iscsi_crc32c_force_soft(1);
		a = iscsi_crc32c(buf + off, sizeof(buf) - off);
		iscsi_crc32c_force_soft(0);
		b = iscsi_crc32c(buf + off, sizeof(buf) - off);
		assert_int_equal(a, b);
	}
}

static void test_kv(void **state)
{
	char text[] = "InitiatorName=iqn.x\0HeaderDigest=CRC32C,None\0Empty=\0\0\0";
	char bad1[] = "NoEquals\0";
	char bad2[] = "=value\0";
	struct kv kv[KV_MAX];
	uint8_t bin[32];
	uint64_t v;

	assert_int_equal(kv_parse(text, sizeof(text) - 1, kv, KV_MAX), 3);
	assert_string_equal(kv[0].key, "InitiatorName");
	assert_string_equal(kv[1].val, "CRC32C,None");
	assert_string_equal(kv[2].val, "");
	assert_int_equal(kv_parse(bad1, sizeof(bad1) - 1, kv, KV_MAX), -EINVAL);
	assert_int_equal(kv_parse(bad2, sizeof(bad2) - 1, kv, KV_MAX), -EINVAL);
	assert_int_equal(kv_number("262144", &v), 0);
	assert_int_equal(v, 262144);
	assert_int_equal(kv_number("0x10", &v), 0);
	assert_int_equal(v, 16);
	assert_int_equal(kv_number("12a", &v), -EINVAL);
	assert_int_equal(kv_number("", &v), -EINVAL);
	assert_int_equal(kv_binary("0x0aff", bin, sizeof(bin)), 2);
	assert_int_equal(bin[0], 0x0a);
	assert_int_equal(bin[1], 0xff);
	assert_int_equal(kv_binary("0bAQID", bin, sizeof(bin)), 3);
	assert_int_equal(bin[2], 3);
	assert_int_equal(kv_binary("0xzz", bin, sizeof(bin)), -EINVAL);
	assert_int_equal(kv_binary("plain", bin, sizeof(bin)), -EINVAL);
}

static void test_header_check(void **state)
{
	uint8_t h[48] = { 0 };
	struct pdu_layout lay;

	h[0] = OP_SCSI_CMD;
	h[1] = 0x80;
	put_be24(h + 5, 5);
	assert_int_equal(pdu_check_header(h, 8192, false, false, &lay), 0);
	assert_int_equal(lay.total, 48 + 8);
	assert_int_equal(pdu_check_header(h, 8192, true, true, &lay), 0);
	assert_int_equal(lay.total, 48 + 4 + 8 + 4);
	put_be24(h + 5, 8193);
	assert_int_equal(pdu_check_header(h, 8192, false, false, &lay), -EMSGSIZE);
	put_be24(h + 5, 0);
	h[0] = 0x1c;
	assert_int_equal(pdu_check_header(h, 8192, false, false, &lay), -EOPNOTSUPP);
	h[0] = OP_TMF_REQ;
	h[4] = 1; /* AHS where none may be */
	assert_int_equal(pdu_check_header(h, 8192, false, false, &lay), -EPROTO);
	assert_true(sn_lt(0xfffffff0u, 5));
	assert_false(sn_lt(5, 0xfffffff0u));
}

static void test_lun_spec(void **state)
{
	struct iscsi_lun_spec s;
	char err[256], buf[2048];

	assert_int_equal(iscsi_lun_spec_parse("iqn.2024-01.org.x:t,file:/a/b,chap=u:secretsecret,"
					      "mutual=m:othersecret1,initiators=iqn.2024-01.a:1;iqn.2024-01.a:2,thin,lun=3",
					      &s, err, sizeof(err)), 0);
	assert_string_equal(s.iqn, "iqn.2024-01.org.x:t");
	assert_string_equal(s.path, "file:/a/b");
	assert_string_equal(s.chap_user, "u");
	assert_string_equal(s.mutual_secret, "othersecret1");
	assert_int_equal(s.ninitiators, 2);
	assert_true(s.thin);
	assert_int_equal(s.lun, 3);
	iscsi_lun_spec_format(&s, buf, sizeof(buf));
	assert_int_equal(iscsi_lun_spec_parse(buf, &s, err, sizeof(err)), 0);
	assert_int_equal(s.lun, 3);
	assert_int_equal(iscsi_lun_spec_parse("IQN.bad,file:/x", &s, err, sizeof(err)), -EINVAL);
	assert_int_equal(iscsi_lun_spec_parse("iqn.2024-01.a:b", &s, err, sizeof(err)), -EINVAL);
	assert_int_equal(iscsi_lun_spec_parse("iqn.2024-01.a:b,file:/x,chap=nocolon", &s, err,
					      sizeof(err)), -EINVAL);
	assert_int_equal(iscsi_lun_spec_parse("iqn.2024-01.a:b,file:/x,mutual=a:b", &s, err,
					      sizeof(err)), -EINVAL);
	assert_int_equal(iscsi_lun_spec_parse("iqn.2024-01.a:b,file:/x,bogus", &s, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "unknown LUN option"));
}

/* ---- SCSI on a file LUN ----------------------------------------------------------- */

struct fx {
	char path[64];
	struct scsi_lun lun;
	struct scsi_nexus a, b;
	uint8_t in[65536];
	struct iovec iov;
};

static int lun_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct backing *bs;
	char err[256], spec[128];
	int fd;

	strcpy(f->path, "/tmp/iscsi-ut-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 << 20), 0);
	close(fd);
	snprintf(spec, sizeof(spec), "file:%s", f->path);
	assert_int_equal(backing_open(spec, true, &bs, err, sizeof(err)), 0);
	assert_int_equal(scsi_lun_init(&f->lun, bs, 0, 0x1122334455667788ull, "iqn.2024-01.t:x"), 0);
	strcpy(f->a.name, "iqn.2024-01.i:a,i,0x400000000001");
	strcpy(f->b.name, "iqn.2024-01.i:b,i,0x400000000002");
	f->a.rel_port = f->b.rel_port = 1;
	*state = f;
	return 0;
}

static int lun_teardown(void **state)
{
	struct fx *f = *state;

	scsi_lun_destroy(&f->lun);
	unlink(f->path);
	free(f);
	return 0;
}

static struct scsi_task run(struct fx *f, struct scsi_nexus *n, const uint8_t *cdb, unsigned len,
			    const void *out, uint32_t out_len, uint32_t in_cap)
{
	struct scsi_task t = { 0 };

	memset(f->in, 0, sizeof(f->in));
	f->iov.iov_base = f->in;
	f->iov.iov_len = in_cap;
	t.cdb = cdb;
	t.cdb_len = len;
	t.nexus = n;
	t.lun = &f->lun;
	t.out = out;
	t.out_len = out_len;
	t.in_iov = &f->iov;
	t.in_iovcnt = 1;
	t.in_cap = in_cap;
	scsi_exec(&t);
	return t;
}

static uint16_t asc_of(const struct scsi_task *t)
{
	return (uint16_t)(t->sense[12] << 8 | t->sense[13]);
}

static void test_inquiry_capacity(void **state)
{
	struct fx *f = *state;
	uint8_t inq[6] = { 0x12, 0, 0, 0, 96, 0 };
	uint8_t vpd83[6] = { 0x12, 1, 0x83, 0, 255, 0 };
	uint8_t rc16[16] = { 0x9e, 0x10 };
	struct scsi_task t;

	t = run(f, &f->a, inq, 6, NULL, 0, 96);
	assert_int_equal(t.status, SAM_GOOD);
	assert_memory_equal(f->in + 8, "OpenVMFS", 8);
	t = run(f, &f->a, vpd83, 6, NULL, 0, 255);
	assert_int_equal(t.status, SAM_GOOD);
	assert_int_equal(f->in[1], 0x83);
	assert_int_equal(f->in[5], 0x03);            /* first designator: NAA */
	assert_int_equal(f->in[8] >> 4, 6);
	put_be32(rc16 + 10, 32);
	t = run(f, &f->a, rc16, 16, NULL, 0, 32);
	assert_int_equal(t.status, SAM_GOOD);
	assert_int_equal(get_be64(f->in), (4 << 20) / 512 - 1);
	assert_int_equal(f->in[14] & 0xc0, 0xc0);    /* LBPME, LBPRZ */
	inq[2] = 0x80;                               /* page code without EVPD */
	t = run(f, &f->a, inq, 6, NULL, 0, 96);
	assert_int_equal(t.status, SAM_CHECK_CONDITION);
	assert_int_equal(asc_of(&t), ASC_INVALID_FIELD_CDB);
}

static void test_rw_and_range(void **state)
{
	struct fx *f = *state;
	uint8_t w[10] = { 0x2a, 0, 0, 0, 0, 10, 0, 0, 2, 0 };
	uint8_t r[10] = { 0x28, 0, 0, 0, 0, 10, 0, 0, 2, 0 };
	uint8_t data[1024];
	struct scsi_task t;

	memset(data, 0x5a, sizeof(data));
	t = run(f, &f->a, w, 10, data, sizeof(data), 0);
	assert_int_equal(t.status, SAM_GOOD);
	t = run(f, &f->a, r, 10, NULL, 0, 1024);
	assert_int_equal(t.status, SAM_GOOD);
	assert_int_equal(t.in_len, 1024);
	assert_memory_equal(f->in, data, 1024);
	put_be32(r + 2, 8191);                       /* last LBA + 1 block past */
	t = run(f, &f->a, r, 10, NULL, 0, 1024);
	assert_int_equal(t.status, SAM_CHECK_CONDITION);
	assert_int_equal(t.sense[2], SK_ILLEGAL_REQUEST);
	assert_int_equal(asc_of(&t), ASC_LBA_OUT_OF_RANGE);
	r[1] = 0x20;                                 /* RDPROTECT without PI */
	put_be32(r + 2, 0);
	t = run(f, &f->a, r, 10, NULL, 0, 1024);
	assert_int_equal(asc_of(&t), ASC_INVALID_FIELD_CDB);
}

static void test_compare_and_write(void **state)
{
	struct fx *f = *state;
	uint8_t caw[16] = { 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0 };
	uint8_t buf[1024];
	struct scsi_task t;

	memset(buf, 0, 512);                         /* expect zeros (fresh file) */
	memset(buf + 512, 'N', 512);
	t = run(f, &f->a, caw, 16, buf, 1024, 0);
	assert_int_equal(t.status, SAM_GOOD);
	memset(buf, 'N', 512);
	buf[100] = 'X';                              /* miscompare at byte 100 */
	t = run(f, &f->b, caw, 16, buf, 1024, 0);
	assert_int_equal(t.status, SAM_CHECK_CONDITION);
	assert_int_equal(t.sense[2], SK_MISCOMPARE);
	assert_int_equal(asc_of(&t), ASC_MISCOMPARE_VERIFY);
	assert_true(t.sense[0] & 0x80);              /* VALID: offset in INFORMATION */
	assert_int_equal(get_be32(t.sense + 3), 100);
	t = run(f, &f->a, caw, 16, buf, 512, 0);     /* short data-out */
	assert_int_equal(t.status, SAM_CHECK_CONDITION);
}

static void test_persistent_reservation(void **state)
{
	struct fx *f = *state;
	uint8_t prout[10] = { 0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0 };
	uint8_t prin[10] = { 0x5e, 0, 0, 0, 0, 0, 0, 0, 64, 0 };
	uint8_t w[10] = { 0x2a, 0, 0, 0, 0, 30, 0, 0, 1, 0 };
	uint8_t r[10] = { 0x28, 0, 0, 0, 0, 30, 0, 0, 1, 0 };
	uint8_t p[24] = { 0 }, blk[512] = { 0 };
	struct scsi_task t;

	put_be64(p + 8, 0xaa);                       /* A registers key 0xaa */
	t = run(f, &f->a, prout, 10, p, 24, 0);
	assert_int_equal(t.status, SAM_GOOD);
	memset(p, 0, 24);
	put_be64(p, 0xaa);                           /* A reserves, write exclusive */
	prout[1] = 1;
	prout[2] = 1;
	t = run(f, &f->a, prout, 10, p, 24, 0);
	assert_int_equal(t.status, SAM_GOOD);
	t = run(f, &f->b, w, 10, blk, 512, 0);
	assert_int_equal(t.status, SAM_RESERVATION_CONFLICT);
	t = run(f, &f->b, r, 10, NULL, 0, 512);
	assert_int_equal(t.status, SAM_GOOD);
	t = run(f, &f->a, w, 10, blk, 512, 0);
	assert_int_equal(t.status, SAM_GOOD);
	t = run(f, &f->b, prin, 10, NULL, 0, 64);    /* READ KEYS */
	assert_int_equal(t.status, SAM_GOOD);
	assert_int_equal(get_be32(f->in + 4), 8);
	assert_int_equal(get_be64(f->in + 8), 0xaa);
	prout[1] = 3;                                /* CLEAR by a non-registrant */
	t = run(f, &f->b, prout, 10, p, 24, 0);
	assert_int_equal(t.status, SAM_RESERVATION_CONFLICT);
	t = run(f, &f->a, prout, 10, p, 24, 0);      /* CLEAR by A */
	assert_int_equal(t.status, SAM_GOOD);
	t = run(f, &f->b, w, 10, blk, 512, 0);
	assert_int_equal(t.status, SAM_GOOD);
}

static void test_unmap_and_lba_status(void **state)
{
	struct fx *f = *state;
	uint8_t w[10] = { 0x2a, 0, 0, 0, 0x10, 0, 0, 0, 16, 0 };   /* LBA 4096, 16 blocks */
	uint8_t unmap[10] = { 0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0 };
	uint8_t gls[16] = { 0x9e, 0x12 };
	uint8_t data[8192], p[24] = { 0 };
	struct scsi_task t;

	memset(data, 1, sizeof(data));
	t = run(f, &f->a, w, 10, data, sizeof(data), 0);
	assert_int_equal(t.status, SAM_GOOD);
	put_be64(gls + 2, 4096);
	put_be32(gls + 10, 64);
	t = run(f, &f->a, gls, 16, NULL, 0, 64);
	assert_int_equal(t.status, SAM_GOOD);
	assert_int_equal(get_be64(f->in + 8), 4096);
	assert_int_equal(f->in[8 + 12], 0);          /* mapped */
	put_be16(p, 22);
	put_be16(p + 2, 16);
	put_be64(p + 8, 4096);
	put_be32(p + 16, 16);
	t = run(f, &f->a, unmap, 10, p, 24, 0);
	assert_int_equal(t.status, SAM_GOOD);
	t = run(f, &f->a, gls, 16, NULL, 0, 64);
	assert_int_equal(t.status, SAM_GOOD);
	assert_int_equal(f->in[8 + 12], 1);          /* deallocated */
	put_be64(p + 8, 8190);                        /* beyond the end */
	t = run(f, &f->a, unmap, 10, p, 24, 0);
	assert_int_equal(asc_of(&t), ASC_LBA_OUT_OF_RANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_vectors),
		cmocka_unit_test(test_crc32c_hw_equals_soft),
		cmocka_unit_test(test_kv),
		cmocka_unit_test(test_header_check),
		cmocka_unit_test(test_lun_spec),
		cmocka_unit_test_setup_teardown(test_inquiry_capacity, lun_setup, lun_teardown),
		cmocka_unit_test_setup_teardown(test_rw_and_range, lun_setup, lun_teardown),
		cmocka_unit_test_setup_teardown(test_compare_and_write, lun_setup, lun_teardown),
		cmocka_unit_test_setup_teardown(test_persistent_reservation, lun_setup, lun_teardown),
		cmocka_unit_test_setup_teardown(test_unmap_and_lba_status, lun_setup, lun_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
