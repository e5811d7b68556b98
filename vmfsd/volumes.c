/* vmfsd's volumes: each is mounted as a host of the cluster (host/), and the
 * management requests that look at the cluster: hosts, locks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid.h>

#include "vmfs/host.h"
#include "vmfs/volume.h"
#include "vmfsd.h"

static void host_log(void *ctx, int level, const char *msg)
{
	struct vmfsd_volume *v = ctx;

	vlog(level == VMFS_LOG_ERR ? VLOG_ERROR : level == VMFS_LOG_WARN ? VLOG_WARN : VLOG_INFO,
	     "volume %s: %s", v->spec, msg);
}

void vmfsd_volume_mount(struct vmfsd *d, struct vmfsd_volume *v, const char *spec)
{
	struct vmfs_host_opts o = { .log = host_log, .log_ctx = v };
	const char *paths[VMFS_MAX_EXTENTS];
	char *copy, *save = NULL;
	int n = 0, r;

	v->spec = strdup(spec);
	copy = strdup(spec);
	if (!v->spec || !copy) {
		snprintf(v->state, sizeof(v->state), "error: out of memory");
		free(copy);
		return;
	}
	for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		if (n == VMFS_MAX_EXTENTS) {
			snprintf(v->state, sizeof(v->state), "error: more than %d extents",
				 VMFS_MAX_EXTENTS);
			goto out;
		}
		paths[n++] = s;
	}
	uuid_parse(d->host_uuid, o.uuid);
	o.io_timeout_us = (uint64_t)(d->cfg.io_timeout * 1e6);
	v->direct = vmfs_host_want_direct(d->cfg.direct, paths, n);
	if (v->direct)
		o.flags |= VMFS_HOST_DIRECT;
	r = vmfs_host_mount(paths, n, &o, &v->host);
	if (r) {
		snprintf(v->state, sizeof(v->state), "error: %s", strerror(-r));
		log_err("volume %s: not mounted: %s", spec, strerror(-r));
		goto out;
	}
	struct vmfs_fs *fs = vmfs_host_fs(v->host);
	const struct vmfs_fs_info *fi = vmfs_fs_get_info(fs);
	struct vmfs_bdev *e0 = vmfs_volume_extent(vmfs_fs_volume(fs), 0, NULL, NULL);

	v->size = fi->lv_size;
	v->ats = e0 ? vmfs_ats_mode_name(vmfs_bdev_get_info(e0)->ats) : "?";
	snprintf(v->label, sizeof(v->label), "%s", fi->label);
	snprintf(v->uuid, sizeof(v->uuid), "%.35s", fi->uuid_str);
	snprintf(v->state, sizeof(v->state), "mounted");
	log_info("volume %s: mounted (VMFS %u.%u, label '%s', uuid %s, %llu bytes), heartbeat "
		 "slot %d, test-and-set: %s, %s", spec, fi->fs_major, fi->fs_minor, fi->label, v->uuid,
		 (unsigned long long)v->size, vmfs_host_slot(v->host), v->ats,
		 vmfsd_volume_io_name(v));
out:
	free(copy);
}

const char *vmfsd_volume_io_name(const struct vmfsd_volume *v)
{
	return v->direct ? "O_DIRECT" : "page cache";
}

void vmfsd_volume_unmount(struct vmfsd_volume *v)
{
	if (v->host) {
		int r = vmfs_host_unmount(v->host);

		if (r)
			log_err("volume %s: unmount: %s", v->spec, strerror(-r));
		else
			log_info("volume %s: unmounted, heartbeat slot released", v->spec);
		v->host = NULL;
	}
	free(v->spec);
	v->spec = NULL;
}

/* ---- hosts ---------------------------------------------------------------------- */


