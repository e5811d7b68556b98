/* Unit tests of the vhost-user-blk back-end without a socket: messages are
 * fed to a detached backend (vhost_blk_feed_msg) over a temp-file disk;
 * rings live in a memfd that the test maps too, so requests are built and
 * completions checked in place.  Runs also under ASan/UBSan. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_ring.h>

#include "vmfs/vhost.h"

#define MEM (1u << 20)
#define GPA 0x40000000ull
#define QN 8

struct fx {
	char path[64];
	struct vhost_disk *disk;
	struct vhost_blk *b;
	int memfd, kick, call;
	unsigned calls;            /* call eventfd signals seen */
	uint8_t *mem;
};

static int msg(struct fx *f, uint32_t req, uint32_t flags, const void *p, uint32_t size,
	       const int *fds, int nfds, uint8_t *rep, size_t *replen)
{
	uint8_t buf[4096 + 12];
	uint32_t h[3] = { req, flags, size };

	memcpy(buf, h, 12);
	if (size)
		memcpy(buf + 12, p, size);
	return vhost_blk_feed_msg(f->b, buf, 12 + size, fds, nfds, rep, replen);
}

static int u64msg(struct fx *f, uint32_t req, uint64_t v)
{
	return msg(f, req, 1, &v, 8, NULL, 0, NULL, NULL);
}

static int state(struct fx *f, uint32_t req, uint32_t idx, uint32_t num)
{
	uint32_t s[2] = { idx, num };

	return msg(f, req, 1, s, 8, NULL, 0, NULL, NULL);
}

static int setup(void **st)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct vhost_blk_opts o = { 0 };
	int fd;

	strcpy(f->path, "/tmp/test-vhost-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 << 20), 0);
	close(fd);
	assert_int_equal(vhost_disk_open_file(f->path, 0, &f->disk), 0);
	o.disk = f->disk;
	o.num_queues = 2;
	o.workers = 2;
	assert_int_equal(vhost_blk_create_detached(&o, &f->b), 0);
	f->memfd = memfd_create("t", MFD_CLOEXEC);
	assert_int_equal(ftruncate(f->memfd, MEM), 0);
	f->mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	assert_true(f->mem != MAP_FAILED);
	f->kick = eventfd(0, EFD_CLOEXEC);
	f->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	*st = f;
	return 0;
}

static int teardown(void **st)
{
	struct fx *f = *st;

	vhost_blk_destroy(f->b);
	vhost_disk_close(f->disk);
	unlink(f->path);
	munmap(f->mem, MEM);
	close(f->memfd);
	close(f->kick);
	close(f->call);
	free(f);
	return 0;
}

struct region {
	uint32_t n, pad;
	uint64_t gpa, size, uaddr, off;
};

