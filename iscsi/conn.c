/* One iSCSI connection (= one session, MaxConnections=1): a thread that
 * reads PDUs into a large receive buffer, handles every complete one, and
 * sends all replies in one write before it waits for more.  Reads go from
 * the backing store straight into the transmit buffer between the Data-In
 * headers; writes go from the receive buffer (immediate data) or a task
 * buffer (R2T'd data) straight to the backing store. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "internal.h"

#define RX_CAP (2 * (OUR_MRDSL + 2048))

/* ---- transmit ------------------------------------------------------------ */

uint8_t *tx_reserve(struct conn *c, size_t n)
{
	if (c->tx_len + n > c->tx_cap) {
		size_t nc = c->tx_cap ? c->tx_cap : 65536;
		uint8_t *p;

		while (nc < c->tx_len + n)
			nc *= 2;
		p = realloc(c->tx, nc);
		if (!p) {
			c->tx_oom = true;
			return NULL;
		}
		c->tx = p;
		c->tx_cap = nc;
	}
	c->tx_len += n;
	return c->tx + c->tx_len - n;
}

static void fill_sn(struct conn *c, uint8_t *h)
{
	put_be32(h + 28, c->exp_cmdsn);
	put_be32(h + 32, c->exp_cmdsn + CMDSN_WINDOW - 1);
}

int tx_pdu(struct conn *c, uint8_t *bhs, const void *data, uint32_t dsl)
{
	size_t n = ISCSI_BHS_LEN + (c->hdigest ? 4 : 0) + pad4(dsl) + (c->ddigest && dsl ? 4 : 0);
	uint8_t *p = tx_reserve(c, n);

	if (!p)
		return -ENOMEM;
	bhs[4] = 0;
	put_be24(bhs + 5, dsl);
	memcpy(p, bhs, ISCSI_BHS_LEN);
	p += ISCSI_BHS_LEN;
	if (c->hdigest) {
		uint32_t d = iscsi_crc32c(bhs, ISCSI_BHS_LEN);

		memcpy(p, &d, 4); /* digests go little endian on the wire */
		p += 4;
	}
	if (dsl) {
		memcpy(p, data, dsl);
		memset(p + dsl, 0, pad4(dsl) - dsl);
		if (c->ddigest) {
			uint32_t d = iscsi_crc32c(p, pad4(dsl));

			memcpy(p + pad4(dsl), &d, 4);
		}
	}
	return 0;
}

static int tx_flush(struct conn *c)
{
	size_t off = 0;

	while (off < c->tx_len) {
		ssize_t n = send(c->fd, c->tx + off, c->tx_len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			c->tx_len = 0;
			return -EPIPE;
		}
		off += (size_t)n;
	}
	c->tx_len = 0;
	return 0;
}

static void send_reject(struct conn *c, const uint8_t *bad, uint8_t reason)
{
	uint8_t h[48] = { OP_REJECT, 0x80, reason };

	put_be32(h + 16, 0xffffffffu);
	put_be32(h + 24, c->stat_sn++);
	fill_sn(c, h);
	tx_pdu(c, h, bad, ISCSI_BHS_LEN);
}

/* ---- LUN field ------------------------------------------------------------- */

static int decode_lun(const uint8_t *l)
{
	switch (l[0] >> 6) {
	case 0:
		if (l[0] & 0x3f)
			return -1;
		return l[1];
	case 1:
		return (l[0] & 0x3f) << 8 | l[1];
	}
	return -1;
}

/* ---- SCSI command execution and response ----------------------------------- */

static void send_scsi_rsp(struct conn *c, uint32_t itt, struct scsi_task *t, uint32_t edtl,
			  uint32_t xfer, bool have_xfer, uint32_t datasn)
{
	uint8_t h[48] = { OP_SCSI_RSP, 0x80, 0x00, t->status };
	uint8_t sd[2 + SCSI_SENSE_MAX];
	uint32_t dsl = 0;

	if (have_xfer && xfer != edtl) {
		h[1] |= xfer > edtl ? 0x04 : 0x02;
		put_be32(h + 44, xfer > edtl ? xfer - edtl : edtl - xfer);
	}
	put_be32(h + 16, itt);
	put_be32(h + 24, c->stat_sn++);
	fill_sn(c, h);
	put_be32(h + 36, datasn);
	if (t->sense_len) {
		put_be16(sd, (uint16_t)t->sense_len);
		memcpy(sd + 2, t->sense, t->sense_len);
		dsl = 2 + t->sense_len;
	}
	tx_pdu(c, h, sd, dsl);
}

/* ---- write offload ----------------------------------------------------------------
 * Writes can block (page cache writeback, file system allocation, a slow
 * device); they run in the server's worker pool while the connection keeps
 * reading and serving other commands.  Reads, and everything that is not a
 * plain write, run inline.  The connection sends every response itself. */

static bool is_read(uint8_t op)
{
	return op == 0x08 || op == 0x28 || op == 0xa8 || op == 0x88;
}

