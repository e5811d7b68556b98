/* bdev_threads URL NTHREADS N: one device handle shared by NTHREADS threads
 * while the main thread drives an async queue on the same handle.
 *   - each thread: N rounds of { sync write of its own 8 KiB region with a
 *     round-stamped pattern, read back and compare, ATS increment of one
 *     shared counter sector (sector 16) };
 *   - main thread: QD8 async writes+reads of its own 1 MiB region until the
 *     threads are done, verifying every read.
 * Checks that a backend serialises its transport correctly (libiscsi and
 * libnfs contexts are not thread-safe) and that async completions delivered
 * while another thread drives the transport reach their queue.
 * Prints "counter=N async_ios=N" and exits 0 when everything matched. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/blockdev.h"

#define CSECT (16 * 512)
#define REGION (8192)

static struct vmfs_bdev *bd;
static uint64_t rounds;
static atomic_int failed;
static atomic_int running;

static void stamp(unsigned char *p, size_t len, uint64_t a, uint64_t b)
{
	for (size_t i = 0; i < len; i += 16) {
		memcpy(p + i, &a, 8);
		memcpy(p + i + 8, &b, 8);
	}
}

static void *worker(void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg;
	uint64_t off = (1u << 20) + id * REGION;
	unsigned char w[REGION], r[REGION], cur[512], next[512];
	int e;

	if ((e = vmfs_bdev_read(bd, cur, 512, CSECT))) {
		fprintf(stderr, "thread %" PRIu64 ": read: %s\n", id, strerror(-e));
		goto fail;
	}
	for (uint64_t i = 0; i < rounds; i++) {
		stamp(w, sizeof(w), id, i);
		if ((e = vmfs_bdev_write(bd, w, sizeof(w), off)) ||
		    (e = vmfs_bdev_read(bd, r, sizeof(r), off))) {
			fprintf(stderr, "thread %" PRIu64 ": rw: %s\n", id, strerror(-e));
			goto fail;
		}
		if (memcmp(w, r, sizeof(w))) {
			fprintf(stderr, "thread %" PRIu64 ": region corrupted\n", id);
			goto fail;
		}
		for (;;) {
			uint64_t v;

			memcpy(&v, cur, 8);
			v++;
			memcpy(next, cur, 512);
			memcpy(next, &v, 8);
			e = vmfs_bdev_ats(bd, CSECT, cur, next, cur);
			if (e == 0) {
				memcpy(cur, next, 512);
				break;
			}
			if (e != -ESTALE) {
				fprintf(stderr, "thread %" PRIu64 ": ats: %s\n", id, strerror(-e));
				goto fail;
			}
		}
	}
	atomic_fetch_sub(&running, 1);
	return NULL;
fail:
	atomic_store(&failed, 1);
	atomic_fetch_sub(&running, 1);
	return NULL;
}

struct slot {
	unsigned char *buf;
	uint64_t off, tag;
	int phase; /* 0 free, 1 writing, 2 reading */
	int result;
	bool done;
};

static void on_done(void *arg, int result)
{
	struct slot *s = arg;

	s->result = result;
	s->done = true;
}

int main(int argc, char **argv)
{
	pthread_t th[64];
	struct vmfs_bdev_queue *q;
	struct slot slots[8];
	uint64_t nthreads, async_ios = 0, tag = 1, v;
	unsigned char c[512];
	int e;

	if (argc != 4) {
		fprintf(stderr, "usage: %s URL NTHREADS ROUNDS\n", argv[0]);
		return 2;
	}
	nthreads = strtoull(argv[2], NULL, 0);
	rounds = strtoull(argv[3], NULL, 0);
	if (!nthreads || nthreads > 64) {
		fprintf(stderr, "bdev_threads: 1..64 threads\n");
		return 2;
	}
	if ((e = vmfs_bdev_open(argv[1], 0, &bd))) {
		fprintf(stderr, "bdev_threads: open %s: %s\n", argv[1], strerror(-e));
		return 1;
	}
	memset(c, 0, sizeof(c));
	if ((e = vmfs_bdev_write(bd, c, 512, CSECT)) || (e = vmfs_bdev_queue_create(bd, 8, &q))) {
		fprintf(stderr, "bdev_threads: setup: %s\n", strerror(-e));
		return 1;
	}
	for (int i = 0; i < 8; i++) {
		slots[i].buf = aligned_alloc(4096, 4096);
		slots[i].off = (2u << 20) + (uint64_t)i * 4096 * 32;
		slots[i].phase = 0;
	}
	atomic_store(&running, (int)nthreads);
	for (uint64_t i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i);
	while (atomic_load(&running) > 0 && !atomic_load(&failed)) {
		for (int i = 0; i < 8; i++) {
			struct slot *s = &slots[i];
			struct iovec iov = { s->buf, 4096 };
			uint64_t off = s->off + (s->tag % 32) * 4096;

			if (s->phase && !s->done)
				continue;
			if (s->phase && s->result) {
				fprintf(stderr, "bdev_threads: async: %s\n", strerror(-s->result));
				atomic_store(&failed, 1);
				break;
			}
			if (s->phase == 2) {
				unsigned char want[4096];

				stamp(want, sizeof(want), 1000 + (uint64_t)i, s->tag);
				if (memcmp(want, s->buf, sizeof(want))) {
					fprintf(stderr, "bdev_threads: async readback differs\n");
					atomic_store(&failed, 1);
					break;
				}
			}
			s->done = false;
			if (s->phase == 1) {
				memset(s->buf, 0, 4096);
				s->phase = 2;
				e = vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &iov, 1, off, on_done, s);
			} else {
				s->tag = tag++;
				off = s->off + (s->tag % 32) * 4096;
				stamp(s->buf, 4096, 1000 + (uint64_t)i, s->tag);
				s->phase = 1;
				e = vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &iov, 1, off, on_done, s);
			}
			if (e) {
				fprintf(stderr, "bdev_threads: submit: %s\n", strerror(-e));
				atomic_store(&failed, 1);
				break;
			}
			async_ios++;
		}
		vmfs_bdev_queue_kick(q);
		vmfs_bdev_queue_poll(q, 1, 100);
	}
	for (uint64_t i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	vmfs_bdev_queue_destroy(q);
	for (int i = 0; i < 8; i++)
		free(slots[i].buf);
	if ((e = vmfs_bdev_read(bd, c, 512, CSECT))) {
		fprintf(stderr, "bdev_threads: read counter: %s\n", strerror(-e));
		return 1;
	}
	memcpy(&v, c, 8);
	printf("counter=%" PRIu64 " async_ios=%" PRIu64 "\n", v, async_ios);
	vmfs_bdev_close(bd);
	if (atomic_load(&failed) || v != nthreads * rounds)
		return 1;
	return 0;
}
