/* vmfs-fuse: the FUSE low-level operations over the filesystem API. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmfs_fuse.h"

#define VF(req) ((struct vf *)fuse_req_userdata(req))
#define FH_WRITE 0x1u
#define FH_DIRECT 0x2u
#define ZERO_CHUNK (1u << 20)
#define VF_OPEN_RETRY_MS 1000
#define VF_PREALLOC (8ull << 20)
#define VF_OPEN_RETRY_STEP_MS 25
#define READ_SLACK 8192u   /* read_lv: a device sector before and after */

static const char *const sys_names[] = {
	".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf", ".vh.sf", ".pb2.sf", ".sdd.sf", ".jbc.sf",
};

void vf_log(void *ctx, int level, const char *msg)
{
	struct vf *v = ctx;

	if (level > VMFS_LOG_WARN && !(v && v->debug))
		return;
	fprintf(stderr, "vmfs-fuse: %s\n", msg);
}

bool vf_is_sysname(uint32_t dir, const char *name)
{
	if (dir != VMFS_ROOT_ADDR)
		return false;
	for (size_t i = 0; i < sizeof(sys_names) / sizeof(sys_names[0]); i++)
		if (!strcmp(name, sys_names[i]))
			return true;
	return false;
}

bool vf_is_sysfile(const struct vf *v, uint32_t addr)
{
	for (unsigned i = 0; i < v->nsys; i++)
		if (v->sys_addr[i] == addr)
			return true;
	return false;
}

