/*
 * File descriptors: loading and validation, the block map for every
 * addressing mode (FORMAT.md §7.1), data read/write, truncate, preallocation,
 * and the conversions between modes as a file grows and shrinks:
 *
 *   resident (ZLA 4305, <= 1 KiB, regular files only)
 *     -> sub-block (ZLA 2, one 8 KiB SB; directories and symlinks start here)
 *     -> direct file blocks (ZLA 1, 256 x 1 MiB)
 *     -> single indirect (ZLA 3, 256 PBs x 1024 FBs = 256 GiB)
 *     -> double indirect (ZLA 4304, 256 PBs -> 1024 PBs -> 1024 FBs; capped at
 *        62 TiB).  Both pointer levels are items of .pbc.sf (documented in
 *        docs/format.md; .pb2.sf stays an empty system file).
 * Shrinking walks back down (double -> single -> direct -> resident).
 *
 * Pointer blocks and directory contents are metadata: they go through the
 * transaction.  File data is written directly; a freshly allocated block is
 * always fully written (the caller's bytes plus zeros), so stale disk content
 * never becomes visible.  TBZ blocks read as zeros and are zero-filled on
 * their first write.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_internal.h"

#define PTRS_PER_PB 1024u

uint32_t fs_now(void)
{
	return (uint32_t)time(NULL);
}

static uint64_t sb_size(const struct vmfs_fs *fs)
{
	return fs->res[VMFS_RES_SBC].h.data_size;
}

static uint8_t log2u(uint64_t v)
{
	uint8_t s = 0;
	while (v > 1) {
		v >>= 1;
		s++;
	}
	return s;
}

int fd_lv(struct vmfs_fs *fs, uint32_t addr, uint64_t *lv)
{
	uint64_t index;
	int kind, e;

	if (vmfs_addr_type(addr) != VMFS_ADDR_FD)
		return -EUCLEAN;
	e = addr_to_index(fs, addr, &kind, &index);
	if (e)
		return e;
	return res_item_lv(fs, &fs->res[VMFS_RES_FDC], index, lv);
}

/* Blocks addressable in each mode. */
static uint64_t mode_cap_blocks(uint32_t zla)
{
	switch (zla) {
	case OD_ZLA_FB:
	case OD_ZLA_SB: return OD_FD_NBLOCKS;
	case OD_ZLA_PB: return (uint64_t)OD_FD_NBLOCKS * PTRS_PER_PB;
	case OD_ZLA_DBL: return (uint64_t)OD_FD_NBLOCKS * PTRS_PER_PB * PTRS_PER_PB;
	default: return 0;
	}
}

int ino_validate(struct vmfs_fs *fs, struct vmfs_inode *ino)
{
	struct vmfs_fd *fd = &ino->fd;

	if (fd->lock_magic != OD_MAGIC_FD) {
		fs_err(fs, "FD 0x%08x: bad magic 0x%08x", ino->addr, fd->lock_magic);
		return -EUCLEAN;
	}
	if (fd->id != ino->addr) {
		fs_err(fs, "FD 0x%08x: stored id 0x%08x differs from its address", ino->addr, fd->id);
		return -EUCLEAN;
	}
	if (fd->lock_pos != ino->lv_off) {
		fs_err(fs, "FD 0x%08x: lock record pos 0x%llx is not its LV offset 0x%llx", ino->addr,
		       (unsigned long long)fd->lock_pos, (unsigned long long)ino->lv_off);
		return -EUCLEAN;
	}
	if (fd->type < VMFS_TYPE_VOLUME || fd->type > VMFS_TYPE_RDM) {
		fs_err(fs, "FD 0x%08x: bad type %u", ino->addr, fd->type);
		return -EUCLEAN;
	}
	switch (fd->zla) {
	case OD_ZLA_RESIDENT:
		if (fd->size > OD_FD_RESIDENT_MAX) {
			fs_err(fs, "FD 0x%08x: resident file of %llu bytes", ino->addr,
			       (unsigned long long)fd->size);
			return -EUCLEAN;
		}
		return 0;
	case OD_ZLA_SB:
		if (fd->blk_size != sb_size(fs))
			goto bad_bs;
		break;
	case OD_ZLA_FB:
	case OD_ZLA_PB:
	case OD_ZLA_DBL:
		if (fd->blk_size != fs->bs)
			goto bad_bs;
		break;
	case OD_ZLA_PB2:
		return 0; /* readable metadata; data access fails with EOPNOTSUPP */
	default:
		if (fd->type == VMFS_TYPE_RDM)
			return 0;
		fs_err(fs, "FD 0x%08x: unknown addressing mode %u", ino->addr, fd->zla);
		return -EUCLEAN;
	}
	if (fd->size > VMFS_MAX_FILE_SIZE * 4 ||
	    (fd->size + fd->blk_size - 1) / fd->blk_size > mode_cap_blocks(fd->zla)) {
		fs_err(fs, "FD 0x%08x: size %llu too large for addressing mode %u", ino->addr,
		       (unsigned long long)fd->size, fd->zla);
		return -EUCLEAN;
	}
	return 0;
bad_bs:
	fs_err(fs, "FD 0x%08x: block size %llu does not match addressing mode %u", ino->addr,
	       (unsigned long long)fd->blk_size, fd->zla);
	return -EUCLEAN;
}

static int ino_load(struct vmfs_fs *fs, struct vmfs_txn *t, uint32_t addr, struct vmfs_inode *ino)
{
	int e;

	memset(ino, 0, sizeof(*ino));
	ino->addr = addr;
	e = fd_lv(fs, addr, &ino->lv_off);
	if (e) {
		fs_err(fs, "FD address 0x%08x is invalid", addr);
		return e;
	}
	e = t ? txn_read(t, ino->lv_off, ino->raw, OD_FD_SIZE)
	      : vmfs_bdev_read(fs->bd, ino->raw, OD_FD_SIZE, ino->lv_off);
	if (e)
		return e;
	od_fd_decode(ino->raw, &ino->fd);
	ino->loaded = t != NULL;
	return 0;
}

