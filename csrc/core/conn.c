/*
 * conn.c: one connection's state machine (after h2o's lib/http1.c). I/O thread only.
 *
 *   HEAD --(head parsed)--> BODY_CL / BODY_CHUNKED --(body complete)--> dispatched --> HEAD ...
 *     \--(bad input)--> DRAIN: an error response is queued, input is discarded, and the
 *        connection closes (lingering) once the response is out.
 *
 * Every request, from the first head byte on, holds a place in the connection's pipeline, so
 * responses leave in request order whatever order the workers finish in (RFC 9112 9.3.2). The
 * pipeline is bounded by max_pipeline: beyond it the connection stops reading. A request that
 * wants the connection closed (Connection: close, an error) ends parsing: no byte after it is
 * ever treated as another request.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

#define RBUF_INITIAL 8192
#define BULK_RBUF 65536
/* At most one socket read straight into a streamed body's ring (the ring's bound still applies:
 * the high mark plus 64 KiB). Each read costs a syscall, an epoll pass and the window-update ACK
 * it triggers; on loopback that ACK is processed right here, and it makes the client's TCP send
 * more, also right here (perf: 14% of server samples under tcp_recvmsg -> __tcp_transmit_skb ->
 * softirq with 256 KiB reads). 64 KiB reads cost ~25% more server CPU per GiB of multipart
 * upload than 256 KiB ones, 1 MiB reads a few % less (the C ceiling reads 1 MiB too). The price:
 * TCP receive autotuning sizes the socket buffer after how fast we read, so a fast reader gets
 * a larger one (kernel memory, bounded by net.ipv4.tcp_rmem; not RSS; the same for 256 KiB and
 * 1 MiB reads). */
#ifndef BODY_READ_MAX
#define BODY_READ_MAX MX_BODY_HIGH
#endif
#define LINGER_SECONDS 2.0

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_on_events(mx_io_t *io, uint32_t e);
static void conn_on_timer(mx_timer_t *t, int kind);
static void conn_free(mx_io_t *io);

mx_conn_t *mx__conn_new(mx_server_t *s, int fd) {
    mx_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->rbuf = malloc(RBUF_INITIAL);
    if (!c->rbuf) {
        free(c);
        return NULL;
    }
    c->rcap = RBUF_INITIAL;
    c->io.fd = fd;
    c->io.on_events = conn_on_events;
    c->io.on_free = conn_free;
    c->timer.fire = conn_on_timer;
    c->server = s;
    return c;
}

int mx__conn_open(mx_conn_t *c) {
    mx_server_t *s = c->server;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (mx_loop_io_add(&s->loop, &c->io, EPOLLIN) != 0) {
        mx__conn_close(c);
        return MX_ESYS;
    }
    mx__timer_set(c, MX_TIMER_IDLE, s->cfg.idle_timeout);
    return 0;
}

void mx__conn_close(mx_conn_t *c) {
    if (c->io.closing)
        return;
    mx_loop_timer_stop(&c->server->loop, &c->timer);
    mx_loop_io_close(&c->server->loop, &c->io);
}

/* The loop's deferred free: unlinks c and releases what it holds. */
static void conn_free(mx_io_t *io) {
    mx_conn_t *c = (mx_conn_t *)io;
    mx_server_t *s = c->server;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    if (c->stream)
        mx__stream_detach(c->stream);
    mx_req_t *r = c->pipe_head;
    while (r) {
        if (r->io->resp_ready && r->io->stream)
            mx__stream_detach(r->io->stream); /* a stream whose head never went out */
        if (r->io->chan)
            mx_body_end(r->io->chan, MX_ECLOSED); /* a reader waiting for body bytes wakes up */
        mx_req_t *next = r->io->next_in_conn;
        r->io->conn = NULL; /* workers' responses for it will be dropped */
        r->io->next_in_conn = NULL;
        mx_req_decref(r);
        r = next;
    }
    free(c->rbuf);
    free(c);
}

static void pipe_append(mx_conn_t *c, mx_req_t *r) {
    r->io->conn = c;
    r->io->next_in_conn = NULL;
    if (c->pipe_tail)
        c->pipe_tail->io->next_in_conn = r;
    else
        c->pipe_head = r;
    c->pipe_tail = r;
    c->inflight++;
}

/* Removes the request being received (always the pipeline's tail) from the pipeline. */
static void drop_tail(mx_conn_t *c) {
    mx_req_t *r = c->cur, *p = c->pipe_head;
    c->cur = NULL;
    if (p == r) {
        c->pipe_head = c->pipe_tail = NULL;
    } else {
        while (p && p->io->next_in_conn != r)
            p = p->io->next_in_conn;
        if (!p)
            return;
        p->io->next_in_conn = NULL;
        c->pipe_tail = p;
    }
    c->inflight--;
    r->io->conn = NULL;
    mx_req_decref(r);
}