static int check_name(const char *name)
{
	size_t l = strlen(name);

	if (!l)
		return -ENOENT;
	if (l > VF_NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

/* ---- per-thread aligned buffers ------------------------------------------------ */

static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;

struct tbuf {
	void *p;
	size_t cap;
};

static void tbuf_free(void *p)
{
	struct tbuf *b = p;

	if (b) {
		free(b->p);
		free(b);
	}
}

static void buf_key_init(void)
{
	pthread_key_create(&buf_key, tbuf_free);
}

/* A 4 KiB-aligned buffer of at least @len bytes, owned by this thread. */
static void *tbuf_get(size_t len)
{
	struct tbuf *b;

	pthread_once(&buf_once, buf_key_init);
	b = pthread_getspecific(buf_key);
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		pthread_setspecific(buf_key, b);
	}
	if (b->cap < len) {
		void *p;
		size_t cap = (len + 65535) & ~(size_t)65535;

		if (posix_memalign(&p, 4096, cap))
			return NULL;
		free(b->p);
		b->p = p;
		b->cap = cap;
	}
	return b->p;
}

/* ---- attributes -------------------------------------------------------------------- */

static void fill_stat(struct vf *v, const struct vmfs_stat *vs, struct stat *st)
{
	struct vf_node *n = vf_node_find(v, vs->addr);

	memset(st, 0, sizeof(*st));
	st->st_ino = vf_ino(vs->addr);
	st->st_mode = vs->mode;
	st->st_nlink = vs->nlink;
	st->st_uid = vs->uid;
	st->st_gid = vs->gid;
	st->st_size = (off_t)vs->size;
	st->st_blocks = (blkcnt_t)vs->blocks512;
	st->st_blksize = 1 << 20;
	st->st_atim.tv_sec = vs->atime;
	st->st_mtim.tv_sec = vs->mtime;
	st->st_ctim.tv_sec = vs->ctime;
	if (n) {
		pthread_mutex_lock(&v->mu);
		if (n->dirty && n->gen == vs->gen)
			st->st_mtim.tv_sec = st->st_ctim.tv_sec = n->dirty_time;
		if (n->size_valid && n->gen == vs->gen)
			st->st_size = (off_t)n->size;
		pthread_mutex_unlock(&v->mu);
	}
}

static int do_stat(struct vf *v, uint32_t addr, struct stat *st, uint32_t *gen)
{
	struct vmfs_stat vs;
	int r = vmfs_stat(v->fs, addr, &vs);

	if (r)
		return r;
	fill_stat(v, &vs, st);
	if (gen)
		*gen = vs.gen;
	return 0;
}

/* Look @addr up for the kernel: one more reference on success. */
static int make_entry(struct vf *v, uint32_t addr, struct fuse_entry_param *e)
{
	uint32_t gen;
	int r;

	memset(e, 0, sizeof(*e));
	r = do_stat(v, addr, &e->attr, &gen);
	if (r)
		return r;
	if (!vf_node_ref(v, addr, gen, 1))
		return -ENOMEM;
	e->ino = vf_ino(addr);
	e->generation = gen;
	e->attr_timeout = v->attr_timeout;
	e->entry_timeout = v->entry_timeout;
	return 0;
}

static void reply_entry(fuse_req_t req, struct vf *v, uint32_t addr)
{
	struct fuse_entry_param e;
	int r = make_entry(v, addr, &e);

	if (r)
		fuse_reply_err(req, -r);
	else if (fuse_reply_entry(req, &e) == -ENOENT)
		vf_node_forget(v, addr, 1);   /* interrupted */
}

/* Record in the FD what the direct writes changed: the size (larger after
 * appends inside allocated blocks; smaller than the FD's when blocks were
 * preallocated ahead of sequential appends, which this trims) and the
 * mtime.  The caller holds the layout lock exclusively (@held) or we take
 * it: trimming frees blocks a direct write could otherwise be using. */
static int commit_core(struct vf *v, struct vf_node *n)
{
	uint64_t size = 0;
	bool resize = false;
	uint32_t t;
	int r;

	pthread_mutex_lock(&v->mu);
	if (n->size_valid && n->size != n->disk_size) {
		resize = true;
		size = n->size;
	}
	if (!resize && !n->dirty) {
		pthread_mutex_unlock(&v->mu);
		return 0;
	}
	t = n->dirty_time;
	n->dirty = false;
	pthread_mutex_unlock(&v->mu);
	if (resize) {
		/* ordered, like the fs: data written in place reaches the device
		 * before the size that exposes it is committed */
		r = 0;
		if (size > n->disk_size)
			r = vmfs_bdev_flush(v->bd);
		if (!r)
			r = vmfs_truncate(v->fs, n->addr, size);   /* also sets mtime */
		pthread_mutex_lock(&v->mu);
		if (!r) {
			n->disk_size = size;
			vf_layout_changed(n);
		} else {
			n->dirty = true;
		}
		pthread_mutex_unlock(&v->mu);
	} else {
		r = vmfs_setattr(v->fs, n->addr, VMFS_SET_MTIME, 0, 0, 0, 0, t);
	}
	if (r == -ENOENT)
		r = 0;
	if (r)
		fprintf(stderr, "vmfs-fuse: file 0x%08x: cannot record size/mtime: %s\n", n->addr,
			strerror(-r));
	return r;
}

static int commit_pending(struct vf *v, struct vf_node *n, bool held)
{
	bool any;
	int r;

	pthread_mutex_lock(&v->mu);
	any = n->dirty || (n->size_valid && n->size != n->disk_size);
	pthread_mutex_unlock(&v->mu);
	if (!any)
		return 0;
	if (held)
		return commit_core(v, n);
	pthread_rwlock_wrlock(&n->layout);
	r = commit_core(v, n);
	pthread_rwlock_unlock(&n->layout);
	return r;
}

/* At unmount: record what files still open have pending (the kernel sends
 * no release for them once the session is gone). */
void vf_commit_all(struct vf *v)
{
	for (size_t i = 0; i < v->nbuckets; i++)
		for (struct vf_node *n = v->buckets[i]; n; n = n->next)
			commit_pending(v, n, false);
}

/* Commit pending changes of @addr if this mount has any. */
static int commit_addr(struct vf *v, uint32_t addr)
{
	struct vf_node *n = vf_node_find(v, addr);

	return n ? commit_pending(v, n, false) : 0;
}

/* ---- lookup / forget / getattr / setattr ---------------------------------------------- */

static void op_init(void *ud, struct fuse_conn_info *conn)
{
	struct vf *v = ud;

	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;   /* other hosts must see our writes */
	if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_HANDLE_KILLPRIV)
		conn->want |= FUSE_CAP_HANDLE_KILLPRIV;
	(void)v;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vf *v = VF(req);
	uint32_t a;
	int r = check_name(name);

	if (!r)
		r = vmfs_lookup(v->fs, vf_addr(parent), name, &a);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	reply_entry(req, v, a);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	vf_node_forget(VF(req), vf_addr(ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *fl)
{
	for (size_t i = 0; i < count; i++)
		vf_node_forget(VF(req), vf_addr(fl[i].ino), fl[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	struct stat st;
	int r = do_stat(v, vf_addr(ino), &st, NULL);

	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, v->attr_timeout);
}

/* Change the size of @addr; holds the layout lock against direct writes. */
static int set_size(struct vf *v, uint32_t addr, uint64_t size)
{
	struct vf_node *n = vf_node_find(v, addr);
	int r;

	if (n)
		pthread_rwlock_wrlock(&n->layout);
	r = n ? commit_pending(v, n, true) : 0;
	if (!r)
		r = vmfs_truncate(v->fs, addr, size);
	if (n) {
		pthread_mutex_lock(&v->mu);
		vf_layout_changed(n);
		if (!r && n->size_valid)
			n->size = n->disk_size = size;
		pthread_mutex_unlock(&v->mu);
		pthread_rwlock_unlock(&n->layout);
	}
	return r;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	uint32_t addr = vf_addr(ino);
	unsigned mask = 0;
	uint32_t now = (uint32_t)time(NULL), at = 0, mt = 0;
	struct vf_node *n;
	struct stat st;
	int r = 0;

	if (v->ro) {
		r = -EROFS;
		goto out;
	}
	if (vf_is_sysfile(v, addr)) {
		r = -EPERM;
		goto out;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		r = set_size(v, addr, (uint64_t)attr->st_size);
		if (r == -EPERM)
			r = -EINVAL;   /* not a regular file */
		if (r)
			goto out;
	}
	if (to_set & FUSE_SET_ATTR_MODE)
		mask |= VMFS_SET_MODE;
	if (to_set & FUSE_SET_ATTR_UID)
		mask |= VMFS_SET_UID;
	if (to_set & FUSE_SET_ATTR_GID)
		mask |= VMFS_SET_GID;
	if (to_set & FUSE_SET_ATTR_ATIME) {
		mask |= VMFS_SET_ATIME;
		at = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? now : (uint32_t)attr->st_atim.tv_sec;
	}
	if (to_set & FUSE_SET_ATTR_MTIME) {
		/* writes made before an explicit time must not override it later */
		r = commit_addr(v, addr);
		if (r)
			goto out;
		mask |= VMFS_SET_MTIME;
		mt = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? now : (uint32_t)attr->st_mtim.tv_sec;
		n = vf_node_find(v, addr);
		if (n) {
			/* an explicit time wins over writes made before it */
			pthread_mutex_lock(&v->mu);
			n->dirty = false;
			pthread_mutex_unlock(&v->mu);
		}
	}
	if (mask || (to_set & FUSE_SET_ATTR_CTIME))
		r = vmfs_setattr(v->fs, addr, mask, attr->st_mode & 07777, attr->st_uid,
				 attr->st_gid, at, mt);
out:
	if (!r)
		r = do_stat(v, addr, &st, NULL);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, v->attr_timeout);
	(void)fi;
}

/* ---- namespace ------------------------------------------------------------------------ */

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct vf *v = VF(req);
	const struct fuse_ctx *c = fuse_req_ctx(req);
	uint32_t a;
	int r = check_name(name);

	if (!r && v->ro)
		r = -EROFS;
	if (!r)
		r = vmfs_mkdir(v->fs, vf_addr(parent), name, mode & 07777, c->uid, c->gid, &a);
	if (r)
		fuse_reply_err(req, -r);
	else
		reply_entry(req, v, a);
}

/* VMFS stores regular files, directories and symlinks only: device nodes,
 * FIFOs and sockets cannot be created (EPERM, as on vfat). */
static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct vf *v = VF(req);
	const struct fuse_ctx *c = fuse_req_ctx(req);
	uint32_t dir = vf_addr(parent), a;
	int r = check_name(name);

	if (!r && v->ro)
		r = -EROFS;
	if (!r && !S_ISREG(mode))
		r = -EPERM;
	if (!r && vf_is_sysname(dir, name))
		r = -EEXIST;
	if (!r)
		r = vmfs_create(v->fs, dir, name, mode & 07777, c->uid, c->gid, &a);
	if (r)
		fuse_reply_err(req, -r);
	else
		reply_entry(req, v, a);
	(void)rdev;
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct vf *v = VF(req);
	const struct fuse_ctx *c = fuse_req_ctx(req);
	uint32_t a;
	int r = check_name(name);

	if (!r && v->ro)
		r = -EROFS;
	if (!r)
		r = vmfs_symlink(v->fs, vf_addr(parent), name, link, &a);
	if (!r && (c->uid || c->gid))
		vmfs_setattr(v->fs, a, VMFS_SET_UID | VMFS_SET_GID, 0, c->uid, c->gid, 0, 0);
	if (r)
		fuse_reply_err(req, -r);
	else
		reply_entry(req, v, a);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vf *v = VF(req);
	char buf[4097];
	int r = vmfs_readlink(v->fs, vf_addr(ino), buf, sizeof(buf));

	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_readlink(req, buf);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct vf *v = VF(req);
	uint32_t addr = vf_addr(ino);
	int r = check_name(newname);

	if (!r && v->ro)
		r = -EROFS;
	if (!r && vf_is_sysfile(v, addr))
		r = -EPERM;
	if (!r)
		r = vmfs_link(v->fs, addr, vf_addr(newparent), newname);
	if (r)
		fuse_reply_err(req, -r);
	else
		reply_entry(req, v, addr);
}