static void test_negotiation_and_rejections(void **st)
{
	struct fx *f = *st;
	uint8_t rep[512];
	size_t rl = sizeof(rep);
	uint64_t v;

	/* GET_FEATURES: version 1, protocol features, virtio-blk bits */
	assert_int_equal(msg(f, 1, 1, NULL, 0, NULL, 0, rep, &rl), 0);
	assert_int_equal(rl, 20);
	memcpy(&v, rep + 12, 8);
	assert_true(v & 1ull << 32 && v & 1ull << 30 && v & 1ull << VIRTIO_BLK_F_FLUSH);
	assert_int_equal(u64msg(f, 2, v & ~(1ull << VIRTIO_F_RING_PACKED)), 0);   /* split rings here */
	assert_int_equal(u64msg(f, 2, 1ull << 63), -EINVAL);      /* a feature we never offered */
	rl = sizeof(rep);
	assert_int_equal(msg(f, 15, 1, NULL, 0, NULL, 0, rep, &rl), 0);
	memcpy(&v, rep + 12, 8);
	assert_true(v & (1u << 3) && v & (1u << 9));
	assert_int_equal(u64msg(f, 16, v), 0);
	/* framing: version, reply flag, sizes */
	assert_int_equal(msg(f, 1, 0, NULL, 0, NULL, 0, NULL, NULL), -EINVAL);
	assert_int_equal(msg(f, 1, 1 | 4, NULL, 0, NULL, 0, NULL, NULL), -EINVAL);
	assert_int_equal(msg(f, 3, 1, &v, 8, NULL, 0, NULL, NULL), -EINVAL);
	assert_int_equal(msg(f, 2, 1, &v, 4, NULL, 0, NULL, NULL), -EINVAL);
	/* queue index and ring sizes */
	assert_int_equal(state(f, 8, 2, 8), -EINVAL);
	assert_int_equal(state(f, 8, 0, 0), -EINVAL);
	assert_int_equal(state(f, 8, 0, 6), -EINVAL);
	assert_int_equal(state(f, 8, 0, 2048), -EINVAL);
	assert_int_equal(state(f, 10, 0, 70000), -EINVAL);
	/* GET_QUEUE_NUM */
	rl = sizeof(rep);
	assert_int_equal(msg(f, 17, 1, NULL, 0, NULL, 0, rep, &rl), 0);
	memcpy(&v, rep + 12, 8);
	assert_int_equal(v, 2);
	/* GET_CONFIG: capacity; out of range offsets refused */
	uint32_t c[3 + 64] = { 0, 60, 0 };

	rl = sizeof(rep);
	assert_int_equal(msg(f, 24, 1, c, 12 + 60, NULL, 0, rep, &rl), 0);
	assert_int_equal(rl, 12 + 72);
	struct virtio_blk_config cfg;

	memcpy(&cfg, rep + 24, 60);
	assert_int_equal(cfg.capacity, (4 << 20) / 512);
	assert_int_equal(cfg.num_queues, 2);
	c[0] = 250;
	c[1] = 60;
	assert_int_equal(msg(f, 24, 1, c, 12 + 60, NULL, 0, NULL, NULL), -EINVAL);
	c[0] = 0;
	c[1] = 61;
	assert_int_equal(msg(f, 24, 1, c, 12 + 60, NULL, 0, NULL, NULL), -EINVAL);
	/* memory tables */
	struct region r = { 1, 0, GPA, MEM, 0x7000000000ull, 0 };
	struct { uint32_t n, pad; uint64_t rg[2][4]; } two = { 2, 0, { { GPA, MEM, 1, 0 }, { GPA + 4096, 4096, 2, 0 } } };
	int fds[2] = { f->memfd, f->memfd };

	assert_int_equal(msg(f, 5, 1, &r, sizeof(r), NULL, 0, NULL, NULL), -EINVAL);     /* no fd */
	assert_int_equal(msg(f, 5, 1, &r, sizeof(r), fds, 2, NULL, NULL), -EINVAL);      /* fd count */
	assert_int_equal(msg(f, 5, 1, &two, sizeof(two), fds, 2, NULL, NULL), -EINVAL);  /* overlap */
	r.size = 2 * MEM;                                                                 /* beyond the memfd */
	assert_int_equal(msg(f, 5, 1, &r, sizeof(r), fds, 1, NULL, NULL), -EINVAL);
	r.size = MEM;
	r.n = 9;
	assert_int_equal(msg(f, 5, 1, &r, sizeof(r), fds, 1, NULL, NULL), -EINVAL);
	r.n = 1;
	assert_int_equal(msg(f, 5, 1, &r, sizeof(r), fds, 1, NULL, NULL), 0);
	/* kick/call payload: only index and NOFD bits */
	v = 0x200;
	assert_int_equal(msg(f, 12, 1, &v, 8, fds, 1, NULL, NULL), -EINVAL);
	v = 5;
	assert_int_equal(msg(f, 13, 1, &v, 8, fds, 1, NULL, NULL), -EINVAL);
	/* unknown request: handled (not fatal), REPLY_ACK says it failed */
	rl = sizeof(rep);
	assert_int_equal(msg(f, 99, 1 | 8, NULL, 0, NULL, 0, rep, &rl), 0);
	assert_int_equal(rl, 20);
	memcpy(&v, rep + 12, 8);
	assert_int_equal(v, 1);
}

