/*
 * thinprov_bench: throughput of first writes per disk type and of clone /
 * inflate, on a volume mounted as a cluster host (journal on), for
 * bench/thinprov.  Each phase ends with a flush that is timed with it.
 *
 *   thinprov_bench IMG SIZE_MIB [writes|clone]
 * Prints "phase MiB/s seconds" lines (writes: only the first-write phases;
 * clone: only the clone and inflate; default both).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmfs/host.h"
#include "vmfs/thinprov.h"

#define MiB (1ull << 20)
#define IO (1ull << 20)

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void report(const char *what, uint64_t bytes, double s)
{
	printf("%-40s %9.1f %8.3f\n", what, (double)bytes / MiB / s, s);
	fflush(stdout);
}

static int seq_write(struct vmfs_fs *fs, uint32_t a, uint64_t size, const uint8_t *buf, bool tp,
		     uint64_t stride)
{
	for (uint64_t off = 0; off < size; off += stride) {
		int64_t w = tp ? thinprov_pwrite(fs, a, buf, IO, off, NULL) : vmfs_pwrite(fs, a, buf, IO, off);
		if (w != (int64_t)IO)
			return w < 0 ? (int)w : -EIO;
	}
	return vmfs_fs_sync(fs);
}

int main(int argc, char **argv)
{
	struct vmfs_host_opts ho = { .fs_flags = VMFS_FS_NO_RESIDENT };
	struct vmfs_host *h;
	struct vmfs_fs *fs;
	uint64_t size;
	uint8_t *buf;
	uint32_t a;
	char name[64];
	int e;

	const char *only = argc == 4 ? argv[3] : "";
	if (argc != 3 && !(argc == 4 && (!strcmp(only, "clone") || !strcmp(only, "writes")))) {
		fprintf(stderr, "usage: thinprov_bench IMG SIZE_MIB [writes|clone]\n");
		return 2;
	}
	size = strtoull(argv[2], NULL, 0) * MiB;
	const char *paths[1] = { argv[1] };
	e = vmfs_host_mount(paths, 1, &ho, &h);
	if (e) {
		fprintf(stderr, "thinprov_bench: mount: %s\n", strerror(-e));
		return 1;
	}
	fs = vmfs_host_fs(h);
	buf = malloc(IO);
	for (size_t i = 0; i < IO; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	if (strcmp(only, "clone"))
		printf("%-40s %9s %8s\n", "phase", "MiB/s", "seconds");

	static const struct { const char *label; int type; bool tp; } W[] = {
		{ "first write: thin (fs path)", THINPROV_THIN, false },
		{ "first write: thin (thinprov)", THINPROV_THIN, true },
		{ "first write: zeroedthick (fs path)", THINPROV_ZEROEDTHICK, false },
		{ "first write: zeroedthick (thinprov)", THINPROV_ZEROEDTHICK, true },
		{ "first write: eagerzeroedthick", THINPROV_EAGERZEROEDTHICK, false },
	};
	for (size_t i = 0; i < sizeof(W) / sizeof(W[0]) && !e && strcmp(only, "clone"); i++) {
		double t0;
		snprintf(name, sizeof(name), "w%zu", i);
		if (W[i].type == THINPROV_EAGERZEROEDTHICK) {
			t0 = now();
			e = thinprov_create(fs, VMFS_ROOT_ADDR, name, size, W[i].type, NULL, &a);
			if (!e)
				e = vmfs_fs_sync(fs);
			if (!e)
				report("create eagerzeroedthick", size, now() - t0);
		} else {
			e = thinprov_create(fs, VMFS_ROOT_ADDR, name, size, W[i].type, NULL, &a);
		}
		if (e)
			break;
		t0 = now();
		e = seq_write(fs, a, size, buf, W[i].tp, IO);
		if (!e)
			report(W[i].label, size, now() - t0);
		if (!e && i == 0) {
			t0 = now();
			e = seq_write(fs, a, size, buf, false, IO);
			if (!e)
				report("rewrite (allocated blocks)", size, now() - t0);
		}
	}
	/* clone and inflate of a half-written thin disk (every other MiB) */
	if (!strcmp(only, "writes"))
		goto out;
	if (!e)
		e = thinprov_create(fs, VMFS_ROOT_ADDR, "src", size, THINPROV_THIN, NULL, &a);
	if (!e)
		e = seq_write(fs, a, size, buf, true, 2 * IO);
	if (!e) {
		uint32_t d;
		double t0 = now();
		e = thinprov_clone(fs, a, VMFS_ROOT_ADDR, "clone", THINPROV_THIN, NULL, &d);
		if (!e)
			e = vmfs_fs_sync(fs);
		if (!e)
			report("clone thin -> thin (half full)", size, now() - t0);
		t0 = now();
		if (!e)
			e = thinprov_inflate(fs, d, NULL);
		if (!e)
			e = vmfs_fs_sync(fs);
		if (!e)
			report("inflate (half full)", size, now() - t0);
	}
out:
	if (e)
		fprintf(stderr, "thinprov_bench: %s\n", strerror(-e));
	free(buf);
	vmfs_host_unmount(h);
	return e ? 1 : 0;
}
