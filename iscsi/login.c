/* Login (RFC 7143 §6, §11.12/11.13) and text negotiation: security stage
 * with CHAP (one-way and mutual), operational parameter negotiation, target
 * lookup with initiator ACL, session reinstatement; SendTargets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include "internal.h"

/* Login status class/detail. */
#define LS_OK              0x0000
#define LS_INITIATOR_ERR   0x0200
#define LS_AUTH_FAIL       0x0201
#define LS_AUTHZ_FAIL      0x0202
#define LS_NOT_FOUND       0x0203
#define LS_BAD_VERSION     0x0205
#define LS_TOO_MANY_CONN   0x0206
#define LS_MISSING_PARAM   0x0207
#define LS_NO_SESSION      0x020a
#define LS_INVALID_REQ     0x020b
#define LS_TARGET_ERR      0x0300

struct neg {
	/* values that take effect once the login completes */
	int hdigest, ddigest;          /* -1 not negotiated */
	const char *iname, *tname, *stype;
	const char *auth_method, *chap_a, *chap_n, *chap_r, *chap_i, *chap_c;
};

static bool list_has(const char *list, const char *item)
{
	size_t n = strlen(item);

	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l == n && !strncmp(p, item, n))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

static const char *pick_digest(const char *list, int *out)
{
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l == 6 && !strncmp(p, "CRC32C", 6)) {
			*out = 1;
			return "CRC32C";
		}
		if (l == 4 && !strncmp(p, "None", 4)) {
			*out = 0;
			return "None";
		}
		if (!e)
			break;
		p = e + 1;
	}
	return NULL;
}

static int yesno(const char *v)
{
	if (!strcmp(v, "Yes"))
		return 1;
	if (!strcmp(v, "No"))
		return 0;
	return -1;
}

static bool num_in(const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
	return !kv_number(v, out) && *out >= lo && *out <= hi;
}