static void update_read_interest(mx_conn_t *c) {
    uint32_t ev = 0;
    if (!c->read_paused)
        ev |= EPOLLIN;
    if (c->want_write)
        ev |= EPOLLOUT;
    mx__conn_set_events(c, ev);
}

/* A streamed body's buffer is full: stop reading until its reader makes room (STYLE rule 7). */
static void pause_for_body(mx_conn_t *c) {
    c->input_full = 1;
    c->read_paused = 1;
    update_read_interest(c);
}

/*
 * Ends the current parse with an error response and closes the connection after it: bad
 * input is answered, never silently dropped (Mummy's gap), and never parsed further.
 */
static void reject(mx_conn_t *c, int status) {
    mx_req_t *r = c->cur;
    if (!r) {
        r = mx__req_new(c->server, c, NULL, 0);
        if (!r) {
            mx__conn_close(c);
            return;
        }
        pipe_append(c, r);
    }
    c->cur = NULL;
    if (r->io->dispatched) {
        /* A streamed body went wrong while its handler runs: the reader gets an error, and the
         * client gets the error response unless the handler answered first. Either way the
         * connection closes after the pipeline drains; nothing after this is parsed. */
        static const mx_resp_header_t h[2] = {{"Content-Type", 12, "text/plain; charset=utf-8", 25},
                                              {"Connection", 10, "close", 5}};
        const char *reason = mx_status_reason(status);
        int bad;
        /* respond before waking the reader, so its error cannot answer first (a 500) */
        mx_req_respond(r, status, h, 2, reason, strlen(reason), &bad);
        if (r->io->chan)
            mx_body_end(r->io->chan, MX_EINVAL);
        c->state = MX_CONN_DRAIN;
        c->no_more_requests = 1;
        c->rpos = c->rlen = 0;
        mx__timer_set(c, MX_TIMER_NONE, 0);
        return;
    }
    if (mx__respond_error_now(r, status, 1) != 0) {
        mx__conn_close(c);
        return;
    }
    c->state = MX_CONN_DRAIN;
    c->no_more_requests = 1;
    c->rpos = c->rlen = 0;
    mx__timer_set(c, MX_TIMER_NONE, 0);
    if (c->server->cfg.access_log) { /* the access log sees rejected requests too */
        r->log_only = 1;
        r->io->dispatched = 1;
        r->super.ops = &mx__req_log_task_ops; /* never shed: it was answered already */
        mx_req_incref(r);
        mx_pool_push(&c->server->pool, &r->super);
    }
}

/* The whole request is in: answer it from C (404/405 without custom handlers) or dispatch. */
static void finish_request(mx_conn_t *c, mx_req_t *r) {
    mx_server_t *s = c->server;
    if (c->timer.kind == MX_TIMER_BODY)
        mx__timer_set(c, MX_TIMER_NONE, 0);
    c->cur = NULL;
    c->state = MX_CONN_HEAD;
    if (r->kind == MX_REQ_NOT_FOUND && !s->cfg.route_not_found && !s->cfg.access_log) {
        mx__respond_error_now(r, 404, 0);
        return;
    }
    if (r->kind == MX_REQ_METHOD_NOT_ALLOWED && !s->cfg.route_not_allowed && !s->cfg.access_log) {
        mx__respond_error_now(r, 405, 0);
        return;
    }
    r->io->dispatched = 1;
    mx_req_incref(r); /* the pool's reference */
    mx_pool_push(&s->pool, &r->super);
}

/* The last byte of a streamed body is in: the handler already runs; the connection moves on. */
static void finish_streamed(mx_conn_t *c, mx_req_t *r) {
    if (c->timer.kind == MX_TIMER_BODY)
        mx__timer_set(c, MX_TIMER_NONE, 0);
    mx_body_end(r->io->chan, 0);
    c->input_full = 0; /* the body is all in: a pause for its reader no longer applies */
    c->cur = NULL;
    c->state = MX_CONN_HEAD;
}

static int grow_body(mx_conn_t *c, size_t need) {
    mx_req_t *r = c->cur;
    if (need <= c->body_cap)
        return 0;
    size_t cap = c->body_cap ? c->body_cap : 4096;
    while (cap < need)
        cap *= 2;
    char *b = realloc(r->body, cap);
    if (!b)
        return MX_ENOMEM;
    r->body = b;
    c->body_cap = cap;
    return 0;
}

/* Parses one request head at rbuf[rpos..). Returns 1 when it made progress, 0 when it needs
 * more input. */
