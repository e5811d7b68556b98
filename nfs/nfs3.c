/* NFSv3 procedures (RFC 1813 §3.3) over the filesystem API.
 *
 * Every procedure decodes all of its arguments first (a short or malformed
 * call is GARBAGE_ARGS with nothing done), then runs with s->fsmu held: the
 * filesystem keeps no cache between calls, so each call re-reads what it
 * needs and concurrent NFS calls are serialised per server.
 *
 * Writes take the file's cluster lock (vmfs_host_lock_file, exclusive) and
 * keep it while the file has unstable data or was written in the last
 * NFS_LOCK_IDLE_S seconds; a file another live host holds gets
 * NFS3ERR_JUKEBOX (the client retries later). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"

#define NAME_MAX_WIRE 1024
#define PATH_MAX_WIRE 4096

enum { NF3REG = 1, NF3DIR = 2, NF3LNK = 5 };
enum { UNSTABLE = 0, DATA_SYNC = 1, FILE_SYNC = 2 };
enum { ACCESS3_READ = 1, ACCESS3_LOOKUP = 2, ACCESS3_MODIFY = 4, ACCESS3_EXTEND = 8,
       ACCESS3_DELETE = 16, ACCESS3_EXECUTE = 32 };
enum { MAY_X = 1, MAY_W = 2, MAY_R = 4 };

struct req {
	struct nfs_call *c;
	struct nfs_srv *s;
	struct nfs_export e;       /* a copy: removal cannot pull it from under us */
	int vol;
	struct vmfs_fs *fs;
	struct nfs_cred cred;      /* squashed for the export */
	uint32_t root;             /* export root (resolved on demand) */
};

struct wire_fh {
	const uint8_t *p;
	uint32_t len;
};

struct sattr {
	bool set_mode, set_uid, set_gid, set_size;
	uint32_t mode, uid, gid;
	uint64_t size;
	uint32_t atime_how, mtime_how;     /* 0 don't, 1 server time, 2 client time */
	uint32_t atime, mtime;
};

/* ---- small helpers ------------------------------------------------------- */

static int errno_to_nfs(int r)
{
	switch (-r) {
	case 0: return NFS3_OK;
	case EPERM: return NFS3ERR_PERM;
	case ENOENT: return NFS3ERR_NOENT;
	case ENXIO: return NFS3ERR_NXIO;
	case EACCES: return NFS3ERR_ACCES;
	case EEXIST: return NFS3ERR_EXIST;
	case EXDEV: return NFS3ERR_XDEV;
	case ENOTDIR: return NFS3ERR_NOTDIR;
	case EISDIR: return NFS3ERR_ISDIR;
	case EINVAL: return NFS3ERR_INVAL;
	case EFBIG: return NFS3ERR_FBIG;
	case ENOSPC: return NFS3ERR_NOSPC;
	case EROFS: return NFS3ERR_ROFS;
	case EMLINK: return NFS3ERR_MLINK;
	case ENAMETOOLONG: return NFS3ERR_NAMETOOLONG;
	case ENOTEMPTY: return NFS3ERR_NOTEMPTY;
	case EDQUOT: return NFS3ERR_DQUOT;
	case ESTALE: return NFS3ERR_STALE;
	case EBUSY: case EAGAIN: case ETIMEDOUT: return NFS3ERR_JUKEBOX;
	case ENOTSUP: return NFS3ERR_NOTSUPP;
	default: return NFS3ERR_IO;
	}
}

static bool in_group(const struct nfs_cred *c, uint32_t gid)
{
	if (c->gid == gid)
		return true;
	for (uint32_t i = 0; i < c->ngids; i++)
		if (c->gids[i] == gid)
			return true;
	return false;
}

static bool may(const struct nfs_cred *c, const struct vmfs_stat *st, unsigned want)
{
	unsigned bits;

	if (c->uid == 0) {
		if ((want & MAY_X) && st->type != VMFS_TYPE_DIR && !(st->mode & 0111))
			return false;
		return true;
	}
	if (c->uid == st->uid)
		bits = (st->mode >> 6) & 7;
	else if (in_group(c, st->gid))
		bits = (st->mode >> 3) & 7;
	else
		bits = st->mode & 7;
	return (bits & want) == want;
}

static bool is_dir(const struct vmfs_stat *st)
{
	return st->type == VMFS_TYPE_DIR || st->type == VMFS_TYPE_VOLUME;
}

static bool decode_fh(struct xdr_in *x, struct wire_fh *fh)
{
	fh->p = xin_var(x, &fh->len, 64);
	return !x->err;
}

static bool decode_name(struct xdr_in *x, char name[NAME_MAX_WIRE + 1])
{
	return xin_str(x, name, NAME_MAX_WIRE);
}

/* nfstime3: seconds, nseconds (< 1e9) */
static uint32_t decode_time(struct xdr_in *x)
{
	uint32_t sec = xin_u32(x);

	if (xin_u32(x) >= 1000000000u)
		x->err = true;
	return sec;
}

static bool decode_sattr(struct xdr_in *x, struct sattr *a)
{
	memset(a, 0, sizeof(*a));
	if ((a->set_mode = xin_bool(x)))
		a->mode = xin_u32(x);
	if ((a->set_uid = xin_bool(x)))
		a->uid = xin_u32(x);
	if ((a->set_gid = xin_bool(x)))
		a->gid = xin_u32(x);
	if ((a->set_size = xin_bool(x)))
		a->size = xin_u64(x);
	a->atime_how = xin_u32(x);
	if (a->atime_how > 2)
		x->err = true;
	if (a->atime_how == 2)
		a->atime = decode_time(x);
	a->mtime_how = xin_u32(x);
	if (a->mtime_how > 2)
		x->err = true;
	if (a->mtime_how == 2)
		a->mtime = decode_time(x);
	return !x->err;
}

/* Component names: 1..127 bytes, no '/' or NUL, not "." or ".." (unless @dots). */
static int check_name(const char *n, bool dots)
{
	size_t l = strlen(n);

	if (!l)
		return NFS3ERR_ACCES;
	if (l > 127)
		return NFS3ERR_NAMETOOLONG;
	if (strchr(n, '/'))
		return NFS3ERR_ACCES;
	if (!dots && (!strcmp(n, ".") || !strcmp(n, "..")))
		return NFS3ERR_EXIST;
	return NFS3_OK;
}

static bool hidden(uint32_t dir, const char *name)
{
	return dir == VMFS_ROOT_ADDR && !strcmp(name, NFS_FH_KEY_FILE);
}

/* Validate a handle and fill q (export copy, volume, squashed cred) and
 * the object's address and attributes. */
