/*
 * Directories (FORMAT.md §8): a packed array of 140-byte entries, "." and
 * ".." first; lookups are linear.  Removal moves the last entry into the hole
 * and shrinks the directory, as vmfs-tools does.  Every operation is one
 * transaction; the directory is protected by its FD's lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"

#define MAX_DIR_SIZE (32ull << 20) /* 2^18 entries: beyond any VMFS5 volume's file count */

static int check_name(const char *name)
{
	size_t l;

	if (!name)
		return -EINVAL;
	l = strlen(name);
	if (l == 0)
		return -ENOENT;
	if (l > OD_NAME_FIELD - 1)
		return -ENAMETOOLONG;
	if (strchr(name, '/'))
		return -EINVAL;
	return 0;
}

static bool is_dot(const char *n)
{
	return !strcmp(n, ".") || !strcmp(n, "..");
}

/* Read all entries of a directory inode. */
static int dir_load(struct vmfs_fs *fs, struct vmfs_txn *t, struct vmfs_inode *d,
		    struct vmfs_dirent **out, size_t *n)
{
	uint64_t size = d->fd.size;
	uint8_t *raw = NULL;
	struct vmfs_dirent *ents = NULL;
	int64_t got;
	int e = 0;

	*out = NULL;
	*n = 0;
	if (d->fd.type != VMFS_TYPE_DIR)
		return -ENOTDIR;
	if (size % OD_DIRENT_SIZE || size > MAX_DIR_SIZE) {
		fs_err(fs, "directory 0x%08x: size %llu is not a whole number of entries", d->addr,
		       (unsigned long long)size);
		return -EUCLEAN;
	}
	if (!size)
		return 0;
	raw = malloc(size);
	ents = malloc(size / OD_DIRENT_SIZE * sizeof(*ents));
	if (!raw || !ents) {
		e = -ENOMEM;
		goto out;
	}
	got = ino_read(fs, t, d, raw, size, 0);
	if (got < 0) {
		e = (int)got;
		goto out;
	}
	if ((uint64_t)got != size) {
		e = -EIO;
		goto out;
	}
	for (size_t i = 0; i < size / OD_DIRENT_SIZE; i++)
		od_dirent_decode(raw + i * OD_DIRENT_SIZE, &ents[i]);
	*n = size / OD_DIRENT_SIZE;
	*out = ents;
	ents = NULL;
out:
	free(raw);
	free(ents);
	return e;
}

static long dir_find(const struct vmfs_dirent *ents, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (ents[i].addr && !strcmp(ents[i].name, name))
			return (long)i;
	return -1;
}

static int dir_add(struct vmfs_txn *t, struct vmfs_inode *d, uint32_t type, uint32_t addr,
		   uint32_t gen, const char *name)
{
	struct vmfs_dirent de = { .type = type, .addr = addr, .gen = gen };
	uint8_t b[OD_DIRENT_SIZE];
	int64_t w;

	if (d->fd.size + OD_DIRENT_SIZE > MAX_DIR_SIZE)
		return -ENOSPC;
	strncpy(de.name, name, sizeof(de.name) - 1);
	od_dirent_encode(&de, b);
	w = ino_write(t, d, b, OD_DIRENT_SIZE, d->fd.size);
	return w < 0 ? (int)w : 0;
}

static int dir_set(struct vmfs_txn *t, struct vmfs_inode *d, size_t idx, const struct vmfs_dirent *de)
{
	uint8_t b[OD_DIRENT_SIZE];
	int64_t w;

	od_dirent_encode(de, b);
	w = ino_write(t, d, b, OD_DIRENT_SIZE, idx * OD_DIRENT_SIZE);
	return w < 0 ? (int)w : 0;
}

/* Remove entry @idx of @n (@ents is the current content). */
static int dir_remove(struct vmfs_txn *t, struct vmfs_inode *d, struct vmfs_dirent *ents, size_t n,
		      size_t idx)
{
	int e;

	if (idx != n - 1) {
		e = dir_set(t, d, idx, &ents[n - 1]);
		if (e)
			return e;
		ents[idx] = ents[n - 1];
	}
	e = ino_truncate(t, d, (uint64_t)(n - 1) * OD_DIRENT_SIZE);
	if (e)
		return e;
	d->fd.mtime = d->fd.ctime = fs_now();
	return 0;
}

