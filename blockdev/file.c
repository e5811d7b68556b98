/* Regular files and block devices: pread/pwrite, O_DIRECT, OFD-lock ATS. */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct file_dev {
	int fd;
	bool blockdev;
	/* OFD locks exclude other open file descriptions, not other threads
	 * sharing ours: the mutex covers those. */
	pthread_mutex_t ats_lock;
};

/* pread/pwrite loops: a short transfer is continued, EOF is -EIO. */
static int xfer(int fd, const struct iovec *iov0, int iovcnt, uint64_t off, bool wr)
{
	struct iovec stackv[16], *heap = NULL, *iov = stackv;
	int r = 0;

	if (iovcnt > 16) {
		heap = iov = malloc(sizeof(*iov) * (size_t)iovcnt);
		if (!iov)
			return -ENOMEM;
	}
	memcpy(iov, iov0, sizeof(*iov) * (size_t)iovcnt);
	while (iovcnt > 0) {
		ssize_t n = wr ? pwritev(fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt, (off_t)off)
			       : preadv(fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0) {
			r = -EIO;
			goto out;
		}
		off += (uint64_t)n;
		while (n > 0 && iovcnt > 0) {
			if ((size_t)n >= iov->iov_len) {
				n -= (ssize_t)iov->iov_len;
				iov++;
				iovcnt--;
			} else {
				iov->iov_base = (char *)iov->iov_base + n;
				iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
		while (iovcnt > 0 && iov->iov_len == 0) {
			iov++;
			iovcnt--;
		}
	}
out:
	free(heap);
	return r;
}

static int file_readv(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct file_dev *f = priv;

	return xfer(f->fd, iov, iovcnt, off, false);
}

static int file_writev(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct file_dev *f = priv;

	return xfer(f->fd, iov, iovcnt, off, true);
}

static int file_flush(void *priv)
{
	struct file_dev *f = priv;

	return fdatasync(f->fd) ? -errno : 0;
}

static int file_discard(void *priv, uint64_t off, uint64_t len)
{
	struct file_dev *f = priv;

	if (f->blockdev) {
		uint64_t range[2] = { off, len };

		return ioctl(f->fd, BLKDISCARD, range) ? -errno : 0;
	}
	if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return -errno;
	return 0;
}

static int ofd_lock(int fd, uint64_t off, short type)
{
	struct flock fl = {
		.l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)off,
		.l_len = VMFS_SECTOR_SIZE, .l_pid = 0,
	};

	while (fcntl(fd, F_OFD_SETLKW, &fl)) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int file_ats(void *priv, uint64_t off, const void *expect, const void *newdata,
		    void *current)
{
	struct file_dev *f = priv;
	void *buf = NULL;
	int r;

	if (posix_memalign(&buf, 4096, 4096))
		return -ENOMEM;
	pthread_mutex_lock(&f->ats_lock);
	r = ofd_lock(f->fd, off, F_WRLCK);
	if (r)
		goto out_unlock;
	r = xfer(f->fd, &(struct iovec){ buf, VMFS_SECTOR_SIZE }, 1, off, false);
	if (r)
		goto out_release;
	if (memcmp(buf, expect, VMFS_SECTOR_SIZE)) {
		if (current)
			memcpy(current, buf, VMFS_SECTOR_SIZE);
		r = -ESTALE;
		goto out_release;
	}
	memcpy(buf, newdata, VMFS_SECTOR_SIZE);
	r = xfer(f->fd, &(struct iovec){ buf, VMFS_SECTOR_SIZE }, 1, off, true);
out_release:
	ofd_lock(f->fd, off, F_UNLCK);
out_unlock:
	pthread_mutex_unlock(&f->ats_lock);
	free(buf);
	return r;
}

static void file_close(void *priv)
{
	struct file_dev *f = priv;

	close(f->fd);
	pthread_mutex_destroy(&f->ats_lock);
	free(f);
}

static const struct vmfs_bdev_ops file_ops = {
	.readv = file_readv,
	.writev = file_writev,
	.flush = file_flush,
	.discard = file_discard,
	.ats = file_ats,
	.close = file_close,
};

int vmfs_file_open(const char *path, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out)
{
	struct vmfs_bdev_info info = { 0 };
	struct file_dev *f = NULL;
	struct stat st;
	int oflags, fd, r;

	if (!*path)
		return -EINVAL;
	oflags = (o->flags & VMFS_BDEV_RDONLY) ? O_RDONLY : O_RDWR;
	oflags |= O_CLOEXEC;
	if (o->flags & VMFS_BDEV_DIRECT)
		oflags |= O_DIRECT;
	if ((o->flags & VMFS_BDEV_CREATE) && !(o->flags & VMFS_BDEV_RDONLY))
		oflags |= O_CREAT;
	fd = open(path, oflags, 0644);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		r = -errno;
		goto fail;
	}
	info.lbs = 512;
	info.pbs = 4096;
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		int ss = 512, ps = 4096;

		if (ioctl(fd, BLKGETSIZE64, &sz)) {
			r = -errno;
			goto fail;
		}
		ioctl(fd, BLKSSZGET, &ss);
		ioctl(fd, BLKPBSZGET, &ps);
		info.size = sz;
		info.lbs = (uint32_t)ss;
		info.pbs = (uint32_t)ps;
		strcpy(info.kind, "blockdev");
	} else if (S_ISREG(st.st_mode)) {
		if ((o->flags & VMFS_BDEV_CREATE) && st.st_size == 0 && o->create_size) {
			if (ftruncate(fd, (off_t)o->create_size)) {
				r = -errno;
				goto fail;
			}
			st.st_size = (off_t)o->create_size;
		}
		info.size = (uint64_t)st.st_size;
		strcpy(info.kind, "file");
	} else {
		r = -ENOTBLK;
		goto fail;
	}
	info.size -= info.size % info.lbs;
	info.ats = VMFS_ATS_OFD_LOCK;
	info.discard = true;
	info.rdonly = (o->flags & VMFS_BDEV_RDONLY) != 0;
	info.direct = (o->flags & VMFS_BDEV_DIRECT) != 0;
	f = calloc(1, sizeof(*f));
	if (!f) {
		r = -ENOMEM;
		goto fail;
	}
	f->fd = fd;
	f->blockdev = S_ISBLK(st.st_mode);
	pthread_mutex_init(&f->ats_lock, NULL);
	r = vmfs_bdev_create(&file_ops, f, &info, path, out);
	if (r) {
		pthread_mutex_destroy(&f->ats_lock);
		free(f);
		goto fail;
	}
	(*out)->fd = fd;
	(*out)->fd_direct = (o->flags & VMFS_BDEV_DIRECT) != 0;
	return 0;
fail:
	close(fd);
	return r;
}
