/*
 * vmfs-fuse: a read-write FUSE mount of a VMFS volume (private header).
 *
 * The mount is a host of the cluster (include/vmfs/host.h).  FUSE inode
 * numbers are FD addresses (the root FD is mapped to FUSE_ROOT_ID, which no
 * FD address can be: FD addresses end in binary 100), generations are the
 * FD's generation.  The filesystem keeps no metadata cache across calls, so
 * this daemon keeps only what the kernel's reference counting needs (one
 * node per looked-up inode) plus, for files this host has open for writing
 * (and therefore holds exclusively), the file size and one cached extent.
 *
 * Writes into blocks that are already allocated go straight to the device
 * (read-modify-write of partial sectors); only the first write into a hole
 * or a to-be-zeroed block goes through the fs (allocation = a journalled
 * transaction).  What those direct writes change in the FD -- a larger size
 * (appends inside the last allocated block) and the mtime -- is committed on
 * flush (close), fsync and release, and before anything on this mount reads
 * the size from disk.  Other hosts cannot see the file in between: they
 * cannot open it for writing, and they read it on their next open after our
 * close (close-to-open).  A crash loses unsynced appends, as on any local fs.
 */
#ifndef VMFS_FUSE_H
#define VMFS_FUSE_H

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "vmfs/host.h"

#define VF_NAME_MAX 127

struct vf_node {
	uint32_t addr;
	uint32_t gen;
	uint64_t nlookup;          /* kernel references */
	unsigned opens;            /* open handles on this mount */
	unsigned wopens;           /* ... of them open for writing (file lock held) */
	/* Layout lock: data writes straight to an extent hold it shared; anything
	 * that can move or free blocks (writes through the fs, truncate,
	 * fallocate, punch) holds it exclusively. */
	pthread_rwlock_t layout;
	/* Protected by the table mutex: */
	bool size_valid;           /* sizes are ours to track (we hold the file lock) */
	uint64_t size;             /* size including appends not yet committed */
	uint64_t disk_size;        /* size in the FD on disk */
	bool ext_valid;            /* one cached allocated extent (same rule) */
	uint64_t ext_off, ext_len, ext_lv;
	bool dirty;                /* data written straight to the device: mtime pending */
	uint32_t dirty_time;
	/* Read mapping, for reads while this mount does not hold the file for
	 * writing: the size and one allocated extent as read from the FD, trusted
	 * until rmap_until (CLOCK_MONOTONIC ns; attr_timeout after they were
	 * read, like the kernel's attributes) and dropped on every open on this
	 * mount (close-to-open) and every layout change made here (rmap_seq). */
	uint64_t rmap_until;       /* 0: nothing known */
	uint64_t rmap_size, rmap_off, rmap_len, rmap_lv;   /* rmap_len 0: no extent */
	uint64_t rmap_seq;
	char *hidden;              /* unlinked while open: renamed to this name ... */
	uint32_t hidden_dir;       /* ... in this directory, removed on last release */
	struct vf_node *next;
};

struct vf {
	struct vmfs_host *host;
	struct vmfs_fs *fs;
	struct vmfs_bdev *bd;
	bool ro;
	bool direct_bdev;          /* extents opened with O_DIRECT: bounce buffers */
	bool direct_io;            /* -o direct_io: no page cache for any open */
	bool fs_writes;            /* -o fs_writes: every write through vmfs_pwrite (measuring) */
	bool debug;
	double attr_timeout, entry_timeout;
	uint32_t sys_addr[16];     /* system files of the root */
	unsigned nsys;
	struct fuse_session *se;

	pthread_mutex_t mu;        /* node table */
	struct vf_node **buckets;
	size_t nbuckets;
};

/* nodes.c */
int vf_nodes_init(struct vf *v);
void vf_nodes_destroy(struct vf *v);
/* Find or add the node of @addr and add @nlookup kernel references. */
struct vf_node *vf_node_ref(struct vf *v, uint32_t addr, uint32_t gen, uint64_t nlookup);
/* The node of @addr, or NULL (no references held by the caller). */
struct vf_node *vf_node_find(struct vf *v, uint32_t addr);
/* Drop @n kernel references; frees the node when nothing uses it. */
void vf_node_forget(struct vf *v, uint32_t addr, uint64_t n);
/* Open handles: vf_node_open adds one (creating the node if needed). */
struct vf_node *vf_node_open(struct vf *v, uint32_t addr, uint32_t gen, bool write);
/* Returns true when this was the last handle (node->hidden then needs removal). */
void vf_node_close(struct vf *v, struct vf_node *n, bool write, bool *last_writer,
		   bool *last_open);
void vf_node_maybe_free(struct vf *v, struct vf_node *n);

/* loop.c: the multithreaded session loop (at most @max_threads workers). */
int vf_session_loop(struct fuse_session *se, unsigned max_threads);

/* ops.c */
extern const struct fuse_lowlevel_ops vf_ops;
void vf_log(void *ctx, int level, const char *msg);
bool vf_is_sysfile(const struct vf *v, uint32_t addr);
bool vf_is_sysname(uint32_t dir, const char *name);
/* Commit every pending size/mtime (after the session loop ended). */
void vf_commit_all(struct vf *v);

static inline uint64_t vf_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* What this mount knows of @n's layout is stale (holds v->mu). */
static inline void vf_layout_changed(struct vf_node *n)
{
	n->ext_valid = false;
	n->rmap_until = 0;
	n->rmap_seq++;
}

static inline uint32_t vf_addr(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? VMFS_ROOT_ADDR : (uint32_t)ino;
}

static inline fuse_ino_t vf_ino(uint32_t addr)
{
	return addr == VMFS_ROOT_ADDR ? FUSE_ROOT_ID : (fuse_ino_t)addr;
}

#endif
