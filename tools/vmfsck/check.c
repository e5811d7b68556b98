/*
 * One check pass: headers, resource cluster headers (bitmaps cached as bit
 * arrays), one streaming read of .fdc.sf (skipping clusters a valid header
 * says are all free) with the block walk of every live descriptor, the
 * directory tree from the root, orphans, link counts, and the comparison of
 * every bitmap with what the files really use.  Problems are printed as they
 * are found; the repairs they call for are queued (fix.c applies them).
 * Only when some item is used twice is .fdc.sf read a second time, to name
 * every user.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfsck.h"

const char *const res_name[VMFS_RES_COUNT] = { ".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf" };
const char *const item_name[VMFS_RES_COUNT] = { "file block", "file descriptor", "pointer block",
						"sub-block" };
static const uint32_t res_magic[VMFS_RES_COUNT] = { VMFS_MAGIC_FBB, VMFS_MAGIC_FDC, VMFS_MAGIC_PBC,
						    VMFS_MAGIC_SBC };

#define PTRS_PER_PB 1024u
#define DIRENT_SIZE 140u
#define MAX_LISTED  20u   /* lost/unallocated items listed one by one per resource */

static uint8_t popcnt8[256];

static void init_popcnt(void)
{
	for (unsigned v = 1; v < 256; v++)
		popcnt8[v] = (uint8_t)(popcnt8[v >> 1] + (v & 1));
}

/* A device error (not corrupt metadata): the check is incomplete, exit 8. */
static int ioerr(struct ck *c, int e)
{
	if (e == -EIO || e == -ENXIO || e == -ENOMEM || e == -ENODEV)
		c->io_error = true;
	return e;
}

/* ---- FD decoding (FORMAT.md §7) -------------------------------------------------- */

static void fd_decode(const uint8_t *b, struct vmfs_fd *fd)
{
	memset(fd, 0, sizeof(*fd));
	fd->lock_magic = le32(b);
	fd->lock_pos = le64(b + 4);
	fd->id = le32(b + 0x200);
	fd->gen = le32(b + 0x204);
	fd->nlink = le32(b + 0x208);
	fd->type = le32(b + 0x20C);
	fd->flags = le32(b + 0x210);
	fd->size = le64(b + 0x214);
	fd->blk_size = le64(b + 0x21C);
	fd->blk_count = le64(b + 0x224);
	fd->mode = le32(b + 0x240);
	fd->zla = le32(b + 0x244);
	fd->tbz = le32(b + 0x248);
	fd->cow = le32(b + 0x24C);
	fd->num_pb = le32(b + 0x25C);
	for (unsigned i = 0; i < 256; i++)
		fd->blocks[i] = le32(b + 0x400 + 4 * i);
}

static uint32_t fd_addr_of(const struct ck *c, uint64_t index)
{
	uint32_t ipe = c->ri[VMFS_RES_FDC].ipe;
	return vmfs_fd_make((uint32_t)(index / ipe), (uint32_t)(index % ipe));
}

static int fd_index_of(struct ck *c, uint32_t addr, uint64_t *index)
{
	if (vmfs_addr_type(addr) != VMFS_ADDR_FD)
		return -EINVAL;
	if (vmfs_fd_item(addr) >= c->ri[VMFS_RES_FDC].ipe)
		return -EINVAL;
	*index = (uint64_t)vmfs_fd_cluster(addr) * c->ri[VMFS_RES_FDC].ipe + vmfs_fd_item(addr);
	return *index < c->nfds ? 0 : -EINVAL;
}

static uint64_t mode_cap(uint32_t zla)
{
	switch (zla) {
	case VMFS_ZLA_FB: case VMFS_ZLA_SB: return 256;
	case VMFS_ZLA_PB: return 256ull * PTRS_PER_PB;
	case VMFS_ZLA_DOUBLE: return 256ull * PTRS_PER_PB * PTRS_PER_PB;
	default: return 0;
	}
}

/* Why an FD cannot be used, or NULL. */
static const char *fd_invalid(struct ck *c, const struct vmfs_fd *fd, char *buf, size_t n)
{
	uint64_t sbs = c->ri[VMFS_RES_SBC].data_size;

	if (fd->type < VMFS_TYPE_VOLUME || fd->type > VMFS_TYPE_RDM) {
		snprintf(buf, n, "unknown type %u", fd->type);
		return buf;
	}
	switch (fd->zla) {
	case VMFS_ZLA_RESIDENT:
		if (fd->size > 1024) {
			snprintf(buf, n, "resident file of %llu bytes (at most 1024)",
				 (unsigned long long)fd->size);
			return buf;
		}
		break;
	case VMFS_ZLA_SB:
		if (fd->blk_size != sbs)
			goto bad_bs;
		break;
	case VMFS_ZLA_FB: case VMFS_ZLA_PB: case VMFS_ZLA_DOUBLE:
		if (fd->blk_size != c->bs)
			goto bad_bs;
		break;
	case VMFS_ZLA_PB2:
		break;
	default:
		if (fd->type == VMFS_TYPE_RDM)
			break;
		snprintf(buf, n, "unknown addressing mode %u", fd->zla);
		return buf;
	}
	if (mode_cap(fd->zla) && (fd->size > (1ull << 62) ||
				  (fd->size + fd->blk_size - 1) / fd->blk_size > mode_cap(fd->zla))) {
		snprintf(buf, n, "size %llu too large for addressing mode %u", (unsigned long long)fd->size,
			 fd->zla);
		return buf;
	}
	if (fd->type == VMFS_TYPE_DIR && (fd->size % DIRENT_SIZE || fd->zla == VMFS_ZLA_RESIDENT ||
					  fd->size > (32ull << 20))) {
		snprintf(buf, n, "directory of size %llu (not a whole number of 140-byte entries)",
			 (unsigned long long)fd->size);
		return buf;
	}
	return NULL;
bad_bs:
	snprintf(buf, n, "block size %llu does not match addressing mode %u",
		 (unsigned long long)fd->blk_size, fd->zla);
	return buf;
}

/* ---- block walk ---------------------------------------------------------------------- */

struct walk {
	uint32_t fd_addr;
	const struct vmfs_fd *fd;
	uint64_t nblocks, ntbz;
	bool find_dups;           /* second pass: only record who uses duplicated items */
};

