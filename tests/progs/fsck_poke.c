/*
 * fsck_poke: inject one precise fault into a volume for the vmfsck tests.
 *
 *   fsck_poke DEV -- CMD ARGS...
 *     fd PATH                      print "addr 0x.. lv 0x.." of the file's FD
 *     cluster KIND IDX             print "lv 0x.." of a cluster header (KIND fbb|fdc|pbc|sbc)
 *     get-ptr PATH SLOT            print block pointer SLOT of the FD array
 *     set-ptr PATH SLOT VALUE      set it (no bitmap change)
 *     get-pbptr PATH PBSLOT SLOT   print pointer SLOT of the pointer block in FD slot PBSLOT
 *     set-pbptr PATH PBSLOT SLOT VALUE   set it
 *     alloc-item KIND INDEX        mark an item allocated (free count kept consistent)
 *     free-item KIND INDEX         mark an item free (free count kept consistent)
 *     free-count KIND IDX VALUE    overwrite a cluster's free count
 *     set-nlink PATH N             overwrite the link count
 *     rm-entry DIR NAME            remove a directory entry, leaving its file alone
 *     hb-live SLOT [JOFF JLEN]     mark a heartbeat slot live with a stamp nobody renews
 *                                  (naming a journal region at LV JOFF, JLEN bytes)
 *     journal-txn JOFF JLEN LV     format a journal at LV JOFF and commit (not apply)
 *                                  one transaction writing 512 bytes of 0x5A at LV
 *     lock-excl PATH SLOT GEN      write an exclusive lock naming heartbeat SLOT, generation GEN
 * Exit status: 0 ok, 1 failed, 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/fs.h"
#include "vmfs/fsck.h"
#include "vmfs/journal.h"
#include "vmfs/lockmgr.h"

static struct vmfs_fs *fs;

static int kind_of(const char *s)
{
	static const char *const n[] = { "fbb", "fdc", "pbc", "sbc" };
	for (int k = 0; k < VMFS_RES_COUNT; k++)
		if (!strcmp(s, n[k]))
			return k;
	return -1;
}

struct find {
	const char *name;
	uint32_t idx, found;
};
static int find_cb(void *ctx, const struct vmfs_dirent *de)
{
	struct find *f = ctx;
	if (!strcmp(de->name, f->name) && f->found == UINT32_MAX)
		f->found = f->idx;
	f->idx++;
	return 0;
}

static int cmd(int argc, char **argv)
{
	const char *c = argv[0];
	uint32_t addr;
	uint64_t lv;
	int e = -EINVAL;

	if (!strcmp(c, "fd") && argc == 2) {
		struct vmfs_fd fd;
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_fd_read(fs, addr, &fd, &lv);
		if (!e)
			printf("addr 0x%08x lv 0x%llx\n", addr, (unsigned long long)lv);
	} else if (!strcmp(c, "cluster") && argc == 3) {
		struct vmfs_cluster cl;
		int k = kind_of(argv[1]);
		e = k < 0 ? -EINVAL : vmfs_res_read_cluster(fs, k, (uint32_t)strtoul(argv[2], NULL, 0), &cl, &lv);
		if (!e)
			printf("lv 0x%llx\n", (unsigned long long)lv);
	} else if ((!strcmp(c, "get-ptr") && argc == 3) || (!strcmp(c, "set-ptr") && argc == 4)) {
		struct vmfs_fd fd;
		unsigned slot = (unsigned)strtoul(argv[2], NULL, 0);
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_fd_read(fs, addr, &fd, NULL);
		if (!e && slot >= 256)
			e = -EINVAL;
		if (!e && argc == 3)
			printf("0x%08x\n", fd.blocks[slot]);
		if (!e && argc == 4)
			e = vmfs_fsck_ptr_set(fs, addr, 0, slot, (uint32_t)strtoul(argv[3], NULL, 0));
	} else if ((!strcmp(c, "get-pbptr") && argc == 4) || (!strcmp(c, "set-pbptr") && argc == 5)) {
		struct vmfs_fd fd;
		static uint32_t ptrs[1024];
		unsigned ps = (unsigned)strtoul(argv[2], NULL, 0), slot = (unsigned)strtoul(argv[3], NULL, 0);
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_fd_read(fs, addr, &fd, NULL);
		if (!e && (ps >= 256 || slot >= 1024))
			e = -EINVAL;
		if (!e)
			e = vmfs_pb_read(fs, fd.blocks[ps], ptrs);
		if (!e && argc == 4)
			printf("0x%08x\n", ptrs[slot]);
		if (!e && argc == 5)
			e = vmfs_fsck_ptr_set(fs, addr, fd.blocks[ps], slot, (uint32_t)strtoul(argv[4], NULL, 0));
	} else if ((!strcmp(c, "alloc-item") || !strcmp(c, "free-item")) && argc == 3) {
		struct vmfs_res_info ri;
		struct vmfs_cluster cl;
		int k = kind_of(argv[1]);
		uint64_t index = strtoull(argv[2], NULL, 0);
		e = k < 0 ? -EINVAL : vmfs_res_get_info(fs, k, &ri);
		if (!e)
			e = vmfs_res_read_cluster(fs, k, (uint32_t)(index / ri.ipe), &cl, NULL);
		if (!e) {
			uint32_t i = (uint32_t)(index % ri.ipe);
			if (c[0] == 'a')
				cl.bitmap[i / 8] &= (uint8_t)~(1u << (i % 8));
			else
				cl.bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
			e = vmfs_fsck_cluster_write(fs, k, cl.id, cl.total, cl.bitmap, 0);
		}
	} else if (!strcmp(c, "free-count") && argc == 4) {
		struct vmfs_cluster cl;
		uint8_t sec[512];
		int k = kind_of(argv[1]);
		e = k < 0 ? -EINVAL : vmfs_res_read_cluster(fs, k, (uint32_t)strtoul(argv[2], NULL, 0), &cl, &lv);
		if (!e)
			e = vmfs_bdev_read(vmfs_fs_bdev(fs), sec, 512, lv + 512);
		if (!e) {
			uint32_t v = (uint32_t)strtoul(argv[3], NULL, 0);
			for (int i = 0; i < 4; i++)
				sec[8 + i] = (uint8_t)(v >> (8 * i));
			e = vmfs_fsck_write_sector(fs, lv + 512, sec);
		}
	} else if (!strcmp(c, "set-nlink") && argc == 3) {
		struct vmfs_fsck_fd_fix fx = { .mask = VMFS_FSCK_FD_NLINK, .nlink = (uint32_t)strtoul(argv[2], NULL, 0) };
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_fsck_fd_set(fs, addr, &fx);
	} else if (!strcmp(c, "rm-entry") && argc == 3) {
		struct find f = { argv[2], 0, UINT32_MAX };
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_readdir(fs, addr, find_cb, &f);
		if (!e && f.found == UINT32_MAX)
			e = -ENOENT;
		if (!e)
			e = vmfs_fsck_dirent_remove(fs, addr, f.found);
	} else if (!strcmp(c, "journal-txn") && argc == 4) {
		struct vmfs_bdev *bd = vmfs_fs_bdev(fs);
		uint64_t joff = strtoull(argv[1], NULL, 0), jlen = strtoull(argv[2], NULL, 0);
		struct vmfs_journal *j;
		struct vmfs_jsector js = { .off = strtoull(argv[3], NULL, 0) };
		memset(js.data, 0x5A, sizeof(js.data));
		e = vmfs_journal_format(bd, joff, jlen);
		if (!e)
			e = vmfs_journal_open(bd, joff, jlen, VMFS_JOURNAL_LAZY, &j, NULL);
		if (!e) {
			e = vmfs_journal_commit(j, &js, 1);
			vmfs_journal_abandon(j);  /* "crash" before writing in place */
		}
	} else if (!strcmp(c, "hb-live") && (argc == 2 || argc == 4)) {
		unsigned slot = (unsigned)strtoul(argv[1], NULL, 0);
		struct vmfs_hb_slot s = { 0 };
		uint8_t b[512];
		if (slot < VMFS_HB_NSLOTS) {
			s.magic = VMFS_HB_MAGIC_LIVE;
			s.pos = vmfs_hb_slot_off(slot);
			s.seq = 7;
			s.uptime = 123456789;
			memcpy(s.uuid, "deadhost-uuid-01", 16);
			snprintf(s.ip, sizeof(s.ip), "192.0.2.7");
			if (argc == 4) {
				s.journal_off = strtoull(argv[2], NULL, 0);
				s.journal_len = strtoull(argv[3], NULL, 0);
			}
			vmfs_hb_slot_encode(&s, b);
			e = vmfs_fsck_write_sector(fs, s.pos, b);
		}
	} else if (!strcmp(c, "lock-excl") && argc == 4) {
		struct vmfs_fd fd;
		struct vmfs_lock_rec r;
		uint8_t b[512];
		e = vmfs_resolve(fs, argv[1], &addr);
		if (!e)
			e = vmfs_fd_read(fs, addr, &fd, &lv);
		if (!e)
			e = vmfs_bdev_read(vmfs_fs_bdev(fs), b, 512, lv);
		if (!e)
			e = vmfs_lock_rec_decode(b, lv, VMFS_MAGIC_FD, &r);
		if (!e) {
			r.mode = VMFS_LM_EXCL;
			r.hb_pos = vmfs_hb_slot_off((unsigned)strtoul(argv[2], NULL, 0));
			r.hb_seq = strtoull(argv[3], NULL, 0);
			memcpy(r.uuid, "deadhost-uuid-01", 16);
			r.token++;
			vmfs_lock_rec_encode(&r, b);
			e = vmfs_fsck_write_sector(fs, lv, b);
		}
	} else {
		fprintf(stderr, "fsck_poke: bad command %s (%d args)\n", c, argc - 1);
		return 2;
	}
	if (e) {
		fprintf(stderr, "fsck_poke: %s: %s\n", c, strerror(-e));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct vmfs_fs_opts o = { .flags = VMFS_FS_NO_RESIDENT };
	const char *devs[VMFS_MAX_EXTENTS];
	int nd = 0, i = 1, rc, e;

	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if (nd == VMFS_MAX_EXTENTS)
			return 2;
		devs[nd++] = argv[i];
	}
	if (!nd || i >= argc - 1) {
		fprintf(stderr, "usage: fsck_poke DEV [DEV...] -- CMD ARGS...\n");
		return 2;
	}
	e = vmfs_fs_open_paths(devs, nd, &o, &fs);
	if (e) {
		fprintf(stderr, "fsck_poke: cannot open the volume: %s\n", strerror(-e));
		return 1;
	}
	rc = cmd(argc - i - 1, argv + i + 1);
	vmfs_fs_close(fs);
	return rc;
}
