/* MOUNT v3 (RFC 1813 appendix I): NULL, MNT, DUMP, UMNT, UMNTALL, EXPORT. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

enum { MNT3_OK = 0, MNT3ERR_PERM = 1, MNT3ERR_NOENT = 2, MNT3ERR_IO = 5, MNT3ERR_ACCES = 13,
       MNT3ERR_NOTDIR = 20, MNT3ERR_INVAL = 22, MNT3ERR_NAMETOOLONG = 63,
       MNT3ERR_NOTSUPP = 10004, MNT3ERR_SERVERFAULT = 10006 };

/* Longest export whose path is @dir or a parent of it (s->mu held). */
static struct nfs_export *find_export(struct nfs_srv *s, const char *dir, const char **rest)
{
	struct nfs_export *best = NULL;
	size_t blen = 0;

	for (int i = 0; i < s->nexports; i++) {
		struct nfs_export *e = s->exports[i];
		size_t l = strlen(e->path);

		if (!strcmp(e->path, "/"))
			l = 0;
		if (strncmp(dir, e->path, l) || (dir[l] && dir[l] != '/'))
			continue;
		if (!best || l >= blen) {
			best = e;
			blen = l;
		}
	}
	if (best)
		*rest = dir + blen;
	return best;
}

static int mnt(struct nfs_call *c, struct xdr_in *x, struct xdr_out *o)
{
	struct nfs_srv *s = c->s;
	char dir[1025], path[2100];
	const char *rest = "";
	struct nfs_export *e;
	struct vmfs_stat st;
	uint8_t fh[NFS_FH_LEN];
	uint32_t addr = 0, eid = 0;
	int vol = -1, r, status = MNT3_OK;

	if (!xin_str(x, dir, 1024))
		return RPC_GARBAGE_ARGS;
	if (!dir[0])
		strcpy(dir, "/");       /* libnfs mounts "" for nfs://host/file */
	if (dir[0] != '/') {
		status = MNT3ERR_NOENT;
		goto reply;
	}
	pthread_mutex_lock(&s->mu);
	e = find_export(s, dir, &rest);
	if (!e) {
		status = MNT3ERR_NOENT;
	} else if (!nfs_export_allows(e, c->peer)) {
		struct in_addr a = { .s_addr = htonl(c->peer) };

		nfs_log(s, VMFS_LOG_WARN, "MNT %s refused to client %s (not in clients= of %s)",
			dir, inet_ntoa(a), e->path);
		status = MNT3ERR_ACCES;
	} else if ((vol = nfs_export_vol(s, e)) < 0) {
		status = MNT3ERR_NOENT;
	} else {
		eid = e->id;
		snprintf(path, sizeof(path), "%s%s", strcmp(e->rel, "/") ? e->rel : "", rest);
	}
	pthread_mutex_unlock(&s->mu);
	if (status)
		goto reply;
	pthread_rwlock_rdlock(&s->fsmu);
	r = vmfs_resolve(s->vols[vol].fs, path[0] ? path : "/", &addr);
	if (!r)
		r = vmfs_stat(s->vols[vol].fs, addr, &st);
	pthread_rwlock_unlock(&s->fsmu);
	if (r)
		status = r == -ENOENT ? MNT3ERR_NOENT : r == -ENOTDIR ? MNT3ERR_NOTDIR :
			 r == -ENAMETOOLONG ? MNT3ERR_NAMETOOLONG : MNT3ERR_IO;
	else if (st.type != VMFS_TYPE_DIR && st.type != VMFS_TYPE_VOLUME)
		status = MNT3ERR_NOTDIR;
reply:
	xout_u32(o, (uint32_t)status);
	if (status == MNT3_OK) {
		nfs_fh_make(&s->vols[vol], eid, addr, st.gen, fh);
		xout_var(o, fh, NFS_FH_LEN);
		xout_u32(o, 1);    /* auth_flavors<> */
		xout_u32(o, FLAVOR_SYS);
	}
	return RPC_SUCCESS;
}

static int export_list(struct nfs_call *c, struct xdr_out *o)
{
	struct nfs_srv *s = c->s;

	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->nexports; i++) {
		struct nfs_export *e = s->exports[i];

		/* only what this client may mount: clients that walk the list
		 * (libnfs auto-traverses nested exports) must not trip on others */
		if (!nfs_export_allows(e, c->peer) || nfs_export_vol(s, e) < 0)
			continue;
		xout_u32(o, 1);
		xout_var(o, e->path, (uint32_t)strlen(e->path));
		for (int k = 0; k < e->nclients; k++) {
			char name[64];
			struct in_addr a = { .s_addr = htonl(e->clients[k].addr) };
			int bits = __builtin_popcount(e->clients[k].mask);

			if (!e->clients[k].mask)
				snprintf(name, sizeof(name), "*");
			else if (bits == 32)
				snprintf(name, sizeof(name), "%s", inet_ntoa(a));
			else
				snprintf(name, sizeof(name), "%s/%d", inet_ntoa(a), bits);
			xout_u32(o, 1);
			xout_var(o, name, (uint32_t)strlen(name));
		}
		xout_u32(o, 0);
	}
	xout_u32(o, 0);
	pthread_mutex_unlock(&s->mu);
	return RPC_SUCCESS;
}

int mount3_dispatch(struct nfs_call *c, uint32_t proc, struct xdr_in *x, struct xdr_out *o)
{
	char dir[1025];

	switch (proc) {
	case 0:                    /* NULL */
		return RPC_SUCCESS;
	case 1:                    /* MNT */
		return mnt(c, x, o);
	case 2:                    /* DUMP: we keep no mount list */
		xout_u32(o, 0);
		return RPC_SUCCESS;
	case 3:                    /* UMNT */
		return xin_str(x, dir, 1024) ? RPC_SUCCESS : RPC_GARBAGE_ARGS;
	case 4:                    /* UMNTALL */
		return RPC_SUCCESS;
	case 5:                    /* EXPORT */
		return export_list(c, o);
	}
	return RPC_PROC_UNAVAIL;
}
