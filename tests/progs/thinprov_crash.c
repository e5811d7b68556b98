/*
 * thinprov_crash: power cuts during first writes to TBZ blocks and to thin
 * (unallocated) blocks; after recovery no sector of the disk may return the
 * stale pattern the device held before the volume was formatted.
 *
 *   thinprov_crash KIND PATH JOURNAL RUNS
 *     KIND     tbz (zeroedthick disk) | thin
 *     PATH     fs (vmfs_pwrite: the filesystem's own first-write path)
 *              tp (thinprov_pwrite: allocate TBZ, write + flush, then the fs)
 *              conv (thinprov_inflate: every hole / TBZ block of the disk
 *                    zeroed in place, 4 MiB per step)
 *              del  (thinprov_unlink of a fully written disk, discarding its
 *                    blocks: after recovery the disk is either gone or holds
 *                    all its data — a discard before the commit would zero it)
 *              pz   (thinprov_punch_zero of a disk whose blocks are data,
 *                    written zeros and holes/TBZ, two blocks per transaction:
 *                    after recovery the content is unchanged, every block the
 *                    disk references is allocated in the bitmap, and the free
 *                    count plus the disk's blocks is what it was: no block
 *                    freed twice, none leaked, none discarded while referenced)
 *     JOURNAL  journal (commit hook = the per-host redo journal, as a host
 *              mount runs it) | none (single host without hooks)
 *     RUNS     number of cut points (I/O index x seed)
 *
 * The device is an in-memory copy-on-write image whose every sector starts
 * as a recognisable stale pattern; each run works on a fresh overlay under
 * the fault wrapper, fails the Nth I/O, cuts the power (a random subset of
 * the unflushed writes survives, one may be torn), replays the journal and
 * reads the whole disk back.
 * Prints "runs=N exposed=M first=..." and exits 0 when nothing stale was
 * seen (del: no data lost), 3 when it was, 1 on other errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/fs.h"
#include "vmfs/journal.h"
#include "vmfs/thinprov.h"
#include "vmfs/volume.h"

#define MiB (1ull << 20)
#define CH MiB
#define DEV_SIZE (17 * MiB + 256 * MiB)
#define NCH (DEV_SIZE / CH)
#define DISK_SIZE (16 * MiB)
#define STALE "STALE-SECTOR-FROM-BEFORE-MKFS!!"

static uint8_t *stale_chunk;
static uint8_t *base[NCH];     /* after setup: read-only */
static uint8_t *over[NCH];     /* per-run overlay */
static bool setup_phase = true;

static int cow_io(const struct iovec *iov, int cnt, uint64_t off, bool wr)
{
	for (int i = 0; i < cnt; i++) {
		uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		while (len) {
			size_t c = off / CH, in = off % CH, n = CH - in < len ? CH - in : len;
			if (c >= NCH)
				return -EINVAL;
			if (wr) {
				uint8_t **slot = setup_phase ? &base[c] : &over[c];
				if (!*slot || *slot == stale_chunk) {
					uint8_t *nc = malloc(CH);
					if (!nc)
						return -ENOMEM;
					memcpy(nc, setup_phase ? base[c] : (over[c] ? over[c] : base[c]), CH);
					*slot = nc;
				}
				memcpy(*slot + in, p, n);
			} else {
				const uint8_t *src = !setup_phase && over[c] ? over[c] : base[c];
				memcpy(p, src + in, n);
			}
			p += n;
			off += n;
			len -= n;
		}
	}
	return 0;
}
static int cow_readv(void *p, const struct iovec *iov, int cnt, uint64_t off) { (void)p; return cow_io(iov, cnt, off, false); }
static int cow_writev(void *p, const struct iovec *iov, int cnt, uint64_t off) { (void)p; return cow_io(iov, cnt, off, true); }
static int cow_flush(void *p) { (void)p; return 0; }
static int cow_ats(void *p, uint64_t off, const void *exp, const void *nd, void *cur)
{
	uint8_t b[512];
	struct iovec v = { b, 512 };
	int e = cow_io(&v, 1, off, false);
	(void)p;
	if (e)
		return e;
	if (memcmp(b, exp, 512)) {
		if (cur)
			memcpy(cur, b, 512);
		return -ESTALE;
	}
	v.iov_base = (void *)nd;
	return cow_io(&v, 1, off, true);
}
static void cow_close(void *p) { (void)p; }
/* discard: the range reads back the stale pattern afterwards (a device may
 * return anything for unmapped blocks), so a discard of a block that is still
 * referenced after recovery shows up as stale data */