int iread(struct vmfs_fs *fs, uint32_t addr, struct vmfs_inode *ino)
{
	int e = ino_load(fs, NULL, addr, ino);

	return e ? e : ino_validate(fs, ino);
}

static int txn_add_inode(struct vmfs_txn *t, struct vmfs_inode *ino)
{
	if (t->ninodes == t->capinodes) {
		size_t nc = t->capinodes ? t->capinodes * 2 : 4;
		struct vmfs_inode **ni = realloc(t->inodes, nc * sizeof(*ni));
		if (!ni)
			return -ENOMEM;
		t->inodes = ni;
		t->capinodes = nc;
	}
	t->inodes[t->ninodes++] = ino;
	return 0;
}

int iget(struct vmfs_txn *t, uint32_t addr, bool for_write, struct vmfs_inode **out)
{
	struct vmfs_inode *ino;
	uint64_t lv;
	int e;

	for (size_t i = 0; i < t->ninodes; i++)
		if (t->inodes[i]->addr == addr) {
			*out = t->inodes[i];
			return 0;
		}
	e = fd_lv(t->fs, addr, &lv);
	if (e) {
		fs_err(t->fs, "FD address 0x%08x is invalid", addr);
		return e;
	}
	if (for_write) {
		e = txn_lock(t, lv, VMFS_LOCK_EXCL);
		if (e)
			return e;
	}
	ino = malloc(sizeof(*ino));
	if (!ino)
		return -ENOMEM;
	e = ino_load(t->fs, t, addr, ino);
	if (!e)
		e = ino_validate(t->fs, ino);
	if (!e)
		e = txn_add_inode(t, ino);
	if (e) {
		free(ino);
		return e;
	}
	*out = ino;
	return 0;
}

int ialloc(struct vmfs_txn *t, uint32_t type, uint32_t mode, uint32_t uid, uint32_t gid,
	   struct vmfs_inode **out)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_inode *ino;
	uint64_t index;
	uint32_t old_gen = 0, now = fs_now();
	int e;

	e = res_alloc(t, VMFS_RES_FDC, 0, &index);
	if (e)
		return e;
	ino = calloc(1, sizeof(*ino));
	if (!ino)
		return -ENOMEM;
	ino->addr = index_to_addr(fs, VMFS_RES_FDC, index);
	e = res_item_lv(fs, &fs->res[VMFS_RES_FDC], index, &ino->lv_off);
	if (!e)
		e = txn_lock(t, ino->lv_off, VMFS_LOCK_EXCL);
	if (!e)
		e = txn_read(t, ino->lv_off, ino->raw, OD_FD_SIZE);
	if (e)
		goto fail;
	od_fd_decode(ino->raw, &ino->fd);
	if (ino->fd.lock_magic == OD_MAGIC_FD && ino->fd.lock_pos == ino->lv_off) {
		if (ino->fd.nlink != 0 && ino->fd.id == ino->addr) {
			fs_err(fs, "FD 0x%08x is free in the FDC bitmap but has %u links", ino->addr,
			       ino->fd.nlink);
			e = -EUCLEAN;
			goto fail;
		}
		old_gen = ino->fd.id == ino->addr ? ino->fd.gen : 0;
	} else {
		ino->fresh_lock = true;
		memset(ino->raw, 0, OD_LOCK_SIZE);
	}
	/* a new object: our whole metadata area starts from zero */
	memset(ino->raw + OD_FD_META_OFF, 0, OD_FD_SIZE - OD_FD_META_OFF);
	memset(&ino->fd, 0, sizeof(ino->fd));
	ino->fd.lock_magic = OD_MAGIC_FD;
	ino->fd.lock_pos = ino->lv_off;
	ino->fd.id = ino->addr;
	ino->fd.gen = old_gen + 1 ? old_gen + 1 : 1;
	ino->fd.type = type;
	ino->fd.mode = mode & 07777;
	ino->fd.uid = uid;
	ino->fd.gid = gid;
	ino->fd.atime = ino->fd.mtime = ino->fd.ctime = now;
	if (type == VMFS_TYPE_FILE && !(fs->flags & VMFS_FS_NO_RESIDENT))
		ino->fd.zla = OD_ZLA_RESIDENT;
	else
		ino->fd.zla = OD_ZLA_SB;
	ino->fd.blk_size = sb_size(fs);
	ino->fd.block_shift = log2u(ino->fd.blk_size);
	ino->fd.tbz_shift = log2u(fs->bs);
	ino->dirty = true;
	e = txn_add_inode(t, ino);
	if (e)
		goto fail;
	*out = ino;
	return 0;
fail:
	free(ino);
	return e;
}

/* ---- pointer blocks -------------------------------------------------------------- */

static int pb_lv(struct vmfs_fs *fs, uint32_t pb, uint64_t *lv)
{
	uint64_t index;
	int kind, e;

	if (vmfs_addr_type(pb) != VMFS_ADDR_PB || (pb & 0x38)) {
		fs_err(fs, "bad pointer block address 0x%08x", pb);
		return -EUCLEAN;
	}
	e = addr_to_index(fs, pb, &kind, &index);
	if (e) {
		fs_err(fs, "pointer block address 0x%08x out of range", pb);
		return e;
	}
	return res_item_lv(fs, &fs->res[VMFS_RES_PBC], index, lv);
}

static int pb_get(struct vmfs_fs *fs, struct vmfs_txn *t, uint32_t pb, uint32_t idx, uint32_t *val)
{
	uint8_t sec[512];
	uint64_t lv;
	int e = pb_lv(fs, pb, &lv);

	if (e)
		return e;
	lv += (uint64_t)idx * 4;
	e = t ? txn_read(t, lv & ~511ull, sec, 512) : vmfs_bdev_read(fs->bd, sec, 512, lv & ~511ull);
	if (e)
		return e;
	*val = od_get32(sec + (lv & 511));
	return 0;
}

