/* bdev_bench URL RW BS QD SECONDS: drive the block layer's async queue the
 * way fio drives libaio, and print "iops=N mbps=N lat_us=N".
 *   RW: randread | randwrite | read | write;  BS in bytes;  QD 1..1024.
 * The device is opened with VMFS_BDEV_DIRECT; buffers are 4 KiB aligned.
 * Used by bench/blockdev, side by side with fio on the same file. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmfs/blockdev.h"

struct slot {
	unsigned char *buf;
	int busy;
	uint64_t *done;
	int *errors;
};

static void on_done(void *arg, int result)
{
	struct slot *s = arg;

	s->busy = 0;
	(*s->done)++;
	if (result)
		(*s->errors)++;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct vmfs_bdev *bd;
	struct vmfs_bdev_queue *q;
	struct slot *slots;
	uint64_t done = 0, seq = 0, rnd = 0x2545F4914F6CDD1Dull, nblk;
	int errors = 0, r;
	unsigned qd;
	size_t bs;
	double secs, t0, t1;
	bool wr, random;

	if (argc != 6) {
		fprintf(stderr, "usage: %s URL randread|randwrite|read|write BS QD SECONDS\n", argv[0]);
		return 2;
	}
	wr = strstr(argv[2], "write") != NULL;
	random = !strncmp(argv[2], "rand", 4);
	bs = strtoul(argv[3], NULL, 0);
	qd = (unsigned)strtoul(argv[4], NULL, 0);
	secs = atof(argv[5]);
	if (!bs || bs % 512 || !qd || qd > 1024 || secs <= 0) {
		fprintf(stderr, "bdev_bench: bad arguments\n");
		return 2;
	}
	r = vmfs_bdev_open(argv[1], VMFS_BDEV_DIRECT, &bd);
	if (r) {
		fprintf(stderr, "bdev_bench: open %s: %s\n", argv[1], strerror(-r));
		return 1;
	}
	nblk = vmfs_bdev_size(bd) / bs;
	r = vmfs_bdev_queue_create(bd, qd, &q);
	if (r || !nblk) {
		fprintf(stderr, "bdev_bench: queue: %s\n", strerror(r ? -r : EINVAL));
		return 1;
	}
	slots = calloc(qd, sizeof(*slots));
	for (unsigned i = 0; i < qd; i++) {
		slots[i].buf = aligned_alloc(4096, (bs + 4095) / 4096 * 4096);
		memset(slots[i].buf, 0xa5, bs);
		slots[i].done = &done;
		slots[i].errors = &errors;
	}
	t0 = now_s();
	t1 = t0;
	while (!errors) {
		for (unsigned i = 0; i < qd; i++) {
			struct iovec v = { slots[i].buf, bs };
			uint64_t blk;

			if (slots[i].busy)
				continue;
			if (random) {
				rnd ^= rnd << 13;
				rnd ^= rnd >> 7;
				rnd ^= rnd << 17;
				blk = rnd % nblk;
			} else {
				blk = seq++ % nblk;
			}
			r = vmfs_bdev_submit(q, wr ? VMFS_BDEV_OP_WRITE : VMFS_BDEV_OP_READ, &v, 1,
					     blk * bs, on_done, &slots[i]);
			if (r) {
				fprintf(stderr, "bdev_bench: submit: %s\n", strerror(-r));
				return 1;
			}
			slots[i].busy = 1;
		}
		vmfs_bdev_queue_kick(q);
		vmfs_bdev_queue_poll(q, 1, 1000);
		t1 = now_s();
		if (t1 - t0 >= secs)
			break;
	}
	t1 = now_s();
	while (vmfs_bdev_queue_inflight(q))
		vmfs_bdev_queue_poll(q, vmfs_bdev_queue_inflight(q), 1000);
	if (errors) {
		fprintf(stderr, "bdev_bench: %d I/O errors\n", errors);
		return 1;
	}
	printf("iops=%.0f mbps=%.1f lat_us=%.1f ios=%" PRIu64 "\n", (double)done / (t1 - t0),
	       (double)done * (double)bs / (t1 - t0) / 1e6, (t1 - t0) * 1e6 * qd / (double)done, done);
	vmfs_bdev_queue_destroy(q);
	for (unsigned i = 0; i < qd; i++)
		free(slots[i].buf);
	free(slots);
	vmfs_bdev_close(bd);
	return 0;
}