static int get_dir(struct vmfs_txn *t, uint32_t addr, struct vmfs_inode **d)
{
	int e = iget(t, addr, true, d);

	if (e)
		return e;
	if ((*d)->fd.type != VMFS_TYPE_DIR)
		return -ENOTDIR;
	if ((*d)->fd.nlink == 0)
		return -ENOENT;
	return 0;
}

/* ---- read-only -------------------------------------------------------------------- */

int vmfs_readdir(struct vmfs_fs *fs, uint32_t dir,
		 int (*cb)(void *ctx, const struct vmfs_dirent *de), void *ctx)
{
	struct vmfs_inode d;
	struct vmfs_dirent *ents = NULL;
	size_t n = 0;
	int e;

	e = iread(fs, dir, &d);
	if (e)
		return e;
	e = dir_load(fs, NULL, &d, &ents, &n);
	for (size_t i = 0; !e && i < n; i++)
		e = cb(ctx, &ents[i]);
	free(ents);
	return e;
}

int vmfs_lookup(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t *addr)
{
	struct vmfs_inode d;
	struct vmfs_dirent *ents = NULL;
	size_t n = 0;
	long i;
	int e;

	if (!strcmp(name, ".") ) {
		*addr = dir;
		return iread(fs, dir, &d);
	}
	if (strcmp(name, "..") && (e = check_name(name)))
		return e;
	e = iread(fs, dir, &d);
	if (e)
		return e;
	e = dir_load(fs, NULL, &d, &ents, &n);
	if (e)
		return e;
	i = dir_find(ents, n, name);
	if (i < 0)
		e = -ENOENT;
	else
		*addr = ents[i].addr;
	free(ents);
	return e;
}

int vmfs_resolve(struct vmfs_fs *fs, const char *path, uint32_t *addr)
{
	uint32_t cur = VMFS_ROOT_ADDR;
	char comp[OD_NAME_FIELD + 1];
	const char *p = path;
	int e;

	if (!path)
		return -EINVAL;
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *s = strchr(p, '/');
		size_t l = s ? (size_t)(s - p) : strlen(p);
		if (l > OD_NAME_FIELD - 1)
			return -ENAMETOOLONG;
		memcpy(comp, p, l);
		comp[l] = 0;
		e = vmfs_lookup(fs, cur, comp, &cur);
		if (e)
			return e;
		p += l;
	}
	*addr = cur;
	return 0;
}

int vmfs_resolve_parent(struct vmfs_fs *fs, const char *path, uint32_t *dir, char name[129])
{
	char *copy, *slash, *last;
	int e;

	if (!path)
		return -EINVAL;
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	/* strip trailing slashes */
	for (size_t l = strlen(copy); l > 1 && copy[l - 1] == '/'; l--)
		copy[l - 1] = 0;
	slash = strrchr(copy, '/');
	if (slash) {
		*slash = 0;
		last = slash + 1;
		e = vmfs_resolve(fs, copy, dir);
	} else {
		last = copy;
		*dir = VMFS_ROOT_ADDR;
		e = 0;
	}
	if (!e) {
		e = check_name(last);
		if (!e)
			snprintf(name, 129, "%s", last);
	}
	free(copy);
	return e;
}

int vmfs_readlink(struct vmfs_fs *fs, uint32_t addr, char *buf, size_t bufsz)
{
	struct vmfs_inode ino;
	int64_t n;
	int e;

	if (!buf || !bufsz)
		return -EINVAL;
	e = iread(fs, addr, &ino);
	if (e)
		return e;
	if (ino.fd.type != VMFS_TYPE_SYMLINK)
		return -EINVAL;
	n = ino_read(fs, NULL, &ino, buf, bufsz - 1, 0);
	if (n < 0)
		return (int)n;
	buf[n] = 0;
	return (int)n;
}

