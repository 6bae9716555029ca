/*
 * ws_conn.c: a WebSocket connection in the server (RFC 6455, RFC 7692). The frame codec and
 * deflate live in ws_frame.c, UTF-8 validation in utf8.c, the accept key and the negotiations in
 * ws_handshake.c; this file answers the handshake and runs the I/O thread's side
 * of an upgraded connection (reading frames, answering pings, the closing handshake, pings of
 * idle peers) and the senders' side (queueing frames from any thread).
 *
 * Events for the binding (OPEN, MESSAGE, ERROR, CLOSE) queue on the stream; one pool task per
 * connection delivers them in order, so a connection's events never run in parallel, while
 * different connections use different workers. OPEN is queued when the 101 is written, CLOSE by
 * mx__stream_detach when the connection is gone, and nothing after it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "internal.h"
#include "ws.h"

/* Reading pauses while this many bytes of events wait for the handler, and resumes below the
 * low mark: a fast sender cannot fill memory while its handler is slow. */
#define IN_HIGH (1u << 20)
#define IN_LOW (256u << 10)

void mx_ws_msg_free(mx_ws_msg_t *m) {
    if (m) {
        free(m->data);
        free(m);
    }
}

void mx__ws_free(mx_stream_t *st) {
    if (st->reader)
        mx_ws_reader_free(st->reader);
    if (st->deflater)
        mx_ws_deflater_free(st->deflater);
    st->reader = NULL;
    st->deflater = NULL;
}

/* ---- events for the binding ---- */

int mx__ws_push_event_locked(mx_stream_t *st, mx_ws_msg_t *m) {
    if (st->close_queued) { /* CLOSE was the last word */
        mx_ws_msg_free(m);
        return 0;
    }
    m->next = NULL;
    if (st->in_tail)
        st->in_tail->next = m;
    else
        st->in_head = m;
    st->in_tail = m;
    st->in_bytes += m->len + sizeof(*m);
    if (st->scheduled)
        return 0;
    st->scheduled = 1;
    mx_stream_incref(st); /* the pool's reference */
    return 1;
}

static void push_event(mx_stream_t *st, int event, int opcode, uint8_t *data, size_t len) {
    mx_ws_msg_t *m = calloc(1, sizeof(*m));
    if (!m) {
        free(data);
        return;
    }
    m->event = event;
    m->opcode = opcode;
    m->data = data;
    m->len = len;
    pthread_mutex_lock(&st->mu);
    int schedule = mx__ws_push_event_locked(st, m);
    pthread_mutex_unlock(&st->mu);
    if (schedule)
        mx_pool_push(&st->server->pool, &st->super);
}

mx_ws_msg_t *mx_ws_next_event(mx_stream_t *st) {
    int resume = 0;
    pthread_mutex_lock(&st->mu);
    mx_ws_msg_t *m = st->in_head;
    if (m) {
        st->in_head = m->next;
        if (!st->in_head)
            st->in_tail = NULL;
        st->in_bytes -= m->len + sizeof(*m);
        m->next = NULL;
        if (st->reader_waiting && st->in_bytes < IN_LOW) {
            st->reader_waiting = 0;
            st->want_resume = 1;
            resume = 1;
        }
    }
    pthread_mutex_unlock(&st->mu);
    if (resume)
        mx__stream_notify(st);
    return m;
}

void mx__ws_task_finish(mx_stream_t *st) {
    pthread_mutex_lock(&st->mu);
    if (st->in_head) { /* more arrived, or the deliverer stopped early to be fair: go again */
        pthread_mutex_unlock(&st->mu);
        mx_pool_push(&st->server->pool, &st->super); /* still scheduled: nobody else pushes it */
        return;
    }
    st->scheduled = 0;
    pthread_mutex_unlock(&st->mu);
    mx_stream_decref(st);
}

