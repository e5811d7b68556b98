/*
 * Sparse-aware clone and punch-zero.  Both read the source through its
 * extent map: holes and TBZ extents are never read, allocated blocks that
 * hold only zeros are not written.  Punch-zero frees zero blocks in the
 * middle of a file by rewriting it sparsely and renaming the copy over the
 * original: the filesystem has no call that frees one block in the middle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_internal.h"

#define COPY_BUF (8ull << 20)

/* Copy the non-zero blocks of @src into @dst (already sized). */
static int copy_data(struct vmfs_fs *fs, uint32_t src, uint32_t dst, uint64_t size,
		     const struct thinprov_opts *o, uint64_t *zero_blocks)
{
	uint64_t bs = tp_bs(fs), pos = 0, bufsz = COPY_BUF < bs ? bs : COPY_BUF / bs * bs;
	uint8_t *buf = malloc(bufsz);
	int e = 0;

	if (!buf)
		return -ENOMEM;
	while (pos < size && !e) {
		struct vmfs_extent ext;
		e = vmfs_map(fs, src, pos, 0, &ext);
		if (e)
			break;
		uint64_t end = ext.file_off + ext.len < size ? ext.file_off + ext.len : size;
		if (end <= pos) {
			e = -EIO;
			break;
		}
		if (ext.state == VMFS_EXT_ALLOCATED || ext.state == VMFS_EXT_INLINE) {
			for (uint64_t p = pos; p < end && !e;) {
				uint64_t n = end - p < bufsz ? end - p : bufsz;
				int64_t r = vmfs_pread(fs, src, buf, n, p);
				if (r < 0) {
					e = (int)r;
					break;
				}
				if ((uint64_t)r != n) {
					e = -EIO;
					break;
				}
				/* write runs of non-zero blocks */
				for (uint64_t b = 0; b < n && !e;) {
					uint64_t l = n - b < bs ? n - b : bs;
					if (tp_is_zero(buf + b, l)) {
						if (zero_blocks)
							(*zero_blocks)++;
						b += l;
						continue;
					}
					uint64_t s = b;
					while (b < n) {
						l = n - b < bs ? n - b : bs;
						if (tp_is_zero(buf + b, l))
							break;
						b += l;
					}
					int64_t w = thinprov_pwrite(fs, dst, buf + s, b - s, p + s, o);
					if (w < 0)
						e = (int)w;
				}
				p += n;
				if (!e)
					e = tp_progress(o, p, size);
			}
		} else if (ext.state == VMFS_EXT_TBZ && zero_blocks) {
			*zero_blocks += (end - pos + bs - 1) / bs;
		}
		pos = end;
	}
	free(buf);
	return e;
}

int thinprov_clone(struct vmfs_fs *fs, uint32_t src, uint32_t ddir, const char *dname, int type,
		   const struct thinprov_opts *o, uint32_t *daddr)
{
	struct thinprov_opts q = o ? *o : (struct thinprov_opts){ 0 };
	uint64_t size;
	uint32_t d;
	int e;

	if (!fs || !dname || !daddr || type < THINPROV_THIN || type > THINPROV_EAGERZEROEDTHICK)
		return -EINVAL;
	e = tp_size(fs, src, &size);
	if (e)
		return e;
	/* thick targets: every block TBZ first, data over it, then zero the rest */
	q.progress = NULL;
	e = thinprov_create(fs, ddir, dname, size, type == THINPROV_THIN ? THINPROV_THIN
								: THINPROV_ZEROEDTHICK, &q, &d);
	if (e)
		return e;
	e = copy_data(fs, src, d, size, o, NULL);
	if (!e && type == THINPROV_EAGERZEROEDTHICK)
		e = thinprov_eagerzero(fs, d, &q);
	if (e) {
		thinprov_unlink(fs, ddir, dname, &q, NULL);
		return e;
	}
	*daddr = d;
	return 0;
}

/* Does [0, size) of @addr hold an allocated all-zero block (or TBZ) before
 * the last non-zero block?  Sets *last_data to the end of the last block
 * holding non-zero data (0 if none) and *zero_mid. */
