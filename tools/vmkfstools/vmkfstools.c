/*
 * vmkfstools: manage virtual disks on a VMFS datastore, with VMware's flags.
 *
 * Two ways to reach the datastore:
 *   --volume IMG[,EXT...]  open the volume directly as a host of its cluster
 *                          (heartbeat, journal, on-disk locks; each disk's
 *                          lock is held while working on it); PATHs are
 *                          paths inside the volume ("/disk.vmdk").
 *   (no --volume)          PATHs are ordinary files, e.g. on a vmfs-fuse
 *                          mount: plain POSIX calls (fallocate, lseek
 *                          SEEK_DATA/SEEK_HOLE); TBZ state and LV offsets are
 *                          not visible that way and are reported as such.
 *
 * Exit status: 0 success, 1 operation failed, 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <linux/falloc.h>

#include "vmfs/host.h"
#include "vmfs/thinprov.h"

#define PROG "vmkfstools"
#define MAX_DESC (64u << 10)

enum cmd {
	C_NONE, C_CREATE, C_CLONE, C_EXTEND, C_INFLATE, C_EAGERZERO, C_PUNCHZERO, C_DELETE,
	C_RENAME, C_INFO, C_MAP, C_RECLAIM,
};

static struct {
	enum cmd cmd;
	const char *size_arg;
	const char *type_arg;
	const char *src;
	const char *volume;
	const char *adapter;
	bool human, verbose, rdonly, force;
	const char *args[2];
	int nargs;
} g = { .adapter = "lsilogic" };


static struct vmfs_host *host;
static struct vmfs_fs *fs;

static void die_usage(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PROG " --help'.\n");
	if (host)
		vmfs_host_unmount(host);   /* leave the heartbeat cleanly */
	exit(2);
}

static int fail(const char *what, const char *path, int e)
{
	fprintf(stderr, PROG ": %s %s: %s\n", what, path ? path : "", strerror(e < 0 ? -e : e));
	return 1;
}

static void usage(void)
{
	printf("usage: " PROG " [--volume IMG[,EXT...]] [-r] [-v] OPTION PATH...\n"
	       "\n"
	       "Virtual disk options (PATH is the descriptor DISK.vmdk; the data lives in DISK-flat.vmdk):\n"
	       "  -c, --createvirtualdisk SIZE   create a disk of SIZE (bytes, or with suffix k/K m/M g/G t/T)\n"
	       "  -d, --diskformat TYPE          thin | zeroedthick (default) | eagerzeroedthick\n"
	       "  -a, --adaptertype TYPE         lsilogic (default) | buslogic | ide | pvscsi\n"
	       "  -i, --clonevirtualdisk SRC DST clone SRC into a new disk DST (sparse-aware; -d TYPE)\n"
	       "  -X, --extendvirtualdisk SIZE   grow the disk to SIZE, keeping its type (--force to shrink)\n"
	       "  -j, --inflatedisk              thin -> eagerzeroedthick\n"
	       "  -k, --eagerzero                zero the to-be-zeroed blocks of a zeroedthick disk\n"
	       "  -K, --punchzero                free the all-zero blocks of a disk\n"
	       "  -U, --deletevirtualdisk        delete descriptor and flat file (blocks are reclaimed)\n"
	       "  -E, --renamevirtualdisk OLD NEW rename descriptor and flat file\n"
	       "  -t0                            print the block map (file offset -> LV offset)\n"
	       "\n"
	       "Datastore options:\n"
	       "  -P, --queryfs [-h] PATH        capacity, free, provisioned/allocated/written\n"
	       "  -y, --reclaimblocks            discard every free file block to the device\n"
	       "\n"
	       "  --volume IMG[,EXT...]          work on the volume directly as a cluster host\n"
	       "  -r, --readonly                 mount read-only (implied by -P and -t0)\n"
	       "  -v, --verbose                  progress on stderr even when it is not a terminal\n"
	       "  --force                        allow shrinking with -X; reclaim beside live hosts\n"
	       "  --help                         this help\n"
	       "\n"
	       "Exit status: 0 success, 1 failure, 2 usage error.  See vmkfstools(8).\n");
}

/* ---- sizes ------------------------------------------------------------------------ */

/* vmkfstools sizes: a number with an optional k/m/g/t suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: return -EINVAL;
	}
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	v <<= shift;
	if (v == 0)
		return -EINVAL;
	if (v % 512)
		return -EDOM;
	if (v > VMFS_MAX_FILE_SIZE)
		return -EFBIG;
	*out = v;
	return 0;
}

static uint64_t size_or_die(const char *s)
{
	uint64_t v;
	int e = parse_size(s, &v);

	if (e == -EDOM)
		die_usage("invalid size '%s': not a multiple of 512 bytes", s);
	if (e == -EFBIG || e == -ERANGE)
		die_usage("invalid size '%s': larger than the 62 TiB VMFS file limit", s);
	if (e)
		die_usage("invalid size '%s' (a number with an optional k, m, g or t suffix)", s);
	return v;
}

static void human(uint64_t v, char *buf, size_t n)
{
	static const char u[] = "BKMGTP";
	double d = (double)v;
	int i = 0;

	if (!g.human) {
		snprintf(buf, n, "%" PRIu64, v);
		return;
	}
	while (d >= 1024 && i < 5) {
		d /= 1024;
		i++;
	}
	snprintf(buf, n, i ? "%.1f%c" : "%.0f%c", d, u[i]);
}

/* ---- progress -------------------------------------------------------------------- */

struct prog {
	const char *what;
	int last;
	bool on;
};

static int progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct prog *p = ctx;
	int pct = total ? (int)(done * 100 / total) : 100;

	if (p->on && pct != p->last) {
		fprintf(stderr, "\r%s: %d%% done.", p->what, pct);
		if (pct == 100)
			fputc('\n', stderr);
		p->last = pct;
	}
	return 0;
}

static void prog_init(struct prog *p, struct thinprov_opts *o, const char *what)
{
	p->what = what;
	p->last = -1;
	p->on = g.verbose || isatty(2);
	o->progress = progress_cb;
	o->progress_ctx = p;
}

