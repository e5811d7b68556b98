/* Backing store of one LUN: where the bytes of a SCSI logical unit live.
 * The SCSI command set (sbc.c/spc.c) only sees this interface; the first
 * implementation (bs_file.c) is a raw file or device through the block layer
 * (include/vmfs/blockdev.h); bs_vmfs.c is a disk file on a mounted datastore
 * (include/vmfs/fs.h).
 *
 * Offsets and lengths are bytes, multiples of the LUN's block size, inside
 * the store (the SCSI layer checks ranges before calling).  Every function
 * returns 0 or a negative errno.  Calls may come from several connection
 * threads at once. */
#ifndef ISCSI_BACKING_H
#define ISCSI_BACKING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct backing;

struct backing_ops {
	int (*readv)(struct backing *b, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*writev)(struct backing *b, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*flush)(struct backing *b);
	/** Deallocate (reads return zeros afterwards).  -EOPNOTSUPP if unable. */
	int (*unmap)(struct backing *b, uint64_t off, uint64_t len);
	/** Is [off, ...) mapped?  Sets *mapped and *len (bytes of the run with
	 *  that state starting at @off, at most @maxlen). */
	int (*lba_status)(struct backing *b, uint64_t off, uint64_t maxlen, bool *mapped,
			  uint64_t *len);
	void (*close)(struct backing *b);
};

struct backing {
	const struct backing_ops *ops;
	uint64_t size;       /* bytes */
	uint32_t block_size; /* logical block size presented to initiators */
	bool thin;           /* thin provisioned: UNMAP, LBPME */
	uint32_t unmap_granularity; /* bytes UNMAP frees at best (0: 4 KiB) */
	bool rdonly;
	char desc[256];      /* what it is, for logs and `vmfsctl target list` */
};

/** Open a backing store from a LUN path: "file:/abs/path" (a raw file or
 *  block device), or "/vmfs/volumes/VOLUME/path" (a disk file on a datastore
 *  that the process has mounted; resolved by the function registered with
 *  backing_set_datastore_resolver).  @thin forces thin provisioning; a
 *  datastore disk is also thin when it is (see bs_vmfs_open).  \return 0 and *out, or negative errno,
 *  with a message in @err. */
int backing_open(const char *path, bool thin, struct backing **out, char *err, size_t errlen);

/** How "/vmfs/volumes/VOLUME/rest" paths are opened (vmfsd registers one
 *  that finds VOLUME among its mounted volumes and calls bs_vmfs_open). */
typedef int (*backing_resolver)(void *arg, const char *volume, const char *rest,
				struct backing **out, char *err, size_t errlen);
void backing_set_datastore_resolver(backing_resolver fn, void *arg);

struct vmfs_host;
/** A disk file @path on the datastore mounted as @host (or the flat file a
 *  VMDK descriptor at @path names), held under an exclusive cluster lock
 *  until closed.  Thin when the descriptor says ddb.thinProvisioned = "1" or
 *  the file has unallocated blocks.  @desc names it in messages. */
int bs_vmfs_open(struct vmfs_host *host, const char *path, const char *desc,
		 struct backing **out, char *err, size_t errlen);

static inline void backing_close(struct backing *b)
{
	if (b)
		b->ops->close(b);
}

#endif
