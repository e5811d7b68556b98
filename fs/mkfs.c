/*
 * Format a VMFS5 volume (LVM5 + FS 14.81, 1 MiB file blocks, 8 KiB sub-blocks).
 *
 * Layout (FORMAT.md §4, §14), system files contiguous from LV block 0:
 *   blocks 0..3   .vh.sf (FS descriptor at LV 0x200000, heartbeats 0x300000..0x3FFFFF)
 *   4..           .fdc.sf  ipe 32, epa 32, 2 KiB FDs    (root FD inside block 4)
 *   next          root directory (ZLA 1, one block)
 *   next          .fbb.sf  ipe 512, epa 32               (one bit per LV block)
 *   next          .pbc.sf  ipe 16, epa 32, 4 KiB PBs
 *   next          .sbc.sf  ipe 16, epa 32, 8 KiB SBs
 *   then data.    .pb2.sf and .sdd.sf exist as empty system files.
 * Every resource file is direct (ZLA 1) and at most 256 blocks, as vmfs-tools
 * requires; group counts scale with the volume and are capped by that limit.
 *
 * Only what must be written is written: LVM headers and PE maps, the FS
 * descriptor, the heartbeat region, resource headers and every cluster header
 * (vmfs-tools stops at the first unwritten one), the system FDs and the root
 * directory.  A 64 TiB volume writes ~140 MiB (FBB cluster headers dominate).
 * Formatting writes directly to the devices: no filesystem is live yet, so
 * no transaction is involved.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ondisk.h"
#include "vmfs/fs.h"

#define BS        (1u << 20)
#define SBSIZE    8192u
#define HDRSZ     0x10000u
#define FBB_IPE   512u
#define FDC_IPE   32u
#define PBC_IPE   16u
#define SBC_IPE   16u
#define EPA       32u
#define MAX_SF_BLOCKS 256u

struct mk {
	struct vmfs_bdev **bd;
	int n;
	uint32_t first[VMFS_MAX_EXTENTS], nseg[VMFS_MAX_EXTENTS];
	const struct vmfs_mkfs_opts *o;
};

static void mlog(const struct mk *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mlog(const struct mk *m, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (m->o->log)
		m->o->log(m->o->log_ctx, VMFS_LOG_ERR, msg);
	else
		fprintf(stderr, "mkfs: %s\n", msg);
}

/* Write at an LV offset, splitting across extents. */
static int lv_write(struct mk *m, uint64_t off, const void *buf, uint64_t len)
{
	const uint8_t *p = buf;

	while (len) {
		uint64_t seg = off / OD_SEGMENT_SIZE;
		int e;
		for (e = 0; e < m->n; e++)
			if (seg >= m->first[e] && seg < m->first[e] + m->nseg[e])
				break;
		if (e == m->n)
			return -ENXIO;
		uint64_t end = ((uint64_t)m->first[e] + m->nseg[e]) * OD_SEGMENT_SIZE;
		uint64_t l = end - off < len ? end - off : len;
		int r = vmfs_bdev_write(m->bd[e], p, l,
					OD_LVM_DATA_OFF + off - (uint64_t)m->first[e] * OD_SEGMENT_SIZE);
		if (r)
			return r;
		p += l;
		off += l;
		len -= l;
	}
	return 0;
}

/* Make [off, off+len) of a device read as zeros. */
static int dev_zero(struct vmfs_bdev *bd, uint64_t off, uint64_t len)
{
	const struct vmfs_bdev_info *in = vmfs_bdev_get_info(bd);
	static const size_t CH = 4u << 20;
	uint8_t *z;
	int r = 0;

	if (!strcmp(in->kind, "file") && vmfs_bdev_discard(bd, off, len) == 0)
		return 0;
	z = calloc(1, CH);
	if (!z)
		return -ENOMEM;
	while (len && !r) {
		uint64_t l = len < CH ? len : CH;
		r = vmfs_bdev_write(bd, z, l, off);
		off += l;
		len -= l;
	}
	free(z);
	return r;
}