/* If @name in @dir names a file this mount has open and this is its last
 * link, rename it out of the way instead (removed on its last release), so
 * open handles keep working as POSIX promises.  \return 1 when hidden. */
static int hide_if_open(struct vf *v, uint32_t dir, const char *name)
{
	struct vmfs_stat vs;
	struct vf_node *n;
	char hidden[64];
	uint32_t a;
	bool busy;
	int r;

	if (vmfs_lookup(v->fs, dir, name, &a))
		return 0;
	n = vf_node_find(v, a);
	if (!n)
		return 0;
	pthread_mutex_lock(&v->mu);
	busy = n->opens > 0 && !n->hidden;
	pthread_mutex_unlock(&v->mu);
	if (!busy || vmfs_stat(v->fs, a, &vs) || vs.type == VMFS_TYPE_DIR || vs.nlink != 1)
		return 0;
	snprintf(hidden, sizeof(hidden), ".vmfs-fuse-hidden-%08x-%u", a, vs.gen);
	r = vmfs_rename(v->fs, dir, name, dir, hidden);
	if (r)
		return r;
	pthread_mutex_lock(&v->mu);
	n->hidden = strdup(hidden);
	n->hidden_dir = dir;
	pthread_mutex_unlock(&v->mu);
	return 1;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vf *v = VF(req);
	uint32_t dir = vf_addr(parent);
	int r = check_name(name);

	if (!r && v->ro)
		r = -EROFS;
	if (!r && vf_is_sysname(dir, name))
		r = -EPERM;
	if (!r)
		r = hide_if_open(v, dir, name);
	if (r == 0)
		r = vmfs_unlink(v->fs, dir, name);
	fuse_reply_err(req, r > 0 ? 0 : -r);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vf *v = VF(req);
	uint32_t dir = vf_addr(parent);
	int r = check_name(name);

	if (!r && v->ro)
		r = -EROFS;
	if (!r && vf_is_sysname(dir, name))
		r = -EPERM;
	if (!r)
		r = vmfs_rmdir(v->fs, dir, name);
	fuse_reply_err(req, -r);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct vf *v = VF(req);
	uint32_t sd = vf_addr(parent), dd = vf_addr(newparent), a;
	int r = check_name(name);

	if (!r)
		r = check_name(newname);
	if (!r && (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)))
		r = -EINVAL;   /* RENAME_WHITEOUT: no whiteouts in VMFS */
	if (!r && v->ro)
		r = -EROFS;
	if (!r && (vf_is_sysname(sd, name) || vf_is_sysname(dd, newname)))
		r = -EPERM;
	if (!r && (flags & RENAME_EXCHANGE)) {
		/* both names stay, nothing is unlinked: one transaction in the fs */
		fuse_reply_err(req, -vmfs_rename_exchange(v->fs, sd, name, dd, newname));
		return;
	}
	if (!r && (flags & RENAME_NOREPLACE) && vmfs_lookup(v->fs, dd, newname, &a) == 0)
		r = -EEXIST;
	if (!r && !(sd == dd && !strcmp(name, newname))) {
		uint32_t sa;

		/* a replaced target this mount has open stays readable */
		if (vmfs_lookup(v->fs, sd, name, &sa) == 0 &&
		    vmfs_lookup(v->fs, dd, newname, &a) == 0 && sa != a) {
			struct vmfs_stat ss, ds;

			if (!vmfs_stat(v->fs, sa, &ss) && !vmfs_stat(v->fs, a, &ds) &&
			    (ss.type == VMFS_TYPE_DIR) == (ds.type == VMFS_TYPE_DIR)) {
				r = hide_if_open(v, dd, newname);
				if (r > 0)
					r = 0;
			}
		}
	}
	if (!r)
		r = vmfs_rename(v->fs, sd, name, dd, newname);
	fuse_reply_err(req, -r);
}

