/* CRC32C (Castagnoli), as iSCSI header and data digests use it (RFC 7143
 * §13.1, §11.1 and Appendix B).  One implementation serves the project:
 * vmfs_crc32c() (journal/crc32c.c: SSE4.2 when the CPU has it, else tables). */
#ifndef ISCSI_CRC32C_H
#define ISCSI_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#include "vmfs/journal.h"

/** Continue a CRC32C over @len bytes: start with crc = 0xffffffff, finish by
 *  xoring with 0xffffffff (iscsi_crc32c() does both). */
static inline uint32_t iscsi_crc32c_update(uint32_t crc, const void *buf, size_t len)
{
	return ~vmfs_crc32c(~crc, buf, len);
}

/** Complete digest of one buffer, as it goes on the wire (little endian). */
static inline uint32_t iscsi_crc32c(const void *buf, size_t len)
{
	return vmfs_crc32c(0, buf, len);
}

/** Force the portable path (tests compare both). */
static inline void iscsi_crc32c_force_soft(int on)
{
	vmfs_crc32c_force_soft(on);
}

#endif
