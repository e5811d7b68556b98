/* SCSI logical unit: initialisation, sense data, and the command dispatch
 * that applies the checks common to every command (LUN exists, unit
 * attention, reservation conflict) before spc.c or sbc.c run it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdu.h"
#include "scsi.h"

int scsi_lun_init(struct scsi_lun *lun, struct backing *bs, uint16_t lunno, uint64_t id,
		  const char *target_name)
{
	pthread_rwlockattr_t a;

	memset(lun, 0, sizeof(*lun));
	if (!bs->block_size || (bs->block_size & (bs->block_size - 1)))
		return -EINVAL;
	lun->bs = bs;
	lun->lun = lunno;
	lun->id = id;
	snprintf(lun->serial, sizeof(lun->serial), "%016llx", (unsigned long long)id);
	snprintf(lun->target_name, sizeof(lun->target_name), "%s", target_name);
	lun->block_size = bs->block_size;
	lun->block_shift = (unsigned)__builtin_ctz(bs->block_size);
	lun->nblocks = bs->size >> lun->block_shift;
	lun->wce = true;
	pthread_rwlockattr_init(&a);
	/* Writers (COMPARE AND WRITE) must not starve behind a stream of I/O. */
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&lun->io_lock, &a);
	pthread_rwlockattr_destroy(&a);
	pthread_mutex_init(&lun->lock, NULL);
	return 0;
}

void scsi_lun_destroy(struct scsi_lun *lun)
{
	if (!lun->bs)
		return;
	backing_close(lun->bs);
	lun->bs = NULL;
	pthread_rwlock_destroy(&lun->io_lock);
	pthread_mutex_destroy(&lun->lock);
}

static void set_sense_full(struct scsi_task *t, uint8_t key, uint16_t asc, bool info_valid,
			   uint64_t info, bool desc)
{
	memset(t->sense, 0, sizeof(t->sense));
	t->status = SAM_CHECK_CONDITION;
	if (desc) {
		t->sense[0] = 0x72;
		t->sense[1] = key;
		t->sense[2] = (uint8_t)(asc >> 8);
		t->sense[3] = (uint8_t)asc;
		if (info_valid) {
			t->sense[7] = 12;
			t->sense[8] = 0x00;  /* information descriptor */
			t->sense[9] = 0x0a;
			t->sense[10] = 0x80; /* VALID */
			put_be64(t->sense + 12, info);
			t->sense_len = 20;
		} else {
			t->sense_len = 8;
		}
		return;
	}
	t->sense[0] = 0x70 | (info_valid ? 0x80 : 0);
	t->sense[2] = key;
	if (info_valid)
		put_be32(t->sense + 3, (uint32_t)info);
	t->sense[7] = 10;
	t->sense[12] = (uint8_t)(asc >> 8);
	t->sense[13] = (uint8_t)asc;
	t->sense_len = 18;
}

void scsi_set_sense(struct scsi_task *t, uint8_t key, uint16_t asc)
{
	set_sense_full(t, key, asc, false, 0, t->lun && t->lun->d_sense);
}

void scsi_set_sense_info(struct scsi_task *t, uint8_t key, uint16_t asc, uint64_t info);
void scsi_set_sense_info(struct scsi_task *t, uint8_t key, uint16_t asc, uint64_t info)
{
	set_sense_full(t, key, asc, true, info, t->lun && t->lun->d_sense);
}

void scsi_copy_in(struct scsi_task *t, const void *buf, uint32_t len)
{
	const uint8_t *p = buf;
	uint32_t left = len < t->in_cap ? len : t->in_cap;

	t->in_len = len;
	for (int i = 0; i < t->in_iovcnt && left; i++) {
		size_t n = t->in_iov[i].iov_len < left ? t->in_iov[i].iov_len : left;

		memcpy(t->in_iov[i].iov_base, p, n);
		p += n;
		left -= (uint32_t)n;
	}
}

/* Commands that run whatever unit attention is pending. */
static bool ua_exempt(uint8_t op)
{
	return op == 0x12 /* INQUIRY */ || op == 0xa0 /* REPORT LUNS */ || op == 0x03;
}

static void no_lun(struct scsi_task *t)
{
	uint8_t op = t->cdb[0];

	if (op == 0x12) {           /* INQUIRY: peripheral qualifier 3 */
		uint8_t d[36] = { 0x7f, 0, 0x06, 0x12, 31 };
		uint32_t alloc = get_be16(t->cdb + 3);

		if (t->cdb[1] & 1) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
			return;
		}
		memcpy(d + 8, "OpenVMFS", 8);
		memcpy(d + 16, "NO LUN          ", 16);
		memcpy(d + 32, "0001", 4);
		scsi_copy_in(t, d, alloc < sizeof(d) ? alloc : sizeof(d));
		return;
	}
	if (op == 0xa0 || op == 0x03) {
		if (spc_exec(t) == 0)
			return;
	}
	scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
}

void scsi_exec(struct scsi_task *t)
{
	struct scsi_lun *lun = t->lun;
	uint16_t ua;

	t->status = SAM_GOOD;
	t->sense_len = 0;
	t->in_len = 0;
	t->residual_set = false;
	if (!t->cdb_len) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
	if (!lun) {
		no_lun(t);
		return;
	}
	if (!ua_exempt(t->cdb[0]) && t->take_ua && t->take_ua(t->ua_arg, lun->lun, &ua)) {
		scsi_set_sense(t, SK_UNIT_ATTENTION, ua);
		return;
	}
	if (__atomic_load_n(&lun->restricted, __ATOMIC_ACQUIRE)) {
		bool c;

		pthread_mutex_lock(&lun->lock);
		c = pr_conflict(t);
		pthread_mutex_unlock(&lun->lock);
		if (c) {
			t->status = SAM_RESERVATION_CONFLICT;
			return;
		}
	}
	if (spc_exec(t) == -ENOENT && sbc_exec(t) == -ENOENT)
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
}

void scsi_lun_reset(struct scsi_lun *lun, const char *issuer)
{
	pthread_mutex_lock(&lun->lock);
	lun->res6 = false;
	lun->restricted = lun->pr_res || lun->nregs;
	pthread_mutex_unlock(&lun->lock);
	if (lun->ua_fn)
		lun->ua_fn(lun->ua_arg, lun, NULL, NULL, ASC_BUS_DEVICE_RESET);
}

void scsi_nexus_lost(struct scsi_lun *lun, const char *nexus)
{
	pthread_mutex_lock(&lun->lock);
	if (lun->res6 && !strcmp(lun->res6_holder, nexus)) {
		lun->res6 = false;
		lun->restricted = lun->pr_res || lun->nregs;
	}
	pthread_mutex_unlock(&lun->lock);
}