int mx_ws_close_code(mx_stream_t *st, char *reason, size_t cap, size_t *reason_len) {
    pthread_mutex_lock(&st->mu);
    int code = st->close_code ? st->close_code : 1006;
    size_t n = st->close_reason_len < cap ? st->close_reason_len : cap;
    memcpy(reason, st->close_reason, n);
    *reason_len = n;
    pthread_mutex_unlock(&st->mu);
    return code;
}

int mx_ws_was_slow(mx_stream_t *st) {
    pthread_mutex_lock(&st->mu);
    int slow = st->slow;
    pthread_mutex_unlock(&st->mu);
    return slow;
}

/* ---- sending (any thread) ---- */

/* Queues a close frame unless one is queued already. Returns 1 when it queued one. */
static int queue_close(mx_stream_t *st, int code, const char *reason, size_t reason_len) {
    uint8_t *frame = NULL;
    size_t flen = 0;
    if (code == 1005 || code == 0) { /* no status: an empty close frame */
        frame = malloc(2);
        if (frame) {
            frame[0] = 0x80 | MX_WS_OP_CLOSE;
            frame[1] = 0;
            flen = 2;
        }
    } else if (mx_ws_build_close(code, reason, reason_len, &frame, &flen) != 0) {
        frame = NULL;
    }
    mx_wnode_t *n = frame ? mx__wnode_raw(frame, flen) : NULL;
    pthread_mutex_lock(&st->mu);
    if (atomic_load(&st->closed) || !n) {
        int gone = atomic_load(&st->closed);
        pthread_mutex_unlock(&st->mu);
        if (n)
            mx__wnode_free(n);
        return gone ? 0 : 0;
    }
    atomic_store(&st->closed, 1);
    n->is_close = 1;
    int rc = mx__stream_queue_locked(st, n);
    pthread_mutex_unlock(&st->mu);
    if (rc >= 0)
        mx__stream_notify(st);
    return rc >= 0;
}

int mx_ws_deflating(const mx_stream_t *st) { return st->deflater != NULL; }

void mx_ws_close(mx_stream_t *st, int code, const char *reason, size_t reason_len) {
    queue_close(st, code, reason, reason_len);
}

/* Sends data[0..len), or, when b is given, b's bytes (data == b->ptr): referenced in place by an
 * uncompressed frame, read once to build a compressed one. */
static int ws_send(mx_stream_t *st, int opcode, const void *data, size_t len, mx_bytes_t *b) {
    if (atomic_load(&st->closed))
        return MX_ECLOSED;
    int control = opcode == MX_WS_OP_PING || opcode == MX_WS_OP_PONG;
    if (control ? len > 125 : opcode != MX_WS_OP_TEXT && opcode != MX_WS_OP_BINARY)
        return MX_EINVAL;
    /* Data frames hold send_mu from building to queueing, so messages keep their order and the
     * deflate context sees them in that order. Control frames need neither, and the I/O thread
     * (pongs, pings) must never wait behind a sender compressing a large message. */
    int data_frame = !control;
    if (data_frame)
        pthread_mutex_lock(&st->send_mu);
    int rc = 0;
    mx_wnode_t *n;
    if (data_frame && st->deflater) {
        uint8_t *frame = NULL;
        size_t flen = 0;
        rc = mx_ws_build_frame(st->deflater, opcode, data, len, &frame, &flen);
        n = rc == 0 ? mx__wnode_raw(frame, flen) : NULL;
    } else if (b) {
        n = mx__wnode_new(b, 0, len); /* the frame header goes in the node, the payload stays */
        if (n)
            n->head_len = (unsigned char)mx_ws_frame_header((uint8_t *)n->head, 1, 0, opcode, len);
    } else {
        uint8_t hdr[10];
        n = mx__wnode_copy(hdr, mx_ws_frame_header(hdr, 1, 0, opcode, len), data, len);
    }
    if (n) {
        pthread_mutex_lock(&st->mu);
        rc = mx__stream_queue_locked(st, n);
        pthread_mutex_unlock(&st->mu);
    } else {
        rc = MX_ENOMEM;
    }
    if (data_frame)
        pthread_mutex_unlock(&st->send_mu);
    if (rc == 1 || rc == MX_EFULL)
        mx__stream_notify(st); /* news, or a peer that stopped reading to cut off */
    return rc < 0 ? rc : 0;
}

