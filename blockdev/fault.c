/* Fault-injection wrapper: a device with a volatile write-back cache over any
 * other device, for crash tests (the model is SQLite's fault-injecting VFS).
 *
 *  - Writes go to an ordered list of unflushed writes (the "cache"); reads see
 *    the lower device with the cache laid over it in issue order.
 *  - flush applies the cache to the lower device in issue order, then
 *    flushes the lower device.
 *  - ATS is write-through: a COMPARE AND WRITE on a real disk is not a
 *    volatile-cached write semantically (other hosts see its result at once,
 *    and lock/heartbeat records are built on that), so the cached writes that
 *    overlap the sector are written through first (a disk may write back any
 *    cached data whenever it likes) and the ATS then goes to the lower device,
 *    which keeps its atomicity against other processes.  Discard likewise
 *    writes overlapping cached data through and then passes down.
 *  - fail_nth fails the n-th I/O (read, write, flush, ATS, discard) once.
 *  - stall makes every I/O sleep first (outside the lock: a lost path stalls
 *    all threads in parallel).
 *  - power_cut writes a seeded random subset of the cached writes (each kept
 *    with probability 1/2, in issue order), optionally tearing one
 *    multi-sector write to a prefix of whole sectors, flushes the lower
 *    device and turns the wrapper dead: every later I/O fails with -EIO.
 *    The lower device thus holds every flushed write and only writes that
 *    were issued.
 *
 * URL form (whole processes in system tests):
 *   fault:LOWER[?fail_nth=N&fail_err=E&stall_ms=M&cut_after=N&seed=S&tear=0|1]
 * cut_after=N performs power_cut(seed, tear) when the N-th I/O arrives (that
 * I/O and all later ones fail with -EIO).  LOWER is a path or URL without '?'.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct cached_write {
	uint64_t off;
	size_t len;
	struct cached_write *next;
	unsigned char data[];
};

struct fault_dev {
	struct vmfs_bdev *lower;
	pthread_mutex_t lock;
	struct cached_write *head, *tail;
	unsigned ncached;
	uint64_t io_count;
	uint64_t fail_at;        /* 0 = disarmed */
	int fail_err;
	unsigned stall_ms;       /* read/written under lock, slept outside */
	bool dead;
	uint64_t cut_after;      /* URL option: power cut at this I/O */
	uint64_t cut_seed;
	bool cut_tear;
};

static const struct vmfs_bdev_ops fault_ops;

