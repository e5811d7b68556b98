/* vmfsd's iSCSI target: portals and LUNs from flags/config (which replace
 * what the store remembers) or from the store, and `target list|add|remove`
 * on the management socket, applied at once and persisted.
 *
 * Store keys: iscsi/portal/NN = ADDR[:PORT]; iscsi/lun/<IQN>/NNN = the
 * canonical LUN spec (with lun= and id= filled in, so LUN numbers and
 * device identifiers stay stable across restarts). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../iscsi/backing.h"
#include "../iscsi/target.h"
#include "vmfsd.h"

struct collect {
	char *v[VMFSD_MAX_LUNS];
	int n;
};



static void lun_key(char *key, size_t len, const char *iqn, int lun)
{
	snprintf(key, len, "iscsi/lun/%s/%03d", iqn, lun);
}

/* Add one LUN and remember it.  \return 0 or -errno with @err set. */
static int add_lun(struct vmfsd *d, const char *spec, bool persist, int *lun, char *err,
		   size_t errlen)
{
	char canon[4096], key[320];
	struct iscsi_lun_spec sp;
	int r;

	r = iscsi_srv_add_lun(d->iscsi, spec, lun, canon, sizeof(canon), err, errlen);
	if (r)
		return r;
	if (persist) {
		if (iscsi_lun_spec_parse(canon, &sp, err, errlen) == 0) {
			lun_key(key, sizeof(key), sp.iqn, *lun);
			r = vstore_put(d->store, key, canon);
			if (r)
				snprintf(err, errlen, "cannot persist LUN: %s", strerror(-r));
		}
	}
	return r;
}

/* "/vmfs/volumes/VOLUME/rest": VOLUME is the label or the UUID of one of
 * the volumes this daemon has mounted. */
static int resolve_datastore(void *arg, const char *volume, const char *rest,
			     struct backing **out, char *err, size_t errlen)
{
	struct vmfsd *d = arg;
	char desc[512];

	for (int i = 0; i < d->nvols; i++) {
		struct vmfsd_volume *v = &d->vols[i];

		if (!v->host || (strcmp(v->label, volume) && strcmp(v->uuid, volume)))
			continue;
		snprintf(desc, sizeof(desc), "/vmfs/volumes/%s%s", volume, rest);
		return bs_vmfs_open(v->host, rest, desc, out, err, errlen);
	}
	snprintf(err, errlen, "no mounted volume '%s' (label or UUID; see vmfsctl volumes)", volume);
	return -ENOENT;
}

static void glue_log(int level, const char *msg)
{
	vlog(level == 0 ? VLOG_ERROR : level == 1 ? VLOG_WARN : level == 2 ? VLOG_INFO : VLOG_DEBUG,
	     "%s", msg);
}

