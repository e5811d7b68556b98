/* Backing store over a disk file on a mounted VMFS datastore.  The file is
 * held under the cluster lock of the host serving it (exclusive, so no other
 * host opens the disk for writing while we export it).  Data of allocated
 * extents moves straight between the connection's buffers and the LV device
 * (the extent map tells where); holes, to-be-zeroed blocks and inline data go
 * through the filesystem, which allocates and zero-fills as needed.
 *
 * A thin disk (one with unallocated blocks when it is first exported, one
 * whose VMDK descriptor says ddb.thinProvisioned, or a LUN spec with `thin`)
 * takes UNMAP: whole file blocks in the range are freed (and discarded down
 * to the device by the fs), partial blocks at the edges are zeroed.
 *
 * Locking: @lock serialises calls into the fs core (map lookups, allocating
 * writes, punches).  @io is held shared by every read or write from its
 * first map lookup until its device I/O on the mapped extents is done, and
 * exclusively by UNMAP: a block is never freed (and handed to another file,
 * maybe on another host) while a command still reads or writes it through an
 * extent it looked up before.  @io prefers writers, so a stream of reads
 * does not starve an UNMAP. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmfs/blockdev.h"
#include "vmfs/fs.h"
#include "vmfs/host.h"
#include "vmfs/thinprov.h"
#include "backing.h"

/* File blocks freed per fs transaction: bounds the size of one journal
 * transaction and how long the fs lock is held at a time. */
#define PUNCH_BLOCKS 64

struct bs_vmfs {
	struct backing b;
	struct vmfs_host *host;
	struct vmfs_fs *fs;
	struct vmfs_bdev *lv;
	uint32_t addr;
	uint64_t fs_block;     /* file block size (the unit UNMAP can free) */
	unsigned write_delay_us; /* tests: widen the map-to-write window */
	pthread_mutex_t lock;
	pthread_rwlock_t io;
};

/* Walk [off, off+len) of the file extent by extent (@io held shared). */
static int walk(struct bs_vmfs *v, const struct iovec *iov, int iovcnt, uint64_t off, bool wr)
{
	int r = 0;

	if (wr && !vmfs_host_healthy(v->host))
		return -EIO;  /* our locks may be someone else's now */
	for (int i = 0; i < iovcnt && !r; i++) {
		uint8_t *buf = iov[i].iov_base;
		size_t len = iov[i].iov_len;

		while (len && !r) {
			struct vmfs_extent e;
			size_t n;

			pthread_mutex_lock(&v->lock);
			r = vmfs_map(v->fs, v->addr, off, len, &e);
			pthread_mutex_unlock(&v->lock);
			if (r)
				break;
			n = e.file_off + e.len > off ? (size_t)(e.file_off + e.len - off) : 0;
			if (n > len)
				n = len;
			if (!n) {
				r = -EIO;
				break;
			}
			if (e.state == VMFS_EXT_ALLOCATED &&
			    !((off - e.file_off + e.lv_off) & 511) && !(n & 511)) {
				uint64_t lv = e.lv_off + (off - e.file_off);

				if (wr && v->write_delay_us)
					usleep(v->write_delay_us);
				r = wr ? vmfs_bdev_write(v->lv, buf, n, lv) : vmfs_bdev_read(v->lv, buf, n, lv);
			} else if (!wr && (e.state == VMFS_EXT_HOLE || e.state == VMFS_EXT_TBZ)) {
				memset(buf, 0, n);
			} else {
				int64_t got;

				pthread_mutex_lock(&v->lock);
				got = wr ? vmfs_pwrite(v->fs, v->addr, buf, n, off)
					 : vmfs_pread(v->fs, v->addr, buf, n, off);
				pthread_mutex_unlock(&v->lock);
				if (got < 0)
					r = (int)got;
				else if ((size_t)got != n)
					r = -EIO;
			}
			buf += n;
			off += n;
			len -= n;
		}
	}
	return r;
}

static int io(struct backing *b, const struct iovec *iov, int iovcnt, uint64_t off, bool wr)
{
	struct bs_vmfs *v = (struct bs_vmfs *)b;
	int r;

	pthread_rwlock_rdlock(&v->io);
	r = walk(v, iov, iovcnt, off, wr);
	pthread_rwlock_unlock(&v->io);
	return r;
}

