/* iSCSI LUN backend through libiscsi.
 *
 * URL: iscsi://[user%password@]host[:port]/target-iqn/lun (libiscsi's
 * iscsi_parse_full_url).  Geometry from READ CAPACITY(16) (block size,
 * LBPPBE -> physical sector size, LBPME), Block Limits VPD (0xB0: maximum
 * transfer, COMPARE AND WRITE length, UNMAP count) and Logical Block
 * Provisioning VPD (0xB2: UNMAP supported).  Data: READ/WRITE(16) straight
 * from the caller's iovecs; FLUSH = SYNCHRONIZE CACHE(16); discard = UNMAP.
 *
 * ATS:
 *  - VMFS_ATS_COMPARE_AND_WRITE when the LUN takes a one-block COMPARE AND
 *    WRITE (probed at open with a harmless CAW of LBA 0 against its own
 *    content; a MISCOMPARE from a concurrent writer also proves support);
 *  - otherwise (or with opts.force_ats_fallback) VMFS_ATS_SCSI_RESERVE:
 *    RESERVE(6), read, compare, write (FUA), RELEASE(6), as ESXi does on
 *    arrays without VAAI.  While another initiator holds the reservation
 *    every command of ours gets RESERVATION CONFLICT: all commands retry it
 *    with a short randomised backoff for up to VMFS_ISCSI_CONFLICT_MS.
 *
 * A libiscsi context is not thread-safe: ctx_lock serialises every call
 * into it (sync commands and the async queue's service loop alike), and
 * ats_lock serialises this process's test-and-sets.  Each open uses its own
 * initiator name (host, pid, counter) unless opts.initiator_iqn is given, so
 * two opens are two I_T nexuses, as two hosts would be.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "internal.h"

#define VMFS_ISCSI_CONFLICT_MS 30000  /* give up on RESERVATION CONFLICT after */
#define VMFS_ISCSI_TASK_TIMEOUT 30     /* seconds, libiscsi per-task timeout */
#define VMFS_ISCSI_RETRIES 8           /* UNIT ATTENTION / BUSY retries */

_Static_assert(sizeof(struct iovec) == sizeof(struct scsi_iovec), "scsi_iovec follows iovec");
_Static_assert(offsetof(struct iovec, iov_len) == offsetof(struct scsi_iovec, iov_len),
	       "scsi_iovec follows iovec");

struct iscsi_dev {
	struct iscsi_context *ctx;
	int lun;
	uint32_t lbs;
	uint64_t nblocks;
	uint32_t max_xfer;    /* bytes per command, 0 = no limit */
	uint32_t max_unmap;   /* blocks per UNMAP descriptor */
	bool unmap;
	enum vmfs_ats_mode ats;
	pthread_mutex_t ctx_lock;
	pthread_mutex_t ats_lock;
	unsigned seed;
	struct vmfs_req *retry;   /* async requests waiting out a conflict (ctx_lock) */
};

enum cmd { C_READ, C_WRITE, C_SYNC, C_UNMAP, C_RESERVE, C_RELEASE, C_CAW, C_RC16, C_VPD };

struct cmd_args {
	enum cmd c;
	uint64_t lba;
	uint32_t nblk;
	struct scsi_iovec *iov;
	int niov;
	unsigned char *data;
	int fua;
	int page;
	struct unmap_list ul;
};

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
	return now_us() / 1000;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Map a finished task (or NULL: transport failure) to 0 / -errno. */
