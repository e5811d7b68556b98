/* VMFS3/5 on-disk encode/decode (FORMAT.md §2, §3, §5, §7, §8, §9). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ondisk.h"

/* Sizes and offsets the format fixes. */
_Static_assert(OD_FD_SIZE == 2048, "FD size");
_Static_assert(OD_FD_DATA_OFF + 256 * 4 == OD_FD_SIZE, "FD block array ends the FD");
_Static_assert(OD_FD_DATA_OFF - OD_FD_META_OFF == 512, "FD metadata sector");
_Static_assert(OD_CLUSTER_HDR_SIZE == 2 * OD_LOCK_SIZE, "cluster header = lock + meta");
_Static_assert(0x210 + OD_CLUSTER_BITMAP_MAX == 0x400, "cluster bitmap fills the header");
_Static_assert(OD_DIRENT_SIZE == 12 + OD_NAME_FIELD, "dirent size");
_Static_assert(OD_HB_OFF + OD_HB_SLOTS * OD_HB_SLOT_SIZE == OD_HB_END, "heartbeat region");
_Static_assert(OD_LVM_PETAB_OFF + OD_LVM_PES_PER_MAP * OD_PE_ENTRY_SIZE + OD_LVM_MAX_MAPS * OD_LVM_PEMAP_STRIDE
	       < OD_LVM_DATA_OFF, "PE maps fit before the data offset");
_Static_assert(sizeof(((struct vmfs_fd *)0)->blocks) == 1024, "block array");
_Static_assert(sizeof(((struct vmfs_cluster *)0)->bitmap) == OD_CLUSTER_BITMAP_MAX, "bitmap");

/* LVM header field offsets (§2.2). */
enum {
	LH_MAGIC = 0x00, LH_MAJOR = 0x04, LH_MINOR = 0x08, LH_DISKID_LEN = 0x0D,
	LH_SCSI_LEVEL = 0x11, LH_VENDOR = 0x12, LH_MODEL = 0x1A, LH_REV = 0x2A, LH_ID = 0x2E,
	LH_DISK_BS = 0x5A, LH_TOTAL = 0x5E, LH_NUMVOL = 0x66, LH_NUMPES = 0x6A, LH_LASTPE = 0x6E,
	LH_GEN = 0x72, LH_DATAOFF = 0x7A, LH_DEVID = 0x82, LH_INIT = 0x92, LH_MOD = 0x9A,
	LH_NUMPEMAPS = 0xBE,
};

void od_lvm_hdr_decode(const uint8_t *b, struct od_lvm_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = od_get32(b + LH_MAGIC);
	h->major = od_get32(b + LH_MAJOR);
	h->minor = od_get32(b + LH_MINOR);
	h->total_bytes = od_get64(b + LH_TOTAL);
	h->num_volumes = od_get32(b + LH_NUMVOL);
	h->num_pes = od_get32(b + LH_NUMPES);
	h->last_pe_index = od_get32(b + LH_LASTPE);
	h->generation = od_get64(b + LH_GEN);
	h->data_offset = od_get64(b + LH_DATAOFF);
	memcpy(h->dev_uuid, b + LH_DEVID, 16);
	h->init_time_us = od_get64(b + LH_INIT);
	h->mod_time_us = od_get64(b + LH_MOD);
	h->num_pe_maps = od_get32(b + LH_NUMPEMAPS);
}

void od_lvm_hdr_encode(const struct od_lvm_hdr *h, uint8_t *b)
{
	static const char id[] = "openvmfs";
	memset(b, 0, OD_LVM_HDR_SIZE);
	od_put32(b + LH_MAGIC, h->magic);
	od_put32(b + LH_MAJOR, h->major);
	od_put32(b + LH_MINOR, h->minor);
	b[LH_DISKID_LEN] = (uint8_t)strlen(id);
	b[LH_SCSI_LEVEL] = 5;
	memcpy(b + LH_VENDOR, "OpenVMFS", 8);
	memcpy(b + LH_MODEL, "Virtual disk    ", 16);
	memcpy(b + LH_REV, "1.0 ", 4);
	memcpy(b + LH_ID, id, strlen(id));
	od_put32(b + LH_DISK_BS, 512);
	od_put64(b + LH_TOTAL, h->total_bytes);
	od_put32(b + LH_NUMVOL, h->num_volumes);
	od_put32(b + LH_NUMPES, h->num_pes);
	od_put32(b + LH_LASTPE, h->last_pe_index);
	od_put64(b + LH_GEN, h->generation);
	od_put64(b + LH_DATAOFF, h->data_offset);
	memcpy(b + LH_DEVID, h->dev_uuid, 16);
	od_put64(b + LH_INIT, h->init_time_us);
	od_put64(b + LH_MOD, h->mod_time_us);
	od_put32(b + LH_NUMPEMAPS, h->num_pe_maps);
}

