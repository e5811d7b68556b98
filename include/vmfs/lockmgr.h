/*
 * OpenVMFS cluster protocol: timeouts, heartbeats, on-disk locks, fencing.
 *
 * Hosts coordinate only through the shared device (DESIGN.md "Cluster
 * protocol"): each live host owns one 512-byte heartbeat slot in the region at
 * LV 0x300000 (FORMAT.md §9.2) and renews it with atomic test-and-set (ATS);
 * every metadata object starts with a 512-byte lock record (§9.1) taken with
 * ATS.  This layer only does I/O through include/vmfs/blockdev.h and never
 * calls up: when a lock's owner is dead it returns -EOWNERDEAD and the caller
 * reclaims that host (replaying its journal) and retries.
 *
 * Every function returns 0 or a negative errno unless stated otherwise.
 *
 * Error codes used throughout:
 *   -EBUSY       the lock is held by a live host (details in vmfs_lock_conflict)
 *   -EOWNERDEAD  the holder is dead: vmfs_hb_reclaim() its slot, then retry
 *   -EAGAIN      (reclaim) the host looks silent but has not been watched for
 *                hb_timeout yet
 *   -ENOLCK      we do not hold the lock (never did, or it was broken because we
 *                were declared dead)
 *   -ESHUTDOWN   this host is not joined or its heartbeat was lost
 *   -EIO         I/O refused because this host is self-fenced, or a device error
 *   -EUCLEAN     an on-disk record failed validation (bad magic, pos, count)
 *   -ENOSPC      no free heartbeat slot
 *   -EUSERS      more shared holders than the record can name (8)
 *   -ETIMEDOUT   a waiting helper reached its deadline
 */
#ifndef VMFS_LOCKMGR_H
#define VMFS_LOCKMGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmfs/blockdev.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Timeouts (lockmgr/timeouts.c; the failure timeline is there) -------- */

struct vmfs_timeouts {
	uint64_t io_timeout_us;   /* longest a single I/O may take */
	uint64_t hb_interval_us;  /* renewal period:                 1.5 x io */
	uint64_t hb_timeout_us;   /* same stamp this long = dead:      8 x io */
	uint64_t fence_us;        /* stop I/O at S + fence_us:  hb_timeout - io */
	uint64_t lock_retry_us;   /* poll period of vmfs_lock_acquire_wait: io / 8 */
	uint64_t reclaim_wait_us; /* wait for a concurrent reclaimer: hb_timeout + 2 io */
};

#define VMFS_IO_TIMEOUT_DEFAULT_US 2000000ull /* 2 s: hb_interval 3 s, hb_timeout 16 s as VMFS */

/** Derive every timing from @io_timeout_us (0 = default).  -EINVAL below 10 ms. */
int vmfs_timeouts_init(struct vmfs_timeouts *t, uint64_t io_timeout_us);

/** Monotonic clock in microseconds (CLOCK_MONOTONIC). */
uint64_t vmfs_now_us(void);

/* ---- On-disk records (lockmgr/ondisk.c) --------------------------------- */

#define VMFS_HB_REGION_OFF   0x300000ull
#define VMFS_HB_SLOT_SIZE    512u
#define VMFS_HB_NSLOTS       2048u
#define VMFS_HB_REGION_LEN   ((uint64_t)VMFS_HB_SLOT_SIZE * VMFS_HB_NSLOTS)
#define VMFS_HB_MAGIC_FREE   0xABCDEF01u
#define VMFS_HB_MAGIC_LIVE   0xABCDEF02u

#define VMFS_LOCK_REC_SIZE   512u
#define VMFS_LOCK_MAX_HOLDERS 8u
/* Object magics of the records that carry a lock (FORMAT.md §1). */
#define VMFS_MAGIC_FD        0x10C00001u
#define VMFS_MAGIC_FBB       0x10C00002u
#define VMFS_MAGIC_SBC       0x10C00003u
#define VMFS_MAGIC_PBC       0x10C00004u
#define VMFS_MAGIC_FDC       0x10C00005u
#define VMFS_MAGIC_PB2       0x10C00006u

/* Slot number <-> LV offset of the slot. */
static inline uint64_t vmfs_hb_slot_off(unsigned slot)
{
	return VMFS_HB_REGION_OFF + (uint64_t)slot * VMFS_HB_SLOT_SIZE;
}
/** Slot index of @off, or -1 when @off is not the start of a slot. */
int vmfs_hb_slot_of(uint64_t off);