static int cow_discard(void *p, uint64_t off, uint64_t len)
{
	(void)p;
	while (len) {
		size_t n = CH - off % CH < len ? CH - off % CH : (size_t)len;
		struct iovec v = { stale_chunk + off % CH, n };
		int e = cow_io(&v, 1, off, true);
		if (e)
			return e;
		off += n;
		len -= n;
	}
	return 0;
}
static const struct vmfs_bdev_ops cow_ops = { cow_readv, cow_writev, cow_flush, cow_discard, cow_ats, cow_close };

static struct vmfs_bdev *cow_dev(void)
{
	struct vmfs_bdev_info info = { .size = DEV_SIZE, .lbs = 512, .pbs = 512, .ats = VMFS_ATS_OFD_LOCK,
				       .discard = true };
	struct vmfs_bdev *bd = NULL;

	strcpy(info.kind, "cow");
	if (vmfs_bdev_create(&cow_ops, NULL, &info, "cow", &bd))
		return NULL;
	return bd;
}

static void reset_overlay(void)
{
	for (size_t c = 0; c < NCH; c++) {
		free(over[c]);
		over[c] = NULL;
	}
}

static void quiet(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }

static struct vmfs_journal *g_jnl;
static int h_commit(void *ctx, const struct vmfs_txn_sector *s, size_t n)
{
	(void)ctx;
	return vmfs_journal_commit(g_jnl, (const struct vmfs_jsector *)s, n);
}
static void h_committed(void *ctx) { (void)ctx; vmfs_journal_applied(g_jnl); }
static const struct vmfs_fs_hooks jhooks = { .commit = h_commit, .committed = h_committed };

static uint64_t jnl_off;
static const uint64_t jnl_len = MiB;
static bool use_tp, use_conv, use_del, use_pz, use_journal, kind_tbz;
static uint64_t blocks_total;   /* pz: free blocks + the disk's blocks after setup */
static uint8_t fillbyte(uint64_t off) { return (uint8_t)(off * 31 / 512 + 0x41) | 1; }

static int open_fs(struct vmfs_bdev *dev, struct vmfs_volume **vol, struct vmfs_fs **fs, bool hooks)
{
	struct vmfs_volume_opts vo = { .log = quiet };
	struct vmfs_fs_opts fo = { .log = quiet, .flags = VMFS_FS_NO_RESIDENT };
	int e = vmfs_volume_open_bdevs(&dev, 1, &vo, vol);

	if (e)
		return e;
	if (hooks)
		fo.hooks = &jhooks;
	e = vmfs_fs_open(*vol, &fo, fs);
	if (e)
		vmfs_volume_close(*vol);
	return e;
}

static uint8_t pz_byte(uint64_t o) { return (o / MiB) % 3 ? 0 : fillbyte(o); }

/* pz: check the disk's blocks against the bitmap; *total = free blocks +
 * blocks the disk references.  -EUCLEAN on a referenced free block, a block
 * referenced twice or a wrong blk_count. */