/* Volume table entry (§2.3). */
enum {
	LV_SIZE = 0x00, LV_GEN = 0x08, LV_STATE = 0x10, LV_NAME = 0x14, LV_UUID = 0x54,
	LV_SNAP = 0x64, LV_CTIME = 0x68, LV_VOLID = 0x70, LV_NUMPES = 0x74, LV_FIRST = 0x78,
	LV_LAST = 0x80, LV_MTIME = 0x88, LV_NUMDEVS = 0x90,
};

void od_lvm_vol_decode(const uint8_t *b, struct od_lvm_vol *v)
{
	memset(v, 0, sizeof(*v));
	v->logical_size = od_get64(b + LV_SIZE);
	v->generation = od_get64(b + LV_GEN);
	v->state = od_get32(b + LV_STATE);
	memcpy(v->name, b + LV_NAME, 64);
	v->name[64] = 0;
	memcpy(v->lv_uuid, b + LV_UUID, 16);
	v->snap_id = od_get32(b + LV_SNAP);
	v->creation_time_us = od_get64(b + LV_CTIME);
	v->volume_id = od_get32(b + LV_VOLID);
	v->num_pes = od_get32(b + LV_NUMPES);
	v->first_pe = od_get64(b + LV_FIRST);
	v->last_pe = od_get64(b + LV_LAST);
	v->mod_time_us = od_get64(b + LV_MTIME);
	v->num_devs = od_get32(b + LV_NUMDEVS);
}

void od_lvm_vol_encode(const struct od_lvm_vol *v, uint8_t *b)
{
	memset(b, 0, OD_LVM_VOL_SIZE);
	od_put64(b + LV_SIZE, v->logical_size);
	od_put64(b + LV_GEN, v->generation);
	od_put32(b + LV_STATE, v->state);
	memcpy(b + LV_NAME, v->name, strnlen(v->name, 64));
	memcpy(b + LV_UUID, v->lv_uuid, 16);
	od_put32(b + LV_SNAP, v->snap_id);
	od_put64(b + LV_CTIME, v->creation_time_us);
	od_put32(b + LV_VOLID, v->volume_id);
	od_put32(b + LV_NUMPES, v->num_pes);
	od_put64(b + LV_FIRST, v->first_pe);
	od_put64(b + LV_LAST, v->last_pe);
	od_put64(b + LV_MTIME, v->mod_time_us);
	od_put32(b + LV_NUMDEVS, v->num_devs);
}

/* PE table entry, packed (§2.4). */
void od_pe_encode(const struct od_pe_entry *e, uint8_t *b)
{
	memset(b, 0, OD_PE_ENTRY_SIZE);
	b[0] = e->used;
	od_put32(b + 0x01, e->pe_id);
	od_put32(b + 0x05, e->volume_id);
	od_put64(b + 0x09, e->poffset);
	od_put64(b + 0x11, e->loffset);
	od_put64(b + 0x19, e->length);
	od_put32(b + 0x21, e->version);
}

void od_pe_decode(const uint8_t *b, struct od_pe_entry *e)
{
	e->used = b[0];
	e->pe_id = od_get32(b + 0x01);
	e->volume_id = od_get32(b + 0x05);
	e->poffset = od_get64(b + 0x09);
	e->loffset = od_get64(b + 0x11);
	e->length = od_get64(b + 0x19);
	e->version = od_get32(b + 0x21);
}

