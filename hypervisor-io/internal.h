/* hypervisor-io internals: vhost-user device state shared by the protocol
 * (vhost_user.c), the virtqueues (vring.c) and virtio-blk (blk.c). */
#ifndef VHOST_INTERNAL_H
#define VHOST_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmfs/vhost.h"

#define VH_MAX_QUEUES   16
#define VH_MAX_REGIONS  8
#define VH_MAX_QSIZE    1024
#define VH_MAX_SEGS     258        /* descriptors in one chain (seg_max 254 + header/status) */
#define VH_SEG_MAX      254
#define VH_PAYLOAD_MAX  4096       /* largest message payload we accept */

/* vhost-user message codes (docs/interop/vhost-user.rst) */
enum {
	VHU_GET_FEATURES = 1, VHU_SET_FEATURES = 2, VHU_SET_OWNER = 3, VHU_RESET_OWNER = 4,
	VHU_SET_MEM_TABLE = 5, VHU_SET_LOG_BASE = 6, VHU_SET_LOG_FD = 7,
	VHU_SET_VRING_NUM = 8, VHU_SET_VRING_ADDR = 9, VHU_SET_VRING_BASE = 10,
	VHU_GET_VRING_BASE = 11, VHU_SET_VRING_KICK = 12, VHU_SET_VRING_CALL = 13,
	VHU_SET_VRING_ERR = 14, VHU_GET_PROTOCOL_FEATURES = 15, VHU_SET_PROTOCOL_FEATURES = 16,
	VHU_GET_QUEUE_NUM = 17, VHU_SET_VRING_ENABLE = 18, VHU_GET_CONFIG = 24,
	VHU_SET_CONFIG = 25, VHU_GET_INFLIGHT_FD = 31, VHU_SET_INFLIGHT_FD = 32,
	VHU_RESET_DEVICE = 34,
};
#define VHU_VERSION        0x1u
#define VHU_FLAG_REPLY     0x4u
#define VHU_FLAG_NEED_REPLY 0x8u
#define VHU_VRING_NOFD     0x100u
#define VHU_VRING_IDX_MASK 0xffu

#define VHU_F_PROTOCOL_FEATURES 30
#define VHU_PF_MQ        0
#define VHU_PF_REPLY_ACK 3
#define VHU_PF_CONFIG    9
#define VHU_PF_INFLIGHT_SHMFD 12

/* Inflight I/O tracking (vhost-user.rst, "Inflight I/O tracking"): the
 * shared buffer the front-end keeps across back-end restarts is one region
 * per queue, of the layout below for the ring type; each region is padded
 * to 64 bytes.  Version 0: not initialised yet. */
struct vh_ifl_split_desc {
	uint8_t inflight;          /* head descriptors only */
	uint8_t padding[5];
	uint16_t next;             /* list of the last batch of used descriptors */
	uint64_t counter;          /* fetch order, head descriptors only */
};

struct vh_ifl_split {
	uint64_t features;         /* 0 */
	uint16_t version;          /* 1 */
	uint16_t desc_num;         /* queue size */
	uint16_t last_batch_head;
	uint16_t used_idx;         /* copy of the used ring's idx */
	struct vh_ifl_split_desc desc[];
};

struct vh_ifl_packed_desc {
	uint8_t inflight;
	uint8_t padding;
	uint16_t next;             /* next free entry */
	uint16_t last;             /* last entry of the descriptor list (head only) */
	uint16_t num;              /* length of the descriptor list (head only) */
	uint64_t counter;          /* fetch order (head only) */
	uint16_t id;               /* buffer id */
	uint16_t flags;
	uint32_t len;
	uint64_t addr;
};

struct vh_ifl_packed {
	uint64_t features;         /* 0 */
	uint16_t version;          /* 1 */
	uint16_t desc_num;
	uint16_t free_head;
	uint16_t old_free_head;
	uint16_t used_idx;
	uint16_t old_used_idx;
	uint8_t used_wrap_counter;
	uint8_t old_used_wrap_counter;
	uint8_t padding[7];
	struct vh_ifl_packed_desc desc[];
};

_Static_assert(sizeof(struct vh_ifl_split_desc) == 16, "DescStateSplit");
_Static_assert(sizeof(struct vh_ifl_split) == 16, "QueueRegionSplit");
_Static_assert(sizeof(struct vh_ifl_packed_desc) == 32, "DescStatePacked");
_Static_assert(sizeof(struct vh_ifl_packed) == 32, "QueueRegionPacked");

/* bytes of one queue's region for a ring of @num entries */
static inline uint64_t vh_ifl_qsize(bool packed, unsigned num)
{
	uint64_t b = packed ? sizeof(struct vh_ifl_packed) + num * sizeof(struct vh_ifl_packed_desc)
			    : sizeof(struct vh_ifl_split) + num * sizeof(struct vh_ifl_split_desc);

	return (b + 63) & ~63ull;
}

struct vhu_hdr {
	uint32_t request, flags, size;
} __attribute__((packed));

struct vh_region {
	uint64_t gpa, size, uaddr;
	uint8_t *host;             /* mapping + mmap_offset */
	void *map;
	size_t map_len;
};

struct vh_dev;
struct vh_vq;