int mx_ws_send(mx_stream_t *st, int opcode, const void *data, size_t len) {
    return ws_send(st, opcode, data, len, NULL);
}

int mx_ws_send_bytes(mx_stream_t *st, int opcode, mx_bytes_t *b) {
    return ws_send(st, opcode, b->ptr, b->len, b);
}

/* ---- the handshake (any thread) ---- */

/* Joins every value of a request header with ", " into buf; returns the length, or -1 when the
 * header is absent, or -2 when the values do not fit. */
static long join_header(const mx_req_t *r, const char *lname, size_t nlen, char *buf, size_t cap) {
    long len = -1;
    for (size_t i = 0; i < r->num_headers; i++) {
        const mx_header_t *h = &r->headers[i];
        if (!mx_http1_name_eq(h->name, h->name_len, lname, nlen))
            continue;
        size_t at = len < 0 ? 0 : (size_t)len;
        size_t need = at + (len < 0 ? 0 : 2) + h->value_len;
        if (need + 1 > cap)
            return -2;
        if (len >= 0) {
            buf[at++] = ',';
            buf[at++] = ' ';
        }
        memcpy(buf + at, h->value, h->value_len);
        len = (long)(at + h->value_len);
        buf[len] = 0;
    }
    return len;
}

static int refuse(mx_req_t *r, int status, const char *why) {
    mx_resp_header_t h[2] = {{"Content-Type", 12, "text/plain; charset=utf-8", 25},
                             {"Sec-WebSocket-Version", 21, "13", 2}};
    int bad;
    int rc = mx_req_respond(r, status, h, status == 426 ? 2 : 1, why, strlen(why), &bad);
    return rc == 0 ? status : rc;
}

int mx_req_upgrade_ws(mx_req_t *r, const char *const *protocols, size_t nprot, int *selected,
                      mx_stream_t **out) {
    mx_server_t *s = r->server;
    char buf[4096], accept[29];
    *out = NULL;
    *selected = -1;
    if (atomic_load(&r->responded))
        return MX_EALREADY;
    if (r->method_len != 3 || memcmp(r->method, "GET", 3) != 0)
        return refuse(r, 400, "WebSocket handshake: the method must be GET");
    if (r->minor_version < 1)
        return refuse(r, 400, "WebSocket handshake: HTTP/1.1 required");
    long n = join_header(r, "upgrade", 7, buf, sizeof(buf));
    if (n < 0 || !mx_ws_token_list_has(buf, (size_t)n, "websocket"))
        return refuse(r, 400, "WebSocket handshake: Upgrade: websocket required");
    n = join_header(r, "connection", 10, buf, sizeof(buf));
    if (n < 0 || !mx_ws_token_list_has(buf, (size_t)n, "upgrade"))
        return refuse(r, 400, "WebSocket handshake: Connection: upgrade required");
    n = join_header(r, "sec-websocket-version", 21, buf, sizeof(buf));
    if (n < 0)
        return refuse(r, 400, "WebSocket handshake: Sec-WebSocket-Version missing");
    if (!(n == 2 && memcmp(buf, "13", 2) == 0))
        return refuse(r, 426, "WebSocket handshake: only version 13 is supported");
    const mx_header_t *key = NULL;
    for (size_t i = 0; i < r->num_headers; i++) {
        const mx_header_t *h = &r->headers[i];
        if (mx_http1_name_eq(h->name, h->name_len, "sec-websocket-key", 17)) {
            if (key)
                return refuse(r, 400, "WebSocket handshake: repeated Sec-WebSocket-Key");
            key = h;
        }
    }
    if (!key || mx_ws_accept_key(key->value, key->value_len, accept) != 0)
        return refuse(r, 400, "WebSocket handshake: bad Sec-WebSocket-Key");

    /* subprotocol: the first the client offers that the route supports */
    const char *proto = NULL;
    if (nprot > 0) {
        n = join_header(r, "sec-websocket-protocol", 22, buf, sizeof(buf));
        if (n >= 0) {
            int k = mx_ws_select_protocol(buf, (size_t)n, protocols, nprot);
            if (k >= 0) {
                *selected = k;
                proto = protocols[k];
            }
        }
    }
    /* permessage-deflate */
    mx_ws_deflate_params_t dp;
    char ext[256];
    int deflate = 0;
    if (s->cfg.websocket_compression) {
        n = join_header(r, "sec-websocket-extensions", 24, buf, sizeof(buf));
        if (n >= 0)
            deflate = mx_ws_negotiate_deflate(buf, (size_t)n, &dp, ext, sizeof(ext)) == 1;
    }

    mx_stream_t *st = mx__stream_new(s, MX_STREAM_WS);
    if (!st)
        return MX_ENOMEM;
    st->reader = mx_ws_reader_new(s->cfg.max_message_len, deflate ? &dp : NULL);
    st->deflater = deflate ? mx_ws_deflater_new(&dp) : NULL;
    size_t cap = 256 + (proto ? strlen(proto) : 0) + (deflate ? strlen(ext) : 0);
    char *resp = malloc(cap);
    if (!st->reader || (deflate && !st->deflater) || !resp) {
        free(resp);
        mx_stream_decref(st);
        return MX_ENOMEM;
    }
    st->deflate = deflate;
    int len = snprintf(resp, cap,
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s\r\n",
                       accept, proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
                       proto ? "\r\n" : "", deflate ? "Sec-WebSocket-Extensions: " : "",
                       deflate ? ext : "", deflate ? "\r\n" : "");
    int expected = 0;
    if (!atomic_compare_exchange_strong(&r->responded, &expected, 1)) {
        free(resp);
        mx_stream_decref(st);
        return MX_EALREADY;
    }
    mx_stream_incref(st); /* the request's reference */
    mx__req_commit(r, 101, resp, (size_t)len, 0, st);
    *out = st;
    return 0;
}