/* ---- names -------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* "dir/disk.vmdk" -> "dir/disk-flat.vmdk" */
static int flat_of(const char *desc, char *out, size_t n)
{
	size_t l = strlen(desc);

	if (!ends_with(desc, ".vmdk") || ends_with(desc, "-flat.vmdk") || l < 6)
		return -EINVAL;
	if (snprintf(out, n, "%.*s-flat.vmdk", (int)(l - 5), desc) >= (int)n)
		return -ENAMETOOLONG;
	return 0;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* ---- file access: volume (fs API) or POSIX ---------------------------------------- */

static bool direct(void) { return fs != NULL; }

static int v_resolve(const char *path, uint32_t *addr)
{
	return vmfs_resolve(fs, path, addr);
}

static int file_exists(const char *path)
{
	uint32_t a;
	struct stat st;

	if (direct()) {
		int e = v_resolve(path, &a);
		return e == 0 ? 1 : e == -ENOENT ? 0 : e;
	}
	if (stat(path, &st) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

/* Read a small text file (the descriptor) into a NUL-terminated buffer. */
static int read_text(const char *path, char **out)
{
	char *buf = calloc(1, MAX_DESC + 1);
	int e = 0;

	if (!buf)
		return -ENOMEM;
	if (direct()) {
		uint32_t a;
		int64_t n;
		e = v_resolve(path, &a);
		if (!e) {
			n = vmfs_pread(fs, a, buf, MAX_DESC, 0);
			e = n < 0 ? (int)n : 0;
		}
	} else {
		int fd = open(path, O_RDONLY);
		ssize_t n;
		if (fd < 0) {
			e = -errno;
		} else {
			n = read(fd, buf, MAX_DESC);
			e = n < 0 ? -errno : 0;
			close(fd);
		}
	}
	if (e) {
		free(buf);
		return e;
	}
	*out = buf;
	return 0;
}

static int write_text(const char *path, const char *text, bool excl)
{
	size_t len = strlen(text);
	int e;

	if (direct()) {
		uint32_t a, dir;
		char name[129];
		int64_t w;
		e = v_resolve(path, &a);
		if (e == 0 && excl)
			return -EEXIST;
		if (e == -ENOENT) {
			e = vmfs_resolve_parent(fs, path, &dir, name);
			if (!e)
				e = vmfs_create(fs, dir, name, 0600, 0, 0, &a);
		}
		if (e)
			return e;
		e = vmfs_truncate(fs, a, 0);
		if (e)
			return e;
		w = vmfs_pwrite(fs, a, text, len, 0);
		return w < 0 ? (int)w : 0;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (excl ? O_EXCL : 0), 0600);
	if (fd < 0)
		return -errno;
	e = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
	if (!e && fsync(fd))
		e = -errno;
	if (close(fd) && !e)
		e = -errno;
	return e;
}

static int remove_file(const char *path, struct thinprov_reclaim *rc)
{
	if (direct()) {
		uint32_t dir;
		char name[129];
		struct thinprov_opts o = { 0 };
		int e = vmfs_resolve_parent(fs, path, &dir, name);
		return e ? e : thinprov_unlink(fs, dir, name, &o, rc);
	}
	return unlink(path) ? -errno : 0;
}

static int rename_file(const char *a, const char *b)
{
	if (direct()) {
		uint32_t d1, d2;
		char n1[129], n2[129];
		int e = vmfs_resolve_parent(fs, a, &d1, n1);
		if (!e)
			e = vmfs_resolve_parent(fs, b, &d2, n2);
		return e ? e : vmfs_rename(fs, d1, n1, d2, n2);
	}
	return rename(a, b) ? -errno : 0;
}

/* Hold the file's lock (direct mode, read-write) while working on it. */
static int lock_file(uint32_t addr, const char *path)
{
	struct vmfs_lock_conflict c;
	int e;

	if (!host || vmfs_host_rdonly(host))
		return 0;
	e = vmfs_host_lock_file(host, addr, VMFS_LM_EXCL, &c);
	if (e == -EBUSY)
		fprintf(stderr, PROG ": %s is locked by the host in heartbeat slot %d\n", path, c.slot);
	return e;
}

static void unlock_file(uint32_t addr)
{
	if (host && !vmfs_host_rdonly(host))
		vmfs_host_unlock_file(host, addr);
}

/* ---- descriptors ------------------------------------------------------------------- */

static uint32_t rnd32(void)
{
	uint32_t v = 0;
	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = (uint32_t)time(NULL) ^ (uint32_t)getpid() * 2654435761u;
	return v;
}

static void make_descriptor(char *out, size_t n, uint64_t size, const char *flat, int type)
{
	uint64_t sectors = size / 512;
	unsigned heads = 255, spt = 63;
	uint64_t cyl;
	uint8_t u[16];
	char uuid[64];
	int at = 0;

	if (!strcmp(g.adapter, "buslogic") || !strcmp(g.adapter, "ide")) {
		heads = g.adapter[0] == 'i' ? 16 : 64;
		spt = g.adapter[0] == 'i' ? 63 : 32;
	}
	cyl = sectors / (heads * spt);
	if (cyl > 65535)
		cyl = 65535;
	for (int i = 0; i < 4; i++) {
		uint32_t r = rnd32();
		memcpy(u + 4 * i, &r, 4);
	}
	for (int i = 0; i < 16; i++)
		at += snprintf(uuid + at, sizeof(uuid) - at, i == 7 ? "%02x-" : i == 15 ? "%02x" : "%02x ", u[i]);
	snprintf(out, n,
		 "# Disk DescriptorFile\n"
		 "version=1\n"
		 "encoding=\"UTF-8\"\n"
		 "CID=%08x\n"
		 "parentCID=ffffffff\n"
		 "createType=\"vmfs\"\n"
		 "\n"
		 "# Extent description\n"
		 "RW %" PRIu64 " VMFS \"%s\"\n"
		 "\n"
		 "# The Disk Data Base \n"
		 "#DDB\n"
		 "\n"
		 "ddb.adapterType = \"%s\"\n"
		 "ddb.geometry.cylinders = \"%" PRIu64 "\"\n"
		 "ddb.geometry.heads = \"%u\"\n"
		 "ddb.geometry.sectors = \"%u\"\n"
		 "ddb.longContentID = \"%08x%08x%08x%08x\"\n"
		 "%s"
		 "ddb.uuid = \"%s\"\n"
		 "ddb.virtualHWVersion = \"13\"\n",
		 rnd32(), sectors, flat, g.adapter, cyl, heads, spt, rnd32(), rnd32(), rnd32(), rnd32(),
		 type == THINPROV_THIN ? "ddb.thinProvisioned = \"1\"\n" : "", uuid);
}

/* Flat file name from the descriptor's extent line (same directory). */
static int desc_flat(const char *desc_path, const char *text, char *out, size_t n, uint64_t *sectors)
{
	struct thinprov_vmdk d;
	const char *slash = strrchr(desc_path, '/');
	int dl = slash ? (int)(slash - desc_path + 1) : 0;
	int r = thinprov_vmdk_parse(text, &d);

	if (r == 0)
		return -ENOMSG;            /* not a descriptor: PATH is the data */
	if (r < 0 || strchr(d.flat, '/'))
		return -EINVAL;
	if (sectors)
		*sectors = d.sectors;
	if (snprintf(out, n, "%.*s%s", dl, desc_path, d.flat) >= (int)n)
		return -ENAMETOOLONG;
	return 0;
}

/* Replace every occurrence of line-prefix content: rebuild the descriptor
 * with a new extent line / thinProvisioned flag. */
static char *desc_update(const char *text, uint64_t sectors, const char *flat, int type_thin)
{
	size_t cap = strlen(text) + 512;
	char *out = malloc(cap), *o = out;
	const char *p = text;
	bool have_thin = false;

	if (!out)
		return NULL;
	*o = 0;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p + 1) : strlen(p);
		unsigned long long s;
		char name[256];
		if (sscanf(p, "RW %llu VMFS \"%255[^\"]\"", &s, name) == 2) {
			o += sprintf(o, "RW %" PRIu64 " VMFS \"%s\"\n", sectors ? sectors : (uint64_t)s,
				     flat ? flat : name);
		} else if (!strncmp(p, "ddb.thinProvisioned", 19)) {
			have_thin = true;
			if (type_thin != 0)
				memcpy(o, p, l), o += l, *o = 0;
		} else if (!strncmp(p, "ddb.geometry.cylinders", 22) && sectors) {
			/* heads and sectors per track stay; cylinders follow the size */
			unsigned heads = 0, spt = 0;
			const char *hp = strstr(text, "ddb.geometry.heads = \""), *sp = strstr(text, "ddb.geometry.sectors = \"");
			if (hp)
				sscanf(hp, "ddb.geometry.heads = \"%u\"", &heads);
			if (sp)
				sscanf(sp, "ddb.geometry.sectors = \"%u\"", &spt);
			if (heads && spt) {
				uint64_t cyl = sectors / ((uint64_t)heads * spt);
				o += sprintf(o, "ddb.geometry.cylinders = \"%" PRIu64 "\"\n", cyl > 65535 ? 65535 : cyl);
			} else {
				memcpy(o, p, l);
				o += l;
				*o = 0;
			}
		} else {
			memcpy(o, p, l);
			o += l;
			*o = 0;
		}
		p += l;
	}
	if (type_thin == 1 && !have_thin)
		o += sprintf(o, "ddb.thinProvisioned = \"1\"\n");
	return out;
}

/* Resolve PATH to its data file: a descriptor names its flat file; anything
 * else is taken as the data file itself. */
static int data_path(const char *path, char *out, size_t n, char **desc_text)
{
	char *text = NULL;
	int e;

	if (desc_text)
		*desc_text = NULL;
	if (ends_with(path, ".vmdk") && !ends_with(path, "-flat.vmdk")) {
		e = read_text(path, &text);
		if (e)
			return e;
		e = desc_flat(path, text, out, n, NULL);
		if (e == -ENOMSG) {
			free(text);
			text = NULL;
			snprintf(out, n, "%s", path);
			e = 0;
		}
		if (e) {
			free(text);
			return e;
		}
		if (desc_text)
			*desc_text = text;
		else
			free(text);
		return 0;
	}
	if (snprintf(out, n, "%s", path) >= (int)n)
		return -ENAMETOOLONG;
	return 0;
}

/* ---- POSIX helpers (through a mount) ------------------------------------------------ */

/* Write zeros over every block of [0,size) that reads as zeros but is a
 * hole (inflate) or everywhere that reads zeros (eager-zero through a mount:
 * TBZ blocks are invisible, so writing zeros forces the fs to zero them). */
static int px_zero_fill(int fd, uint64_t size, bool holes_only, struct prog *p)
{
	size_t bs = 1 << 20;
	uint8_t *buf = malloc(bs), *z = calloc(1, bs);
	int e = 0;

	if (!buf || !z) {
		e = -ENOMEM;
		goto out;
	}
	for (uint64_t off = 0; off < size && !e; off += bs) {
		size_t n = size - off < bs ? (size_t)(size - off) : bs;
		if (holes_only) {
			off_t d = lseek(fd, (off_t)off, SEEK_DATA);
			if (d >= 0 && (uint64_t)d == off)
				continue;   /* data here already */
		} else {
			ssize_t r = pread(fd, buf, n, (off_t)off);
			if (r != (ssize_t)n) {
				e = r < 0 ? -errno : -EIO;
				break;
			}
			if (memcmp(buf, z, n))
				continue;
		}
		if (pwrite(fd, z, n, (off_t)off) != (ssize_t)n)
			e = -errno ? -errno : -EIO;
		progress_cb(p, off + n, size);
	}
	if (!e && fsync(fd))
		e = -errno;
out:
	free(buf);
	free(z);
	return e;
}

static int px_create(const char *flat, uint64_t size, int type, struct prog *p)
{
	int fd = open(flat, O_RDWR | O_CREAT | O_EXCL, 0600);
	int e = 0;

	if (fd < 0)
		return -errno;
	if (type == THINPROV_THIN) {
		if (ftruncate(fd, (off_t)size))
			e = -errno;
	} else {
		if (fallocate(fd, 0, 0, (off_t)size))
			e = -errno;
		if (!e && type == THINPROV_EAGERZEROEDTHICK)
			e = px_zero_fill(fd, size, false, p);
	}
	if (!e && fsync(fd))
		e = -errno;
	close(fd);
	if (e)
		unlink(flat);
	return e;
}

/* Copy the data extents of @src to @dst, skipping all-zero blocks. */
static int px_copy(int in, int out, uint64_t size, struct prog *p)
{
	size_t bs = 1 << 20;
	uint8_t *buf = malloc(bs);
	off_t pos = 0;
	int e = 0;

	if (!buf)
		return -ENOMEM;
	while ((uint64_t)pos < size && !e) {
		off_t d = lseek(in, pos, SEEK_DATA), h;
		if (d < 0) {
			if (errno == ENXIO)
				break;
			e = -errno;
			break;
		}
		h = lseek(in, d, SEEK_HOLE);
		if (h < 0)
			h = (off_t)size;
		for (off_t o = d; o < h && !e; o += (off_t)bs) {
			size_t n = (uint64_t)(h - o) < bs ? (size_t)(h - o) : bs;
			ssize_t r = pread(in, buf, n, o);
			if (r != (ssize_t)n) {
				e = r < 0 ? -errno : -EIO;
				break;
			}
			bool zero = true;
			for (size_t i = 0; i < n && zero; i++)
				zero = buf[i] == 0;
			if (!zero && pwrite(out, buf, n, o) != (ssize_t)n)
				e = -errno ? -errno : -EIO;
			progress_cb(p, (uint64_t)o + n, size);
		}
		pos = h;
	}
	free(buf);
	return e;
}

/* Usage through a mount: allocated from st_blocks, written = what SEEK_DATA
 * reports as data (vmfs-fuse reports TBZ blocks as holes, as ext4/xfs do for
 * unwritten extents), to-be-zeroed = allocated but not data. */
static int px_usage(int fd, uint64_t size, struct thinprov_usage *u)
{
	struct stat st;
	off_t pos = 0;

	memset(u, 0, sizeof(*u));
	if (fstat(fd, &st))
		return -errno;
	u->provisioned = size;
	u->allocated = (uint64_t)st.st_blocks * 512;
	while ((uint64_t)pos < size) {
		off_t d = lseek(fd, pos, SEEK_DATA), h;
		if (d < 0) {
			if (errno == ENXIO)
				break;
			return -errno;
		}
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0 || (uint64_t)h > size)
			h = (off_t)size;
		u->written += (uint64_t)(h - d);
		pos = h;
	}
	if (u->written > u->allocated)
		u->written = u->allocated;   /* data in no block: resident file */
	u->tbz = u->allocated > u->written && u->written < size ? u->allocated - u->written : 0;
	if (u->allocated < size || size == 0)
		u->type = THINPROV_THIN;
	else if (u->written < size)
		u->type = THINPROV_ZEROEDTHICK;
	else
		u->type = THINPROV_EAGERZEROEDTHICK;
	return 0;
}

