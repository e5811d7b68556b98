/*
 * OpenVMFS per-host redo journal.
 *
 * Each host owns a journal region (LV offset, length) recorded in its
 * heartbeat slot (vmfs_hb_opts.journal_off/len).  A transaction is a set of
 * whole 512-byte metadata sectors (LV offset + new content).  The journal
 * writes descriptor blocks, the sectors and a commit record carrying a CRC32C
 * of all of them, then flushes; only then does the caller write the sectors in
 * place, and then call vmfs_journal_applied().  Replay (at mount, and by the
 * host that reclaims a dead one) applies committed transactions in sequence
 * order from the checkpoint on and stops at the first torn or missing one.
 *
 * Region layout (all little-endian):
 *   sector 0       header: magic "OVMFSJNL", version, random journal id,
 *                  region base/length, checkpoint (seq, log position), CRC32C
 *   sectors 1..N   circular log of transactions:
 *                  descriptor x ceil(n/59) | n data sectors | commit
 * Every log block carries the journal id and the sequence number, so blocks
 * of an older format or an older transaction are never taken for current ones.
 *
 * Lock rule (the reason checkpoints exist): a committed transaction must be
 * checkpointed (vmfs_journal_checkpoint(), or VMFS_JOURNAL_EAGER) before the
 * host releases or hands off any lock covering its sectors.  Otherwise a
 * later replay of this host's journal could write old content over another
 * host's newer change.  The default (EAGER) checkpoints in _applied().
 *
 * Functions return 0 or a negative errno:
 *   -ENODATA  no journal header in the region (format it first)
 *   -EUCLEAN  header present but invalid (bad CRC, wrong base/length)
 *   -E2BIG    transaction larger than the whole log
 *   -EAGAIN   log full and the previous transaction not applied yet
 *   -EINVAL   bad arguments (unaligned offsets, sector inside the journal)
 */
#ifndef VMFS_JOURNAL_H
#define VMFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmfs/blockdev.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMFS_JOURNAL_MIN_LEN (8u * 512u)

/* One sector of a transaction (same layout as the fs layer's txn sector). */
struct vmfs_jsector {
	uint64_t off;          /* LV offset, 512-aligned */
	uint8_t data[512];
};

struct vmfs_journal_stats {
	uint64_t txns;         /* transactions replayed */
	uint64_t sectors;      /* sectors written in place by replay */
	uint64_t first_seq;    /* first replayed sequence number (0 if none) */
	uint64_t last_seq;     /* checkpoint after replay */
	bool torn;             /* replay stopped at a torn/uncommitted transaction */
};

struct vmfs_journal;

#define VMFS_JOURNAL_LAZY 0x1u  /* do not checkpoint in _applied(); caller calls _checkpoint() */

/** CRC32C (Castagnoli), reflected, initial value @crc (0 to start). */
uint32_t vmfs_crc32c(uint32_t crc, const void *buf, size_t len);
/** Use the table path even where SSE4.2 exists (tests compare both). */
void vmfs_crc32c_force_soft(int on);

/** Write a fresh journal header (new random journal id, empty log) and flush.
 *  Old log content in the region can never be replayed afterwards. */
int vmfs_journal_format(struct vmfs_bdev *bd, uint64_t off, uint64_t len);

/** Replay the journal in [off, off+len) on @bd: apply every committed
 *  transaction after the checkpoint, in order, flush, advance the checkpoint.
 *  Idempotent.  Used by mount and by the reclaim of a dead host.  @st may be NULL. */
int vmfs_journal_replay(struct vmfs_bdev *bd, uint64_t off, uint64_t len,
			struct vmfs_journal_stats *st);

/** Open our own journal: replay what is pending, then ready for commits.
 *  @flags: VMFS_JOURNAL_*.  @st (may be NULL) receives the replay stats. */
int vmfs_journal_open(struct vmfs_bdev *bd, uint64_t off, uint64_t len, unsigned flags,
		      struct vmfs_journal **out, struct vmfs_journal_stats *st);

/** Checkpoint if everything is applied, and free. */
void vmfs_journal_close(struct vmfs_journal *j);

/** Free without any I/O: the host lost its heartbeat (another host replays or
 *  replayed this journal) or is simulating a crash.  Reopen to continue. */
void vmfs_journal_abandon(struct vmfs_journal *j);

/** Log one transaction of @n sectors and flush.  On return 0 it is durable
 *  (replay will apply it); the caller then writes the sectors in place and
 *  calls vmfs_journal_applied().  If the same offset occurs twice, the later
 *  sector wins.  \return 0, -E2BIG, -EAGAIN, -EINVAL, or an I/O error (the
 *  transaction is then not committed, as far as the caller may assume). */
int vmfs_journal_commit(struct vmfs_journal *j, const struct vmfs_jsector *s, size_t n);

/** The last committed transaction has been written in place.  Checkpoints
 *  (flush + header) unless opened with VMFS_JOURNAL_LAZY. */
int vmfs_journal_applied(struct vmfs_journal *j);

/** Flush the in-place writes and advance the on-disk checkpoint past every
 *  applied transaction (call before releasing locks in LAZY mode). */
int vmfs_journal_checkpoint(struct vmfs_journal *j);

/** Convenience: commit, write every sector in place, applied. */
int vmfs_journal_write(struct vmfs_journal *j, const struct vmfs_jsector *s, size_t n);

/** Sequence number of the last committed transaction. */
uint64_t vmfs_journal_seq(const struct vmfs_journal *j);
/** Log blocks one transaction of @n sectors takes. */
uint64_t vmfs_journal_txn_blocks(size_t n);

#ifdef __cplusplus
}
#endif
#endif
