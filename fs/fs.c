/* Filesystem open/close, attributes, data entry points and the read API. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs_internal.h"

void fs_log(struct vmfs_fs *fs, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fs->last_error, sizeof(fs->last_error), fmt, ap);
	va_end(ap);
	if (fs->log)
		fs->log(fs->log_ctx, level, fs->last_error);
	else if (level == VMFS_LOG_ERR)
		fprintf(stderr, "vmfs: %s\n", fs->last_error);
}

const char *vmfs_fs_last_error(const struct vmfs_fs *fs)
{
	return fs->last_error;
}

int vmfs_fs_open(struct vmfs_volume *vol, const struct vmfs_fs_opts *o, struct vmfs_fs **out)
{
	struct vmfs_fs_opts def = { 0 };
	const struct vmfs_volume_info *vi;
	struct vmfs_fs *fs;
	uint8_t b[512];
	int e;

	if (!vol || !out)
		return -EINVAL;
	if (!o)
		o = &def;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->vol = vol;
	fs->bd = vmfs_volume_bdev(vol);
	pthread_mutex_init(&fs->txn_lock, NULL);
	fs->flags = o->flags;
	fs->log = o->log;
	fs->log_ctx = o->log_ctx;
	if (o->hooks) {
		fs->hooks = *o->hooks;
		fs->have_hooks = true;
	}
	if (vmfs_bdev_get_info(fs->bd)->rdonly)
		fs->flags |= VMFS_FS_RDONLY;
	vi = vmfs_volume_get_info(vol);
	if (vi->lv_size < OD_HB_END + 512) {
		fs_err(fs, "logical volume too small (%llu bytes)", (unsigned long long)vi->lv_size);
		e = -EUCLEAN;
		goto fail;
	}
	e = vmfs_bdev_read(fs->bd, b, 512, OD_FSDESC_OFF);
	if (e) {
		fs_err(fs, "cannot read the FS descriptor: %s", strerror(-e));
		goto fail;
	}
	od_fsdesc_decode(b, &fs->desc);
	if (fs->desc.magic != OD_FS_MAGIC) {
		fs_err(fs, "no VMFS filesystem (FS descriptor magic 0x%08x%s)", fs->desc.magic,
		       fs->desc.magic == 0x2FABF15Fu ? ": VMFS-L is not supported" : "");
		e = -EUCLEAN;
		goto fail;
	}
	if (fs->desc.block_size < (64u << 10) || fs->desc.block_size > (256u << 20) ||
	    (fs->desc.block_size & (fs->desc.block_size - 1))) {
		fs_err(fs, "unsupported file block size %llu", (unsigned long long)fs->desc.block_size);
		e = -EUCLEAN;
		goto fail;
	}
	if (memcmp(fs->desc.lvm_uuid, vi->lvm_uuid, 16)) {
		fs_err(fs, "the filesystem does not belong to this LVM (UUID mismatch)");
		e = -EUCLEAN;
		goto fail;
	}
	fs->bs = fs->desc.block_size;
	fs->total_blocks = vi->lv_size / fs->bs;
	if (!(fs->flags & VMFS_FS_RDONLY)) {  /* only writers zero blocks */
		fs->zero_block = calloc(1, fs->bs);
		if (!fs->zero_block) {
			e = -ENOMEM;
			goto fail;
		}
	}
	for (int k = 0; k < VMFS_RES_COUNT; k++)
		fs->res[k].hint = o->preferred_cluster[k];
	e = res_open_all(fs);
	if (e)
		goto fail;
	for (int k = 0; k < VMFS_RES_COUNT; k++)
		if (fs->res[k].hint >= fs->res[k].nclusters)
			fs->res[k].hint = 0;
	fs->info.lvm_major = vi->lvm_major;
	fs->info.fs_major = fs->desc.major;
	fs->info.fs_minor = fs->desc.minor;
	memcpy(fs->info.uuid, fs->desc.uuid, 16);
	od_uuid_format(fs->desc.uuid, fs->info.uuid_str);
	memcpy(fs->info.lvm_uuid_str, vi->lvm_uuid_str, sizeof(fs->info.lvm_uuid_str));
	memcpy(fs->info.label, fs->desc.label, sizeof(fs->info.label));
	fs->info.config = fs->desc.config;
	fs->info.ctime = fs->desc.ctime;
	fs->info.block_size = fs->bs;
	fs->info.subblock_size = fs->res[VMFS_RES_SBC].h.data_size;
	fs->info.lv_size = vi->lv_size;
	fs->info.num_extents = vi->num_extents;
	*out = fs;
	return 0;
