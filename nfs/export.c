/* Exports: spec parsing, client allowlists, squashing, and the export table. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmfs/util.h"
#include "internal.h"

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 16777619u;
	}
	return h ? h : 1;
}

static int parse_u32(const char *v, uint32_t *out)
{
	char *end;
	unsigned long long n;

	if (!*v || *v == '-')
		return -EINVAL;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || *end || n > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)n;
	return 0;
}

static int parse_client(const char *c, struct nfs_client_rule *r)
{
	char buf[64], *slash;
	struct in_addr a;
	uint32_t bits = 32;

	if (!strcmp(c, "*")) {
		r->addr = r->mask = 0;
		return 0;
	}
	if (strlen(c) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, c);
	slash = strchr(buf, '/');
	if (slash) {
		*slash = 0;
		if (parse_u32(slash + 1, &bits) || bits > 32)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	r->mask = bits ? ~0u << (32 - bits) : 0;
	r->addr = ntohl(a.s_addr) & r->mask;
	return 0;
}

/* Normalise "/a//b/" to "/a/b"; reject "." and ".." components. */
static int norm_path(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	const char *p = in;

	if (*p != '/')
		return -EINVAL;
	while (*p) {
		const char *s;
		size_t n;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		s = p;
		while (*p && *p != '/')
			p++;
		n = (size_t)(p - s);
		if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.') || n > 127)
			return -EINVAL;
		if (o + 1 + n + 1 > outlen)
			return -ENAMETOOLONG;
		out[o++] = '/';
		memcpy(out + o, s, n);
		o += n;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = 0;
	return 0;
}

int nfs_export_parse(const char *spec, struct nfs_export *e, char *err, size_t errlen)
{
	char *copy = strdup(spec), *save = NULL, *tok, clients[1024] = "";
	int r = -EINVAL;
	bool first = true;

	memset(e, 0, sizeof(*e));
	e->anonuid = e->anongid = 65534;
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save), first = false) {
		char *eq = strchr(tok, '='), *val = eq ? eq + 1 : NULL;

		if (eq)
			*eq = 0;
		if (first) {
			if (eq || norm_path(tok, e->path, sizeof(e->path))) {
				snprintf(err, errlen, "export path must be absolute, without . or .. "
					 "components: '%s'", tok);
				goto out;
			}
			continue;
		}
		if (!strcmp(tok, "ro") && !val) {
			e->ro = true;
		} else if (!strcmp(tok, "rw") && !val) {
			e->ro = false;
		} else if (!strcmp(tok, "root_squash") && !val) {
			e->root_squash = true;
		} else if (!strcmp(tok, "no_root_squash") && !val) {
			e->root_squash = false;
		} else if (!strcmp(tok, "all_squash") && !val) {
			e->all_squash = true;
		} else if ((!strcmp(tok, "anonuid") || !strcmp(tok, "anongid")) && val) {
			if (parse_u32(val, tok[4] == 'u' ? &e->anonuid : &e->anongid)) {
				snprintf(err, errlen, "bad %s '%s'", tok, val);
				goto out;
			}
		} else if (!strcmp(tok, "clients") && val) {
			char *s2 = NULL, *c;

			snprintf(clients, sizeof(clients), "%s", val);
			for (c = strtok_r(val, ";", &s2); c; c = strtok_r(NULL, ";", &s2)) {
				if (e->nclients == NFS_MAX_CLIENTS ||
				    parse_client(c, &e->clients[e->nclients])) {
					snprintf(err, errlen, "bad client '%s' (IPv4 address, "
						 "ADDR/BITS or *; at most %d)", c, NFS_MAX_CLIENTS);
					goto out;
				}
				e->nclients++;
			}
			if (!e->nclients) {
				snprintf(err, errlen, "empty clients= list");
				goto out;
			}
		} else {
			snprintf(err, errlen, "unknown export option '%s%s%s' (clients=, ro, rw, "
				 "root_squash, all_squash, anonuid=, anongid=)", tok, val ? "=" : "",
				 val ? val : "");
			goto out;
		}
	}
	if (!e->path[0]) {
		snprintf(err, errlen, "empty export");
		goto out;
	}
	/* /vmfs/volumes/NAME[/rest] names the volume */
	if (!strncmp(e->path, "/vmfs/volumes/", 14) && e->path[14]) {
		const char *n = e->path + 14, *sl = strchr(n, '/');
		size_t len = sl ? (size_t)(sl - n) : strlen(n);

		if (len >= sizeof(e->vol_name)) {
			snprintf(err, errlen, "volume name too long");
			goto out;
		}
		memcpy(e->vol_name, n, len);
		e->vol_name[len] = 0;
		snprintf(e->rel, sizeof(e->rel), "%s", sl ? sl : "/");
	} else {
		snprintf(e->rel, sizeof(e->rel), "%s", e->path);
	}
	e->id = fnv1a(e->path);
	if (snprintf(e->spec, sizeof(e->spec), "%s%s%s%s%s%s", e->path,
		     e->nclients ? ",clients=" : "", clients, e->ro ? ",ro" : "",
		     e->root_squash ? ",root_squash" : "",
		     e->all_squash ? ",all_squash" : "") >= (int)sizeof(e->spec)) {
		snprintf(err, errlen, "export specification too long");
		goto out;
	}
	if (e->anonuid != 65534 || e->anongid != 65534) {
		size_t l = strlen(e->spec);

		snprintf(e->spec + l, sizeof(e->spec) - l, ",anonuid=%u,anongid=%u", e->anonuid,
			 e->anongid);
	}
	r = 0;
