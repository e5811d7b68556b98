/* Unit tests of the asynchronous queue: libaio on files (O_DIRECT and
 * buffered) and the emulated queue of stacked devices. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmfs/blockdev.h"
#include "memdev.h"

#define DEV_SIZE (8u << 20)

static char path[64];

static int setup(void **state)
{
	*state = tmpfile_bdev(path, DEV_SIZE, VMFS_BDEV_DIRECT);
	assert_non_null(*state);
	return 0;
}

struct done {
	int calls;
	int last;
	int errors;
};

static void on_done(void *arg, int result)
{
	struct done *d = arg;

	d->calls++;
	d->last = result;
	if (result)
		d->errors++;
}

static void fill(unsigned char *p, size_t len, uint64_t tag)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = tag * 0x9e3779b97f4a7c15ull + i;

		memcpy(p + i, &v, 8);
	}
}

static void *abuf(size_t len)
{
	void *p = NULL;

	assert_int_equal(posix_memalign(&p, 4096, len), 0);
	memset(p, 0, len);
	return p;
}

/* QD32 random 4K writes with distinct content, then read back with QD32
 * reads into separate buffers, checking each block; eventfd signals. */
static void test_qd32_write_read(void **state)
{
	struct vmfs_bdev *bd = *state;
	struct vmfs_bdev_queue *q;
	enum { N = 256 };
	unsigned char *wbuf = abuf((size_t)N * 4096), *rbuf = abuf((size_t)N * 4096);
	uint64_t offs[N];
	struct done d = { 0 };
	int submitted = 0, completed = 0, efd;

	/* distinct offsets: a permutation of block numbers */
	for (int i = 0; i < N; i++)
		offs[i] = ((uint64_t)(i * 37 % N)) * 4096 * 4;
	assert_int_equal(vmfs_bdev_queue_create(bd, 32, &q), 0);
	efd = vmfs_bdev_queue_fd(q);
	assert_true(efd >= 0);
	for (int i = 0; i < N; i++)
		fill(wbuf + (size_t)i * 4096, 4096, (uint64_t)i + 1);
	while (completed < N) {
		while (submitted < N && vmfs_bdev_queue_inflight(q) < 32) {
			struct iovec v = { wbuf + (size_t)submitted * 4096, 4096 };

			assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, offs[submitted],
							  on_done, &d), 0);
			submitted++;
		}
		assert_int_equal(vmfs_bdev_queue_kick(q), 0);
		{
			struct pollfd p = { .fd = efd, .events = POLLIN };

			assert_int_equal(poll(&p, 1, 5000), 1); /* completions raise the eventfd */
		}
		completed += vmfs_bdev_queue_poll(q, 1, 5000);
	}
	assert_int_equal(d.calls, N);
	assert_int_equal(d.errors, 0);
	assert_int_equal(vmfs_bdev_queue_inflight(q), 0);

	/* flush through the queue */
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_FLUSH, NULL, 0, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_queue_poll(q, 1, 5000), 1);
	assert_int_equal(d.last, 0);

	/* read back, two iovecs per request */
	memset(&d, 0, sizeof(d));
	for (int i = 0; i < N; i++) {
		struct iovec v[2] = { { rbuf + (size_t)i * 4096, 1024 },
				      { rbuf + (size_t)i * 4096 + 1024, 3072 } };

		while (vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, v, 2, offs[i], on_done, &d) == -EAGAIN)
			assert_true(vmfs_bdev_queue_poll(q, 1, 5000) >= 1);
	}
	while (vmfs_bdev_queue_inflight(q))
		vmfs_bdev_queue_poll(q, vmfs_bdev_queue_inflight(q), 5000);
	assert_int_equal(d.calls, N);
	assert_int_equal(d.errors, 0);
	assert_memory_equal(rbuf, wbuf, (size_t)N * 4096);

	/* and the sync path agrees */
	assert_int_equal(vmfs_bdev_read(bd, rbuf, 4096, offs[7]), 0);
	assert_memory_equal(rbuf, wbuf + 7 * 4096, 4096);
	vmfs_bdev_queue_destroy(q);
	free(wbuf);
	free(rbuf);
}

