/*
 * Volume layer: assemble the logical volume from 1..32 LVM extents
 * (FORMAT.md §2) and expose it as a stacked struct vmfs_bdev.
 *
 * Mapping (as vmfs-tools and the PE tables we write agree): extent e holds LV
 * segments first..last (256 MiB each); LV offset p lives on the extent with
 * first <= p/256MiB <= last at device offset base + 0x1100000 + p - first*256MiB,
 * where base is 0 or the start of MBR partition 1 (type 0xFB).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ondisk.h"
#include "vmfs/volume.h"

struct extent {
	struct vmfs_bdev *bd;
	uint64_t base;           /* device offset of the LVM "device" (partition start) */
	uint32_t first, last;    /* LV segments held */
	struct od_lvm_hdr hdr;
	struct od_lvm_vol vol;
};

struct vmfs_volume {
	struct extent ext[VMFS_MAX_EXTENTS];
	int n;
	struct vmfs_volume_info info;
	struct vmfs_bdev *lv;
	vmfs_log_fn log;
	void *log_ctx;
	bool direct;             /* extents opened O_DIRECT: bounce unaligned buffers */
};

#define DIO_ALIGN 4096u

static void vlog(struct vmfs_volume *v, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void vlog(struct vmfs_volume *v, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (v->log)
		v->log(v->log_ctx, level, msg);
	else if (level == VMFS_LOG_ERR)
		fprintf(stderr, "vmfs: %s\n", msg);
}

/* ---- LV device ops ------------------------------------------------------------ */

/* Copy into @out the part [skip, skip+len) of the iovec array. */
static int iov_slice(const struct iovec *iov, int cnt, uint64_t skip, uint64_t len,
		     struct iovec *out, int maxout)
{
	int n = 0;

	for (int i = 0; i < cnt && len; i++) {
		uint64_t l = iov[i].iov_len;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		if (n == maxout)
			return -EINVAL;
		uint64_t take = l - skip < len ? l - skip : len;
		out[n].iov_base = (char *)iov[i].iov_base + skip;
		out[n].iov_len = take;
		n++;
		len -= take;
		skip = 0;
	}
	return n;
}

static struct extent *find_extent(struct vmfs_volume *v, uint64_t off)
{
	uint64_t seg = off / OD_SEGMENT_SIZE;

	for (int i = 0; i < v->n; i++)
		if (seg >= v->ext[i].first && seg <= v->ext[i].last)
			return &v->ext[i];
	return NULL;
}

/* Device offset of LV byte @p on the extent holding it. */
static uint64_t ext_dev_off(const struct extent *e, uint64_t p)
{
	return e->base + OD_LVM_DATA_OFF + p - (uint64_t)e->first * OD_SEGMENT_SIZE;
}

static int lv_io(struct vmfs_volume *v, const struct iovec *iov, int iovcnt, uint64_t off, bool wr)
{
	uint64_t total = 0, done = 0;
	struct iovec *sub;
	int r = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	sub = malloc(sizeof(*sub) * (size_t)(iovcnt > 0 ? iovcnt : 1));
	if (!sub)
		return -ENOMEM;
	while (done < total) {
		uint64_t p = off + done;
		struct extent *e = find_extent(v, p);
		if (!e) {
			r = -ENXIO;
			break;
		}
		uint64_t end = ((uint64_t)e->last + 1) * OD_SEGMENT_SIZE;
		uint64_t len = end - p < total - done ? end - p : total - done;
		int n = iov_slice(iov, iovcnt, done, len, sub, iovcnt);
		if (n < 0) {
			r = n;
			break;
		}
		uint64_t doff = ext_dev_off(e, p);
		bool bounce = false;
		for (int k = 0; v->direct && k < n; k++)
			if ((uintptr_t)sub[k].iov_base % DIO_ALIGN || sub[k].iov_len % 512)
				bounce = true;
		if (bounce) {
			/* O_DIRECT needs aligned memory: go through an aligned copy */
			void *tmp = NULL;
			if (posix_memalign(&tmp, DIO_ALIGN, len)) {
				r = -ENOMEM;
				break;
			}
			if (wr) {
				size_t at = 0;
				for (int k = 0; k < n; k++) {
					memcpy((char *)tmp + at, sub[k].iov_base, sub[k].iov_len);
					at += sub[k].iov_len;
				}
				r = vmfs_bdev_write(e->bd, tmp, len, doff);
			} else {
				r = vmfs_bdev_read(e->bd, tmp, len, doff);
				size_t at = 0;
				for (int k = 0; !r && k < n; k++) {
					memcpy(sub[k].iov_base, (char *)tmp + at, sub[k].iov_len);
					at += sub[k].iov_len;
				}
			}
			free(tmp);
		} else {
			r = wr ? vmfs_bdev_writev(e->bd, sub, n, doff) : vmfs_bdev_readv(e->bd, sub, n, doff);
		}
		if (r)
			break;
		done += len;
	}
	free(sub);
	return r;
}

static int lv_readv(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return lv_io(priv, iov, iovcnt, off, false);
}

static int lv_writev(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return lv_io(priv, iov, iovcnt, off, true);
}

static int lv_flush(void *priv)
{
	struct vmfs_volume *v = priv;
	int r = 0;

	for (int i = 0; i < v->n; i++) {
		int x = vmfs_bdev_flush(v->ext[i].bd);
		if (x && !r)
			r = x;
	}
	return r;
}

static int lv_discard(void *priv, uint64_t off, uint64_t len)
{
	struct vmfs_volume *v = priv;

	while (len) {
		struct extent *e = find_extent(v, off);
		if (!e)
			return -ENXIO;
		uint64_t end = ((uint64_t)e->last + 1) * OD_SEGMENT_SIZE;
		uint64_t l = end - off < len ? end - off : len;
		int r = vmfs_bdev_discard(e->bd, e->base + OD_LVM_DATA_OFF + off -
					  (uint64_t)e->first * OD_SEGMENT_SIZE, l);
		if (r)
			return r;
		off += l;
		len -= l;
	}
	return 0;
}

static int lv_ats(void *priv, uint64_t off, const void *expect, const void *newdata, void *current)
{
	struct vmfs_volume *v = priv;
	struct extent *e = find_extent(v, off);

	if (!e)
		return -ENXIO;
	return vmfs_bdev_ats(e->bd, e->base + OD_LVM_DATA_OFF + off - (uint64_t)e->first * OD_SEGMENT_SIZE,
			     expect, newdata, current);
}

static const struct vmfs_bdev_ops lv_ops = {
	.readv = lv_readv, .writev = lv_writev, .flush = lv_flush,
	.discard = lv_discard, .ats = lv_ats, .close = NULL,
};

/* ---- opening ------------------------------------------------------------------ */

int vmfs_volume_probe(struct vmfs_bdev *bd)
{
	uint8_t *b = NULL;
	int r;

	if (vmfs_bdev_size(bd) < OD_LVM_HDR_OFF + DIO_ALIGN)
		return 0;
	if (posix_memalign((void **)&b, DIO_ALIGN, DIO_ALIGN))
		return -ENOMEM;
	r = vmfs_bdev_read(bd, b, DIO_ALIGN, OD_LVM_HDR_OFF);
	if (!r)
		r = od_get32(b) == OD_LVM_MAGIC;
	free(b);
	return r;
}

/* Read and check the LVM header and volume entry of one extent. */
static int read_extent(struct vmfs_volume *v, struct extent *e, int idx)
{
	const char *uri = vmfs_bdev_uri(e->bd);
	uint64_t dsize = vmfs_bdev_size(e->bd);
	uint8_t *b = NULL;
	int r;

	if (posix_memalign((void **)&b, DIO_ALIGN, DIO_ALIGN))
		return -ENOMEM;
	e->base = 0;
	if (dsize < OD_LVM_HDR_OFF + 1024) {
		vlog(v, VMFS_LOG_ERR, "%s: device too small (%llu bytes) for a VMFS volume", uri,
		     (unsigned long long)dsize);
		r = -EINVAL;
		goto out;
	}
	r = vmfs_bdev_read(e->bd, b, 1024, OD_LVM_HDR_OFF);
	if (r)
		goto io;
	if (od_get32(b) != OD_LVM_MAGIC) {
		/* MBR partition slot 1 of type 0xFB (FORMAT §2.1). */
		uint8_t *mbr = b + 2048;
		r = vmfs_bdev_read(e->bd, mbr, 512, 0);
		if (r)
			goto io;
		if (mbr[510] == 0x55 && mbr[511] == 0xAA && mbr[450] == 0xFB) {
			uint64_t start = (uint64_t)od_get32(mbr + 454) * 512;
			if (start && start < dsize && dsize - start >= OD_LVM_HDR_OFF + 1024) {
				r = vmfs_bdev_read(e->bd, b, 1024, start + OD_LVM_HDR_OFF);
				if (r)
					goto io;
				e->base = start;
			}
		}
	}
	od_lvm_hdr_decode(b, &e->hdr);
	od_lvm_vol_decode(b + 512, &e->vol);
	if (e->hdr.magic != OD_LVM_MAGIC) {
		vlog(v, VMFS_LOG_ERR, "%s: no VMFS LVM header (magic 0x%08x at 0x100000)", uri,
		     e->hdr.magic);
		r = -EINVAL;
		goto out;
	}
	if (e->hdr.major != 3 && e->hdr.major != 5) {
		vlog(v, VMFS_LOG_ERR, "%s: unsupported LVM version %u (3 and 5 are supported)",
		     uri, e->hdr.major);
		r = -EOPNOTSUPP;
		goto out;
	}
	if (e->vol.num_devs < 1 || e->vol.num_devs > VMFS_MAX_EXTENTS) {
		vlog(v, VMFS_LOG_ERR, "%s: bad number of extents %u", uri, e->vol.num_devs);
		r = -EINVAL;
		goto out;
	}
	if (e->vol.first_pe > e->vol.last_pe || e->vol.last_pe >= (1ull << 31) ||
	    e->vol.num_pes != e->vol.last_pe - e->vol.first_pe + 1) {
		vlog(v, VMFS_LOG_ERR, "%s: bad segment range %llu..%llu (%u PEs)", uri,
		     (unsigned long long)e->vol.first_pe, (unsigned long long)e->vol.last_pe,
		     e->vol.num_pes);
		r = -EINVAL;
		goto out;
	}
	if (e->vol.logical_size == 0 || e->vol.logical_size % (1u << 20) ||
	    e->vol.logical_size > (1ull << 50)) {
		vlog(v, VMFS_LOG_ERR, "%s: bad logical volume size %llu", uri,
		     (unsigned long long)e->vol.logical_size);
		r = -EINVAL;
		goto out;
	}
	e->first = (uint32_t)e->vol.first_pe;
	e->last = (uint32_t)e->vol.last_pe;
	{
		uint64_t need = e->base + OD_LVM_DATA_OFF + (uint64_t)e->vol.num_pes * OD_SEGMENT_SIZE;
		if (dsize < need) {
			vlog(v, VMFS_LOG_ERR, "%s: extent truncated: %llu bytes, its %u segments need %llu",
			     uri, (unsigned long long)dsize, e->vol.num_pes, (unsigned long long)need);
			r = -EINVAL;
			goto out;
		}
	}
	(void)idx;
	r = 0;
	goto out;
io:
	vlog(v, VMFS_LOG_ERR, "%s: cannot read LVM header: %s", uri, strerror(-r));
out:
	free(b);
	return r;
}

static int cmp_ext(const void *a, const void *b)
{
	const struct extent *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

int vmfs_volume_open_bdevs(struct vmfs_bdev **bdevs, int n, const struct vmfs_volume_opts *o,
			   struct vmfs_volume **out)
{
	struct vmfs_volume_opts def = { 0 };
	struct vmfs_volume *v;
	struct vmfs_bdev_info info = { 0 };
	uint64_t segs = 0;
	int r, i;

	if (!o)
		o = &def;
	if (!bdevs || n < 1 || n > VMFS_MAX_EXTENTS || !out) {
		for (i = 0; bdevs && i < n; i++)
			vmfs_bdev_close(bdevs[i]);
		return -EINVAL;
	}
	v = calloc(1, sizeof(*v));
	if (!v) {
		for (i = 0; i < n; i++)
			vmfs_bdev_close(bdevs[i]);
		return -ENOMEM;
	}
	v->log = o->log;
	v->log_ctx = o->log_ctx;
	v->direct = (o->bdev_flags & VMFS_BDEV_DIRECT) != 0;
	for (i = 0; i < n; i++)
		v->ext[i].bd = bdevs[i];
	v->n = n;
	for (i = 0; i < n; i++) {
		r = read_extent(v, &v->ext[i], i);
		if (r)
			goto fail;
	}
	for (i = 1; i < n; i++) {
		struct extent *a = &v->ext[0], *e = &v->ext[i];
		if (memcmp(a->vol.lv_uuid, e->vol.lv_uuid, 16)) {
			vlog(v, VMFS_LOG_ERR, "%s: not part of the LVM of %s (different LVM UUID)",
			     vmfs_bdev_uri(e->bd), vmfs_bdev_uri(a->bd));
			r = -EINVAL;
			goto fail;
		}
		if (a->vol.logical_size != e->vol.logical_size || a->vol.generation != e->vol.generation ||
		    a->vol.num_devs != e->vol.num_devs) {
			vlog(v, VMFS_LOG_ERR, "%s: LVM information mismatch with %s (size/generation/extents)",
			     vmfs_bdev_uri(e->bd), vmfs_bdev_uri(a->bd));
			r = -EINVAL;
			goto fail;
		}
	}
	qsort(v->ext, (size_t)n, sizeof(v->ext[0]), cmp_ext);
	for (i = 0; i < n; i++) {
		if (i > 0 && v->ext[i].first <= v->ext[i - 1].last) {
			vlog(v, VMFS_LOG_ERR, "%s and %s hold overlapping segments (same extent twice?)",
			     vmfs_bdev_uri(v->ext[i - 1].bd), vmfs_bdev_uri(v->ext[i].bd));
			r = -EINVAL;
			goto fail;
		}
		segs += v->ext[i].vol.num_pes;
	}
	if ((uint32_t)n != v->ext[0].vol.num_devs && !o->allow_missing) {
		vlog(v, VMFS_LOG_ERR, "missing extents: volume has %u, %d given",
		     v->ext[0].vol.num_devs, n);
		r = -ENXIO;
		goto fail;
	}
	if ((uint32_t)n > v->ext[0].vol.num_devs) {
		vlog(v, VMFS_LOG_ERR, "more extents given (%d) than the volume has (%u)", n,
		     v->ext[0].vol.num_devs);
		r = -EINVAL;
		goto fail;
	}
	if (!o->allow_missing) {
		/* contiguous segments 0..segs-1 */
		uint64_t expect = 0;
		for (i = 0; i < n; i++) {
			if (v->ext[i].first != expect) {
				vlog(v, VMFS_LOG_ERR, "segment %llu of the volume is on no extent",
				     (unsigned long long)expect);
				r = -ENXIO;
				goto fail;
			}
			expect = (uint64_t)v->ext[i].last + 1;
		}
		if (v->ext[0].vol.logical_size > segs * OD_SEGMENT_SIZE) {
			vlog(v, VMFS_LOG_ERR, "logical size %llu exceeds the %llu segments present",
			     (unsigned long long)v->ext[0].vol.logical_size, (unsigned long long)segs);
			r = -EINVAL;
			goto fail;
		}
	}
	v->info.lvm_major = v->ext[0].hdr.major;
	memcpy(v->info.lvm_uuid, v->ext[0].vol.lv_uuid, 16);
	od_uuid_format(v->info.lvm_uuid, v->info.lvm_uuid_str);
	v->info.lv_size = v->ext[0].vol.logical_size;
	v->info.generation = v->ext[0].vol.generation;
	v->info.num_extents = (uint32_t)n;
	v->info.num_segments = (uint32_t)((v->info.lv_size + OD_SEGMENT_SIZE - 1) / OD_SEGMENT_SIZE);

	info.size = v->info.lv_size;
	info.lbs = 512;
	info.pbs = 512;
	info.ats = VMFS_ATS_LOWER;
	info.discard = true;
	info.rdonly = (o->bdev_flags & VMFS_BDEV_RDONLY) != 0;
	for (i = 0; i < n; i++) {
		const struct vmfs_bdev_info *ei = vmfs_bdev_get_info(v->ext[i].bd);
		if (ei->lbs > info.lbs)
			info.lbs = ei->lbs;
		if (ei->pbs > info.pbs)
			info.pbs = ei->pbs;
		if (ei->rdonly)
			info.rdonly = true;
		if (ei->ats == VMFS_ATS_NONE)
			info.ats = VMFS_ATS_NONE;
		if (!ei->discard)
			info.discard = false;
	}
	strcpy(info.kind, "lv");
	r = vmfs_bdev_create(&lv_ops, v, &info, v->info.lvm_uuid_str, &v->lv);
	if (r)
		goto fail;
	*out = v;
	return 0;
fail:
	for (i = 0; i < n; i++)
		vmfs_bdev_close(v->ext[i].bd);
	free(v);
	return r;
}

int vmfs_volume_open(const char *const *paths, int npaths, const struct vmfs_volume_opts *o,
		     struct vmfs_volume **out)
{
	struct vmfs_bdev *bds[VMFS_MAX_EXTENTS];
	struct vmfs_volume_opts def = { 0 };
	int r, i;

	if (!o)
		o = &def;
	if (!paths || npaths < 1 || npaths > VMFS_MAX_EXTENTS || !out)
		return -EINVAL;
	for (i = 0; i < npaths; i++) {
		r = vmfs_bdev_open(paths[i], o->bdev_flags, &bds[i]);
		if (r) {
			char msg[600];
			snprintf(msg, sizeof(msg), "%s: %s", paths[i], strerror(-r));
			if (o->log)
				o->log(o->log_ctx, VMFS_LOG_ERR, msg);
			else
				fprintf(stderr, "vmfs: %s\n", msg);
			while (i-- > 0)
				vmfs_bdev_close(bds[i]);
			return r;
		}
	}
	return vmfs_volume_open_bdevs(bds, npaths, o, out);
}

struct vmfs_bdev *vmfs_volume_bdev(struct vmfs_volume *v) { return v->lv; }

const struct vmfs_volume_info *vmfs_volume_get_info(const struct vmfs_volume *v) { return &v->info; }

static void quiet_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)level;
	(void)msg;
}

