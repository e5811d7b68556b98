/* vmfs-fuse: the table of inodes the kernel knows (lookup counts, open
 * handles, per-file layout lock). */
#include <errno.h>
#include <stdlib.h>

#include "vmfs_fuse.h"

#define NBUCKETS 4096

int vf_nodes_init(struct vf *v)
{
	v->nbuckets = NBUCKETS;
	v->buckets = calloc(v->nbuckets, sizeof(*v->buckets));
	if (!v->buckets)
		return -ENOMEM;
	pthread_mutex_init(&v->mu, NULL);
	return 0;
}

static void node_free(struct vf_node *n)
{
	pthread_rwlock_destroy(&n->layout);
	free(n->hidden);
	free(n);
}

void vf_nodes_destroy(struct vf *v)
{
	for (size_t i = 0; v->buckets && i < v->nbuckets; i++) {
		struct vf_node *n = v->buckets[i], *nx;

		for (; n; n = nx) {
			nx = n->next;
			node_free(n);
		}
	}
	free(v->buckets);
	v->buckets = NULL;
	pthread_mutex_destroy(&v->mu);
}

static size_t hash(const struct vf *v, uint32_t addr)
{
	return (addr * 2654435761u >> 7) % v->nbuckets;
}

static struct vf_node *find_locked(struct vf *v, uint32_t addr)
{
	for (struct vf_node *n = v->buckets[hash(v, addr)]; n; n = n->next)
		if (n->addr == addr)
			return n;
	return NULL;
}

static struct vf_node *get_locked(struct vf *v, uint32_t addr, uint32_t gen)
{
	struct vf_node *n = find_locked(v, addr);
	size_t b;

	if (n) {
		if (n->gen != gen && !n->nlookup && !n->opens) {
			/* a new object in a reused FD slot */
			n->gen = gen;
			n->size_valid = n->dirty = false;
			vf_layout_changed(n);
		}
		return n;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->addr = addr;
	n->gen = gen;
	pthread_rwlock_init(&n->layout, NULL);
	b = hash(v, addr);
	n->next = v->buckets[b];
	v->buckets[b] = n;
	return n;
}

static void unlink_locked(struct vf *v, struct vf_node *n)
{
	struct vf_node **pp = &v->buckets[hash(v, n->addr)];

	while (*pp && *pp != n)
		pp = &(*pp)->next;
	if (*pp)
		*pp = n->next;
}

struct vf_node *vf_node_ref(struct vf *v, uint32_t addr, uint32_t gen, uint64_t nlookup)
{
	struct vf_node *n;

	pthread_mutex_lock(&v->mu);
	n = get_locked(v, addr, gen);
	if (n)
		n->nlookup += nlookup;
	pthread_mutex_unlock(&v->mu);
	return n;
}

struct vf_node *vf_node_find(struct vf *v, uint32_t addr)
{
	struct vf_node *n;

	pthread_mutex_lock(&v->mu);
	n = find_locked(v, addr);
	pthread_mutex_unlock(&v->mu);
	return n;
}

void vf_node_forget(struct vf *v, uint32_t addr, uint64_t cnt)
{
	struct vf_node *n;

	pthread_mutex_lock(&v->mu);
	n = find_locked(v, addr);
	if (n) {
		n->nlookup = n->nlookup > cnt ? n->nlookup - cnt : 0;
		if (!n->nlookup && !n->opens) {
			unlink_locked(v, n);
			node_free(n);
		}
	}
	pthread_mutex_unlock(&v->mu);
}

struct vf_node *vf_node_open(struct vf *v, uint32_t addr, uint32_t gen, bool write)
{
	struct vf_node *n;

	pthread_mutex_lock(&v->mu);
	n = get_locked(v, addr, gen);
	if (n) {
		n->opens++;
		vf_layout_changed(n);   /* close-to-open: read the FD afresh */
		if (write)
			n->wopens++;
	}
	pthread_mutex_unlock(&v->mu);
	return n;
}

void vf_node_close(struct vf *v, struct vf_node *n, bool write, bool *last_writer,
		   bool *last_open)
{
	pthread_mutex_lock(&v->mu);
	if (n->opens)
		n->opens--;
	if (write && n->wopens)
		n->wopens--;
	*last_writer = write && !n->wopens;
	if (*last_writer) {
		n->size_valid = false;
		vf_layout_changed(n);
	}
	*last_open = !n->opens;
	pthread_mutex_unlock(&v->mu);
}

void vf_node_maybe_free(struct vf *v, struct vf_node *n)
{
	pthread_mutex_lock(&v->mu);
	if (!n->nlookup && !n->opens) {
		unlink_locked(v, n);
		node_free(n);
	}
	pthread_mutex_unlock(&v->mu);
}
