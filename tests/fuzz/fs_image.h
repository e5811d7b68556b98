/*
 * Shared by the filesystem fuzz harnesses: a small VMFS5 image built once in
 * memory (resident, SB, FB, PB and TBZ files, a sub-directory, a symlink),
 * and a per-input overlay device that applies the input's patches to the
 * image's metadata regions.  Writable overlays keep what a run writes in
 * copy-on-write chunks, so every run starts from the same image.
 *
 * Input format: optional truncation {0xFF, size/4096 as u24 LE}, then
 * patches {region u8, offset u16 LE, len u8, bytes}.
 */
#ifndef FUZZ_FS_IMAGE_H
#define FUZZ_FS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "vmfs/fs.h"
#include "vmfs/volume.h"

#define FZ_MiB (1ull << 20)

struct fz_image;

/** Parse @data into a new overlay on the shared base image (built on first
 *  use) and open it as a volume and filesystem; a NULL *fs means the open
 *  was refused, which is a valid outcome.  \return 0, or -1 if not even the
 *  device could be made (the input is uninteresting). */
int fz_open(const uint8_t *data, size_t size, int writable, struct fz_image **img,
	    struct vmfs_volume **vol, struct vmfs_fs **fs);
/** Close what fz_open opened and free the overlay. */
void fz_close(struct fz_image *img, struct vmfs_volume *vol, struct vmfs_fs *fs);

#endif