static bool offloadable(const struct conn *c, const uint8_t *cdb, bool rd, bool wr,
			const struct lun_slot *ls)
{
	if (!c->srv->nworkers || c->efd < 0 || c->inflight >= MAX_INFLIGHT || c->cur_attr > 1)
		return false;
	/* Alone in the queue (QD1), a command is fastest inline: nothing
	 * waits behind it, and a hand-off costs two wake-ups. */
	if (!c->more_pending && !c->inflight)
		return false;
	if (rd && !wr && is_read(cdb[0]) && ls) {
		/* Reads are offloaded only from LUNs whose reads are slow
		 * (a device, not the page cache): the hand-off and the copy
		 * into the transmit buffer cost more than a cached read. */
		if (c->srv->read_offload == 2)
			return true;
		return c->srv->read_offload == 0 &&
		       __atomic_load_n(&ls->slow_reads, __ATOMIC_RELAXED) > SLOW_READS_ON;
	}
	if (!wr || rd)
		return false;
	switch (cdb[0]) {
	case 0x0a: case 0x2a: case 0xaa: case 0x8a:       /* WRITE */
	case 0x2e: case 0xae: case 0x8e:                  /* WRITE AND VERIFY */
	case 0x41: case 0x93:                             /* WRITE SAME */
		return true;
	}
	return false;
}

/* Remember whether this LUN's reads hit a device or the page cache: a
 * cached read costs ~100 us plus a memory copy (well under 1 us per KiB), a
 * device read 500 us and more. */
static void note_read_time(struct lun_slot *ls, uint32_t bytes, const struct timespec *a,
			   const struct timespec *b)
{
	long us = (b->tv_sec - a->tv_sec) * 1000000L + (b->tv_nsec - a->tv_nsec) / 1000;
	long kib = (long)(bytes >> 10);
	int v = __atomic_load_n(&ls->slow_reads, __ATOMIC_RELAXED);

	if (us > 500 + 2 * kib && v < 2 * SLOW_READS_ON)
		__atomic_store_n(&ls->slow_reads, v + 1, __ATOMIC_RELAXED);
	else if (us < 100 + kib / 4 && v > 0)
		__atomic_store_n(&ls->slow_reads, v - 1, __ATOMIC_RELAXED);
}

