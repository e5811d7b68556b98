/* The fuzz harnesses' in-memory VMFS5 image and patch overlay: see fs_image.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fs_image.h"

#define DEV_SIZE (17 * FZ_MiB + 256 * FZ_MiB)
#define CHUNK (64u << 10)
#define NCHUNKS (DEV_SIZE / CHUNK + 1)
#define MAX_PATCHES 64

static uint8_t *base[NCHUNKS];
static uint64_t regions[16];
static int nregions;

struct patch {
	uint64_t off;
	uint32_t len;
	const uint8_t *data;
};
struct fz_image {
	uint64_t size;
	struct patch p[MAX_PATCHES];
	int np;
	uint8_t **cow;            /* chunks written during this run (writable only) */
};

static const uint8_t *chunk_of(const struct fz_image *o, uint64_t c)
{
	return o->cow && o->cow[c] ? o->cow[c] : base[c];
}

static int ov_readv(void *priv, const struct iovec *iov, int cnt, uint64_t off)
{
	struct fz_image *o = priv;

	for (int i = 0; i < cnt; i++) {
		uint8_t *dst = iov[i].iov_base;
		uint64_t len = iov[i].iov_len, start = off;
		while (len) {
			uint64_t c = off / CHUNK, in = off % CHUNK;
			uint64_t n = CHUNK - in < len ? CHUNK - in : len;
			const uint8_t *src = chunk_of(o, c);
			if (src)
				memcpy(dst, src + in, n);
			else
				memset(dst, 0, n);
			dst += n;
			off += n;
			len -= n;
		}
		/* patches show through wherever this run has not written */
		for (int k = 0; k < o->np; k++) {
			const struct patch *p = &o->p[k];
			uint64_t a = p->off > start ? p->off : start;
			uint64_t b = p->off + p->len < off ? p->off + p->len : off;
			for (uint64_t x = a; x < b; x++)
				if (!o->cow || !o->cow[x / CHUNK])
					((uint8_t *)iov[i].iov_base)[x - start] = p->data[x - p->off];
		}
	}
	return 0;
}

/* Writes land in a chunk table: the base image's while it is built, the
 * run's copy-on-write table afterwards. */
static int chunk_writev(struct fz_image *o, uint8_t **tab, const struct iovec *iov, int cnt,
			uint64_t off)
{
	for (int i = 0; i < cnt; i++) {
		const uint8_t *src = iov[i].iov_base;
		uint64_t len = iov[i].iov_len;
		while (len) {
			uint64_t c = off / CHUNK, in = off % CHUNK;
			uint64_t n = CHUNK - in < len ? CHUNK - in : len;
			if (!tab[c]) {
				uint8_t *nc = malloc(CHUNK);
				struct iovec v = { nc, CHUNK };
				if (!nc)
					return -ENOMEM;
				ov_readv(o, &v, 1, c * CHUNK);  /* base + patches */
				tab[c] = nc;
			}
			memcpy(tab[c] + in, src, n);
			src += n;
			off += n;
			len -= n;
		}
	}
	return 0;
}

static int cow_writev(void *priv, const struct iovec *iov, int cnt, uint64_t off)
{
	struct fz_image *o = priv;

	return o->cow ? chunk_writev(o, o->cow, iov, cnt, off) : -EROFS;
}

