/*
 * mx.h: the one header the Python binding includes. Pure C: the server core never sees Python.
 *
 * Threads (STYLE.md "The threading contract"):
 *   - the I/O thread runs the epoll loop and owns every socket and connection;
 *   - worker threads (the pool) run requests through the hooks the binding installs;
 *   - the binding's own threads (serve(), close()) only start and stop the server.
 * Every function below says which of them may call it.
 */
#ifndef MX_H
#define MX_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "compress.h"
#include "http1.h"
#include "pool.h"
#include "router.h"

typedef struct mx_server mx_server_t;
typedef struct mx_req mx_req_t;
typedef struct mx_stream mx_stream_t;
struct mx_conn;

#define MX_EALREADY (-114) /* a final response was already given */
#define MX_EFULL (-105)    /* a send queue is over its bound (the peer stopped reading) */

/*
 * Work for the pool (mx_task_t, pool.h), told apart by its kind: a request (MX_TASK_REQUEST) runs
 * its handler; a WebSocket connection (MX_TASK_WS) delivers its queued events, one at a time and
 * in order. The task is embedded at the start of mx_req_t and mx_stream_t.
 */
#define MX_TASK_REQUEST 0
#define MX_TASK_WS 1

/* The least body data a client must send per body_timeout (or the rest of its body). */
#define MX_BODY_MIN_BYTES 1024
/* The least output a stuck client must take per write_timeout. */
#define MX_WRITE_MIN_BYTES 1024

/* Server limits and switches. mx_config_defaults fills in the documented defaults. */
typedef struct mx_config {
    int workers;            /* worker threads in the pool */
    size_t max_headers_len; /* request head bytes (431 beyond) */
    size_t max_target_len;  /* request-target bytes (414 beyond) */
    size_t max_body_len;    /* request body bytes (413 beyond), unless a route says otherwise */
    int compression;        /* gzip/deflate responses when the client allows it */
    int max_pipeline;       /* requests of one connection in flight at once; reading pauses beyond */
    int max_connections;    /* accepting pauses beyond */
    double header_timeout;  /* seconds for a whole request head to arrive (408); <= 0: none */
    double idle_timeout;    /* seconds a keep-alive connection may sit idle; <= 0: none */
    double body_timeout;    /* a body must bring MX_BODY_MIN_BYTES per this many seconds (408) */
    double write_timeout;   /* seconds output may stay stuck before the connection is closed */
    double max_queue_time;  /* seconds a request may wait for a worker; then 503 (<= 0: none) */
    size_t max_send_queue;  /* bytes an SSE stream or WebSocket may have queued (slow peers) */
    double sse_heartbeat;   /* seconds of silence before an SSE stream gets a comment; <= 0: none */
    size_t max_message_len; /* WebSocket message bytes (1009 beyond) */
    int websocket_compression;      /* negotiate permessage-deflate */
    double websocket_ping_interval; /* seconds of silence before a ping; <= 0: none */
    double websocket_close_timeout; /* seconds to wait for the peer's close frame */
    int backlog;            /* listen(2) backlog */
    int route_not_found;    /* 1: unmatched requests go to the hooks (custom 404 handler) */
    int route_not_allowed;  /* 1: wrong-method requests go to the hooks (custom 405 handler) */
    int access_log;         /* 1: every request reaches the hooks, at least to be logged */
} mx_config_t;


/* Why a request reached the hooks. */
#define MX_REQ_ROUTE 0             /* matched route_id (or no router: route_id is 0) */
#define MX_REQ_NOT_FOUND 1         /* no route matched (custom 404 handler) */
#define MX_REQ_METHOD_NOT_ALLOWED 2 /* path matched other methods (custom 405); allow is set */

/*
 * One request, shared between the I/O thread and a worker by reference count (mx_req_incref,
 * mx_req_decref). Fields under "request" are written by the I/O thread before dispatch and never
 * change after, so any thread holding a reference may read them; "response" fields are written
 * once by the responding thread. The binding reads these and never writes them; the core's own
 * state of the request is behind io, which only the core sees.
 */
struct mx_req {
    mx_task_t super; /* kind MX_TASK_REQUEST */
    atomic_int refcnt;
    mx_server_t *server;