/* ---- commands ---------------------------------------------------------------------- */

static int tp_size_public(uint32_t addr, uint64_t *size)
{
	struct vmfs_stat st;
	int e = vmfs_stat(fs, addr, &st);

	if (!e)
		*size = st.size;
	return e;
}

static int open_flat(const char *flat, uint32_t *addr)
{
	int e = v_resolve(flat, addr);

	if (e)
		return e;
	return lock_file(*addr, flat);
}

static int cmd_create(const char *desc)
{
	uint64_t size = size_or_die(g.size_arg);
	int type = THINPROV_ZEROEDTHICK, e, x;
	char flat[4096], text[4096];
	struct thinprov_opts o = { 0 };
	struct prog p;

	if (g.type_arg && thinprov_type_parse(g.type_arg, &type))
		die_usage("unknown disk format '%s' (thin, zeroedthick, eagerzeroedthick)", g.type_arg);
	if (flat_of(desc, flat, sizeof(flat)))
		die_usage("'%s': a disk is named DISK.vmdk", desc);
	for (int i = 0; i < 2; i++) {
		x = file_exists(i ? flat : desc);
		if (x < 0)
			return fail("cannot check", i ? flat : desc, x);
		if (x)
			return fail("cannot create", i ? flat : desc, EEXIST);
	}
	prog_init(&p, &o, "Creating disk");
	make_descriptor(text, sizeof(text), size, base_name(flat), type);
	if (direct()) {
		uint32_t dir, addr;
		char name[129];
		e = vmfs_resolve_parent(fs, flat, &dir, name);
		if (!e)
			e = vmfs_create(fs, dir, name, 0600, 0, 0, &addr);
		if (e)
			return fail("cannot create", flat, e);
		e = lock_file(addr, flat);
		if (!e) {
			e = thinprov_provision(fs, addr, size, type, &o);
			unlock_file(addr);
		}
		if (e) {
			remove_file(flat, NULL);
			return fail("cannot provision", flat, e);
		}
	} else {
		e = px_create(flat, size, type, &p);
		if (e)
			return fail("cannot create", flat, e);
	}
	e = write_text(desc, text, true);
	if (e) {
		remove_file(flat, NULL);
		return fail("cannot write descriptor", desc, e);
	}
	printf("Create: 100%% done.\n");
	return 0;
}

