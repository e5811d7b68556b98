/* Private to lockmgr/: little-endian helpers and shared internals. */
#ifndef VMFS_LOCKMGR_INTERNAL_H
#define VMFS_LOCKMGR_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "vmfs/lockmgr.h"

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline int uuid_is_zero(const uint8_t u[16])
{
	static const uint8_t z[16];

	return memcmp(u, z, 16) == 0;
}

/* Log a line on stderr unless the heartbeat is quiet (hb may be NULL). */
void vmfs_hb_log(const struct vmfs_hb *hb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Liveness of the slot at @pos for a lock naming generation @gen (lock.c). */
enum owner_state { OWNER_SELF, OWNER_STALE, OWNER_ALIVE, OWNER_SUSPECT, OWNER_DEAD };
int vmfs_hb_owner_state(struct vmfs_hb *hb, uint64_t pos, uint64_t gen,
			enum owner_state *st, uint8_t uuid_out[16]);

/* Our slot position and generation, and whether we are joined. */
int vmfs_hb_self(struct vmfs_hb *hb, uint64_t *pos, uint64_t *gen, uint8_t uuid[16],
		 uint64_t *epoch);

#endif
