/* iSCSI PDU layout (RFC 7143 §11): the 48-byte Basic Header Segment, field
 * accessors, validation of a received header, and login/text key=value
 * parsing.  Nothing here does I/O: the fuzzer drives it directly. */
#ifndef ISCSI_PDU_H
#define ISCSI_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISCSI_BHS_LEN 48

/* Initiator opcodes. */
#define OP_NOP_OUT      0x00
#define OP_SCSI_CMD     0x01
#define OP_TMF_REQ      0x02
#define OP_LOGIN_REQ    0x03
#define OP_TEXT_REQ     0x04
#define OP_DATA_OUT     0x05
#define OP_LOGOUT_REQ   0x06
#define OP_SNACK        0x10
/* Target opcodes. */
#define OP_NOP_IN       0x20
#define OP_SCSI_RSP     0x21
#define OP_TMF_RSP      0x22
#define OP_LOGIN_RSP    0x23
#define OP_TEXT_RSP     0x24
#define OP_DATA_IN      0x25
#define OP_LOGOUT_RSP   0x26
#define OP_R2T          0x31
#define OP_ASYNC        0x32
#define OP_REJECT       0x3f

/* Reject reasons (§11.17.1). */
#define REJ_DATA_DIGEST     0x02
#define REJ_SNACK           0x03
#define REJ_PROTOCOL        0x04
#define REJ_NOT_SUPPORTED   0x05
#define REJ_IMMEDIATE       0x06
#define REJ_TASK_IN_PROG    0x07
#define REJ_INVALID_ACK     0x08
#define REJ_INVALID_FIELD   0x09
#define REJ_LONG_OP         0x0a
#define REJ_WAITING_LOGOUT  0x0c

/* Big-endian helpers. */
static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get_be24(const uint8_t *p) { return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]; }
static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t get_be64(const uint8_t *p) { return (uint64_t)get_be32(p) << 32 | get_be32(p + 4); }
static inline void put_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void put_be24(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 16); p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)v;
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void put_be64(uint8_t *p, uint64_t v) { put_be32(p, (uint32_t)(v >> 32)); put_be32(p + 4, (uint32_t)v); }

/* Serial number arithmetic (RFC 1982, 32 bits) for CmdSN/StatSN/DataSN. */
static inline bool sn_lt(uint32_t a, uint32_t b) { return a != b && (int32_t)(a - b) < 0; }
static inline bool sn_le(uint32_t a, uint32_t b) { return a == b || (int32_t)(a - b) < 0; }

static inline unsigned bhs_opcode(const uint8_t *h) { return h[0] & 0x3f; }
static inline bool bhs_immediate(const uint8_t *h) { return h[0] & 0x40; }
static inline unsigned bhs_ahs_len(const uint8_t *h) { return h[4] * 4u; }
static inline uint32_t bhs_dsl(const uint8_t *h) { return get_be24(h + 5); }
static inline uint32_t bhs_itt(const uint8_t *h) { return get_be32(h + 16); }

/** Sizes of one PDU on the wire, derived from a header. */
struct pdu_layout {
	unsigned ahs_len;     /* bytes of AHS */
	uint32_t dsl;         /* data segment length, unpadded */
	uint32_t total;       /* whole PDU incl. digests and padding */
};

/** Check a received BHS before anything else is read: opcode known and
 *  allowed from an initiator, AHS only where it may appear, data segment no
 *  larger than @max_dsl.  Fills @lay.
 *  \return 0, or -EPROTO (bad field: Reject and carry on), -EMSGSIZE (data
 *  segment too long: the stream cannot be trusted, drop the connection),
 *  -EOPNOTSUPP (unknown opcode: Reject). */
int pdu_check_header(const uint8_t *bhs, uint32_t max_dsl, bool hdigest, bool ddigest,
		     struct pdu_layout *lay);

static inline uint32_t pad4(uint32_t n) { return (n + 3) & ~3u; }

/* ---- key=value text (§6) ---------------------------------------------- */

#define KV_MAX 64
struct kv {
	const char *key;
	const char *val;
};
/** Split @buf (len bytes of NUL-terminated "key=value" strings) in place.
 *  The last string may lack its NUL only if len leaves room (it is then
 *  terminated at buf[len], which must be writable).
 *  \return number of pairs, or -EINVAL for a malformed list (no '=', empty
 *  key, key longer than 63, value longer than 8192, too many pairs). */
int kv_parse(char *buf, size_t len, struct kv *out, int max);

/** A text buffer for replies. */
struct textbuf {
	char *p;
	size_t len, cap;
	bool oom;
};
void tb_add(struct textbuf *t, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void tb_free(struct textbuf *t);

/** Parse an iSCSI numerical value (decimal or 0x hex).  \return 0 or -EINVAL. */
int kv_number(const char *s, uint64_t *out);
/** Parse a binary value given as 0x<hex> or 0b<base64> into @out (max
 *  @cap bytes).  \return length or -EINVAL. */
int kv_binary(const char *s, uint8_t *out, size_t cap);

#endif
