/* ONC RPC (RFC 5531) call parsing, authentication, program dispatch, reply
 * framing, and the tiny portmapper (PMAP v2 NULL/GETPORT/DUMP). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

void nfs_log(struct nfs_srv *s, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s->log)
		s->log(s->log_ctx, level, msg);
	else
		fprintf(stderr, "nfs: %s\n", msg);
}

double nfs_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reply header: xid, REPLY, then either MSG_ACCEPTED + verf(AUTH_NONE) + stat
 * or MSG_DENIED + reject stat. */
static void accepted(struct xdr_out *o, uint32_t xid, uint32_t stat)
{
	xout_u32(o, 0);            /* record mark, patched at the end */
	xout_u32(o, xid);
	xout_u32(o, 1);            /* REPLY */
	xout_u32(o, 0);            /* MSG_ACCEPTED */
	xout_u32(o, FLAVOR_NONE);
	xout_u32(o, 0);
	xout_u32(o, stat);
}

static void denied(struct xdr_out *o, uint32_t xid, uint32_t why, uint32_t a, uint32_t b, bool two)
{
	xout_u32(o, 0);
	xout_u32(o, xid);
	xout_u32(o, 1);
	xout_u32(o, 1);            /* MSG_DENIED */
	xout_u32(o, why);
	xout_u32(o, a);
	if (two)
		xout_u32(o, b);
}

/* AUTH_SYS body: stamp, machinename<255>, uid, gid, gids<16>; exactly. */
static bool parse_auth_sys(const uint8_t *p, uint32_t len, struct nfs_cred *c)
{
	struct xdr_in x;
	uint32_t n;

	xin_init(&x, p, len);
	xin_u32(&x);
	xin_var(&x, &n, 255);
	c->uid = xin_u32(&x);
	c->gid = xin_u32(&x);
	c->ngids = xin_u32(&x);
	if (x.err || c->ngids > 16)
		return false;
	for (uint32_t i = 0; i < c->ngids; i++)
		c->gids[i] = xin_u32(&x);
	return !x.err && x.pos == x.len;
}

static int pmap_dispatch(struct nfs_call *c, uint32_t proc, struct xdr_in *x, struct xdr_out *o)
{
	struct nfs_srv *s = c->s;
	uint32_t prog, vers, prot;

	switch (proc) {
	case 0:
		return RPC_SUCCESS;
	case 3:                    /* GETPORT(mapping) -> port */
		prog = xin_u32(x);
		vers = xin_u32(x);
		prot = xin_u32(x);
		xin_u32(x);
		if (x->err)
			return RPC_GARBAGE_ARGS;
		xout_u32(o, (prot == 6 && vers == 3 && (prog == NFS_PROG || prog == MOUNT_PROG))
			 ? s->nfs_port : 0);
		return RPC_SUCCESS;
	case 4:                    /* DUMP -> pmaplist */
		for (int i = 0; i < 2; i++) {
			xout_u32(o, 1);
			xout_u32(o, i ? MOUNT_PROG : NFS_PROG);
			xout_u32(o, 3);
			xout_u32(o, 6);
			xout_u32(o, s->nfs_port);
		}
		xout_u32(o, 0);
		return RPC_SUCCESS;
	}
	return RPC_PROC_UNAVAIL;
}

static void patch_mark(struct xdr_out *o, size_t start)
{
	uint32_t mark = 0x80000000u | (uint32_t)(o->len - start - 4);
	uint8_t *m = o->buf + start;

	m[0] = (uint8_t)(mark >> 24);
	m[1] = (uint8_t)(mark >> 16);
	m[2] = (uint8_t)(mark >> 8);
	m[3] = (uint8_t)mark;
}

bool nfs_rpc_reply_early(struct nfs_call *c, struct xdr_out *o)
{
	if (!c->send_now || o->err || o->len - c->start - 4 > 0x7fffffff)
		return false;
	patch_mark(o, c->start);
	if (!c->send_now(c->send_ctx, o->buf + c->start, o->len - c->start))
		return false;
	o->len = c->start;
	c->sent = true;
	return true;
}

bool nfs_rpc_is_bulk(const uint8_t *rec, size_t len)
{
	struct xdr_in x;
	uint32_t n, prog, proc;

	if (len >= NFS_BULK)
		return true;           /* a big WRITE */
	xin_init(&x, rec, len);
	xin_fixed(&x, 12);         /* xid, CALL, RPC version */
	prog = xin_u32(&x);
	xin_u32(&x);
	proc = xin_u32(&x);
	if (x.err || prog != NFS_PROG || proc != 6)
		return false;
	xin_u32(&x);
	xin_var(&x, &n, 400);      /* credential */
	xin_u32(&x);
	xin_var(&x, &n, 400);      /* verifier */
	xin_var(&x, &n, 64);       /* READ3args: file, offset, count */
	xin_u64(&x);
	n = xin_u32(&x);
	return !x.err && n >= NFS_BULK;
}

void nfs_rpc_process(struct nfs_srv *s, uint32_t peer, const uint8_t *rec, size_t len,
		     struct xdr_out *o, nfs_send_now_fn send_now, void *send_ctx)
{
	size_t start = o->len;
	struct xdr_in x;
	struct nfs_call c = { .s = s, .peer = peer, .send_now = send_now, .send_ctx = send_ctx,
			      .start = start };
	uint32_t xid, mtype, rpcvers, prog, vers, proc, flavor, vflavor, clen, vlen;
	const uint8_t *cred, *verf;
	size_t hdr;
	int st;

