/* vmfsd's vhost-user-blk exports: a datastore disk served on a Unix socket
 * to QEMU (hypervisor-io/).  From flags/config (which replace what the store
 * remembers) or from the store; `vdisk list|export|unexport` on the
 * management socket, applied at once and persisted.
 *
 * Spec: SOCKET,PATH[,num-queues=N][,workers=N][,poll-us=N][,ro].  PATH is a file of a
 * mounted volume: /vmfs/volumes/LABEL-or-UUID/dir/disk.vmdk, or /dir/disk
 * on the first volume that has it.  A VMDK descriptor is followed to its
 * single flat extent.  While exported the disk is held under the cluster's
 * exclusive file lock (read-only exports: RO), so a second export anywhere in
 * the cluster is refused with the holder's slot.
 *
 * Store keys: vhost/export/<SOCKET> = canonical spec. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/host.h"
#include "vmfs/thinprov.h"
#include "vmfs/util.h"
#include "vmfs/vhost.h"
#include "vmfsd.h"

struct vexport {
	char *spec, *socket, *path;
	unsigned nq, workers;
	int poll_us;             /* -1: not given (default); 0: off */
	bool ro, thin;           /* thin: the descriptor says ddb.thinProvisioned */
	struct vmfsd_volume *vol;
	uint32_t addr;
	struct vhost_disk *disk;
	struct vhost_blk *blk;
};

/* A remembered export whose disk another live host (or this host's own
 * killed instance, until its heartbeat expires) still holds: retried. */
struct vpending {
	struct vexport e;        /* parsed: spec, socket, path (not started) */
	bool persist;
	char why[512];
};

struct vhost_srv {
	struct vexport ex[VMFSD_MAX_VDISKS];
	int n;
	struct vpending pend[VMFSD_MAX_VDISKS];
	int npend;
	double next_retry;       /* vmfsd_now() of the next retry */
};

#define RETRY_S 1.0

/* @ctx: the export's socket path (heap: the export struct itself is copied
 * into the table after the back-end starts, so it cannot be the context) */
static void vh_log_cb(void *ctx, int level, const char *msg)
{
	vlog(level == VMFS_LOG_ERR ? VLOG_ERROR : level == VMFS_LOG_WARN ? VLOG_WARN : VLOG_INFO,
	     "vhost %s: %s", (const char *)ctx, msg);
}

static void ex_free(struct vexport *e)
{
	free(e->spec);
	free(e->socket);
	free(e->path);
	memset(e, 0, sizeof(*e));
}

static int parse_spec(const char *spec, struct vexport *e, char *err, size_t errlen)
{
	char *copy = strdup(spec), *save = NULL, *tok;
	int i = 0, r = -EINVAL;

	if (!copy)
		return -ENOMEM;
	e->nq = 1;
	e->poll_us = -1;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save), i++) {
		char *end;

		if (i == 0) {
			e->socket = strdup(tok);
		} else if (i == 1) {
			e->path = strdup(tok);
		} else if (!strncmp(tok, "num-queues=", 11)) {
			unsigned long v = strtoul(tok + 11, &end, 10);

			if (*end || v < 1 || v > 16) {
				snprintf(err, errlen, "num-queues must be 1..16");
				goto out;
			}
			e->nq = (unsigned)v;
		} else if (!strncmp(tok, "workers=", 8)) {
			unsigned long v = strtoul(tok + 8, &end, 10);

			if (*end || v < 1 || v > 64) {
				snprintf(err, errlen, "workers must be 1..64");
				goto out;
			}
			e->workers = (unsigned)v;
		} else if (!strncmp(tok, "poll-us=", 8)) {
			unsigned long v = strtoul(tok + 8, &end, 10);

			if (tok[8] < '0' || tok[8] > '9' || *end || v > VHOST_POLL_US_MAX) {
				snprintf(err, errlen, "poll-us must be 0..%d (microseconds of busy-polling "
					 "after work, 0 = off)", VHOST_POLL_US_MAX);
				goto out;
			}
			e->poll_us = (int)v;
		} else if (!strcmp(tok, "ro")) {
			e->ro = true;
		} else {
			snprintf(err, errlen, "unknown option '%s' (num-queues=N, workers=N, poll-us=N, ro)", tok);
			goto out;
		}
	}
	if (!e->socket || !e->path || e->socket[0] != '/' || e->path[0] != '/') {
		snprintf(err, errlen, "want SOCKET,PATH with absolute paths");
		goto out;
	}
	char canon[2048], wk[24] = "", pu[24] = "";

	if (e->workers)
		snprintf(wk, sizeof(wk), ",workers=%u", e->workers);
	if (e->poll_us >= 0)
		snprintf(pu, sizeof(pu), ",poll-us=%d", e->poll_us);
	snprintf(canon, sizeof(canon), "%s,%s,num-queues=%u%s%s%s", e->socket, e->path, e->nq, wk,
		 pu, e->ro ? ",ro" : "");
	e->spec = strdup(canon);
	err[0] = 0;
	r = e->spec ? 0 : -ENOMEM;