/* ---- files ---------------------------------------------------------------------------- */

static bool wants_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* Take the cluster lock for writing and register the handle. */
static int open_node(struct vf *v, uint32_t addr, uint32_t gen, struct fuse_file_info *fi)
{
	bool w = wants_write(fi->flags);
	struct vf_node *n;
	int r;

	if (w) {
		struct vmfs_lock_conflict c;

		/* FUSE sends release after close() returns: a holder that just
		 * closed the file on another host may need a moment to let go. */
		for (int tries = 0;; tries++) {
			memset(&c, 0, sizeof(c));
			r = vmfs_host_lock_file(v->host, addr, VMFS_LM_EXCL, &c);
			if (r != -EBUSY || tries * VF_OPEN_RETRY_STEP_MS >= VF_OPEN_RETRY_MS)
				break;
			usleep(VF_OPEN_RETRY_STEP_MS * 1000);
		}
		if (r == -EBUSY) {
			char u[40];
			const uint8_t *b = c.uuid;

			snprintf(u, sizeof(u), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
				 "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5], b[6],
				 b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
			fprintf(stderr, "vmfs-fuse: file 0x%08x is locked by host %s (slot %d)\n",
				addr, u, c.slot);
		}
		if (r)
			return r;
	}
	n = vf_node_open(v, addr, gen, w);
	if (!n) {
		if (w)
			vmfs_host_unlock_file(v->host, addr);
		return -ENOMEM;
	}
	fi->fh = (w ? FH_WRITE : 0) | ((fi->flags & O_DIRECT) ? FH_DIRECT : 0);
	fi->direct_io = v->direct_io;
	fi->keep_cache = 0;   /* close-to-open: drop pages another host may have changed */
	return 0;
}

static void undo_open(struct vf *v, uint32_t addr, struct fuse_file_info *fi)
{
	struct vf_node *n = vf_node_find(v, addr);
	bool w = fi->fh & FH_WRITE, last_w, last;

	if (n) {
		vf_node_close(v, n, w, &last_w, &last);
		vf_node_maybe_free(v, n);
	}
	if (w)
		vmfs_host_unlock_file(v->host, addr);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	uint32_t addr = vf_addr(ino);
	struct vmfs_stat vs;
	int r;

	r = vmfs_stat(v->fs, addr, &vs);
	if (!r && vs.type == VMFS_TYPE_DIR)
		r = -EISDIR;
	if (!r && wants_write(fi->flags)) {
		if (v->ro)
			r = -EROFS;
		else if (vf_is_sysfile(v, addr) || vs.type != VMFS_TYPE_FILE)
			r = -EPERM;
	}
	if (!r)
		r = open_node(v, addr, vs.gen, fi);
	if (r)
		fuse_reply_err(req, -r);
	else if (fuse_reply_open(req, fi) == -ENOENT)
		undo_open(v, addr, fi);   /* interrupted: no release will come */
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	const struct fuse_ctx *c = fuse_req_ctx(req);
	uint32_t dir = vf_addr(parent), a;
	struct fuse_entry_param e;
	struct vmfs_stat vs;
	int r = check_name(name);

	if (!r && v->ro)
		r = -EROFS;
	if (!r && vf_is_sysname(dir, name))
		r = -EPERM;
	if (!r && !S_ISREG(mode))
		r = -EINVAL;
	if (!r) {
		r = vmfs_create(v->fs, dir, name, mode & 07777, c->uid, c->gid, &a);
		if (r == -EEXIST && !(fi->flags & O_EXCL)) {
			/* another host created it since the kernel's lookup */
			r = vmfs_lookup(v->fs, dir, name, &a);
			if (!r)
				r = vmfs_stat(v->fs, a, &vs);
			if (!r && vs.type == VMFS_TYPE_DIR)
				r = -EISDIR;
		}
	}
	if (!r)
		r = make_entry(v, a, &e);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	r = open_node(v, a, (uint32_t)e.generation, fi);
	if (r) {
		vf_node_forget(v, a, 1);
		fuse_reply_err(req, -r);
		return;
	}
	if (fi->flags & O_TRUNC && e.attr.st_size) {
		r = set_size(v, a, 0);
		if (!r)
			e.attr.st_size = 0;
	}
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		undo_open(v, a, fi);   /* interrupted: no release, no forget will come */
		vf_node_forget(v, a, 1);
	}
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	uint32_t addr = vf_addr(ino);
	struct vf_node *n = vf_node_find(v, addr);
	bool w = fi->fh & FH_WRITE, last_w = false, last = false;
	char *hidden = NULL;
	uint32_t hdir = 0;

	if (n) {
		if (w)
			commit_pending(v, n, false);
		vf_node_close(v, n, w, &last_w, &last);
		if (last) {
			pthread_mutex_lock(&v->mu);
			hidden = n->hidden;
			hdir = n->hidden_dir;
			n->hidden = NULL;
			pthread_mutex_unlock(&v->mu);
		}
	}
	if (w)
		vmfs_host_unlock_file(v->host, addr);
	if (hidden) {
		int r = vmfs_unlink(v->fs, hdir, hidden);

		if (r)
			fprintf(stderr, "vmfs-fuse: cannot remove %s (unlinked while open): %s\n",
				hidden, strerror(-r));
		free(hidden);
	}
	if (n && last)
		vf_node_maybe_free(v, n);
	fuse_reply_err(req, 0);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	struct vf_node *n = (fi->fh & FH_WRITE) ? vf_node_find(v, vf_addr(ino)) : NULL;
	int r = n ? commit_pending(v, n, false) : 0;

	fuse_reply_err(req, -r);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	struct vf_node *n = vf_node_find(v, vf_addr(ino));
	int r = 0;

	/* data first, then the size that makes it reachable (journal, flushed) */
	if (!v->ro)
		r = vmfs_bdev_flush(v->bd);
	if (!r && n)
		r = commit_pending(v, n, false);
	fuse_reply_err(req, -r);
	(void)datasync, (void)fi;
}