static int cmd_clone(const char *dst)
{
	char sflat[4096], dflat[4096], text[4096];
	char *stext = NULL;
	uint64_t size = 0;
	int type = THINPROV_ZEROEDTHICK, e, x;
	struct thinprov_opts o = { 0 };
	struct prog p;

	if (g.type_arg && thinprov_type_parse(g.type_arg, &type))
		die_usage("unknown disk format '%s'", g.type_arg);
	if (flat_of(dst, dflat, sizeof(dflat)))
		die_usage("'%s': a disk is named DISK.vmdk", dst);
	x = file_exists(g.src);
	if (x <= 0)
		return fail("cannot open source", g.src, x ? x : -ENOENT);
	e = data_path(g.src, sflat, sizeof(sflat), &stext);
	free(stext);
	if (e)
		return fail("cannot read descriptor", g.src, e);
	for (int i = 0; i < 2; i++) {
		x = file_exists(i ? dflat : dst);
		if (x < 0)
			return fail("cannot check", i ? dflat : dst, x);
		if (x)
			return fail("cannot create", i ? dflat : dst, EEXIST);
	}
	prog_init(&p, &o, "Clone");
	if (direct()) {
		uint32_t saddr, dir, daddr;
		char name[129];
		e = open_flat(sflat, &saddr);
		if (e)
			return fail("cannot open", sflat, e);
		e = tp_size_public(saddr, &size);
		if (!e)
			e = vmfs_resolve_parent(fs, dflat, &dir, name);
		if (!e)
			e = thinprov_clone(fs, saddr, dir, name, type, &o, &daddr);
		unlock_file(saddr);
		if (e)
			return fail("cannot clone into", dflat, e);
	} else {
		int in = open(sflat, O_RDONLY), out = -1;
		struct stat st;
		if (in < 0)
			return fail("cannot open", sflat, -errno);
		if (fstat(in, &st)) {
			close(in);
			return fail("cannot stat", sflat, -errno);
		}
		size = (uint64_t)st.st_size;
		e = px_create(dflat, size, type == THINPROV_THIN ? THINPROV_THIN : THINPROV_ZEROEDTHICK, &p);
		if (!e) {
			out = open(dflat, O_RDWR);
			e = out < 0 ? -errno : px_copy(in, out, size, &p);
		}
		if (!e && type == THINPROV_EAGERZEROEDTHICK)
			e = px_zero_fill(out, size, false, &p);
		if (!e && fsync(out))
			e = -errno;
		if (out >= 0)
			close(out);
		close(in);
		if (e) {
			unlink(dflat);
			return fail("cannot clone into", dflat, e);
		}
	}
	make_descriptor(text, sizeof(text), size, base_name(dflat), type);
	e = write_text(dst, text, true);
	if (e) {
		remove_file(dflat, NULL);
		return fail("cannot write descriptor", dst, e);
	}
	printf("Clone: 100%% done.\n");
	return 0;
}