static int resolve(struct req *q, const struct wire_fh *w, uint32_t *addr, struct vmfs_stat *st)
{
	struct nfs_srv *s = q->s;
	struct nfs_export *e;
	struct nfs_fh fh;
	int r, vol;

	r = nfs_fh_parse(s, w->p, w->len, &fh);
	if (r)
		return r;
	pthread_mutex_lock(&s->mu);
	e = nfs_export_by_id(s, fh.export_id);
	if (e)
		q->e = *e;
	pthread_mutex_unlock(&s->mu);
	if (!e)
		return NFS3ERR_STALE;        /* export removed */
	vol = nfs_export_vol(s, &q->e);
	if (vol != fh.vol)
		return NFS3ERR_STALE;
	if (!nfs_export_allows(&q->e, q->c->peer))
		return NFS3ERR_ACCES;
	q->vol = vol;
	q->fs = s->vols[vol].fs;
	q->cred = q->c->cred;
	nfs_export_squash(&q->e, &q->cred);
	r = vmfs_stat(q->fs, fh.addr, st);
	if (r == -ENOENT || r == -EINVAL || r == -EUCLEAN || (!r && st->gen != fh.gen))
		return NFS3ERR_STALE;
	if (r)
		return errno_to_nfs(r);
	/* a freed FD is written with nlink 0 (vmfs_stat: -ENOENT) and a reused
	 * one has a new generation: no bitmap read needed */
	*addr = fh.addr;
	return NFS3_OK;
}

static uint32_t export_root(struct req *q)
{
	if (!q->root && vmfs_resolve(q->fs, q->e.rel, &q->root))
		q->root = VMFS_ROOT_ADDR;
	return q->root;
}

/* ---- encoders -------------------------------------------------------------- */

static void put_time(struct xdr_out *o, uint32_t sec)
{
	xout_u32(o, sec);
	xout_u32(o, 0);
}

static void put_fattr(struct req *q, struct xdr_out *o, const struct vmfs_stat *st)
{
	const uint8_t *u = q->s->vols[q->vol].uuid;
	uint64_t fsid = 0;

	for (int i = 0; i < 8; i++)
		fsid = fsid << 8 | u[i];
	xout_u32(o, is_dir(st) ? NF3DIR : st->type == VMFS_TYPE_SYMLINK ? NF3LNK : NF3REG);
	xout_u32(o, st->mode & 07777);
	xout_u32(o, st->nlink);
	xout_u32(o, st->uid);
	xout_u32(o, st->gid);
	xout_u64(o, st->size);
	xout_u64(o, st->blocks512 * 512);
	xout_u32(o, 0);            /* rdev */
	xout_u32(o, 0);
	xout_u64(o, fsid);
	xout_u64(o, (uint64_t)st->gen << 32 | st->addr);
	put_time(o, st->atime);
	put_time(o, st->mtime);
	put_time(o, st->ctime);
}

static void put_post_attr(struct req *q, struct xdr_out *o, uint32_t addr)
{
	struct vmfs_stat st;

	if (q->fs && addr && !vmfs_stat(q->fs, addr, &st)) {
		xout_u32(o, 1);
		put_fattr(q, o, &st);
	} else {
		xout_u32(o, 0);
	}
}

static void put_attr_st(struct req *q, struct xdr_out *o, const struct vmfs_stat *st)
{
	xout_u32(o, 1);
	put_fattr(q, o, st);
}

static void put_pre(struct xdr_out *o, const struct vmfs_stat *pre)
{
	if (!pre) {
		xout_u32(o, 0);
		return;
	}
	xout_u32(o, 1);
	xout_u64(o, pre->size);
	put_time(o, pre->mtime);
	put_time(o, pre->ctime);
}

static void put_wcc(struct req *q, struct xdr_out *o, const struct vmfs_stat *pre, uint32_t addr)
{
	put_pre(o, pre);
	put_post_attr(q, o, addr);
}

static void put_fh(struct req *q, struct xdr_out *o, uint32_t addr, uint32_t gen)
{
	uint8_t fh[NFS_FH_LEN];

	nfs_fh_make(&q->s->vols[q->vol], q->e.id, addr, gen, fh);
	xout_var(o, fh, NFS_FH_LEN);
}

/* ---- write locks ---------------------------------------------------------------- */

static struct nfs_wlock *wlock_find(struct nfs_srv *s, int vol, uint32_t addr)
{
	for (int i = 0; i < s->nwlocks; i++)
		if (s->wlocks[i].vol == vol && s->wlocks[i].addr == addr)
			return &s->wlocks[i];
	return NULL;
}

/* fsmu held */
static int wlock_take(struct req *q, uint32_t addr)
{
	struct nfs_srv *s = q->s;
	struct vmfs_lock_conflict conf;
	struct nfs_wlock *w;
	int r = 0;

	pthread_mutex_lock(&s->mu);
	w = wlock_find(s, q->vol, addr);
	if (w) {
		w->last = nfs_now();
		goto out;
	}
	if (s->nwlocks == s->capwlocks) {
		int cap = s->capwlocks ? s->capwlocks * 2 : 16;
		struct nfs_wlock *n = realloc(s->wlocks, sizeof(*n) * (size_t)cap);

		if (!n) {
			r = -ENOMEM;
			goto out;
		}
		s->wlocks = n;
		s->capwlocks = cap;
	}
	r = vmfs_host_lock_file(s->vols[q->vol].host, addr, VMFS_LM_EXCL, &conf);
	if (r) {
		if (r == -EBUSY)
			nfs_log(s, VMFS_LOG_WARN, "write to FD 0x%08x refused: host in slot %d holds "
				"its lock", addr, conf.slot);
		goto out;
	}
	s->wlocks[s->nwlocks++] = (struct nfs_wlock){ .vol = q->vol, .addr = addr,
						      .last = nfs_now() };
out:
	pthread_mutex_unlock(&s->mu);
	return r;
}

static void wlock_mark(struct nfs_srv *s, int vol, uint32_t addr, bool dirty)
{
	struct nfs_wlock *w;

	pthread_mutex_lock(&s->mu);
	w = wlock_find(s, vol, addr);
	if (w) {
		w->dirty = dirty;
		w->last = nfs_now();
	}
	pthread_mutex_unlock(&s->mu);
}

static void put_wverf(struct xdr_out *o, struct nfs_srv *s)
{
	uint64_t v = __atomic_load_n(&s->wverf, __ATOMIC_ACQUIRE);

	xout_fixed(o, &v, 8);
}