static int item_of(struct ck *c, uint32_t a, int *kind, uint64_t *index)
{
	switch (vmfs_addr_type(a)) {
	case VMFS_ADDR_FB:
		*kind = VMFS_RES_FBB;
		*index = vmfs_fb_block(a);
		return (a & 0x8) || *index >= c->ri[VMFS_RES_FBB].total_items ? -EINVAL : 0;
	case VMFS_ADDR_SB:
		*kind = VMFS_RES_SBC;
		if ((a & 0x20) || vmfs_sb_item(a) >= c->ri[VMFS_RES_SBC].ipe)
			return -EINVAL;
		*index = (uint64_t)vmfs_sb_cluster(a) * c->ri[VMFS_RES_SBC].ipe + vmfs_sb_item(a);
		return *index < c->ri[VMFS_RES_SBC].total_items ? 0 : -EINVAL;
	case VMFS_ADDR_PB:
		*kind = VMFS_RES_PBC;
		if ((a & 0x38) || vmfs_pb_item(a) >= c->ri[VMFS_RES_PBC].ipe)
			return -EINVAL;
		*index = (uint64_t)vmfs_pb_cluster(a) * c->ri[VMFS_RES_PBC].ipe + vmfs_pb_item(a);
		return *index < c->ri[VMFS_RES_PBC].total_items ? 0 : -EINVAL;
	default:
		return -EINVAL;
	}
}

/* Record one reference; returns true when the item was already used. */
static bool ref(struct ck *c, int kind, uint64_t index)
{
	if (bit_get(c->used[kind], index)) {
		if (!bit_get(c->dup[kind], index)) {
			bit_set(c->dup[kind], index);
			c->ndups++;
		}
		return true;
	}
	bit_set(c->used[kind], index);
	return false;
}

struct dupuse {
	uint32_t fd, pb, slot, addr;
	int kind;
	uint64_t index;
	bool first;               /* this user keeps the item */
};
static struct dupuse *dupv;
static size_t ndupv, capdupv;
static uint8_t *dup_first[VMFS_RES_COUNT];

static void bad_ptr(struct ck *c, struct walk *w, uint32_t pb, unsigned slot, uint32_t a, const char *why)
{
	struct fix *f;

	if (w->find_dups)
		return;
	char where[48] = "";
	if (pb)
		snprintf(where, sizeof(where), " of pointer block 0x%08x", pb);
	problem(c, "file 0x%08x: pointer %u%s = 0x%08x is %s", w->fd_addr, slot, where, a, why);
	f = add_fix(c, FIX_PTR_CLEAR, "cleared bad pointer 0x%08x of file 0x%08x (a hole now)", a,
		    w->fd_addr);
	if (f) {
		f->addr = w->fd_addr;
		f->pb = pb;
		f->idx = slot;
	}
}

/* A data pointer (FB or SB). */
static void visit_data(struct ck *c, struct walk *w, uint32_t pb, unsigned slot, uint32_t a)
{
	int kind;
	uint64_t index;
	bool want_sb = w->fd->zla == VMFS_ZLA_SB;

	if (item_of(c, a, &kind, &index) || (want_sb ? kind != VMFS_RES_SBC : kind != VMFS_RES_FBB)) {
		bad_ptr(c, w, pb, slot, a, want_sb ? "not a valid sub-block address"
						   : "not a valid file block address");
		return;
	}
	if (w->find_dups) {
		if (bit_get(c->dup[kind], index) && ndupv < 1u << 20) {
			bool first = !bit_get(dup_first[kind], index);  /* the first user keeps it */
			bit_set(dup_first[kind], index);
			if (ndupv == capdupv) {
				size_t nc = capdupv ? capdupv * 2 : 16;
				struct dupuse *nv = realloc(dupv, nc * sizeof(*nv));
				if (!nv)
					return;
				dupv = nv;
				capdupv = nc;
			}
			dupv[ndupv++] = (struct dupuse){ w->fd_addr, pb, slot, a, kind, index, first };
		}
		return;
	}
	w->nblocks++;
	if (kind == VMFS_RES_FBB && vmfs_fb_tbz(a)) {
		w->ntbz++;
		c->ntbz++;
	}
	ref(c, kind, index);
}

/* A pointer-block pointer; returns true when the walk may descend into it. */
static bool visit_pb(struct ck *c, struct walk *w, uint32_t pb, unsigned slot, uint32_t a)
{
	int kind;
	uint64_t index;

	if (item_of(c, a, &kind, &index) || kind != VMFS_RES_PBC) {
		bad_ptr(c, w, pb, slot, a, "not a valid pointer block address");
		return false;
	}
	if (w->find_dups)
		return !bit_get(c->dup[kind], index);
	if (ref(c, kind, index)) {
		problem(c, "file 0x%08x: pointer block 0x%08x is also used by another file (not "
			"descended a second time)", w->fd_addr, a);
		c->unfixable++;
		return false;
	}
	return true;
}

static int read_pb(struct ck *c, struct walk *w, uint32_t pb, uint32_t *ptrs)
{
	int e = ioerr(c, vmfs_pb_read(c->fs, pb, ptrs));

	if (e && !w->find_dups) {
		problem(c, "file 0x%08x: cannot read pointer block 0x%08x: %s", w->fd_addr, pb, strerror(-e));
		c->unfixable++;
	}
	return e;
}

static void walk_blocks(struct ck *c, struct walk *w)
{
	const struct vmfs_fd *fd = w->fd;
	uint32_t *p1 = NULL, *p2 = NULL;

	switch (fd->zla) {
	case VMFS_ZLA_FB:
	case VMFS_ZLA_SB:
		for (unsigned s = 0; s < 256; s++)
			if (fd->blocks[s])
				visit_data(c, w, 0, s, fd->blocks[s]);
		break;
	case VMFS_ZLA_PB:
	case VMFS_ZLA_DOUBLE:
		p1 = malloc(2 * PTRS_PER_PB * sizeof(uint32_t));
		if (!p1) {
			unfixable(c, "out of memory walking file 0x%08x", w->fd_addr);
			break;
		}
		p2 = p1 + PTRS_PER_PB;
		for (unsigned s = 0; s < 256; s++) {
			uint32_t a = fd->blocks[s];
			if (!a || !visit_pb(c, w, 0, s, a) || read_pb(c, w, a, p1))
				continue;
			for (unsigned j = 0; j < PTRS_PER_PB; j++) {
				uint32_t b = p1[j];
				if (!b)
					continue;
				if (fd->zla == VMFS_ZLA_PB) {
					visit_data(c, w, a, j, b);
					continue;
				}
				if (!visit_pb(c, w, a, j, b) || read_pb(c, w, b, p2))
					continue;
				for (unsigned k = 0; k < PTRS_PER_PB; k++)
					if (p2[k])
						visit_data(c, w, b, k, p2[k]);
			}
		}
		break;
	default:
		break;  /* resident, RDM, .pb2.sf addressing: no blocks of ours */
	}
	free(p1);
}

