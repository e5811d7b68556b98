/*
 * nfs_client: drives vmfsd's NFS server with libnfs (sync API, plus raw RPC
 * calls driven synchronously for what the high-level API cannot express).
 *
 *   nfs_client procs HOST PORT EXPORT     every NFSv3 procedure and its errors;
 *                                          prints "ok <what>" lines, exit 0 when all pass
 *   nfs_client forge HOST PORT EXPORT     forged/altered/stale handles
 *   nfs_client mnt HOST PORT EXPORT       MNT only: prints "mnt <status>"
 *   nfs_client owner HOST PORT EXPORT NAME  create NAME as the caller (uid from
 *                                          the URL/AUTH_SYS = getuid()); print "uid N gid N"
 *   nfs_client write HOST PORT EXPORT NAME  one FILE_SYNC WRITE to NAME: "write <nfsstat>"
 *   nfs_client mkdir HOST PORT EXPORT NAME  MKDIR NAME mode 0777: "mkdir <nfsstat>"
 *   nfs_client verf HOST PORT EXPORT NAME   UNSTABLE WRITE to NAME (created if
 *                                          missing): "verf <16 hex digits>"
 *   nfs_client pipeline HOST PORT EXPORT NAME  many calls in flight on one
 *                                          connection: 4 MiB written as 16 WRITEs
 *                                          sent at once, COMMIT, then 64 READs mixed
 *                                          with GETATTR/LOOKUP/ACCESS sent at once;
 *                                          every reply checked (data, xid matching)
 *   nfs_client meta HOST PORT EXPORT DIR    metadata calls in a loop in DIR (made):
 *                                          CREATE, SETATTR, LOOKUP, READDIR, RENAME,
 *                                          REMOVE, each checked
 *   nfs_client pwrite HOST PORT EXPORT NAME OFF FILE [OFF FILE]...
 *                                          write each FILE's bytes into NAME (made if
 *                                          missing) at byte offset OFF, then fsync
 *   nfs_client pread HOST PORT EXPORT NAME OFF LEN FILE [OFF LEN FILE]...
 *                                          read LEN bytes of NAME at OFF into FILE
 *
 * Exit: 0 ok, 1 a check failed, 2 usage/connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>

static int failures;

#define CHECK(cond, ...) do { \
	if (cond) { printf("ok "); printf(__VA_ARGS__); printf("\n"); } \
	else { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
	fflush(stdout); } while (0)

/* ---- synchronous raw calls ---------------------------------------------------- */

struct fh {
	uint32_t len;
	char val[64];
};

struct waiter {
	int done, rpc_status;
	uint32_t status;
	void (*fn)(void *data, struct waiter *w);
	/* extracted results */
	struct fh fh;
	struct fattr3 attr;
	int have_attr;
	uint32_t u32[8];
	uint64_t u64[4];
	char verf[8];
	char names[64][64];
	uint64_t cookies[64];
	int nnames;
	char text[256];
};

static void wcb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct waiter *w = priv;

	w->done = 1;
	w->rpc_status = status;
	if (status == RPC_STATUS_SUCCESS && data) {
		w->status = *(uint32_t *)data;
		if (w->fn)
			w->fn(data, w);
	}
}

static int wait_for(struct rpc_context *rpc, struct waiter *w)
{
	while (!w->done) {
		struct pollfd p = { .fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc) };

		if (poll(&p, 1, 10000) <= 0) {
			fprintf(stderr, "nfs_client: timeout\n");
			return -1;
		}
		if (rpc_service(rpc, p.revents) < 0) {
			fprintf(stderr, "nfs_client: rpc_service: %s\n", rpc_get_error(rpc));
			return -1;
		}
	}
	return w->rpc_status == RPC_STATUS_SUCCESS ? 0 : -1;
}

static void set_fh(struct fh *dst, const char *val, uint32_t len)
{
	dst->len = len > 64 ? 64 : len;
	memcpy(dst->val, val, dst->len);
}

static nfs_fh3 wire(struct fh *f)
{
	nfs_fh3 n = { .data = { .data_len = f->len, .data_val = f->val } };

	return n;
}

static void x_mnt(void *data, struct waiter *w)
{
	mountres3 *r = data;

	if (r->fhs_status == MNT3_OK)
		set_fh(&w->fh, r->mountres3_u.mountinfo.fhandle.fhandle3_val,
		       r->mountres3_u.mountinfo.fhandle.fhandle3_len);
}

static void x_getattr(void *data, struct waiter *w)
{
	GETATTR3res *r = data;

	if (r->status == NFS3_OK) {
		w->attr = r->GETATTR3res_u.resok.obj_attributes;
		w->have_attr = 1;
	}
}

static void x_lookup(void *data, struct waiter *w)
{
	LOOKUP3res *r = data;

	if (r->status == NFS3_OK) {
		set_fh(&w->fh, r->LOOKUP3res_u.resok.object.data.data_val,
		       r->LOOKUP3res_u.resok.object.data.data_len);
		if (r->LOOKUP3res_u.resok.obj_attributes.attributes_follow) {
			w->attr = r->LOOKUP3res_u.resok.obj_attributes.post_op_attr_u.attributes;
			w->have_attr = 1;
		}
	}
}

static void x_create(void *data, struct waiter *w)
{
	/* CREATE3res, MKDIR3res, SYMLINK3res share the layout */
	CREATE3res *r = data;

	if (r->status == NFS3_OK && r->CREATE3res_u.resok.obj.handle_follows)
		set_fh(&w->fh, r->CREATE3res_u.resok.obj.post_op_fh3_u.handle.data.data_val,
		       r->CREATE3res_u.resok.obj.post_op_fh3_u.handle.data.data_len);
	if (r->status == NFS3_OK && r->CREATE3res_u.resok.obj_attributes.attributes_follow) {
		w->attr = r->CREATE3res_u.resok.obj_attributes.post_op_attr_u.attributes;
		w->have_attr = 1;
	}
	/* dir_wcc.after follows in both ok and fail */
	w->u32[0] = r->status == NFS3_OK ? r->CREATE3res_u.resok.dir_wcc.after.attributes_follow
					 : r->CREATE3res_u.resfail.dir_wcc.after.attributes_follow;
}

static void x_write(void *data, struct waiter *w)
{
	WRITE3res *r = data;

	if (r->status == NFS3_OK) {
		w->u32[0] = r->WRITE3res_u.resok.count;
		w->u32[1] = r->WRITE3res_u.resok.committed;
		memcpy(w->verf, r->WRITE3res_u.resok.verf, 8);
		w->u32[2] = r->WRITE3res_u.resok.file_wcc.before.attributes_follow;
		w->u32[3] = r->WRITE3res_u.resok.file_wcc.after.attributes_follow;
	}
}

