/*
 * OpenVMFS NFS server: NFSv3 (RFC 1813) and MOUNT v3 over TCP with ONC RPC
 * record marking (RFC 5531), AUTH_SYS, serving directories of VMFS volumes
 * mounted as cluster hosts (vmfs/host.h).  A tiny portmapper (PMAP v2
 * NULL/GETPORT/DUMP) can also be served for clients that insist on asking
 * port 111 when no rpcbind runs.
 *
 * File handles (48 bytes): version, volume UUID, export id, FD address, FD
 * generation, and an HMAC-SHA256 (first 16 bytes) over them under a per-volume
 * key, so they survive restarts and hosts but cannot be forged.
 *
 * Functions return 0 or a negative errno; @err gets a message for people.
 */
#ifndef VMFS_NFS_H
#define VMFS_NFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vmfs/host.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NFS_FH_KEY_SIZE 32
/* Name of the hidden file holding the handle key in a volume's root. */
#define NFS_FH_KEY_FILE ".vmfsd-nfs.key"

struct nfs_srv;

int nfs_srv_create(vmfs_log_fn log, void *log_ctx, struct nfs_srv **out);
/** Stop serving (connections closed, write locks released) and free. */
void nfs_srv_destroy(struct nfs_srv *s);

/** Serve volume @h (label/UUID name it in export paths) with handle key @key. */
int nfs_srv_add_volume(struct nfs_srv *s, struct vmfs_host *h, const uint8_t key[NFS_FH_KEY_SIZE]);

/** The volume's handle key: read from NFS_FH_KEY_FILE in its root; if absent,
 *  @fallback (or a fresh random key when NULL) is written there.  Several
 *  hosts racing agree on the first one written. */
int nfs_volume_key(struct vmfs_fs *fs, const uint8_t *fallback, uint8_t key[NFS_FH_KEY_SIZE]);

/** Export PATH[,clients=A;B/N;*][,ro|rw][,root_squash|no_root_squash][,all_squash]
 *  [,anonuid=N][,anongid=N].  PATH is a directory on the (first) volume, or
 *  /vmfs/volumes/LABEL-OR-UUID/dir.  @canon receives the normalised spec. */
int nfs_srv_add_export(struct nfs_srv *s, const char *spec, char *canon, size_t canonlen,
		       char *err, size_t errlen);
int nfs_srv_remove_export(struct nfs_srv *s, const char *path, char *err, size_t errlen);
void nfs_srv_list_exports(struct nfs_srv *s, FILE *f, bool json);
/** Parse and normalise a spec without a server (config checking). */
int nfs_export_spec_check(const char *spec, char *canon, size_t canonlen, char *err, size_t errlen);

/** Listen for NFS+MOUNT on "ADDR[:PORT]" (2049 by default). */
int nfs_srv_listen(struct nfs_srv *s, const char *addr, char *err, size_t errlen);
/** Also answer PMAP v2 GETPORT on "ADDR[:PORT]" (111 by default). */
int nfs_srv_listen_portmap(struct nfs_srv *s, const char *addr, char *err, size_t errlen);
/** Start the threads; register NFS v3 and MOUNT v3 (TCP) with a running
 *  rpcbind on 127.0.0.1:111 (ignored when none answers). */
int nfs_srv_start(struct nfs_srv *s);

/* ---- for the fuzzer and unit tests --------------------------------------- */
/** Process one RPC record from IPv4 @peer (host order); *reply (malloc'd,
 *  record-marked, free with free()) may be NULL when the call gets no reply. */
void nfs_srv_process(struct nfs_srv *s, uint32_t peer, const uint8_t *rec, size_t len,
		     uint8_t **reply, size_t *reply_len);

#ifdef __cplusplus
}
#endif
#endif