/* A write answered early failed afterwards: COMMIT on the file reports it,
 * and the write verifier changes at once, so the client's next COMMIT or
 * WRITE reply carries a new verifier and it re-sends every UNSTABLE write
 * it still holds (RFC 1813 3.3.7), even if the record of the error below
 * is gone by then (lock dropped while idle). */
static void wlock_fail(struct nfs_srv *s, int vol, uint32_t addr, int err)
{
	struct nfs_wlock *w;

	__atomic_add_fetch(&s->wverf, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&s->mu);
	w = wlock_find(s, vol, addr);
	if (w)
		w->err = err;
	pthread_mutex_unlock(&s->mu);
}

/* The error of a write answered early since the last COMMIT (cleared). */
static int wlock_take_err(struct nfs_srv *s, int vol, uint32_t addr)
{
	struct nfs_wlock *w;
	int err = 0;

	pthread_mutex_lock(&s->mu);
	w = wlock_find(s, vol, addr);
	if (w) {
		err = w->err;
		w->err = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return err;
}

/* fsmu held.  Drop our lock on @addr (before removing it). */
static void wlock_drop(struct nfs_srv *s, int vol, uint32_t addr)
{
	struct nfs_wlock *w;

	pthread_mutex_lock(&s->mu);
	w = wlock_find(s, vol, addr);
	if (w) {
		if (w->dirty)
			vmfs_fs_sync(s->vols[vol].fs);
		vmfs_host_unlock_file(s->vols[vol].host, addr);
		*w = s->wlocks[--s->nwlocks];
	}
	pthread_mutex_unlock(&s->mu);
}

void nfs_wlocks_reap(struct nfs_srv *s, bool all)
{
	double now = nfs_now();

	pthread_rwlock_wrlock(&s->fsmu);
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->nwlocks;) {
		struct nfs_wlock *w = &s->wlocks[i];

		if (!all && now - w->last < NFS_LOCK_IDLE_S) {
			i++;
			continue;
		}
		if (w->dirty)
			vmfs_fs_sync(s->vols[w->vol].fs);
		vmfs_host_unlock_file(s->vols[w->vol].host, w->addr);
		*w = s->wlocks[--s->nwlocks];
	}
	pthread_mutex_unlock(&s->mu);
	pthread_rwlock_unlock(&s->fsmu);
}

/* ---- procedures ------------------------------------------------------------------ */

static int p_getattr(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct vmfs_stat st;
	uint32_t addr;
	int status;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	xout_u32(o, (uint32_t)status);
	if (!status)
		put_fattr(q, o, &st);
	return RPC_SUCCESS;
}

/* Apply @a to @addr (permissions checked).  Truncation takes the write lock. */
static int apply_sattr(struct req *q, uint32_t addr, const struct vmfs_stat *st,
		       const struct sattr *a, bool creating)
{
	const struct nfs_cred *c = &q->cred;
	bool owner = c->uid == 0 || c->uid == st->uid;
	unsigned mask = 0;
	uint32_t now = (uint32_t)time(NULL), at = 0, mt = 0;
	int r;

	if (!creating) {
		if (a->set_mode && !owner)
			return NFS3ERR_PERM;
		if (a->set_uid && a->uid != st->uid && c->uid != 0)
			return NFS3ERR_PERM;
		if (a->set_gid && a->gid != st->gid && !(c->uid == 0 || (owner && in_group(c, a->gid))))
			return NFS3ERR_PERM;
		if ((a->atime_how == 2 || a->mtime_how == 2) && !owner)
			return NFS3ERR_PERM;
		if ((a->atime_how == 1 || a->mtime_how == 1) && !owner && !may(c, st, MAY_W))
			return NFS3ERR_ACCES;
	}
	if (a->set_size) {
		if (is_dir(st))
			return NFS3ERR_ISDIR;
		if (st->type != VMFS_TYPE_FILE)
			return NFS3ERR_INVAL;
		if (!creating && !owner && !may(c, st, MAY_W))
			return NFS3ERR_ACCES;
		if (a->size > VMFS_MAX_FILE_SIZE)
			return NFS3ERR_FBIG;
		if (a->size != st->size) {
			r = wlock_take(q, addr);
			if (r)
				return errno_to_nfs(r);
			r = vmfs_truncate(q->fs, addr, a->size);
			wlock_mark(q->s, q->vol, addr, true);
			if (r)
				return errno_to_nfs(r);
		}
	}
	if (a->set_mode)
		mask |= VMFS_SET_MODE;
	if (a->set_uid)
		mask |= VMFS_SET_UID;
	if (a->set_gid)
		mask |= VMFS_SET_GID;
	if (a->atime_how) {
		mask |= VMFS_SET_ATIME;
		at = a->atime_how == 1 ? now : a->atime;
	}
	if (a->mtime_how) {
		mask |= VMFS_SET_MTIME;
		mt = a->mtime_how == 1 ? now : a->mtime;
	}
	if (mask) {
		r = vmfs_setattr(q->fs, addr, mask, a->mode & 07777, a->uid, a->gid, at, mt);
		if (r)
			return errno_to_nfs(r);
	}
	return NFS3_OK;
}

static int p_setattr(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct sattr a;
	struct vmfs_stat st;
	uint32_t addr = 0, gsec = 0;
	bool guard, have = false;
	int status;

	if (!decode_fh(x, &fh) || !decode_sattr(x, &a))
		return RPC_GARBAGE_ARGS;
	guard = xin_bool(x);
	if (guard)
		gsec = decode_time(x);
	if (x->err)
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	if (status)
		goto reply;
	have = true;
	if (q->e.ro)
		status = NFS3ERR_ROFS;
	else if (guard && gsec != st.ctime)
		status = NFS3ERR_NOT_SYNC;
	else
		status = apply_sattr(q, addr, &st, &a, false);
reply:
	xout_u32(o, (uint32_t)status);
	put_wcc(q, o, have ? &st : NULL, have ? addr : 0);
	return RPC_SUCCESS;
}

/* Look @name up in @dir (export-root aware "..", hidden key file). */
static int lookup(struct req *q, uint32_t dir, const char *name, uint32_t *addr)
{
	if (!strcmp(name, "."))
		*addr = dir;
	else if (!strcmp(name, "..") && dir == export_root(q))
		*addr = dir;
	else if (hidden(dir, name))
		return -ENOENT;
	else
		return vmfs_lookup(q->fs, dir, name, addr);
	return 0;
}