void vmfsd_mgmt_hosts(struct vmfsd *d, FILE *f, bool json)
{
	struct vmfs_hb_host *hosts = calloc(VMFS_HB_NSLOTS, sizeof(*hosts));
	bool first = true;

	if (!hosts) {
		fprintf(f, json ? "{\"error\": \"out of memory\"}\n" : "error: out of memory\n");
		return;
	}
	if (json)
		fprintf(f, "[");
	else
		fprintf(f, "%-24s %-5s %-36s %-10s %s\n", "VOLUME", "SLOT", "HOST", "STATE", "AGE");
	for (int i = 0; i < d->nvols; i++) {
		struct vmfsd_volume *v = &d->vols[i];
		struct vmfs_hb *hb = v->host ? vmfs_host_hb(v->host) : NULL;
		int n;

		if (!hb)
			continue;
		n = vmfs_hb_list(hb, hosts, VMFS_HB_NSLOTS);
		for (int k = 0; k < n; k++) {
			char u[40];
			double age = (double)hosts[k].age_us / 1e6;

			uuid_unparse_lower(hosts[k].rec.uuid, u);
			if (json) {
				fprintf(f, "%s{\"volume\": ", first ? "" : ", ");
				vmfs_json_str(f, v->label[0] ? v->label : v->spec);
				fprintf(f, ", \"slot\": %u, \"uuid\": \"%s\", \"state\": \"%s\", "
					"\"age_s\": %.1f, \"generation\": %llu}", hosts[k].slot, u,
					vmfs_host_state_name(hosts[k].state), age,
					(unsigned long long)hosts[k].rec.seq);
			} else {
				fprintf(f, "%-24.24s %-5u %-36s %-10s %.1fs\n",
					v->label[0] ? v->label : v->spec, hosts[k].slot, u,
					vmfs_host_state_name(hosts[k].state), age);
			}
			first = false;
		}
	}
	if (json)
		fprintf(f, "]\n");
	free(hosts);
}

/* ---- locks ------------------------------------------------------------------------ */

struct path_map {
	uint32_t *addr;
	char **path;
	size_t n, cap;
};

static int pm_add(struct path_map *m, uint32_t addr, const char *path)
{
	if (m->n == m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 256;
		uint32_t *na = realloc(m->addr, nc * sizeof(*na));
		char **np;

		if (!na)
			return -ENOMEM;
		m->addr = na;
		np = realloc(m->path, nc * sizeof(*np));
		if (!np)
			return -ENOMEM;
		m->path = np;
		m->cap = nc;
	}
	m->path[m->n] = strdup(path);
	if (!m->path[m->n])
		return -ENOMEM;
	m->addr[m->n++] = addr;
	return 0;
}

struct walk_ctx {
	struct vmfs_fs *fs;
	struct path_map *m;
	const char *dir;
	int depth;
};

static int walk_cb(void *arg, const struct vmfs_dirent *de)
{
	struct walk_ctx *w = arg;
	char path[4096];
	int r;

	if (!strcmp(de->name, ".") || !strcmp(de->name, ".."))
		return 0;
	snprintf(path, sizeof(path), "%s/%s", strcmp(w->dir, "/") ? w->dir : "", de->name);
	r = pm_add(w->m, de->addr, path);
	if (r)
		return r;
	if (de->type == VMFS_TYPE_DIR && w->depth < 64) {
		struct walk_ctx sub = { w->fs, w->m, path, w->depth + 1 };

		return vmfs_readdir(w->fs, de->addr, walk_cb, &sub);
	}
	return 0;
}

static const char *pm_find(const struct path_map *m, uint32_t addr)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->addr[i] == addr)
			return m->path[i];
	return NULL;
}

