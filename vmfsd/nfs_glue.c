/* vmfsd's NFS server: listen address and exports from flags/config (which
 * replace what the store remembers) or from the store, and
 * `export list|add|remove` on the management socket, applied at once and
 * persisted.
 *
 * Store keys: nfs/listen = ADDR[:PORT]; nfs/portmap = ADDR[:PORT];
 * nfs/export/<PATH> = canonical export spec; nfs/fhkey/<volume UUID> = the
 * volume's file handle key (hex), a copy of the one kept on the volume
 * (see docs/nfs.md: the volume's copy is what makes handles valid on every
 * host serving it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "vmfs/nfs.h"
#include "vmfsd.h"

struct collect {
	char *v[VMFSD_MAX_EXPORTS];
	int n;
};



static void nfs_log_cb(void *ctx, int level, const char *msg)
{
	vlog(level == VMFS_LOG_ERR ? VLOG_ERROR : level == VMFS_LOG_WARN ? VLOG_WARN : VLOG_INFO,
	     "nfs: %s", msg);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static bool unhex(const char *s, uint8_t *p, size_t n)
{
	if (strlen(s) != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return false;
		p[i] = (uint8_t)v;
	}
	return true;
}

/* The volume's handle key: the copy on the volume wins (shared by every
 * host); the store keeps ours so that a volume whose key file cannot be
 * read or written still gets stable handles on this host. */
static int volume_key(struct vmfsd *d, struct vmfsd_volume *v, uint8_t key[NFS_FH_KEY_SIZE])
{
	char skey[96], hx[2 * NFS_FH_KEY_SIZE + 1], *val = NULL;
	uint8_t stored[NFS_FH_KEY_SIZE];
	bool have = false;
	int r;

	snprintf(skey, sizeof(skey), "nfs/fhkey/%s", v->uuid);
	if (vstore_get(d->store, skey, &val) == 0 && unhex(val, stored, sizeof(stored)))
		have = true;
	free(val);
	r = nfs_volume_key(vmfs_host_fs(v->host), have ? stored : NULL, key);
	if (r) {
		log_warn("nfs: volume %s: cannot read or write the handle key file %s (%s): "
			 "using this host's key; other hosts' handles will not match", v->spec,
			 NFS_FH_KEY_FILE, strerror(-r));
		if (!have && RAND_bytes(stored, sizeof(stored)) != 1)
			return -EIO;
		memcpy(key, stored, NFS_FH_KEY_SIZE);
	}
	if (!have || memcmp(stored, key, NFS_FH_KEY_SIZE)) {
		hex(key, NFS_FH_KEY_SIZE, hx);
		return vstore_put(d->store, skey, hx);
	}
	return 0;
}

static int add_export(struct vmfsd *d, const char *spec, bool persist, char *err, size_t errlen)
{
	char canon[2048], key[1100];
	int r;

	r = nfs_srv_add_export(d->nfs, spec, canon, sizeof(canon), err, errlen);
	if (r || !persist)
		return r;
	snprintf(key, sizeof(key), "nfs/export/%.1024s", canon);
	*strchrnul(key + 11, ',') = 0;
	r = vstore_put(d->store, key, canon);
	if (r)
		snprintf(err, errlen, "cannot persist export: %s", strerror(-r));
	return r;
}

static int setting(struct vmfsd *d, const char *key, const char *cli, char **out)
{
	*out = NULL;
	if (cli) {
		*out = strdup(cli);
		return *out ? vstore_put(d->store, key, cli) : -ENOMEM;
	}
	int r = vstore_get(d->store, key, out);

	return r == -ENOENT ? 0 : r;
}