/* ---- changes ------------------------------------------------------------------------ */

static int do_create(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t type,
		     uint32_t mode, uint32_t uid, uint32_t gid, const char *target, uint32_t *addr)
{
	struct vmfs_txn t;
	struct vmfs_inode *d, *ino;
	struct vmfs_dirent *ents = NULL;
	size_t n = 0;
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	e = check_name(name);
	if (e)
		return e;
	if (is_dot(name))
		return -EEXIST;
	txn_init(&t, fs);
	e = get_dir(&t, dir, &d);
	if (e)
		goto out;
	e = dir_load(fs, &t, d, &ents, &n);
	if (e)
		goto out;
	if (dir_find(ents, n, name) >= 0) {
		e = -EEXIST;
		goto out;
	}
	e = ialloc(&t, type, mode, uid, gid, &ino);
	if (e)
		goto out;
	ino->fd.nlink = 1;
	if (type == VMFS_TYPE_DIR) {
		ino->fd.nlink = 2;
		e = dir_add(&t, ino, VMFS_TYPE_DIR, ino->addr, ino->fd.gen, ".");
		if (!e)
			e = dir_add(&t, ino, VMFS_TYPE_DIR, d->addr, d->fd.gen, "..");
		if (e)
			goto out;
		d->fd.nlink++;
	} else if (type == VMFS_TYPE_SYMLINK) {
		int64_t w = ino_write(&t, ino, target, strlen(target), 0);
		if (w < 0) {
			e = (int)w;
			goto out;
		}
	}
	e = dir_add(&t, d, type, ino->addr, ino->fd.gen, name);
	if (e)
		goto out;
	d->fd.mtime = d->fd.ctime = fs_now();
	idirty(d);
	if (addr)
		*addr = ino->addr;
out:
	free(ents);
	return txn_finish(&t, e);
}

int vmfs_create(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t mode, uint32_t uid,
		uint32_t gid, uint32_t *addr)
{
	return do_create(fs, dir, name, VMFS_TYPE_FILE, mode, uid, gid, NULL, addr);
}

int vmfs_mkdir(struct vmfs_fs *fs, uint32_t dir, const char *name, uint32_t mode, uint32_t uid,
	       uint32_t gid, uint32_t *addr)
{
	return do_create(fs, dir, name, VMFS_TYPE_DIR, mode, uid, gid, NULL, addr);
}

int vmfs_symlink(struct vmfs_fs *fs, uint32_t dir, const char *name, const char *target,
		 uint32_t *addr)
{
	if (!target || !*target)
		return -ENOENT;
	if (strlen(target) >= 4096)
		return -ENAMETOOLONG;
	return do_create(fs, dir, name, VMFS_TYPE_SYMLINK, 0777, 0, 0, target, addr);
}

int vmfs_link(struct vmfs_fs *fs, uint32_t addr, uint32_t dir, const char *name)
{
	struct vmfs_txn t;
	struct vmfs_inode *d, *ino;
	struct vmfs_dirent *ents = NULL;
	size_t n = 0;
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	e = check_name(name);
	if (e)
		return e;
	if (is_dot(name))
		return -EEXIST;
	txn_init(&t, fs);
	e = get_dir(&t, dir, &d);
	if (!e)
		e = iget(&t, addr, true, &ino);
	if (e)
		goto out;
	if (ino->fd.nlink == 0) {
		e = -ENOENT;
		goto out;
	}
	if (ino->fd.type == VMFS_TYPE_DIR || ino->fd.type == VMFS_TYPE_SYSTEM) {
		e = -EPERM;
		goto out;
	}
	e = dir_load(fs, &t, d, &ents, &n);
	if (e)
		goto out;
	if (dir_find(ents, n, name) >= 0) {
		e = -EEXIST;
		goto out;
	}
	e = dir_add(&t, d, ino->fd.type, ino->addr, ino->fd.gen, name);
	if (e)
		goto out;
	ino->fd.nlink++;
	ino->fd.ctime = fs_now();
	idirty(ino);
	d->fd.mtime = d->fd.ctime = fs_now();
	idirty(d);
out:
	free(ents);
	return txn_finish(&t, e);
}