/* Open the disk named by PATH: its flat file, locked in direct mode. */
struct disk {
	char flat[4096];
	char *desc_text;
	uint32_t addr;
	int fd;
	bool locked;
};

static int disk_open(const char *path, struct disk *d, bool rw)
{
	int e;

	memset(d, 0, sizeof(*d));
	d->fd = -1;
	e = file_exists(path);
	if (e <= 0)
		return e ? e : -ENOENT;
	e = data_path(path, d->flat, sizeof(d->flat), &d->desc_text);
	if (e)
		return e;
	if (direct()) {
		e = v_resolve(d->flat, &d->addr);
		if (!e && rw) {
			e = lock_file(d->addr, d->flat);
			d->locked = !e;
		}
	} else {
		d->fd = open(d->flat, rw ? O_RDWR : O_RDONLY);
		if (d->fd < 0)
			e = -errno;
	}
	if (e) {
		free(d->desc_text);
		d->desc_text = NULL;
	}
	return e;
}

static void disk_close(struct disk *d)
{
	if (d->locked)
		unlock_file(d->addr);
	if (d->fd >= 0)
		close(d->fd);
	free(d->desc_text);
}

static uint64_t disk_size(struct disk *d)
{
	uint64_t s = 0;
	struct stat st;

	if (direct())
		tp_size_public(d->addr, &s);
	else if (!fstat(d->fd, &st))
		s = (uint64_t)st.st_size;
	return s;
}

static int cmd_extend(const char *path)
{
	uint64_t size = size_or_die(g.size_arg), cur;
	struct thinprov_opts o = { .flags = g.force ? THINPROV_FORCE : 0 };
	struct thinprov_reclaim rc = { 0 };
	struct disk d;
	struct prog p;
	int e;

	e = disk_open(path, &d, true);
	if (e)
		return fail("cannot open", path, e);
	prog_init(&p, &o, "Extend");
	cur = disk_size(&d);
	if (size < cur && !g.force) {
		disk_close(&d);
		fprintf(stderr, PROG ": %s: shrinking from %" PRIu64 " to %" PRIu64
			" bytes would destroy data; refused (use --force)\n", path, cur, size);
		return 1;
	}
	if (direct()) {
		e = thinprov_extend(fs, d.addr, size, &o, &rc);
	} else {
		struct thinprov_usage pu;
		int type = px_usage(d.fd, cur, &pu) ? THINPROV_THIN : pu.type;
		if (size < cur)
			e = ftruncate(d.fd, (off_t)size) ? -errno : 0;
		else if (type == THINPROV_THIN)
			e = ftruncate(d.fd, (off_t)size) ? -errno : 0;
		else
			e = fallocate(d.fd, 0, (off_t)cur, (off_t)(size - cur)) ? -errno : 0;
		if (!e && fsync(d.fd))
			e = -errno;
	}
	if (!e && d.desc_text && strcmp(d.flat, path)) {
		char *nt = desc_update(d.desc_text, size / 512, NULL, -1);
		e = nt ? write_text(path, nt, false) : -ENOMEM;
		free(nt);
	}
	disk_close(&d);
	if (e)
		return fail("cannot extend", path, e);
	return 0;
}

static bool tp_zero_buf(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static int cmd_zeroing(const char *path, enum cmd c)
{
	struct thinprov_opts o = { 0 };
	struct thinprov_reclaim rc = { 0 };
	struct disk d;
	struct prog p;
	int e;

	e = disk_open(path, &d, true);
	if (e)
		return fail("cannot open", path, e);
	prog_init(&p, &o, c == C_INFLATE ? "Inflate" : c == C_EAGERZERO ? "Eagerzero" : "Punchzero");
	if (direct()) {
		if (c == C_INFLATE) {
			e = thinprov_inflate(fs, d.addr, &o);
		} else if (c == C_EAGERZERO) {
			e = thinprov_eagerzero(fs, d.addr, &o);
		} else {
			uint32_t dir;
			char name[129];
			e = vmfs_resolve_parent(fs, d.flat, &dir, name);
			if (!e)   /* in place: the disk keeps its address and lock */
				e = thinprov_punch_zero(fs, dir, name, &d.addr, &o, &rc);
		}
	} else {
		uint64_t size = disk_size(&d);
		if (c == C_INFLATE) {
			e = fallocate(d.fd, 0, 0, (off_t)size) ? -errno : 0;
			if (!e)
				e = px_zero_fill(d.fd, size, false, &p);
		} else if (c == C_EAGERZERO) {
			e = px_zero_fill(d.fd, size, false, &p);
		} else {
			/* punch every all-zero 1 MiB block (the mount frees what it can) */
			uint8_t *buf = malloc(1 << 20);
			e = buf ? 0 : -ENOMEM;
			for (uint64_t off = 0; off < size && !e; off += 1 << 20) {
				size_t n = size - off < (1u << 20) ? (size_t)(size - off) : (1u << 20);
				ssize_t r = pread(d.fd, buf, n, (off_t)off);
				if (r != (ssize_t)n) {
					e = r < 0 ? -errno : -EIO;
					break;
				}
				if (tp_zero_buf(buf, n) &&
				    fallocate(d.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)n))
					e = -errno;
				progress_cb(&p, off + n, size);
			}
			free(buf);
		}
		if (!e && fsync(d.fd))
			e = -errno;
	}
	if (!e && d.desc_text && (c == C_INFLATE || c == C_PUNCHZERO)) {
		char *nt = desc_update(d.desc_text, 0, NULL, c == C_INFLATE ? 0 : 1);
		e = nt ? write_text(path, nt, false) : -ENOMEM;
		free(nt);
	}
	disk_close(&d);
	if (e)
		return fail(c == C_INFLATE ? "cannot inflate" : c == C_EAGERZERO ? "cannot eager-zero"
									  : "cannot punch zeros in",
			    path, e);
	if (c == C_PUNCHZERO && direct())
		printf("Punchzero: %" PRIu64 " bytes of blocks released, %" PRIu64 " bytes discarded on the device\n",
		       rc.freed, rc.discarded);
	return 0;
}