static int base_writev(void *priv, const struct iovec *iov, int cnt, uint64_t off)
{
	return chunk_writev(priv, base, iov, cnt, off);
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
	static struct fz_image none = { .size = DEV_SIZE };
	struct vmfs_bdev_info info = { .size = DEV_SIZE, .lbs = 512, .pbs = 512 };
	struct vmfs_mkfs_opts mo = { .label = "fuzz", .log = quiet, .fresh = true, .now = 1 };
	struct vmfs_volume_opts vo = { .log = quiet };
	struct vmfs_fs_opts fo = { .log = quiet };
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	struct vmfs_bdev *bd;
	struct vmfs_fd fd;
	uint8_t *buf = malloc(3 * FZ_MiB);
	uint32_t d, a;
	uint64_t lv;
	const uint64_t L = 0x1100000; /* device offset of LV 0 */

	memset(buf, 0x5A, 3 * FZ_MiB);
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
	vmfs_pwrite(fs, a, buf, 3 * FZ_MiB, 0);
	vmfs_create(fs, VMFS_ROOT_ADDR, "pb", 0644, 0, 0, &a);
	vmfs_pwrite(fs, a, buf, 100, 300 * FZ_MiB);
	vmfs_fd_read(fs, a, &fd, &lv);
	add_region(L + lv);                                   /* a PB file's FD */
	vmfs_fallocate(fs, a, 0, 2 * FZ_MiB, VMFS_ALLOC_TBZ);
	vmfs_fd_read(fs, VMFS_ROOT_ADDR, &fd, &lv);
	add_region(L + lv);                                   /* root FD */
	add_region(L + (uint64_t)vmfs_fb_block(fd.blocks[0]) * FZ_MiB); /* root dir block */
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

static void parse(struct fz_image *o, const uint8_t *data, size_t size)
{
	size_t i = 0;

	o->size = DEV_SIZE;
	if (size >= 5 && data[0] == 0xFF) {
		/* truncated image */
		uint32_t t = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16;
		o->size = ((uint64_t)t * 4096) % DEV_SIZE;
		o->size -= o->size % 512;
		i = 4;
	}
	while (i + 4 <= size && o->np < MAX_PATCHES) {
		uint64_t r = regions[data[i] % (nregions ? nregions : 1)];
		uint32_t off = (uint32_t)data[i + 1] | (uint32_t)data[i + 2] << 8;
		uint32_t len = data[i + 3] % 32 + 1;
		i += 4;
		if (i + len > size)
			len = (uint32_t)(size - i);
		if (!len)
			break;
		o->p[o->np++] = (struct patch){ r + off * 2ull % 0x20000, len, data + i };
		i += len;
	}
}

int fz_open(const uint8_t *data, size_t size, int writable, struct fz_image **img,
	    struct vmfs_volume **vol, struct vmfs_fs **fs)
{
	static bool built;
	struct vmfs_bdev_info info = { .lbs = 512, .pbs = 512, .rdonly = !writable };
	struct vmfs_volume_opts vo = { .log = quiet, .bdev_flags = writable ? 0 : VMFS_BDEV_RDONLY };
	struct vmfs_fs_opts fo = { .log = quiet, .flags = writable ? 0 : VMFS_FS_RDONLY };
	struct vmfs_bdev *bd;
	struct fz_image *o;

	if (!built) {
		build_base();
		built = true;
	}
	*vol = NULL;
	*fs = NULL;
	*img = o = calloc(1, sizeof(*o));
	if (!o || (writable && !(o->cow = calloc(NCHUNKS, sizeof(*o->cow))))) {
		fz_close(o, NULL, NULL);
		return -1;
	}
	parse(o, data, size);
	info.size = o->size;
	strcpy(info.kind, "fuzz");
	if (vmfs_bdev_create(&ov_ops, o, &info, "fuzz", &bd) ||
	    vmfs_volume_open_bdevs(&bd, 1, &vo, vol)) {
		fz_close(o, NULL, NULL);
		return -1;
	}
	if (vmfs_fs_open(*vol, &fo, fs))
		*fs = NULL;
	return 0;
}

void fz_close(struct fz_image *o, struct vmfs_volume *vol, struct vmfs_fs *fs)
{
	if (fs)
		vmfs_fs_close(fs);
	if (vol)
		vmfs_volume_close(vol);
	if (o && o->cow)
		for (size_t c = 0; c < NCHUNKS; c++)
			free(o->cow[c]);
	if (o)
		free(o->cow);
	free(o);
}