/* Operational keys, in login or text negotiation. */
static void negotiate(struct conn *c, struct neg *n, struct textbuf *tb, const char *k,
		      const char *v)
{
	uint64_t x;
	int b;

	if (!strcmp(k, "HeaderDigest") || !strcmp(k, "DataDigest")) {
		int d;
		const char *r = pick_digest(v, &d);

		if (!r) {
			tb_add(tb, k, "Reject");
			return;
		}
		if (k[0] == 'H')
			n->hdigest = d;
		else
			n->ddigest = d;
		tb_add(tb, k, "%s", r);
	} else if (!strcmp(k, "MaxRecvDataSegmentLength")) {
		if (!num_in(v, 512, 16777215, &x)) {
			tb_add(tb, k, "Reject");
			return;
		}
		c->mrdsl_out = (uint32_t)x;
		if (!c->sent_mrdsl) {
			tb_add(tb, k, "%u", OUR_MRDSL);
			c->sent_mrdsl = true;
		}
	} else if (!strcmp(k, "MaxBurstLength") || !strcmp(k, "FirstBurstLength")) {
		if (!num_in(v, 512, 16777215, &x)) {
			tb_add(tb, k, "Reject");
			return;
		}
		if (x > MAX_BURST_LIMIT)
			x = MAX_BURST_LIMIT;
		if (k[0] == 'M')
			c->max_burst = (uint32_t)x;
		else
			c->first_burst = (uint32_t)x;
		tb_add(tb, k, "%u", (unsigned)x);
	} else if (!strcmp(k, "InitialR2T")) {
		if ((b = yesno(v)) < 0) {
			tb_add(tb, k, "Reject");
			return;
		}
		c->initial_r2t = b; /* OR with our No */
		tb_add(tb, k, "%s", b ? "Yes" : "No");
	} else if (!strcmp(k, "ImmediateData")) {
		if ((b = yesno(v)) < 0) {
			tb_add(tb, k, "Reject");
			return;
		}
		c->immediate_data = b; /* AND with our Yes */
		tb_add(tb, k, "%s", b ? "Yes" : "No");
	} else if (!strcmp(k, "MaxOutstandingR2T")) {
		if (!num_in(v, 1, 65535, &x)) {
			tb_add(tb, k, "Reject");
			return;
		}
		c->max_r2t = x < MAX_R2T_LIMIT ? (uint32_t)x : MAX_R2T_LIMIT;
		tb_add(tb, k, "%u", c->max_r2t);
	} else if (!strcmp(k, "DefaultTime2Wait")) {
		if (!num_in(v, 0, 3600, &x)) {
			tb_add(tb, k, "Reject");
			return;
		}
		tb_add(tb, k, "%u", (unsigned)(x > 2 ? x : 2));
	} else if (!strcmp(k, "DefaultTime2Retain")) {
		if (!num_in(v, 0, 3600, &x)) {
			tb_add(tb, k, "Reject");
			return;
		}
		tb_add(tb, k, "0");
	} else if (!strcmp(k, "ErrorRecoveryLevel")) {
		if (!num_in(v, 0, 2, &x)) {
			tb_add(tb, k, "Reject");
			return;
		}
		tb_add(tb, k, "0");
	} else if (!strcmp(k, "MaxConnections")) {
		if (!num_in(v, 1, 65535, &x)) {
			tb_add(tb, k, "Reject");
			return;
		}
		tb_add(tb, k, "1");
	} else if (!strcmp(k, "DataPDUInOrder") || !strcmp(k, "DataSequenceInOrder")) {
		if (yesno(v) < 0) {
			tb_add(tb, k, "Reject");
			return;
		}
		tb_add(tb, k, "Yes");
	} else if (!strcmp(k, "IFMarker") || !strcmp(k, "OFMarker")) {
		if (yesno(v) < 0) {
			tb_add(tb, k, "Reject");
			return;
		}
		tb_add(tb, k, "No");
	} else if (!strcmp(k, "IFMarkInt") || !strcmp(k, "OFMarkInt")) {
		tb_add(tb, k, "Irrelevant");
	} else if (!strcmp(k, "InitiatorAlias") || !strcmp(k, "TargetAlias")) {
		/* declarative, nothing to answer */
	} else {
		tb_add(tb, k, "NotUnderstood");
	}
}

static void login_reply(struct conn *c, const uint8_t *req, uint8_t flags, uint16_t status,
			const struct textbuf *tb)
{
	uint8_t h[48] = { OP_LOGIN_RSP, flags, 0x00, 0x00 };

	memcpy(h + 8, req + 8, 6);
	put_be16(h + 14, status == LS_OK ? c->tsih : 0);
	put_be32(h + 16, bhs_itt(req));
	put_be32(h + 24, c->stat_sn++);
	put_be32(h + 28, c->exp_cmdsn);
	put_be32(h + 32, c->exp_cmdsn + CMDSN_WINDOW - 1);
	h[36] = (uint8_t)(status >> 8);
	h[37] = (uint8_t)status;
	tx_pdu(c, h, tb ? tb->p : NULL, tb && !tb->oom ? (uint32_t)tb->len : 0);
}

static int login_fail(struct conn *c, const uint8_t *req, uint16_t status, const char *why)
{
	iscsi_log(1, "iscsi: login from %s (%s) refused: %s", c->peer,
		  c->initiator[0] ? c->initiator : "?", why);
	login_reply(c, req, 0, status, NULL);
	c->closing = true;
	return 0;
}

static bool acl_ok(struct target *t, const char *iname)
{
	if (!t->ninitiators)
		return true;
	for (int i = 0; i < t->ninitiators; i++)
		if (!strcmp(t->initiators[i], iname))
			return true;
	return false;
}

static void hexstr(const uint8_t *b, size_t n, char *out)
{
	static const char x[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = x[b[i] >> 4];
		out[2 * i + 1] = x[b[i] & 15];
	}
	out[2 * n] = 0;
}

