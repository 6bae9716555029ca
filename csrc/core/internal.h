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
    MX_CONN_WS,           /* upgraded: input is WebSocket frames */
};

/* Which timer list a connection is on. */
enum mx_timer_kind {
    MX_TIMER_NONE = 0,
    MX_TIMER_IDLE,
    MX_TIMER_HEAD,
    MX_TIMER_LINGER,
    MX_TIMER_BODY,      /* a request body that must keep arriving (body_timeout) */
    MX_TIMER_WRITE,     /* output that cannot move (write_timeout) */
    MX_TIMER_HEARTBEAT, /* an SSE stream idle for sse_heartbeat */
    MX_TIMER_WS_PING,   /* a WebSocket idle for websocket_ping_interval (or its ping unanswered) */
    MX_TIMER_WS_CLOSE,  /* our close frame is out; the peer's is due */
    MX_TIMER__N
};

/* One piece of a stream's output: [head][bytes data[off..end)][tail], written in that order. */
typedef struct mx_wnode {
    struct mx_wnode *next;
    mx_bytes_t *bytes; /* shared bytes, or NULL when raw (malloc'ed, owned) holds the data */
    char *raw;
    size_t start, end; /* the part of the data to write */
    size_t pos;        /* bytes of the whole node already written */
    unsigned char head_len, tail_len;
    unsigned char is_close;  /* a WebSocket close frame */
    unsigned char is_end;    /* the SSE stream's last chunk */
    unsigned char raw_recycled; /* raw comes from the recycled buffers (mx__wnode_copy) */
    char head[14];           /* chunk-size line, or a WebSocket frame header */
    char tail[2];            /* CRLF after a chunk */
} mx_wnode_t;

struct mx_ws_reader;
struct mx_ws_deflater;

/*
 * The body of a request on a streamed route, between the I/O thread (writer) and the handler's
 * thread (reader). Bounded: the I/O thread stops reading the socket above MX_BODY_HIGH buffered
 * bytes, and the reader asks it to resume below MX_BODY_LOW. Lock order: mu is a leaf, but for
 * the server's out_mu taken by mx__req_notify after mu is released.
 */
#define MX_BODY_HIGH (1u << 20)
#define MX_BODY_LOW (256u << 10)
#define MX_BODY_RING_MAX (2u * MX_BODY_HIGH)
typedef struct mx_body_chan {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* A ring: the unread bytes are the `used` bytes from buf[head] on, wrapping at cap. The I/O
     * thread writes only into the free part (reading the socket straight into it), the reader
     * only reads the used part, so neither waits for the other while it copies. cap grows
     * (doubling, up to MX_BODY_RING_MAX) only on the I/O thread, under mu; a buffer the reader
     * still borrows (mx_req_peek) is kept in old_buf until it gives the borrow back. */
    char *buf;
    size_t cap, head, used;
    char *old_buf;
    int borrowed; /* the reader holds a pointer into buf (or old_buf) */
    int done;             /* the whole body is in buf */
    int err;              /* 0, MX_ECLOSED (client gone / cut) or MX_EINVAL (bad body) */
    int io_paused;        /* the I/O thread stopped reading for room (under mu) */
    int want_resume;      /* the reader made room: the I/O thread may read again */
    int want_continue;    /* the reader wants the body: send 100 Continue */
    int read_started;
    /*
     * Splicing (save_body of a Content-Length body): once the reader asks for it (want_splice)
     * and the I/O thread has no body bytes of this request left in its read buffer, the I/O
     * thread moves the rest of the body socket -> pipe with splice(2) (splice_on), and the reader
     * moves it pipe -> file: no copy through user space. Bytes in buf come before the pipe's.
     * The I/O thread owns pipe_w and closes it when the body ends (mx__body_end), so a reader
     * blocked on the pipe wakes up at the end; pipe_r is the reader's. Both close with the chan.
     */
    int can_splice;       /* set once before dispatch: a Content-Length body, nothing to decode */
    int want_splice;      /* the reader would take the body from a pipe */
    int splice_on;        /* the pipe is in use: body bytes after buf's arrive through it */
    int pipe_r, pipe_w;   /* -1 when closed */
    size_t pipe_cap;      /* the pipe's capacity in bytes */
    uint64_t piped, unpiped; /* bytes put into / taken out of the pipe */
} mx_body_chan_t;

/*
 * A stream (SSE or WebSocket). Lock order: send_mu, then mu, then the server's out_mu/pool_mu.
 * Never call out of the core while holding either.
 */