/* Walk a valid FD's blocks and check its counters. */
static void walk_fd(struct ck *c, uint64_t index, uint32_t addr, const struct vmfs_fd *fd)
{
	struct walk w = { .fd_addr = addr, .fd = fd };
	struct fdi *f = &c->fds[index];
	struct vmfs_fsck_fd_fix fx = { 0 };

	walk_blocks(c, &w);
	f->walked = true;
	f->nblocks = (uint32_t)w.nblocks;
	if (fd->zla == VMFS_ZLA_RESIDENT || fd->zla == VMFS_ZLA_PB2 || fd->type == VMFS_TYPE_RDM)
		return;
	if (fd->blk_count != w.nblocks) {
		problem(c, "file 0x%08x: block count %llu, but it uses %llu blocks", addr,
			(unsigned long long)fd->blk_count, (unsigned long long)w.nblocks);
		fx.mask |= VMFS_FSCK_FD_BLKCOUNT;
		fx.blk_count = w.nblocks;
	}
	if (fd->tbz != w.ntbz) {
		problem(c, "file 0x%08x: TBZ count %u, but %llu of its block pointers are TBZ", addr,
			fd->tbz, (unsigned long long)w.ntbz);
		fx.mask |= VMFS_FSCK_FD_TBZ;
		fx.tbz = (uint32_t)w.ntbz;
	}
	if (fx.mask) {
		struct fix *x = add_fix(c, FIX_FD_COUNTS, "set block count %llu, TBZ count %llu of file 0x%08x",
					(unsigned long long)w.nblocks, (unsigned long long)w.ntbz, addr);
		if (x) {
			x->addr = addr;
			x->fd = fx;
		}
	}
}

/* ---- cluster headers -------------------------------------------------------------------- */

static uint32_t expected_total(const struct vmfs_res_info *ri, uint32_t idx)
{
	uint64_t first = (uint64_t)idx * ri->ipe;

	if (first >= ri->total_items)
		return 0;
	return ri->total_items - first < ri->ipe ? (uint32_t)(ri->total_items - first) : ri->ipe;
}

static void cluster_bad(struct ck *c, int k, uint32_t idx, bool fresh)
{
	if (!bit_get(c->cl_bad[k], idx)) {
		bit_set(c->cl_bad[k], idx);
		struct fix *f = add_fix(c, FIX_CLUSTER, "rewrote %s cluster %u header", res_name[k], idx);
		if (f) {
			f->res = k;
			f->idx = idx;
		}
	}
	if (fresh)
		bit_set(c->cl_fresh[k], idx);
}

static void check_cluster(struct ck *c, int k, uint32_t idx, const uint8_t *h, uint64_t lv)
{
	const struct vmfs_res_info *ri = &c->ri[k];
	uint32_t magic = le32(h), exp = expected_total(ri, idx);
	uint32_t id = le32(h + 0x200), total = le32(h + 0x204), nfree = le32(h + 0x208);
	uint32_t ffree = le32(h + 0x20C);
	const uint8_t *bm = h + 0x210;
	uint64_t base = (uint64_t)idx * ri->ipe;
	uint32_t pop = 0, first = UINT32_MAX;
	char what[64];

	c->cl_total[k][idx] = exp;
	snprintf(what, sizeof(what), "%s cluster %u", res_name[k], idx);
	if (magic == 0) {
		bool zero = true;
		for (unsigned i = 0; i < 1024 && zero; i++)
			zero = h[i] == 0;
		if (!zero || exp) {
			problem(c, "%s: header never written (magic 0) but it should hold %u items", what, exp);
			cluster_bad(c, k, idx, true);
		}
		/* items of an unwritten cluster count as free */
		return;
	}
	if (magic != res_magic[k]) {
		problem(c, "%s: bad magic 0x%08x (expected 0x%08x)", what, magic, res_magic[k]);
		cluster_bad(c, k, idx, true);
		return;
	}
	if (le64(h + 4) != lv) {
		problem(c, "%s: lock record position 0x%llx is not its offset 0x%llx", what,
			(unsigned long long)le64(h + 4), (unsigned long long)lv);
		cluster_bad(c, k, idx, true);
	} else {
		check_lock(c, h, lv, res_magic[k], what);
	}
	if (id != idx) {
		problem(c, "%s: id %u", what, id);
		cluster_bad(c, k, idx, false);
	}
	if (total != exp) {
		problem(c, "%s: holds %u items, expected %u (of %u in %s)", what, total, exp, ri->total_items,
			res_name[k]);
		cluster_bad(c, k, idx, false);
	}
	if (total > ri->ipe || total > 496 * 8)
		total = exp;  /* cannot trust its bitmap length */
	uint32_t i = 0;
	if (base % 8 == 0) {
		/* whole bytes at once: bit set on disk = free, in c->alloc = allocated */
		uint32_t lim = (total < exp ? total : exp) / 8;
		uint8_t *al = c->alloc[k] + base / 8;
		for (uint32_t b = 0; b < lim; b++) {
			uint8_t v = bm[b];
			pop += popcnt8[v];
			if (v && first == UINT32_MAX)
				first = b * 8 + (uint32_t)__builtin_ctz(v);
			al[b] = (uint8_t)~v;
		}
		i = lim * 8;
	}
	for (; i < total; i++) {
		bool isfree = bit_get(bm, i);
		if (isfree) {
			pop++;
			if (first == UINT32_MAX)
				first = i;
		} else if (i < exp) {
			bit_set(c->alloc[k], base + i);
		}
	}
	if (total % 8 && (bm[total / 8] >> (total % 8))) {
		problem(c, "%s: bitmap bits set beyond its %u items", what, total);
		cluster_bad(c, k, idx, false);
	}
	if (nfree != pop) {
		problem(c, "%s: free count %u, but its bitmap has %u free items", what, nfree, pop);
		cluster_bad(c, k, idx, false);
	}
	if (k == VMFS_RES_FDC && total == exp && exp && pop == total && nfree == pop && id == idx &&
	    le64(h + 4) == lv && !(total % 8 && (bm[total / 8] >> (total % 8))))
		bit_set(c->fdc_allfree, idx);
	/* a hint only (ESX leaves it behind the first free item): must stay inside the cluster */
	if (total ? ffree >= total : ffree != 0) {
		problem(c, "%s: first-free hint %u is outside its %u items (first free item: %s%d)", what,
			ffree, total, pop ? "" : "none", pop ? (int)first : 0);
		cluster_bad(c, k, idx, false);
	}
}

