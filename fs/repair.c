/*
 * Repair primitives for vmfsck (include/vmfs/fsck.h).  Each is one
 * transaction over the fs internals: whole metadata sectors, staged and
 * written in place at commit, like every other metadata change.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"
#include "vmfs/fsck.h"

static int check_rw(struct vmfs_fs *fs)
{
	return (fs->flags & VMFS_FS_RDONLY) ? -EROFS : 0;
}

int vmfs_fsck_res_file_lv(struct vmfs_fs *fs, int kind, uint64_t off, uint64_t len, uint64_t *lv)
{
	if (kind < 0 || kind >= VMFS_RES_COUNT || !lv)
		return -EINVAL;
	return res_file_lv(fs, &fs->res[kind], off, len, lv);
}

int vmfs_fsck_cluster_write(struct vmfs_fs *fs, int kind, uint32_t idx, uint32_t total,
			    const uint8_t free_bits[496], int fresh_lock)
{
	struct vmfs_txn t;
	struct vmfs_cluster c;
	struct vmfs_res *r;
	uint8_t m[512];
	uint64_t lv;
	int e;

	if ((e = check_rw(fs)))
		return e;
	if (kind < 0 || kind >= VMFS_RES_COUNT)
		return -EINVAL;
	r = &fs->res[kind];
	if (idx >= r->nclusters || total > r->h.ipe || (total + 7) / 8 > OD_CLUSTER_BITMAP_MAX)
		return -EINVAL;
	e = res_cluster_lv(fs, r, idx, &lv);
	if (e)
		return e;
	memset(&c, 0, sizeof(c));
	c.id = idx;
	c.total = total;
	memcpy(c.bitmap, free_bits, (total + 7) / 8);
	if (total % 8)
		c.bitmap[total / 8] &= (uint8_t)((1u << (total % 8)) - 1);
	for (uint32_t i = 0; i < total; i++)
		if ((c.bitmap[i / 8] >> (i % 8)) & 1) {
			if (!c.free)
				c.ffree = i;
			c.free++;
		}
	txn_init(&t, fs);
	if (fresh_lock) {
		uint8_t lk[OD_LOCK_SIZE];
		od_lock_fresh(lk, r->magic, lv);
		e = txn_write(&t, lv, lk, sizeof(lk));
		if (e)
			goto out;
	}
	e = txn_read(&t, lv + OD_LOCK_SIZE, m, sizeof(m));
	if (e)
		goto out;
	od_cluster_meta_encode(&c, m);
	e = txn_write(&t, lv + OD_LOCK_SIZE, m, sizeof(m));
out:
	return txn_finish(&t, e);
}

int vmfs_fsck_fd_set(struct vmfs_fs *fs, uint32_t addr, const struct vmfs_fsck_fd_fix *fix)
{
	struct vmfs_txn t;
	uint8_t sec[512];
	uint64_t lv;
	int e;

	if ((e = check_rw(fs)))
		return e;
	if (!fix)
		return -EINVAL;
	e = fd_lv(fs, addr, &lv);
	if (e)
		return e;
	txn_init(&t, fs);
	/* every counter lives in the first metadata sector (FD 0x200..0x3FF) */
	e = txn_read(&t, lv + OD_FD_META_OFF, sec, sizeof(sec));
	if (e)
		goto out;
	if (fix->mask & VMFS_FSCK_FD_NLINK)
		od_put32(sec + 0x08, fix->nlink);
	if (fix->mask & VMFS_FSCK_FD_BLKCOUNT)
		od_put64(sec + 0x24, fix->blk_count);
	if (fix->mask & VMFS_FSCK_FD_TBZ)
		od_put32(sec + 0x48, fix->tbz);
	if (fix->mask & VMFS_FSCK_FD_NUMPB)
		od_put32(sec + 0x5C, fix->num_pb);
	e = txn_write(&t, lv + OD_FD_META_OFF, sec, sizeof(sec));
out:
	return txn_finish(&t, e);
}

/* LV offset of pointer @slot (FD block array or PB item). */
static int ptr_lv(struct vmfs_fs *fs, uint32_t fd_addr, uint32_t pb, unsigned slot, uint64_t *lv)
{
	uint64_t index;
	int kind, e;

	if (!pb) {
		if (slot >= OD_FD_NBLOCKS)
			return -EINVAL;
		e = fd_lv(fs, fd_addr, lv);
		if (!e)
			*lv += OD_FD_DATA_OFF + 4ull * slot;
		return e;
	}
	if (slot >= 1024 || vmfs_addr_type(pb) != VMFS_ADDR_PB)
		return -EINVAL;
	e = addr_to_index(fs, pb, &kind, &index);
	if (!e)
		e = res_item_lv(fs, &fs->res[VMFS_RES_PBC], index, lv);
	if (!e)
		*lv += 4ull * slot;
	return e;
}

int vmfs_fsck_ptr_set(struct vmfs_fs *fs, uint32_t fd_addr, uint32_t pb, unsigned slot, uint32_t value)
{
	struct vmfs_txn t;
	uint8_t b[4];
	uint64_t lv;
	int e;

	if ((e = check_rw(fs)))
		return e;
	e = ptr_lv(fs, fd_addr, pb, slot, &lv);
	if (e)
		return e;
	od_put32(b, value);
	txn_init(&t, fs);
	e = txn_write(&t, lv, b, sizeof(b));
	return txn_finish(&t, e);
}