static int pb_set(struct vmfs_txn *t, uint32_t pb, uint32_t idx, uint32_t val)
{
	uint8_t b[4];
	uint64_t lv;
	int e = pb_lv(t->fs, pb, &lv);

	if (e)
		return e;
	od_put32(b, val);
	return txn_write(t, lv + (uint64_t)idx * 4, b, 4);
}

static int pb_read_all(struct vmfs_fs *fs, struct vmfs_txn *t, uint32_t pb, uint32_t *ptrs)
{
	uint8_t buf[4096];
	uint64_t lv;
	int e = pb_lv(fs, pb, &lv);

	if (e)
		return e;
	e = t ? txn_read(t, lv, buf, sizeof(buf)) : vmfs_bdev_read(fs->bd, buf, sizeof(buf), lv);
	if (e)
		return e;
	for (unsigned i = 0; i < PTRS_PER_PB; i++)
		ptrs[i] = od_get32(buf + 4 * i);
	return 0;
}

static int pb_write_all(struct vmfs_txn *t, uint32_t pb, const uint32_t *ptrs)
{
	uint8_t buf[4096];
	uint64_t lv;
	int e = pb_lv(t->fs, pb, &lv);

	if (e)
		return e;
	for (unsigned i = 0; i < PTRS_PER_PB; i++)
		od_put32(buf + 4 * i, ptrs[i]);
	return txn_write(t, lv, buf, sizeof(buf));
}

/* Allocate a zeroed pointer block, optionally pre-filled with @n pointers. */
static int pb_new(struct vmfs_txn *t, struct vmfs_inode *ino, const uint32_t *init, unsigned n,
		  uint32_t *pb)
{
	uint32_t ptrs[PTRS_PER_PB] = { 0 };
	uint64_t index;
	int e = res_alloc(t, VMFS_RES_PBC, 0, &index);

	if (e)
		return e;
	*pb = index_to_addr(t->fs, VMFS_RES_PBC, index);
	if (init)
		memcpy(ptrs, init, n * sizeof(uint32_t));
	ino->fd.num_pb++;
	idirty(ino);
	return pb_write_all(t, *pb, ptrs);
}

static int pb_free(struct vmfs_txn *t, struct vmfs_inode *ino, uint32_t pb)
{
	uint64_t index;
	int kind, e = addr_to_index(t->fs, pb, &kind, &index);

	if (e)
		return e;
	if (ino->fd.num_pb)
		ino->fd.num_pb--;
	idirty(ino);
	return res_free(t, VMFS_RES_PBC, index);
}

/* ---- block map -------------------------------------------------------------------- */

static int bmap_get(struct vmfs_fs *fs, struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t fblk,
		    uint32_t *addr)
{
	const struct vmfs_fd *fd = &ino->fd;
	uint32_t p1, p2;
	int e;

	*addr = 0;
	switch (fd->zla) {
	case OD_ZLA_FB:
	case OD_ZLA_SB:
		if (fblk < OD_FD_NBLOCKS)
			*addr = fd->blocks[fblk];
		return 0;
	case OD_ZLA_PB:
		if (fblk >= mode_cap_blocks(OD_ZLA_PB))
			return 0;
		p1 = fd->blocks[fblk / PTRS_PER_PB];
		if (!p1)
			return 0;
		return pb_get(fs, t, p1, (uint32_t)(fblk % PTRS_PER_PB), addr);
	case OD_ZLA_DBL:
		if (fblk >= mode_cap_blocks(OD_ZLA_DBL))
			return 0;
		p1 = fd->blocks[fblk / (PTRS_PER_PB * PTRS_PER_PB)];
		if (!p1)
			return 0;
		e = pb_get(fs, t, p1, (uint32_t)((fblk / PTRS_PER_PB) % PTRS_PER_PB), &p2);
		if (e || !p2)
			return e;
		return pb_get(fs, t, p2, (uint32_t)(fblk % PTRS_PER_PB), addr);
	case OD_ZLA_PB2:
		fs_err(fs, "FD 0x%08x: .pb2.sf addressing is not supported", ino->addr);
		return -EOPNOTSUPP;
	default:
		return -EUCLEAN;
	}
}

static int bmap_set(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t fblk, uint32_t addr)
{
	struct vmfs_fd *fd = &ino->fd;
	uint32_t p1, p2;
	int e;

	switch (fd->zla) {
	case OD_ZLA_FB:
	case OD_ZLA_SB:
		if (fblk >= OD_FD_NBLOCKS)
			return -EFBIG;
		fd->blocks[fblk] = addr;
		idirty(ino);
		return 0;
	case OD_ZLA_PB: {
		uint64_t i = fblk / PTRS_PER_PB;
		if (i >= OD_FD_NBLOCKS)
			return -EFBIG;
		if (!fd->blocks[i]) {
			e = pb_new(t, ino, NULL, 0, &fd->blocks[i]);
			if (e)
				return e;
		}
		return pb_set(t, fd->blocks[i], (uint32_t)(fblk % PTRS_PER_PB), addr);
	}
	case OD_ZLA_DBL: {
		uint64_t i = fblk / (PTRS_PER_PB * PTRS_PER_PB);
		uint32_t j = (uint32_t)((fblk / PTRS_PER_PB) % PTRS_PER_PB);
		if (i >= OD_FD_NBLOCKS)
			return -EFBIG;
		if (!fd->blocks[i]) {
			e = pb_new(t, ino, NULL, 0, &fd->blocks[i]);
			if (e)
				return e;
		}
		p1 = fd->blocks[i];
		e = pb_get(t->fs, t, p1, j, &p2);
		if (e)
			return e;
		if (!p2) {
			e = pb_new(t, ino, NULL, 0, &p2);
			if (!e)
				e = pb_set(t, p1, j, p2);
			if (e)
				return e;
		}
		return pb_set(t, p2, (uint32_t)(fblk % PTRS_PER_PB), addr);
	}
	default:
		return -EOPNOTSUPP;
	}
}