static int task_errno(const struct scsi_task *t)
{
	if (!t)
		return -EIO;
	switch (t->status) {
	case SCSI_STATUS_GOOD:
	case SCSI_STATUS_CONDITION_MET:
		return 0;
	case SCSI_STATUS_RESERVATION_CONFLICT:
		return -EBUSY;
	case SCSI_STATUS_BUSY:
	case SCSI_STATUS_TASK_SET_FULL:
		return -EAGAIN;
	case SCSI_STATUS_TIMEOUT:
		return -ETIMEDOUT;
	case SCSI_STATUS_CANCELLED:
		return -ECANCELED;
	case SCSI_STATUS_CHECK_CONDITION:
		switch (t->sense.key) {
		case SCSI_SENSE_MISCOMPARE:
			return -ESTALE;
		case SCSI_SENSE_UNIT_ATTENTION:
		case SCSI_SENSE_NOT_READY:
		case SCSI_SENSE_COMMAND_ABORTED:
			return -EAGAIN;
		case SCSI_SENSE_DATA_PROTECTION:
			return -EROFS;
		case SCSI_SENSE_ILLEGAL_REQUEST:
			if (t->sense.ascq == SCSI_SENSE_ASCQ_INVALID_OPERATION_CODE)
				return -EOPNOTSUPP;
			return -EINVAL;
		default:
			return -EIO;
		}
	default:
		return -EIO;
	}
}

static struct scsi_task *issue(struct iscsi_dev *d, struct cmd_args *a)
{
	uint32_t len = a->nblk * d->lbs;

	switch (a->c) {
	case C_READ:
		if (a->iov)
			return iscsi_read16_iov_sync(d->ctx, d->lun, a->lba, len, (int)d->lbs,
						     0, 0, 0, 0, 0, a->iov, a->niov);
		return iscsi_read16_sync(d->ctx, d->lun, a->lba, len, (int)d->lbs, 0, 0, 0, 0, 0);
	case C_WRITE:
		return iscsi_write16_iov_sync(d->ctx, d->lun, a->lba, a->data, len, (int)d->lbs,
					      0, 0, a->fua, 0, 0, a->iov, a->niov);
	case C_SYNC:
		return iscsi_synchronizecache16_sync(d->ctx, d->lun, 0, 0, 0, 0);
	case C_UNMAP:
		return iscsi_unmap_sync(d->ctx, d->lun, 0, 0, &a->ul, 1);
	case C_RESERVE:
		return iscsi_reserve6_sync(d->ctx, d->lun);
	case C_RELEASE:
		return iscsi_release6_sync(d->ctx, d->lun);
	case C_CAW:
		return iscsi_compareandwrite_sync(d->ctx, d->lun, a->lba, a->data, 2 * len,
						  (int)d->lbs, 0, 0, 0, 0, 0);
	case C_RC16:
		return iscsi_readcapacity16_sync(d->ctx, d->lun);
	case C_VPD:
		return iscsi_inquiry_sync(d->ctx, d->lun, 1, a->page, 255);
	}
	return NULL;
}

/* Run one command, retrying UNIT ATTENTION/BUSY a few times and
 * RESERVATION CONFLICT (another host's ATS) for a while.  On success with
 * @out the task is handed over (caller frees). */
static int do_cmd(struct iscsi_dev *d, struct cmd_args *a, struct scsi_task **out)
{
	int64_t deadline = now_ms() + VMFS_ISCSI_CONFLICT_MS;
	unsigned backoff = 50, attempt = 0;
	int r;

	for (;;) {
		struct scsi_task *t;

		pthread_mutex_lock(&d->ctx_lock);
		t = issue(d, a);
		r = task_errno(t);
		if (!t)
			fprintf(stderr, "vmfs iscsi: lun %d: %s\n", d->lun, iscsi_get_error(d->ctx));
		pthread_mutex_unlock(&d->ctx_lock);
		if ((r == -EAGAIN && attempt++ < VMFS_ISCSI_RETRIES) ||
		    (r == -EBUSY && a->c != C_RELEASE && now_ms() < deadline)) {
			if (t)
				scsi_free_scsi_task(t);
			sleep_us(backoff / 2 + (unsigned)rand_r(&d->seed) % backoff);
			if (backoff < 5000)
				backoff *= 2;
			continue;
		}
		if (r == 0 && out)
			*out = t;
		else if (t)
			scsi_free_scsi_task(t);
		return r;
	}
}

/* The slice [start, start+len) of an iovec array, into out[] (iovcnt slots). */
static int iov_slice(const struct iovec *iov, int iovcnt, size_t start, size_t len,
		     struct scsi_iovec *out)
{
	int n = 0;

