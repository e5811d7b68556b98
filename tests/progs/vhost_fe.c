/*
 * vhost_fe: a vhost-user-blk FRONT-END test driver (what QEMU does, minus
 * the guest): it maps a memfd as "guest memory", builds split virtqueues in
 * it, negotiates with the back-end over its socket and pushes virtio-blk
 * requests at a chosen queue depth, checking status bytes and data.
 *
 *   vhost_fe [-q QUEUES] [-n QSIZE] [-m MEM_MIB] [-P] [-I] [-s SPIN_US] SOCKET CMD ARGS...
 *     -s  before sleeping on a call, watch the used rings for up to SPIN_US
 *         (a guest that polls before it halts; calls stay enabled)
 *     -P  packed virtqueues (VIRTIO_F_RING_PACKED); not with malformed or
 *         reconnect (split-ring specific)
 *     -I  inflight tracking as QEMU asks for it (INFLIGHT_SHMFD:
 *         GET_INFLIGHT_FD, SET_INFLIGHT_FD with the buffer it returned)
 *     info                          features, config space, serial
 *     write OFF FILE                write FILE at byte OFF (sector aligned)
 *     read OFF LEN FILE             read into FILE
 *     discard OFF LEN | zeroes OFF LEN | zeroes-unmap OFF LEN | flush
 *     verify SEED NREQ QD SPAN [MODEL]
 *                                   NREQ random writes (4K..128K, some unaligned
 *                                   buffers, every queue) over [0,SPAN), then
 *                                   read all back and compare with the model;
 *                                   MODEL: write the expected bytes there
 *     churn SEED NREQ QD SPAN [MODEL [BLOCK]]
 *                                   NREQ random writes, reads (checked),
 *                                   discards and write zeroes (UNMAP or not)
 *                                   on every queue at once, never two
 *                                   overlapping in flight; discarded ranges
 *                                   must read as zeros; then read all back.
 *                                   BLOCK: also model a thin disk of BLOCK-
 *                                   byte blocks (allocated by a write, freed
 *                                   when a discard / zeroes-unmap covers it)
 *                                   and print "allocated N blocks"
 *     malformed                     bad requests; prints "name status" and
 *                                   exits 1 unless each got what it must
 *     restart SEED                  GET_VRING_BASE with requests queued, then
 *                                   SET_VRING_BASE and carry on; verify
 *     reconnect SEED SECONDS        keep writing; when the back-end goes away
 *                                   reconnect (for up to SECONDS), re-post what
 *                                   was not completed, verify everything
 *     bench RW BS QD SECONDS [SPAN [IDLE]]   RW: randread randwrite read write
 *                                   IDLE: then print "idle", stay connected
 *                                   without I/O for IDLE seconds, and check
 *                                   that one more read is served ("awake")
 * Exit: 0 ok, 1 check failed, 2 usage, 3 protocol/connection error.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#define GPA_BASE 0x100000000ull   /* guest physical address of our memory */
#define MAXQ 16

enum {
	GET_FEATURES = 1, SET_FEATURES = 2, SET_OWNER = 3, SET_MEM_TABLE = 5, SET_VRING_NUM = 8,
	SET_VRING_ADDR = 9, SET_VRING_BASE = 10, GET_VRING_BASE = 11, SET_VRING_KICK = 12,
	SET_VRING_CALL = 13, GET_PROTOCOL_FEATURES = 15, SET_PROTOCOL_FEATURES = 16,
	GET_QUEUE_NUM = 17, SET_VRING_ENABLE = 18, GET_CONFIG = 24, GET_INFLIGHT_FD = 31,
	SET_INFLIGHT_FD = 32,
};

struct hdr {
	uint32_t req, flags, size;
} __attribute__((packed));

struct vq {
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint64_t desc_off, avail_off, used_off;
	uint16_t avail_idx, last_used;
	uint16_t kicked_at;   /* avail index when we last decided whether to kick */
	/* packed: next descriptor position to make available / to find used */
	uint16_t pa_pos, pu_pos;
	bool pa_wrap, pu_wrap;
	int kick, call;
	unsigned inflight;
};

/* One request slot: 3 descriptors (header, data, status) in the table. */
struct slot {
	bool busy;
	int q;
	uint16_t head;
	struct virtio_blk_outhdr *hdr;
	uint8_t *status;
	uint8_t *buf;       /* data buffer in guest memory */
	uint32_t len;
	uint32_t type;
	uint64_t off;
	uint64_t rlen;      /* bytes of the disk it touches (discard / write zeroes: the range) */
	uint32_t used_len;
	uint16_t ndesc;     /* packed: descriptors the chain took in the ring */
	struct vring_desc *scratch;   /* packed: the chain as split descriptors, copied in at post */
};

static int sock = -1;
static const char *sock_path;
static uint8_t *mem;
static size_t mem_size;
static int memfd;
static unsigned nq = 1, qsize = 256;
static bool packed, inflight;
static struct vq vqs[MAXQ];
static struct virtio_blk_config cfg;
static uint64_t features;
static size_t bump;

static void die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "vhost_fe: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(code);
}

static uint64_t gpa(const void *p)
{
	return GPA_BASE + (uint64_t)((const uint8_t *)p - mem);
}

static void *galloc(size_t len, size_t align)
{
	bump = (bump + align - 1) / align * align;
	if (bump + len > mem_size)
		die(2, "guest memory exhausted (-m)");
	void *p = mem + bump;

	bump += len;
	return p;
}

/* ---- messages ------------------------------------------------------------- */

static int send_msg(uint32_t req, uint32_t flags, const void *p, uint32_t size, const int *fds, int nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr a;
	} cm;
	struct hdr h = { req, 1 | flags, size };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, size } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };

	if (nfds) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);

	return n == (ssize_t)(sizeof(h) + size) ? 0 : -EPIPE;
}

static int recv_reply(uint32_t req, void *p, uint32_t size)
{
	struct hdr h;
	struct pollfd pf = { .fd = sock, .events = POLLIN };

	if (poll(&pf, 1, 10000) != 1)
		return -ETIMEDOUT;
	if (recv(sock, &h, sizeof(h), MSG_WAITALL) != sizeof(h))
		return -ECONNRESET;
	if (h.req != req || !(h.flags & 4) || h.size != size)
		die(3, "bad reply to %u: req %u flags %x size %u", req, h.req, h.flags, h.size);
	if (size && recv(sock, p, size, MSG_WAITALL) != (ssize_t)size)
		return -ECONNRESET;
	return 0;
}

static int get_u64(uint32_t req, uint64_t *v)
{
	int r = send_msg(req, 0, NULL, 0, NULL, 0);

	return r ? r : recv_reply(req, v, 8);
}

static int set_u64(uint32_t req, uint64_t v)
{
	return send_msg(req, 0, &v, 8, NULL, 0);
}

/* with REPLY_ACK: the back-end's verdict */
static int set_acked(uint32_t req, const void *p, uint32_t size, const int *fds, int nfds)
{
	uint64_t ack;
	int r = send_msg(req, 8, p, size, fds, nfds);

	if (!r)
		r = recv_reply(req, &ack, 8);
	return r ? r : ack ? -EIO : 0;
}

