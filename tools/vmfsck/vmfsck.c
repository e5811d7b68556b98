/* vmfsck: check and repair a VMFS3/VMFS5 volume.  See docs/vmfsck.8. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/host.h"
#include "vmfsck.h"

#define MAX_PASSES 6
#define HB_WAIT_DEFAULT_MS 6000u     /* 2 x the default heartbeat interval (3 s) */
#define HB_TIMEOUT_DEFAULT_MS 16000u /* the default dead-host timeout (VMFS: 16 s) */

static const char *prog = "vmfsck";

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s [-n|-y] [-v] [--force] [--hb-wait MS] [--hb-timeout MS] DEVICE [EXTENT...]\n"
		"Check (and with -y repair) the VMFS volume on DEVICE and its other EXTENTs.\n"
		"\n"
		"  -n, --no          check only; open the devices read-only\n"
		"  -y, --yes         repair what can be repaired safely, one line per fix\n"
		"                    (default without -n/-y: check and report like -n)\n"
		"  -v, --verbose     list live hosts and print a summary\n"
		"  -f, --force       repair even while another host is live on the volume\n"
		"  -W, --hb-wait MS  how long to watch live heartbeat slots (default %u ms,\n"
		"                    twice the heartbeat interval)\n"
		"  -T, --hb-timeout MS  -y frees a silent slot only once its stamp has stood\n"
		"                    still this long (default %u ms, the dead-host timeout)\n"
		"  -h, --help        this help\n"
		"\n"
		"Exit status (as fsck(8)): 0 clean, 1 errors corrected, 4 errors left\n"
		"uncorrected, 8 operational error, 16 usage error.\n",
		prog, HB_WAIT_DEFAULT_MS, HB_TIMEOUT_DEFAULT_MS);
}

static struct ck *g_ck;

static void vout(const char *prefix, const char *fmt, va_list ap)
{
	fputs(prefix, stdout);
	vprintf(fmt, ap);
	putchar('\n');
}

void problem(struct ck *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vout("", fmt, ap);
	va_end(ap);
	c->problems++;
}

void unfixable(struct ck *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vout("", fmt, ap);
	va_end(ap);
	c->problems++;
	c->unfixable++;
}

struct fix *add_fix(struct ck *c, int kind, const char *fmt, ...)
{
	va_list ap;
	struct fix *f;

	if (c->mode != MODE_YES)
		return NULL;
	if (c->nfix == c->capfix) {
		size_t nc = c->capfix ? c->capfix * 2 : 32;
		struct fix *nv = realloc(c->fixv, nc * sizeof(*nv));
		if (!nv)
			return NULL;
		c->fixv = nv;
		c->capfix = nc;
	}
	f = &c->fixv[c->nfix++];
	memset(f, 0, sizeof(*f));
	f->kind = kind;
	va_start(ap, fmt);
	vsnprintf(f->what, sizeof(f->what), fmt, ap);
	va_end(ap);
	return f;
}

static void log_cb(void *ctx, int level, const char *msg)
{
	struct ck *c = ctx ? ctx : g_ck;

	if (level == VMFS_LOG_ERR && c)
		snprintf(c->logmsg, sizeof(c->logmsg), "%s", msg);
}