static void x_commit(void *data, struct waiter *w)
{
	COMMIT3res *r = data;

	if (r->status == NFS3_OK)
		memcpy(w->verf, r->COMMIT3res_u.resok.verf, 8);
}

static void x_read(void *data, struct waiter *w)
{
	READ3res *r = data;

	if (r->status == NFS3_OK) {
		w->u32[0] = r->READ3res_u.resok.count;
		w->u32[1] = r->READ3res_u.resok.eof;
		snprintf(w->text, sizeof(w->text), "%.*s", (int)r->READ3res_u.resok.data.data_len,
			 r->READ3res_u.resok.data.data_val);
	}
}

static void x_readdir(void *data, struct waiter *w)
{
	READDIR3res *r = data;

	if (r->status != NFS3_OK)
		return;
	memcpy(w->verf, r->READDIR3res_u.resok.cookieverf, 8);
	w->u32[0] = r->READDIR3res_u.resok.reply.eof;
	for (entry3 *e = r->READDIR3res_u.resok.reply.entries; e && w->nnames < 64; e = e->nextentry) {
		snprintf(w->names[w->nnames], 64, "%s", e->name);
		w->cookies[w->nnames++] = e->cookie;
	}
}

static void x_readdirplus(void *data, struct waiter *w)
{
	READDIRPLUS3res *r = data;

	if (r->status != NFS3_OK)
		return;
	memcpy(w->verf, r->READDIRPLUS3res_u.resok.cookieverf, 8);
	w->u32[0] = r->READDIRPLUS3res_u.resok.reply.eof;
	w->u32[1] = 1;
	for (entryplus3 *e = r->READDIRPLUS3res_u.resok.reply.entries; e && w->nnames < 64;
	     e = e->nextentry) {
		snprintf(w->names[w->nnames], 64, "%s", e->name);
		w->cookies[w->nnames++] = e->cookie;
		if (!e->name_handle.handle_follows || !e->name_attributes.attributes_follow)
			w->u32[1] = 0;
	}
}

static void x_readlink(void *data, struct waiter *w)
{
	READLINK3res *r = data;

	if (r->status == NFS3_OK)
		snprintf(w->text, sizeof(w->text), "%s", r->READLINK3res_u.resok.data);
}

static void x_access(void *data, struct waiter *w)
{
	ACCESS3res *r = data;

	if (r->status == NFS3_OK)
		w->u32[0] = r->ACCESS3res_u.resok.access;
}

static void x_fsinfo(void *data, struct waiter *w)
{
	FSINFO3res *r = data;

	if (r->status == NFS3_OK) {
		w->u32[0] = r->FSINFO3res_u.resok.rtmax;
		w->u32[1] = r->FSINFO3res_u.resok.wtmax;
		w->u64[0] = r->FSINFO3res_u.resok.maxfilesize;
		w->u32[2] = r->FSINFO3res_u.resok.properties;
	}
}

static void x_fsstat(void *data, struct waiter *w)
{
	FSSTAT3res *r = data;

	if (r->status == NFS3_OK) {
		w->u64[0] = r->FSSTAT3res_u.resok.tbytes;
		w->u64[1] = r->FSSTAT3res_u.resok.fbytes;
		w->u64[2] = r->FSSTAT3res_u.resok.tfiles;
	}
}

static void x_pathconf(void *data, struct waiter *w)
{
	PATHCONF3res *r = data;

	if (r->status == NFS3_OK) {
		w->u32[0] = r->PATHCONF3res_u.resok.name_max;
		w->u32[1] = r->PATHCONF3res_u.resok.case_preserving;
	}
}

static void x_setattr(void *data, struct waiter *w)
{
	SETATTR3res *r = data;

	/* wcc: before present (pre_op), after present */
	w->u32[0] = r->status == NFS3_OK ? r->SETATTR3res_u.resok.obj_wcc.before.attributes_follow
					 : r->SETATTR3res_u.resfail.obj_wcc.before.attributes_follow;
}

static void x_rename(void *data, struct waiter *w)
{
	RENAME3res *r = data;

	w->u32[0] = r->status == NFS3_OK ? r->RENAME3res_u.resok.fromdir_wcc.after.attributes_follow
					 : 0;
}

static struct rpc_context *rpc;
static const char *host;
static int port;

#define CALL(f_, a_, x_) ({ struct waiter *_w = calloc(1, sizeof(*_w)); \
	_w->fn = x_; \
	if (f_(rpc, wcb, a_, _w) || wait_for(rpc, _w)) { fprintf(stderr, "nfs_client: " #f_ " failed\n"); exit(2); } \
	_w; })

static struct waiter *getattr(struct fh *f)
{
	GETATTR3args a = { .object = wire(f) };

	return CALL(rpc_nfs3_getattr_async, &a, x_getattr);
}

static struct waiter *lookup(struct fh *dir, const char *name)
{
	LOOKUP3args a = { .what = { .dir = wire(dir), .name = (char *)name } };

	return CALL(rpc_nfs3_lookup_async, &a, x_lookup);
}

static struct waiter *create(struct fh *dir, const char *name, int mode, const char *verf)
{
	CREATE3args a = { .where = { .dir = wire(dir), .name = (char *)name } };

	a.how.mode = mode;
	if (mode == EXCLUSIVE) {
		memcpy(a.how.createhow3_u.verf, verf, 8);
	} else {
		a.how.createhow3_u.obj_attributes.mode.set_it = 1;
		a.how.createhow3_u.obj_attributes.mode.set_mode3_u.mode = 0644;
	}
	return CALL(rpc_nfs3_create_async, &a, x_create);
}

static struct waiter *write_(struct fh *f, uint64_t off, const char *data, uint32_t len, int stable)
{
	WRITE3args a = { .file = wire(f), .offset = off, .count = len, .stable = stable };

	a.data.data_len = len;
	a.data.data_val = (char *)data;
	return CALL(rpc_nfs3_write_async, &a, x_write);
}

static struct waiter *read_(struct fh *f, uint64_t off, uint32_t len)
{
	READ3args a = { .file = wire(f), .offset = off, .count = len };

	return CALL(rpc_nfs3_read_async, &a, x_read);
}

static struct waiter *remove_(struct fh *dir, const char *name)
{
	REMOVE3args a = { .object = { .dir = wire(dir), .name = (char *)name } };