/* LV offset of a data address (FB or SB). */
static int data_lv(struct vmfs_fs *fs, uint32_t addr, uint64_t *lv)
{
	uint64_t index;
	int kind, e;

	switch (vmfs_addr_type(addr)) {
	case VMFS_ADDR_FB:
		if (vmfs_fb_block(addr) >= fs->res[VMFS_RES_FBB].h.total_items)
			goto bad;
		*lv = (uint64_t)vmfs_fb_block(addr) * fs->bs;
		return 0;
	case VMFS_ADDR_SB:
		e = addr_to_index(fs, addr, &kind, &index);
		if (e)
			goto bad;
		return res_item_lv(fs, &fs->res[VMFS_RES_SBC], index, lv);
	default:
		goto bad;
	}
bad:
	fs_err(fs, "bad data block address 0x%08x", addr);
	return -EUCLEAN;
}

static bool addr_is_tbz(uint32_t a)
{
	return vmfs_addr_type(a) == VMFS_ADDR_FB && vmfs_fb_tbz(a);
}

/* ---- raw byte I/O (unaligned allowed) --------------------------------------------- */

static int read_bytes(struct vmfs_fs *fs, struct vmfs_txn *t, uint64_t lv, void *buf, size_t n)
{
	uint64_t a = lv & ~511ull, end = (lv + n + 511) & ~511ull;
	uint8_t *tmp;
	int e;

	if (a == lv && end == lv + n)
		return t ? txn_read(t, lv, buf, n) : vmfs_bdev_read(fs->bd, buf, n, lv);
	tmp = malloc(end - a);
	if (!tmp)
		return -ENOMEM;
	e = t ? txn_read(t, a, tmp, end - a) : vmfs_bdev_read(fs->bd, tmp, end - a, a);
	if (!e)
		memcpy(buf, tmp + (lv - a), n);
	free(tmp);
	return e;
}

static int write_bytes(struct vmfs_fs *fs, uint64_t lv, const void *buf, size_t n)
{
	uint64_t a = lv & ~511ull, end = (lv + n + 511) & ~511ull;
	uint8_t *tmp;
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	if (a == lv && end == lv + n)
		return vmfs_bdev_write(fs->bd, buf, n, lv);
	tmp = malloc(end - a);
	if (!tmp)
		return -ENOMEM;
	e = 0;
	if (a != lv)
		e = vmfs_bdev_read(fs->bd, tmp, 512, a);
	if (!e && end != lv + n && (end - 512 != a || a == lv))
		e = vmfs_bdev_read(fs->bd, tmp + (end - a) - 512, 512, end - 512);
	if (!e) {
		memcpy(tmp + (lv - a), buf, n);
		e = vmfs_bdev_write(fs->bd, tmp, end - a, a);
	}
	free(tmp);
	return e;
}

/* ---- read ------------------------------------------------------------------------- */

int64_t ino_read(struct vmfs_fs *fs, struct vmfs_txn *t, struct vmfs_inode *ino, void *buf,
		 size_t len, uint64_t off)
{
	const struct vmfs_fd *fd = &ino->fd;
	uint8_t *p = buf;
	uint64_t pos = off, end;
	int e;

	if (off >= fd->size || !len)
		return 0;
	end = fd->size - off < len ? fd->size : off + len;
	if (fd->zla == OD_ZLA_RESIDENT) {
		memcpy(buf, fd->content + off, end - off);
		return (int64_t)(end - off);
	}
	if (fd->type == VMFS_TYPE_RDM || fd->zla == OD_ZLA_PB2) {
		fs_err(fs, "FD 0x%08x: data of this file type/mode cannot be read", ino->addr);
		return -EOPNOTSUPP;
	}
	while (pos < end) {
		uint64_t bsz = fd->blk_size, fblk = pos / bsz, boff = pos % bsz;
		uint64_t n = bsz - boff < end - pos ? bsz - boff : end - pos;
		uint32_t a;
		e = bmap_get(fs, t, ino, fblk, &a);
		if (e)
			return e;
		if (!a || addr_is_tbz(a)) {
			memset(p, 0, n);
		} else {
			uint64_t lv;
			e = data_lv(fs, a, &lv);
			if (e)
				return e;
			/* coalesce physically contiguous FBs into one request */
			if (vmfs_addr_type(a) == VMFS_ADDR_FB) {
				while (pos + n < end && n < (64ull << 20)) {
					uint32_t na;
					e = bmap_get(fs, t, ino, fblk + 1, &na);
					if (e)
						return e;
					if (vmfs_addr_type(na) != VMFS_ADDR_FB || vmfs_fb_tbz(na) ||
					    vmfs_fb_block(na) != vmfs_fb_block(a) + 1 ||
					    vmfs_fb_block(na) >= fs->res[VMFS_RES_FBB].h.total_items)
						break;
					uint64_t more = bsz < end - pos - n ? bsz : end - pos - n;
					n += more;
					fblk++;
					a = na;
				}
			}
			e = read_bytes(fs, t, lv + boff, p, n);
			if (e)
				return e;
		}
		p += n;
		pos += n;
	}
	return (int64_t)(end - off);
}

/* ---- freeing ------------------------------------------------------------------------ */

static int free_data(struct vmfs_txn *t, struct vmfs_inode *ino, uint32_t a)
{
	uint64_t index;
	int kind, e;

	e = addr_to_index(t->fs, a, &kind, &index);
	if (e || (kind != VMFS_RES_FBB && kind != VMFS_RES_SBC)) {
		fs_err(t->fs, "FD 0x%08x: bad data block address 0x%08x", ino->addr, a);
		return e ? e : -EUCLEAN;
	}
	if (addr_is_tbz(a) && ino->fd.tbz)
		ino->fd.tbz--;
	if (ino->fd.blk_count)
		ino->fd.blk_count--;
	idirty(ino);
	e = res_free(t, kind, index);
	if (!e && kind == VMFS_RES_FBB)
		txn_note_freed(t, index);
	return e;
}

