/*
 * vhost-user protocol, back-end side: the Unix socket, message framing and
 * validation, feature negotiation, the memory table and vring set-up.
 *
 * Every message is checked before use: header flags/version, payload size
 * exactly what the request carries, number of file descriptors, queue index
 * below the number of queues, ring sizes a power of two <= 1024, ring
 * addresses inside a mapped region.  A message that fails a check drops the
 * connection (the front-end is broken or hostile); a request we merely do
 * not support is answered with a failing REPLY_ACK when one was asked for.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "internal.h"

struct vhost_blk {
	struct vh_dev dev;
	int listen_fd, conn_fd, stop_fd;
	pthread_t thr;
	bool have_thr;
	char *path;
	pthread_mutex_t slock;
};

void vh_log(struct vh_dev *d, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (d->o.log)
		d->o.log(d->o.log_ctx, level, buf);
	else if (level <= 1)
		fprintf(stderr, "vhost: %s\n", buf);
}

void *vh_gpa(struct vh_dev *d, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < d->nreg; i++) {
		struct vh_region *r = &d->reg[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

void *vh_uva(struct vh_dev *d, uint64_t ua, uint64_t len)
{
	for (int i = 0; i < d->nreg; i++) {
		struct vh_region *r = &d->reg[i];

		if (ua >= r->uaddr && ua - r->uaddr < r->size && len <= r->size - (ua - r->uaddr))
			return r->host + (ua - r->uaddr);
	}
	return NULL;
}

static void unmap_all(struct vh_dev *d)
{
	for (int i = 0; i < d->nreg; i++)
		munmap(d->reg[i].map, d->reg[i].map_len);
	d->nreg = 0;
}

static void inflight_unmap(struct vh_dev *d)
{
	if (d->ifl_map)
		munmap(d->ifl_map, d->ifl_map_len);
	d->ifl_map = NULL;
	d->ifl_base = NULL;
	d->ifl_map_len = 0;
	d->ifl_nq = d->ifl_qsize = 0;
}

static void stop_all(struct vh_dev *d, bool *was)
{
	for (unsigned i = 0; i < d->nq; i++) {
		if (was)
			was[i] = d->vq[i].running;
		vh_vq_stop(&d->vq[i]);
	}
}

/* Forget everything a front-end set up (disconnect, RESET_OWNER). */
static void dev_reset(struct vh_dev *d)
{
	for (unsigned i = 0; i < d->nq; i++) {
		vh_vq_reset(&d->vq[i]);
		d->vq[i].packed = false;
	}
	unmap_all(d);
	inflight_unmap(d);
	d->features = 0;
	d->pfeatures = 0;
	d->owner = false;
}

static uint64_t dev_features(const struct vh_dev *d)
{
	return vh_blk_features(d) | 1ull << VIRTIO_F_VERSION_1 |
	       1ull << VIRTIO_RING_F_INDIRECT_DESC | 1ull << VIRTIO_RING_F_EVENT_IDX |
	       1ull << VIRTIO_F_RING_PACKED | 1ull << VHU_F_PROTOCOL_FEATURES;
}

static uint64_t dev_pfeatures(void)
{
	return 1ull << VHU_PF_MQ | 1ull << VHU_PF_REPLY_ACK | 1ull << VHU_PF_CONFIG |
	       1ull << VHU_PF_INFLIGHT_SHMFD;
}

/* ring addresses translated and checked; called before a ring starts */
static int vq_translate(struct vh_dev *d, struct vh_vq *q)
{
	if (!q->have_addr || !q->num)
		return -EINVAL;
	q->desc = vh_uva(d, q->desc_ua, 16ull * q->num);
	/* packed: the driver and device event suppression areas, 4 bytes each */
	q->avail = vh_uva(d, q->avail_ua, q->packed ? 4 : 6ull + 2ull * q->num);
	q->used = vh_uva(d, q->used_ua, q->packed ? 4 : 6ull + 8ull * q->num);
	if (!q->desc || !q->avail || !q->used ||
	    ((uintptr_t)q->desc & 15) || ((uintptr_t)q->avail & 1) || ((uintptr_t)q->used & 3))
		return -EFAULT;
	return 0;
}

/* This queue's region of the inflight buffer, if one was set for rings of
 * its size and the layout fits in the region's share. */
