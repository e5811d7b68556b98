/* SCSI command set of the target (SPC-4 and SBC-3 subset), independent of
 * the iSCSI transport: a command comes in as a CDB plus the complete data-out
 * buffer, and leaves as a status, sense data and data-in written into the
 * transport's iovecs.  Logical unit state shared by every session lives in
 * struct scsi_lun (reservations, unit attentions per I_T nexus, mode pages,
 * and the lock that makes COMPARE AND WRITE atomic). */
#ifndef ISCSI_SCSI_H
#define ISCSI_SCSI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backing.h"

/* Status codes. */
#define SAM_GOOD             0x00
#define SAM_CHECK_CONDITION  0x02
#define SAM_CONDITION_MET    0x04
#define SAM_BUSY             0x08
#define SAM_RESERVATION_CONFLICT 0x18
#define SAM_TASK_SET_FULL    0x28
#define SAM_TASK_ABORTED     0x40

/* Sense keys. */
#define SK_NO_SENSE        0x0
#define SK_NOT_READY       0x2
#define SK_MEDIUM_ERROR    0x3
#define SK_HARDWARE_ERROR  0x4
#define SK_ILLEGAL_REQUEST 0x5
#define SK_UNIT_ATTENTION  0x6
#define SK_DATA_PROTECT    0x7
#define SK_ABORTED_COMMAND 0xb
#define SK_MISCOMPARE      0xe

/* ASC/ASCQ pairs, (asc << 8 | ascq). */
#define ASC_INVALID_OPCODE        0x2000
#define ASC_LBA_OUT_OF_RANGE      0x2100
#define ASC_INVALID_FIELD_CDB     0x2400
#define ASC_LUN_NOT_SUPPORTED     0x2500
#define ASC_INVALID_FIELD_PARAM   0x2600
#define ASC_PARAM_LIST_LENGTH     0x1a00
#define ASC_INVALID_RELEASE_PR    0x2604
#define ASC_WRITE_PROTECTED       0x2700
#define ASC_SW_WRITE_PROTECTED    0x2702
#define ASC_MISCOMPARE_VERIFY     0x1d00
#define ASC_POWER_ON_RESET        0x2900
#define ASC_BUS_RESET             0x2902
#define ASC_BUS_DEVICE_RESET      0x2903
#define ASC_PARAMS_CHANGED        0x2a01
#define ASC_RES_PREEMPTED         0x2a03
#define ASC_RES_RELEASED          0x2a04
#define ASC_REG_PREEMPTED         0x2a05
#define ASC_SAVING_NOT_SUPPORTED  0x3900
#define ASC_REPORTED_LUNS_CHANGED 0x3f0e
#define ASC_INVALID_FIELD_IU      0x0e03
#define ASC_WRITE_ERROR           0x0c00
#define ASC_READ_ERROR            0x1100
#define ASC_INTERNAL_FAILURE      0x4400
#define ASC_NO_ADDITIONAL_SENSE   0x0000
#define ASC_OUT_OF_SPACE          0x2707
#define ASC_DATA_PHASE_ERROR      0x4b00
#define ASC_DATA_OFFSET_ERROR     0x4b05

#define SCSI_SENSE_MAX 96
#define SCSI_NEXUS_MAX 300
#define SCSI_PR_MAX_REGS 64

struct scsi_lun;

/** An I_T nexus: initiator port (name ",i,0x" ISID) to target port. */
struct scsi_nexus {
	char name[SCSI_NEXUS_MAX];  /* "iqn...,i,0x<isid>", the key of all state */
	char initiator[224];        /* iSCSI initiator name */
	uint8_t isid[6];
	uint16_t rel_port;          /* relative target port */
};

/** Called by the LU to put a unit attention on I_T nexuses of its target:
 *  @only (if non-NULL) that nexus alone; else every nexus except @except. */
typedef void (*scsi_ua_fn)(void *arg, struct scsi_lun *lun, const char *only,
			   const char *except, uint16_t asc);

struct scsi_pr_reg {
	char nexus[SCSI_NEXUS_MAX];
	uint64_t key;
};

