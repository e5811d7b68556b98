/*
 * Space reclamation: every call that frees file blocks passes the freed LV
 * ranges down to the device, and the datastore-wide reclaim discards every
 * free file block.
 *
 * The filesystem does not tell us which blocks a transaction freed, so:
 * snapshot the file's allocated extents before the operation, run it, and
 * count each snapshot block the FBB bitmap now shows free.
 *
 * A fs opened with VMFS_FS_DISCARD (every host mount) has already discarded
 * those blocks inside the committing transaction, under the resource cluster
 * lock; we only read how many bytes it discarded (vmfs_fs_discard_count) and
 * do not discard them a second time.  Otherwise we flush (the in-place
 * metadata writes of the committed transaction become durable: a crash can
 * no longer bring back a file that references a discarded block) and
 * discard the free snapshot blocks ourselves.  A discard before the commit
 * would be data loss if the transaction failed.
 *
 * Known limit of that second path and of the datastore-wide reclaim (see
 * docs/thinprov.md): between our bitmap check and the discard another host
 * may allocate the block.  Tools refuse the datastore-wide reclaim while
 * other hosts are live.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tp_internal.h"

void tp_snap_free(struct tp_snap *s)
{
	free(s->ext);
	memset(s, 0, sizeof(*s));
}

int tp_snap_add(struct tp_snap *s, uint64_t lv, uint64_t len)
{
	if (s->n && s->ext[s->n - 1].lv + s->ext[s->n - 1].len == lv) {
		s->ext[s->n - 1].len += len;
		return 0;
	}
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16;
		void *p = realloc(s->ext, nc * sizeof(*s->ext));
		if (!p)
			return -ENOMEM;
		s->ext = p;
		s->cap = nc;
	}
	s->ext[s->n].lv = lv;
	s->ext[s->n].len = len;
	s->n++;
	return 0;
}

void tp_snap_mark(struct tp_snap *s)
{
	vmfs_fs_discard_count(&s->dc);
}

int tp_snap_take(struct vmfs_fs *fs, uint32_t addr, uint64_t from, uint64_t to, struct tp_snap *s)
{
	struct vmfs_stat st;
	struct vmfs_extent ext;
	uint64_t bs = tp_bs(fs), off;
	int e;

	memset(s, 0, sizeof(*s));
	tp_snap_mark(s);
	e = vmfs_stat(fs, addr, &st);
	if (e)
		return e;
	if (st.type != VMFS_TYPE_FILE || st.blk_size != bs)
		return 0;   /* resident / sub-block files hold no file blocks */
	off = from / bs * bs;
	if (to > st.size)
		to = st.size;
	while (off < to) {
		e = vmfs_map(fs, addr, off, to - off, &ext);
		if (e)
			goto fail;
		if (ext.file_off + ext.len <= off) {
			e = -EIO;
			goto fail;
		}
		if (ext.state == VMFS_EXT_ALLOCATED || ext.state == VMFS_EXT_TBZ) {
			e = tp_snap_add(s, ext.lv_off, ext.len);
			if (e)
				goto fail;
		}
		off = ext.file_off + ext.len;
	}
	return 0;
fail:
	tp_snap_free(s);
	return e;
}

/* Count what the fs discarded since @s was marked. */
static void count_fs_discards(const struct tp_snap *s, struct thinprov_reclaim *rc)
{
	struct vmfs_discard_count now;

	vmfs_fs_discard_count(&now);
	rc->discarded += now.bytes - s->dc.bytes;
	if (now.failed != s->dc.failed && !rc->discard_err)
		rc->discard_err = now.last_err;
}

static int discard_run(struct vmfs_fs *fs, uint64_t lv, uint64_t len, const struct thinprov_opts *o,
		       struct thinprov_reclaim *rc)
{
	int e;

	if (!len || (tp_flags(o) & THINPROV_NO_DISCARD))
		return 0;
	e = vmfs_bdev_discard(vmfs_fs_bdev(fs), lv, len);
	if (e == 0) {
		rc->discarded += len;
	} else {
		if (!rc->discard_err)
			rc->discard_err = e;
		if (e != -EOPNOTSUPP)
			return e;
	}
	return 0;
}

