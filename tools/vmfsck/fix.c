/*
 * Apply the repairs a check pass queued, in an order where each one finds
 * what it needs: bitmaps first (so allocations made by later repairs come
 * from correct free lists), then lock records, pointers, counters, directory
 * entries, and last the orphans (lost+found is created on demand).  Each
 * repair is one transaction of the fs layer (include/vmfs/fsck.h) and prints
 * one line.  The caller re-checks afterwards.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfsck.h"

static void done(struct ck *c, const struct fix *f, int e, const char *extra)
{
	if (e) {
		printf("NOT FIXED: %s: %s\n", f->what, e == -EUCLEAN && c->logmsg[0] ? c->logmsg : strerror(-e));
		c->unfixable++;
		return;
	}
	printf("FIXED: %s%s\n", f->what, extra ? extra : "");
	c->fixes++;
}

static int fix_cluster(struct ck *c, const struct fix *f, char *extra, size_t n)
{
	const struct vmfs_res_info *ri = &c->ri[f->res];
	uint8_t bits[496];
	uint32_t total = c->cl_total[f->res][f->idx];
	uint64_t base = (uint64_t)f->idx * ri->ipe;
	unsigned freed = 0, taken = 0, nfree = 0;

	memset(bits, 0, sizeof(bits));
	for (uint32_t i = 0; i < total && i < 496 * 8; i++) {
		uint64_t it = base + i;
		bool used = f->res == VMFS_RES_FDC ? c->fds[it].kept : bit_get(c->used[f->res], it);
		bool was = bit_get(c->alloc[f->res], it);
		if (!used) {
			bit_set(bits, i);
			nfree++;
		}
		freed += was && !used;
		taken += !was && used;
	}
	snprintf(extra, n, ": %u lost %s%s freed, %u marked in use, %u free", freed, item_name[f->res],
		 freed == 1 ? "" : "s", taken, nfree);
	return vmfs_fsck_cluster_write(c->fs, f->res, f->idx, total, bits,
				       bit_get(c->cl_fresh[f->res], f->idx));
}

/* Find or make /lost+found. */
static int lost_found(struct ck *c, uint32_t *addr)
{
	struct vmfs_stat st;
	int e;

	if (c->lost_found) {
		*addr = c->lost_found;
		return 0;
	}
	e = vmfs_lookup(c->fs, VMFS_ROOT_ADDR, "lost+found", addr);
	if (e == 0) {
		e = vmfs_stat(c->fs, *addr, &st);
		if (!e && st.type != VMFS_TYPE_DIR)
			e = -ENOTDIR;
	} else if (e == -ENOENT) {
		e = vmfs_mkdir(c->fs, VMFS_ROOT_ADDR, "lost+found", 0700, 0, 0, addr);
		if (!e)
			printf("FIXED: created /lost+found\n");
	}
	if (!e)
		c->lost_found = *addr;
	return e;
}

struct dotdot {
	uint32_t idx, found;
};
static int find_dotdot(void *ctx, const struct vmfs_dirent *de)
{
	struct dotdot *d = ctx;
	if (!strcmp(de->name, "..") && d->found == UINT32_MAX)
		d->found = d->idx;
	d->idx++;
	return 0;
}

static int reattach(struct ck *c, const struct fix *f)
{
	uint32_t lf;
	int e = lost_found(c, &lf);

	if (e)
		return e;
	e = vmfs_fsck_dir_add(c->fs, lf, &f->de);
	if (e)
		return e;
	if (f->de.type == VMFS_TYPE_DIR) {
		struct dotdot d = { 0, UINT32_MAX };
		struct vmfs_stat st;
		e = vmfs_readdir(c->fs, f->addr, find_dotdot, &d);
		if (!e)
			e = vmfs_stat(c->fs, lf, &st);
		if (e)
			return e;
		struct vmfs_dirent de = { .type = VMFS_TYPE_DIR, .addr = lf, .gen = st.gen };
		strcpy(de.name, "..");
		return d.found == UINT32_MAX ? vmfs_fsck_dir_add(c->fs, f->addr, &de)
					     : vmfs_fsck_dirent_set(c->fs, f->addr, d.found, &de);
	}
	struct vmfs_fsck_fd_fix fx = { .mask = VMFS_FSCK_FD_NLINK, .nlink = 1 };
	return vmfs_fsck_fd_set(c->fs, f->addr, &fx);
}