static int lv_zero(struct mk *m, uint64_t off, uint64_t len)
{
	while (len) {
		uint64_t seg = off / OD_SEGMENT_SIZE;
		int e;
		for (e = 0; e < m->n; e++)
			if (seg >= m->first[e] && seg < m->first[e] + m->nseg[e])
				break;
		if (e == m->n)
			return -ENXIO;
		uint64_t end = ((uint64_t)m->first[e] + m->nseg[e]) * OD_SEGMENT_SIZE;
		uint64_t l = end - off < len ? end - off : len;
		int r = dev_zero(m->bd[e], OD_LVM_DATA_OFF + off - (uint64_t)m->first[e] * OD_SEGMENT_SIZE, l);
		if (r)
			return r;
		off += l;
		len -= l;
	}
	return 0;
}

static void gen_uuid(uint8_t u[16], uint32_t now)
{
	uint8_t rnd[12] = { 0 };
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	struct timeval tv;

	gettimeofday(&tv, NULL);
	if (fd >= 0) {
		if (read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd))
			memset(rnd, 0, sizeof(rnd));
		close(fd);
	}
	od_put32(u, now);
	od_put32(u + 4, od_get32(rnd) ^ (uint32_t)tv.tv_usec);
	memcpy(u + 8, rnd + 4, 8);
	u[10] |= 0x02; /* locally administered "MAC" */
	u[10] &= 0xFE;
}

struct sf {              /* one system file being laid out */
	uint32_t start, nblocks;
	uint64_t size;
	struct od_res_hdr h;
	uint32_t magic;
};

static uint32_t clamp32(uint64_t v, uint32_t lo, uint32_t hi)
{
	return v < lo ? lo : v > hi ? hi : (uint32_t)v;
}

static void res_layout(struct sf *s, uint32_t ipe, uint32_t data_size, uint32_t groups,
		       uint64_t total_items, uint32_t magic)
{
	s->magic = magic;
	s->h.ipe = ipe;
	s->h.epa = EPA;
	s->h.hdr_size = HDRSZ;
	s->h.data_size = data_size;
	s->h.area_size = EPA * 1024u + EPA * ipe * data_size;
	s->h.area_count = groups;
	s->h.total_items = (uint32_t)total_items;
	s->size = (uint64_t)HDRSZ + (uint64_t)groups * s->h.area_size;
	s->nblocks = (uint32_t)((s->size + BS - 1) / BS);
}

/* Write header + every cluster header of a resource file laid out at s->start.
 * used(idx) tells whether global item idx is allocated. */
static int write_res(struct mk *m, const struct sf *s, uint64_t used_below, uint32_t used_fixed_cluster0)
{
	uint64_t base = (uint64_t)s->start * BS;
	uint8_t hdr[512];
	uint8_t *buf = NULL;
	const uint32_t chunk_groups = s->h.data_size ? 1 : 256; /* FBB: headers are contiguous */
	size_t bufsz = (size_t)chunk_groups * EPA * 1024u;
	int r;

	od_res_hdr_encode(&s->h, hdr);
	r = lv_write(m, base, hdr, 512);
	if (r)
		return r;
	buf = malloc(bufsz);
	if (!buf)
		return -ENOMEM;
	for (uint32_t g0 = 0; g0 < s->h.area_count; g0 += chunk_groups) {
		uint32_t ng = s->h.area_count - g0 < chunk_groups ? s->h.area_count - g0 : chunk_groups;
		memset(buf, 0, (size_t)ng * EPA * 1024u);
		for (uint32_t gi = 0; gi < ng; gi++) {
			for (uint32_t ci = 0; ci < EPA; ci++) {
				uint32_t cid = (g0 + gi) * EPA + ci;
				uint64_t first = (uint64_t)cid * s->h.ipe;
				uint8_t *ch = buf + ((size_t)gi * EPA + ci) * 1024u;
				uint64_t hoff = base + HDRSZ + (uint64_t)(g0 + gi) * s->h.area_size + ci * 1024u;
				struct vmfs_cluster c;
				memset(&c, 0, sizeof(c));
				c.id = cid;
				c.total = first >= s->h.total_items ? 0 :
					  (uint32_t)(s->h.total_items - first < s->h.ipe ?
						     s->h.total_items - first : s->h.ipe);
				c.free = 0;
				c.ffree = 0;
				bool have_ffree = false;
				for (uint32_t it = 0; it < c.total; it++) {
					uint64_t idx = first + it;
					bool u = idx < used_below || (cid == 0 && it < used_fixed_cluster0);
					if (!u) {
						c.bitmap[it / 8] |= (uint8_t)(1u << (it % 8));
						c.free++;
						if (!have_ffree) {
							c.ffree = it;
							have_ffree = true;
						}
					}
				}
				od_lock_fresh(ch, s->magic, hoff);
				od_cluster_meta_encode(&c, ch + 512);
			}
			if (s->h.data_size) {
				r = lv_write(m, base + HDRSZ + (uint64_t)(g0 + gi) * s->h.area_size,
					     buf + (size_t)gi * EPA * 1024u, EPA * 1024u);
				if (r)
					goto out;
			}
		}
		if (!s->h.data_size) {
			r = lv_write(m, base + HDRSZ + (uint64_t)g0 * s->h.area_size, buf,
				     (uint64_t)ng * EPA * 1024u);
			if (r)
				goto out;
		}
	}
	r = 0;
out:
	free(buf);
	return r;
}

