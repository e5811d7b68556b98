/*
 * Per-host redo journal (see include/vmfs/journal.h for the layout and the
 * rules).  Commit = one write of descriptors + sectors + commit record (two
 * when it wraps) and one flush; the commit record's CRC32C covers every other
 * block of the transaction, so a torn or partly reordered write is detected
 * and the transaction ignored.  After an I/O error the journal aborts (every
 * later commit fails with -EIO until it is reopened), as jbd2 does: the
 * caller cannot know what reached the disk.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "vmfs/journal.h"

#define JH_MAGIC    0x4C4E4A53464D564Full  /* "OVMFSJNL" */
#define JH_VERSION  1u
#define JD_MAGIC    0x4353444Au            /* "JDSC" */
#define JC_MAGIC    0x544D434Au            /* "JCMT" */
#define PER_DESC    59u

enum {
	H_MAGIC = 0x00, H_VERSION = 0x08, H_CRC = 0x0C, H_JID = 0x10, H_BASE = 0x18, H_LEN = 0x20,
	H_CKSEQ = 0x28, H_CKPOS = 0x30, H_END = 0x34,
	D_MAGIC = 0x00, D_IDX = 0x04, D_JID = 0x08, D_SEQ = 0x10, D_N = 0x18, D_NDESC = 0x1C,
	D_FIRST = 0x20, D_COUNT = 0x24, D_OFFS = 0x28,
	C_MAGIC = 0x00, C_JID = 0x08, C_SEQ = 0x10, C_N = 0x18, C_NDESC = 0x1C, C_DCRC = 0x20,
	C_START = 0x24, C_SELFCRC = 0x28,
};
_Static_assert(D_OFFS + PER_DESC * 8 == 512, "descriptor fills one sector");
_Static_assert(H_END <= 512 && C_SELFCRC + 4 <= 512, "records fit");

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

struct hdr {
	uint64_t jid, base, len, ckpt_seq;
	uint32_t ckpt_pos;
};

struct vmfs_journal {
	struct vmfs_bdev *bd;
	uint64_t base, len;
	uint32_t nlog;             /* log blocks (region sectors minus the header) */
	uint64_t jid;
	unsigned flags;
	pthread_mutex_t mu;
	uint64_t ckpt_seq;         /* on disk */
	uint32_t ckpt_pos;
	uint64_t next_seq;         /* next transaction */
	uint32_t head;             /* where it goes */
	uint64_t used;             /* blocks from ckpt_pos to head */
	uint64_t applied_seq;
	uint32_t applied_pos;
	bool aborted;
	uint8_t *buf;
	size_t bufcap;
};

uint64_t vmfs_journal_txn_blocks(size_t n)
{
	return (n + PER_DESC - 1) / PER_DESC + n + 1;
}

static void *aalloc(size_t len)
{
	void *p = NULL;

	return posix_memalign(&p, 4096, len ? len : 512) ? NULL : p;
}

static int check_region(struct vmfs_bdev *bd, uint64_t off, uint64_t len)
{
	if (!bd || off % 512 || len % 512 || len < VMFS_JOURNAL_MIN_LEN)
		return -EINVAL;
	if (len / 512 - 1 > UINT32_MAX)
		return -EINVAL;
	if (off > vmfs_bdev_size(bd) || len > vmfs_bdev_size(bd) - off)
		return -EINVAL;
	return 0;
}

static uint64_t blk_off(uint64_t base, uint32_t pos)
{
	return base + 512 + (uint64_t)pos * 512;
}

/* Transfer @k blocks starting at log position @pos, wrapping at the end. */
static int xfer_blocks(struct vmfs_bdev *bd, uint64_t base, uint32_t nlog, uint32_t pos,
		       uint8_t *buf, uint64_t k, bool wr)
{
	uint64_t first = k <= (uint64_t)(nlog - pos) ? k : nlog - pos;
	int r;

	r = wr ? vmfs_bdev_write(bd, buf, first * 512, blk_off(base, pos))
	       : vmfs_bdev_read(bd, buf, first * 512, blk_off(base, pos));
	if (r || first == k)
		return r;
	return wr ? vmfs_bdev_write(bd, buf + first * 512, (k - first) * 512, blk_off(base, 0))
		  : vmfs_bdev_read(bd, buf + first * 512, (k - first) * 512, blk_off(base, 0));
}

static void hdr_encode(const struct hdr *h, uint8_t *b)
{
	memset(b, 0, 512);
	put64(b + H_MAGIC, JH_MAGIC);
	put32(b + H_VERSION, JH_VERSION);
	put64(b + H_JID, h->jid);
	put64(b + H_BASE, h->base);
	put64(b + H_LEN, h->len);
	put64(b + H_CKSEQ, h->ckpt_seq);
	put32(b + H_CKPOS, h->ckpt_pos);
	put32(b + H_CRC, vmfs_crc32c(0, b, 512));
}