static int load_clusters(struct ck *c, int k)
{
	const struct vmfs_res_info *ri = &c->ri[k];
	size_t glen = (size_t)ri->epa * 1024u;
	uint8_t *buf = malloc(glen);
	int e = 0;

	if (!buf)
		return -ENOMEM;
	for (uint32_t g = 0; g < ri->area_count; g++) {
		uint64_t foff = ri->hdr_size + (uint64_t)g * ri->area_size, lv0 = 0;
		bool bulk = foff / c->bs == (foff + glen - 1) / c->bs &&
			    vmfs_fsck_res_file_lv(c->fs, k, foff, glen, &lv0) == 0 &&
			    vmfs_bdev_read(c->lv, buf, glen, lv0) == 0;
		for (uint32_t ci = 0; ci < ri->epa; ci++) {
			uint32_t idx = g * ri->epa + ci;
			uint8_t *h = buf + (size_t)ci * 1024u;
			uint64_t lv = lv0 + (uint64_t)ci * 1024u;
			if (!bulk) {
				e = vmfs_fsck_res_file_lv(c->fs, k, foff + (uint64_t)ci * 1024u, 1024, &lv);
				if (!e)
					e = vmfs_bdev_read(c->lv, h, 1024, lv);
				if (ioerr(c, e)) {
					unfixable(c, "%s cluster %u: cannot read its header: %s", res_name[k], idx,
						  strerror(-e));
					c->cl_total[k][idx] = expected_total(ri, idx);
					e = 0;
					continue;
				}
			}
			check_cluster(c, k, idx, h, lv);
		}
	}
	free(buf);
	return e;
}

/* ---- FDC stream ----------------------------------------------------------------------------- */

static void scan_fd(struct ck *c, uint64_t index, const uint8_t *raw, uint64_t lv)
{
	struct fdi *f = &c->fds[index];
	uint32_t addr = fd_addr_of(c, index);
	struct vmfs_fd fd;
	char why[160];
	const char *bad;

	f->alloc = bit_get(c->alloc[VMFS_RES_FDC], index);
	if (le32(raw) != VMFS_MAGIC_FD) {
		if (f->alloc)
			f->state = FD_NONE;  /* lost: reported with the bitmap comparison */
		return;
	}
	fd_decode(raw, &fd);
	if (fd.lock_magic == VMFS_MAGIC_FD && fd.nlink == 0 && fd.lock_pos == lv) {
		/* a free descriptor can still carry a lock left by a host that died allocating it */
		char what[48];
		snprintf(what, sizeof(what), "free file descriptor 0x%08x", addr);
		check_lock(c, raw, lv, VMFS_MAGIC_FD, what);
	}
	if (fd.lock_magic != VMFS_MAGIC_FD || fd.nlink == 0) {
		if (f->alloc)
			f->state = FD_NONE;  /* lost: reported with the bitmap comparison */
		return;
	}
	if (fd.id != addr) {
		if (f->alloc) {
			problem(c, "file descriptor at 0x%08x claims address 0x%08x", addr, fd.id);
			f->state = FD_INVALID;
		}
		return;
	}
	if (fd.lock_pos != lv) {
		problem(c, "file 0x%08x: lock record position 0x%llx is not its offset 0x%llx", addr,
			(unsigned long long)fd.lock_pos, (unsigned long long)lv);
		struct fix *x = add_fix(c, FIX_LOCK, "formatted the lock record of file 0x%08x", addr);
		if (x) {
			vmfs_lock_rec_format(VMFS_MAGIC_FD, lv, x->sec);
			x->lv = lv;
		}
	} else {
		char what[40];
		snprintf(what, sizeof(what), "file 0x%08x", addr);
		check_lock(c, raw, lv, VMFS_MAGIC_FD, what);
	}
	f->gen = fd.gen;
	f->nlink = fd.nlink;
	f->type = fd.type;
	f->zla = fd.zla;
	f->size = fd.size;
	bad = fd_invalid(c, &fd, why, sizeof(why));
	if (bad) {
		problem(c, "file 0x%08x: %s", addr, bad);
		f->state = FD_INVALID;
		return;
	}
	f->state = FD_VALID;
	if (f->alloc) {
		walk_fd(c, index, addr, &fd);
		return;
	}
	/* linked but free in .fdc.sf: decided after the tree walk */
	f->deferred = true;
	if (c->ndeferred == c->capdeferred) {
		size_t nc = c->capdeferred ? c->capdeferred * 2 : 8;
		struct vmfs_fd *nv = realloc(c->deferred, nc * sizeof(*nv));
		uint32_t *na = nv ? realloc(c->deferred_addr, nc * sizeof(*na)) : NULL;
		if (nv)
			c->deferred = nv;
		if (!nv || !na) {
			f->deferred = false;
			return;
		}
		c->deferred_addr = na;
		c->capdeferred = nc;
	}
	c->deferred[c->ndeferred] = fd;
	c->deferred_addr[c->ndeferred++] = addr;
}

/* Read and scan one descriptor that the stream skipped. */
static void scan_one(struct ck *c, uint64_t index)
{
	uint8_t raw[2048];
	uint64_t lv;
	int e = vmfs_res_item_lv(c->fs, VMFS_RES_FDC, index, &lv);

	c->fds[index].skipped = false;
	if (!e)
		e = ioerr(c, vmfs_bdev_read(c->lv, raw, sizeof(raw), lv));
	if (e) {
		unfixable(c, "file descriptor 0x%08x: cannot read it: %s", fd_addr_of(c, index), strerror(-e));
		return;
	}
	scan_fd(c, index, raw, lv);
}

static int scan_fdc(struct ck *c)
{
	const struct vmfs_res_info *ri = &c->ri[VMFS_RES_FDC];
	uint64_t ipa = (uint64_t)ri->epa * ri->ipe, ds = ri->data_size;
	size_t cap = c->bs > (8u << 20) ? (8u << 20) : (size_t)c->bs;
	uint8_t *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < c->nfds;) {
		uint64_t cl = i / ri->ipe;
		if (bit_get(c->fdc_allfree, cl)) {
			/* a valid cluster header says every item is free: not read (as e2fsck skips
			 * unused inode tables); an entry naming one reads it on demand */
			uint64_t end = (cl + 1) * ri->ipe < c->nfds ? (cl + 1) * ri->ipe : c->nfds;
			for (; i < end; i++)
				c->fds[i].skipped = true;
			continue;
		}
		uint64_t g = i / ipa, k = i % ipa;
		uint64_t foff = ri->hdr_size + g * ri->area_size + (uint64_t)ri->epa * 1024u + k * ds;
		/* items up to the end of this file block, this group and the table */
		uint64_t n = (c->bs - foff % c->bs) / ds, lv;
		if (n > ipa - k)
			n = ipa - k;
		if (n > c->nfds - i)
			n = c->nfds - i;
		if (n > cap / ds)
			n = cap / ds;
		if (n == 0)
			n = 1;
		for (uint64_t nc = cl + 1; nc * ri->ipe < i + n; nc++)
			if (bit_get(c->fdc_allfree, nc)) {
				n = nc * ri->ipe - i;
				break;
			}
		int e = vmfs_fsck_res_file_lv(c->fs, VMFS_RES_FDC, foff, n * ds, &lv);
		if (!e)
			e = vmfs_bdev_read(c->lv, buf, n * ds, lv);
		if (ioerr(c, e)) {
			unfixable(c, ".fdc.sf: cannot read descriptors %llu..%llu: %s", (unsigned long long)i,
				  (unsigned long long)(i + n - 1), strerror(-e));
			c->tree_incomplete = true;
			i += n;
			continue;
		}
		for (uint64_t j = 0; j < n; j++)
			scan_fd(c, i + j, buf + j * ds, lv + j * ds);
		i += n;
	}
	free(buf);
	return 0;
}

