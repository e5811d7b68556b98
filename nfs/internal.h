/* NFS server internals shared by the files of nfs/. */
#ifndef NFS_INTERNAL_H
#define NFS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmfs/fs.h"
#include "vmfs/host.h"
#include "vmfs/nfs.h"
#include "xdr.h"

#define RPC_VERS       2
#define PMAP_PROG      100000u
#define NFS_PROG       100003u
#define MOUNT_PROG     100005u
#define NFS_VERS       3
#define MOUNT_VERS     3

#define NFS_MAXDATA    (1u << 20)            /* wtmax; the most a READ returns */
/* rtmax advertised: libnfs splits a bigger read into rtmax calls sent at
 * once, which the worker pool serves in parallel (docs/nfs.md, Performance).
 * Writes stay at one call per 1 MiB file block: a partial write of a fresh
 * block zero-fills the rest of it. */
#define NFS_RTMAX      (512u << 10)
#define NFS_MAX_RECORD (NFS_MAXDATA + 4096)  /* a WRITE of wtmax plus headers */
#define NFS_FH_LEN     48
#define NFS_MAX_VOLS   16
#define NFS_MAX_EXPORTS 64
#define NFS_MAX_CLIENTS 32
#define NFS_MAX_LISTEN 8
#define NFS_MAX_CONNS  256
#define NFS_WORKERS    16                    /* threads serving every connection */
#define NFS_CONN_JOBS  32                    /* calls in flight per connection */
#define NFS_BIG_KEEP   16                    /* 1 MiB record buffers kept for reuse */
#define NFS_BIG_BUDGET 64                    /* big records in flight, all connections */
#define NFS_SEND_TIMEOUT_S 30                /* a client not reading replies is dropped */
#define NFS_EARLY_MIN  (64u << 10)           /* writes this big are answered early */
#define NFS_BULK       (64u << 10)           /* calls moving this much get a worker each */
#define NFS_EARLY_MARGIN (256ull << 20)      /* free space kept when answering writes early */
#define NFS_LOCK_IDLE_S 2.0                  /* release a write lock this long after the last write */

/* accept_stat / reject_stat / auth_stat (RFC 5531) */
enum { RPC_SUCCESS = 0, RPC_PROG_UNAVAIL = 1, RPC_PROG_MISMATCH = 2, RPC_PROC_UNAVAIL = 3,
       RPC_GARBAGE_ARGS = 4, RPC_SYSTEM_ERR = 5 };
enum { RPC_MISMATCH_ = 0, RPC_AUTH_ERROR = 1 };
enum { AUTH_BADCRED_ = 1, AUTH_REJECTEDCRED_ = 2, AUTH_BADVERF_ = 3, AUTH_TOOWEAK_ = 5 };
#define FLAVOR_NONE 0
#define FLAVOR_SYS  1

/* nfsstat3 */
enum {
	NFS3_OK = 0, NFS3ERR_PERM = 1, NFS3ERR_NOENT = 2, NFS3ERR_IO = 5, NFS3ERR_NXIO = 6,
	NFS3ERR_ACCES = 13, NFS3ERR_EXIST = 17, NFS3ERR_XDEV = 18, NFS3ERR_NODEV = 19,
	NFS3ERR_NOTDIR = 20, NFS3ERR_ISDIR = 21, NFS3ERR_INVAL = 22, NFS3ERR_FBIG = 27,
	NFS3ERR_NOSPC = 28, NFS3ERR_ROFS = 30, NFS3ERR_MLINK = 31, NFS3ERR_NAMETOOLONG = 63,
	NFS3ERR_NOTEMPTY = 66, NFS3ERR_DQUOT = 69, NFS3ERR_STALE = 70, NFS3ERR_REMOTE = 71,
	NFS3ERR_BADHANDLE = 10001, NFS3ERR_NOT_SYNC = 10002, NFS3ERR_BAD_COOKIE = 10003,
	NFS3ERR_NOTSUPP = 10004, NFS3ERR_TOOSMALL = 10005, NFS3ERR_SERVERFAULT = 10006,
	NFS3ERR_BADTYPE = 10007, NFS3ERR_JUKEBOX = 10008,
};

struct nfs_cred {
	uint32_t flavor, uid, gid, ngids;
	uint32_t gids[16];
};

struct nfs_vol {
	struct vmfs_host *host;
	struct vmfs_fs *fs;
	uint8_t uuid[16];
	char uuid_str[37];
	char label[129];
	uint8_t key[NFS_FH_KEY_SIZE];
	double free_at;            /* fsmu held exclusively: free space known at */
	uint64_t free_bytes;       /* ... less what early-answered writes may take */
};

struct nfs_client_rule {
	uint32_t addr, mask;       /* host order */
};