/* Read @size bytes at LV offset @lv into @buf (a thread buffer with
 * READ_SLACK bytes to spare): the device's sectors around an unaligned
 * range are read whole and the range moved to the start. */
static int64_t read_lv(struct vf *v, uint8_t *buf, size_t size, uint64_t lv)
{
	uint64_t lbs = vmfs_bdev_get_info(v->bd)->lbs;
	uint64_t a = lv / lbs * lbs, end = (lv + size + lbs - 1) / lbs * lbs;
	int r;

	if (end - a > size + READ_SLACK)
		return -EAGAIN;
	r = vmfs_bdev_read(v->bd, buf, end - a, a);
	if (r)
		return r;
	if (a != lv)
		memmove(buf, buf + (lv - a), size);
	return (int64_t)size;
}

/* A read of a file this mount does not hold for writing, from the read
 * mapping (struct vf_node): one pread of the data instead of one of the FD
 * and one of the data.  The size is refreshed (vmfs_stat) when older than
 * attr_timeout, the extent (vmfs_map) when the read falls outside it.
 * \return bytes read, or -EAGAIN: not a plain allocated range, ask the fs. */
static int64_t read_mapped(struct vf *v, struct vf_node *n, uint8_t *buf, size_t size,
			   uint64_t off)
{
	uint64_t now = vf_now_ns(), seq, fsize, lv = 0;
	struct vmfs_extent ext;
	struct vmfs_stat vs;
	bool have;
	int r;

	if (v->attr_timeout <= 0)
		return -EAGAIN;
	pthread_mutex_lock(&v->mu);
	seq = n->rmap_seq;
	if (n->rmap_until < now) {
		pthread_mutex_unlock(&v->mu);
		r = vmfs_stat(v->fs, n->addr, &vs);
		if (r)
			return r;
		pthread_mutex_lock(&v->mu);
		if (n->rmap_seq == seq) {
			n->rmap_until = now + (uint64_t)(v->attr_timeout * 1e9);
			n->rmap_size = vs.size;
			n->rmap_len = 0;
		}
		fsize = vs.size;
	} else {
		fsize = n->rmap_size;
	}
	if (off >= fsize) {
		pthread_mutex_unlock(&v->mu);
		return 0;
	}
	if (size > fsize - off)
		size = fsize - off;
	have = n->rmap_len && n->rmap_seq == seq && off >= n->rmap_off &&
	       off + size <= n->rmap_off + n->rmap_len;
	if (have)
		lv = n->rmap_lv + (off - n->rmap_off);
	pthread_mutex_unlock(&v->mu);
	if (!have) {
		r = vmfs_map(v->fs, n->addr, off, 0, &ext);
		if (r)
			return r == -ENXIO ? 0 : r;
		if (ext.state != VMFS_EXT_ALLOCATED || off + size > ext.file_off + ext.len)
			return -EAGAIN;
		pthread_mutex_lock(&v->mu);
		if (n->rmap_seq == seq) {
			n->rmap_off = ext.file_off;
			n->rmap_len = ext.len;
			n->rmap_lv = ext.lv_off;
		}
		pthread_mutex_unlock(&v->mu);
		lv = ext.lv_off + (off - ext.file_off);
	}
	return read_lv(v, buf, size, lv);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	uint32_t addr = vf_addr(ino);
	void *buf = tbuf_get(size + READ_SLACK);
	struct vf_node *n = vf_node_find(v, addr);
	int64_t r = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (n) {
		bool valid, pending;
		uint64_t lsize;

		pthread_mutex_lock(&v->mu);
		valid = n->size_valid;
		lsize = n->size;
		pending = valid && n->size > n->disk_size;
		pthread_mutex_unlock(&v->mu);
		if (pending) {
			r = commit_pending(v, n, false);   /* the fs reads up to its size */
		} else if (valid) {   /* blocks preallocated past our size read as EOF */
			size = (uint64_t)off >= lsize ? 0 :
			       (uint64_t)off + size > lsize ? lsize - (uint64_t)off : size;
		} else {
			pthread_rwlock_rdlock(&n->layout);
			r = read_mapped(v, n, buf, size, (uint64_t)off);
			pthread_rwlock_unlock(&n->layout);
			if (r != -EAGAIN)
				goto reply;
			r = 0;
		}
	}
	if (!r)
		r = vmfs_pread(v->fs, addr, buf, size, (uint64_t)off);
reply:
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_buf(req, buf, (size_t)r);
	(void)fi;
}

/* Where [off, off+len) of @n lives on the LV when it lies wholly inside one
 * allocated extent (possibly past EOF, inside the last allocated block).
 * Valid while we hold the file lock and the layout lock (shared).
 * \return 1 found, 0 not (take the fs path), <0 error. */