/* First PDU of the login: who is it and what does it want? */
static int login_identify(struct conn *c, const uint8_t *h, struct neg *n)
{
	struct iscsi_srv *s = c->srv;
	struct target *t;
	char isid[13];

	if (!n->iname || !n->iname[0] || strlen(n->iname) >= sizeof(c->initiator))
		return login_fail(c, h, LS_MISSING_PARAM, "no InitiatorName");
	snprintf(c->initiator, sizeof(c->initiator), "%s", n->iname);
	c->discovery = n->stype && !strcmp(n->stype, "Discovery");
	if (n->stype && !c->discovery && strcmp(n->stype, "Normal"))
		return login_fail(c, h, LS_INITIATOR_ERR, "bad SessionType");
	hexstr(c->isid, 6, isid);
	snprintf(c->nexus.name, sizeof(c->nexus.name), "%s,i,0x%s", c->initiator, isid);
	snprintf(c->nexus.initiator, sizeof(c->nexus.initiator), "%s", c->initiator);
	memcpy(c->nexus.isid, c->isid, 6);
	c->nexus.rel_port = 1;
	if (c->discovery)
		return 0;
	if (!n->tname)
		return login_fail(c, h, LS_MISSING_PARAM, "no TargetName");
	pthread_mutex_lock(&s->lock);
	for (t = s->targets; t; t = t->next)
		if (!strcmp(t->iqn, n->tname))
			break;
	if (t) {
		if (!acl_ok(t, c->initiator)) {
			pthread_mutex_unlock(&s->lock);
			return login_fail(c, h, LS_AUTHZ_FAIL, "initiator not in the target's ACL");
		}
		t->ref++;
		c->tgt = t;
		c->need_chap = t->chap_user[0] != 0;
	}
	pthread_mutex_unlock(&s->lock);
	if (!t)
		return login_fail(c, h, LS_NOT_FOUND, "no such target");
	return 0;
}

/* Security stage: AuthMethod and CHAP.  \return 0, or 1 if login failed. */
static int security(struct conn *c, const uint8_t *h, struct neg *n, struct textbuf *tb)
{
	char user[256], secret[256], muser[256], msecret[256];

	pthread_mutex_lock(&c->srv->lock);
	snprintf(user, sizeof(user), "%s", c->tgt ? c->tgt->chap_user : "");
	snprintf(secret, sizeof(secret), "%s", c->tgt ? c->tgt->chap_secret : "");
	snprintf(muser, sizeof(muser), "%s", c->tgt ? c->tgt->mutual_user : "");
	snprintf(msecret, sizeof(msecret), "%s", c->tgt ? c->tgt->mutual_secret : "");
	pthread_mutex_unlock(&c->srv->lock);

	if (n->auth_method) {
		if (c->need_chap) {
			if (!list_has(n->auth_method, "CHAP")) {
				login_fail(c, h, LS_AUTH_FAIL, "CHAP required, not offered");
				return 1;
			}
			tb_add(tb, "AuthMethod", "CHAP");
			c->auth = 0;
		} else if (list_has(n->auth_method, "None")) {
			tb_add(tb, "AuthMethod", "None");
			c->auth = 2;
		} else {
			login_fail(c, h, LS_AUTH_FAIL, "no common AuthMethod");
			return 1;
		}
	}
	if (n->chap_a) {
		char hex[40];

		if (!c->need_chap || c->auth != 0 || !list_has(n->chap_a, "5")) {
			login_fail(c, h, LS_AUTH_FAIL, "unexpected CHAP_A or no MD5");
			return 1;
		}
		if (chap_random(&c->chap_id, 1) || chap_random(c->chap_chal, sizeof(c->chap_chal))) {
			login_fail(c, h, LS_TARGET_ERR, "no randomness");
			return 1;
		}
		hexstr(c->chap_chal, sizeof(c->chap_chal), hex);
		tb_add(tb, "CHAP_A", "5");
		tb_add(tb, "CHAP_I", "%u", c->chap_id);
		tb_add(tb, "CHAP_C", "0x%s", hex);
		c->auth = 1;
	}
	if (n->chap_n || n->chap_r) {
		uint8_t got[64], want[16];
		int gl;

		if (c->auth != 1 || !n->chap_n || !n->chap_r) {
			login_fail(c, h, LS_AUTH_FAIL, "CHAP_N/CHAP_R out of order");
			return 1;
		}
		gl = kv_binary(n->chap_r, got, sizeof(got));
		if (strcmp(n->chap_n, user) || gl != 16 ||
		    chap_response(c->chap_id, secret, c->chap_chal, sizeof(c->chap_chal), want) ||
		    memcmp(got, want, 16)) {
			login_fail(c, h, LS_AUTH_FAIL, "CHAP response wrong");
			return 1;
		}
		if (n->chap_i || n->chap_c) {
			uint8_t ichal[1024], resp[16];
			char hex[40];
			uint64_t id;
			int cl;

			if (!n->chap_i || !n->chap_c || !muser[0] ||
			    kv_number(n->chap_i, &id) || id > 255) {
				login_fail(c, h, LS_AUTH_FAIL, "mutual CHAP not possible");
				return 1;
			}
			cl = kv_binary(n->chap_c, ichal, sizeof(ichal));
			if (cl <= 0 || ((size_t)cl == sizeof(c->chap_chal) &&
					!memcmp(ichal, c->chap_chal, (size_t)cl))) {
				login_fail(c, h, LS_AUTH_FAIL, "bad mutual CHAP challenge");
				return 1;
			}
			if (chap_response((uint8_t)id, msecret, ichal, (size_t)cl, resp)) {
				login_fail(c, h, LS_TARGET_ERR, "MD5 failed");
				return 1;
			}
			hexstr(resp, 16, hex);
			tb_add(tb, "CHAP_N", "%s", muser);
			tb_add(tb, "CHAP_R", "0x%s", hex);
		}
		c->auth = 2;
	}
	return 0;
}

