/*
 * vhost_disk over a file of a mounted datastore.
 *
 * Where each byte lives comes from the file layer's extent map (vmfs_map;
 * vmfs_map_write allocates holes as zeroed blocks and zero-fills TBZ blocks
 * in one transaction before returning the extent).  The data then goes
 * straight between guest memory and the LV device at that offset: the LV
 * splits by extent and passes each extent's fencing guard, so a host that
 * lost its heartbeat stops writing here too.
 *
 * When the volume's extents bypass the page cache (O_DIRECT block devices,
 * `vmfsd --direct on`), each queue thread also gets an async context: one
 * libaio queue per extent, made on the extent as the volume uses it, so
 * the fencing guard admits every request as it goes to the kernel
 * (vmfs_bdev_set_passthrough).  A read or write whose blocks are allocated
 * and cached, contiguous on one extent and aligned for O_DIRECT goes that
 * way, its iovecs pointing into guest memory; everything else (a first
 * write that allocates, holes, TBZ, inline data, odd alignment) is done
 * synchronously by the worker threads as before.
 *
 * The caller holds the file exclusively (cluster lock), so nobody else
 * changes its block map: the LV offset of every allocated file block is
 * cached after the first lookup, and only this disk's own calls change it.
 * Allocation and map lookups are serialised by one mutex per disk.
 *
 * DISCARD (and WRITE_ZEROES with UNMAP) on a thin disk frees the file blocks
 * (vmfs_punch: whole blocks back to the bitmap and discarded on the device
 * after the commit, partial blocks at the edges zeroed).  A freed block may
 * be handed to another file at once, so no request may still be using its
 * cached LV offset: every synchronous request holds the disk's map lock
 * shared from its lookup to the end of its I/O, a punch holds it
 * exclusively (writers first, so a busy disk cannot starve it) and clears
 * the cache of the range before it lets requests run again.  Async requests
 * (which complete on another call than the one that looked them up) count
 * themselves in aio_busy instead; a punch raises `punching`, which sends
 * new ones the synchronous way, and waits for the count to reach zero.
 * Thick disks (no hole when opened, unless VHOST_DISK_THIN) keep their
 * blocks: DISCARD is passed down as a device discard of the allocated parts,
 * as ESX ignores UNMAP on thick disks.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "vmfs/blockdev.h"
#include "vmfs/fs.h"
#include "vmfs/volume.h"
#include "vmfs/vhost.h"

#define ZBUF (1u << 20)

struct vdisk {
	struct vhost_disk d;
	struct vmfs_fs *fs;
	struct vmfs_bdev *lv;
	uint32_t addr;
	uint64_t bs;              /* file block size */
	uint64_t nblocks;
	uint64_t *cache;          /* LV offset + 1 of each allocated block, 0 unknown */
	pthread_mutex_t meta;
	pthread_rwlock_t maplock; /* shared: a request using cached offsets; excl: punch */
	bool thin;                /* DISCARD frees blocks */
	uint8_t *zero;
	/* async path */
	struct vmfs_volume *vol;
	int n_ext;                /* extents of the volume */
	bool async_ok;            /* every extent bypasses the page cache */
	uint32_t dio_align;       /* O_DIRECT alignment: the largest extent sector */
	unsigned aio_busy;        /* async requests between lookup and completion */
	bool punching;            /* a punch waits: new requests go synchronously */
	pthread_mutex_t aio_mu;
	pthread_cond_t aio_cv;
};

/* One queue thread's async context: a libaio queue per extent. */
struct vaq_req {
	struct vaq *a;
	void (*cb)(void *arg, int res);
	void *arg;
	struct vaq_req *next;
};

struct vaq {
	struct vdisk *v;
	struct vmfs_bdev_queue *q[VMFS_MAX_EXTENTS];
	int epfd;                 /* every queue's eventfd */
	struct vaq_req *reqs, *free;
};

static int iov_sub(const struct iovec *iov, int n, uint64_t skip, uint64_t len, struct iovec *out)
{
	int k = 0;

	for (int i = 0; i < n && len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		uint64_t take = iov[i].iov_len - skip < len ? iov[i].iov_len - skip : len;

		out[k].iov_base = (uint8_t *)iov[i].iov_base + skip;
		out[k].iov_len = take;
		k++;
		len -= take;
		skip = 0;
	}
	return len ? -EINVAL : k;
}