static void print_lock(FILE *f, bool json, bool *first, const char *vol, const char *what,
		       const struct vmfs_lock_rec *rec)
{
	char u[40];
	int slot = vmfs_hb_slot_of(rec->hb_pos);

	uuid_unparse_lower(rec->uuid, u);
	if (json) {
		fprintf(f, "%s{\"volume\": ", *first ? "" : ", ");
		vmfs_json_str(f, vol);
		fprintf(f, ", \"object\": ");
		vmfs_json_str(f, what);
		fprintf(f, ", \"mode\": \"%s\", \"owner\": \"%s\", \"slot\": %d, \"holders\": %u, "
			"\"token\": %llu}", vmfs_lock_mode_name((enum vmfs_lm_mode)rec->mode),
			rec->mode == VMFS_LM_EXCL ? u : "", rec->mode == VMFS_LM_EXCL ? slot : -1,
			rec->num_holders, (unsigned long long)rec->token);
	} else {
		fprintf(f, "%-16.16s %-40s %-12s %s\n", vol, what,
			vmfs_lock_mode_name((enum vmfs_lm_mode)rec->mode),
			rec->mode == VMFS_LM_EXCL ? u : "(shared)");
	}
	*first = false;
}

void vmfsd_mgmt_locks(struct vmfsd *d, FILE *f, bool json, const char *only)
{
	bool first = true;

	if (json)
		fprintf(f, "[");
	else
		fprintf(f, "%-16s %-40s %-12s %s\n", "VOLUME", "OBJECT", "MODE", "OWNER");
	for (int i = 0; i < d->nvols; i++) {
		struct vmfsd_volume *v = &d->vols[i];
		struct path_map m = { 0 };
		struct vmfs_res_info ri;
		struct vmfs_fs *fs;
		const char *vol = v->label[0] ? v->label : v->spec;

		if (!v->host)
			continue;
		fs = vmfs_host_fs(v->host);
		if (only) {
			uint32_t a;
			struct vmfs_lock_rec rec;

			if (vmfs_resolve(fs, only, &a) == 0 &&
			    vmfs_host_file_lock_state(v->host, a, &rec) == 0)
				print_lock(f, json, &first, vol, only, &rec);
			continue;
		}
		struct walk_ctx w = { fs, &m, "/", 0 };

		vmfs_readdir(fs, VMFS_ROOT_ADDR, walk_cb, &w);
		/* every file descriptor with a held lock */
		if (vmfs_res_get_info(fs, VMFS_RES_FDC, &ri) == 0) {
			for (uint64_t idx = 0; idx < ri.total_items; idx++) {
				struct vmfs_fd fd;
				struct vmfs_lock_rec rec;
				uint64_t lv;

				if (vmfs_fd_read_raw(fs, idx, &fd, &lv) || fd.lock_magic != VMFS_MAGIC_FD ||
				    !fd.nlink)
					continue;
				if (vmfs_lock_read(vmfs_host_bdev(v->host), lv, VMFS_MAGIC_FD, &rec) ||
				    rec.mode == VMFS_LM_FREE)
					continue;
				const char *p = pm_find(&m, fd.id);
				char what[64];

				if (!p) {
					snprintf(what, sizeof(what), "fd 0x%08x", fd.id);
					p = what;
				}
				print_lock(f, json, &first, vol, p, &rec);
			}
		}
		/* resource clusters being changed right now */
		static const char *const rn[] = { ".fbb.sf", ".fdc.sf", ".pbc.sf", ".sbc.sf" };
		for (int k = 0; k < VMFS_RES_COUNT; k++) {
			if (vmfs_res_get_info(fs, k, &ri))
				continue;
			for (uint32_t c = 0; c < ri.nclusters; c++) {
				struct vmfs_cluster cl;
				struct vmfs_lock_rec rec;
				uint64_t lv;
				char what[64];

				if (vmfs_res_read_cluster(fs, k, c, &cl, &lv) ||
				    vmfs_lock_read(vmfs_host_bdev(v->host), lv, 0, &rec) ||
				    rec.mode == VMFS_LM_FREE)
					continue;
				snprintf(what, sizeof(what), "%s cluster %u", rn[k], c);
				print_lock(f, json, &first, vol, what, &rec);
			}
		}
		for (size_t k = 0; k < m.n; k++)
			free(m.path[k]);
		free(m.path);
		free(m.addr);
	}
	if (json)
		fprintf(f, "]\n");
}