static int vring_state(uint32_t req, unsigned idx, unsigned num)
{
	uint32_t s[2] = { idx, num };

	return send_msg(req, 0, s, 8, NULL, 0);
}

static int sock_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = -errno;

		close(sock);
		sock = -1;
		return e;
	}
	return 0;
}

static int start_queue(unsigned i, uint32_t base)
{
	struct vq *q = &vqs[i];
	struct { uint32_t index, flags; uint64_t desc, used, avail, log; } a = {
		i, 0, (uint64_t)(uintptr_t)q->desc, (uint64_t)(uintptr_t)q->used,
		(uint64_t)(uintptr_t)q->avail, 0 };
	uint64_t v;
	int r;

	if (packed)   /* QEMU's encoding: avail position | wrap << 15, the used one above */
		base = (base & 0xffff) | (base & 0xffff) << 16;
	if ((r = vring_state(SET_VRING_NUM, i, qsize)) || (r = vring_state(SET_VRING_BASE, i, base)) ||
	    (r = send_msg(SET_VRING_ADDR, 0, &a, sizeof(a), NULL, 0)))
		return r;
	v = i;
	q->kicked_at = packed ? q->avail_idx : (uint16_t)base;   /* packed: counts posts */
	if ((r = send_msg(SET_VRING_CALL, 0, &v, 8, &q->call, 1)))
		return r;
	if ((r = send_msg(SET_VRING_KICK, 0, &v, 8, &q->kick, 1)))
		return r;
	uint32_t en[2] = { i, 1 };

	return set_acked(SET_VRING_ENABLE, en, 8, NULL, 0);
}

/* Negotiate and start every queue; the rings' bases are their avail_idx. */
/* GET_INFLIGHT_FD (the reply carries the buffer's fd), then hand it back
 * with SET_INFLIGHT_FD, as QEMU does before it starts the rings. */
static int inflight_fd(void)
{
	struct { uint64_t size, off; uint16_t nq, qs; uint32_t pad; } m = { 0, 0, (uint16_t)nq, (uint16_t)qsize, 0 };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} cm;
	struct hdr h;
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
			     .msg_controllen = sizeof(cm.b) };
	struct cmsghdr *c;
	int fd = -1, r;

	if ((r = send_msg(GET_INFLIGHT_FD, 0, &m, sizeof(m), NULL, 0)))
		return r;
	if (recvmsg(sock, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC) != sizeof(h) || h.req != GET_INFLIGHT_FD ||
	    h.size != sizeof(m) || recv(sock, &m, sizeof(m), MSG_WAITALL) != sizeof(m))
		die(3, "bad reply to GET_INFLIGHT_FD");
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (fd < 0 || !m.size)
		die(3, "GET_INFLIGHT_FD: no buffer");
	r = set_acked(SET_INFLIGHT_FD, &m, sizeof(m), &fd, 1);
	close(fd);   /* the back-end mapped it */
	return r;
}

static int setup(void)
{
	uint64_t pf, qn;
	int r;

	if ((r = get_u64(GET_FEATURES, &features)))
		return r;
	uint64_t want = 1ull << VIRTIO_F_VERSION_1 | 1ull << 30 | 1ull << VIRTIO_BLK_F_SEG_MAX |
			1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_MQ |
			1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES |
			1ull << VIRTIO_BLK_F_RO | 1ull << VIRTIO_RING_F_INDIRECT_DESC |
			1ull << VIRTIO_RING_F_EVENT_IDX | (packed ? 1ull << VIRTIO_F_RING_PACKED : 0);

	if (!(features & 1ull << 30))
		die(3, "back-end lacks VHOST_USER_F_PROTOCOL_FEATURES");
	if (packed && !(features & 1ull << VIRTIO_F_RING_PACKED))
		die(3, "back-end lacks VIRTIO_F_RING_PACKED");
	features &= want;
	if ((r = set_u64(SET_FEATURES, features)) || (r = get_u64(GET_PROTOCOL_FEATURES, &pf)))
		return r;
	if (inflight && !(pf & 1u << 12))
		die(3, "back-end lacks INFLIGHT_SHMFD");
	pf &= 1u << 0 | 1u << 3 | 1u << 9 | (inflight ? 1u << 12 : 0);
	if (!(pf & 1u << 3) || !(pf & 1u << 9))
		die(3, "back-end lacks REPLY_ACK or CONFIG");
	if ((r = set_u64(SET_PROTOCOL_FEATURES, pf)) || (r = get_u64(GET_QUEUE_NUM, &qn)) ||
	    (r = send_msg(SET_OWNER, 0, NULL, 0, NULL, 0)))
		return r;
	if (qn < nq)
		die(3, "back-end has %" PRIu64 " queues, %u asked", qn, nq);
	if (inflight && (r = inflight_fd()))
		return r;
	/* the virtio 1.1 layout (60 bytes): what QEMU 7.2's back-ends answer */
	const uint32_t clen = offsetof(struct virtio_blk_config, unused1) + 3;
	struct { uint32_t off, size, flags; uint8_t p[sizeof(cfg)]; } c = { 0, clen, 0, { 0 } };

	if ((r = send_msg(GET_CONFIG, 0, &c, 12 + clen, NULL, 0)) || (r = recv_reply(GET_CONFIG, &c, 12 + clen)))
		return r;
	memset(&cfg, 0, sizeof(cfg));
	memcpy(&cfg, c.p, clen);
	struct { uint32_t n, pad; uint64_t gpa, size, uaddr, off; } m = {
		1, 0, GPA_BASE, mem_size, (uint64_t)(uintptr_t)mem, 0 };

	if ((r = set_acked(SET_MEM_TABLE, &m, sizeof(m), &memfd, 1)))
		return r;
	for (unsigned i = 0; i < nq; i++)
		if ((r = start_queue(i, packed ? (uint32_t)(vqs[i].pa_pos | vqs[i].pa_wrap << 15)
					       : vqs[i].avail_idx)))
			return r;
	return 0;
}

static void init_mem(size_t mib)
{
	mem_size = mib << 20;
	memfd = memfd_create("vhost_fe", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)mem_size))
		die(3, "memfd: %s", strerror(errno));
	mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (mem == MAP_FAILED)
		die(3, "mmap: %s", strerror(errno));
	for (unsigned i = 0; i < nq; i++) {
		struct vq *q = &vqs[i];

		q->desc = galloc(16 * qsize, 4096);
		q->avail = galloc(6 + 2 * qsize, 4096);
		q->used = galloc(6 + 8 * qsize, 4096);
		q->pa_wrap = q->pu_wrap = true;
		q->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		q->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (q->kick < 0 || q->call < 0)
			die(3, "eventfd: %s", strerror(errno));
	}
}

/* ---- requests ---------------------------------------------------------------- */

static struct slot *slots;
static unsigned nslots;