static int pz_blocks(struct vmfs_fs *fs, uint32_t addr, uint64_t *total)
{
	struct vmfs_statfs st;
	struct vmfs_stat fst;
	uint64_t seen[DISK_SIZE / MiB], n = 0;
	int e = vmfs_fs_statfs(fs, &st);

	for (uint64_t off = 0; off < DISK_SIZE && !e;) {
		struct vmfs_extent x;
		e = vmfs_map(fs, addr, off, 0, &x);
		if (e)
			break;
		for (uint64_t b = 0; b < x.len && x.state != VMFS_EXT_HOLE; b += MiB) {
			uint64_t blk = (x.lv_off + b) / MiB;
			if (vmfs_addr_allocated(fs, vmfs_fb_make((uint32_t)blk, false)) != 1)
				return -EUCLEAN;
			for (uint64_t i = 0; i < n; i++)
				if (seen[i] == blk)
					return -EUCLEAN;
			seen[n++] = blk;
		}
		off = x.file_off + x.len;
	}
	if (!e)
		e = vmfs_stat(fs, addr, &fst);
	if (!e && fst.blk_count != n)
		return -EUCLEAN;
	*total = st.free_blocks + n;
	return e;
}

static int setup(void)
{
	struct vmfs_bdev *dev;
	struct vmfs_mkfs_opts mo = { .label = "crash", .log = quiet };
	struct vmfs_mkfs_result res;
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	struct vmfs_extent ext;
	uint32_t addr;
	int e;

	stale_chunk = malloc(CH);
	if (!stale_chunk)
		return -ENOMEM;
	for (size_t s = 0; s < CH / 512; s++) {
		memset(stale_chunk + s * 512, 0xEE, 512);
		memcpy(stale_chunk + s * 512, STALE, sizeof(STALE));
	}
	for (size_t c = 0; c < NCH; c++)
		base[c] = stale_chunk;
	dev = cow_dev();
	if (!dev)
		return -ENOMEM;
	e = vmfs_mkfs(&dev, 1, &mo, &res);
	if (e)
		return e;
	e = open_fs(dev, &vol, &fs, false);
	if (e)
		return e;
	/* the journal region: one zeroed block of a file */
	e = vmfs_create(fs, VMFS_ROOT_ADDR, "g_jnl", 0600, 0, 0, &addr);
	if (!e)
		e = vmfs_fallocate(fs, addr, 0, jnl_len, VMFS_ALLOC_ZERO);
	if (!e)
		e = vmfs_map(fs, addr, 0, jnl_len, &ext);
	if (!e && ext.len < jnl_len)
		e = -EIO;
	if (!e) {
		jnl_off = ext.lv_off;
		e = vmfs_journal_format(vmfs_fs_bdev(fs), jnl_off, jnl_len);
	}
	if (!e)
		e = vmfs_create(fs, VMFS_ROOT_ADDR, "disk", 0600, 0, 0, &addr);
	if (!e)
		e = thinprov_provision(fs, addr, DISK_SIZE, kind_tbz ? THINPROV_ZEROEDTHICK : THINPROV_THIN, NULL);
	if (!e && use_del) {
		uint8_t *d = malloc(DISK_SIZE);
		if (!d)
			return -ENOMEM;
		for (uint64_t o = 0; o < DISK_SIZE; o++)
			d[o] = fillbyte(o);
		e = (int)thinprov_pwrite(fs, addr, d, DISK_SIZE, 0, NULL);
		e = e == (int)DISK_SIZE ? 0 : (e < 0 ? e : -EIO);
		free(d);
	}
	if (!e && use_pz) {
		/* per block: data (b % 3 == 0), written zeros (1), untouched (2) */
		static uint8_t d[MiB];
		for (uint64_t b = 0; b < DISK_SIZE / MiB && !e; b++) {
			if (b % 3 == 2)
				continue;
			for (uint64_t o = 0; o < MiB; o++)
				d[o] = b % 3 ? 0 : fillbyte(b * MiB + o);
			e = vmfs_pwrite(fs, addr, d, MiB, b * MiB) == (int64_t)MiB ? 0 : -EIO;
		}
		if (!e)
			e = pz_blocks(fs, addr, &blocks_total);
	}
	vmfs_fs_close(fs);
	vmfs_volume_close(vol);
	setup_phase = false;
	return e;
}