static int parse_head(mx_conn_t *c) {
    mx_server_t *s = c->server;
    mx_http1_request_t h;
    mx_http1_info_t info;
    int status = 400;
    /* RFC 9112 2.2: ignore an empty line or two before a request-line (some clients send a CRLF
     * after a POST body). More than that is not a request. */
    while (c->empty_lines < 2 && c->rpos < c->rlen && c->rbuf[c->rpos] == '\r') {
        if (c->rlen - c->rpos < 2)
            return 0; /* a lone CR so far: wait for what follows */
        if (c->rbuf[c->rpos + 1] != '\n')
            break; /* not an empty line: the parser rejects it */
        c->rpos += 2;
        c->empty_lines++;
    }
    if (c->rpos == c->rlen)
        return 0;
    size_t avail = c->rlen - c->rpos;
    /* head_state resumes the parse where the last read left it. The parser resets it at every
     * verdict, and empty lines are skipped only before a head's first byte (a head cannot start
     * with CR), so it always describes the head at rbuf[rpos..). */
    int rc = mx_http1_parse_request(c->rbuf + c->rpos, avail, s->cfg.max_headers_len,
                                    s->cfg.max_target_len, &h, &status, &c->head_state);
    if (rc == MX_HTTP1_PARTIAL) {
        mx__timer_set(c, MX_TIMER_HEAD, s->cfg.header_timeout);
        return 0;
    }
    if (rc < 0) {
        reject(c, status);
        return 1;
    }
    mx__timer_set(c, MX_TIMER_NONE, 0);
    c->empty_lines = 0;
    if (mx_http1_analyze(&h, &info, &status) != 0) {
        reject(c, status);
        return 1;
    }
    mx_req_t *r = mx__req_new(s, c, &h, (size_t)rc);
    if (!r) {
        mx__conn_close(c);
        return 1;
    }
    pipe_append(c, r);
    c->cur = r;
    c->rpos += (size_t)rc;
    if (!r->path) { /* a request-target we cannot serve (not origin, absolute or '*' form) */
        reject(c, 400);
        return 1;
    }
    r->keep_alive = info.keep_alive;
    if (!info.keep_alive)
        c->no_more_requests = 1;
    if (mx_req_header(r, "upgrade", 7)) {
        /* A handler may switch protocols: bytes after this head are not HTTP until we know. */
        r->ws_offered = 1;
        c->hold_input = 1;
    }

    /* Route before reading the body: the route's options decide the body limit and whether the
     * handler reads the body as it arrives. */
    mx_route_opts_t opts = {MX_ROUTE_BODY_SERVER, 0};
    if (s->router) {
        mx_route_match_t m;
        int mr = mx_router_match(s->router, r->method, r->method_len, r->path, r->path_len,
                                 r->param_buf, r->path_len, &m);
        if (mr == MX_ROUTE_FOUND) {
            r->kind = MX_REQ_ROUTE;
            r->route_id = m.route_id;
            opts = m.opts;
            r->num_params = m.num_params;
            memcpy(r->params, m.params, m.num_params * sizeof(m.params[0]));
        } else if (mr == MX_ROUTE_METHOD_NOT_ALLOWED) {
            r->kind = MX_REQ_METHOD_NOT_ALLOWED;
            memcpy(r->allow, m.allow, m.allow_len);
            r->allow_len = m.allow_len;
        } else {
            r->kind = MX_REQ_NOT_FOUND;
        }
    }

    c->body_limit = opts.max_body == MX_ROUTE_BODY_SERVER ? s->cfg.max_body_len : opts.max_body;
    c->body_cap = 0;
    c->continue_sent = 0;
    int streamed = opts.stream;
    if (info.content_length > 0 && !info.chunked &&
        (uint64_t)info.content_length > c->body_limit) {
        reject(c, 413);
        return 1;
    }
    if (streamed) {
        r->io->chan = mx_body_chan_new(info.chunked ? 0 : (uint64_t)info.content_length,
                                   mx__req_notify_cb, r);
        if (!r->io->chan) {
            reject(c, 503);
            return 1;
        }
    }
    if (info.chunked) {
        memset(&c->chunked, 0, sizeof(c->chunked));
        c->chunked.limit = c->body_limit == SIZE_MAX ? 0 : c->body_limit;
        c->state = MX_CONN_BODY_CHUNKED;
    } else if (info.content_length > 0) {
        c->body_remaining = (uint64_t)info.content_length;
        if (!streamed && grow_body(c, (size_t)info.content_length) != 0) {
            reject(c, 413);
            return 1;
        }
        c->state = MX_CONN_BODY_CL;
    } else {
        if (streamed)
            mx_body_end(r->io->chan, 0);
        finish_request(c, r);
        return 1;
    }
    if (streamed) {
        /* Nothing to decode: save_body may take it socket -> pipe -> file (body.c). */
        r->io->chan->can_splice = !info.chunked && info.content_length > 0;
        /* The handler runs now and pulls the body as it arrives (body.c). */
        r->io->dispatched = 1;
        mx_req_incref(r);
        mx_pool_push(&s->pool, &r->super);
    }
    c->body_window = 0;
    mx__timer_set(c, MX_TIMER_BODY, s->cfg.body_timeout);
    /* The client waits for 100 Continue before sending the body (RFC 9110 10.1.1); it is sent
     * when every earlier response is out (see flush), and only if the body is not here yet. */
    if (!info.expect_continue)
        c->continue_sent = 1;
    return 1;
}

