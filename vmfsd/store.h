/* vmfsd's host-local configuration store (RocksDB under the state dir).
 * Keys are '/'-separated strings ("host/uuid", "volume/0", ...), values
 * strings.  Cluster-wide facts never live only here: they are on the volume. */
#ifndef VMFSD_STORE_H
#define VMFSD_STORE_H

struct vstore;

/** Open (creating) the store in @dir.  On failure *err gets a message to free. */
int vstore_open(const char *dir, struct vstore **out, char **err);
void vstore_close(struct vstore *s);
/** Durable put (synced).  \return 0 or -EIO. */
int vstore_put(struct vstore *s, const char *key, const char *val);
/** \return 0 and *val (malloc'd), -ENOENT when absent, -EIO on error. */
int vstore_get(struct vstore *s, const char *key, char **val);
int vstore_del(struct vstore *s, const char *key);
/** Call @cb for every key starting with @prefix, in key order; a non-zero
 *  return from @cb stops the scan and is returned. */
int vstore_scan(struct vstore *s, const char *prefix,
		int (*cb)(void *arg, const char *key, const char *val), void *arg);

/** Delete every key starting with @prefix. */
int vstore_drop_prefix(struct vstore *s, const char *prefix);
/** Append the values of the keys starting with @prefix (key order) to
 *  @vals[*n..max-1] (strdup'ed: the caller frees them); values beyond @max
 *  are ignored.  \return 0 or -ENOMEM / -EIO. */
int vstore_collect(struct vstore *s, const char *prefix, char **vals, int max, int *n);

#endif
