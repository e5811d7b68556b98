/*
 * Encode/decode of the heartbeat slot (FORMAT.md §9.2) and the metadata lock
 * record (§9.1).  Explicit little-endian; never a struct memcpy.  The fields
 * vmfs-tools reads (magic, pos, seq, uptime, uuid, journal_block; lock magic,
 * pos, hb_pos, hb_seq, obj_seq, hb_lock, hb_uuid, mtime) sit at exactly the
 * offsets it reads them from.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Heartbeat slot offsets. */
enum {
	HB_MAGIC = 0x00, HB_POS = 0x04, HB_SEQ = 0x0C, HB_UPTIME = 0x14, HB_UUID = 0x1C,
	HB_JBLOCK = 0x2C, HB_DRV_X = 0x30, HB_DRV_Y = 0x34, HB_LOCKIMPL = 0x35, HB_IP = 0x36,
	HB_JVOLADDR = 0x64, HB_REPLAY_UUID = 0x6C, HB_REPLAY_HB = 0x94, HB_REPLAY_GEN = 0x9C,
	HB_KNOWN_END = 0xA4,
	/* OpenVMFS extension (beyond every field ESXi or vmfs-tools is known to use). */
	HB_EXT_MAGIC = 0x100, HB_EXT_JLEN = 0x108, HB_EXT_END = 0x110,
};
#define HB_EXT_MAGIC_VAL 0x4C4A564Fu /* "OVJL" */
#define HB_IP_LEN 46

_Static_assert(HB_POS == HB_MAGIC + 4, "hb pos");
_Static_assert(HB_SEQ == HB_POS + 8, "hb seq");
_Static_assert(HB_UPTIME == HB_SEQ + 8, "hb uptime");
_Static_assert(HB_UUID == HB_UPTIME + 8, "hb uuid");
_Static_assert(HB_JBLOCK == HB_UUID + 16, "hb journal block");
_Static_assert(HB_DRV_X == HB_JBLOCK + 4, "hb drv x");
_Static_assert(HB_DRV_Y == HB_DRV_X + 4, "hb drv y");
_Static_assert(HB_IP == HB_LOCKIMPL + 1, "hb ip");
_Static_assert(HB_JVOLADDR == HB_IP + HB_IP_LEN, "hb journalVolAddr");
_Static_assert(HB_REPLAY_UUID == HB_JVOLADDR + 8, "hb replayHost");
_Static_assert(HB_REPLAY_GEN == HB_REPLAY_HB + 8, "hb replayHostHBgen");
_Static_assert(HB_KNOWN_END == HB_REPLAY_GEN + 8, "hb end");
_Static_assert(HB_EXT_END <= VMFS_HB_SLOT_SIZE, "hb ext fits");
_Static_assert(sizeof(((struct vmfs_hb_slot *)0)->ip) == HB_IP_LEN, "ip size");
_Static_assert(VMFS_HB_REGION_OFF + VMFS_HB_REGION_LEN == 0x400000ull, "hb region end");

/* Lock record offsets. */
enum {
	LK_MAGIC = 0x00, LK_POS = 0x04, LK_HBPOS = 0x0C, LK_HBSEQ = 0x14, LK_OBJSEQ = 0x1C,
	LK_MODE = 0x24, LK_UUID = 0x28, LK_MTIME = 0x38, LK_NHOLD = 0x40, LK_HOLDERS = 0x44,
	LK_HOLDER_SIZE = 32, LK_GBL_NHOLD = 0x164, LK_GBL_GEN = 0x168, LK_GBL_BRK = 0x170,
	LK_END = 0x174,
};
_Static_assert(LK_POS == LK_MAGIC + 4, "lock pos");
_Static_assert(LK_HBPOS == LK_POS + 8, "lock hb_pos");
_Static_assert(LK_HBSEQ == LK_HBPOS + 8, "lock hb_seq");
_Static_assert(LK_OBJSEQ == LK_HBSEQ + 8, "lock obj_seq");
_Static_assert(LK_MODE == LK_OBJSEQ + 8, "lock mode");
_Static_assert(LK_UUID == LK_MODE + 4, "lock uuid");
_Static_assert(LK_MTIME == LK_UUID + 16, "lock mtime");
_Static_assert(LK_NHOLD == LK_MTIME + 8, "lock numHolders");
_Static_assert(LK_HOLDERS == LK_NHOLD + 4, "lock holders");
_Static_assert(LK_HOLDERS + VMFS_LOCK_MAX_HOLDERS * LK_HOLDER_SIZE <= LK_GBL_NHOLD, "holders fit");
_Static_assert(LK_END <= VMFS_LOCK_REC_SIZE, "lock record fits");