static int read_body_cl(mx_conn_t *c) {
    mx_req_t *r = c->cur;
    size_t avail = c->rlen - c->rpos;
    if (avail == 0)
        return 0;
    size_t take = avail < c->body_remaining ? avail : (size_t)c->body_remaining;
    if (r->io->chan) {
        if (c->input_full)
            return 0; /* the handler has not caught up yet */
        size_t room = mx_body_space(r->io->chan);
        if (take > room)
            take = room; /* the rest stays in rbuf until the reader makes room */
        int full = mx_body_push(r->io->chan, c->rbuf + c->rpos, take);
        if (full < 0) {
            mx__conn_close(c);
            return 0;
        }
        if (full)
            pause_for_body(c);
    } else {
        memcpy(r->body + r->body_len, c->rbuf + c->rpos, take);
        r->body_len += take;
    }
    c->rpos += take;
    c->body_remaining -= take;
    c->body_window += take;
    c->continue_sent = 1; /* the client sent the body anyway */
    if (c->body_remaining == 0) {
        if (r->io->chan)
            finish_streamed(c, r);
        else
            finish_request(c, r);
    }
    return 1;
}

static int read_body_chunked(mx_conn_t *c) {
    mx_req_t *r = c->cur;
    size_t avail = c->rlen - c->rpos;
    if (avail == 0)
        return 0;
    c->continue_sent = 1;
    if (r->io->chan) {
        if (c->input_full)
            return 0;
        /* decode in place, then hand the payload to the reader (never more than it can take:
         * the payload is no longer than the input) */
        size_t out_len = 0;
        int done = 0;
        char *at = c->rbuf + c->rpos;
        size_t room = mx_body_space(r->io->chan);
        if (avail > room)
            avail = room;
        ssize_t used = mx_chunked_decode(&c->chunked, at, avail, at, &out_len, &done);
        if (used < 0) {
            reject(c, used == MX_HTTP1_TOO_LARGE ? 413 : 400);
            return 1;
        }
        c->rpos += (size_t)used;
        c->body_window += (size_t)used;
        int full = out_len ? mx_body_push(r->io->chan, at, out_len) : 0;
        if (full < 0) {
            mx__conn_close(c);
            return 0;
        }
        if (full)
            pause_for_body(c);
        if (done)
            finish_streamed(c, r);
        return used > 0 || done;
    }
    if (grow_body(c, r->body_len + avail) != 0) {
        reject(c, 413);
        return 1;
    }
    size_t out_len = 0;
    int done = 0;
    ssize_t used = mx_chunked_decode(&c->chunked, c->rbuf + c->rpos, avail, r->body + r->body_len,
                                     &out_len, &done);
    if (used < 0) {
        reject(c, used == MX_HTTP1_TOO_LARGE ? 413 : 400);
        return 1;
    }
    r->body_len += out_len;
    c->body_window += (size_t)used;
    c->rpos += (size_t)used;
    if (r->body_len > c->body_limit) {
        reject(c, 413);
        return 1;
    }
    if (done)
        finish_request(c, r);
    return used > 0 || done;
}

/* Parses as many requests as the buffered input and the pipeline bound allow. */
static void process_input(mx_conn_t *c) {
    mx_server_t *s = c->server;
    for (;;) {
        if (c->io.closing)
            return;
        int progress = 0;
        switch (c->state) {
        case MX_CONN_HEAD:
            if (c->hold_input)
                return; /* an upgrade or a stream decides what the next bytes are */
            if (c->no_more_requests) {
                c->rpos = c->rlen; /* never parse past a request that closes the connection */
                return;
            }
            if (c->rpos == c->rlen)
                return;
            if (c->inflight >= s->cfg.max_pipeline) {
                c->read_paused = 1;
                update_read_interest(c);
                return;
            }
            progress = parse_head(c);
            break;
        case MX_CONN_BODY_CL:
            progress = read_body_cl(c);
            break;
        case MX_CONN_BODY_CHUNKED:
            progress = read_body_chunked(c);
            break;
        case MX_CONN_DRAIN:
            c->rpos = c->rlen;
            return;
        case MX_CONN_WS:
            mx__ws_on_input(c);
            return;
        }
        if (!progress)
            return;
    }
}

