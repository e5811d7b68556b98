/*
 * libFuzzer harness: the write paths (create, write, truncate, fallocate,
 * link, rename, unlink, rmdir) on a VMFS5 image corrupted by the fuzz input.
 * Same base image and patch format as fuzz_fs_open.c; writes go to a
 * per-run copy-on-write layer, so every run starts from the same image.
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
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/fs.h"
#include "vmfs/volume.h"

#define MiB (1ull << 20)
#define DEV_SIZE (17 * MiB + 256 * MiB)
#define CHUNK (64u << 10)

static uint8_t *base[DEV_SIZE / CHUNK + 1];
static uint64_t regions[16];
static int nregions;

struct patch {
	uint64_t off;
	uint32_t len;
	const uint8_t *data;
};
struct overlay {
	uint64_t size;
	struct patch p[64];
	int np;
	uint8_t *cow[DEV_SIZE / CHUNK + 1];   /* chunks written during this run */
};

static int ov_readv(void *priv, const struct iovec *iov, int cnt, uint64_t off)
{
	struct overlay *o = priv;

	for (int i = 0; i < cnt; i++) {
		uint8_t *dst = iov[i].iov_base;
		uint64_t len = iov[i].iov_len, start = off;
		while (len) {
			uint64_t c = off / CHUNK, in = off % CHUNK;
			uint64_t n = CHUNK - in < len ? CHUNK - in : len;
			if (o->cow[c])
				memcpy(dst, o->cow[c] + in, n);
			else if (base[c])
				memcpy(dst, base[c] + in, n);
			else
				memset(dst, 0, n);
			dst += n;
			off += n;
			len -= n;
		}
		for (int k = 0; k < o->np; k++) {
			const struct patch *p = &o->p[k];
			uint64_t a = p->off > start ? p->off : start;
			uint64_t b = p->off + p->len < off ? p->off + p->len : off;
			for (uint64_t x = a; x < b; x++)
				if (!o->cow[x / CHUNK])
					((uint8_t *)iov[i].iov_base)[x - start] = p->data[x - p->off];
		}
	}
	return 0;
}


static int cow_writev(void *priv, const struct iovec *iov, int cnt, uint64_t off)
{
	struct overlay *o = priv;

	for (int i = 0; i < cnt; i++) {
		const uint8_t *src = iov[i].iov_base;
		uint64_t len = iov[i].iov_len;
		while (len) {
			uint64_t c = off / CHUNK, in = off % CHUNK;
			uint64_t n = CHUNK - in < len ? CHUNK - in : len;
			if (!o->cow[c]) {
				uint8_t *nc = malloc(CHUNK);
				struct iovec v = { nc, CHUNK };
				if (!nc)
					return -ENOMEM;
				ov_readv(o, &v, 1, c * CHUNK);  /* base + patches */
				o->cow[c] = nc;
			}
			memcpy(o->cow[c] + in, src, n);
			src += n;
			off += n;
			len -= n;
		}
	}
	return 0;
}

/* build-time device: writes go to the base chunks */
static int base_writev(void *priv, const struct iovec *iov, int cnt, uint64_t off)
{
	(void)priv;
	for (int i = 0; i < cnt; i++) {
		const uint8_t *src = iov[i].iov_base;
		uint64_t len = iov[i].iov_len;
		while (len) {
			uint64_t c = off / CHUNK, in = off % CHUNK;
			uint64_t n = CHUNK - in < len ? CHUNK - in : len;
			if (!base[c] && !(base[c] = calloc(1, CHUNK)))
				return -ENOMEM;
			memcpy(base[c] + in, src, n);
			src += n;
			off += n;
			len -= n;
		}
	}
	return 0;
}

static int nop_flush(void *priv) { (void)priv; return 0; }
static int no_ats(void *priv, uint64_t off, const void *e, const void *n, void *c)
{
	(void)priv; (void)off; (void)e; (void)n; (void)c;
	return -EOPNOTSUPP;
}

static const struct vmfs_bdev_ops ov_ops = { ov_readv, cow_writev, nop_flush, NULL, no_ats, NULL };
static const struct vmfs_bdev_ops base_ops = { ov_readv, base_writev, nop_flush, NULL, no_ats, NULL };

static void quiet(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }

static void add_region(uint64_t dev_off)
{
	if (nregions < 16)
		regions[nregions++] = dev_off;
}

