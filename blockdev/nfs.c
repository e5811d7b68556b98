/* A file on an NFS server through libnfs (synchronous API).
 *
 * URL: nfs://server/export/path[?libnfs-options] (nfs_parse_url_full).
 * Data: nfs_pread/nfs_pwrite in chunks of the server's read/write maximum;
 * flush = nfs_fsync (NFSv3 COMMIT); size from nfs_fstat64.  Discard is not
 * offered (NFSv3 has no hole punching).
 *
 * ATS: VMFS_ATS_NONE.  DESIGN.md asks for an NLM byte-range lock around
 * read-compare-write; libnfs 4.0's file-level locking (nfs_lockf/nfs_fcntl)
 * is implemented for NFSv4 only and returns an error on NFSv3 mounts, while
 * its NFSv4 support is marked "not yet functional" in libnfs.h.  NLM exists
 * only as raw RPC stubs (rpc_nlm4_*) without the portmapper lookup, lock
 * owner bookkeeping and grant callbacks a correct lock needs.  Rather than a
 * read-then-write that merely looks atomic, an nfs:// device reports no ATS:
 * vmfs_bdev_ats() returns -EOPNOTSUPP and the cluster layer refuses
 * multi-host use of such a volume with a clear error.
 *
 * A libnfs context is not thread-safe: one mutex serialises all calls.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nfsc/libnfs.h>

#include "internal.h"

struct nfs_dev {
	struct nfs_context *nfs;
	struct nfsfh *fh;
	uint64_t rmax, wmax;
	pthread_mutex_t lock;
};

static int xfer(struct nfs_dev *d, const struct iovec *iov, int iovcnt, uint64_t off, bool wr)
{
	int r = 0;

	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < iovcnt && r == 0; i++) {
		size_t done = 0;

		while (done < iov[i].iov_len) {
			uint64_t max = wr ? d->wmax : d->rmax;
			uint64_t n = iov[i].iov_len - done;
			char *p = (char *)iov[i].iov_base + done;
			int got;

			if (n > max)
				n = max;
			got = wr ? nfs_pwrite(d->nfs, d->fh, off, n, p) : nfs_pread(d->nfs, d->fh, off, n, p);
			if (got < 0) {
				r = got;
				break;
			}
			if (got == 0) {
				r = -EIO;
				break;
			}
			done += (size_t)got;
			off += (uint64_t)got;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

static int nfs_readv_op(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return xfer(priv, iov, iovcnt, off, false);
}

static int nfs_writev_op(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return xfer(priv, iov, iovcnt, off, true);
}

static int nfs_flush_op(void *priv)
{
	struct nfs_dev *d = priv;
	int r;

	pthread_mutex_lock(&d->lock);
	r = nfs_fsync(d->nfs, d->fh);
	pthread_mutex_unlock(&d->lock);
	return r < 0 ? r : 0;
}

static int nfs_ats_op(void *priv, uint64_t off, const void *expect, const void *newdata,
		      void *current)
{
	return -EOPNOTSUPP; /* see the header comment: never a fake ATS */
}

static void nfs_close_op(void *priv)
{
	struct nfs_dev *d = priv;

	nfs_close(d->nfs, d->fh);
	nfs_destroy_context(d->nfs);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static const struct vmfs_bdev_ops nfs_ops = {
	.readv = nfs_readv_op,
	.writev = nfs_writev_op,
	.flush = nfs_flush_op,
	.discard = NULL,
	.ats = nfs_ats_op,
	.close = nfs_close_op,
};

int vmfs_nfs_open(const char *url, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out)
{
	struct vmfs_bdev_info info = { 0 };
	struct nfs_url *u = NULL;
	struct nfs_dev *d;
	struct nfs_stat_64 st;
	bool rdonly = (o->flags & VMFS_BDEV_RDONLY) != 0;
	int r, flags;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	d->nfs = nfs_init_context();
	if (!d->nfs) {
		r = -ENOMEM;
		goto fail;
	}
	u = nfs_parse_url_full(d->nfs, url);
	if (!u || !u->server || !u->path || !u->file) {
		fprintf(stderr, "vmfs nfs: bad URL %s: %s\n", url, nfs_get_error(d->nfs));
		r = -EINVAL;
		goto fail;
	}
	r = nfs_mount(d->nfs, u->server, u->path);
	if (r) {
		fprintf(stderr, "vmfs nfs: mount %s:%s: %s\n", u->server, u->path, nfs_get_error(d->nfs));
		r = r < -1 ? r : -EIO; /* libnfs returns a bare -1 on transport errors */
		if (r == -EIO) {
			/* libnfs says "nfs_service failed": ask TCP why (portmapper,
			 * then the NFS port) */
			int p1 = vmfs_tcp_probe(u->server, "111"), p2 = vmfs_tcp_probe(u->server, "2049");

			if (p1 && p2)
				r = p1;
		}
		goto fail;
	}
	flags = rdonly ? O_RDONLY : O_RDWR;
	if ((o->flags & VMFS_BDEV_CREATE) && !rdonly)
		flags |= O_CREAT;
	r = nfs_open2(d->nfs, u->file, flags, 0644, &d->fh);
	if (r) {
		fprintf(stderr, "vmfs nfs: open %s: %s\n", url, nfs_get_error(d->nfs));
		r = r < 0 ? r : -EIO;
		d->fh = NULL;
		goto fail;
	}
	r = nfs_fstat64(d->nfs, d->fh, &st);
	if (r == 0 && (o->flags & VMFS_BDEV_CREATE) && !rdonly && st.nfs_size == 0 && o->create_size) {
		r = nfs_ftruncate(d->nfs, d->fh, o->create_size);
		st.nfs_size = o->create_size;
	}
	if (r) {
		r = r < 0 ? r : -EIO;
		goto fail;
	}
	d->rmax = nfs_get_readmax(d->nfs);
	d->wmax = nfs_get_writemax(d->nfs);
	if (!d->rmax)
		d->rmax = 1 << 20;
	if (!d->wmax)
		d->wmax = 1 << 20;
	info.lbs = 512;
	info.pbs = 4096;
	info.size = st.nfs_size - st.nfs_size % 512;
	info.ats = VMFS_ATS_NONE;
	info.discard = false;
	info.rdonly = rdonly;
	info.direct = true;   /* libnfs: no host page cache on the way */
	snprintf(info.kind, sizeof(info.kind), "nfs");
	nfs_destroy_url(u);
	u = NULL;
	r = vmfs_bdev_create(&nfs_ops, d, &info, url, out);
	if (r)
		goto fail;
	return 0;
fail:
	if (u)
		nfs_destroy_url(u);
	if (d->fh)
		nfs_close(d->nfs, d->fh);
	if (d->nfs)
		nfs_destroy_context(d->nfs);
	pthread_mutex_destroy(&d->lock);
	free(d);
	return r;
}