out:
	free(copy);
	return r;
}

/* PATH -> volume and file address (following a descriptor). */
static int resolve(struct vmfsd *d, struct vexport *e, char *err, size_t errlen)
{
	const char *rel = e->path;
	int want = -1, r = -ENOENT;

	if (!strncmp(rel, "/vmfs/volumes/", 14)) {
		const char *name = rel + 14, *slash = strchr(name, '/');
		size_t len = slash ? (size_t)(slash - name) : strlen(name);

		for (int i = 0; i < d->nvols; i++)
			if (d->vols[i].host && ((strlen(d->vols[i].label) == len &&
						 !strncmp(d->vols[i].label, name, len)) ||
						(strlen(d->vols[i].uuid) == len && !strncmp(d->vols[i].uuid, name, len))))
				want = i;
		if (want < 0) {
			snprintf(err, errlen, "no mounted volume named %.*s", (int)len, name);
			return -ENOENT;
		}
		rel = slash ? slash : "/";
	}
	for (int i = 0; i < d->nvols; i++) {
		struct vmfsd_volume *v = &d->vols[i];
		struct vmfs_fs *fs;
		char full[1300];
		uint32_t addr;

		if (!v->host || (want >= 0 && i != want))
			continue;
		fs = vmfs_host_fs(v->host);
		r = vmfs_resolve(fs, rel, &addr);
		if (r)
			continue;
		struct thinprov_vmdk vd;
		int k = thinprov_vmdk_read(fs, addr, rel, &vd, full, sizeof(full));

		if (k == -EOPNOTSUPP) {
			snprintf(err, errlen, "%s: VMDK descriptor without one simple flat extent", e->path);
			return k;
		}
		if (k < 0) {
			snprintf(err, errlen, "%s: %s", e->path, strerror(-k));
			return k;
		}
		e->thin = k == 1 && vd.thin;
		if (k == 1) {
			r = vmfs_resolve(fs, full, &addr);
			if (r) {
				snprintf(err, errlen, "%s: extent %s: %s", e->path, vd.flat, strerror(-r));
				return r;
			}
		}
		e->vol = v;
		e->addr = addr;
		return 0;
	}
	snprintf(err, errlen, "%s: %s", e->path, strerror(-r));
	return r;
}