/* Bad requests are refused at submit time and nothing reaches the device. */
static void test_submit_checks(void **state)
{
	struct vmfs_bdev *bd = *state;
	struct vmfs_bdev_queue *q;
	unsigned char *buf = abuf(8192), *chk = abuf(8192), *zero = abuf(8192);
	struct done d = { 0 };
	struct iovec v = { buf, 4096 }, v2[2] = { { buf, 4096 }, { buf + 4096, 4096 } };

	memset(buf, 0xee, 8192);
	assert_int_equal(vmfs_bdev_queue_create(bd, 2, &q), 0);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, 100, on_done, &d), -EINVAL);
	v.iov_len = 100;
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, 0, on_done, &d), -EINVAL);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, v2, 2, DEV_SIZE - 4096, on_done, &d),
			 -EINVAL);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, DEV_SIZE, on_done, &d), -EINVAL);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, NULL, 1, 0, on_done, &d), -EINVAL);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, -1, 0, on_done, &d), -EINVAL);
	assert_int_equal(vmfs_bdev_submit(q, (enum vmfs_bdev_op)42, &v, 1, 0, on_done, &d), -EINVAL);
	assert_int_equal(vmfs_bdev_queue_inflight(q), 0);
	assert_int_equal(vmfs_bdev_queue_poll(q, 0, 0), 0);
	assert_int_equal(d.calls, 0);
	assert_int_equal(vmfs_bdev_read(bd, chk, 8192, DEV_SIZE - 8192), 0);
	assert_memory_equal(chk, zero, 8192);

	/* full queue: -EAGAIN, then poll frees slots */
	v.iov_len = 4096;
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, 4096, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, 8192, on_done, &d), -EAGAIN);
	assert_int_equal(vmfs_bdev_queue_inflight(q), 2);
	assert_int_equal(vmfs_bdev_queue_poll(q, 2, 5000), 2);
	assert_int_equal(d.calls, 2);
	assert_int_equal(d.errors, 0);
	/* a zero-length request completes without the kernel */
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, NULL, 0, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_queue_poll(q, 1, 5000), 1);
	assert_int_equal(d.last, 0);
	/* misaligned memory under O_DIRECT: the kernel's -EINVAL comes back
	 * through the callback, nothing written */
	v.iov_base = buf + 1;
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_queue_poll(q, 1, 5000), 1);
	assert_int_equal(d.last, -EINVAL);
	assert_int_equal(vmfs_bdev_read(bd, chk, 4096, 0), 0);
	assert_memory_equal(chk, zero, 4096);
	vmfs_bdev_queue_destroy(q);
	assert_int_equal(vmfs_bdev_queue_create(bd, 0, &q), -EINVAL);
	free(buf);
	free(chk);
	free(zero);
}

/* Callbacks that resubmit: many requests through a small queue, and the
 * destroy path drains what is still in flight. */
struct chain {
	struct vmfs_bdev_queue *q;
	unsigned char *buf;
	int left;
	int done;
	int errors;
};

static void chain_cb(void *arg, int result)
{
	struct chain *c = arg;
	struct iovec v = { c->buf, 512 };

	c->done++;
	if (result)
		c->errors++;
	if (c->left > 0) {
		c->left--;
		if (vmfs_bdev_submit(c->q, VMFS_BDEV_OP_READ, &v, 1,
				     (uint64_t)(c->left % 1000) * 512, chain_cb, c))
			c->errors++;
	}
}

static void test_many_resubmit(void **state)
{
	struct vmfs_bdev *bd;
	struct chain c = { 0 };
	struct iovec v;

	(void)state;
	/* buffered fd this time: 512-byte unaligned-memory I/O is fine */
	assert_int_equal(vmfs_bdev_open(path, 0, &bd), 0);
	c.buf = malloc(512 * 8);
	assert_int_equal(vmfs_bdev_queue_create(bd, 8, &c.q), 0);
	c.left = 2000;
	for (int i = 0; i < 8; i++) {
		v.iov_base = c.buf + i * 512;
		v.iov_len = 512;
		c.left--;
		assert_int_equal(vmfs_bdev_submit(c.q, VMFS_BDEV_OP_READ, &v, 1, 0, chain_cb, &c), 0);
	}
	while (c.left > 0)
		assert_true(vmfs_bdev_queue_poll(c.q, 1, 5000) >= 1);
	vmfs_bdev_queue_destroy(c.q); /* drains the last ones */
	assert_int_equal(c.done, 2000);
	assert_int_equal(c.errors, 0);
	free(c.buf);
	vmfs_bdev_close(bd);
}