/* Free data blocks >= keep below PB @pb covering blocks [base, base + span). */
static int free_tree(struct vmfs_txn *t, struct vmfs_inode *ino, uint32_t pb, int level,
		     uint64_t base, uint64_t keep, bool *emptied)
{
	uint32_t *ptrs = malloc(PTRS_PER_PB * sizeof(uint32_t));
	uint64_t child_span = level == 2 ? PTRS_PER_PB : 1;
	bool changed = false;
	int e;

	if (!ptrs)
		return -ENOMEM;
	e = pb_read_all(t->fs, t, pb, ptrs);
	if (e)
		goto out;
	for (uint32_t i = 0; i < PTRS_PER_PB; i++) {
		uint64_t cb = base + i * child_span;
		if (!ptrs[i] || cb + child_span <= keep)
			continue;
		if (level == 2) {
			bool em = false;
			e = free_tree(t, ino, ptrs[i], 1, cb, keep, &em);
			if (e)
				goto out;
			if (em) {
				e = pb_free(t, ino, ptrs[i]);
				if (e)
					goto out;
				ptrs[i] = 0;
				changed = true;
			}
		} else {
			e = free_data(t, ino, ptrs[i]);
			if (e)
				goto out;
			ptrs[i] = 0;
			changed = true;
		}
	}
	*emptied = base >= keep;
	if (changed && !*emptied)
		e = pb_write_all(t, pb, ptrs);
out:
	free(ptrs);
	return e;
}

/* Free every block with index >= keep, and the PBs that become unused. */
static int free_from(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t keep)
{
	struct vmfs_fd *fd = &ino->fd;
	int e;

	switch (fd->zla) {
	case OD_ZLA_FB:
	case OD_ZLA_SB:
		for (uint64_t i = keep; i < OD_FD_NBLOCKS; i++) {
			if (!fd->blocks[i])
				continue;
			e = free_data(t, ino, fd->blocks[i]);
			if (e)
				return e;
			fd->blocks[i] = 0;
		}
		return 0;
	case OD_ZLA_PB:
	case OD_ZLA_DBL: {
		int level = fd->zla == OD_ZLA_PB ? 1 : 2;
		uint64_t span = level == 1 ? PTRS_PER_PB : (uint64_t)PTRS_PER_PB * PTRS_PER_PB;
		for (uint64_t i = 0; i < OD_FD_NBLOCKS; i++) {
			bool em = false;
			if (!fd->blocks[i] || (i + 1) * span <= keep)
				continue;
			e = free_tree(t, ino, fd->blocks[i], level, i * span, keep, &em);
			if (e)
				return e;
			if (em) {
				e = pb_free(t, ino, fd->blocks[i]);
				if (e)
					return e;
				fd->blocks[i] = 0;
			}
		}
		idirty(ino);
		return 0;
	}
	case OD_ZLA_RESIDENT:
		return 0;
	default:
		if (fd->type == VMFS_TYPE_RDM)
			return 0; /* a raw device mapping owns no blocks */
		return -EOPNOTSUPP;
	}
}

/* ---- conversions ------------------------------------------------------------------- */

static void set_mode(struct vmfs_fs *fs, struct vmfs_inode *ino, uint32_t zla)
{
	ino->fd.zla = zla;
	ino->fd.blk_size = zla == OD_ZLA_SB || zla == OD_ZLA_RESIDENT ? sb_size(fs) : fs->bs;
	ino->fd.block_shift = log2u(ino->fd.blk_size);
	idirty(ino);
}

/* Rewrite the whole (small) content of a resident or SB file in mode @zla. */
static int rewrite_as(struct vmfs_txn *t, struct vmfs_inode *ino, uint32_t zla)
{
	struct vmfs_fs *fs = t->fs;
	uint64_t size = ino->fd.size;
	uint8_t *data = NULL;
	int64_t n;
	int e;

	if (size > (uint64_t)OD_FD_NBLOCKS * sb_size(fs))
		return -EUCLEAN;
	data = malloc(size ? size : 1);
	if (!data)
		return -ENOMEM;
	n = ino_read(fs, t, ino, data, size, 0);
	if (n < 0) {
		e = (int)n;
		goto out;
	}
	if (ino->fd.zla != OD_ZLA_RESIDENT) {
		e = free_from(t, ino, 0);
		if (e)
			goto out;
	}
	memset(ino->fd.content, 0, sizeof(ino->fd.content));
	set_mode(fs, ino, zla);
	if (zla == OD_ZLA_RESIDENT) {
		memcpy(ino->fd.content, data, size);
		e = 0;
	} else {
		ino->fd.size = 0;
		n = size ? ino_write(t, ino, data, size, 0) : 0;
		e = n < 0 ? (int)n : 0;
		ino->fd.size = size;
	}
out:
	free(data);
	return e;
}

static uint64_t grow_cap(struct vmfs_fs *fs, const struct vmfs_inode *ino)
{
	switch (ino->fd.zla) {
	case OD_ZLA_RESIDENT: return OD_FD_RESIDENT_MAX;
	case OD_ZLA_SB: return sb_size(fs);
	case OD_ZLA_FB: return OD_FD_NBLOCKS * fs->bs;
	case OD_ZLA_PB: return mode_cap_blocks(OD_ZLA_PB) * fs->bs;
	case OD_ZLA_DBL: return VMFS_MAX_FILE_SIZE;
	default: return 0;
	}
}

/* Make the file able to hold @size bytes, converting upwards as needed.
 * @min_fb forces at least file-block addressing. */
