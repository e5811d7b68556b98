/*
 * Resource files (.fbb.sf .fdc.sf .pbc.sf .sbc.sf, FORMAT.md §5): bootstrap,
 * address arithmetic and item allocation.  Cluster headers are read through
 * the transaction; only their metadata sector (bytes 0x200..0x3FF) is ever
 * rewritten, the lock sector belongs to the lock manager.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"

#define NO_LV UINT64_MAX

static const char *const res_names[VMFS_RES_COUNT] = { ".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf" };
static const uint32_t res_magic[VMFS_RES_COUNT] = { OD_MAGIC_FBB, OD_MAGIC_FDC, OD_MAGIC_PBC, OD_MAGIC_SBC };
/* item limits from the address encodings (§6) */
static const uint32_t max_ipe[VMFS_RES_COUNT] = { OD_RES_MAX_IPE, 1024, 16, 64 };
static const uint64_t max_clusters[VMFS_RES_COUNT] = { 1ull << 26, 1ull << 16, 1ull << 22, 1ull << 22 };

int res_file_lv(struct vmfs_fs *fs, struct vmfs_res *r, uint64_t off, uint64_t len, uint64_t *lv)
{
	uint64_t blk = off / fs->bs;

	if (off > r->file_size || len > r->file_size - off || (off % fs->bs) + len > fs->bs) {
		fs_err(fs, "%s: access [0x%llx,+0x%llx) beyond the file (size 0x%llx) or across a block",
		       res_names[r->kind], (unsigned long long)off, (unsigned long long)len,
		       (unsigned long long)r->file_size);
		return -EUCLEAN;
	}
	if (blk >= r->nblocks || r->blk_lv[blk] == NO_LV) {
		fs_err(fs, "%s: file block %llu is not allocated", res_names[r->kind],
		       (unsigned long long)blk);
		return -EUCLEAN;
	}
	*lv = r->blk_lv[blk] + off % fs->bs;
	return 0;
}

int res_cluster_lv(struct vmfs_fs *fs, struct vmfs_res *r, uint32_t cluster, uint64_t *lv)
{
	uint64_t g = cluster / r->h.epa, ci = cluster % r->h.epa;

	if (cluster >= r->nclusters)
		return -EINVAL;
	return res_file_lv(fs, r, r->h.hdr_size + g * r->h.area_size + ci * OD_CLUSTER_HDR_SIZE,
			   OD_CLUSTER_HDR_SIZE, lv);
}

int res_item_lv(struct vmfs_fs *fs, struct vmfs_res *r, uint64_t index, uint64_t *lv)
{
	uint64_t ipa = (uint64_t)r->h.epa * r->h.ipe;

	if (!r->h.data_size || index >= r->h.total_items)
		return -EINVAL;
	uint64_t g = index / ipa;
	return res_file_lv(fs, r, r->h.hdr_size + g * r->h.area_size + (uint64_t)r->h.epa * 1024u +
			   (index % ipa) * r->h.data_size, r->h.data_size, lv);
}

/* ---- addresses ------------------------------------------------------------------- */

int addr_to_index(struct vmfs_fs *fs, uint32_t addr, int *kind, uint64_t *index)
{
	uint32_t c, i;
	int k;

	switch (vmfs_addr_type(addr)) {
	case VMFS_ADDR_FB:
		*kind = VMFS_RES_FBB;
		*index = vmfs_fb_block(addr);
		if (*index >= fs->res[VMFS_RES_FBB].h.total_items)
			return -EUCLEAN;
		return 0;
	case VMFS_ADDR_SB: k = VMFS_RES_SBC; c = vmfs_sb_cluster(addr); i = vmfs_sb_item(addr); break;
	case VMFS_ADDR_PB: k = VMFS_RES_PBC; c = vmfs_pb_cluster(addr); i = vmfs_pb_item(addr); break;
	case VMFS_ADDR_FD: k = VMFS_RES_FDC; c = vmfs_fd_cluster(addr); i = vmfs_fd_item(addr); break;
	default: return -EUCLEAN;
	}
	if (i >= fs->res[k].h.ipe)
		return -EUCLEAN;
	*kind = k;
	*index = (uint64_t)c * fs->res[k].h.ipe + i;
	if (*index >= fs->res[k].h.total_items)
		return -EUCLEAN;
	return 0;
}