	return CALL(rpc_nfs3_remove_async, &a, NULL);
}

static struct waiter *readdir_(struct fh *dir, uint64_t cookie, const char *verf, uint32_t count)
{
	READDIR3args a = { .dir = wire(dir), .cookie = cookie, .count = count };

	memcpy(a.cookieverf, verf, 8);
	return CALL(rpc_nfs3_readdir_async, &a, x_readdir);
}

static int connect_mnt(const char *export, struct fh *root, uint32_t *mnt_status)
{
	struct waiter w = { 0 };

	rpc = rpc_init_context();
	if (!rpc || rpc_connect_async(rpc, host, port, wcb, &w) || wait_for(rpc, &w)) {
		fprintf(stderr, "nfs_client: cannot connect to %s:%d\n", host, port);
		return -1;
	}
	struct waiter *m = CALL(rpc_mount3_mnt_async, (char *)export, x_mnt);

	*mnt_status = m->status;
	if (m->status == MNT3_OK)
		*root = m->fh;
	free(m);
	return 0;
}

/* ---- many calls in flight on one connection -------------------------------------- */

#define PIPE_FILE (4u << 20)
#define PIPE_WRITE (256u << 10)
#define PIPE_READ (64u << 10)
#define PIPE_CALLS 96

static uint8_t pattern(uint64_t off)
{
	uint64_t x = (off >> 2) * 0x9E3779B97F4A7C15ull;

	return (uint8_t)(x >> (56 - 8 * (off & 3)));
}

static int pipe_done, pipe_order, pipe_out_of_order;

struct pipe_call {
	struct waiter w;
	int kind, seq;             /* 0 WRITE, 1 READ, 2 other */
	uint64_t off;
	uint32_t len;
	int ok, order;
};

static void pipe_cb(struct rpc_context *r, int status, void *data, void *priv)
{
	struct pipe_call *pc = priv;

	(void)r;
	pc->w.done = 1;
	pc->order = pipe_order++;
	if (pc->order != pc->seq)
		pipe_out_of_order++;
	pipe_done++;
	if (status != RPC_STATUS_SUCCESS || !data || *(uint32_t *)data != NFS3_OK)
		return;
	if (pc->kind == 0) {
		WRITE3res *w = data;

		pc->ok = w->WRITE3res_u.resok.count == pc->len;
	} else if (pc->kind == 1) {
		READ3res *rd = data;
		const uint8_t *d = (const uint8_t *)rd->READ3res_u.resok.data.data_val;

		pc->ok = rd->READ3res_u.resok.count == pc->len &&
			 rd->READ3res_u.resok.data.data_len == pc->len;
		for (uint32_t i = 0; pc->ok && i < pc->len; i++)
			pc->ok = d[i] == pattern(pc->off + i);
	} else {
		pc->ok = 1;
	}
}

/* Service the connection until @n replies have come. */
static int pipe_wait(int n)
{
	while (pipe_done < n) {
		struct pollfd p = { .fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc) };

		if (poll(&p, 1, 30000) <= 0 || rpc_service(rpc, p.revents) < 0) {
			fprintf(stderr, "nfs_client: pipeline: %s\n", rpc_get_error(rpc));
			return -1;
		}
	}
	return 0;
}

static void pipeline(struct fh *root, const char *name)
{
	static struct pipe_call pc[PIPE_CALLS];
	uint8_t *buf = malloc(PIPE_FILE);
	struct waiter *w = create(root, name, UNCHECKED, NULL);
	struct fh f = w->fh;
	int n = 0, bad = 0;

	free(w);
	if (!buf)
		exit(2);
	for (uint32_t i = 0; i < PIPE_FILE; i++)
		buf[i] = pattern(i);
	pipe_done = pipe_order = pipe_out_of_order = 0;
	/* 16 WRITEs, highest offset first, all sent before any reply is read */
	for (uint32_t k = PIPE_FILE / PIPE_WRITE; k-- > 0; n++) {
		WRITE3args a = { .file = wire(&f), .offset = (uint64_t)k * PIPE_WRITE,
				 .count = PIPE_WRITE, .stable = UNSTABLE };

		a.data.data_len = PIPE_WRITE;
		a.data.data_val = (char *)buf + a.offset;
		pc[n] = (struct pipe_call){ .kind = 0, .seq = n, .off = a.offset, .len = PIPE_WRITE };
		if (rpc_nfs3_write_async(rpc, pipe_cb, &a, &pc[n]))
			exit(2);
	}
	if (pipe_wait(n))
		exit(2);
	for (int i = 0; i < n; i++)
		bad += !pc[i].ok;
	CHECK(!bad, "%d WRITEs of %u KiB in flight at once all answered OK", n, PIPE_WRITE >> 10);
	COMMIT3args ca = { .file = wire(&f) };
	w = CALL(rpc_nfs3_commit_async, &ca, x_commit);
	CHECK(w->status == NFS3_OK, "COMMIT");
	free(w);
	/* READs of scattered 64 KiB pieces, a GETATTR/LOOKUP/ACCESS every third call */
	int first = n, reads = 0;

	pipe_done = pipe_order = 0;
	for (int i = 0; n < PIPE_CALLS; i++, n++) {
		pc[n] = (struct pipe_call){ .seq = n - first };
		if (i % 3 == 2) {
			int r;

			pc[n].kind = 2;
			if (i % 9 == 2) {
				GETATTR3args a = { .object = wire(&f) };

				r = rpc_nfs3_getattr_async(rpc, pipe_cb, &a, &pc[n]);
			} else if (i % 9 == 5) {
				LOOKUP3args a = { .what = { .dir = wire(root), .name = (char *)name } };

				r = rpc_nfs3_lookup_async(rpc, pipe_cb, &a, &pc[n]);
			} else {
				ACCESS3args a = { .object = wire(&f), .access = 0x3f };

				r = rpc_nfs3_access_async(rpc, pipe_cb, &a, &pc[n]);
			}
			if (r)
				exit(2);
			continue;
		}
		READ3args a = { .file = wire(&f), .count = PIPE_READ };

		a.offset = (uint64_t)((reads++ * 37) % (PIPE_FILE / PIPE_READ)) * PIPE_READ;
		pc[n].kind = 1;
		pc[n].off = a.offset;
		pc[n].len = PIPE_READ;
		if (rpc_nfs3_read_async(rpc, pipe_cb, &a, &pc[n]))
			exit(2);
	}
	if (pipe_wait(n - first))
		exit(2);
	bad = 0;
	for (int i = first; i < n; i++)
		bad += !pc[i].ok;
	CHECK(!bad, "%d READs (data checked) mixed with %d GETATTR/LOOKUP/ACCESS in flight at once",
	      reads, n - first - reads);
	printf("info: %d of %d replies came in another order than the calls\n", pipe_out_of_order,
	       n);
	free(buf);
}