/* The workload: first writes of various shapes into untouched blocks. */
static int workload(struct vmfs_fs *fs, uint32_t addr, uint64_t seed)
{
	static uint8_t buf[3 * MiB];
	uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
	static const struct { uint64_t off, len; } w[] = {
		{ 0, 4096 },                    /* head of block 0 */
		{ 2 * MiB + 512, 1000 },        /* unaligned, middle of block 2 */
		{ 4 * MiB, MiB },               /* whole block 4 */
		{ 6 * MiB - 8192, 3 * MiB },    /* spans blocks 5..8 */
		{ 11 * MiB + 777, 5 },          /* tiny */
		{ 15 * MiB + MiB - 512, 512 },  /* last sector */
	};

	if (use_del) {
		int e = thinprov_unlink(fs, VMFS_ROOT_ADDR, "disk", NULL, NULL);
		return e ? e : vmfs_fs_sync(fs);
	}
	if (use_pz) {
		struct thinprov_opts o = { .chunk = 128 << 10 };   /* 2 blocks per transaction */
		int e = thinprov_punch_zero(fs, VMFS_ROOT_ADDR, "disk", &addr, &o, NULL);
		return e ? e : vmfs_fs_sync(fs);
	}
	if (use_conv) {
		struct thinprov_opts o = { .chunk = 4 * MiB };
		int e = thinprov_pwrite(fs, addr, "conv", 4, 3 * MiB, NULL) == 4 ? 0 : -EIO;
		if (!e)
			e = thinprov_inflate(fs, addr, &o);
		return e ? e : vmfs_fs_sync(fs);
	}
	for (size_t i = 0; i < sizeof(buf); i++) {
		x = x * 6364136223846793005ull + 1;
		buf[i] = (uint8_t)(x >> 56) | 1;   /* never 0, never a stale marker run */
		if (buf[i] == 'S' || buf[i] == 0xEE)
			buf[i] = 0x11;
	}
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		int64_t r = use_tp ? thinprov_pwrite(fs, addr, buf, w[i].len, w[i].off, NULL)
				   : vmfs_pwrite(fs, addr, buf, w[i].len, w[i].off);
		if (r < 0)
			return (int)r;
	}
	return vmfs_fs_sync(fs);
}

/* One run; returns 1 when stale data was exposed, 0 clean, <0 error. */
static int run(uint64_t fail_at, uint64_t seed, uint64_t *ios, uint64_t *first_bad)
{
	struct vmfs_bdev *dev, *fault;
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	uint32_t addr;
	uint8_t *buf = NULL;
	int e, bad = 0;

	reset_overlay();
	dev = cow_dev();
	if (!dev || vmfs_fault_wrap(dev, &fault))
		return -ENOMEM;
	e = open_fs(fault, &vol, &fs, use_journal);
	if (e)
		return e;
	g_jnl = NULL;
	if (use_journal) {
		e = vmfs_journal_open(vmfs_fs_bdev(fs), jnl_off, jnl_len, 0, &g_jnl, NULL);
		if (e)
			return e;
	}
	e = vmfs_resolve(fs, "/disk", &addr);
	if (e)
		return e;
	if (fail_at)
		vmfs_fault_fail_nth(fault, fail_at, EIO);
	uint64_t before = vmfs_fault_io_count(fault);
	(void)workload(fs, addr, seed);
	*ios = vmfs_fault_io_count(fault) - before;
	vmfs_fault_power_cut(fault, seed, true);
	if (g_jnl)
		vmfs_journal_abandon(g_jnl);
	vmfs_fs_close(fs);
	vmfs_volume_close(vol);

	/* recovery */
	dev = cow_dev();
	if (!dev)
		return -ENOMEM;
	e = open_fs(dev, &vol, &fs, false);
	if (e)
		return e;
	if (use_journal) {
		e = vmfs_journal_replay(vmfs_fs_bdev(fs), jnl_off, jnl_len, NULL);
		vmfs_fs_close(fs);
		vmfs_volume_close(vol);
		if (e)
			return e;
		dev = cow_dev();
		e = dev ? open_fs(dev, &vol, &fs, false) : -ENOMEM;
		if (e)
			return e;
	}
	e = vmfs_resolve(fs, "/disk", &addr);
	if (use_del && e == -ENOENT) {
		vmfs_fs_close(fs);
		vmfs_volume_close(vol);
		return 0;   /* deleted: fine */
	}
	buf = malloc(DISK_SIZE);
	if (!buf)
		e = -ENOMEM;
	if (!e) {
		int64_t r = vmfs_pread(fs, addr, buf, DISK_SIZE, 0);
		if (r == -ENOENT && use_del) {
			/* no journal: the entry may outlive its FD (nlink 0): gone too */
			free(buf);
			vmfs_fs_close(fs);
			vmfs_volume_close(vol);
			return 0;
		}
		if (r < 0)
			e = (int)r;
	}
	if (!e && use_del) {
		for (uint64_t o = 0; o < DISK_SIZE; o++)
			if (buf[o] != fillbyte(o)) {
				*first_bad = o;
				bad = 1;
				break;
			}
	} else if (!e && use_pz) {
		uint64_t total = 0;
		for (uint64_t o = 0; o < DISK_SIZE; o++)
			if (buf[o] != pz_byte(o)) {
				*first_bad = o;
				bad = 1;
				break;
			}
		if (!bad && (pz_blocks(fs, addr, &total) || total != blocks_total)) {
			*first_bad = UINT64_MAX;   /* bitmap / block map disagree */
			bad = 1;
		}
	} else if (!e) {
		for (uint64_t s = 0; s < DISK_SIZE / 512; s++)
			if (!memcmp(buf + s * 512, STALE, sizeof(STALE) - 1)) {
				if (!bad)
					*first_bad = s * 512;
				bad = 1;
				break;
			}
	}
	free(buf);
	vmfs_fs_close(fs);
	vmfs_volume_close(vol);
	return e ? e : bad;
}