struct mx_stream {
    mx_task_t super; /* MX_TASK_WS: deliver queued events */
    atomic_int refcnt;
    mx_server_t *server;
    int kind; /* MX_STREAM_SSE or MX_STREAM_WS */
    uint64_t id;
    int chunked; /* SSE on HTTP/1.1: events are chunks, and the end is a last-chunk */
    pthread_mutex_t send_mu; /* serializes WebSocket senders (message order, deflate context) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct mx_ws_deflater *deflater; /* under send_mu */

    /* ---- under mu ---- */
    mx_wnode_t *q_head, *q_tail; /* queued by senders, not yet taken by the I/O thread */
    size_t queued;               /* bytes queued and not yet written (q and w lists) */
    atomic_int closed;           /* no more sends accepted */
    int finished;                /* the connection is gone */
    int slow;                    /* closed because the peer stopped reading */
    int close_code;              /* the peer's close code for the CLOSE event (WS) */
    char close_reason[128];
    size_t close_reason_len;
    unsigned char notify_pending; /* on the server's notify list (under the server's out_mu) */
    unsigned char want_resume;    /* the reader paused for a full inbound queue may resume */
    struct mx_stream *next_notify;
    mx_ws_msg_t *in_head, *in_tail; /* WebSocket events not yet delivered */
    size_t in_bytes;
    int scheduled;      /* a delivery task is queued or running */
    int reader_waiting; /* the I/O thread paused reading until the inbound queue drains */
    int close_queued;   /* the CLOSE event is queued: nothing may follow it */
    int opened;         /* the OPEN event is queued */

    /* ---- I/O thread only ---- */
    struct mx_conn *conn; /* NULL until the response head is out, and after the connection */
    mx_wnode_t *w_head, *w_tail;
    struct mx_ws_reader *reader;
    int in_paused;       /* reading paused: the inbound queue is full */
    int dead_reader;     /* the input broke the protocol: discard the rest */
    int close_sent;      /* our close frame is written */
    int close_received;  /* the peer's close frame arrived */
    int fail_after_close; /* close the TCP connection as soon as our close frame is out */
    int ping_outstanding;
    int deflate; /* permessage-deflate negotiated */
    int deflate_params[4]; /* server_no_ctx, client_no_ctx, server_bits, client_bits */
    void *user;
};
#define MX_STREAM_SSE 1
#define MX_STREAM_WS 2

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
    unsigned hold_input : 1; /* a possible upgrade or an active stream: parse no further requests */
    unsigned stream_shut : 1; /* the server is stopping and told the stream so */
    unsigned empty_lines : 2; /* empty lines skipped before the next request-line (at most 2) */
    unsigned input_full : 1;  /* reading paused until a consumer makes room: a streamed body's
                               * buffer or a WebSocket's inbound queue is full */
    uint32_t ep_events;       /* what epoll watches now */
    mx_stream_t *stream;      /* the active stream (its request is the pipeline's head) */

    /* input */
    char *rbuf;
    size_t rcap, rlen, rpos; /* unparsed bytes are rbuf[rpos..rlen) */
    mx_http1_head_state_t head_state; /* where parsing of the unfinished head at rpos stopped */

    /* the request being received (head parsed, body incomplete) */
    mx_req_t *cur;
    size_t body_cap;
    uint64_t body_remaining;
    size_t body_limit;
    size_t body_window; /* body bytes received since the body timer was last armed */
    size_t write_window; /* bytes written since the write timer was last armed */
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
    unsigned char *route_stream;
    size_t n_route_stream;
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

    /* the response queue: workers -> I/O thread, and streams with news for it.
     * Lock order: out_mu is a leaf. */
    pthread_mutex_t out_mu;
    mx_req_t *out_head, *out_tail;
    mx_stream_t *notify_head, *notify_tail;
    mx_req_t *rnotify_head, *rnotify_tail; /* requests whose body reader has news */
    uint64_t next_stream_id; /* under out_mu */
    int io_done; /* under out_mu: the I/O thread has ended; nothing posted will be written */
    atomic_int wake_pending;

    /* the pool: I/O thread -> workers. Lock order: pool_mu is a leaf. */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    mx_task_t *task_head, *task_tail;
    int idle_workers;
    int pending_wakes;  /* signalled workers that have not woken yet */
    int one_cpu;        /* the process may run on one CPU only (its affinity at start) */
    int wakes_owed;     /* I/O thread only, one_cpu: signals held until the end of its pass */
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
void mx__timer_restart(mx_conn_t *c, int kind, double seconds); /* a new deadline even if armed */
void mx__post_response(mx_server_t *s, mx_req_t *r);
void mx__stream_notify(mx_stream_t *st); /* any thread; st->mu not held */

