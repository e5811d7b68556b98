/*
 * Metadata transactions.  One fs operation = one transaction: it stages the
 * whole 512-byte sectors it changes (FD bytes 0x200..0x7FF, cluster header
 * bytes 0x200..0x3FF, directory content, pointer blocks), reads through its
 * own staged sectors, and at commit hands them (sorted) to the commit hook
 * (the journal logs and flushes them) before writing them in place.  This is
 * the only path by which fs metadata reaches the disk.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"

void txn_init(struct vmfs_txn *t, struct vmfs_fs *fs)
{
	memset(t, 0, sizeof(*t));
	t->fs = fs;
	pthread_mutex_lock(&fs->txn_lock);
	fs->fresh_data = false;
}

static struct vmfs_txn_sector *find_sec(struct vmfs_txn *t, uint64_t off)
{
	/* newest first: recently staged sectors are the likely hits */
	for (size_t i = t->nsecs; i-- > 0;)
		if (t->secs[i].off == off)
			return &t->secs[i];
	return NULL;
}

int txn_read(struct vmfs_txn *t, uint64_t off, void *buf, size_t len)
{
	int r;

	if (off % 512 || len % 512)
		return -EINVAL;
	r = vmfs_bdev_read(t->fs->bd, buf, len, off);
	if (r)
		return r;
	for (size_t i = 0; i < t->nsecs; i++) {
		uint64_t so = t->secs[i].off;
		if (so >= off && so < off + len)
			memcpy((uint8_t *)buf + (so - off), t->secs[i].data, 512);
	}
	return 0;
}

static int stage(struct vmfs_txn *t, uint64_t off, const uint8_t *data)
{
	struct vmfs_txn_sector *s = find_sec(t, off);

	if (!s) {
		if (t->nsecs == t->capsecs) {
			size_t nc = t->capsecs ? t->capsecs * 2 : 16;
			struct vmfs_txn_sector *ns = realloc(t->secs, nc * sizeof(*ns));
			if (!ns)
				return -ENOMEM;
			t->secs = ns;
			t->capsecs = nc;
		}
		s = &t->secs[t->nsecs++];
		s->off = off;
	}
	memcpy(s->data, data, 512);
	return 0;
}

