/* Third-party copy (SPC-4 LID1): EXTENDED COPY with identification target
 * descriptors (0xE4, matched against our NAA designators) and block-to-block
 * segment descriptors (0x02); RECEIVE COPY RESULTS (COPY STATUS, OPERATING
 * PARAMETERS).  The copy runs inside the target: data never crosses the
 * network, which is what VAAI "full copy" clones rely on. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdu.h"
#include "scsi.h"

#define XC_MAX_TGT 2
#define XC_MAX_SEG 8
#define XC_MAX_LIST_LEN (16 + XC_MAX_TGT * 32 + XC_MAX_SEG * 28)
#define XC_MAX_SEG_BYTES (64u << 20)

#define SK_COPY_ABORTED 0x0a
#define ASC_TOO_MANY_TGT_DESC   0x2606
#define ASC_UNSUPP_TGT_DESC     0x2607
#define ASC_TOO_MANY_SEG_DESC   0x2608
#define ASC_UNSUPP_SEG_DESC     0x2609
#define ASC_COPY_TGT_UNREACH    0x0d02
#define ASC_COPY_TGT_UNDERRUN   0x0d04

static int find_status(struct scsi_lun *l, const char *nexus, uint8_t list_id)
{
	for (int i = 0; i < XC_STATUS_MAX; i++)
		if (l->xc[i].used && l->xc[i].list_id == list_id && !strcmp(l->xc[i].nexus, nexus))
			return i;
	return -1;
}

static void remember(struct scsi_lun *l, const char *nexus, uint8_t list_id, uint16_t segs,
		     uint32_t blocks)
{
	int i;

	pthread_mutex_lock(&l->lock);
	i = find_status(l, nexus, list_id);
	if (i < 0)
		for (i = 0; i < XC_STATUS_MAX && l->xc[i].used; i++)
			;
	if (i >= XC_STATUS_MAX)
		i = (int)(l->xc_next++ % XC_STATUS_MAX);
	l->xc[i].used = true;
	l->xc[i].list_id = list_id;
	l->xc[i].segs = segs;
	l->xc[i].blocks = blocks;
	snprintf(l->xc[i].nexus, sizeof(l->xc[i].nexus), "%s", nexus);
	pthread_mutex_unlock(&l->lock);
}

/* Copy @n blocks between two LUs (same block size) in 1 MiB chunks. */
static int copy_blocks(struct scsi_lun *src, uint64_t slba, struct scsi_lun *dst, uint64_t dlba,
		       uint64_t n)
{
	size_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk);
	int r = 0;

	if (!buf)
		return -ENOMEM;
	while (n && !r) {
		uint64_t blocks = (chunk >> src->block_shift) < n ? (chunk >> src->block_shift) : n;
		struct iovec v = { buf, (size_t)(blocks << src->block_shift) };

		pthread_rwlock_rdlock(&src->io_lock);
		r = src->bs->ops->readv(src->bs, &v, 1, slba << src->block_shift);
		pthread_rwlock_unlock(&src->io_lock);
		if (!r) {
			pthread_rwlock_rdlock(&dst->io_lock);
			r = dst->bs->ops->writev(dst->bs, &v, 1, dlba << dst->block_shift);
			pthread_rwlock_unlock(&dst->io_lock);
		}
		slba += blocks;
		dlba += blocks;
		n -= blocks;
	}
	free(buf);
	return r;
}

