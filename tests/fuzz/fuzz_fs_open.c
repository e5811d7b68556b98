/*
 * libFuzzer harness: open / lookup / readdir / stat / read / map on a VMFS5
 * image corrupted by the fuzz input (image and patch format: fs_image.h).
 *
 * A small volume is formatted and filled once (resident, SB, FB, PB files, a
 * sub-directory, a symlink, TBZ blocks) in memory.  Each input is a list of
 * patches {region u8, offset u16, len u8, bytes} applied on top of that image
 * through a copy-on-read overlay device (regions = the metadata structures:
 * LVM header, FS descriptor, resource headers and clusters, FDs, directory
 * blocks, pointer blocks), plus an optional truncation of the device.  The
 * filesystem is opened read-only and walked; any crash, hang or sanitizer
 * report is a bug.
 */
#include <string.h>

#include "fs_image.h"

static int walk(struct vmfs_fs *fs, uint32_t dir, int depth);

struct walk_ctx {
	struct vmfs_fs *fs;
	int depth, n;
};

static int walk_cb(void *ctx, const struct vmfs_dirent *de)
{
	struct walk_ctx *w = ctx;
	struct vmfs_stat st;
	struct vmfs_extent x;
	static uint8_t buf[65536];
	char ln[256];

	if (++w->n > 64)
		return 1;
	if (vmfs_stat(w->fs, de->addr, &st) == 0) {
		vmfs_pread(w->fs, de->addr, buf, sizeof(buf), st.size > 5000 ? st.size - 5000 : 0);
		vmfs_map(w->fs, de->addr, st.size / 2, 0, &x);
		if (st.type == VMFS_TYPE_SYMLINK)
			vmfs_readlink(w->fs, de->addr, ln, sizeof(ln));
		if (st.type == VMFS_TYPE_DIR && strcmp(de->name, ".") && strcmp(de->name, ".."))
			walk(w->fs, de->addr, w->depth + 1);
	}
	return 0;
}

static int walk(struct vmfs_fs *fs, uint32_t dir, int depth)
{
	struct walk_ctx w = { fs, depth, 0 };

	if (depth > 3)
		return 0;
	return vmfs_readdir(fs, dir, walk_cb, &w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_image *img;
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	struct vmfs_statfs sf;
	uint32_t a;

	if (fz_open(data, size, 0, &img, &vol, &fs))
		return 0;
	if (fs) {
		walk(fs, VMFS_ROOT_ADDR, 0);
		vmfs_resolve(fs, "/dir/sb", &a);
		vmfs_resolve(fs, "/dir/../fb", &a);
		vmfs_fs_statfs(fs, &sf);
		for (int k = 0; k < VMFS_RES_COUNT; k++) {
			struct vmfs_res_info ri;
			struct vmfs_cluster c;
			struct vmfs_fd fd;
			vmfs_res_get_info(fs, k, &ri);
			for (uint32_t ci = 0; ci < ri.nclusters && ci < 8; ci++)
				vmfs_res_read_cluster(fs, k, ci, &c, NULL);
			if (k == VMFS_RES_FDC)
				for (uint64_t it = 0; it < 8; it++)
					vmfs_fd_read_raw(fs, it, &fd, NULL);
		}
	}
	fz_close(img, vol, fs);
	return 0;
}