static void cache_fill(struct vdisk *v, const struct vmfs_extent *e)
{
	if (e->state != VMFS_EXT_ALLOCATED)
		return;
	uint64_t b0 = (e->file_off + v->bs - 1) / v->bs, end = e->file_off + e->len;

	for (uint64_t b = b0; b < v->nblocks && (b + 1) * v->bs <= end; b++)
		__atomic_store_n(&v->cache[b], e->lv_off + (b * v->bs - e->file_off) + 1,
				 __ATOMIC_RELEASE);
}

/* The extent holding @p, from the cache or the file layer. */
static int lookup(struct vdisk *v, uint64_t p, uint64_t max, bool wr, struct vmfs_extent *e)
{
	uint64_t b = p / v->bs;
	uint64_t c = b < v->nblocks ? __atomic_load_n(&v->cache[b], __ATOMIC_ACQUIRE) : 0;
	int r;

	if (c) {
		e->file_off = b * v->bs;
		e->len = v->bs;
		e->lv_off = c - 1;
		e->state = VMFS_EXT_ALLOCATED;
		return 0;
	}
	pthread_mutex_lock(&v->meta);
	r = wr ? vmfs_map_write(v->fs, v->addr, p, max, e) : vmfs_map(v->fs, v->addr, p, max, e);
	if (!r)
		cache_fill(v, e);
	pthread_mutex_unlock(&v->meta);
	if (!r && (e->file_off > p || e->file_off + e->len <= p))
		r = -EIO;   /* the file layer answered for another offset */
	return r;
}

static int v_rw(struct vhost_disk *d, const struct iovec *iov, int n, uint64_t off, bool wr)
{
	struct vdisk *v = d->priv;
	uint64_t total = 0, done = 0;
	struct iovec sub[260];
	int r = 0;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (n > 260)
		return -EINVAL;
	pthread_rwlock_rdlock(&v->maplock);
	while (done < total) {
		uint64_t p = off + done, rest = total - done;
		struct vmfs_extent e;

		r = lookup(v, p, rest, wr, &e);
		if (r == -ENXIO && !wr) {   /* past EOF: zeros */
			e.file_off = p;
			e.len = rest;
			e.state = VMFS_EXT_HOLE;
			r = 0;
		}
		if (r)
			break;
		uint64_t chunk = e.file_off + e.len - p < rest ? e.file_off + e.len - p : rest;
		int k = iov_sub(iov, n, done, chunk, sub);

		if (k < 0) {
			r = k;
			break;
		}
		switch (e.state) {
		case VMFS_EXT_ALLOCATED:
			r = wr ? vmfs_bdev_writev(v->lv, sub, k, e.lv_off + (p - e.file_off))
			       : vmfs_bdev_readv(v->lv, sub, k, e.lv_off + (p - e.file_off));
			break;
		case VMFS_EXT_HOLE:
		case VMFS_EXT_TBZ:
			if (wr) {
				r = -EIO;
				break;
			}
			for (int i = 0; i < k; i++)
				memset(sub[i].iov_base, 0, sub[i].iov_len);
			break;
		case VMFS_EXT_INLINE: {
			uint64_t at = p;

			pthread_mutex_lock(&v->meta);
			for (int i = 0; i < k && !r; i++) {
				int64_t got = wr ? vmfs_pwrite(v->fs, v->addr, sub[i].iov_base,
							       sub[i].iov_len, at)
						 : vmfs_pread(v->fs, v->addr, sub[i].iov_base,
							      sub[i].iov_len, at);
				if (got < 0)
					r = (int)got;
				else if ((uint64_t)got < sub[i].iov_len && !wr)
					memset((uint8_t *)sub[i].iov_base + got, 0,
					       sub[i].iov_len - (uint64_t)got);
				at += sub[i].iov_len;
			}
			pthread_mutex_unlock(&v->meta);
			break;
		}
		default:
			r = -EIO;
		}
		if (r)
			break;
		done += chunk;
	}
	pthread_rwlock_unlock(&v->maplock);
	return r;
}

static int v_readv(struct vhost_disk *d, const struct iovec *iov, int n, uint64_t off)
{
	return v_rw(d, iov, n, off, false);
}

static int v_writev(struct vhost_disk *d, const struct iovec *iov, int n, uint64_t off)
{
	return v_rw(d, iov, n, off, true);
}

static int v_flush(struct vhost_disk *d)
{
	struct vdisk *v = d->priv;

	return vmfs_fs_sync(v->fs);
}

/* Walk the allocated extents of [off, off+len): discard or zero them
 * (the caller holds the map lock shared). */
