/*
 * response.c: requests as shared objects, and the bytes of every response.
 *
 * mx__req_new and mx__build_simple run on the I/O thread. mx_req_respond runs on whichever thread
 * the handler answers from (usually a worker); it builds the complete response (status line,
 * headers, body, compressed when due) and posts it to the I/O thread, so the loop only writes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "text.h"

const char *mx_status_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 208: return "Already Reported";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 460: return "Checksum Mismatch"; /* tus 1.0.0 checksum extension */
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 510: return "Not Extended";
    case 511: return "Network Authentication Required";
    default: return "Unknown";
    }
}

/* The IMF-fixdate for now (RFC 9110 5.6.7), cached per thread and refreshed once a second. */
static const char *http_date(void) {
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char buf[40];
    time_t now = time(NULL);
    if (now != cached_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_sec = now;
    }
    return buf;
}

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
        free(r->resp);
        if (r->stream)
            mx_stream_decref(r->stream);
        mx__body_chan_free(r->chan);
        free(r);
#ifdef MX_DEBUG_COUNTS
        atomic_fetch_sub_explicit(&live_requests, 1, memory_order_relaxed);
#endif
    }
}


/* ---- a request's messages to the I/O thread, and its task in the pool ---- */

#define REQ_OF(ptr, member) ((mx_req_t *)((char *)(ptr) - offsetof(mx_req_t, member)))

/* The response is ready: the I/O thread writes it (in pipeline order), or lets its stream know
 * the connection is gone. */
static void resp_deliver(mx_msg_t *m) {
    mx_req_t *r = REQ_OF(m, resp_msg);
    mx_conn_t *c = r->conn;
    r->resp_ready = 1;
    if (c && !c->io.closing)
        mx__conn_response_ready(c);
    else if (r->stream)
        mx__stream_detach(r->stream);
    mx_req_decref(r);
}

/* Nobody will write it: the loop has ended, and the client is gone with the server. */
static void resp_drop(mx_msg_t *m) {
    mx_req_t *r = REQ_OF(m, resp_msg);
    if (r->stream)
        mx__stream_detach(r->stream);
    mx_req_decref(r);
}

/* A streamed body's reader made room, or wants 100 Continue. */
static void notify_deliver(mx_msg_t *m) {
    mx_req_t *r = REQ_OF(m, notify_msg);
    mx_conn_t *c = r->conn;
    if (c && !c->io.closing)
        mx__conn_req_notify(c, r);
    mx_req_decref(r);
}

static void notify_drop(mx_msg_t *m) { mx_req_decref(REQ_OF(m, notify_msg)); }

static const mx_msg_ops_t resp_ops = {resp_deliver, resp_drop};
static const mx_msg_ops_t notify_ops = {notify_deliver, notify_drop};

void mx__post_response(mx_req_t *r) { mx_loop_post(&r->server->loop, &r->resp_msg); }

void mx__req_notify(mx_req_t *r) {
    mx_req_incref(r); /* the message's reference */
    mx_loop_post(&r->server->loop, &r->notify_msg);
}

static void req_task_done(mx_task_t *t) { mx_req_decref((mx_req_t *)t); }

