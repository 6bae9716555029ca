/*
 * internal.h: the server's private structures, shared by server.c (life cycle, accept), conn.c
 * (connection state machine), req.c, response.c, stream.c, buf.c, sse.c and ws_conn.c. Not for
 * the binding.
 * The loop (loop.h) and the pool (pool.h) stand below these and know none of them.
 */
#ifndef MX_INTERNAL_H
#define MX_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "body.h"
#include "loop.h"
#include "mx.h"
#include "pool.h"

/* Connection states (STYLE: head -> body -> dispatched -> writing -> keep-alive or close). */
enum mx_conn_state {
    MX_CONN_HEAD = 0,     /* waiting for (more of) a request head */
    MX_CONN_BODY_CL,      /* reading a Content-Length body into conn->cur */
    MX_CONN_BODY_CHUNKED, /* decoding a chunked body into conn->cur */
    MX_CONN_DRAIN,        /* an error response is queued; input is no longer parsed */
    MX_CONN_WS,           /* upgraded: input is WebSocket frames */
};

/* Which timer class a connection is armed in (loop.h; at most MX_LOOP_TIMER_CLASSES - 1). */
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
 * A stream (SSE or WebSocket). Lock order: send_mu, then mu, then the loop's queue mutex or the
 * pool's mutex. Never call out of the core while holding either.
 */
struct mx_stream {
    mx_task_t super; /* MX_TASK_WS: deliver queued events */
    atomic_int refcnt;
    mx_server_t *server;
    mx_msg_t notify_msg; /* "this stream has news" for the loop (data, its end, room to read) */
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
    unsigned char want_resume;    /* the reader paused for a full inbound queue may resume */
    unsigned char aborted;        /* BODY: the producer failed; cut the connection, no last chunk */
    int writers_waiting;          /* BODY: writers blocked for room (flush signals cv) */
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
#define MX_STREAM_BODY 3 /* a streamed response body (mx_req_respond_stream) */

/*
 * A request's private half (mx_req_t.io; allocated with it by mx__req_new). "Response" fields
 * are written once by the committing thread (response.c commit) and read by the I/O thread after
 * the response message arrives; the rest belongs to the I/O thread, except chan and read_pos,
 * which are the body reader's (req_body.c).
 */
typedef struct mx_req_io {
    struct mx_req *req;   /* the request it belongs to */
    struct mx_conn *conn; /* NULL once the connection is gone (I/O thread) */
    struct mx_req *next_in_conn; /* the connection's pipeline (I/O thread) */
    mx_msg_t resp_msg;           /* "the response is ready", to the I/O thread */
    mx_msg_t notify_msg;         /* "the body reader has news" (room, or 100 Continue wanted) */
    /* ---- response ---- */
    char *resp;
    size_t resp_len;
    size_t resp_off; /* written so far (I/O thread) */
    /* separate bytes, not bit-fields: the responding thread writes resp_close while the I/O
     * thread may read resp_ready, and bit-fields sharing a byte would race */
    unsigned char resp_ready; /* I/O thread */
    unsigned char resp_close; /* close the connection after this response */
    unsigned char dispatched; /* handed to the pool (I/O thread) */
    mx_stream_t *stream; /* an SSE stream or WebSocket that follows the response head (owned) */
    /* ---- the body ---- */
    mx_body_chan_t *chan; /* streamed body (a stream=True route); NULL when buffered */
    size_t read_pos;      /* mx_req_read's position in a buffered body */
} mx_req_io_t;

typedef struct mx_conn {
    mx_io_t io;       /* its socket in the loop: io.fd, io.events, io.closing */
    mx_timer_t timer; /* the one timer a connection has armed at a time (enum mx_timer_kind) */
    mx_server_t *server;
    int state;
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

    /* all connections (for shutdown) */
    struct mx_conn *prev, *next;

    char remote_addr[64];
    int remote_port;
} mx_conn_t;

struct mx_server {
    mx_config_t cfg;
    mx_router_t *router;

    /* listening */
    mx_io_t listen_io; /* listen_io.fd is -1 when not listening */
    int is_unix;
    char *unix_path;
    int port;

    mx_loop_t loop; /* run by the I/O thread */
    mx_pool_t pool; /* the workers */
    pthread_t io_thread;
    int io_started;
    mx_conn_t *conns; /* every connection; I/O thread */
    size_t nconns;
    int accept_paused;
    int64_t accept_resume_at; /* after EMFILE: when to try accepting again */
    uint64_t next_stream_id;  /* atomic */