int txn_write(struct vmfs_txn *t, uint64_t off, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint8_t sec[512];
	int r;

	if (t->fs->flags & VMFS_FS_RDONLY)
		return -EROFS;
	while (len) {
		uint64_t so = off & ~511ull;
		size_t in = (size_t)(off - so);
		size_t n = 512 - in < len ? 512 - in : len;
		if (in || n < 512) {
			struct vmfs_txn_sector *s = find_sec(t, so);
			if (s) {
				memcpy(sec, s->data, 512);
			} else {
				r = vmfs_bdev_read(t->fs->bd, sec, 512, so);
				if (r)
					return r;
			}
			memcpy(sec + in, p, n);
			r = stage(t, so, sec);
		} else {
			r = stage(t, so, p);
		}
		if (r)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

void txn_note_freed(struct vmfs_txn *t, uint64_t block)
{
	if (!(t->fs->flags & VMFS_FS_DISCARD))
		return;
	if (t->nfreed == t->capfreed) {
		size_t nc = t->capfreed ? t->capfreed * 2 : 64;
		uint64_t *nf = realloc(t->freed, nc * sizeof(*nf));
		if (!nf)
			return; /* discard is advisory */
		t->freed = nf;
		t->capfreed = nc;
	}
	t->freed[t->nfreed++] = block;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* What this thread's transactions discarded (vmfs_fs_discard_count). */
static _Thread_local struct vmfs_discard_count tl_discard;

bool vmfs_fs_discards(const struct vmfs_fs *fs)
{
	return fs && (fs->flags & VMFS_FS_DISCARD) && !(fs->flags & VMFS_FS_RDONLY);
}

void vmfs_fs_discard_count(struct vmfs_discard_count *c)
{
	*c = tl_discard;
}

/* Discard the blocks freed by a committed transaction, runs coalesced. */
static void discard_freed(struct vmfs_txn *t)
{
	struct vmfs_fs *fs = t->fs;

	qsort(t->freed, t->nfreed, sizeof(uint64_t), cmp_u64);
	for (size_t i = 0; i < t->nfreed;) {
		size_t j = i + 1;
		while (j < t->nfreed && t->freed[j] == t->freed[j - 1] + 1)
			j++;
		uint64_t len = (j - i) * fs->bs;
		int r = vmfs_bdev_discard(fs->bd, t->freed[i] * fs->bs, len);
		if (r) {
			tl_discard.failed += len;
			tl_discard.last_err = r;
		} else {
			tl_discard.bytes += len;
		}
		if (r && r != -EOPNOTSUPP)
			fs_log(fs, VMFS_LOG_WARN, "discard of blocks %llu..%llu failed: %d",
			       (unsigned long long)t->freed[i], (unsigned long long)t->freed[j - 1], r);
		i = j;
	}
}

int txn_lock(struct vmfs_txn *t, uint64_t lv_off, int mode)
{
	struct vmfs_fs *fs = t->fs;
	int r;

	if (!fs->have_hooks || !fs->hooks.lock)
		return 0;
	for (size_t i = 0; i < t->nlocks; i++)
		if (t->locks[i] == lv_off)
			return 0;
	if (t->nlocks == t->caplocks) {
		size_t nc = t->caplocks ? t->caplocks * 2 : 8;
		uint64_t *nl = realloc(t->locks, nc * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		t->locks = nl;
		t->caplocks = nc;
	}
	r = fs->hooks.lock(fs->hooks.ctx, lv_off, mode);
	if (r)
		return r;
	t->locks[t->nlocks++] = lv_off;
	return 0;
}

static void release(struct vmfs_txn *t)
{
	struct vmfs_fs *fs = t->fs;

	if (fs->have_hooks && fs->hooks.unlock)
		for (size_t i = t->nlocks; i-- > 0;)
			fs->hooks.unlock(fs->hooks.ctx, t->locks[i]);
	for (size_t i = 0; i < t->ninodes; i++)
		free(t->inodes[i]);
	free(t->inodes);
	free(t->locks);
	free(t->secs);
	free(t->freed);
	t->freed = NULL;
	t->nfreed = 0;
	t->inodes = NULL;
	t->locks = NULL;
	t->secs = NULL;
	t->ninodes = t->nlocks = t->nsecs = 0;
	pthread_mutex_unlock(&fs->txn_lock);
}

static int cmp_sec(const void *a, const void *b)
{
	const struct vmfs_txn_sector *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

int txn_commit(struct vmfs_txn *t)
{
	struct vmfs_fs *fs = t->fs;
	uint8_t *run = NULL;
	int r = 0;

	for (size_t i = 0; i < t->ninodes; i++) {
		struct vmfs_inode *ino = t->inodes[i];
		uint8_t enc[OD_FD_SIZE];
		if (!ino->dirty)
			continue;
		memcpy(enc, ino->raw, OD_FD_SIZE);
		od_fd_encode(&ino->fd, enc);
		/* Bytes equal to what the txn read need no journal record and no
		 * in-place write: a rewrite within the same second (mtime
		 * unchanged) commits nothing, so it costs no flush. */
		if (ino->loaded && !ino->fresh_lock &&
		    !memcmp(enc + OD_FD_META_OFF, ino->raw + OD_FD_META_OFF, OD_FD_SIZE - OD_FD_META_OFF))
			continue;
		memcpy(ino->raw, enc, OD_FD_SIZE);
		if (ino->fresh_lock) {
			/* formatting a never-used FD slot: its lock record too */
			od_lock_fresh(ino->raw, OD_MAGIC_FD, ino->lv_off);
			r = txn_write(t, ino->lv_off, ino->raw, OD_FD_SIZE);
		} else {
			r = txn_write(t, ino->lv_off + OD_FD_META_OFF, ino->raw + OD_FD_META_OFF,
				      OD_FD_SIZE - OD_FD_META_OFF);
		}
		if (r)
			goto out;
	}
	if (!t->nsecs)
		goto out;
	qsort(t->secs, t->nsecs, sizeof(t->secs[0]), cmp_sec);
	/* Ordered data: blocks this transaction makes readable (new blocks, TBZ
	 * blocks filled, zeroed tails) must be durable before the metadata that
	 * points at them, or a power cut could expose stale device content. */
	if (fs->fresh_data) {
		r = vmfs_bdev_flush(fs->bd);
		if (r) {
			fs_err(fs, "flush of new data blocks failed: %d", r);
			goto out;
		}
	}
	if (fs->have_hooks && fs->hooks.commit) {
		r = fs->hooks.commit(fs->hooks.ctx, t->secs, t->nsecs);
		if (r) {
			fs_err(fs, "transaction commit hook failed: %d", r);
			goto out;
		}
	}
	/* write in place, coalescing adjacent sectors */
	run = malloc(64 * 512);
	if (!run) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->nsecs;) {
		size_t j = i, n = 0;
		while (j < t->nsecs && n < 64 && t->secs[j].off == t->secs[i].off + n * 512) {
			memcpy(run + n * 512, t->secs[j].data, 512);
			n++;
			j++;
		}
		r = vmfs_bdev_write(fs->bd, run, n * 512, t->secs[i].off);
		if (r) {
			fs_err(fs, "metadata write at LV 0x%llx failed: %d",
			       (unsigned long long)t->secs[i].off, r);
			goto out;
		}
		i = j;
	}
	if (fs->have_hooks && fs->hooks.committed)
		fs->hooks.committed(fs->hooks.ctx);
	if (t->nfreed)
		discard_freed(t);   /* blocks are free on disk, clusters still locked */
out:
	free(run);
	release(t);
	return r;
}

void txn_abort(struct vmfs_txn *t)
{
	release(t);
}

int txn_finish(struct vmfs_txn *t, int r)
{
	if (r) {
		txn_abort(t);
		return r;
	}
	return txn_commit(t);
}
