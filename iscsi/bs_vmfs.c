/* Backing store over a disk file on a mounted VMFS datastore.  The file is
 * held under the cluster lock of the host serving it (exclusive, so no other
 * host opens the disk for writing while we export it).  Data of allocated
 * extents moves straight between the connection's buffers and the LV device
 * (the extent map tells where); holes, to-be-zeroed blocks and inline data go
 * through the filesystem, which allocates and zero-fills as needed. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/blockdev.h"
#include "vmfs/fs.h"
#include "vmfs/host.h"
#include "backing.h"

struct bs_vmfs {
	struct backing b;
	struct vmfs_host *host;
	struct vmfs_fs *fs;
	struct vmfs_bdev *lv;
	uint32_t addr;
	/* The fs core serialises nothing by itself: map lookups and
	 * allocating writes go one at a time; device I/O runs in parallel. */
	pthread_mutex_t lock;
};

/* Walk [off, off+len) of the file extent by extent; @fn handles one piece
 * whose data is at @buf. */
static int walk(struct bs_vmfs *v, const struct iovec *iov, int iovcnt, uint64_t off, bool wr)
{
	int r = 0;

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

static int v_readv(struct backing *b, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return walk((struct bs_vmfs *)b, iov, iovcnt, off, false);
}

static int v_writev(struct backing *b, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return walk((struct bs_vmfs *)b, iov, iovcnt, off, true);
}

static int v_flush(struct backing *b)
{
	return vmfs_bdev_flush(((struct bs_vmfs *)b)->lv);
}

static int v_unmap(struct backing *b, uint64_t off, uint64_t len)
{
	return -EOPNOTSUPP; /* the fs has no punch-hole yet */
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
	vmfs_host_unlock_file(v->host, v->addr);
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
	struct vmfs_stat st;
	struct vmfs_fh fh;
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
	v->b.ops = &vmfs_ops;
	v->b.block_size = 512;
	v->b.size = st.size & ~511ull;
	v->b.thin = false;    /* no UNMAP until the fs can punch holes */
	v->b.rdonly = vmfs_host_rdonly(host);
	snprintf(v->b.desc, sizeof(v->b.desc), "%s", desc);
	*out = &v->b;
	return 0;
fail:
	free(v);
	return r;
}