static int ensure_cap(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t size, bool min_fb)
{
	struct vmfs_fs *fs = t->fs;
	int e;

	if (size > VMFS_MAX_FILE_SIZE)
		return -EFBIG;
	for (;;) {
		struct vmfs_fd *fd = &ino->fd;
		bool small = fd->zla == OD_ZLA_RESIDENT || fd->zla == OD_ZLA_SB;
		if (!(min_fb && small) && (size <= grow_cap(fs, ino) || size <= fd->size))
			return 0;
		switch (fd->zla) {
		case OD_ZLA_RESIDENT:
			e = rewrite_as(t, ino, !min_fb && size <= sb_size(fs) ? OD_ZLA_SB : OD_ZLA_FB);
			break;
		case OD_ZLA_SB:
			e = rewrite_as(t, ino, OD_ZLA_FB);
			break;
		case OD_ZLA_FB: {
			uint32_t pb;
			e = pb_new(t, ino, fd->blocks, OD_FD_NBLOCKS, &pb);
			if (!e) {
				memset(fd->blocks, 0, sizeof(fd->blocks));
				fd->blocks[0] = pb;
				set_mode(fs, ino, OD_ZLA_PB);
			}
			break;
		}
		case OD_ZLA_PB: {
			uint32_t pb;
			e = pb_new(t, ino, fd->blocks, OD_FD_NBLOCKS, &pb);
			if (!e) {
				memset(fd->blocks, 0, sizeof(fd->blocks));
				fd->blocks[0] = pb;
				set_mode(fs, ino, OD_ZLA_DBL);
			}
			break;
		}
		default:
			return -EFBIG;
		}
		if (e)
			return e;
	}
}

/* Convert downwards after a shrink (blocks >= keep are already free). */
static int shrink_mode(struct vmfs_txn *t, struct vmfs_inode *ino)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_fd *fd = &ino->fd;
	uint64_t keep = (fd->size + fd->blk_size - 1) / fd->blk_size;
	uint32_t ptrs[PTRS_PER_PB];
	int e;

	if (fd->zla == OD_ZLA_DBL && keep <= mode_cap_blocks(OD_ZLA_PB)) {
		uint32_t l1 = fd->blocks[0];
		memset(ptrs, 0, sizeof(ptrs));
		if (l1) {
			e = pb_read_all(fs, t, l1, ptrs);
			if (!e)
				e = pb_free(t, ino, l1);
			if (e)
				return e;
		}
		memset(fd->blocks, 0, sizeof(fd->blocks));
		memcpy(fd->blocks, ptrs, OD_FD_NBLOCKS * sizeof(uint32_t));
		set_mode(fs, ino, OD_ZLA_PB);
	}
	if (fd->zla == OD_ZLA_PB && keep <= OD_FD_NBLOCKS) {
		uint32_t p0 = fd->blocks[0];
		memset(ptrs, 0, sizeof(ptrs));
		if (p0) {
			e = pb_read_all(fs, t, p0, ptrs);
			if (!e)
				e = pb_free(t, ino, p0);
			if (e)
				return e;
		}
		memset(fd->blocks, 0, sizeof(fd->blocks));
		memcpy(fd->blocks, ptrs, OD_FD_NBLOCKS * sizeof(uint32_t));
		set_mode(fs, ino, OD_ZLA_FB);
	}
	if ((fd->zla == OD_ZLA_FB || fd->zla == OD_ZLA_SB) && fd->type == VMFS_TYPE_FILE &&
	    !(fs->flags & VMFS_FS_NO_RESIDENT) && fd->size <= OD_FD_RESIDENT_MAX && fd->tbz == 0)
		return rewrite_as(t, ino, OD_ZLA_RESIDENT);
	return 0;
}

/* ---- write ----------------------------------------------------------------------------- */

/* Allocation goal for file block @fblk: the item right after the one that
 * holds block fblk-1 (@prev: its address, or 0 = look it up), so that a
 * sequential write gets consecutive blocks.  RES_NO_NEAR when there is none. */
static uint64_t near_of(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t fblk, uint32_t prev,
			int kind)
{
	uint64_t index;
	int k;

	if (!prev && (fblk == 0 || bmap_get(t->fs, t, ino, fblk - 1, &prev) || !prev))
		return RES_NO_NEAR;
	if (addr_to_index(t->fs, prev, &k, &index) || k != kind)
		return RES_NO_NEAR;
	return index + 1;
}

static int alloc_data(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t fblk, uint32_t prev,
		      uint32_t *addr)
{
	uint64_t index;
	int kind = ino->fd.zla == OD_ZLA_SB ? VMFS_RES_SBC : VMFS_RES_FBB;
	int e = res_alloc_near(t, kind, 0, near_of(t, ino, fblk, prev, kind), &index);

	if (e)
		return e;
	*addr = index_to_addr(t->fs, kind, index);
	ino->fd.blk_count++;
	idirty(ino);
	return 0;
}

/* Write a whole fresh block: zeros around [boff, boff+n) of @src (src may be NULL). */
/* Write bytes that become readable through the file only when the current
 * transaction commits (a new block, a TBZ block being filled, zeros beyond the
 * old EOF): the commit must not reach the disk before they do, so the txn
 * flushes the device before it commits (txn.c). */
static int write_unexposed(struct vmfs_fs *fs, uint64_t lv, const void *buf, size_t n)
{
	fs->fresh_data = true;
	return write_bytes(fs, lv, buf, n);
}

static int write_fresh(struct vmfs_fs *fs, uint64_t lv, uint64_t bsz, uint64_t boff,
		       const void *src, uint64_t n)
{
	uint8_t *tmp;
	int e;

	if (boff == 0 && n == bsz && src)
		return write_unexposed(fs, lv, src, n);
	if (!src || n == 0)
		return write_unexposed(fs, lv, fs->zero_block, bsz);
	tmp = malloc(bsz);
	if (!tmp)
		return -ENOMEM;
	memset(tmp, 0, bsz);
	memcpy(tmp + boff, src, n);
	e = write_unexposed(fs, lv, tmp, bsz);
	free(tmp);
	return e;
}

