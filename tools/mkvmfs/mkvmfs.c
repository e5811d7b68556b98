/* mkvmfs: create a VMFS5 volume on files or block devices. See docs/mkvmfs.8. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmfs/fs.h"
#include "vmfs/volume.h"

#define EXIT_OPER  1
#define EXIT_USAGE 2

static const char *prog = "mkvmfs";

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s [-L label] [-S size] [--uuid UUID] [--force] [-q] DEVICE [EXTENT...]\n"
		"Create a VMFS5 volume (1 MiB file blocks) on DEVICE, spanning the extra EXTENTs.\n"
		"\n"
		"  -L, --label LABEL   volume label (up to 127 bytes)\n"
		"  -S, --size SIZE     create missing files as sparse files of SIZE bytes\n"
		"                      (suffixes K, M, G, T, P: powers of 1024)\n"
		"  -U, --uuid UUID     FS UUID, xxxxxxxx-xxxxxxxx-xxxx-xxxxxxxxxxxx\n"
		"  -f, --force         overwrite an existing VMFS volume\n"
		"  -q, --quiet         print only the volume UUID\n"
		"  -h, --help          this help\n"
		"\n"
		"Each extent needs at least 273 MiB (17 MiB LVM metadata + one 256 MiB segment);\n"
		"the volume is at most 64 TiB.  Exit status: 0 success, 1 error, 2 usage.\n",
		prog);
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int sh = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 0: break;
	case 'k': case 'K': sh = 10; break;
	case 'm': case 'M': sh = 20; break;
	case 'g': case 'G': sh = 30; break;
	case 't': case 'T': sh = 40; break;
	case 'p': case 'P': sh = 50; break;
	default: return -1;
	}
	if (*end && end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))
		return -1;
	if (sh && v > (~0ull >> sh))
		return -1;
	*out = (unsigned long long)v << sh;
	return 0;
}

static void log_cb(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level <= VMFS_LOG_WARN)
		fprintf(stderr, "%s: %s\n", prog, msg);
}

/* parse "xxxxxxxx-xxxxxxxx-xxxx-xxxxxxxxxxxx" */
static int parse_uuid(const char *s, uint8_t u[16])
{
	unsigned a, b, c, d[6];
	int n = 0;

	if (strlen(s) != 35)
		return -1;
	if (sscanf(s, "%8x-%8x-%4x-%2x%2x%2x%2x%2x%2x%n", &a, &b, &c, &d[0], &d[1], &d[2], &d[3],
		   &d[4], &d[5], &n) != 9 || n != 35)
		return -1;
	for (int i = 0; i < 4; i++) {
		u[i] = (uint8_t)(a >> (8 * i));
		u[4 + i] = (uint8_t)(b >> (8 * i));
	}
	u[8] = (uint8_t)c;
	u[9] = (uint8_t)(c >> 8);
	for (int i = 0; i < 6; i++)
		u[10 + i] = (uint8_t)d[i];
	return 0;
}

static void fmt_uuid(const uint8_t u[16], char out[36])
{
	snprintf(out, 36, "%08x-%08x-%04x-%02x%02x%02x%02x%02x%02x",
		 (unsigned)(u[0] | u[1] << 8 | u[2] << 16 | (unsigned)u[3] << 24),
		 (unsigned)(u[4] | u[5] << 8 | u[6] << 16 | (unsigned)u[7] << 24),
		 (unsigned)(u[8] | u[9] << 8), u[10], u[11], u[12], u[13], u[14], u[15]);
}