static int start_export(struct vmfsd *d, struct vexport *e, char *err, size_t errlen)
{
	struct vmfs_lock_conflict c;
	struct vhost_blk_opts o = { 0 };
	int r;

	r = resolve(d, e, err, errlen);
	if (r)
		return r;
	if (vmfs_host_rdonly(e->vol->host) && !e->ro) {
		snprintf(err, errlen, "volume %s is mounted read-only: export with ,ro", e->vol->spec);
		return -EROFS;
	}
	if (!vmfs_host_rdonly(e->vol->host)) {
		r = vmfs_host_lock_file(e->vol->host, e->addr, e->ro ? VMFS_LM_RO : VMFS_LM_EXCL, &c);
		if (r == -EBUSY) {
			snprintf(err, errlen, "%s is locked by the host in heartbeat slot %d", e->path, c.slot);
			return r;
		}
		if (r) {
			snprintf(err, errlen, "%s: cannot lock: %s", e->path, strerror(-r));
			return r;
		}
	}
	r = vhost_disk_open_vmfs(vmfs_host_fs(e->vol->host), e->addr,
				 (e->ro ? VHOST_DISK_RDONLY : 0) | (e->thin ? VHOST_DISK_THIN : 0), &e->disk);
	if (r) {
		snprintf(err, errlen, "%s: %s", e->path, strerror(-r));
		goto unlock;
	}
	o.socket_path = e->socket;
	o.disk = e->disk;
	o.num_queues = e->nq;
	o.workers = e->workers;
	o.poll_us = e->poll_us < 0 ? 0 : e->poll_us ? e->poll_us : -1;   /* 0 = off */
	o.log = vh_log_cb;
	o.log_ctx = e->socket;
	r = vhost_blk_create(&o, &e->blk);
	if (r) {
		snprintf(err, errlen, "socket %s: %s", e->socket, strerror(-r));
		vhost_disk_close(e->disk);
		e->disk = NULL;
		goto unlock;
	}
	return 0;
unlock:
	if (!vmfs_host_rdonly(e->vol->host))
		vmfs_host_unlock_file(e->vol->host, e->addr);
	return r;
}

static void stop_export(struct vexport *e)
{
	vhost_blk_destroy(e->blk);
	if (e->disk) {
		e->disk->ops->flush(e->disk);
		vhost_disk_close(e->disk);
	}
	if (e->vol && e->vol->host && !vmfs_host_rdonly(e->vol->host))
		vmfs_host_unlock_file(e->vol->host, e->addr);
	ex_free(e);
}

static int add(struct vmfsd *d, const char *spec, bool persist, char *err, size_t errlen)
{
	struct vhost_srv *s = d->vhost;
	struct vexport e = { 0 };
	char key[1100];
	int r;

	if (s->n >= VMFSD_MAX_VDISKS) {
		snprintf(err, errlen, "too many exports (max %d)", VMFSD_MAX_VDISKS);
		return -ENOSPC;
	}
	r = parse_spec(spec, &e, err, errlen);
	if (r)
		goto fail;
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->ex[i].socket, e.socket)) {
			snprintf(err, errlen, "socket %s is already exported", e.socket);
			r = -EEXIST;
			goto fail;
		}
	r = start_export(d, &e, err, errlen);
	if (r)
		goto fail;
	if (persist) {
		snprintf(key, sizeof(key), "vhost/export/%.1000s", e.socket);
		r = vstore_put(d->store, key, e.spec);
		if (r) {
			snprintf(err, errlen, "cannot persist export: %s", strerror(-r));
			stop_export(&e);
			return r;
		}
	}
	log_info("vhost: %s serves %s (volume %s, %u queue(s)%s)", e.socket, e.path, e.vol->spec,
		 e.nq, e.ro ? ", read-only" : "");
	s->ex[s->n++] = e;
	return 0;
fail:
	ex_free(&e);
	return r;
}

struct collect {
	char *v[VMFSD_MAX_VDISKS];
	int n;
};



