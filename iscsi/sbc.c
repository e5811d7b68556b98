/* SBC-3 block commands: capacity, reads, writes, verify, write same, unmap,
 * get lba status, compare and write, orwrite, write atomic, sync cache,
 * pre-fetch, read defect data.  Media access holds lun->io_lock shared; the
 * read-modify-write commands hold it exclusively, which makes them atomic
 * against every other command on the LUN from any session. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pdu.h"
#include "scsi.h"

#define MAX_XFER_BYTES (8u << 20)
#define MAX_WS_BLOCKS 0xffffu

void scsi_set_sense_info(struct scsi_task *t, uint8_t key, uint16_t asc, uint64_t info);

static void io_error(struct scsi_task *t, int r, bool wr)
{
	if (r == -ENOSPC)
		scsi_set_sense(t, SK_DATA_PROTECT, ASC_OUT_OF_SPACE);
	else
		scsi_set_sense(t, SK_MEDIUM_ERROR, wr ? ASC_WRITE_ERROR : ASC_READ_ERROR);
}

/* LBA range check: lba + n must lie inside the medium. */
static bool range_ok(struct scsi_task *t, uint64_t lba, uint64_t n)
{
	uint64_t nb = t->lun->nblocks;

	if (lba > nb || n > nb - lba) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return false;
	}
	return true;
}

static bool write_allowed(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;

	if (l->bs->rdonly) {
		scsi_set_sense(t, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
		return false;
	}
	if (l->swp) {
		scsi_set_sense(t, SK_DATA_PROTECT, ASC_SW_WRITE_PROTECTED);
		return false;
	}
	return true;
}

/* Data-out must be exactly what the CDB says. */
static bool out_len_ok(struct scsi_task *t, uint64_t bytes)
{
	t->xfer_len = (uint32_t)bytes;
	t->residual_set = true;
	if (t->out_len != bytes) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IU);
		return false;
	}
	return true;
}

/* Whole blocks of data-out that the command can use. */
static uint64_t short_xfer(struct scsi_task *t, uint64_t n)
{
	uint64_t have = t->out_len >> t->lun->block_shift;

	t->xfer_len = (uint32_t)(n << t->lun->block_shift);
	t->residual_set = true;
	return have < n ? have : n;
}

static int maybe_flush(struct scsi_task *t, bool fua)
{
	if (fua || !t->lun->wce)
		return t->lun->bs->ops->flush(t->lun->bs);
	return 0;
}

static void read_capacity10(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	uint8_t d[8];
	uint64_t last = l->nblocks - 1;

	if (!(t->cdb[8] & 1) && get_be32(t->cdb + 2)) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	put_be32(d, last > 0xffffffffu ? 0xffffffffu : (uint32_t)last);
	put_be32(d + 4, l->block_size);
	scsi_copy_in(t, d, 8);
}

static void read_capacity16(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	uint32_t alloc = get_be32(t->cdb + 10);
	uint8_t d[32] = { 0 };

	put_be64(d, l->nblocks - 1);
	put_be32(d + 8, l->block_size);
	/* LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT stays 0: GET LBA STATUS
	 * reports in logical blocks, and libiscsi's UnmapSingle test assumes
	 * LBPPB == 1 for its unaligned queries. */
	if (l->bs->thin)
		d[14] = 0x80 | 0x40; /* LBPME, LBPRZ */
	scsi_copy_in(t, d, alloc < 32 ? alloc : 32);
}

static void get_lba_status(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	uint64_t lba = get_be64(t->cdb + 2);
	uint32_t alloc = get_be32(t->cdb + 10), n = 8;
	uint8_t d[8 + 16 * 64];

	if (lba >= l->nblocks) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return;
	}
	memset(d, 0, sizeof(d));
	while (n + 16 <= sizeof(d) && lba < l->nblocks && n < alloc) {
		uint64_t len = 0, blocks;
		bool mapped = true;
		int r = 0;

		if (l->bs->thin)
			r = l->bs->ops->lba_status(l->bs, lba << l->block_shift,
						    (l->nblocks - lba) << l->block_shift, &mapped, &len);
		else
			len = (l->nblocks - lba) << l->block_shift;
		if (r) {
			io_error(t, r, false);
			return;
		}
		blocks = len >> l->block_shift;
		if (!blocks)
			blocks = 1;
		if (blocks > 0xffffffffu)
			blocks = 0xffffffffu;
		put_be64(d + n, lba);
		put_be32(d + n + 8, (uint32_t)blocks);
		d[n + 12] = mapped ? 0 : 1;
		n += 16;
		lba += blocks;
	}
	put_be32(d, n - 4);
	scsi_copy_in(t, d, alloc < n ? alloc : n);
}