int tp_snap_reclaim(struct vmfs_fs *fs, const struct tp_snap *s, const struct thinprov_opts *o,
		    struct thinprov_reclaim *rc)
{
	struct thinprov_reclaim dummy = { 0 };
	struct thinprov_opts none = { .flags = THINPROV_NO_DISCARD };
	uint64_t bs = tp_bs(fs);
	int e;

	if (!rc)
		rc = &dummy;
	if (!s->n)
		return 0;
	if (vmfs_fs_discards(fs)) {
		/* the fs discarded what its transaction freed: count only */
		count_fs_discards(s, rc);
		o = &none;
	} else {
		/* the freeing transaction's in-place writes must be durable first */
		e = vmfs_fs_sync(fs);
		if (e)
			return e;
	}
	for (size_t i = 0; i < s->n; i++) {
		uint64_t run = 0, run_lv = 0;
		for (uint64_t lv = s->ext[i].lv; lv < s->ext[i].lv + s->ext[i].len; lv += bs) {
			int a = vmfs_addr_allocated(fs, vmfs_fb_make((uint32_t)(lv / bs), false));
			if (a < 0)
				return a;
			if (!a) {
				rc->freed += bs;
				if (!run)
					run_lv = lv;
				run += bs;
				continue;
			}
			e = discard_run(fs, run_lv, run, o, rc);
			if (e)
				return e;
			run = 0;
		}
		e = discard_run(fs, run_lv, run, o, rc);
		if (e)
			return e;
	}
	return 0;
}

int thinprov_truncate(struct vmfs_fs *fs, uint32_t addr, uint64_t size, const struct thinprov_opts *o,
		      struct thinprov_reclaim *rc)
{
	struct tp_snap s;
	int e;

	if (!fs)
		return -EINVAL;
	e = tp_snap_take(fs, addr, size, UINT64_MAX, &s);
	if (e)
		return e;
	e = vmfs_truncate(fs, addr, size);
	if (!e)
		e = tp_snap_reclaim(fs, &s, o, rc);
	tp_snap_free(&s);
	return e;
}

int thinprov_unlink(struct vmfs_fs *fs, uint32_t dir, const char *name, const struct thinprov_opts *o,
		    struct thinprov_reclaim *rc)
{
	struct tp_snap s = { 0 };
	struct vmfs_stat st;
	uint32_t addr;
	int e;

	if (!fs || !name)
		return -EINVAL;
	e = vmfs_lookup(fs, dir, name, &addr);
	if (e)
		return e;
	e = vmfs_stat(fs, addr, &st);
	if (e)
		return e;
	if (st.type == VMFS_TYPE_FILE && st.nlink == 1) {
		e = tp_snap_take(fs, addr, 0, UINT64_MAX, &s);
		if (e)
			return e;
	}
	e = vmfs_unlink(fs, dir, name);
	if (!e)
		e = tp_snap_reclaim(fs, &s, o, rc);
	tp_snap_free(&s);
	return e;
}

int thinprov_punch_hole(struct vmfs_fs *fs, uint32_t addr, uint64_t off, uint64_t len,
			const struct thinprov_opts *o, struct thinprov_reclaim *rc)
{
	uint64_t size, end, bs, step;
	int e;

	if (!fs)
		return -EINVAL;
	e = tp_size(fs, addr, &size);
	if (e)
		return e;
	if (off >= size || !len)
		return 0;
	end = len > size - off ? size : off + len;
	bs = tp_bs(fs);
	step = tp_free_batch(fs, o) * bs;
	/* one vmfs_punch (one transaction) per batch of blocks; the seams are
	 * block boundaries, so no whole block is split into two partial ones */
	for (uint64_t p = off, q; p < end && !e; p = q) {
		struct tp_snap s;
		q = (p / bs) * bs + step;
		if (q > end)
			q = end;
		e = tp_snap_take(fs, addr, p, q, &s);
		if (e)
			break;
		e = vmfs_punch(fs, addr, p, q - p);
		if (!e)
			e = tp_snap_reclaim(fs, &s, o, rc);
		tp_snap_free(&s);
		if (!e)
			e = tp_progress(o, q - off, end - off);
	}
	return e;
}