void xcopy_extended_copy(struct scsi_task *t)
{
	const uint8_t *c = t->cdb, *p = t->out;
	uint32_t plen = get_be32(c + 10), tdl, sdl, inl, ntd, off;
	struct scsi_lun *tgts[XC_MAX_TGT];
	uint32_t total_blocks = 0;
	uint16_t nseg = 0;
	uint8_t usage;

	if ((c[1] & 0x1f) != 0) {  /* LID4 not supported */
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!plen)
		return;
	if (plen < 16 || plen > t->out_len) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	tdl = get_be16(p + 2);
	sdl = get_be32(p + 8);
	inl = get_be32(p + 12);
	usage = (p[1] >> 3) & 3;
	if ((uint64_t)16 + tdl + sdl + inl > plen) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	if (tdl + sdl > XC_MAX_LIST_LEN) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	if (tdl % 32) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	ntd = tdl / 32;
	if (ntd > XC_MAX_TGT) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_TOO_MANY_TGT_DESC);
		return;
	}
	/* count segment descriptors first (limit before anything else) */
	for (off = 0; off < sdl; nseg++) {
		uint32_t dl;

		if (sdl - off < 4) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
			return;
		}
		dl = 4u + get_be16(p + 16 + tdl + off + 2);
		if (dl > sdl - off) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
			return;
		}
		off += dl;
	}
	if (nseg > XC_MAX_SEG) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_TOO_MANY_SEG_DESC);
		return;
	}
	/* target descriptors: identification descriptors naming our LUs */
	for (uint32_t i = 0; i < ntd; i++) {
		const uint8_t *d = p + 16 + 32 * i;

		if (d[0] != 0xe4) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_UNSUPP_TGT_DESC);
			return;
		}
		/* LU ID TYPE (d[1] >> 6) does not apply: the designator
		 * names the LU. */
		if ((d[1] & 0x1f) != 0) {  /* peripheral type: block devices only */
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_UNSUPP_TGT_DESC);
			return;
		}
		if (d[1] & 0x20) {         /* NUL: no device to copy to/from */
			scsi_set_sense(t, SK_COPY_ABORTED, ASC_COPY_TGT_UNREACH);
			return;
		}
		tgts[i] = t->find_lu ? t->find_lu(t->find_arg, d + 4) : NULL;
		if (!tgts[i] || get_be24(d + 29) != tgts[i]->block_size) {
			scsi_set_sense(t, SK_COPY_ABORTED, ASC_COPY_TGT_UNREACH);
			return;
		}
	}
	/* validate every segment before copying anything */
	for (off = 0; off < sdl;) {
		const uint8_t *s = p + 16 + tdl + off;
		uint32_t dl = 4u + get_be16(s + 2);
		uint16_t si, di;
		uint64_t n, sl, dlba;

		if (s[0] != 0x02) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_UNSUPP_SEG_DESC);
			return;
		}
		if (dl != 28) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
			return;
		}
		si = get_be16(s + 4);
		di = get_be16(s + 6);
		n = get_be16(s + 10);
		sl = get_be64(s + 12);
		dlba = get_be64(s + 20);
		if (si >= ntd || di >= ntd) {
			scsi_set_sense(t, SK_COPY_ABORTED, ASC_COPY_TGT_UNREACH);
			return;
		}
		if (tgts[si]->block_size != tgts[di]->block_size ||
		    sl > tgts[si]->nblocks || n > tgts[si]->nblocks - sl ||
		    dlba > tgts[di]->nblocks || n > tgts[di]->nblocks - dlba) {
			/* SPC-4 6.4.6: COPY ABORTED; no more specific code fits */
			scsi_set_sense(t, SK_COPY_ABORTED, ASC_NO_ADDITIONAL_SENSE);
			return;
		}
		if (tgts[di]->swp || tgts[di]->bs->rdonly) {
			scsi_set_sense(t, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
			return;
		}
		off += dl;
	}
	for (off = 0; off < sdl;) {
		const uint8_t *s = p + 16 + tdl + off;
		uint16_t si = get_be16(s + 4), di = get_be16(s + 6);
		uint64_t n = get_be16(s + 10);
		int r = copy_blocks(tgts[si], get_be64(s + 12), tgts[di], get_be64(s + 20), n);

		if (r) {
			scsi_set_sense(t, SK_COPY_ABORTED, ASC_COPY_TGT_UNDERRUN);
			return;
		}
		total_blocks += (uint32_t)n;
		off += 28;
	}
	if (usage != 2) /* 10b: the initiator will not ask for results */
		remember(t->lun, t->nexus->name, p[0], nseg, total_blocks);
}

void xcopy_receive_results(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	const uint8_t *c = t->cdb;
	uint32_t alloc = get_be32(c + 10);
	uint8_t d[64] = { 0 };
	int i;

	switch (c[1] & 0x1f) {
	case 0x00: /* COPY STATUS */
		pthread_mutex_lock(&l->lock);
		i = find_status(l, t->nexus->name, c[2]);
		if (i >= 0) {
			put_be32(d, 8);
			d[4] = c[2];
			d[5] = 0x01;                     /* completed, no errors */
			put_be16(d + 6, l->xc[i].segs);
			d[8] = 0xf1;                     /* transfer count in blocks */
			put_be24(d + 9, l->xc[i].blocks);
			l->xc[i].used = false;           /* reported: forget it */
		}
		pthread_mutex_unlock(&l->lock);
		if (i < 0) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return;
		}
		scsi_copy_in(t, d, alloc < 12 ? alloc : 12);
		return;
	case 0x03: /* OPERATING PARAMETERS */
		put_be32(d, 44 + 2 - 4);
		d[4] = 0;                                /* SNLID: list ids required */
		put_be16(d + 8, XC_MAX_TGT);
		put_be16(d + 10, XC_MAX_SEG);
		put_be32(d + 12, XC_MAX_LIST_LEN);
		put_be32(d + 16, XC_MAX_SEG_BYTES);
		put_be32(d + 20, 0);                     /* no inline data */
		put_be16(d + 34, 1);                     /* total concurrent copies */
		d[36] = 1;
		d[37] = (uint8_t)l->block_shift;         /* data segment granularity */
		d[43] = 2;                               /* implemented descriptor codes */
		d[44] = 0x02;
		d[45] = 0xe4;
		scsi_copy_in(t, d, alloc < 46 ? alloc : 46);
		return;
	}
	scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
}

/* VPD page 0x8F: which third-party copy commands we support. */
uint32_t xcopy_vpd(uint8_t *d)
{
	uint32_t n = 4;

	put_be16(d + n, 0x0001);                         /* Supported Commands */
	put_be16(d + n + 2, 8);
	d[n + 4] = 7;                                    /* list length */
	d[n + 5] = 0x83;                                 /* EXTENDED COPY */
	d[n + 6] = 1;
	d[n + 7] = 0x00;                                 /* LID1 */
	d[n + 8] = 0x84;                                 /* RECEIVE COPY RESULTS */
	d[n + 9] = 2;
	d[n + 10] = 0x00;                                /* COPY STATUS */
	d[n + 11] = 0x03;                                /* OPERATING PARAMETERS */
	n += 12;
	return n;
}
