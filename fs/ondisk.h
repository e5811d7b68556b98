/*
 * VMFS3/VMFS5 on-disk structures: constants, host-side representations and
 * explicit little-endian encode/decode.  Offsets follow shared/FORMAT.md
 * (section numbers quoted).  Nothing here does I/O; nothing here memcpy()s a
 * struct to disk.  Encoders that update an object already on disk take the
 * raw bytes read from disk and change only the fields they know, so fields
 * written by ESXi (FD 0x250.., cluster typeData, ...) survive an update.
 */
#ifndef VMFS_FS_ONDISK_H
#define VMFS_FS_ONDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmfs/fs.h"

/* ---- fixed offsets and magics (§1, §2, §4.1) ------------------------------ */
#define OD_LVM_HDR_OFF      0x100000ull
#define OD_LVM_VOLTAB_OFF   0x100200ull
#define OD_LVM_SDTAB_OFF    (OD_LVM_HDR_OFF + 0x7E200ull)
#define OD_LVM_PEBMP_OFF    (OD_LVM_HDR_OFF + 0x80200ull)
#define OD_LVM_PETAB_OFF    (OD_LVM_HDR_OFF + 0x80600ull)
#define OD_LVM_PEMAP_STRIDE 0x100400ull
#define OD_LVM_PES_PER_MAP  8192u
#define OD_LVM_MAX_MAPS     8u
#define OD_LVM_DATA_OFF     0x1100000ull
#define OD_SEGMENT_SIZE     (256ull << 20)
#define OD_LVM_MAGIC        0xC001D00Du

#define OD_FSDESC_OFF       0x200000ull
#define OD_FS_MAGIC         0x2FABF15Eu
#define OD_HB_OFF           0x300000ull
#define OD_HB_SLOTS         2048u
#define OD_HB_SLOT_SIZE     512u
#define OD_HB_END           0x400000ull
#define OD_HB_MAGIC_FREE    0xABCDEF01u
#define OD_HB_MAGIC_LIVE    0xABCDEF02u

#define OD_MAGIC_FD         0x10C00001u
#define OD_MAGIC_FBB        0x10C00002u
#define OD_MAGIC_SBC        0x10C00003u
#define OD_MAGIC_PBC        0x10C00004u
#define OD_MAGIC_FDC        0x10C00005u

#define OD_LOCK_SIZE        512u
#define OD_CLUSTER_HDR_SIZE 1024u
#define OD_FD_SIZE          2048u
#define OD_FD_META_OFF      0x200u
#define OD_FD_DATA_OFF      0x400u
#define OD_FD_NBLOCKS       256u
#define OD_FD_RESIDENT_MAX  1024u
#define OD_DIRENT_SIZE      140u
#define OD_NAME_FIELD       128u
#define OD_CLUSTER_BITMAP_MAX 496u /* bytes 0x210..0x3FF */
#define OD_RES_MAX_IPE      3968u

#define OD_ZLA_FB           1u
#define OD_ZLA_SB           2u
#define OD_ZLA_PB           3u
#define OD_ZLA_PB2          5u
#define OD_ZLA_DBL          4304u
#define OD_ZLA_RESIDENT     4305u

/* ---- little-endian helpers -------------------------------------------------- */
static inline uint16_t od_get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t od_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t od_get64(const uint8_t *p)
{
	return (uint64_t)od_get32(p) | (uint64_t)od_get32(p + 4) << 32;
}
static inline void od_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void od_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void od_put64(uint8_t *p, uint64_t v) { od_put32(p, (uint32_t)v); od_put32(p + 4, (uint32_t)(v >> 32)); }