/* A name fit for a report line: non-printable bytes as \\xNN, at most ~60 characters. */
static const char *shown(const char *name, char *buf, size_t n)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)name; *p && o + 5 < n && o < 64; p++) {
		if (*p >= 0x20 && *p < 0x7F && *p != '\\')
			buf[o++] = (char)*p;
		else
			o += (size_t)snprintf(buf + o, n - o, "\\x%02x", *p);
	}
	buf[o] = 0;
	return buf;
}

/* ---- directory tree ---------------------------------------------------------------------------- */

struct dirctx {
	struct ck *c;
	uint32_t dir, parent;
	uint32_t idx;
	unsigned ndot, ndotdot;
	uint32_t *queue;
	size_t *qn, qcap;
	bool orphan_scan;         /* only mark names (unreachable directories) */
};

static void fix_dirent_remove(struct ck *c, uint32_t dir, uint32_t idx, const char *name)
{
	char nb[300];
	struct fix *f = add_fix(c, FIX_DIRENT_REMOVE, "removed entry \"%s\" from directory 0x%08x",
				shown(name, nb, sizeof(nb)), dir);
	if (f) {
		f->addr = dir;
		f->idx = idx;
	}
}

static void fix_dirent_set(struct ck *c, uint32_t dir, uint32_t idx, const struct vmfs_dirent *de,
			   const char *what)
{
	char nb[300];
	struct fix *f = add_fix(c, FIX_DIRENT_SET, "%s \"%s\" in directory 0x%08x", what,
				shown(de->name, nb, sizeof(nb)), dir);
	if (f) {
		f->addr = dir;
		f->idx = idx;
		f->de = *de;
	}
}

static int dir_cb(void *ctx, const struct vmfs_dirent *de)
{
	struct dirctx *d = ctx;
	struct ck *c = d->c;
	uint32_t idx = d->idx++;
	uint64_t ti;
	struct fdi *t;
	char nb[300];
	const char *nm = shown(de->name, nb, sizeof(nb));

	if (d->orphan_scan) {
		/* names inside an unreachable directory: it is reattached with them, so they count */
		if (strcmp(de->name, ".") && strcmp(de->name, "..") && !fd_index_of(c, de->addr, &ti)) {
			if (c->fds[ti].skipped)
				scan_one(c, ti);
			c->fds[ti].named_by_orphan = true;
			c->fds[ti].refs++;
		}
		return 0;
	}
	if (!strcmp(de->name, ".") || !strcmp(de->name, "..")) {
		bool dot = de->name[1] == 0;
		uint32_t want = dot ? d->dir : d->parent;
		unsigned *cnt = dot ? &d->ndot : &d->ndotdot;
		if (++*cnt > 1) {
			problem(c, "directory 0x%08x: more than one \"%s\" entry", d->dir, de->name);
			fix_dirent_remove(c, d->dir, idx, de->name);
			return 0;
		}
		uint64_t wi;
		if (fd_index_of(c, want, &wi) == 0) {
			c->fds[wi].refs++;
			if (de->addr != want || de->type != VMFS_TYPE_DIR || de->gen != c->fds[wi].gen) {
				struct vmfs_dirent n = { .type = VMFS_TYPE_DIR, .addr = want, .gen = c->fds[wi].gen };
				strcpy(n.name, de->name);
				problem(c, "directory 0x%08x: \"%s\" points to 0x%08x (type %u, generation %u), "
					"expected 0x%08x (generation %u)", d->dir, de->name, de->addr, de->type,
					de->gen, want, c->fds[wi].gen);
				fix_dirent_set(c, d->dir, idx, &n, "corrected");
			}
		}
		return 0;
	}
	if (de->name[0] == 0 || de->addr == 0) {
		problem(c, "directory 0x%08x: empty entry #%u (name \"%s\", address 0x%08x)", d->dir, idx,
			nm, de->addr);
		fix_dirent_remove(c, d->dir, idx, de->name);
		return 0;
	}
	if (fd_index_of(c, de->addr, &ti)) {
		problem(c, "directory 0x%08x: entry \"%s\" points to 0x%08x, not a file descriptor "
			"address of this volume", d->dir, nm, de->addr);
		fix_dirent_remove(c, d->dir, idx, de->name);
		return 0;
	}
	t = &c->fds[ti];
	if (t->skipped)
		scan_one(c, ti);
	if (t->state == FD_NONE) {
		problem(c, "directory 0x%08x: entry \"%s\" points to 0x%08x, a free file descriptor",
			d->dir, nm, de->addr);
		fix_dirent_remove(c, d->dir, idx, de->name);
		return 0;
	}
	if (t->state == FD_INVALID) {
		problem(c, "directory 0x%08x: entry \"%s\" points to the invalid file descriptor 0x%08x",
			d->dir, nm, de->addr);
		fix_dirent_remove(c, d->dir, idx, de->name);
		if (!t->reached) {
			t->reached = true;
			struct fix *f = add_fix(c, FIX_CLEAR_FD, "cleared invalid file descriptor 0x%08x",
						de->addr);
			if (f)
				f->addr = de->addr;
		}
		return 0;
	}
	if (t->type == VMFS_TYPE_DIR && t->reached) {
		problem(c, "directory 0x%08x: entry \"%s\" is a second name for directory 0x%08x",
			d->dir, nm, de->addr);
		fix_dirent_remove(c, d->dir, idx, de->name);
		return 0;
	}
	t->refs++;
	if (de->type != t->type || de->gen != t->gen) {
		struct vmfs_dirent n = *de;
		problem(c, "directory 0x%08x: entry \"%s\" has type %u generation %u, its file 0x%08x "
			"type %u generation %u", d->dir, nm, de->type, de->gen, de->addr, t->type, t->gen);
		n.type = t->type;
		n.gen = t->gen;
		fix_dirent_set(c, d->dir, idx, &n, "corrected entry");
	}
	if (!t->reached) {
		t->reached = true;
		t->parent = d->dir;
		if (t->type == VMFS_TYPE_DIR && *d->qn < d->qcap)
			d->queue[(*d->qn)++] = de->addr;
	}
	if (d->dir == VMFS_ROOT_ADDR && !strcmp(de->name, "lost+found") && t->type == VMFS_TYPE_DIR)
		c->lost_found = de->addr;
	return 0;
}