/* FS descriptor (§3). */
enum {
	FS_MAGIC = 0x00, FS_MAJOR = 0x04, FS_MINOR = 0x08, FS_UUID = 0x09, FS_CONFIG = 0x19,
	FS_LABEL = 0x1D, FS_DISKBS = 0x9D, FS_BLKSIZE = 0xA1, FS_CTIME = 0xA9, FS_SNAP = 0xAD,
	FS_VOLINFO = 0xB1, FS_FDC_HDR = 0xD1, FS_FDC_CPG = 0xD5, FS_SBSIZE = 0xD9,
	FS_PB2_VOL = 0xE1, FS_PB2_FD = 0xE9, FS_SDD_VOL = 0x105, FS_SDD_FD = 0x10D,
};

void od_fsdesc_decode(const uint8_t *b, struct od_fsdesc *d)
{
	memset(d, 0, sizeof(*d));
	d->magic = od_get32(b + FS_MAGIC);
	d->major = od_get32(b + FS_MAJOR);
	d->minor = b[FS_MINOR];
	memcpy(d->uuid, b + FS_UUID, 16);
	d->config = od_get32(b + FS_CONFIG);
	memcpy(d->label, b + FS_LABEL, 128);
	d->label[128] = 0;
	d->disk_block_size = od_get32(b + FS_DISKBS);
	d->block_size = od_get64(b + FS_BLKSIZE);
	d->ctime = od_get32(b + FS_CTIME);
	d->snap_id = od_get32(b + FS_SNAP);
	memcpy(d->lvm_uuid, b + FS_VOLINFO, 16);
	d->lv_snap_id = od_get32(b + FS_VOLINFO + 16);
	d->fdc_hdr_size = od_get32(b + FS_FDC_HDR);
	d->fdc_clusters_per_group = od_get32(b + FS_FDC_CPG);
	d->subblock_size = od_get32(b + FS_SBSIZE);
	d->pb2_vol_addr = od_get64(b + FS_PB2_VOL);
	d->pb2_fd_addr = od_get32(b + FS_PB2_FD);
	d->sdd_vol_addr = od_get64(b + FS_SDD_VOL);
	d->sdd_fd_addr = od_get32(b + FS_SDD_FD);
}

void od_fsdesc_encode(const struct od_fsdesc *d, uint8_t *b)
{
	memset(b, 0, OD_FSDESC_SIZE);
	od_put32(b + FS_MAGIC, d->magic);
	od_put32(b + FS_MAJOR, d->major);
	b[FS_MINOR] = d->minor;
	memcpy(b + FS_UUID, d->uuid, 16);
	od_put32(b + FS_CONFIG, d->config);
	memcpy(b + FS_LABEL, d->label, strnlen(d->label, 128));
	od_put32(b + FS_DISKBS, d->disk_block_size);
	od_put64(b + FS_BLKSIZE, d->block_size);
	od_put32(b + FS_CTIME, d->ctime);
	od_put32(b + FS_SNAP, d->snap_id);
	memcpy(b + FS_VOLINFO, d->lvm_uuid, 16);
	od_put32(b + FS_VOLINFO + 16, d->lv_snap_id);
	od_put32(b + FS_FDC_HDR, d->fdc_hdr_size);
	od_put32(b + FS_FDC_CPG, d->fdc_clusters_per_group);
	od_put32(b + FS_SBSIZE, d->subblock_size);
	od_put64(b + FS_PB2_VOL, d->pb2_vol_addr);
	od_put32(b + FS_PB2_FD, d->pb2_fd_addr);
	od_put64(b + FS_SDD_VOL, d->sdd_vol_addr);
	od_put32(b + FS_SDD_FD, d->sdd_fd_addr);
}

/* Lock record (§9.1): magic +0, pos +4, obj_seq +0x1C. */
void od_lock_fresh(uint8_t *b, uint32_t magic, uint64_t pos)
{
	memset(b, 0, OD_LOCK_SIZE);
	od_put32(b, magic);
	od_put64(b + 0x04, pos);
	od_put64(b + 0x1C, 1);
}

uint32_t od_lock_magic(const uint8_t *b) { return od_get32(b); }
uint64_t od_lock_pos(const uint8_t *b) { return od_get64(b + 4); }

void od_hb_fresh(uint8_t *b, uint64_t pos)
{
	memset(b, 0, OD_HB_SLOT_SIZE);
	od_put32(b, OD_HB_MAGIC_FREE);
	od_put64(b + 0x04, pos);
}