static int v_readv(struct backing *b, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return io(b, iov, iovcnt, off, false);
}

static int v_writev(struct backing *b, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return io(b, iov, iovcnt, off, true);
}

static int v_flush(struct backing *b)
{
	return vmfs_bdev_flush(((struct bs_vmfs *)b)->lv);
}

static const uint8_t zeros[65536];

/* Zero [off, off+len), inside one file block, where it holds data: straight
 * on the device like a write (@lock held; no fs transaction needed). */
static int zero_part(struct bs_vmfs *v, uint64_t off, uint64_t len)
{
	struct vmfs_extent e;
	int r = vmfs_map(v->fs, v->addr, off, len, &e);

	if (r == -ENXIO)
		return 0;
	while (!r && len) {
		uint64_t n = len < sizeof(zeros) ? len : sizeof(zeros);

		if (e.state == VMFS_EXT_ALLOCATED && !((off - e.file_off + e.lv_off) & 511) &&
		    !(n & 511)) {
			r = vmfs_bdev_write(v->lv, zeros, n, e.lv_off + (off - e.file_off));
		} else if (e.state == VMFS_EXT_ALLOCATED || e.state == VMFS_EXT_INLINE) {
			int64_t got = vmfs_pwrite(v->fs, v->addr, zeros, n, off);

			r = got < 0 ? (int)got : 0;
		} else {
			break;          /* a hole or to-be-zeroed: reads zeros already */
		}
		off += n;
		len -= n;
	}
	return r;
}

/* Free the blocks of [off, off+len): partial blocks at the edges are zeroed
 * in place; whole blocks are punched extent by extent, skipping holes, at
 * most PUNCH_BLOCKS file blocks per fs transaction. */
static int v_unmap(struct backing *b, uint64_t off, uint64_t len)
{
	struct bs_vmfs *v = (struct bs_vmfs *)b;
	uint64_t end = off + len, bs = v->fs_block;
	uint64_t first = (off + bs - 1) / bs * bs, last = end / bs * bs;
	int r = 0;

	if (b->rdonly)
		return -EROFS;
	if (!vmfs_host_healthy(v->host))
		return -EIO;
	pthread_rwlock_wrlock(&v->io);
	pthread_mutex_lock(&v->lock);
	if (first >= last) {                     /* inside one block (or two halves) */
		uint64_t mid = first < end ? first : end;

		r = zero_part(v, off, mid - off);
		if (!r && mid < end)
			r = zero_part(v, mid, end - mid);
		goto out;
	}
	if (off < first)
		r = zero_part(v, off, first - off);
	if (!r && last < end)
		r = zero_part(v, last, end - last);
	for (off = first; off < last && !r;) {
		struct vmfs_extent e;
		uint64_t stop;

		r = vmfs_map(v->fs, v->addr, off, last - off, &e);
		if (r == -ENXIO) {          /* past EOF: nothing to free */
			r = 0;
			break;
		}
		stop = e.file_off + e.len;
		if (!r && stop <= off)
			r = -EIO;
		if (r)
			break;
		if (stop > off + PUNCH_BLOCKS * bs)
			stop = off + PUNCH_BLOCKS * bs;
		if (stop > last)
			stop = last;
		if (e.state != VMFS_EXT_HOLE)
			r = vmfs_punch(v->fs, v->addr, off, stop - off);
		off = stop;
	}
out:
	pthread_mutex_unlock(&v->lock);
	pthread_rwlock_unlock(&v->io);
	return r;
}

static int v_lba_status(struct backing *b, uint64_t off, uint64_t maxlen, bool *mapped,
			uint64_t *len)
{
	struct bs_vmfs *v = (struct bs_vmfs *)b;
	struct vmfs_extent e;
	int r;

	pthread_mutex_lock(&v->lock);
	r = vmfs_map(v->fs, v->addr, off, maxlen, &e);
	pthread_mutex_unlock(&v->lock);
	if (r)
		return r;
	*mapped = e.state != VMFS_EXT_HOLE;
	*len = e.file_off + e.len - off;
	if (*len > maxlen)
		*len = maxlen;
	return 0;
}

