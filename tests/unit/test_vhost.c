/* Unit tests of the vhost-user-blk back-end without a socket: messages are
 * fed to a detached backend (vhost_blk_feed_msg) over a temp-file disk;
 * rings live in a memfd that the test maps too, so requests are built and
 * completions checked in place.  Runs also under ASan/UBSan. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
	/* inflight tracking (ring_up_with negotiates it when ifl is set) */
	bool ifl;
	int ifl_fd;                /* the buffer GET_INFLIGHT_FD returned */
	uint8_t *ifl_map;
	size_t ifl_len;
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
	f->ifl_fd = -1;
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
	if (f->ifl_map)
		munmap(f->ifl_map, f->ifl_len);
	if (f->ifl_fd >= 0)
		close(f->ifl_fd);
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

struct inflight_msg {
	uint64_t mmap_size, mmap_offset;
	uint16_t num_queues, queue_size;
};

/* GET_INFLIGHT_FD the first time (a zeroed buffer of 2 queue regions, each
 * the layout's header and QN descriptor states padded to 64 bytes), then
 * SET_INFLIGHT_FD with it, as QEMU does before starting the rings. */
static void inflight_fd(struct fx *f, bool packed)
{
	struct inflight_msg m = { 0, 0, 2, QN };
	uint8_t rep[64];
	size_t rl = sizeof(rep);
	struct stat sb;

	if (f->ifl_fd < 0) {
		uint8_t buf[12 + sizeof(m)];
		uint32_t h[3] = { 31, 1, sizeof(m) };

		memcpy(buf, h, 12);
		memcpy(buf + 12, &m, sizeof(m));
		assert_int_equal(vhost_blk_feed_msg_fd(f->b, buf, sizeof(buf), NULL, 0, rep, &rl, &f->ifl_fd), 0);
		assert_int_equal(rl, 12 + sizeof(m));
		memcpy(&m, rep + 12, sizeof(m));
		assert_true(f->ifl_fd >= 0);
		/* split: 16 + 8 x 16 -> 192; packed: 32 + 8 x 32 -> 320 */
		assert_int_equal(m.mmap_size, 2 * (packed ? 320 : 192));
		assert_int_equal(m.num_queues, 2);
		assert_int_equal(m.queue_size, QN);
		assert_int_equal(fstat(f->ifl_fd, &sb), 0);
		assert_int_equal(sb.st_size, m.mmap_offset + m.mmap_size);
		f->ifl_len = m.mmap_size;
		f->ifl_map = mmap(NULL, f->ifl_len, PROT_READ | PROT_WRITE, MAP_SHARED, f->ifl_fd, 0);
		assert_true(f->ifl_map != MAP_FAILED);
		for (size_t i = 0; i < f->ifl_len; i++)
			assert_int_equal(f->ifl_map[i], 0);
	}
	m = (struct inflight_msg){ f->ifl_len, 0, 2, QN };
	assert_int_equal(msg(f, 32, 1, &m, sizeof(m), NULL, 0, NULL, NULL), -EINVAL);   /* no fd */
	assert_int_equal(msg(f, 32, 1, &m, sizeof(m), &f->ifl_fd, 1, NULL, NULL), 0);
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
	assert_int_equal(u64msg(f, 16, 1u << 3 | 1u << 9 | (f->ifl ? 1u << 12 : 0)), 0);
	assert_int_equal(msg(f, 5, 1, &r, sizeof(r), &f->memfd, 1, NULL, NULL), 0);
	if (f->ifl)
		inflight_fd(f, extra_features & 1ull << VIRTIO_F_RING_PACKED);
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

/* Post a 3-descriptor request at head 0 and kick. */
static void request_post(struct fx *f, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len,
			 bool data_writable)
{
	struct virtio_blk_outhdr *h = (void *)(f->mem + 16384);
	uint8_t *status = f->mem + 16384 + 64;
	struct vring_desc *d = D(f);
	uint16_t ai = A(f)->idx;
	uint64_t one = 1;

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
	assert_int_equal(write(f->kick, &one, 8), 8);
}

/* Wait for the used index to pass @ui; return the status (0xee: none). */
static uint8_t request_wait(struct fx *f, uint16_t ui, uint32_t *used_len)
{
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
	return f->mem[16384 + 64];
}

/* Post a 3-descriptor request; wait for it; return the status (0xee: none). */
static uint8_t request(struct fx *f, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len,
		       bool data_writable, uint32_t *used_len)
{
	uint16_t ui = U(f)->idx;

	request_post(f, type, sector, data_gpa, len, data_writable);
	return request_wait(f, ui, used_len);
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

/* Packed ring: post a 3-descriptor request at ring position @pos in lap
 * @wrap (buffer id 5) and kick. */
static void packed_post(struct fx *f, unsigned pos, bool wrap, uint32_t type, uint64_t sector,
			uint32_t len)
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
}

/* Wait for the used descriptor at @pos (lap @wrap); return the status. */
static uint8_t packed_wait(struct fx *f, unsigned pos, bool wrap, uint32_t *used_len)
{
	struct vring_packed_desc *ring = (void *)f->mem;
	uint16_t want = wrap ? PK_AVAIL | PK_USED : 0;

	for (int i = 0; i < 3000 && (__atomic_load_n(&ring[pos].flags, __ATOMIC_ACQUIRE) &
				      (PK_AVAIL | PK_USED)) != want; i++)
		usleep(1000);
	assert_int_equal(ring[pos].flags & (PK_AVAIL | PK_USED), want);
	assert_int_equal(ring[pos].id, 5);
	if (used_len)
		*used_len = ring[pos].len;
	return f->mem[16384 + 64];
}

/* Packed ring: a 3-descriptor request at ring position @pos in lap @wrap
 * (buffer id 5), wait for its used descriptor at @pos; return the status. */
static uint8_t packed_req(struct fx *f, unsigned pos, bool wrap, uint32_t type, uint64_t sector,
			  uint32_t len, uint32_t *used_len)
{
	packed_post(f, pos, wrap, type, sector, len);
	return packed_wait(f, pos, wrap, used_len);
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

/* ---- inflight tracking (INFLIGHT_SHMFD) ----------------------------------- */

/* A disk whose writes wait at a gate: a request stays popped and not
 * completed for as long as the test wants. */
struct gate {
	struct vhost_disk d;
	struct vhost_disk *inner;
	pthread_mutex_t m;
	pthread_cond_t c;
	bool closed;
	unsigned writes;           /* writes that reached the disk */
};

static int g_readv(struct vhost_disk *d, const struct iovec *iov, int n, uint64_t off)
{
	struct gate *g = d->priv;

	return g->inner->ops->readv(g->inner, iov, n, off);
}

static int g_writev(struct vhost_disk *d, const struct iovec *iov, int n, uint64_t off)
{
	struct gate *g = d->priv;

	pthread_mutex_lock(&g->m);
	g->writes++;
	pthread_cond_broadcast(&g->c);
	while (g->closed)
		pthread_cond_wait(&g->c, &g->m);
	pthread_mutex_unlock(&g->m);
	return g->inner->ops->writev(g->inner, iov, n, off);
}

static int g_flush(struct vhost_disk *d)
{
	struct gate *g = d->priv;

	return g->inner->ops->flush(g->inner);
}

static void g_close(struct vhost_disk *d)
{
}

static const struct vhost_disk_ops gate_ops = {
	.readv = g_readv, .writev = g_writev, .flush = g_flush, .close = g_close,
};

static void gate_set(struct gate *g, bool closed)
{
	pthread_mutex_lock(&g->m);
	g->closed = closed;
	pthread_cond_broadcast(&g->c);
	pthread_mutex_unlock(&g->m);
}

static void gate_wait_writes(struct gate *g, unsigned n)
{
	pthread_mutex_lock(&g->m);
	while (g->writes < n)
		pthread_cond_wait(&g->c, &g->m);
	pthread_mutex_unlock(&g->m);
}

static unsigned gate_writes(struct gate *g)
{
	pthread_mutex_lock(&g->m);
	unsigned n = g->writes;

	pthread_mutex_unlock(&g->m);
	return n;
}

/* A new back-end on the gate (the previous one gone: a restart). */
static void new_backend(struct fx *f, struct gate *g)
{
	struct vhost_blk_opts o = { .disk = &g->d, .num_queues = 2, .workers = 2 };

	vhost_blk_destroy(f->b);
	assert_int_equal(vhost_blk_create_detached(&o, &f->b), 0);
}

static struct gate *gate_new(struct fx *f)
{
	struct gate *g = calloc(1, sizeof(*g));

	g->inner = f->disk;
	g->d = *f->disk;
	g->d.ops = &gate_ops;
	g->d.priv = g;
	g->d.unmap = false;
	pthread_mutex_init(&g->m, NULL);
	pthread_cond_init(&g->c, NULL);
	f->ifl = true;
	new_backend(f, g);
	return g;
}

static void gate_free(struct fx *f, struct gate *g)
{
	vhost_blk_destroy(f->b);   /* before the disk goes */
	f->b = NULL;
	vhost_blk_create_detached(&(struct vhost_blk_opts){ .disk = f->disk }, &f->b);
	pthread_mutex_destroy(&g->m);
	pthread_cond_destroy(&g->c);
	free(g);
}

/* Split ring: a request popped and not completed is marked in the region;
 * a back-end restarted on the same region (killed before the completion)
 * resubmits it, once; one killed after publishing its used entry but before
 * clearing the mark does not. */
static void test_inflight_split(void **st)
{
	struct fx *f = *st;
	struct gate *g = gate_new(f);
	uint8_t *snap_mem = malloc(MEM), *snap_ifl;
	const uint8_t *q0;
	uint16_t ui;

	ring_up(f, 0);
	q0 = f->ifl_map;   /* queue 0's region: header, then 16-byte states */
	assert_int_equal(q0[8], 1);                                   /* version */
	assert_int_equal(*(const uint16_t *)(q0 + 10), QN);           /* desc_num */
	memset(f->mem + 65536, 0x5a, 4096);
	assert_int_equal(request(f, VIRTIO_BLK_T_OUT, 64, GPA + 65536, 4096, false, NULL), 0);
	assert_int_equal(*(const uint16_t *)(q0 + 14), 1);            /* used_idx */
	assert_int_equal(q0[16], 0);                                  /* head 0 not in flight */
	/* the next one stays in the disk */
	gate_set(g, true);
	ui = U(f)->idx;
	request_post(f, VIRTIO_BLK_T_OUT, 72, GPA + 65536, 4096, false);
	gate_wait_writes(g, 2);
	assert_int_equal(q0[16], 1);                                  /* in flight */
	assert_int_equal(*(const uint64_t *)(q0 + 24), 1);            /* fetched second */
	/* the state a kill at this point leaves */
	snap_ifl = malloc(f->ifl_len);
	memcpy(snap_mem, f->mem, MEM);
	memcpy(snap_ifl, f->ifl_map, f->ifl_len);
	gate_set(g, false);
	assert_int_equal(request_wait(f, ui, NULL), 0);
	assert_int_equal(q0[16], 0);
	/* killed after the used index, before the mark was cleared: the
	 * restarted back-end finishes the bookkeeping, resubmits nothing */
	new_backend(f, g);
	f->ifl_map[16] = 1;
	*(uint16_t *)(f->ifl_map + 14) = ui;
	g->writes = 0;
	ring_up(f, U(f)->idx);   /* QEMU restarts a split ring at the used index */
	usleep(50000);
	assert_int_equal(U(f)->idx, (uint16_t)(ui + 1));
	assert_int_equal(gate_writes(g), 0);
	assert_int_equal(q0[16], 0);
	assert_int_equal(*(const uint16_t *)(q0 + 14), ui + 1);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 64, GPA + 65536, 512, true, NULL), 0);
	/* killed before the completion: resubmitted, completed once */
	new_backend(f, g);
	memcpy(f->mem, snap_mem, MEM);
	memcpy(f->ifl_map, snap_ifl, f->ifl_len);
	g->writes = 0;
	ring_up(f, U(f)->idx);
	assert_int_equal(request_wait(f, ui, NULL), 0);
	usleep(50000);
	assert_int_equal(U(f)->idx, (uint16_t)(ui + 1));              /* once */
	assert_int_equal(gate_writes(g), 1);
	assert_int_equal(q0[16], 0);
	/* and the ring goes on from there */
	memset(f->mem + 65536, 0, 4096);
	assert_int_equal(request(f, VIRTIO_BLK_T_IN, 72, GPA + 65536, 4096, true, NULL), 0);
	assert_int_equal(f->mem[65536 + 4095], 0x5a);
	free(snap_mem);
	free(snap_ifl);
	gate_free(f, g);
}