static void init_slots(unsigned qd, uint32_t maxbuf)
{
	unsigned per_q = qsize / 3;

	if (qd > per_q * nq)
		die(2, "queue depth %u too deep for %u queues of %u", qd, nq, qsize);
	nslots = qd;
	slots = calloc(qd, sizeof(*slots));
	for (unsigned s = 0; s < qd; s++) {
		struct slot *sl = &slots[s];

		sl->q = (int)(s % nq);
		sl->head = (uint16_t)(3 * (s / nq));
		sl->hdr = galloc(sizeof(*sl->hdr), 16);
		sl->status = galloc(1, 1);
		sl->buf = galloc(maxbuf + 4096, 4096);
		sl->scratch = calloc(3, sizeof(*sl->scratch));
	}
}

/* The slot's chain as split descriptors: the ring's table, or (packed) the
 * scratch copy that post_chain lays into the ring. */
static struct vring_desc *slot_desc(struct slot *sl)
{
	return packed ? sl->scratch : vqs[sl->q].desc + sl->head;
}

#define PK_AVAIL (1u << VRING_PACKED_DESC_F_AVAIL)
#define PK_USED  (1u << VRING_PACKED_DESC_F_USED)

/* Packed: the chain's descriptors at the next positions, buffer id = the
 * slot's head, the head's flags written last. */
static void post_packed(struct vq *q, struct slot *sl)
{
	struct vring_packed_desc *ring = (struct vring_packed_desc *)q->desc;
	const struct vring_desc *d = sl->scratch;
	uint16_t head_pos = q->pa_pos, head_flags = 0;
	unsigned i = 0, n = 0;

	for (;;) {
		uint16_t f = (uint16_t)((d[i].flags & (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE |
						       VRING_DESC_F_INDIRECT)) |
				       (q->pa_wrap ? PK_AVAIL : PK_USED));

		ring[q->pa_pos].addr = d[i].addr;
		ring[q->pa_pos].len = d[i].len;
		ring[q->pa_pos].id = sl->head;
		if (n == 0)
			head_flags = f;
		else
			ring[q->pa_pos].flags = f;
		n++;
		if (++q->pa_pos == qsize) {
			q->pa_pos = 0;
			q->pa_wrap = !q->pa_wrap;
		}
		if (!(d[i].flags & VRING_DESC_F_NEXT) || n == 3)
			break;
		i = (unsigned)(d[i].next - sl->head);
		if (i >= 3)
			die(2, "packed: chain leaves its slot");
	}
	sl->ndesc = (uint16_t)n;
	__atomic_store_n(&ring[head_pos].flags, head_flags, __ATOMIC_RELEASE);
}

static void post_chain(struct slot *sl)
{
	struct vq *q = &vqs[sl->q];

	if (packed) {
		post_packed(q, sl);
	} else {
		q->avail->ring[q->avail_idx % qsize] = sl->head;
		__atomic_store_n(&q->avail->idx, (uint16_t)(q->avail_idx + 1), __ATOMIC_RELEASE);
	}
	q->avail_idx++;   /* packed: only counts posts (for kick) */
	q->inflight++;
}

static bool event_idx(void)
{
	return features & 1ull << VIRTIO_RING_F_EVENT_IDX;
}

/* Kick the back-end about what was posted since the last kick, unless it
 * said it does not need one (as a Linux guest does): with EVENT_IDX its
 * avail_event (after the used ring) must lie in what was posted, else
 * VRING_USED_F_NO_NOTIFY must be clear. */
static void kick(int qi)
{
	struct vq *q = &vqs[qi];
	uint64_t one = 1;
	bool need;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (packed)   /* device area: flags DISABLE while it polls */
		need = q->avail_idx != q->kicked_at &&
		       __atomic_load_n(&((struct vring_packed_desc_event *)q->used)->flags, __ATOMIC_RELAXED) !=
		       VRING_PACKED_EVENT_FLAG_DISABLE;
	else if (event_idx())
		need = vring_need_event(__atomic_load_n((uint16_t *)&q->used->ring[qsize], __ATOMIC_RELAXED),
					q->avail_idx, q->kicked_at);
	else
		need = q->avail_idx != q->kicked_at &&
		       !(__atomic_load_n(&q->used->flags, __ATOMIC_RELAXED) & VRING_USED_F_NO_NOTIFY);
	q->kicked_at = q->avail_idx;
	if (need && write(q->kick, &one, 8) != 8)
		die(3, "kick: %s", strerror(errno));
}

/* Fill the slot's chain: header, data (@buf_off into the slot's buffer), status. */
static void build(struct slot *sl, uint32_t type, uint64_t off, uint32_t len, uint32_t buf_off)
{
	struct vring_desc *d = slot_desc(sl);
	bool has_data = len > 0;

	sl->type = type;
	sl->off = off;
	sl->len = len;
	sl->rlen = len;
	sl->hdr->type = type;
	sl->hdr->ioprio = 0;
	sl->hdr->sector = off / 512;
	*sl->status = 0xee;
	d[0] = (struct vring_desc){ gpa(sl->hdr), 16, VRING_DESC_F_NEXT, (uint16_t)(sl->head + 1) };
	if (has_data) {
		d[1] = (struct vring_desc){ gpa(sl->buf + buf_off), len,
					   (uint16_t)(VRING_DESC_F_NEXT |
					   (type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID ? VRING_DESC_F_WRITE : 0)),
					   (uint16_t)(sl->head + 2) };
		d[2] = (struct vring_desc){ gpa(sl->status), 1, VRING_DESC_F_WRITE, 0 };
	} else {
		d[0].next = (uint16_t)(sl->head + 2);
		d[2] = (struct vring_desc){ gpa(sl->status), 1, VRING_DESC_F_WRITE, 0 };
	}
}

static void submit(struct slot *sl)
{
	sl->busy = true;
	post_chain(sl);
}

static struct slot *slot_of(int qi, uint32_t id)
{
	for (unsigned s = 0; s < nslots; s++)
		if (slots[s].q == qi && slots[s].head == id)
			return &slots[s];
	return NULL;
}

/* The next used entry of @q, if any (packed: the caller skips the chain's
 * descriptors with used_skip once it knows which slot it was). */
static bool next_used(struct vq *q, uint32_t *id, uint32_t *len)
{
	if (packed) {
		const struct vring_packed_desc *d = (const struct vring_packed_desc *)q->desc + q->pu_pos;
		uint16_t f = __atomic_load_n(&d->flags, __ATOMIC_ACQUIRE);

		if (!!(f & PK_AVAIL) != q->pu_wrap || !!(f & PK_USED) != q->pu_wrap)
			return false;
		*id = d->id;
		*len = d->len;
		return true;
	}
	if (q->last_used == __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE))
		return false;
	*id = q->used->ring[q->last_used % qsize].id;
	*len = q->used->ring[q->last_used % qsize].len;
	q->last_used++;
	return true;
}

static void used_skip(struct vq *q, unsigned n)
{
	q->pu_pos = (uint16_t)(q->pu_pos + n);
	if (q->pu_pos >= qsize) {
		q->pu_pos = (uint16_t)(q->pu_pos - qsize);
		q->pu_wrap = !q->pu_wrap;
	}
}