uint32_t index_to_addr(struct vmfs_fs *fs, int kind, uint64_t index)
{
	uint32_t ipe = fs->res[kind].h.ipe;
	uint32_t c = (uint32_t)(index / ipe), i = (uint32_t)(index % ipe);

	switch (kind) {
	case VMFS_RES_FBB: return vmfs_fb_make((uint32_t)index, false);
	case VMFS_RES_SBC: return vmfs_sb_make(c, i);
	case VMFS_RES_PBC: return vmfs_pb_make(c, i);
	default: return vmfs_fd_make(c, i);
	}
}

/* ---- cluster headers -------------------------------------------------------------- */

static int read_cluster(struct vmfs_fs *fs, struct vmfs_txn *t, struct vmfs_res *r, uint32_t c,
			struct vmfs_cluster *cl, uint64_t *lv, bool quiet_unwritten)
{
	uint8_t b[OD_CLUSTER_HDR_SIZE];
	int e;

	e = res_cluster_lv(fs, r, c, lv);
	if (e)
		return e;
	e = t ? txn_read(t, *lv, b, sizeof(b)) : vmfs_bdev_read(fs->bd, b, sizeof(b), *lv);
	if (e)
		return e;
	od_cluster_decode(b, cl);
	if (cl->lock_magic == 0)
		return -ENODATA;
	if (cl->lock_magic != r->magic || cl->id != c || cl->total > r->h.ipe || cl->free > cl->total ||
	    (cl->total + 7) / 8 > OD_CLUSTER_BITMAP_MAX) {
		if (!quiet_unwritten)
			fs_err(fs, "%s: cluster %u header corrupt (magic 0x%08x id %u total %u free %u)",
			       res_names[r->kind], c, cl->lock_magic, cl->id, cl->total, cl->free);
		return -EUCLEAN;
	}
	return 0;
}

static int write_cluster_meta(struct vmfs_txn *t, uint64_t lv, const struct vmfs_cluster *cl)
{
	uint8_t m[512];
	int e = txn_read(t, lv + OD_LOCK_SIZE, m, sizeof(m));

	if (e)
		return e;
	od_cluster_meta_encode(cl, m);
	return txn_write(t, lv + OD_LOCK_SIZE, m, sizeof(m));
}

static inline bool bit_free(const struct vmfs_cluster *c, uint32_t i)
{
	return (c->bitmap[i / 8] >> (i % 8)) & 1;
}

static uint32_t first_free(const struct vmfs_cluster *c)
{
	for (uint32_t i = 0; i < c->total; i++)
		if (bit_free(c, i))
			return i;
	return 0;
}

/* First free item at or after @from, wrapping; UINT32_MAX if none. */
static uint32_t free_from_item(const struct vmfs_cluster *c, uint32_t from)
{
	for (uint32_t n = 0; n < c->total; n++) {
		uint32_t i = (from + n) % c->total;
		if (bit_free(c, i))
			return i;
	}
	return UINT32_MAX;
}

/* FBB: a file's run of blocks that cannot continue where it ended starts a
 * wholly free aligned window of this many blocks (when its cluster has one),
 * so two files growing at the same time do not interleave block by block and
 * a sequential write does not fill single-block holes. */
#define FBB_WINDOW 32u

static uint32_t free_window(const struct vmfs_cluster *c, uint32_t from)
{
	uint32_t nw = c->total / FBB_WINDOW;

	for (uint32_t n = 0; n < nw; n++) {
		uint32_t w = (from / FBB_WINDOW + n) % nw, i;
		for (i = w * FBB_WINDOW; i < (w + 1) * FBB_WINDOW; i++)
			if (!bit_free(c, i))
				break;
		if (i == (w + 1) * FBB_WINDOW)
			return w * FBB_WINDOW;
	}
	return UINT32_MAX;
}