/* conn.c */
mx_conn_t *mx__conn_new(mx_server_t *s, int fd);
void mx__conn_free(mx_conn_t *c);
void mx__conn_on_readable(mx_conn_t *c);
void mx__conn_on_writable(mx_conn_t *c);
void mx__conn_response_ready(mx_conn_t *c);
void mx__conn_on_timeout(mx_conn_t *c, int kind);
void mx__conn_stream_ready(mx_conn_t *c);
void mx__conn_start_linger(mx_conn_t *c);
void mx__conn_write_state(mx_conn_t *c, int blocked, size_t progressed);

/* body.c */
mx_body_chan_t *mx__body_chan_new(uint64_t size_hint); /* the body's length, 0: unknown */
void mx__body_chan_free(mx_body_chan_t *ch);
int mx__body_push(mx_body_chan_t *ch, const char *data, size_t n); /* 1: now full; <0 ENOMEM */
int mx__body_room(mx_body_chan_t *ch, size_t want, char **at, size_t *len); /* 1: full */
int mx__body_commit(mx_body_chan_t *ch, size_t n); /* I/O thread: 1 when now full */
size_t mx__body_free(mx_body_chan_t *ch); /* I/O thread: what one push may take */
void mx__body_end(mx_body_chan_t *ch, int err); /* err 0: complete */
int mx__body_complete(mx_body_chan_t *ch);
int mx__body_splice_in(mx_body_chan_t *ch, int fd, size_t max, int *full); /* I/O thread */
int mx__body_start_splice(mx_body_chan_t *ch); /* I/O thread: 1 if splicing now */
void mx__req_notify(mx_req_t *r);              /* any thread */
void mx__conn_req_notify(mx_conn_t *c, mx_req_t *r); /* I/O thread (conn.c) */

/* stream.c */
mx_stream_t *mx__stream_new(mx_server_t *s, int kind);
int mx__stream_queue_locked(mx_stream_t *st, mx_wnode_t *n); /* st->mu held; takes n */
mx_wnode_t *mx__wnode_new(mx_bytes_t *b, size_t start, size_t end); /* takes a reference */
mx_wnode_t *mx__wnode_raw(void *data, size_t len); /* takes ownership of data; frees it on failure */
/* A node that writes head (at most 14 bytes) and then a copy of data. NULL on ENOMEM. */
mx_wnode_t *mx__wnode_copy(const void *head, size_t head_len, const void *data, size_t len);
void mx__wnode_free(mx_wnode_t *n);
void mx__stream_attach(mx_conn_t *c, mx_stream_t *st);
int mx__stream_flush(mx_conn_t *c); /* 1: the stream is over and its request left */
void mx__stream_detach(mx_stream_t *st);
void mx__stream_on_notify(mx_stream_t *st);
void mx__stream_on_timeout(mx_conn_t *c, int kind);
void mx__stream_shutdown(mx_stream_t *st); /* server stopping: close WS with 1001, end SSE */
/* Queues an event for delivery (st->mu held). Returns 1 when the stream was not scheduled and
 * now is, holding the pool's reference: the caller then calls mx__pool_push(st->server,
 * &st->super) once it has released st->mu, so the woken worker never waits for that lock. */
int mx__ws_push_event_locked(mx_stream_t *st, mx_ws_msg_t *m);

/* websocket.c (I/O thread) */
void mx__ws_on_input(mx_conn_t *c);
void mx__ws_on_attach(mx_conn_t *c, mx_stream_t *st);
int mx__ws_after_write(mx_conn_t *c, mx_stream_t *st, int close_written);
void mx__ws_free(mx_stream_t *st);
void mx__ws_on_timeout(mx_conn_t *c, mx_stream_t *st, int kind);
void mx__ws_task_finish(mx_stream_t *st); /* worker: requeue if events remain */

/* pool.c */
int64_t mx__now_ns(void);
void mx__thread_batch_policy(void);
void mx__pool_check_stall(mx_server_t *s);
void mx__pool_shed(mx_server_t *s);
int mx__pool_has_queued(mx_server_t *s);
int mx__pool_start(mx_server_t *s);
void mx__pool_push(mx_server_t *s, mx_task_t *t);
void mx__pool_io_thread(mx_server_t *s); /* called once by the I/O thread */
void mx__pool_flush_wakes(mx_server_t *s); /* I/O thread, before it waits for events */
void mx__pool_stop(mx_server_t *s);

/* response.c */
int mx__build_simple(mx_req_t *r, int status, const char *extra_headers, const char *body,
                     int close_conn);
mx_req_t *mx__req_new(mx_server_t *s, mx_conn_t *c, const mx_http1_request_t *h, size_t head_len);

#endif