/* Read @bytes at @off into the data-in iovecs (up to in_cap). */
static void do_read(struct scsi_task *t, uint64_t lba, uint64_t nblk)
{
	struct scsi_lun *l = t->lun;
	uint64_t bytes = nblk << l->block_shift;
	uint32_t want = bytes < t->in_cap ? (uint32_t)bytes : t->in_cap;
	struct iovec stackv[64], *v = stackv;
	int vc = 0, r;
	uint32_t left;

	t->xfer_len = (uint32_t)bytes;
	t->residual_set = true;
	t->in_len = (uint32_t)bytes;
	if (!want)
		return;
	if (want & (l->block_size - 1)) {
		/* The initiator's buffer ends inside a block: bounce. */
		uint32_t rb = (want + l->block_size - 1) & ~(l->block_size - 1);
		uint8_t *b = malloc(rb);
		struct iovec one = { b, rb };

		if (!b) {
			scsi_set_sense(t, SK_HARDWARE_ERROR, ASC_INTERNAL_FAILURE);
			return;
		}
		pthread_rwlock_rdlock(&l->io_lock);
		r = l->bs->ops->readv(l->bs, &one, 1, lba << l->block_shift);
		pthread_rwlock_unlock(&l->io_lock);
		if (r)
			io_error(t, r, false);
		else
			scsi_copy_in(t, b, (uint32_t)bytes);
		free(b);
		return;
	}
	if (t->in_iovcnt > 64) {
		v = malloc(sizeof(*v) * (size_t)t->in_iovcnt);
		if (!v) {
			scsi_set_sense(t, SK_HARDWARE_ERROR, ASC_INTERNAL_FAILURE);
			return;
		}
	}
	for (left = want; vc < t->in_iovcnt && left; vc++) {
		v[vc] = t->in_iov[vc];
		if (v[vc].iov_len > left)
			v[vc].iov_len = left;
		left -= (uint32_t)v[vc].iov_len;
	}
	pthread_rwlock_rdlock(&l->io_lock);
	r = l->bs->ops->readv(l->bs, v, vc, lba << l->block_shift);
	pthread_rwlock_unlock(&l->io_lock);
	if (v != stackv)
		free(v);
	if (r)
		io_error(t, r, false);
}

static void do_write(struct scsi_task *t, uint64_t lba, uint64_t nblk, bool fua, bool excl)
{
	struct scsi_lun *l = t->lun;
	struct iovec v = { (void *)t->out, (size_t)(nblk << l->block_shift) };
	int r;

	if (!nblk)
		return;
	if (excl)
		pthread_rwlock_wrlock(&l->io_lock);
	else
		pthread_rwlock_rdlock(&l->io_lock);
	r = l->bs->ops->writev(l->bs, &v, 1, lba << l->block_shift);
	pthread_rwlock_unlock(&l->io_lock);
	if (!r)
		r = maybe_flush(t, fua);
	if (r)
		io_error(t, r, true);
}

struct rw {
	uint64_t lba, n;
	uint8_t prot;   /* RD/WR/VRPROTECT */
	bool fua;
};

static struct rw decode_rw(const uint8_t *c)
{
	struct rw x = { 0 };

	switch (c[0]) {
	case 0x08: case 0x0a: /* 6-byte */
		x.lba = get_be24(c + 1) & 0x1fffff;
		x.n = c[4] ? c[4] : 256;
		return x;
	case 0x28: case 0x2a: case 0x2e: case 0x2f: case 0x34: case 0x35: case 0x41:
		x.lba = get_be32(c + 2);
		x.n = get_be16(c + 7);
		break;
	case 0xa8: case 0xaa: case 0xae: case 0xaf:
		x.lba = get_be32(c + 2);
		x.n = get_be32(c + 6);
		break;
	default: /* 16-byte */
		x.lba = get_be64(c + 2);
		x.n = get_be32(c + 10);
		break;
	}
	x.prot = c[1] >> 5;
	x.fua = c[1] & 0x08;
	return x;
}