static int cmp_remove(const void *a, const void *b)
{
	const struct fix *x = *(const struct fix *const *)a, *y = *(const struct fix *const *)b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->idx > y->idx ? -1 : x->idx < y->idx;  /* highest index first */
}

int apply_fixes(struct ck *c)
{
	static const int order[] = { FIX_CLUSTER, FIX_LOCK, FIX_PTR_CLEAR, FIX_CLONE, FIX_FD_COUNTS,
				     FIX_CLEAR_FD, FIX_DIRENT_SET, FIX_DIRENT_REMOVE, FIX_DIRENT_ADD,
				     FIX_DROP, FIX_REATTACH };
	struct fix **rm = NULL;
	size_t nrm = 0;

	for (size_t o = 0; o < sizeof(order) / sizeof(order[0]); o++) {
		int kind = order[o];
		if (kind == FIX_DIRENT_REMOVE) {
			rm = malloc((c->nfix + 1) * sizeof(*rm));
			if (!rm)
				return -ENOMEM;
			for (size_t i = 0; i < c->nfix; i++)
				if (c->fixv[i].kind == kind)
					rm[nrm++] = &c->fixv[i];
			qsort(rm, nrm, sizeof(*rm), cmp_remove);
			for (size_t i = 0; i < nrm; i++) {
				c->logmsg[0] = 0;
				done(c, rm[i], vmfs_fsck_dirent_remove(c->fs, rm[i]->addr, rm[i]->idx), NULL);
			}
			free(rm);
			continue;
		}
		for (size_t i = 0; i < c->nfix; i++) {
			struct fix *f = &c->fixv[i];
			char extra[160] = "";
			uint32_t na = 0;
			int e;
			if (f->kind != kind)
				continue;
			c->logmsg[0] = 0;
			switch (kind) {
			case FIX_CLUSTER:
				e = fix_cluster(c, f, extra, sizeof(extra));
				break;
			case FIX_LOCK:
				e = vmfs_fsck_write_sector(c->fs, f->lv, f->sec);
				break;
			case FIX_PTR_CLEAR:
				e = vmfs_fsck_ptr_set(c->fs, f->addr, f->pb, f->idx, 0);
				break;
			case FIX_CLONE:
				e = vmfs_fsck_clone_block(c->fs, f->addr, f->pb, f->idx, f->old, &na);
				snprintf(extra, sizeof(extra), " (now 0x%08x)", na);
				break;
			case FIX_FD_COUNTS:
				e = vmfs_fsck_fd_set(c->fs, f->addr, &f->fd);
				break;
			case FIX_CLEAR_FD: {
				struct vmfs_fsck_fd_fix fx = { .mask = VMFS_FSCK_FD_NLINK, .nlink = 0 };
				e = vmfs_fsck_fd_set(c->fs, f->addr, &fx);
				break;
			}
			case FIX_DIRENT_SET:
				e = vmfs_fsck_dirent_set(c->fs, f->addr, f->idx, &f->de);
				break;
			case FIX_DIRENT_ADD:
				e = vmfs_fsck_dir_add(c->fs, f->addr, &f->de);
				break;
			case FIX_DROP:
				e = vmfs_fsck_fd_release(c->fs, f->addr);
				break;
			case FIX_REATTACH:
				e = reattach(c, f);
				break;
			default:
				e = -EINVAL;
			}
			done(c, f, e, extra[0] ? extra : NULL);
		}
	}
	return vmfs_fs_sync(c->fs);
}
