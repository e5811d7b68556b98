/*
 * Virtual disk provisioning: create a disk of a type, read its type and
 * usage from the block map, extend, inflate, eager-zero, and the ordered
 * write that never lets a crash expose what the device held before.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tp_internal.h"

static const char *const type_names[] = { "thin", "zeroedthick", "eagerzeroedthick" };

const char *thinprov_type_name(int type)
{
	if (type < 0 || type > THINPROV_EAGERZEROEDTHICK)
		return "unknown";
	return type_names[type];
}

int thinprov_type_parse(const char *s, int *type)
{
	if (!s || !type)
		return -EINVAL;
	if (!strcmp(s, "thin"))
		*type = THINPROV_THIN;
	else if (!strcmp(s, "zeroedthick") || !strcmp(s, "thick"))
		*type = THINPROV_ZEROEDTHICK;
	else if (!strcmp(s, "eagerzeroedthick") || !strcmp(s, "eagerzeroed"))
		*type = THINPROV_EAGERZEROEDTHICK;
	else
		return -EINVAL;
	return 0;
}

uint64_t tp_chunk(const struct thinprov_opts *o)
{
	return o && o->chunk ? o->chunk : TP_DEFAULT_CHUNK;
}

uint64_t tp_free_batch(struct vmfs_fs *fs, const struct thinprov_opts *o)
{
	uint64_t n = tp_chunk(o) * 16 / tp_bs(fs);

	return n < 1 ? 1 : n > 1024 ? 1024 : n;
}

unsigned tp_flags(const struct thinprov_opts *o)
{
	return o ? o->flags : 0;
}

int tp_progress(const struct thinprov_opts *o, uint64_t done, uint64_t total)
{
	if (o && o->progress && o->progress(o->progress_ctx, done, total))
		return -ECANCELED;
	return 0;
}

uint64_t tp_bs(struct vmfs_fs *fs)
{
	return vmfs_fs_get_info(fs)->block_size;
}

int tp_size(struct vmfs_fs *fs, uint32_t addr, uint64_t *size)
{
	struct vmfs_stat st;
	int e = vmfs_stat(fs, addr, &st);

	if (e)
		return e;
	if (st.type != VMFS_TYPE_FILE)
		return st.type == VMFS_TYPE_DIR ? -EISDIR : -EINVAL;
	*size = st.size;
	return 0;
}

bool tp_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	static const uint8_t z[64];

	while (len >= sizeof(z)) {
		if (memcmp(p, z, sizeof(z)))
			return false;
		p += sizeof(z);
		len -= sizeof(z);
	}
	return len == 0 || !memcmp(p, z, len);
}

/* ---- usage ------------------------------------------------------------------------ */

int thinprov_usage(struct vmfs_fs *fs, uint32_t addr, struct thinprov_usage *u)
{
	struct vmfs_extent ext;
	bool hole = false;
	uint64_t off = 0;
	int e;

	if (!fs || !u)
		return -EINVAL;
	memset(u, 0, sizeof(*u));
	u->block_size = tp_bs(fs);
	e = tp_size(fs, addr, &u->provisioned);
	if (e)
		return e;
	while (off < u->provisioned) {
		e = vmfs_map(fs, addr, off, 0, &ext);
		if (e)
			return e;
		switch (ext.state) {
		case VMFS_EXT_ALLOCATED:
			u->allocated += ext.len;
			u->written += ext.len;
			break;
		case VMFS_EXT_TBZ:
			u->allocated += ext.len;
			u->tbz += ext.len;
			break;
		case VMFS_EXT_INLINE:
			hole = true;   /* data inside the FD: no block behind it */
			break;
		default:
			hole = true;
			break;
		}
		if (ext.file_off + ext.len <= off)
			return -EIO;   /* the map must make progress */
		off = ext.file_off + ext.len;
	}
	if (hole || u->provisioned == 0)
		u->type = THINPROV_THIN;
	else if (u->tbz)
		u->type = THINPROV_ZEROEDTHICK;
	else
		u->type = THINPROV_EAGERZEROEDTHICK;
	return 0;
}

/* ---- ordered allocation ------------------------------------------------------------ */

int tp_alloc_holes_tbz(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len)
{
	uint64_t end = off + len, size, pos;
	struct vmfs_extent ext;
	int e;

	e = tp_size(fs, addr, &size);
	if (e)
		return e;
	if (end > size)
		end = size;
	pos = off;
	while (pos < end) {
		e = vmfs_map(fs, addr, pos, end - pos, &ext);
		if (e)
			return e;
		uint64_t s = ext.file_off > pos ? ext.file_off : pos;
		uint64_t t = ext.file_off + ext.len < end ? ext.file_off + ext.len : end;
		if (t <= pos)
			return -EIO;
		if (ext.state == VMFS_EXT_HOLE || ext.state == VMFS_EXT_INLINE) {
			e = vmfs_fallocate(fs, addr, s, t - s, VMFS_ALLOC_TBZ | VMFS_ALLOC_KEEP_SIZE);
			if (e)
				return e;
		}
		pos = t;
	}
	return 0;
}