static int p_lookup(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	char name[NAME_MAX_WIRE + 1];
	struct vmfs_stat dst, st;
	uint32_t dir = 0, addr;
	int status, r;

	if (!decode_fh(x, &fh) || !decode_name(x, name))
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &dir, &dst);
	if (status) {
		dir = 0;
		goto fail;
	}
	if (!is_dir(&dst)) {
		status = NFS3ERR_NOTDIR;
		goto fail;
	}
	status = check_name(name, true);
	if (status == NFS3ERR_ACCES && !name[0])
		status = NFS3ERR_NOENT;
	if (status)
		goto fail;
	if (!may(&q->cred, &dst, MAY_X)) {
		status = NFS3ERR_ACCES;
		goto fail;
	}
	r = lookup(q, dir, name, &addr);
	if (!r)
		r = vmfs_stat(q->fs, addr, &st);
	if (r) {
		status = errno_to_nfs(r);
		goto fail;
	}
	xout_u32(o, NFS3_OK);
	put_fh(q, o, addr, st.gen);
	put_attr_st(q, o, &st);
	put_attr_st(q, o, &dst);
	return RPC_SUCCESS;
fail:
	xout_u32(o, (uint32_t)status);
	put_post_attr(q, o, dir);
	return RPC_SUCCESS;
}

static int p_access(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct vmfs_stat st;
	uint32_t addr, want, got = 0;
	int status;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	want = xin_u32(x);
	if (x->err)
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	xout_u32(o, (uint32_t)status);
	if (status) {
		xout_u32(o, 0);
		return RPC_SUCCESS;
	}
	if (may(&q->cred, &st, MAY_R))
		got |= ACCESS3_READ;
	if (may(&q->cred, &st, MAY_W) && !q->e.ro)
		got |= ACCESS3_MODIFY | ACCESS3_EXTEND | (is_dir(&st) ? ACCESS3_DELETE : 0);
	if (may(&q->cred, &st, MAY_X))
		got |= is_dir(&st) ? ACCESS3_LOOKUP : ACCESS3_EXECUTE;
	put_attr_st(q, o, &st);
	xout_u32(o, got & want);
	return RPC_SUCCESS;
}

static int p_readlink(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct vmfs_stat st;
	char buf[PATH_MAX_WIRE + 1];
	uint32_t addr = 0;
	int status, n;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	if (!status && st.type != VMFS_TYPE_SYMLINK)
		status = NFS3ERR_INVAL;
	if (!status) {
		n = vmfs_readlink(q->fs, addr, buf, sizeof(buf));
		if (n < 0)
			status = errno_to_nfs(n);
		else {
			xout_u32(o, NFS3_OK);
			put_attr_st(q, o, &st);
			xout_var(o, buf, (uint32_t)strlen(buf));
			return RPC_SUCCESS;
		}
	}
	xout_u32(o, (uint32_t)status);
	put_post_attr(q, o, status == NFS3ERR_STALE || status == NFS3ERR_BADHANDLE ? 0 : addr);
	return RPC_SUCCESS;
}

static int p_read(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct vmfs_stat st;
	uint64_t off;
	uint32_t addr = 0, count;
	uint8_t *dst;
	int64_t n = 0;
	int status;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	off = xin_u64(x);
	count = xin_u32(x);
	if (x->err)
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	if (status) {
		addr = 0;
		goto fail;
	}
	if (is_dir(&st)) {
		status = NFS3ERR_ISDIR;
		goto fail;
	}
	if (st.type != VMFS_TYPE_FILE && st.type != VMFS_TYPE_SYSTEM) {
		status = NFS3ERR_INVAL;
		goto fail;
	}
	if (q->cred.uid != st.uid && !may(&q->cred, &st, MAY_R)) {
		status = NFS3ERR_ACCES;
		goto fail;
	}
	if (count > NFS_MAXDATA)
		count = NFS_MAXDATA;
	if (off >= st.size)
		count = 0;
	else if (count > st.size - off)
		count = (uint32_t)(st.size - off);
	size_t st0 = o->len;

	xout_u32(o, NFS3_OK);
	put_attr_st(q, o, &st);
	xout_u32(o, 0);            /* count, patched */
	xout_u32(o, 0);            /* eof, patched */
	xout_u32(o, 0);            /* data length, patched */
	{
		size_t at = o->len;

		dst = xout_reserve(o, count);
		if (!dst)
			return RPC_SYSTEM_ERR;
		if (count)
			n = vmfs_pread(q->fs, addr, dst, count, off);
		if (n < 0) {
			o->len = st0;   /* back to the status */
			status = errno_to_nfs((int)n);
			goto fail;
		}
		o->len = at + (((size_t)n + 3) & ~(size_t)3);
		if ((size_t)n & 3)
			memset(o->buf + at + n, 0, 4 - ((size_t)n & 3));
		uint8_t *p = o->buf + at - 12;
		uint32_t vals[3] = { (uint32_t)n, off + (uint64_t)n >= st.size, (uint32_t)n };

		for (int i = 0; i < 3; i++) {
			p[i * 4] = (uint8_t)(vals[i] >> 24);
			p[i * 4 + 1] = (uint8_t)(vals[i] >> 16);
			p[i * 4 + 2] = (uint8_t)(vals[i] >> 8);
			p[i * 4 + 3] = (uint8_t)vals[i];
		}
	}
	return RPC_SUCCESS;
fail:
	xout_u32(o, (uint32_t)status);
	put_post_attr(q, o, addr);
	return RPC_SUCCESS;
}

/* Is there room for @need more bytes without a doubt?  (fsmu exclusive) */
static bool surely_room(struct req *q, uint64_t need)
{
	struct nfs_vol *v = &q->s->vols[q->vol];
	double now = nfs_now();

	if (now - v->free_at > 1.0) {
		struct vmfs_statfs sf;

		if (vmfs_fs_statfs(q->fs, &sf))
			return false;
		v->free_bytes = sf.free_blocks * sf.block_size;
		v->free_at = now;
	}
	if (v->free_bytes < need + NFS_EARLY_MARGIN)
		return false;
	v->free_bytes -= need;
	return true;
}

/* A big UNSTABLE write whose permissions and lock are settled is answered
 * before its data is written (the client prepares its next call meanwhile);
 * fsmu stays held until the data is in, so no later call sees the file
 * without it.  Only with room to spare, so that ENOSPC cannot be the
 * outcome; an I/O error afterwards is reported by COMMIT.  The reply's
 * post-op attributes are left out (they are not known yet).
 * \return false when it could not be answered early (nothing done). */