/* The item to take in cluster @cl: @want if it is free; else, when @want
 * continues a file's run of blocks, the start of a free window at or after
 * it; else the first free item at or after @want.  UINT32_MAX: none free. */
static uint32_t pick_item(const struct vmfs_cluster *cl, int kind, uint32_t want, bool run)
{
	uint32_t i;

	if (want >= cl->total)
		want = 0;
	if (bit_free(cl, want))
		return want;
	if (run && kind == VMFS_RES_FBB && (i = free_window(cl, want)) != UINT32_MAX)
		return i;
	return free_from_item(cl, want);
}

/* Try to take an item of cluster @c (item @want preferred, @run: see
 * pick_item).  0: taken; -EAGAIN: none here (full, unformatted, or busy:
 * *busy set). */
static int alloc_in(struct vmfs_txn *t, struct vmfs_res *r, uint32_t c, uint32_t want, bool run,
		    bool wait, bool *busy, uint64_t *index)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_cluster cl;
	uint64_t lv;
	uint32_t i;
	int e;

	e = read_cluster(fs, t, r, c, &cl, &lv, false);
	if (e == -ENODATA)
		return -EAGAIN;
	if (e)
		return e;
	if (cl.free == 0)
		return -EAGAIN;
	e = txn_lock(t, lv, wait ? VMFS_LOCK_EXCL : VMFS_LOCK_EXCL | VMFS_LOCK_TRY);
	if (e == -EBUSY) {
		*busy = true;
		return -EAGAIN;
	}
	if (e)
		return e;
	e = read_cluster(fs, t, r, c, &cl, &lv, false);
	if (e)
		return e;
	if (cl.free == 0)
		return -EAGAIN;
	i = pick_item(&cl, r->kind, want, run);
	if (i == UINT32_MAX) {
		fs_err(fs, "%s: cluster %u claims %u free items but its bitmap has none",
		       res_names[r->kind], c, cl.free);
		return -EAGAIN;
	}
	uint64_t idx = (uint64_t)c * r->h.ipe + i;
	if (idx >= r->h.total_items) {
		fs_err(fs, "%s: cluster %u item %u beyond total_items", res_names[r->kind], c, i);
		return -EUCLEAN;
	}
	cl.bitmap[i / 8] &= (uint8_t)~(1u << (i % 8));
	cl.free--;
	cl.ffree = first_free(&cl);
	e = write_cluster_meta(t, lv, &cl);
	if (e)
		return e;
	r->hint = c;
	*index = idx;
	return 0;
}

int res_alloc_near(struct vmfs_txn *t, int kind, uint32_t hint, uint64_t near, uint64_t *index)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_res *r = &fs->res[kind];
	uint32_t start, near_c = UINT32_MAX;
	bool busy = false;
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	/* the item after the file's previous one, in its cluster */
	if (near != RES_NO_NEAR && near < r->h.total_items) {
		near_c = (uint32_t)(near / r->h.ipe);
		e = alloc_in(t, r, near_c, (uint32_t)(near % r->h.ipe), true, false, &busy, index);
		if (e != -EAGAIN)
			return e;
	}
	/* then this host's clusters (the hint follows its last allocation).
	 * First pass: skip clusters another host is working in (TRY); if every
	 * cluster with free items was busy, a second pass waits for them. */
	start = (hint ? hint : r->hint) % r->nclusters;
	for (int pass = 0; pass < 2; pass++) {
		if (pass && !busy)
			break;
		for (uint32_t n = 0; n < r->nclusters; n++) {
			uint32_t c = (start + n) % r->nclusters;
			if (c == near_c && !pass && !busy)
				continue;   /* just found full */
			e = alloc_in(t, r, c, 0, false, pass == 1, &busy, index);
			if (e != -EAGAIN)
				return e;
		}
	}
	return -ENOSPC;
}

int res_alloc(struct vmfs_txn *t, int kind, uint32_t hint, uint64_t *index)
{
	return res_alloc_near(t, kind, hint, RES_NO_NEAR, index);
}

