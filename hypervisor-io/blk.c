/*
 * virtio-blk on top of a vhost_disk: features, config space, requests.
 *
 * A chain is [device-readable bytes][device-writable bytes].  The first 16
 * readable bytes are the request header, the last writable byte the status.
 * Between them: data (OUT: readable, IN/GET_ID: writable) or discard /
 * write-zeroes segments (readable).  Segments need not follow descriptor
 * boundaries.  Every request is checked against the disk size before any I/O
 * (sector + length, overflow included); a request that does not add up gets
 * VIRTIO_BLK_S_IOERR, an unknown type VIRTIO_BLK_S_UNSUPP, a write to a
 * read-only disk IOERR.  A chain with no writable byte cannot carry a status:
 * it is returned with length 0.
 */
#include <errno.h>
#include <string.h>

#include <linux/virtio_blk.h>

#include "internal.h"

#define MAX_DWZ_SEGS 16u
#define MAX_DWZ_SECTORS (1u << 22)   /* 2 GiB per segment */

uint64_t vh_blk_features(const struct vh_dev *d)
{
	uint64_t f = 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE |
		     1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_MQ;

	if (d->disk->rdonly)
		f |= 1ull << VIRTIO_BLK_F_RO;
	else
		f |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	return f;
}

size_t vh_blk_config(const struct vh_dev *d, uint8_t *buf, size_t bufsz)
{
	struct virtio_blk_config c;

	memset(&c, 0, sizeof(c));
	c.capacity = d->disk->size / 512;
	c.seg_max = VH_SEG_MAX;
	c.blk_size = d->disk->blk_size ? d->disk->blk_size : 512;
	c.num_queues = (uint16_t)d->nq;
	c.max_discard_sectors = MAX_DWZ_SECTORS;
	c.max_discard_seg = MAX_DWZ_SEGS;
	c.discard_sector_alignment = (d->disk->discard_align ? d->disk->discard_align : c.blk_size) / 512;
	c.max_write_zeroes_sectors = MAX_DWZ_SECTORS;
	c.max_write_zeroes_seg = MAX_DWZ_SEGS;
	c.write_zeroes_may_unmap = d->disk->unmap;
	size_t n = sizeof(c) < bufsz ? sizeof(c) : bufsz;

	memcpy(buf, &c, n);
	return n;
}

/* Bytes of the readable (@wr false) or writable part. */
static uint64_t part_len(const struct vh_req *r, bool wr)
{
	uint64_t n = 0;

	for (int i = 0; i < r->niov; i++)
		if (r->writable[i] == wr)
			n += r->iov[i].iov_len;
	return n;
}

/* iovecs covering [skip, skip+len) of the readable or writable part. */
static int slice(const struct vh_req *r, bool wr, uint64_t skip, uint64_t len, struct iovec *out)
{
	int n = 0;

	for (int i = 0; i < r->niov && len; i++) {
		if (r->writable[i] != wr)
			continue;
		uint64_t l = r->iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		uint64_t take = l - skip < len ? l - skip : len;

		out[n].iov_base = (uint8_t *)r->iov[i].iov_base + skip;
		out[n].iov_len = take;
		n++;
		len -= take;
		skip = 0;
	}
	return len ? -EINVAL : n;
}

static void copy_out(const struct vh_req *r, bool wr, uint64_t skip, void *dst, uint64_t len)
{
	struct iovec v[VH_MAX_SEGS];
	int n = slice(r, wr, skip, len, v);
	uint8_t *p = dst;

	for (int i = 0; i < n; i++) {
		memcpy(p, v[i].iov_base, v[i].iov_len);
		p += v[i].iov_len;
	}
}

static bool in_disk(const struct vhost_disk *dk, uint64_t sector, uint64_t bytes)
{
	return sector <= dk->size / 512 && bytes <= dk->size - sector * 512;
}