static void meta(struct fh *root, const char *dirname)
{
	MKDIR3args md = { .where = { .dir = wire(root), .name = (char *)dirname } };
	struct waiter *w;
	struct fh dir;
	char a[32], b[32];
	int bad = 0;

	md.attributes.mode.set_it = 1;
	md.attributes.mode.set_mode3_u.mode = 0777;
	w = CALL(rpc_nfs3_mkdir_async, &md, x_create);
	dir = w->fh;
	CHECK(w->status == NFS3_OK, "MKDIR %s", dirname);
	free(w);
	for (int i = 0; i < 40; i++) {
		snprintf(a, sizeof(a), "m%d", i);
		snprintf(b, sizeof(b), "r%d", i);
		w = create(&dir, a, GUARDED, NULL);
		struct fh f = w->fh;

		bad += w->status != NFS3_OK;
		free(w);
		SETATTR3args sa = { .object = wire(&f) };

		sa.new_attributes.mode.set_it = 1;
		sa.new_attributes.mode.set_mode3_u.mode = 0600;
		w = CALL(rpc_nfs3_setattr_async, &sa, x_setattr);
		bad += w->status != NFS3_OK;
		free(w);
		w = lookup(&dir, a);
		bad += w->status != NFS3_OK || !w->have_attr || (w->attr.mode & 0777) != 0600;
		free(w);
		w = readdir_(&dir, 0, "\0\0\0\0\0\0\0\0", 8192);
		bad += w->status != NFS3_OK;
		free(w);
		RENAME3args ra = { .from = { .dir = wire(&dir), .name = a },
				   .to = { .dir = wire(&dir), .name = b } };

		w = CALL(rpc_nfs3_rename_async, &ra, x_rename);
		bad += w->status != NFS3_OK;
		free(w);
		w = remove_(&dir, b);
		bad += w->status != NFS3_OK;
		free(w);
	}
	CHECK(!bad, "40 rounds of CREATE, SETATTR, LOOKUP, READDIR, RENAME, REMOVE (%d failed)", bad);
}

/* ---- the procedure suite ---------------------------------------------------------- */