/* Set up queue 0 (QN entries) in the first pages of the memfd; data after. */
static void ring_up_with(struct fx *f, uint16_t base, uint64_t extra_features)
{
	uint64_t ua = 0x7000000000ull;
	struct region r = { 1, 0, GPA, MEM, ua, 0 };
	struct { uint32_t index, flags; uint64_t desc, used, avail, log; } a = {
		0, 0, ua, ua + 8192, ua + 4096, 0 };
	uint64_t v;

	assert_int_equal(u64msg(f, 2, 1ull << 32 | 1ull << 30 | 1ull << VIRTIO_RING_F_INDIRECT_DESC |
				   extra_features), 0);
	assert_int_equal(u64msg(f, 16, 1u << 3 | 1u << 9), 0);
	assert_int_equal(msg(f, 5, 1, &r, sizeof(r), &f->memfd, 1, NULL, NULL), 0);
	assert_int_equal(state(f, 8, 0, QN), 0);
	assert_int_equal(state(f, 10, 0, base | (extra_features & 1ull << VIRTIO_F_RING_PACKED ? 0x8000 : 0)), 0);
	assert_int_equal(msg(f, 9, 1, &a, sizeof(a), NULL, 0, NULL, NULL), 0);
	v = 0;
	assert_int_equal(msg(f, 13, 1, &v, 8, &f->call, 1, NULL, NULL), 0);
	assert_int_equal(msg(f, 12, 1, &v, 8, &f->kick, 1, NULL, NULL), 0);
	assert_int_equal(state(f, 18, 0, 1), 0);
}

static void ring_up(struct fx *f, uint16_t base)
{
	ring_up_with(f, base, 0);
}

static struct vring_desc *D(struct fx *f) { return (void *)f->mem; }
static struct vring_avail *A(struct fx *f) { return (void *)(f->mem + 4096); }
static struct vring_used *U(struct fx *f) { return (void *)(f->mem + 8192); }

/* Post a 3-descriptor request; wait for it; return the status (0xee: none). */
static uint8_t request(struct fx *f, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len,
		       bool data_writable, uint32_t *used_len)
{
	struct virtio_blk_outhdr *h = (void *)(f->mem + 16384);
	uint8_t *status = f->mem + 16384 + 64;
	struct vring_desc *d = D(f);
	uint16_t ai = A(f)->idx, ui = U(f)->idx;

	h->type = type;
	h->ioprio = 0;
	h->sector = sector;
	*status = 0xee;
	d[0] = (struct vring_desc){ GPA + 16384, 16, VRING_DESC_F_NEXT, 1 };
	d[1] = (struct vring_desc){ data_gpa, len, (uint16_t)(VRING_DESC_F_NEXT | (data_writable ? VRING_DESC_F_WRITE : 0)), 2 };
	d[2] = (struct vring_desc){ GPA + 16384 + 64, 1, VRING_DESC_F_WRITE, 0 };
	if (!len)
		d[0].next = 2;
	A(f)->ring[ai % QN] = 0;
	__atomic_store_n(&A(f)->idx, (uint16_t)(ai + 1), __ATOMIC_RELEASE);
	uint64_t one = 1;

	assert_int_equal(write(f->kick, &one, 8), 8);
	for (int i = 0; i < 3000 && __atomic_load_n(&U(f)->idx, __ATOMIC_ACQUIRE) == ui; i++) {
		struct pollfd p = { .fd = f->call, .events = POLLIN };

		uint64_t v;

		if (poll(&p, 1, 10) == 1) {
			if (read(f->call, &v, 8) != 8)
				break;
			f->calls++;
		}
	}
	assert_int_equal(U(f)->idx, (uint16_t)(ui + 1));
	assert_int_equal(U(f)->ring[ui % QN].id, 0);
	if (used_len)
		*used_len = U(f)->ring[ui % QN].len;
	return *status;
}