static int direct_target(struct vf *v, struct vf_node *n, uint64_t off, uint64_t len,
			 uint64_t *lv)
{
	struct vmfs_extent ext;
	struct vmfs_stat vs;
	uint64_t probe;
	int r;

	pthread_mutex_lock(&v->mu);
	if (!n->size_valid) {
		pthread_mutex_unlock(&v->mu);
		r = vmfs_stat(v->fs, n->addr, &vs);
		if (r)
			return r;
		pthread_mutex_lock(&v->mu);
		if (!n->size_valid && n->wopens) {
			n->size = n->disk_size = vs.size;
			n->size_valid = true;
		}
	}
	if (!n->size_valid || !n->disk_size) {
		pthread_mutex_unlock(&v->mu);
		return 0;
	}
	if (n->ext_valid && off >= n->ext_off && off + len <= n->ext_off + n->ext_len) {
		*lv = n->ext_lv + (off - n->ext_off);
		pthread_mutex_unlock(&v->mu);
		return 1;
	}
	/* the fs maps offsets below its size: past EOF, ask for the last byte */
	probe = off < n->disk_size ? off : n->disk_size - 1;
	pthread_mutex_unlock(&v->mu);
	r = vmfs_map(v->fs, n->addr, probe, 0, &ext);
	if (r == -ENXIO)
		return 0;
	if (r)
		return r;
	if (ext.state != VMFS_EXT_ALLOCATED)
		return 0;
	pthread_mutex_lock(&v->mu);
	n->ext_valid = true;
	n->ext_off = ext.file_off;
	n->ext_len = ext.len;
	n->ext_lv = ext.lv_off;
	pthread_mutex_unlock(&v->mu);
	if (off < ext.file_off || off + len > ext.file_off + ext.len)
		return 0;
	*lv = ext.lv_off + (off - ext.file_off);
	return 1;
}

/* Write @size bytes at LV offset @lv: sector-aligned requests as they are
 * (through an aligned copy when the extents use O_DIRECT), others by
 * read-modify-write of the partial first and last sectors. */
static int write_lv(struct vf *v, const char *buf, size_t size, uint64_t lv)
{
	uint64_t a = lv & ~511ull, end = (lv + size + 511) & ~511ull;
	uint8_t *b;
	int r;

	if (a == lv && end == lv + size && (!v->direct_bdev || !((uintptr_t)buf & 4095)))
		return vmfs_bdev_write(v->bd, buf, size, lv);
	b = tbuf_get(end - a);
	if (!b)
		return -ENOMEM;
	if (a != lv) {
		r = vmfs_bdev_read(v->bd, b, 512, a);
		if (r)
			return r;
	}
	if (end != lv + size && (end - 512 != a || a == lv)) {
		r = vmfs_bdev_read(v->bd, b + (end - a) - 512, 512, end - 512);
		if (r)
			return r;
	}
	memcpy(b + (lv - a), buf, size);
	return vmfs_bdev_write(v->bd, b, end - a, a);
}

/* Sequential appends past the first MiB allocate VF_PREALLOC ahead in one
 * transaction (zero-filled blocks, the FD's size covering them) instead of
 * one transaction per block; our size stays what was written and the FD is
 * trimmed back to it on flush/fsync/release.  A crash in between leaves at
 * most VF_PREALLOC + 1 MiB of zeros at the end of the file.
 * Holds the layout lock exclusively.  \return 1 done, 0 not applicable. */
static int preallocate(struct vf *v, struct vf_node *n, uint64_t off, uint64_t end)
{
	uint64_t lsize, dsize, target;
	bool valid;
	int r;

	pthread_mutex_lock(&v->mu);
	valid = n->size_valid;
	lsize = n->size;
	dsize = n->disk_size;
	pthread_mutex_unlock(&v->mu);
	if (!valid || off < (1u << 20) || off < lsize || off > lsize + (1u << 20) ||
	    end <= dsize || lsize < dsize)
		return 0;
	target = ((end + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1)) + VF_PREALLOC;
	if (lsize > dsize) {
		r = commit_core(v, n);   /* the fs must know the data already there */
		if (r)
			return 0;
	}
	r = vmfs_fallocate(v->fs, n->addr, dsize, target - dsize, 0);
	if (r)
		return 0;   /* e.g. ENOSPC: allocate exactly, through the fs */
	pthread_mutex_lock(&v->mu);
	n->disk_size = target;
	vf_layout_changed(n);
	pthread_mutex_unlock(&v->mu);
	return 1;
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	uint32_t addr = vf_addr(ino);
	struct vf_node *n = vf_node_find(v, addr);
	const void *src = buf;
	uint64_t lv = 0, end = (uint64_t)off + size;
	int64_t r;

	if (!(fi->fh & FH_WRITE) || !n) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (!size) {
		fuse_reply_write(req, 0);
		return;
	}
	/* Fast path: inside allocated blocks, write in place; what the FD must
	 * learn (size, mtime) is committed at flush. */
	pthread_rwlock_rdlock(&n->layout);
	r = v->fs_writes ? 0 : direct_target(v, n, (uint64_t)off, size, &lv);
	if (r == 1) {
		r = write_lv(v, buf, size, lv);
		if (!r) {
			pthread_mutex_lock(&v->mu);
			n->dirty = true;
			n->dirty_time = (uint32_t)time(NULL);
			if (end > n->size)
				n->size = end;
			pthread_mutex_unlock(&v->mu);
			r = (int64_t)size;
		}
	}
	pthread_rwlock_unlock(&n->layout);
	if (r != 0)
		goto reply;

	/* Through the fs: allocates (a transaction); may change the file's
	 * addressing mode, so nobody may write in place meanwhile. */
	if (v->direct_bdev && ((uintptr_t)buf & 4095)) {
		void *b = tbuf_get(size);

		if (!b) {
			r = -ENOMEM;
			goto reply;
		}
		memcpy(b, buf, size);
		src = b;
	}
	pthread_rwlock_wrlock(&n->layout);
	r = v->fs_writes ? 0 : preallocate(v, n, (uint64_t)off, end);
	if (r == 1) {
		/* the blocks are there now: write in place */
		r = direct_target(v, n, (uint64_t)off, size, &lv);
		if (r == 1)
			r = write_lv(v, buf, size, lv);
		if (!r) {
			pthread_mutex_lock(&v->mu);
			n->dirty = true;
			n->dirty_time = (uint32_t)time(NULL);
			if (end > n->size)
				n->size = end;
			pthread_mutex_unlock(&v->mu);
			pthread_rwlock_unlock(&n->layout);
			r = (int64_t)size;
			goto reply;
		}
	}
	/* the fs must see the size we have reached (and no preallocation) */
	r = commit_pending(v, n, true);
	if (!r)
		r = vmfs_pwrite(v->fs, addr, src, size, (uint64_t)off);
	pthread_mutex_lock(&v->mu);
	vf_layout_changed(n);
	if (r > 0 && n->size_valid) {
		if (end > n->size)
			n->size = end;
		if (end > n->disk_size)
			n->disk_size = end;
	}
	pthread_mutex_unlock(&v->mu);
	pthread_rwlock_unlock(&n->layout);
reply:
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_write(req, (size_t)r);
}