static void cmd_read(struct scsi_task *t)
{
	struct rw x = decode_rw(t->cdb);

	t->xfer_len = (uint32_t)(x.n << t->lun->block_shift);
	t->residual_set = true;
	if (x.prot) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!range_ok(t, x.lba, x.n))
		return;
	if ((x.n << t->lun->block_shift) > MAX_XFER_BYTES) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	do_read(t, x.lba, x.n);
}

static void cmd_write(struct scsi_task *t, bool atomic)
{
	struct scsi_lun *l = t->lun;
	struct rw x = decode_rw(t->cdb);

	if (atomic)
		x.n = get_be16(t->cdb + 12);
	t->xfer_len = (uint32_t)(x.n << l->block_shift);
	t->residual_set = true;
	if (x.prot) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!range_ok(t, x.lba, x.n))
		return;
	if ((x.n << l->block_shift) > MAX_XFER_BYTES ||
	    (atomic && (x.n << l->block_shift) > (1u << 20))) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!write_allowed(t))
		return;
	if (atomic && !out_len_ok(t, x.n << l->block_shift))
		return;
	/* iSCSI EDTL and the CDB disagree: write what both cover, report
	 * the residual (SAM-5 5.3.2 / RFC 7143 11.4.5). */
	do_write(t, x.lba, short_xfer(t, x.n), x.fua, atomic);
}

/* Compare the medium at lba with @buf (n blocks); -1 equal, else offset. */
static int64_t compare_medium(struct scsi_task *t, uint64_t lba, uint64_t n, const uint8_t *buf,
			      uint32_t stride, int *err)
{
	struct scsi_lun *l = t->lun;
	size_t bytes = (size_t)(n << l->block_shift);
	uint8_t *m = malloc(bytes ? bytes : 1);
	struct iovec v = { m, bytes };
	int64_t res = -1;

	*err = 0;
	if (!m) {
		*err = -ENOMEM;
		return -1;
	}
	*err = l->bs->ops->readv(l->bs, &v, 1, lba << l->block_shift);
	if (!*err) {
		for (size_t i = 0; i < bytes; i++) {
			uint8_t e = stride ? buf[i % stride] : buf[i];

			if (m[i] != e) {
				res = (int64_t)i;
				break;
			}
		}
	}
	free(m);
	return res;
}

static void cmd_verify(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	struct rw x = decode_rw(t->cdb);
	unsigned bytchk = (t->cdb[1] >> 1) & 3;
	uint64_t need;
	int64_t off;
	int err;

	if (x.prot) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (bytchk == 2) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	need = bytchk == 0 ? 0 : bytchk == 3 ? l->block_size : x.n << l->block_shift;
	if (!range_ok(t, x.lba, x.n))
		return;
	if ((x.n << l->block_shift) > MAX_XFER_BYTES) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!bytchk || !x.n) {
		t->xfer_len = 0;
		t->residual_set = true;
		return;
	}
	if (!out_len_ok(t, need))
		return;
	pthread_rwlock_rdlock(&l->io_lock);
	off = compare_medium(t, x.lba, x.n, t->out, bytchk == 3 ? l->block_size : 0, &err);
	pthread_rwlock_unlock(&l->io_lock);
	if (err)
		io_error(t, err, false);
	else if (off >= 0)
		scsi_set_sense_info(t, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY, (uint64_t)off);
}

static void cmd_write_verify(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	struct rw x = decode_rw(t->cdb);

	t->xfer_len = (uint32_t)(x.n << l->block_shift);
	t->residual_set = true;
	if (x.prot) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!range_ok(t, x.lba, x.n))
		return;
	if ((x.n << l->block_shift) > MAX_XFER_BYTES) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!write_allowed(t))
		return;
	do_write(t, x.lba, short_xfer(t, x.n), true, false);
}

