/* SPC-4 primary commands: INQUIRY (+ VPD), REPORT LUNS, REQUEST SENSE,
 * TEST UNIT READY, MODE SENSE/SELECT, REPORT SUPPORTED OPERATION CODES,
 * RESERVE/RELEASE(6), START STOP UNIT; PERSISTENT RESERVE IN/OUT are in pr.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdu.h"
#include "scsi.h"

#define VENDOR  "OpenVMFS"
#define PRODUCT "VIRTUAL-DISK    "
#define REV     "0001"
/* Vendor part of our NAA identifiers (IEEE company id field). */
#define NAA_OUI 0x6e564du

/* Block limits advertised in VPD 0xB0 and enforced in sbc.c. */
#define MAX_XFER_BLOCKS_BYTES (8u << 20)

const struct scsi_opinfo scsi_ops[] = {
	{ 0x00, 0, false, 6,  { 0x00, 0, 0, 0, 0, 0 } },
	{ 0x03, 0, false, 6,  { 0x03, 0x01, 0, 0, 0xff, 0 } },
	{ 0x08, 0, false, 6,  { 0x08, 0x1f, 0xff, 0xff, 0xff, 0 } },
	{ 0x0a, 0, false, 6,  { 0x0a, 0x1f, 0xff, 0xff, 0xff, 0 } },
	{ 0x12, 0, false, 6,  { 0x12, 0x01, 0xff, 0xff, 0xff, 0 } },
	{ 0x15, 0, false, 6,  { 0x15, 0x11, 0, 0, 0xff, 0 } },
	{ 0x16, 0, false, 6,  { 0x16, 0, 0, 0, 0, 0 } },
	{ 0x17, 0, false, 6,  { 0x17, 0, 0, 0, 0, 0 } },
	{ 0x1a, 0, false, 6,  { 0x1a, 0x08, 0xff, 0xff, 0xff, 0 } },
	{ 0x1b, 0, false, 6,  { 0x1b, 0x01, 0, 0x0f, 0xf7, 0 } },
	{ 0x25, 0, false, 10, { 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0 } },
	{ 0x28, 0, false, 10, { 0x28, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0 } },
	{ 0x2a, 0, false, 10, { 0x2a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0 } },
	{ 0x2e, 0, false, 10, { 0x2e, 0xf2, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0 } },
	{ 0x2f, 0, false, 10, { 0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0 } },
	{ 0x34, 0, false, 10, { 0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0 } },
	{ 0x35, 0, false, 10, { 0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0 } },
	{ 0x37, 0, false, 10, { 0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0 } },
	{ 0x41, 0, false, 10, { 0x41, 0xe8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0 } },
	{ 0x42, 0, false, 10, { 0x42, 0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0 } },
	{ 0x55, 0, false, 10, { 0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0 } },
	{ 0x5a, 0, false, 10, { 0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0 } },
	{ 0x5e, 0, true, 10,  { 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0 } },
	{ 0x5e, 1, true, 10,  { 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0 } },
	{ 0x5e, 2, true, 10,  { 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0 } },
	{ 0x5e, 3, true, 10,  { 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0 } },
	{ 0x5f, 0, true, 10,  { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0 } },
	{ 0x5f, 1, true, 10,  { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0 } },
	{ 0x5f, 2, true, 10,  { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0 } },
	{ 0x5f, 3, true, 10,  { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0 } },
	{ 0x5f, 4, true, 10,  { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0 } },
	{ 0x5f, 5, true, 10,  { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0 } },
	{ 0x5f, 6, true, 10,  { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0 } },
	{ 0x83, 0x00, true, 16, { 0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0 } },
	{ 0x84, 0x00, true, 16, { 0x84, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0 } },
	{ 0x84, 0x03, true, 16, { 0x84, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0 } },
	{ 0x88, 0, false, 16, { 0x88, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0x89, 0, false, 16, { 0x89, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0, 0, 0, 0xff, 0x1f, 0 } },
	{ 0x8a, 0, false, 16, { 0x8a, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0x8b, 0, false, 16, { 0x8b, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0x8e, 0, false, 16, { 0x8e, 0xf2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0x8f, 0, false, 16, { 0x8f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0x90, 0, false, 16, { 0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0x91, 0, false, 16, { 0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0x93, 0, false, 16, { 0x93, 0xe9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0x9c, 0, false, 16, { 0x9c, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				0, 0, 0xff, 0xff, 0x1f, 0 } },
	{ 0x9e, 0x10, true, 16, { 0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0 } },
	{ 0x9e, 0x12, true, 16, { 0x9e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				  0xff, 0xff, 0xff, 0xff, 0, 0 } },
	{ 0xa0, 0, false, 12, { 0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0 } },
	{ 0xa3, 0x0c, true, 12, { 0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0 } },
	{ 0xa8, 0, false, 12, { 0xa8, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0xaa, 0, false, 12, { 0xaa, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0xae, 0, false, 12, { 0xae, 0xf2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0xaf, 0, false, 12, { 0xaf, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0 } },
	{ 0xb7, 0, false, 12, { 0xb7, 0, 0x1f, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0 } },
};
const int scsi_nops = (int)(sizeof(scsi_ops) / sizeof(scsi_ops[0]));

static void inquiry_std(struct scsi_task *t, uint32_t alloc)
{
	uint8_t d[74] = { 0 };
	static const uint16_t vd[] = { 0x00c0 /* SAM-5 */, 0x0960 /* iSCSI */,
				       0x0460 /* SPC-4 */, 0x04c0 /* SBC-3 */ };

	d[0] = 0x00;             /* direct access block device */
	d[2] = 0x06;             /* SPC-4 */
	d[3] = 0x12;             /* HISUP, response data format 2 */
	d[4] = sizeof(d) - 5;
	d[7] = 0x02;             /* CMDQUE */
	memcpy(d + 8, VENDOR, 8);
	memcpy(d + 16, PRODUCT, 16);
	memcpy(d + 32, REV, 4);
	for (unsigned i = 0; i < sizeof(vd) / sizeof(vd[0]); i++)
		put_be16(d + 58 + 2 * i, vd[i]);
	scsi_copy_in(t, d, alloc < sizeof(d) ? alloc : sizeof(d));
}

void scsi_lun_naa(const struct scsi_lun *l, uint8_t *d)
{
	d[0] = (uint8_t)(0x60 | (NAA_OUI >> 20));
	d[1] = (uint8_t)(NAA_OUI >> 12);
	d[2] = (uint8_t)(NAA_OUI >> 4);
	d[3] = (uint8_t)((NAA_OUI & 0xf) << 4 | ((l->id >> 60) & 0xf));
	put_be32(d + 4, (uint32_t)(l->id >> 28));
	put_be32(d + 8, (uint32_t)(l->id << 4));
	put_be32(d + 12, (uint32_t)((l->id * 0x9e3779b97f4a7c15ull) >> 32));
}

static uint32_t vpd_devid(struct scsi_task *t, uint8_t *d)
{
	struct scsi_lun *l = t->lun;
	uint32_t n = 4;
	size_t sl;

	/* NAA 6 (IEEE registered extended), logical unit */
	d[n++] = 0x01; d[n++] = 0x03; d[n++] = 0; d[n++] = 16;
	scsi_lun_naa(l, d + n);
	n += 16;
	/* EUI-64, logical unit */
	d[n++] = 0x01; d[n++] = 0x02; d[n++] = 0; d[n++] = 8;
	put_be64(d + n, l->id);
	n += 8;
	/* T10 vendor id + serial */
	d[n++] = 0x02; d[n++] = 0x01; d[n++] = 0; d[n++] = 24;
	memcpy(d + n, VENDOR, 8);
	memcpy(d + n + 8, l->serial, 16);
	n += 24;
	/* relative target port (PIV, iSCSI, target port association) */
	d[n++] = 0x51; d[n++] = 0x94; d[n++] = 0; d[n++] = 4;
	put_be16(d + n + 2, t->nexus ? t->nexus->rel_port : 1);
	n += 4;
	/* target port group */
	d[n++] = 0x51; d[n++] = 0x95; d[n++] = 0; d[n++] = 4;
	put_be16(d + n + 2, 1);
	n += 4;
	/* SCSI name string of the target port: "<iqn>,t,0x0001" */
	sl = strlen(l->target_name) + 9;
	sl = (sl + 1 + 3) & ~(size_t)3;
	d[n++] = 0x53; d[n++] = 0x98; d[n++] = 0; d[n++] = (uint8_t)sl;
	memset(d + n, 0, sl);
	snprintf((char *)d + n, sl, "%s,t,0x0001", l->target_name);
	n += (uint32_t)sl;
	/* SCSI name string of the target device */
	sl = strlen(l->target_name);
	sl = (sl + 1 + 3) & ~(size_t)3;
	d[n++] = 0x53; d[n++] = 0xa8; d[n++] = 0; d[n++] = (uint8_t)sl;
	memset(d + n, 0, sl);
	memcpy(d + n, l->target_name, strlen(l->target_name));
	n += (uint32_t)sl;
	return n;
}

static void inquiry_vpd(struct scsi_task *t, uint8_t page, uint32_t alloc)
{
	struct scsi_lun *l = t->lun;
	uint8_t d[1024] = { 0 };
	uint32_t n = 4;
	bool thin = l->bs->thin;

	d[1] = page;
	switch (page) {
	case 0x00: {
		static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2 };

		memcpy(d + 4, pages, sizeof(pages));
		n += sizeof(pages);
		break;
	}
	case 0x80:
		memcpy(d + 4, l->serial, 16);
		n += 16;
		break;
	case 0x83:
		n = vpd_devid(t, d);
		break;
	case 0x8f:
		n = xcopy_vpd(d);
		break;
	case 0xb0:
		n = 64;
		d[4] = 0;                                   /* WSNZ = 0 */
		d[5] = 255;                                 /* max COMPARE AND WRITE blocks */
		put_be16(d + 6, 1);                         /* optimal granularity */
		put_be32(d + 8, MAX_XFER_BLOCKS_BYTES >> l->block_shift);
		put_be32(d + 12, (1u << 20) >> l->block_shift);
		put_be32(d + 16, MAX_XFER_BLOCKS_BYTES >> l->block_shift); /* prefetch */
		if (thin) {
			uint32_t g = l->bs->unmap_granularity ? l->bs->unmap_granularity : 4096;

			put_be32(d + 20, 0xffffffffu);      /* max unmap LBA count */
			put_be32(d + 24, 256);              /* max unmap descriptors */
			put_be32(d + 28, g >> l->block_shift ? g >> l->block_shift : 1);
			put_be32(d + 32, 0x80000000u);      /* UGAVALID, alignment 0 */
		}
		put_be64(d + 36, 0xffff);                   /* max WRITE SAME blocks */
		put_be32(d + 44, (1u << 20) >> l->block_shift); /* max atomic transfer */
		put_be32(d + 48, 1);                        /* atomic alignment */
		put_be32(d + 52, 1);                        /* atomic granularity */
		break;
	case 0xb1:
		n = 64;
		put_be16(d + 4, 1);                         /* non-rotating */
		d[7] = 0;
		break;
	case 0xb2:
		n = 8;
		d[4] = 0;
		if (thin) {
			d[5] = 0x80 | 0x40 | 0x20 | 0x04;   /* LBPU LBPWS LBPWS10 LBPRZ */
			d[6] = 0x02;                        /* thin provisioned */
		} else {
			d[6] = 0x00;
		}
		break;
	default:
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	put_be16(d + 2, (uint16_t)(n - 4));
	scsi_copy_in(t, d, alloc < n ? alloc : n);
}

static void inquiry(struct scsi_task *t)
{
	const uint8_t *c = t->cdb;
	uint32_t alloc = get_be16(c + 3);

	if (c[1] & 0x01)
		inquiry_vpd(t, c[2], alloc);
	else if (c[2] || (c[1] & 0x02))
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
	else
		inquiry_std(t, alloc);
}

static void report_luns(struct scsi_task *t)
{
	const uint8_t *c = t->cdb;
	uint32_t alloc = get_be32(c + 6);
	uint16_t luns[1024];
	uint8_t *d;
	int n = 0;

	if (c[2] > 2) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (c[2] != 1 && t->list_luns)
		n = t->list_luns(t->list_arg, luns, 1024);
	d = calloc(1, 8 + 8 * (size_t)(n > 0 ? n : 1));
	if (!d) {
		scsi_set_sense(t, SK_HARDWARE_ERROR, ASC_INTERNAL_FAILURE);
		return;
	}
	put_be32(d, 8u * (uint32_t)n);
	for (int i = 0; i < n; i++) {
		uint8_t *e = d + 8 + 8 * i;

		if (luns[i] < 256) {
			e[1] = (uint8_t)luns[i];
		} else {
			e[0] = (uint8_t)(0x40 | (luns[i] >> 8));
			e[1] = (uint8_t)luns[i];
		}
	}
	scsi_copy_in(t, d, alloc < 8u + 8u * (uint32_t)n ? alloc : 8u + 8u * (uint32_t)n);
	free(d);
}

static void request_sense(struct scsi_task *t)
{
	const uint8_t *c = t->cdb;
	uint32_t alloc = c[4];
	uint8_t d[18] = { 0 };
	uint16_t asc = t->lun ? ASC_NO_ADDITIONAL_SENSE : ASC_LUN_NOT_SUPPORTED;
	uint8_t key = t->lun ? SK_NO_SENSE : SK_ILLEGAL_REQUEST;

	if (c[1] & 0x01) {
		d[0] = 0x72;
		d[1] = key;
		d[2] = (uint8_t)(asc >> 8);
		d[3] = (uint8_t)asc;
		scsi_copy_in(t, d, alloc < 8 ? alloc : 8);
	} else {
		d[0] = 0x70;
		d[2] = key;
		d[7] = 10;
		d[12] = (uint8_t)(asc >> 8);
		d[13] = (uint8_t)asc;
		scsi_copy_in(t, d, alloc < 18 ? alloc : 18);
	}
}

/* ---- mode pages ---------------------------------------------------------- */

/* pc: 0 current, 1 changeable, 2 default. */
static uint32_t mode_page(struct scsi_lun *l, uint8_t page, int pc, uint8_t *p)
{
	switch (page) {
	case 0x01: /* read-write error recovery */
		memset(p, 0, 12);
		p[0] = 0x01; p[1] = 0x0a;
		if (pc != 1)
			p[2] = 0xc0; /* AWRE ARRE */
		return 12;
	case 0x08: /* caching */
		memset(p, 0, 20);
		p[0] = 0x08; p[1] = 0x12;
		if (pc == 1)
			p[2] = 0x04;
		else if (pc == 2)
			p[2] = 0x04;
		else
			p[2] = l->wce ? 0x04 : 0;
		return 20;
	case 0x0a: /* control */
		memset(p, 0, 12);
		p[0] = 0x0a; p[1] = 0x0a;
		if (pc == 1) {
			p[2] = 0x04;  /* D_SENSE */
			p[4] = 0x08;  /* SWP */
			return 12;
		}
		p[2] = (pc == 0 && l->d_sense) ? 0x04 : 0;
		p[3] = 0x10;          /* QAM: unrestricted reordering */
		p[4] = (pc == 0 && l->swp) ? 0x08 : 0;
		p[5] = 0x40;          /* TAS */
		put_be16(p + 8, 0xffff);
		return 12;
	case 0x1c: /* informational exceptions control */
		memset(p, 0, 12);
		p[0] = 0x1c; p[1] = 0x0a;
		if (pc != 1)
			p[2] = 0x08;  /* DEXCPT */
		return 12;
	}
	return 0;
}

static const uint8_t all_pages[] = { 0x01, 0x08, 0x0a, 0x1c };

static void mode_sense(struct scsi_task *t, bool ten)
{
	struct scsi_lun *l = t->lun;
	const uint8_t *c = t->cdb;
	bool dbd = c[1] & 0x08, llbaa = ten && (c[1] & 0x10);
	int pc = c[2] >> 6;
	uint8_t page = c[2] & 0x3f, sub = c[3];
	uint32_t alloc = ten ? get_be16(c + 7) : c[4];
	uint8_t d[512] = { 0 };
	uint32_t hdr = ten ? 8 : 4, n = hdr, bdl = 0;

	if (pc == 3) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED);
		return;
	}
	if (sub != 0 && !(sub == 0xff && page == 0x3f)) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	pthread_mutex_lock(&l->lock);
	if (!dbd) {
		if (llbaa) {
			bdl = 16;
			put_be64(d + n, l->nblocks);
			put_be32(d + n + 12, l->block_size);
		} else {
			bdl = 8;
			put_be32(d + n, l->nblocks > 0xffffffffu ? 0xffffffffu : (uint32_t)l->nblocks);
			put_be24(d + n + 5, l->block_size);
		}
		n += bdl;
	}
	if (page == 0x3f) {
		for (unsigned i = 0; i < sizeof(all_pages); i++)
			n += mode_page(l, all_pages[i], pc, d + n);
	} else {
		uint32_t m = mode_page(l, page, pc, d + n);

		if (!m) {
			pthread_mutex_unlock(&l->lock);
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return;
		}
		n += m;
	}
	if (ten) {
		put_be16(d, (uint16_t)(n - 2));
		d[3] = (uint8_t)(((l->swp || l->bs->rdonly) ? 0x80 : 0) | 0x10);
		if (llbaa)
			d[4] = 0x01;
		put_be16(d + 6, (uint16_t)bdl);
	} else {
		d[0] = (uint8_t)(n - 1);
		d[2] = (uint8_t)(((l->swp || l->bs->rdonly) ? 0x80 : 0) | 0x10);
		d[3] = (uint8_t)bdl;
	}
	pthread_mutex_unlock(&l->lock);
	scsi_copy_in(t, d, alloc < n ? alloc : n);
}

static void mode_select(struct scsi_task *t, bool ten)
{
	struct scsi_lun *l = t->lun;
	const uint8_t *c = t->cdb, *p = t->out;
	uint32_t plen = ten ? get_be16(c + 7) : c[4], hdr = ten ? 8 : 4, bdl, off;
	bool changed = false;

	if ((c[1] & 0x01) || !(c[1] & 0x10)) { /* SP unsupported, PF required */
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!plen)
		return;
	if (plen > t->out_len || plen < hdr) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	bdl = ten ? get_be16(p + 6) : p[3];
	if (hdr + bdl > plen) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	pthread_mutex_lock(&l->lock);
	bool wce = l->wce, dsense = l->d_sense, swp = l->swp;

	for (off = hdr + bdl; off < plen;) {
		uint8_t cur[32], chg[32];
		uint32_t len;

		if (off + 2 > plen)
			goto bad_len;
		len = mode_page(l, p[off] & 0x3f, 0, cur);
		if (!len || (p[off] & 0x40) || (uint32_t)p[off + 1] + 2 != len)
			goto bad_field;
		if (off + len > plen)
			goto bad_len;
		mode_page(l, p[off] & 0x3f, 1, chg);
		for (uint32_t i = 2; i < len; i++)
			if ((p[off + i] ^ cur[i]) & ~chg[i])
				goto bad_field;
		if ((p[off] & 0x3f) == 0x08)
			wce = p[off + 2] & 0x04;
		if ((p[off] & 0x3f) == 0x0a) {
			dsense = p[off + 2] & 0x04;
			swp = p[off + 4] & 0x08;
		}
		off += len;
	}
	changed = wce != l->wce || dsense != l->d_sense || swp != l->swp;
	l->wce = wce;
	l->d_sense = dsense;
	l->swp = swp;
	pthread_mutex_unlock(&l->lock);
	if (changed && l->ua_fn)
		l->ua_fn(l->ua_arg, l, NULL, t->nexus ? t->nexus->name : NULL, ASC_PARAMS_CHANGED);
	return;
bad_len:
	pthread_mutex_unlock(&l->lock);
	scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
	return;
bad_field:
	pthread_mutex_unlock(&l->lock);
	scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
}

/* ---- REPORT SUPPORTED OPERATION CODES ------------------------------------ */

static void rsoc(struct scsi_task *t)
{
	const uint8_t *c = t->cdb;
	unsigned opts = c[2] & 0x07;
	bool rctd = c[2] & 0x80;
	uint8_t reqop = c[3];
	uint16_t reqsa = get_be16(c + 4);
	uint32_t alloc = get_be32(c + 6), n = 0;
	uint8_t d[4096];

	memset(d, 0, sizeof(d));
	if (opts == 0) {
		n = 4;
		for (int i = 0; i < scsi_nops; i++) {
			const struct scsi_opinfo *o = &scsi_ops[i];

			d[n] = o->op;
			put_be16(d + n + 2, o->sa);
			d[n + 5] = (uint8_t)((rctd ? 0x02 : 0) | (o->has_sa ? 0x01 : 0));
			put_be16(d + n + 6, o->cdb_len);
			n += 8;
			if (rctd) {
				put_be16(d + n, 0x0a);
				n += 12;
			}
		}
		put_be32(d, n - 4);
	} else if (opts <= 3) {
		const struct scsi_opinfo *o = NULL;
		bool op_has_sa = false, known = false;

		for (int i = 0; i < scsi_nops; i++) {
			if (scsi_ops[i].op != reqop)
				continue;
			known = true;
			op_has_sa = scsi_ops[i].has_sa;
			if (!scsi_ops[i].has_sa || scsi_ops[i].sa == reqsa) {
				o = &scsi_ops[i];
				break;
			}
		}
		if (known && ((opts == 1 && op_has_sa) || (opts == 2 && !op_has_sa))) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return;
		}
		if (opts == 1 && o && o->has_sa)
			o = NULL;
		d[1] = o ? 0x03 : 0x01;
		if (rctd)
			d[1] |= 0x80;
		if (o) {
			put_be16(d + 2, o->cdb_len);
			memcpy(d + 4, o->usage, o->cdb_len);
			n = 4 + o->cdb_len;
		} else {
			n = 4;
		}
		if (rctd) {
			put_be16(d + n, 0x0a);
			n += 12;
		}
	} else {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	scsi_copy_in(t, d, alloc < n ? alloc : n);
}

/* ---- RESERVE/RELEASE(6) -------------------------------------------------- */

void spc_reserve6(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;

	pthread_mutex_lock(&l->lock);
	if (l->res6 && strcmp(l->res6_holder, t->nexus->name)) {
		t->status = SAM_RESERVATION_CONFLICT;
	} else {
		l->res6 = true;
		snprintf(l->res6_holder, sizeof(l->res6_holder), "%s", t->nexus->name);
		__atomic_store_n(&l->restricted, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&l->lock);
}

void spc_release6(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;

	pthread_mutex_lock(&l->lock);
	if (l->res6 && !strcmp(l->res6_holder, t->nexus->name)) {
		l->res6 = false;
		__atomic_store_n(&l->restricted, l->pr_res || l->nregs, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&l->lock);
}

int spc_exec(struct scsi_task *t)
{
	switch (t->cdb[0]) {
	case 0x00: /* TEST UNIT READY */
		return 0;
	case 0x03:
		request_sense(t);
		return 0;
	case 0x12:
		inquiry(t);
		return 0;
	case 0xa0:
		report_luns(t);
		return 0;
	}
	if (!t->lun)
		return -ENOENT;
	switch (t->cdb[0]) {
	case 0x15: mode_select(t, false); return 0;
	case 0x55: mode_select(t, true); return 0;
	case 0x1a: mode_sense(t, false); return 0;
	case 0x5a: mode_sense(t, true); return 0;
	case 0x16: spc_reserve6(t); return 0;
	case 0x17: spc_release6(t); return 0;
	case 0x5e: pr_in(t); return 0;
	case 0x83: xcopy_extended_copy(t); return 0;
	case 0x84: xcopy_receive_results(t); return 0;
	case 0x5f: pr_out(t); return 0;
	case 0xa3:
		if ((t->cdb[1] & 0x1f) == 0x0c) {
			rsoc(t);
			return 0;
		}
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return 0;
	case 0x1b: /* START STOP UNIT: nothing to spin */
		if ((t->cdb[4] & 0xf0) && (t->cdb[4] >> 4) > 0xb) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return 0;
		}
		return 0;
	}
	return -ENOENT;
}