/* Resource file header (§5.1). */
void od_res_hdr_decode(const uint8_t *b, struct od_res_hdr *h)
{
	h->ipe = od_get32(b + 0x00);
	h->epa = od_get32(b + 0x04);
	h->hdr_size = od_get32(b + 0x08);
	h->data_size = od_get32(b + 0x0C);
	h->area_size = od_get32(b + 0x10);
	h->total_items = od_get32(b + 0x14);
	h->area_count = od_get32(b + 0x18);
}

void od_res_hdr_encode(const struct od_res_hdr *h, uint8_t *b)
{
	memset(b, 0, 512);
	od_put32(b + 0x00, h->ipe);
	od_put32(b + 0x04, h->epa);
	od_put32(b + 0x08, h->hdr_size);
	od_put32(b + 0x0C, h->data_size);
	od_put32(b + 0x10, h->area_size);
	od_put32(b + 0x14, h->total_items);
	od_put32(b + 0x18, h->area_count);
}

/* Cluster header (§5.3). */
void od_cluster_decode(const uint8_t *b, struct vmfs_cluster *c)
{
	memset(c, 0, sizeof(*c));
	c->lock_magic = od_get32(b);
	c->lock_pos = od_get64(b + 4);
	c->id = od_get32(b + 0x200);
	c->total = od_get32(b + 0x204);
	c->free = od_get32(b + 0x208);
	c->ffree = od_get32(b + 0x20C);
	memcpy(c->bitmap, b + 0x210, OD_CLUSTER_BITMAP_MAX);
}

void od_cluster_meta_encode(const struct vmfs_cluster *c, uint8_t *m)
{
	uint32_t nbytes = (c->total + 7) / 8;

	if (nbytes > OD_CLUSTER_BITMAP_MAX)
		nbytes = OD_CLUSTER_BITMAP_MAX;
	od_put32(m + 0x00, c->id);
	od_put32(m + 0x04, c->total);
	od_put32(m + 0x08, c->free);
	od_put32(m + 0x0C, c->ffree);
	memcpy(m + 0x10, c->bitmap, nbytes);
}

/* File descriptor (§7), offsets relative to the FD start. */
enum {
	FD_ID = 0x200, FD_GEN = 0x204, FD_NLINK = 0x208, FD_TYPE = 0x20C, FD_FLAGS = 0x210,
	FD_SIZE = 0x214, FD_BLKSIZE = 0x21C, FD_BLKCOUNT = 0x224, FD_MTIME = 0x22C,
	FD_CTIME = 0x230, FD_ATIME = 0x234, FD_UID = 0x238, FD_GID = 0x23C, FD_MODE = 0x240,
	FD_ZLA = 0x244, FD_TBZ = 0x248, FD_COW = 0x24C, FD_NUMPB = 0x25C, FD_TBZSHIFT = 0x26C,
	FD_BLKSHIFT = 0x289,
};

void od_fd_decode(const uint8_t *b, struct vmfs_fd *fd)
{
	memset(fd, 0, sizeof(*fd));
	fd->lock_magic = od_get32(b);
	fd->lock_pos = od_get64(b + 4);
	fd->id = od_get32(b + FD_ID);
	fd->gen = od_get32(b + FD_GEN);
	fd->nlink = od_get32(b + FD_NLINK);
	fd->type = od_get32(b + FD_TYPE);
	fd->flags = od_get32(b + FD_FLAGS);
	fd->size = od_get64(b + FD_SIZE);
	fd->blk_size = od_get64(b + FD_BLKSIZE);
	fd->blk_count = od_get64(b + FD_BLKCOUNT);
	fd->mtime = od_get32(b + FD_MTIME);
	fd->ctime = od_get32(b + FD_CTIME);
	fd->atime = od_get32(b + FD_ATIME);
	fd->uid = od_get32(b + FD_UID);
	fd->gid = od_get32(b + FD_GID);
	fd->mode = od_get32(b + FD_MODE);
	fd->zla = od_get32(b + FD_ZLA);
	fd->tbz = od_get32(b + FD_TBZ);
	fd->cow = od_get32(b + FD_COW);
	fd->num_pb = od_get32(b + FD_NUMPB);
	fd->tbz_shift = od_get32(b + FD_TBZSHIFT);
	fd->block_shift = b[FD_BLKSHIFT];
	if (fd->zla == OD_ZLA_RESIDENT) {
		memcpy(fd->content, b + OD_FD_DATA_OFF, OD_FD_RESIDENT_MAX);
	} else {
		for (unsigned i = 0; i < OD_FD_NBLOCKS; i++)
			fd->blocks[i] = od_get32(b + OD_FD_DATA_OFF + 4 * i);
	}
}