int vmfs_fsck_clone_block(struct vmfs_fs *fs, uint32_t fd_addr, uint32_t pb, unsigned slot,
			  uint32_t old, uint32_t *new_addr)
{
	struct vmfs_txn t;
	uint64_t index, src, dst, len, plv;
	uint8_t *buf = NULL, b[4];
	uint32_t na;
	int kind, e;

	if ((e = check_rw(fs)))
		return e;
	e = ptr_lv(fs, fd_addr, pb, slot, &plv);
	if (e)
		return e;
	e = addr_to_index(fs, old, &kind, &index);
	if (e)
		return e;
	if (kind != VMFS_RES_FBB && kind != VMFS_RES_SBC)
		return -EINVAL;
	len = kind == VMFS_RES_FBB ? fs->bs : fs->res[VMFS_RES_SBC].h.data_size;
	if (kind == VMFS_RES_FBB)
		src = index * fs->bs;
	else if ((e = res_item_lv(fs, &fs->res[VMFS_RES_SBC], index, &src)))
		return e;
	txn_init(&t, fs);
	e = res_alloc(&t, kind, 0, &index);
	if (e)
		goto out;
	if (kind == VMFS_RES_FBB) {
		bool tbz = vmfs_fb_tbz(old);
		na = vmfs_fb_make((uint32_t)index, tbz);
		dst = index * fs->bs;
		if (tbz)
			goto link; /* reads as zeros: nothing to copy */
	} else {
		na = index_to_addr(fs, kind, index);
		e = res_item_lv(fs, &fs->res[kind], index, &dst);
		if (e)
			goto out;
	}
	buf = malloc(len);
	if (!buf) {
		e = -ENOMEM;
		goto out;
	}
	e = vmfs_bdev_read(fs->bd, buf, len, src);
	if (!e)
		e = vmfs_bdev_write(fs->bd, buf, len, dst);
	if (e)
		goto out;
link:
	od_put32(b, na);
	e = txn_write(&t, plv, b, sizeof(b));
	if (!e && new_addr)
		*new_addr = na;
out:
	free(buf);
	return txn_finish(&t, e);
}

static int get_dir(struct vmfs_txn *t, uint32_t dir, struct vmfs_inode **d)
{
	int e = iget(t, dir, true, d);

	if (!e && (*d)->fd.type != VMFS_TYPE_DIR)
		e = -ENOTDIR;
	if (!e && (*d)->fd.size % OD_DIRENT_SIZE)
		e = -EUCLEAN;
	return e;
}

/* Write one raw directory entry: slot @idx, or appended when @idx < 0. */
static int dirent_put(struct vmfs_fs *fs, uint32_t dir, int64_t idx, const struct vmfs_dirent *de)
{
	struct vmfs_txn t;
	struct vmfs_inode *d;
	uint8_t b[OD_DIRENT_SIZE];
	int64_t w;
	int e;

	if ((e = check_rw(fs)))
		return e;
	txn_init(&t, fs);
	e = get_dir(&t, dir, &d);
	if (!e && idx >= 0 && (uint64_t)idx >= d->fd.size / OD_DIRENT_SIZE)
		e = -EINVAL;
	if (e)
		goto out;
	od_dirent_encode(de, b);
	w = ino_write(&t, d, b, sizeof(b), idx < 0 ? d->fd.size : (uint64_t)idx * OD_DIRENT_SIZE);
	e = w < 0 ? (int)w : 0;
out:
	return txn_finish(&t, e);
}

int vmfs_fsck_dir_add(struct vmfs_fs *fs, uint32_t dir, const struct vmfs_dirent *de)
{
	return dirent_put(fs, dir, -1, de);
}

int vmfs_fsck_dirent_set(struct vmfs_fs *fs, uint32_t dir, uint32_t idx, const struct vmfs_dirent *de)
{
	return dirent_put(fs, dir, idx, de);
}

int vmfs_fsck_dirent_remove(struct vmfs_fs *fs, uint32_t dir, uint32_t idx)
{
	struct vmfs_txn t;
	struct vmfs_inode *d;
	uint8_t b[OD_DIRENT_SIZE];
	uint64_t n;
	int64_t w;
	int e;

	if ((e = check_rw(fs)))
		return e;
	txn_init(&t, fs);
	e = get_dir(&t, dir, &d);
	if (e)
		goto out;
	n = d->fd.size / OD_DIRENT_SIZE;
	if ((uint64_t)idx >= n) {
		e = -EINVAL;
		goto out;
	}
	if (idx != n - 1) {
		w = ino_read(fs, &t, d, b, sizeof(b), (n - 1) * OD_DIRENT_SIZE);
		if (w == (int64_t)sizeof(b))
			w = ino_write(&t, d, b, sizeof(b), (uint64_t)idx * OD_DIRENT_SIZE);
		else if (w >= 0)
			w = -EIO;
		if (w < 0) {
			e = (int)w;
			goto out;
		}
	}
	e = ino_truncate(&t, d, (n - 1) * OD_DIRENT_SIZE);
out:
	return txn_finish(&t, e);
}

int vmfs_fsck_fd_release(struct vmfs_fs *fs, uint32_t addr)
{
	struct vmfs_txn t;
	struct vmfs_inode *ino;
	int e;

	if ((e = check_rw(fs)))
		return e;
	txn_init(&t, fs);
	e = iget(&t, addr, true, &ino);
	if (!e)
		e = ino_release(&t, ino);
	return txn_finish(&t, e);
}

int vmfs_fsck_write_sector(struct vmfs_fs *fs, uint64_t off, const uint8_t data[512])
{
	struct vmfs_txn t;
	int e;

	if ((e = check_rw(fs)))
		return e;
	if (off % 512)
		return -EINVAL;
	txn_init(&t, fs);
	e = txn_write(&t, off, data, 512);
	return txn_finish(&t, e);
}