static void cmd_write_same(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	const uint8_t *c = t->cdb;
	bool ws16 = c[0] == 0x93, unmap = c[1] & 0x08, anchor = c[1] & 0x10;
	bool ndob = ws16 && (c[1] & 0x01);
	uint64_t lba, n, done;
	uint8_t *buf = NULL, *zero = NULL;
	const uint8_t *pat;
	size_t chunk;
	int r = 0;

	if (ws16) {
		lba = get_be64(c + 2);
		n = get_be32(c + 10);
	} else {
		lba = get_be32(c + 2);
		n = get_be16(c + 7);
	}
	if ((c[1] >> 5) || anchor || (c[1] & 0x06) || (unmap && !l->bs->thin)) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!range_ok(t, lba, n))
		return;
	if (n == 0)
		n = l->nblocks - lba;
	if (n > MAX_WS_BLOCKS) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!write_allowed(t))
		return;
	if (ndob) {
		if (t->out_len) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IU);
			return;
		}
		zero = calloc(1, l->block_size);
		if (!zero)
			goto nomem;
		pat = zero;
	} else {
		if (!out_len_ok(t, l->block_size))
			return;
		pat = t->out;
	}
	if (!n)
		goto out;
	/* UNMAP on a thin LUN deallocates whatever the data; LBPRZ says
	 * such blocks read back as zeros. */
	if (unmap && l->bs->thin) {
		pthread_rwlock_rdlock(&l->io_lock);
		r = l->bs->ops->unmap(l->bs, lba << l->block_shift, n << l->block_shift);
		pthread_rwlock_unlock(&l->io_lock);
		if (r != -EOPNOTSUPP)
			goto done;
		r = 0;
	}
	chunk = (size_t)(n << l->block_shift);
	if (chunk > (1u << 20))
		chunk = 1u << 20;
	buf = malloc(chunk);
	if (!buf)
		goto nomem;
	for (size_t i = 0; i < chunk; i += l->block_size)
		memcpy(buf + i, pat, l->block_size);
	pthread_rwlock_rdlock(&l->io_lock);
	for (done = 0; done < n && !r;) {
		uint64_t left = (n - done) << l->block_shift;
		struct iovec v = { buf, left < chunk ? (size_t)left : chunk };

		r = l->bs->ops->writev(l->bs, &v, 1, (lba + done) << l->block_shift);
		done += v.iov_len >> l->block_shift;
	}
	pthread_rwlock_unlock(&l->io_lock);
done:
	if (!r)
		r = maybe_flush(t, false);
	if (r)
		io_error(t, r, true);
out:
	free(buf);
	free(zero);
	return;
nomem:
	scsi_set_sense(t, SK_HARDWARE_ERROR, ASC_INTERNAL_FAILURE);
	goto out;
}

struct lba_range {
	uint64_t lba, n;
};

static int range_cmp(const void *a, const void *b)
{
	const struct lba_range *x = a, *y = b;

	return x->lba < y->lba ? -1 : x->lba > y->lba;
}

static void cmd_unmap(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	const uint8_t *c = t->cdb, *p = t->out;
	uint32_t plen = get_be16(c + 7), bdl, nd;
	struct lba_range rg[256];
	int r = 0;

	if (!l->bs->thin) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
	if (c[1] & 0x01) { /* ANCHOR */
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!plen)
		return;
	if (plen < 8 || plen > t->out_len) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	if (!write_allowed(t))
		return;
	bdl = get_be16(p + 2);
	if (bdl > plen - 8)
		bdl = (plen - 8);
	nd = bdl / 16;
	if (nd > 256) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
		return;
	}
	/* Every range is checked before anything is freed; then they are
	 * sorted and merged: initiators send one descriptor per block, or
	 * overlapping ones, and a store frees whole blocks of its own. */
	for (uint32_t i = 0; i < nd; i++) {
		const uint8_t *d = p + 8 + 16 * i;

		rg[i].lba = get_be64(d);
		rg[i].n = get_be32(d + 8);
		if (!range_ok(t, rg[i].lba, rg[i].n))
			return;
	}
	qsort(rg, nd, sizeof(rg[0]), range_cmp);
	pthread_rwlock_rdlock(&l->io_lock);
	for (uint32_t i = 0; i < nd && !r;) {
		uint64_t lba = rg[i].lba, end = lba + rg[i].n;

		for (i++; i < nd && rg[i].lba <= end; i++)
			if (rg[i].lba + rg[i].n > end)
				end = rg[i].lba + rg[i].n;
		if (end > lba)
			r = l->bs->ops->unmap(l->bs, lba << l->block_shift, (end - lba) << l->block_shift);
	}
	pthread_rwlock_unlock(&l->io_lock);
	if (r)
		io_error(t, r, true);
}