/* Waited longer than max_queue_time for a worker: 503 with Retry-After instead of running late. */
static void req_task_shed(mx_task_t *t) {
    static const mx_resp_header_t h[2] = {{"Content-Type", 12, "text/plain; charset=utf-8", 25},
                                          {"Retry-After", 11, "1", 1}};
    mx_req_t *r = (mx_req_t *)t;
    int bad;
    if (r->chan)
        mx__body_end(r->chan, MX_ECLOSED);
    mx_req_respond(r, 503, h, 2, "Service Unavailable", 19, &bad);
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
static void split_target(mx_req_t *r) {
    const char *t = r->target;
    size_t n = r->target_len;
    const char *p = NULL;
    size_t plen = 0;
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
    size_t size = sizeof(mx_req_t) + nh * sizeof(mx_header_t) + head_len + target_len + 1;
    mx_req_t *r = malloc(size);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    atomic_init(&r->refcnt, 1); /* the connection's reference */
#ifdef MX_DEBUG_COUNTS
    atomic_fetch_add_explicit(&live_requests, 1, memory_order_relaxed);
#endif
    atomic_init(&r->responded, 0);
    r->server = s;
    r->conn = c;
    r->super.kind = MX_TASK_REQUEST;
    r->super.ops = &mx__req_task_ops;
    mx_msg_init(&r->resp_msg, &resp_ops);
    mx_msg_init(&r->notify_msg, &notify_ops);
    r->minor_version = 1;
    memcpy(r->remote_addr, c->remote_addr, sizeof(r->remote_addr));
    r->remote_port = c->remote_port;
    if (!h)
        return r;
    char *p = (char *)(r + 1);
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

static int no_body_status(int status) {
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* I/O thread: a plain-text response made by the server itself (errors, 404/405 without custom
 * handlers). extra_headers is NULL or CRLF-terminated lines. */
int mx__build_simple(mx_req_t *r, int status, const char *extra_headers, const char *body,
                     int close_conn) {
    const char *reason = mx_status_reason(status);
    if (!body)
        body = reason;
    size_t blen = strlen(body);
    if (!extra_headers)
        extra_headers = "";
    mx_server_t *s = r->server;
    if (!r->keep_alive || atomic_load(&s->stopping))
        close_conn = 1;
    size_t cap = 256 + strlen(extra_headers) + blen;
    char *buf = malloc(cap);
    if (!buf)
        return MX_ENOMEM;
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n",
                     status, reason, http_date(), blen, extra_headers,
                     close_conn ? "Connection: close\r\n"
                                : (r->minor_version == 0 ? "Connection: keep-alive\r\n" : ""));
    size_t len = (size_t)n;
    if (!r->is_head) {
        memcpy(buf + len, body, blen);
        len += blen;
    }
    atomic_store(&r->responded, 1);
    free(r->resp);
    r->resp = buf;
    r->resp_len = len;
    r->resp_off = 0;
    r->resp_close = (unsigned)close_conn;
    r->resp_ready = 1;
    r->status = status;
    r->resp_body_len = blen;
    return 0;
}

static char *put(char *p, const char *s, size_t n) {
    memcpy(p, s, n);
    return p + n;
}
#define PUTLIT(p, lit) put((p), (lit), sizeof(lit) - 1)


/* mode: 0 a whole response; RESP_STREAM an SSE head (chunked on HTTP/1.1, else close-delimited),
 * followed by the stream already set in r->stream. */
#define RESP_STREAM 1
static int respond_ex(mx_req_t *r, int status, const mx_resp_header_t *headers, size_t n,
                      const char *body, size_t body_len, int *bad_header, mx_stream_t *st) {
    int mode = st ? RESP_STREAM : 0;
    mx_server_t *s = r->server;
    *bad_header = -1;
    if (status < 200 || status > 999)
        return MX_EINVAL;
    const char *ctype = NULL;
    size_t ctype_len = 0;
    int has_date = 0, has_ce = 0, user_close = 0;
    const mx_header_t *user_cl = NULL;
    size_t hdr_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const mx_header_t *f = &headers[i];
        if (!mx_http1_is_token(f->name, f->name_len) ||
            !mx_http1_is_field_value(f->value, f->value_len)) {
            *bad_header = (int)i;
            return MX_EINVAL;
        }
        if (mx_http1_name_eq(f->name, f->name_len, "transfer-encoding", 17)) {
            *bad_header = (int)i;
            return MX_EINVAL;
        }
        if (mx_http1_name_eq(f->name, f->name_len, "content-type", 12)) {
            ctype = f->value;
            ctype_len = f->value_len;
        } else if (mx_http1_name_eq(f->name, f->name_len, "date", 4)) {
            has_date = 1;
        } else if (mx_http1_name_eq(f->name, f->name_len, "content-encoding", 16)) {
            has_ce = 1;
        } else if (mx_http1_name_eq(f->name, f->name_len, "connection", 10)) {
            user_close |= mx_list_has_token(f->value, f->value_len, "close", 5);
        } else if (mx_http1_name_eq(f->name, f->name_len, "content-length", 14)) {
            user_cl = f;
        }
        hdr_bytes += f->name_len + f->value_len + 4;
    }
    int expected = 0;
    if (!atomic_compare_exchange_strong(&r->responded, &expected, 1))
        return MX_EALREADY;

    int has_body = !no_body_status(status);
    if (!has_body)
        body_len = 0;
    /* Compression (RFC 9110 8.4): only for a body worth it, of a text-like type, when the
     * handler did not encode it itself. The response varies by Accept-Encoding whenever it
     * could have been compressed, so Vary goes out even when this client gets identity. */
    int eligible = s->cfg.compression && has_body && !has_ce && body_len > MX_COMPRESS_MIN_LEN &&
                   ctype && mx_compress_type_ok(ctype, ctype_len) && mode == 0;
    char *zbody = NULL;
    size_t zlen = 0;
    int enc = MX_ENC_NONE;
    if (eligible && r->accept_enc != MX_ENC_NONE &&
        mx_compress(r->accept_enc, body, body_len, -1, &zbody, &zlen) == 0) {
        if (zlen < body_len) {
            enc = r->accept_enc;
            body = zbody;
            body_len = zlen;
        }
    }
    int close_conn = !r->keep_alive || user_close || atomic_load(&s->stopping);
    /* Answered before its streamed body is all in: the connection will close (conn.c), and the
     * response says so (RFC 9112 9.6). */
    if (r->chan && !mx__body_complete(r->chan))
        close_conn = 1;
    int chunked = mode == RESP_STREAM && r->minor_version >= 1;
    if (mode == RESP_STREAM && !chunked)
        close_conn = 1; /* HTTP/1.0: the body ends when the connection does */
    int send_body = has_body && !r->is_head;
    /* HEAD answered by the handler with an explicit Content-Length and no body: keep theirs. */
    int keep_user_cl = user_cl && r->is_head && body_len == 0;

    size_t cap = 128 + hdr_bytes + 64 + 64 + (send_body ? body_len : 0);
    char *buf = malloc(cap);
    if (!buf) {
        free(zbody);
        atomic_store(&r->responded, 0);
        return MX_ENOMEM;
    }
    char *p = buf;
    const char *reason = mx_status_reason(status);
    p += snprintf(p, 64, "HTTP/1.1 %d ", status);
    p = put(p, reason, strlen(reason));
    p = PUTLIT(p, "\r\n");
    for (size_t i = 0; i < n; i++) {
        const mx_header_t *f = &headers[i];
        if (f == user_cl && !keep_user_cl)
            continue;
        if (mx_http1_name_eq(f->name, f->name_len, "connection", 10))
            continue;
        p = put(p, f->name, f->name_len);
        p = PUTLIT(p, ": ");
        p = put(p, f->value, f->value_len);
        p = PUTLIT(p, "\r\n");
    }
    if (!has_date) {
        p = PUTLIT(p, "Date: ");
        p = put(p, http_date(), 29);
        p = PUTLIT(p, "\r\n");
    }
    if (enc == MX_ENC_GZIP)
        p = PUTLIT(p, "Content-Encoding: gzip\r\n");
    else if (enc == MX_ENC_DEFLATE)
        p = PUTLIT(p, "Content-Encoding: deflate\r\n");
    if (eligible)
        p = PUTLIT(p, "Vary: Accept-Encoding\r\n");
    if (chunked)
        p = PUTLIT(p, "Transfer-Encoding: chunked\r\n");
    else if (has_body && !keep_user_cl && mode == 0)
        p += snprintf(p, 48, "Content-Length: %zu\r\n", body_len);
    if (close_conn)
        p = PUTLIT(p, "Connection: close\r\n");
    else if (r->minor_version == 0)
        p = PUTLIT(p, "Connection: keep-alive\r\n");
    p = PUTLIT(p, "\r\n");
    if (send_body && body_len)
        p = put(p, body, body_len);
    free(zbody);

    r->status = status;
    r->resp_body_len = body_len;
    r->resp = buf;
    r->resp_len = (size_t)(p - buf);
    r->resp_off = 0;
    r->resp_close = (unsigned)close_conn;
    if (st) {
        st->chunked = chunked;
        mx_stream_incref(st);
        r->stream = st; /* the request's reference; the I/O thread reads it once resp_ready */
    }
    mx_req_incref(r); /* the response queue's reference */
    mx__post_response(r);
    return 0;
}

int mx_req_respond(mx_req_t *r, int status, const mx_resp_header_t *headers, size_t n,
                   const char *body, size_t body_len, int *bad_header) {
    return respond_ex(r, status, headers, n, body, body_len, bad_header, NULL);
}

int mx_req_respond_sse(mx_req_t *r, const mx_resp_header_t *headers, size_t n, int *bad_header,
                       mx_stream_t **out) {
    static const mx_resp_header_t defaults[] = {
        {"Content-Type", 12, "text/event-stream; charset=utf-8", 32},
        {"Cache-Control", 13, "no-store", 8},
        {"X-Accel-Buffering", 17, "no", 2},
    };
    static const char *const lower[] = {"content-type", "cache-control", "x-accel-buffering"};
    *out = NULL;
    *bad_header = -1;
    if (atomic_load(&r->responded))
        return MX_EALREADY;
    mx_resp_header_t *all = malloc((n + 3) * sizeof(*all));
    if (!all)
        return MX_ENOMEM;
    size_t k = 0;
    for (size_t d = 0; d < 3; d++) { /* the caller's headers replace the defaults */
        int overridden = 0;
        for (size_t i = 0; i < n && !overridden; i++)
            overridden = mx_http1_name_eq(headers[i].name, headers[i].name_len, lower[d],
                                          defaults[d].name_len);
        if (!overridden)
            all[k++] = defaults[d];
    }
    size_t first_user = k;
    memcpy(all + k, headers, n * sizeof(*all));
    k += n;
    mx_stream_t *st = mx__stream_new(r->server, MX_STREAM_SSE);
    if (!st) {
        free(all);
        return MX_ENOMEM;
    }
    int rc = respond_ex(r, 200, all, k, NULL, 0, bad_header, st);
    free(all);
    if (rc != 0) {
        if (*bad_header >= 0)
            *bad_header -= (int)first_user;
        mx_stream_decref(st);
        return rc;
    }
    *out = st;
    return 0;
}