/* Is a used entry waiting on any queue (nothing consumed)? */
static bool used_pending(void)
{
	for (unsigned i = 0; i < nq; i++) {
		struct vq *q = &vqs[i];

		if (packed) {
			const struct vring_packed_desc *d = (const struct vring_packed_desc *)q->desc + q->pu_pos;
			uint16_t f = __atomic_load_n(&d->flags, __ATOMIC_ACQUIRE);

			if (!!(f & PK_AVAIL) == q->pu_wrap && !!(f & PK_USED) == q->pu_wrap)
				return true;
		} else if (q->last_used != __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE)) {
			return true;
		}
	}
	return false;
}

static uint64_t spin_ns;   /* -s: watch the used rings this long before sleeping */

static uint64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* -s: a guest that polls before it halts (KVM guests' cpuidle-haltpoll, or
 * virtio-blk poll queues) sees a completion without a wake-up.  Calls stay
 * on: the back-end signals as it would for any guest.  \return true if a
 * used entry came within the window. */
static bool spin_used(void)
{
	uint64_t end;

	if (!spin_ns)
		return false;
	end = mono_ns() + spin_ns;
	do {
		for (int i = 0; i < 32; i++) {
			if (used_pending())
				return true;
			__builtin_ia32_pause();
		}
	} while (mono_ns() < end);
	return false;
}

/* Reap completions; wait up to @ms for at least one.  -ECONNRESET when the
 * back-end is gone.  Calls @cb for each. */
static int reap(int ms, void (*cb)(struct slot *))
{
	int got = 0;
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		for (unsigned i = 0; i < nq; i++) {
			uint32_t id, len;

			while (next_used(&vqs[i], &id, &len)) {
				struct slot *sl = slot_of((int)i, id);

				if (!sl || !sl->busy)
					die(1, "queue %u: used id %u is not in flight", i, id);
				if (packed)
					used_skip(&vqs[i], sl->ndesc);
				sl->busy = false;
				sl->used_len = len;
				vqs[i].inflight--;
				got++;
				if (cb)
					cb(sl);
			}
		}
		if (got)
			return got;
		if (event_idx() && !packed) {
			/* a call for the next completion, then look once more */
			bool more = false;

			for (unsigned i = 0; i < nq; i++)
				__atomic_store_n(&vqs[i].avail->ring[qsize], vqs[i].last_used, __ATOMIC_RELAXED);
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			for (unsigned i = 0; i < nq; i++)
				more |= __atomic_load_n(&vqs[i].used->idx, __ATOMIC_ACQUIRE) != vqs[i].last_used;
			if (more)
				continue;
		}
		if (spin_used())
			continue;
		struct pollfd pf[MAXQ + 1];

		for (unsigned i = 0; i < nq; i++)
			pf[i] = (struct pollfd){ .fd = vqs[i].call, .events = POLLIN };
		pf[nq] = (struct pollfd){ .fd = sock, .events = POLLIN };
		clock_gettime(CLOCK_MONOTONIC, &t);
		int left = ms - (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(pf, nq + 1, left > 100 ? 100 : left) < 0 && errno != EINTR)
			return -errno;
		for (unsigned i = 0; i < nq; i++) {
			uint64_t v;

			if (pf[i].revents & POLLIN && read(vqs[i].call, &v, 8) < 0 && errno != EAGAIN)
				return -errno;
		}
		if (pf[nq].revents & (POLLIN | POLLHUP)) {
			char c;

			if (recv(sock, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
				return -ECONNRESET;
		}
	}
}

static struct slot *free_slot(void)
{
	for (unsigned s = 0; s < nslots; s++)
		if (!slots[s].busy)
			return &slots[s];
	return NULL;
}

/* One synchronous request on slot 0. */
static uint8_t sync_req(uint32_t type, uint64_t off, uint32_t len, uint32_t *used)
{
	struct slot *sl = &slots[0];

	build(sl, type, off, len, 0);
	submit(sl);
	kick(sl->q);
	int r = reap(10000, NULL);

	if (r < 0)
		die(3, "request: %s", strerror(-r));
	if (used)
		*used = sl->used_len;
	return *sl->status;
}

/* ---- data model ------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rnd();

		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

static uint8_t *model;
static uint64_t model_span;
static unsigned failures;
static bool learning;   /* read_back copies what it reads into the model */

static void check_cb(struct slot *sl)
{
	if (*sl->status != VIRTIO_BLK_S_OK) {
		fprintf(stderr, "request type %u at %" PRIu64 "+%u: status %u\n", sl->type, sl->off,
			sl->len, *sl->status);
		failures++;
		return;
	}
	if (sl->type == VIRTIO_BLK_T_IN && model && learning && sl->off + sl->len <= model_span)
		memcpy(model + sl->off, sl->buf, sl->len);
	else if (sl->type == VIRTIO_BLK_T_IN && model && memcmp(sl->buf, model + sl->off, sl->len)) {
		fprintf(stderr, "data mismatch at %" PRIu64 "+%u\n", sl->off, sl->len);
		failures++;
	}
}

/* Read [0, span) back in 64 KiB pieces with every slot busy; compare. */
static void read_back(void)
{
	uint64_t off = 0;

	while (off < model_span) {
		struct slot *sl;

		while (off < model_span && (sl = free_slot())) {
			uint32_t len = model_span - off < 65536 ? (uint32_t)(model_span - off) : 65536;

			build(sl, VIRTIO_BLK_T_IN, off, len, 0);
			submit(sl);
			off += len;
		}
		for (unsigned i = 0; i < nq; i++)
			kick((int)i);
		int r = reap(10000, check_cb);

		if (r < 0)
			die(3, "read back: %s", strerror(-r));
	}
	for (unsigned s = 0; s < nslots; s++)
		while (slots[s].busy)
			if (reap(10000, check_cb) < 0)
				die(3, "read back: timeout");
}

/* A random write of the model, into a free slot. */
static void random_write(struct slot *sl)
{
	uint32_t len = (uint32_t)(1 + rnd() % 32) * 4096;

	if (len > model_span)
		len = (uint32_t)model_span;
	uint64_t off;

	/* in-flight writes may complete in any order: never overlap them */
	for (int tries = 0;; tries++) {
		bool clash = false;

		off = (rnd() % ((model_span - len) / 512 + 1)) * 512;
		for (unsigned s = 0; s < nslots; s++)
			if (slots[s].busy && slots[s].type == VIRTIO_BLK_T_OUT &&
			    off < slots[s].off + slots[s].len && slots[s].off < off + len)
				clash = true;
		if (!clash || tries > 1000)
			break;
	}
	uint32_t boff = (rnd() & 1) ? (uint32_t)(rnd() % 8) * 512 : 0;   /* not 4K-aligned sometimes */

	fill(model + off, len);
	build(sl, VIRTIO_BLK_T_OUT, off, len, boff);
	memcpy(sl->buf + boff, model + off, len);
	submit(sl);
}

static void write_model(const char *path)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(model, 1, model_span, f) != model_span || fclose(f))
		die(3, "cannot write %s", path);
}

