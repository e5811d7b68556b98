/*
 * crash_workload: a deterministic metadata workload for the crash tests.
 *
 *   crash_workload --uuid U [--seed N] [--ops N] DEVICE
 *
 * DEVICE is usually a fault-injection URL (fault:IMG?cut_after=N&seed=S&tear=1)
 * so the "power" goes out at an arbitrary I/O.  The program mounts the volume
 * as a cluster host and runs creates (inline, sub-block, file-block and
 * pointer-block sizes), overwrites, renames, unlinks, truncates and mkdirs,
 * syncing after each.  After every sync it prints what is now durable:
 *   FILE <path> <size> <hash>     the file exists with exactly this content
 *   GONE <path>                   the path does not exist
 * and before each operation "BEGIN <path> [<path>]": what it may leave in
 * between states if the cut comes before the next sync.
 * It stops at the first error (the cut) and exits 0; the test then remounts
 * with the same UUID, which replays the journal, and checks every line.
 *
 *   crash_workload --uuid U --check DEVICE < lines     remount, verify
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uuid.h>

#include "vmfs/host.h"

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#define NSLOT 12

struct slot {
	char path[64];
	uint64_t size;
	uint64_t hash;
	bool live;
};

static int put(struct vmfs_fs *fs, const char *path, uint64_t size, uint8_t seed,
	       struct slot *s)
{
	uint32_t dir, a;
	char name[129];
	uint8_t *buf = malloc(size ? size : 1);
	int r;

	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(seed + i * 7 + (i >> 9));
	r = vmfs_resolve(fs, path, &a);
	if (r == -ENOENT) {
		r = vmfs_resolve_parent(fs, path, &dir, name);
		if (!r)
			r = vmfs_create(fs, dir, name, 0644, 0, 0, &a);
	}
	if (!r)
		r = vmfs_truncate(fs, a, 0);
	if (!r) {
		int64_t w = vmfs_pwrite(fs, a, buf, size, 0);

		r = w < 0 ? (int)w : (uint64_t)w == size ? 0 : -EIO;
	}
	if (!r) {
		if (path != s->path)
			snprintf(s->path, sizeof(s->path), "%s", path);
		s->size = size;
		s->hash = fnv(buf, size);
		s->live = true;
	}
	free(buf);
	return r;
}

static int sync_and_report(struct vmfs_fs *fs, struct slot *slots, const char *gone)
{
	int r = vmfs_fs_sync(fs);

	if (r)
		return r;
	for (int i = 0; i < NSLOT; i++)
		if (slots[i].live)
			printf("FILE %s %" PRIu64 " %016" PRIx64 "\n", slots[i].path, slots[i].size,
			       slots[i].hash);
	if (gone)
		printf("GONE %s\n", gone);
	printf("SYNC\n");
	fflush(stdout);
	return 0;
}

static int workload(struct vmfs_fs *fs, unsigned ops)
{
	static const uint64_t sizes[] = { 300, 900, 12000, 70000, 1200000, 2200000 };
	struct slot slots[NSLOT] = { 0 };
	uint32_t a;
	int r;

	r = vmfs_mkdir(fs, VMFS_ROOT_ADDR, "d", 0755, 0, 0, &a);
	if (r == 0)
		r = vmfs_mkdir(fs, VMFS_ROOT_ADDR, "e", 0755, 0, 0, &a);
	if (r)
		return r;
	for (unsigned op = 0; op < ops; op++) {
		unsigned k = (unsigned)(rnd() % NSLOT);
		struct slot *s = &slots[k];
		char path[64], gone[64] = "";
		unsigned what = (unsigned)(rnd() % 6);

		if (!s->live || what < 2) {
			snprintf(path, sizeof(path), "/%s/f%u", (k & 1) ? "d" : "e", k);
			printf("BEGIN %s\n", s->live ? s->path : path);
			fflush(stdout);
			r = put(fs, s->live ? s->path : path, sizes[rnd() % 6], (uint8_t)rnd(), s);
		} else if (what == 2) {
			/* rename to the other directory */
			uint32_t sd, dd;
			char sn[129];

			snprintf(path, sizeof(path), "/%s/r%u-%u", s->path[1] == 'd' ? "e" : "d", k, op);
			printf("BEGIN %s %s\n", s->path, path);
			fflush(stdout);
			r = vmfs_resolve_parent(fs, s->path, &sd, sn);
			if (!r)
				r = vmfs_resolve(fs, s->path[1] == 'd' ? "/e" : "/d", &dd);
			if (!r)
				r = vmfs_rename(fs, sd, sn, dd, strrchr(path, '/') + 1);
			if (!r) {
				snprintf(gone, sizeof(gone), "%s", s->path);
				snprintf(s->path, sizeof(s->path), "%s", path);
			}
		} else if (what == 3) {
			uint32_t d;
			char n[129];

			printf("BEGIN %s\n", s->path);
			fflush(stdout);
			r = vmfs_resolve_parent(fs, s->path, &d, n);
			if (!r)
				r = vmfs_unlink(fs, d, n);
			if (!r) {
				snprintf(gone, sizeof(gone), "%s", s->path);
				s->live = false;
			}
		} else {
			/* shrink or grow through the addressing modes */
			printf("BEGIN %s\n", s->path);
			fflush(stdout);
			r = put(fs, s->path, sizes[rnd() % 6], (uint8_t)rnd(), s);
		}
		if (!r)
			r = sync_and_report(fs, slots, gone[0] ? gone : NULL);
		if (r)
			return r;
	}
	return 0;
}