fail:
	res_close_all(fs);
	pthread_mutex_destroy(&fs->txn_lock);
	free(fs->zero_block);
	free(fs);
	return e;
}

int vmfs_fs_open_paths(const char *const *paths, int n, const struct vmfs_fs_opts *o,
		       struct vmfs_fs **out)
{
	struct vmfs_volume_opts vo = { 0 };
	struct vmfs_volume *vol;
	int e;

	if (o) {
		vo.log = o->log;
		vo.log_ctx = o->log_ctx;
		if (o->flags & VMFS_FS_RDONLY)
			vo.bdev_flags = VMFS_BDEV_RDONLY;
	}
	e = vmfs_volume_open(paths, n, &vo, &vol);
	if (e)
		return e;
	e = vmfs_fs_open(vol, o, out);
	if (e) {
		vmfs_volume_close(vol);
		return e;
	}
	(*out)->own_vol = true;
	return 0;
}

int vmfs_fs_sync(struct vmfs_fs *fs)
{
	return vmfs_bdev_flush(fs->bd);
}

void vmfs_fs_close(struct vmfs_fs *fs)
{
	if (!fs)
		return;
	if (!(fs->flags & VMFS_FS_RDONLY))
		vmfs_bdev_flush(fs->bd);
	res_close_all(fs);
	if (fs->own_vol)
		vmfs_volume_close(fs->vol);
	pthread_mutex_destroy(&fs->txn_lock);
	free(fs->zero_block);
	free(fs);
}

const struct vmfs_fs_info *vmfs_fs_get_info(const struct vmfs_fs *fs)
{
	return &fs->info;
}

struct vmfs_bdev *vmfs_fs_bdev(struct vmfs_fs *fs)
{
	return fs->bd;
}

struct vmfs_volume *vmfs_fs_volume(struct vmfs_fs *fs)
{
	return fs->vol;
}

/* Sum the free counts of a resource, reading a group of headers at a time. */
static int res_free_count(struct vmfs_fs *fs, int kind, uint64_t *total, uint64_t *freec)
{
	struct vmfs_res *r = &fs->res[kind];
	size_t glen = (size_t)r->h.epa * OD_CLUSTER_HDR_SIZE;
	uint8_t *buf = malloc(glen);
	int e = 0;

	if (!buf)
		return -ENOMEM;
	*total = r->h.total_items;
	*freec = 0;
	for (uint32_t g = 0; g < r->h.area_count && !e; g++) {
		uint64_t lv;
		uint64_t foff = r->h.hdr_size + (uint64_t)g * r->h.area_size;
		bool bulk = foff / fs->bs == (foff + glen - 1) / fs->bs &&
			    foff + glen <= r->file_size && res_file_lv(fs, r, foff, glen, &lv) == 0 &&
			    vmfs_bdev_read(fs->bd, buf, glen, lv) == 0;
		for (uint32_t c = 0; c < r->h.epa; c++) {
			struct vmfs_cluster cl;
			uint8_t one[OD_CLUSTER_HDR_SIZE];
			const uint8_t *src = buf + (size_t)c * OD_CLUSTER_HDR_SIZE;
			uint32_t cid = g * r->h.epa + c;
			if (!bulk) {
				if (res_cluster_lv(fs, r, cid, &lv) || vmfs_bdev_read(fs->bd, one, sizeof(one), lv))
					break;
				src = one;
			}
			od_cluster_decode(src, &cl);
			if (cl.lock_magic != r->magic)
				continue;
			if (cl.free > cl.total || cl.total > r->h.ipe) {
				e = -EUCLEAN;
				break;
			}
			*freec += cl.free;
		}
	}
	free(buf);
	return e;
}

int vmfs_fs_statfs(struct vmfs_fs *fs, struct vmfs_statfs *st)
{
	int e;

	memset(st, 0, sizeof(*st));
	st->block_size = fs->bs;
	if ((e = res_free_count(fs, VMFS_RES_FBB, &st->total_blocks, &st->free_blocks)) ||
	    (e = res_free_count(fs, VMFS_RES_FDC, &st->total_fds, &st->free_fds)) ||
	    (e = res_free_count(fs, VMFS_RES_SBC, &st->total_sbs, &st->free_sbs)) ||
	    (e = res_free_count(fs, VMFS_RES_PBC, &st->total_pbs, &st->free_pbs)))
		return e;
	return 0;
}

/* ---- attributes ---------------------------------------------------------------------- */