int64_t ino_write(struct vmfs_txn *t, struct vmfs_inode *ino, const void *buf, size_t len,
		  uint64_t off)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_fd *fd = &ino->fd;
	const uint8_t *p = buf;
	bool meta = fd->type == VMFS_TYPE_DIR;
	uint64_t pos = off, end;
	uint32_t prev = 0;        /* address of the block before pos (0: unknown) */
	int e;

	if (!len)
		return 0;
	if (off > VMFS_MAX_FILE_SIZE || len > VMFS_MAX_FILE_SIZE - off)
		return -EFBIG;
	end = off + len;
	if (fd->type == VMFS_TYPE_RDM || fd->zla == OD_ZLA_PB2)
		return -EOPNOTSUPP;
	e = ensure_cap(t, ino, end, false);
	if (e)
		return e;
	if (fd->zla == OD_ZLA_RESIDENT) {
		memcpy(fd->content + off, buf, len);
		goto done;
	}
	while (pos < end) {
		uint64_t bsz = fd->blk_size, fblk = pos / bsz, boff = pos % bsz;
		uint64_t n = bsz - boff < end - pos ? bsz - boff : end - pos;
		uint32_t a;
		uint64_t lv;
		e = bmap_get(fs, t, ino, fblk, &a);
		if (e)
			return e;
		if (!a || addr_is_tbz(a)) {
			bool tbz = a != 0;
			if (!a) {
				e = alloc_data(t, ino, fblk, prev, &a);
				if (e)
					return e;
			}
			e = data_lv(fs, a, &lv);
			if (e)
				return e;
			if (meta)
				e = txn_write(t, lv + boff, p, n);
			else
				e = write_fresh(fs, lv, bsz, boff, p, n);
			if (e)
				return e;
			if (tbz) {
				a &= ~VMFS_FB_TBZ;
				if (fd->tbz)
					fd->tbz--;
			}
			e = bmap_set(t, ino, fblk, a);
			if (e)
				return e;
		} else {
			e = data_lv(fs, a, &lv);
			if (e)
				return e;
			e = meta ? txn_write(t, lv + boff, p, n) : write_bytes(fs, lv + boff, p, n);
			if (e)
				return e;
		}
		prev = a;
		p += n;
		pos += n;
	}
done:
	if (end > fd->size)
		fd->size = end;
	fd->mtime = fd->ctime = fs_now();
	idirty(ino);
	return (int64_t)len;
}

/* ---- truncate / allocate -------------------------------------------------------------- */

int ino_truncate(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t size)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_fd *fd = &ino->fd;
	int e;

	if (size > VMFS_MAX_FILE_SIZE)
		return -EFBIG;
	if (fd->type == VMFS_TYPE_RDM || fd->zla == OD_ZLA_PB2)
		return -EOPNOTSUPP;
	if (size >= fd->size) {
		e = ensure_cap(t, ino, size, false);
		if (e)
			return e;
		fd->size = size;
	} else if (fd->zla == OD_ZLA_RESIDENT) {
		memset(fd->content + size, 0, OD_FD_RESIDENT_MAX - size);
		fd->size = size;
	} else {
		uint64_t bsz = fd->blk_size, keep = (size + bsz - 1) / bsz;
		e = free_from(t, ino, keep);
		if (e)
			return e;
		if (size % bsz && fd->type != VMFS_TYPE_DIR) {
			/* zero the tail of the last block so a later extend reads zeros */
			uint32_t a;
			uint64_t lv;
			e = bmap_get(fs, t, ino, keep - 1, &a);
			if (e)
				return e;
			if (a && !addr_is_tbz(a)) {
				uint64_t tail = bsz - size % bsz;
				e = data_lv(fs, a, &lv);
				if (!e)
					e = write_unexposed(fs, lv + size % bsz, fs->zero_block, tail);
				if (e)
					return e;
			}
		}
		fd->size = size;
		e = shrink_mode(t, ino);
		if (e)
			return e;
	}
	fd->mtime = fd->ctime = fs_now();
	idirty(ino);
	return 0;
}

int ino_fallocate(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t off, uint64_t len,
		  unsigned flags)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_fd *fd = &ino->fd;
	uint64_t end;
	int e;

	if (fd->type != VMFS_TYPE_FILE)
		return -EINVAL;
	if (!len)
		return 0;
	if (off > VMFS_MAX_FILE_SIZE || len > VMFS_MAX_FILE_SIZE - off)
		return -EFBIG;
	end = off + len;
	e = ensure_cap(t, ino, end > fd->size ? end : fd->size, true);
	if (e)
		return e;
	uint32_t prev = 0;
	for (uint64_t b = off / fs->bs; b <= (end - 1) / fs->bs; b++) {
		uint32_t a;
		uint64_t index;
		e = bmap_get(fs, t, ino, b, &a);
		if (e)
			return e;
		if (a) {
			prev = a;
			continue;
		}
		e = res_alloc_near(t, VMFS_RES_FBB, 0, near_of(t, ino, b, prev, VMFS_RES_FBB), &index);
		if (e)
			return e;
		bool tbz = (flags & VMFS_ALLOC_TBZ) && !(flags & VMFS_ALLOC_ZERO);
		if (!tbz) {
			e = write_unexposed(fs, index * fs->bs, fs->zero_block, fs->bs);
			if (e)
				return e;
		}
		a = vmfs_fb_make((uint32_t)index, tbz);
		e = bmap_set(t, ino, b, a);
		if (e)
			return e;
		prev = a;
		fd->blk_count++;
		if (tbz)
			fd->tbz++;
	}
	if (!(flags & VMFS_ALLOC_KEEP_SIZE) && end > fd->size)
		fd->size = end;
	fd->mtime = fd->ctime = fs_now();
	idirty(ino);
	return 0;
}