int vmfs_volume_extent_locate(struct vmfs_bdev *bd, uint64_t lv_off, uint64_t *dev_off)
{
	struct vmfs_volume *tmp = calloc(1, sizeof(*tmp));
	uint64_t seg = lv_off / OD_SEGMENT_SIZE;
	int r;

	if (!tmp)
		return -ENOMEM;
	tmp->log = quiet_log;
	tmp->ext[0].bd = bd;
	r = read_extent(tmp, &tmp->ext[0], 0);
	if (r == 0) {
		const struct extent *e = &tmp->ext[0];

		if (seg < e->first || seg > e->last)
			r = -ENXIO;
		else
			*dev_off = ext_dev_off(e, lv_off);
	}
	free(tmp);
	return r;
}

int vmfs_volume_map(struct vmfs_volume *v, uint64_t lv_off, int *idx, uint64_t *dev_off,
		    uint64_t *len)
{
	const struct extent *e = find_extent(v, lv_off);

	if (!e)
		return -ENXIO;
	*idx = (int)(e - v->ext);
	*dev_off = ext_dev_off(e, lv_off);
	*len = ((uint64_t)e->last + 1) * OD_SEGMENT_SIZE - lv_off;
	return 0;
}

struct vmfs_bdev *vmfs_volume_extent(struct vmfs_volume *v, int i, uint32_t *first_seg,
				     uint32_t *nsegs)
{
	if (i < 0 || i >= v->n)
		return NULL;
	if (first_seg)
		*first_seg = v->ext[i].first;
	if (nsegs)
		*nsegs = v->ext[i].last - v->ext[i].first + 1;
	return v->ext[i].bd;
}

void vmfs_volume_close(struct vmfs_volume *v)
{
	if (!v)
		return;
	if (v->lv) {
		vmfs_bdev_flush(v->lv);
		vmfs_bdev_close(v->lv);
	}
	for (int i = 0; i < v->n; i++)
		vmfs_bdev_close(v->ext[i].bd);
	free(v);
}