static void wait_all(void (*cb)(struct slot *))
{
	for (unsigned s = 0; s < nslots; s++)
		while (slots[s].busy) {
			int r = reap(10000, cb);

			if (r < 0)
				die(3, "waiting for completions: %s", strerror(-r));
		}
}

/* verify / churn: the model starts as what [0, @span) of the disk holds. */
static void load_begin(uint64_t seed, unsigned qd, uint64_t span)
{
	rng_state = seed | 1;
	model_span = span;
	model = calloc(1, span);
	init_slots(qd, 128 << 10);
	if (setup())
		die(3, "negotiation failed");
	if (span > cfg.capacity * 512)
		die(2, "span beyond the disk");
	learning = true;
	read_back();
	learning = false;
}

/* @nreq requests made by @one (false: none fits now) on every queue, then a
 * flush and a full read back against the model, written to @out. */
static void load_run(unsigned nreq, bool (*one)(struct slot *), const char *out)
{
	for (unsigned done = 0; done < nreq;) {
		struct slot *sl;

		while (done < nreq && (sl = free_slot()) && one(sl))
			done++;
		for (unsigned i = 0; i < nq; i++)
			kick((int)i);
		if (reap(10000, check_cb) < 0)
			die(3, "requests: timeout");
	}
	wait_all(check_cb);
	if (sync_req(VIRTIO_BLK_T_FLUSH, 0, 0, NULL) != VIRTIO_BLK_S_OK)
		failures++;
	read_back();
	if (out)
		write_model(out);
}

static bool verify_one(struct slot *sl)
{
	random_write(sl);
	return true;
}

static int cmd_verify(uint64_t seed, unsigned nreq, unsigned qd, uint64_t span, const char *out)
{
	load_begin(seed, qd, span);
	load_run(nreq, verify_one, out);
	printf("verify: %u writes, %u failures\n", nreq, failures);
	return failures ? 1 : 0;
}

/* A discard or write-zeroes request of one segment over [off, off+len). */
static void build_range(struct slot *sl, uint32_t type, uint64_t off, uint64_t len, uint32_t flags)
{
	struct virtio_blk_discard_write_zeroes *s = (void *)sl->buf;

	s->sector = off / 512;
	s->num_sectors = (uint32_t)(len / 512);
	s->flags = flags;
	build(sl, type, off, 16, 0);
	slot_desc(sl)[1].flags &= (uint16_t)~VRING_DESC_F_WRITE;
	sl->rlen = len;
}

static uint8_t *alloc_model;   /* churn: per block, 1 = allocated (thin disk) */
static uint64_t alloc_bs;

/* [off, off+len) free of every in-flight request (@reads_too: reads count). */
static bool range_free(uint64_t off, uint64_t len, bool reads_too)
{
	for (unsigned s = 0; s < nslots; s++)
		if (slots[s].busy && (reads_too || slots[s].type != VIRTIO_BLK_T_IN) &&
		    off < slots[s].off + slots[s].rlen && slots[s].off < off + len)
			return false;
	return true;
}

/* One random request into a free slot: 45% writes, 30% reads, 25% discard /
 * write zeroes.  \return false if no free range was found this time. */
static bool churn_one(struct slot *sl)
{
	unsigned kind = (unsigned)(rnd() % 20);
	bool rd = kind < 6, wr = kind >= 6 && kind < 15;
	uint64_t len = rd || wr ? (1 + rnd() % 32) * 4096 : (1 + rnd() % (3u << 11)) * 512;
	uint64_t off;

	if (len > model_span)
		len = model_span;
	for (int tries = 0;; tries++) {
		off = (rnd() % ((model_span - len) / 512 + 1)) * 512;
		if (range_free(off, len, !rd))
			break;
		if (tries > 100)
			return false;
	}
	if (rd) {
		build(sl, VIRTIO_BLK_T_IN, off, (uint32_t)len, 0);
	} else if (wr) {
		fill(model + off, len);
		build(sl, VIRTIO_BLK_T_OUT, off, (uint32_t)len, 0);
		memcpy(sl->buf, model + off, len);
		for (uint64_t b = off / (alloc_bs ? alloc_bs : 1); alloc_model && b * alloc_bs < off + len; b++)
			alloc_model[b] = 1;
	} else {
		unsigned z = kind - 15;   /* 0-1 discard, 2-3 zeroes + unmap, 4 zeroes */
		bool unmap = z < 4;

		memset(model + off, 0, len);
		if (z < 2)
			build_range(sl, VIRTIO_BLK_T_DISCARD, off, len, 0);
		else
			build_range(sl, VIRTIO_BLK_T_WRITE_ZEROES, off, len,
				    unmap ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0);
		for (uint64_t b = (off + alloc_bs - 1) / (alloc_bs ? alloc_bs : 1);
		     alloc_model && unmap && (b + 1) * alloc_bs <= off + len; b++)
			alloc_model[b] = 0;
	}
	submit(sl);
	return true;
}

static int cmd_churn(uint64_t seed, unsigned nreq, unsigned qd, uint64_t span, const char *out,
		     uint64_t bsz)
{
	load_begin(seed, qd, span);
	if (bsz) {
		alloc_bs = bsz;
		alloc_model = calloc(span / bsz + 1, 1);
	}
	/* blocks holding data are allocated; zero blocks are taken for holes
	 * (true of a new thin disk) */
	for (uint64_t b = 0; alloc_model && b * bsz < span; b++)
		for (uint64_t i = b * bsz; i < (b + 1) * bsz && i < span; i++)
			if (model[i]) {
				alloc_model[b] = 1;
				break;
			}
	load_run(nreq, churn_one, out);
	if (alloc_model) {
		uint64_t n = 0;

		for (uint64_t b = 0; b * bsz < span; b++)
			n += alloc_model[b];
		printf("allocated %" PRIu64 " blocks\n", n);
	}
	printf("churn: %u requests, %u failures\n", nreq, failures);
	return failures ? 1 : 0;
}

/* ---- malformed requests --------------------------------------------------------- */

struct bad_case {
	const char *name;
	uint8_t want;   /* expected status; 0xee = no status written (used len 0) */
};

