/* Placeholder until the iSCSI and NFS backends land: refuse clearly. */
#include <errno.h>
#include "internal.h"

int vmfs_iscsi_open(const char *url, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out)
{
	return -EPROTONOSUPPORT;
}

int vmfs_nfs_open(const char *url, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out)
{
	return -EPROTONOSUPPORT;
}