out:
	free(copy);
	return r;
}

int nfs_export_spec_check(const char *spec, char *canon, size_t canonlen, char *err, size_t errlen)
{
	struct nfs_export *e = malloc(sizeof(*e));
	int r;

	if (!e)
		return -ENOMEM;
	r = nfs_export_parse(spec, e, err, errlen);
	if (!r && canon)
		snprintf(canon, canonlen, "%s", e->spec);
	free(e);
	return r;
}

bool nfs_export_allows(const struct nfs_export *e, uint32_t peer)
{
	if (!e->nclients)
		return true;
	for (int i = 0; i < e->nclients; i++)
		if ((peer & e->clients[i].mask) == e->clients[i].addr)
			return true;
	return false;
}

struct nfs_export *nfs_export_by_id(struct nfs_srv *s, uint32_t id)
{
	for (int i = 0; i < s->nexports; i++)
		if (s->exports[i]->id == id)
			return s->exports[i];
	return NULL;
}

int nfs_export_vol(struct nfs_srv *s, const struct nfs_export *e)
{
	if (!e->vol_name[0])
		return s->nvols ? 0 : -1;
	for (int i = 0; i < s->nvols; i++)
		if (!strcmp(s->vols[i].label, e->vol_name) || !strcmp(s->vols[i].uuid_str, e->vol_name))
			return i;
	return -1;
}

void nfs_export_squash(const struct nfs_export *e, struct nfs_cred *c)
{
	if (e->all_squash || (e->root_squash && c->uid == 0) || c->flavor != FLAVOR_SYS) {
		c->uid = e->anonuid;
		c->gid = e->anongid;
		c->ngids = 0;
	} else if (e->root_squash) {
		if (c->gid == 0)
			c->gid = e->anongid;
		for (uint32_t i = 0; i < c->ngids; i++)
			if (c->gids[i] == 0)
				c->gids[i] = e->anongid;
	}
}

int nfs_srv_add_export(struct nfs_srv *s, const char *spec, char *canon, size_t canonlen,
		       char *err, size_t errlen)
{
	struct nfs_export *e = malloc(sizeof(*e));
	int r;

	if (!e)
		return -ENOMEM;
	r = nfs_export_parse(spec, e, err, errlen);
	if (r)
		goto fail;
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->nexports; i++) {
		if (s->exports[i]->id == e->id || !strcmp(s->exports[i]->path, e->path)) {
			/* same path: replace its options */
			free(s->exports[i]);
			s->exports[i] = e;
			goto added;
		}
	}
	if (s->nexports == NFS_MAX_EXPORTS) {
		pthread_mutex_unlock(&s->mu);
		snprintf(err, errlen, "too many exports (max %d)", NFS_MAX_EXPORTS);
		r = -ENOSPC;
		goto fail;
	}
	s->exports[s->nexports++] = e;
added:
	pthread_mutex_unlock(&s->mu);
	if (canon)
		snprintf(canon, canonlen, "%s", e->spec);
	return 0;
fail:
	free(e);
	return r;
}

int nfs_srv_remove_export(struct nfs_srv *s, const char *path, char *err, size_t errlen)
{
	char norm[1024];
	int r = -ENOENT;

	if (norm_path(path, norm, sizeof(norm))) {
		snprintf(err, errlen, "bad export path '%s'", path);
		return -EINVAL;
	}
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->nexports; i++) {
		if (!strcmp(s->exports[i]->path, norm)) {
			free(s->exports[i]);
			s->exports[i] = s->exports[--s->nexports];
			r = 0;
			break;
		}
	}
	pthread_mutex_unlock(&s->mu);
	if (r)
		snprintf(err, errlen, "no export '%s'", norm);
	return r;
}

void nfs_srv_list_exports(struct nfs_srv *s, FILE *f, bool json)
{
	pthread_mutex_lock(&s->mu);
	if (json)
		fprintf(f, "[");
	for (int i = 0; i < s->nexports; i++) {
		struct nfs_export *e = s->exports[i];

		if (json) {
			fprintf(f, "%s{\"path\": ", i ? ", " : "");
			vmfs_json_str(f, e->path);
			fprintf(f, ", \"spec\": ");
			vmfs_json_str(f, e->spec);
			fprintf(f, ", \"ro\": %s, \"root_squash\": %s, \"all_squash\": %s, "
				"\"anonuid\": %u, \"anongid\": %u, \"volume_mounted\": %s}",
				e->ro ? "true" : "false", e->root_squash ? "true" : "false",
				e->all_squash ? "true" : "false", e->anonuid, e->anongid,
				nfs_export_vol(s, e) >= 0 ? "true" : "false");
		} else {
			fprintf(f, "%s\n", e->spec);
		}
	}
	if (json)
		fprintf(f, "]\n");
	pthread_mutex_unlock(&s->mu);
}
