/*
 * Sparse-aware clone and punch-zero.  Both walk the source through its
 * extent map (tp_scan): holes and TBZ extents are never read, allocated
 * extents are read into one buffer (one device read for each run of them
 * that is contiguous on the LV), and every block is
 * classified as data or all-zero.  A batch (a full buffer, or a bounded
 * number of zero blocks) then becomes one filesystem transaction:
 *
 *   clone       vmfs_pwritev of the batch's data runs into the new file (the
 *               fs allocates the blocks, writes them, flushes, commits once)
 *   punch-zero  vmfs_punchv of the batch's zero blocks (pointers cleared and
 *               blocks freed atomically by the journal), then reclaim
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_internal.h"

#define COPY_BUF (64ull << 20)

/* One batch of the scan. */
struct tp_batch {
	struct vmfs_seg *data;    /* runs of non-zero blocks; buf points into the scan buffer */
	size_t ndata;
	struct vmfs_seg *zero;    /* runs of allocated all-zero blocks and TBZ blocks */
	uint64_t *zero_lv;        /* LV offset of each zero run (LV-contiguous) */
	size_t nzero;
	uint64_t zero_blocks;
};
typedef int (*tp_batch_fn)(void *ctx, const struct tp_batch *b);

struct scan {
	struct vmfs_fs *fs;
	uint32_t addr;
	uint64_t bs, bufsz, max_zero;
	uint8_t *buf;
	uint64_t fill;            /* bytes of buf in use */
	struct { uint64_t off, len, lv; } *rd;   /* allocated pieces waiting to be read */
	size_t nrd;
	struct tp_batch b;
	tp_batch_fn fn;
	void *ctx;
};

static void add_seg(struct vmfs_seg *v, size_t *n, const void *buf, uint64_t off, uint64_t len)
{
	struct vmfs_seg *l = *n ? &v[*n - 1] : NULL;

	if (l && l->off + l->len == off && (!buf || (const uint8_t *)l->buf + l->len == buf)) {
		l->len += len;
		return;
	}
	v[*n] = (struct vmfs_seg){ buf, off, len };
	(*n)++;
}

static void add_zero(struct scan *s, uint64_t off, uint64_t len, uint64_t lv)
{
	struct tp_batch *b = &s->b;

	if (b->nzero && b->zero[b->nzero - 1].off + b->zero[b->nzero - 1].len == off &&
	    b->zero_lv[b->nzero - 1] + b->zero[b->nzero - 1].len == lv) {
		b->zero[b->nzero - 1].len += len;
	} else {
		b->zero[b->nzero] = (struct vmfs_seg){ NULL, off, len };
		b->zero_lv[b->nzero++] = lv;
	}
	b->zero_blocks += len / s->bs;
}

/* Classify the blocks of [pos, pos+n) read at @p.  A partial last block
 * that holds only zeros is neither data nor freeable: it is dropped. */
static void classify(struct scan *s, const uint8_t *p, uint64_t pos, uint64_t n, uint64_t lv)
{
	for (uint64_t b = 0; b < n;) {
		uint64_t l = n - b < s->bs ? n - b : s->bs;
		if (!tp_is_zero(p + b, l))
			add_seg(s->b.data, &s->b.ndata, p + b, pos + b, l);
		else if (l == s->bs && lv != UINT64_MAX)
			add_zero(s, pos + b, l, lv + b);
		b += l;
	}
}

/* Read the pending pieces into the buffer, in one device read for each run
 * of them that is contiguous on the LV (with allocation locality, most of a
 * file), through the file for inline data and unaligned tails. */