static void walk_dir(struct ck *c, uint32_t dir, uint32_t parent, uint32_t *queue, size_t *qn, size_t qcap)
{
	struct dirctx d = { .c = c, .dir = dir, .parent = parent, .queue = queue, .qn = qn, .qcap = qcap };
	c->logmsg[0] = 0;
	int e = ioerr(c, vmfs_readdir(c->fs, dir, dir_cb, &d));

	if (e) {
		unfixable(c, "directory 0x%08x: cannot read it: %s", dir, c->logmsg[0] ? c->logmsg : strerror(-e));
		c->tree_incomplete = true;
		return;
	}
	for (int dot = 1; dot >= 0; dot--) {
		if ((dot ? d.ndot : d.ndotdot) != 0)
			continue;
		uint32_t want = dot ? dir : parent;
		uint64_t wi;
		if (fd_index_of(c, want, &wi))
			continue;
		problem(c, "directory 0x%08x: no \"%s\" entry", dir, dot ? "." : "..");
		c->fds[wi].refs++;
		struct fix *f = add_fix(c, FIX_DIRENT_ADD, "added \"%s\" to directory 0x%08x", dot ? "." : "..",
					dir);
		if (f) {
			f->addr = dir;
			f->de = (struct vmfs_dirent){ .type = VMFS_TYPE_DIR, .addr = want, .gen = c->fds[wi].gen };
			strcpy(f->de.name, dot ? "." : "..");
		}
	}
}

static int walk_tree(struct ck *c)
{
	uint64_t ri;
	size_t qcap = c->nfds + 1, qn = 0, qi = 0;
	uint32_t *queue;

	if (fd_index_of(c, VMFS_ROOT_ADDR, &ri) || c->fds[ri].state != FD_VALID ||
	    c->fds[ri].type != VMFS_TYPE_DIR) {
		unfixable(c, "the root directory 0x%08x is not a valid directory", VMFS_ROOT_ADDR);
		c->tree_incomplete = true;
		return 0;
	}
	queue = malloc(qcap * sizeof(*queue));
	if (!queue)
		return -ENOMEM;
	c->fds[ri].reached = true;
	c->fds[ri].parent = VMFS_ROOT_ADDR;
	queue[qn++] = VMFS_ROOT_ADDR;
	while (qi < qn) {
		uint32_t d = queue[qi++];
		uint64_t di;
		if (fd_index_of(c, d, &di))
			continue;
		walk_dir(c, d, c->fds[di].parent, queue, &qn, qcap);
	}
	free(queue);
	return 0;
}

/* ---- system files ---------------------------------------------------------------------------- */

struct sysfile {
	const char *name;
	uint32_t addr;
	bool required;
};
static const struct sysfile sysfiles[] = {
	{ ".fbb.sf", 0x00400004u, true }, { ".fdc.sf", 0x00800004u, true },
	{ ".pbc.sf", 0x00C00004u, true }, { ".sbc.sf", 0x01000004u, true },
	{ ".vh.sf", 0x01400004u, true },  { ".pb2.sf", 0x01800004u, false },
	{ ".sdd.sf", 0x01C00004u, false },
};

static void check_sysfiles(struct ck *c)
{
	for (size_t i = 0; i < sizeof(sysfiles) / sizeof(sysfiles[0]); i++) {
		const struct sysfile *s = &sysfiles[i];
		uint32_t a;
		int e = ioerr(c, vmfs_lookup(c->fs, VMFS_ROOT_ADDR, s->name, &a));
		if (e == -ENOENT) {
			if (s->required || c->info->lvm_major >= 5)
				unfixable(c, "system file %s is missing from the root directory", s->name);
			continue;
		}
		if (e) {
			unfixable(c, "system file %s: lookup failed: %s", s->name, strerror(-e));
			continue;
		}
		if (a != s->addr) {
			unfixable(c, "system file %s is 0x%08x, expected 0x%08x", s->name, a, s->addr);
			continue;
		}
		struct vmfs_fd fd;
		c->logmsg[0] = 0;
		e = ioerr(c, vmfs_fd_read(c->fs, a, &fd, NULL));
		if (e) {
			unfixable(c, "system file %s: %s", s->name, c->logmsg[0] ? c->logmsg : strerror(-e));
			continue;
		}
		if (fd.type != VMFS_TYPE_SYSTEM)
			unfixable(c, "system file %s has type %u, expected 5", s->name, fd.type);
		if (i < 3 && fd.zla != VMFS_ZLA_FB)
			unfixable(c, "system file %s uses addressing mode %u (vmfs-tools needs direct blocks, 1)",
				  s->name, fd.zla);
		if (a == 0x00800004u && fd.zla == VMFS_ZLA_FB &&
		    fd.blocks[0] != vmfs_fb_make(c->info->fdc_base, false))
			unfixable(c, ".fdc.sf does not start at block %u (its first block is 0x%08x)",
				  c->info->fdc_base, fd.blocks[0]);
		if (a == 0x01400004u) {
			uint64_t nb = 0x400000ull / c->bs ? 0x400000ull / c->bs : 1;
			for (uint64_t b = 0; b < nb && b < 256; b++)
				if (fd.zla != VMFS_ZLA_FB || fd.blocks[b] != vmfs_fb_make((uint32_t)b, false)) {
					unfixable(c, ".vh.sf does not map block %llu of the volume header",
						  (unsigned long long)b);
					break;
				}
		}
	}
}