static int cmd_delete(const char *path)
{
	struct thinprov_reclaim rc = { 0 };
	struct disk d;
	int e;

	e = disk_open(path, &d, true);
	if (e)
		return fail("cannot open", path, e);
	if (d.locked) {
		unlock_file(d.addr);   /* unlink takes the FD lock itself */
		d.locked = false;
	}
	e = remove_file(d.flat, &rc);
	if (!e && strcmp(d.flat, path))
		e = remove_file(path, NULL);
	disk_close(&d);
	if (e)
		return fail("cannot delete", path, e);
	if (direct())
		printf("Deleted %s: %" PRIu64 " bytes freed, %" PRIu64 " bytes discarded on the device\n", path,
		       rc.freed, rc.discarded);
	return 0;
}

static int cmd_rename(const char *from, const char *to)
{
	char nflat[4096];
	struct disk d;
	char *nt;
	int e, x;

	if (flat_of(to, nflat, sizeof(nflat)))
		die_usage("'%s': a disk is named DISK.vmdk", to);
	e = disk_open(from, &d, true);
	if (e)
		return fail("cannot open", from, e);
	if (!d.desc_text || !strcmp(d.flat, from)) {
		disk_close(&d);
		return fail("not a disk descriptor:", from, EINVAL);
	}
	for (int i = 0; i < 2; i++) {
		x = file_exists(i ? nflat : to);
		if (x) {
			disk_close(&d);
			return fail("cannot rename to", i ? nflat : to, x < 0 ? x : -EEXIST);
		}
	}
	nt = desc_update(d.desc_text, 0, base_name(nflat), -1);
	e = nt ? write_text(to, nt, true) : -ENOMEM;
	if (!e) {
		e = rename_file(d.flat, nflat);
		if (e)
			remove_file(to, NULL);
	}
	if (!e)
		e = remove_file(from, NULL);
	free(nt);
	disk_close(&d);
	if (e)
		return fail("cannot rename", from, e);
	return 0;
}

static void print_usage_line(const char *what, const struct thinprov_usage *u, bool tbz_known)
{
	char a[32], b[32], c[32], t[32];

	human(u->provisioned, a, sizeof(a));
	human(u->allocated, b, sizeof(b));
	human(u->written, c, sizeof(c));
	human(u->tbz, t, sizeof(t));
	printf("%s: type %s, provisioned %s, allocated %s, written %s, to-be-zeroed %s%s\n", what,
	       thinprov_type_name(u->type), a, b, c, t,
	       tbz_known ? "" : " (through a mount: written = SEEK_DATA extents)");
}

static int cmd_info(const char *path)
{
	char a[32], b[32], c[32], d1[32], e1[32], f1[32];
	int e;

	if (direct()) {
		const struct vmfs_fs_info *i = vmfs_fs_get_info(fs);
		struct thinprov_ds_usage u;
		e = thinprov_ds_usage(fs, &u);
		if (e)
			return fail("cannot query", g.volume, e);
		printf("VMFS-%u.%02u (Raw Major Version: %u) file system spanning %u partitions.\n",
		       i->lvm_major, i->fs_minor, i->fs_major, i->num_extents);
		printf("File system label (if any): %s\n", i->label);
		printf("Mode: public%s\n", vmfs_host_rdonly(host) ? " (read-only)" : "");
		human(u.capacity, a, sizeof(a));
		human(u.free, b, sizeof(b));
		printf("Capacity %s (%" PRIu64 " file blocks * %" PRIu64 "), %s (%" PRIu64
		       " blocks) avail, max supported file size %" PRIu64 "\n",
		       a, u.capacity / i->block_size, i->block_size, b, u.free / i->block_size,
		       (uint64_t)VMFS_MAX_FILE_SIZE);
		printf("UUID: %.35s\n", i->uuid_str);
		printf("Partitions spanned (on \"lvm\"):\n");
		for (const char *v = g.volume; *v;) {
			size_t l = strcspn(v, ",");
			printf("\t%.*s\n", (int)l, v);
			v += l + (v[l] == ',');
		}
		human(u.provisioned, c, sizeof(c));
		human(u.allocated, d1, sizeof(d1));
		human(u.written, e1, sizeof(e1));
		human(u.tbz, f1, sizeof(f1));
		printf("Provisioned %s, allocated %s, written %s, to-be-zeroed %s in %" PRIu64 " files\n", c,
		       d1, e1, f1, u.files);
		if (path && strcmp(path, "/") && strcmp(path, "")) {
			struct disk d;
			struct thinprov_usage fu;
			struct vmfs_stat st;
			uint32_t addr;
			e = v_resolve(path, &addr);
			if (!e)
				e = vmfs_stat(fs, addr, &st);
			if (e)
				return fail("cannot open", path, e);
			if (st.type == VMFS_TYPE_FILE) {
				e = disk_open(path, &d, false);
				if (!e)
					e = thinprov_usage(fs, d.addr, &fu);
				if (e)
					return fail("cannot read", path, e);
				print_usage_line(path, &fu, true);
				disk_close(&d);
			}
		}
		return 0;
	}
	struct statvfs sv;
	if (statvfs(path, &sv))
		return fail("cannot query", path, -errno);
	human((uint64_t)sv.f_blocks * sv.f_frsize, a, sizeof(a));
	human((uint64_t)sv.f_bavail * sv.f_frsize, b, sizeof(b));
	printf("File system of %s (through a mount)\n", path);
	printf("Capacity %s (%" PRIu64 " file blocks * %lu), %s (%" PRIu64 " blocks) avail\n", a,
	       (uint64_t)sv.f_blocks, (unsigned long)sv.f_frsize, b, (uint64_t)sv.f_bavail);
	struct stat st;
	if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
		/* sums over the regular files of the directory (no recursion) */
		uint64_t prov = 0, alloc = 0, files = 0;
		DIR *dh = opendir(path);
		struct dirent *de;
		while (dh && (de = readdir(dh))) {
			struct stat fst;
			if (de->d_name[0] == '.' || fstatat(dirfd(dh), de->d_name, &fst, AT_SYMLINK_NOFOLLOW) ||
			    !S_ISREG(fst.st_mode))
				continue;
			prov += (uint64_t)fst.st_size;
			alloc += (uint64_t)fst.st_blocks * 512;
			files++;
		}
		if (dh)
			closedir(dh);
		human(prov, a, sizeof(a));
		human(alloc, b, sizeof(b));
		printf("Provisioned %s, allocated %s in %" PRIu64 " files (through a mount: written vs "
		       "to-be-zeroed not visible)\n", a, b, files);
	}
	if (!stat(path, &st) && S_ISREG(st.st_mode)) {
		struct disk d;
		if (!disk_open(path, &d, false)) {
			struct thinprov_usage fu;
			if (!px_usage(d.fd, disk_size(&d), &fu))
				print_usage_line(path, &fu, false);
			disk_close(&d);
		}
	}
	return 0;
}