static int walk_alloc(struct vdisk *v, uint64_t off, uint64_t len, bool zero)
{
	while (len) {
		struct vmfs_extent e;
		int r = lookup(v, off, len, false, &e);

		if (r == -ENXIO)
			return 0;
		if (r)
			return r;
		uint64_t chunk = e.file_off + e.len - off < len ? e.file_off + e.len - off : len;

		if (e.state == VMFS_EXT_ALLOCATED) {
			uint64_t lo = e.lv_off + (off - e.file_off);

			if (!zero) {
				r = vmfs_bdev_discard(v->lv, lo, chunk);
			} else {
				for (uint64_t z = 0; z < chunk && !r;) {
					uint64_t m = chunk - z < ZBUF ? chunk - z : ZBUF;

					r = vmfs_bdev_write(v->lv, v->zero, m, lo + z);
					z += m;
				}
			}
		} else if (e.state == VMFS_EXT_INLINE && zero) {
			pthread_mutex_lock(&v->meta);
			int64_t w = vmfs_pwrite(v->fs, v->addr, v->zero, chunk < ZBUF ? chunk : ZBUF, off);

			pthread_mutex_unlock(&v->meta);
			if (w < 0)
				r = (int)w;
			else
				chunk = (uint64_t)w;
		}
		if (r)
			return r;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

static int walk_shared(struct vdisk *v, uint64_t off, uint64_t len, bool zero)
{
	int r;

	pthread_rwlock_rdlock(&v->maplock);
	r = walk_alloc(v, off, len, zero);
	pthread_rwlock_unlock(&v->maplock);
	return r;
}

/* Free the blocks of [off, off+len) (the range reads as zeros afterwards):
 * no request is between its lookup and the end of its I/O meanwhile, and
 * the cached offsets of the range are forgotten before any runs again. */
static int punch(struct vdisk *v, uint64_t off, uint64_t len)
{
	uint64_t b0 = off / v->bs, b1 = (off + len + v->bs - 1) / v->bs;
	int r;

	pthread_rwlock_wrlock(&v->maplock);
	/* async requests in flight may use cached offsets: let them finish */
	__atomic_store_n(&v->punching, true, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&v->aio_mu);
	while (__atomic_load_n(&v->aio_busy, __ATOMIC_SEQ_CST))
		pthread_cond_wait(&v->aio_cv, &v->aio_mu);
	pthread_mutex_unlock(&v->aio_mu);
	pthread_mutex_lock(&v->meta);
	r = vmfs_punch(v->fs, v->addr, off, len);
	for (uint64_t b = b0; b < b1 && b < v->nblocks; b++)
		__atomic_store_n(&v->cache[b], 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&v->meta);
	__atomic_store_n(&v->punching, false, __ATOMIC_SEQ_CST);
	pthread_rwlock_unlock(&v->maplock);
	return r;
}

static int v_discard(struct vhost_disk *d, uint64_t off, uint64_t len)
{
	struct vdisk *v = d->priv;

	if (v->thin)
		return punch(v, off, len);
	if (!vmfs_bdev_get_info(v->lv)->discard)
		return -EOPNOTSUPP;
	return walk_shared(v, off, len, false);
}

static int v_write_zeroes(struct vhost_disk *d, uint64_t off, uint64_t len, unsigned flags)
{
	struct vdisk *v = d->priv;

	if (v->thin && (flags & VHOST_WZ_UNMAP))
		return punch(v, off, len);
	return walk_shared(v, off, len, true);
}

/* ---- async path ------------------------------------------------------------------ */

static void aio_unbusy(struct vdisk *v)
{
	if (__atomic_sub_fetch(&v->aio_busy, 1, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&v->punching, __ATOMIC_SEQ_CST)) {
		pthread_mutex_lock(&v->aio_mu);
		pthread_cond_broadcast(&v->aio_cv);
		pthread_mutex_unlock(&v->aio_mu);
	}
}

static void a_destroy(void *aq)
{
	struct vaq *a = aq;

	for (int i = 0; i < a->v->n_ext; i++)
		vmfs_bdev_queue_destroy(a->q[i]);   /* completes what is in flight */
	if (a->epfd >= 0)
		close(a->epfd);
	free(a->reqs);
	free(a);
}

static int a_create(struct vhost_disk *d, unsigned depth, void **out)
{
	struct vdisk *v = d->priv;
	struct vaq *a;
	int r = 0;

	if (!v->async_ok)
		return -EOPNOTSUPP;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->v = v;
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	a->reqs = calloc(depth, sizeof(*a->reqs));
	if (a->epfd < 0 || !a->reqs) {
		r = a->epfd < 0 ? -errno : -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < depth; i++) {
		a->reqs[i].a = a;
		a->reqs[i].next = i + 1 < depth ? &a->reqs[i + 1] : NULL;
	}
	a->free = a->reqs;
	for (int i = 0; i < v->n_ext; i++) {
		struct epoll_event ev = { .events = EPOLLIN };

		r = vmfs_bdev_queue_create(vmfs_volume_extent(v->vol, i, NULL, NULL), depth, &a->q[i]);
		if (r)
			goto fail;
		if (vmfs_bdev_queue_blocking(a->q[i]) || vmfs_bdev_queue_fd(a->q[i]) < 0) {
			r = -EOPNOTSUPP;   /* would stall the queue thread: workers do it */
			goto fail;
		}
		if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, vmfs_bdev_queue_fd(a->q[i]), &ev)) {
			r = -errno;
			goto fail;
		}
	}
	*out = a;
	return 0;
fail:
	a_destroy(a);
	return r;
}

