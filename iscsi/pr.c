/* Persistent reservations (SPC-4 §5.12): PERSISTENT RESERVE IN/OUT and the
 * conflict rules applied to every command.  State is per LUN, in memory
 * (APTPL is not offered), keyed by I_T nexus name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdu.h"
#include "scsi.h"

#define PR_WE    1
#define PR_EA    3
#define PR_WERO  5
#define PR_EARO  6
#define PR_WEAR  7
#define PR_EAAR  8

static int find_reg(struct scsi_lun *l, const char *nexus)
{
	for (int i = 0; i < l->nregs; i++)
		if (!strcmp(l->regs[i].nexus, nexus))
			return i;
	return -1;
}

static bool all_reg_type(uint8_t type)
{
	return type == PR_WEAR || type == PR_EAAR;
}

static bool is_holder(struct scsi_lun *l, const char *nexus)
{
	if (!l->pr_res)
		return false;
	if (all_reg_type(l->pr_type))
		return find_reg(l, nexus) >= 0;
	return !strcmp(l->pr_holder, nexus);
}

static void update_restricted(struct scsi_lun *l)
{
	__atomic_store_n(&l->restricted, l->res6 || l->pr_res || l->nregs, __ATOMIC_RELEASE);
}

/* Commands allowed whatever the reservations say. */
static bool always_allowed(const uint8_t *c)
{
	switch (c[0]) {
	case 0x12: case 0xa0: case 0x03: case 0x5e: case 0x25: case 0x00:
	case 0x1a: case 0x5a:
		return true;
	case 0x9e:
		return (c[1] & 0x1f) == 0x10;
	case 0xa3:
		return true;
	}
	return false;
}

static bool is_read_class(const uint8_t *c)
{
	switch (c[0]) {
	case 0x08: case 0x28: case 0xa8: case 0x88: case 0x2f: case 0xaf: case 0x8f:
	case 0x34: case 0x90: case 0x37: case 0xb7:
		return true;
	case 0x9e:
		return (c[1] & 0x1f) == 0x12;
	}
	return false;
}

bool pr_conflict(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	const uint8_t *c = t->cdb;
	const char *me = t->nexus->name;
	bool reg;

	if (l->res6) {
		if (!strcmp(l->res6_holder, me))
			return false;
		switch (c[0]) {
		case 0x12: case 0xa0: case 0x03: case 0x17:
			return false;
		case 0x9e: /* READ CAPACITY(16) is allowed by SPC-2 rules */
			return (c[1] & 0x1f) != 0x10;
		case 0x25:
			return false;
		}
		return true;
	}
	if (c[0] == 0x5f)
		return false;     /* PR OUT does its own checks */
	if (!l->pr_res) {
		/* Registrations without a reservation restrict only RESERVE(6) */
		if ((c[0] == 0x16 || c[0] == 0x17) && l->nregs)
			return c[0] == 0x16;
		return false;
	}
	if (c[0] == 0x16 || c[0] == 0x17)
		return c[0] == 0x16 || !is_holder(l, me);
	if (always_allowed(c) || is_holder(l, me))
		return false;
	reg = find_reg(l, me) >= 0;
	switch (l->pr_type) {
	case PR_WE:
		return !is_read_class(c);
	case PR_EA:
		return true;
	case PR_WERO: case PR_WEAR:
		return !reg && !is_read_class(c);
	case PR_EARO: case PR_EAAR:
		return !reg;
	}
	return false;
}

/* ---- PERSISTENT RESERVE IN ------------------------------------------------ */

static uint32_t transport_id(const char *nexus, uint8_t *d)
{
	/* iSCSI TransportID format 01b: name,i,0x<isid>, NUL, padded to 4 */
	size_t l = strlen(nexus) + 1;
	size_t padded = (l + 3) & ~(size_t)3;

	if (padded < 20)
		padded = 20;
	d[0] = 0x45;
	d[1] = 0;
	put_be16(d + 2, (uint16_t)padded);
	memset(d + 4, 0, padded);
	memcpy(d + 4, nexus, l);
	return 4 + (uint32_t)padded;
}