static void test_ring_requests(void **st)
{
	struct fx *f = *st;
	uint8_t *data = f->mem + 65536;
	uint32_t used;
	uint8_t rep[64];
	size_t rl = sizeof(rep);

	ring_up(f, 0);
	memset(data, 0xa5, 8192);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 8, GPA + 65536, 8192, false, &used), 0);
	assert_int_equal(used, 1);
	memset(data, 0, 8192);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 8, GPA + 65536, 8192, true, &used), 0);
	assert_int_equal(used, 8193);
	assert_int_equal(data[0], 0xa5);
	assert_int_equal(data[8191], 0xa5);
	/* out of the disk, overflowing sector, odd length */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 8192, GPA + 65536, 512, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, UINT64_MAX / 512 + 1, GPA + 65536, 512, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 0, GPA + 65536, 100, false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(f, 0x1234, 0, 0, 0, false, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	/* data outside guest memory / straddling its end: chain refused, nothing written */
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, GPA + MEM, 512, true, &used), 0xee);
	assert_int_equal(used, 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, GPA + MEM - 512, 1024, true, &used), 0xee);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 0, GPA - 512, 512, true, &used), 0xee);
	/* GET_VRING_BASE stops the ring and returns the next avail index */
	uint32_t s[2] = { 0, 0 };

	assert_int_equal(msg(f, 11, 1, s, 8, NULL, 0, rep, &rl), 0);
	assert_int_equal(rl, 20);
	memcpy(s, rep + 12, 8);
	assert_int_equal(s[1], 10);
	assert_int_equal(s[1], U(f)->idx);
	/* restart from there */
	ring_up(f, (uint16_t)s[1]);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 8, GPA + 65536, 512, true, NULL), 0);
	/* a disconnect-style reset: everything forgotten, a second reset is harmless */
	assert_int_equal(msg(f, 4, 1, NULL, 0, NULL, 0, NULL, NULL), 0);
	assert_int_equal(msg(f, 4, 1, NULL, 0, NULL, 0, NULL, NULL), 0);
}

/* Calls signalled for what completed so far (a late one included). */
static unsigned calls(struct fx *f)
{
	uint64_t v;

	usleep(20000);
	if (read(f->call, &v, 8) == 8)
		f->calls++;
	return f->calls;
}

/* VIRTIO_RING_F_EVENT_IDX: the back-end calls only when the used index
 * passes the driver's used_event, and publishes in avail_event the avail
 * index after which it wants a kick. */
static void test_event_idx(void **st)
{
	struct fx *f = *st;
	uint16_t *used_event = &A(f)->ring[QN];
	uint16_t *avail_event = (uint16_t *)&U(f)->ring[QN];
	uint8_t rep[64];
	size_t rl = sizeof(rep);
	uint64_t feat;

	assert_int_equal(msg(f, 1, 1, NULL, 0, NULL, 0, rep, &rl), 0);
	memcpy(&feat, rep + 12, 8);
	assert_true(feat & 1ull << VIRTIO_RING_F_EVENT_IDX);
	ring_up_with(f, 0, 1ull << VIRTIO_RING_F_EVENT_IDX);
	*used_event = 0;
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), 0);
	assert_int_equal(calls(f), 1);                 /* used 0 -> 1 passes used_event 0 */
	*used_event = 50;                              /* not before the 51st completion */
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), 0);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 8, GPA + 65536, 512, true, NULL), 0);
	assert_int_equal(calls(f), 1);
	*used_event = U(f)->idx;                       /* the next one */
	assert_int_equal(request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), 0);
	assert_int_equal(calls(f), 2);
	/* idle: kicks wanted from the next avail index on */
	for (int i = 0; i < 100 && __atomic_load_n(avail_event, __ATOMIC_ACQUIRE) != A(f)->idx; i++)
		usleep(1000);
	assert_int_equal(*avail_event, A(f)->idx);
	assert_int_equal(U(f)->flags, 0);
}

#define PK_AVAIL (1u << VRING_PACKED_DESC_F_AVAIL)
#define PK_USED  (1u << VRING_PACKED_DESC_F_USED)

/* Packed ring: a 3-descriptor request at ring position @pos in lap @wrap
 * (buffer id 5), wait for its used descriptor at @pos; return the status. */
