/* Block device layer: URL dispatch, argument checking, stacking. */
#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *vmfs_ats_mode_name(enum vmfs_ats_mode m)
{
	switch (m) {
	case VMFS_ATS_NONE: return "none";
	case VMFS_ATS_OFD_LOCK: return "ofd-lock";
	case VMFS_ATS_COMPARE_AND_WRITE: return "compare-and-write";
	case VMFS_ATS_SCSI_RESERVE: return "scsi-reserve";
	case VMFS_ATS_NLM_LOCK: return "nlm-lock";
	case VMFS_ATS_LOWER: return "lower";
	}
	return "?";
}

int vmfs_bdev_create(const struct vmfs_bdev_ops *ops, void *priv,
		     const struct vmfs_bdev_info *info, const char *uri,
		     struct vmfs_bdev **out)
{
	struct vmfs_bdev *bd;

	if (!ops || !info || !out || !ops->readv || !ops->writev || !ops->flush || !ops->ats)
		return -EINVAL;
	if (info->lbs < 512 || (info->lbs & (info->lbs - 1)) || info->size % info->lbs)
		return -EINVAL;
	bd = calloc(1, sizeof(*bd));
	if (!bd)
		return -ENOMEM;
	bd->uri = strdup(uri ? uri : "?");
	if (!bd->uri) {
		free(bd);
		return -ENOMEM;
	}
	bd->ops = ops;
	bd->priv = priv;
	bd->info = *info;
	if (!bd->info.pbs)
		bd->info.pbs = bd->info.lbs;
	bd->fd = -1;
	*out = bd;
	return 0;
}

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

int vmfs_bdev_open_opts(const char *uri, const struct vmfs_bdev_open_opts *o,
			struct vmfs_bdev **out)
{
	struct vmfs_bdev_open_opts def = { 0 };

	if (!uri || !*uri || !out)
		return -EINVAL;
	if (!o)
		o = &def;
	if (has_prefix(uri, "fault:"))
		return vmfs_fault_open_url(uri + 6, o, out);
	if (has_prefix(uri, "iscsi://"))
		return vmfs_iscsi_open(uri, o, out);
	if (has_prefix(uri, "nfs://"))
		return vmfs_nfs_open(uri, o, out);
	if (has_prefix(uri, "file://"))
		return vmfs_file_open(uri + 7, o, out);
	if (strstr(uri, "://"))
		return -EPROTONOSUPPORT;
	return vmfs_file_open(uri, o, out);
}

int vmfs_bdev_open(const char *uri, unsigned flags, struct vmfs_bdev **out)
{
	struct vmfs_bdev_open_opts o = { .flags = flags };

	return vmfs_bdev_open_opts(uri, &o, out);
}

void vmfs_bdev_close(struct vmfs_bdev *bd)
{
	if (!bd)
		return;
	if (bd->ops->close)
		bd->ops->close(bd->priv);
	free(bd->uri);
	free(bd);
}

const struct vmfs_bdev_info *vmfs_bdev_get_info(const struct vmfs_bdev *bd)
{
	return &bd->info;
}

uint64_t vmfs_bdev_size(const struct vmfs_bdev *bd)
{
	return bd->info.size;
}

const char *vmfs_bdev_uri(const struct vmfs_bdev *bd)
{
	return bd->uri;
}

size_t vmfs_iov_len(const struct iovec *iov, int iovcnt)
{
	size_t total = 0;

	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > SIZE_MAX - total)
			return SIZE_MAX;
		total += iov[i].iov_len;
	}
	return total;
}

int vmfs_bdev_check_range(const struct vmfs_bdev *bd, uint64_t off, uint64_t len)
{
	uint64_t lbs = bd->info.lbs;

	if (off % lbs || len % lbs)
		return -EINVAL;
	if (off > bd->info.size || len > bd->info.size - off)
		return -EINVAL;
	return 0;
}

int vmfs_bdev_check_io(const struct vmfs_bdev *bd, const struct iovec *iov, int iovcnt,
		       uint64_t off, bool write, size_t *lenp)
{
	size_t len;
	int r;

	if (iovcnt < 0 || (iovcnt > 0 && !iov) || iovcnt > IOV_MAX)
		return -EINVAL;
	len = vmfs_iov_len(iov, iovcnt);
	if (len == SIZE_MAX)
		return -EINVAL;
	r = vmfs_bdev_check_range(bd, off, len);
	if (r)
		return r;
	if (write && bd->info.rdonly)
		return -EROFS;
	if (lenp)
		*lenp = len;
	return 0;
}

int vmfs_bdev_readv(struct vmfs_bdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	size_t len = 0;
	int r = vmfs_bdev_check_io(bd, iov, iovcnt, off, false, &len);

	if (r)
		return r;
	if (len == 0)
		return 0;
	return bd->ops->readv(bd->priv, iov, iovcnt, off);
}

int vmfs_bdev_writev(struct vmfs_bdev *bd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	size_t len = 0;
	int r = vmfs_bdev_check_io(bd, iov, iovcnt, off, true, &len);

	if (r)
		return r;
	if (len == 0)
		return 0;
	return bd->ops->writev(bd->priv, iov, iovcnt, off);
}

int vmfs_bdev_read(struct vmfs_bdev *bd, void *buf, size_t len, uint64_t off)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };

	return vmfs_bdev_readv(bd, &v, 1, off);
}

int vmfs_bdev_write(struct vmfs_bdev *bd, const void *buf, size_t len, uint64_t off)
{
	struct iovec v = { .iov_base = (void *)buf, .iov_len = len };

	return vmfs_bdev_writev(bd, &v, 1, off);
}

int vmfs_bdev_flush(struct vmfs_bdev *bd)
{
	if (bd->info.rdonly)
		return 0;
	return bd->ops->flush(bd->priv);
}

int vmfs_bdev_discard(struct vmfs_bdev *bd, uint64_t off, uint64_t len)
{
	int r = vmfs_bdev_check_range(bd, off, len);

	if (r)
		return r;
	if (bd->info.rdonly)
		return -EROFS;
	if (!bd->ops->discard)
		return -EOPNOTSUPP;
	if (len == 0)
		return 0;
	return bd->ops->discard(bd->priv, off, len);
}

int vmfs_bdev_ats(struct vmfs_bdev *bd, uint64_t off, const void *expect,
		  const void *newdata, void *current)
{
	if (!expect || !newdata || off % VMFS_SECTOR_SIZE)
		return -EINVAL;
	if (off > bd->info.size || bd->info.size - off < VMFS_SECTOR_SIZE)
		return -EINVAL;
	if (bd->info.rdonly)
		return -EROFS;
	if (bd->info.ats == VMFS_ATS_NONE)
		return -EOPNOTSUPP;
	return bd->ops->ats(bd->priv, off, expect, newdata, current);
}

int vmfs_tcp_probe(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	int fd, r;

	if (getaddrinfo(host, port, &hints, &ai) || !ai)
		return -EHOSTUNREACH;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
	} else {
		r = connect(fd, ai->ai_addr, ai->ai_addrlen) ? -errno : 0;
		close(fd);
	}
	freeaddrinfo(ai);
	return r;
}