/* Write the final content of every TBZ block of [off, off+len) straight to
 * the LV (block image = zeros with @buf's bytes where the range covers it;
 * @buf NULL = zeros), then flush.  @buf is indexed from @off. */
static int prewrite_tbz(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len,
			const uint8_t *buf, bool *any)
{
	struct vmfs_bdev *bd = vmfs_fs_bdev(fs);
	uint64_t bs = tp_bs(fs), end = off + len, pos = off, size;
	uint8_t *img = NULL;
	struct vmfs_extent ext;
	int e;

	*any = false;
	e = tp_size(fs, addr, &size);
	if (e)
		return e;
	img = aligned_alloc(4096, bs);
	if (!img)
		return -ENOMEM;
	while (pos < end && pos < size) {
		e = vmfs_map(fs, addr, pos, end - pos, &ext);
		if (e)
			goto out;
		if (ext.file_off + ext.len <= pos) {
			e = -EIO;
			goto out;
		}
		if (ext.state == VMFS_EXT_TBZ) {
			for (uint64_t b = ext.file_off; b < ext.file_off + ext.len && b < end; b += bs) {
				uint64_t lv = ext.lv_off + (b - ext.file_off);
				uint64_t s = b < off ? off : b, t = b + bs < end ? b + bs : end;
				if (t <= s)
					continue;
				memset(img, 0, bs);
				if (buf)
					memcpy(img + (s - b), buf + (s - off), t - s);
				e = vmfs_bdev_write(bd, img, bs, lv);
				if (e)
					goto out;
				*any = true;
			}
		}
		pos = ext.file_off + ext.len;
	}
	if (*any)
		e = vmfs_bdev_flush(bd);
out:
	free(img);
	return e;
}

int tp_zero_tbz(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len,
		const struct thinprov_opts *o)
{
	struct vmfs_extent ext;
	uint64_t end = off + len, pos = off, size;
	bool any;
	int e;

	e = tp_size(fs, addr, &size);
	if (e)
		return e;
	if (end > size)
		end = size;
	if (tp_flags(o) & THINPROV_DOUBLE_WRITE) {
		e = prewrite_tbz(fs, addr, off, end - off, NULL, &any);
		if (e)
			return e;
	}
	/* let the fs clear the flags: it zero-fills each TBZ block again */
	while (pos < end) {
		e = vmfs_map(fs, addr, pos, end - pos, &ext);
		if (e)
			return e;
		if (ext.file_off + ext.len <= pos)
			return -EIO;
		uint64_t s = ext.file_off > pos ? ext.file_off : pos;
		uint64_t t = ext.file_off + ext.len < end ? ext.file_off + ext.len : end;
		if (ext.state == VMFS_EXT_TBZ) {
			struct vmfs_extent w;
			e = vmfs_map_write(fs, addr, s, t - s, &w);
			if (e)
				return e;
		}
		pos = t;
	}
	return 0;
}

int64_t thinprov_pwrite(struct vmfs_fs *fs, uint32_t addr, const void *buf, size_t len, uint64_t off,
			const struct thinprov_opts *o)
{
	uint64_t size;
	bool any;
	int e;

	if (!fs || (!buf && len))
		return -EINVAL;
	if (!len)
		return 0;
	if (tp_flags(o) & THINPROV_DOUBLE_WRITE) {
		e = tp_size(fs, addr, &size);
		if (e)
			return e;
		if (off + len > size) {
			/* grow first so the new blocks are inside the file */
			e = vmfs_truncate(fs, addr, off + len);
			if (e)
				return e;
		}
		e = tp_alloc_holes_tbz(fs, addr, off, len);
		if (!e)
			e = prewrite_tbz(fs, addr, off, len, buf, &any);
		if (e)
			return e;
	}
	return vmfs_pwrite(fs, addr, buf, len, off);
}

/* ---- provisioning ---------------------------------------------------------------- */

/* Allocate and zero [from, to) for eagerzeroedthick, chunk by chunk. */
static int eager_range(struct vmfs_fs *fs, uint32_t addr, uint64_t from, uint64_t to,
		       const struct thinprov_opts *o, uint64_t done0, uint64_t total)
{
	uint64_t chunk = tp_chunk(o);
	int e = 0;

	for (uint64_t p = from; p < to && !e; p += chunk) {
		uint64_t n = to - p < chunk ? to - p : chunk;
		if (!(tp_flags(o) & THINPROV_DOUBLE_WRITE)) {
			e = vmfs_fallocate(fs, addr, p, n, VMFS_ALLOC_ZERO);
		} else {
			e = vmfs_fallocate(fs, addr, p, n, VMFS_ALLOC_TBZ);
			if (!e)
				e = tp_zero_tbz(fs, addr, p, n, o);
		}
		if (!e)
			e = tp_progress(o, done0 + (p + n - from), total);
	}
	return e;
}