    /* ---- request (read-only once dispatched) ---- */
    const char *method;
    size_t method_len;
    const char *target; /* raw request-target */
    size_t target_len;
    const char *path; /* raw path part of the target (still percent-encoded) */
    size_t path_len;
    const char *query; /* after '?', without it; NULL when absent */
    size_t query_len;
    mx_header_t *headers;
    size_t num_headers;
    char *body;
    size_t body_len;
    int minor_version;
    int kind;     /* MX_REQ_* */
    int route_id; /* for MX_REQ_ROUTE */
    size_t num_params;
    mx_route_param_t params[MX_ROUTE_MAX_PARAMS]; /* values in param_buf */
    char *param_buf;
    char allow[512]; /* for MX_REQ_METHOD_NOT_ALLOWED */
    size_t allow_len;
    char remote_addr[64]; /* numeric address, or "" for Unix sockets */
    int remote_port;
    unsigned char is_head;    /* HEAD: response body suppressed */
    unsigned char keep_alive; /* the client allows the connection to stay open */
    int accept_enc;          /* MX_ENC_* chosen from Accept-Encoding */
    unsigned char log_only;  /* already answered by the server (an error): only log it */
    unsigned char ws_offered; /* the head asked for a WebSocket upgrade */

    /* ---- response (written once by the responding thread, then handed over) ---- */
    atomic_int responded;
    int status;
    size_t resp_body_len; /* for the access log */

    /* The core's private half (internal.h): where the response and the body go. */
    struct mx_req_io *io;
};

/* Fills c with the defaults. Any thread. */
void mx_config_defaults(mx_config_t *c);

/*
 * Creates a stopped server. Takes ownership of router (may be NULL: every request goes to the
 * hooks with kind MX_REQ_ROUTE and route_id 0). Each route's own limits (body size, streaming)
 * come with its match (mx_route_opts_t). hooks is copied. Returns NULL on ENOMEM. Binding thread.
 */
mx_server_t *mx_server_new(const mx_config_t *cfg, mx_router_t *router, const mx_hooks_t *hooks);

/* Binds and listens; returns 0 or MX_ESYS with errno set (and a message in err). The server owns
 * the socket. Binding thread, before start. */
int mx_server_listen_tcp(mx_server_t *s, const char *host, int port, char *err, size_t errlen);
int mx_server_listen_unix(mx_server_t *s, const char *path, char *err, size_t errlen);

/* The bound TCP port, or 0. Any thread. */
int mx_server_port(const mx_server_t *s);

/* Starts the worker pool and the I/O thread. Returns 0 or MX_ESYS/MX_ENOMEM. Binding thread. */
int mx_server_start(mx_server_t *s);

/*
 * Stops accepting, lets in-flight requests finish for up to timeout seconds, then closes every
 * connection and joins every thread. Blocks: the binding must release the GIL around it, since
 * workers need the GIL to finish. Idempotent. Binding thread, never a worker.
 */
void mx_server_stop(mx_server_t *s, double timeout);

/* Blocks up to timeout seconds (< 0: forever) for the server to stop; returns 1 when stopped.
 * Any thread but the I/O thread and the workers; no GIL needed (release it). */
int mx_server_wait(mx_server_t *s, double timeout);

/* Frees a stopped (or never started) server. Binding thread. */
void mx_server_free(mx_server_t *s);

/*
 * From inside hooks->run: takes the next queued task without blocking, or NULL. Lets a worker
 * that already holds the GIL run several tasks per acquisition. Worker thread.
 */
mx_task_t *mx_pool_trypop(mx_server_t *s);

/* A worker finished running t (a handler returned, or a WebSocket's events were delivered):
 * drops the pool's reference. Worker. */
void mx_task_done(mx_server_t *s, mx_task_t *t);

/*
 * Reading a request body. On a streamed route this blocks until data arrives (call it without
 * the GIL); on other routes it reads the buffered body. Returns the bytes copied (> 0), 0 at the
 * end of the body, MX_ECLOSED when the client went away or the connection was cut, or
 * MX_EINVAL when the body was malformed or too large (the client was already answered 400/413).
 * The first read on a streamed route sends 100 Continue if the client asked for it. Worker (or
 * any thread holding a reference to r), one reader at a time.
 */