static int read_pending(struct scan *s)
{
	uint64_t at = 0;

	for (size_t i = 0, j; i < s->nrd; i = j) {
		uint64_t len = s->rd[i].len;
		int e;
		for (j = i + 1; j < s->nrd && s->rd[i].lv != UINT64_MAX && len % 512 == 0 &&
				s->rd[j].lv == s->rd[i].lv + len && s->rd[j].len % 512 == 0; j++)
			len += s->rd[j].len;
		if (s->rd[i].lv != UINT64_MAX && len % 512 == 0) {
			e = vmfs_bdev_read(vmfs_fs_bdev(s->fs), s->buf + at, len, s->rd[i].lv);
		} else {
			int64_t r = vmfs_pread(s->fs, s->addr, s->buf + at, len, s->rd[i].off);
			e = r < 0 ? (int)r : (uint64_t)r == len ? 0 : -EIO;
		}
		if (e)
			return e;
		for (size_t k = i; k < j; k++) {
			classify(s, s->buf + at, s->rd[k].off, s->rd[k].len, s->rd[k].lv);
			at += s->rd[k].len;
		}
	}
	s->nrd = 0;
	return 0;
}

static int flush_batch(struct scan *s)
{
	int e = read_pending(s);

	if (!e && (s->b.ndata || s->b.nzero))
		e = s->fn(s->ctx, &s->b);
	s->b.ndata = s->b.nzero = 0;
	s->b.zero_blocks = 0;
	s->fill = 0;
	return e;
}

/* Walk [0, size) of @addr in batches; see the top of the file. */
static int tp_scan(struct vmfs_fs *fs, uint32_t addr, uint64_t size, const struct thinprov_opts *o,
		   uint64_t max_zero, tp_batch_fn fn, void *ctx)
{
	struct scan s = { .fs = fs, .addr = addr, .bs = tp_bs(fs), .max_zero = max_zero ? max_zero : 1,
			  .fn = fn, .ctx = ctx };
	uint64_t pos = 0, nseg;
	int e = 0;

	s.bufsz = tp_chunk(o) < COPY_BUF ? tp_chunk(o) : COPY_BUF;
	s.bufsz = s.bufsz < s.bs ? s.bs : s.bufsz / s.bs * s.bs;
	nseg = s.bufsz / s.bs + s.max_zero + 2;
	s.buf = malloc(s.bufsz);
	s.b.data = calloc(nseg, sizeof(*s.b.data));
	s.b.zero = calloc(nseg, sizeof(*s.b.zero));
	s.b.zero_lv = calloc(nseg, sizeof(*s.b.zero_lv));
	s.rd = calloc(nseg, sizeof(*s.rd));
	if (!s.buf || !s.b.data || !s.b.zero || !s.b.zero_lv || !s.rd)
		e = -ENOMEM;
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
		/* room left in this batch: buffer bytes, zero blocks (every block
		 * waiting to be read may turn out to be one) */
		uint64_t room = s.bufsz - s.fill;
		uint64_t zroom = (s.max_zero - s.b.zero_blocks) * s.bs - s.fill / s.bs * s.bs;
		uint64_t n = end - pos;
		if (ext.state == VMFS_EXT_TBZ) {
			n = n / s.bs * s.bs;   /* whole blocks (a TBZ tail stays: it reads zeros) */
			if (n > zroom)
				n = zroom;
			if (n)
				add_zero(&s, pos, n, ext.lv_off + (pos - ext.file_off));
			else if (end - pos < s.bs)
				n = end - pos;
		} else if (ext.state == VMFS_EXT_ALLOCATED || ext.state == VMFS_EXT_INLINE) {
			if (n > room)
				n = room / s.bs * s.bs;
			if (n > zroom)
				n = zroom;
			if (n) {
				s.rd[s.nrd].off = pos;
				s.rd[s.nrd].len = n;
				s.rd[s.nrd++].lv = ext.state == VMFS_EXT_INLINE ? UINT64_MAX
						   : ext.lv_off + (pos - ext.file_off);
				s.fill += n;
			}
		}
		pos += n;
		if (!e && (n == 0 || s.fill + s.bs > s.bufsz ||
			   s.b.zero_blocks + (s.fill + s.bs - 1) / s.bs >= s.max_zero))
			e = flush_batch(&s);
		if (!e)
			e = tp_progress(o, pos, size);
	}
	if (!e)
		e = flush_batch(&s);
	free(s.buf);
	free(s.b.data);
	free(s.b.zero);
	free(s.b.zero_lv);
	free(s.rd);
	return e;
}