static bool write_early(struct req *q, struct xdr_out *o, const struct vmfs_stat *st,
			uint32_t addr, const uint8_t *data, uint32_t dlen, uint64_t off)
{
	size_t at = o->len;
	int64_t n;

	if (!q->c->send_now || !surely_room(q, dlen))
		return false;
	xout_u32(o, NFS3_OK);
	put_pre(o, st);
	xout_u32(o, 0);            /* post-op attributes: not yet */
	xout_u32(o, dlen);
	xout_u32(o, UNSTABLE);
	put_wverf(o, q->s);
	if (!nfs_rpc_reply_early(q->c, o)) {
		o->len = at;
		q->s->vols[q->vol].free_bytes += dlen;
		return false;
	}
	n = vmfs_pwrite(q->fs, addr, data, dlen, off);
	if (n != (int64_t)dlen) {
		nfs_log(q->s, VMFS_LOG_ERR, "write of %u bytes at %" PRIu64 " to FD 0x%08x answered "
			"early failed (%s): COMMIT will report it", dlen, off, addr,
			strerror(n < 0 ? (int)-n : EIO));
		wlock_fail(q->s, q->vol, addr, n < 0 ? (int)n : -EIO);
	}
	wlock_mark(q->s, q->vol, addr, true);
	return true;
}

static int p_write(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct vmfs_stat st;
	const uint8_t *data;
	uint64_t off;
	uint32_t addr = 0, count, stable, dlen;
	bool have = false;
	int64_t n;
	int status, r;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	off = xin_u64(x);
	count = xin_u32(x);
	stable = xin_u32(x);
	data = xin_var(x, &dlen, NFS_MAXDATA);
	if (x->err || stable > FILE_SYNC)
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	if (status)
		goto fail;
	have = true;
	if (q->e.ro)
		status = NFS3ERR_ROFS;
	else if (is_dir(&st))
		status = NFS3ERR_ISDIR;
	else if (st.type != VMFS_TYPE_FILE)
		status = NFS3ERR_INVAL;
	else if (count != dlen)
		status = NFS3ERR_INVAL;
	else if (off > VMFS_MAX_FILE_SIZE || dlen > VMFS_MAX_FILE_SIZE - off)
		status = NFS3ERR_FBIG;
	else if (q->cred.uid != st.uid && !may(&q->cred, &st, MAY_W))
		status = NFS3ERR_ACCES;
	if (status)
		goto fail;
	r = wlock_take(q, addr);
	if (r) {
		status = errno_to_nfs(r);
		goto fail;
	}
	if (stable == UNSTABLE && dlen >= NFS_EARLY_MIN &&
	    write_early(q, o, &st, addr, data, dlen, off))
		return RPC_SUCCESS;
	n = dlen ? vmfs_pwrite(q->fs, addr, data, dlen, off) : 0;
	if (n < 0) {
		status = errno_to_nfs((int)n);
		goto fail;
	}
	if (stable != UNSTABLE) {
		r = vmfs_fs_sync(q->fs);
		if (r) {
			status = errno_to_nfs(r);
			goto fail;
		}
	}
	wlock_mark(q->s, q->vol, addr, stable == UNSTABLE);
	xout_u32(o, NFS3_OK);
	put_wcc(q, o, &st, addr);
	xout_u32(o, (uint32_t)n);
	xout_u32(o, stable == UNSTABLE ? UNSTABLE : FILE_SYNC);
	put_wverf(o, q->s);
	return RPC_SUCCESS;
fail:
	xout_u32(o, (uint32_t)status);
	put_wcc(q, o, have ? &st : NULL, have ? addr : 0);
	return RPC_SUCCESS;
}

/* Common start of CREATE/MKDIR/SYMLINK/MKNOD/REMOVE/RMDIR: the directory. */
static int dir_for_change(struct req *q, const struct wire_fh *fh, const char *name,
			  uint32_t *dir, struct vmfs_stat *dst, bool *have)
{
	int status = resolve(q, fh, dir, dst);

	if (status)
		return status;
	*have = true;
	if (!is_dir(dst))
		return NFS3ERR_NOTDIR;
	if (q->e.ro)
		return NFS3ERR_ROFS;
	status = check_name(name, false);
	if (status)
		return status;
	if (hidden(*dir, name))
		return NFS3ERR_ACCES;
	if (!may(&q->cred, dst, MAY_W | MAY_X))
		return NFS3ERR_ACCES;
	return NFS3_OK;
}

static void put_created(struct req *q, struct xdr_out *o, int status, uint32_t addr,
			const struct vmfs_stat *dpre, uint32_t dir)
{
	struct vmfs_stat st;

	xout_u32(o, (uint32_t)status);
	if (!status) {
		if (!vmfs_stat(q->fs, addr, &st)) {
			xout_u32(o, 1);
			put_fh(q, o, addr, st.gen);
			put_attr_st(q, o, &st);
		} else {
			xout_u32(o, 0);
			xout_u32(o, 0);
		}
	}
	put_wcc(q, o, dpre, dir);
}

enum { UNCHECKED = 0, GUARDED = 1, EXCLUSIVE = 2 };

static int p_create(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	char name[NAME_MAX_WIRE + 1];
	struct sattr a = { 0 };
	const uint8_t *verf = NULL;
	struct vmfs_stat dst, st;
	uint32_t dir = 0, addr = 0, mode, va = 0, vm = 0;
	bool have = false;
	int status, r;

	if (!decode_fh(x, &fh) || !decode_name(x, name))
		return RPC_GARBAGE_ARGS;
	mode = xin_u32(x);
	if (mode == EXCLUSIVE)
		verf = xin_fixed(x, 8);
	else if (mode <= GUARDED)
		decode_sattr(x, &a);
	else
		x->err = true;
	if (x->err)
		return RPC_GARBAGE_ARGS;
	if (verf) {
		va = (uint32_t)verf[0] << 24 | (uint32_t)verf[1] << 16 | (uint32_t)verf[2] << 8 | verf[3];
		vm = (uint32_t)verf[4] << 24 | (uint32_t)verf[5] << 16 | (uint32_t)verf[6] << 8 | verf[7];
	}
	status = dir_for_change(q, &fh, name, &dir, &dst, &have);
	if (status)
		goto reply;
	r = vmfs_lookup(q->fs, dir, name, &addr);
	if (r == 0) {
		r = vmfs_stat(q->fs, addr, &st);
		if (r) {
			status = errno_to_nfs(r);
		} else if (mode == GUARDED) {
			status = NFS3ERR_EXIST;
		} else if (mode == EXCLUSIVE) {
			/* a retransmitted create with the same verifier succeeds */
			status = (st.atime == va && st.mtime == vm && st.type == VMFS_TYPE_FILE)
				 ? NFS3_OK : NFS3ERR_EXIST;
		} else if (st.type != VMFS_TYPE_FILE) {
			status = is_dir(&st) ? NFS3ERR_ISDIR : NFS3ERR_EXIST;
		} else {
			/* UNCHECKED on an existing file: only the size is applied */
			struct sattr sz = { .set_size = a.set_size, .size = a.size };

			status = apply_sattr(q, addr, &st, &sz, false);
		}
		goto reply;
	}
	if (r != -ENOENT) {
		status = errno_to_nfs(r);
		goto reply;
	}
	r = vmfs_create(q->fs, dir, name, a.set_mode ? a.mode & 07777 : 0644, q->cred.uid,
			dst.mode & S_ISGID ? dst.gid : q->cred.gid, &addr);
	if (r) {
		status = errno_to_nfs(r);
		goto reply;
	}
	if (mode == EXCLUSIVE) {
		r = vmfs_setattr(q->fs, addr, VMFS_SET_ATIME | VMFS_SET_MTIME, 0, 0, 0, va, vm);
	} else if (a.set_size || a.atime_how || a.mtime_how || a.set_uid || a.set_gid) {
		a.set_mode = false;
		r = vmfs_stat(q->fs, addr, &st);
		if (!r)
			r = apply_sattr(q, addr, &st, &a, true) ? -EIO : 0;
	}
	if (r)
		status = errno_to_nfs(r);
reply:
	put_created(q, o, status, addr, have ? &dst : NULL, have ? dir : 0);
	return RPC_SUCCESS;
}

