/* Private structures of the iSCSI target: server, targets, LUN slots,
 * connections (one connection per session: MaxConnections=1). */
#ifndef ISCSI_INTERNAL_H
#define ISCSI_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pdu.h"
#include "scsi.h"
#include "target.h"

#define ISCSI_MAX_PORTALS 8
#define CMDSN_WINDOW 64
#define OUR_MRDSL (256u * 1024)      /* what we accept per PDU */
#define MAX_BURST_LIMIT 16776192u
#define MAX_WTASKS 256
#define MAX_EDTL (16u << 20)         /* largest write we buffer */
#define MAX_DATAIN (16u << 20)       /* largest data-in we lay out */
#define MAX_BUFFERED (64ull << 20)   /* write data held per connection */
#define MAX_R2T_LIMIT 16
#define ISCSI_MAX_CONNS 512
#define LOGIN_DEADLINE_S 30          /* a login must finish within this */

#define SLOW_READS_ON 4

struct lun_slot {
	struct scsi_lun sl;
	int slow_reads;          /* atomic: > SLOW_READS_ON = reads hit a device */
	int ref;                 /* connections caching it + the target */
	bool removed;
	char path[1024];
	bool thin;
};

struct target {
	struct target *next;
	char iqn[224];
	char chap_user[256], chap_secret[256];
	char mutual_user[256], mutual_secret[256];
	char initiators[ISCSI_MAX_INITIATORS][224];
	int ninitiators;
	struct lun_slot *luns[ISCSI_MAX_LUNS];
	int ref;
	bool removed;
};

struct r2t {
	uint32_t ttt, off, len, got, datasn;
};

/* A write command waiting for its data. */
struct wtask {
	uint32_t itt;
	uint64_t lun_raw;
	uint8_t cdb[260];
	unsigned cdb_len;
	uint32_t edtl;
	uint8_t *buf;
	uint32_t received;       /* bytes, in order */
	uint32_t unsol_end;      /* unsolicited data ends here */
	uint32_t unsol_datasn;
	uint32_t next_off;       /* next offset to solicit */
	uint32_t r2tsn;
	struct r2t r2t[MAX_R2T_LIMIT];
	int nr2t;
	bool read_too;
	uint32_t read_edtl;
	uint8_t attr;
};

/* A write handed to the worker pool; the connection sends the response. */
struct job {
	struct job *next;
	struct conn *c;
	struct lun_slot *ls;         /* referenced by the connection's LUN cache */
	struct scsi_task t;
	uint8_t cdb[260];
	uint8_t *buf;                /* data-out, owned */
	uint32_t buflen;             /* counted in conn->buffered */
	uint32_t r2ts;               /* R2Ts sent for it: ExpDataSN */
	/* offloaded reads */
	bool rd;
	uint8_t *inbuf;
	uint32_t redtl, cap;
	struct iovec iov;
	uint32_t itt, wedtl;
};

#define ISCSI_WORKERS 8
#define MAX_INFLIGHT 64

struct ua_ent {
	uint16_t lun, asc;
};

struct conn {
	struct conn *next;
	struct iscsi_srv *srv;
	int fd;
	char peer[64];
	struct target *tgt;          /* normal session after login */
	bool discovery, ffp, closing;
	/* negotiated */
	bool hdigest, ddigest, immediate_data, initial_r2t;
	uint32_t mrdsl_out;          /* initiator's MaxRecvDataSegmentLength */
	uint32_t first_burst, max_burst, max_r2t;
	/* session */
	uint8_t isid[6];
	uint16_t tsih, cid;
	char initiator[224];
	struct scsi_nexus nexus;
	uint32_t exp_cmdsn, stat_sn;
	/* buffers */
	uint8_t *rx;
	size_t rx_len, rx_cap;
	uint8_t *tx;
	size_t tx_len, tx_cap;
	bool tx_oom;
	/* write tasks */
	struct wtask *wt[MAX_WTASKS];
	int nwt;
	uint32_t next_ttt;
	/* LUN cache (refs held) */
	struct lun_slot *luns[ISCSI_MAX_LUNS];
	/* unit attentions for this I_T nexus */
	pthread_mutex_t ua_lock;
	struct ua_ent ua[64];
	int nua;
	int ua_pending;
	/* login */
	int auth;                    /* 0 none yet, 1 chap challenged, 2 done */
	uint8_t chap_id, chap_chal[16];
	bool need_chap, sent_tpgt, sent_mrdsl;
	char *login_text;
	size_t login_text_len;
	int login_hdigest, login_ddigest;
	char *txt_pend;              /* text reply still to send (C bit) */
	size_t txt_pend_len, txt_pend_off;
	uint32_t login_itt;
	/* writes running in the worker pool */
	int efd;                     /* eventfd: completions to send */
	pthread_mutex_t done_lock;
	struct job *done;
	int inflight;
	uint8_t cur_attr;            /* task attribute of the command at hand */
	bool more_pending;           /* more PDUs already received behind it */
	uint32_t cur_r2ts;           /* R2Ts sent for the command at hand */
	uint64_t buffered;           /* write data held for this connection */
};

struct iscsi_srv {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int lfd[ISCSI_MAX_PORTALS];
	char portal[ISCSI_MAX_PORTALS][80];
	int nl;
	int wake_fd;
	pthread_t thr;
	bool started;
	/* worker pool for writes (blocking I/O off the connection threads) */
	pthread_t workers[ISCSI_WORKERS];
	int nworkers;
	int read_offload;            /* 0 adaptive, 1 never, 2 always (VMFSD_ISCSI_READ_OFFLOAD) */
	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;
	struct job *q_head, *q_tail;
	bool q_stop;
	struct target *targets;
	struct conn *conns;
	int nconns;
	uint16_t next_tsih;
};

/* target.c */
void iscsi_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct lun_slot *tgt_lun_get(struct conn *c, uint16_t lun);
void tgt_put(struct iscsi_srv *s, struct target *t);
void lun_slot_put(struct iscsi_srv *s, struct lun_slot *ls);
int tgt_list_luns(void *arg, uint16_t *luns, int max);
struct scsi_lun *tgt_find_lu(void *arg, const uint8_t *desig);
bool conn_take_ua(void *arg, uint16_t lun, uint16_t *asc);
void tgt_post_ua(void *arg, struct scsi_lun *lun, const char *only, const char *except,
		 uint16_t asc);

/* conn.c */
void *conn_main(void *arg);
void *worker_main(void *arg);
/* login.c */
int login_pdu(struct conn *c, uint8_t *bhs, uint8_t *data, uint32_t dsl);
int text_pdu(struct conn *c, uint8_t *bhs, uint8_t *data, uint32_t dsl);
/* Reserve @n bytes at the end of the transmit buffer. */
uint8_t *tx_reserve(struct conn *c, size_t n);
/* Queue a PDU (header filled by caller except lengths/digests) with data. */
int tx_pdu(struct conn *c, uint8_t *bhs, const void *data, uint32_t dsl);
/* chap.c */
int chap_response(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len,
		  uint8_t out[16]);
int chap_random(void *buf, size_t n);

#endif