/* Packed ring: the same, with the request in flight across the end of the
 * ring; QEMU gives the restarted back-end the positions of the first start
 * (0, lap 1): the right ones come from the region. */
static void test_inflight_packed(void **st)
{
	struct fx *f = *st;
	struct gate *g = gate_new(f);
	uint8_t *snap_mem = malloc(MEM), *snap_ifl;
	const uint8_t *q0;
	const uint64_t packed = 1ull << VIRTIO_F_RING_PACKED;

	ring_up_with(f, 0, packed);
	q0 = f->ifl_map;   /* queue 0's region: 32-byte header, 32-byte states */
	assert_int_equal(q0[8], 1);
	memset(f->mem + 65536, 0x6b, 4096);
	assert_int_equal(packed_req(f, 0, true, VIRTIO_BLK_T_OUT, 64, 4096, NULL), 0);
	assert_int_equal(packed_req(f, 3, true, VIRTIO_BLK_T_IN, 64, 4096, NULL), 0);
	assert_int_equal(*(const uint16_t *)(q0 + 16), 6);            /* used_idx */
	/* positions 6, 7 (lap 1), 0 (lap 0): stays in the disk */
	gate_set(g, true);
	packed_post(f, 6, true, VIRTIO_BLK_T_OUT, 72, 4096);
	gate_wait_writes(g, 2);
	uint8_t *h = NULL;
	unsigned e = *(const uint16_t *)(q0 + 14);                    /* old_free_head */

	for (unsigned i = 0; i < QN; i++)
		if (q0[32 + 32 * i]) {
			assert_null(h);                                   /* one in flight */
			h = f->ifl_map + 32 + 32 * i;
		}
	assert_non_null(h);
	assert_int_equal(*(const uint16_t *)(h + 6), 3);              /* num */
	assert_true(e < QN);
	snap_ifl = malloc(f->ifl_len);
	memcpy(snap_mem, f->mem, MEM);
	memcpy(snap_ifl, f->ifl_map, f->ifl_len);
	gate_set(g, false);
	assert_int_equal(packed_wait(f, 6, true, NULL), 0);
	assert_int_equal(h[0], 0);
	assert_int_equal(*(const uint16_t *)(q0 + 16), 1);            /* used 9 = 1 in lap 0 */
	assert_int_equal(q0[20], 0);
	/* killed after the used descriptor, before the mark was cleared and
	 * the old_ values caught up: committed, nothing resubmitted */
	uint8_t *fin = malloc(f->ifl_len);

	h[0] = 1;
	memcpy(f->ifl_map + 14, snap_ifl + 14, 2);                    /* old_free_head */
	memcpy(f->ifl_map + 18, snap_ifl + 18, 2);                    /* old_used_idx */
	f->ifl_map[21] = snap_ifl[21];                                /* old_used_wrap_counter */
	memcpy(fin, f->ifl_map, f->ifl_len);
	new_backend(f, g);
	g->writes = 0;
	ring_up_with(f, 0, packed);   /* QEMU's stale base (that of the first start) */
	usleep(50000);
	assert_int_equal(gate_writes(g), 0);
	assert_int_equal(h[0], 0);
	assert_int_equal(packed_req(f, 1, false, VIRTIO_BLK_T_IN, 64, 512, NULL), 0);
	/* killed in the completion before the used descriptor was written:
	 * rolled back, resubmitted once, its used descriptor at 6 */
	new_backend(f, g);
	memcpy(f->mem, snap_mem, MEM);
	memcpy(f->ifl_map, fin, f->ifl_len);
	g->writes = 0;
	ring_up_with(f, 0, packed);
	assert_int_equal(packed_wait(f, 6, true, NULL), 0);
	usleep(50000);
	assert_int_equal(gate_writes(g), 1);
	assert_int_equal(h[0], 0);
	memset(f->mem + 65536, 0, 4096);
	assert_int_equal(packed_req(f, 1, false, VIRTIO_BLK_T_IN, 72, 4096, NULL), 0);
	assert_int_equal(f->mem[65536 + 4095], 0x6b);
	assert_int_equal(*(const uint16_t *)(q0 + 16), 4);            /* used 4, lap 0 */
	assert_int_equal(q0[20], 0);
	free(fin);
	free(snap_mem);
	free(snap_ifl);
	gate_free(f, g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_negotiation_and_rejections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_packed_ring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflight_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflight_packed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