/* Drop one link of @ino (its entry already removed). */
static int drop_link(struct vmfs_txn *t, struct vmfs_inode *ino)
{
	if (ino->fd.nlink)
		ino->fd.nlink--;
	ino->fd.ctime = fs_now();
	idirty(ino);
	if (ino->fd.nlink == 0)
		return ino_release(t, ino);
	return 0;
}

/* Load @dir's entries and the object named @name in it (-ENOENT if none,
 * -EPERM for a system file). */
static int dir_entry_load(struct vmfs_fs *fs, struct vmfs_txn *t, uint32_t dir, const char *name,
			 struct vmfs_inode **d, struct vmfs_dirent **ents, size_t *n, long *idx,
			 struct vmfs_inode **ino)
{
	int e = get_dir(t, dir, d);

	if (!e)
		e = dir_load(fs, t, *d, ents, n);
	if (e)
		return e;
	*idx = dir_find(*ents, *n, name);
	if (*idx < 0)
		return -ENOENT;
	e = iget(t, (*ents)[*idx].addr, true, ino);
	if (!e && (*ino)->fd.type == VMFS_TYPE_SYSTEM)
		e = -EPERM;
	return e;
}

static int do_remove(struct vmfs_fs *fs, uint32_t dir, const char *name, bool want_dir)
{
	struct vmfs_txn t;
	struct vmfs_inode *d, *ino;
	struct vmfs_dirent *ents = NULL;
	size_t n = 0;
	long i;
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	e = check_name(name);
	if (e)
		return e;
	if (is_dot(name))
		return want_dir ? (!strcmp(name, ".") ? -EINVAL : -ENOTEMPTY) : -EISDIR;
	txn_init(&t, fs);
	e = dir_entry_load(fs, &t, dir, name, &d, &ents, &n, &i, &ino);
	if (e)
		goto out;
	if (want_dir) {
		if (ino->fd.type != VMFS_TYPE_DIR) {
			e = -ENOTDIR;
			goto out;
		}
		if (ino->fd.size > 2 * OD_DIRENT_SIZE) {
			e = -ENOTEMPTY;
			goto out;
		}
	} else if (ino->fd.type == VMFS_TYPE_DIR) {
		e = -EISDIR;
		goto out;
	}
	e = dir_remove(&t, d, ents, n, (size_t)i);
	if (e)
		goto out;
	if (want_dir) {
		ino->fd.nlink = 1;
		if (d->fd.nlink > 2)
			d->fd.nlink--;
	}
	e = drop_link(&t, ino);
	idirty(d);
out:
	free(ents);
	return txn_finish(&t, e);
}

int vmfs_unlink(struct vmfs_fs *fs, uint32_t dir, const char *name)
{
	return do_remove(fs, dir, name, false);
}

int vmfs_rmdir(struct vmfs_fs *fs, uint32_t dir, const char *name)
{
	return do_remove(fs, dir, name, true);
}

/* Is @anc an ancestor of (or equal to) @dir?  Walks ".." up to the root. */
static int is_ancestor(struct vmfs_fs *fs, struct vmfs_txn *t, uint32_t anc, uint32_t dir)
{
	uint32_t cur = dir;

	for (int depth = 0; depth < 4096; depth++) {
		struct vmfs_inode *d;
		struct vmfs_dirent *ents = NULL;
		size_t n = 0;
		long i;
		int e;

		if (cur == anc)
			return 1;
		if (cur == VMFS_ROOT_ADDR)
			return 0;
		e = iget(t, cur, false, &d);
		if (!e)
			e = dir_load(fs, t, d, &ents, &n);
		if (e)
			return e;
		i = dir_find(ents, n, "..");
		if (i < 0) {
			free(ents);
			return -EUCLEAN;
		}
		cur = ents[i].addr;
		free(ents);
	}
	return -ELOOP;
}