void mx__conn_start_linger(mx_conn_t *c) {
    /* Half-close and read until the client closes: closing with unread input would make the
     * kernel send RST, which can destroy the response before the client reads it. */
    shutdown(c->io.fd, SHUT_WR);
    c->lingering = 1;
    c->state = MX_CONN_DRAIN;
    c->want_write = 0;
    c->read_paused = 0;
    update_read_interest(c);
    mx__timer_set(c, MX_TIMER_NONE, 0);
    mx__timer_set(c, MX_TIMER_LINGER, LINGER_SECONDS);
}

static int body_wants_continue(mx_body_chan_t *ch) {
    pthread_mutex_lock(&ch->mu);
    int want = ch->want_continue;
    pthread_mutex_unlock(&ch->mu);
    return want;
}

/* Takes the pipeline's head out after its response is written. Returns 1 when the connection
 * must close after it. */
static int pop_head(mx_conn_t *c) {
    mx_req_t *r = c->pipe_head;
    c->pipe_head = r->io->next_in_conn;
    if (!c->pipe_head)
        c->pipe_tail = NULL;
    c->inflight--;
    if (r->ws_offered)
        c->hold_input = 0; /* no upgrade happened: the next bytes are HTTP again */
    int close_after = r->io->resp_close;
    r->io->conn = NULL;
    r->io->next_in_conn = NULL;
    mx_req_decref(r);
    return close_after;
}

/* Writes every ready response at the front of the pipeline, and the active stream's data.
 * Returns 1 if a request left the pipeline. */
static int flush(mx_conn_t *c) {
    struct iovec iov[64];
    int freed = 0;
again:
    if (c->cur && c->cur->io->chan && c->cur->io->resp_ready && c->cur->io->dispatched) {
        /* A streamed request answered before its body is all in (its response says
         * Connection: close): stop waiting for the body and read and drop the rest while the
         * response goes out, or a client still pushing its body and a server pushing a large
         * response could block each other forever. */
        mx_body_end(c->cur->io->chan, MX_ECLOSED);
        c->cur = NULL;
        c->state = MX_CONN_DRAIN;
        c->no_more_requests = 1;
        c->input_full = 0;
        if (c->read_paused) {
            c->read_paused = 0;
            update_read_interest(c);
        }
        if (c->timer.kind == MX_TIMER_BODY)
            mx__timer_set(c, MX_TIMER_NONE, 0);
    }
    if (c->stream && !c->io.closing && !c->lingering) {
        if (!mx__stream_flush(c))
            return freed; /* still streaming, or the connection ended with the stream */
        /* The SSE stream ended cleanly: its request leaves, the connection goes on. */
        c->hold_input = 0;
        freed = 1;
        if (pop_head(c) || atomic_load(&c->server->stopping)) {
            mx__conn_start_linger(c);
            return freed;
        }
    }
    while (!c->io.closing && !c->lingering) {
        int n = 0;
        size_t total = 0;
        int with_continue = 0;
        for (mx_req_t *r = c->pipe_head; r && r->io->resp_ready && n < 64; r = r->io->next_in_conn) {
            iov[n].iov_base = r->io->resp + r->io->resp_off;
            iov[n].iov_len = r->io->resp_len - r->io->resp_off;
            total += iov[n].iov_len;
            n++;
            if (r->io->resp_close || r->io->stream || r == c->cur)
                break; /* nothing is written after these until they are done */
        }
        if (n == 0 && c->cur && c->pipe_head == c->cur && !c->continue_sent &&
            (!c->cur->io->chan || body_wants_continue(c->cur->io->chan))) {
            /* Only the request waiting for its body is left: now 100 Continue can go out. */
            iov[0].iov_base = (void *)continue_line;
            iov[0].iov_len = sizeof(continue_line) - 1;
            total = iov[0].iov_len;
            n = 1;
            with_continue = 1;
        }
        if (n == 0)
            break;
        ssize_t w = writev(c->io.fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_write) {
                    c->want_write = 1;
                    update_read_interest(c);
                }
                mx__conn_write_state(c, 1, 0);
                return freed;
            }
            if (errno == EINTR)
                continue;
            mx__conn_close(c);
            return freed;
        }
        if (with_continue) {
            /* a short write of 25 bytes is not worth a state: treat it as the client's problem */
            c->continue_sent = 1;
            if (c->timer.kind == MX_TIMER_BODY) { /* the body may start only now */
                c->body_window = 0;
                mx__timer_restart(c, MX_TIMER_BODY, c->server->cfg.body_timeout);
            }
            continue;
        }
        size_t left = (size_t)w;
        while (c->pipe_head && c->pipe_head->io->resp_ready) {
            mx_req_t *r = c->pipe_head;
            size_t rem = r->io->resp_len - r->io->resp_off;
            if (left < rem) {
                r->io->resp_off += left;
                left = 0;
                break;
            }
            left -= rem;
            r->io->resp_off = r->io->resp_len;
            if (r->io->stream && !r->is_head) {
                /* The head of a stream is out: the stream takes the connection over. */
                mx__stream_attach(c, r->io->stream);
                freed = 1;
                goto again;
            }
            if (r->io->stream)
                mx__stream_detach(r->io->stream); /* HEAD: the head was all there was to send */
            freed = 1;
            if (r == c->cur) {
                /* Answered before its body was all in: the rest is never parsed as a request
                 * (RFC 9112 9.3); the connection closes after a lingering read. */
                mx_body_end(r->io->chan, MX_ECLOSED);
                c->cur = NULL;
                c->state = MX_CONN_DRAIN;
                c->no_more_requests = 1;
                pop_head(c);
                mx__conn_start_linger(c);
                return freed;
            }
            if (pop_head(c)) {
                mx__conn_start_linger(c);
                return freed;
            }
            if (left == 0 && (!c->pipe_head || !c->pipe_head->io->resp_ready))
                break;
        }
        if ((size_t)w < total) {
            if (!c->want_write) {
                c->want_write = 1;
                update_read_interest(c);
            }
            mx__conn_write_state(c, 1, (size_t)w);
            return freed;
        }
    }
    if (c->want_write && !c->io.closing && !c->lingering) {
        c->want_write = 0;
        update_read_interest(c);
    }
    if (!c->io.closing && !c->lingering)
        mx__conn_write_state(c, 0, 0);
    return freed;
}