static uint8_t packed_req(struct fx *f, unsigned pos, bool wrap, uint32_t type, uint64_t sector,
			  uint32_t len, uint32_t *used_len)
{
	struct vring_packed_desc *ring = (void *)f->mem;
	struct virtio_blk_outhdr *h = (void *)(f->mem + 16384);
	uint8_t *status = f->mem + 16384 + 64;
	uint64_t addr[3] = { GPA + 16384, GPA + 65536, GPA + 16384 + 64 };
	uint32_t lens[3] = { 16, len, 1 };
	uint16_t fl[3] = { VRING_DESC_F_NEXT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE }, head = 0;
	uint64_t one = 1;

	h->type = type;
	h->ioprio = 0;
	h->sector = sector;
	*status = 0xee;
	if (type == VIRTIO_BLK_T_IN)
		fl[1] |= VRING_DESC_F_WRITE;
	for (unsigned i = 0, p = pos; i < 3; i++, p = (p + 1) % QN) {
		uint16_t w = (uint16_t)(fl[i] | (wrap == (p >= pos) ? PK_AVAIL : PK_USED));

		ring[p].addr = addr[i];
		ring[p].len = lens[i];
		ring[p].id = 5;
		if (i)
			ring[p].flags = w;
		else
			head = w;
	}
	__atomic_store_n(&ring[pos].flags, head, __ATOMIC_RELEASE);   /* the head last */
	assert_int_equal(write(f->kick, &one, 8), 8);
	uint16_t want = wrap ? PK_AVAIL | PK_USED : 0;

	for (int i = 0; i < 3000 && (__atomic_load_n(&ring[pos].flags, __ATOMIC_ACQUIRE) &
				      (PK_AVAIL | PK_USED)) != want; i++)
		usleep(1000);
	assert_int_equal(ring[pos].flags & (PK_AVAIL | PK_USED), want);
	assert_int_equal(ring[pos].id, 5);
	if (used_len)
		*used_len = ring[pos].len;
	return *status;
}

/* VIRTIO_F_RING_PACKED: chains laid in the ring, a used descriptor per
 * chain at the used position, laps and wrap counters, the base encoding. */
static void test_packed_ring(void **st)
{
	struct fx *f = *st;
	uint8_t *data = f->mem + 65536;
	uint8_t rep[64];
	size_t rl = sizeof(rep);
	uint32_t used, s[2] = { 0, 0 };

	ring_up_with(f, 0, 1ull << VIRTIO_F_RING_PACKED);
	memset(data, 0x3c, 4096);
	assert_int_equal(packed_req(f, 0, true, VIRTIO_BLK_T_OUT, 16, 4096, &used), 0);
	assert_int_equal(used, 1);
	memset(data, 0, 4096);
	assert_int_equal(packed_req(f, 3, true, VIRTIO_BLK_T_IN, 16, 4096, &used), 0);
	assert_int_equal(used, 4097);
	assert_int_equal(data[4095], 0x3c);
	/* positions 6, 7 in lap 1 and 0 in lap 0; its used descriptor at 6 */
	assert_int_equal(packed_req(f, 6, true, VIRTIO_BLK_T_IN, 8192, 512, NULL), VIRTIO_BLK_S_IOERR);
	/* used position 9 = 1 in lap 0 */
	assert_int_equal(packed_req(f, 1, false, VIRTIO_BLK_T_IN, 16, 512, &used), 0);
	assert_int_equal(used, 513);
	/* GET_VRING_BASE: avail 4 and used 4, both in lap 0 */
	assert_int_equal(msg(f, 11, 1, s, 8, NULL, 0, rep, &rl), 0);
	memcpy(s, rep + 12, 8);
	assert_int_equal(s[1], 0x00040004);
	/* restart there (QEMU's encoding) and carry on */
	assert_int_equal(state(f, 10, 0, s[1]), 0);
	uint64_t v = 0;

	assert_int_equal(msg(f, 12, 1, &v, 8, &f->kick, 1, NULL, NULL), 0);
	assert_int_equal(state(f, 18, 0, 1), 0);
	assert_int_equal(packed_req(f, 4, false, VIRTIO_BLK_T_IN, 16, 512, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_negotiation_and_rejections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_ring, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
