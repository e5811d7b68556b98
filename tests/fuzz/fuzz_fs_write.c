/*
 * libFuzzer harness: the write paths (create, write, truncate, fallocate,
 * link, rename, unlink, rmdir, setattr) on a VMFS5 image corrupted by the
 * fuzz input.  Same base image and patch format as fuzz_fs_open.c
 * (fs_image.h); writes go to a per-run copy-on-write layer, so every run
 * starts from the same image.  Any crash, hang or sanitizer report is a bug;
 * refused operations are fine.
 */
#include <string.h>

#include "fs_image.h"

#define MiB FZ_MiB

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_image *img;
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	uint32_t a;

	if (fz_open(data, size, 1, &img, &vol, &fs))
		return 0;
	if (fs) {
		static uint8_t buf[(1 << 20) + 8192];
		uint32_t d = 0, f = 0;
		unsigned sel = size ? data[size - 1] : 0;
		memset(buf, 0x3C, sizeof(buf));
		vmfs_resolve(fs, "/dir", &d);
		vmfs_create(fs, VMFS_ROOT_ADDR, "new", 0644, 0, 0, &f);
		vmfs_pwrite(fs, f, buf, 5000, 0);
		vmfs_pwrite(fs, f, buf, sel & 1 ? (1 << 20) + 8192 : 100, 300 * MiB - 4096);
		if (vmfs_resolve(fs, "/fb", &a) == 0) {
			vmfs_pwrite(fs, a, buf, 4096, 1 << 20);
			vmfs_truncate(fs, a, sel & 2 ? 1000 : 5 << 20);
			vmfs_link(fs, a, d ? d : VMFS_ROOT_ADDR, "fb-link");
		}
		if (vmfs_resolve(fs, "/pb", &a) == 0) {
			vmfs_fallocate(fs, a, 0, 3 << 20, VMFS_ALLOC_TBZ);
			vmfs_pwrite(fs, a, buf, 10, 1 << 20);
			vmfs_truncate(fs, a, sel & 4 ? 0 : 100 << 20);
		}
		vmfs_mkdir(fs, d ? d : VMFS_ROOT_ADDR, "nd", 0755, 0, 0, &a);
		vmfs_rename(fs, VMFS_ROOT_ADDR, "res", d ? d : VMFS_ROOT_ADDR, "moved");
		vmfs_rename(fs, d ? d : VMFS_ROOT_ADDR, "sb", VMFS_ROOT_ADDR, "fb");
		vmfs_unlink(fs, d ? d : VMFS_ROOT_ADDR, "ln");
		vmfs_unlink(fs, VMFS_ROOT_ADDR, "pb");
		vmfs_rmdir(fs, d ? d : VMFS_ROOT_ADDR, "nd");
		vmfs_rmdir(fs, VMFS_ROOT_ADDR, "dir");
		vmfs_setattr(fs, f, VMFS_SET_MODE, 0600, 0, 0, 0, 0);
		vmfs_unlink(fs, VMFS_ROOT_ADDR, "new");
	}
	fz_close(img, vol, fs);
	return 0;
}