int vmfsd_vhost_start(struct vmfsd *d)
{
	struct collect c = { .n = 0 };
	char err[512];
	int r;

	d->vhost = calloc(1, sizeof(*d->vhost));
	if (!d->vhost)
		return -ENOMEM;
	if (d->cfg.nvdisks) {
		r = vstore_drop_prefix(d->store, "vhost/export/");
		for (int i = 0; !r && i < d->cfg.nvdisks; i++)
			c.v[c.n++] = strdup(d->cfg.vdisks[i]);
	} else {
		r = vstore_collect(d->store, "vhost/export/", c.v, VMFSD_MAX_VDISKS, &c.n);
	}
	if (r)
		log_err("vhost: config store: %s", strerror(-r));
	for (int i = 0; i < c.n; i++) {
		struct vhost_srv *s = d->vhost;

		if (!c.v[i])
			continue;
		r = add(d, c.v[i], d->cfg.nvdisks > 0, err, sizeof(err));
		if (r == -EBUSY && s->npend < VMFSD_MAX_VDISKS) {
			/* locked by a live holder: it may be our own previous
			 * instance, killed, whose lock is ours to reclaim once its
			 * heartbeat expires; or another host that lets it go */
			struct vpending *p = &s->pend[s->npend];
			char perr[512];

			if (parse_spec(c.v[i], &p->e, perr, sizeof(perr)) == 0) {
				s->npend++;
				p->persist = d->cfg.nvdisks > 0;
				snprintf(p->why, sizeof(p->why), "%s", err);
				s->next_retry = vmfsd_now() + RETRY_S;
				log_warn("vhost: export %s: %s; retrying every %.0f s", c.v[i], err, RETRY_S);
			}
		} else if (r) {
			log_err("vhost: export %s: %s", c.v[i], err);
		}
		free(c.v[i]);
	}
	return 0;   /* a disk that cannot be exported does not stop the host */
}

static void pend_drop(struct vhost_srv *s, int i)
{
	ex_free(&s->pend[i].e);
	s->pend[i] = s->pend[--s->npend];
	memset(&s->pend[s->npend], 0, sizeof(s->pend[s->npend]));
}

int vmfsd_vhost_timeout_ms(struct vmfsd *d)
{
	struct vhost_srv *s = d->vhost;
	double left;

	if (!s || !s->npend)
		return -1;
	left = s->next_retry - vmfsd_now();
	return left > 0 ? (int)(left * 1000) + 1 : 0;
}

void vmfsd_vhost_retry(struct vmfsd *d)
{
	struct vhost_srv *s = d->vhost;
	char err[512];

	if (!s || !s->npend || vmfsd_now() < s->next_retry)
		return;
	for (int i = 0; i < s->npend;) {
		struct vpending *p = &s->pend[i];
		int r = add(d, p->e.spec, p->persist, err, sizeof(err));

		if (r == -EBUSY) {
			snprintf(p->why, sizeof(p->why), "%s", err);
			i++;
			continue;
		}
		if (r)
			log_err("vhost: export %s: %s; not retried", p->e.spec, err);
		pend_drop(s, i);
	}
	s->next_retry = vmfsd_now() + RETRY_S;
}

void vmfsd_vhost_stop(struct vmfsd *d)
{
	if (!d->vhost)
		return;
	for (int i = 0; i < d->vhost->n; i++)
		stop_export(&d->vhost->ex[i]);
	while (d->vhost->npend)
		pend_drop(d->vhost, 0);
	free(d->vhost);
	d->vhost = NULL;
}