struct scsi_lun {
	struct backing *bs;
	uint16_t lun;            /* LUN number within the target */
	uint64_t id;             /* persistent id: NAA/EUI/serial derive from it */
	char serial[20];
	char target_name[224];
	uint32_t block_size;
	unsigned block_shift;
	uint64_t nblocks;
	/* COMPARE AND WRITE / ORWRITE / WRITE ATOMIC take it exclusively, all
	 * other media access shared: atomic against every session. */
	pthread_rwlock_t io_lock;
	pthread_mutex_t lock;    /* the state below */
	bool wce, d_sense, swp;
	/* SPC-2 RESERVE(6) */
	bool res6;
	char res6_holder[SCSI_NEXUS_MAX];
	/* persistent reservations (not persisted: APTPL unsupported) */
	struct scsi_pr_reg regs[SCSI_PR_MAX_REGS];
	int nregs;
	uint32_t pr_gen;
	bool pr_res;             /* a persistent reservation exists */
	uint8_t pr_type;
	char pr_holder[SCSI_NEXUS_MAX]; /* for non-all-registrants types */
	int restricted;          /* atomic: res6 || pr_res || nregs (fast path) */
	/* EXTENDED COPY results kept for RECEIVE COPY RESULTS */
#define XC_STATUS_MAX 8
	struct {
		bool used;
		uint8_t list_id;
		uint16_t segs;
		uint32_t blocks;
		char nexus[SCSI_NEXUS_MAX];
	} xc[XC_STATUS_MAX];
	unsigned xc_next;
	scsi_ua_fn ua_fn;
	void *ua_arg;
};

/** One command. */
struct scsi_task {
	/* in */
	const uint8_t *cdb;
	unsigned cdb_len;
	struct scsi_nexus *nexus;
	struct scsi_lun *lun;        /* NULL: no such LUN */
	uint64_t lun_raw;            /* the 8-byte LUN field as sent */
	const uint8_t *out;          /* data-out, complete */
	uint32_t out_len;            /* = iSCSI expected length for writes */
	bool write_dir;              /* initiator set the W bit */
	const struct iovec *in_iov;  /* where data-in goes */
	int in_iovcnt;
	uint32_t in_cap;             /* bytes available there (iSCSI EDTL) */
	/* REPORT LUNS: the target's LUN numbers */
	int (*list_luns)(void *arg, uint16_t *luns, int max);
	void *list_arg;
	/* EXTENDED COPY: the LU of this target whose 16-byte NAA designator
	 * (identification descriptor at @desig: code set, type, -, length,
	 * designator) matches; NULL if none */
	struct scsi_lun *(*find_lu)(void *arg, const uint8_t *desig);
	void *find_arg;
	/* pending unit attention for this nexus and LUN: set by the
	 * transport, consumed by scsi_exec (returns true if it took one) */
	bool (*take_ua)(void *arg, uint16_t lun, uint16_t *asc);
	void *ua_arg;
	/* out */
	uint8_t status;
	uint8_t sense[SCSI_SENSE_MAX];
	unsigned sense_len;
	uint32_t in_len;             /* bytes of data-in the command produced */
	uint32_t xfer_len;           /* bytes the CDB asked to transfer (residuals) */
	bool residual_set;           /* xfer_len is meaningful */
};

/** Initialise a logical unit over @bs (taking it).  \return 0 or -errno. */
int scsi_lun_init(struct scsi_lun *lun, struct backing *bs, uint16_t lunno, uint64_t id,
		  const char *target_name);
void scsi_lun_destroy(struct scsi_lun *lun);

/** Execute one command synchronously. */
void scsi_exec(struct scsi_task *t);

/** Task management helpers called by the transport. */
void scsi_lun_reset(struct scsi_lun *lun, const char *issuer);
/** The I_T nexus is gone (logout, dropped connection): drop its RESERVE(6). */
void scsi_nexus_lost(struct scsi_lun *lun, const char *nexus);

/** Build sense data into @t and set CHECK CONDITION. */
void scsi_set_sense(struct scsi_task *t, uint8_t key, uint16_t asc);

/* Internal, shared by spc.c, sbc.c, pr.c. */
void scsi_copy_in(struct scsi_task *t, const void *buf, uint32_t len);
int spc_exec(struct scsi_task *t);  /* 0 handled, -ENOENT not an SPC op */
int sbc_exec(struct scsi_task *t);
void pr_in(struct scsi_task *t);
void pr_out(struct scsi_task *t);
void spc_reserve6(struct scsi_task *t);
void spc_release6(struct scsi_task *t);
/** Does the reservation state forbid @t?  Called with lun->lock held. */
bool pr_conflict(struct scsi_task *t);
void xcopy_extended_copy(struct scsi_task *t);
void xcopy_receive_results(struct scsi_task *t);
uint32_t xcopy_vpd(uint8_t *d);
/** The LU's 16-byte NAA 6 designator (VPD 0x83). */
void scsi_lun_naa(const struct scsi_lun *l, uint8_t *out);
/** Supported opcodes for REPORT SUPPORTED OPERATION CODES. */
struct scsi_opinfo {
	uint8_t op;
	uint16_t sa;
	bool has_sa;
	uint8_t cdb_len;
	uint8_t usage[16];
};
extern const struct scsi_opinfo scsi_ops[];
extern const int scsi_nops;

#endif
