/* bdev_rt URL [fallback]: round trips through every part of the block device
 * API on any device (used by the iSCSI and NFS system tests):
 * geometry, sync vectored read/write, argument checks, flush, discard,
 * async queue (QD16 writes then reads), ATS success and miscompare.
 * Prints "key=value" lines and "OK" last; exit 0 only if all checks held.
 * Uses the last 4 MiB of the device and sector 8 for ATS. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/blockdev.h"

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "bdev_rt: FAILED %s:%d: ", \
	__FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); goto out; } } while (0)

static void fill(unsigned char *p, size_t len, uint64_t tag)
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = tag * 0x9e3779b97f4a7c15ull ^ i;

		memcpy(p + i, &v, 8);
	}
}

struct cnt {
	int done, errors;
};

static void cb(void *arg, int result)
{
	struct cnt *c = arg;

	c->done++;
	if (result) {
		c->errors++;
		fprintf(stderr, "bdev_rt: async error %s\n", strerror(-result));
	}
}

int main(int argc, char **argv)
{
	struct vmfs_bdev_open_opts o = { 0 };
	struct vmfs_bdev *bd = NULL;
	struct vmfs_bdev_queue *q = NULL;
	const struct vmfs_bdev_info *in;
	unsigned char *w = NULL, *r = NULL, a[512], b[512], cur[512];
	uint64_t base;
	int rc = 1, e;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s URL [fallback]\n", argv[0]);
		return 2;
	}
	o.force_ats_fallback = argc == 3 && !strcmp(argv[2], "fallback");
	e = vmfs_bdev_open_opts(argv[1], &o, &bd);
	if (e) {
		fprintf(stderr, "bdev_rt: open %s: %s\n", argv[1], strerror(-e));
		printf("open_error=%d\n", -e);
		return 1;
	}
	in = vmfs_bdev_get_info(bd);
	printf("kind=%s\nsize=%" PRIu64 "\nlbs=%u\npbs=%u\nmax_io=%u\nats=%s\ndiscard=%d\n",
	       in->kind, in->size, in->lbs, in->pbs, in->max_io, vmfs_ats_mode_name(in->ats),
	       in->discard);
	fflush(stdout);
	CHECK(in->size >= (8u << 20), "device too small");
	base = in->size - (4u << 20);
	w = aligned_alloc(4096, 1 << 20);
	r = aligned_alloc(4096, 1 << 20);
	CHECK(w && r, "alloc");

	/* sync vectored write of 1 MiB in 3 pieces, read back in 2 */
	fill(w, 1 << 20, 1);
	{
		struct iovec wv[3] = { { w, 4096 }, { w + 4096, 512 }, { w + 4608, (1 << 20) - 4608 } };
		struct iovec rv[2] = { { r, 1536 }, { r + 1536, (1 << 20) - 1536 } };

		CHECK((e = vmfs_bdev_writev(bd, wv, 3, base)) == 0, "writev: %s", strerror(-e));
		memset(r, 0, 1 << 20);
		CHECK((e = vmfs_bdev_readv(bd, rv, 2, base)) == 0, "readv: %s", strerror(-e));
		CHECK(!memcmp(r, w, 1 << 20), "readback differs");
	}
	/* refused requests write nothing */
	CHECK(vmfs_bdev_write(bd, w, 512, base + 100) == -EINVAL, "misaligned offset accepted");
	CHECK(vmfs_bdev_write(bd, w, 100, base) == -EINVAL, "misaligned length accepted");
	CHECK(vmfs_bdev_write(bd, w, 8192, in->size - 4096) == -EINVAL, "write past end accepted");
	CHECK(vmfs_bdev_read(bd, r, 4096, in->size - 4096) == 0, "read last block");
	CHECK((e = vmfs_bdev_flush(bd)) == 0, "flush: %s", strerror(-e));
	printf("sync=ok\n");

	/* discard */
	if (in->discard) {
		CHECK((e = vmfs_bdev_discard(bd, base, 1 << 20)) == 0, "discard: %s", strerror(-e));
		CHECK(vmfs_bdev_read(bd, r, 1 << 20, base) == 0, "read after discard");
		{
			size_t nz = 0;

			for (size_t i = 0; i < (1u << 20); i++)
				nz += r[i] != 0;
			printf("discard_nonzero_bytes=%zu\n", nz);
		}
		printf("discard_rt=ok\n");
	} else {
		CHECK(vmfs_bdev_discard(bd, base, 1 << 20) == -EOPNOTSUPP, "discard not refused");
		printf("discard_rt=unsupported\n");
	}

	/* async: 64 x 4K writes at QD16, flush, then reads */
	{
		struct cnt c = { 0 };

		CHECK((e = vmfs_bdev_queue_create(bd, 16, &q)) == 0, "queue: %s", strerror(-e));
		fill(w, 64 * 4096, 2);
		for (int i = 0; i < 64; i++) {
			struct iovec v = { w + i * 4096, 4096 };

			while ((e = vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1,
						     base + (uint64_t)i * 4096, cb, &c)) == -EAGAIN)
				vmfs_bdev_queue_poll(q, 1, 5000);
			CHECK(e == 0, "submit: %s", strerror(-e));
		}
		while (vmfs_bdev_queue_inflight(q))
			vmfs_bdev_queue_poll(q, 1, 5000);
		CHECK(vmfs_bdev_submit(q, VMFS_BDEV_OP_FLUSH, NULL, 0, 0, cb, &c) == 0, "flush submit");
		CHECK(vmfs_bdev_queue_poll(q, 1, 10000) == 1, "flush completion");
		memset(r, 0, 64 * 4096);
		for (int i = 0; i < 64; i++) {
			struct iovec v = { r + i * 4096, 4096 };

			while ((e = vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1,
						     base + (uint64_t)i * 4096, cb, &c)) == -EAGAIN)
				vmfs_bdev_queue_poll(q, 1, 5000);
			CHECK(e == 0, "submit: %s", strerror(-e));
		}
		while (vmfs_bdev_queue_inflight(q))
			vmfs_bdev_queue_poll(q, 1, 5000);
		CHECK(c.done == 129 && c.errors == 0, "async: %d done %d errors", c.done, c.errors);
		CHECK(!memcmp(r, w, 64 * 4096), "async readback differs");
		{
			struct iovec v = { w, 4096 };

			CHECK(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, base + 1, cb, &c) == -EINVAL,
			      "async misaligned accepted");
		}
		vmfs_bdev_queue_destroy(q);
		q = NULL;
		/* the sync path sees what the async path wrote */
		CHECK(vmfs_bdev_read(bd, r, 4096, base + 4096) == 0 && !memcmp(r, w + 4096, 4096),
		      "sync read of async write");
		printf("async=ok\n");
	}

	/* ATS on sector 8 */
	if (in->ats != VMFS_ATS_NONE) {
		CHECK(vmfs_bdev_read(bd, a, 512, 8 * 512) == 0, "read ats sector");
		fill(b, 512, 77);
		b[0] ^= a[0] ^ 0x5a; /* make sure b != a */
		CHECK((e = vmfs_bdev_ats(bd, 8 * 512, a, b, cur)) == 0, "ats: %s", strerror(-e));
		CHECK(vmfs_bdev_ats(bd, 8 * 512, a, b, cur) == -ESTALE, "stale ats succeeded");
		CHECK(!memcmp(cur, b, 512), "ats current wrong");
		CHECK(vmfs_bdev_read(bd, cur, 512, 8 * 512) == 0 && !memcmp(cur, b, 512), "ats readback");
		CHECK(vmfs_bdev_ats(bd, 8 * 512 + 1, a, b, cur) == -EINVAL, "misaligned ats accepted");
		printf("ats_rt=ok\n");
	} else {
		CHECK(vmfs_bdev_ats(bd, 8 * 512, a, b, cur) == -EOPNOTSUPP, "ats not refused");
		printf("ats_rt=unsupported\n");
	}
	printf("OK\n");
	rc = 0;
out:
	if (q)
		vmfs_bdev_queue_destroy(q);
	free(w);
	free(r);
	vmfs_bdev_close(bd);
	return rc;
}