static void suite(struct nfs_context *nfs, struct fh *root)
{
	struct waiter *w;
	struct fh dir, f, f2, lnk;
	char verf1[8] = "verf0001", verf2[8] = "verf0002", zero[8] = { 0 }, wv[8];
	char buf[256];
	struct nfs_stat_64 st;
	struct nfsfh *h;
	int r;

	/* NULL (libnfs pings at mount), FSINFO, FSSTAT, PATHCONF, GETATTR */
	w = calloc(1, sizeof(*w));
	CHECK(rpc_nfs3_null_async(rpc, wcb, w) == 0 && wait_for(rpc, w) == 0, "NULL");
	free(w);
	FSINFO3args fi = { .fsroot = wire(root) };
	w = CALL(rpc_nfs3_fsinfo_async, &fi, x_fsinfo);
	CHECK(w->status == NFS3_OK && w->u32[0] == 524288 && w->u32[1] == 1048576 &&
	      w->u64[0] == (62ull << 40) && (w->u32[2] & 0x3) == 0x3,
	      "FSINFO rtmax 512 KiB, wtmax 1 MiB, 62 TiB, LINK|SYMLINK");
	free(w);
	FSSTAT3args fs = { .fsroot = wire(root) };
	w = CALL(rpc_nfs3_fsstat_async, &fs, x_fsstat);
	CHECK(w->status == NFS3_OK && w->u64[0] > (1ull << 30) && w->u64[1] <= w->u64[0] && w->u64[2] > 0,
	      "FSSTAT tbytes %" PRIu64 " fbytes %" PRIu64, w->u64[0], w->u64[1]);
	free(w);
	PATHCONF3args pc = { .object = wire(root) };
	w = CALL(rpc_nfs3_pathconf_async, &pc, x_pathconf);
	CHECK(w->status == NFS3_OK && w->u32[0] == 127 && w->u32[1] == 1, "PATHCONF name_max 127");
	free(w);
	w = getattr(root);
	CHECK(w->status == NFS3_OK && w->attr.type == NF3DIR, "GETATTR root is a directory");
	free(w);

	/* MKDIR + EXIST */
	MKDIR3args md = { .where = { .dir = wire(root), .name = "suite" } };
	md.attributes.mode.set_it = 1;
	md.attributes.mode.set_mode3_u.mode = 0755;
	w = CALL(rpc_nfs3_mkdir_async, &md, x_create);
	CHECK(w->status == NFS3_OK && w->fh.len && w->attr.type == NF3DIR && w->u32[0],
	      "MKDIR with handle, attributes and dir wcc");
	dir = w->fh;
	free(w);
	w = CALL(rpc_nfs3_mkdir_async, &md, x_create);
	CHECK(w->status == NFS3ERR_EXIST, "MKDIR existing -> NFS3ERR_EXIST (%u)", w->status);
	free(w);

	/* CREATE: UNCHECKED, GUARDED (EXIST), EXCLUSIVE with verifier replay */
	w = create(&dir, "a", UNCHECKED, NULL);
	CHECK(w->status == NFS3_OK && w->fh.len && (w->attr.mode & 0777) == 0644, "CREATE UNCHECKED");
	f = w->fh;
	free(w);
	w = create(&dir, "a", UNCHECKED, NULL);
	CHECK(w->status == NFS3_OK, "CREATE UNCHECKED on an existing file succeeds");
	free(w);
	w = create(&dir, "a", GUARDED, NULL);
	CHECK(w->status == NFS3ERR_EXIST, "CREATE GUARDED existing -> NFS3ERR_EXIST");
	free(w);
	w = create(&dir, "x", EXCLUSIVE, verf1);
	CHECK(w->status == NFS3_OK, "CREATE EXCLUSIVE");
	free(w);
	w = create(&dir, "x", EXCLUSIVE, verf1);
	CHECK(w->status == NFS3_OK, "CREATE EXCLUSIVE retransmission (same verifier) succeeds");
	free(w);
	w = create(&dir, "x", EXCLUSIVE, verf2);
	CHECK(w->status == NFS3ERR_EXIST, "CREATE EXCLUSIVE other verifier -> NFS3ERR_EXIST");
	free(w);
	w = create(&dir, "bad/name", UNCHECKED, NULL);
	CHECK(w->status == NFS3ERR_ACCES || w->status == NFS3ERR_INVAL, "CREATE name with '/' refused (%u)", w->status);
	free(w);
	memset(buf, 'n', 200);
	buf[200] = 0;
	w = create(&dir, buf, UNCHECKED, NULL);
	CHECK(w->status == NFS3ERR_NAMETOOLONG, "CREATE 200-byte name -> NFS3ERR_NAMETOOLONG");
	free(w);

	/* WRITE: UNSTABLE, FILE_SYNC, DATA_SYNC; verifier; COMMIT; READ */
	w = write_(&f, 0, "hello ", 6, UNSTABLE);
	CHECK(w->status == NFS3_OK && w->u32[0] == 6 && w->u32[1] == UNSTABLE && w->u32[2] && w->u32[3],
	      "WRITE UNSTABLE count 6 with wcc");
	memcpy(wv, w->verf, 8);
	free(w);
	w = write_(&f, 6, "world", 5, FILE_SYNC);
	CHECK(w->status == NFS3_OK && w->u32[1] == FILE_SYNC && !memcmp(wv, w->verf, 8),
	      "WRITE FILE_SYNC, same verifier");
	free(w);
	w = write_(&f, 11, "!", 1, DATA_SYNC);
	CHECK(w->status == NFS3_OK && w->u32[1] >= DATA_SYNC, "WRITE DATA_SYNC committed %u", w->u32[1]);
	free(w);
	COMMIT3args cm = { .file = wire(&f) };
	w = CALL(rpc_nfs3_commit_async, &cm, x_commit);
	CHECK(w->status == NFS3_OK && !memcmp(wv, w->verf, 8), "COMMIT returns the write verifier");
	free(w);
	w = read_(&f, 0, 100);
	CHECK(w->status == NFS3_OK && w->u32[0] == 12 && w->u32[1] && !strcmp(w->text, "hello world!"),
	      "READ 'hello world!' eof");
	free(w);
	/* a big UNSTABLE write may be answered before its data is in (without
	 * post-op attributes): the next call must see the data all the same */
	{
		char *big1 = malloc(1 << 20);

		memset(big1, 'B', 1 << 20);
		memcpy(big1 + (1 << 20) - 4, "end!", 4);
		w = write_(&f, 1 << 20, big1, 1 << 20, UNSTABLE);
		CHECK(w->status == NFS3_OK && w->u32[0] == (1u << 20) && w->u32[1] == UNSTABLE &&
		      w->u32[2] && !memcmp(wv, w->verf, 8), "WRITE UNSTABLE 1 MiB at 1 MiB, pre-op wcc");
		free(w);
		free(big1);
		w = read_(&f, (2 << 20) - 4, 100);
		CHECK(w->status == NFS3_OK && w->u32[0] == 4 && w->u32[1] && !strcmp(w->text, "end!"),
		      "READ right after it sees its last bytes");
		free(w);
		w = CALL(rpc_nfs3_commit_async, &cm, x_commit);
		CHECK(w->status == NFS3_OK, "COMMIT after it");
		free(w);
		SETATTR3args tr = { .object = wire(&f) };

		tr.new_attributes.size.set_it = 1;
		tr.new_attributes.size.set_size3_u.size = 12;
		w = CALL(rpc_nfs3_setattr_async, &tr, x_setattr);
		CHECK(w->status == NFS3_OK, "SETATTR size back to 12");
	}
	free(w);
	w = read_(&f, 6, 3);
	CHECK(w->status == NFS3_OK && w->u32[0] == 3 && !w->u32[1] && !strcmp(w->text, "wor"), "READ middle, not eof");
	free(w);
	w = read_(&f, 1000, 10);
	CHECK(w->status == NFS3_OK && w->u32[0] == 0 && w->u32[1], "READ past EOF: 0 bytes, eof");
	free(w);
	w = read_(&dir, 0, 10);
	CHECK(w->status == NFS3ERR_ISDIR, "READ a directory -> NFS3ERR_ISDIR");
	free(w);
	w = write_(&dir, 0, "x", 1, FILE_SYNC);
	CHECK(w->status == NFS3ERR_ISDIR, "WRITE a directory -> NFS3ERR_ISDIR");
	free(w);
	COMMIT3args cmd = { .file = wire(&dir) };
	w = CALL(rpc_nfs3_commit_async, &cmd, x_commit);
	CHECK(w->status == NFS3ERR_ISDIR, "COMMIT a directory -> NFS3ERR_ISDIR");
	free(w);

	/* SETATTR: size, mode, times; guarded with the right / a wrong ctime */
	w = getattr(&f);
	struct fattr3 before = w->attr;
	free(w);
	SETATTR3args sa = { .object = wire(&f) };
	sa.new_attributes.size.set_it = 1;
	sa.new_attributes.size.set_size3_u.size = 5;
	sa.guard.check = 1;
	sa.guard.sattrguard3_u.obj_ctime = before.ctime;
	w = CALL(rpc_nfs3_setattr_async, &sa, x_setattr);
	CHECK(w->status == NFS3_OK && w->u32[0], "SETATTR size guarded by the right ctime");
	free(w);
	sa.guard.sattrguard3_u.obj_ctime.seconds = before.ctime.seconds + 1000;
	w = CALL(rpc_nfs3_setattr_async, &sa, x_setattr);
	CHECK(w->status == NFS3ERR_NOT_SYNC, "SETATTR guarded by a wrong ctime -> NFS3ERR_NOT_SYNC");
	free(w);
	w = getattr(&f);
	CHECK(w->attr.size == 5, "GETATTR size 5 after truncate");
	free(w);
	memset(&sa, 0, sizeof(sa));
	sa.object = wire(&f);
	sa.new_attributes.mode.set_it = 1;
	sa.new_attributes.mode.set_mode3_u.mode = 0600;
	sa.new_attributes.mtime.set_it = SET_TO_CLIENT_TIME;
	sa.new_attributes.mtime.set_mtime_u.mtime.seconds = 1000000000;
	w = CALL(rpc_nfs3_setattr_async, &sa, x_setattr);
	CHECK(w->status == NFS3_OK, "SETATTR mode and mtime");
	free(w);
	w = getattr(&f);
	CHECK((w->attr.mode & 07777) == 0600 && w->attr.mtime.seconds == 1000000000,
	      "GETATTR mode 0600 mtime 1000000000");
	free(w);

	/* LOOKUP ok / NOENT / "." / NOTDIR */
	w = lookup(&dir, "a");
	CHECK(w->status == NFS3_OK && w->fh.len == f.len && !memcmp(w->fh.val, f.val, f.len),
	      "LOOKUP returns the same handle as CREATE");
	free(w);
	w = lookup(&dir, "nope");
	CHECK(w->status == NFS3ERR_NOENT, "LOOKUP missing -> NFS3ERR_NOENT");
	free(w);
	w = lookup(&f, "x");
	CHECK(w->status == NFS3ERR_NOTDIR, "LOOKUP in a file -> NFS3ERR_NOTDIR");
	free(w);
	w = lookup(root, "..");
	CHECK(w->status == NFS3_OK && w->fh.len == root->len && !memcmp(w->fh.val, root->val, root->len),
	      "LOOKUP .. at the export root stays at the root");
	free(w);

	/* ACCESS */
	ACCESS3args ac = { .object = wire(&f), .access = 0x3f };
	w = CALL(rpc_nfs3_access_async, &ac, x_access);
	CHECK(w->status == NFS3_OK && (w->u32[0] & (ACCESS3_READ | ACCESS3_MODIFY)) ==
	      (ACCESS3_READ | ACCESS3_MODIFY), "ACCESS read+modify granted (0x%x)", w->u32[0]);
	free(w);

	/* SYMLINK + READLINK; READLINK of a file -> INVAL */
	SYMLINK3args sl = { .where = { .dir = wire(&dir), .name = "lnk" } };
	sl.symlink.symlink_data = "a";
	w = CALL(rpc_nfs3_symlink_async, &sl, x_create);
	CHECK(w->status == NFS3_OK && w->fh.len && w->attr.type == NF3LNK, "SYMLINK");
	lnk = w->fh;
	free(w);
	READLINK3args rl = { .symlink = wire(&lnk) };
	w = CALL(rpc_nfs3_readlink_async, &rl, x_readlink);
	CHECK(w->status == NFS3_OK && !strcmp(w->text, "a"), "READLINK -> 'a'");
	free(w);
	rl.symlink = wire(&f);
	w = CALL(rpc_nfs3_readlink_async, &rl, x_readlink);
	CHECK(w->status == NFS3ERR_INVAL, "READLINK of a regular file -> NFS3ERR_INVAL");
	free(w);

	/* MKNOD refused cleanly */
	MKNOD3args mk = { .where = { .dir = wire(&dir), .name = "fifo" } };
	mk.what.type = NF3FIFO;
	w = CALL(rpc_nfs3_mknod_async, &mk, x_create);
	CHECK(w->status == NFS3ERR_NOTSUPP && w->u32[0], "MKNOD FIFO -> NFS3ERR_NOTSUPP with dir wcc");
	free(w);
	w = lookup(&dir, "fifo");
	CHECK(w->status == NFS3ERR_NOENT, "MKNOD created nothing");
	free(w);

	/* LINK */
	LINK3args lk = { .file = wire(&f), .link = { .dir = wire(&dir), .name = "hard" } };
	w = CALL(rpc_nfs3_link_async, &lk, NULL);
	CHECK(w->status == NFS3_OK, "LINK");
	free(w);
	w = getattr(&f);
	CHECK(w->attr.nlink == 2, "nlink 2 after LINK");
	free(w);
	lk.file = wire(&dir);
	lk.link.name = "dirlink";
	w = CALL(rpc_nfs3_link_async, &lk, NULL);
	CHECK(w->status == NFS3ERR_ISDIR, "LINK a directory -> NFS3ERR_ISDIR");
	free(w);

	/* RENAME */
	RENAME3args rn = { .from = { .dir = wire(&dir), .name = "hard" },
			   .to = { .dir = wire(root), .name = "moved" } };
	w = CALL(rpc_nfs3_rename_async, &rn, x_rename);
	CHECK(w->status == NFS3_OK && w->u32[0], "RENAME across directories with wcc");
	free(w);
	w = lookup(root, "moved");
	CHECK(w->status == NFS3_OK, "renamed entry found");
	free(w);
	rn.from.name = "nope";
	w = CALL(rpc_nfs3_rename_async, &rn, x_rename);
	CHECK(w->status == NFS3ERR_NOENT, "RENAME missing -> NFS3ERR_NOENT");
	free(w);

	/* READDIR with paging, cookie verifier; READDIRPLUS */
	for (int i = 0; i < 40; i++) {
		snprintf(buf, sizeof(buf), "file%02d", i);
		free(create(&dir, buf, UNCHECKED, NULL));
	}
	int total = 0, pages = 0, seen_a = 0;
	uint64_t cookie = 0;
	char cv[8];

	memcpy(cv, zero, 8);
	for (;;) {
		w = readdir_(&dir, cookie, cv, 512);
		if (w->status != NFS3_OK) {
			CHECK(0, "READDIR page failed %u", w->status);
			free(w);
			break;
		}
		pages++;
		total += w->nnames;
		for (int i = 0; i < w->nnames; i++)
			seen_a += !strcmp(w->names[i], "a");
		if (w->nnames)
			cookie = w->cookies[w->nnames - 1];
		memcpy(cv, w->verf, 8);
		int eof = (int)w->u32[0];

		free(w);
		if (eof || pages > 100)
			break;
	}
	/* . .. a x lnk file00..39 */
	CHECK(total == 45 && pages > 1 && seen_a == 1, "READDIR paged: %d entries in %d pages", total, pages);
	w = readdir_(&dir, 3, "garbage!", 4096);
	CHECK(w->status == NFS3ERR_BAD_COOKIE, "READDIR with a wrong cookie verifier -> NFS3ERR_BAD_COOKIE");
	free(w);
	w = readdir_(&dir, 0, zero, 100);
	CHECK(w->status == NFS3ERR_TOOSMALL, "READDIR count 100 -> NFS3ERR_TOOSMALL");
	free(w);
	READDIRPLUS3args rp = { .dir = wire(&dir), .dircount = 8192, .maxcount = 65536 };
	w = CALL(rpc_nfs3_readdirplus_async, &rp, x_readdirplus);
	CHECK(w->status == NFS3_OK && w->nnames == 45 && w->u32[0] && w->u32[1],
	      "READDIRPLUS: 45 entries, each with handle and attributes, eof");
	free(w);
	rp.dir = wire(&f);
	w = CALL(rpc_nfs3_readdirplus_async, &rp, x_readdirplus);
	CHECK(w->status == NFS3ERR_NOTDIR, "READDIRPLUS on a file -> NFS3ERR_NOTDIR");
	free(w);

	/* REMOVE / RMDIR and their errors */
	w = remove_(&dir, "nope");
	CHECK(w->status == NFS3ERR_NOENT, "REMOVE missing -> NFS3ERR_NOENT");
	free(w);
	RMDIR3args rd = { .object = { .dir = wire(root), .name = "suite" } };
	w = CALL(rpc_nfs3_rmdir_async, &rd, NULL);
	CHECK(w->status == NFS3ERR_NOTEMPTY, "RMDIR non-empty -> NFS3ERR_NOTEMPTY");
	free(w);
	w = create(&dir, "gone", UNCHECKED, NULL);
	f2 = w->fh;
	free(w);
	w = remove_(&dir, "gone");
	CHECK(w->status == NFS3_OK, "REMOVE");
	free(w);
	w = getattr(&f2);
	CHECK(w->status == NFS3ERR_STALE, "GETATTR of a removed file -> NFS3ERR_STALE (%u)", w->status);
	free(w);
	w = write_(&f2, 0, "x", 1, UNSTABLE);
	CHECK(w->status == NFS3ERR_STALE, "WRITE to a removed file -> NFS3ERR_STALE");
	free(w);
	w = create(&dir, "gone", UNCHECKED, NULL);
	CHECK(w->status == NFS3_OK && (w->fh.len != f2.len || memcmp(w->fh.val, f2.val, f2.len)),
	      "a new file of the same name gets a different handle");
	free(w);
	w = getattr(&f2);
	CHECK(w->status == NFS3ERR_STALE, "the old handle stays stale after its slot may be reused");
	free(w);
	RMDIR3args rd2 = { .object = { .dir = wire(&dir), .name = "a" } };
	w = CALL(rpc_nfs3_rmdir_async, &rd2, NULL);
	CHECK(w->status == NFS3ERR_NOTDIR, "RMDIR a file -> NFS3ERR_NOTDIR (%u)", w->status);
	free(w);

	/* The high-level sync API on the same tree (mount, stat, open/pwrite/pread/fsync,
	 * chmod, truncate, opendir, statvfs, access, mkdir/rmdir, unlink, rename) */
	r = nfs_stat64(nfs, "/suite/a", &st);
	CHECK(r == 0 && st.nfs_size == 5 && st.nfs_nlink == 2, "nfs_stat64 size 5 nlink 2");
	r = nfs_creat(nfs, "/suite/hl", 0644, &h);
	CHECK(r == 0, "nfs_creat");
	if (!r) {
		char big[65536], back[65536];

		for (size_t i = 0; i < sizeof(big); i++)
			big[i] = (char)(i * 7 + 3);
		CHECK(nfs_pwrite(nfs, h, 4096, sizeof(big), big) == (int)sizeof(big), "nfs_pwrite 64 KiB at 4096");
		CHECK(nfs_fsync(nfs, h) == 0, "nfs_fsync (COMMIT)");
		CHECK(nfs_pread(nfs, h, 4096, sizeof(back), back) == (int)sizeof(back) &&
		      !memcmp(big, back, sizeof(big)), "nfs_pread back the same 64 KiB");
		CHECK(nfs_pread(nfs, h, 0, 16, back) == 16 && !memcmp(back, zero, 8), "hole reads zeroes");
		CHECK(nfs_ftruncate(nfs, h, 100) == 0, "nfs_ftruncate");
		nfs_close(nfs, h);
	}
	CHECK(nfs_chmod(nfs, "/suite/hl", 0640) == 0 && nfs_stat64(nfs, "/suite/hl", &st) == 0 &&
	      (st.nfs_mode & 0777) == 0640 && st.nfs_size == 100, "nfs_chmod 0640, size 100");
	CHECK(nfs_access(nfs, "/suite/hl", R_OK | W_OK) == 0, "nfs_access R_OK|W_OK");
	CHECK(nfs_mkdir(nfs, "/suite/sub") == 0 && nfs_rmdir(nfs, "/suite/sub") == 0, "nfs_mkdir + nfs_rmdir");
	CHECK(nfs_rename(nfs, "/suite/hl", "/suite/hl2") == 0 && nfs_unlink(nfs, "/suite/hl2") == 0,
	      "nfs_rename + nfs_unlink");
	struct nfs_statvfs_64 sv;
	CHECK(nfs_statvfs64(nfs, "/", &sv) == 0 && sv.f_blocks > 0, "nfs_statvfs64");
	struct nfsdir *d;
	int n = 0;
	if (nfs_opendir(nfs, "/suite", &d) == 0) {
		while (nfs_readdir(nfs, d))
			n++;
		nfs_closedir(nfs, d);
	}
	CHECK(n == 46, "nfs_opendir/readdir lists %d entries", n);
	CHECK(nfs_mknod(nfs, "/suite/dev", 0600 | S_IFCHR, 0x0101) != 0, "nfs_mknod refused");
	CHECK(nfs_stat64(nfs, "/.vmfsd-nfs.key", &st) != 0, "the handle key file is not visible");
}