static void v_close(struct backing *b)
{
	struct bs_vmfs *v = (struct bs_vmfs *)b;

	vmfs_bdev_flush(v->lv);
	if (!vmfs_host_rdonly(v->host))
		vmfs_host_unlock_file(v->host, v->addr);
	pthread_rwlock_destroy(&v->io);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

static const struct backing_ops vmfs_ops = {
	.readv = v_readv, .writev = v_writev, .flush = v_flush, .unmap = v_unmap,
	.lba_status = v_lba_status, .close = v_close,
};

int bs_vmfs_open(struct vmfs_host *host, const char *path, const char *desc,
		 struct backing **out, char *err, size_t errlen)
{
	struct vmfs_lock_conflict conflict = { 0 };
	struct bs_vmfs *v = calloc(1, sizeof(*v));
	pthread_rwlockattr_t ra;
	struct vmfs_stat st;
	struct vmfs_fh fh;
	struct thinprov_vmdk vd;
	char flat[1024];
	bool thin;
	int r;

	if (!v)
		return -ENOMEM;
	v->host = host;
	v->fs = vmfs_host_fs(host);
	v->lv = vmfs_host_bdev(host);
	r = vmfs_fh_open(v->fs, path, &fh);
	if (r) {
		snprintf(err, errlen, "%s: %s", desc, strerror(-r));
		goto fail;
	}
	r = thinprov_vmdk_read(v->fs, fh.addr, path, &vd, flat, sizeof(flat));
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", desc,
			 r == -EOPNOTSUPP ? "VMDK descriptor without one flat extent" : strerror(-r));
		goto fail;
	}
	thin = r == 1 && vd.thin;
	if (r == 1) {
		r = vmfs_fh_open(v->fs, flat, &fh);
		if (r) {
			snprintf(err, errlen, "%s: extent %s: %s", desc, flat, strerror(-r));
			goto fail;
		}
	}
	v->addr = fh.addr;
	r = vmfs_stat(v->fs, v->addr, &st);
	if (r || st.type != VMFS_TYPE_FILE) {
		snprintf(err, errlen, "%s: not a regular file", desc);
		r = r ? r : -EINVAL;
		goto fail;
	}
	if (st.size < 4096) {
		snprintf(err, errlen, "%s: too small (%llu bytes)", desc, (unsigned long long)st.size);
		r = -EINVAL;
		goto fail;
	}
	if (!vmfs_host_rdonly(host)) {
		r = vmfs_host_lock_file(host, v->addr, VMFS_LM_EXCL, &conflict);
		if (r) {
			snprintf(err, errlen, "%s: cannot lock the disk%s (%s)", desc,
				 r == -EBUSY ? ": another host holds it" : "", strerror(-r));
			goto fail;
		}
	}
	pthread_mutex_init(&v->lock, NULL);
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&v->io, &ra);
	pthread_rwlockattr_destroy(&ra);
	v->fs_block = st.blk_size ? st.blk_size : vmfs_fs_get_info(v->fs)->block_size;
	if (getenv("VMFSD_ISCSI_WRITE_DELAY_US"))
		v->write_delay_us = (unsigned)atoi(getenv("VMFSD_ISCSI_WRITE_DELAY_US"));
	v->b.ops = &vmfs_ops;
	v->b.block_size = 512;
	v->b.size = st.size & ~511ull;
	/* Thin: the descriptor says so, or blocks are missing (a thick disk
	 * has every block allocated, to-be-zeroed or not). */
	v->b.thin = thin || st.blocks512 * 512 < (st.size + v->fs_block - 1) / v->fs_block * v->fs_block;
	v->b.unmap_granularity = (uint32_t)(v->fs_block < (1u << 30) ? v->fs_block : 1u << 30);
	v->b.rdonly = vmfs_host_rdonly(host);
	snprintf(v->b.desc, sizeof(v->b.desc), "%s", desc);
	*out = &v->b;
	return 0;
fail:
	free(v);
	return r;
}