int vmfs_hb_slot_of(uint64_t off)
{
	if (off < VMFS_HB_REGION_OFF || off >= VMFS_HB_REGION_OFF + VMFS_HB_REGION_LEN)
		return -1;
	if ((off - VMFS_HB_REGION_OFF) % VMFS_HB_SLOT_SIZE)
		return -1;
	return (int)((off - VMFS_HB_REGION_OFF) / VMFS_HB_SLOT_SIZE);
}

void vmfs_hb_slot_encode(const struct vmfs_hb_slot *s, uint8_t out[512])
{
	memset(out, 0, VMFS_HB_SLOT_SIZE);
	put_le32(out + HB_MAGIC, s->magic);
	put_le64(out + HB_POS, s->pos);
	put_le64(out + HB_SEQ, s->seq);
	put_le64(out + HB_UPTIME, s->uptime);
	memcpy(out + HB_UUID, s->uuid, 16);
	put_le32(out + HB_JBLOCK, s->journal_block);
	put_le32(out + HB_DRV_X, s->drv_major);
	out[HB_DRV_Y] = s->drv_minor;
	out[HB_LOCKIMPL] = s->lock_impl;
	memcpy(out + HB_IP, s->ip, HB_IP_LEN);
	out[HB_IP + HB_IP_LEN - 1] = 0;
	put_le64(out + HB_JVOLADDR, s->journal_off);
	memcpy(out + HB_REPLAY_UUID, s->replay_uuid, 16);
	put_le64(out + HB_REPLAY_HB, s->replay_hb_pos);
	put_le64(out + HB_REPLAY_GEN, s->replay_hb_gen);
	if (s->journal_len) {
		put_le32(out + HB_EXT_MAGIC, HB_EXT_MAGIC_VAL);
		put_le64(out + HB_EXT_JLEN, s->journal_len);
	}
}

int vmfs_hb_slot_decode(const uint8_t in[512], uint64_t expect_pos, struct vmfs_hb_slot *s)
{
	memset(s, 0, sizeof(*s));
	s->magic = get_le32(in + HB_MAGIC);
	s->pos = get_le64(in + HB_POS);
	if (s->magic != VMFS_HB_MAGIC_FREE && s->magic != VMFS_HB_MAGIC_LIVE)
		return -EUCLEAN;
	if (s->pos != expect_pos)
		return -EUCLEAN;
	s->seq = get_le64(in + HB_SEQ);
	s->uptime = get_le64(in + HB_UPTIME);
	memcpy(s->uuid, in + HB_UUID, 16);
	s->journal_block = get_le32(in + HB_JBLOCK);
	s->drv_major = get_le32(in + HB_DRV_X);
	s->drv_minor = in[HB_DRV_Y];
	s->lock_impl = in[HB_LOCKIMPL];
	memcpy(s->ip, in + HB_IP, HB_IP_LEN);
	s->ip[HB_IP_LEN - 1] = 0;
	s->journal_off = get_le64(in + HB_JVOLADDR);
	memcpy(s->replay_uuid, in + HB_REPLAY_UUID, 16);
	s->replay_hb_pos = get_le64(in + HB_REPLAY_HB);
	s->replay_hb_gen = get_le64(in + HB_REPLAY_GEN);
	if (get_le32(in + HB_EXT_MAGIC) == HB_EXT_MAGIC_VAL)
		s->journal_len = get_le64(in + HB_EXT_JLEN);
	if (s->replay_hb_pos && vmfs_hb_slot_of(s->replay_hb_pos) < 0)
		return -EUCLEAN;
	return 0;
}

void vmfs_hb_slot_format(unsigned slot, uint8_t out[512])
{
	memset(out, 0, VMFS_HB_SLOT_SIZE);
	put_le32(out + HB_MAGIC, VMFS_HB_MAGIC_FREE);
	put_le64(out + HB_POS, vmfs_hb_slot_off(slot));
}

