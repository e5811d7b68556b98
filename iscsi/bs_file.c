/* Backing store over a raw file or block device, through the block layer.
 * Data moves straight between the caller's iovecs (the connection's buffers)
 * and the device.  Allocation status (GET LBA STATUS) comes from
 * SEEK_DATA/SEEK_HOLE on a second, read-only descriptor of the same file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmfs/blockdev.h"
#include "backing.h"

struct bs_file {
	struct backing b;
	struct vmfs_bdev *bd;
	int map_fd;          /* for SEEK_DATA/SEEK_HOLE; -1 on block devices */
};

static int f_readv(struct backing *b, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return vmfs_bdev_readv(((struct bs_file *)b)->bd, iov, iovcnt, off);
}

static int f_writev(struct backing *b, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return vmfs_bdev_writev(((struct bs_file *)b)->bd, iov, iovcnt, off);
}

static int f_flush(struct backing *b)
{
	return vmfs_bdev_flush(((struct bs_file *)b)->bd);
}

static int f_unmap(struct backing *b, uint64_t off, uint64_t len)
{
	return vmfs_bdev_discard(((struct bs_file *)b)->bd, off, len);
}

static int f_lba_status(struct backing *b, uint64_t off, uint64_t maxlen, bool *mapped,
			uint64_t *len)
{
	struct bs_file *f = (struct bs_file *)b;
	uint64_t end = off + maxlen;
	off_t d, h;

	if (end > b->size)
		end = b->size;
	if (f->map_fd < 0) {
		*mapped = true;
		*len = end - off;
		return 0;
	}
	d = lseek(f->map_fd, (off_t)off, SEEK_DATA);
	if (d < 0 && errno != ENXIO)
		return -errno;
	if (d < 0 || (uint64_t)d >= end) { /* hole to the end */
		*mapped = false;
		*len = end - off;
		return 0;
	}
	if ((uint64_t)d > off) {
		/* A hole up to d, rounded down to a block: a partly written
		 * block counts as mapped. */
		uint64_t e = (uint64_t)d / b->block_size * b->block_size;

		if (e > off) {
			*mapped = false;
			*len = e - off;
			return 0;
		}
	}
	h = lseek(f->map_fd, (off_t)off, SEEK_HOLE);
	if (h < 0)
		return -errno;
	if ((uint64_t)h > end)
		h = (off_t)end;
	{
		uint64_t e = ((uint64_t)h + b->block_size - 1) / b->block_size * b->block_size;

		if (e > end)
			e = end;
		*mapped = true;
		*len = e > off ? e - off : b->block_size;
	}
	return 0;
}

static void f_close(struct backing *b)
{
	struct bs_file *f = (struct bs_file *)b;

	vmfs_bdev_flush(f->bd);
	vmfs_bdev_close(f->bd);
	if (f->map_fd >= 0)
		close(f->map_fd);
	free(f);
}

static const struct backing_ops file_ops = {
	.readv = f_readv, .writev = f_writev, .flush = f_flush, .unmap = f_unmap,
	.lba_status = f_lba_status, .close = f_close,
};

static backing_resolver resolver;
static void *resolver_arg;

void backing_set_datastore_resolver(backing_resolver fn, void *arg)
{
	resolver = fn;
	resolver_arg = arg;
}

#define DS_PREFIX "/vmfs/volumes/"

static int open_datastore(const char *path, bool thin, struct backing **out, char *err,
			  size_t errlen)
{
	const char *vol = path + strlen(DS_PREFIX), *slash = strchr(vol, '/');
	char name[256];
	int r;

	if (!resolver) {
		snprintf(err, errlen, "%s: no datastore is mounted here", path);
		return -ENOENT;
	}
	if (!slash || slash == vol || (size_t)(slash - vol) >= sizeof(name) || !slash[1]) {
		snprintf(err, errlen, "bad datastore path '%s' (/vmfs/volumes/VOLUME/FILE)", path);
		return -EINVAL;
	}
	memcpy(name, vol, (size_t)(slash - vol));
	name[slash - vol] = 0;
	r = resolver(resolver_arg, name, slash, out, err, errlen);
	if (!r && thin)
		(*out)->thin = true;
	return r;
}

int backing_open(const char *path, bool thin, struct backing **out, char *err, size_t errlen)
{
	struct bs_file *f = NULL;
	const struct vmfs_bdev_info *info;
	struct stat st;
	const char *p;
	int r;

	if (!strncmp(path, DS_PREFIX, strlen(DS_PREFIX)))
		return open_datastore(path, thin, out, err, errlen);
	if (strncmp(path, "file:", 5)) {
		snprintf(err, errlen, "unsupported LUN path '%s' (file:/abs/path or "
			 "/vmfs/volumes/VOLUME/FILE)", path);
		return -EINVAL;
	}
	p = path + 5;
	if (p[0] != '/') {
		snprintf(err, errlen, "LUN path '%s' is not absolute", path);
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->map_fd = -1;
	r = vmfs_bdev_open(p, 0, &f->bd);
	if (r) {
		snprintf(err, errlen, "cannot open %s: %s", p, strerror(-r));
		goto fail;
	}
	info = vmfs_bdev_get_info(f->bd);
	if (info->size < 4096) {
		snprintf(err, errlen, "%s: too small (%llu bytes)", p, (unsigned long long)info->size);
		r = -EINVAL;
		goto fail;
	}
	if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
		f->map_fd = open(p, O_RDONLY | O_CLOEXEC);
	f->b.ops = &file_ops;
	f->b.block_size = info->lbs > 512 ? info->lbs : 512;
	f->b.size = info->size / f->b.block_size * f->b.block_size;
	f->b.thin = thin;
	f->b.rdonly = info->rdonly;
	snprintf(f->b.desc, sizeof(f->b.desc), "%s", p);
	*out = &f->b;
	return 0;
fail:
	if (f->bd)
		vmfs_bdev_close(f->bd);
	free(f);
	return r;
}