/* Spread hosts over the populated clusters of each resource by slot: slot
 * 0, 1, 2, 3, ... start at 0, 1/2, 1/4, 3/4, ... of them (bit-reversed),
 * so the first hosts on a volume are as far apart as they can be. */
void vmfs_fs_set_alloc_slot(struct vmfs_fs *fs, unsigned slot)
{
	uint32_t rev = 0;

	for (int b = 0; b < 32; b++)
		rev |= ((slot >> b) & 1u) << (31 - b);
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		struct vmfs_res *r = &fs->res[k];
		uint64_t used = (r->h.total_items + r->h.ipe - 1) / r->h.ipe;
		if (!r->h.ipe || !r->nclusters)
			continue;
		if (used > r->nclusters)
			used = r->nclusters;
		r->hint = (uint32_t)(((uint64_t)rev * used) >> 32);
		if (k == VMFS_RES_FDC && r->hint == 0 && used > 1)
			r->hint = 1;   /* cluster 0 holds the system files */
	}
}

int res_free(struct vmfs_txn *t, int kind, uint64_t index)
{
	struct vmfs_fs *fs = t->fs;
	struct vmfs_res *r = &fs->res[kind];
	struct vmfs_cluster cl;
	uint32_t c = (uint32_t)(index / r->h.ipe), i = (uint32_t)(index % r->h.ipe);
	uint64_t lv;
	int e;

	if (index >= r->h.total_items)
		return -EUCLEAN;
	e = res_cluster_lv(fs, r, c, &lv);
	if (e)
		return e;
	e = txn_lock(t, lv, VMFS_LOCK_EXCL);
	if (e)
		return e;
	e = read_cluster(fs, t, r, c, &cl, &lv, false);
	if (e)
		return e == -ENODATA ? -EUCLEAN : e;
	if (i >= cl.total || bit_free(&cl, i)) {
		fs_err(fs, "%s: freeing item %llu that is not allocated", res_names[kind],
		       (unsigned long long)index);
		return -EUCLEAN;
	}
	cl.bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
	cl.free++;
	cl.ffree = first_free(&cl);
	return write_cluster_meta(t, lv, &cl);
}

int res_is_allocated(struct vmfs_fs *fs, int kind, uint64_t index)
{
	struct vmfs_res *r = &fs->res[kind];
	struct vmfs_cluster cl;
	uint32_t c = (uint32_t)(index / r->h.ipe), i = (uint32_t)(index % r->h.ipe);
	uint64_t lv;
	int e;

	if (index >= r->h.total_items)
		return -EINVAL;
	e = read_cluster(fs, NULL, r, c, &cl, &lv, false);
	if (e == -ENODATA)
		return 0;
	if (e)
		return e;
	if (i >= cl.total)
		return 0;
	return !bit_free(&cl, i);
}

/* ---- bootstrap ------------------------------------------------------------------ */

static int validate_hdr(struct vmfs_fs *fs, struct vmfs_res *r)
{
	const struct od_res_hdr *h = &r->h;
	const char *n = res_names[r->kind];
	uint64_t area, nclusters;

	if (h->ipe < 1 || h->ipe > max_ipe[r->kind] || h->epa < 1 || h->epa > 65536 ||
	    h->area_count < 1 || h->hdr_size < 512 || h->hdr_size % 512) {
		fs_err(fs, "%s: bad resource header (items/cluster %u, clusters/group %u, groups %u, "
		       "header size %u)", n, h->ipe, h->epa, h->area_count, h->hdr_size);
		return -EUCLEAN;
	}
	switch (r->kind) {
	case VMFS_RES_FBB:
		if (h->data_size != 0)
			goto bad_ds;
		break;
	case VMFS_RES_FDC:
		if (h->data_size != OD_FD_SIZE)
			goto bad_ds;
		break;
	case VMFS_RES_PBC:
		if (h->data_size != 4096)
			goto bad_ds;
		break;
	default:
		if (h->data_size < 512 || h->data_size % 512 || h->data_size > fs->bs ||
		    fs->bs % h->data_size)
			goto bad_ds;
		break;
	}
	area = (uint64_t)h->epa * 1024u + (uint64_t)h->epa * h->ipe * h->data_size;
	if (area != h->area_size) {
		fs_err(fs, "%s: group size %u, expected %llu", n, h->area_size, (unsigned long long)area);
		return -EUCLEAN;
	}
	nclusters = (uint64_t)h->area_count * h->epa;
	if (nclusters > max_clusters[r->kind] || h->total_items > nclusters * h->ipe ||
	    h->total_items == 0) {
		fs_err(fs, "%s: %u items in %llu clusters is inconsistent", n, h->total_items,
		       (unsigned long long)nclusters);
		return -EUCLEAN;
	}
	if (r->kind == VMFS_RES_FBB && h->total_items > fs->total_blocks) {
		fs_err(fs, "%s: %u blocks but the volume has only %llu", n, h->total_items,
		       (unsigned long long)fs->total_blocks);
		return -EUCLEAN;
	}
	r->nclusters = (uint32_t)nclusters;
	return 0;
bad_ds:
	fs_err(fs, "%s: unsupported item size %u", n, h->data_size);
	return -EUCLEAN;
}