/* Zero [off, end) of the file without allocating: allocated ranges get
 * zeros written, holes and to-be-zeroed blocks already read as zeros. */
static void *zeros;
static pthread_once_t zeros_once = PTHREAD_ONCE_INIT;

static void zeros_init(void)
{
	if (posix_memalign(&zeros, 4096, ZERO_CHUNK) == 0)
		memset(zeros, 0, ZERO_CHUNK);
	else
		zeros = NULL;
}

static int zero_allocated(struct vf *v, uint32_t addr, uint64_t off, uint64_t end)
{
	struct vmfs_extent ext;
	int r;

	pthread_once(&zeros_once, zeros_init);
	if (!zeros)
		return -ENOMEM;
	while (off < end) {
		r = vmfs_map(v->fs, addr, off, end - off, &ext);
		if (r == -ENXIO)
			return 0;
		if (r)
			return r;
		uint64_t e = ext.file_off + ext.len < end ? ext.file_off + ext.len : end;
		if (ext.state == VMFS_EXT_ALLOCATED || ext.state == VMFS_EXT_INLINE) {
			for (uint64_t p = off; p < e;) {
				uint64_t n = e - p < ZERO_CHUNK ? e - p : ZERO_CHUNK;
				int64_t w = vmfs_pwrite(v->fs, addr, zeros, n, p);

				if (w < 0)
					return (int)w;
				p += n;
			}
		}
		off = e;
	}
	return 0;
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	uint32_t addr = vf_addr(ino);
	struct vf_node *n = vf_node_find(v, addr);
	uint64_t off = (uint64_t)offset, len = (uint64_t)length, end = off + len;
	struct vmfs_stat vs;
	int r = 0;

	if (v->ro) {
		r = -EROFS;
		goto out;
	}
	if (vf_is_sysfile(v, addr)) {
		r = -EPERM;
		goto out;
	}
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		r = -EOPNOTSUPP;
		goto out;
	}
	if ((mode & FALLOC_FL_PUNCH_HOLE) &&
	    (!(mode & FALLOC_FL_KEEP_SIZE) || (mode & FALLOC_FL_ZERO_RANGE))) {
		r = -EOPNOTSUPP;
		goto out;
	}
	if (offset < 0 || length <= 0) {
		r = -EINVAL;
		goto out;
	}
	if (n)
		pthread_rwlock_wrlock(&n->layout);
	r = n ? commit_pending(v, n, true) : 0;
	if (!r)
		r = vmfs_stat(v->fs, addr, &vs);
	if (r)
		goto unlock;
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		/* every whole block inside the range goes back to the volume (and
		 * down to the device), the partial edges are zeroed */
		r = vmfs_punch(v->fs, addr, off, len);
	} else if (mode & FALLOC_FL_ZERO_RANGE) {
		uint64_t size = vs.size, bs = vs.blk_size ? vs.blk_size : 1;
		uint64_t zend = end < size ? end : size;

		/* Whole blocks from a block boundary to EOF are freed (truncate
		 * down, then back up: the tail becomes a hole); the rest is
		 * overwritten with zeros where allocated.  The fs has no call
		 * that frees blocks in the middle of a file. */
		if (off < size && end >= size && vs.type == VMFS_TYPE_FILE) {
			uint64_t cut = (off + bs - 1) / bs * bs;

			if (cut < size && vs.blk_size >= (1u << 20)) {
				r = vmfs_truncate(v->fs, addr, cut);
				if (!r)
					r = vmfs_truncate(v->fs, addr, size);
				if (r)
					goto unlock;
				zend = cut;
			}
		}
		if (off < zend)
			r = zero_allocated(v, addr, off, zend);
		if (!r && (mode & FALLOC_FL_ZERO_RANGE) && !(mode & FALLOC_FL_KEEP_SIZE) &&
		    end > size)
			r = vmfs_truncate(v->fs, addr, end);
	} else {
		unsigned fl = VMFS_ALLOC_TBZ | ((mode & FALLOC_FL_KEEP_SIZE) ? VMFS_ALLOC_KEEP_SIZE : 0);

		r = vmfs_fallocate(v->fs, addr, off, len, fl);
	}
unlock:
	if (n) {
		pthread_mutex_lock(&v->mu);
		n->size_valid = false;
		vf_layout_changed(n);
		pthread_mutex_unlock(&v->mu);
		pthread_rwlock_unlock(&n->layout);
	}