static void vq_inflight(struct vh_dev *d, struct vh_vq *q)
{
	q->ifl = NULL;
	if (!d->ifl_base || !(d->pfeatures & 1ull << VHU_PF_INFLIGHT_SHMFD))
		return;
	if (q->idx >= d->ifl_nq || q->num != d->ifl_qsize ||
	    d->ifl_stride < vh_ifl_qsize(q->packed, q->num)) {
		vh_log(d, 1, "queue %u: the inflight buffer (%u queues of %u entries, %llu bytes each) "
		       "does not fit: not tracking in-flight requests", q->idx, d->ifl_nq, d->ifl_qsize,
		       (unsigned long long)d->ifl_stride);
		return;
	}
	q->ifl = d->ifl_base + q->idx * d->ifl_stride;
}

struct vhu_inflight_msg {
	uint64_t mmap_size, mmap_offset;
	uint16_t num_queues, queue_size;
};

/* GET_INFLIGHT_FD: a zeroed memfd of one region per queue for the layout
 * negotiated (the front-end sets features first).  \return 0, 1 failed. */
static int get_inflight(struct vh_dev *d, struct vhu_inflight_msg *m, int *out_fd)
{
	bool packed = d->features & 1ull << VIRTIO_F_RING_PACKED;
	int fd;

	m->mmap_offset = 0;
	m->mmap_size = m->num_queues * vh_ifl_qsize(packed, m->queue_size);
	fd = memfd_create("vhost-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)m->mmap_size) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)) {
		vh_log(d, 1, "inflight buffer of %llu bytes: %s", (unsigned long long)m->mmap_size,
		       strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	*out_fd = fd;
	return 0;
}

/* SET_INFLIGHT_FD: map the buffer the front-end hands back (fd @fd). */
static int set_inflight(struct vh_dev *d, const struct vhu_inflight_msg *m, int fd)
{
	struct stat st;
	size_t len;
	void *map;

	for (unsigned i = 0; i < d->nq; i++)
		if (d->vq[i].running)
			return 1;   /* not under a running ring */
	/* regions 64-byte aligned, as GET_INFLIGHT_FD makes them */
	if (!m->mmap_size || m->mmap_size > (1ull << 32) || m->mmap_offset > (1ull << 32) ||
	    m->mmap_offset % 64 || m->mmap_size % m->num_queues ||
	    (m->mmap_size / m->num_queues) % 64 ||
	    fstat(fd, &st) || (uint64_t)st.st_size < m->mmap_offset + m->mmap_size)
		return -EINVAL;
	len = (size_t)(m->mmap_offset + m->mmap_size);
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return 1;
	inflight_unmap(d);
	d->ifl_map = map;
	d->ifl_map_len = len;
	d->ifl_base = (uint8_t *)map + m->mmap_offset;
	d->ifl_nq = m->num_queues;
	d->ifl_qsize = m->queue_size;
	d->ifl_stride = m->mmap_size / m->num_queues;
	return 0;
}

static int vq_maybe_start(struct vh_dev *d, struct vh_vq *q)
{
	bool want = q->kick_fd >= 0 && (q->enabled || !(d->features & 1ull << VHU_F_PROTOCOL_FEATURES));
	int r;

	if (!want || q->running)
		return 0;
	r = vq_translate(d, q);
	if (r) {
		vh_log(d, 1, "queue %u: ring addresses outside guest memory", q->idx);
		return r;
	}
	vq_inflight(d, q);
	return vh_vq_start(q);
}

struct vhu_region_msg {
	uint64_t gpa, size, uaddr, mmap_off;
};

static int set_mem_table(struct vh_dev *d, const uint8_t *p, uint32_t size, int *fds, int nfds)
{
	struct vh_region nr[VH_MAX_REGIONS];
	bool was[VH_MAX_QUEUES] = { false };
	uint32_t n;
	int r = 0, i;

	if (size < 8)
		return -EINVAL;
	memcpy(&n, p, 4);
	if (n == 0 || n > VH_MAX_REGIONS || size != 8 + n * sizeof(struct vhu_region_msg) ||
	    (int)n != nfds)
		return -EINVAL;
	memset(nr, 0, sizeof(nr));
	for (i = 0; i < (int)n; i++) {
		struct vhu_region_msg m;
		struct stat st;

		memcpy(&m, p + 8 + i * sizeof(m), sizeof(m));
		if (!m.size || m.size > (1ull << 46) || m.mmap_off > (1ull << 46) ||
		    m.gpa + m.size < m.gpa || m.uaddr + m.size < m.uaddr ||
		    fstat(fds[i], &st) || (uint64_t)st.st_size < m.mmap_off + m.size) {
			r = -EINVAL;
			goto fail;
		}
		nr[i].gpa = m.gpa;
		nr[i].size = m.size;
		nr[i].uaddr = m.uaddr;
		nr[i].map_len = m.mmap_off + m.size;
		nr[i].map = mmap(NULL, nr[i].map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
		if (nr[i].map == MAP_FAILED) {
			r = -errno;
			nr[i].map = NULL;
			goto fail;
		}
		nr[i].host = (uint8_t *)nr[i].map + m.mmap_off;
	}
	/* overlapping guest ranges would make translation ambiguous */
	for (int a = 0; a < (int)n; a++)
		for (int b = a + 1; b < (int)n; b++)
			if (nr[a].gpa < nr[b].gpa + nr[b].size && nr[b].gpa < nr[a].gpa + nr[a].size) {
				r = -EINVAL;
				goto fail;
			}
	stop_all(d, was);
	unmap_all(d);
	memcpy(d->reg, nr, sizeof(nr));
	d->nreg = (int)n;
	for (unsigned q = 0; q < d->nq; q++)
		if (was[q])
			vq_maybe_start(d, &d->vq[q]);
	return 0;
fail:
	for (int k = 0; k < i + 1 && k < (int)n; k++)
		if (nr[k].map)
			munmap(nr[k].map, nr[k].map_len);
	return r;
}

/* Handle one message.  @rep/@replen: reply payload (when *replen set).
 * \return 0 ok, 1 ok but the request failed (for REPLY_ACK), -errno fatal. */
static int handle(struct vh_dev *d, const struct vhu_hdr *h, const uint8_t *p, int *fds, int nfds,
		  uint8_t *rep, uint32_t *replen, int *rep_fd)
{
	uint64_t u64 = 0;
	uint32_t qi;
	struct vh_vq *q;

	*replen = 0;
	if (h->size >= 8)
		memcpy(&u64, p, 8);
#define NEED(sz, nf) do { if (h->size != (sz) || nfds != (nf)) return -EINVAL; } while (0)
#define QIDX(v) do { qi = (uint32_t)(v); if (qi >= d->nq) return -EINVAL; q = &d->vq[qi]; } while (0)
	switch (h->request) {
	case VHU_GET_FEATURES:
		NEED(0, 0);
		u64 = dev_features(d);
		memcpy(rep, &u64, 8);
		*replen = 8;
		return 0;
	case VHU_SET_FEATURES:
		NEED(8, 0);
		if (u64 & ~dev_features(d))
			return -EINVAL;
		for (unsigned i = 0; i < d->nq; i++)   /* no ring changes layout under way */
			if (d->vq[i].running && ((u64 ^ d->features) & 1ull << VIRTIO_F_RING_PACKED))
				return -EINVAL;
		d->features = u64;
		for (unsigned i = 0; i < d->nq; i++)
			d->vq[i].packed = u64 & 1ull << VIRTIO_F_RING_PACKED;
		return 0;
	case VHU_GET_PROTOCOL_FEATURES:
		NEED(0, 0);
		u64 = dev_pfeatures();
		memcpy(rep, &u64, 8);
		*replen = 8;
		return 0;
	case VHU_SET_PROTOCOL_FEATURES:
		NEED(8, 0);
		if (u64 & ~dev_pfeatures())
			return -EINVAL;
		d->pfeatures = u64;
		return 0;
	case VHU_SET_OWNER:
		NEED(0, 0);
		d->owner = true;
		return 0;
	case VHU_RESET_OWNER:
	case VHU_RESET_DEVICE:
		NEED(0, 0);
		dev_reset(d);
		return 0;
	case VHU_GET_QUEUE_NUM:
		NEED(0, 0);
		u64 = d->nq;
		memcpy(rep, &u64, 8);
		*replen = 8;
		return 0;
	case VHU_SET_MEM_TABLE: {
		int r;

		if (nfds < 1)
			return -EINVAL;
		r = set_mem_table(d, p, h->size, fds, nfds);
		return r == -EINVAL ? r : r ? 1 : 0;
	}
	case VHU_SET_VRING_NUM: {
		uint32_t st[2];

		NEED(8, 0);
		memcpy(st, p, 8);
		QIDX(st[0]);
		if (q->running || !st[1] || st[1] > VH_MAX_QSIZE || (st[1] & (st[1] - 1)))
			return -EINVAL;
		if (st[1] != q->num) {
			free(q->reqs);
			q->reqs = calloc(st[1], sizeof(*q->reqs));
			if (!q->reqs) {
				q->num = 0;
				return 1;
			}
		}
		q->num = st[1];
		return 0;
	}
	case VHU_SET_VRING_ADDR: {
		struct { uint32_t index, flags; uint64_t desc, used, avail, log; } a;

		NEED(sizeof(a), 0);
		memcpy(&a, p, sizeof(a));
		QIDX(a.index);
		if (q->running)
			return -EINVAL;
		q->desc_ua = a.desc;
		q->used_ua = a.used;
		q->avail_ua = a.avail;
		q->have_addr = true;
		return 0;
	}
	case VHU_SET_VRING_BASE: {
		uint32_t st[2];

		NEED(8, 0);
		memcpy(st, p, 8);
		QIDX(st[0]);
		if (q->running)
			return -EINVAL;
		return vh_vq_set_base(q, st[1]);
	}
	case VHU_GET_VRING_BASE: {
		uint32_t st[2];

		NEED(8, 0);
		memcpy(st, p, 8);
		QIDX(st[0]);
		vh_vq_stop(q);
		if (q->kick_fd >= 0)
			close(q->kick_fd);
		q->kick_fd = -1;
		q->enabled = false;
		st[1] = vh_vq_get_base(q);
		memcpy(rep, st, 8);
		*replen = 8;
		return 0;
	}
	case VHU_SET_VRING_KICK:
	case VHU_SET_VRING_CALL:
	case VHU_SET_VRING_ERR: {
		bool nofd = u64 & VHU_VRING_NOFD;
		int *slot;

		if (h->size != 8 || nfds != (nofd ? 0 : 1) || (u64 & ~(uint64_t)(VHU_VRING_NOFD | VHU_VRING_IDX_MASK)))
			return -EINVAL;
		QIDX(u64 & VHU_VRING_IDX_MASK);
		if (h->request == VHU_SET_VRING_KICK) {
			if (nofd)      /* polling mode: not supported */
				return 1;
			vh_vq_stop(q);
			slot = &q->kick_fd;
		} else {
			slot = h->request == VHU_SET_VRING_CALL ? &q->call_fd : &q->err_fd;
		}
		if (h->request == VHU_SET_VRING_CALL && q->running) {
			/* swap under the used-ring lock: completions signal it */
			pthread_mutex_lock(&q->lock);
			if (*slot >= 0)
				close(*slot);
			*slot = nofd ? -1 : fds[0];
			pthread_mutex_unlock(&q->lock);
		} else {
			if (*slot >= 0)
				close(*slot);
			*slot = nofd ? -1 : fds[0];
		}
		fds[0] = -1;   /* taken */
		if (h->request == VHU_SET_VRING_KICK)
			return vq_maybe_start(d, q) ? 1 : 0;
		return 0;
	}
	case VHU_SET_VRING_ENABLE: {
		uint32_t st[2];

		NEED(8, 0);
		memcpy(st, p, 8);
		QIDX(st[0]);
		if (st[1] > 1)
			return -EINVAL;
		q->enabled = st[1];
		if (!q->enabled) {
			vh_vq_stop(q);
			return 0;
		}
		return vq_maybe_start(d, q) ? 1 : 0;
	}
	case VHU_GET_CONFIG: {
		uint32_t c[3];
		uint8_t cfg[256] = { 0 };

		if (h->size < 12 || nfds)
			return -EINVAL;
		memcpy(c, p, 12);
		if (c[1] > sizeof(cfg) || c[0] > sizeof(cfg) - c[1] || h->size != 12 + c[1])
			return -EINVAL;
		vh_blk_config(d, cfg, sizeof(cfg));
		memcpy(rep, c, 12);
		memcpy(rep + 12, cfg + c[0], c[1]);
		*replen = 12 + c[1];
		return 0;
	}
	case VHU_GET_INFLIGHT_FD:
	case VHU_SET_INFLIGHT_FD: {
		struct vhu_inflight_msg m = { 0 };
		bool get = h->request == VHU_GET_INFLIGHT_FD;

		/* 24 bytes as QEMU sends it (the struct's padding), 20 packed */
		if ((h->size != 20 && h->size != sizeof(m)) || nfds != (get ? 0 : 1))
			return -EINVAL;
		memcpy(&m, p, h->size);
		if (!m.num_queues || m.num_queues > VH_MAX_QUEUES || !m.queue_size ||
		    m.queue_size > VH_MAX_QSIZE || (m.queue_size & (m.queue_size - 1)))
			return -EINVAL;
		if (!get)
			return set_inflight(d, &m, fds[0]);
		if (get_inflight(d, &m, rep_fd))
			m.mmap_size = 0;   /* QEMU then goes on without one */
		memcpy(rep, &m, h->size);
		*replen = h->size;
		return 0;
	}
	case VHU_SET_CONFIG: {
		uint32_t c[3];

		if (h->size < 12 || nfds)
			return -EINVAL;
		memcpy(c, p, 12);
		if (c[1] > 256 || c[0] > 256 - c[1] || h->size != 12 + c[1])
			return -EINVAL;
		return 1;   /* nothing in our config space is writable */
	}
	default:
		vh_log(d, 2, "unsupported vhost-user request %u", h->request);
		return 1;
	}
#undef NEED
#undef QIDX
}

static bool has_reply(uint32_t req)
{
	return req == VHU_GET_FEATURES || req == VHU_GET_PROTOCOL_FEATURES ||
	       req == VHU_GET_VRING_BASE || req == VHU_GET_QUEUE_NUM || req == VHU_GET_CONFIG ||
	       req == VHU_GET_INFLIGHT_FD;
}

/* Send the reply, with @sfd (>= 0) as ancillary data on its first bytes. */
static int send_reply(int fd, const uint8_t *buf, size_t tot, int sfd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	size_t off = 0;

	while (off < tot) {
		struct iovec iov = { .iov_base = (void *)(buf + off), .iov_len = tot - off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (sfd >= 0) {
			struct cmsghdr *c;

			memset(&cm, 0, sizeof(cm));
			mh.msg_control = cm.buf;
			mh.msg_controllen = sizeof(cm.buf);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &sfd, sizeof(int));
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		sfd = -1;   /* sent with the first bytes */
		off += (size_t)n;
	}
	return 0;
}

/* Process a framed message; reply through @fd when >= 0, else into @out
 * (a file descriptor sent with it in *@out_fd, or closed when NULL). */
static int process(struct vh_dev *d, int fd, const struct vhu_hdr *h, const uint8_t *p, int *fds,
		   int nfds, uint8_t *out, size_t *outlen, int *out_fd)
{
	uint8_t rep[12 + 256 + 12];
	uint32_t replen = 0;
	size_t cap = outlen ? *outlen : 0;
	int r, rep_fd = -1;

	if (outlen)
		*outlen = 0;

	if ((h->flags & 0x3) != VHU_VERSION || (h->flags & VHU_FLAG_REPLY))
		return -EINVAL;
	r = handle(d, h, p, fds, nfds, rep + 12, &replen, &rep_fd);
	if (r < 0)
		return r;
	if (!has_reply(h->request)) {
		if (!((h->flags & VHU_FLAG_NEED_REPLY) && (d->pfeatures & 1ull << VHU_PF_REPLY_ACK)))
			return 0;
		uint64_t ack = r ? 1 : 0;

		memcpy(rep + 12, &ack, 8);
		replen = 8;
	} else if (r) {
		return -EINVAL;   /* a GET we cannot answer: nothing sensible to send */
	}
	struct vhu_hdr rh = { .request = h->request, .flags = VHU_VERSION | VHU_FLAG_REPLY,
			      .size = replen };

	memcpy(rep, &rh, 12);
	if (fd < 0) {
		if (out && outlen) {
			size_t n = 12 + replen < cap ? 12 + replen : cap;

			memcpy(out, rep, n);
			*outlen = n;
		}
		if (out_fd)
			*out_fd = rep_fd;
		else if (rep_fd >= 0)
			close(rep_fd);
		return 0;
	}
	r = send_reply(fd, rep, 12 + replen, rep_fd);
	if (rep_fd >= 0)
		close(rep_fd);
	return r;
}

int vhost_blk_feed_msg_fd(struct vhost_blk *b, const uint8_t *msg, size_t len, const int *fds,
			  int nfds, uint8_t *reply, size_t *replylen, int *reply_fd)
{
	struct vhu_hdr h;
	int own[VH_MAX_REGIONS];
	int r;

	if (reply_fd)
		*reply_fd = -1;
	if (len < sizeof(h) || nfds < 0 || nfds > VH_MAX_REGIONS)
		return -EINVAL;
	memcpy(&h, msg, sizeof(h));
	if (h.size > VH_PAYLOAD_MAX || h.size != len - sizeof(h))
		return -EINVAL;
	for (int i = 0; i < nfds; i++)
		own[i] = fds[i] >= 0 ? dup(fds[i]) : -1;
	if (replylen && !reply)
		return -EINVAL;
	r = process(&b->dev, -1, &h, msg + sizeof(h), own, nfds, reply, replylen, reply_fd);
	for (int i = 0; i < nfds; i++)
		if (own[i] >= 0)
			close(own[i]);
	return r;
}

int vhost_blk_feed_msg(struct vhost_blk *b, const uint8_t *msg, size_t len, const int *fds,
		       int nfds, uint8_t *reply, size_t *replylen)
{
	return vhost_blk_feed_msg_fd(b, msg, len, fds, nfds, reply, replylen, NULL);
}

/* Read exactly @len bytes (no fds expected after the header). */
static int read_full(int fd, void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = recv(fd, (uint8_t *)buf + off, len - off, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -ECONNRESET : -errno;
		off += (size_t)n;
	}
	return 0;
}

/* Receive one message from the front-end.  \return 0, -ECONNRESET on EOF. */
static int recv_msg(int fd, struct vhu_hdr *h, uint8_t *p, int *fds, int *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VH_MAX_REGIONS)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { .iov_base = h, .iov_len = sizeof(*h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	ssize_t n;
	int r;

	*nfds = 0;
	do {
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

		for (int i = 0; i < k; i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*nfds < VH_MAX_REGIONS)
				fds[(*nfds)++] = f;
			else
				close(f);
		}
	}
	r = -EINVAL;
	if (mh.msg_flags & MSG_CTRUNC)
		goto bad;
	if ((size_t)n < sizeof(*h) && (r = read_full(fd, (uint8_t *)h + n, sizeof(*h) - (size_t)n)))
		goto bad;
	r = -EMSGSIZE;
	if (h->size > VH_PAYLOAD_MAX)
		goto bad;
	if (h->size && (r = read_full(fd, p, h->size)))
		goto bad;
	return 0;
bad:
	for (int i = 0; i < *nfds; i++)
		close(fds[i]);
	*nfds = 0;
	return r;
}

static void serve_conn(struct vhost_blk *b)
{
	struct vh_dev *d = &b->dev;
	uint8_t *p = malloc(VH_PAYLOAD_MAX);

	if (!p)
		return;
	for (;;) {
		struct pollfd pf[2] = { { .fd = b->conn_fd, .events = POLLIN },
					{ .fd = b->stop_fd, .events = POLLIN } };
		struct vhu_hdr h;
		int fds[VH_MAX_REGIONS], nfds, r;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		r = recv_msg(b->conn_fd, &h, p, fds, &nfds);
		if (r) {
			if (r != -ECONNRESET)
				vh_log(d, 1, "bad message from the front-end (%s): disconnecting",
				       strerror(-r));
			break;
		}
		r = process(d, b->conn_fd, &h, p, fds, nfds, NULL, NULL, NULL);
		for (int i = 0; i < nfds; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		if (r) {
			vh_log(d, 1, "vhost-user request %u refused (%s): disconnecting", h.request,
			       strerror(-r));
			break;
		}
	}
	free(p);
}

static void *server_main(void *arg)
{
	struct vhost_blk *b = arg;
	struct vh_dev *d = &b->dev;

	for (;;) {
		struct pollfd pf[2] = { { .fd = b->listen_fd, .events = POLLIN },
					{ .fd = b->stop_fd, .events = POLLIN } };

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		int c = accept4(b->listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0)
			continue;
		pthread_mutex_lock(&b->slock);
		b->conn_fd = c;
		d->connected = true;
		d->st_conns++;
		pthread_mutex_unlock(&b->slock);
		vh_log(d, 2, "front-end connected on %s", b->path);
		serve_conn(b);
		dev_reset(d);
		pthread_mutex_lock(&b->slock);
		close(c);
		b->conn_fd = -1;
		d->connected = false;
		pthread_mutex_unlock(&b->slock);
		vh_log(d, 2, "front-end disconnected from %s", b->path);
	}
	return NULL;
}

static int dev_init(struct vhost_blk *b, const struct vhost_blk_opts *o)
{
	struct vh_dev *d = &b->dev;
	int r;

	if (!o->disk || o->num_queues > VH_MAX_QUEUES || o->workers > 64 ||
	    o->poll_us > VHOST_POLL_US_MAX)
		return -EINVAL;
	d->o = *o;
	d->disk = o->disk;
	d->nq = o->num_queues ? o->num_queues : 1;
	d->nworkers = o->workers ? o->workers : 16;
	d->poll_ns = (uint64_t)(o->poll_us < 0 ? 0 : o->poll_us ? o->poll_us : VHOST_POLL_US_DEFAULT) * 1000;
	b->listen_fd = b->conn_fd = b->stop_fd = -1;
	pthread_mutex_init(&b->slock, NULL);
	pthread_mutex_init(&d->wlock, NULL);
	pthread_cond_init(&d->wcond, NULL);
	for (unsigned i = 0; i < VH_MAX_QUEUES; i++) {
		struct vh_vq *q = &d->vq[i];

		q->dev = d;
		q->idx = i;
		q->kick_fd = q->call_fd = q->err_fd = -1;
		q->stop_fd = -1;
		q->avail_wrap = q->used_wrap = true;
		pthread_mutex_init(&q->lock, NULL);
		pthread_cond_init(&q->idle, NULL);
	}
	b->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (b->stop_fd < 0)
		return -errno;
	r = vh_pool_start(d);
	return r;
}

int vhost_blk_create_detached(const struct vhost_blk_opts *o, struct vhost_blk **out)
{
	struct vhost_blk *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return -ENOMEM;
	r = dev_init(b, o);
	if (r) {
		vhost_blk_destroy(b);
		return r;
	}
	*out = b;
	return 0;
}

int vhost_blk_create(const struct vhost_blk_opts *o, struct vhost_blk **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vhost_blk *b;
	int r;

	if (!o->socket_path || strlen(o->socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	r = vhost_blk_create_detached(o, &b);
	if (r)
		return r;
	b->path = strdup(o->socket_path);
	if (!b->path) {
		r = -ENOMEM;
		goto fail;
	}
	strcpy(sa.sun_path, o->socket_path);
	b->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (b->listen_fd < 0) {
		r = -errno;
		goto fail;
	}
	unlink(o->socket_path);
	if (bind(b->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(b->listen_fd, 4)) {
		r = -errno;
		goto fail;
	}
	r = pthread_create(&b->thr, NULL, server_main, b);
	if (r) {
		r = -r;
		goto fail;
	}
	b->have_thr = true;
	*out = b;
	return 0;
fail:
	vhost_blk_destroy(b);
	return r;
}

void vhost_blk_destroy(struct vhost_blk *b)
{
	if (!b)
		return;
	if (b->listen_fd >= 0 && b->path)
		unlink(b->path);   /* no new connections from here on */
	if (b->have_thr) {
		uint64_t one = 1;

		if (write(b->stop_fd, &one, 8) != 8)
			vh_log(&b->dev, 1, "cannot stop the server thread");
		pthread_join(b->thr, NULL);
	}
	dev_reset(&b->dev);
	vh_pool_stop(&b->dev);
	for (unsigned i = 0; i < VH_MAX_QUEUES; i++) {
		free(b->dev.vq[i].reqs);
		pthread_mutex_destroy(&b->dev.vq[i].lock);
		pthread_cond_destroy(&b->dev.vq[i].idle);
	}
	if (b->listen_fd >= 0)
		close(b->listen_fd);
	if (b->stop_fd >= 0)
		close(b->stop_fd);
	free(b->path);
	free(b);
}

void vhost_blk_get_stats(struct vhost_blk *b, struct vhost_blk_stats *st)
{
	struct vh_dev *d = &b->dev;

	pthread_mutex_lock(&b->slock);
	st->requests = __atomic_load_n(&d->st_requests, __ATOMIC_RELAXED);
	st->errors = __atomic_load_n(&d->st_errors, __ATOMIC_RELAXED);
	st->async = __atomic_load_n(&d->st_async, __ATOMIC_RELAXED);
	st->unsupported = __atomic_load_n(&d->st_unsupp, __ATOMIC_RELAXED);
	st->connections = d->st_conns;
	st->connected = d->connected;
	pthread_mutex_unlock(&b->slock);
}