static int parse_ms(const char *s, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > 3600000ul)
		return -1;
	*out = (unsigned)v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "no", no_argument, NULL, 'n' },       { "yes", no_argument, NULL, 'y' },
		{ "verbose", no_argument, NULL, 'v' },  { "force", no_argument, NULL, 'f' },
		{ "hb-wait", required_argument, NULL, 'W' }, { "hb-timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct ck ck;
	struct ck *c = &ck;
	struct vmfs_volume_opts vo = { 0 };
	struct vmfs_fs_opts fo = { 0 };
	const char *paths[VMFS_MAX_EXTENTS];
	uint8_t desc[512];
	int opt, rc = EX_OPER, e, nalive;

	g_ck = c;
	c->hb_wait_ms = HB_WAIT_DEFAULT_MS;
	c->hb_timeout_ms = HB_TIMEOUT_DEFAULT_MS;
	while ((opt = getopt_long(argc, argv, "nyvfW:T:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'n':
		case 'y':
			if (c->mode && c->mode != (opt == 'n' ? MODE_NO : MODE_YES)) {
				fprintf(stderr, "%s: -n and -y exclude each other\n", prog);
				return EX_USAGE;
			}
			c->mode = opt == 'n' ? MODE_NO : MODE_YES;
			break;
		case 'v': c->verbose = true; break;
		case 'f': c->force = true; break;
		case 'W':
			if (parse_ms(optarg, &c->hb_wait_ms)) {
				fprintf(stderr, "%s: bad --hb-wait '%s' (milliseconds)\n", prog, optarg);
				return EX_USAGE;
			}
			break;
		case 'T':
			if (parse_ms(optarg, &c->hb_timeout_ms)) {
				fprintf(stderr, "%s: bad --hb-timeout '%s' (milliseconds)\n", prog, optarg);
				return EX_USAGE;
			}
			break;
		case 'h': usage(stdout); return EX_CLEAN;
		default: usage(stderr); return EX_USAGE;
		}
	}
	c->npaths = argc - optind;
	if (c->npaths < 1) {
		fprintf(stderr, "%s: no device given\n", prog);
		usage(stderr);
		return EX_USAGE;
	}
	if (c->npaths > VMFS_MAX_EXTENTS) {
		fprintf(stderr, "%s: at most %d extents\n", prog, VMFS_MAX_EXTENTS);
		return EX_USAGE;
	}
	for (int i = 0; i < c->npaths; i++)
		paths[i] = argv[optind + i];
	c->paths = paths;
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* ---- open: read-only unless repairing ---- */
	vo.bdev_flags = c->mode == MODE_YES ? 0 : VMFS_BDEV_RDONLY;
	/* a shared LUN: this host's page cache would not see other hosts' writes */
	if (vmfs_host_want_direct(VMFS_HOST_DIRECT_AUTO, paths, c->npaths))
		vo.bdev_flags |= VMFS_BDEV_DIRECT;
	vo.log = log_cb;
	vo.log_ctx = c;
	e = vmfs_volume_open(paths, c->npaths, &vo, &c->vol);
	if (e) {
		fprintf(stderr, "%s: %s: cannot open the volume: %s\n", prog, paths[0],
			c->logmsg[0] ? c->logmsg : strerror(-e));
		return EX_OPER;
	}
	c->lv = vmfs_volume_bdev(c->vol);
	e = vmfs_bdev_read(c->lv, desc, sizeof(desc), 0x200000);
	if (e) {
		fprintf(stderr, "%s: %s: cannot read the FS descriptor: %s\n", prog, paths[0], strerror(-e));
		goto out;
	}
	if (le32(desc) != 0x2FABF15Eu) {
		fprintf(stderr, "%s: %s: not a VMFS filesystem (FS descriptor magic 0x%08x)\n", prog,
			paths[0], le32(desc));
		goto out;
	}

	/* ---- other hosts ---- */
	nalive = hb_observe(c);
	if (nalive < 0) {
		rc = EX_OPER;
		goto out;
	}
	if (nalive > 0 && c->mode == MODE_YES && !c->force) {
		for (unsigned s = 0; s < VMFS_HB_NSLOTS; s++)
			if (c->hb_alive[s]) {
				char u[36];
				vmfs_uuid_str(c->hb[s].uuid, u);
				fprintf(stderr, "%s: %s: host %s is live on this volume (heartbeat slot %u "
					"renewed within %u ms); not repairing while it is (use --force to "
					"override)\n", prog, paths[0], u, s, c->hb_wait_ms);
				break;
			}
		rc = EX_OPER;
		goto out;
	}
	if (nalive > 0)
		fprintf(stderr, "%s: warning: %d other host%s live on this volume; what it changes "
			"meanwhile may show up as errors\n", prog, nalive, nalive > 1 ? "s are" : " is");

	e = hb_repair(c);
	if (e == -EBUSY) {
		rc = EX_OPER;
		goto out;
	}
	if (e) {
		fprintf(stderr, "%s: %s: heartbeat region: %s\n", prog, paths[0], strerror(-e));
		goto out;
	}
	unsigned hb_problems = c->problems - (c->mode == MODE_YES ? c->fixes : 0);

	/* ---- the filesystem ---- */
	fo.flags = (c->mode == MODE_YES ? 0 : VMFS_FS_RDONLY) | VMFS_FS_NO_RESIDENT;
	fo.log = log_cb;
	fo.log_ctx = c;
	e = vmfs_fs_open(c->vol, &fo, &c->fs);
	if (e) {
		fprintf(stderr, "%s: %s: cannot open the filesystem: %s%s\n", prog, paths[0],
			c->logmsg[0] ? c->logmsg : strerror(-e),
			e == -EUCLEAN ? " (metadata needed to open it is corrupt; vmfsck cannot repair that)" : "");
		rc = e == -EUCLEAN ? EX_UNFIXED : EX_OPER;
		goto out;
	}
	c->info = vmfs_fs_get_info(c->fs);
	c->bs = c->info->block_size;

	unsigned remaining = 0;
	for (int pass = 1;; pass++) {
		c->problems = pass == 1 ? hb_problems : 0;
		c->unfixable = 0;
		c->io_error = false;
		if (pass > 1 && c->verbose)
			printf("pass %d: checking again after the repairs\n", pass);
		e = check_pass(c);
		if (e) {
			fprintf(stderr, "%s: %s: check failed: %s\n", prog, paths[0], strerror(-e));
			pass_free(c);
			rc = EX_OPER;
			goto out;
		}
		remaining = c->problems;
		if (c->io_error) {
			fprintf(stderr, "%s: %s: I/O error during the check; it is incomplete%s\n", prog,
				paths[0], c->mode == MODE_YES ? " and nothing more was repaired" : "");
			pass_free(c);
			rc = EX_OPER;
			goto out;
		}
		if (!c->problems || c->mode != MODE_YES || pass == MAX_PASSES) {
			pass_free(c);
			break;
		}
		unsigned before = c->fixes;
		e = apply_fixes(c);
		pass_free(c);
		if (e) {
			fprintf(stderr, "%s: %s: repair failed: %s\n", prog, paths[0], strerror(-e));
			rc = EX_OPER;
			goto out;
		}
		if (c->fixes == before)
			break;
	}
	if (c->verbose) {
		printf("%s: %s: %u files, %u directories\n", prog, paths[0], c->nfiles, c->ndirs);
		for (int k = 0; k < VMFS_RES_COUNT; k++)
			printf("%s: %llu of %u %ss in use\n", res_name[k], (unsigned long long)c->nused[k],
			       c->ri[k].total_items, item_name[k]);
		if (c->ntbz)
			printf("%llu file blocks are to-be-zeroed (TBZ): in use, they read as zeros\n",
			       (unsigned long long)c->ntbz);
	}
	if (remaining) {
		if (c->mode == MODE_YES)
			printf("%s: %s: %u problem%s left uncorrected (%u repairs made)\n", prog, paths[0], remaining,
			       remaining > 1 ? "s" : "", c->fixes);
		else if (c->mode == MODE_NO)
			printf("%s: %s: %u problem%s found; nothing was changed (-n)\n", prog, paths[0], remaining,
			       remaining > 1 ? "s" : "");
		else
			printf("%s: %s: %u problem%s found; nothing was changed. Run '%s -y' to repair\n", prog,
			       paths[0], remaining, remaining > 1 ? "s" : "", prog);
		rc = EX_UNFIXED;
	} else if (c->fixes) {
		printf("%s: %s: %u repair%s made; the volume is now clean\n", prog, paths[0], c->fixes,
		       c->fixes > 1 ? "s" : "");
		rc = EX_FIXED;
	} else {
		rc = EX_CLEAN;
	}
out:
	if (c->fs)
		vmfs_fs_close(c->fs);
	if (c->vol)
		vmfs_volume_close(c->vol);
	free(c->hb_raw);
	return rc;
}