static int hdr_read(struct vmfs_bdev *bd, uint64_t off, uint64_t len, struct hdr *h)
{
	uint8_t *b = aalloc(512);
	uint32_t crc;
	int r;

	if (!b)
		return -ENOMEM;
	r = vmfs_bdev_read(bd, b, 512, off);
	if (r)
		goto out;
	if (get64(b + H_MAGIC) != JH_MAGIC) {
		r = -ENODATA;
		goto out;
	}
	crc = get32(b + H_CRC);
	put32(b + H_CRC, 0);
	r = -EUCLEAN;
	if (crc != vmfs_crc32c(0, b, 512) || get32(b + H_VERSION) != JH_VERSION)
		goto out;
	h->jid = get64(b + H_JID);
	h->base = get64(b + H_BASE);
	h->len = get64(b + H_LEN);
	h->ckpt_seq = get64(b + H_CKSEQ);
	h->ckpt_pos = get32(b + H_CKPOS);
	if (h->base != off || h->len != len || h->ckpt_pos >= len / 512 - 1)
		goto out;
	r = 0;
out:
	free(b);
	return r;
}

static int hdr_write(struct vmfs_bdev *bd, const struct hdr *h)
{
	uint8_t *b = aalloc(512);
	int r;

	if (!b)
		return -ENOMEM;
	hdr_encode(h, b);
	r = vmfs_bdev_write(bd, b, 512, h->base);
	if (!r)
		r = vmfs_bdev_flush(bd);
	free(b);
	return r;
}

int vmfs_journal_format(struct vmfs_bdev *bd, uint64_t off, uint64_t len)
{
	struct hdr h = { .base = off, .len = len };
	int r = check_region(bd, off, len);

	if (r)
		return r;
	if (getrandom(&h.jid, sizeof(h.jid), 0) != sizeof(h.jid)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		h.jid = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec;
	}
	return hdr_write(bd, &h);
}

/* Is @o a sector a transaction may name? */
static bool off_ok(struct vmfs_bdev *bd, uint64_t base, uint64_t len, uint64_t o)
{
	if (o % 512 || o > vmfs_bdev_size(bd) - 512)
		return false;
	return o + 512 <= base || o >= base + len;
}

/* Check one transaction read into @b (k blocks from @pos).  0 valid,
 * 1 torn/not committed, -EUCLEAN committed but naming bad sectors. */
static int txn_check(struct vmfs_bdev *bd, const struct hdr *h, const uint8_t *b, uint64_t seq,
		     uint32_t pos, uint32_t n, uint32_t ndesc)
{
	const uint8_t *c = b + (uint64_t)(ndesc + n) * 512;

	for (uint32_t i = 0; i < ndesc; i++) {
		const uint8_t *d = b + (uint64_t)i * 512;
		uint32_t first = i * PER_DESC, cnt = n - first < PER_DESC ? n - first : PER_DESC;

		if (get32(d + D_MAGIC) != JD_MAGIC || get32(d + D_IDX) != i || get64(d + D_JID) != h->jid ||
		    get64(d + D_SEQ) != seq || get32(d + D_N) != n || get32(d + D_NDESC) != ndesc ||
		    get32(d + D_FIRST) != first || get32(d + D_COUNT) != cnt)
			return 1;
	}
	if (get32(c + C_MAGIC) != JC_MAGIC || get64(c + C_JID) != h->jid || get64(c + C_SEQ) != seq ||
	    get32(c + C_N) != n || get32(c + C_NDESC) != ndesc || get32(c + C_START) != pos ||
	    get32(c + C_SELFCRC) != vmfs_crc32c(0, c, C_SELFCRC) ||
	    get32(c + C_DCRC) != vmfs_crc32c(0, b, (uint64_t)(ndesc + n) * 512))
		return 1;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *d = b + (uint64_t)(i / PER_DESC) * 512;

		if (!off_ok(bd, h->base, h->len, get64(d + D_OFFS + (i % PER_DESC) * 8)))
			return -EUCLEAN;
	}
	return 0;
}

static int replay(struct vmfs_bdev *bd, uint64_t off, uint64_t len, struct hdr *h,
		  struct vmfs_journal_stats *st)
{
	uint32_t nlog = (uint32_t)(len / 512 - 1), pos;
	uint8_t *b = NULL;
	size_t cap = 0;
	uint64_t seq;
	int r;

