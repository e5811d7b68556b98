#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "store.h"

struct vstore {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_writeoptions_t *wo;
	rocksdb_readoptions_t *ro;
};

int vstore_open(const char *dir, struct vstore **out, char **err)
{
	struct vstore *s = calloc(1, sizeof(*s));
	char path[4096];
	char *e = NULL;

	*err = NULL;
	if (!s)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/config.db", dir);
	s->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(s->opts, 1);
	/* A tiny store: keep its footprint small. */
	rocksdb_options_set_max_open_files(s->opts, 32);
	rocksdb_options_set_keep_log_file_num(s->opts, 2);
	s->db = rocksdb_open(s->opts, path, &e);
	if (!s->db) {
		*err = e;
		rocksdb_options_destroy(s->opts);
		free(s);
		return -EIO;
	}
	s->wo = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(s->wo, 1);
	s->ro = rocksdb_readoptions_create();
	*out = s;
	return 0;
}

void vstore_close(struct vstore *s)
{
	if (!s)
		return;
	rocksdb_close(s->db);
	rocksdb_writeoptions_destroy(s->wo);
	rocksdb_readoptions_destroy(s->ro);
	rocksdb_options_destroy(s->opts);
	free(s);
}

int vstore_put(struct vstore *s, const char *key, const char *val)
{
	char *e = NULL;

	rocksdb_put(s->db, s->wo, key, strlen(key), val, strlen(val), &e);
	if (e) {
		free(e);
		return -EIO;
	}
	return 0;
}

int vstore_get(struct vstore *s, const char *key, char **val)
{
	char *e = NULL, *v, *copy;
	size_t len;

	v = rocksdb_get(s->db, s->ro, key, strlen(key), &len, &e);
	if (e) {
		free(e);
		return -EIO;
	}
	if (!v)
		return -ENOENT;
	copy = malloc(len + 1);
	if (!copy) {
		rocksdb_free(v);
		return -ENOMEM;
	}
	memcpy(copy, v, len);
	copy[len] = 0;
	rocksdb_free(v);
	*val = copy;
	return 0;
}

int vstore_del(struct vstore *s, const char *key)
{
	char *e = NULL;

	rocksdb_delete(s->db, s->wo, key, strlen(key), &e);
	if (e) {
		free(e);
		return -EIO;
	}
	return 0;
}

int vstore_scan(struct vstore *s, const char *prefix,
		int (*cb)(void *arg, const char *key, const char *val), void *arg)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ro);
	size_t plen = strlen(prefix);
	int r = 0;

	for (rocksdb_iter_seek(it, prefix, plen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		const char *v = rocksdb_iter_value(it, &vl);
		char *ks, *vs;

		if (kl < plen || memcmp(k, prefix, plen))
			break;
		ks = strndup(k, kl);
		vs = strndup(v, vl);
		if (!ks || !vs) {
			free(ks);
			free(vs);
			r = -ENOMEM;
			break;
		}
		r = cb(arg, ks, vs);
		free(ks);
		free(vs);
		if (r)
			break;
	}
	rocksdb_iter_destroy(it);
	return r;
}

static int drop_one(void *arg, const char *key, const char *val)
{
	(void)val;
	return vstore_del(arg, key);
}

int vstore_drop_prefix(struct vstore *s, const char *prefix)
{
	return vstore_scan(s, prefix, drop_one, s);
}

struct collect_ctx {
	char **vals;
	int max, *n;
};

static int collect_one(void *arg, const char *key, const char *val)
{
	struct collect_ctx *c = arg;

	(void)key;
	if (*c->n >= c->max)
		return 0;
	c->vals[*c->n] = strdup(val);
	if (!c->vals[*c->n])
		return -ENOMEM;
	(*c->n)++;
	return 0;
}

int vstore_collect(struct vstore *s, const char *prefix, char **vals, int max, int *n)
{
	struct collect_ctx c = { vals, max, n };

	return vstore_scan(s, prefix, collect_one, &c);
}