	for (int i = 0; i < iovcnt && len; i++) {
		size_t l = iov[i].iov_len;

		if (start >= l) {
			start -= l;
			continue;
		}
		out[n].iov_base = (char *)iov[i].iov_base + start;
		out[n].iov_len = l - start < len ? l - start : len;
		len -= out[n].iov_len;
		start = 0;
		n++;
	}
	return n;
}

static int rw(struct iscsi_dev *d, const struct iovec *iov, int iovcnt, uint64_t off, bool wr)
{
	size_t total = vmfs_iov_len(iov, iovcnt), done = 0;
	struct scsi_iovec *sl = NULL;
	int r = 0;

	if (d->max_xfer && total > d->max_xfer) {
		sl = malloc(sizeof(*sl) * (size_t)iovcnt);
		if (!sl)
			return -ENOMEM;
	}
	while (done < total && r == 0) {
		size_t chunk = d->max_xfer && total - done > d->max_xfer ? d->max_xfer : total - done;
		struct cmd_args a = {
			.c = wr ? C_WRITE : C_READ,
			.lba = (off + done) / d->lbs,
			.nblk = (uint32_t)(chunk / d->lbs),
		};

		if (sl) {
			a.iov = sl;
			a.niov = iov_slice(iov, iovcnt, done, chunk, sl);
		} else {
			a.iov = (struct scsi_iovec *)(void *)iov;
			a.niov = iovcnt;
		}
		r = do_cmd(d, &a, NULL);
		done += chunk;
	}
	free(sl);
	return r;
}

static int iscsi_readv_op(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return rw(priv, iov, iovcnt, off, false);
}

static int iscsi_writev_op(void *priv, const struct iovec *iov, int iovcnt, uint64_t off)
{
	return rw(priv, iov, iovcnt, off, true);
}

static int iscsi_flush_op(void *priv)
{
	struct cmd_args a = { .c = C_SYNC };

	return do_cmd(priv, &a, NULL);
}

static int iscsi_discard_op(void *priv, uint64_t off, uint64_t len)
{
	struct iscsi_dev *d = priv;
	uint64_t lba = off / d->lbs, n = len / d->lbs;
	int r = 0;

	if (!d->unmap)
		return -EOPNOTSUPP;
	while (n && r == 0) {
		uint32_t c = n > d->max_unmap ? d->max_unmap : (uint32_t)n;
		struct cmd_args a = { .c = C_UNMAP, .ul = { .lba = lba, .num = c } };

		r = do_cmd(d, &a, NULL);
		lba += c;
		n -= c;
	}
	return r;
}

static int read_block(struct iscsi_dev *d, uint64_t lba, unsigned char *buf)
{
	struct scsi_iovec v = { buf, d->lbs };
	struct cmd_args a = { .c = C_READ, .lba = lba, .nblk = 1, .iov = &v, .niov = 1 };

	return do_cmd(d, &a, NULL);
}

/* COMPARE AND WRITE of one block; buf holds compare then write data. */
static int caw_block(struct iscsi_dev *d, uint64_t lba, unsigned char *buf)
{
	struct cmd_args a = { .c = C_CAW, .lba = lba, .nblk = 1, .data = buf };

	return do_cmd(d, &a, NULL);
}

static int ats_caw(struct iscsi_dev *d, uint64_t off, const void *expect, const void *newdata,
		   void *current, unsigned char *buf)
{
	uint64_t lba = off / d->lbs;
	uint32_t in = (uint32_t)(off % d->lbs);
	int r = -EIO;

	for (int tries = 0; tries < 100; tries++) {
		if (d->lbs == VMFS_SECTOR_SIZE) {
			memcpy(buf, expect, VMFS_SECTOR_SIZE);
		} else {
			/* larger blocks: compare the whole block as read, so a
			 * miscompare elsewhere in it just means "try again" */
			r = read_block(d, lba, buf);
			if (r)
				return r;
			if (memcmp(buf + in, expect, VMFS_SECTOR_SIZE)) {
				if (current)
					memcpy(current, buf + in, VMFS_SECTOR_SIZE);
				return -ESTALE;
			}
		}
		memcpy(buf + d->lbs, buf, d->lbs);
		memcpy(buf + d->lbs + in, newdata, VMFS_SECTOR_SIZE);
		r = caw_block(d, lba, buf);
		if (r != -ESTALE)
			return r;
		r = read_block(d, lba, buf);
		if (r)
			return r;
		if (memcmp(buf + in, expect, VMFS_SECTOR_SIZE)) {
			if (current)
				memcpy(current, buf + in, VMFS_SECTOR_SIZE);
			return -ESTALE;
		}
	}
	return -EAGAIN;
}