ssize_t mx_req_read(mx_req_t *r, char *buf, size_t n);
/*
 * Reading a request body without copying it: waits as mx_req_read does, then points *data at the
 * next body bytes where they lie (the request's buffer) and returns how many there are (> 0),
 * 0 at the end, or mx_req_read's errors. The bytes stay valid and in place until
 * mx_req_consume(r, n), which drops the first n of them (n <= what peek returned) and gives the
 * buffer back; call it before the next peek or read. Same threads as mx_req_read.
 */
ssize_t mx_req_peek(mx_req_t *r, const char **data);
void mx_req_consume(mx_req_t *r, size_t n);
/* 1 when r's body is streamed (read with mx_req_read, r->body stays empty). Any thread. */
int mx_req_streamed(const mx_req_t *r);
/*
 * Writes the rest of the body to path: into a temporary file in the same directory, renamed
 * into place once complete; on any failure the temporary file is removed and nothing is left.
 * Returns 0 with *written set, a mx_req_read error, or MX_ESYS with errno set. No GIL needed.
 * A streamed Content-Length body moves socket -> pipe -> file with splice(2); if the save fails
 * midway, mx_req_read still returns the rest of the body, in order. Same threads as
 * mx_req_read; path is copied.
 */
int mx_req_save_body(mx_req_t *r, const char *path, uint64_t *written);

/*
 * Writes what pull(ctx, &data, &len) yields (1: data, 0: the end, < 0: an error code returned
 * as is) into a temporary file next to path, renamed into place once complete; on any failure
 * the temporary file is removed. Returns 0 with *written set, pull's error, MX_ENOMEM, or
 * MX_ESYS with errno set. No GIL needed; any thread (pull runs on it). Shared by save_body and
 * multipart Part.save.
 */
typedef int (*mx_pull_fn)(void *ctx, const char **data, size_t *len);
int mx_save_to_file(const char *path, mx_pull_fn pull, void *ctx, uint64_t *written);

/* Reference counting; any thread. The last decref frees the request. */
void mx_req_incref(mx_req_t *r);
void mx_req_decref(mx_req_t *r);

/* Debug builds (MX_DEBUG_COUNTS, set by MUMMYX_DEBUG=1 and MUMMYX_SANITIZE=1): how many requests
 * exist now, in every server of the process; -1 in other builds. Any thread. Once every server
 * is closed and every Request object is gone this is 0; anything else is a reference that was
 * never dropped, or a Python object that outlived its request (tests/conftest.py checks it). */
long mx_debug_live_requests(void);

/* A response header given by the binding; name and value need not be NUL-terminated. */
typedef mx_header_t mx_resp_header_t;

/*
 * Gives the final response: builds status line, headers (adding Date, Content-Length,
 * Connection, compression and Vary where due) and body, and queues it for the I/O thread, which
 * writes responses of one connection in request order. Copies everything it needs.
 * Returns 0; MX_EALREADY when the request already has a response; MX_EINVAL when a header name
 * is not a token, a value holds CR/LF/NUL, the status is outside 200..999 (1xx is not final), or
 * a header the server manages is set (Transfer-Encoding); *bad_header is then the index of the
 * offending header or -1. Does not block; never touches the socket. Any thread; thread-safe.
 */
int mx_req_respond(mx_req_t *r, int status, const mx_resp_header_t *headers, size_t n,
                   const char *body, size_t body_len, int *bad_header);

/* The standard reason phrase for a status, or "Unknown". */
const char *mx_status_reason(int status);

/*
 * The server's own answer to r: status with its reason phrase as a text/plain body (405 with
 * Allow, 503 with Retry-After), as the server gives when no handler answers (404/405 without
 * custom handlers, a request shed after max_queue_time, the last-resort 500). Returns 0,
 * MX_EALREADY or MX_ENOMEM. Any thread holding a reference to r, except the I/O thread.
 */
int mx_req_respond_error(mx_req_t *r, int status);

/* Finds the first header of a request by lowercase name; returns NULL when absent. The result
 * points into r (valid while the caller holds its reference). Any thread. */
const mx_header_t *mx_req_header(const mx_req_t *r, const char *lower_name, size_t len);