static int cmd_malformed(void)
{
	unsigned bad = 0;
	uint64_t cap;
	struct slot *sl;
	uint32_t used;
	uint8_t st;

	init_slots(1, 1 << 20);
	if (setup())
		die(3, "negotiation failed");
	cap = cfg.capacity * 512;
	sl = &slots[0];
	struct vring_desc *d = vqs[0].desc + sl->head;

#define EXPECT(name, want, expr) do { st = (expr); printf("%-28s %u\n", name, st); \
	if (st != (want)) { bad++; fprintf(stderr, "%s: status %u, want %u\n", name, st, want); } } while (0)
	/* a good one first */
	memset(sl->buf, 0x5a, 4096);
	EXPECT("write-ok", VIRTIO_BLK_S_OK, sync_req(VIRTIO_BLK_T_OUT, 0, 4096, NULL));
	EXPECT("read-past-end", VIRTIO_BLK_S_IOERR, sync_req(VIRTIO_BLK_T_IN, cap, 512, NULL));
	EXPECT("read-straddling-end", VIRTIO_BLK_S_IOERR, sync_req(VIRTIO_BLK_T_IN, cap - 512, 1024, NULL));
	EXPECT("write-past-end", VIRTIO_BLK_S_IOERR, sync_req(VIRTIO_BLK_T_OUT, cap, 4096, NULL));
	/* huge sector: overflow when multiplied by 512 */
	build(sl, VIRTIO_BLK_T_IN, 0, 512, 0);
	sl->hdr->sector = UINT64_MAX / 256;
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("read-sector-overflow", VIRTIO_BLK_S_IOERR, *sl->status);
	EXPECT("read-odd-length", VIRTIO_BLK_S_IOERR, sync_req(VIRTIO_BLK_T_IN, 0, 100, NULL));
	EXPECT("unknown-type", VIRTIO_BLK_S_UNSUPP, sync_req(0x77, 0, 0, NULL));
	EXPECT("get-lifetime-unsupported", VIRTIO_BLK_S_UNSUPP, sync_req(10, 0, 0, NULL));
	/* data descriptor outside guest memory */
	build(sl, VIRTIO_BLK_T_IN, 0, 4096, 0);
	d[1].addr = GPA_BASE + mem_size + 4096;
	submit(sl); kick(0); reap(10000, NULL);
	used = sl->used_len;
	EXPECT("data-outside-memory", 0xee, *sl->status);
	if (used) { bad++; fprintf(stderr, "data-outside-memory: used len %u\n", used); }
	/* straddling the end of the region */
	build(sl, VIRTIO_BLK_T_IN, 0, 8192, 0);
	d[1].addr = GPA_BASE + mem_size - 4096;
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("data-straddling-region", 0xee, *sl->status);
	/* below guest memory (guest physical 0) */
	build(sl, VIRTIO_BLK_T_IN, 0, 512, 0);
	d[1].addr = 0;
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("data-at-gpa-0", 0xee, *sl->status);
	/* descriptor loop: next points back to the head */
	build(sl, VIRTIO_BLK_T_IN, 0, 512, 0);
	d[1].flags |= VRING_DESC_F_NEXT;
	d[1].next = sl->head;
	d[1].flags &= (uint16_t)~VRING_DESC_F_WRITE;
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("descriptor-loop", 0xee, *sl->status);
	/* next index beyond the table */
	build(sl, VIRTIO_BLK_T_IN, 0, 512, 0);
	d[1].next = (uint16_t)qsize + 5;
	d[1].flags |= VRING_DESC_F_NEXT;
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("next-out-of-table", 0xee, *sl->status);
	/* readable after writable */
	build(sl, VIRTIO_BLK_T_OUT, 0, 512, 0);
	d[0].flags |= VRING_DESC_F_WRITE;
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("readable-after-writable", 0xee, *sl->status);
	/* no status byte at all: header only */
	build(sl, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	d[0].flags = 0;
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("no-status-byte", 0xee, *sl->status);
	if (sl->used_len) { bad++; fprintf(stderr, "no-status-byte: used len %u\n", sl->used_len); }
	/* short header (8 bytes) */
	build(sl, VIRTIO_BLK_T_IN, 0, 512, 0);
	d[0].len = 8;
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("short-header", VIRTIO_BLK_S_IOERR, *sl->status);
	/* zero-length data descriptor */
	build(sl, VIRTIO_BLK_T_IN, 0, 512, 0);
	d[1].len = 0;
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("zero-length-descriptor", 0xee, *sl->status);
	/* indirect table outside memory */
	build(sl, VIRTIO_BLK_T_IN, 0, 512, 0);
	d[0] = (struct vring_desc){ GPA_BASE + mem_size, 48, VRING_DESC_F_INDIRECT, 0 };
	submit(sl); kick(0); reap(10000, NULL);
	EXPECT("indirect-outside-memory", 0xee, *sl->status);
	/* a valid indirect chain (the driver's usual form) */
	{
		struct vring_desc *ind = (struct vring_desc *)(sl->buf + 65536);

		build(sl, VIRTIO_BLK_T_IN, 0, 4096, 0);
		memcpy(ind, d, 3 * sizeof(*d));
		ind[0].next = 1;
		ind[1].next = 2;
		d[0] = (struct vring_desc){ gpa(ind), 48, VRING_DESC_F_INDIRECT, 0 };
		submit(sl); kick(0); reap(10000, NULL);
		EXPECT("indirect-ok", VIRTIO_BLK_S_OK, *sl->status);
		if (sl->buf[0] != 0x5a || sl->used_len != 4097) {
			bad++;
			fprintf(stderr, "indirect-ok: data %02x used %u\n", sl->buf[0], sl->used_len);
		}
		/* nested indirect */
		build(sl, VIRTIO_BLK_T_IN, 0, 4096, 0);
		ind[0] = (struct vring_desc){ gpa(ind + 4), 48, VRING_DESC_F_INDIRECT, 0 };
		d[0] = (struct vring_desc){ gpa(ind), 16, VRING_DESC_F_INDIRECT, 0 };
		submit(sl); kick(0); reap(10000, NULL);
		EXPECT("indirect-nested", 0xee, *sl->status);
	}
	/* discard / write zeroes segments */
	{
		struct virtio_blk_discard_write_zeroes *s = (void *)sl->buf;

		build(sl, VIRTIO_BLK_T_DISCARD, 0, 16, 0);
		d[1].flags &= (uint16_t)~VRING_DESC_F_WRITE;
		s->sector = cfg.capacity; s->num_sectors = 8; s->flags = 0;
		submit(sl); kick(0); reap(10000, NULL);
		EXPECT("discard-past-end", VIRTIO_BLK_S_IOERR, *sl->status);
		build(sl, VIRTIO_BLK_T_WRITE_ZEROES, 0, 15, 0);
		d[1].flags &= (uint16_t)~VRING_DESC_F_WRITE;
		submit(sl); kick(0); reap(10000, NULL);
		EXPECT("write-zeroes-short-segment", VIRTIO_BLK_S_IOERR, *sl->status);
		build(sl, VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, 0);
		d[1].flags &= (uint16_t)~VRING_DESC_F_WRITE;
		s->sector = 0; s->num_sectors = 8; s->flags = 0x80;
		submit(sl); kick(0); reap(10000, NULL);
		EXPECT("write-zeroes-bad-flags", VIRTIO_BLK_S_UNSUPP, *sl->status);
	}
	/* the device still works and nothing above wrote: the first 4K is intact */
	EXPECT("read-ok-after", VIRTIO_BLK_S_OK, sync_req(VIRTIO_BLK_T_IN, 0, 4096, &used));
	for (int i = 0; i < 4096; i++)
		if (sl->buf[i] != 0x5a) {
			bad++;
			fprintf(stderr, "read-ok-after: byte %d is %02x\n", i, sl->buf[i]);
			break;
		}
	EXPECT("get-id", VIRTIO_BLK_S_OK, sync_req(VIRTIO_BLK_T_GET_ID, 0, 20, &used));
	printf("serial %.20s\n", (char *)sl->buf);
	/* the last sector is reachable */
	EXPECT("read-last-sector", VIRTIO_BLK_S_OK, sync_req(VIRTIO_BLK_T_IN, cap - 512, 512, NULL));
#undef EXPECT
	printf("malformed: %u unexpected\n", bad);
	return bad ? 1 : 0;
}