void *worker_main(void *arg)
{
	struct iscsi_srv *s = arg;

	for (;;) {
		struct job *j;
		struct conn *c;
		uint64_t one = 1;

		pthread_mutex_lock(&s->q_lock);
		while (!s->q_head && !s->q_stop)
			pthread_cond_wait(&s->q_cond, &s->q_lock);
		j = s->q_head;
		if (!j) {
			pthread_mutex_unlock(&s->q_lock);
			return NULL;
		}
		s->q_head = j->next;
		if (!s->q_head)
			s->q_tail = NULL;
		pthread_mutex_unlock(&s->q_lock);
		if (j->rd) { /* keep scoring: a LUN that got fast again goes inline */
			struct timespec a, b;

			clock_gettime(CLOCK_MONOTONIC, &a);
			scsi_exec(&j->t);
			clock_gettime(CLOCK_MONOTONIC, &b);
			note_read_time(j->ls, j->t.in_len, &a, &b);
		} else {
			scsi_exec(&j->t);
		}
		c = j->c;
		pthread_mutex_lock(&c->done_lock);
		j->next = c->done;
		c->done = j;
		pthread_mutex_unlock(&c->done_lock);
		if (write(c->efd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow here */
		}
	}
}

static bool offload(struct conn *c, uint32_t itt, const uint8_t *lunf, const uint8_t *cdb,
		    unsigned cdb_len, const uint8_t *out, uint32_t out_len, uint8_t *owned,
		    uint32_t wedtl, struct lun_slot *ls, uint32_t redtl)
{
	struct iscsi_srv *s = c->srv;
	uint32_t cap = redtl > MAX_DATAIN ? MAX_DATAIN : redtl;
	struct job *j;

	if (!ls || cdb_len > sizeof(j->cdb))
		return false;
	if (redtl && c->buffered + cap > MAX_BUFFERED)
		return false;
	j = calloc(1, sizeof(*j));
	if (!j)
		return false;
	if (redtl) {
		j->inbuf = malloc(cap ? cap : 1);
		if (!j->inbuf) {
			free(j);
			return false;
		}
		j->rd = true;
		j->redtl = redtl;
		j->cap = cap;
		j->iov.iov_base = j->inbuf;
		j->iov.iov_len = cap;
		j->t.in_iov = &j->iov;
		j->t.in_iovcnt = 1;
		j->t.in_cap = cap;
		c->buffered += cap;
	} else if (owned) {
		j->buf = owned;          /* already counted in c->buffered */
	} else if (out_len) {
		j->buf = malloc(out_len);
		if (!j->buf) {
			free(j);
			return false;
		}
		memcpy(j->buf, out, out_len);
		c->buffered += out_len;
	}
	j->buflen = j->buf ? out_len : 0;
	memcpy(j->cdb, cdb, cdb_len);
	j->c = c;
	j->ls = ls;
	j->itt = itt;
	j->wedtl = wedtl;
	j->r2ts = c->cur_r2ts;     /* ExpDataSN of the response */
	j->t.cdb = j->cdb;
	j->t.cdb_len = cdb_len;
	j->t.nexus = &c->nexus;
	j->t.lun = &ls->sl;
	j->t.lun_raw = get_be64(lunf);
	j->t.out = j->buf;
	j->t.out_len = out_len;
	j->t.write_dir = !redtl;
	j->t.take_ua = conn_take_ua;
	j->t.ua_arg = c;
	c->inflight++;
	pthread_mutex_lock(&s->q_lock);
	if (s->q_tail)
		s->q_tail->next = j;
	else
		s->q_head = j;
	s->q_tail = j;
	pthread_cond_signal(&s->q_cond);
	pthread_mutex_unlock(&s->q_lock);
	return true;
}

static void send_scsi_rsp(struct conn *c, uint32_t itt, struct scsi_task *t, uint32_t edtl,
			  uint32_t xfer, bool have_xfer, uint32_t datasn);

/* Data-In PDUs (and the response) of an offloaded read: the data is copied
 * from the job's buffer into the transmit buffer. */
static void emit_datain(struct conn *c, struct job *j)
{
	struct scsi_task *t = &j->t;
	uint32_t actual = t->status == SAM_GOOD ? (t->in_len < j->cap ? t->in_len : j->cap) : 0;
	uint32_t off = 0, datasn = 0;
	bool collapsed = false;

	while (off < actual) {
		uint32_t in_burst = c->max_burst - (off % c->max_burst);
		uint32_t l = actual - off;
		uint8_t h[48] = { OP_DATA_IN };
		bool last;

		if (l > c->mrdsl_out)
			l = c->mrdsl_out;
		if (l > in_burst)
			l = in_burst;
		last = off + l >= actual;
		if (last || (off + l) % c->max_burst == 0)
			h[1] |= 0x80;
		put_be32(h + 16, j->itt);
		put_be32(h + 20, 0xffffffffu);
		fill_sn(c, h);
		put_be32(h + 36, datasn++);
		put_be32(h + 40, off);
		if (last && !t->sense_len) {
			uint32_t prod = t->in_len, edtl = j->redtl;

			h[1] |= 0x01;
			h[3] = SAM_GOOD;
			put_be32(h + 24, c->stat_sn++);
			if (prod != edtl) {
				h[1] |= prod > edtl ? 0x04 : 0x02;
				put_be32(h + 44, prod > edtl ? prod - edtl : edtl - prod);
			}
			collapsed = true;
		}
		tx_pdu(c, h, j->inbuf + off, l);
		off += l;
	}
	if (!collapsed)
		send_scsi_rsp(c, j->itt, t, j->redtl, t->status == SAM_GOOD ? t->in_len : j->redtl,
			      t->status == SAM_GOOD, datasn);
}

/* Send the responses of finished jobs (and free them). */
static void reap(struct conn *c, bool send)
{
	struct job *list, *rev = NULL;
	uint64_t v;

	if (read(c->efd, &v, sizeof(v)) < 0) {
		/* nothing pending (EAGAIN) */
	}
	pthread_mutex_lock(&c->done_lock);
	list = c->done;
	c->done = NULL;
	pthread_mutex_unlock(&c->done_lock);
	while (list) { /* oldest first */
		struct job *n = list->next;

		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct job *n = rev->next;

		if (send && rev->rd)
			emit_datain(c, rev);
		else if (send)
			send_scsi_rsp(c, rev->itt, &rev->t, rev->wedtl, rev->t.xfer_len,
				      rev->t.residual_set, rev->r2ts);
		c->buffered -= rev->buflen + (rev->rd ? rev->cap : 0);
		free(rev->buf);
		free(rev->inbuf);
		free(rev);
		c->inflight--;
		rev = n;
	}
}

/* Wait until no job of this connection runs (before ORDERED tasks, logout,
 * and when the connection goes away). */
static void drain(struct conn *c, bool send)
{
	while (c->inflight) {
		struct pollfd p = { .fd = c->efd, .events = POLLIN };

		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			break;
		reap(c, send);
	}
}

static bool execute_owned(struct conn *c, uint32_t itt, const uint8_t *lunf, const uint8_t *cdb,
			  unsigned cdb_len, bool rd, uint32_t edtl, const uint8_t *out,
			  uint32_t out_len, bool wr, uint32_t wedtl, uint8_t *owned);

static void execute(struct conn *c, uint32_t itt, const uint8_t *lunf, const uint8_t *cdb,
		    unsigned cdb_len, bool rd, uint32_t edtl, const uint8_t *out, uint32_t out_len,
		    bool wr, uint32_t wedtl)
{
	execute_owned(c, itt, lunf, cdb, cdb_len, rd, edtl, out, out_len, wr, wedtl, NULL);
}

static void execute_inline(struct conn *c, uint32_t itt, const uint8_t *lunf, const uint8_t *cdb,
			   unsigned cdb_len, bool rd, uint32_t edtl, const uint8_t *out,
			   uint32_t out_len, bool wr, uint32_t wedtl);

/* \return true if @owned was taken over (by a job). */
static bool execute_owned(struct conn *c, uint32_t itt, const uint8_t *lunf, const uint8_t *cdb,
			  unsigned cdb_len, bool rd, uint32_t edtl, const uint8_t *out,
			  uint32_t out_len, bool wr, uint32_t wedtl, uint8_t *owned)
{
	int lun = decode_lun(lunf);
	struct lun_slot *ls = lun >= 0 ? tgt_lun_get(c, (uint16_t)lun) : NULL;

	if (c->cur_attr == 2)         /* ORDERED: everything before it first */
		drain(c, true);
	if (offloadable(c, cdb, rd, wr, ls) &&
	    offload(c, itt, lunf, cdb, cdb_len, out, out_len, owned, wedtl, ls,
		    rd ? edtl : 0))
		return true;
	execute_inline(c, itt, lunf, cdb, cdb_len, rd, edtl, out, out_len, wr, wedtl);
	return false;
}

static void execute_inline(struct conn *c, uint32_t itt, const uint8_t *lunf, const uint8_t *cdb,
			   unsigned cdb_len, bool rd, uint32_t edtl, const uint8_t *out,
			   uint32_t out_len, bool wr, uint32_t wedtl)
{
	struct scsi_task t = { 0 };
	struct iovec stackv[64], *iov = stackv;
	size_t base = c->tx_len, seg_hdr = ISCSI_BHS_LEN + (c->hdigest ? 4 : 0);
	uint32_t seg = c->mrdsl_out, nseg = 0, actual, datasn = 0, cap = edtl;
	int lun = decode_lun(lunf);
	struct lun_slot *ls = lun >= 0 ? tgt_lun_get(c, (uint16_t)lun) : NULL;

	t.cdb = cdb;
	t.cdb_len = cdb_len;
	t.nexus = &c->nexus;
	t.lun = ls ? &ls->sl : NULL;
	t.lun_raw = get_be64(lunf);
	t.out = out;
	t.out_len = out_len;
	t.write_dir = wr;
	t.list_luns = tgt_list_luns;
	t.list_arg = c;
	t.take_ua = conn_take_ua;
	t.ua_arg = c;
	t.find_lu = tgt_find_lu;
	t.find_arg = c;
	if (rd && edtl) {
		/* Lay out Data-In PDUs for the expected length (no command
		 * returns more than MAX_DATAIN, whatever EDTL claims): each
		 * segment is at most the initiator's MRDSL and never crosses a
		 * MaxBurstLength boundary. */
		uint32_t off = 0;

		if (cap > MAX_DATAIN)
			cap = MAX_DATAIN;

		nseg = 0;
		for (uint32_t o = 0; o < cap; nseg++) {
			uint32_t in_burst = c->max_burst - (o % c->max_burst);
			uint32_t l = cap - o < seg ? cap - o : seg;

			o += l < in_burst ? l : in_burst;
		}
		if (nseg > 64) {
			iov = malloc(sizeof(*iov) * nseg);
			if (!iov)
				goto oom;
		}
		for (uint32_t i = 0; i < nseg; i++) {
			uint32_t in_burst = c->max_burst - (off % c->max_burst);
			uint32_t l = cap - off < seg ? cap - off : seg;
			uint8_t *p;

			if (l > in_burst)
				l = in_burst;
			p = tx_reserve(c, seg_hdr + pad4(l) + (c->ddigest ? 4 : 0));
			if (!p)
				goto oom;
			iov[i].iov_base = (void *)(uintptr_t)(p - c->tx + seg_hdr); /* offset for now */
			iov[i].iov_len = l;
			off += l;
		}
		for (uint32_t i = 0; i < nseg; i++)
			iov[i].iov_base = c->tx + (uintptr_t)iov[i].iov_base;
		t.in_iov = iov;
		t.in_iovcnt = (int)nseg;
		t.in_cap = cap;
	}
	if (ls && rd && is_read(cdb[0]) && c->srv->read_offload == 0) {
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		scsi_exec(&t);
		clock_gettime(CLOCK_MONOTONIC, &b);
		note_read_time(ls, t.in_len, &a, &b);
	} else {
		scsi_exec(&t);
	}
	actual = 0;
	if (t.status == SAM_GOOD && rd)
		actual = t.in_len < cap ? t.in_len : cap;
	if (rd && edtl) {
		/* Fill the headers of the segments that carry data. */
		uint32_t off = 0;
		size_t pos = base;

		for (uint32_t i = 0; i < nseg && off < actual; i++) {
			uint8_t *h = c->tx + pos;
			uint32_t l = (uint32_t)iov[i].iov_len;
			bool last = off + l >= actual;

			if (last)
				l = actual - off;
			memset(h, 0, ISCSI_BHS_LEN);
			h[0] = OP_DATA_IN;
			if (last || (off + l) % c->max_burst == 0)
				h[1] |= 0x80;
			put_be24(h + 5, l);
			put_be32(h + 16, itt);
			put_be32(h + 20, 0xffffffffu);
			fill_sn(c, h);
			put_be32(h + 36, datasn++);
			put_be32(h + 40, off);
			if (last && t.status == SAM_GOOD && !t.sense_len) {
				uint32_t prod = t.in_len;

				h[1] |= 0x01; /* S: status in this PDU */
				h[3] = SAM_GOOD;
				put_be32(h + 24, c->stat_sn++);
				if (prod != edtl) {
					h[1] |= prod > edtl ? 0x04 : 0x02;
					put_be32(h + 44, prod > edtl ? prod - edtl : edtl - prod);
				}
			}
			if (c->hdigest) {
				uint32_t d = iscsi_crc32c(h, ISCSI_BHS_LEN);

				memcpy(h + ISCSI_BHS_LEN, &d, 4);
			}
			memset(c->tx + pos + seg_hdr + l, 0, pad4(l) - l);
			if (c->ddigest) {
				uint32_t d = iscsi_crc32c(c->tx + pos + seg_hdr, pad4(l));

				memcpy(c->tx + pos + seg_hdr + pad4(l), &d, 4);
			}
			pos += seg_hdr + pad4(l) + (c->ddigest ? 4 : 0);
			off += l;
			if (last && (h[1] & 0x01)) {
				c->tx_len = pos;
				goto done;
			}
		}
		c->tx_len = pos;
	}
	if (rd && !wr) {
		send_scsi_rsp(c, itt, &t, edtl, t.status == SAM_GOOD ? t.in_len : edtl,
			      t.status == SAM_GOOD, datasn);
	} else {
		send_scsi_rsp(c, itt, &t, wr ? wedtl : edtl, t.xfer_len, t.residual_set,
			      datasn + (wr ? c->cur_r2ts : 0));
	}
done:
	if (iov != stackv)
		free(iov);
	return;
oom:
	c->tx_len = base;
	c->tx_oom = false;
	scsi_set_sense(&t, SK_HARDWARE_ERROR, ASC_INTERNAL_FAILURE);
	send_scsi_rsp(c, itt, &t, edtl, 0, false, 0);
	if (iov != stackv)
		free(iov);
}

/* ---- write tasks -------------------------------------------------------------- */

static void wtask_free(struct conn *c, int i)
{
	if (c->wt[i]->buf)
		c->buffered -= c->wt[i]->edtl;
	free(c->wt[i]->buf);
	free(c->wt[i]);
	c->wt[i] = c->wt[--c->nwt];
}

static int find_wtask(struct conn *c, uint32_t itt)
{
	for (int i = 0; i < c->nwt; i++)
		if (c->wt[i]->itt == itt)
			return i;
	return -1;
}

static void send_r2ts(struct conn *c, struct wtask *w)
{
	while (w->nr2t < (int)c->max_r2t && w->next_off < w->edtl) {
		struct r2t *r = &w->r2t[w->nr2t++];
		uint8_t h[48] = { OP_R2T, 0x80 };
		uint32_t len = w->edtl - w->next_off;

		if (len > c->max_burst)
			len = c->max_burst;
		r->ttt = c->next_ttt++;
		if (r->ttt == 0xffffffffu)
			r->ttt = c->next_ttt++;
		r->off = w->next_off;
		r->len = len;
		r->got = 0;
		r->datasn = 0;
		w->next_off += len;
		put_be64(h + 8, w->lun_raw);
		put_be32(h + 16, w->itt);
		put_be32(h + 20, r->ttt);
		put_be32(h + 24, c->stat_sn);
		fill_sn(c, h);
		put_be32(h + 36, w->r2tsn++);
		put_be32(h + 40, r->off);
		put_be32(h + 44, len);
		tx_pdu(c, h, NULL, 0);
	}
}

static void wtask_done(struct conn *c, int i)
{
	struct wtask *w = c->wt[i];
	uint8_t lunf[8];

	put_be64(lunf, w->lun_raw);
	c->cur_attr = w->attr;
	c->cur_r2ts = w->r2tsn;
	if (execute_owned(c, w->itt, lunf, w->cdb, w->cdb_len, w->read_too, w->read_edtl, w->buf,
			  w->edtl, true, w->edtl, w->buf))
		w->buf = NULL; /* the job owns it (and its count in c->buffered) now */
	wtask_free(c, i);
}

/* A Data-Out out of sequence: the task ends with CHECK CONDITION, ABORTED
 * COMMAND (the session stays; later Data-Out PDUs of the task are dropped). */
static int data_out_error(struct conn *c, int i, uint16_t asc)
{
	struct scsi_task t = { .lun = NULL };

	scsi_set_sense(&t, SK_ABORTED_COMMAND, asc);
	send_scsi_rsp(c, c->wt[i]->itt, &t, c->wt[i]->edtl, 0, false, 0);
	wtask_free(c, i);
	return 0;
}

static int data_out(struct conn *c, uint8_t *h, uint8_t *data, uint32_t dsl)
{
	uint32_t itt = bhs_itt(h), ttt = get_be32(h + 20), datasn = get_be32(h + 36);
	uint32_t off = get_be32(h + 40);
	int i = find_wtask(c, itt);
	struct wtask *w;

	if (i < 0)
		return 0; /* aborted or already failed: drop the data */
	w = c->wt[i];
	if (off != w->received || dsl > w->edtl - off)
		return data_out_error(c, i, ASC_DATA_OFFSET_ERROR);
	if (ttt == 0xffffffffu) {
		if (off + dsl > w->unsol_end)
			return data_out_error(c, i, ASC_DATA_OFFSET_ERROR);
		if (datasn != w->unsol_datasn++)
			return data_out_error(c, i, ASC_DATA_PHASE_ERROR);
	} else {
		struct r2t *r = NULL;
		int k;

		for (k = 0; k < w->nr2t; k++)
			if (w->r2t[k].ttt == ttt)
				break;
		if (k == w->nr2t)
			return data_out_error(c, i, ASC_DATA_PHASE_ERROR);
		r = &w->r2t[k];
		if (off < r->off || off + dsl > r->off + r->len)
			return data_out_error(c, i, ASC_DATA_OFFSET_ERROR);
		if (datasn != r->datasn++)
			return data_out_error(c, i, ASC_DATA_PHASE_ERROR);
		r->got += dsl;
		if (r->got == r->len) {
			w->r2t[k] = w->r2t[--w->nr2t];
		}
	}
	memcpy(w->buf + off, data, dsl);
	w->received += dsl;
	if (w->received == w->edtl) {
		wtask_done(c, i);
		return 0;
	}
	send_r2ts(c, w);
	return 0;
}

static unsigned cdb_length(uint8_t op)
{
	switch (op >> 5) {
	case 0: return 6;
	case 1: case 2: return 10;
	case 4: return 16;
	case 5: return 12;
	}
	return 16;
}

static bool check_cmdsn(struct conn *c, const uint8_t *h)
{
	uint32_t sn = get_be32(h + 24), max = c->exp_cmdsn + CMDSN_WINDOW - 1;

	if (bhs_immediate(h))
		return true;
	if (sn == c->exp_cmdsn) {
		c->exp_cmdsn++;
		return true;
	}
	if (sn_lt(c->exp_cmdsn, sn) && sn_le(sn, max)) {
		c->exp_cmdsn = sn + 1;
		return true;
	}
	return false; /* outside the window: silently ignored (§4.2.2.1) */
}

static int scsi_cmd(struct conn *c, uint8_t *h, uint8_t *data, uint32_t dsl)
{
	bool fin = h[1] & 0x80, rd = h[1] & 0x40, wr = h[1] & 0x20;
	uint32_t edtl = get_be32(h + 20), itt = bhs_itt(h), read_edtl = edtl;
	uint8_t cdb[260];
	unsigned cdb_len = 16, ahs = bhs_ahs_len(h);
	const uint8_t *a = h + ISCSI_BHS_LEN;

	memcpy(cdb, h + 32, 16);
	/* AHS: extended CDB (type 1), bidirectional read length (type 2) */
	for (unsigned p = 0; p < ahs;) {
		unsigned len, type, size;

		if (ahs - p < 4)
			goto bad_ahs;
		len = get_be16(a + p);
		type = a[p + 2];
		size = pad4(3 + len);
		if (len < 2 || size > ahs - p)
			goto bad_ahs;
		if (type == 1) {
			if (len - 1 > sizeof(cdb) - 16)
				goto bad_ahs;
			memcpy(cdb + 16, a + p + 4, len - 1);
			cdb_len = 16 + len - 1;
		} else if (type == 2) {
			if (len != 5)
				goto bad_ahs;
			read_edtl = get_be32(a + p + 4);
		} else {
			goto bad_ahs;
		}
		p += size;
	}
	if (0) {
bad_ahs:
		send_reject(c, h, REJ_INVALID_FIELD);
		return 0;
	}
	if (cdb_len == 16)
		cdb_len = cdb_length(cdb[0]);
	if (!check_cmdsn(c, h))
		return 0;
	c->cur_attr = h[1] & 7;
	c->cur_r2ts = 0;
	if (dsl && (!wr || !c->immediate_data || dsl > edtl || dsl > c->first_burst)) {
		send_reject(c, h, REJ_PROTOCOL);
		return 0;
	}
	if (!wr || !edtl) {
		execute(c, itt, h + 8, cdb, cdb_len, rd, rd ? read_edtl : 0, NULL, 0, wr, 0);
		return 0;
	}
	if (edtl > MAX_EDTL || c->nwt >= MAX_WTASKS || (!fin && dsl == edtl)) {
		struct scsi_task t = { .lun = NULL };

		if (!fin && dsl == edtl)
			return -EPROTO;
		scsi_set_sense(&t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		send_scsi_rsp(c, itt, &t, edtl, 0, false, 0);
		return 0;
	}
	if (dsl == edtl) { /* everything came as immediate data: no copy */
		execute(c, itt, h + 8, cdb, cdb_len, rd, rd ? read_edtl : 0, data, dsl, true, edtl);
		return 0;
	}
	if (find_wtask(c, itt) >= 0) {
		send_reject(c, h, REJ_TASK_IN_PROG);
		return 0;
	}
	if (c->buffered + edtl > MAX_BUFFERED) {
		/* An initiator may not pin unbounded memory with writes whose
		 * data it never sends: TASK SET FULL, it retries later. */
		struct scsi_task t = { .status = SAM_TASK_SET_FULL };

		send_scsi_rsp(c, itt, &t, edtl, 0, false, 0);
		return 0;
	}
	struct wtask *w = calloc(1, sizeof(*w));

	if (!w || !(w->buf = malloc(edtl))) {
		free(w);
		return -ENOMEM;
	}
	c->buffered += edtl;
	w->itt = itt;
	w->lun_raw = get_be64(h + 8);
	memcpy(w->cdb, cdb, cdb_len);
	w->cdb_len = cdb_len;
	w->edtl = edtl;
	w->read_too = rd;
	w->read_edtl = read_edtl;
	w->attr = c->cur_attr;
	memcpy(w->buf, data, dsl);
	w->received = dsl;
	if (fin || c->initial_r2t)
		w->unsol_end = dsl;
	else
		w->unsol_end = edtl < c->first_burst ? edtl : c->first_burst;
	w->next_off = w->unsol_end;
	c->wt[c->nwt++] = w;
	send_r2ts(c, w);
	return 0;
}

/* ---- NOP, task management, logout ----------------------------------------------- */

static int nop_out(struct conn *c, uint8_t *h, uint8_t *data, uint32_t dsl)
{
	uint32_t itt = bhs_itt(h);
	uint8_t r[48] = { OP_NOP_IN, 0x80 };

	if (itt == 0xffffffffu) {
		if (!bhs_immediate(h))
			return -EPROTO;   /* a ping answer must be immediate */
		return 0;                 /* answer to our NOP-In (we send none) */
	}
	if (get_be32(h + 20) != 0xffffffffu)
		return -EPROTO;
	if (!check_cmdsn(c, h))
		return 0;
	memcpy(r + 8, h + 8, 8);
	put_be32(r + 16, itt);
	put_be32(r + 20, 0xffffffffu);
	put_be32(r + 24, c->stat_sn++);
	fill_sn(c, r);
	/* echo the ping data, no more than the initiator accepts */
	return tx_pdu(c, r, data, dsl < c->mrdsl_out ? dsl : c->mrdsl_out);
}

static void abort_wtasks(struct conn *c, int lun)
{
	for (int i = c->nwt - 1; i >= 0; i--) {
		uint8_t lf[8];

		put_be64(lf, c->wt[i]->lun_raw);
		if (lun < 0 || decode_lun(lf) == lun)
			wtask_free(c, i);
	}
}

static int tmf(struct conn *c, uint8_t *h)
{
	unsigned fn = h[1] & 0x7f;
	uint8_t r[48] = { OP_TMF_RSP, 0x80, 0 };
	int lun = decode_lun(h + 8), i;
	struct lun_slot *ls;
	bool cold = false;

	if (!check_cmdsn(c, h))
		return 0;
	switch (fn) {
	case 1: /* ABORT TASK */
		i = find_wtask(c, get_be32(h + 20));
		if (i >= 0) {
			wtask_free(c, i);
			r[2] = 0;
		} else {
			/* Commands run as they arrive: a RefCmdSN we have seen
			 * was completed; one not yet seen counts as received
			 * and aborted (§11.5.1). */
			r[2] = sn_lt(get_be32(h + 32), c->exp_cmdsn) ? 1 : 0;
		}
		break;
	case 2: /* ABORT TASK SET */
	case 4: /* CLEAR TASK SET */
		abort_wtasks(c, lun);
		break;
	case 5: /* LOGICAL UNIT RESET */
		ls = lun >= 0 ? tgt_lun_get(c, (uint16_t)lun) : NULL;
		if (!ls) {
			r[2] = 2;
			break;
		}
		abort_wtasks(c, lun);
		scsi_lun_reset(&ls->sl, c->nexus.name);
		break;
	case 7: /* TARGET COLD RESET */
		cold = true;
		/* fall through */
	case 6: /* TARGET WARM RESET */
		abort_wtasks(c, -1);
		for (int l = 0; l < ISCSI_MAX_LUNS; l++)
			if ((ls = tgt_lun_get(c, (uint16_t)l)))
				scsi_lun_reset(&ls->sl, c->nexus.name);
		break;
	case 3: /* CLEAR ACA */
	case 8: /* TASK REASSIGN */
		r[2] = fn == 8 ? 4 : 5;
		break;
	default:
		r[2] = 255;
	}
	put_be32(r + 16, bhs_itt(h));
	put_be32(r + 24, c->stat_sn++);
	fill_sn(c, r);
	tx_pdu(c, r, NULL, 0);
	if (cold) {
		/* drop every session of the target, ours after the reply */
		pthread_mutex_lock(&c->srv->lock);
		for (struct conn *o = c->srv->conns; o; o = o->next)
			if (o != c && o->tgt == c->tgt)
				shutdown(o->fd, SHUT_RDWR);
		pthread_mutex_unlock(&c->srv->lock);
		c->closing = true;
	}
	return 0;
}

static int logout(struct conn *c, uint8_t *h)
{
	uint8_t r[48] = { OP_LOGOUT_RSP, 0x80, 0 };
	unsigned reason = h[1] & 0x7f;

	check_cmdsn(c, h);
	if (reason == 2)
		r[2] = 2; /* connection recovery not supported (ERL 0) */
	else if (reason > 2)
		return -EPROTO;
	put_be32(r + 16, bhs_itt(h));
	put_be32(r + 24, c->stat_sn++);
	fill_sn(c, r);
	put_be16(r + 40, 2);
	put_be16(r + 42, 0);
	tx_pdu(c, r, NULL, 0);
	if (reason != 2)
		c->closing = true;
	return 0;
}

/* ---- dispatch ------------------------------------------------------------------ */

static int handle_pdu(struct conn *c, uint8_t *h, uint8_t *data, uint32_t dsl)
{
	unsigned op = bhs_opcode(h);

	if (!c->ffp) {
		if (op != OP_LOGIN_REQ)
			return -EPROTO;
		return login_pdu(c, h, data, dsl);
	}
	if (c->discovery && op != OP_TEXT_REQ && op != OP_LOGOUT_REQ && op != OP_NOP_OUT) {
		send_reject(c, h, REJ_PROTOCOL);
		return 0;
	}
	switch (op) {
	case OP_SCSI_CMD: return scsi_cmd(c, h, data, dsl);
	case OP_DATA_OUT: return data_out(c, h, data, dsl);
	case OP_NOP_OUT: return nop_out(c, h, data, dsl);
	case OP_TMF_REQ: return tmf(c, h);
	case OP_LOGOUT_REQ:
		drain(c, true);
		return logout(c, h);
	case OP_TEXT_REQ:
		if (!check_cmdsn(c, h))
			return 0;
		return text_pdu(c, h, data, dsl);
	case OP_LOGIN_REQ:
		send_reject(c, h, REJ_PROTOCOL);
		return 0;
	case OP_SNACK:
		send_reject(c, h, REJ_SNACK);
		return 0;
	}
	send_reject(c, h, REJ_NOT_SUPPORTED);
	return 0;
}

/* Handle every complete PDU in the receive buffer.  \return <0 to drop. */
static int process_rx(struct conn *c)
{
	size_t off = 0;
	int r = 0;

	while (c->rx_len - off >= ISCSI_BHS_LEN && !c->closing) {
		uint8_t *h = c->rx + off, *data;
		struct pdu_layout lay;
		bool hd = c->hdigest, dd = c->ddigest;

		r = pdu_check_header(h, OUR_MRDSL, hd, dd, &lay);
		if (r == -EMSGSIZE)
			break;
		if (c->rx_len - off < lay.total) {
			r = 0;
			break;
		}
		if (hd) {
			uint32_t want;

			memcpy(&want, h + ISCSI_BHS_LEN + lay.ahs_len, 4);
			if (iscsi_crc32c(h, ISCSI_BHS_LEN + lay.ahs_len) != want) {
				r = -EBADMSG; /* the stream cannot be trusted */
				break;
			}
		}
		data = h + ISCSI_BHS_LEN + lay.ahs_len + (hd ? 4 : 0);
		if (dd && lay.dsl) {
			uint32_t want;

			memcpy(&want, data + pad4(lay.dsl), 4);
			if (iscsi_crc32c(data, pad4(lay.dsl)) != want) {
				if (bhs_opcode(h) == OP_DATA_OUT || !c->ffp) {
					r = -EBADMSG;
					break;
				}
				send_reject(c, h, REJ_DATA_DIGEST);
				off += lay.total;
				r = 0;
				continue;
			}
		}
		if (r) {
			if (!c->ffp)
				break;
			send_reject(c, h, r == -EOPNOTSUPP ? REJ_NOT_SUPPORTED : REJ_PROTOCOL);
			off += lay.total;
			r = 0;
			continue;
		}
		c->more_pending = c->rx_len - off - lay.total >= ISCSI_BHS_LEN;
		r = handle_pdu(c, h, data, lay.dsl);
		if (r)
			break;
		off += lay.total;
		if (c->tx_len > (1u << 20) && tx_flush(c)) {
			r = -EPIPE;
			break;
		}
	}
	if (off && off < c->rx_len)
		memmove(c->rx, c->rx + off, c->rx_len - off);
	c->rx_len -= off;
	return r;
}

static void set_rcv_timeout(int fd, int sec)
{
	struct timeval tv = { .tv_sec = sec };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct iscsi_srv *s = c->srv;
	struct timespec login_start, now;
	bool was_ffp = false;

	c->rx = malloc(RX_CAP);
	c->rx_cap = RX_CAP;
	c->mrdsl_out = 8192;
	c->first_burst = 65536;
	c->max_burst = 262144;
	c->max_r2t = 1;
	c->initial_r2t = true;
	c->immediate_data = true;
	c->next_ttt = 1;
	set_rcv_timeout(c->fd, 15); /* a login must not hang forever */
	clock_gettime(CLOCK_MONOTONIC, &login_start);
	if (!c->rx)
		goto out;
	for (;;) {
		ssize_t n;
		int r = process_rx(c);

		if (!was_ffp && c->ffp) {
			was_ffp = true;
			set_rcv_timeout(c->fd, 0);
		}
		if (tx_flush(c) || r || c->closing)
			break;
		if (!c->ffp) {
			/* trickling a login byte by byte does not keep a thread */
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - login_start.tv_sec > LOGIN_DEADLINE_S)
				break;
		}
		if (c->inflight) {
			struct pollfd p[2] = { { .fd = c->fd, .events = POLLIN },
					       { .fd = c->efd, .events = POLLIN } };

			if (poll(p, 2, -1) < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			if (p[1].revents & POLLIN) {
				reap(c, true);
				if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
			}
		}
		if (c->tx_cap > (2u << 20) && !c->inflight) {
			/* idle for a second: give back what large reads made
			 * the transmit buffer grow to */
			struct pollfd p = { .fd = c->fd, .events = POLLIN };

			if (poll(&p, 1, 1000) == 0) {
				free(c->tx);
				c->tx = NULL;
				c->tx_cap = 0;
			}
		}
		n = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		c->rx_len += (size_t)n;
	}
out:
	if (c->ffp && !c->discovery)
		iscsi_log(3, "iscsi: session from %s (%s) ended", c->peer, c->initiator);
	drain(c, false);
	while (c->nwt)
		wtask_free(c, c->nwt - 1);
	pthread_mutex_lock(&s->lock);
	for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	/* I_T nexus loss: SPC-2 reservations of this nexus go away. */
	for (int i = 0; i < ISCSI_MAX_LUNS; i++)
		if (c->luns[i])
			scsi_nexus_lost(&c->luns[i]->sl, c->nexus.name);
	if (c->tgt && !c->discovery) {
		/* also the LUNs this session never touched */
		pthread_mutex_lock(&s->lock);
		for (int i = 0; i < ISCSI_MAX_LUNS; i++)
			if (!c->luns[i] && c->tgt->luns[i])
				scsi_nexus_lost(&c->tgt->luns[i]->sl, c->nexus.name);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < ISCSI_MAX_LUNS; i++)
		if (c->luns[i])
			lun_slot_put(s, c->luns[i]);
	if (c->tgt)
		tgt_put(s, c->tgt);
	s->nconns--;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	close(c->fd);
	free(c->rx);
	free(c->tx);
	free(c->login_text);
	free(c->txt_pend);
	if (c->efd >= 0)
		close(c->efd);
	pthread_mutex_destroy(&c->done_lock);
	pthread_mutex_destroy(&c->ua_lock);
	free(c);
	return NULL;
}
