/* PDU header validation and text key parsing: pure functions over bytes. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdu.h"

int pdu_check_header(const uint8_t *bhs, uint32_t max_dsl, bool hdigest, bool ddigest,
		     struct pdu_layout *lay)
{
	unsigned op = bhs_opcode(bhs);
	uint32_t dsl = bhs_dsl(bhs);
	unsigned ahs = bhs_ahs_len(bhs);

	lay->ahs_len = ahs;
	lay->dsl = dsl;
	lay->total = 0;
	if (dsl > max_dsl)
		return -EMSGSIZE;
	lay->total = ISCSI_BHS_LEN + ahs + (hdigest ? 4 : 0) + pad4(dsl) +
		     (ddigest && dsl ? 4 : 0);
	switch (op) {
	case OP_SCSI_CMD:
		return 0;
	case OP_NOP_OUT: case OP_TMF_REQ: case OP_LOGIN_REQ: case OP_TEXT_REQ:
	case OP_DATA_OUT: case OP_LOGOUT_REQ: case OP_SNACK:
		if (ahs)
			return -EPROTO;
		if ((op == OP_TMF_REQ || op == OP_SNACK) && dsl)
			return -EPROTO;
		/* Only the F bit (bit 7) may be set, except where the opcode
		 * carries a function code in byte 1. */
		if (!(bhs[1] & 0x80) && (op == OP_NOP_OUT || op == OP_TMF_REQ || op == OP_LOGOUT_REQ))
			return -EPROTO;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

int kv_parse(char *buf, size_t len, struct kv *out, int max)
{
	size_t i = 0;
	int n = 0;

	while (i < len) {
		char *s = buf + i, *eq;
		size_t l = strnlen(s, len - i);

		if (l == len - i)
			buf[len] = 0; /* last string without NUL */
		if (l == 0) { /* padding NULs at the end are tolerated */
			i++;
			continue;
		}
		if (n >= max)
			return -EINVAL;
		eq = memchr(s, '=', l);
		if (!eq || eq == s || eq - s > 63 || l - (size_t)(eq - s) - 1 > 8192)
			return -EINVAL;
		*eq = 0;
		out[n].key = s;
		out[n].val = eq + 1;
		n++;
		i += l + 1;
	}
	return n;
}

void tb_add(struct textbuf *t, const char *key, const char *fmt, ...)
{
	char val[8300];
	va_list ap;
	size_t need;
	int l;

	if (t->oom)
		return;
	va_start(ap, fmt);
	l = vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	if (l < 0 || (size_t)l >= sizeof(val)) {
		t->oom = true;
		return;
	}
	need = strlen(key) + 1 + (size_t)l + 1;
	if (t->len + need > t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 512;
		char *np;

		while (nc < t->len + need)
			nc *= 2;
		np = realloc(t->p, nc);
		if (!np) {
			t->oom = true;
			return;
		}
		t->p = np;
		t->cap = nc;
	}
	t->len += (size_t)sprintf(t->p + t->len, "%s=%s", key, val) + 1;
}

void tb_free(struct textbuf *t)
{
	free(t->p);
	memset(t, 0, sizeof(*t));
}

int kv_number(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		if (!*s || strlen(s) > 16)
			return -EINVAL;
		for (; *s; s++) {
			int d = (*s >= '0' && *s <= '9') ? *s - '0' :
				(*s >= 'a' && *s <= 'f') ? *s - 'a' + 10 :
				(*s >= 'A' && *s <= 'F') ? *s - 'A' + 10 : -1;
			if (d < 0)
				return -EINVAL;
			v = v << 4 | (unsigned)d;
		}
	} else {
		if (strlen(s) > 19)
			return -EINVAL;
		for (; *s; s++) {
			if (*s < '0' || *s > '9')
				return -EINVAL;
			v = v * 10 + (unsigned)(*s - '0');
		}
	}
	*out = v;
	return 0;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

int kv_binary(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		size_t l;

		s += 2;
		l = strlen(s);
		if (!l)
			return -EINVAL;
		if (l & 1) { /* odd: leading nibble */
			if (cap < 1)
				return -EINVAL;
		}
		for (size_t i = 0; i < l;) {
			int hi = 0, lo;

			if ((l - i) & 1) {
				hi = 0;
			} else {
				char c = s[i++];

				hi = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 :
				     (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
			}
			{
				char c = s[i++];

				lo = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 :
				     (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
			}
			if (hi < 0 || lo < 0 || n >= cap)
				return -EINVAL;
			out[n++] = (uint8_t)(hi << 4 | lo);
		}
		return (int)n;
	}
	if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) {
		uint32_t acc = 0;
		int bits = 0;

		for (s += 2; *s && *s != '='; s++) {
			int v = b64val(*s);

			if (v < 0)
				return -EINVAL;
			acc = acc << 6 | (unsigned)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				if (n >= cap)
					return -EINVAL;
				out[n++] = (uint8_t)(acc >> bits);
			}
		}
		return n ? (int)n : -EINVAL;
	}
	return -EINVAL;
}