int vmfsd_nfs_start(struct vmfsd *d)
{
	struct collect ex = { .n = 0 };
	char err[512], *listen = NULL, *pmap = NULL;
	uint8_t key[NFS_FH_KEY_SIZE];
	int r;

	r = nfs_srv_create(nfs_log_cb, d, &d->nfs);
	if (r) {
		log_err("nfs: %s", strerror(-r));
		return r;
	}
	r = setting(d, "nfs/listen", d->cfg.nfs_listen, &listen);
	if (!r)
		r = setting(d, "nfs/portmap", d->cfg.nfs_portmap, &pmap);
	if (r)
		goto store_err;
	if (d->cfg.nexports) {
		r = vstore_drop_prefix(d->store, "nfs/export/");
		for (int i = 0; !r && i < d->cfg.nexports; i++)
			ex.v[ex.n++] = strdup(d->cfg.exports[i]);
	} else {
		r = vstore_collect(d->store, "nfs/export/", ex.v, VMFSD_MAX_EXPORTS, &ex.n);
	}
	if (r)
		goto store_err;
	/* Without a listener nothing is served: leave the volumes untouched
	 * (the handle key file is only created for volumes vmfsd serves). */
	for (int i = 0; listen && i < d->nvols; i++) {
		struct vmfsd_volume *v = &d->vols[i];

		if (!v->host)
			continue;
		r = volume_key(d, v, key);
		if (!r)
			r = nfs_srv_add_volume(d->nfs, v->host, key);
		if (r) {
			log_err("nfs: volume %s: %s", v->spec, strerror(-r));
			goto out;
		}
	}
	for (int i = 0; i < ex.n; i++) {
		if (!ex.v[i])
			continue;
		r = add_export(d, ex.v[i], d->cfg.nexports > 0, err, sizeof(err));
		if (r) {
			log_err("nfs: --export %s: %s", ex.v[i], err);
			goto out;
		}
		log_info("nfs: export %s", ex.v[i]);
	}
	if (!listen) {
		if (ex.n)
			log_warn("nfs: %d export(s) configured but no --nfs ADDR[:PORT]", ex.n);
		goto out;
	}
	r = nfs_srv_listen(d->nfs, listen, err, sizeof(err));
	if (!r && pmap)
		r = nfs_srv_listen_portmap(d->nfs, pmap, err, sizeof(err));
	if (r) {
		log_err("nfs: %s", err);
		goto out;
	}
	r = nfs_srv_start(d->nfs);
	if (r)
		log_err("nfs: cannot start: %s", strerror(-r));
	else
		log_info("nfs: serving NFSv3 and MOUNT v3 on %s%s%s", listen,
			 pmap ? ", portmapper on " : "", pmap ? pmap : "");
	goto out;
store_err:
	log_err("nfs: config store: %s", strerror(-r));
out:
	for (int i = 0; i < ex.n; i++)
		free(ex.v[i]);
	free(listen);
	free(pmap);
	return r;
}

void vmfsd_nfs_stop(struct vmfsd *d)
{
	/* before the volumes are unmounted: pending writes hold file locks */
	nfs_srv_destroy(d->nfs);
	d->nfs = NULL;
}

void vmfsd_nfs_mgmt(struct vmfsd *d, FILE *f, bool json, int argc, char **argv)
{
	char err[512] = "", key[1100];

	if (!d->nfs) {
		vmfsd_reply(f, json, false, "NFS server not running");
		return;
	}
	if (argc >= 1 && !strcmp(argv[0], "list")) {
		nfs_srv_list_exports(d->nfs, f, json);
	} else if (argc == 2 && !strcmp(argv[0], "add")) {
		if (add_export(d, argv[1], true, err, sizeof(err))) {
			vmfsd_reply(f, json, false, err);
			return;
		}
		log_info("nfs: added export %s", argv[1]);
		vmfsd_reply(f, json, true, "added");
	} else if (argc == 2 && !strcmp(argv[0], "remove")) {
		if (nfs_srv_remove_export(d->nfs, argv[1], err, sizeof(err))) {
			vmfsd_reply(f, json, false, err);
			return;
		}
		snprintf(key, sizeof(key), "nfs/export/%.1024s", argv[1]);
		vstore_del(d->store, key);
		log_info("nfs: removed export %s", argv[1]);
		vmfsd_reply(f, json, true, "removed");
	} else {
		vmfsd_reply(f, json, false, "usage: export list | export add PATH[,options] | "
		      "export remove PATH");
	}
}
