/*
 * thinprov_hostwrite: one cluster host writing a thin disk sequentially, for
 * the allocation-locality system test (several of them at once on a volume).
 *
 *   thinprov_hostwrite IMG NAME MIB
 * Mounts IMG as a host and prints "SLOT n".  Then, for each line read on
 * stdin (the test decides when each host writes), creates the thin disk
 * /NAME<k> (k = 1, 2, ...) of MIB MiB, writes it 1 MiB at a time, prints one
 * line per allocated extent, "EXT k file_off len lv_off", and "DONE k".
 * Unmounts at the end of stdin.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/host.h"
#include "vmfs/thinprov.h"

#define MiB (1ull << 20)

int main(int argc, char **argv)
{
	struct vmfs_host_opts ho = { .fs_flags = VMFS_FS_NO_RESIDENT, .io_timeout_us = 500000 };
	struct vmfs_host *h;
	struct vmfs_fs *fs;
	uint64_t size;
	uint32_t a;
	char line[16];
	uint8_t *buf;
	int e;

	if (argc != 4) {
		fprintf(stderr, "usage: thinprov_hostwrite IMG NAME MIB\n");
		return 2;
	}
	size = strtoull(argv[3], NULL, 0) * MiB;
	const char *paths[1] = { argv[1] };
	e = vmfs_host_mount(paths, 1, &ho, &h);
	if (e) {
		fprintf(stderr, "thinprov_hostwrite: mount: %s\n", strerror(-e));
		return 1;
	}
	fs = vmfs_host_fs(h);
	buf = malloc(MiB);
	e = buf ? 0 : -ENOMEM;
	if (!e) {
		printf("SLOT %d\n", vmfs_host_slot(h));
		fflush(stdout);
	}
	for (int k = 1; !e && fgets(line, sizeof(line), stdin); k++) {
		char name[200];
		snprintf(name, sizeof(name), "%s%d", argv[2], k);
		e = thinprov_create(fs, VMFS_ROOT_ADDR, name, size, THINPROV_THIN, NULL, &a);
		for (uint64_t off = 0; off < size && !e; off += MiB) {
			memset(buf, (int)(off / MiB) | 1, MiB);
			int64_t w = vmfs_pwrite(fs, a, buf, MiB, off);
			if (w != (int64_t)MiB)
				e = w < 0 ? (int)w : -EIO;
		}
		for (uint64_t off = 0; off < size && !e;) {
			struct vmfs_extent x;
			e = vmfs_map(fs, a, off, 0, &x);
			if (!e && x.state == VMFS_EXT_ALLOCATED)
				printf("EXT %d %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", k, x.file_off, x.len,
				       x.lv_off);
			off = x.file_off + x.len;
		}
		if (!e)
			printf("DONE %d\n", k);
		fflush(stdout);
	}
	if (e)
		fprintf(stderr, "thinprov_hostwrite: %s\n", strerror(-e));
	free(buf);
	int u = vmfs_host_unmount(h);
	return e || u ? 1 : 0;
}