static void fd_init(struct vmfs_fd *fd, uint32_t addr, uint32_t type, uint32_t mode,
		    uint32_t nlink, uint32_t now)
{
	memset(fd, 0, sizeof(*fd));
	fd->id = addr;
	fd->gen = 1;
	fd->nlink = nlink;
	fd->type = type;
	fd->mode = mode;
	fd->zla = OD_ZLA_FB;
	fd->blk_size = BS;
	fd->block_shift = 20;
	fd->tbz_shift = 20;
	fd->mtime = fd->ctime = fd->atime = now;
}

static void fd_blocks(struct vmfs_fd *fd, uint32_t start, uint32_t n, uint64_t size)
{
	for (uint32_t i = 0; i < n && i < 256; i++)
		fd->blocks[i] = vmfs_fb_make(start + i, false);
	fd->blk_count = n;
	fd->size = size;
}

int vmfs_mkfs(struct vmfs_bdev **bdevs, int n, const struct vmfs_mkfs_opts *o,
	      struct vmfs_mkfs_result *res)
{
	struct mk m = { .bd = bdevs, .n = n, .o = o };
	uint8_t lvm_uuid[16], fs_uuid[16];
	uint64_t total_segs = 0, lv_size, total_blocks;
	uint32_t now;
	struct sf vh, fdc, root, fbb, pbc, sbc;
	uint8_t *buf = NULL;
	int r;

	if (!o || !bdevs || n < 1 || n > VMFS_MAX_EXTENTS)
		return -EINVAL;
	now = o->now ? o->now : (uint32_t)time(NULL);
	for (int i = 0; i < n; i++) {
		uint64_t sz = vmfs_bdev_size(bdevs[i]);
		if (sz < OD_LVM_DATA_OFF + OD_SEGMENT_SIZE) {
			mlog(&m, "%s: too small: %llu bytes (an extent needs at least %llu: 17 MiB of "
			     "LVM metadata + one 256 MiB segment)", vmfs_bdev_uri(bdevs[i]),
			     (unsigned long long)sz, (unsigned long long)(OD_LVM_DATA_OFF + OD_SEGMENT_SIZE));
			return -ENOSPC;
		}
		m.first[i] = (uint32_t)total_segs;
		m.nseg[i] = (uint32_t)((sz - OD_LVM_DATA_OFF) / OD_SEGMENT_SIZE);
		total_segs += m.nseg[i];
	}
	lv_size = total_segs * OD_SEGMENT_SIZE;
	total_blocks = lv_size / BS;
	if (total_blocks > (1ull << 26)) {
		/* 26-bit FB addresses (FORMAT §11): cap the LV at 64 TiB - 1 segment. */
		mlog(&m, "volume too large: %llu segments (%.1f TiB); VMFS5 with 1 MiB blocks "
		     "addresses at most 64 TiB", (unsigned long long)total_segs,
		     (double)lv_size / (1ull << 40));
		return -EFBIG;
	}
	if (o->have_lvm_uuid)
		memcpy(lvm_uuid, o->lvm_uuid, 16);
	else
		gen_uuid(lvm_uuid, now);
	if (o->have_uuid)
		memcpy(fs_uuid, o->uuid, 16);
	else
		gen_uuid(fs_uuid, now);