int vmfsd_iscsi_start(struct vmfsd *d)
{
	struct collect portals = { .n = 0 }, luns = { .n = 0 };
	char err[512], key[64];
	int r, lun;
	bool from_cli_luns = d->cfg.nluns > 0;

	r = iscsi_srv_create(&d->iscsi);
	if (r) {
		log_err("iscsi: %s", strerror(-r));
		return r;
	}
	backing_set_datastore_resolver(resolve_datastore, d);
	iscsi_set_log(glue_log);
	/* Portals: flags/config replace the remembered ones. */
	if (d->cfg.niscsi) {
		r = vstore_drop_prefix(d->store, "iscsi/portal/");
		for (int i = 0; !r && i < d->cfg.niscsi; i++) {
			snprintf(key, sizeof(key), "iscsi/portal/%02d", i);
			r = vstore_put(d->store, key, d->cfg.iscsi_portals[i]);
			portals.v[portals.n++] = strdup(d->cfg.iscsi_portals[i]);
		}
	} else {
		r = vstore_collect(d->store, "iscsi/portal/", portals.v, VMFSD_MAX_LUNS, &portals.n);
	}
	if (r)
		goto store_err;
	if (from_cli_luns) {
		r = vstore_drop_prefix(d->store, "iscsi/lun/");
		for (int i = 0; !r && i < d->cfg.nluns; i++)
			luns.v[luns.n++] = strdup(d->cfg.luns[i]);
	} else {
		r = vstore_collect(d->store, "iscsi/lun/", luns.v, VMFSD_MAX_LUNS, &luns.n);
	}
	if (r)
		goto store_err;
	for (int i = 0; i < luns.n; i++) {
		if (!luns.v[i])
			continue;
		r = add_lun(d, luns.v[i], from_cli_luns, &lun, err, sizeof(err));
		if (r) {
			log_err("iscsi: --lun %s: %s", luns.v[i], err);
			goto out;
		}
		log_info("iscsi: LUN %d: %s", lun, luns.v[i]);
	}
	for (int i = 0; i < portals.n; i++) {
		if (!portals.v[i])
			continue;
		r = iscsi_srv_listen(d->iscsi, portals.v[i], err, sizeof(err));
		if (r) {
			log_err("iscsi: %s", err);
			goto out;
		}
		log_info("iscsi: listening on %s", portals.v[i]);
	}
	if (portals.n) {
		r = iscsi_srv_start(d->iscsi);
		if (r)
			log_err("iscsi: cannot start: %s", strerror(-r));
	} else if (luns.n) {
		log_warn("iscsi: %d LUN(s) configured but no portal (use --iscsi ADDR:PORT)", luns.n);
	}
	goto out;
store_err:
	log_err("iscsi: config store: %s", strerror(-r));
out:
	for (int i = 0; i < portals.n; i++)
		free(portals.v[i]);
	for (int i = 0; i < luns.n; i++)
		free(luns.v[i]);
	return r;
}

void vmfsd_iscsi_stop(struct vmfsd *d)
{
	/* before the volumes are unmounted: LUNs hold file locks on them */
	iscsi_srv_destroy(d->iscsi);
	d->iscsi = NULL;
	backing_set_datastore_resolver(NULL, NULL);
}

void vmfsd_iscsi_mgmt(struct vmfsd *d, FILE *f, bool json, int argc, char **argv)
{
	char err[512] = "", msg[600], key[320];
	int r, lun;

	if (!d->iscsi) {
		vmfsd_reply(f, json, false, "iSCSI target not running");
		return;
	}
	if (argc >= 1 && !strcmp(argv[0], "list")) {
		iscsi_srv_list(d->iscsi, f, json);
	} else if (argc == 2 && !strcmp(argv[0], "add")) {
		r = add_lun(d, argv[1], true, &lun, err, sizeof(err));
		if (r) {
			vmfsd_reply(f, json, false, err);
			return;
		}
		log_info("iscsi: added LUN %d: %s", lun, argv[1]);
		snprintf(msg, sizeof(msg), "added LUN %d", lun);
		vmfsd_reply(f, json, true, msg);
	} else if ((argc == 2 || argc == 3) && !strcmp(argv[0], "remove")) {
		char *end = NULL;
		long l = -1;

		if (argc == 3) {
			l = strtol(argv[2], &end, 10);
			if (*end || l < 0 || l >= ISCSI_MAX_LUNS) {
				vmfsd_reply(f, json, false, "bad LUN number");
				return;
			}
		}
		r = iscsi_srv_remove(d->iscsi, argv[1], (int)l, err, sizeof(err));
		if (r) {
			vmfsd_reply(f, json, false, err);
			return;
		}
		if (l >= 0) {
			lun_key(key, sizeof(key), argv[1], (int)l);
			vstore_del(d->store, key);
		} else {
			snprintf(key, sizeof(key), "iscsi/lun/%s/", argv[1]);
			vstore_drop_prefix(d->store, key);
		}
		log_info("iscsi: removed %s%s%s", argv[1], argc == 3 ? " LUN " : "",
			 argc == 3 ? argv[2] : "");
		vmfsd_reply(f, json, true, "removed");
	} else {
		vmfsd_reply(f, json, false, "usage: target list | target add IQN,PATH[,opts] | "
		      "target remove IQN [LUN]");
	}
}