/* ---- the I/O thread's side ---- */

void mx__ws_on_attach(mx_conn_t *c, mx_stream_t *st) {
    mx_server_t *s = c->server;
    c->state = MX_CONN_WS;
    c->read_paused = 0;
    mx__conn_set_events(c, EPOLLIN | (c->want_write ? EPOLLOUT : 0));
    pthread_mutex_lock(&st->mu);
    int first = !st->opened;
    st->opened = 1;
    pthread_mutex_unlock(&st->mu);
    if (first)
        push_event(st, MX_WS_EVENT_OPEN, 0, NULL, 0);
    mx__timer_set(c, MX_TIMER_WS_PING, s->cfg.websocket_ping_interval);
}

/* The peer broke the protocol: say why in a close frame, then drop the connection. */
static void fail(mx_conn_t *c, mx_stream_t *st, int code) {
    st->dead_reader = 1;
    st->fail_after_close = 1;
    c->rpos = c->rlen;
    pthread_mutex_lock(&st->mu);
    st->close_code = code;
    pthread_mutex_unlock(&st->mu);
    if (!queue_close(st, code, NULL, 0) && st->close_sent)
        mx__conn_close(c); /* our close went out already: nothing more to say */
}

void mx__ws_on_input(mx_conn_t *c) {
    mx_server_t *s = c->server;
    mx_stream_t *st = c->stream;
    if (!st || st->dead_reader || st->close_received) {
        c->rpos = c->rlen; /* nothing after a close frame or a protocol error is read */
        return;
    }
    if (c->rpos < c->rlen) {
        st->ping_outstanding = 0;
        if (c->timer.kind == MX_TIMER_WS_PING)
            mx__timer_restart(c, MX_TIMER_WS_PING, s->cfg.websocket_ping_interval);
    }
    while (c->rpos < c->rlen && !c->io.closing) {
        mx_ws_event_t ev;
        memset(&ev, 0, sizeof(ev));
        ssize_t used = mx_ws_read(st->reader, (const uint8_t *)c->rbuf + c->rpos, c->rlen - c->rpos,
                                  &ev);
        if (used < 0) {
            fail(c, st, (int)-used);
            return;
        }
        c->rpos += (size_t)used;
        if (ev.type == MX_WS_EV_NONE) {
            if (used == 0)
                break;
            continue;
        }
        if (ev.type == MX_WS_EV_MESSAGE) {
            size_t len = 0;
            uint8_t *data = mx_ws_reader_take(st->reader, &len);
            if (!data && ev.len > 0) { /* the codec kept the buffer: copy it */
                data = malloc(ev.len);
                if (!data) {
                    mx__conn_close(c);
                    return;
                }
                memcpy(data, ev.data, ev.len);
                len = ev.len;
            }
            push_event(st, MX_WS_EVENT_MESSAGE, ev.opcode, data, len);
        } else if (ev.type == MX_WS_EV_PING || ev.type == MX_WS_EV_PONG) {
            int op = ev.type == MX_WS_EV_PING ? MX_WS_OP_PING : MX_WS_OP_PONG;
            if (op == MX_WS_OP_PING)
                mx_ws_send(st, MX_WS_OP_PONG, ev.data, ev.len); /* fails quietly once closing */
            else
                st->ping_outstanding = 0;
            uint8_t *copy = NULL;
            if (ev.len) {
                copy = malloc(ev.len);
                if (copy)
                    memcpy(copy, ev.data, ev.len);
            }
            push_event(st, MX_WS_EVENT_MESSAGE, op, copy, copy ? ev.len : 0);
        } else if (ev.type == MX_WS_EV_CLOSE) {
            pthread_mutex_lock(&st->mu);
            st->close_code = ev.close_code;
            st->close_reason_len = ev.len < sizeof(st->close_reason) ? ev.len : sizeof(st->close_reason);
            memcpy(st->close_reason, ev.data, st->close_reason_len);
            pthread_mutex_unlock(&st->mu);
            st->close_received = 1;
            c->rpos = c->rlen;
            /* Echo the peer's code (RFC 6455 5.5.1); our own close may be out already. */
            if (!queue_close(st, ev.close_code, NULL, 0) && st->close_sent)
                mx__conn_start_linger(c);
            return;
        }
        pthread_mutex_lock(&st->mu);
        int full = st->in_bytes > IN_HIGH;
        if (full)
            st->reader_waiting = 1;
        pthread_mutex_unlock(&st->mu);
        if (full) {
            st->in_paused = 1;
            c->input_full = 1; /* keeps pump() from resuming reads */
            c->read_paused = 1;
            mx__conn_set_events(c, c->want_write ? EPOLLOUT : 0);
            return;
        }
    }
}

/* After the stream's queue was written. A written close frame ends the conversation once the
 * peer's close is in (or at once after a protocol error); otherwise the peer gets
 * websocket_close_timeout to answer. */
int mx__ws_after_write(mx_conn_t *c, mx_stream_t *st, int close_written) {
    if (!close_written || c->io.closing)
        return 0;
    st->close_sent = 1;
    if (st->close_received || st->fail_after_close)
        mx__conn_start_linger(c); /* the server closes the TCP connection first (RFC 6455 7.1.1) */
    else
        mx__timer_restart(c, MX_TIMER_WS_CLOSE, c->server->cfg.websocket_close_timeout);
    return 0;
}

void mx__ws_on_timeout(mx_conn_t *c, mx_stream_t *st, int kind) {
    if (kind == MX_TIMER_WS_PING && !st->ping_outstanding && !st->close_sent &&
        !atomic_load(&st->closed)) {
        if (mx_ws_send(st, MX_WS_OP_PING, "mx", 2) == 0) {
            st->ping_outstanding = 1;
            mx__timer_restart(c, MX_TIMER_WS_PING, c->server->cfg.websocket_ping_interval);
            return;
        }
    }
    /* an unanswered ping, or the peer never answered our close */
    mx__conn_close(c);
}