/* Stacked device without an fd: emulated queue, same checks, eventfd. */
static void test_emulated_queue(void **state)
{
	struct vmfs_bdev *lower, *bd;
	struct vmfs_bdev_queue *q;
	unsigned char w[4096], r[4096];
	struct done d = { 0 };
	struct iovec v = { w, sizeof(w) };
	struct pollfd p;

	(void)state;
	assert_int_equal(vmfs_bdev_open(path, 0, &lower), 0);
	assert_int_equal(vmfs_fault_wrap(lower, &bd), 0);
	assert_int_equal(vmfs_bdev_queue_create(bd, 4, &q), 0);
	p.fd = vmfs_bdev_queue_fd(q);
	p.events = POLLIN;
	assert_true(p.fd >= 0);
	fill(w, sizeof(w), 99);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, 4096, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, 100, on_done, &d), -EINVAL);
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(vmfs_bdev_queue_kick(q), 0);
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(vmfs_bdev_queue_poll(q, 1, 1000), 1);
	assert_int_equal(d.last, 0);
	assert_int_equal(poll(&p, 1, 0), 0); /* drained */
	v.iov_base = r;
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, 4096, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_FLUSH, NULL, 0, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_queue_poll(q, 2, 1000), 2);
	assert_int_equal(d.errors, 0);
	assert_memory_equal(r, w, sizeof(w));
	/* an injected failure comes back through the callback */
	vmfs_fault_fail_nth(bd, 1, -EIO);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_queue_poll(q, 1, 1000), 1);
	assert_int_equal(d.last, -EIO);
	vmfs_bdev_queue_destroy(q);
	vmfs_bdev_close(bd);
}

static void test_rdonly_queue(void **state)
{
	struct vmfs_bdev *bd;
	struct vmfs_bdev_queue *q;
	unsigned char *buf = abuf(4096);
	struct iovec v = { buf, 4096 };
	struct done d = { 0 };

	(void)state;
	assert_int_equal(vmfs_bdev_open(path, VMFS_BDEV_RDONLY | VMFS_BDEV_DIRECT, &bd), 0);
	assert_int_equal(vmfs_bdev_queue_create(bd, 4, &q), 0);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, 0, on_done, &d), -EROFS);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_queue_poll(q, 1, 5000), 1);
	assert_int_equal(d.last, 0);
	vmfs_bdev_queue_destroy(q);
	vmfs_bdev_close(bd);
	free(buf);
}

/* A pass-through device: its sync ops count calls and forward; its
 * admission refuses writes while `fenced` (as the fencing guard does). */
struct pt {
	struct vmfs_bdev *lower;
	bool fenced;
	int sync_calls, admits;
};

static int pt_readv(void *p, const struct iovec *iov, int n, uint64_t off)
{
	((struct pt *)p)->sync_calls++;
	return vmfs_bdev_readv(((struct pt *)p)->lower, iov, n, off);
}

static int pt_writev(void *p, const struct iovec *iov, int n, uint64_t off)
{
	((struct pt *)p)->sync_calls++;
	return vmfs_bdev_writev(((struct pt *)p)->lower, iov, n, off);
}

static int pt_flush(void *p)
{
	return vmfs_bdev_flush(((struct pt *)p)->lower);
}

static int pt_ats(void *p, uint64_t off, const void *e, const void *n, void *c)
{
	return vmfs_bdev_ats(((struct pt *)p)->lower, off, e, n, c);
}

static void pt_close(void *p)
{
	(void)p;
}

static int pt_admit(void *p, enum vmfs_bdev_op op, uint64_t off, uint64_t len)
{
	struct pt *t = p;

	(void)off;
	(void)len;
	t->admits++;
	return t->fenced && op != VMFS_BDEV_OP_READ ? -EIO : 0;
}