int vmfs_stat(struct vmfs_fs *fs, uint32_t addr, struct vmfs_stat *st)
{
	struct vmfs_inode ino;
	int e = iread(fs, addr, &ino);

	if (e)
		return e;
	if (ino.fd.nlink == 0)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->addr = addr;
	st->gen = ino.fd.gen;
	st->type = ino.fd.type;
	st->nlink = ino.fd.nlink;
	st->uid = ino.fd.uid;
	st->gid = ino.fd.gid;
	st->zla = ino.fd.zla;
	st->mode = ino.fd.mode & 07777;
	st->mode |= ino.fd.type == VMFS_TYPE_DIR ? S_IFDIR : ino.fd.type == VMFS_TYPE_SYMLINK ? S_IFLNK : S_IFREG;
	st->size = ino.fd.size;
	st->blk_size = ino.fd.blk_size;
	st->blk_count = ino.fd.blk_count;
	st->blocks512 = ino.fd.zla == OD_ZLA_RESIDENT ? 0 : ino.fd.blk_count * ino.fd.blk_size / 512;
	st->atime = ino.fd.atime;
	st->mtime = ino.fd.mtime;
	st->ctime = ino.fd.ctime;
	st->tbz = ino.fd.tbz;
	return 0;
}

int vmfs_setattr(struct vmfs_fs *fs, uint32_t addr, unsigned mask, uint32_t mode, uint32_t uid,
		 uint32_t gid, uint32_t atime, uint32_t mtime)
{
	struct vmfs_txn t;
	struct vmfs_inode *ino;
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	txn_init(&t, fs);
	e = iget(&t, addr, true, &ino);
	if (!e && ino->fd.nlink == 0)
		e = -ENOENT;
	if (e)
		return txn_finish(&t, e);
	if (mask & VMFS_SET_MODE)
		ino->fd.mode = (ino->fd.mode & ~07777u) | (mode & 07777);
	if (mask & VMFS_SET_UID)
		ino->fd.uid = uid;
	if (mask & VMFS_SET_GID)
		ino->fd.gid = gid;
	if (mask & VMFS_SET_ATIME)
		ino->fd.atime = atime;
	if (mask & VMFS_SET_MTIME)
		ino->fd.mtime = mtime;
	ino->fd.ctime = fs_now();
	idirty(ino);
	return txn_finish(&t, 0);
}

/* ---- data ------------------------------------------------------------------------------ */

static int live_file(struct vmfs_inode *ino, bool write)
{
	if (ino->fd.nlink == 0)
		return -ENOENT;
	if (ino->fd.type == VMFS_TYPE_DIR)
		return -EISDIR;
	if (write && ino->fd.type != VMFS_TYPE_FILE)
		return -EPERM;
	return 0;
}

int64_t vmfs_pread(struct vmfs_fs *fs, uint32_t addr, void *buf, size_t len, uint64_t off)
{
	struct vmfs_inode ino;
	int e = iread(fs, addr, &ino);

	if (!e)
		e = live_file(&ino, false);
	if (e)
		return e;
	return ino_read(fs, NULL, &ino, buf, len, off);
}

int64_t vmfs_pwrite(struct vmfs_fs *fs, uint32_t addr, const void *buf, size_t len, uint64_t off)
{
	struct vmfs_txn t;
	struct vmfs_inode *ino;
	int64_t w = 0;
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	if (len > INT64_MAX)
		return -EINVAL;
	txn_init(&t, fs);
	e = iget(&t, addr, true, &ino);
	if (!e)
		e = live_file(ino, true);
	if (!e) {
		w = ino_write(&t, ino, buf, len, off);
		if (w < 0)
			e = (int)w;
	}
	e = txn_finish(&t, e);
	return e ? e : w;
}

/* Start a transaction on the live regular file @addr, its FD locked for
 * writing.  On failure the transaction is already finished. */
static int file_txn(struct vmfs_fs *fs, struct vmfs_txn *t, uint32_t addr,
		    struct vmfs_inode **ino)
{
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	txn_init(t, fs);
	e = iget(t, addr, true, ino);
	if (!e)
		e = live_file(*ino, true);
	return e ? txn_finish(t, e) : 0;
}

int vmfs_truncate(struct vmfs_fs *fs, uint32_t addr, uint64_t size)
{
	struct vmfs_txn t;
	struct vmfs_inode *ino;
	int e = file_txn(fs, &t, addr, &ino);

	return e ? e : txn_finish(&t, ino_truncate(&t, ino, size));
}

int vmfs_punch(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len)
{
	struct vmfs_txn t;
	struct vmfs_inode *ino;
	int e = file_txn(fs, &t, addr, &ino);

	return e ? e : txn_finish(&t, ino_punch(&t, ino, off, len));
}