/* FS descriptor and LVM fields the open does not check. */
static void check_headers(struct ck *c)
{
	uint8_t b[512];
	const struct vmfs_res_info *sbc = &c->ri[VMFS_RES_SBC], *fdc = &c->ri[VMFS_RES_FDC];

	if (ioerr(c, vmfs_bdev_read(c->lv, b, 512, 0x200000)) == 0) {
		uint32_t sbs = le32(b + 0xD9), fhs = le32(b + 0xD1), fcpg = le32(b + 0xD5);
		if (memchr(b + 0x1D, 0, 128) == NULL)
			unfixable(c, "FS descriptor: label is not NUL-terminated within 128 bytes");
		if (le32(b + 0x9D) != 512)
			unfixable(c, "FS descriptor: disk block size %u, expected 512", le32(b + 0x9D));
		if (c->bs != (1u << 20) && c->bs != (2u << 20) && c->bs != (4u << 20) && c->bs != (8u << 20))
			unfixable(c, "FS descriptor: file block size %llu is not 1, 2, 4 or 8 MiB",
				  (unsigned long long)c->bs);
		if (c->info->lvm_major >= 5 && c->bs != (1u << 20))
			unfixable(c, "FS descriptor: VMFS5 file block size %llu, expected 1 MiB",
				  (unsigned long long)c->bs);
		if (sbs && sbs != sbc->data_size)
			unfixable(c, "FS descriptor: sub-block size %u but .sbc.sf items are %u bytes", sbs,
				  sbc->data_size);
		if (fhs && fhs != fdc->hdr_size)
			unfixable(c, "FS descriptor: FDC group offset 0x%x but .fdc.sf says 0x%x", fhs,
				  fdc->hdr_size);
		if (fcpg && fcpg != fdc->epa)
			unfixable(c, "FS descriptor: %u FDC clusters per group but .fdc.sf says %u", fcpg,
				  fdc->epa);
	} else {
		unfixable(c, "cannot read the FS descriptor");
	}
	if (c->ri[VMFS_RES_FBB].total_items > c->info->lv_size / c->bs)
		unfixable(c, ".fbb.sf: %u blocks, the volume has %llu", c->ri[VMFS_RES_FBB].total_items,
			  (unsigned long long)(c->info->lv_size / c->bs));
	for (int i = 0; i < VMFS_MAX_EXTENTS; i++) {
		uint32_t first, nsegs;
		struct vmfs_bdev *bd = vmfs_volume_extent(c->vol, i, &first, &nsegs);
		uint8_t h[1024];
		if (!bd)
			break;
		if (vmfs_bdev_read(bd, h, sizeof(h), 0x100000) || le32(h) != 0xC001D00Du)
			continue;  /* partitioned device: the open found it, nothing more to check */
		if (le32(h + 0x5A) != 512)
			unfixable(c, "%s: LVM disk block size %u, expected 512", vmfs_bdev_uri(bd), le32(h + 0x5A));
		if (le64(h + 0x7A) != 0x1100000ull)
			unfixable(c, "%s: LVM data offset 0x%llx, expected 0x1100000", vmfs_bdev_uri(bd),
				  (unsigned long long)le64(h + 0x7A));
		if (le32(h + 0x6A) < nsegs || le32(h + 0x6E) + 1 != le32(h + 0x6A))
			unfixable(c, "%s: LVM header counts %u PEs (last index %u) for %u segments",
				  vmfs_bdev_uri(bd), le32(h + 0x6A), le32(h + 0x6E), nsegs);
		if (le32(h + 512 + 0x10) != 1)
			unfixable(c, "%s: logical volume state %u, expected 1 (normal)", vmfs_bdev_uri(bd),
				  le32(h + 512 + 0x10));
	}
}

/* ---- orphans, link counts, bitmaps ------------------------------------------------------------ */

/* Names held by unreachable directories: those files come along with them. */
static void orphan_names(struct ck *c)
{
	for (uint64_t i = 0; i < c->nfds; i++) {
		struct fdi *f = &c->fds[i];
		if (f->state == FD_VALID && !f->reached && f->type == VMFS_TYPE_DIR && f->alloc) {
			struct dirctx d = { .c = c, .dir = fd_addr_of(c, i), .orphan_scan = true };
			ioerr(c, vmfs_readdir(c->fs, d.dir, dir_cb, &d));
		}
	}
}

static void orphans(struct ck *c)
{
	for (uint64_t i = 0; i < c->nfds; i++) {
		struct fdi *f = &c->fds[i];
		uint32_t a = fd_addr_of(c, i);
		if (f->reached || f->state == FD_NONE)
			continue;
		if (!f->alloc) {
			if (f->state == FD_VALID) {
				problem(c, "file descriptor 0x%08x has %u links but is free in .fdc.sf and "
					"unreachable", a, f->nlink);
				struct fix *x = add_fix(c, FIX_CLEAR_FD, "cleared stale file descriptor 0x%08x", a);
				if (x)
					x->addr = a;
			}
			continue;
		}
		if (f->state == FD_INVALID) {
			problem(c, "invalid file descriptor 0x%08x is unreachable", a);
			struct fix *x = add_fix(c, FIX_CLEAR_FD, "dropped invalid orphan file descriptor 0x%08x", a);
			if (x)
				x->addr = a;
			continue;
		}
		f->kept = true;
		if (f->named_by_orphan)
			continue;  /* reattached with its directory */
		bool empty = f->type == VMFS_TYPE_DIR ? f->size <= 2 * DIRENT_SIZE
						      : f->size == 0 && f->nblocks == 0;
		problem(c, "orphan: %s 0x%08x (%llu bytes, %u links) is in no directory",
			f->type == VMFS_TYPE_DIR ? "directory" : "file", a, (unsigned long long)f->size, f->nlink);
		if (c->tree_incomplete) {
			c->unfixable++;
			continue;
		}
		struct fix *x;
		if (empty && f->type != VMFS_TYPE_SYSTEM)
			x = add_fix(c, FIX_DROP, "dropped empty orphan 0x%08x", a);
		else
			x = add_fix(c, FIX_REATTACH, "reattached orphan 0x%08x as /lost+found/#%08x", a, a);
		if (x) {
			x->addr = a;
			x->de = (struct vmfs_dirent){ .type = f->type, .addr = a, .gen = f->gen };
			snprintf(x->de.name, sizeof(x->de.name), "#%08x", a);
		}
	}
}

static void link_counts(struct ck *c)
{
	for (uint64_t i = 0; i < c->nfds; i++) {
		struct fdi *f = &c->fds[i];
		uint32_t a = fd_addr_of(c, i);
		if (f->state != FD_VALID || !f->reached)
			continue;
		f->kept = true;
		if (f->type == VMFS_TYPE_DIR)
			c->ndirs++;
		else
			c->nfiles++;
		/* names in directories we could not read are unknown: no verdict then */
		if (f->nlink != f->refs && f->refs && !c->tree_incomplete) {
			problem(c, "file 0x%08x: link count %u, but %u names/links point to it", a, f->nlink, f->refs);
			struct fix *x = add_fix(c, FIX_FD_COUNTS, "set link count of 0x%08x to %u", a, f->refs);
			if (x) {
				x->addr = a;
				x->fd.mask = VMFS_FSCK_FD_NLINK;
				x->fd.nlink = f->refs;
			}
		}
	}
}

static uint32_t item_addr(const struct ck *c, int k, uint64_t i)
{
	uint32_t ipe = c->ri[k].ipe, cl = (uint32_t)(i / ipe), it = (uint32_t)(i % ipe);

	switch (k) {
	case VMFS_RES_FBB: return vmfs_fb_make((uint32_t)i, false);
	case VMFS_RES_SBC: return vmfs_sb_make(cl, it);
	case VMFS_RES_PBC: return vmfs_pb_make(cl, it);
	default: return vmfs_fd_make(cl, it);
	}
}