static uint8_t do_dwz(struct vh_dev *d, struct vh_req *r, uint32_t type, uint64_t rlen)
{
	struct vhost_disk *dk = d->disk;
	struct virtio_blk_discard_write_zeroes s[MAX_DWZ_SEGS];
	uint64_t n = (rlen - 16) / sizeof(s[0]);

	if (dk->rdonly || rlen < 16 + sizeof(s[0]) || (rlen - 16) % sizeof(s[0]) || n > MAX_DWZ_SEGS)
		return VIRTIO_BLK_S_IOERR;
	copy_out(r, false, 16, s, n * sizeof(s[0]));
	for (uint64_t i = 0; i < n; i++) {
		if (s[i].flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ||
		    (type == VIRTIO_BLK_T_DISCARD && s[i].flags) ||
		    s[i].num_sectors > MAX_DWZ_SECTORS ||
		    !in_disk(dk, s[i].sector, (uint64_t)s[i].num_sectors * 512))
			return s[i].flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ? VIRTIO_BLK_S_UNSUPP
										  : VIRTIO_BLK_S_IOERR;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = s[i].sector * 512, len = (uint64_t)s[i].num_sectors * 512;
		int e;

		if (!len)
			continue;
		if (type == VIRTIO_BLK_T_DISCARD)
			e = dk->ops->discard ? dk->ops->discard(dk, off, len) : 0;
		else
			e = dk->ops->write_zeroes(dk, off, len, s[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
								 ? VHOST_WZ_UNMAP : 0);
		if (e == -EOPNOTSUPP && type == VIRTIO_BLK_T_DISCARD)
			e = 0;
		if (e) {
			vh_log(d, 1, "%s at %llu+%llu: %s",
			       type == VIRTIO_BLK_T_DISCARD ? "discard" : "write zeroes",
			       (unsigned long long)off, (unsigned long long)len, strerror(-e));
			return VIRTIO_BLK_S_IOERR;
		}
	}
	return VIRTIO_BLK_S_OK;
}

static void set_status(struct vh_req *r, uint8_t st)
{
	for (int i = r->niov - 1; i >= 0; i--)
		if (r->writable[i]) {
			((uint8_t *)r->iov[i].iov_base)[r->iov[i].iov_len - 1] = st;
			return;
		}
}

static void async_done(void *arg, int res)
{
	struct vh_req *r = arg;
	struct vh_dev *d = r->vq->dev;

	r->vq->aq_inflight--;
	if (res) {
		vh_log(d, 1, "%s at sector %llu: %s", r->a_wr ? "write" : "read",
		       (unsigned long long)r->a_sector, strerror(-res));
		__atomic_add_fetch(&d->st_errors, 1, __ATOMIC_RELAXED);
	}
	set_status(r, res ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
	vh_req_complete_batched(r, res ? 1 : r->a_used);   /* from the queue thread's poll */
}

bool vh_blk_submit_async(struct vh_dev *d, struct vh_req *r, void *aq)
{
	struct vhost_disk *dk = d->disk;
	struct virtio_blk_outhdr h;
	struct iovec v[VH_MAX_SEGS];
	uint64_t rlen = part_len(r, false), wlen = part_len(r, true), len;
	bool wr;
	int n;

	if (!wlen || rlen < sizeof(h))
		return false;
	copy_out(r, false, 0, &h, sizeof(h));
	if (h.type == VIRTIO_BLK_T_IN) {
		len = wlen - 1;
		if (rlen != sizeof(h))
			return false;
		wr = false;
		n = slice(r, true, 0, len, v);
	} else if (h.type == VIRTIO_BLK_T_OUT) {
		len = rlen - sizeof(h);
		if (wlen != 1 || dk->rdonly)
			return false;
		wr = true;
		n = slice(r, false, sizeof(h), len, v);
	} else {
		return false;
	}
	/* anything odd takes the synchronous path, which answers it */
	if (n <= 0 || !len || len % 512 || !in_disk(dk, h.sector, len))
		return false;
	r->a_used = wr ? 1 : (uint32_t)wlen;
	r->a_sector = h.sector;
	r->a_wr = wr;
	if (dk->ops->aq_submit(aq, wr, v, n, h.sector * 512, async_done, r))
		return false;
	__atomic_add_fetch(&d->st_requests, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&d->st_async, 1, __ATOMIC_RELAXED);
	r->vq->aq_inflight++;
	return true;
}

uint32_t vh_blk_exec(struct vh_dev *d, struct vh_req *r)
{
	struct vhost_disk *dk = d->disk;
	struct virtio_blk_outhdr h;
	struct iovec v[VH_MAX_SEGS];
	uint64_t rlen = part_len(r, false), wlen = part_len(r, true);
	uint32_t used = 1;
	uint8_t st = VIRTIO_BLK_S_IOERR;
	int n, e;

	__atomic_add_fetch(&d->st_requests, 1, __ATOMIC_RELAXED);
	if (!wlen) {
		vh_log(d, 1, "request without a status byte (head %u)", r->head);
		__atomic_add_fetch(&d->st_errors, 1, __ATOMIC_RELAXED);
		return 0;
	}
	if (rlen < sizeof(h))
		goto done;
	copy_out(r, false, 0, &h, sizeof(h));
	switch (h.type) {
	case VIRTIO_BLK_T_IN: {
		uint64_t len = wlen - 1;

		if (rlen != sizeof(h) || len % 512 || !in_disk(dk, h.sector, len))
			goto done;
		n = slice(r, true, 0, len, v);
		if (n < 0)
			goto done;
		e = len ? dk->ops->readv(dk, v, n, h.sector * 512) : 0;
		if (e) {
			vh_log(d, 1, "read at sector %llu, %llu bytes: %s",
			       (unsigned long long)h.sector, (unsigned long long)len, strerror(-e));
			goto done;
		}
		used = (uint32_t)wlen;
		st = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_OUT: {
		uint64_t len = rlen - sizeof(h);

		if (dk->rdonly || wlen != 1 || len % 512 || !in_disk(dk, h.sector, len))
			goto done;
		n = slice(r, false, sizeof(h), len, v);
		if (n < 0)
			goto done;
		e = len ? dk->ops->writev(dk, v, n, h.sector * 512) : 0;
		if (e) {
			vh_log(d, 1, "write at sector %llu, %llu bytes: %s",
			       (unsigned long long)h.sector, (unsigned long long)len, strerror(-e));
			goto done;
		}
		st = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_FLUSH:
		if (rlen != sizeof(h) || wlen != 1)
			goto done;
		e = dk->rdonly ? 0 : dk->ops->flush(dk);
		if (e)
			vh_log(d, 1, "flush: %s", strerror(-e));
		else
			st = VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint64_t len = wlen - 1 < VIRTIO_BLK_ID_BYTES ? wlen - 1 : VIRTIO_BLK_ID_BYTES;

		if (rlen != sizeof(h))
			goto done;
		n = slice(r, true, 0, len, v);
		if (n < 0)
			goto done;
		const char *p = dk->serial;
		uint64_t k = 0;

		for (int i = 0; i < n; i++) {
			uint8_t *o = v[i].iov_base;

			for (size_t j = 0; j < v[i].iov_len; j++, k++)
				o[j] = k < sizeof(dk->serial) - 1 ? (uint8_t)p[k] : 0;
		}
		used = (uint32_t)len + 1;
		st = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (wlen != 1)
			goto done;
		st = do_dwz(d, r, h.type, rlen);
		break;
	default:
		st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
done:
	if (st == VIRTIO_BLK_S_IOERR)
		__atomic_add_fetch(&d->st_errors, 1, __ATOMIC_RELAXED);
	else if (st == VIRTIO_BLK_S_UNSUPP)
		__atomic_add_fetch(&d->st_unsupp, 1, __ATOMIC_RELAXED);
	/* the status is the last writable byte */
	for (int i = r->niov - 1; i >= 0; i--)
		if (r->writable[i]) {
			((uint8_t *)r->iov[i].iov_base)[r->iov[i].iov_len - 1] = st;
			break;
		}
	if (st != VIRTIO_BLK_S_OK && used > 1)
		used = 1;
	return used;
}
