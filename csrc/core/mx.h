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
#include "router.h"

typedef struct mx_server mx_server_t;
typedef struct mx_req mx_req_t;
struct mx_conn;

#define MX_EALREADY (-114) /* a final response was already given */

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
    int backlog;            /* listen(2) backlog */
    int route_not_found;    /* 1: unmatched requests go to the hooks (custom 404 handler) */
    int route_not_allowed;  /* 1: wrong-method requests go to the hooks (custom 405 handler) */
    int access_log;         /* 1: every request reaches the hooks, at least to be logged */
} mx_config_t;

/* Called on worker threads. run() owns one reference to req and must hand it back with
 * mx_req_done() once the handler has returned (also for requests taken with mx_pool_trypop). */
typedef struct mx_hooks {
    void *ctx;
    void (*worker_start)(void *ctx);
    void (*worker_stop)(void *ctx);
    void (*run)(void *ctx, mx_req_t *req);
} mx_hooks_t;

/* Why a request reached the hooks. */
#define MX_REQ_ROUTE 0             /* matched route_id (or no router: route_id is 0) */
#define MX_REQ_NOT_FOUND 1         /* no route matched (custom 404 handler) */
#define MX_REQ_METHOD_NOT_ALLOWED 2 /* path matched other methods (custom 405); allow is set */

/*
 * One request, shared between the I/O thread and a worker by reference count.
 * Fields under "request" are written by the I/O thread before dispatch and never change after,
 * so any thread holding a reference may read them. The rest is private to the core.
 */
struct mx_req {
    struct mx_req *next_task; /* pool queue link (pool mutex) */
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
    int64_t t_queued_ns;     /* when it entered the pool's queue (pool.c) */
    int64_t t_popped_ns;     /* when a worker took it */

    /* ---- response (written once by the responding thread, then handed over) ---- */
    atomic_int responded;
    int status;
    size_t resp_body_len; /* for the access log */

    /* ---- private to the I/O thread ---- */
    struct mx_conn *conn; /* NULL once the connection is gone */
    struct mx_req *next_in_conn;
    struct mx_req *next_out; /* response queue link (server out mutex) */
    char *resp;
    size_t resp_len;
    size_t resp_off;
    /* separate bytes, not bit-fields: the responding thread writes resp_close while the I/O
     * thread may read resp_ready, and bit-fields sharing a byte would race */
    unsigned char resp_ready;
    unsigned char resp_close; /* close the connection after this response */
    unsigned char dispatched;
};

/* Fills c with the defaults. Any thread. */
void mx_config_defaults(mx_config_t *c);

/*
 * Creates a stopped server. Takes ownership of router (may be NULL: every request goes to the
 * hooks with kind MX_REQ_ROUTE and route_id 0). route_max_body[route_id] (copied, may be NULL,
 * n entries; SIZE_MAX means unlimited) overrides max_body_len per route. Returns NULL on ENOMEM.
 * Binding thread.
 */
mx_server_t *mx_server_new(const mx_config_t *cfg, mx_router_t *router,
                           const size_t *route_max_body, size_t n, const mx_hooks_t *hooks);

/* Binds and listens; returns 0 or MX_ESYS with errno set (and a message in err). Before start. */
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

/* Blocks up to timeout seconds for the server to stop; returns 1 when stopped. No GIL needed. */
int mx_server_wait(mx_server_t *s, double timeout);

/* Frees a stopped (or never started) server. Binding thread. */
void mx_server_free(mx_server_t *s);

/*
 * From inside hooks->run: takes the next queued request without blocking, or NULL. Lets a worker
 * that already holds the GIL run several requests per acquisition. Worker thread.
 */
mx_req_t *mx_pool_trypop(mx_server_t *s);

/* A worker finished running r (its handler returned): drops the pool's reference. Worker. */
void mx_req_done(mx_req_t *r);

/* Reference counting; any thread. The last decref frees the request. */
void mx_req_incref(mx_req_t *r);
void mx_req_decref(mx_req_t *r);

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

/* Finds the first header of a request by lowercase name; returns NULL when absent. */
const mx_header_t *mx_req_header(const mx_req_t *r, const char *lower_name, size_t len);

#endif