/* Map the blocks of a resource file from its FD. */
static int map_file(struct vmfs_fs *fs, struct vmfs_res *r, uint32_t addr)
{
	struct vmfs_inode ino;
	uint64_t nb;
	int e;

	e = iread(fs, addr, &ino);
	if (e)
		return e;
	if (ino.fd.zla != OD_ZLA_FB && ino.fd.zla != OD_ZLA_PB) {
		fs_err(fs, "%s: unsupported addressing mode %u", res_names[r->kind], ino.fd.zla);
		return -EUCLEAN;
	}
	nb = (ino.fd.size + fs->bs - 1) / fs->bs;
	if (nb == 0 || nb > (1u << 20)) {
		fs_err(fs, "%s: bad size %llu", res_names[r->kind], (unsigned long long)ino.fd.size);
		return -EUCLEAN;
	}
	uint64_t *m = malloc(nb * sizeof(*m));
	if (!m)
		return -ENOMEM;
	for (uint64_t b = 0; b < nb; b++) {
		struct vmfs_extent ext;
		e = ino_map(fs, &ino, b * fs->bs, fs->bs, &ext);
		if (e) {
			free(m);
			return e;
		}
		m[b] = ext.state == VMFS_EXT_ALLOCATED ? ext.lv_off - (ext.file_off - b * fs->bs) : NO_LV;
		if (ext.state == VMFS_EXT_ALLOCATED && ext.file_off != b * fs->bs)
			m[b] = ext.lv_off + (b * fs->bs - ext.file_off);
	}
	free(r->blk_lv);
	r->blk_lv = m;
	r->nblocks = (uint32_t)nb;
	r->file_size = ino.fd.size;
	r->fd_addr = addr;
	return 0;
}

static int read_hdr(struct vmfs_fs *fs, struct vmfs_res *r)
{
	uint8_t b[512];
	uint64_t lv;
	int e = res_file_lv(fs, r, 0, 512, &lv);

	if (e)
		return e;
	e = vmfs_bdev_read(fs->bd, b, 512, lv);
	if (e)
		return e;
	od_res_hdr_decode(b, &r->h);
	return validate_hdr(fs, r);
}

struct find_ctx {
	uint32_t addr[VMFS_RES_COUNT];
};

static int find_cb(void *ctx, const struct vmfs_dirent *de)
{
	struct find_ctx *f = ctx;

	for (int k = 0; k < VMFS_RES_COUNT; k++)
		if (!f->addr[k] && !strcmp(de->name, res_names[k]))
			f->addr[k] = de->addr;
	return 0;
}