/* ---- stop/restart and reconnect -------------------------------------------------- */

static int cmd_restart(uint64_t seed)
{
	uint64_t span = 4 << 20;
	uint32_t st[2];

	rng_state = seed | 1;
	model_span = span;
	model = calloc(1, span);
	init_slots(24, 128 << 10);
	if (setup())
		die(3, "negotiation failed");
	learning = true;
	read_back();
	learning = false;
	for (int round = 0; round < 20; round++) {
		struct slot *sl;

		while ((sl = free_slot()))
			random_write(sl);
		kick(0);
		/* stop the ring with requests in flight or still queued */
		uint32_t s0[2] = { 0, 0 };

		if (send_msg(GET_VRING_BASE, 0, s0, 8, NULL, 0) || recv_reply(GET_VRING_BASE, st, 8))
			die(3, "GET_VRING_BASE failed");
		if (packed) {
			/* every popped chain completed: used position = avail position;
			 * what was published before the stop is reaped, nothing more comes */
			while (reap(20, check_cb) > 0)
				;
			uint32_t mine = (uint32_t)(vqs[0].pu_pos | vqs[0].pu_wrap << 15);
			uint32_t id, len;

			usleep(2000);
			if (st[0] != 0 || st[1] >> 16 != (st[1] & 0xffff) || (st[1] & 0xffff) != mine ||
			    next_used(&vqs[0], &id, &len)) {
				fprintf(stderr, "round %d: base %#x, front-end used position %#x\n", round,
					st[1], mine);
				failures++;
			}
			/* restart there: the chains not popped yet are still in the ring */
			if (start_queue(0, st[1] & 0xffff))
				die(3, "restart failed");
			kick(0);
			wait_all(check_cb);
			continue;
		}
		uint16_t used = __atomic_load_n(&vqs[0].used->idx, __ATOMIC_ACQUIRE);

		if (st[0] != 0 || (uint16_t)st[1] != used) {
			fprintf(stderr, "round %d: base %u but used idx %u (stopped ring left work in flight)\n",
				round, st[1], used);
			failures++;
		}
		/* what was completed before the stop is reaped now; no more may come */
		while (vqs[0].last_used != used)
			reap(1000, check_cb);
		usleep(2000);
		if (__atomic_load_n(&vqs[0].used->idx, __ATOMIC_ACQUIRE) != used) {
			fprintf(stderr, "round %d: completions after GET_VRING_BASE\n", round);
			failures++;
		}
		/* restart from the returned base: the rest gets done */
		if (start_queue(0, (uint16_t)st[1]))
			die(3, "restart failed");
		kick(0);
		wait_all(check_cb);
	}
	read_back();
	printf("restart: 20 rounds, %u failures\n", failures);
	return failures ? 1 : 0;
}

static int cmd_reconnect(uint64_t seed, unsigned secs)
{
	uint64_t span = 8 << 20;
	unsigned reconnects = 0, writes = 0;
	struct timespec t0, t;

	rng_state = seed | 1;
	model_span = span;
	model = calloc(1, span);
	init_slots(16, 128 << 10);
	if (setup())
		die(3, "negotiation failed");
	learning = true;
	read_back();
	learning = false;
	printf("running\n");   /* the test may now take the back-end away */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct slot *sl;

		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= secs)
			break;
		while ((sl = free_slot())) {
			random_write(sl);
			writes++;
		}
		for (unsigned i = 0; i < nq; i++)
			kick((int)i);
		int r = reap(10000, check_cb);

		if (r != -ECONNRESET && r != -EPIPE) {
			if (r < 0)
				die(3, "I/O: %s", strerror(-r));
			continue;
		}
		/* back-end gone: reconnect; every unfinished request is posted again
		 * (the old back-end may or may not have written it: same data) */
		close(sock);
		sock = -1;
		fprintf(stderr, "vhost_fe: back-end gone, reconnecting\n");
		/* completions the old back-end published count; the rest are redone */
		reap(1, check_cb);
		for (unsigned i = 0; i < nq; i++)
			vqs[i].inflight = 0;
		for (int tries = 0;; tries++) {
			if (tries > (int)secs * 20 + 300)
				die(3, "could not reconnect");
			if (!sock_connect()) {
				if (!setup())
					break;
				close(sock);   /* a dying back-end took the connection: again */
				sock = -1;
			}
			usleep(50000);
		}
		reconnects++;
		for (unsigned s = 0; s < nslots; s++)
			if (slots[s].busy)
				post_chain(&slots[s]);
		for (unsigned i = 0; i < nq; i++)
			kick((int)i);
	}
	wait_all(check_cb);
	read_back();
	printf("reconnect: %u writes, %u reconnects, %u failures\n", writes, reconnects, failures);
	return failures || !reconnects ? 1 : 0;
}

/* ---- bench ------------------------------------------------------------------------ */

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmd_bench(const char *rw, uint32_t bs, unsigned qd, double secs, uint64_t span,
		     double idle)
{
	bool rnd_io = !strncmp(rw, "rand", 4), wr = strstr(rw, "write") != NULL;
	uint64_t done = 0, seq = 0;
	double t0, t1;

	init_slots(qd, bs);
	if (setup())
		die(3, "negotiation failed");
	if (!span || span > cfg.capacity * 512)
		span = cfg.capacity * 512;
	span -= span % bs;
	rng_state = 88172645463325252ull;
	for (unsigned s = 0; s < nslots; s++)
		fill(slots[s].buf, bs);
	t0 = now();
	t1 = t0 + secs;
	for (;;) {
		struct slot *sl;
		bool more = now() < t1;

		while (more && (sl = free_slot())) {
			uint64_t off = rnd_io ? (rnd() % (span / bs)) * bs : (seq++ * bs) % span;

			build(sl, wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, off, bs, 0);
			submit(sl);
		}
		for (unsigned i = 0; i < nq; i++)
			if (vqs[i].inflight)
				kick((int)i);
		bool any = false;

		for (unsigned s = 0; s < nslots; s++)
			any |= slots[s].busy;
		if (!any)
			break;
		int r = reap(10000, check_cb);

		if (r < 0)
			die(3, "bench: %s", strerror(-r));
		done += (uint64_t)r;
	}
	double el = now() - t0;

	printf("bench %s bs=%u qd=%u: %" PRIu64 " ios in %.2f s: iops=%.0f MBps=%.1f lat_us=%.1f errors=%u\n",
	       rw, bs, qd, done, el, done / el, done * (double)bs / el / 1e6, el * 1e6 * qd / (double)done,
	       failures);
	if (idle > 0) {
		printf("idle\n");
		usleep((useconds_t)(idle * 1e6));
		if (sync_req(VIRTIO_BLK_T_IN, 0, bs, NULL) != VIRTIO_BLK_S_OK)
			die(1, "the read after the idle time failed");
		printf("awake\n");
	}
	return failures ? 1 : 0;
}