static int p_mkdir(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	char name[NAME_MAX_WIRE + 1];
	struct sattr a;
	struct vmfs_stat dst;
	uint32_t dir = 0, addr = 0;
	bool have = false;
	int status, r;

	if (!decode_fh(x, &fh) || !decode_name(x, name) || !decode_sattr(x, &a))
		return RPC_GARBAGE_ARGS;
	status = dir_for_change(q, &fh, name, &dir, &dst, &have);
	if (!status) {
		r = vmfs_mkdir(q->fs, dir, name, a.set_mode ? a.mode & 07777 : 0755, q->cred.uid,
			       dst.mode & S_ISGID ? dst.gid : q->cred.gid, &addr);
		status = errno_to_nfs(r);
	}
	put_created(q, o, status, addr, have ? &dst : NULL, have ? dir : 0);
	return RPC_SUCCESS;
}

static int p_symlink(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	char name[NAME_MAX_WIRE + 1], target[PATH_MAX_WIRE + 1];
	struct sattr a;
	struct vmfs_stat dst;
	uint32_t dir = 0, addr = 0;
	bool have = false;
	int status, r;

	if (!decode_fh(x, &fh) || !decode_name(x, name) || !decode_sattr(x, &a) ||
	    !xin_str(x, target, PATH_MAX_WIRE))
		return RPC_GARBAGE_ARGS;
	status = dir_for_change(q, &fh, name, &dir, &dst, &have);
	if (!status && (!target[0] || strlen(target) > 1023))
		status = !target[0] ? NFS3ERR_INVAL : NFS3ERR_NAMETOOLONG;
	if (!status) {
		r = vmfs_symlink(q->fs, dir, name, target, &addr);
		if (!r)
			r = vmfs_setattr(q->fs, addr, VMFS_SET_UID | VMFS_SET_GID |
					 (a.set_mode ? VMFS_SET_MODE : 0), a.mode & 07777,
					 q->cred.uid, q->cred.gid, 0, 0);
		status = errno_to_nfs(r);
	}
	put_created(q, o, status, addr, have ? &dst : NULL, have ? dir : 0);
	return RPC_SUCCESS;
}

static int p_mknod(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	char name[NAME_MAX_WIRE + 1];
	struct sattr a;
	struct vmfs_stat dst;
	uint32_t dir = 0, type;
	bool have = false;
	int status;

	if (!decode_fh(x, &fh) || !decode_name(x, name))
		return RPC_GARBAGE_ARGS;
	type = xin_u32(x);
	if (type == 3 || type == 4) {          /* NF3CHR, NF3BLK: sattr + specdata3 */
		decode_sattr(x, &a);
		xin_u32(x);
		xin_u32(x);
	} else if (type == 6 || type == 7) {   /* NF3SOCK, NF3FIFO: sattr */
		decode_sattr(x, &a);
	} else if (type < 1 || type > 7) {
		x->err = true;
	}
	if (x->err)
		return RPC_GARBAGE_ARGS;
	status = dir_for_change(q, &fh, name, &dir, &dst, &have);
	if (!status)      /* VMFS has no device, socket or FIFO files */
		status = (type == 3 || type == 4 || type == 6 || type == 7) ? NFS3ERR_NOTSUPP
									      : NFS3ERR_BADTYPE;
	put_created(q, o, status, 0, have ? &dst : NULL, have ? dir : 0);
	return RPC_SUCCESS;
}

static int p_remove(struct req *q, struct xdr_in *x, struct xdr_out *o, bool rmdir)
{
	struct wire_fh fh;
	char name[NAME_MAX_WIRE + 1];
	struct vmfs_stat dst, st;
	uint32_t dir = 0, addr;
	bool have = false;
	int status, r;

	if (!decode_fh(x, &fh) || !decode_name(x, name))
		return RPC_GARBAGE_ARGS;
	status = dir_for_change(q, &fh, name, &dir, &dst, &have);
	if (status == NFS3ERR_EXIST)   /* "." / ".." */
		status = rmdir ? NFS3ERR_INVAL : NFS3ERR_ACCES;
	if (status)
		goto reply;
	r = vmfs_lookup(q->fs, dir, name, &addr);
	if (!r)
		r = vmfs_stat(q->fs, addr, &st);
	if (r) {
		status = errno_to_nfs(r);
		goto reply;
	}
	/* sticky directories: only the owner of the entry or the directory */
	if ((dst.mode & S_ISVTX) && q->cred.uid && q->cred.uid != st.uid && q->cred.uid != dst.uid) {
		status = NFS3ERR_ACCES;
		goto reply;
	}
	if (!rmdir)
		wlock_drop(q->s, q->vol, addr);
	r = rmdir ? vmfs_rmdir(q->fs, dir, name) : vmfs_unlink(q->fs, dir, name);
	status = errno_to_nfs(r);
reply:
	xout_u32(o, (uint32_t)status);
	put_wcc(q, o, have ? &dst : NULL, have ? dir : 0);
	return RPC_SUCCESS;
}