static void forge(struct fh *root)
{
	struct waiter *w;
	struct fh bad;

	w = getattr(root);
	CHECK(w->status == NFS3_OK, "GETATTR with the real root handle");
	free(w);
	for (uint32_t i = 0; i < root->len; i += 5) {
		bad = *root;
		bad.val[i] ^= 0x40;
		w = getattr(&bad);
		if (w->status != NFS3ERR_BADHANDLE && w->status != NFS3ERR_STALE)
			CHECK(0, "altered byte %u accepted (%u)", i, w->status);
		free(w);
	}
	CHECK(1, "every altered handle -> NFS3ERR_BADHANDLE or NFS3ERR_STALE");
	bad = *root;
	bad.len = 16;
	w = getattr(&bad);
	CHECK(w->status == NFS3ERR_BADHANDLE, "short handle -> NFS3ERR_BADHANDLE");
	free(w);
	/* a forged handle for another FD (address +1 << 22) with the MAC left as is */
	bad = *root;
	bad.val[24] ^= 0x01;
	w = getattr(&bad);
	CHECK(w->status == NFS3ERR_BADHANDLE, "forged FD address -> NFS3ERR_BADHANDLE (%u)", w->status);
	free(w);
	bad = *root;
	memset(bad.val + 32, 0, 16);
	w = lookup(&bad, "x");
	CHECK(w->status == NFS3ERR_BADHANDLE, "zeroed MAC in LOOKUP -> NFS3ERR_BADHANDLE");
	free(w);
	bad = *root;
	bad.val[5] ^= 0xff;    /* another volume */
	w = getattr(&bad);
	CHECK(w->status == NFS3ERR_STALE, "unknown volume -> NFS3ERR_STALE");
	free(w);
}

