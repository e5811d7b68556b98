/*
 * OpenVMFS volume layer: the VMFS3/VMFS5 LVM (FORMAT.md §2).
 *
 * A volume is 1..32 extents (devices), each with an LVM header at device
 * offset 0x100000 and PE data from 0x1100000.  vmfs_volume_open() validates
 * every header (magic, version 3/5, LVM UUID, logical size, generation,
 * number of devices, segment ranges: no gaps, no overlaps) before use and
 * exposes the logical volume (LV) as a struct vmfs_bdev whose offsets are LV
 * offsets.  I/O that crosses extents is split; ATS goes to the extent that
 * holds the sector.  Every layer above addresses the LV through that device.
 *
 * Every function returns 0 or a negative errno.  Messages explaining a
 * failure go to the log callback (stderr when none is set).
 */
#ifndef VMFS_VOLUME_H
#define VMFS_VOLUME_H

#include <stdint.h>

#include "vmfs/blockdev.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMFS_MAX_EXTENTS 32

enum vmfs_log_level { VMFS_LOG_ERR = 0, VMFS_LOG_WARN = 1, VMFS_LOG_INFO = 2 };

/** Log sink: one message per call, no trailing newline. */
typedef void (*vmfs_log_fn)(void *ctx, int level, const char *msg);

struct vmfs_volume;

struct vmfs_volume_info {
	uint32_t lvm_major;          /* 3 or 5 */
	uint8_t lvm_uuid[16];
	char lvm_uuid_str[36];       /* xxxxxxxx-xxxxxxxx-xxxx-xxxxxxxxxxxx */
	uint64_t lv_size;            /* bytes */
	uint64_t generation;
	uint32_t num_extents;        /* extents opened (= numDevs) */
	uint32_t num_segments;       /* 256 MiB segments in the LV */
};

struct vmfs_volume_opts {
	unsigned bdev_flags;         /* VMFS_BDEV_RDONLY, VMFS_BDEV_DIRECT (with open_bdevs:
	                                say DIRECT if the devices use O_DIRECT; the LV then
	                                bounces buffers that are not 4 KiB aligned) */
	vmfs_log_fn log;             /* NULL: errors to stderr */
	void *log_ctx;
	int allow_missing;           /* open even if fewer extents than numDevs (reads of
	                                missing segments fail with -ENXIO) */
};

/** Open the extents named by @paths (any order) and assemble the LV. */
int vmfs_volume_open(const char *const *paths, int npaths, const struct vmfs_volume_opts *o,
		     struct vmfs_volume **out);

/** Same over devices already open; takes ownership of @bdevs[0..n-1] (also on
 *  failure: they are closed). */
int vmfs_volume_open_bdevs(struct vmfs_bdev **bdevs, int n, const struct vmfs_volume_opts *o,
			   struct vmfs_volume **out);

/** The LV as a device (owned by the volume; valid until vmfs_volume_close). */
struct vmfs_bdev *vmfs_volume_bdev(struct vmfs_volume *v);
const struct vmfs_volume_info *vmfs_volume_get_info(const struct vmfs_volume *v);
/** Extent @i in segment order (for tools): device and its first segment. */
struct vmfs_bdev *vmfs_volume_extent(struct vmfs_volume *v, int i, uint32_t *first_seg,
				     uint32_t *nsegs);
/** Where LV byte @lv_off lives on the single extent @bd, from that extent's
 *  own LVM header, before a volume is assembled (a host uses it to place the
 *  fencing guard's heartbeat window).  \return 0 and *dev_off; -ENXIO when
 *  the extent does not hold that byte; -EINVAL when @bd is not an extent. */
int vmfs_volume_extent_locate(struct vmfs_bdev *bd, uint64_t lv_off, uint64_t *dev_off);
/** Where LV byte @lv_off lives in the assembled volume: extent @idx (its
 *  device is vmfs_volume_extent(v, idx), as the volume uses it: a host's
 *  extents carry their fencing guard), the device offset, and how many bytes
 *  from there are contiguous on that device.  -ENXIO outside the LV. */
int vmfs_volume_map(struct vmfs_volume *v, uint64_t lv_off, int *idx, uint64_t *dev_off,
		    uint64_t *len);
/** Flush every extent and close. */
void vmfs_volume_close(struct vmfs_volume *v);

/** Does the device carry an LVM header with the VMFS magic?  1 yes, 0 no,
 *  negative errno on I/O error. */
int vmfs_volume_probe(struct vmfs_bdev *bd);

#ifdef __cplusplus
}
#endif
#endif