/* The checks every rename makes before its transaction. */
static int rename_args(struct vmfs_fs *fs, const char *sname, const char *dname)
{
	int e;

	if (fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	if ((e = check_name(sname)) || (e = check_name(dname)))
		return e;
	return is_dot(sname) || is_dot(dname) ? -EINVAL : 0;
}

int vmfs_rename(struct vmfs_fs *fs, uint32_t sdir, const char *sname, uint32_t ddir,
		const char *dname)
{
	struct vmfs_txn t;
	struct vmfs_inode *sd, *dd, *src, *dst = NULL;
	struct vmfs_dirent *ents = NULL;
	size_t n = 0;
	long si, di;
	int e;

	e = rename_args(fs, sname, dname);
	if (e)
		return e;
	txn_init(&t, fs);
	e = get_dir(&t, sdir, &sd);
	if (!e)
		e = get_dir(&t, ddir, &dd);
	if (!e)
		e = dir_load(fs, &t, sd, &ents, &n);
	if (e)
		goto out;
	si = dir_find(ents, n, sname);
	if (si < 0) {
		e = -ENOENT;
		goto out;
	}
	e = iget(&t, ents[si].addr, true, &src);
	if (e)
		goto out;
	if (src->fd.type == VMFS_TYPE_SYSTEM) {
		e = -EPERM;
		goto out;
	}
	if (src->fd.type == VMFS_TYPE_DIR && sdir != ddir) {
		e = is_ancestor(fs, &t, src->addr, ddir);
		if (e == 1)
			e = -EINVAL;
		if (e)
			goto out;
	}
	free(ents);
	ents = NULL;
	e = dir_load(fs, &t, dd, &ents, &n);
	if (e)
		goto out;
	di = dir_find(ents, n, dname);
	if (di >= 0) {
		if (ents[di].addr == src->addr)
			goto out; /* same object: nothing to do */
		e = iget(&t, ents[di].addr, true, &dst);
		if (e)
			goto out;
		if (dst->fd.type == VMFS_TYPE_SYSTEM) {
			e = -EPERM;
			goto out;
		}
		if (src->fd.type == VMFS_TYPE_DIR) {
			if (dst->fd.type != VMFS_TYPE_DIR) {
				e = -ENOTDIR;
				goto out;
			}
			if (dst->fd.size > 2 * OD_DIRENT_SIZE) {
				e = -ENOTEMPTY;
				goto out;
			}
		} else if (dst->fd.type == VMFS_TYPE_DIR) {
			e = -EISDIR;
			goto out;
		}
		/* point the existing entry at the source */
		struct vmfs_dirent de = ents[di];
		de.type = src->fd.type;
		de.addr = src->addr;
		de.gen = src->fd.gen;
		e = dir_set(&t, dd, (size_t)di, &de);
		if (e)
			goto out;
		if (dst->fd.type == VMFS_TYPE_DIR) {
			dst->fd.nlink = 1;
			if (dd->fd.nlink > 2)
				dd->fd.nlink--;
		}
		e = drop_link(&t, dst);
		if (e)
			goto out;
	} else {
		e = dir_add(&t, dd, src->fd.type, src->addr, src->fd.gen, dname);
		if (e)
			goto out;
	}
	/* remove the source entry (re-read: the directory may be the same) */
	free(ents);
	ents = NULL;
	e = dir_load(fs, &t, sd, &ents, &n);
	if (e)
		goto out;
	si = -1;
	for (size_t i = 0; i < n; i++)
		if (ents[i].addr == src->addr && !strcmp(ents[i].name, sname))
			si = (long)i;
	if (si < 0) {
		e = -EUCLEAN;
		goto out;
	}
	e = dir_remove(&t, sd, ents, n, (size_t)si);
	if (e)
		goto out;
	if (src->fd.type == VMFS_TYPE_DIR && sdir != ddir) {
		struct vmfs_dirent *se = NULL;
		size_t sn = 0;
		e = dir_load(fs, &t, src, &se, &sn);
		if (e)
			goto out;
		long pi = dir_find(se, sn, "..");
		if (pi >= 0) {
			se[pi].addr = dd->addr;
			se[pi].gen = dd->fd.gen;
			e = dir_set(&t, src, (size_t)pi, &se[pi]);
		}
		free(se);
		if (e)
			goto out;
		if (sd->fd.nlink > 2)
			sd->fd.nlink--;
		dd->fd.nlink++;
	}
	src->fd.ctime = fs_now();
	idirty(src);
	sd->fd.mtime = sd->fd.ctime = dd->fd.mtime = dd->fd.ctime = fs_now();
	idirty(sd);
	idirty(dd);
out:
	free(ents);
	return txn_finish(&t, e);
}

/* Point @ino's ".." at @parent (a directory that moved to another parent). */
static int set_dotdot(struct vmfs_fs *fs, struct vmfs_txn *t, struct vmfs_inode *ino,
		      struct vmfs_inode *parent)
{
	struct vmfs_dirent *ents = NULL;
	size_t n = 0;
	long i;
	int e = dir_load(fs, t, ino, &ents, &n);

	if (e)
		return e;
	i = dir_find(ents, n, "..");
	if (i < 0) {
		e = -EUCLEAN;
	} else {
		ents[i].addr = parent->addr;
		ents[i].gen = parent->fd.gen;
		e = dir_set(t, ino, (size_t)i, &ents[i]);
	}
	free(ents);
	return e;
}

/* A directory leaving @from for @to must not be an ancestor of @to; its ".."
 * and both parents' link counts follow it. */
static int exchange_check_dir(struct vmfs_fs *fs, struct vmfs_txn *t, struct vmfs_inode *ino,
			      uint32_t to)
{
	int e;

	if (ino->fd.type != VMFS_TYPE_DIR)
		return 0;
	e = is_ancestor(fs, t, ino->addr, to);
	return e == 1 ? -EINVAL : e;
}

int vmfs_rename_exchange(struct vmfs_fs *fs, uint32_t sdir, const char *sname, uint32_t ddir,
			 const char *dname)
{
	struct vmfs_txn t;
	struct vmfs_inode *sd, *dd, *a, *b;
	struct vmfs_dirent *sents = NULL, *dents = NULL, ea, eb;
	size_t sn = 0, dn = 0;
	long si, di;
	int e;

	e = rename_args(fs, sname, dname);
	if (e)
		return e;
	txn_init(&t, fs);
	e = dir_entry_load(fs, &t, sdir, sname, &sd, &sents, &sn, &si, &a);
	if (!e)
		e = dir_entry_load(fs, &t, ddir, dname, &dd, &dents, &dn, &di, &b);
	if (e || a == b)
		goto out;   /* error, or two names of one object: nothing to do */
	if (sdir != ddir) {
		e = exchange_check_dir(fs, &t, a, ddir);
		if (!e)
			e = exchange_check_dir(fs, &t, b, sdir);
		if (e)
			goto out;
	}
	/* each entry keeps its name and takes the other's object */
	ea = sents[si];
	eb = dents[di];
	ea.type = b->fd.type;
	ea.addr = b->addr;
	ea.gen = b->fd.gen;
	eb.type = a->fd.type;
	eb.addr = a->addr;
	eb.gen = a->fd.gen;
	e = dir_set(&t, sd, (size_t)si, &ea);
	if (!e)
		e = dir_set(&t, dd, (size_t)di, &eb);
	if (!e && sdir != ddir && a->fd.type == VMFS_TYPE_DIR) {
		e = set_dotdot(fs, &t, a, dd);
		if (sd->fd.nlink > 2)
			sd->fd.nlink--;
		dd->fd.nlink++;
	}
	if (!e && sdir != ddir && b->fd.type == VMFS_TYPE_DIR) {
		e = set_dotdot(fs, &t, b, sd);
		if (dd->fd.nlink > 2)
			dd->fd.nlink--;
		sd->fd.nlink++;
	}
	if (e)
		goto out;
	a->fd.ctime = b->fd.ctime = fs_now();
	idirty(a);
	idirty(b);
	sd->fd.mtime = sd->fd.ctime = dd->fd.mtime = dd->fd.ctime = fs_now();
	idirty(sd);
	idirty(dd);
out:
	free(sents);
	free(dents);
	return txn_finish(&t, e);
}
