/* vmfsd internals shared by its files. */
#ifndef VMFSD_H
#define VMFSD_H

#include <stdbool.h>
#include <stdint.h>

#include "vmfs/host.h"
#include "vmfs/util.h"
#include "log.h"
#include "store.h"

#define VMFSD_MAX_VOLUMES 16
#define VMFSD_MAX_PORTALS 8
#define VMFSD_MAX_LUNS 256
#define VMFSD_MAX_EXPORTS 64
#define VMFSD_MAX_VDISKS 64

struct vmfsd_config {
	char *state_dir;
	char *socket_path;       /* default STATE_DIR/vmfsd.sock */
	char *pidfile;
	char *log_file;
	char *host_uuid;         /* override; default: persisted in the store */
	char *volumes[VMFSD_MAX_VOLUMES];
	int nvolumes;
	bool daemonize;
	enum vlog_level log_level;
	double io_timeout;       /* seconds; 0 = default */
	enum vmfs_host_direct direct;           /* --direct auto|on|off */
	char *iscsi_portals[VMFSD_MAX_PORTALS]; /* --iscsi ADDR[:PORT] */
	int niscsi;
	char *luns[VMFSD_MAX_LUNS];             /* --lun IQN,PATH[,...] */
	int nluns;
	char *nfs_listen;                       /* --nfs ADDR[:PORT] */
	char *nfs_portmap;                      /* --nfs-portmap ADDR[:PORT] */
	char *exports[VMFSD_MAX_EXPORTS];       /* --export PATH[,opts] */
	int nexports;
	char *vdisks[VMFSD_MAX_VDISKS];         /* --vhost-user-blk SOCKET,PATH[,...] */
	int nvdisks;
};

/** Parse argv (and the --config file it names).  Prints usage on --help
 *  (*exit_now = 1, returns 0) and a clear message on errors (returns -EINVAL). */
int vmfsd_parse_args(int argc, char **argv, struct vmfsd_config *cfg, int *exit_now);
void vmfsd_config_free(struct vmfsd_config *cfg);

struct vmfsd_volume {
	char *spec;              /* IMG[,EXTENT...] as configured */
	char state[96];          /* "mounted", "error: ..." */
	uint64_t size;           /* logical volume bytes */
	const char *ats;         /* test-and-set mode of the first extent */
	bool direct;             /* extents opened with O_DIRECT */
	char label[129];
	char uuid[36];
	struct vmfs_host *host;  /* NULL unless mounted */
};

struct vmfsd {
	struct vmfsd_config cfg;
	struct vstore *store;
	char host_uuid[40];
	struct vmfsd_volume vols[VMFSD_MAX_VOLUMES];
	int nvols;
	int listen_fd;
	double started;          /* monotonic seconds */
	struct iscsi_srv *iscsi; /* the iSCSI target (vmfsd/iscsi_glue.c) */
	struct nfs_srv *nfs;     /* the NFS server (vmfsd/nfs_glue.c) */
	struct vhost_srv *vhost; /* vhost-user-blk exports (vmfsd/vhost_glue.c) */
};

/* Management socket. */
int vmfsd_mgmt_listen(struct vmfsd *d);
/** Serve one accepted connection (one request line, one reply). */
void vmfsd_mgmt_serve(struct vmfsd *d, int fd);
/** One-line management reply: text "MSG" / "error: MSG", or {"ok"|"error": "MSG"}. */
void vmfsd_reply(FILE *f, bool json, bool ok, const char *msg);

double vmfsd_now(void);

/* Volumes (volumes.c): mount as a cluster host; failures leave v->state set. */
struct vmfsd;
void vmfsd_volume_mount(struct vmfsd *d, struct vmfsd_volume *v, const char *spec);
void vmfsd_volume_unmount(struct vmfsd_volume *v);
/** How the volume's extents are read and written: "O_DIRECT" or "page cache". */
const char *vmfsd_volume_io_name(const struct vmfsd_volume *v);
#include <stdio.h>
void vmfsd_mgmt_hosts(struct vmfsd *d, FILE *f, bool json);
void vmfsd_mgmt_locks(struct vmfsd *d, FILE *f, bool json, const char *only);

/* iSCSI target glue (iscsi_glue.c): start from flags/config or the store,
 * serve `target ...` management requests, stop. */
int vmfsd_iscsi_start(struct vmfsd *d);
void vmfsd_iscsi_stop(struct vmfsd *d);
#include <stdio.h>
void vmfsd_iscsi_mgmt(struct vmfsd *d, FILE *f, bool json, int argc, char **argv);

/* NFS server glue (nfs_glue.c): same pattern, `export list|add|remove`. */
int vmfsd_nfs_start(struct vmfsd *d);
void vmfsd_nfs_stop(struct vmfsd *d);
void vmfsd_nfs_mgmt(struct vmfsd *d, FILE *f, bool json, int argc, char **argv);

/* vhost-user-blk exports (vhost_glue.c): `vdisk list|export|unexport`. */
int vmfsd_vhost_start(struct vmfsd *d);
void vmfsd_vhost_stop(struct vmfsd *d);
/* Exports that wait for a disk's lock: poll timeout until the next retry
 * (-1: none waits), and the retry itself (does nothing before it is due). */
int vmfsd_vhost_timeout_ms(struct vmfsd *d);
void vmfsd_vhost_retry(struct vmfsd *d);
void vmfsd_vhost_mgmt(struct vmfsd *d, FILE *f, bool json, int argc, char **argv);

#endif