struct nfs_export {
	uint32_t id;               /* FNV-1a of the canonical path (stable) */
	char path[1024];           /* as clients mount it */
	char vol_name[160];        /* "" = first volume */
	char rel[1024];            /* path inside the volume */
	char spec[2048];           /* canonical spec */
	struct nfs_client_rule clients[NFS_MAX_CLIENTS];
	int nclients;              /* 0 = everyone */
	bool ro, root_squash, all_squash;
	uint32_t anonuid, anongid;
};

struct nfs_wlock {
	int vol;
	uint32_t addr;
	double last;
	bool dirty;
	int err;                   /* a write answered early failed: COMMIT reports it */
};

struct nfs_conn;

struct nfs_srv {
	vmfs_log_fn log;
	void *log_ctx;
	pthread_mutex_t mu;        /* exports, conns, wlocks, the job queue */
	pthread_rwlock_t fsmu;     /* filesystem calls: shared to read, exclusive to change */
	struct nfs_vol vols[NFS_MAX_VOLS];
	int nvols;
	struct nfs_export *exports[NFS_MAX_EXPORTS];
	int nexports;
	int lfd[NFS_MAX_LISTEN];
	int nlfd;
	uint16_t nfs_port;
	uint32_t nfs_addr;
	bool have_pmap;
	uint64_t wverf;          /* write verifier (atomic): new per instance and after a lost write */
	struct nfs_wlock *wlocks;
	int nwlocks, capwlocks;
	struct nfs_conn *conns;
	int nconns;
	bool started, stop, registered, have_accept, have_reaper;
	int wake[2];
	int ep;                    /* epoll: connections (one-shot), qev, wake */
	int qev;                   /* eventfd: jobs queued */
	struct nfs_job *queue, **qtail;
	uint8_t *bigs[NFS_BIG_KEEP];
	int nbig;
	int big_out;               /* mu: big records held by calls in flight */
	pthread_t workers[NFS_WORKERS];
	int nworkers;
	pthread_t accept_thr, reaper_thr;
};

/* How a transport sends a reply before its call has finished: \return
 * false (nothing sent) when that could block. */
typedef bool (*nfs_send_now_fn)(void *ctx, const uint8_t *p, size_t n);

/* Per-call context. */
struct nfs_call {
	struct nfs_srv *s;
	uint32_t peer;
	struct nfs_cred cred;
	nfs_send_now_fn send_now;  /* NULL: replies only when the call is done */
	void *send_ctx;
	size_t start;              /* where this call's reply starts in the output */
	bool sent;                 /* the reply went out early */
};

void nfs_log(struct nfs_srv *s, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
double nfs_now(void);

/* export.c */
int nfs_export_parse(const char *spec, struct nfs_export *e, char *err, size_t errlen);
bool nfs_export_allows(const struct nfs_export *e, uint32_t peer);
/** Export with id @id (s->mu held). */
struct nfs_export *nfs_export_by_id(struct nfs_srv *s, uint32_t id);
/** Volume index of the export (-1 when not served). */
int nfs_export_vol(struct nfs_srv *s, const struct nfs_export *e);
/** Apply squashing to @c for export @e. */
void nfs_export_squash(const struct nfs_export *e, struct nfs_cred *c);

/* fh.c */
struct nfs_fh {
	int vol;
	uint32_t export_id, addr, gen;
};
void nfs_fh_make(const struct nfs_vol *v, uint32_t export_id, uint32_t addr, uint32_t gen,
		 uint8_t out[NFS_FH_LEN]);
/** \return NFS3_OK, NFS3ERR_BADHANDLE (malformed/forged), NFS3ERR_STALE (volume not here). */
int nfs_fh_parse(struct nfs_srv *s, const uint8_t *p, uint32_t len, struct nfs_fh *fh);

/* nfs3.c / mount.c: decode args, run, encode the results into @o.
 * \return RPC_SUCCESS, RPC_PROC_UNAVAIL or RPC_GARBAGE_ARGS (nothing encoded). */
int nfs3_dispatch(struct nfs_call *c, uint32_t proc, struct xdr_in *x, struct xdr_out *o);
int mount3_dispatch(struct nfs_call *c, uint32_t proc, struct xdr_in *x, struct xdr_out *o);
/** Release the write locks idle for NFS_LOCK_IDLE_S (all when @all). */
void nfs_wlocks_reap(struct nfs_srv *s, bool all);

/* rpc.c: append the record-marked reply to one call (nothing for no reply,
 * or when the call sent it early through @send_now). */
void nfs_rpc_process(struct nfs_srv *s, uint32_t peer, const uint8_t *rec, size_t len,
		     struct xdr_out *o, nfs_send_now_fn send_now, void *send_ctx);
/** Is this call a READ or WRITE of NFS_BULK bytes or more?  (a hint) */
bool nfs_rpc_is_bulk(const uint8_t *rec, size_t len);
/** Send the reply encoded so far in @o now; the call goes on without
 *  encoding more.  \return false, with @o unchanged, when not possible. */
bool nfs_rpc_reply_early(struct nfs_call *c, struct xdr_out *o);

/* rpcbind.c */
int nfs_rpcbind_set(struct nfs_srv *s, bool set);

#endif