static void list(struct vhost_srv *s, FILE *f, bool json)
{
	if (json)
		fprintf(f, "[");
	for (int i = 0; i < s->n; i++) {
		struct vexport *e = &s->ex[i];
		struct vhost_blk_stats st;
		int pu = e->poll_us < 0 ? VHOST_POLL_US_DEFAULT : e->poll_us;

		vhost_blk_get_stats(e->blk, &st);
		if (json)
			fprintf(f, "%s{\"socket\": \"%s\", \"path\": \"%s\", \"volume\": \"%s\", "
				"\"size\": %llu, \"queues\": %u, \"poll_us\": %d, \"ro\": %s, "
				"\"connected\": %s, \"requests\": %llu, \"async\": %llu, \"errors\": %llu}",
				i ? ", " : "", e->socket, e->path, e->vol->uuid,
				(unsigned long long)e->disk->size, e->nq, pu, e->ro ? "true" : "false",
				st.connected ? "true" : "false", (unsigned long long)st.requests,
				(unsigned long long)st.async, (unsigned long long)st.errors);
		else
			fprintf(f, "%s\t%s\t%llu bytes\t%u queue(s)%s\tpoll-us %d\t%s\t"
				"requests %llu (async %llu) errors %llu\n",
				e->socket, e->path, (unsigned long long)e->disk->size, e->nq,
				e->ro ? " ro" : "", pu, st.connected ? "connected" : "idle",
				(unsigned long long)st.requests, (unsigned long long)st.async,
				(unsigned long long)st.errors);
	}
	for (int i = 0; i < s->npend; i++) {
		const struct vpending *p = &s->pend[i];

		if (json) {
			fprintf(f, "%s{\"socket\": ", s->n || i ? ", " : "");
			vmfs_json_str(f, p->e.socket);
			fprintf(f, ", \"path\": ");
			vmfs_json_str(f, p->e.path);
			fprintf(f, ", \"waiting\": ");
			vmfs_json_str(f, p->why);
			fprintf(f, "}");
		} else {
			fprintf(f, "%s\t%s\twaiting (retried every %.0f s): %s\n", p->e.socket, p->e.path,
				RETRY_S, p->why);
		}
	}
	if (json)
		fprintf(f, "]\n");
	else if (!s->n && !s->npend)
		fprintf(f, "no vhost-user-blk exports\n");
}

/* Does @what name the export: its SOCKET or its DISK as given? */
static bool names(const struct vexport *e, const char *what)
{
	return !strcmp(e->socket, what) || !strcmp(e->path, what);
}

void vmfsd_vhost_mgmt(struct vmfsd *d, FILE *f, bool json, int argc, char **argv)
{
	struct vhost_srv *s = d->vhost;
	char err[512] = "", spec[2100], key[1100];

	if (!s) {
		vmfsd_reply(f, json, false, "vhost-user-blk service not running");
		return;
	}
	if (argc >= 1 && !strcmp(argv[0], "list")) {
		list(s, f, json);
	} else if ((argc == 3 || argc == 4) && !strcmp(argv[0], "export")) {
		/* export DISK SOCKET [OPTIONS] */
		snprintf(spec, sizeof(spec), "%s,%s%s%s", argv[2], argv[1], argc == 4 ? "," : "",
			 argc == 4 ? argv[3] : "");
		if (add(d, spec, true, err, sizeof(err))) {
			vmfsd_reply(f, json, false, err);
			return;
		}
		vmfsd_reply(f, json, true, "exported");
	} else if (argc == 2 && !strcmp(argv[0], "unexport")) {
		for (int i = 0; i < s->n; i++) {
			struct vexport *e = &s->ex[i];

			if (!names(e, argv[1]))
				continue;
			snprintf(key, sizeof(key), "vhost/export/%.1000s", e->socket);
			vstore_del(d->store, key);
			log_info("vhost: %s no longer serves %s", e->socket, e->path);
			stop_export(e);
			s->ex[i] = s->ex[--s->n];
			memset(&s->ex[s->n], 0, sizeof(s->ex[s->n]));
			vmfsd_reply(f, json, true, "unexported");
			return;
		}
		for (int i = 0; i < s->npend; i++) {
			struct vexport *e = &s->pend[i].e;

			if (!names(e, argv[1]))
				continue;
			snprintf(key, sizeof(key), "vhost/export/%.1000s", e->socket);
			vstore_del(d->store, key);
			log_info("vhost: %s no longer waits to serve %s", e->socket, e->path);
			pend_drop(s, i);
			vmfsd_reply(f, json, true, "unexported");
			return;
		}
		vmfsd_reply(f, json, false, "no such export (give its SOCKET or DISK)");
	} else {
		vmfsd_reply(f, json, false, "usage: vdisk list | export DISK SOCKET [OPTIONS] | unexport SOCKET|DISK");
	}
}
