/*
 * response.c: the bytes of every response, and the one place a response is committed (commit).
 *
 * mx_req_respond runs on whichever thread the handler answers from (usually a worker); it builds
 * the complete response (status line, headers, body, compressed when due) and posts it to the
 * I/O thread, so the loop only writes. The server's own answers (errors, 404/405, 503) have one
 * builder, respond_error, used on the I/O thread (mx__respond_error_now) and elsewhere
 * (mx_req_respond_error). The WebSocket handshake commits through mx__req_commit.
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

static int no_body_status(int status) {
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

/* Whether r's response must close the connection whatever the handler says: the client asked,
 * the server is stopping, or a streamed body is still arriving (RFC 9112 9.6: conn.c closes
 * after answering a request whose body is not all in). */
static int must_close(mx_req_t *r) {
    return !r->keep_alive || atomic_load(&r->server->stopping) ||
           (r->io->chan && !mx_body_complete(r->io->chan));
}

/*
 * The one response commit. r takes buf (the whole response: head and body, len bytes, body_len of
 * them body) and one reference to st when a stream follows the head; the caller has won
 * r->responded. On the I/O thread, for a request its connection is still reading (now), the
 * response is ready at once; from any other thread it is handed to the I/O thread.
 */
static void commit(mx_req_t *r, int status, char *buf, size_t len, size_t body_len, int close_conn,
                   mx_stream_t *st, int now) {
    free(r->io->resp); /* an error answer may replace one not yet written (conn.c's reject) */
    r->status = status;
    r->resp_body_len = body_len;
    r->io->resp = buf;
    r->io->resp_len = len;
    r->io->resp_off = 0;
    r->io->resp_close = (unsigned char)close_conn;
    if (st)
        r->io->stream = st; /* the request's reference; the I/O thread reads it once resp_ready */
    if (now) {
        r->io->resp_ready = 1;
        return;
    }
    mx_req_incref(r); /* the response message's reference */
    mx__post_response(r);
}

void mx__req_commit(mx_req_t *r, int status, char *buf, size_t len, int close_conn,
                    mx_stream_t *st) {
    commit(r, status, buf, len, 0, close_conn, st, 0);
}

/*
 * The one builder of the server's own answers (errors, 404/405 without custom handlers, 503 when
 * shed, the last-resort 500): the status and its reason phrase as a plain-text body; 405 carries
 * Allow (r->allow), 503 Retry-After. now: see commit().
 */
static int respond_error(mx_req_t *r, int status, int close_conn, int now) {
    const char *reason = mx_status_reason(status);
    size_t blen = strlen(reason);
    close_conn |= must_close(r);
    char extra[600] = "";
    if (status == 405 && r->allow_len)
        snprintf(extra, sizeof(extra), "Allow: %.*s\r\n", (int)r->allow_len, r->allow);
    else if (status == 503)
        snprintf(extra, sizeof(extra), "Retry-After: 1\r\n");
    size_t cap = 256 + strlen(extra) + blen;
    char *buf = malloc(cap);
    if (!buf)
        return MX_ENOMEM;
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n",
                     status, reason, http_date(), blen, extra,
                     close_conn ? "Connection: close\r\n"
                                : (r->minor_version == 0 ? "Connection: keep-alive\r\n" : ""));
    size_t len = (size_t)n;
    if (!r->is_head) {
        memcpy(buf + len, reason, blen);
        len += blen;
    }
    commit(r, status, buf, len, blen, close_conn, NULL, now);
    return 0;
}

int mx__respond_error_now(mx_req_t *r, int status, int close_conn) {
    atomic_store(&r->responded, 1);
    return respond_error(r, status, close_conn, 1);
}

int mx_req_respond_error(mx_req_t *r, int status) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&r->responded, &expected, 1))
        return MX_EALREADY;
    int rc = respond_error(r, status, 0, 0);
    if (rc)
        atomic_store(&r->responded, 0);
    return rc;
}

static char *put(char *p, const char *s, size_t n) {
    memcpy(p, s, n);
    return p + n;
}
#define PUTLIT(p, lit) put((p), (lit), sizeof(lit) - 1)


/* mode: 0 a whole response; RESP_STREAM an SSE head (chunked on HTTP/1.1, else close-delimited),
 * followed by the stream already set in r->io->stream. */
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
    int close_conn = user_close || must_close(r);
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

    if (st) {
        st->chunked = chunked;
        mx_stream_incref(st);
    }
    commit(r, status, buf, (size_t)(p - buf), body_len, close_conn, st, 0);
    return 0;
}

int mx_req_respond(mx_req_t *r, int status, const mx_resp_header_t *headers, size_t n,
                   const char *body, size_t body_len, int *bad_header) {
    return respond_ex(r, status, headers, n, body, body_len, bad_header, NULL);
}

int mx_req_respond_stream(mx_req_t *r, int status, const mx_resp_header_t *headers, size_t n,
                          int *bad_header, mx_stream_t **out) {
    *out = NULL;
    *bad_header = -1;
    if (no_body_status(status) || status < 200)
        return MX_EINVAL; /* no body to stream */
    if (atomic_load(&r->responded))
        return MX_EALREADY;
    mx_stream_t *st = mx__stream_new(r->server, MX_STREAM_BODY);
    if (!st)
        return MX_ENOMEM;
    int rc = respond_ex(r, status, headers, n, NULL, 0, bad_header, st);
    if (rc != 0) {
        mx_stream_decref(st);
        return rc;
    }
    *out = st;
    return 0;
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
