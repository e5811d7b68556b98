/* XDR (RFC 4506) over memory: a bounds-checked decode cursor and a growing
 * encode buffer.  Every decode error is sticky (x->err), so a decoder reads
 * a whole structure and checks once. */
#ifndef NFS_XDR_H
#define NFS_XDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xdr_in {
	const uint8_t *p;
	size_t len, pos;
	bool err;
};

struct xdr_out {
	uint8_t *buf;
	size_t len, cap;
	bool err;                 /* out of memory */
};

static inline void xin_init(struct xdr_in *x, const uint8_t *p, size_t len)
{
	x->p = p;
	x->len = len;
	x->pos = 0;
	x->err = false;
}

uint32_t xin_u32(struct xdr_in *x);
uint64_t xin_u64(struct xdr_in *x);
bool xin_bool(struct xdr_in *x);
/** Fixed-length opaque of @n bytes (padded to 4); returns a pointer into the
 *  buffer or NULL (x->err set) when short. */
const uint8_t *xin_fixed(struct xdr_in *x, size_t n);
/** Variable-length opaque, at most @max bytes. */
const uint8_t *xin_var(struct xdr_in *x, uint32_t *n, uint32_t max);
/** String of 1..@max bytes without NUL into @buf (NUL-terminated, @buf has
 *  room for max+1). */
bool xin_str(struct xdr_in *x, char *buf, uint32_t max);

void xout_u32(struct xdr_out *o, uint32_t v);
void xout_u64(struct xdr_out *o, uint64_t v);
void xout_fixed(struct xdr_out *o, const void *p, size_t n);
void xout_var(struct xdr_out *o, const void *p, uint32_t n);
/** Reserve @n bytes (padded); returns a pointer to fill or NULL. */
uint8_t *xout_reserve(struct xdr_out *o, size_t n);
void xout_free(struct xdr_out *o);

#endif