static int tbz_range(struct vmfs_fs *fs, uint32_t addr, uint64_t from, uint64_t to,
		     const struct thinprov_opts *o)
{
	uint64_t chunk = tp_chunk(o) * 16;   /* TBZ allocation writes no data */
	int e = 0;

	for (uint64_t p = from; p < to && !e; p += chunk) {
		uint64_t n = to - p < chunk ? to - p : chunk;
		e = vmfs_fallocate(fs, addr, p, n, VMFS_ALLOC_TBZ);
		if (!e)
			e = tp_progress(o, p + n - from, to - from);
	}
	return e;
}

int thinprov_provision(struct vmfs_fs *fs, uint32_t addr, uint64_t size, int type,
		       const struct thinprov_opts *o)
{
	uint64_t cur;
	int e;

	if (!fs || type < THINPROV_THIN || type > THINPROV_EAGERZEROEDTHICK)
		return -EINVAL;
	if (size > VMFS_MAX_FILE_SIZE)
		return -EFBIG;
	e = tp_size(fs, addr, &cur);
	if (e)
		return e;
	if (size < cur)
		return -EINVAL;
	switch (type) {
	case THINPROV_THIN:
		return vmfs_truncate(fs, addr, size);
	case THINPROV_ZEROEDTHICK:
		if (size == 0)
			return 0;
		return tbz_range(fs, addr, 0, size, o);
	default:
		if (size == 0)
			return 0;
		/* blocks already written keep their data: only holes/TBZ change */
		if (cur) {
			e = vmfs_fallocate(fs, addr, 0, cur, VMFS_ALLOC_TBZ);
			if (!e)
				e = tp_zero_tbz(fs, addr, 0, cur, o);
			if (e)
				return e;
		}
		return eager_range(fs, addr, cur, size, o, cur, size);
	}
}

int thinprov_create(struct vmfs_fs *fs, uint32_t dir, const char *name, uint64_t size, int type,
		    const struct thinprov_opts *o, uint32_t *addr)
{
	uint32_t a;
	int e;

	if (!fs || !name || !addr || type < THINPROV_THIN || type > THINPROV_EAGERZEROEDTHICK)
		return -EINVAL;
	if (size > VMFS_MAX_FILE_SIZE)
		return -EFBIG;
	e = vmfs_lookup(fs, dir, name, &a);
	if (e == 0)
		return -EEXIST;
	if (e != -ENOENT)
		return e;
	e = vmfs_create(fs, dir, name, 0600, 0, 0, &a);
	if (e)
		return e;
	e = thinprov_provision(fs, a, size, type, o);
	if (e) {
		struct thinprov_opts q = o ? *o : (struct thinprov_opts){ 0 };
		q.progress = NULL;
		thinprov_unlink(fs, dir, name, &q, NULL);
		return e;
	}
	*addr = a;
	return 0;
}

int thinprov_extend(struct vmfs_fs *fs, uint32_t addr, uint64_t size, const struct thinprov_opts *o,
		    struct thinprov_reclaim *rc)
{
	struct thinprov_usage u;
	int e;

	if (!fs)
		return -EINVAL;
	if (size > VMFS_MAX_FILE_SIZE)
		return -EFBIG;
	e = thinprov_usage(fs, addr, &u);
	if (e)
		return e;
	if (size < u.provisioned) {
		if (!(tp_flags(o) & THINPROV_FORCE))
			return -EINVAL;
		return thinprov_truncate(fs, addr, size, o, rc);
	}
	if (size == u.provisioned)
		return 0;
	switch (u.type) {
	case THINPROV_THIN:
		return vmfs_truncate(fs, addr, size);
	case THINPROV_ZEROEDTHICK:
		return tbz_range(fs, addr, u.provisioned, size, o);
	default:
		return eager_range(fs, addr, u.provisioned, size, o, 0, size - u.provisioned);
	}
}

/* Zero TBZ (and with @holes, allocate and zero holes) over the whole file. */
static int zero_all(struct vmfs_fs *fs, uint32_t addr, bool holes, const struct thinprov_opts *o)
{
	uint64_t size, chunk = tp_chunk(o);
	int e;

	e = tp_size(fs, addr, &size);
	if (e)
		return e;
	for (uint64_t p = 0; p < size; p += chunk) {
		uint64_t n = size - p < chunk ? size - p : chunk;
		if (holes) {
			e = vmfs_fallocate(fs, addr, p, n,
					   (!(tp_flags(o) & THINPROV_DOUBLE_WRITE) ? VMFS_ALLOC_ZERO
										  : VMFS_ALLOC_TBZ) |
					   VMFS_ALLOC_KEEP_SIZE);
			if (e)
				return e;
		}
		e = tp_zero_tbz(fs, addr, p, n, o);
		if (!e)
			e = tp_progress(o, p + n, size);
		if (e)
			return e;
	}
	return 0;
}

int thinprov_inflate(struct vmfs_fs *fs, uint32_t addr, const struct thinprov_opts *o)
{
	if (!fs)
		return -EINVAL;
	return zero_all(fs, addr, true, o);
}

int thinprov_eagerzero(struct vmfs_fs *fs, uint32_t addr, const struct thinprov_opts *o)
{
	if (!fs)
		return -EINVAL;
	return zero_all(fs, addr, false, o);
}