/* Heartbeat slot, FORMAT.md §9.2 (plus an OpenVMFS extension at 0x100). */
struct vmfs_hb_slot {
	uint32_t magic;            /* VMFS_HB_MAGIC_FREE / _LIVE */
	uint64_t pos;              /* LV offset of this slot */
	uint64_t seq;              /* generation: +1 on join, leave, reclaim */
	uint64_t uptime;           /* stamp: owner's clock, us; advances on renewal */
	uint8_t  uuid[16];         /* owner, zero when free */
	uint32_t journal_block;    /* FB address of the journal (0 = none/unknown) */
	uint32_t drv_major;        /* FS version of the writer */
	uint8_t  drv_minor;
	uint8_t  lock_impl;
	char     ip[46];           /* owner address, NUL padded */
	uint64_t journal_off;      /* journalVolAddr: LV offset of the journal */
	uint8_t  replay_uuid[16];  /* replayHost: who is replaying this slot */
	uint64_t replay_hb_pos;    /* replayHostHB */
	uint64_t replay_hb_gen;    /* replayHostHBgen */
	/* OpenVMFS extension, ignored by vmfs-tools: */
	uint64_t journal_len;      /* length of the journal region, bytes */
};

/* Lock modes (FORMAT.md §9.1 `hb_lock`/mode). */
enum vmfs_lm_mode {
	VMFS_LM_FREE = 0,
	VMFS_LM_EXCL = 1,
	VMFS_LM_RO = 2,          /* read-only, shared by several hosts */
	VMFS_LM_MW = 3,          /* multi-writer, shared by several hosts */
};

struct vmfs_lock_holder {
	uint64_t hb_pos;
	uint64_t hb_gen;
	uint8_t  uuid[16];
};

/* Lock record, the first 512 bytes of every FD and resource cluster header. */
struct vmfs_lock_rec {
	uint32_t magic;
	uint64_t pos;              /* LV offset of the object (= of this record) */
	uint64_t hb_pos;           /* owner's heartbeat slot (exclusive mode) */
	uint64_t hb_seq;           /* owner's heartbeat generation */
	uint64_t token;            /* obj_seq: +1 on every acquisition */
	uint32_t mode;             /* enum vmfs_lm_mode */
	uint8_t  uuid[16];         /* owner (exclusive mode), else zero */
	uint64_t mtime;            /* kept as found */
	uint32_t num_holders;      /* shared modes */
	struct vmfs_lock_holder holders[VMFS_LOCK_MAX_HOLDERS];
	uint32_t gbl_num_holders;  /* kept as found */
	uint64_t gbl_gen;
	uint32_t gbl_brk;
};

void vmfs_hb_slot_encode(const struct vmfs_hb_slot *s, uint8_t out[512]);
/** Decode and validate (magic is free/live, pos = @expect_pos).  Bytes
 *  outside the known fields are ignored. */
int vmfs_hb_slot_decode(const uint8_t in[512], uint64_t expect_pos, struct vmfs_hb_slot *s);
/** Fresh free slot as mkvmfs writes it: magic free, pos, rest 0. */
void vmfs_hb_slot_format(unsigned slot, uint8_t out[512]);
/** Write all 2048 free slots at LV 0x300000 on @bd and flush (mkvmfs, tests). */
int vmfs_hb_region_format(struct vmfs_bdev *bd);

/** Encode over @out, keeping the bytes of @out beyond the known fields. */
void vmfs_lock_rec_encode(const struct vmfs_lock_rec *r, uint8_t out[512]);
/** Decode and validate: magic is a lock magic (or = @expect_magic when non-zero),
 *  pos = @expect_pos, mode known, holder count <= 8, owner slot inside the
 *  heartbeat region when the mode is exclusive. */
int vmfs_lock_rec_decode(const uint8_t in[512], uint64_t expect_pos, uint32_t expect_magic,
			 struct vmfs_lock_rec *r);
/** Fresh lock header as the filesystem writes it at format: magic, pos, token 1. */
void vmfs_lock_rec_format(uint32_t magic, uint64_t pos, uint8_t out[512]);

