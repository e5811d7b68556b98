/*
 * vhost_disk over a plain file or block device (tests and benches; the
 * datastore path is disk_vmfs.c).  With VHOST_DISK_DIRECT the data goes
 * through an O_DIRECT descriptor when every guest buffer is 512-aligned
 * (Linux guests' are), else through a buffered one; both see the same file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/fs.h>

#include "vmfs/blockdev.h"
#include "vmfs/vhost.h"

struct fdisk {
	struct vhost_disk d;
	int fd, dfd;   /* buffered, O_DIRECT (-1 when not asked) */
	uint32_t align;   /* O_DIRECT alignment: the device's logical sector */
	struct vmfs_bdev *bd;   /* O_DIRECT device for the async path (NULL: none) */
};

/* Async path: the blockdev layer's queue (libaio, eventfd) on the O_DIRECT
 * device; requests whose buffers O_DIRECT cannot take are refused (-EINVAL)
 * and done synchronously by the caller. */
static int f_aq_create(struct vhost_disk *d, unsigned depth, void **aq)
{
	struct fdisk *f = d->priv;

	if (!f->bd)
		return -EOPNOTSUPP;
	return vmfs_bdev_queue_create(f->bd, depth, (struct vmfs_bdev_queue **)aq);
}

static void f_aq_destroy(void *aq)
{
	vmfs_bdev_queue_destroy(aq);
}

static int f_aq_fd(void *aq)
{
	return vmfs_bdev_queue_fd(aq);
}

static int f_aq_submit(void *aq, bool wr, const struct iovec *iov, int n, uint64_t off,
		       void (*cb)(void *arg, int res), void *arg)
{
	uint32_t a = vmfs_bdev_get_info(vmfs_bdev_queue_bdev(aq))->lbs;   /* O_DIRECT alignment */

	if (off % a)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if ((uintptr_t)iov[i].iov_base % a || iov[i].iov_len % a)
			return -EINVAL;
	return vmfs_bdev_submit(aq, wr ? VMFS_BDEV_OP_WRITE : VMFS_BDEV_OP_READ, iov, n, off, cb, arg);
}

static int f_aq_kick(void *aq)
{
	return vmfs_bdev_queue_kick(aq);
}

static int f_aq_poll(void *aq)
{
	return vmfs_bdev_queue_poll(aq, 0, 0);
}

static bool f_aq_ready(void *aq)
{
	return vmfs_bdev_queue_ready(aq);
}

static int pick(struct fdisk *f, const struct iovec *iov, int n, uint64_t off)
{
	if (f->dfd < 0 || off % f->align)
		return f->fd;
	for (int i = 0; i < n; i++)
		if ((uintptr_t)iov[i].iov_base % f->align || iov[i].iov_len % f->align)
			return f->fd;
	return f->dfd;
}

static int rw(struct vhost_disk *d, const struct iovec *iov0, int n, uint64_t off, bool wr)
{
	struct fdisk *f = d->priv;
	struct iovec iov[1024];
	int fd = pick(f, iov0, n, off);

	if (n > (int)(sizeof(iov) / sizeof(iov[0])))
		return -EINVAL;
	memcpy(iov, iov0, sizeof(iov[0]) * (size_t)n);
	struct iovec *v = iov;

	while (n > 0) {
		ssize_t k = wr ? pwritev(fd, v, n, (off_t)off) : preadv(fd, v, n, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0) {
			if (wr)
				return -EIO;
			for (int i = 0; i < n; i++)   /* past EOF of a short file: zeros */
				memset(v[i].iov_base, 0, v[i].iov_len);
			return 0;
		}
		off += (uint64_t)k;
		while (n > 0 && (size_t)k >= v->iov_len) {
			k -= (ssize_t)v->iov_len;
			v++;
			n--;
		}
		if (n > 0) {
			v->iov_base = (uint8_t *)v->iov_base + k;
			v->iov_len -= (size_t)k;
		}
	}
	return 0;
}

static int f_readv(struct vhost_disk *d, const struct iovec *iov, int n, uint64_t off)
{
	return rw(d, iov, n, off, false);
}