int main(int argc, char **argv)
{
	uint64_t runs, ios = 0, total_ios, exposed = 0, done = 0, first = 0, first_run = 0;
	int e;

	if (argc != 5) {
		fprintf(stderr, "usage: thinprov_crash tbz|thin fs|tp|conv|del|pz journal|none RUNS\n");
		return 2;
	}
	kind_tbz = !strcmp(argv[1], "tbz");
	use_tp = !strcmp(argv[2], "tp");
	use_conv = !strcmp(argv[2], "conv");
	use_del = !strcmp(argv[2], "del");
	use_pz = !strcmp(argv[2], "pz");
	use_journal = !strcmp(argv[3], "journal");
	runs = strtoull(argv[4], NULL, 0);
	e = setup();
	if (e) {
		fprintf(stderr, "thinprov_crash: setup: %s\n", strerror(-e));
		return 1;
	}
	/* dry run: how many I/Os the workload takes */
	e = run(0, 1, &total_ios, &first);
	if (e < 0) {
		fprintf(stderr, "thinprov_crash: dry run: %s\n", strerror(-e));
		return 1;
	}
	if (e == 1) {
		fprintf(stderr, "thinprov_crash: stale data without any fault at offset %" PRIu64 "\n", first);
		return 1;
	}
	for (uint64_t i = 0; i < runs; i++) {
		uint64_t k = 1 + (i * 7919) % total_ios, fb = 0;   /* spread over every I/O index */
		e = run(k, i + 2, &ios, &fb);
		if (e < 0) {
			fprintf(stderr, "thinprov_crash: run %" PRIu64 " (cut at I/O %" PRIu64 "): %s\n", i, k,
				strerror(-e));
			return 1;
		}
		if (e == 1 && !exposed++) {
			first = fb;
			first_run = k;
		}
		done++;
	}
	reset_overlay();
	printf("kind=%s path=%s journal=%s ios=%" PRIu64 " runs=%" PRIu64 " exposed=%" PRIu64, argv[1],
	       argv[2], argv[3], total_ios, done, exposed);
	if (exposed)
		printf(" first_cut_io=%" PRIu64 " first_offset=%" PRIu64, first_run, first);
	printf("\n");
	return exposed ? 3 : 0;
}