static void build_base(void)
{
	static struct overlay none = { .size = DEV_SIZE };
	struct vmfs_bdev_info info = { .size = DEV_SIZE, .lbs = 512, .pbs = 512 };
	struct vmfs_mkfs_opts mo = { .label = "fuzz", .log = quiet, .fresh = true, .now = 1 };
	struct vmfs_volume_opts vo = { .log = quiet };
	struct vmfs_fs_opts fo = { .log = quiet };
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	struct vmfs_bdev *bd;
	struct vmfs_fd fd;
	uint8_t *buf = malloc(3 * MiB);
	uint32_t d, a;
	uint64_t lv;
	const uint64_t L = 0x1100000; /* device offset of LV 0 */

	memset(buf, 0x5A, 3 * MiB);
	vmfs_bdev_create(&base_ops, &none, &info, "base", &bd);
	vmfs_mkfs(&bd, 1, &mo, NULL);
	vmfs_volume_open_bdevs(&bd, 1, &vo, &vol);
	vmfs_fs_open(vol, &fo, &fs);
	vmfs_mkdir(fs, VMFS_ROOT_ADDR, "dir", 0755, 0, 0, &d);
	vmfs_create(fs, VMFS_ROOT_ADDR, "res", 0644, 0, 0, &a);
	vmfs_pwrite(fs, a, "resident data", 13, 0);
	vmfs_create(fs, d, "sb", 0644, 0, 0, &a);
	vmfs_pwrite(fs, a, buf, 5000, 0);
	vmfs_symlink(fs, d, "ln", "/vmfs/volumes/fuzz/res", &a);
	vmfs_create(fs, VMFS_ROOT_ADDR, "fb", 0644, 0, 0, &a);
	vmfs_pwrite(fs, a, buf, 3 * MiB, 0);
	vmfs_create(fs, VMFS_ROOT_ADDR, "pb", 0644, 0, 0, &a);
	vmfs_pwrite(fs, a, buf, 100, 300 * MiB);
	vmfs_fd_read(fs, a, &fd, &lv);
	add_region(L + lv);                                   /* a PB file's FD */
	vmfs_fallocate(fs, a, 0, 2 * MiB, VMFS_ALLOC_TBZ);
	vmfs_fd_read(fs, VMFS_ROOT_ADDR, &fd, &lv);
	add_region(L + lv);                                   /* root FD */
	add_region(L + (uint64_t)vmfs_fb_block(fd.blocks[0]) * MiB); /* root dir block */
	vmfs_fd_read(fs, d, &fd, &lv);
	add_region(L + lv);                                   /* sub-dir FD */
	add_region(0x100000);                                 /* LVM header + volume table */
	add_region(L + 0x200000);                             /* FS descriptor */
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		struct vmfs_cluster c;
		vmfs_res_read_cluster(fs, k, 0, &c, &lv);
		add_region(L + lv - 0x10000);                 /* resource header .. clusters */
		add_region(L + lv);
	}
	vmfs_fs_close(fs);
	vmfs_volume_close(vol);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool built;
	struct overlay ov = { .size = DEV_SIZE };
	struct vmfs_bdev_info info = { .lbs = 512, .pbs = 512 };
	struct vmfs_volume_opts vo = { .log = quiet };
	struct vmfs_fs_opts fo = { .log = quiet };
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	struct vmfs_bdev *bd;
	uint32_t a;
	size_t i = 0;

	if (!built) {
		build_base();
		built = true;
	}
	if (size >= 1 && data[0] == 0xFF && size >= 5) {
		/* truncated image */
		uint32_t t = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16;
		ov.size = ((uint64_t)t * 4096) % DEV_SIZE;
		ov.size -= ov.size % 512;
		i = 4;
	}
	while (i + 4 <= size && ov.np < 64) {
		uint64_t r = regions[data[i] % (nregions ? nregions : 1)];
		uint32_t off = (uint32_t)data[i + 1] | (uint32_t)data[i + 2] << 8;
		uint32_t len = data[i + 3] % 32 + 1;
		i += 4;
		if (i + len > size)
			len = (uint32_t)(size - i);
		if (!len)
			break;
		ov.p[ov.np++] = (struct patch){ r + off * 2ull % 0x20000, len, data + i };
		i += len;
	}
	info.size = ov.size;
	strcpy(info.kind, "fuzz");
	if (vmfs_bdev_create(&ov_ops, &ov, &info, "fuzz", &bd))
		return 0;
	if (vmfs_volume_open_bdevs(&bd, 1, &vo, &vol))
		return 0;
	if (vmfs_fs_open(vol, &fo, &fs) == 0) {
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
		vmfs_fs_close(fs);
	}
	vmfs_volume_close(vol);
	for (size_t c = 0; c < DEV_SIZE / CHUNK + 1; c++)
		free(ov.cow[c]);
	return 0;
}