void pr_in(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	const uint8_t *c = t->cdb;
	uint32_t alloc = get_be16(c + 7), n = 8;
	unsigned sa = c[1] & 0x1f;
	uint8_t *d = calloc(1, 8 + SCSI_PR_MAX_REGS * (24 + 4 + SCSI_NEXUS_MAX + 4));

	if (!d) {
		scsi_set_sense(t, SK_HARDWARE_ERROR, ASC_INTERNAL_FAILURE);
		return;
	}
	pthread_mutex_lock(&l->lock);
	put_be32(d, l->pr_gen);
	switch (sa) {
	case 0: /* READ KEYS */
		for (int i = 0; i < l->nregs; i++, n += 8)
			put_be64(d + n, l->regs[i].key);
		put_be32(d + 4, n - 8);
		break;
	case 1: /* READ RESERVATION */
		if (l->pr_res) {
			int h = all_reg_type(l->pr_type) ? -1 : find_reg(l, l->pr_holder);

			put_be64(d + 8, h >= 0 ? l->regs[h].key : 0);
			d[21] = l->pr_type & 0x0f;
			n = 24;
		}
		put_be32(d + 4, n - 8);
		break;
	case 2: /* REPORT CAPABILITIES */
		memset(d, 0, 8);
		put_be16(d, 8);
		d[2] = 0x10;            /* CRH */
		d[3] = 0x80;            /* TMV */
		d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
		d[5] = 0x01;
		n = 8;
		break;
	case 3: /* READ FULL STATUS */
		for (int i = 0; i < l->nregs; i++) {
			uint8_t *e = d + n;
			uint32_t tl;

			put_be64(e, l->regs[i].key);
			if (is_holder(l, l->regs[i].nexus)) {
				e[12] = 0x01;
				e[13] = l->pr_type & 0x0f;
			}
			put_be16(e + 18, t->nexus->rel_port);
			tl = transport_id(l->regs[i].nexus, e + 24);
			put_be32(e + 20, tl);
			n += 24 + tl;
		}
		put_be32(d + 4, n - 8);
		break;
	default:
		pthread_mutex_unlock(&l->lock);
		free(d);
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	pthread_mutex_unlock(&l->lock);
	scsi_copy_in(t, d, alloc < n ? alloc : n);
	free(d);
}

/* ---- PERSISTENT RESERVE OUT ---------------------------------------------- */

static void remove_reg(struct scsi_lun *l, int i)
{
	l->regs[i] = l->regs[l->nregs - 1];
	l->nregs--;
}

/* UAs are posted after the lock is dropped. */
struct ua_list {
	char nexus[SCSI_PR_MAX_REGS][SCSI_NEXUS_MAX];
	uint16_t asc[SCSI_PR_MAX_REGS];
	int n;
};

static void ua_add(struct ua_list *u, const char *nexus, uint16_t asc)
{
	if (u->n < SCSI_PR_MAX_REGS) {
		snprintf(u->nexus[u->n], SCSI_NEXUS_MAX, "%s", nexus);
		u->asc[u->n++] = asc;
	}
}

void pr_out(struct scsi_task *t)
{
	struct scsi_lun *l = t->lun;
	const uint8_t *c = t->cdb, *p = t->out;
	unsigned sa = c[1] & 0x1f, scope = c[2] >> 4, type = c[2] & 0x0f;
	uint32_t plen = get_be32(c + 5);
	const char *me = t->nexus->name;
	uint64_t key, sakey;
	struct ua_list *ua = NULL;
	int me_i;

	if (sa > 6) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (plen != 24 || t->out_len < 24) {
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	key = get_be64(p);
	sakey = get_be64(p + 8);
	if (p[20] & 0x0d) { /* SPEC_I_PT, ALL_TG_PT(0x04), APTPL unsupported */
		scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
		return;
	}
	if ((sa == 1 || sa == 2 || sa == 4 || sa == 5) &&
	    (scope != 0 || !(type == PR_WE || type == PR_EA || (type >= PR_WERO && type <= PR_EAAR)))) {
		if (sa != 4 && sa != 5) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return;
		}
	}
	ua = calloc(1, sizeof(*ua));
	if (!ua) {
		scsi_set_sense(t, SK_HARDWARE_ERROR, ASC_INTERNAL_FAILURE);
		return;
	}
	pthread_mutex_lock(&l->lock);
	if (l->res6 && strcmp(l->res6_holder, me)) {
		t->status = SAM_RESERVATION_CONFLICT;
		goto out;
	}
	me_i = find_reg(l, me);
	switch (sa) {
	case 0: /* REGISTER */
	case 6: /* REGISTER AND IGNORE EXISTING KEY */
		if (me_i < 0) {
			if (sa == 0 && key) {
				t->status = SAM_RESERVATION_CONFLICT;
				break;
			}
			if (!sakey)
				break;
			if (l->nregs >= SCSI_PR_MAX_REGS) {
				scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
				break;
			}
			snprintf(l->regs[l->nregs].nexus, SCSI_NEXUS_MAX, "%s", me);
			l->regs[l->nregs++].key = sakey;
			l->pr_gen++;
			break;
		}
		if (sa == 0 && key != l->regs[me_i].key) {
			t->status = SAM_RESERVATION_CONFLICT;
			break;
		}
		if (sakey) {
			l->regs[me_i].key = sakey;
			l->pr_gen++;
			break;
		}
		/* unregister */
		if (l->pr_res && is_holder(l, me)) {
			if (!all_reg_type(l->pr_type) || l->nregs == 1) {
				bool ro = l->pr_type == PR_WERO || l->pr_type == PR_EARO;

				l->pr_res = false;
				if (ro)
					for (int i = 0; i < l->nregs; i++)
						if (i != me_i)
							ua_add(ua, l->regs[i].nexus, ASC_RES_RELEASED);
			}
		}
		remove_reg(l, me_i);
		l->pr_gen++;
		break;
	case 1: /* RESERVE */
		if (me_i < 0 || key != l->regs[me_i].key) {
			t->status = SAM_RESERVATION_CONFLICT;
			break;
		}
		if (l->pr_res) {
			if (!is_holder(l, me) || l->pr_type != type)
				t->status = SAM_RESERVATION_CONFLICT;
			break;
		}
		l->pr_res = true;
		l->pr_type = (uint8_t)type;
		snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", me);
		break;
	case 2: /* RELEASE */
		if (me_i < 0 || key != l->regs[me_i].key) {
			t->status = SAM_RESERVATION_CONFLICT;
			break;
		}
		if (!l->pr_res || !is_holder(l, me))
			break;
		if (l->pr_type != type) {
			scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_RELEASE_PR);
			break;
		}
		l->pr_res = false;
		if (type != PR_WE && type != PR_EA)
			for (int i = 0; i < l->nregs; i++)
				if (strcmp(l->regs[i].nexus, me))
					ua_add(ua, l->regs[i].nexus, ASC_RES_RELEASED);
		break;
	case 3: /* CLEAR */
		if (me_i < 0 || key != l->regs[me_i].key) {
			t->status = SAM_RESERVATION_CONFLICT;
			break;
		}
		for (int i = 0; i < l->nregs; i++)
			if (strcmp(l->regs[i].nexus, me))
				ua_add(ua, l->regs[i].nexus, ASC_RES_PREEMPTED);
		l->nregs = 0;
		l->pr_res = false;
		l->pr_gen++;
		break;
	case 4: /* PREEMPT */
	case 5: /* PREEMPT AND ABORT */
	{
		bool removed = false;

		if (me_i < 0 || key != l->regs[me_i].key) {
			t->status = SAM_RESERVATION_CONFLICT;
			break;
		}
		if (l->pr_res && all_reg_type(l->pr_type) && !sakey) {
			/* remove every other registration, take the reservation */
			for (int i = l->nregs - 1; i >= 0; i--)
				if (strcmp(l->regs[i].nexus, me)) {
					ua_add(ua, l->regs[i].nexus, ASC_REG_PREEMPTED);
					remove_reg(l, i);
				}
			l->pr_type = (uint8_t)type;
			snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", me);
			l->pr_gen++;
			break;
		}
		if (!l->pr_res || all_reg_type(l->pr_type) ||
		    (find_reg(l, l->pr_holder) >= 0 && l->regs[find_reg(l, l->pr_holder)].key != sakey)) {
			if (!sakey) {
				scsi_set_sense(t, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
				break;
			}
			for (int i = l->nregs - 1; i >= 0; i--)
				if (l->regs[i].key == sakey) {
					if (strcmp(l->regs[i].nexus, me))
						ua_add(ua, l->regs[i].nexus, ASC_REG_PREEMPTED);
					remove_reg(l, i);
					removed = true;
				}
			if (!removed)
				t->status = SAM_RESERVATION_CONFLICT;
			else
				l->pr_gen++;
			break;
		}
		/* preempt the holder: remove all registrations with sakey,
		 * take the reservation with the new type */
		for (int i = l->nregs - 1; i >= 0; i--)
			if (l->regs[i].key == sakey && strcmp(l->regs[i].nexus, me)) {
				ua_add(ua, l->regs[i].nexus, ASC_REG_PREEMPTED);
				remove_reg(l, i);
			}
		l->pr_type = (uint8_t)type;
		snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", me);
		l->pr_gen++;
		break;
	}
	}
out:
	update_restricted(l);
	pthread_mutex_unlock(&l->lock);
	for (int i = 0; i < ua->n; i++)
		if (l->ua_fn)
			l->ua_fn(l->ua_arg, l, ua->nexus[i], NULL, ua->asc[i]);
	free(ua);
}