static struct fault_dev *fault_of(const struct vmfs_bdev *bd)
{
	return (bd && bd->ops == &fault_ops) ? bd->priv : NULL;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void free_cache(struct fault_dev *f)
{
	while (f->head) {
		struct cached_write *c = f->head;

		f->head = c->next;
		free(c);
	}
	f->tail = NULL;
	f->ncached = 0;
}

static int do_power_cut(struct fault_dev *f, uint64_t seed, bool tear);

/* Start of every I/O: stall, count, injected failure, death.  Returns with
 * f->lock held when 0; otherwise the I/O fails with the returned error. */
static int io_enter(struct fault_dev *f)
{
	unsigned stall;

	pthread_mutex_lock(&f->lock);
	stall = f->stall_ms;
	pthread_mutex_unlock(&f->lock);
	if (stall)
		sleep_ms(stall);
	pthread_mutex_lock(&f->lock);
	if (f->dead) {
		pthread_mutex_unlock(&f->lock);
		return -EIO;
	}
	f->io_count++;
	if (f->cut_after && f->io_count >= f->cut_after) {
		do_power_cut(f, f->cut_seed, f->cut_tear);
		pthread_mutex_unlock(&f->lock);
		return -EIO;
	}
	if (f->fail_at && f->io_count == f->fail_at) {
		int err = f->fail_err;

		f->fail_at = 0;
		pthread_mutex_unlock(&f->lock);
		return err;
	}
	return 0;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Copy the part of cached write @c that overlaps [off, off+len) into the
 * iovec that describes [off, off+len). */
static void overlay(const struct cached_write *c, const struct iovec *iov, int iovcnt,
		    uint64_t off, size_t len)
{
	uint64_t lo = c->off > off ? c->off : off;
	uint64_t hi = c->off + c->len < off + len ? c->off + c->len : off + len;
	uint64_t pos = off;

	for (int i = 0; i < iovcnt && lo < hi; i++) {
		uint64_t s = pos, e = pos + iov[i].iov_len;

		if (e > lo && s < hi) {
			uint64_t a = lo > s ? lo : s, b = hi < e ? hi : e;

			memcpy((char *)iov[i].iov_base + (a - s), c->data + (a - c->off), b - a);
		}
		pos = e;
	}
}

static int fault_readv(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct fault_dev *f = priv;
	size_t len = vmfs_iov_len(iov, iovcnt);
	int r = io_enter(f);

	if (r)
		return r;
	r = vmfs_bdev_readv(f->lower, iov, iovcnt, off);
	if (r == 0)
		for (struct cached_write *c = f->head; c; c = c->next)
			if (overlaps(c->off, c->len, off, len))
				overlay(c, iov, iovcnt, off, len);
	pthread_mutex_unlock(&f->lock);
	return r;
}

static int fault_writev(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct fault_dev *f = priv;
	size_t len = vmfs_iov_len(iov, iovcnt), pos = 0;
	struct cached_write *c;
	int r;

	c = malloc(sizeof(*c) + len);
	if (!c)
		return -ENOMEM;
	c->off = off;
	c->len = len;
	c->next = NULL;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(c->data + pos, iov[i].iov_base, iov[i].iov_len);
		pos += iov[i].iov_len;
	}
	r = io_enter(f);
	if (r) {
		free(c);
		return r;
	}
	if (f->tail)
		f->tail->next = c;
	else
		f->head = c;
	f->tail = c;
	f->ncached++;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

/* Write every cached write that overlaps [off, off+len) (all when len == 0)
 * to the lower device in issue order and drop it from the cache. */
static int write_back(struct fault_dev *f, uint64_t off, uint64_t len)
{
	struct cached_write **pp = &f->head, *prev = NULL;
	int r = 0;

	while (*pp) {
		struct cached_write *c = *pp;

		if (len && !overlaps(c->off, c->len, off, len)) {
			prev = c;
			pp = &c->next;
			continue;
		}
		r = vmfs_bdev_write(f->lower, c->data, c->len, c->off);
		if (r)
			break;
		*pp = c->next;
		if (f->tail == c)
			f->tail = prev;
		f->ncached--;
		free(c);
	}
	return r;
}

static int fault_flush(void *priv)
{
	struct fault_dev *f = priv;
	int r = io_enter(f);

	if (r)
		return r;
	r = write_back(f, 0, 0);
	if (r == 0)
		r = vmfs_bdev_flush(f->lower);
	pthread_mutex_unlock(&f->lock);
	return r;
}

static int fault_discard(void *priv, uint64_t off, uint64_t len)
{
	struct fault_dev *f = priv;
	int r = io_enter(f);

	if (r)
		return r;
	r = write_back(f, off, len);
	if (r == 0)
		r = vmfs_bdev_discard(f->lower, off, len);
	pthread_mutex_unlock(&f->lock);
	return r;
}

static int fault_ats(void *priv, uint64_t off, const void *expect, const void *newdata,
		     void *current)
{
	struct fault_dev *f = priv;
	int r = io_enter(f);

	if (r)
		return r;
	r = write_back(f, off, VMFS_SECTOR_SIZE);
	if (r == 0)
		r = vmfs_bdev_ats(f->lower, off, expect, newdata, current);
	pthread_mutex_unlock(&f->lock);
	return r;
}

static void fault_close(void *priv)
{
	struct fault_dev *f = priv;

	free_cache(f);
	vmfs_bdev_close(f->lower);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static const struct vmfs_bdev_ops fault_ops = {
	.readv = fault_readv,
	.writev = fault_writev,
	.flush = fault_flush,
	.discard = fault_discard,
	.ats = fault_ats,
	.close = fault_close,
};

int vmfs_fault_wrap(struct vmfs_bdev *lower, struct vmfs_bdev **out)
{
	struct vmfs_bdev_info info;
	struct fault_dev *f;
	char uri[PATH_MAX];
	int r;

	if (!lower || !out)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->lower = lower;
	f->fail_err = -EIO;
	pthread_mutex_init(&f->lock, NULL);
	info = *vmfs_bdev_get_info(lower);
	/* Report the lower device's ATS mode: the wrapper adds no atomicity of
	 * its own, and callers want to know what really protects the sector. */
	snprintf(info.kind, sizeof(info.kind), "fault");
	snprintf(uri, sizeof(uri), "fault:%s", vmfs_bdev_uri(lower));
	r = vmfs_bdev_create(&fault_ops, f, &info, uri, out);
	if (r) {
		pthread_mutex_destroy(&f->lock);
		free(f);
	}
	return r;
}

void vmfs_fault_fail_nth(struct vmfs_bdev *fault, uint64_t n, int err)
{
	struct fault_dev *f = fault_of(fault);

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->fail_at = n ? f->io_count + n : 0;
	f->fail_err = err < 0 ? err : (err > 0 ? -err : -EIO);
	pthread_mutex_unlock(&f->lock);
}

void vmfs_fault_stall(struct vmfs_bdev *fault, unsigned ms)
{
	struct fault_dev *f = fault_of(fault);

	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->stall_ms = ms;
	pthread_mutex_unlock(&f->lock);
}

/* Called with f->lock held. */
static int do_power_cut(struct fault_dev *f, uint64_t seed, bool tear)
{
	struct cached_write *torn = NULL;
	uint64_t s = seed;
	unsigned nmulti = 0;
	int kept = 0;

	if (f->dead)
		return 0;
	if (tear) {
		for (struct cached_write *c = f->head; c; c = c->next)
			if (c->len > VMFS_SECTOR_SIZE)
				nmulti++;
		if (nmulti) {
			uint64_t pick = splitmix64(&s) % nmulti;

			for (struct cached_write *c = f->head; c; c = c->next)
				if (c->len > VMFS_SECTOR_SIZE && pick-- == 0) {
					torn = c;
					break;
				}
		}
	}
	for (struct cached_write *c = f->head; c; c = c->next) {
		size_t len = c->len;

		if (c == torn) {
			/* a prefix of 1 .. n-1 whole sectors reaches the medium */
			uint64_t nsec = c->len / VMFS_SECTOR_SIZE;

			len = (size_t)(1 + splitmix64(&s) % (nsec - 1)) * VMFS_SECTOR_SIZE;
		} else if (splitmix64(&s) & 1) {
			continue;
		}
		if (vmfs_bdev_write(f->lower, c->data, len, c->off) == 0)
			kept++;
	}
	free_cache(f);
	vmfs_bdev_flush(f->lower);
	f->dead = true;
	return kept;
}

int vmfs_fault_power_cut(struct vmfs_bdev *fault, uint64_t seed, bool tear)
{
	struct fault_dev *f = fault_of(fault);
	int kept;

	if (!f)
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	kept = do_power_cut(f, seed, tear);
	pthread_mutex_unlock(&f->lock);
	return kept;
}

uint64_t vmfs_fault_io_count(const struct vmfs_bdev *fault)
{
	struct fault_dev *f = fault_of(fault);
	uint64_t n;

	if (!f)
		return 0;
	pthread_mutex_lock(&f->lock);
	n = f->io_count;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;

	if (!*v || *v == '-')
		return -EINVAL;
	errno = 0;
	*out = strtoull(v, &end, 0);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

int vmfs_fault_open_url(const char *spec, const struct vmfs_bdev_open_opts *o,
			struct vmfs_bdev **out)
{
	struct vmfs_bdev *lower = NULL, *bd = NULL;
	struct fault_dev *f;
	char *copy, *q, *save = NULL, *kv;
	uint64_t fail_nth = 0, fail_err = EIO, stall = 0, cut = 0, seed = 0, tear = 0;
	int r;

	copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	q = strchr(copy, '?');
	if (q)
		*q++ = '\0';
	for (kv = q ? strtok_r(q, "&", &save) : NULL; kv; kv = strtok_r(NULL, "&", &save)) {
		char *v = strchr(kv, '=');

		if (!v) {
			r = -EINVAL;
			goto out;
		}
		*v++ = '\0';
		if (!strcmp(kv, "fail_nth"))
			r = parse_u64(v, &fail_nth);
		else if (!strcmp(kv, "fail_err"))
			r = parse_u64(v, &fail_err);
		else if (!strcmp(kv, "stall_ms"))
			r = parse_u64(v, &stall);
		else if (!strcmp(kv, "cut_after"))
			r = parse_u64(v, &cut);
		else if (!strcmp(kv, "seed"))
			r = parse_u64(v, &seed);
		else if (!strcmp(kv, "tear"))
			r = parse_u64(v, &tear);
		else
			r = -EINVAL;
		if (r)
			goto out;
	}
	if (!*copy || !strncmp(copy, "fault:", 6) || fail_err == 0 || fail_err > 4095 ||
	    stall > 600000 || tear > 1) {
		r = -EINVAL;
		goto out;
	}
	r = vmfs_bdev_open_opts(copy, o, &lower);
	if (r)
		goto out;
	r = vmfs_fault_wrap(lower, &bd);
	if (r) {
		vmfs_bdev_close(lower);
		goto out;
	}
	f = bd->priv;
	if (fail_nth)
		vmfs_fault_fail_nth(bd, fail_nth, -(int)fail_err);
	f->stall_ms = (unsigned)stall;
	f->cut_after = cut;
	f->cut_seed = seed;
	f->cut_tear = tear != 0;
	*out = bd;
out:
	free(copy);
	return r;
}