void vmfs_lock_rec_encode(const struct vmfs_lock_rec *r, uint8_t out[512])
{
	put_le32(out + LK_MAGIC, r->magic);
	put_le64(out + LK_POS, r->pos);
	put_le64(out + LK_HBPOS, r->hb_pos);
	put_le64(out + LK_HBSEQ, r->hb_seq);
	put_le64(out + LK_OBJSEQ, r->token);
	put_le32(out + LK_MODE, r->mode);
	memcpy(out + LK_UUID, r->uuid, 16);
	put_le64(out + LK_MTIME, r->mtime);
	put_le32(out + LK_NHOLD, r->num_holders);
	for (unsigned i = 0; i < VMFS_LOCK_MAX_HOLDERS; i++) {
		uint8_t *h = out + LK_HOLDERS + i * LK_HOLDER_SIZE;

		put_le64(h, r->holders[i].hb_pos);
		put_le64(h + 8, r->holders[i].hb_gen);
		memcpy(h + 16, r->holders[i].uuid, 16);
	}
	put_le32(out + LK_GBL_NHOLD, r->gbl_num_holders);
	put_le64(out + LK_GBL_GEN, r->gbl_gen);
	put_le32(out + LK_GBL_BRK, r->gbl_brk);
}

static bool lock_magic_ok(uint32_t m)
{
	return m >= VMFS_MAGIC_FD && m <= VMFS_MAGIC_PB2;
}

int vmfs_lock_rec_decode(const uint8_t in[512], uint64_t expect_pos, uint32_t expect_magic,
			 struct vmfs_lock_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->magic = get_le32(in + LK_MAGIC);
	if (expect_magic ? r->magic != expect_magic : !lock_magic_ok(r->magic))
		return -EUCLEAN;
	r->pos = get_le64(in + LK_POS);
	if (r->pos != expect_pos)
		return -EUCLEAN;
	r->hb_pos = get_le64(in + LK_HBPOS);
	r->hb_seq = get_le64(in + LK_HBSEQ);
	r->token = get_le64(in + LK_OBJSEQ);
	r->mode = get_le32(in + LK_MODE);
	memcpy(r->uuid, in + LK_UUID, 16);
	r->mtime = get_le64(in + LK_MTIME);
	r->num_holders = get_le32(in + LK_NHOLD);
	for (unsigned i = 0; i < VMFS_LOCK_MAX_HOLDERS; i++) {
		const uint8_t *h = in + LK_HOLDERS + i * LK_HOLDER_SIZE;

		r->holders[i].hb_pos = get_le64(h);
		r->holders[i].hb_gen = get_le64(h + 8);
		memcpy(r->holders[i].uuid, h + 16, 16);
	}
	r->gbl_num_holders = get_le32(in + LK_GBL_NHOLD);
	r->gbl_gen = get_le64(in + LK_GBL_GEN);
	r->gbl_brk = get_le32(in + LK_GBL_BRK);
	if (r->mode > VMFS_LM_MW)
		return -EUCLEAN;
	if (r->num_holders > VMFS_LOCK_MAX_HOLDERS)
		return -EUCLEAN;
	if (r->mode == VMFS_LM_EXCL && vmfs_hb_slot_of(r->hb_pos) < 0)
		return -EUCLEAN;
	if (r->mode == VMFS_LM_RO || r->mode == VMFS_LM_MW) {
		if (r->num_holders == 0)
			return -EUCLEAN;
		for (unsigned i = 0; i < r->num_holders; i++)
			if (vmfs_hb_slot_of(r->holders[i].hb_pos) < 0)
				return -EUCLEAN;
	}
	return 0;
}

void vmfs_lock_rec_format(uint32_t magic, uint64_t pos, uint8_t out[512])
{
	memset(out, 0, VMFS_LOCK_REC_SIZE);
	put_le32(out + LK_MAGIC, magic);
	put_le64(out + LK_POS, pos);
	put_le64(out + LK_OBJSEQ, 1);
}

void vmfs_uuid_str(const uint8_t u[16], char out[36])
{
	snprintf(out, 36, "%08x-%08x-%04x-%02x%02x%02x%02x%02x%02x",
		 get_le32(u), get_le32(u + 4), (unsigned)(u[8] | (u[9] << 8)),
		 u[10], u[11], u[12], u[13], u[14], u[15]);
}

const char *vmfs_lock_mode_name(enum vmfs_lm_mode m)
{
	switch (m) {
	case VMFS_LM_FREE: return "free";
	case VMFS_LM_EXCL: return "exclusive";
	case VMFS_LM_RO: return "read-only";
	case VMFS_LM_MW: return "multi-writer";
	}
	return "?";
}

const char *vmfs_host_state_name(enum vmfs_host_state s)
{
	switch (s) {
	case VMFS_HOST_FREE: return "free";
	case VMFS_HOST_SELF: return "self";
	case VMFS_HOST_ALIVE: return "alive";
	case VMFS_HOST_SUSPECT: return "suspect";
	case VMFS_HOST_DEAD: return "dead";
	case VMFS_HOST_REPLAYING: return "replaying";
	}
	return "?";
}