static void human(uint64_t v, char *out, size_t n)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int i = 0;
	double d = (double)v;

	while (d >= 1024 && i < 5) {
		d /= 1024;
		i++;
	}
	snprintf(out, n, "%.1f %s", d, u[i]);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "label", required_argument, NULL, 'L' }, { "size", required_argument, NULL, 'S' },
		{ "uuid", required_argument, NULL, 'U' },  { "force", no_argument, NULL, 'f' },
		{ "quiet", no_argument, NULL, 'q' },       { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmfs_mkfs_opts mo = { 0 };
	struct vmfs_mkfs_result res;
	struct vmfs_bdev *bds[VMFS_MAX_EXTENTS];
	const char *label = NULL;
	uint64_t size = 0;
	bool force = false, quiet = false, all_fresh = true;
	bool created[VMFS_MAX_EXTENTS] = { false };
	int c, ndev, nopen = 0, rc = EXIT_OPER, r;

	while ((c = getopt_long(argc, argv, "L:S:U:fqh", lo, NULL)) != -1) {
		switch (c) {
		case 'L':
			label = optarg;
			if (strlen(label) > 127) {
				fprintf(stderr, "%s: label longer than 127 bytes\n", prog);
				return EXIT_USAGE;
			}
			break;
		case 'S':
			if (parse_size(optarg, &size) || size == 0) {
				fprintf(stderr, "%s: bad size '%s'\n", prog, optarg);
				return EXIT_USAGE;
			}
			break;
		case 'U':
			if (parse_uuid(optarg, mo.uuid)) {
				fprintf(stderr, "%s: bad UUID '%s' (want xxxxxxxx-xxxxxxxx-xxxx-xxxxxxxxxxxx)\n",
					prog, optarg);
				return EXIT_USAGE;
			}
			mo.have_uuid = true;
			break;
		case 'f': force = true; break;
		case 'q': quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	ndev = argc - optind;
	if (ndev < 1) {
		fprintf(stderr, "%s: no device given\n", prog);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (ndev > VMFS_MAX_EXTENTS) {
		fprintf(stderr, "%s: at most %d extents\n", prog, VMFS_MAX_EXTENTS);
		return EXIT_USAGE;
	}
	for (int i = 0; i < ndev; i++) {
		const char *p = argv[optind + i];
		struct vmfs_bdev_open_opts oo = { 0 };
		struct stat st = { 0 };
		/* iscsi:// and nfs:// devices exist or fail to open: never created */
		bool url = strstr(p, "://") != NULL;
		bool exists = url || stat(p, &st) == 0;

		if (!exists) {
			if (!size) {
				fprintf(stderr, "%s: %s does not exist (give -S SIZE to create it)\n", prog, p);
				rc = EXIT_USAGE;
				goto out;
			}
			oo.flags = VMFS_BDEV_CREATE;
			oo.create_size = size;
		} else if (S_ISREG(st.st_mode) && st.st_size == 0 && size) {
			oo.flags = VMFS_BDEV_CREATE;
			oo.create_size = size;
		} else {
			all_fresh = false;
		}
		r = vmfs_bdev_open_opts(p, &oo, &bds[nopen]);
		if (!exists && (r == 0 || access(p, F_OK) == 0))
			created[i] = true;
		if (r) {
			fprintf(stderr, "%s: cannot open %s: %s\n", prog, p, strerror(-r));
			goto out;
		}
		nopen++;
		if (exists && !force) {
			r = vmfs_volume_probe(bds[nopen - 1]);
			if (r < 0) {
				fprintf(stderr, "%s: cannot read %s: %s\n", prog, p, strerror(-r));
				goto out;
			}
			if (r == 1) {
				fprintf(stderr, "%s: %s already holds a VMFS volume; use --force to overwrite it\n",
					prog, p);
				goto out;
			}
		}
	}
	mo.label = label;
	mo.log = log_cb;
	mo.fresh = all_fresh;
	r = vmfs_mkfs(bds, ndev, &mo, &res);
	if (r) {
		fprintf(stderr, "%s: formatting failed: %s\n", prog, strerror(-r));
		goto out;
	}
	{
		char u[36], lu[36], hs[32];
		fmt_uuid(res.uuid, u);
		fmt_uuid(res.lvm_uuid, lu);
		if (quiet) {
			printf("%s\n", u);
		} else {
			human(res.lv_size, hs, sizeof(hs));
			printf("Volume UUID: %s\n", u);
			printf("LVM UUID:    %s\n", lu);
			printf("Label:       %s\n", label ? label : "");
			printf("Size:        %s (%llu bytes) on %d extent%s\n", hs,
			       (unsigned long long)res.lv_size, ndev, ndev > 1 ? "s" : "");
			printf("Blocks:      %llu x 1 MiB, %llu free; sub-blocks 8 KiB\n",
			       (unsigned long long)res.total_blocks, (unsigned long long)res.free_blocks);
			printf("Max files:   %llu\n", (unsigned long long)res.max_files);
		}
	}
	rc = 0;
out:
	while (nopen > 0)
		vmfs_bdev_close(bds[--nopen]);
	if (rc)
		for (int i = 0; i < ndev && i < VMFS_MAX_EXTENTS; i++)
			if (created[i])
				unlink(argv[optind + i]); /* do not leave half-made files behind */
	return rc;
}