static int cmd_map(const char *path)
{
	struct disk d;
	uint64_t size, off = 0;
	int e;

	e = disk_open(path, &d, false);
	if (e)
		return fail("cannot open", path, e);
	size = disk_size(&d);
	printf("Mapping for file %s (%" PRIu64 " bytes in size):\n", d.flat, size);
	if (direct()) {
		const struct vmfs_fs_info *i = vmfs_fs_get_info(fs);
		struct thinprov_usage u;
		while (off < size) {
			struct vmfs_extent x;
			e = vmfs_map(fs, d.addr, off, 0, &x);
			if (e)
				break;
			if (x.file_off + x.len <= off) {
				e = -EIO;
				break;
			}
			uint64_t len = x.file_off + x.len > size ? size - x.file_off : x.len;
			if (x.state == VMFS_EXT_ALLOCATED || x.state == VMFS_EXT_TBZ)
				printf("[%12" PRIu64 ":%12" PRIu64 "] --> [VMFS %s LVID:%.35s/%.35s/1:(%12" PRIu64
				       " --> %12" PRIu64 ")]\n",
				       x.file_off, len, x.state == VMFS_EXT_TBZ ? "Z-" : "--", i->lvm_uuid_str,
				       i->uuid_str, x.lv_off, x.lv_off + len - 1);
			else if (x.state == VMFS_EXT_INLINE)
				printf("[%12" PRIu64 ":%12" PRIu64 "] --> [INLN -- :(in the file descriptor)]\n",
				       x.file_off, len);
			else
				printf("[%12" PRIu64 ":%12" PRIu64 "] --> [NOMP -- :(%12d --> %12d)]\n",
				       x.file_off, len, 0, 0);
			off = x.file_off + x.len;
		}
		if (!e)
			e = thinprov_usage(fs, d.addr, &u);
		if (!e)
			print_usage_line("Disk", &u, true);
	} else {
		/* through a mount: data vs holes only */
		while (off < size && !e) {
			off_t dd = lseek(d.fd, (off_t)off, SEEK_DATA), h;
			if (dd < 0) {
				if (errno != ENXIO)
					e = -errno;
				dd = (off_t)size;
			}
			if ((uint64_t)dd > off)
				printf("[%12" PRIu64 ":%12" PRIu64 "] --> [NOMP -- :(%12d --> %12d)]\n", off,
				       (uint64_t)dd - off, 0, 0);
			if ((uint64_t)dd >= size)
				break;
			h = lseek(d.fd, dd, SEEK_HOLE);
			if (h < 0)
				h = (off_t)size;
			printf("[%12" PRIu64 ":%12" PRIu64 "] --> [DATA -- :(LV offset not visible through a mount)]\n",
			       (uint64_t)dd, (uint64_t)(h - dd));
			off = (uint64_t)h;
		}
		if (!e) {
			struct thinprov_usage fu;
			e = px_usage(d.fd, size, &fu);
			if (!e)
				print_usage_line("Disk", &fu, false);
		}
	}
	disk_close(&d);
	if (e)
		return fail("cannot map", path, e);
	return 0;
}

static int cmd_reclaim(void)
{
	struct thinprov_opts o = { 0 };
	struct thinprov_reclaim rc = { 0 };
	struct prog p;
	char a[32], b[32];
	int e;

	if (!direct())
		die_usage("-y needs --volume (the device is not reachable through a mount)");
	if (vmfs_host_hb(host) && !g.force) {
		struct vmfs_hb_host hs[64];
		int n = vmfs_hb_list(vmfs_host_hb(host), hs, 64), live = 0;
		for (int i = 0; i < n; i++)
			if (hs[i].state != VMFS_HOST_SELF && hs[i].state != VMFS_HOST_FREE &&
			    hs[i].state != VMFS_HOST_DEAD)
				live++;
		if (live) {
			fprintf(stderr, PROG ": %d other host(s) are live on this volume: a block they allocate "
				"between our bitmap read and the discard would lose its data; refused (use --force)\n",
				live);
			return 1;
		}
	}
	prog_init(&p, &o, "Reclaim");
	e = thinprov_reclaim_free(fs, &o, &rc);
	if (e)
		return fail("cannot reclaim on", g.volume, e);
	human(rc.freed, a, sizeof(a));
	human(rc.discarded, b, sizeof(b));
	printf("Reclaim: %s free, %s discarded on the device%s\n", a, b,
	       rc.discard_err == -EOPNOTSUPP ? " (the device cannot discard)" : "");
	return 0;
}

/* ---- main ------------------------------------------------------------------------------ */

static void set_cmd(enum cmd c)
{
	if (g.cmd != C_NONE && g.cmd != c)
		die_usage("only one operation at a time");
	g.cmd = c;
}