static void test_passthrough_queue(void **state)
{
	static const struct vmfs_bdev_ops ops = { .readv = pt_readv, .writev = pt_writev,
						  .flush = pt_flush, .ats = pt_ats, .close = pt_close };
	struct vmfs_bdev *lower = *state, *bd;
	struct vmfs_bdev_queue *q;
	struct pt t = { .lower = lower };
	unsigned char *w = abuf(8192), *r = abuf(8192), *old = abuf(4096);
	struct iovec v = { w, 4096 };
	struct done d = { 0 };

	assert_true(vmfs_bdev_get_info(lower)->direct);
	assert_int_equal(vmfs_bdev_create(&ops, &t, vmfs_bdev_get_info(lower), "pt", &bd), 0);
	assert_int_equal(vmfs_bdev_set_passthrough(bd, bd, pt_admit), -EINVAL);
	assert_int_equal(vmfs_bdev_set_passthrough(bd, lower, pt_admit), 0);
	assert_int_equal(vmfs_bdev_queue_create(bd, 8, &q), 0);
	/* libaio on the lower device's O_DIRECT descriptor, not the emulation */
	assert_false(vmfs_bdev_queue_blocking(q));
	fill(w, 8192, 5);
	for (int i = 0; i < 2; i++) {
		v.iov_base = w + i * 4096;
		assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, (uint64_t)i * 4096,
						  on_done, &d), 0);
	}
	assert_int_equal(t.admits, 0);   /* checked when handed down, not before */
	assert_int_equal(vmfs_bdev_queue_poll(q, 2, 5000), 2);
	assert_int_equal(t.admits, 2);
	assert_int_equal(d.errors, 0);
	assert_int_equal(t.sync_calls, 0);
	assert_int_equal(vmfs_bdev_read(lower, r, 8192, 0), 0);
	assert_memory_equal(r, w, 8192);
	/* refused at hand-down: the callback gets the error, the disk is unchanged */
	memcpy(old, w, 4096);
	fill(w, 4096, 6);
	v.iov_base = w;
	t.fenced = true;
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_WRITE, &v, 1, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_FLUSH, NULL, 0, 0, on_done, &d), 0);
	v.iov_base = r;
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_queue_poll(q, 3, 5000), 3);
	assert_int_equal(d.errors, 2);
	assert_memory_equal(r, old, 4096);      /* the read passed and saw the old data */
	/* the device's own range checks still apply */
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, DEV_SIZE, on_done, &d),
			 -EINVAL);
	vmfs_bdev_queue_destroy(q);
	vmfs_bdev_close(bd);
	free(w);
	free(r);
	free(old);
}

/* A completion that raises the eventfd after poll read it, but is reaped
 * from the ring in the same poll, leaves the eventfd readable with nothing
 * in flight: the next poll must clear it, or an event loop spins. */
static void test_stale_eventfd_cleared(void **state)
{
	struct vmfs_bdev_queue *q;
	unsigned char *buf = abuf(4096);
	struct iovec v = { buf, 4096 };
	struct done d = { 0 };
	struct pollfd p = { .events = POLLIN };
	uint64_t one = 1;

	assert_int_equal(vmfs_bdev_queue_create(*state, 4, &q), 0);
	p.fd = vmfs_bdev_queue_fd(q);
	assert_int_equal(vmfs_bdev_submit(q, VMFS_BDEV_OP_READ, &v, 1, 0, on_done, &d), 0);
	assert_int_equal(vmfs_bdev_queue_poll(q, 1, 5000), 1);
	assert_int_equal(vmfs_bdev_queue_inflight(q), 0);
	assert_int_equal(write(p.fd, &one, sizeof(one)), (ssize_t)sizeof(one));   /* the late raise */
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(vmfs_bdev_queue_poll(q, 0, 0), 0);
	assert_int_equal(poll(&p, 1, 0), 0);
	vmfs_bdev_queue_destroy(q);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_qd32_write_read, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_submit_checks, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_many_resubmit, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_emulated_queue, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_rdonly_queue, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_passthrough_queue, setup, tmpfile_teardown),
		cmocka_unit_test_setup_teardown(test_stale_eventfd_cleared, setup, tmpfile_teardown),
	};
	return cmocka_run_group_tests_name("blockdev_aio", tests, NULL, NULL);
}
