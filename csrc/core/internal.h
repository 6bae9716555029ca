/*
 * internal.h: the server's private structures, shared by server.c (loop, accept, queues),
 * conn.c (connection state machine), pool.c (workers) and response.c (response building).
 * Not for the binding.
 */
#ifndef MX_INTERNAL_H
#define MX_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mx.h"

/* Connection states (STYLE: head -> body -> dispatched -> writing -> keep-alive or close). */
enum mx_conn_state {
    MX_CONN_HEAD = 0,     /* waiting for (more of) a request head */
    MX_CONN_BODY_CL,      /* reading a Content-Length body into conn->cur */
    MX_CONN_BODY_CHUNKED, /* decoding a chunked body into conn->cur */
    MX_CONN_DRAIN,        /* an error response is queued; input is no longer parsed */
};

/* Which timer list a connection is on. */
enum mx_timer_kind { MX_TIMER_NONE = 0, MX_TIMER_IDLE, MX_TIMER_HEAD, MX_TIMER_LINGER, MX_TIMER__N };

typedef struct mx_conn {
    int fd;
    uint64_t id;
    mx_server_t *server;
    int state;
    unsigned closing : 1;   /* freed at the end of this loop pass */
    unsigned read_paused : 1;
    unsigned want_write : 1; /* EPOLLOUT registered */
    unsigned lingering : 1;  /* write side shut; discarding input until EOF or timeout */
    unsigned no_more_requests : 1; /* a response will close the connection; stop parsing */
    unsigned continue_sent : 1;
    unsigned is_unix : 1;
    uint32_t ep_events; /* what epoll watches now */

    /* input */
    char *rbuf;
    size_t rcap, rlen, rpos; /* unparsed bytes are rbuf[rpos..rlen) */

    /* the request being received (head parsed, body incomplete) */
    mx_req_t *cur;
    size_t body_cap;
    uint64_t body_remaining;
    size_t body_limit;
    mx_chunked_t chunked;

    /* pipeline: every request received and not yet fully answered, in order */
    mx_req_t *pipe_head, *pipe_tail;
    int inflight;

    /* timers: a doubly linked list per kind, sorted by deadline (all entries of a kind have the
     * same duration, so appending keeps the order) */
    int timer_kind;
    int64_t deadline_ms;
    struct mx_conn *tprev, *tnext;

    /* all connections (for shutdown) */
    struct mx_conn *prev, *next;
    struct mx_conn *next_closing;

    char remote_addr[64];
    int remote_port;
} mx_conn_t;

struct mx_server {
    mx_config_t cfg;
    mx_router_t *router;
    size_t *route_max_body;
    size_t n_route_max_body;
    mx_hooks_t hooks;

    /* listening */
    int listen_fd;
    int is_unix;
    char *unix_path;
    int port;

    /* loop */
    int epfd;
    int wake_fd; /* eventfd: workers post responses, stop() asks the loop to end */
    pthread_t io_thread;
    int io_started;
    uint64_t next_conn_id;
    mx_conn_t *conns;
    size_t nconns;
    mx_conn_t *closing;
    int accept_paused;
    int64_t accept_resume_at; /* after EMFILE: when to try accepting again */
    struct {
        mx_conn_t *head, *tail;
    } timers[MX_TIMER__N];
    int64_t now_ms;

    /* the response queue: workers -> I/O thread. Lock order: out_mu is a leaf. */
    pthread_mutex_t out_mu;
    mx_req_t *out_head, *out_tail;
    atomic_int wake_pending;

    /* the pool: I/O thread -> workers. Lock order: pool_mu is a leaf. */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    mx_req_t *task_head, *task_tail;
    int idle_workers;
    int pending_wakes;  /* signalled workers that have not woken yet */
    int qlen;           /* requests in the queue */
    int pool_stop;
    struct mx_worker *workers;
    int nworkers;
    atomic_llong handler_ns; /* moving average of how long a request holds a worker */
    atomic_int running; /* requests dispatched and not yet returned from hooks->run */

    /* lifecycle. Lock order: life_mu before nothing. */
    pthread_mutex_t life_mu;
    pthread_cond_t life_cv;
    atomic_int stopping; /* 1: draining; 2: closing everything */
    int stopped;
    int started;
};

/* server.c */
int64_t mx__now_ms(void);
void mx__conn_close(mx_conn_t *c);
void mx__conn_set_events(mx_conn_t *c, uint32_t events);
void mx__timer_set(mx_conn_t *c, int kind, double seconds);
void mx__post_response(mx_server_t *s, mx_req_t *r);

/* conn.c */
mx_conn_t *mx__conn_new(mx_server_t *s, int fd);
void mx__conn_free(mx_conn_t *c);
void mx__conn_on_readable(mx_conn_t *c);
void mx__conn_on_writable(mx_conn_t *c);
void mx__conn_response_ready(mx_conn_t *c);
void mx__conn_on_timeout(mx_conn_t *c, int kind);

/* pool.c */
int64_t mx__now_ns(void);
void mx__thread_batch_policy(void);
void mx__pool_check_stall(mx_server_t *s);
int mx__pool_has_queued(mx_server_t *s);
int mx__pool_start(mx_server_t *s);
void mx__pool_push(mx_server_t *s, mx_req_t *r);
void mx__pool_stop(mx_server_t *s);

/* response.c */
int mx__build_simple(mx_req_t *r, int status, const char *extra_headers, const char *body,
                     int close_conn);
mx_req_t *mx__req_new(mx_server_t *s, mx_conn_t *c, const mx_http1_request_t *h, size_t head_len);

#endif
