/*
 * vmfs_readbench: read throughput of one file through the filesystem library
 * (vmfs_pread) versus raw reads of the same device ranges (found with the
 * extent map) on the same extent devices, in one run.
 *
 *   vmfs_readbench [-d] [-c CHUNK] [-r ROUNDS] DEV [DEV...] -- PATH
 *     -d  O_DIRECT on the devices (bypass the page cache)
 * Prints one line per method: bytes, seconds, MiB/s; best of ROUNDS.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmfs/fs.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct vmfs_fs_opts o = { .flags = VMFS_FS_RDONLY };
	struct vmfs_volume_opts vo = { .bdev_flags = VMFS_BDEV_RDONLY };
	const char *devs[VMFS_MAX_EXTENTS];
	size_t chunk = 4u << 20;
	int nd = 0, i = 1, rounds = 3, e;
	struct vmfs_volume *vol;
	struct vmfs_fs *fs;
	struct vmfs_stat st;
	uint32_t addr;
	void *buf;

	for (; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "-d"))
			vo.bdev_flags |= VMFS_BDEV_DIRECT;
		else if (!strcmp(argv[i], "-c") && i + 1 < argc)
			chunk = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-r") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else
			return 2;
	}
	for (; i < argc && strcmp(argv[i], "--"); i++)
		if (nd < VMFS_MAX_EXTENTS)
			devs[nd++] = argv[i];
	if (!nd || i + 1 >= argc || !chunk || chunk % 4096) {
		fprintf(stderr, "usage: vmfs_readbench [-d] [-c CHUNK] [-r ROUNDS] DEV... -- PATH\n");
		return 2;
	}
	e = vmfs_volume_open(devs, nd, &vo, &vol);
	if (!e) {
		e = vmfs_fs_open(vol, &o, &fs);
		if (e)
			vmfs_volume_close(vol);
	}
	if (e) {
		fprintf(stderr, "vmfs_readbench: open: %s\n", strerror(-e));
		return 1;
	}
	e = vmfs_resolve(fs, argv[i + 1], &addr);
	if (!e)
		e = vmfs_stat(fs, addr, &st);
	if (e || posix_memalign(&buf, 4096, chunk)) {
		fprintf(stderr, "vmfs_readbench: %s: %s\n", argv[i + 1], strerror(e ? -e : ENOMEM));
		return 1;
	}
	double best_lib = 1e9, best_raw = 1e9;
	uint64_t raw_bytes = 0;
	for (int r = 0; r < rounds; r++) {
		double t = now();
		for (uint64_t off = 0; off < st.size;) {
			int64_t n = vmfs_pread(fs, addr, buf, chunk, off);
			if (n <= 0) {
				fprintf(stderr, "vmfs_readbench: read at %" PRIu64 ": %s\n", off, strerror((int)-n));
				return 1;
			}
			off += (uint64_t)n;
		}
		t = now() - t;
		if (t < best_lib)
			best_lib = t;
		/* raw: the allocated extents of the file, read straight from the LV device */
		struct vmfs_bdev *lv = vmfs_fs_bdev(fs);
		raw_bytes = 0;
		t = now();
		for (uint64_t off = 0; off < st.size;) {
			struct vmfs_extent x;
			e = vmfs_map(fs, addr, off, 0, &x);
			if (e)
				return 1;
			if (x.state == VMFS_EXT_ALLOCATED) {
				for (uint64_t p = 0; p < x.len; p += chunk) {
					size_t n = x.len - p < chunk ? (size_t)(x.len - p) : chunk;
					if (vmfs_bdev_read(lv, buf, n, x.lv_off + p))
						return 1;
					raw_bytes += n;
				}
			}
			off = x.file_off + x.len;
		}
		t = now() - t;
		if (t < best_raw)
			best_raw = t;
	}
	printf("library  %12" PRIu64 " bytes %8.3f s %9.1f MiB/s\n", st.size, best_lib,
	       (double)st.size / best_lib / (1 << 20));
	printf("raw      %12" PRIu64 " bytes %8.3f s %9.1f MiB/s\n", raw_bytes, best_raw,
	       (double)raw_bytes / best_raw / (1 << 20));
	free(buf);
	vmfs_fs_close(fs);
	vmfs_volume_close(vol);
	return 0;
}