/* ---- datastore-wide ---------------------------------------------------------------- */

int thinprov_reclaim_free(struct vmfs_fs *fs, const struct thinprov_opts *o, struct thinprov_reclaim *rc)
{
	struct thinprov_reclaim dummy = { 0 };
	struct vmfs_res_info ri;
	struct vmfs_cluster *c = NULL;
	uint64_t bs, run = 0, run_lv = 0, lv_size;
	int e;

	if (!fs)
		return -EINVAL;
	if (!rc)
		rc = &dummy;
	bs = tp_bs(fs);
	lv_size = vmfs_bdev_size(vmfs_fs_bdev(fs));
	e = vmfs_res_get_info(fs, VMFS_RES_FBB, &ri);
	if (e)
		return e;
	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	e = vmfs_fs_sync(fs);
	for (uint32_t idx = 0; idx < ri.nclusters && !e; idx++) {
		e = vmfs_res_read_cluster(fs, VMFS_RES_FBB, idx, c, NULL);
		if (e == -ENODATA) {
			e = 0;
			continue;
		}
		if (e)
			break;
		if (c->total > ri.ipe || c->total > sizeof(c->bitmap) * 8) {
			e = -EUCLEAN;
			break;
		}
		for (uint32_t i = 0; i < c->total && !e; i++) {
			uint64_t blk = (uint64_t)idx * ri.ipe + i;
			uint64_t lv = blk * bs;
			bool isfree = (c->bitmap[i / 8] >> (i % 8)) & 1;
			if (isfree && blk < ri.total_items && lv + bs <= lv_size) {
				rc->freed += bs;
				if (run && run_lv + run == lv) {
					run += bs;
				} else {
					e = discard_run(fs, run_lv, run, o, rc);
					run_lv = lv;
					run = bs;
				}
			}
		}
		if (!e)
			e = tp_progress(o, idx + 1, ri.nclusters);
	}
	if (!e)
		e = discard_run(fs, run_lv, run, o, rc);
	free(c);
	return e;
}

struct walk {
	struct vmfs_fs *fs;
	struct thinprov_ds_usage *u;
	int depth;
};

static int walk_dir(struct walk *w, uint32_t dir);

static int walk_cb(void *ctx, const struct vmfs_dirent *de)
{
	struct walk *w = ctx;
	struct thinprov_usage fu;
	int e;

	if (!strcmp(de->name, ".") || !strcmp(de->name, ".."))
		return 0;
	if (de->type == VMFS_TYPE_DIR)
		return walk_dir(w, de->addr);
	if (de->type != VMFS_TYPE_FILE)
		return 0;
	e = thinprov_usage(w->fs, de->addr, &fu);
	if (e)
		return e;
	w->u->files++;
	w->u->provisioned += fu.provisioned;
	w->u->allocated += fu.allocated;
	w->u->written += fu.written;
	w->u->tbz += fu.tbz;
	return 0;
}

static int walk_dir(struct walk *w, uint32_t dir)
{
	int e;

	if (w->depth > 64)
		return -ELOOP;
	w->depth++;
	e = vmfs_readdir(w->fs, dir, walk_cb, w);
	w->depth--;
	return e;
}

int thinprov_ds_usage(struct vmfs_fs *fs, struct thinprov_ds_usage *u)
{
	struct vmfs_statfs st;
	struct walk w = { fs, u, 0 };
	int e;

	if (!fs || !u)
		return -EINVAL;
	memset(u, 0, sizeof(*u));
	e = vmfs_fs_statfs(fs, &st);
	if (e)
		return e;
	u->capacity = st.total_blocks * st.block_size;
	u->free = st.free_blocks * st.block_size;
	u->used = u->capacity - u->free;
	return walk_dir(&w, VMFS_ROOT_ADDR);
}