	/* ---- layout ---- */
	memset(&vh, 0, sizeof(vh));
	vh.start = 0;
	vh.nblocks = 4;
	vh.size = 4ull * BS;
	res_layout(&fdc, FDC_IPE, OD_FD_SIZE, clamp32(total_blocks / 8192, 1, 125), 0, OD_MAGIC_FDC);
	fdc.h.total_items = fdc.h.area_count * EPA * FDC_IPE;
	fdc.start = 4;
	memset(&root, 0, sizeof(root));
	root.start = fdc.start + fdc.nblocks;
	root.nblocks = 1;
	{
		uint64_t clusters = (total_blocks + FBB_IPE - 1) / FBB_IPE;
		res_layout(&fbb, FBB_IPE, 0, (uint32_t)((clusters + EPA - 1) / EPA), total_blocks, OD_MAGIC_FBB);
	}
	fbb.start = root.start + 1;
	res_layout(&pbc, PBC_IPE, 4096, clamp32(total_blocks / (1024ull * 512) + 1, 1, 125), 0, OD_MAGIC_PBC);
	pbc.h.total_items = pbc.h.area_count * EPA * PBC_IPE;
	pbc.start = fbb.start + fbb.nblocks;
	res_layout(&sbc, SBC_IPE, SBSIZE, clamp32(total_blocks / 4096, 2, 63), 0, OD_MAGIC_SBC);
	sbc.h.total_items = sbc.h.area_count * EPA * SBC_IPE;
	sbc.start = pbc.start + pbc.nblocks;
	uint32_t data_start = sbc.start + sbc.nblocks;
	if (fbb.nblocks > MAX_SF_BLOCKS || fdc.nblocks > MAX_SF_BLOCKS || pbc.nblocks > MAX_SF_BLOCKS ||
	    sbc.nblocks > MAX_SF_BLOCKS) {
		mlog(&m, "internal: system file larger than 256 blocks");
		return -EFBIG;
	}
	if (data_start + 16 > total_blocks) {
		mlog(&m, "volume too small for the system files (%u blocks needed)", data_start + 16);
		return -ENOSPC;
	}

	/* ---- zero what must read as zero (reformat of a used device) ---- */
	if (!o->fresh) {
		for (int i = 0; i < n; i++) {
			r = dev_zero(bdevs[i], 0, OD_LVM_DATA_OFF);
			if (r)
				goto io;
		}
		r = lv_zero(&m, 0, (uint64_t)data_start * BS);
		if (r)
			goto io;
	}