/*
 * write_timeout: while a connection's output is stuck (the client stopped reading responses, SSE
 * events or WebSocket frames), each write_timeout period must move MX_WRITE_MIN_BYTES, or the
 * connection is closed: a reader that takes a few bytes a second (slow-read attacks) is no
 * better than one that stopped. Once the output is all out, the connection's own timer returns.
 */
void mx__conn_write_state(mx_conn_t *c, int blocked, size_t progressed) {
    mx_server_t *s = c->server;
    c->write_window += progressed;
    if (blocked) {
        if (s->cfg.write_timeout > 0 && c->timer.kind != MX_TIMER_WRITE) {
            c->write_window = 0;
            mx__timer_restart(c, MX_TIMER_WRITE, s->cfg.write_timeout);
        }
        return;
    }
    if (c->timer.kind != MX_TIMER_WRITE)
        return;
    mx__timer_set(c, MX_TIMER_NONE, 0);
    if (c->stream && c->stream->kind == MX_STREAM_SSE)
        mx__timer_set(c, MX_TIMER_HEARTBEAT, s->cfg.sse_heartbeat);
    else if (c->stream)
        mx__timer_set(c, MX_TIMER_WS_PING, s->cfg.websocket_ping_interval);
}

/* After input or output moved: parse what can be parsed, write what can be written, and set
 * timers and read interest for what the connection now waits for. */
static void pump(mx_conn_t *c) {
    mx_server_t *s = c->server;
    for (int rounds = 0; rounds < 64 && !c->io.closing && !c->lingering; rounds++) {
        process_input(c);
        if (c->io.closing || c->lingering)
            return;
        int freed = flush(c);
        if (c->io.closing || c->lingering)
            return;
        if (c->read_paused && c->inflight < s->cfg.max_pipeline && !c->no_more_requests &&
            !c->input_full) {
            c->read_paused = 0;
            update_read_interest(c);
            continue; /* buffered requests may be waiting */
        }
        if (!freed || c->rpos == c->rlen)
            break;
    }
    if (c->io.closing || c->lingering)
        return;
    if (!c->pipe_head) {
        if (c->no_more_requests || atomic_load(&s->stopping)) {
            mx__conn_close(c);
            return;
        }
        if (c->rpos == c->rlen && c->state == MX_CONN_HEAD)
            mx__timer_set(c, MX_TIMER_IDLE, s->cfg.idle_timeout);
    }
    /* compact the input buffer */
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    }
}

/* The client finished sending. Answer the complete requests it already made (it may still be
 * reading: a half-close), drop an incomplete one, then close. */
static void on_client_eof(mx_conn_t *c) {
    c->no_more_requests = 1;
    if (c->cur && c->cur->io->chan) {
        mx_body_end(c->cur->io->chan, MX_ECLOSED); /* the client left mid-body */
        c->cur = NULL;
    } else if (c->cur && !c->cur->io->dispatched && c->pipe_tail == c->cur) {
        drop_tail(c);
    }
    c->rpos = c->rlen = 0;
    c->state = MX_CONN_HEAD;
    mx__timer_set(c, MX_TIMER_NONE, 0);
    if (!c->pipe_head) {
        mx__conn_close(c);
        return;
    }
    c->read_paused = 1;
    update_read_interest(c);
}