int login_pdu(struct conn *c, uint8_t *h, uint8_t *data, uint32_t dsl)
{
	bool transit = h[1] & 0x80, cont = h[1] & 0x40;
	unsigned csg = (h[1] >> 2) & 3, nsg = h[1] & 3;
	struct kv kv[KV_MAX];
	struct textbuf tb = { 0 };
	struct neg n = { .hdigest = -1, .ddigest = -1 };
	bool first = !c->login_itt && !c->initiator[0] && !c->tgt;
	char *text;
	size_t tl;
	int nkv, r = 0;

	if (first) {
		memcpy(c->isid, h + 8, 6);
		c->tsih = get_be16(h + 14);
		c->cid = get_be16(h + 20);
		c->exp_cmdsn = get_be32(h + 24);
		c->stat_sn = get_be32(h + 28);
		c->login_itt = 1;
		if (h[3] > 0 || h[2] < h[3])
			return login_fail(c, h, LS_BAD_VERSION, "unsupported version");
	} else if (memcmp(c->isid, h + 8, 6)) {
		return login_fail(c, h, LS_INITIATOR_ERR, "ISID changed during login");
	}
	if (csg == 2 || (transit && (nsg == 2 || nsg <= csg)) || (transit && cont))
		return login_fail(c, h, LS_INITIATOR_ERR, "bad stage transition");
	/* Gather a text split over several PDUs (C bit). */
	if (c->login_text_len + dsl > 65536)
		return login_fail(c, h, LS_INITIATOR_ERR, "login text too long");
	text = realloc(c->login_text, c->login_text_len + dsl + 1);
	if (!text)
		return -ENOMEM;
	c->login_text = text;
	memcpy(text + c->login_text_len, data, dsl);
	c->login_text_len += dsl;
	if (cont) {
		login_reply(c, h, (uint8_t)(csg << 2 | nsg), LS_OK, NULL);
		return 0;
	}
	tl = c->login_text_len;
	c->login_text_len = 0;
	nkv = kv_parse(text, tl, kv, KV_MAX);
	if (nkv < 0)
		return login_fail(c, h, LS_INITIATOR_ERR, "malformed login text");
	for (int i = 0; i < nkv; i++) {
		const char *k = kv[i].key, *v = kv[i].val;

		if (!strcmp(k, "InitiatorName")) n.iname = v;
		else if (!strcmp(k, "TargetName")) n.tname = v;
		else if (!strcmp(k, "SessionType")) n.stype = v;
		else if (!strcmp(k, "AuthMethod")) n.auth_method = v;
		else if (!strcmp(k, "CHAP_A")) n.chap_a = v;
		else if (!strcmp(k, "CHAP_N")) n.chap_n = v;
		else if (!strcmp(k, "CHAP_R")) n.chap_r = v;
		else if (!strcmp(k, "CHAP_I")) n.chap_i = v;
		else if (!strcmp(k, "CHAP_C")) n.chap_c = v;
	}
	if (first) {
		r = login_identify(c, h, &n);
		if (r || c->closing)
			goto out;
		if (!c->discovery && !c->sent_tpgt) {
			tb_add(&tb, "TargetPortalGroupTag", "1");
			c->sent_tpgt = true;
		}
	}
	if (csg == 0) {
		if (security(c, h, &n, &tb))
			goto out;
	} else if (c->need_chap && c->auth != 2) {
		login_fail(c, h, LS_AUTH_FAIL, "CHAP required");
		goto out;
	}
	for (int i = 0; i < nkv; i++) {
		const char *k = kv[i].key;

		if (!strcmp(k, "InitiatorName") || !strcmp(k, "TargetName") ||
		    !strcmp(k, "SessionType") || !strcmp(k, "AuthMethod") || !strncmp(k, "CHAP_", 5))
			continue;
		negotiate(c, &n, &tb, k, kv[i].val);
	}
	if (n.hdigest >= 0)
		c->login_hdigest = n.hdigest;
	if (n.ddigest >= 0)
		c->login_ddigest = n.ddigest;
	if (transit && csg == 0 && c->need_chap && c->auth != 2) {
		/* The target decides when to leave the security stage: keep
		 * the initiator here while the CHAP exchange runs. */
		if (!n.auth_method && !n.chap_a) {
			login_fail(c, h, LS_AUTH_FAIL, "CHAP not completed");
			goto out;
		}
		transit = false;
	}
	if (transit && nsg == 3) {
		struct iscsi_srv *s = c->srv;

		if (!c->sent_mrdsl) {
			tb_add(&tb, "MaxRecvDataSegmentLength", "%u", OUR_MRDSL);
			c->sent_mrdsl = true;
		}
		if (c->first_burst > c->max_burst)
			c->first_burst = c->max_burst;
		pthread_mutex_lock(&s->lock);
		if (c->tsih) {
			pthread_mutex_unlock(&s->lock);
			login_fail(c, h, LS_NO_SESSION, "adding connections is not supported");
			goto out;
		}
		/* session reinstatement: same initiator port, same target */
		for (struct conn *o = s->conns; o; o = o->next)
			if (o != c && o->ffp && o->tgt == c->tgt && o->discovery == c->discovery &&
			    !strcmp(o->nexus.name, c->nexus.name))
				shutdown(o->fd, SHUT_RDWR);
		c->tsih = s->next_tsih++;
		if (!s->next_tsih)
			s->next_tsih = 1;
		pthread_mutex_unlock(&s->lock);
		login_reply(c, h, (uint8_t)(0x80 | csg << 2 | nsg), LS_OK, &tb);
		iscsi_log(2, "iscsi: %s session from %s (%s) to %s%s", c->discovery ? "discovery" : "normal",
			  c->peer, c->initiator, c->tgt ? c->tgt->iqn : "-",
			  c->auth == 2 && c->need_chap ? " (CHAP)" : "");
		c->hdigest = c->login_hdigest;
		c->ddigest = c->login_ddigest;
		c->ffp = true;
		goto out;
	}
	login_reply(c, h, (uint8_t)((transit ? 0x80 : 0) | csg << 2 | nsg), LS_OK, &tb);
out:
	tb_free(&tb);
	return r;
}