/* ---- simple commands ---------------------------------------------------------------- */

static int cmd_rw(bool wr, uint64_t off, uint64_t len, const char *path)
{
	FILE *f = fopen(path, wr ? "rb" : "wb");
	const uint32_t chunk = 1 << 20;

	if (!f)
		die(2, "cannot open %s", path);
	if (wr) {
		struct stat st;

		fstat(fileno(f), &st);
		len = (uint64_t)st.st_size;
	}
	init_slots(1, chunk);
	if (setup())
		die(3, "negotiation failed");
	for (uint64_t done = 0; done < len;) {
		uint32_t n = len - done < chunk ? (uint32_t)(len - done) : chunk;

		if (wr && fread(slots[0].buf, 1, n, f) != n)
			die(3, "short read of %s", path);
		uint8_t st = sync_req(wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, off + done, n, NULL);

		if (st != VIRTIO_BLK_S_OK) {
			fprintf(stderr, "vhost_fe: %s at %" PRIu64 ": status %u\n", wr ? "write" : "read",
				off + done, st);
			return 1;
		}
		if (!wr && fwrite(slots[0].buf, 1, n, f) != n)
			die(3, "cannot write %s", path);
		done += n;
	}
	fclose(f);
	return 0;
}

static int cmd_range(uint32_t type, uint64_t off, uint64_t len, uint32_t flags)
{
	init_slots(1, 4096);
	if (setup())
		die(3, "negotiation failed");
	if (type == VIRTIO_BLK_T_FLUSH)
		return sync_req(type, 0, 0, NULL) == VIRTIO_BLK_S_OK ? 0 : 1;
	build_range(&slots[0], type, off, len, flags);
	submit(&slots[0]);
	kick(0);
	if (reap(10000, NULL) < 0)
		die(3, "timeout");
	printf("status %u\n", *slots[0].status);
	return *slots[0].status == VIRTIO_BLK_S_OK ? 0 : 1;
}

static int cmd_info(void)
{
	uint32_t used;

	init_slots(1, 4096);
	if (setup())
		die(3, "negotiation failed");
	uint8_t st = sync_req(VIRTIO_BLK_T_GET_ID, 0, 20, &used);

	printf("capacity %llu\nblk_size %u\nseg_max %u\nnum_queues %u\nmax_discard_sectors %u\n"
	       "discard_sector_alignment %u\nmax_write_zeroes_sectors %u\nwrite_zeroes_may_unmap %u\n"
	       "features 0x%llx\nro %d\nserial %.20s\nget_id_status %u\n",
	       (unsigned long long)cfg.capacity, cfg.blk_size, cfg.seg_max, cfg.num_queues,
	       cfg.max_discard_sectors, cfg.discard_sector_alignment, cfg.max_write_zeroes_sectors,
	       cfg.write_zeroes_may_unmap, (unsigned long long)features,
	       !!(features & 1ull << VIRTIO_BLK_F_RO), (char *)slots[0].buf, st);
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = 64;
	int c;

	while ((c = getopt(argc, argv, "q:n:m:PIs:")) != -1) {
		switch (c) {
		case 'I': inflight = true; break;
		case 's': spin_ns = strtoull(optarg, NULL, 0) * 1000; break;
		case 'P': packed = true; break;
		case 'q': nq = (unsigned)atoi(optarg); break;
		case 'n': qsize = (unsigned)atoi(optarg); break;
		case 'm': mib = (size_t)atoi(optarg); break;
		default: return 2;
		}
	}
	if (argc - optind < 2 || !nq || nq > MAXQ || qsize < 4 || qsize > 1024 || (qsize & (qsize - 1)))
		die(2, "usage: see the header of tests/progs/vhost_fe.c");
	sock_path = argv[optind];
	const char *cmd = argv[optind + 1];
	char **a = argv + optind + 2;
	int na = argc - optind - 2;

	setvbuf(stdout, NULL, _IOLBF, 0);
	init_mem(mib);
	for (int tries = 0; sock_connect(); tries++) {
		if (tries > 100)
			die(3, "cannot connect to %s: %s", sock_path, strerror(errno));
		usleep(50000);
	}
	if (!strcmp(cmd, "info"))
		return cmd_info();
	if (!strcmp(cmd, "write") && na == 2)
		return cmd_rw(true, strtoull(a[0], NULL, 0), 0, a[1]);
	if (!strcmp(cmd, "read") && na == 3)
		return cmd_rw(false, strtoull(a[0], NULL, 0), strtoull(a[1], NULL, 0), a[2]);
	if (!strcmp(cmd, "discard") && na == 2)
		return cmd_range(VIRTIO_BLK_T_DISCARD, strtoull(a[0], NULL, 0), strtoull(a[1], NULL, 0), 0);
	if ((!strcmp(cmd, "zeroes") || !strcmp(cmd, "zeroes-unmap")) && na == 2)
		return cmd_range(VIRTIO_BLK_T_WRITE_ZEROES, strtoull(a[0], NULL, 0), strtoull(a[1], NULL, 0),
				 cmd[6] ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0);
	if (!strcmp(cmd, "flush"))
		return cmd_range(VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	if (!strcmp(cmd, "churn") && na >= 4 && na <= 6)
		return cmd_churn(strtoull(a[0], NULL, 0), (unsigned)atoi(a[1]), (unsigned)atoi(a[2]),
				 strtoull(a[3], NULL, 0), na >= 5 ? a[4] : NULL,
				 na == 6 ? strtoull(a[5], NULL, 0) : 0);
	if (!strcmp(cmd, "verify") && (na == 4 || na == 5))
		return cmd_verify(strtoull(a[0], NULL, 0), (unsigned)atoi(a[1]), (unsigned)atoi(a[2]),
				  strtoull(a[3], NULL, 0), na == 5 ? a[4] : NULL);
	if (packed && (!strcmp(cmd, "malformed") || !strcmp(cmd, "reconnect")))
		die(2, "%s: split rings only", cmd);
	if (!strcmp(cmd, "malformed"))
		return cmd_malformed();
	if (!strcmp(cmd, "restart") && na == 1)
		return cmd_restart(strtoull(a[0], NULL, 0));
	if (!strcmp(cmd, "reconnect") && na == 2)
		return cmd_reconnect(strtoull(a[0], NULL, 0), (unsigned)atoi(a[1]));
	if (!strcmp(cmd, "bench") && na >= 4 && na <= 6)
		return cmd_bench(a[0], (uint32_t)strtoul(a[1], NULL, 0), (unsigned)atoi(a[2]), atof(a[3]),
				 na >= 5 ? strtoull(a[4], NULL, 0) : 0, na == 6 ? atof(a[5]) : 0);
	die(2, "unknown command or wrong arguments: %s", cmd);
	return 2;
}
