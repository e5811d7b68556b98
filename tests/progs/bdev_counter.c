/* bdev_counter URL OFFSET N [fallback]: increment the little-endian u64
 * counter in the 512-byte sector at OFFSET N times with test-and-set
 * (retrying on miscompare).  "fallback" forces the iSCSI reservation path.
 * Used by the multi-process ATS tests. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/blockdev.h"

int main(int argc, char **argv)
{
	struct vmfs_bdev_open_opts o = { 0 };
	struct vmfs_bdev *bd;
	uint8_t cur[512], next[512];
	uint64_t off, n, retries = 0;
	int r;

	if (argc != 4 && !(argc == 5 && !strcmp(argv[4], "fallback"))) {
		fprintf(stderr, "usage: %s URL OFFSET COUNT [fallback]\n", argv[0]);
		return 2;
	}
	off = strtoull(argv[2], NULL, 0);
	n = strtoull(argv[3], NULL, 0);
	o.force_ats_fallback = argc == 5;
	r = vmfs_bdev_open_opts(argv[1], &o, &bd);
	if (r) {
		fprintf(stderr, "bdev_counter: open %s: %s\n", argv[1], strerror(-r));
		return 1;
	}
	r = vmfs_bdev_read(bd, cur, sizeof(cur), off);
	for (uint64_t i = 0; i < n && r == 0; i++) {
		for (;;) {
			uint64_t v;

			memcpy(&v, cur, 8);
			v++;
			memcpy(next, cur, sizeof(next));
			memcpy(next, &v, 8);
			r = vmfs_bdev_ats(bd, off, cur, next, cur);
			if (r == 0) {
				memcpy(cur, next, sizeof(cur));
				break;
			}
			if (r != -ESTALE)
				break;
			retries++;
		}
	}
	if (r)
		fprintf(stderr, "bdev_counter: %s\n", strerror(-r));
	printf("done %" PRIu64 " retries %" PRIu64 " mode %s\n", n, retries,
	       vmfs_ats_mode_name(vmfs_bdev_get_info(bd)->ats));
	vmfs_bdev_close(bd);
	return r ? 1 : 0;
}