static int a_fd(void *aq)
{
	return ((struct vaq *)aq)->epfd;
}

static void a_done(void *arg, int res)
{
	struct vaq_req *q = arg;
	struct vaq *a = q->a;

	aio_unbusy(a->v);
	q->next = a->free;
	a->free = q;
	q->cb(q->arg, res);
}

/* The device place of [off, off+len) when its blocks are allocated, cached
 * and contiguous on one extent: 0, else -EAGAIN (the synchronous path looks
 * it up, allocates if need be, and fills the cache). */
static int a_place(struct vdisk *v, uint64_t off, uint64_t len, int *idx, uint64_t *dev_off)
{
	uint64_t b0 = off / v->bs, b1 = (off + len - 1) / v->bs, lv, c0, ext_len;

	if (b1 >= v->nblocks)
		return -EAGAIN;
	c0 = __atomic_load_n(&v->cache[b0], __ATOMIC_ACQUIRE);
	if (!c0)
		return -EAGAIN;
	for (uint64_t b = b0 + 1; b <= b1; b++)
		if (__atomic_load_n(&v->cache[b], __ATOMIC_ACQUIRE) != c0 + (b - b0) * v->bs)
			return -EAGAIN;
	lv = c0 - 1 + off % v->bs;
	if (vmfs_volume_map(v->vol, lv, idx, dev_off, &ext_len) || ext_len < len)
		return -EAGAIN;
	return 0;
}

static int a_submit(void *aq, bool wr, const struct iovec *iov, int n, uint64_t off,
		    void (*cb)(void *arg, int res), void *arg)
{
	struct vaq *a = aq;
	struct vdisk *v = a->v;
	uint64_t len = 0, dev_off;
	int idx, r;

	for (int i = 0; i < n; i++) {
		if ((uintptr_t)iov[i].iov_base % v->dio_align || iov[i].iov_len % v->dio_align)
			return -EINVAL;   /* O_DIRECT cannot take it */
		len += iov[i].iov_len;
	}
	if (!a->free || !len || off % v->dio_align)
		return -EAGAIN;
	/* counted before the lookup, so a punch that starts now waits for us */
	__atomic_add_fetch(&v->aio_busy, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&v->punching, __ATOMIC_SEQ_CST)) {
		r = -EAGAIN;
		goto out;
	}
	r = a_place(v, off, len, &idx, &dev_off);
	if (r)
		goto out;
	struct vaq_req *q = a->free;

	q->cb = cb;
	q->arg = arg;
	r = vmfs_bdev_submit(a->q[idx], wr ? VMFS_BDEV_OP_WRITE : VMFS_BDEV_OP_READ, iov, n, dev_off,
			     a_done, q);
	if (r == 0) {
		a->free = q->next;
		return 0;
	}
out:
	aio_unbusy(v);
	return r;
}

static int a_kick(void *aq)
{
	struct vaq *a = aq;
	int r = 0;

	for (int i = 0; i < a->v->n_ext; i++) {
		int k = vmfs_bdev_queue_kick(a->q[i]);

		if (k && !r)
			r = k;
	}
	return r;
}

static int a_poll(void *aq)
{
	struct vaq *a = aq;
	int n = 0;

	for (int i = 0; i < a->v->n_ext; i++) {
		/* every queue: one may have a raised eventfd and nothing left */
		int k = vmfs_bdev_queue_poll(a->q[i], 0, 0);

		if (k > 0)
			n += k;
	}
	return n;
}