	memset(st, 0, sizeof(*st));
	r = check_region(bd, off, len);
	if (r)
		return r;
	r = hdr_read(bd, off, len, h);
	if (r)
		return r;
	pos = h->ckpt_pos;
	seq = h->ckpt_seq + 1;
	st->last_seq = h->ckpt_seq;
	for (;;) {
		uint32_t n, ndesc;
		uint64_t k;

		if (cap < 512) {
			b = aalloc(512);
			if (!b) {
				r = -ENOMEM;
				goto out;
			}
			cap = 512;
		}
		r = xfer_blocks(bd, off, nlog, pos, b, 1, false);
		if (r)
			goto out;
		if (get32(b + D_MAGIC) != JD_MAGIC || get32(b + D_IDX) != 0 || get64(b + D_JID) != h->jid ||
		    get64(b + D_SEQ) != seq)
			break;   /* clean end of the log */
		n = get32(b + D_N);
		ndesc = get32(b + D_NDESC);
		k = vmfs_journal_txn_blocks(n);
		if (n == 0 || ndesc != (n + PER_DESC - 1) / PER_DESC || k > nlog) {
			st->torn = true;
			break;
		}
		if (cap < k * 512) {
			free(b);
			b = aalloc(k * 512);
			if (!b) {
				r = -ENOMEM;
				goto out;
			}
			cap = k * 512;
		}
		r = xfer_blocks(bd, off, nlog, pos, b, k, false);
		if (r)
			goto out;
		r = txn_check(bd, h, b, seq, pos, n, ndesc);
		if (r < 0)
			goto out;
		if (r == 1) {
			st->torn = true;
			r = 0;
			break;
		}
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *d = b + (uint64_t)(i / PER_DESC) * 512;
			uint64_t o = get64(d + D_OFFS + (i % PER_DESC) * 8);

			r = vmfs_bdev_write(bd, b + (uint64_t)(ndesc + i) * 512, 512, o);
			if (r)
				goto out;
			st->sectors++;
		}
		if (!st->txns)
			st->first_seq = seq;
		st->txns++;
		st->last_seq = seq;
		seq++;
		pos = (uint32_t)((pos + k) % nlog);
	}
	if (st->txns) {
		r = vmfs_bdev_flush(bd);
		if (r)
			goto out;
		h->ckpt_seq = st->last_seq;
		h->ckpt_pos = pos;
		r = hdr_write(bd, h);
	}
out:
	free(b);
	return r;
}

int vmfs_journal_replay(struct vmfs_bdev *bd, uint64_t off, uint64_t len, struct vmfs_journal_stats *st)
{
	struct vmfs_journal_stats tmp;
	struct hdr h;

	return replay(bd, off, len, &h, st ? st : &tmp);
}

int vmfs_journal_open(struct vmfs_bdev *bd, uint64_t off, uint64_t len, unsigned flags,
		      struct vmfs_journal **out, struct vmfs_journal_stats *st)
{
	struct vmfs_journal_stats tmp;
	struct vmfs_journal *j;
	struct hdr h;
	int r;

	if (!out)
		return -EINVAL;
	r = replay(bd, off, len, &h, st ? st : &tmp);
	if (r)
		return r;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->bd = bd;
	j->base = off;
	j->len = len;
	j->nlog = (uint32_t)(len / 512 - 1);
	j->jid = h.jid;
	j->flags = flags;
	j->ckpt_seq = j->applied_seq = h.ckpt_seq;
	j->ckpt_pos = j->applied_pos = j->head = h.ckpt_pos;
	j->next_seq = h.ckpt_seq + 1;
	pthread_mutex_init(&j->mu, NULL);
	*out = j;
	return 0;
}

static int checkpoint_locked(struct vmfs_journal *j)
{
	struct hdr h = { .jid = j->jid, .base = j->base, .len = j->len };
	int r;

	if (j->aborted)
		return -EIO;
	if (j->applied_seq == j->ckpt_seq)
		return 0;
	r = vmfs_bdev_flush(j->bd);      /* the in-place writes first */
	if (r)
		goto fail;
	h.ckpt_seq = j->applied_seq;
	h.ckpt_pos = j->applied_pos;
	r = hdr_write(j->bd, &h);
	if (r)
		goto fail;
	j->ckpt_seq = j->applied_seq;
	j->ckpt_pos = j->applied_pos;
	j->used = (j->head + (uint64_t)j->nlog - j->ckpt_pos) % j->nlog;
	if (j->used == 0 && j->applied_seq != j->next_seq - 1)
		j->used = j->nlog;
	return 0;
fail:
	j->aborted = true;
	return r;
}

void vmfs_journal_close(struct vmfs_journal *j)
{
	if (!j)
		return;
	pthread_mutex_lock(&j->mu);
	if (j->applied_seq == j->next_seq - 1)
		checkpoint_locked(j);
	pthread_mutex_unlock(&j->mu);
	pthread_mutex_destroy(&j->mu);
	free(j->buf);
	free(j);
}

