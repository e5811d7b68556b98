/*
 * fsck_fill: fill a volume with many files of mixed addressing modes in one
 * process (bench/fsck, tests).  Little data is written: file blocks come from
 * TBZ preallocation, except every 50th file, which gets one real block.
 *
 *   fsck_fill DEV NFILES [FILES_PER_DIR]
 * Kinds, by file number mod 6: resident (300 B), sub-block (3000 B), direct
 * blocks (3 MiB TBZ), single indirect (1 MiB at 300 MiB; one in four, else a
 * direct block at 1 MiB), symlink, a hard link
 * to the previous file.  Exit 0 ok, 1 error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/fs.h"

#define MiB (1ull << 20)

int main(int argc, char **argv)
{
	struct vmfs_fs_opts o = { 0 };
	struct vmfs_fs *fs;
	const char *dev;
	unsigned long n, per_dir;
	uint32_t dir = 0, prev = 0, a;
	static char buf[MiB];
	char name[64];
	int e = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: fsck_fill DEV NFILES [FILES_PER_DIR]\n");
		return 2;
	}
	dev = argv[1];
	n = strtoul(argv[2], NULL, 0);
	per_dir = argc > 3 ? strtoul(argv[3], NULL, 0) : 100;
	if (!per_dir)
		per_dir = 100;
	e = vmfs_fs_open_paths(&dev, 1, &o, &fs);
	if (e) {
		fprintf(stderr, "fsck_fill: cannot open %s: %s\n", dev, strerror(-e));
		return 1;
	}
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7 + 3);
	for (unsigned long i = 0; i < n && !e; i++) {
		if (i % per_dir == 0) {
			snprintf(name, sizeof(name), "d%05lu", i / per_dir);
			e = vmfs_mkdir(fs, VMFS_ROOT_ADDR, name, 0755, 0, 0, &dir);
			if (e)
				break;
		}
		snprintf(name, sizeof(name), "f%06lu", i);
		switch (i % 6) {
		case 4:
			e = vmfs_symlink(fs, dir, name, "/vmfs/volumes/bench/target", NULL);
			continue;
		case 5:
			e = prev ? vmfs_link(fs, prev, dir, name) : 0;
			continue;
		default:
			break;
		}
		e = vmfs_create(fs, dir, name, 0644, 0, 0, &a);
		if (e)
			break;
		prev = a;
		int64_t w = 0;
		switch (i % 6) {
		case 0: w = vmfs_pwrite(fs, a, buf, 300, 0); break;
		case 1: w = vmfs_pwrite(fs, a, buf, 3000, 0); break;
		case 2: e = vmfs_fallocate(fs, a, 0, 3 * MiB, VMFS_ALLOC_TBZ); break;
		case 3: /* pointer blocks are scarce (512 on a small volume): one file in four */
			e = (i / 6) % 4 ? vmfs_fallocate(fs, a, MiB, MiB, VMFS_ALLOC_TBZ)
					: vmfs_fallocate(fs, a, 300 * MiB, MiB, VMFS_ALLOC_TBZ);
			break;
		}
		if (w < 0)
			e = (int)w;
		if (!e && i % 50 == 2)
			w = vmfs_pwrite(fs, a, buf, MiB, 0), e = w < 0 ? (int)w : 0;
	}
	if (e)
		fprintf(stderr, "fsck_fill: %s\n", strerror(-e));
	vmfs_fs_close(fs);
	return e ? 1 : 0;
}