static bool a_ready(void *aq)
{
	struct vaq *a = aq;

	for (int i = 0; i < a->v->n_ext; i++)
		if (vmfs_bdev_queue_ready(a->q[i]))
			return true;
	return false;
}

/* Thin unless the caller says otherwise: a hole anywhere in the file. */
static int has_hole(struct vdisk *v, bool *hole)
{
	*hole = false;
	for (uint64_t off = 0; off < v->d.size;) {
		struct vmfs_extent e;
		int r = vmfs_map(v->fs, v->addr, off, 0, &e);

		if (r == -ENXIO)
			break;
		if (r)
			return r;
		if (e.state == VMFS_EXT_HOLE || e.state == VMFS_EXT_INLINE) {
			*hole = true;
			return 0;
		}
		if (e.file_off + e.len <= off)
			return -EIO;   /* the map must make progress */
		off = e.file_off + e.len;
	}
	return 0;
}

static void v_close(struct vhost_disk *d)
{
	struct vdisk *v = d->priv;

	pthread_mutex_destroy(&v->meta);
	pthread_rwlock_destroy(&v->maplock);
	pthread_mutex_destroy(&v->aio_mu);
	pthread_cond_destroy(&v->aio_cv);
	free(v->cache);
	free(v->zero);
	free(v);
}

static const struct vhost_disk_ops vmfs_ops = {
	.readv = v_readv, .writev = v_writev, .flush = v_flush, .discard = v_discard,
	.write_zeroes = v_write_zeroes, .close = v_close,
	.aq_create = a_create, .aq_destroy = a_destroy, .aq_fd = a_fd, .aq_submit = a_submit,
	.aq_kick = a_kick, .aq_poll = a_poll, .aq_ready = a_ready,
};

int vhost_disk_open_vmfs(struct vmfs_fs *fs, uint32_t addr, unsigned flags,
			 struct vhost_disk **out)
{
	struct vdisk *v = calloc(1, sizeof(*v));
	struct vmfs_stat st;
	int r;

	if (!v)
		return -ENOMEM;
	r = vmfs_stat(fs, addr, &st);
	if (r)
		goto fail;
	if (st.type != VMFS_TYPE_FILE) {
		r = -EINVAL;
		goto fail;
	}
	v->fs = fs;
	v->addr = addr;
	v->lv = vmfs_fs_bdev(fs);
	v->bs = st.blk_size ? st.blk_size : vmfs_fs_get_info(fs)->block_size;
	if (!v->bs || v->bs % 512) {
		r = -EINVAL;
		goto fail;
	}
	v->d.size = st.size & ~511ull;
	v->nblocks = (v->d.size + v->bs - 1) / v->bs;
	v->cache = calloc(v->nblocks ? v->nblocks : 1, sizeof(*v->cache));
	v->zero = calloc(1, ZBUF);
	if (!v->cache || !v->zero) {
		r = -ENOMEM;
		goto fail;
	}
	if (flags & (VHOST_DISK_THIN | VHOST_DISK_THICK))
		v->thin = !(flags & VHOST_DISK_THICK);
	else if ((r = has_hole(v, &v->thin)))
		goto fail;
	pthread_rwlockattr_t ra;

	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&v->maplock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&v->meta, NULL);
	pthread_mutex_init(&v->aio_mu, NULL);
	pthread_cond_init(&v->aio_cv, NULL);
	v->vol = vmfs_fs_volume(fs);
	v->async_ok = true;
	v->dio_align = 512;
	for (struct vmfs_bdev *e; (e = vmfs_volume_extent(v->vol, v->n_ext, NULL, NULL)); v->n_ext++) {
		const struct vmfs_bdev_info *ei = vmfs_bdev_get_info(e);

		v->async_ok &= ei->direct;
		if (ei->lbs > v->dio_align)
			v->dio_align = ei->lbs;
	}
	v->d.ops = &vmfs_ops;
	v->d.priv = v;
	v->d.blk_size = 512;
	v->d.unmap = v->thin;
	/* a Linux guest aligns its discards to this: whole blocks get freed */
	v->d.discard_align = v->thin && v->bs <= (1u << 30) ? (uint32_t)v->bs : 0;
	v->d.rdonly = (flags & VHOST_DISK_RDONLY) || vmfs_bdev_get_info(v->lv)->rdonly;
	snprintf(v->d.serial, sizeof(v->d.serial), "vmfs-%.6s-%08x",
		 vmfs_fs_get_info(fs)->uuid_str, addr);
	*out = &v->d;
	return 0;
fail:
	if (v) {
		free(v->cache);
		free(v->zero);
	}
	free(v);
	return r;
}