struct vh_req {
	struct vh_vq *vq;
	uint16_t head;             /* split: head index; packed: buffer id */
	uint16_t ndesc;            /* packed: descriptors the chain took in the ring */
	uint16_t ifl_head;         /* packed: its head entry in the inflight region */
	bool busy;                 /* in flight (a guest reusing the head is ignored) */
	int chain_err;             /* the chain did not parse (returned with length 0) */
	struct vh_req *next;       /* worker pool list */
	struct iovec iov[VH_MAX_SEGS];
	int niov;
	uint32_t a_used;           /* async request: used length on success */
	uint64_t a_sector;
	bool a_wr;
	bool writable[VH_MAX_SEGS];
};

struct vh_vq {
	struct vh_dev *dev;
	unsigned idx;
	unsigned num;
	uint64_t desc_ua, avail_ua, used_ua;
	bool have_addr;
	void *desc, *avail, *used;  /* translated */
	uint16_t last_avail, used_idx;  /* packed: ring positions, with the wraps below */
	bool packed;               /* VIRTIO_F_RING_PACKED negotiated */
	bool avail_wrap, used_wrap;
	uint16_t pass_end;         /* split: avail index where this pass stops */
	unsigned pass_budget;      /* packed: descriptors this pass may still take */
	int kick_fd, call_fd, err_fd;
	bool enabled;
	bool running;
	uint64_t spin_ns;          /* current busy-poll window (adaptive) */
	uint64_t idle_since;       /* CLOCK_MONOTONIC ns: the last work ended */
	bool broken;               /* avail index made no sense: ignored until restarted */
	bool stopping;             /* vh_vq_stop asked the thread to leave */
	pthread_t thr;
	int stop_fd;               /* eventfd: ask the queue thread to stop */
	pthread_mutex_t lock;      /* used ring + inflight */
	pthread_cond_t idle;
	unsigned inflight;
	struct vh_req *reqs;       /* num slots, indexed by head */
	void *aq;                  /* the disk's async context (queue thread only) */
	unsigned aq_inflight;
	bool event_idx;            /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool signalled_valid;      /* signalled_used holds the used index last signalled */
	uint16_t signalled_used;
	bool call_pending;         /* completions published, call not signalled yet */
	/* inflight tracking: this queue's region of the shared buffer (struct
	 * vh_ifl_split or vh_ifl_packed; NULL: not tracked), the fetch counter,
	 * and after a restart the region entries to resubmit, in fetch order */
	void *ifl;
	uint64_t ifl_counter;
	uint16_t resub[VH_MAX_QSIZE];
	unsigned nresub, resub_pos;
};

struct vh_dev {
	struct vhost_blk_opts o;
	struct vhost_disk *disk;
	uint64_t features, pfeatures;
	bool owner;
	struct vh_region reg[VH_MAX_REGIONS];
	int nreg;
	struct vh_vq vq[VH_MAX_QUEUES];
	unsigned nq;
	/* worker pool */
	pthread_t *wthr;
	unsigned nworkers;
	pthread_mutex_t wlock;
	pthread_cond_t wcond;
	struct vh_req *whead, *wtail;
	bool wstop;
	uint64_t poll_ns;          /* busy-poll a ring this long after work */
	/* SET_INFLIGHT_FD: the shared buffer, num_queues regions of ifl_stride
	 * bytes for rings of ifl_qsize entries */
	void *ifl_map;
	size_t ifl_map_len;
	uint8_t *ifl_base;
	uint64_t ifl_stride;
	unsigned ifl_nq, ifl_qsize;
	/* stats */
	uint64_t st_requests, st_errors, st_unsupp, st_conns, st_async;
	bool connected;
};

void vh_log(struct vh_dev *d, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* guest physical -> host pointer for [gpa, gpa+len) inside one region */
void *vh_gpa(struct vh_dev *d, uint64_t gpa, uint64_t len);
/* front-end virtual address -> host pointer */
void *vh_uva(struct vh_dev *d, uint64_t ua, uint64_t len);

/* vring.c */
/* GET/SET_VRING_BASE value (packed: avail position | wrap << 15 in the low
 * half, the used one in the high half, as QEMU and vhost encode them) */
uint32_t vh_vq_get_base(const struct vh_vq *q);
int vh_vq_set_base(struct vh_vq *q, uint32_t v);
int vh_vq_start(struct vh_vq *q);
void vh_vq_stop(struct vh_vq *q);
void vh_vq_reset(struct vh_vq *q);   /* stop and close fds, forget config */
int vh_pool_start(struct vh_dev *d);
void vh_pool_stop(struct vh_dev *d);
void vh_req_complete(struct vh_req *r, uint32_t used_len);
/* Same, but the call is left to the queue thread (vh_vq_flush_calls) after
 * a batch: from the queue thread only. */
void vh_req_complete_batched(struct vh_req *r, uint32_t used_len);

/* blk.c: execute one request, return the used length */
uint32_t vh_blk_exec(struct vh_dev *d, struct vh_req *r);
/* IN/OUT through the queue's async context: true when submitted (completion
 * from its callback); false: run vh_blk_exec instead. */
bool vh_blk_submit_async(struct vh_dev *d, struct vh_req *r, void *aq);
uint64_t vh_blk_features(const struct vh_dev *d);
size_t vh_blk_config(const struct vh_dev *d, uint8_t *buf, size_t bufsz);

#endif