int ino_prepare_write(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t off, uint64_t len)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_fd *fd = &ino->fd;
	uint64_t end;
	int e;

	if (!len)
		return -EINVAL;
	if (off > VMFS_MAX_FILE_SIZE || len > VMFS_MAX_FILE_SIZE - off)
		return -EFBIG;
	end = off + len;
	/* holes become zeroed blocks (also converts resident/SB files to blocks) */
	e = ino_fallocate(t, ino, off, len, VMFS_ALLOC_ZERO | VMFS_ALLOC_KEEP_SIZE);
	if (e)
		return e;
	/* TBZ blocks are zero-filled now: the caller writes around the fs */
	for (uint64_t b = off / fs->bs; b <= (end - 1) / fs->bs; b++) {
		uint32_t a;
		uint64_t lv;
		e = bmap_get(fs, t, ino, b, &a);
		if (e)
			return e;
		if (!addr_is_tbz(a))
			continue;
		e = data_lv(fs, a, &lv);
		if (!e)
			e = write_unexposed(fs, lv, fs->zero_block, fs->bs);
		if (!e)
			e = bmap_set(t, ino, b, a & ~VMFS_FB_TBZ);
		if (e)
			return e;
		if (fd->tbz)
			fd->tbz--;
	}
	if (end > fd->size)
		fd->size = end;
	fd->mtime = fd->ctime = fs_now();
	idirty(ino);
	return 0;
}

int ino_punch(struct vmfs_txn *t, struct vmfs_inode *ino, uint64_t off, uint64_t len)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_fd *fd = &ino->fd;
	uint64_t end, bsz, first, last;
	int e;

	if (fd->type != VMFS_TYPE_FILE)
		return -EINVAL;
	if (off > VMFS_MAX_FILE_SIZE || len > VMFS_MAX_FILE_SIZE - off)
		return -EFBIG;
	if (!len || off >= fd->size)
		return 0;
	end = off + len < fd->size ? off + len : fd->size;
	if (fd->zla == OD_ZLA_RESIDENT) {
		/* inline bytes live in the FD: zero them there */
		memset(fd->content + off, 0, end - off);
		goto done;
	}
	bsz = fd->blk_size;
	if (!bsz)
		return -EUCLEAN;
	first = (off + bsz - 1) / bsz;   /* whole blocks [first, last) are freed */
	last = end / bsz;
	/* partial blocks at the edges are zeroed in place where they hold data */
	for (int edge = 0; edge < 2; edge++) {
		uint64_t a0 = edge ? (last * bsz > off ? last * bsz : off) : off;
		uint64_t a1 = edge ? end : (first * bsz < end ? first * bsz : end);
		uint32_t a;
		uint64_t lv;

		if (a0 >= a1 || (edge && last < first))
			continue;
		e = bmap_get(fs, t, ino, a0 / bsz, &a);
		if (e)
			return e;
		if (!a || addr_is_tbz(a))
			continue;   /* reads as zeros already */
		e = data_lv(fs, a, &lv);
		if (!e)
			e = write_bytes(fs, lv + a0 % bsz, fs->zero_block, a1 - a0);
		if (e)
			return e;
	}
	for (uint64_t b = first; b < last; b++) {
		uint32_t a;

		e = bmap_get(fs, t, ino, b, &a);
		if (e)
			return e;
		if (!a)
			continue;
		e = free_data(t, ino, a);
		if (!e)
			e = bmap_set(t, ino, b, 0);
		if (e)
			return e;
	}
done:
	fd->mtime = fd->ctime = fs_now();
	idirty(ino);
	return 0;
}

int ino_release(struct vmfs_txn *t, struct vmfs_inode *ino)
{
	uint64_t index;
	int kind, e;

	e = free_from(t, ino, 0);
	if (e)
		return e;
	if (ino->fd.zla == OD_ZLA_PB || ino->fd.zla == OD_ZLA_DBL || ino->fd.zla == OD_ZLA_RESIDENT) {
		memset(ino->fd.blocks, 0, sizeof(ino->fd.blocks));
		set_mode(t->fs, ino, OD_ZLA_SB);
	}
	ino->fd.size = 0;
	ino->fd.nlink = 0;
	ino->fd.tbz = 0;
	ino->fd.ctime = fs_now();
	idirty(ino);
	e = addr_to_index(t->fs, ino->addr, &kind, &index);
	if (e)
		return e;
	return res_free(t, VMFS_RES_FDC, index);
}

/* ---- extent map ---------------------------------------------------------------------- */

int ino_map(struct vmfs_fs *fs, struct vmfs_inode *ino, uint64_t off, uint64_t max_len,
	    struct vmfs_extent *ext)
{
	const struct vmfs_fd *fd = &ino->fd;
	uint64_t bsz = fd->blk_size, fblk, cap;
	uint32_t a;
	int e;

	memset(ext, 0, sizeof(*ext));
	if (off >= fd->size)
		return -ENXIO;
	if (fd->type == VMFS_TYPE_RDM || fd->zla == OD_ZLA_PB2 || !fd->blk_size)
		return -EOPNOTSUPP;
	if (fd->zla == OD_ZLA_RESIDENT) {
		ext->file_off = 0;
		ext->len = fd->size;
		ext->state = VMFS_EXT_INLINE;
		return 0;
	}
	if (!max_len || max_len > (1ull << 30))
		max_len = 1ull << 30;
	fblk = off / bsz;
	e = bmap_get(fs, NULL, ino, fblk, &a);
	if (e)
		return e;
	ext->file_off = fblk * bsz;
	ext->len = bsz;
	if (!a) {
		ext->state = VMFS_EXT_HOLE;
	} else {
		ext->state = addr_is_tbz(a) ? VMFS_EXT_TBZ : VMFS_EXT_ALLOCATED;
		e = data_lv(fs, a, &ext->lv_off);
		if (e)
			return e;
	}
	cap = ext->file_off + max_len;
	while (ext->file_off + ext->len < fd->size && ext->file_off + ext->len < cap) {
		uint32_t na;
		uint64_t nlv;
		e = bmap_get(fs, NULL, ino, ++fblk, &na);
		if (e)
			return e;
		if (ext->state == VMFS_EXT_HOLE) {
			if (na)
				break;
		} else {
			if (!na || addr_is_tbz(na) != (ext->state == VMFS_EXT_TBZ) ||
			    vmfs_addr_type(na) != VMFS_ADDR_FB || data_lv(fs, na, &nlv) ||
			    nlv != ext->lv_off + ext->len)
				break;
		}
		ext->len += bsz;
	}
	return 0;
}
