/*
 * libFuzzer harness: vmfsd's RPC/XDR decoder and every NFSv3 / MOUNT v3 /
 * portmapper procedure behind it.
 *
 * Once per process a small VMFS volume is formatted in a temporary file,
 * mounted as a cluster host and served (export "/", everyone allowed).  Each
 * input is one RPC record (without the record mark) handed to
 * nfs_srv_process() from 127.0.0.1.  So that the fuzzer gets past the handle
 * MAC, every 4-aligned occurrence of the marker "RTFH" followed by 44 bytes
 * is replaced with a valid 48-byte handle of the export root; everything
 * else is as hostile as the fuzzer makes it.  A reply must be a well-formed record: mark with
 * the last-fragment bit and the right length, the call's xid, REPLY.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmfs/blockdev.h"
#include "vmfs/fs.h"
#include "vmfs/host.h"
#include "vmfs/nfs.h"
#include "vmfs/volume.h"

static struct nfs_srv *srv;
static uint8_t root_fh[48];

static void quiet(void *ctx, int level, const char *msg)
{
}

/* The root handle as MNT returns it. */
static void fetch_root_fh(void)
{
	static const uint8_t call[] = {
		0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0x86, 0xa5, 0, 0, 0, 3, 0, 0, 0, 1,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* AUTH_NONE cred + verf */
		0, 0, 0, 1, '/', 0, 0, 0 };
	uint8_t *rep;
	size_t len;

	nfs_srv_process(srv, 0x7f000001, call, sizeof(call), &rep, &len);
	/* mark xid REPLY ACCEPTED verf(2) SUCCESS status len fh */
	if (rep && len >= 36 + 48)
		memcpy(root_fh, rep + 36, 48);
	free(rep);
}

static int setup(void)
{
	char path[] = "/tmp/fuzz_nfs_XXXXXX";
	struct vmfs_bdev_open_opts oo = { .flags = VMFS_BDEV_CREATE, .create_size = 1100ull << 20 };
	struct vmfs_mkfs_opts mo = { .label = "fuzz", .fresh = true, .log = quiet };
	struct vmfs_host_opts ho = { .log = quiet };
	struct vmfs_mkfs_result res;
	struct vmfs_bdev *bd;
	struct vmfs_host *h;
	const char *paths[1] = { path };
	uint8_t key[NFS_FH_KEY_SIZE];
	char err[256];
	int fd = mkstemp(path);

	if (fd < 0)
		return -1;
	close(fd);
	unlink(path);
	if (vmfs_bdev_open_opts(path, &oo, &bd) || vmfs_mkfs(&bd, 1, &mo, &res))
		return -1;
	vmfs_bdev_close(bd);
	if (vmfs_host_mount(paths, 1, &ho, &h))
		return -1;
	unlink(path);          /* stays open; gone when the fuzzer exits */
	memset(key, 0x5a, sizeof(key));
	if (nfs_srv_create(quiet, NULL, &srv) || nfs_srv_add_volume(srv, h, key) ||
	    nfs_srv_add_export(srv, "/", NULL, 0, err, sizeof(err)) ||
	    nfs_srv_add_export(srv, "/ro,ro,root_squash", NULL, 0, err, sizeof(err)))
		return -1;
	fetch_root_fh();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	uint8_t *buf, *rep = NULL;
	size_t rlen = 0;

	if (!ready) {
		if (setup()) {
			fprintf(stderr, "fuzz_nfs_rpc: setup failed\n");
			abort();
		}
		ready = 1;
	}
	if (size > (1u << 21))
		return 0;
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	for (size_t i = 0; i + 48 <= size; i += 4)
		if (!memcmp(buf + i, "RTFH", 4))
			memcpy(buf + i, root_fh, 48);
	nfs_srv_process(srv, 0x7f000001, buf, size, &rep, &rlen);
	if (rep) {
		uint32_t mark = (uint32_t)rep[0] << 24 | (uint32_t)rep[1] << 16 | (uint32_t)rep[2] << 8 | rep[3];

		if (rlen < 16 || !(mark & 0x80000000u) || (mark & 0x7fffffffu) != rlen - 4 ||
		    memcmp(rep + 4, buf, 4) || rep[8] || rep[9] || rep[10] || rep[11] != 1)
			abort();
		free(rep);
	}
	free(buf);
	return 0;
}