void od_fd_encode(const struct vmfs_fd *fd, uint8_t *b)
{
	od_put32(b + FD_ID, fd->id);
	od_put32(b + FD_GEN, fd->gen);
	od_put32(b + FD_NLINK, fd->nlink);
	od_put32(b + FD_TYPE, fd->type);
	od_put32(b + FD_FLAGS, fd->flags);
	od_put64(b + FD_SIZE, fd->size);
	od_put64(b + FD_BLKSIZE, fd->blk_size);
	od_put64(b + FD_BLKCOUNT, fd->blk_count);
	od_put32(b + FD_MTIME, fd->mtime);
	od_put32(b + FD_CTIME, fd->ctime);
	od_put32(b + FD_ATIME, fd->atime);
	od_put32(b + FD_UID, fd->uid);
	od_put32(b + FD_GID, fd->gid);
	od_put32(b + FD_MODE, fd->mode);
	od_put32(b + FD_ZLA, fd->zla);
	od_put32(b + FD_TBZ, fd->tbz);
	od_put32(b + FD_COW, fd->cow);
	od_put32(b + FD_NUMPB, fd->num_pb);
	od_put32(b + FD_TBZSHIFT, fd->tbz_shift);
	b[FD_BLKSHIFT] = fd->block_shift;
	if (fd->zla == OD_ZLA_RESIDENT) {
		memcpy(b + OD_FD_DATA_OFF, fd->content, OD_FD_RESIDENT_MAX);
	} else {
		for (unsigned i = 0; i < OD_FD_NBLOCKS; i++)
			od_put32(b + OD_FD_DATA_OFF + 4 * i, fd->blocks[i]);
	}
}

/* Directory entry (§8.1). */
void od_dirent_decode(const uint8_t *b, struct vmfs_dirent *d)
{
	d->type = od_get32(b);
	d->addr = od_get32(b + 4);
	d->gen = od_get32(b + 8);
	memcpy(d->name, b + 12, OD_NAME_FIELD);
	d->name[OD_NAME_FIELD] = 0;
}

void od_dirent_encode(const struct vmfs_dirent *d, uint8_t *b)
{
	memset(b, 0, OD_DIRENT_SIZE);
	od_put32(b, d->type);
	od_put32(b + 4, d->addr);
	od_put32(b + 8, d->gen);
	memcpy(b + 12, d->name, strnlen(d->name, OD_NAME_FIELD - 1));
}

/* UUID text form (§3.1): %08x-%08x-%04x-%02x*6 of the LE fields. */
void od_uuid_format(const uint8_t u[16], char out[36])
{
	snprintf(out, 36, "%08x-%08x-%04x-%02x%02x%02x%02x%02x%02x",
		 od_get32(u), od_get32(u + 4), od_get16(u + 8),
		 u[10], u[11], u[12], u[13], u[14], u[15]);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static int parse_hex(const char *s, int ndig, uint64_t *v)
{
	*v = 0;
	for (int i = 0; i < ndig; i++) {
		int h = hexval(s[i]);
		if (h < 0)
			return -EINVAL;
		*v = *v << 4 | (uint64_t)h;
	}
	return 0;
}

int od_uuid_parse(const char *s, uint8_t u[16])
{
	uint64_t a, b, c, d;

	if (strlen(s) != 35 || s[8] != '-' || s[17] != '-' || s[22] != '-')
		return -EINVAL;
	if (parse_hex(s, 8, &a) || parse_hex(s + 9, 8, &b) || parse_hex(s + 18, 4, &c) ||
	    parse_hex(s + 23, 12, &d))
		return -EINVAL;
	od_put32(u, (uint32_t)a);
	od_put32(u + 4, (uint32_t)b);
	od_put16(u + 8, (uint16_t)c);
	for (int i = 0; i < 6; i++)
		u[10 + i] = (uint8_t)(d >> (40 - 8 * i));
	return 0;
}
