/*
 * vmfs_util: a small scriptable tool over the filesystem library, used by the
 * system tests to fill and inspect volumes.
 *
 *   vmfs_util [-r] [-n] [-D] DEV [DEV...] -- CMD ARGS...
 *     -r read-only   -n no resident files   -D discard freed blocks
 *   commands:
 *     info | statfs | ls PATH | cat PATH | stat PATH | readlink PATH | map PATH
 *     put HOSTFILE PATH [OFFSET] | mkdir PATH | symlink TARGET PATH | link OLD NEW
 *     unlink PATH | rmdir PATH | rename OLD NEW | truncate PATH SIZE
 *     fallocate PATH OFF LEN [tbz|zero] | chmod PATH OCTAL | chown PATH UID GID
 *     pattern PATH OFF LEN SEED   (write a deterministic pattern)
 *     read PATH OFF LEN           (dump a byte range)
 * Exit status: 0 ok, 1 operation failed (message on stderr), 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmfs/fs.h"

static struct vmfs_fs *fs;

static int fail(const char *what, int e)
{
	fprintf(stderr, "vmfs_util: %s: %s\n", what, strerror(-e));
	return 1;
}

static const char *tname(uint32_t t)
{
	switch (t) {
	case VMFS_TYPE_DIR: return "dir";
	case VMFS_TYPE_FILE: return "file";
	case VMFS_TYPE_SYMLINK: return "symlink";
	case VMFS_TYPE_SYSTEM: return "system";
	case VMFS_TYPE_RDM: return "rdm";
	default: return "?";
	}
}

static int ls_cb(void *ctx, const struct vmfs_dirent *de)
{
	(void)ctx;
	printf("%s\t%s\t0x%08x\n", de->name, tname(de->type), de->addr);
	return 0;
}

static int get_or_create(const char *path, uint32_t *addr)
{
	uint32_t dir;
	char name[129];
	int e = vmfs_resolve(fs, path, addr);

	if (e != -ENOENT)
		return e;
	e = vmfs_resolve_parent(fs, path, &dir, name);
	if (e)
		return e;
	return vmfs_create(fs, dir, name, 0644, 0, 0, addr);
}

static uint64_t num(const char *s)
{
	return strtoull(s, NULL, 0);
}

static int cmd(int argc, char **argv)
{
	const char *c = argv[0];
	uint32_t addr, dir;
	char name[129];
	int e;

#define NEED(n) do { if (argc < (n)) { fprintf(stderr, "vmfs_util: %s: missing arguments\n", c); return 2; } } while (0)
	if (!strcmp(c, "info")) {
		const struct vmfs_fs_info *i = vmfs_fs_get_info(fs);
		printf("uuid %s\nlvm_uuid %s\nlabel %s\nlvm_major %u\nfs_major %u\nblock_size %" PRIu64
		       "\nsubblock_size %" PRIu64 "\nlv_size %" PRIu64 "\nextents %u\n",
		       i->uuid_str, i->lvm_uuid_str, i->label, i->lvm_major, i->fs_major, i->block_size,
		       i->subblock_size, i->lv_size, i->num_extents);
		return 0;
	}
	if (!strcmp(c, "statfs")) {
		struct vmfs_statfs s;
		e = vmfs_fs_statfs(fs, &s);
		if (e)
			return fail("statfs", e);
		printf("block_size %" PRIu64 "\ntotal_blocks %" PRIu64 "\nfree_blocks %" PRIu64
		       "\ntotal_fds %" PRIu64 "\nfree_fds %" PRIu64 "\ntotal_sbs %" PRIu64 "\nfree_sbs %" PRIu64
		       "\ntotal_pbs %" PRIu64 "\nfree_pbs %" PRIu64 "\n", s.block_size, s.total_blocks,
		       s.free_blocks, s.total_fds, s.free_fds, s.total_sbs, s.free_sbs, s.total_pbs, s.free_pbs);
		return 0;
	}
	NEED(2);
	if (!strcmp(c, "ls")) {
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_readdir(fs, addr, ls_cb, NULL);
		return e ? fail(argv[1], e) : 0;
	}
	if (!strcmp(c, "cat")) {
		static char buf[4 << 20];
		uint64_t off = 0;
		e = vmfs_resolve(fs, argv[1], &addr);
		if (e)
			return fail(argv[1], e);
		for (;;) {
			int64_t n = vmfs_pread(fs, addr, buf, sizeof(buf), off);
			if (n < 0)
				return fail(argv[1], (int)n);
			if (n == 0)
				break;
			if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
				return fail("stdout", -EIO);
			off += (uint64_t)n;
		}
		return 0;
	}
	if (!strcmp(c, "stat")) {
		struct vmfs_stat st;
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_stat(fs, addr, &st);
		if (e)
			return fail(argv[1], e);
		printf("addr 0x%08x\ntype %s\nmode %o\nnlink %u\nuid %u\ngid %u\nsize %" PRIu64
		       "\nzla %u\nblk_size %" PRIu64 "\nblk_count %" PRIu64 "\ntbz %u\nmtime %u\n",
		       st.addr, tname(st.type), st.mode, st.nlink, st.uid, st.gid, st.size, st.zla,
		       st.blk_size, st.blk_count, st.tbz, st.mtime);
		return 0;
	}
	if (!strcmp(c, "readlink")) {
		char t[4096];
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_readlink(fs, addr, t, sizeof(t));
		if (e < 0)
			return fail(argv[1], e);
		printf("%s\n", t);
		return 0;
	}
	if (!strcmp(c, "map")) {
		struct vmfs_stat st;
		uint64_t off = 0;
		static const char *sn[] = { "hole", "alloc", "tbz", "inline" };
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_stat(fs, addr, &st);
		if (e)
			return fail(argv[1], e);
		while (off < st.size) {
			struct vmfs_extent x;
			e = vmfs_map(fs, addr, off, 0, &x);
			if (e)
				return fail("map", e);
			printf("%" PRIu64 " %" PRIu64 " %s 0x%" PRIx64 "\n", x.file_off, x.len, sn[x.state], x.lv_off);
			off = x.file_off + x.len;
		}
		return 0;
	}
	if (!strcmp(c, "mkdir")) {
		e = vmfs_resolve_parent(fs, argv[1], &dir, name);
		if (!e)
			e = vmfs_mkdir(fs, dir, name, 0755, 0, 0, NULL);
		return e ? fail(argv[1], e) : 0;
	}
	if (!strcmp(c, "unlink") || !strcmp(c, "rmdir")) {
		e = vmfs_resolve_parent(fs, argv[1], &dir, name);
		if (!e)
			e = c[0] == 'u' ? vmfs_unlink(fs, dir, name) : vmfs_rmdir(fs, dir, name);
		return e ? fail(argv[1], e) : 0;
	}
	NEED(3);
	if (!strcmp(c, "put")) {
		FILE *f = fopen(argv[1], "rb");
		static char buf[4 << 20];
		uint64_t off = argc > 3 ? num(argv[3]) : 0;
		size_t n;
		if (!f)
			return fail(argv[1], -errno);
		e = get_or_create(argv[2], &addr);
		while (!e && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
			int64_t w = vmfs_pwrite(fs, addr, buf, n, off);
			if (w < 0)
				e = (int)w;
			off += n;
		}
		fclose(f);
		return e ? fail(argv[2], e) : 0;
	}
	if (!strcmp(c, "symlink")) {
		e = vmfs_resolve_parent(fs, argv[2], &dir, name);
		if (!e)
			e = vmfs_symlink(fs, dir, name, argv[1], NULL);
		return e ? fail(argv[2], e) : 0;
	}
	if (!strcmp(c, "link")) {
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_resolve_parent(fs, argv[2], &dir, name);
		if (!e)
			e = vmfs_link(fs, addr, dir, name);
		return e ? fail(argv[2], e) : 0;
	}
	if (!strcmp(c, "rename")) {
		uint32_t d2;
		char n2[129];
		e = vmfs_resolve_parent(fs, argv[1], &dir, name);
		if (!e)
			e = vmfs_resolve_parent(fs, argv[2], &d2, n2);
		if (!e)
			e = vmfs_rename(fs, dir, name, d2, n2);
		return e ? fail(argv[1], e) : 0;
	}
	if (!strcmp(c, "truncate")) {
		e = get_or_create(argv[1], &addr);
		if (!e)
			e = vmfs_truncate(fs, addr, num(argv[2]));
		return e ? fail(argv[1], e) : 0;
	}
	if (!strcmp(c, "chmod")) {
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_setattr(fs, addr, VMFS_SET_MODE, (uint32_t)strtoul(argv[2], NULL, 8), 0, 0, 0, 0);
		return e ? fail(argv[1], e) : 0;
	}
	NEED(4);
	if (!strcmp(c, "read")) {
		uint64_t off = num(argv[2]), len = num(argv[3]);
		static char buf[1 << 20];
		e = vmfs_resolve(fs, argv[1], &addr);
		if (e)
			return fail(argv[1], e);
		while (len) {
			size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
			int64_t r = vmfs_pread(fs, addr, buf, n, off);
			if (r < 0)
				return fail(argv[1], (int)r);
			if (r == 0)
				break;
			fwrite(buf, 1, (size_t)r, stdout);
			off += (uint64_t)r;
			len -= (uint64_t)r;
		}
		return 0;
	}
	if (!strcmp(c, "chown")) {
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_setattr(fs, addr, VMFS_SET_UID | VMFS_SET_GID, 0, (uint32_t)num(argv[2]),
					 (uint32_t)num(argv[3]), 0, 0);
		return e ? fail(argv[1], e) : 0;
	}
	if (!strcmp(c, "fallocate")) {
		unsigned fl = argc > 4 && !strcmp(argv[4], "tbz") ? VMFS_ALLOC_TBZ : VMFS_ALLOC_ZERO;
		e = get_or_create(argv[1], &addr);
		if (!e)
			e = vmfs_fallocate(fs, addr, num(argv[2]), num(argv[3]), fl);
		return e ? fail(argv[1], e) : 0;
	}
	NEED(5);
	if (!strcmp(c, "pattern")) {
		uint64_t off = num(argv[2]), len = num(argv[3]), seed = num(argv[4]);
		size_t chunk = 1 << 20;
		uint8_t *buf = malloc(chunk);
		e = buf ? get_or_create(argv[1], &addr) : -ENOMEM;
		for (uint64_t done = 0; !e && done < len;) {
			size_t n = len - done < chunk ? (size_t)(len - done) : chunk;
			for (size_t i = 0; i < n; i++) {
				uint64_t x = off + done + i;
				buf[i] = (uint8_t)((x * 2654435761u + seed) >> 7 ^ (x >> 20));
			}
			int64_t w = vmfs_pwrite(fs, addr, buf, n, off + done);
			if (w < 0)
				e = (int)w;
			done += n;
		}
		free(buf);
		return e ? fail(argv[1], e) : 0;
	}
	fprintf(stderr, "vmfs_util: unknown command %s\n", c);
	return 2;
}

int main(int argc, char **argv)
{
	struct vmfs_fs_opts o = { 0 };
	const char *devs[VMFS_MAX_EXTENTS];
	int nd = 0, i = 1, rc, e;

	for (; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "-r"))
			o.flags |= VMFS_FS_RDONLY;
		else if (!strcmp(argv[i], "-n"))
			o.flags |= VMFS_FS_NO_RESIDENT;
		else if (!strcmp(argv[i], "-D"))
			o.flags |= VMFS_FS_DISCARD;
		else {
			fprintf(stderr, "vmfs_util: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if (nd == VMFS_MAX_EXTENTS)
			return 2;
		devs[nd++] = argv[i];
	}
	if (!nd || i >= argc - 1) {
		fprintf(stderr, "usage: vmfs_util [-r] [-n] DEV [DEV...] -- CMD ARGS...\n");
		return 2;
	}
	e = vmfs_fs_open_paths(devs, nd, &o, &fs);
	if (e) {
		fprintf(stderr, "vmfs_util: cannot open the volume: %s\n", strerror(-e));
		return 1;
	}
	rc = cmd(argc - i - 1, argv + i + 1);
	vmfs_fs_close(fs);
	return rc;
}