	xin_init(&x, rec, len);
	xid = xin_u32(&x);
	mtype = xin_u32(&x);
	if (x.err || mtype != 0)
		return;               /* not a call: nothing to answer */
	rpcvers = xin_u32(&x);
	prog = xin_u32(&x);
	vers = xin_u32(&x);
	proc = xin_u32(&x);
	if (x.err) {
		accepted(o, xid, RPC_GARBAGE_ARGS);
		goto done;
	}
	if (rpcvers != RPC_VERS) {
		denied(o, xid, RPC_MISMATCH_, RPC_VERS, RPC_VERS, true);
		goto done;
	}
	flavor = xin_u32(&x);
	cred = xin_var(&x, &clen, 400);
	vflavor = xin_u32(&x);
	verf = xin_var(&x, &vlen, 400);
	(void)verf;
	if (x.err) {
		denied(o, xid, RPC_AUTH_ERROR, AUTH_BADCRED_, 0, false);
		goto done;
	}
	c.cred.flavor = flavor;
	if (flavor == FLAVOR_SYS) {
		if (!parse_auth_sys(cred, clen, &c.cred)) {
			denied(o, xid, RPC_AUTH_ERROR, AUTH_BADCRED_, 0, false);
			goto done;
		}
	} else if (flavor == FLAVOR_NONE) {
		/* AUTH_NONE: NULL procedures, MOUNT and the portmapper only */
		if (clen || (prog == NFS_PROG && proc != 0)) {
			denied(o, xid, RPC_AUTH_ERROR, clen ? AUTH_BADCRED_ : AUTH_TOOWEAK_, 0, false);
			goto done;
		}
		c.cred.uid = c.cred.gid = 65534;
	} else {
		denied(o, xid, RPC_AUTH_ERROR, AUTH_REJECTEDCRED_, 0, false);
		goto done;
	}
	if (vflavor != FLAVOR_NONE && vflavor != FLAVOR_SYS) {
		denied(o, xid, RPC_AUTH_ERROR, AUTH_BADVERF_, 0, false);
		goto done;
	}
	if ((prog == NFS_PROG && vers != NFS_VERS) || (prog == MOUNT_PROG && vers != MOUNT_VERS) ||
	    (prog == PMAP_PROG && vers != 2)) {
		accepted(o, xid, RPC_PROG_MISMATCH);
		xout_u32(o, prog == PMAP_PROG ? 2 : 3);
		xout_u32(o, prog == PMAP_PROG ? 2 : 3);
		goto done;
	}
	if (prog != NFS_PROG && prog != MOUNT_PROG && !(prog == PMAP_PROG && s->have_pmap)) {
		accepted(o, xid, RPC_PROG_UNAVAIL);
		goto done;
	}
	accepted(o, xid, RPC_SUCCESS);
	hdr = o->len;
	double t0 = nfs_now();
	if (prog == NFS_PROG)
		st = nfs3_dispatch(&c, proc, &x, o);
	else if (prog == MOUNT_PROG)
		st = mount3_dispatch(&c, proc, &x, o);
	else
		st = pmap_dispatch(&c, proc, &x, o);
	if (c.sent) {
		o->len = start;        /* answered already */
		return;
	}
	if (getenv("VMFS_NFS_TRACE"))
		nfs_log(s, VMFS_LOG_INFO, "call prog %u proc %u (%.0f us) -> rpc %d nfs %u", prog, proc,
			(nfs_now() - t0) * 1e6, st,
			o->len >= hdr + 4 ? (uint32_t)o->buf[hdr] << 24 | (uint32_t)o->buf[hdr + 1] << 16 |
			(uint32_t)o->buf[hdr + 2] << 8 | o->buf[hdr + 3] : 0xffffffffu);
	if (st != RPC_SUCCESS) {
		/* rewrite the accept status, drop anything encoded */
		o->len = hdr - 4;
		xout_u32(o, (uint32_t)st);
	}
done:
	if (o->err || o->len < start + 8 || o->len - start - 4 > 0x7fffffff) {
		o->len = start;        /* out of memory: no reply, the client retries */
		o->err = false;
		return;
	}
	patch_mark(o, start);
}

/* nfs_srv_process's early replies: kept for the caller like the others. */
static bool keep_early(void *ctx, const uint8_t *p, size_t n)
{
	struct xdr_out *early = ctx;

	xout_fixed(early, p, n);       /* a whole record: a multiple of 4 */
	return !early->err;
}

void nfs_srv_process(struct nfs_srv *s, uint32_t peer, const uint8_t *rec, size_t len,
		     uint8_t **reply, size_t *reply_len)
{
	struct xdr_out o = { 0 }, early = { 0 };

	nfs_rpc_process(s, peer, rec, len, &o, keep_early, &early);
	if (early.len) {
		xout_free(&o);
		o = early;
	} else {
		xout_free(&early);
	}
	if (!o.len)
		xout_free(&o);
	*reply = o.buf;
	*reply_len = o.len;
}