static int f_writev(struct vhost_disk *d, const struct iovec *iov, int n, uint64_t off)
{
	return rw(d, iov, n, off, true);
}

static int f_flush(struct vhost_disk *d)
{
	struct fdisk *f = d->priv;

	return fdatasync(f->fd) ? -errno : 0;
}

static int f_discard(struct vhost_disk *d, uint64_t off, uint64_t len)
{
	struct fdisk *f = d->priv;

	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return errno == EOPNOTSUPP ? -EOPNOTSUPP : -errno;
	return 0;
}

static int f_write_zeroes(struct vhost_disk *d, uint64_t off, uint64_t len, unsigned flags)
{
	struct fdisk *f = d->priv;
	static const uint8_t zero[65536];

	/* a hole in a file, or a block device's zeroing discard, reads as zeros */
	if ((flags & VHOST_WZ_UNMAP) &&
	    !fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	if (!fallocate(f->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	while (len) {
		size_t n = len < sizeof(zero) ? len : sizeof(zero);
		ssize_t k = pwrite(f->fd, zero, n, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		off += (uint64_t)k;
		len -= (uint64_t)k;
	}
	return 0;
}

static void f_close(struct vhost_disk *d)
{
	struct fdisk *f = d->priv;

	close(f->fd);
	if (f->dfd >= 0)
		close(f->dfd);
	if (f->bd)
		vmfs_bdev_close(f->bd);
	free(f);
}

static const struct vhost_disk_ops file_ops = {
	.readv = f_readv, .writev = f_writev, .flush = f_flush, .discard = f_discard,
	.write_zeroes = f_write_zeroes, .close = f_close,
	.aq_create = f_aq_create, .aq_destroy = f_aq_destroy, .aq_fd = f_aq_fd,
	.aq_submit = f_aq_submit, .aq_kick = f_aq_kick, .aq_poll = f_aq_poll,
	.aq_ready = f_aq_ready,
};

int vhost_disk_open_file(const char *path, unsigned flags, struct vhost_disk **out)
{
	struct fdisk *f = calloc(1, sizeof(*f));
	int acc = flags & VHOST_DISK_RDONLY ? O_RDONLY : O_RDWR;
	struct stat st;
	int r;

	if (!f)
		return -ENOMEM;
	f->dfd = -1;
	f->fd = open(path, acc | O_CLOEXEC);
	if (f->fd < 0) {
		r = -errno;
		free(f);
		return r;
	}
	if (fstat(f->fd, &st)) {
		r = -errno;
		goto fail;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;

		if (ioctl(f->fd, BLKGETSIZE64, &sz)) {
			r = -errno;
			goto fail;
		}
		f->d.size = sz;
	} else {
		f->d.size = (uint64_t)st.st_size;
	}
	f->d.size &= ~511ull;
	f->align = 512;
	if (S_ISBLK(st.st_mode)) {
		int ss = 0;

		if (!ioctl(f->fd, BLKSSZGET, &ss) && ss > 512)
			f->align = (uint32_t)ss;
	}
	if (flags & VHOST_DISK_DIRECT) {
		f->dfd = open(path, acc | O_CLOEXEC | O_DIRECT);   /* -1: buffered only */
		if (f->dfd >= 0 && S_ISREG(st.st_mode) && !(st.st_size % 512) &&
		    vmfs_bdev_open(path, VMFS_BDEV_DIRECT | (flags & VHOST_DISK_RDONLY ? VMFS_BDEV_RDONLY : 0),
				   &f->bd))
			f->bd = NULL;   /* no async path: the workers do it all */
	}
	f->d.ops = &file_ops;
	f->d.priv = f;
	f->d.blk_size = 512;
	f->d.unmap = true;
	f->d.rdonly = flags & VHOST_DISK_RDONLY;
	snprintf(f->d.serial, sizeof(f->d.serial), "file-%llx-%llx",
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	*out = &f->d;
	return 0;
fail:
	close(f->fd);
	free(f);
	return r;
}

void vhost_disk_close(struct vhost_disk *d)
{
	if (d)
		d->ops->close(d);
}