/* ---- Heartbeat (lockmgr/heartbeat.c) ------------------------------------ */

struct vmfs_hb;

/* Events reported to the owner of the heartbeat (from the renewal threads). */
enum vmfs_hb_event {
	VMFS_HB_EV_FENCED = 1,    /* renewal overdue: I/O stopped */
	VMFS_HB_EV_UNFENCED,      /* renewed in time after all: I/O resumed */
	VMFS_HB_EV_LOST,          /* slot taken by a reclaimer: every lock is gone */
	VMFS_HB_EV_REJOINED,      /* joined again as a new generation, after the
				   * reclaimer freed our old slot (our journal is
				   * replayed: reopen it now) */
};

struct vmfs_hb_opts {
	uint8_t  uuid[16];         /* host UUID; all zero = generate one */
	uint64_t io_timeout_us;    /* 0 = default (2 s) */
	uint64_t journal_off;      /* journal region recorded in the slot (0 = none) */
	uint64_t journal_len;
	uint32_t journal_block;    /* optional FB address of the journal, for ESXi logs */
	const char *ip;            /* optional owner address string */
	bool no_rejoin;            /* after EV_LOST stay out instead of rejoining */
	bool quiet;                /* no log lines on stderr */
	/* Called from the heartbeat threads; must not block for long. */
	void (*on_event)(void *arg, enum vmfs_hb_event ev, unsigned slot, uint64_t gen);
	void *event_arg;
};

/** Create a heartbeat context on @bd (not joined yet).  @bd is used for every
 *  heartbeat I/O and must stay open until vmfs_hb_destroy().  @bd may be NULL
 *  and given later with vmfs_hb_set_bdev() (to stack a guard under it). */
int vmfs_hb_create(struct vmfs_bdev *bd, const struct vmfs_hb_opts *o, struct vmfs_hb **out);
/** Set the device for heartbeat I/O (before join). */
int vmfs_hb_set_bdev(struct vmfs_hb *hb, struct vmfs_bdev *bd);
/** Leave if joined, stop threads, free. */
void vmfs_hb_destroy(struct vmfs_hb *hb);

/** Join: take a free slot with ATS and start renewing it every hb_interval.
 *  -ENOSPC when every slot is live, -EUCLEAN when no slot is valid (the
 *  region was never formatted, or this is not the LV). */
int vmfs_hb_join(struct vmfs_hb *hb);
/** Record (another) journal region in our slot: takes effect at once with a
 *  synchronous renewal (so it is on disk before the first commit to it), and
 *  in every later renewal and rejoin.  For hosts that allocate their journal
 *  on the volume after joining. */
int vmfs_hb_set_journal(struct vmfs_hb *hb, uint64_t off, uint64_t len, uint32_t block);
/** Clean leave: stop renewing, free the slot with seq+1. */
int vmfs_hb_leave(struct vmfs_hb *hb);

/** Our identity: slot index (-1 if not joined), generation, uuid. */
int vmfs_hb_slot(const struct vmfs_hb *hb);
uint64_t vmfs_hb_gen(const struct vmfs_hb *hb);
void vmfs_hb_uuid(const struct vmfs_hb *hb, uint8_t uuid[16]);
const struct vmfs_timeouts *vmfs_hb_timeouts(const struct vmfs_hb *hb);
/** Incremented every time we lose our slot (EV_LOST); lock handles taken in
 *  an older epoch are void. */
uint64_t vmfs_hb_epoch(const struct vmfs_hb *hb);

/** May this host issue I/O to the volume now?  False before join, after a
 *  lost slot, and from S + hb_timeout - io_timeout on, where S is the
 *  submission time of the newest successful renewal.  Lock-free. */
bool vmfs_hb_io_allowed(const struct vmfs_hb *hb);
/** Monotonic time (us) from which I/O is refused (0 = refused now). */
uint64_t vmfs_hb_fence_deadline(const struct vmfs_hb *hb);

/** A device over @lower that fails every read, write, flush and ATS outside
 *  the heartbeat region with -EIO while !vmfs_hb_io_allowed(@hb).  Stack it
 *  directly on the physical device, under everything else (fault wrappers,
 *  the volume), so that a request delayed on the way is checked when it
 *  would reach the disk.  Does not take ownership of @lower or @hb. */