static int ats_reserve(struct iscsi_dev *d, uint64_t off, const void *expect,
		       const void *newdata, void *current, unsigned char *buf)
{
	uint64_t lba = off / d->lbs;
	uint32_t in = (uint32_t)(off % d->lbs);
	struct cmd_args res = { .c = C_RESERVE }, rel = { .c = C_RELEASE };
	int r, r2;

	r = do_cmd(d, &res, NULL);
	if (r)
		return r;
	r = read_block(d, lba, buf);
	if (r)
		goto release;
	if (memcmp(buf + in, expect, VMFS_SECTOR_SIZE)) {
		if (current)
			memcpy(current, buf + in, VMFS_SECTOR_SIZE);
		r = -ESTALE;
		goto release;
	}
	memcpy(buf + in, newdata, VMFS_SECTOR_SIZE);
	{
		struct scsi_iovec v = { buf, d->lbs };
		struct cmd_args w = { .c = C_WRITE, .lba = lba, .nblk = 1, .iov = &v, .niov = 1,
				      .fua = 1 };

		r = do_cmd(d, &w, NULL);
	}
release:
	r2 = do_cmd(d, &rel, NULL);
	if (r2)
		fprintf(stderr, "vmfs iscsi: lun %d: RELEASE(6) failed: %s\n", d->lun, strerror(-r2));
	return r ? r : r2;
}

static int iscsi_ats_op(void *priv, uint64_t off, const void *expect, const void *newdata,
			void *current)
{
	struct iscsi_dev *d = priv;
	unsigned char *buf = malloc(2 * (size_t)d->lbs);
	int r;

	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&d->ats_lock);
	if (d->ats == VMFS_ATS_COMPARE_AND_WRITE)
		r = ats_caw(d, off, expect, newdata, current, buf);
	else
		r = ats_reserve(d, off, expect, newdata, current, buf);
	pthread_mutex_unlock(&d->ats_lock);
	free(buf);
	return r;
}

static void iscsi_close_op(void *priv)
{
	struct iscsi_dev *d = priv;

	pthread_mutex_lock(&d->ctx_lock);
	iscsi_logout_sync(d->ctx);
	iscsi_destroy_context(d->ctx);
	pthread_mutex_unlock(&d->ctx_lock);
	pthread_mutex_destroy(&d->ctx_lock);
	pthread_mutex_destroy(&d->ats_lock);
	free(d);
}

static const struct vmfs_bdev_ops iscsi_ops = {
	.readv = iscsi_readv_op,
	.writev = iscsi_writev_op,
	.flush = iscsi_flush_op,
	.discard = iscsi_discard_op,
	.ats = iscsi_ats_op,
	.close = iscsi_close_op,
};

/* ---- async path: libiscsi tasks driven by the queue's poll ------------- */

static void async_cb(struct iscsi_context *ctx, int status, void *command_data, void *private_data);

/* Called with ctx_lock held. */
static int async_send(struct iscsi_dev *d, struct vmfs_req *r)
{
	struct scsi_task *t = NULL;
	struct scsi_iovec *iov = (struct scsi_iovec *)(void *)r->iov;

	switch (r->op) {
	case VMFS_BDEV_OP_READ:
		t = iscsi_read16_iov_task(d->ctx, d->lun, r->off / d->lbs, (uint32_t)r->len,
					  (int)d->lbs, 0, 0, 0, 0, 0, async_cb, r, iov, r->iovcnt);
		break;
	case VMFS_BDEV_OP_WRITE:
		t = iscsi_write16_iov_task(d->ctx, d->lun, r->off / d->lbs, NULL, (uint32_t)r->len,
					   (int)d->lbs, 0, 0, 0, 0, 0, async_cb, r, iov, r->iovcnt);
		break;
	case VMFS_BDEV_OP_FLUSH:
		t = iscsi_synchronizecache16_task(d->ctx, d->lun, 0, 0, 0, 0, async_cb, r);
		break;
	}
	return t ? 0 : -ENOMEM;
}