	/* ---- LVM: header, volume entry, SD table, PE maps per extent ---- */
	buf = calloc(1, OD_LVM_PEMAP_STRIDE);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		struct od_lvm_hdr h = { 0 };
		struct od_lvm_vol v = { 0 };
		uint64_t now_us = (uint64_t)now * 1000000u;
		h.magic = OD_LVM_MAGIC;
		h.major = 5;
		h.minor = 0x51;
		h.total_bytes = vmfs_bdev_size(bdevs[i]);
		h.num_volumes = 1;
		h.num_pes = m.nseg[i];
		h.last_pe_index = m.nseg[i] - 1;
		h.generation = 1;
		h.data_offset = OD_LVM_DATA_OFF;
		gen_uuid(h.dev_uuid, now);
		h.init_time_us = h.mod_time_us = now_us;
		h.num_pe_maps = (m.nseg[i] + OD_LVM_PES_PER_MAP - 1) / OD_LVM_PES_PER_MAP;
		if (h.num_pe_maps > OD_LVM_MAX_MAPS)
			h.num_pe_maps = OD_LVM_MAX_MAPS; /* beyond 16 TiB per device: see docs/format.md */
		v.logical_size = lv_size;
		v.generation = 1;
		v.state = 1;
		od_uuid_format(lvm_uuid, v.name);
		memcpy(v.lv_uuid, lvm_uuid, 16);
		v.snap_id = 1;
		v.creation_time_us = v.mod_time_us = now_us;
		v.volume_id = 0;
		v.num_pes = m.nseg[i];
		v.first_pe = m.first[i];
		v.last_pe = m.first[i] + m.nseg[i] - 1;
		v.num_devs = (uint32_t)n;
		memset(buf, 0, 1024);
		od_lvm_hdr_encode(&h, buf);
		od_lvm_vol_encode(&v, buf + 512);
		r = vmfs_bdev_write(bdevs[i], buf, 1024, OD_LVM_HDR_OFF);
		if (r)
			goto io;
		if (i == 0) {
			/* SD table: one 256-byte device name per extent. */
			memset(buf, 0, (size_t)n * 256 + 512);
			for (int j = 0; j < n; j++) {
				const char *u = vmfs_bdev_uri(bdevs[j]);
				const char *b = strrchr(u, '/');
				snprintf((char *)buf + 256 * j, 256, "%s", b ? b + 1 : u);
			}
			r = vmfs_bdev_write(bdevs[i], buf, ((size_t)n * 256 + 511) / 512 * 512, OD_LVM_SDTAB_OFF);
			if (r)
				goto io;
		}
		for (uint32_t mp = 0; mp < h.num_pe_maps; mp++) {
			uint32_t pe0 = mp * OD_LVM_PES_PER_MAP;
			uint32_t cnt = m.nseg[i] - pe0 < OD_LVM_PES_PER_MAP ? m.nseg[i] - pe0 : OD_LVM_PES_PER_MAP;
			memset(buf, 0, OD_LVM_PEMAP_STRIDE);
			for (uint32_t k = 0; k < cnt; k++) {
				struct od_pe_entry pe = {
					.used = 1, .pe_id = pe0 + k, .volume_id = 0, .version = 1,
					.poffset = OD_LVM_DATA_OFF + (uint64_t)(pe0 + k) * OD_SEGMENT_SIZE,
					.loffset = (uint64_t)(m.first[i] + pe0 + k) * OD_SEGMENT_SIZE,
					.length = OD_SEGMENT_SIZE,
				};
				buf[k / 8] |= (uint8_t)(1u << (k % 8));
				od_pe_encode(&pe, buf + 1024 + (size_t)k * OD_PE_ENTRY_SIZE);
			}
			size_t len = 1024 + (size_t)cnt * OD_PE_ENTRY_SIZE;
			len = (len + 511) / 512 * 512;
			r = vmfs_bdev_write(bdevs[i], buf, len, OD_LVM_PEBMP_OFF + mp * OD_LVM_PEMAP_STRIDE);
			if (r)
				goto io;
		}
	}

	/* ---- FS descriptor ---- */
	{
		struct od_fsdesc d = { 0 };
		d.magic = OD_FS_MAGIC;
		d.major = 14;
		d.minor = 81;
		memcpy(d.uuid, fs_uuid, 16);
		d.config = 2; /* public; SB clusters have 16 items: no DENSE_SBPC */
		snprintf(d.label, sizeof(d.label), "%s", o->label ? o->label : "");
		d.disk_block_size = 512;
		d.block_size = BS;
		d.ctime = now;
		d.snap_id = 1;
		memcpy(d.lvm_uuid, lvm_uuid, 16);
		d.lv_snap_id = 1;
		d.fdc_hdr_size = HDRSZ;
		d.fdc_clusters_per_group = EPA;
		d.subblock_size = SBSIZE;
		uint64_t fd0 = (uint64_t)fdc.start * BS + HDRSZ + EPA * 1024u;
		d.pb2_fd_addr = vmfs_fd_make(0, 6);
		d.pb2_vol_addr = fd0 + 6 * OD_FD_SIZE;
		d.sdd_fd_addr = vmfs_fd_make(0, 7);
		d.sdd_vol_addr = fd0 + 7 * OD_FD_SIZE;
		memset(buf, 0, 512);
		od_fsdesc_encode(&d, buf);
		r = lv_write(&m, OD_FSDESC_OFF, buf, 512);
		if (r)
			goto io;
	}

	/* ---- heartbeat region: 2048 free slots ---- */
	free(buf);
	buf = malloc(OD_HB_SLOTS * OD_HB_SLOT_SIZE);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < OD_HB_SLOTS; s++)
		od_hb_fresh(buf + (size_t)s * OD_HB_SLOT_SIZE, OD_HB_OFF + (uint64_t)s * OD_HB_SLOT_SIZE);
	r = lv_write(&m, OD_HB_OFF, buf, OD_HB_SLOTS * OD_HB_SLOT_SIZE);
	if (r)
		goto io;

	/* ---- resource files ---- */
	if ((r = write_res(&m, &fdc, 0, 8)) || (r = write_res(&m, &fbb, data_start, 0)) ||
	    (r = write_res(&m, &pbc, 0, 0)) || (r = write_res(&m, &sbc, 0, 0)))
		goto io;

	/* ---- system FDs (FDC cluster 0 items 0..7) ---- */
	{
		uint64_t fd0 = (uint64_t)fdc.start * BS + HDRSZ + EPA * 1024u;
		struct vmfs_fd fd;
		static const char *names[8] = { ".", ".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf",
						".vh.sf", ".pb2.sf", ".sdd.sf" };
		free(buf);
		buf = calloc(8, OD_FD_SIZE);
		if (!buf) {
			r = -ENOMEM;
			goto out;
		}
		for (uint32_t k = 0; k < 8; k++) {
			uint8_t *b = buf + (size_t)k * OD_FD_SIZE;
			uint32_t addr = vmfs_fd_make(0, k);
			if (k == 0)
				fd_init(&fd, addr, VMFS_TYPE_DIR, 01755, 2, now);
			else if (k == 7)
				fd_init(&fd, addr, VMFS_TYPE_SYSTEM, 040755, 1, now);
			else
				fd_init(&fd, addr, VMFS_TYPE_SYSTEM, 0400, 1, now);
			switch (k) {
			case 0: fd_blocks(&fd, root.start, 1, 9 * OD_DIRENT_SIZE); break;
			case 1: fd_blocks(&fd, fbb.start, fbb.nblocks, fbb.size); break;
			case 2: fd_blocks(&fd, fdc.start, fdc.nblocks, fdc.size); break;
			case 3: fd_blocks(&fd, pbc.start, pbc.nblocks, pbc.size); break;
			case 4: fd_blocks(&fd, sbc.start, sbc.nblocks, sbc.size); break;
			case 5: fd_blocks(&fd, vh.start, vh.nblocks, vh.size); break;
			default: break;
			}
			od_lock_fresh(b, OD_MAGIC_FD, fd0 + (uint64_t)k * OD_FD_SIZE);
			od_fd_encode(&fd, b);
		}
		r = lv_write(&m, fd0, buf, 8 * OD_FD_SIZE);
		if (r)
			goto io;

		/* root directory: ".", "..", then the system files */
		uint8_t *d = calloc(1, 1536);
		if (!d) {
			r = -ENOMEM;
			goto out;
		}
		for (uint32_t k = 0; k < 9; k++) {
			struct vmfs_dirent de = { 0 };
			uint32_t fdk = k == 0 ? 0 : k == 1 ? 0 : k - 1;
			de.type = fdk == 0 ? VMFS_TYPE_DIR : VMFS_TYPE_SYSTEM;
			de.addr = vmfs_fd_make(0, fdk);
			de.gen = 1;
			snprintf(de.name, sizeof(de.name), "%s", k == 0 ? "." : k == 1 ? ".." : names[fdk]);
			od_dirent_encode(&de, d + (size_t)k * OD_DIRENT_SIZE);
		}
		r = lv_write(&m, (uint64_t)root.start * BS, d, 1536);
		free(d);
		if (r)
			goto io;
	}
	for (int i = 0; i < n; i++) {
		r = vmfs_bdev_flush(bdevs[i]);
		if (r)
			goto io;
	}
	if (res) {
		memset(res, 0, sizeof(*res));
		memcpy(res->uuid, fs_uuid, 16);
		memcpy(res->lvm_uuid, lvm_uuid, 16);
		res->lv_size = lv_size;
		res->total_blocks = total_blocks;
		res->free_blocks = total_blocks - data_start;
		res->max_files = fdc.h.total_items;
		res->data_start = data_start;
	}
	r = 0;
	goto out;
io:
	mlog(&m, "write failed: %s", strerror(-r));
out:
	free(buf);
	return r;
}
