/* CRC32C (Castagnoli), as iSCSI header and data digests use it (RFC 7143
 * §13.1, §11.1 and Appendix B).  SSE4.2 when the CPU has it, else tables. */
#ifndef ISCSI_CRC32C_H
#define ISCSI_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/** Continue a CRC32C over @len bytes: start with crc = 0xffffffff, finish by
 *  xoring with 0xffffffff (iscsi_crc32c() does both). */
uint32_t iscsi_crc32c_update(uint32_t crc, const void *buf, size_t len);
/** Complete digest of one buffer, as it goes on the wire (little endian). */
uint32_t iscsi_crc32c(const void *buf, size_t len);
/** Force the portable path (tests compare both). */
void iscsi_crc32c_force_soft(int on);

#endif