int64_t vmfs_pwritev(struct vmfs_fs *fs, uint32_t addr, const struct vmfs_seg *s, size_t n)
{
	struct vmfs_txn t;
	struct vmfs_inode *ino;
	int64_t sum = 0;
	int e = file_txn(fs, &t, addr, &ino);

	if (e)
		return e;
	for (size_t i = 0; i < n && !e; i++) {
		int64_t w = s[i].len > (uint64_t)(INT64_MAX - sum) ? -EINVAL
				: ino_write(&t, ino, s[i].buf, s[i].len, s[i].off);
		if (w < 0)
			e = (int)w;
		else
			sum += w;
	}
	e = txn_finish(&t, e);
	return e ? e : sum;
}

int vmfs_punchv(struct vmfs_fs *fs, uint32_t addr, const struct vmfs_seg *s, size_t n)
{
	struct vmfs_txn t;
	struct vmfs_inode *ino;
	int e = file_txn(fs, &t, addr, &ino);

	if (e)
		return e;
	for (size_t i = 0; i < n && !e; i++)
		e = ino_punch(&t, ino, s[i].off, s[i].len);
	return txn_finish(&t, e);
}

int vmfs_fallocate(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len, unsigned flags)
{
	struct vmfs_txn t;
	struct vmfs_inode *ino;
	int e = file_txn(fs, &t, addr, &ino);

	return e ? e : txn_finish(&t, ino_fallocate(&t, ino, off, len, flags));
}

int vmfs_map(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t max_len,
	     struct vmfs_extent *ext)
{
	struct vmfs_inode ino;
	int e = iread(fs, addr, &ino);

	if (!e)
		e = live_file(&ino, false);
	if (e)
		return e;
	return ino_map(fs, &ino, off, max_len, ext);
}

int vmfs_map_write(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len,
		   struct vmfs_extent *ext)
{
	struct vmfs_txn t;
	struct vmfs_inode *ino, cur;
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	txn_init(&t, fs);
	e = iget(&t, addr, true, &ino);
	if (!e)
		e = live_file(ino, true);
	if (!e)
		e = ino_prepare_write(&t, ino, off, len);
	e = txn_finish(&t, e);
	if (!e)
		e = iread(fs, addr, &cur);
	if (!e)
		e = ino_map(fs, &cur, off, len + off % fs->bs, ext);
	return e;
}

int vmfs_fh_open_addr(struct vmfs_fs *fs, uint32_t addr, struct vmfs_fh *f)
{
	struct vmfs_inode ino;
	int e = iread(fs, addr, &ino);

	if (e)
		return e;
	if (ino.fd.nlink == 0)
		return -ENOENT;
	f->fs = fs;
	f->addr = addr;
	return 0;
}

int vmfs_fh_open(struct vmfs_fs *fs, const char *path, struct vmfs_fh *f)
{
	uint32_t addr;
	int e = vmfs_resolve(fs, path, &addr);

	return e ? e : vmfs_fh_open_addr(fs, addr, f);
}

/* ---- read API ------------------------------------------------------------------------- */

int vmfs_fd_read(struct vmfs_fs *fs, uint32_t addr, struct vmfs_fd *fd, uint64_t *lv_off)
{
	struct vmfs_inode ino;
	int e = iread(fs, addr, &ino);

	if (e)
		return e;
	*fd = ino.fd;
	if (lv_off)
		*lv_off = ino.lv_off;
	return 0;
}

int vmfs_fd_read_raw(struct vmfs_fs *fs, uint64_t index, struct vmfs_fd *fd, uint64_t *lv_off)
{
	uint8_t raw[OD_FD_SIZE];
	uint64_t lv;
	int e = res_item_lv(fs, &fs->res[VMFS_RES_FDC], index, &lv);

	if (e)
		return e;
	e = vmfs_bdev_read(fs->bd, raw, sizeof(raw), lv);
	if (e)
		return e;
	od_fd_decode(raw, fd);
	if (lv_off)
		*lv_off = lv;
	return 0;
}

int vmfs_pb_read(struct vmfs_fs *fs, uint32_t pb_addr, uint32_t ptrs[1024])
{
	uint8_t buf[4096];
	uint64_t index, lv;
	int kind, e;

	if (vmfs_addr_type(pb_addr) != VMFS_ADDR_PB)
		return -EINVAL;
	e = addr_to_index(fs, pb_addr, &kind, &index);
	if (!e)
		e = res_item_lv(fs, &fs->res[VMFS_RES_PBC], index, &lv);
	if (!e)
		e = vmfs_bdev_read(fs->bd, buf, sizeof(buf), lv);
	if (e)
		return e;
	for (int i = 0; i < 1024; i++)
		ptrs[i] = od_get32(buf + 4 * i);
	return 0;
}