static int p_rename(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh f1, f2;
	char n1[NAME_MAX_WIRE + 1], n2[NAME_MAX_WIRE + 1];
	struct vmfs_stat s1, s2;
	uint32_t d1 = 0, d2 = 0, victim;
	bool h1 = false, h2 = false;
	struct nfs_export e1;
	int status, r;

	if (!decode_fh(x, &f1) || !decode_name(x, n1) || !decode_fh(x, &f2) || !decode_name(x, n2))
		return RPC_GARBAGE_ARGS;
	status = dir_for_change(q, &f1, n1, &d1, &s1, &h1);
	if (status)
		goto reply;
	e1 = q->e;
	status = dir_for_change(q, &f2, n2, &d2, &s2, &h2);
	if (!status && e1.id != q->e.id)
		status = NFS3ERR_XDEV;
	if (status)
		goto reply;
	if (!vmfs_lookup(q->fs, d2, n2, &victim))
		wlock_drop(q->s, q->vol, victim);
	r = vmfs_rename(q->fs, d1, n1, d2, n2);
	status = errno_to_nfs(r);
reply:
	xout_u32(o, (uint32_t)status);
	put_wcc(q, o, h1 ? &s1 : NULL, h1 ? d1 : 0);
	put_wcc(q, o, h2 ? &s2 : NULL, h2 ? d2 : 0);
	return RPC_SUCCESS;
}

static int p_link(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh ff, fd;
	char name[NAME_MAX_WIRE + 1];
	struct vmfs_stat fst, dst;
	struct nfs_export e1;
	uint32_t file = 0, dir = 0;
	bool have = false;
	int status, r;

	if (!decode_fh(x, &ff) || !decode_fh(x, &fd) || !decode_name(x, name))
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &ff, &file, &fst);
	if (status) {
		file = 0;
		goto reply;
	}
	e1 = q->e;
	status = dir_for_change(q, &fd, name, &dir, &dst, &have);
	if (!status && e1.id != q->e.id)
		status = NFS3ERR_XDEV;
	if (!status && is_dir(&fst))
		status = NFS3ERR_ISDIR;
	if (!status) {
		r = vmfs_link(q->fs, file, dir, name);
		status = errno_to_nfs(r);
	}
reply:
	xout_u32(o, (uint32_t)status);
	put_post_attr(q, o, file);
	put_wcc(q, o, have ? &dst : NULL, have ? dir : 0);
	return RPC_SUCCESS;
}

/* ---- READDIR / READDIRPLUS ------------------------------------------------------- */

struct dent {
	uint32_t addr, gen;
	uint64_t cookie;
	char name[128];
};

struct walk {
	struct req *q;
	uint32_t dir;
	uint64_t cookie, idx;
	struct dent *v;
	size_t n, max;
	bool more;
};

static int walk_cb(void *ctx, const struct vmfs_dirent *de)
{
	struct walk *w = ctx;
	uint64_t idx = ++w->idx;   /* cookie of an entry = its position, from 1 */

	if (idx <= w->cookie || hidden(w->dir, de->name))
		return 0;
	if (w->n == w->max) {
		w->more = true;
		return 1;
	}
	struct dent *d = &w->v[w->n++];

	d->addr = de->addr;
	d->gen = de->gen;
	d->cookie = idx;
	snprintf(d->name, sizeof(d->name), "%.127s", de->name);
	return 0;
}

static int p_readdir(struct req *q, struct xdr_in *x, struct xdr_out *o, bool plus)
{
	struct wire_fh fh;
	struct vmfs_stat dst;
	const uint8_t *cv;
	uint64_t cookie, verf = 0, cverf = 0;
	uint32_t dir = 0, dircount = 0, maxcount;
	struct walk w = { .q = q };
	size_t used;
	int status, r;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	cookie = xin_u64(x);
	cv = xin_fixed(x, 8);
	if (plus)
		dircount = xin_u32(x);
	maxcount = xin_u32(x);
	if (x->err)
		return RPC_GARBAGE_ARGS;
	for (int i = 0; i < 8; i++)
		cverf = cverf << 8 | cv[i];
	(void)dircount;
	status = resolve(q, &fh, &dir, &dst);
	if (status) {
		dir = 0;
		goto fail;
	}
	if (!is_dir(&dst)) {
		status = NFS3ERR_NOTDIR;
		goto fail;
	}
	if (!may(&q->cred, &dst, MAY_R)) {
		status = NFS3ERR_ACCES;
		goto fail;
	}
	verf = (uint64_t)dst.mtime << 32 | (uint32_t)dst.size;
	if (cookie && cverf && cverf != verf) {
		status = NFS3ERR_BAD_COOKIE;
		goto fail;
	}
	if (maxcount > NFS_MAXDATA)
		maxcount = NFS_MAXDATA;
	if (maxcount < 256) {
		status = NFS3ERR_TOOSMALL;
		goto fail;
	}
	/* at most as many entries as the smallest encoding could fit */
	w.max = maxcount / (plus ? 120 : 24) + 1;
	w.v = malloc(sizeof(*w.v) * w.max);
	if (!w.v)
		return RPC_SYSTEM_ERR;
	w.dir = dir;
	w.cookie = cookie;
	r = vmfs_readdir(q->fs, dir, walk_cb, &w);
	if (r < 0) {
		free(w.v);
		status = errno_to_nfs(r);
		goto fail;
	}
	if (cookie > w.idx) {      /* beyond the end: the directory shrank */
		free(w.v);
		status = NFS3ERR_BAD_COOKIE;
		goto fail;
	}
	size_t start = o->len;

	xout_u32(o, NFS3_OK);
	put_attr_st(q, o, &dst);
	xout_u64(o, verf);
	used = o->len - start + 8;
	size_t i;

	for (i = 0; i < w.n; i++) {
		struct dent *d = &w.v[i];
		struct vmfs_stat st;
		size_t nl = strlen(d->name), esz = 4 + 8 + 4 + ((nl + 3) & ~(size_t)3) + 8;
		size_t mark = o->len;
		bool ok;

		if (plus) {
			uint32_t a = d->addr;

			if (!strcmp(d->name, "..") && dir == export_root(q))
				a = dir;
			ok = !vmfs_stat(q->fs, a, &st);
			if (used + esz + (ok ? 4 + 84 + 4 + 4 + NFS_FH_LEN : 8) > maxcount)
				break;
			xout_u32(o, 1);
			xout_u64(o, ok ? (uint64_t)st.gen << 32 | a : d->addr);
			xout_var(o, d->name, (uint32_t)nl);
			xout_u64(o, d->cookie);
			if (ok) {
				put_attr_st(q, o, &st);
				xout_u32(o, 1);
				put_fh(q, o, a, st.gen);
			} else {
				xout_u32(o, 0);
				xout_u32(o, 0);
			}
		} else {
			if (used + esz > maxcount)
				break;
			xout_u32(o, 1);
			xout_u64(o, (uint64_t)d->gen << 32 | d->addr);
			xout_var(o, d->name, (uint32_t)nl);
			xout_u64(o, d->cookie);
		}
		used += o->len - mark;
	}
	if (i == 0 && w.n) {
		o->len = start;
		free(w.v);
		status = NFS3ERR_TOOSMALL;
		goto fail;
	}
	xout_u32(o, 0);            /* no more entries in this reply */
	xout_u32(o, i == w.n && !w.more);   /* eof */
	free(w.v);
	return RPC_SUCCESS;
fail:
	xout_u32(o, (uint32_t)status);
	put_post_attr(q, o, dir);
	return RPC_SUCCESS;
}