static int check(struct vmfs_fs *fs)
{
	char line[256], path[128];
	uint64_t size, hash;
	unsigned ok = 0, bad = 0;

	while (fgets(line, sizeof(line), stdin)) {
		uint32_t a;
		int r;

		if (sscanf(line, "FILE %127s %" SCNu64 " %" SCNx64, path, &size, &hash) == 3) {
			struct vmfs_stat st;
			uint8_t *buf = malloc(size ? size : 1);

			r = vmfs_resolve(fs, path, &a);
			if (!r)
				r = vmfs_stat(fs, a, &st);
			if (!r && st.size != size)
				r = -EFBIG;
			if (!r && vmfs_pread(fs, a, buf, size, 0) != (int64_t)size)
				r = -EIO;
			if (!r && fnv(buf, size) != hash)
				r = -EILSEQ;
			free(buf);
		} else if (sscanf(line, "GONE %127s", path) == 1) {
			r = vmfs_resolve(fs, path, &a) == -ENOENT ? 0 : -EEXIST;
		} else {
			continue;
		}
		if (r) {
			printf("BAD %s: %s\n", path, strerror(-r));
			bad++;
		} else {
			ok++;
		}
	}
	printf("CHECKED %u BAD %u\n", ok, bad);
	return bad ? 3 : 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "uuid", required_argument, NULL, 'u' },
		{ "seed", required_argument, NULL, 's' },
		{ "ops", required_argument, NULL, 'o' },
		{ "check", no_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmfs_host_opts o = { .io_timeout_us = 250000, .fs_flags = VMFS_FS_NO_RESIDENT };
	bool do_check = false;
	unsigned ops = 60;
	struct vmfs_host *h;
	const char *dev;
	int c, r, rc;

	rng = 0x9E3779B97F4A7C15ull;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'u':
			if (uuid_parse(optarg, o.uuid))
				return 2;
			break;
		case 's': rng = strtoull(optarg, NULL, 0) * 0x9E3779B97F4A7C15ull | 1; break;
		case 'o': ops = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'c': do_check = true; break;
		default: return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: crash_workload --uuid U [--seed N] [--ops N] [--check] DEVICE\n");
		return 2;
	}
	dev = argv[optind];
	if (do_check)
		o.flags |= VMFS_HOST_RECLAIM_OWN;
	r = vmfs_host_mount(&dev, 1, &o, &h);
	if (r) {
		fprintf(stderr, "crash_workload: mount %s: %s\n", dev, strerror(-r));
		/* a cut during mount is a legitimate outcome of the workload run */
		return do_check ? 1 : 0;
	}
	if (do_check) {
		rc = check(vmfs_host_fs(h));
		r = vmfs_host_unmount(h);
		if (r && !rc) {
			fprintf(stderr, "crash_workload: unmount: %s\n", strerror(-r));
			rc = 1;
		}
		return rc;
	}
	r = workload(vmfs_host_fs(h), ops);
	if (r)
		fprintf(stderr, "crash_workload: stopped: %s\n", strerror(-r));
	/* after a cut the device refuses everything: do not leave the slot
	 * cleanly, as a host that lost power would not */
	if (r)
		_exit(0);
	vmfs_host_unmount(h);
	return 0;
}