int vmfs_hb_guard_wrap(struct vmfs_hb *hb, struct vmfs_bdev *lower, struct vmfs_bdev **out);
struct vmfs_hb_guard_opts {
	/* Device offset of the heartbeat region on @lower (heartbeat I/O always
	 * passes), UINT64_MAX if the region is not on this device.  For a VMFS
	 * extent holding LV segment 0: 0x1100000 + 0x300000. */
	uint64_t hb_region_off;
	/* Let reads through before the first join (to open the volume's headers). */
	bool reads_before_join;
};
/** Same, for a guard on one physical extent under the volume (one per extent). */
int vmfs_hb_guard_wrap_opts(struct vmfs_hb *hb, struct vmfs_bdev *lower,
			    const struct vmfs_hb_guard_opts *o, struct vmfs_bdev **out);
/* Typical stack for a host: file = vmfs_bdev_open(); vmfs_hb_create(NULL, ...);
 * vmfs_hb_guard_wrap(hb, file, &g); [fault or volume device over g = top];
 * vmfs_hb_set_bdev(hb, top); vmfs_hb_join(hb); locks and journal use top. */

/* How we see another slot (liveness on our own monotonic clock). */
enum vmfs_host_state {
	VMFS_HOST_FREE = 0,
	VMFS_HOST_SELF,
	VMFS_HOST_ALIVE,         /* stamp moved less than hb_timeout ago */
	VMFS_HOST_SUSPECT,       /* unchanged, but not yet for hb_timeout */
	VMFS_HOST_DEAD,          /* same stamp for hb_timeout */
	VMFS_HOST_REPLAYING,     /* a reclaimer is replaying its journal */
};
const char *vmfs_host_state_name(enum vmfs_host_state s);

struct vmfs_hb_host {
	unsigned slot;
	enum vmfs_host_state state;
	uint64_t age_us;          /* how long we have seen the same stamp */
	struct vmfs_hb_slot rec;
};

/** Read slot @slot now, update our observation of it and classify it. */
int vmfs_hb_peek(struct vmfs_hb *hb, unsigned slot, struct vmfs_hb_host *out);
/** Read the whole region; fill up to @max non-free slots.  \return count. */
int vmfs_hb_list(struct vmfs_hb *hb, struct vmfs_hb_host *out, unsigned max);
/** Find the live slot of @uuid.  \return slot index or -ENOENT. */
int vmfs_hb_find(struct vmfs_hb *hb, const uint8_t uuid[16]);

/* Called by vmfs_hb_reclaim() once the dead host's slot is ours to replay:
 * replay its journal (slot->journal_off / journal_len) and return 0. */
typedef int (*vmfs_hb_replay_fn)(void *arg, const struct vmfs_hb_slot *dead);

/** Reclaim the dead host in @slot: ATS its slot to {replayHost = me}, run
 *  @replay (may be NULL), then ATS the slot free with seq+1, so every lock
 *  naming the old generation becomes stale.  If another live host is already
 *  replaying it, wait (up to reclaim_wait) for the slot to turn free.
 *  \return 0 when the slot is free (by us or by someone else), -EBUSY when the
 *  host is alive, -EAGAIN when it is not yet known dead, or the replay error
 *  (the slot then stays marked as being replayed by us). */
int vmfs_hb_reclaim(struct vmfs_hb *hb, unsigned slot, vmfs_hb_replay_fn replay, void *arg);

/** Reclaim, without waiting for hb_timeout, every live slot that carries our
 *  own UUID but is not our current slot: the slots of an earlier incarnation
 *  of this host (a restarted vmfsd with a persistent host UUID).  Only safe
 *  when the caller knows that incarnation is gone (e.g. it held a lock file
 *  in the state directory that we now hold).  \return number reclaimed. */
int vmfs_hb_reclaim_own(struct vmfs_hb *hb, vmfs_hb_replay_fn replay, void *arg);

/** Render a UUID as vmfs-tools prints it (xxxxxxxx-xxxxxxxx-xxxx-xxxxxxxxxxxx). */
void vmfs_uuid_str(const uint8_t uuid[16], char out[36]);

/* ---- Locks (lockmgr/lock.c) --------------------------------------------- */