static struct nfs_context *hl_mount(const char *exp)
{
	struct nfs_context *nfs = nfs_init_context();
	char url[512];
	struct nfs_url *u;

	snprintf(url, sizeof(url), "nfs://%s%s?nfsport=%d&mountport=%d", host, exp, port, port);
	u = nfs ? nfs_parse_url_dir(nfs, url) : NULL;
	if (!u || nfs_mount(nfs, u->server, u->path)) {
		fprintf(stderr, "nfs_client: nfs_mount %s: %s\n", url, nfs ? nfs_get_error(nfs) : "");
		exit(2);
	}
	nfs_destroy_url(u);
	return nfs;
}

/* pwrite/pread: @args are (OFF FILE) or (OFF LEN FILE) groups; any byte
 * offset and length, through libnfs's high-level calls. */
static void pio(const char *exp, const char *name, int wr, int argc, char **args)
{
	struct nfs_context *nfs = hl_mount(exp);
	int step = wr ? 2 : 3;
	struct nfsfh *fh;
	char path[512];

	snprintf(path, sizeof(path), "/%s", name);
	if (wr ? nfs_open2(nfs, path, O_RDWR | O_CREAT, 0644, &fh) : nfs_open(nfs, path, O_RDONLY, &fh)) {
		fprintf(stderr, "nfs_client: open %s: %s\n", path, nfs_get_error(nfs));
		exit(2);
	}
	if (argc % step)
		exit(2);
	for (int i = 0; i < argc; i += step) {
		uint64_t off = strtoull(args[i], NULL, 0), len = wr ? 0 : strtoull(args[i + 1], NULL, 0);
		const char *file = args[i + step - 1];
		FILE *f = fopen(file, wr ? "rb" : "wb");
		char *buf;

		if (!f)
			exit(2);
		if (wr) {
			fseek(f, 0, SEEK_END);
			len = (uint64_t)ftell(f);
			rewind(f);
		}
		buf = malloc(len + 1);
		if (!buf || (wr && fread(buf, 1, len, f) != len))
			exit(2);
		int n = wr ? nfs_pwrite(nfs, fh, off, len, buf) : nfs_pread(nfs, fh, off, len, buf);

		CHECK(n >= 0 && (uint64_t)n == len, "%s %llu bytes at %llu", wr ? "pwrite" : "pread",
		      (unsigned long long)len, (unsigned long long)off);
		if (!wr && n > 0 && fwrite(buf, 1, (size_t)n, f) != (size_t)n)
			exit(2);
		fclose(f);
		free(buf);
	}
	CHECK(!wr || nfs_fsync(nfs, fh) == 0, "fsync");
	nfs_close(nfs, fh);
	nfs_destroy_context(nfs);
}