    /* lifecycle. Lock order: life_mu before nothing. */
    pthread_mutex_t life_mu;
    pthread_cond_t life_cv;
    atomic_int stopping; /* 1: draining; 2: closing everything */
    int stopped;
    int started;
};

/* conn.c: connections (I/O thread) */
static inline int64_t mx__ms(double seconds) {
    return seconds <= 0 ? 0 : seconds < 0.001 ? 1 : (int64_t)(seconds * 1000.0);
}
/* Arms c's timer in class kind (MX_TIMER_NONE or seconds <= 0: disarms); re-arming the class it is
 * in keeps the deadline. */
static inline void mx__timer_set(mx_conn_t *c, int kind, double seconds) {
    mx_loop_timer_set(&c->server->loop, &c->timer, kind, mx__ms(seconds));
}
/* As mx__timer_set, always with a new deadline. */
static inline void mx__timer_restart(mx_conn_t *c, int kind, double seconds) {
    mx_loop_timer_restart(&c->server->loop, &c->timer, kind, mx__ms(seconds));
}
static inline void mx__conn_set_events(mx_conn_t *c, uint32_t events) {
    mx_loop_io_set(&c->server->loop, &c->io, events);
}
/* Closes c's socket now; c is freed at the end of the pass. */
void mx__conn_close(mx_conn_t *c);

/* A connection for the accepted socket fd (not yet watched), or NULL on ENOMEM. */
mx_conn_t *mx__conn_new(mx_server_t *s, int fd);
/* Links c into the server's list and starts watching it. 0, or MX_ESYS (then c is closed). */
int mx__conn_open(mx_conn_t *c);
void mx__conn_response_ready(mx_conn_t *c);
void mx__conn_stream_ready(mx_conn_t *c);
void mx__conn_start_linger(mx_conn_t *c);
void mx__conn_write_state(mx_conn_t *c, int blocked, size_t progressed);

/* req_body.c / response.c: a streamed body's reader has news (room, or 100 Continue) */
void mx__req_notify(mx_req_t *r); /* any thread */
void mx__req_notify_cb(void *r);   /* the same, as the body channel's notify callback */
void mx__conn_req_notify(mx_conn_t *c, mx_req_t *r); /* I/O thread (conn.c) */

/* buf.c: write nodes (any thread; a node belongs to one list at a time) */
mx_wnode_t *mx__wnode_new(mx_bytes_t *b, size_t start, size_t end); /* takes a reference */
mx_wnode_t *mx__wnode_raw(void *data, size_t len); /* takes ownership of data; frees it on failure */
/* A node that writes head (at most 14 bytes) and then a copy of data. NULL on ENOMEM. */
mx_wnode_t *mx__wnode_copy(const void *head, size_t head_len, const void *data, size_t len);
void mx__wnode_free(mx_wnode_t *n);
size_t mx__wnode_size(const mx_wnode_t *n);                /* bytes the node writes in all */
void mx__wnode_chunk(mx_wnode_t *n);                        /* frame it as an HTTP/1.1 chunk */
int mx__wnode_iov(const mx_wnode_t *n, struct iovec *iov); /* its unwritten parts (<= 3) */
void mx__free_list(mx_wnode_t *n);                          /* frees a list of nodes */

/* stream.c */
void mx__stream_notify(mx_stream_t *st); /* any thread; st->mu not held */
mx_stream_t *mx__stream_new(mx_server_t *s, int kind); /* any thread */
int mx__stream_queue_locked(mx_stream_t *st, mx_wnode_t *n); /* st->mu held; takes n */
/* I/O thread: */
void mx__stream_attach(mx_conn_t *c, mx_stream_t *st);
int mx__stream_flush(mx_conn_t *c); /* 1: the stream is over and its request left */
void mx__stream_detach(mx_stream_t *st); /* also the binding's thread once the loop has ended */
void mx__stream_on_notify(mx_stream_t *st);
void mx__stream_on_timeout(mx_conn_t *c, int kind);
void mx__stream_shutdown(mx_stream_t *st); /* server stopping: close WS with 1001, end SSE */
/* Queues an event for delivery (st->mu held). Returns 1 when the stream was not scheduled and
 * now is, holding the pool's reference: the caller then calls mx_pool_push(&st->server->pool,
 * &st->super) once it has released st->mu, so the woken worker never waits for that lock. */
int mx__ws_push_event_locked(mx_stream_t *st, mx_ws_msg_t *m);

/* ws_conn.c (I/O thread) */
void mx__ws_on_input(mx_conn_t *c);
void mx__ws_on_attach(mx_conn_t *c, mx_stream_t *st);
int mx__ws_after_write(mx_conn_t *c, mx_stream_t *st, int close_written);
void mx__ws_free(mx_stream_t *st);
void mx__ws_on_timeout(mx_conn_t *c, mx_stream_t *st, int kind);
void mx__ws_task_finish(mx_stream_t *st); /* worker: requeue if events remain */

/* response.c */
/* Hands r's response (one reference to r) to the I/O thread. Any thread. */
void mx__post_response(mx_req_t *r);
/* Task functions of a request in the pool: a handler runs it, or (the log variant) it is only
 * logged and never shed. */
extern const mx_task_ops_t mx__req_task_ops, mx__req_log_task_ops;
/* I/O thread: the server's own answer (status and reason phrase, text/plain) to a request its
 * connection is still reading; ready at once. 0 or MX_ENOMEM. */
int mx__respond_error_now(mx_req_t *r, int status, int close_conn);
/* Any thread but the I/O thread: commits a response built elsewhere (the WebSocket handshake):
 * r takes buf and one reference to st (or NULL); the caller won r->responded. */
void mx__req_commit(mx_req_t *r, int status, char *buf, size_t len, int close_conn,
                    mx_stream_t *st);
mx_req_t *mx__req_new(mx_server_t *s, mx_conn_t *c, const mx_http1_request_t *h, size_t head_len);

#endif