/* After a read(2) of the socket: handles the end of input and errors and returns 1 then (the
 * caller stops), 0 when n bytes arrived. EAGAIN and EINTR wait for the next readiness. */
static int read_ended(mx_conn_t *c, ssize_t n) {
    if (n == 0) {
        on_client_eof(c);
        return 1;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            mx__conn_close(c);
        return 1;
    }
    return 0;
}

/* n bytes of a streamed Content-Length body went from the socket straight to its reader (pipe
 * or ring). Returns 1 when that was the end of the body: the request is finished and the
 * pipeline pumped (the response may be ready; the next request waits on the socket). */
static int body_bytes_passed(mx_conn_t *c, mx_req_t *r, size_t n) {
    c->body_remaining -= (uint64_t)n;
    c->body_window += n;
    c->continue_sent = 1; /* the client sent the body anyway */
    if (c->timer.kind == MX_TIMER_IDLE)
        mx__timer_set(c, MX_TIMER_NONE, 0);
    if (c->body_remaining > 0)
        return 0;
    finish_streamed(c, r);
    pump(c);
    return 1;
}

/* Splicing a streamed Content-Length body (body.c): the socket's bytes go straight into the
 * reader's pipe, at most up to the body's end, so the next request's bytes stay on the socket. */
static void splice_body(mx_conn_t *c) {
    mx_req_t *r = c->cur;
    for (;;) {
        size_t want = c->body_remaining < MX_BODY_HIGH ? (size_t)c->body_remaining : MX_BODY_HIGH;
        int full;
        int n = mx_body_splice_in(r->io->chan, c->io.fd, want, &full);
        if (n == 0) {
            on_client_eof(c);
            return;
        }
        if (n == MX_EAGAIN) {
            if (full)
                pause_for_body(c);
            return;
        }
        if (n < 0) {
            mx__conn_close(c);
            return;
        }
        if (body_bytes_passed(c, r, (size_t)n))
            return;
        if (full) {
            pause_for_body(c);
            return;
        }
        if ((size_t)n < want)
            return; /* the socket is drained; epoll tells us when there is more */
    }
}

/* A streamed Content-Length body with nothing of it left in rbuf: read the socket straight into
 * the reader's ring, never past the body's end (the next request stays on the socket). */
static void read_into_chan(mx_conn_t *c) {
    mx_req_t *r = c->cur;
    char *at;
    size_t room;
    size_t want = c->body_remaining < BODY_READ_MAX ? (size_t)c->body_remaining : BODY_READ_MAX;
    int rc = mx_body_room(r->io->chan, want, &at, &room);
    if (rc < 0) {
        mx__conn_close(c);
        return;
    }
    if (rc == 1) {
        pause_for_body(c);
        return;
    }
    ssize_t n = read(c->io.fd, at, room);
    if (read_ended(c, n))
        return;
    int full = mx_body_commit(r->io->chan, (size_t)n);
    if (!body_bytes_passed(c, r, (size_t)n) && full)
        pause_for_body(c);
}

/* The request being received has a streamed body whose reader takes it from a pipe. */
static int splicing(mx_conn_t *c) {
    return c->state == MX_CONN_BODY_CL && c->cur && c->cur->io->chan && c->rpos == c->rlen &&
           (c->cur->io->chan->splice_on || mx_body_start_splice(c->cur->io->chan));
}