out:
	fuse_reply_err(req, -r);
	(void)fi;
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	uint32_t addr = vf_addr(ino);
	struct vmfs_extent ext;
	struct vmfs_stat vs;
	uint64_t pos = (uint64_t)off;
	int r;

	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	r = commit_addr(v, addr);
	if (!r)
		r = vmfs_stat(v->fs, addr, &vs);
	if (r)
		goto err;
	if (off < 0 || pos >= vs.size) {
		r = -ENXIO;
		goto err;
	}
	for (;;) {
		bool data;

		r = vmfs_map(v->fs, addr, pos, 0, &ext);
		if (r == -ENXIO && whence == SEEK_HOLE) {
			pos = vs.size;
			break;
		}
		if (r)
			goto err;
		data = ext.state == VMFS_EXT_ALLOCATED || ext.state == VMFS_EXT_INLINE;
		if (data == (whence == SEEK_DATA)) {
			if (ext.file_off > pos)
				pos = ext.file_off;
			break;
		}
		pos = ext.file_off + ext.len;
		if (pos >= vs.size) {
			if (whence == SEEK_DATA) {
				r = -ENXIO;
				goto err;
			}
			pos = vs.size;
			break;
		}
	}
	fuse_reply_lseek(req, (off_t)pos);
	return;
err:
	fuse_reply_err(req, -r);
	(void)fi;
}

/* ---- directories -------------------------------------------------------------------- */

struct dsnap_ent {
	uint32_t addr, type;
	char name[VF_NAME_MAX + 2];
};

struct dsnap {
	struct dsnap_ent *e;
	size_t n, cap;
};

static int snap_cb(void *ctx, const struct vmfs_dirent *de)
{
	struct dsnap *d = ctx;

	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 64;
		struct dsnap_ent *ne = realloc(d->e, nc * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		d->e = ne;
		d->cap = nc;
	}
	d->e[d->n].addr = de->addr;
	d->e[d->n].type = de->type;
	snprintf(d->e[d->n].name, sizeof(d->e[d->n].name), "%s", de->name);
	d->n++;
	return 0;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vf *v = VF(req);
	struct dsnap *d = calloc(1, sizeof(*d));
	int r;

	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	r = vmfs_readdir(v->fs, vf_addr(ino), snap_cb, d);
	if (r) {
		free(d->e);
		free(d);
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		free(d->e);
		free(d);
	}
}

static mode_t dtype_mode(uint32_t type)
{
	return type == VMFS_TYPE_DIR ? S_IFDIR : type == VMFS_TYPE_SYMLINK ? S_IFLNK : S_IFREG;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct vf *v = VF(req);
	struct dsnap *d = (struct dsnap *)(uintptr_t)fi->fh;
	char *buf = calloc(1, size);
	size_t pos = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < d->n; i++) {
		const struct dsnap_ent *de = &d->e[i];
		bool dot = !strcmp(de->name, ".") || !strcmp(de->name, "..");
		size_t need;

		if (!plus) {
			struct stat st = { .st_ino = vf_ino(de->addr), .st_mode = dtype_mode(de->type) };

			if (!strcmp(de->name, "."))
				st.st_ino = ino;
			need = fuse_add_direntry(req, buf + pos, size - pos, de->name, &st,
						 (off_t)i + 1);
		} else {
			struct fuse_entry_param e;

			if (dot) {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = !strcmp(de->name, ".") ? ino : vf_ino(de->addr);
				e.attr.st_mode = S_IFDIR;
			} else if (make_entry(v, de->addr, &e)) {
				continue;   /* removed meanwhile */
			}
			need = fuse_add_direntry_plus(req, buf + pos, size - pos, de->name, &e,
						      (off_t)i + 1);
			if (need > size - pos && !dot)
				vf_node_forget(v, de->addr, 1);
		}
		if (need > size - pos)
			break;
		pos += need;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dsnap *d = (struct dsnap *)(uintptr_t)fi->fh;

	if (d) {
		free(d->e);
		free(d);
	}
	fuse_reply_err(req, 0);
	(void)ino;
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct vf *v = VF(req);

	fuse_reply_err(req, v->ro ? 0 : -vmfs_bdev_flush(v->bd));
	(void)ino, (void)datasync, (void)fi;
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vf *v = VF(req);
	struct vmfs_statfs vs;
	struct statvfs st;
	int r = vmfs_fs_statfs(v->fs, &vs);

	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	memset(&st, 0, sizeof(st));
	st.f_bsize = vs.block_size;
	st.f_frsize = vs.block_size;
	st.f_blocks = vs.total_blocks;
	st.f_bfree = vs.free_blocks;
	st.f_bavail = vs.free_blocks;
	st.f_files = vs.total_fds;
	st.f_ffree = vs.free_fds;
	st.f_favail = vs.free_fds;
	st.f_namemax = VF_NAME_MAX;
	fuse_reply_statfs(req, &st);
	(void)ino;
}

/* ---- extended attributes: not part of the format -------------------------------------
 * The kernel turns ENOSYS from the daemon into EOPNOTSUPP for the caller and
 * then stops asking (fc->no_getxattr and friends), so applications see
 * ENOTSUP while writes no longer cost a GETXATTR(security.capability)
 * round trip each (what a plain EOPNOTSUPP reply would). */

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	fuse_reply_err(req, ENOSYS);
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	fuse_reply_err(req, ENOSYS);
	(void)ino, (void)name, (void)size;
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	fuse_reply_err(req, ENOSYS);
	(void)ino, (void)size;
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, ENOSYS);
	(void)ino, (void)name;
}

const struct fuse_lowlevel_ops vf_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
};
