/*
 * req.c: a request's life as a shared object: made by the I/O thread from a parsed head
 * (mx__req_new), counted (incref/decref; debug builds count live ones), its two messages to the
 * I/O thread (the response is ready; the body reader has news) and its task in the pool (run,
 * or shed with 503). Any thread, as each function says.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "text.h"

#ifdef MX_DEBUG_COUNTS
static atomic_long live_requests; /* mx__req_new minus the last decrefs */
#endif

long mx_debug_live_requests(void) {
#ifdef MX_DEBUG_COUNTS
    return atomic_load(&live_requests);
#else
    return -1;
#endif
}

void mx_req_incref(mx_req_t *r) { atomic_fetch_add_explicit(&r->refcnt, 1, memory_order_relaxed); }

void mx_req_decref(mx_req_t *r) {
    if (atomic_fetch_sub_explicit(&r->refcnt, 1, memory_order_acq_rel) == 1) {
        free(r->body);
        free(r->io->resp);
        if (r->io->stream)
            mx_stream_decref(r->io->stream);
        mx_body_chan_free(r->io->chan);
        free(r);
#ifdef MX_DEBUG_COUNTS
        atomic_fetch_sub_explicit(&live_requests, 1, memory_order_relaxed);
#endif
    }
}

/* ---- a request's messages to the I/O thread, and its task in the pool ---- */

#define REQ_OF(ptr, member) (((mx_req_io_t *)((char *)(ptr) - offsetof(mx_req_io_t, member)))->req)

/* The response is ready: the I/O thread writes it (in pipeline order), or lets its stream know
 * the connection is gone. */
static void resp_deliver(mx_msg_t *m) {
    mx_req_t *r = REQ_OF(m, resp_msg);
    mx_conn_t *c = r->io->conn;
    r->io->resp_ready = 1;
    if (c && !c->io.closing)
        mx__conn_response_ready(c);
    else if (r->io->stream)
        mx__stream_detach(r->io->stream);
    mx_req_decref(r);
}

/* Nobody will write it: the loop has ended, and the client is gone with the server. */
static void resp_drop(mx_msg_t *m) {
    mx_req_t *r = REQ_OF(m, resp_msg);
    if (r->io->stream)
        mx__stream_detach(r->io->stream);
    mx_req_decref(r);
}

/* A streamed body's reader made room, or wants 100 Continue. */
static void notify_deliver(mx_msg_t *m) {
    mx_req_t *r = REQ_OF(m, notify_msg);
    mx_conn_t *c = r->io->conn;
    if (c && !c->io.closing)
        mx__conn_req_notify(c, r);
    mx_req_decref(r);
}

static void notify_drop(mx_msg_t *m) { mx_req_decref(REQ_OF(m, notify_msg)); }

static const mx_msg_ops_t resp_ops = {resp_deliver, resp_drop};
static const mx_msg_ops_t notify_ops = {notify_deliver, notify_drop};

void mx__post_response(mx_req_t *r) { mx_loop_post(&r->server->loop, &r->io->resp_msg); }

void mx__req_notify(mx_req_t *r) {
    mx_req_incref(r); /* the message's reference */
    mx_loop_post(&r->server->loop, &r->io->notify_msg);
}

void mx__req_notify_cb(void *r) { mx__req_notify(r); }

static void req_task_done(mx_task_t *t) { mx_req_decref((mx_req_t *)t); }

/* Waited longer than max_queue_time for a worker: 503 with Retry-After instead of running late. */
static void req_task_shed(mx_task_t *t) {
    mx_req_t *r = (mx_req_t *)t;
    if (r->io->chan)
        mx_body_end(r->io->chan, MX_ECLOSED);
    mx_req_respond_error(r, 503);
    mx_req_decref(r); /* the pool's reference */
}

const mx_task_ops_t mx__req_task_ops = {req_task_done, req_task_shed};
const mx_task_ops_t mx__req_log_task_ops = {req_task_done, NULL};

const mx_header_t *mx_req_header(const mx_req_t *r, const char *lower_name, size_t len) {
    for (size_t i = 0; i < r->num_headers; i++)
        if (mx_http1_name_eq(r->headers[i].name, r->headers[i].name_len, lower_name, len))
            return &r->headers[i];
    return NULL;
}

static int starts_with_ci(const char *s, size_t len, const char *lit) {
    size_t n = strlen(lit);
    if (len < n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        if (ch != lit[i])
            return 0;
    }
    return 1;
}

/* Splits the request-target (RFC 9112 3.2) into path and query; leaves path NULL for a form
 * the server cannot serve. */
/* Whether p[0..n) holds "%00", a NUL in disguise that no handler should meet in a path. */
static int has_nul_escape(const char *p, size_t n) {
    for (const char *q = p; (q = memchr(q, '%', (size_t)(p + n - q))) != NULL; q++)
        if ((size_t)(p + n - q) >= 3 && q[1] == '0' && q[2] == '0')
            return 1;
    return 0;
}