static void compare_bitmaps(struct ck *c)
{
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		const struct vmfs_res_info *ri = &c->ri[k];
		unsigned nlost = 0, nunalloc = 0;
		uint64_t nbytes = (ri->total_items + 7) / 8;
		if (k == VMFS_RES_FDC)
			for (uint64_t i = 0; i < ri->total_items; i++)
				if (c->fds[i].kept)
					bit_set(c->used[k], i);
		c->nused[k] = 0;
		/* a byte at a time; bits beyond total_items are never set in either array */
		for (uint64_t j = 0; j < nbytes; j++) {
			uint8_t x = c->alloc[k][j] ^ c->used[k][j];
			c->nused[k] += popcnt8[c->used[k][j]];
			for (; x; x &= (uint8_t)(x - 1)) {
				uint64_t i = j * 8 + (uint64_t)__builtin_ctz(x);
				uint32_t cl = (uint32_t)(i / ri->ipe);
				bool a = bit_get(c->alloc[k], i);
				if (i >= ri->total_items)
					break;
				if (i - (uint64_t)cl * ri->ipe >= c->cl_total[k][cl])
					continue;  /* beyond the cluster's items: reported with its header */
				if (a) {
					if (++nlost <= MAX_LISTED)
						problem(c, "%s %llu (0x%08x) is allocated in %s but used by no file (lost)",
							item_name[k], (unsigned long long)i, item_addr(c, k, i), res_name[k]);
					else
						c->problems++;
				} else {
					if (++nunalloc <= MAX_LISTED)
						problem(c, "%s %llu (0x%08x) is used but marked free in %s", item_name[k],
							(unsigned long long)i, item_addr(c, k, i), res_name[k]);
					else
						c->problems++;
				}
				if (!bit_get(c->cl_bad[k], cl)) {
					bit_set(c->cl_bad[k], cl);
					struct fix *f = add_fix(c, FIX_CLUSTER, "rewrote %s cluster %u bitmap", res_name[k], cl);
					if (f) {
						f->res = k;
						f->idx = cl;
					}
				}
			}
		}
		if (nlost > MAX_LISTED)
			printf("... and %u more lost %ss\n", nlost - MAX_LISTED, item_name[k]);
		if (nunalloc > MAX_LISTED)
			printf("... and %u more %ss used but marked free\n", nunalloc - MAX_LISTED, item_name[k]);
	}
}

/* Second, targeted pass when items are used twice: find every user after the first. */
static void find_dup_users(struct ck *c)
{
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		uint64_t n = c->ri[k].total_items;
		dup_first[k] = calloc(1, n / 8 + 1);
		if (!dup_first[k])
			goto out;
	}
	ndupv = 0;
	for (uint64_t i = 0; i < c->nfds; i++) {
		struct vmfs_fd fd;
		if (!c->fds[i].walked)
			continue;
		uint32_t a = fd_addr_of(c, i);
		if (ioerr(c, vmfs_fd_read_raw(c->fs, i, &fd, NULL)))
			continue;
		struct walk w = { .fd_addr = a, .fd = &fd, .find_dups = true };
		walk_blocks(c, &w);
	}
	for (size_t i = 0; i < ndupv; i++) {
		struct dupuse *u = &dupv[i];
		uint32_t owner = 0;
		if (u->first)
			continue;
		for (size_t j = 0; j < ndupv && !owner; j++)
			if (dupv[j].first && dupv[j].kind == u->kind && dupv[j].index == u->index)
				owner = dupv[j].fd;
		problem(c, "block 0x%08x is used by file 0x%08x and by file 0x%08x", u->addr, owner, u->fd);
		struct fix *x = add_fix(c, FIX_CLONE, "gave file 0x%08x its own copy of block 0x%08x", u->fd,
					u->addr);
		if (x) {
			x->addr = u->fd;
			x->pb = u->pb;
			x->idx = u->slot;
			x->old = u->addr;
		}
	}
out:
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		free(dup_first[k]);
		dup_first[k] = NULL;
	}
	free(dupv);
	dupv = NULL;
	ndupv = capdupv = 0;
}

void pass_free(struct ck *c)
{
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		free(c->alloc[k]);
		free(c->used[k]);
		free(c->dup[k]);
		free(c->cl_bad[k]);
		free(c->cl_fresh[k]);
		free(c->cl_total[k]);
		c->alloc[k] = c->used[k] = c->dup[k] = c->cl_bad[k] = c->cl_fresh[k] = NULL;
		c->cl_total[k] = NULL;
	}
	free(c->fds);
	c->fds = NULL;
	free(c->fdc_allfree);
	c->fdc_allfree = NULL;
	free(c->deferred);
	free(c->deferred_addr);
	c->deferred = NULL;
	c->deferred_addr = NULL;
	c->ndeferred = c->capdeferred = 0;
	free(c->fixv);
	c->fixv = NULL;
	c->nfix = c->capfix = 0;
}

int check_pass(struct ck *c)
{
	int e;

	c->ndups = 0;
	c->tree_incomplete = false;
	c->lost_found = 0;
	c->nfiles = c->ndirs = 0;
	c->ntbz = 0;
	if (!popcnt8[255])
		init_popcnt();
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		e = vmfs_res_get_info(c->fs, k, &c->ri[k]);
		if (e)
			return e;
		uint64_t n = c->ri[k].total_items, nc = c->ri[k].nclusters;
		c->alloc[k] = calloc(1, n / 8 + 1);
		c->used[k] = calloc(1, n / 8 + 1);
		c->dup[k] = calloc(1, n / 8 + 1);
		c->cl_bad[k] = calloc(1, nc / 8 + 1);
		c->cl_fresh[k] = calloc(1, nc / 8 + 1);
		c->cl_total[k] = calloc(nc + 1, sizeof(uint32_t));
		if (!c->alloc[k] || !c->used[k] || !c->dup[k] || !c->cl_bad[k] || !c->cl_fresh[k] ||
		    !c->cl_total[k])
			return -ENOMEM;
	}
	c->nfds = c->ri[VMFS_RES_FDC].total_items;
	c->fdc_allfree = calloc(1, c->ri[VMFS_RES_FDC].nclusters / 8 + 1);
	if (!c->fdc_allfree)
		return -ENOMEM;
	c->fds = calloc(c->nfds + 1, sizeof(*c->fds));
	if (!c->fds)
		return -ENOMEM;
	check_headers(c);
	for (int k = 0; k < VMFS_RES_COUNT; k++) {
		e = load_clusters(c, k);
		if (e)
			return e;
	}
	e = scan_fdc(c);
	if (e)
		return e;
	e = walk_tree(c);
	if (e)
		return e;
	for (size_t i = 0; i < c->ndeferred; i++) {
		uint64_t idx;
		if (fd_index_of(c, c->deferred_addr[i], &idx) || !c->fds[idx].reached)
			continue;
		problem(c, "file 0x%08x is in use but free in .fdc.sf", c->deferred_addr[i]);
		walk_fd(c, idx, c->deferred_addr[i], &c->deferred[i]);
	}
	if (!c->tree_incomplete)
		check_sysfiles(c);
	orphan_names(c);
	link_counts(c);
	orphans(c);
	if (c->ndups)
		find_dup_users(c);
	compare_bitmaps(c);
	return 0;
}