static void on_readable(mx_conn_t *c) {
    mx_server_t *s = c->server;
    if (c->lingering) {
        char sink[4096];
        ssize_t n = read(c->io.fd, sink, sizeof(sink));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            mx__conn_close(c);
        return;
    }
    if (c->read_paused)
        return; /* EPOLLIN is off: a stale event from before the pause */
    if (splicing(c)) {
        splice_body(c);
        return;
    }
    if (c->state == MX_CONN_BODY_CL && c->cur && c->cur->io->chan && c->rpos == c->rlen) {
        read_into_chan(c);
        return;
    }
    if (c->rcap < BULK_RBUF && (c->state == MX_CONN_WS || c->state == MX_CONN_BODY_CL ||
                                c->state == MX_CONN_BODY_CHUNKED)) {
        /* Bulk data (WebSocket frames, request bodies): read in larger bites, fewer syscalls. */
        char *nb = realloc(c->rbuf, BULK_RBUF);
        if (nb) {
            c->rbuf = nb;
            c->rcap = BULK_RBUF;
        }
    }
    if (c->rlen == c->rcap) {
        if (c->rpos > 0) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        } else {
            /* The buffer holds one unfinished head (bounded by max_headers_len, which the parser
             * enforces) or body bytes waiting to be copied; grow it moderately. */
            size_t cap = c->rcap * 2;
            if (cap > s->cfg.max_headers_len + 65536 && c->rcap >= s->cfg.max_headers_len + 65536)
                cap = c->rcap; /* cannot happen while parsing keeps up; refuse to grow */
            char *nb = cap > c->rcap ? realloc(c->rbuf, cap) : NULL;
            if (!nb) {
                mx__conn_close(c);
                return;
            }
            c->rbuf = nb;
            c->rcap = cap;
        }
    } else if (c->rpos > 0 && c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    }
    ssize_t n = read(c->io.fd, c->rbuf + c->rlen, c->rcap - c->rlen);
    if (n == 0 && (c->stream || c->state == MX_CONN_WS)) {
        mx__conn_close(c); /* the peer of a stream is gone: tell the stream at once */
        return;
    }
    if (read_ended(c, n))
        return;
    c->rlen += (size_t)n;
    if (c->state == MX_CONN_DRAIN) {
        c->rpos = c->rlen = 0;
        return;
    }
    if (c->timer.kind == MX_TIMER_IDLE)
        mx__timer_set(c, MX_TIMER_NONE, 0);
    pump(c);
}

/* The loop's callback for c's socket. */
static void conn_on_events(mx_io_t *io, uint32_t e) {
    mx_conn_t *c = (mx_conn_t *)io;
    if ((e & (EPOLLHUP | EPOLLERR)) && !(e & EPOLLIN)) {
        mx__conn_close(c); /* both directions are gone: nobody to answer */
        return;
    }
    if (e & EPOLLIN)
        on_readable(c);
    if (!c->io.closing && (e & EPOLLOUT))
        pump(c);
}

void mx__conn_response_ready(mx_conn_t *c) { pump(c); }

void mx__conn_stream_ready(mx_conn_t *c) { pump(c); }

/* A streamed body's reader made room, or wants 100 Continue. */
void mx__conn_req_notify(mx_conn_t *c, mx_req_t *r) {
    if (r != c->cur || !r->io->chan)
        return;
    pthread_mutex_lock(&r->io->chan->mu);
    int resume = r->io->chan->want_resume;
    r->io->chan->want_resume = 0;
    pthread_mutex_unlock(&r->io->chan->mu);
    if (resume && c->input_full) {
        c->input_full = 0;
        if (c->timer.kind == MX_TIMER_BODY) { /* the client was held back, not slow */
            c->body_window = 0;
            mx__timer_restart(c, MX_TIMER_BODY, c->server->cfg.body_timeout);
        }
        if (c->inflight < c->server->cfg.max_pipeline || c->state != MX_CONN_HEAD) {
            c->read_paused = 0;
            update_read_interest(c);
        }
    }
    pump(c);
}

static void on_timeout(mx_conn_t *c, int kind) {
    if (kind == MX_TIMER_HEARTBEAT || kind == MX_TIMER_WS_PING || kind == MX_TIMER_WS_CLOSE) {
        mx__stream_on_timeout(c, kind);
        return;
    }
    if (kind == MX_TIMER_WRITE) {
        if (c->want_write && c->write_window < MX_WRITE_MIN_BYTES) {
            mx__conn_close(c); /* the client (all but) stopped reading what we send */
            return;
        }
        c->write_window = 0;
        if (c->want_write)
            mx__timer_set(c, MX_TIMER_WRITE, c->server->cfg.write_timeout);
        return;
    }
    if (kind == MX_TIMER_BODY) {
        mx_server_t *s = c->server;
        int receiving = c->state == MX_CONN_BODY_CL || c->state == MX_CONN_BODY_CHUNKED;
        /* A client still waiting for 100 Continue, or paused by us, is not slow. */
        if (receiving && c->continue_sent && !c->read_paused &&
            c->body_window < MX_BODY_MIN_BYTES) {
            reject(c, 408); /* too slow a body: slow-POST attacks hold connections this way */
            pump(c);
            return;
        }
        c->body_window = 0;
        if (receiving)
            mx__timer_set(c, MX_TIMER_BODY, s->cfg.body_timeout);
        return;
    }
    if (kind == MX_TIMER_HEAD) {
        /* RFC 9110 15.5.9. Earlier pipelined requests are still answered first: the 408 takes
         * its place at the end of the pipeline. */
        reject(c, 408);
        pump(c);
        return;
    }
    mx__conn_close(c); /* idle keep-alive, or a lingering close that took too long */
}

/* The loop's callback for c's timer (c->timer is unarmed now). */
static void conn_on_timer(mx_timer_t *t, int kind) {
    on_timeout((mx_conn_t *)((char *)t - offsetof(mx_conn_t, timer)), kind);
}
