/* XDR encode/decode over memory (see xdr.h). */
#include <stdlib.h>
#include <string.h>

#include "xdr.h"

static inline size_t pad4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

uint32_t xin_u32(struct xdr_in *x)
{
	const uint8_t *p;

	if (x->err || x->len - x->pos < 4) {
		x->err = true;
		return 0;
	}
	p = x->p + x->pos;
	x->pos += 4;
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t xin_u64(struct xdr_in *x)
{
	uint64_t hi = xin_u32(x);

	return hi << 32 | xin_u32(x);
}

bool xin_bool(struct xdr_in *x)
{
	uint32_t v = xin_u32(x);

	if (v > 1)
		x->err = true;
	return v == 1;
}

const uint8_t *xin_fixed(struct xdr_in *x, size_t n)
{
	const uint8_t *p;

	if (x->err || n > x->len - x->pos || pad4(n) > x->len - x->pos) {
		x->err = true;
		return NULL;
	}
	p = x->p + x->pos;
	x->pos += pad4(n);
	return p;
}

const uint8_t *xin_var(struct xdr_in *x, uint32_t *n, uint32_t max)
{
	*n = xin_u32(x);
	if (x->err || *n > max) {
		x->err = true;
		*n = 0;
		return NULL;
	}
	return xin_fixed(x, *n);
}

bool xin_str(struct xdr_in *x, char *buf, uint32_t max)
{
	uint32_t n;
	const uint8_t *p = xin_var(x, &n, max);

	buf[0] = 0;
	if (!p)
		return false;
	memcpy(buf, p, n);
	buf[n] = 0;
	return true;
}

static uint8_t *grow(struct xdr_out *o, size_t n)
{
	uint8_t *p;

	if (o->err)
		return NULL;
	if (o->cap - o->len < n) {
		size_t cap = o->cap ? o->cap : 512;

		while (cap - o->len < n)
			cap *= 2;
		p = realloc(o->buf, cap);
		if (!p) {
			o->err = true;
			return NULL;
		}
		o->buf = p;
		o->cap = cap;
	}
	p = o->buf + o->len;
	o->len += n;
	return p;
}

void xout_u32(struct xdr_out *o, uint32_t v)
{
	uint8_t *p = grow(o, 4);

	if (p) {
		p[0] = (uint8_t)(v >> 24);
		p[1] = (uint8_t)(v >> 16);
		p[2] = (uint8_t)(v >> 8);
		p[3] = (uint8_t)v;
	}
}

void xout_u64(struct xdr_out *o, uint64_t v)
{
	xout_u32(o, (uint32_t)(v >> 32));
	xout_u32(o, (uint32_t)v);
}

uint8_t *xout_reserve(struct xdr_out *o, size_t n)
{
	uint8_t *p = grow(o, pad4(n));

	if (p && pad4(n) > n)
		memset(p + n, 0, pad4(n) - n);
	return p;
}

void xout_fixed(struct xdr_out *o, const void *src, size_t n)
{
	uint8_t *p = xout_reserve(o, n);

	if (p && n)
		memcpy(p, src, n);
}

void xout_var(struct xdr_out *o, const void *p, uint32_t n)
{
	xout_u32(o, n);
	xout_fixed(o, p, n);
}

void xout_free(struct xdr_out *o)
{
	free(o->buf);
	memset(o, 0, sizeof(*o));
}