/* ---- Text requests in full feature phase ----------------------------------- */

static void send_targets(struct conn *c, struct textbuf *tb, const char *which)
{
	struct iscsi_srv *s = c->srv;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64] = "127.0.0.1", port[8] = "3260";

	if (!getsockname(c->fd, (struct sockaddr *)&ss, &sl))
		getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
			    NI_NUMERICHOST | NI_NUMERICSERV);
	pthread_mutex_lock(&s->lock);
	for (struct target *t = s->targets; t; t = t->next) {
		if (!acl_ok(t, c->initiator))
			continue;
		if (c->discovery ? strcmp(which, "All") && strcmp(which, t->iqn)
				 : (t != c->tgt || (which[0] && strcmp(which, t->iqn))))
			continue;
		tb_add(tb, "TargetName", "%s", t->iqn);
		tb_add(tb, "TargetAddress", "%s%s%s:%s,1", strchr(host, ':') ? "[" : "", host,
		       strchr(host, ':') ? "]" : "", port);
	}
	pthread_mutex_unlock(&s->lock);
}

#define TEXT_TTT 0x7e570001u

int text_pdu(struct conn *c, uint8_t *h, uint8_t *data, uint32_t dsl)
{
	uint8_t r[48] = { OP_TEXT_RSP };
	uint32_t ttt = get_be32(h + 20);
	size_t chunk;
	bool last;

	if (ttt != 0xffffffffu) {
		if (!c->txt_pend || ttt != TEXT_TTT)
			return -EPROTO;
	} else {
		struct textbuf tb = { 0 };
		struct kv kv[KV_MAX];
		struct neg n = { .hdigest = -1, .ddigest = -1 };
		char *buf;
		int nkv;

		if (h[1] & 0x40)
			return -EPROTO; /* multi-PDU text requests: not supported */
		free(c->txt_pend);
		c->txt_pend = NULL;
		buf = malloc(dsl + 1);
		if (!buf)
			return -ENOMEM;
		memcpy(buf, data, dsl);
		nkv = kv_parse(buf, dsl, kv, KV_MAX);
		if (nkv < 0) {
			free(buf);
			return -EPROTO;
		}
		for (int i = 0; i < nkv; i++) {
			if (!strcmp(kv[i].key, "SendTargets"))
				send_targets(c, &tb, kv[i].val);
			else if (!strcmp(kv[i].key, "HeaderDigest") || !strcmp(kv[i].key, "DataDigest") ||
				 !strcmp(kv[i].key, "MaxBurstLength") ||
				 !strcmp(kv[i].key, "FirstBurstLength") ||
				 !strcmp(kv[i].key, "InitialR2T") || !strcmp(kv[i].key, "ImmediateData") ||
				 !strcmp(kv[i].key, "MaxOutstandingR2T"))
				tb_add(&tb, kv[i].key, "Reject"); /* leading-only keys */
			else
				negotiate(c, &n, &tb, kv[i].key, kv[i].val);
		}
		free(buf);
		if (tb.oom) {
			tb_free(&tb);
			return -ENOMEM;
		}
		c->txt_pend = tb.p;
		c->txt_pend_len = tb.len;
		c->txt_pend_off = 0;
	}
	chunk = c->txt_pend_len - c->txt_pend_off;
	last = chunk <= c->mrdsl_out;
	if (!last)
		chunk = c->mrdsl_out;
	r[1] = last ? 0x80 : 0x40;
	put_be32(r + 16, bhs_itt(h));
	put_be32(r + 20, last ? 0xffffffffu : TEXT_TTT);
	put_be32(r + 24, c->stat_sn++);
	put_be32(r + 28, c->exp_cmdsn);
	put_be32(r + 32, c->exp_cmdsn + CMDSN_WINDOW - 1);
	tx_pdu(c, r, c->txt_pend ? c->txt_pend + c->txt_pend_off : NULL, (uint32_t)chunk);
	c->txt_pend_off += chunk;
	if (last) {
		free(c->txt_pend);
		c->txt_pend = NULL;
	}
	return 0;
}