int res_open_all(struct vmfs_fs *fs)
{
	struct find_ctx f = { { 0 } };
	struct vmfs_res *fdc = &fs->res[VMFS_RES_FDC];
	uint64_t fdc_base = fs->bs >= OD_HB_END ? 1 : OD_HB_END / fs->bs;
	int e;

	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		fs->res[k].kind = k;
		fs->res[k].magic = res_magic[k];
	}
	fs->info.fdc_base = (uint32_t)fdc_base;
	if (fdc_base >= fs->total_blocks) {
		fs_err(fs, "volume too small for an FDC");
		return -EUCLEAN;
	}
	/* bootstrap FDC: one block at fdc_base (§4.2 step 2) */
	fdc->blk_lv = malloc(sizeof(uint64_t));
	if (!fdc->blk_lv)
		return -ENOMEM;
	fdc->blk_lv[0] = fdc_base * fs->bs;
	fdc->nblocks = 1;
	fdc->file_size = fs->bs;
	e = read_hdr(fs, fdc);
	if (e)
		return e;
	/* FBB limits used while mapping: everything inside the LV */
	fs->res[VMFS_RES_FBB].h.total_items = (uint32_t)fs->total_blocks;
	e = vmfs_readdir(fs, VMFS_ROOT_ADDR, find_cb, &f);
	if (e) {
		fs_err(fs, "cannot read the root directory: %d", e);
		return e;
	}
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		struct vmfs_res *r = &fs->res[k];
		if (!f.addr[k]) {
			fs_err(fs, "system file %s missing from the root directory", res_names[k]);
			return -EUCLEAN;
		}
		e = map_file(fs, r, f.addr[k]);
		if (e)
			return e;
		e = read_hdr(fs, r);
		if (e)
			return e;
		if (k == VMFS_RES_FBB)
			fs->total_blocks = r->h.total_items;
	}
	for (int k = 0; k < VMFS_RES_COUNT; k++)
		if (!fs->res[k].hint)
			fs->res[k].hint = k == VMFS_RES_FDC && fs->res[k].nclusters > 1 ? 1 : 0;
	return 0;
}

void res_close_all(struct vmfs_fs *fs)
{
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		free(fs->res[k].blk_lv);
		fs->res[k].blk_lv = NULL;
	}
}

/* ---- public read API -------------------------------------------------------------- */

int vmfs_res_get_info(struct vmfs_fs *fs, int kind, struct vmfs_res_info *ri)
{
	if (kind < 0 || kind >= VMFS_RES_COUNT || !ri)
		return -EINVAL;
	struct vmfs_res *r = &fs->res[kind];
	ri->magic = r->magic;
	ri->fd_addr = r->fd_addr;
	ri->ipe = r->h.ipe;
	ri->epa = r->h.epa;
	ri->hdr_size = r->h.hdr_size;
	ri->data_size = r->h.data_size;
	ri->area_size = r->h.area_size;
	ri->total_items = r->h.total_items;
	ri->area_count = r->h.area_count;
	ri->nclusters = r->nclusters;
	ri->file_size = r->file_size;
	return 0;
}

int vmfs_res_read_cluster(struct vmfs_fs *fs, int kind, uint32_t idx, struct vmfs_cluster *c,
			  uint64_t *lv_off)
{
	uint64_t lv = 0;
	int e;

	if (kind < 0 || kind >= VMFS_RES_COUNT || !c)
		return -EINVAL;
	if (idx >= fs->res[kind].nclusters)
		return -EINVAL;
	e = read_cluster(fs, NULL, &fs->res[kind], idx, c, &lv, true);
	if (lv_off)
		*lv_off = lv;
	return e;
}

int vmfs_res_item_lv(struct vmfs_fs *fs, int kind, uint64_t index, uint64_t *lv_off)
{
	if (kind <= VMFS_RES_FBB || kind >= VMFS_RES_COUNT || !lv_off)
		return -EINVAL;
	return res_item_lv(fs, &fs->res[kind], index, lv_off);
}

int vmfs_addr_index(struct vmfs_fs *fs, uint32_t addr, uint64_t *index)
{
	int kind;

	return addr_to_index(fs, addr, &kind, index);
}

int vmfs_addr_allocated(struct vmfs_fs *fs, uint32_t addr)
{
	uint64_t index;
	int kind, e = addr_to_index(fs, addr, &kind, &index);

	if (e)
		return e;
	return res_is_allocated(fs, kind, index);
}