int main(int argc, char **argv)
{
	struct nfs_context *nfs = NULL;
	struct fh root;
	uint32_t ms;

	if (argc < 5) {
		fprintf(stderr, "usage: nfs_client procs|forge|mnt|owner|write|verf|mkdir|pipeline|meta|"
			"pwrite|pread "
			"HOST PORT EXPORT [NAME]\n");
		return 2;
	}
	host = argv[2];
	port = atoi(argv[3]);
	if (connect_mnt(argv[4], &root, &ms))
		return 2;
	if (!strcmp(argv[1], "mnt")) {
		printf("mnt %u\n", ms);
		return 0;
	}
	if (ms != MNT3_OK) {
		fprintf(stderr, "nfs_client: MNT %s: %u\n", argv[4], ms);
		return 2;
	}
	if (!strcmp(argv[1], "procs")) {
		nfs = hl_mount(argv[4]);
		suite(nfs, &root);
		nfs_destroy_context(nfs);
	} else if (!strcmp(argv[1], "forge")) {
		forge(&root);
	} else if (!strcmp(argv[1], "owner") && argc > 5) {
		struct waiter *w = create(&root, argv[5], GUARDED, NULL);

		if (w->status != NFS3_OK) {
			printf("create %u\n", w->status);
			return 1;
		}
		printf("uid %u gid %u\n", w->attr.uid, w->attr.gid);
		free(w);
	} else if (!strcmp(argv[1], "verf") && argc > 5) {
		struct waiter *w = create(&root, argv[5], UNCHECKED, NULL);
		struct fh f = w->fh;

		free(w);
		w = write_(&f, 0, "v", 1, UNSTABLE);
		if (w->status != NFS3_OK) {
			printf("write %u\n", w->status);
			return 1;
		}
		printf("verf ");
		for (int i = 0; i < 8; i++)
			printf("%02x", (unsigned char)w->verf[i]);
		printf("\n");
		free(w);
	} else if (!strcmp(argv[1], "mkdir") && argc > 5) {
		MKDIR3args md = { .where = { .dir = wire(&root), .name = argv[5] } };
		struct waiter *w;

		md.attributes.mode.set_it = 1;
		md.attributes.mode.set_mode3_u.mode = 0777;
		w = CALL(rpc_nfs3_mkdir_async, &md, x_create);
		printf("mkdir %u\n", w->status);
		if (w->status != NFS3_OK)
			failures++;
		free(w);
	} else if (!strcmp(argv[1], "pipeline") && argc > 5) {
		pipeline(&root, argv[5]);
	} else if ((!strcmp(argv[1], "pwrite") || !strcmp(argv[1], "pread")) && argc > 5) {
		pio(argv[4], argv[5], argv[1][1] == 'w', argc - 6, argv + 6);
	} else if (!strcmp(argv[1], "meta") && argc > 5) {
		meta(&root, argv[5]);
	} else if (!strcmp(argv[1], "write") && argc > 5) {
		struct waiter *w = lookup(&root, argv[5]);
		struct fh f = w->fh;

		if (w->status != NFS3_OK) {
			printf("lookup %u\n", w->status);
			return 1;
		}
		free(w);
		w = write_(&f, 0, "nfs-write", 9, FILE_SYNC);
		printf("write %u\n", w->status);
		free(w);
	} else {
		fprintf(stderr, "nfs_client: unknown mode %s\n", argv[1]);
		return 2;
	}
	rpc_destroy_context(rpc);
	printf("%s\n", failures ? "FAILED" : "ALL OK");
	return failures ? 1 : 0;
}
