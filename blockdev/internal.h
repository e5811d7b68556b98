/* Private to blockdev/: the device object and backend constructors. */
#ifndef VMFS_BLOCKDEV_INTERNAL_H
#define VMFS_BLOCKDEV_INTERNAL_H

#include "vmfs/blockdev.h"

struct vmfs_bdev {
	const struct vmfs_bdev_ops *ops;
	void *priv;
	struct vmfs_bdev_info info;
	char *uri;
	int fd;            /* file/blockdev backends: the fd libaio submits on, else -1 */
	bool fd_direct;    /* fd was opened with O_DIRECT */
};

/* Backends: parse their URL (already stripped of nothing) and open. */
int vmfs_file_open(const char *path, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out);
int vmfs_iscsi_open(const char *url, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out);
int vmfs_nfs_open(const char *url, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out);

/* Check that [off, off+len) is lbs-aligned and inside the device. */
int vmfs_bdev_check_range(const struct vmfs_bdev *bd, uint64_t off, uint64_t len);
/* Sum of iovec lengths; SIZE_MAX on overflow. */
size_t vmfs_iov_len(const struct iovec *iov, int iovcnt);

#endif