/* ---- streams: Server-Sent Events and WebSockets (stream.c, sse.c, ws_conn.c) ----
 *
 * A stream is the part of a connection that outlives the request's handler. Any thread may send
 * on it: sends copy (or share) the bytes into the stream's bounded queue and wake the I/O thread,
 * which alone writes to the socket. When the connection goes away the stream is marked closed;
 * later sends fail with MX_ECLOSED. Streams are reference counted; the binding holds one.
 */

/* Immutable shared bytes (one SSE event fanned out to many streams, a WebSocket message). Counted;
 * any thread. A send takes its own reference, so the caller drops its own when done. The bytes
 * are at ptr: the core's own (data, from mx_bytes_new) or borrowed from their owner
 * (mx_bytes_borrow), who gets them back through release once the last reference is gone. */
typedef struct mx_bytes {
    atomic_int refcnt;
    size_t len;
    const char *ptr;
    void (*release)(void *ctx, void *owner); /* borrowed bytes only */
    void *ctx, *owner;
    char data[];
} mx_bytes_t;
mx_bytes_t *mx_bytes_new(size_t len); /* refcnt 1, ptr = data; NULL on ENOMEM. Any thread. */
/* Bytes the core points at without copying: len bytes at ptr, which the owner keeps unchanged and
 * alive until release(ctx, owner) is called, exactly once, when the last reference goes; that
 * happens on any thread (usually the I/O thread, once the bytes are written), so release must
 * neither block nor call into the owner's runtime (a binding queues the owner for later).
 * refcnt 1; NULL on ENOMEM (then release is not called). Any thread. */
mx_bytes_t *mx_bytes_borrow(const void *ptr, size_t len, void (*release)(void *ctx, void *owner),
                            void *ctx, void *owner);
void mx_bytes_decref(mx_bytes_t *b); /* any thread; the last one frees (or releases) */

/* Reference counting; any thread. The last decref frees the stream. */
void mx_stream_incref(mx_stream_t *st);
void mx_stream_decref(mx_stream_t *st);
/* A number unique among the process's streams, for the binding's bookkeeping. Any thread. */
uint64_t mx_stream_id(const mx_stream_t *st);
/* 1 once no more data can be sent (closed by either side, or the connection is gone). Any
 * thread. */
int mx_stream_closed(mx_stream_t *st);
/* Blocks (no locks of the caller held, no GIL) until the connection is gone or timeout seconds
 * (< 0: forever) pass; returns 1 when it is gone. */
int mx_stream_wait_finished(mx_stream_t *st, double timeout);
/* The binding's object for this stream (the WebSocket's Python object), not owned by the core:
 * set once before the stream is shared, read by the delivering worker. */
void *mx_stream_user(const mx_stream_t *st);
void mx_stream_set_user(mx_stream_t *st, void *user);

/*
 * SSE. mx_req_respond_sse answers 200 with the event-stream headers and the caller's (same rules
 * as mx_req_respond) and returns the stream in *out (one reference for the caller). On HTTP/1.1
 * the body is chunked, so closing ends it and the connection can be reused. Any thread.
 */
int mx_req_respond_sse(mx_req_t *r, const mx_resp_header_t *headers, size_t n, int *bad_header,
                       mx_stream_t **out);
/*
 * A streamed response body: answers status (200..999, not 204/304) with the caller's headers
 * (as mx_req_respond; a Content-Length is dropped) and returns the stream in *out (one reference
 * for the caller). The body goes chunked on HTTP/1.1 (the connection can be reused after
 * mx_sse_close ends it) and close-delimited on HTTP/1.0. Any thread.
 */
int mx_req_respond_stream(mx_req_t *r, int status, const mx_resp_header_t *headers, size_t n,
                          int *bad_header, mx_stream_t **out);
/* Queues a copy of data[0..len) on a response stream. With block, waits (no core lock held by the
 * caller; release the GIL) while the stream's backlog is over max_send_queue, so a slow client
 * slows the producer instead of growing memory; without, returns MX_EAGAIN then. 0, MX_ECLOSED
 * (the client is gone, the stream was ended or aborted), MX_ENOMEM. Any thread. */