/* Who is in the way (filled on -EBUSY / -EOWNERDEAD / -EUSERS). */
struct vmfs_lock_conflict {
	enum vmfs_lm_mode mode;  /* mode of the record */
	int slot;                  /* holder's heartbeat slot */
	uint64_t hb_gen;
	uint8_t uuid[16];          /* holder's host UUID */
};

/* A lock handle: caller-allocated, one per object per host.  Not thread-safe
 * by itself (serialise use of one handle). */
struct vmfs_lock {
	struct vmfs_hb *hb;
	struct vmfs_bdev *bd;
	uint64_t off;              /* LV offset of the record */
	uint32_t magic;            /* expected object magic, 0 = any lock magic */
	enum vmfs_lm_mode mode;  /* mode we hold, FREE when not held */
	uint64_t token;            /* token of our current / last hold */
	uint64_t prev_token;       /* token of the hold before that (0 = none) */
	uint64_t epoch;            /* heartbeat epoch the hold belongs to */
	uint64_t my_pos, my_gen;   /* our slot and generation when taken */
	uint8_t  last[512];        /* record bytes as we last wrote/read them */
	bool     valid;            /* last[] holds a record */
};

/** Prepare a handle for the record at LV offset @off (no I/O). */
void vmfs_lock_init(struct vmfs_lock *l, struct vmfs_hb *hb, struct vmfs_bdev *bd,
		    uint64_t off, uint32_t magic);

/** Acquire in @mode (EXCL, RO or MW) following DESIGN.md step 5.  Free or
 *  stale → taken, token+1.  Already held by us in @mode → 0.  \return 0,
 *  -EBUSY (live holder, @c filled), -EOWNERDEAD (dead holder: reclaim
 *  c->slot then retry; a silent holder not yet watched for hb_timeout is
 *  still -EBUSY), -EUSERS, -ESHUTDOWN (not joined / heartbeat lost), -EIO
 *  (fenced), -EUCLEAN (bad record).  @c may be NULL. */
int vmfs_lock_acquire(struct vmfs_lock *l, enum vmfs_lm_mode mode, struct vmfs_lock_conflict *c);

/** Retry vmfs_lock_acquire() every lock_retry until @timeout_us passes
 *  (-ETIMEDOUT, @c names the last holder).  If @replay is given, dead holders
 *  are reclaimed with it on the way; otherwise -EOWNERDEAD is returned. */
int vmfs_lock_acquire_wait(struct vmfs_lock *l, enum vmfs_lm_mode mode, uint64_t timeout_us,
			   vmfs_hb_replay_fn replay, void *arg, struct vmfs_lock_conflict *c);

/** Release our hold.  -ENOLCK if the lock was broken meanwhile (the caller
 *  must drop what it cached and must not write the object). */
int vmfs_lock_release(struct vmfs_lock *l);

/** Change the mode of a held lock (RO → EXCL upgrade when we are the only
 *  live holder, EXCL → RO/MW downgrade).  -EBUSY/-EOWNERDEAD as acquire. */
int vmfs_lock_change_mode(struct vmfs_lock *l, enum vmfs_lm_mode mode, struct vmfs_lock_conflict *c);

/** Is our hold still on disk as we wrote it?  Re-reads the record: 0 when it
 *  is, -ENOLCK when not. */
int vmfs_lock_verify(struct vmfs_lock *l);

/** Did the token move since our previous hold, i.e. may another host have
 *  changed the object?  True on the first hold.  Valid after acquire. */
bool vmfs_lock_token_moved(const struct vmfs_lock *l);

/** Hand an exclusive lock we hold to the live host in @slot (live migration):
 *  ATS the record to {owner = that slot and generation, token+1} while we
 *  hold it.  No timeout involved.  Our handle becomes not held. */
int vmfs_lock_handoff(struct vmfs_lock *l, unsigned slot);
/** Target side: confirm a hand-off by reading the record back.  0 and held
 *  in exclusive mode when the record names us, -ENOLCK otherwise. */
int vmfs_lock_accept(struct vmfs_lock *l);

/** Read and decode the record at @off (for `vmfsctl locks`, tests). */
int vmfs_lock_read(struct vmfs_bdev *bd, uint64_t off, uint32_t magic, struct vmfs_lock_rec *r);

const char *vmfs_lock_mode_name(enum vmfs_lm_mode m);

#ifdef __cplusplus
}
#endif
#endif