static int mount_volume(bool rdonly)
{
	char *list = strdup(g.volume), *save = NULL, *tok;
	const char *paths[VMFS_MAX_EXTENTS];
	struct vmfs_host_opts ho = { 0 };
	int n = 0, e;

	if (!list)
		return -ENOMEM;
	for (tok = strtok_r(list, ",", &save); tok && n < VMFS_MAX_EXTENTS; tok = strtok_r(NULL, ",", &save))
		paths[n++] = tok;
	ho.flags = rdonly ? VMFS_HOST_RDONLY : 0;
	/* a shared LUN: this host's page cache would not see other hosts' writes */
	if (vmfs_host_want_direct(VMFS_HOST_DIRECT_AUTO, paths, n))
		ho.flags |= VMFS_HOST_DIRECT;
	ho.fs_flags = VMFS_FS_NO_RESIDENT;
	e = vmfs_host_mount(paths, n, &ho, &host);
	free(list);
	if (e)
		return e;
	fs = vmfs_host_fs(host);
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 0, e;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
#define ARG() (i + 1 < argc ? argv[++i] : (die_usage("%s needs an argument", a), (char *)NULL))
		if (!strcmp(a, "--help")) {
			usage();
			return 0;
		} else if (!strcmp(a, "--volume")) {
			g.volume = ARG();
		} else if (!strncmp(a, "--volume=", 9)) {
			g.volume = a + 9;
		} else if (!strcmp(a, "-c") || !strcmp(a, "--createvirtualdisk")) {
			set_cmd(C_CREATE);
			g.size_arg = ARG();
		} else if (!strcmp(a, "-d") || !strcmp(a, "--diskformat")) {
			g.type_arg = ARG();
		} else if (!strcmp(a, "-a") || !strcmp(a, "--adaptertype")) {
			g.adapter = ARG();
			if (strcmp(g.adapter, "lsilogic") && strcmp(g.adapter, "buslogic") &&
			    strcmp(g.adapter, "ide") && strcmp(g.adapter, "pvscsi"))
				die_usage("unknown adapter type '%s'", g.adapter);
		} else if (!strcmp(a, "-i") || !strcmp(a, "--clonevirtualdisk")) {
			set_cmd(C_CLONE);
			g.src = ARG();
		} else if (!strcmp(a, "-X") || !strcmp(a, "--extendvirtualdisk")) {
			set_cmd(C_EXTEND);
			g.size_arg = ARG();
		} else if (!strcmp(a, "-j") || !strcmp(a, "--inflatedisk")) {
			set_cmd(C_INFLATE);
		} else if (!strcmp(a, "-k") || !strcmp(a, "--eagerzero")) {
			set_cmd(C_EAGERZERO);
		} else if (!strcmp(a, "-K") || !strcmp(a, "--punchzero")) {
			set_cmd(C_PUNCHZERO);
		} else if (!strcmp(a, "-U") || !strcmp(a, "--deletevirtualdisk")) {
			set_cmd(C_DELETE);
		} else if (!strcmp(a, "-E") || !strcmp(a, "--renamevirtualdisk")) {
			set_cmd(C_RENAME);
		} else if (!strcmp(a, "-P") || !strcmp(a, "--queryfs")) {
			set_cmd(C_INFO);
		} else if (!strcmp(a, "-Ph")) {
			set_cmd(C_INFO);
			g.human = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--humanreadable")) {
			g.human = true;
		} else if (!strcmp(a, "-t0")) {
			set_cmd(C_MAP);
		} else if (!strcmp(a, "-t")) {
			const char *m = ARG();
			if (strcmp(m, "0"))
				die_usage("only -t0 is supported");
			set_cmd(C_MAP);
		} else if (!strcmp(a, "-y") || !strcmp(a, "--reclaimblocks")) {
			set_cmd(C_RECLAIM);
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			g.verbose = true;
		} else if (!strcmp(a, "-r") || !strcmp(a, "--readonly")) {
			g.rdonly = true;
		} else if (!strcmp(a, "--force")) {
			g.force = true;
		} else if (a[0] == '-' && a[1]) {
			die_usage("unknown option '%s'", a);
		} else {
			if (g.nargs == 2)
				die_usage("too many paths");
			g.args[g.nargs++] = a;
		}
	}
	if (g.cmd == C_NONE)
		die_usage("no operation given");
	if (g.type_arg && g.cmd != C_CREATE && g.cmd != C_CLONE)
		die_usage("-d goes with -c or -i");
	int need = g.cmd == C_RENAME ? 2 : (g.cmd == C_RECLAIM || (g.cmd == C_INFO && g.volume)) ? 0 : 1;
	if (g.nargs < need)
		die_usage("missing PATH");
	if (g.nargs > (need ? need : 1))
		die_usage("too many paths");
	/* usage errors before touching the volume */
	if (g.size_arg)
		(void)size_or_die(g.size_arg);
	if (g.type_arg && thinprov_type_parse(g.type_arg, &(int){ 0 }))
		die_usage("unknown disk format '%s' (thin, zeroedthick, eagerzeroedthick)", g.type_arg);
	{
		char tmp[4096];
		const char *nd = g.cmd == C_CREATE || g.cmd == C_CLONE ? g.args[0] :
				 g.cmd == C_RENAME ? g.args[1] : NULL;
		if (nd && flat_of(nd, tmp, sizeof(tmp)))
			die_usage("'%s': a disk is named DISK.vmdk", nd);
	}
	if (g.cmd == C_RECLAIM && !g.volume)
		die_usage("-y needs --volume (the device is not reachable through a mount)");
	if (g.volume) {
		bool ro = g.rdonly || g.cmd == C_INFO || g.cmd == C_MAP;
		if (g.rdonly && g.cmd != C_INFO && g.cmd != C_MAP)
			die_usage("-r: this operation changes the volume");
		e = mount_volume(ro);
		if (e) {
			fprintf(stderr, PROG ": cannot open volume %s: %s\n", g.volume, strerror(-e));
			return 1;
		}
	}
	switch (g.cmd) {
	case C_CREATE: rc = cmd_create(g.args[0]); break;
	case C_CLONE: rc = cmd_clone(g.args[0]); break;
	case C_EXTEND: rc = cmd_extend(g.args[0]); break;
	case C_INFLATE:
	case C_EAGERZERO:
	case C_PUNCHZERO: rc = cmd_zeroing(g.args[0], g.cmd); break;
	case C_DELETE: rc = cmd_delete(g.args[0]); break;
	case C_RENAME: rc = cmd_rename(g.args[0], g.args[1]); break;
	case C_INFO: rc = cmd_info(g.nargs ? g.args[0] : NULL); break;
	case C_MAP: rc = cmd_map(g.args[0]); break;
	case C_RECLAIM: rc = cmd_reclaim(); break;
	default: break;
	}
	if (host) {
		e = vmfs_host_unmount(host);
		if (e && !rc) {
			fprintf(stderr, PROG ": unmount: %s\n", strerror(-e));
			rc = 1;
		}
	}
	return rc;
}