/* ---- LVM device header (§2.2) and volume table entry (§2.3) ----------------- */
struct od_lvm_hdr {
	uint32_t magic, major, minor;
	uint64_t total_bytes;
	uint32_t num_volumes, num_pes, last_pe_index;
	uint64_t generation, data_offset;
	uint8_t dev_uuid[16];
	uint64_t init_time_us, mod_time_us;
	uint32_t num_pe_maps;
};
struct od_lvm_vol {
	uint64_t logical_size, generation;
	uint32_t state;
	char name[65];
	uint8_t lv_uuid[16];
	uint32_t snap_id;
	uint64_t creation_time_us;
	uint32_t volume_id, num_pes;
	uint64_t first_pe, last_pe, mod_time_us;
	uint32_t num_devs;
};
struct od_pe_entry {
	uint8_t used;
	uint32_t pe_id, volume_id, version;
	uint64_t poffset, loffset, length;
};
#define OD_LVM_HDR_SIZE 512u
#define OD_LVM_VOL_SIZE 512u
#define OD_PE_ENTRY_SIZE 128u
void od_lvm_hdr_decode(const uint8_t *b, struct od_lvm_hdr *h);
void od_lvm_hdr_encode(const struct od_lvm_hdr *h, uint8_t *b);
void od_lvm_vol_decode(const uint8_t *b, struct od_lvm_vol *v);
void od_lvm_vol_encode(const struct od_lvm_vol *v, uint8_t *b);
void od_pe_encode(const struct od_pe_entry *e, uint8_t *b);
void od_pe_decode(const uint8_t *b, struct od_pe_entry *e);

/* ---- FS descriptor (§3) ----------------------------------------------------- */
struct od_fsdesc {
	uint32_t magic, major;
	uint8_t minor;
	uint8_t uuid[16];
	uint32_t config;
	char label[129];
	uint32_t disk_block_size;
	uint64_t block_size;
	uint32_t ctime, snap_id;
	uint8_t lvm_uuid[16];
	uint32_t lv_snap_id;
	uint32_t fdc_hdr_size, fdc_clusters_per_group, subblock_size;
	uint64_t pb2_vol_addr; uint32_t pb2_fd_addr;
	uint64_t sdd_vol_addr; uint32_t sdd_fd_addr;
};
#define OD_FSDESC_SIZE 512u
void od_fsdesc_decode(const uint8_t *b, struct od_fsdesc *d);
void od_fsdesc_encode(const struct od_fsdesc *d, uint8_t *b);

/* ---- lock header (§9.1) and heartbeat slot (§9.2): fresh objects only ------- */
/* Format a fresh lock record: magic, pos = own LV offset, obj_seq 1, rest 0. */
void od_lock_fresh(uint8_t *b, uint32_t magic, uint64_t pos);
uint32_t od_lock_magic(const uint8_t *b);
uint64_t od_lock_pos(const uint8_t *b);
/* Format a free heartbeat slot at LV offset pos. */
void od_hb_fresh(uint8_t *b, uint64_t pos);

/* ---- resource file header (§5.1) and cluster header (§5.3) ------------------ */
struct od_res_hdr {
	uint32_t ipe, epa, hdr_size, data_size, area_size, total_items, area_count;
};
void od_res_hdr_decode(const uint8_t *b, struct od_res_hdr *h);
void od_res_hdr_encode(const struct od_res_hdr *h, uint8_t *b);

/* Cluster metadata lives in bytes 0x200..0x3FF of the 1 KiB header. */
void od_cluster_decode(const uint8_t *b1024, struct vmfs_cluster *c);
/* Write id/total/free/ffree/bitmap into the 512-byte metadata sector
 * (header bytes 0x200..0x3FF), keeping bytes past the bitmap that are not ours. */
void od_cluster_meta_encode(const struct vmfs_cluster *c, uint8_t *meta512);

/* ---- file descriptor (§7) ---------------------------------------------------- */
void od_fd_decode(const uint8_t *b2048, struct vmfs_fd *fd);
/* Update the known fields in bytes 0x200..0x7FF of @b2048; other bytes kept. */
void od_fd_encode(const struct vmfs_fd *fd, uint8_t *b2048);

/* ---- directory entry (§8.1) ---------------------------------------------------- */
void od_dirent_decode(const uint8_t *b, struct vmfs_dirent *d);
void od_dirent_encode(const struct vmfs_dirent *d, uint8_t *b);

/* ---- UUIDs (§3.1) -------------------------------------------------------------- */
void od_uuid_format(const uint8_t u[16], char out[36]);
int od_uuid_parse(const char *s, uint8_t u[16]);

#endif