static void split_target(mx_req_t *r) {
    const char *t = r->target;
    size_t n = r->target_len;
    const char *p = NULL;
    size_t plen = 0;
    /* A fragment never belongs in a request-target (RFC 9112 3.2: origin-form is absolute-path
     * [ "?" query ]); leaving r->path unset answers 400. */
    if (memchr(t, '#', n))
        return;
    if (n > 0 && t[0] == '/') {
        p = t;
        plen = n;
    } else if (n == 1 && t[0] == '*') {
        /* asterisk-form is for OPTIONS only (RFC 9112 3.2.4); matched as the path "*" */
        if (!(r->method_len == 7 && memcmp(r->method, "OPTIONS", 7) == 0))
            return;
        p = t;
        plen = 1;
    } else if (starts_with_ci(t, n, "http://") || starts_with_ci(t, n, "https://")) {
        /* absolute-form: the path starts at the first '/' after the authority, which must not
         * be empty (RFC 9110 4.2.1) nor carry userinfo (4.2.4) */
        size_t i = t[4] == ':' ? 7 : 8, host = i;
        while (i < n && t[i] != '/' && t[i] != '?') {
            if (t[i] == '@')
                return;
            i++;
        }
        if (i == host)
            return;
        if (i < n && t[i] == '/') {
            p = t + i;
            plen = n - i;
        } else {
            p = "/"; /* "http://host" or "http://host?q" */
            plen = 1;
            if (i < n) {
                r->query = t + i + 1;
                r->query_len = n - i - 1;
            }
            r->path = p;
            r->path_len = plen;
            return;
        }
    } else {
        return;
    }
    const char *q = memchr(p, '?', plen);
    if (q) {
        r->query = q + 1;
        r->query_len = plen - (size_t)(q - p) - 1;
        plen = (size_t)(q - p);
    }
    if (has_nul_escape(p, plen)) {
        r->query = NULL; /* refused: 400 */
        r->query_len = 0;
        return;
    }
    r->path = p;
    r->path_len = plen;
}

/*
 * A new request for connection c. With h NULL it is an empty placeholder for an error response.
 * Copies the head so the connection's buffer can be reused; one allocation holds the request,
 * the head bytes, the header array and the decoding scratch for path parameters.
 */
mx_req_t *mx__req_new(mx_server_t *s, mx_conn_t *c, const mx_http1_request_t *h, size_t head_len) {
    size_t nh = h ? h->num_headers : 0;
    size_t target_len = h ? h->target_len : 0;
    /* [mx_req_t][mx_req_io_t][headers][head bytes][target scratch] */
    size_t size = sizeof(mx_req_t) + sizeof(mx_req_io_t) + nh * sizeof(mx_header_t) + head_len +
                  target_len + 1;
    mx_req_t *r = malloc(size);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r) + sizeof(mx_req_io_t));
    r->io = (mx_req_io_t *)(r + 1);
    r->io->req = r;
    atomic_init(&r->refcnt, 1); /* the connection's reference */
#ifdef MX_DEBUG_COUNTS
    atomic_fetch_add_explicit(&live_requests, 1, memory_order_relaxed);
#endif
    atomic_init(&r->responded, 0);
    r->server = s;
    r->io->conn = c;
    r->super.kind = MX_TASK_REQUEST;
    r->super.ops = &mx__req_task_ops;
    mx_msg_init(&r->io->resp_msg, &resp_ops);
    mx_msg_init(&r->io->notify_msg, &notify_ops);
    r->minor_version = 1;
    memcpy(r->remote_addr, c->remote_addr, sizeof(r->remote_addr));
    r->remote_port = c->remote_port;
    if (!h)
        return r;
    char *p = (char *)(r->io + 1);
    r->headers = (mx_header_t *)p;
    p += nh * sizeof(mx_header_t);
    char *head = p;
    /* Every pointer of h points into the connection buffer between the method and the end of
     * the head; rebase them onto the copy. */
    const char *base = h->method;
    memcpy(head, base, head_len);
    p += head_len;
    r->param_buf = p;
#define REBASE(ptr) (head + ((ptr) - base))
    r->method = REBASE(h->method);
    r->method_len = h->method_len;
    r->target = REBASE(h->target);
    r->target_len = h->target_len;
    r->minor_version = h->minor_version;
    r->num_headers = nh;
    for (size_t i = 0; i < nh; i++) {
        r->headers[i].name = REBASE(h->headers[i].name);
        r->headers[i].name_len = h->headers[i].name_len;
        r->headers[i].value = REBASE(h->headers[i].value);
        r->headers[i].value_len = h->headers[i].value_len;
    }
#undef REBASE
    r->is_head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
    split_target(r);
    if (s->cfg.compression) {
        /* Accept-Encoding may be split over several fields; join them for the chooser. */
        char joined[1024];
        size_t jl = 0;
        for (size_t i = 0; i < nh; i++) {
            const mx_header_t *f = &r->headers[i];
            if (!mx_http1_name_eq(f->name, f->name_len, "accept-encoding", 15))
                continue;
            if (jl && jl + 2 < sizeof(joined)) {
                joined[jl++] = ',';
                joined[jl++] = ' ';
            }
            size_t take = f->value_len < sizeof(joined) - jl ? f->value_len : sizeof(joined) - jl;
            memcpy(joined + jl, f->value, take);
            jl += take;
        }
        r->accept_enc = jl ? mx_compress_choose(joined, jl) : MX_ENC_NONE;
    }
    return r;
}
