/* The iSCSI target as vmfsd sees it: a server with portals, targets (IQN,
 * CHAP, initiator ACL) and their LUNs.  Targets and LUNs can be added and
 * removed while the server runs.  Every function returns 0 or a negative
 * errno; those taking @err also write a one-line reason there. */
#ifndef ISCSI_TARGET_H
#define ISCSI_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ISCSI_DEFAULT_PORT 3260
#define ISCSI_MAX_LUNS 256
#define ISCSI_MAX_INITIATORS 32

struct iscsi_srv;

/** One `--lun` line: IQN,PATH[,chap=USER:SECRET][,mutual=USER:SECRET]
 *  [,initiators=IQN1;IQN2][,thin][,id=HEX16][,lun=N] */
struct iscsi_lun_spec {
	char iqn[224];
	char path[1024];
	char chap_user[256], chap_secret[256];
	char mutual_user[256], mutual_secret[256];
	char initiators[ISCSI_MAX_INITIATORS][224];
	int ninitiators;
	bool has_chap, has_mutual, has_initiators, thin, has_id;
	uint64_t id;
	int lun;                 /* -1: next free */
};

/** Parse a LUN spec.  \return 0 or -EINVAL with a reason in @err. */
int iscsi_lun_spec_parse(const char *spec, struct iscsi_lun_spec *out, char *err, size_t errlen);
/** Format a spec back (with lun= and id= filled in) for persistence. */
void iscsi_lun_spec_format(const struct iscsi_lun_spec *s, char *buf, size_t len);

int iscsi_srv_create(struct iscsi_srv **out);
/** Listen on "ADDR[:PORT]" (IPv4 or [IPv6]); may be called several times
 *  before iscsi_srv_start(). */
int iscsi_srv_listen(struct iscsi_srv *s, const char *addr, char *err, size_t errlen);
/** Start the accept thread. */
int iscsi_srv_start(struct iscsi_srv *s);
/** Stop accepting, drop every connection, free everything. */
void iscsi_srv_destroy(struct iscsi_srv *s);

/** Add a LUN (creating the target on first use; target settings in the
 *  spec replace the target's).  On success *lun_out is its number and the
 *  spec, completed with lun= and id=, is written to @canon. */
int iscsi_srv_add_lun(struct iscsi_srv *s, const char *spec, int *lun_out,
		      char *canon, size_t canonlen, char *err, size_t errlen);
/** Remove one LUN (lun >= 0) or the whole target (lun < 0).  Sessions to
 *  that target are dropped; initiators log in again and see the change. */
int iscsi_srv_remove(struct iscsi_srv *s, const char *iqn, int lun, char *err, size_t errlen);
/** List targets, LUNs and sessions (text table or JSON). */
void iscsi_srv_list(struct iscsi_srv *s, FILE *f, bool json);
/** Where the target's messages go (default: stderr).  @level: 0 error,
 *  1 warning, 2 info, 3 debug. */
void iscsi_set_log(void (*fn)(int level, const char *msg));

/** Number of portals listened on. */
int iscsi_srv_nportals(struct iscsi_srv *s);

#endif