static void cmd_compare_and_write(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	const uint8_t *c = t->cdb;
	uint64_t lba = get_be64(c + 2), n = c[13];
	uint64_t bytes = n << l->block_shift;
	struct iovec v;
	int64_t off;
	int r;

	if (c[1] >> 5) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!range_ok(t, lba, n))
		return;
	if (!n) {
		/* 0 blocks is a no-op, but data-out with it means the
		 * initiator meant more than the 8-bit field can say */
		if (t->out_len)
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!write_allowed(t) || !out_len_ok(t, 2 * bytes))
		return;
	pthread_rwlock_wrlock(&l->io_lock);
	off = compare_medium(t, lba, n, t->out, 0, &r);
	if (!r && off < 0) {
		v.iov_base = (void *)(t->out + bytes);
		v.iov_len = (size_t)bytes;
		r = l->bs->ops->writev(l->bs, &v, 1, lba << l->block_shift);
	}
	pthread_rwlock_unlock(&l->io_lock);
	if (r)
		io_error(t, r, true);
	else if (off >= 0)
		scsi_set_sense_info(t, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY, (uint64_t)off);
	else if ((r = maybe_flush(t, c[1] & 0x08)))
		io_error(t, r, true);
}

static void cmd_orwrite(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	struct rw x = decode_rw(t->cdb);
	size_t bytes = (size_t)(x.n << l->block_shift);
	uint8_t *m;
	struct iovec v;
	int r;

	t->xfer_len = (uint32_t)bytes;
	t->residual_set = true;
	if (x.prot) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!range_ok(t, x.lba, x.n))
		return;
	if (bytes > MAX_XFER_BYTES) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!write_allowed(t) || !out_len_ok(t, bytes) || !x.n)
		return;
	m = malloc(bytes);
	if (!m) {
		scsi_set_sense(t, SK_HARDWARE_ERROR, ASC_INTERNAL_FAILURE);
		return;
	}
	v.iov_base = m;
	v.iov_len = bytes;
	pthread_rwlock_wrlock(&l->io_lock);
	r = l->bs->ops->readv(l->bs, &v, 1, x.lba << l->block_shift);
	if (!r) {
		for (size_t i = 0; i < bytes; i++)
			m[i] |= t->out[i];
		r = l->bs->ops->writev(l->bs, &v, 1, x.lba << l->block_shift);
	}
	pthread_rwlock_unlock(&l->io_lock);
	free(m);
	if (!r)
		r = maybe_flush(t, x.fua);
	if (r)
		io_error(t, r, true);
}

static void cmd_sync_prefetch(struct scsi_task *t, bool sync)
{
	struct rw x = decode_rw(t->cdb);
	int r;

	if (!range_ok(t, x.lba, x.n))
		return;
	if (sync && (r = t->lun->bs->ops->flush(t->lun->bs)))
		io_error(t, r, true);
}

static void read_defect_data(struct scsi_task *t)
{
	const uint8_t *c = t->cdb;
	uint8_t d[8] = { 0 };

	if (c[0] == 0x37) {
		uint32_t alloc = get_be16(c + 7);

		d[1] = c[2] & 0x1f;
		scsi_copy_in(t, d, alloc < 4 ? alloc : 4);
	} else {
		uint32_t alloc = get_be32(c + 6);

		d[1] = c[1] & 0x1f;
		scsi_copy_in(t, d, alloc < 8 ? alloc : 8);
	}
}

int sbc_exec(struct scsi_task *t)
{
	const uint8_t *c = t->cdb;

	switch (c[0]) {
	case 0x25: read_capacity10(t); return 0;
	case 0x9e:
		if ((c[1] & 0x1f) == 0x10)
			read_capacity16(t);
		else if ((c[1] & 0x1f) == 0x12)
			get_lba_status(t);
		else
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return 0;
	case 0x08: case 0x28: case 0xa8: case 0x88:
		cmd_read(t);
		return 0;
	case 0x0a: case 0x2a: case 0xaa: case 0x8a:
		cmd_write(t, false);
		return 0;
	case 0x9c:
		cmd_write(t, true);
		return 0;
	case 0x2e: case 0xae: case 0x8e:
		cmd_write_verify(t);
		return 0;
	case 0x2f: case 0xaf: case 0x8f:
		cmd_verify(t);
		return 0;
	case 0x41: case 0x93:
		cmd_write_same(t);
		return 0;
	case 0x42:
		cmd_unmap(t);
		return 0;
	case 0x89:
		cmd_compare_and_write(t);
		return 0;
	case 0x8b:
		cmd_orwrite(t);
		return 0;
	case 0x35: case 0x91:
		cmd_sync_prefetch(t, true);
		return 0;
	case 0x34: case 0x90:
		cmd_sync_prefetch(t, false);
		return 0;
	case 0x37: case 0xb7:
		read_defect_data(t);
		return 0;
	}
	return -ENOENT;
}