static void async_cb(struct iscsi_context *ctx, int status, void *command_data, void *private_data)
{
	struct vmfs_req *r = private_data;
	struct iscsi_dev *d = r->be;
	struct scsi_task *t = command_data;
	int res = task_errno(t);

	(void)ctx;
	(void)status;
	if (t)
		scsi_free_scsi_task(t);
	if ((res == -EBUSY && r->retries < 8000) || (res == -EAGAIN && r->retries < VMFS_ISCSI_RETRIES)) {
		/* resend from the poll loop after the same randomised backoff as
		 * the sync path (8000 tries ~ VMFS_ISCSI_CONFLICT_MS) */
		unsigned backoff = r->retries < 7 ? 50u << r->retries : 5000u;

		r->retries++;
		r->due_us = now_us() + backoff / 2 + (unsigned)rand_r(&d->seed) % backoff;
		r->next = d->retry;
		d->retry = r;
		return;
	}
	vmfs_req_done(r, res);
}

/* Called with ctx_lock held: resend the retries that are due; returns the
 * microseconds until the next one (-1: none). */
static int64_t resend_due(struct iscsi_dev *d)
{
	struct vmfs_req **pp = &d->retry;
	int64_t now = now_us(), next = -1;

	while (*pp) {
		struct vmfs_req *r = *pp;

		if (r->due_us > now) {
			if (next < 0 || r->due_us - now < next)
				next = r->due_us - now;
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		r->next = NULL;
		if (async_send(d, r))
			vmfs_req_done(r, -ENOMEM);
	}
	return next;
}

static int iscsi_async_start(void *priv, struct vmfs_req *r)
{
	struct iscsi_dev *d = priv;
	int rc;

	if (r->op != VMFS_BDEV_OP_FLUSH && r->len == 0) {
		vmfs_req_done(r, 0);
		return 0;
	}
	if (d->max_xfer && r->len > d->max_xfer)
		return -EINVAL;
	r->be = d;
	pthread_mutex_lock(&d->ctx_lock);
	rc = async_send(d, r);
	pthread_mutex_unlock(&d->ctx_lock);
	return rc;
}

static int iscsi_async_wait(void *priv, int timeout_ms)
{
	struct iscsi_dev *d = priv;
	struct pollfd p;
	int64_t next;
	int r = 0, n;

	if (timeout_ms < 0 || timeout_ms > 10)
		timeout_ms = 10; /* the caller loops; other threads get the context */
	pthread_mutex_lock(&d->ctx_lock);
	next = resend_due(d);
	if (next >= 0 && next / 1000 < timeout_ms)
		timeout_ms = (int)(next / 1000);
	p.fd = iscsi_get_fd(d->ctx);
	p.events = (short)iscsi_which_events(d->ctx);
	p.revents = 0;
	n = p.events ? poll(&p, 1, timeout_ms) : 0;
	if (n < 0 && errno != EINTR)
		r = -errno;
	else if (iscsi_service(d->ctx, n > 0 ? p.revents : 0) < 0)
		r = -EIO;
	pthread_mutex_unlock(&d->ctx_lock);
	if (!p.events && timeout_ms)
		sleep_us((unsigned)timeout_ms * 1000);
	return r;
}

static const struct vmfs_bdev_async iscsi_async = {
	.start = iscsi_async_start,
	.wait = iscsi_async_wait,
};

/* ---- open --------------------------------------------------------------- */

/* libiscsi's connect errors are text; when they do not say why, find out
 * with a plain TCP connect to the portal ("host[:port][,tpgt]" or "[v6]:port"). */
static int portal_errno(const char *portal)
{
	char host[256], *port = NULL, *p;

	snprintf(host, sizeof(host), "%s", portal);
	if ((p = strchr(host, ',')))
		*p = '\0';
	if (host[0] == '[') {
		p = strchr(host, ']');
		if (!p)
			return -EINVAL;
		*p = '\0';
		if (p[1] == ':')
			port = p + 2;
		memmove(host, host + 1, strlen(host + 1) + 1);
	} else if ((p = strrchr(host, ':'))) {
		*p = '\0';
		port = p + 1;
	}
	return vmfs_tcp_probe(host, port && *port ? port : "3260");
}

static int connect_errno(const char *msg, const char *portal)
{
	int r;

	if (msg && strstr(msg, "LOGICAL_UNIT_NOT_SUPPORTED"))
		return -ENODEV;
	r = portal_errno(portal);
	if (r)
		return r;
	if (!msg)
		return -EIO;
	if (strstr(msg, "refused"))
		return -ECONNREFUSED;
	if (strstr(msg, "timed out") || strstr(msg, "Timeout") || strstr(msg, "timeout"))
		return -ETIMEDOUT;
	if (strstr(msg, "unreachable") || strstr(msg, "resolve") || strstr(msg, "getaddrinfo"))
		return -EHOSTUNREACH;
	if (strstr(msg, "uthenticat") || strstr(msg, "CHAP"))
		return -EACCES;
	if (strstr(msg, "ogin") || strstr(msg, "not found") || strstr(msg, "TARGET_NOT_FOUND"))
		return -ENOENT;
	return -EIO;
}

static int probe(struct iscsi_dev *d, bool rdonly, const struct scsi_inquiry_block_limits *bl)
{
	unsigned char *buf;
	int r;

	if (rdonly || (bl && bl->max_cmp == 0))
		return VMFS_ATS_SCSI_RESERVE;
	buf = malloc(2 * (size_t)d->lbs);
	if (!buf)
		return -ENOMEM;
	r = read_block(d, 0, buf);
	if (r == 0) {
		memcpy(buf + d->lbs, buf, d->lbs);
		r = caw_block(d, 0, buf);
	}
	free(buf);
	if (r == 0 || r == -ESTALE)
		return VMFS_ATS_COMPARE_AND_WRITE;
	return VMFS_ATS_SCSI_RESERVE;
}

int vmfs_iscsi_open(const char *url, const struct vmfs_bdev_open_opts *o, struct vmfs_bdev **out)
{
	static atomic_uint counter;
	struct vmfs_bdev_info info = { 0 };
	struct iscsi_dev *d;
	struct iscsi_url *u = NULL;
	struct scsi_task *t = NULL, *tbl = NULL;
	struct scsi_readcapacity16 *rc16;
	struct scsi_inquiry_block_limits *bl = NULL;
	char iqn[256], host[64] = "host";
	int r, mode;

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->ctx_lock, NULL);
	pthread_mutex_init(&d->ats_lock, NULL);
	d->seed = (unsigned)getpid() ^ (unsigned)now_ms();
	gethostname(host, sizeof(host) - 1);
	for (char *p = host; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			*p = '-';
	if (o->initiator_iqn && *o->initiator_iqn)
		snprintf(iqn, sizeof(iqn), "%s", o->initiator_iqn);
	else
		snprintf(iqn, sizeof(iqn), "iqn.2024-01.org.openvmfs:%s.%d.%u", host, (int)getpid(),
			 atomic_fetch_add(&counter, 1));
	d->ctx = iscsi_create_context(iqn);
	if (!d->ctx) {
		r = -ENOMEM;
		goto fail;
	}
	u = iscsi_parse_full_url(d->ctx, url);
	if (!u) {
		fprintf(stderr, "vmfs iscsi: bad URL %s: %s\n", url, iscsi_get_error(d->ctx));
		r = -EINVAL;
		goto fail;
	}
	d->lun = u->lun;
	if (iscsi_set_targetname(d->ctx, u->target) ||
	    iscsi_set_session_type(d->ctx, ISCSI_SESSION_NORMAL) ||
	    iscsi_set_header_digest(d->ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C) ||
	    (u->user[0] && iscsi_set_initiator_username_pwd(d->ctx, u->user, u->passwd))) {
		r = -EINVAL;
		goto fail;
	}
	iscsi_set_timeout(d->ctx, VMFS_ISCSI_TASK_TIMEOUT);
	iscsi_set_reconnect_max_retries(d->ctx, 3);
	if (iscsi_full_connect_sync(d->ctx, u->portal, u->lun)) {
		const char *msg = iscsi_get_error(d->ctx);

		r = connect_errno(msg, u->portal);
		fprintf(stderr, "vmfs iscsi: %s: %s\n", url, msg ? msg : "connect failed");
		goto fail;
	}

	{
		struct cmd_args a = { .c = C_RC16 };

		r = do_cmd(d, &a, &t);
		if (r) {
			fprintf(stderr, "vmfs iscsi: %s: READ CAPACITY(16) failed: %s\n", url,
				strerror(-r));
			goto fail;
		}
	}
	rc16 = scsi_datain_unmarshall(t);
	if (!rc16 || rc16->block_length < 512 || rc16->block_length > 65536 ||
	    (rc16->block_length & (rc16->block_length - 1)) || rc16->lbppbe > 8 ||
	    rc16->returned_lba == UINT64_MAX ||
	    rc16->returned_lba + 1 > UINT64_MAX / rc16->block_length) {
		fprintf(stderr, "vmfs iscsi: %s: unusable READ CAPACITY(16) data\n", url);
		r = -EIO;
		goto fail;
	}
	d->lbs = rc16->block_length;
	d->nblocks = rc16->returned_lba + 1;
	info.size = d->nblocks * d->lbs;
	info.lbs = d->lbs;
	info.pbs = d->lbs << rc16->lbppbe;
	{
		bool lbpme = rc16->lbpme != 0;
		struct cmd_args a = { .c = C_VPD, .page = SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS };

		scsi_free_scsi_task(t);
		t = NULL;
		d->max_unmap = 1u << 22;
		if (do_cmd(d, &a, &tbl) == 0) {
			bl = scsi_datain_unmarshall(tbl);
			if (bl && bl->max_xfer_len) {
				uint64_t m = (uint64_t)bl->max_xfer_len * d->lbs;

				d->max_xfer = m > (64u << 20) ? (64u << 20) : (uint32_t)m;
			}
			if (bl && bl->max_unmap && bl->max_unmap != 0xffffffffu)
				d->max_unmap = bl->max_unmap;
		}
		a.page = SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING;
		if (lbpme && do_cmd(d, &a, &t) == 0) {
			struct scsi_inquiry_logical_block_provisioning *lbp = scsi_datain_unmarshall(t);

			d->unmap = lbp && lbp->lbpu;
		} else if (lbpme) {
			d->unmap = true; /* thin LUN without the VPD page: try UNMAP */
		}
		if (t)
			scsi_free_scsi_task(t);
		t = NULL;
	}
	info.max_io = d->max_xfer;
	info.discard = d->unmap;
	info.rdonly = (o->flags & VMFS_BDEV_RDONLY) != 0;
	info.direct = true;   /* no host page cache on the way */
	mode = o->force_ats_fallback ? VMFS_ATS_SCSI_RESERVE : probe(d, info.rdonly, bl);
	if (mode < 0) {
		r = mode;
		goto fail;
	}
	d->ats = (enum vmfs_ats_mode)mode;
	info.ats = d->ats;
	snprintf(info.kind, sizeof(info.kind), "iscsi");
	if (tbl)
		scsi_free_scsi_task(tbl);
	tbl = NULL;
	iscsi_destroy_url(u);
	u = NULL;
	r = vmfs_bdev_create(&iscsi_ops, d, &info, url, out);
	if (r)
		goto fail;
	(*out)->async = &iscsi_async;
	return 0;
fail:
	if (t)
		scsi_free_scsi_task(t);
	if (tbl)
		scsi_free_scsi_task(tbl);
	if (u)
		iscsi_destroy_url(u);
	if (d->ctx)
		iscsi_destroy_context(d->ctx);
	pthread_mutex_destroy(&d->ctx_lock);
	pthread_mutex_destroy(&d->ats_lock);
	free(d);
	return r;
}