static int scan_zero(struct vmfs_fs *fs, uint32_t addr, uint64_t size, uint64_t *last_data,
		     bool *zero_mid)
{
	uint64_t bs = tp_bs(fs), pos = 0;
	uint64_t first_zero = UINT64_MAX;
	uint8_t *buf = malloc(bs);
	int e = 0;

	if (!buf)
		return -ENOMEM;
	*last_data = 0;
	*zero_mid = false;
	while (pos < size && !e) {
		struct vmfs_extent ext;
		e = vmfs_map(fs, addr, pos, 0, &ext);
		if (e)
			break;
		uint64_t end = ext.file_off + ext.len < size ? ext.file_off + ext.len : size;
		if (end <= pos) {
			e = -EIO;
			break;
		}
		if (ext.state == VMFS_EXT_TBZ) {
			if (first_zero == UINT64_MAX)
				first_zero = pos;
		} else if (ext.state == VMFS_EXT_ALLOCATED) {
			for (uint64_t b = pos; b < end; b += bs) {
				uint64_t n = end - b < bs ? end - b : bs;
				int64_t r = vmfs_pread(fs, addr, buf, n, b);
				if (r < 0 || (uint64_t)r != n) {
					e = r < 0 ? (int)r : -EIO;
					break;
				}
				if (tp_is_zero(buf, n)) {
					if (first_zero == UINT64_MAX)
						first_zero = b;
				} else {
					if (first_zero != UINT64_MAX)
						*zero_mid = true;
					*last_data = (b / bs + 1) * bs;
				}
			}
		} else if (ext.state == VMFS_EXT_INLINE) {
			*last_data = size;
		}
		pos = end;
	}
	free(buf);
	return e;
}

int thinprov_punch_zero(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t *addr,
			const struct thinprov_opts *o, struct thinprov_reclaim *rc)
{
	struct thinprov_reclaim dummy = { 0 };
	struct thinprov_opts q = o ? *o : (struct thinprov_opts){ 0 };
	struct vmfs_stat st;
	struct tp_snap s = { 0 };
	char tmp[129];
	uint64_t last;
	bool mid;
	uint32_t t;
	int e;

	if (!fs || !name || !addr)
		return -EINVAL;
	if (!rc)
		rc = &dummy;
	e = vmfs_stat(fs, *addr, &st);
	if (e)
		return e;
	if (st.type != VMFS_TYPE_FILE)
		return -EINVAL;
	e = scan_zero(fs, *addr, st.size, &last, &mid);
	if (e)
		return e;
	if (!mid) {
		/* only trailing zero blocks: free them by truncating down and up */
		if (last >= st.size)
			return 0;
		e = thinprov_truncate(fs, *addr, last, o, rc);
		if (!e)
			e = vmfs_truncate(fs, *addr, st.size);
		return e;
	}
	if (strlen(name) + 6 > 127)
		return -ENAMETOOLONG;
	snprintf(tmp, sizeof(tmp), ".%s.tpz", name);
	e = vmfs_lookup(fs, dir, tmp, &t);
	if (e == 0) {
		/* left over by an interrupted punch-zero: never the live copy */
		e = thinprov_unlink(fs, dir, tmp, &q, NULL);
		if (e)
			return e;
	} else if (e != -ENOENT) {
		return e;
	}
	e = vmfs_create(fs, dir, tmp, st.mode & 07777, st.uid, st.gid, &t);
	if (e)
		return e;
	e = vmfs_truncate(fs, t, st.size);
	if (!e)
		e = copy_data(fs, *addr, t, st.size, o, NULL);
	if (!e)
		e = vmfs_setattr(fs, t, VMFS_SET_ATIME | VMFS_SET_MTIME, 0, 0, 0, st.atime, st.mtime);
	if (!e)
		e = vmfs_fs_sync(fs);   /* the copy is durable before it replaces the original */
	if (!e)
		e = tp_snap_take(fs, *addr, 0, &s);
	if (!e)
		e = vmfs_rename(fs, dir, tmp, dir, name);
	if (e) {
		q.progress = NULL;
		thinprov_unlink(fs, dir, tmp, &q, NULL);
		tp_snap_free(&s);
		return e;
	}
	*addr = t;
	e = tp_snap_reclaim(fs, &s, o, rc);
	tp_snap_free(&s);
	return e;
}