int mx_stream_write(mx_stream_t *st, const void *data, size_t len, int block);
/* The producer failed mid-body: the connection is closed without the body's end, so the client
 * sees a truncated response rather than a short complete one. Idempotent. Any thread. */
void mx_stream_abort(mx_stream_t *st);
/* Encodes one event (WHATWG event stream): event/id may not hold CR or LF, id not NUL (MX_EINVAL);
 * retry < 0 means none. comment != 0 encodes data as comment lines instead. *out gets new bytes
 * (one reference for the caller). Any thread. */
int mx_sse_encode(const char *data, size_t len, const char *event, size_t event_len,
                  const char *id, size_t id_len, long long retry, int comment, mx_bytes_t **out);
/* Queues encoded bytes; MX_ECLOSED when closed, MX_EFULL when the queue bound was hit (the stream
 * is then closed and its connection dropped). Never blocks on the network. Any thread. */
int mx_sse_send(mx_stream_t *st, mx_bytes_t *b);
/* Ends the stream cleanly (idempotent): SSE streams and streamed response bodies. Any thread. */
void mx_sse_close(mx_stream_t *st);

/* ---- WebSockets ---- */
#define MX_WS_EVENT_OPEN 0
#define MX_WS_EVENT_MESSAGE 1
#define MX_WS_EVENT_ERROR 2
#define MX_WS_EVENT_CLOSE 3
typedef struct mx_ws_msg {
    struct mx_ws_msg *next;
    int event;      /* MX_WS_EVENT_* */
    int opcode;     /* for MESSAGE: MX_WS_OP_TEXT, BINARY, PING or PONG */
    uint8_t *data;  /* malloc'ed (or NULL when len is 0) */
    size_t len;
} mx_ws_msg_t;
void mx_ws_msg_free(mx_ws_msg_t *m); /* any thread; m and its data */

/*
 * Checks the request's WebSocket handshake and answers it: 101 with the accept key, the first
 * subprotocol the client offers among protocols[0..nprot) (*selected: its index or -1), and
 * permessage-deflate when enabled and offered. On a bad handshake answers 400 (or 426 for a
 * version other than 13) and returns that status; returns MX_EALREADY when a response was already
 * given, MX_ENOMEM, or 0 with the stream in *out (one reference for the caller). Any thread.
 */
int mx_req_upgrade_ws(mx_req_t *r, const char *const *protocols, size_t nprot, int *selected,
                      mx_stream_t **out);
/* Queues one message (opcode MX_WS_OP_TEXT/BINARY/PING/PONG), compressing it when negotiated.
 * Copies data. Returns 0, MX_ECLOSED, MX_EFULL (the peer stopped reading: closed with 1008),
 * MX_ENOMEM. Any thread, concurrent senders serialized (send_mu); never blocks on the network. */
int mx_ws_send(mx_stream_t *st, int opcode, const void *data, size_t len);
/* As mx_ws_send, with the payload in b (a reference is taken; the caller keeps its own): without
 * permessage-deflate the frame points at b's bytes, so a borrowed payload is never copied. */
int mx_ws_send_bytes(mx_stream_t *st, int opcode, mx_bytes_t *b);
/* 1 when permessage-deflate was negotiated (sends then compress: worth releasing the GIL). Any
 * thread. */
int mx_ws_deflating(const mx_stream_t *st);
/* Starts the closing handshake (idempotent); reason (copied) is cut to fit a control frame. Any
 * thread. */
void mx_ws_close(mx_stream_t *st, int code, const char *reason, size_t reason_len);
/* Worker, inside hooks->run for an MX_TASK_WS task: the next event to deliver, or NULL when
 * there is none left (the task is then over). The caller frees it with mx_ws_msg_free. */
mx_ws_msg_t *mx_ws_next_event(mx_stream_t *st);
/* After the CLOSE event: the peer's close code (1005 none, 1006 abnormal) and reason (copied
 * into reason[0..cap)). Any thread. */
int mx_ws_close_code(mx_stream_t *st, char *reason, size_t cap, size_t *reason_len);
/* 1 when the connection ended because the peer stopped reading (for the log). Any thread. */
int mx_ws_was_slow(mx_stream_t *st);

#endif