/* ---- file system info --------------------------------------------------------------- */

static int p_fsstat(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct vmfs_stat st;
	struct vmfs_statfs sf;
	uint32_t addr = 0;
	int status, r;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	if (!status) {
		r = vmfs_fs_statfs(q->fs, &sf);
		status = errno_to_nfs(r);
	}
	xout_u32(o, (uint32_t)status);
	if (status) {
		put_post_attr(q, o, 0);
		return RPC_SUCCESS;
	}
	put_attr_st(q, o, &st);
	xout_u64(o, sf.total_blocks * sf.block_size);
	xout_u64(o, sf.free_blocks * sf.block_size);
	xout_u64(o, sf.free_blocks * sf.block_size);
	xout_u64(o, sf.total_fds);
	xout_u64(o, sf.free_fds);
	xout_u64(o, sf.free_fds);
	xout_u32(o, 0);            /* invarsec */
	return RPC_SUCCESS;
}

static int p_fsinfo(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct vmfs_stat st;
	uint32_t addr = 0;
	int status;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	xout_u32(o, (uint32_t)status);
	if (status) {
		put_post_attr(q, o, 0);
		return RPC_SUCCESS;
	}
	put_attr_st(q, o, &st);
	xout_u32(o, NFS_RTMAX);    /* rtmax */
	xout_u32(o, NFS_RTMAX);    /* rtpref */
	xout_u32(o, 4096);         /* rtmult */
	xout_u32(o, NFS_MAXDATA);  /* wtmax */
	xout_u32(o, NFS_MAXDATA);  /* wtpref */
	xout_u32(o, 4096);         /* wtmult */
	xout_u32(o, 65536);        /* dtpref */
	xout_u64(o, VMFS_MAX_FILE_SIZE);
	xout_u32(o, 1);            /* time_delta: one second */
	xout_u32(o, 0);
	xout_u32(o, 0x1 | 0x2 | 0x8 | 0x10);   /* LINK SYMLINK HOMOGENEOUS CANSETTIME */
	return RPC_SUCCESS;
}

static int p_pathconf(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct vmfs_stat st;
	uint32_t addr = 0;
	int status;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	xout_u32(o, (uint32_t)status);
	if (status) {
		put_post_attr(q, o, 0);
		return RPC_SUCCESS;
	}
	put_attr_st(q, o, &st);
	xout_u32(o, 65535);        /* linkmax */
	xout_u32(o, 127);          /* name_max */
	xout_u32(o, 1);            /* no_trunc */
	xout_u32(o, 1);            /* chown_restricted */
	xout_u32(o, 0);            /* case_insensitive */
	xout_u32(o, 1);            /* case_preserving */
	return RPC_SUCCESS;
}

static int p_commit(struct req *q, struct xdr_in *x, struct xdr_out *o)
{
	struct wire_fh fh;
	struct vmfs_stat st;
	uint32_t addr = 0;
	bool have = false;
	int status, r;

	if (!decode_fh(x, &fh))
		return RPC_GARBAGE_ARGS;
	xin_u64(x);
	xin_u32(x);
	if (x->err)
		return RPC_GARBAGE_ARGS;
	status = resolve(q, &fh, &addr, &st);
	if (!status) {
		have = true;
		if (is_dir(&st))
			status = NFS3ERR_ISDIR;
	}
	if (!status) {
		r = vmfs_fs_sync(q->fs);
		if (!r)
			r = wlock_take_err(q->s, q->vol, addr);
		status = errno_to_nfs(r);
		if (!r)
			wlock_mark(q->s, q->vol, addr, false);
	}
	xout_u32(o, (uint32_t)status);
	put_wcc(q, o, have ? &st : NULL, have ? addr : 0);
	if (!status)
		put_wverf(o, q->s);
	return RPC_SUCCESS;
}

int nfs3_dispatch(struct nfs_call *c, uint32_t proc, struct xdr_in *x, struct xdr_out *o)
{
	struct req *q;
	int r;

	if (proc == 0)
		return RPC_SUCCESS;
	if (proc > 21)
		return RPC_PROC_UNAVAIL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return RPC_SYSTEM_ERR;
	q->c = c;
	q->s = c->s;
	/* calls that change nothing share the filesystem with each other */
	if (proc == 1 || (proc >= 3 && proc <= 6) || (proc >= 16 && proc <= 20)) {
		pthread_rwlock_rdlock(&c->s->fsmu);
	} else {
		pthread_rwlock_wrlock(&c->s->fsmu);
	}
	switch (proc) {
	case 1: r = p_getattr(q, x, o); break;
	case 2: r = p_setattr(q, x, o); break;
	case 3: r = p_lookup(q, x, o); break;
	case 4: r = p_access(q, x, o); break;
	case 5: r = p_readlink(q, x, o); break;
	case 6: r = p_read(q, x, o); break;
	case 7: r = p_write(q, x, o); break;
	case 8: r = p_create(q, x, o); break;
	case 9: r = p_mkdir(q, x, o); break;
	case 10: r = p_symlink(q, x, o); break;
	case 11: r = p_mknod(q, x, o); break;
	case 12: r = p_remove(q, x, o, false); break;
	case 13: r = p_remove(q, x, o, true); break;
	case 14: r = p_rename(q, x, o); break;
	case 15: r = p_link(q, x, o); break;
	case 16: r = p_readdir(q, x, o, false); break;
	case 17: r = p_readdir(q, x, o, true); break;
	case 18: r = p_fsstat(q, x, o); break;
	case 19: r = p_fsinfo(q, x, o); break;
	case 20: r = p_pathconf(q, x, o); break;
	default: r = p_commit(q, x, o); break;
	}
	pthread_rwlock_unlock(&c->s->fsmu);
	free(q);
	return r;
}