/* ---- clone ------------------------------------------------------------------------ */

struct clone_ctx {
	struct vmfs_fs *fs;
	uint32_t dst;
	const struct thinprov_opts *o;
};

static int clone_batch(void *ctx, const struct tp_batch *b)
{
	struct clone_ctx *c = ctx;
	uint64_t want = 0;
	int64_t w;

	if (!b->ndata)
		return 0;
	if (tp_flags(c->o) & THINPROV_DOUBLE_WRITE) {
		for (size_t i = 0; i < b->ndata; i++) {
			w = thinprov_pwrite(c->fs, c->dst, b->data[i].buf, b->data[i].len, b->data[i].off, c->o);
			if (w < 0)
				return (int)w;
		}
		return 0;
	}
	for (size_t i = 0; i < b->ndata; i++)
		want += b->data[i].len;
	w = vmfs_pwritev(c->fs, c->dst, b->data, b->ndata);
	return w < 0 ? (int)w : (uint64_t)w == want ? 0 : -EIO;
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
	struct clone_ctx c = { fs, d, o };
	e = tp_scan(fs, src, size, o, tp_free_batch(fs, o), clone_batch, &c);
	if (!e && type == THINPROV_EAGERZEROEDTHICK)
		e = thinprov_eagerzero(fs, d, &q);
	if (e) {
		thinprov_unlink(fs, ddir, dname, &q, NULL);
		return e;
	}
	*daddr = d;
	return 0;
}

/* ---- punch-zero --------------------------------------------------------------------- */

struct pz_ctx {
	struct vmfs_fs *fs;
	uint32_t addr;
	const struct thinprov_opts *o;
	struct thinprov_reclaim *rc;
};

static int pz_batch(void *ctx, const struct tp_batch *b)
{
	struct pz_ctx *c = ctx;
	struct tp_snap s = { 0 };
	int e = 0;

	if (!b->nzero)
		return 0;
	for (size_t i = 0; i < b->nzero && !e; i++)
		e = tp_snap_add(&s, b->zero_lv[i], b->zero[i].len);
	tp_snap_mark(&s);
	if (!e)
		e = vmfs_punchv(c->fs, c->addr, b->zero, b->nzero);
	if (!e)
		e = tp_snap_reclaim(c->fs, &s, c->o, c->rc);
	tp_snap_free(&s);
	return e;
}

int thinprov_punch_zero(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t *addr,
			const struct thinprov_opts *o, struct thinprov_reclaim *rc)
{
	struct thinprov_reclaim dummy = { 0 };
	char tmp[140];
	uint64_t size;
	uint32_t t;
	int e;

	if (!fs || !name || !addr)
		return -EINVAL;
	if (!rc)
		rc = &dummy;
	e = tp_size(fs, *addr, &size);
	if (e)
		return e;
	/* an interrupted punch-zero of an older version left a sparse copy
	 * ".NAME.tpz" (never the live disk): remove it */
	snprintf(tmp, sizeof(tmp), ".%s.tpz", name);
	if (strlen(tmp) <= 127 && vmfs_lookup(fs, dir, tmp, &t) == 0) {
		struct thinprov_opts q = o ? *o : (struct thinprov_opts){ 0 };
		q.progress = NULL;
		e = thinprov_unlink(fs, dir, tmp, &q, NULL);
		if (e)
			return e;
	}
	struct pz_ctx c = { fs, *addr, o, rc };
	return tp_scan(fs, *addr, size, o, tp_free_batch(fs, o), pz_batch, &c);
}