void vmfs_journal_abandon(struct vmfs_journal *j)
{
	if (!j)
		return;
	pthread_mutex_destroy(&j->mu);
	free(j->buf);
	free(j);
}

int vmfs_journal_commit(struct vmfs_journal *j, const struct vmfs_jsector *s, size_t n)
{
	uint64_t k;
	uint32_t ndesc;
	uint8_t *b, *c;
	int r;

	if (!j || !s || n == 0 || n > UINT32_MAX / 2)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!off_ok(j->bd, j->base, j->len, s[i].off))
			return -EINVAL;
	k = vmfs_journal_txn_blocks(n);
	if (k > j->nlog)
		return -E2BIG;
	ndesc = (uint32_t)((n + PER_DESC - 1) / PER_DESC);
	pthread_mutex_lock(&j->mu);
	if (j->aborted) {
		r = -EIO;
		goto out;
	}
	if (j->used + k > j->nlog) {
		if (j->applied_seq != j->next_seq - 1) {
			r = -EAGAIN;
			goto out;
		}
		r = checkpoint_locked(j);
		if (r)
			goto out;
	}
	if (j->bufcap < k * 512) {
		free(j->buf);
		j->bufcap = 0;
		j->buf = aalloc(k * 512);
		if (!j->buf) {
			r = -ENOMEM;
			goto out;
		}
		j->bufcap = k * 512;
	}
	b = j->buf;
	memset(b, 0, (size_t)ndesc * 512);
	for (uint32_t d = 0; d < ndesc; d++) {
		uint8_t *p = b + (uint64_t)d * 512;
		uint32_t first = d * PER_DESC, cnt = (uint32_t)(n - first < PER_DESC ? n - first : PER_DESC);

		put32(p + D_MAGIC, JD_MAGIC);
		put32(p + D_IDX, d);
		put64(p + D_JID, j->jid);
		put64(p + D_SEQ, j->next_seq);
		put32(p + D_N, (uint32_t)n);
		put32(p + D_NDESC, ndesc);
		put32(p + D_FIRST, first);
		put32(p + D_COUNT, cnt);
		for (uint32_t i = 0; i < cnt; i++)
			put64(p + D_OFFS + i * 8, s[first + i].off);
	}
	for (size_t i = 0; i < n; i++)
		memcpy(b + (uint64_t)(ndesc + i) * 512, s[i].data, 512);
	c = b + (uint64_t)(ndesc + n) * 512;
	memset(c, 0, 512);
	put32(c + C_MAGIC, JC_MAGIC);
	put64(c + C_JID, j->jid);
	put64(c + C_SEQ, j->next_seq);
	put32(c + C_N, (uint32_t)n);
	put32(c + C_NDESC, ndesc);
	put32(c + C_DCRC, vmfs_crc32c(0, b, (uint64_t)(ndesc + n) * 512));
	put32(c + C_START, j->head);
	put32(c + C_SELFCRC, vmfs_crc32c(0, c, C_SELFCRC));
	r = xfer_blocks(j->bd, j->base, j->nlog, j->head, b, k, true);
	if (!r)
		r = vmfs_bdev_flush(j->bd);
	if (r) {
		j->aborted = true;
		goto out;
	}
	j->head = (uint32_t)((j->head + k) % j->nlog);
	j->used += k;
	j->next_seq++;
out:
	pthread_mutex_unlock(&j->mu);
	return r;
}

int vmfs_journal_applied(struct vmfs_journal *j)
{
	int r = 0;

	if (!j)
		return -EINVAL;
	pthread_mutex_lock(&j->mu);
	j->applied_seq = j->next_seq - 1;
	j->applied_pos = j->head;
	if (!(j->flags & VMFS_JOURNAL_LAZY))
		r = checkpoint_locked(j);
	pthread_mutex_unlock(&j->mu);
	return r;
}

int vmfs_journal_checkpoint(struct vmfs_journal *j)
{
	int r;

	if (!j)
		return -EINVAL;
	pthread_mutex_lock(&j->mu);
	r = checkpoint_locked(j);
	pthread_mutex_unlock(&j->mu);
	return r;
}

int vmfs_journal_write(struct vmfs_journal *j, const struct vmfs_jsector *s, size_t n)
{
	uint8_t *b = aalloc(512);
	int r;

	if (!b)
		return -ENOMEM;
	r = vmfs_journal_commit(j, s, n);
	for (size_t i = 0; i < n && !r; i++) {
		memcpy(b, s[i].data, 512);   /* aligned for O_DIRECT devices */
		r = vmfs_bdev_write(j->bd, b, 512, s[i].off);
	}
	if (!r)
		r = vmfs_journal_applied(j);
	free(b);
	return r;
}

uint64_t vmfs_journal_seq(const struct vmfs_journal *j)
{
	return j->next_seq - 1;
}
