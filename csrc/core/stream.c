/*
 * stream.c: what SSE streams and WebSockets share: a bounded, thread-safe output queue that any
 * thread fills and only the I/O thread writes, the wake-ups between them, and the stream's end.
 * The bytes and write nodes are buf.c's; SSE encoding and sending is sse.c's.
 *
 * Life of a stream: a handler's thread creates it with the response head (mx_req_respond_sse,
 * mx_req_upgrade_ws) and may send at once; bytes wait in the queue. When the I/O thread has
 * written the head, the connection attaches the stream (mx__stream_attach) and from then on
 * writes its queue whenever a sender notifies it. When the connection goes away for any reason,
 * mx__stream_detach marks the stream finished: senders get MX_ECLOSED, waiters wake up, and a
 * WebSocket gets its CLOSE event.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- the stream object ---- */

static void notify_deliver(mx_msg_t *m);
static void notify_drop(mx_msg_t *m);
static void ws_task_done(mx_task_t *t);
static const mx_msg_ops_t notify_ops = {notify_deliver, notify_drop};
static const mx_task_ops_t ws_task_ops = {ws_task_done, NULL};

mx_stream_t *mx__stream_new(mx_server_t *s, int kind) {
    mx_stream_t *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->super.kind = MX_TASK_WS;
    st->super.ops = &ws_task_ops;
    mx_msg_init(&st->notify_msg, &notify_ops);
    atomic_init(&st->refcnt, 1);
    atomic_init(&st->closed, 0);
    st->server = s;
    st->kind = kind;
    pthread_mutex_init(&st->send_mu, NULL);
    pthread_mutex_init(&st->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->cv, &ca);
    pthread_condattr_destroy(&ca);
    st->id = __atomic_add_fetch(&s->next_stream_id, 1, __ATOMIC_RELAXED);
    return st;
}

/* "This stream has news" (data, its end, room to read again), delivered on the I/O thread. */
static void notify_deliver(mx_msg_t *m) {
    mx_stream_t *st = (mx_stream_t *)((char *)m - offsetof(mx_stream_t, notify_msg));
    mx__stream_on_notify(st);
    mx_stream_decref(st);
}

static void notify_drop(mx_msg_t *m) {
    mx_stream_decref((mx_stream_t *)((char *)m - offsetof(mx_stream_t, notify_msg)));
}

void mx__stream_notify(mx_stream_t *st) {
    mx_stream_incref(st); /* the message's reference */
    mx_loop_post(&st->server->loop, &st->notify_msg);
}

/* A WebSocket's event delivery in the pool: when a worker is done, more events may wait. */
static void ws_task_done(mx_task_t *t) { mx__ws_task_finish((mx_stream_t *)t); }

void mx_stream_incref(mx_stream_t *st) {
    atomic_fetch_add_explicit(&st->refcnt, 1, memory_order_relaxed);
}

void mx_stream_decref(mx_stream_t *st) {
    if (!st || atomic_fetch_sub_explicit(&st->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    mx__free_list(st->q_head);
    mx__free_list(st->w_head);
    mx_ws_msg_t *m = st->in_head;
    while (m) {
        mx_ws_msg_t *next = m->next;
        mx_ws_msg_free(m);
        m = next;
    }
    mx__ws_free(st);
    pthread_mutex_destroy(&st->send_mu);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
}

uint64_t mx_stream_id(const mx_stream_t *st) { return st->id; }
int mx_stream_closed(mx_stream_t *st) { return atomic_load(&st->closed); }
void *mx_stream_user(const mx_stream_t *st) { return st->user; }
void mx_stream_set_user(mx_stream_t *st, void *user) { st->user = user; }

int mx_stream_wait_finished(mx_stream_t *st, double timeout) {
    struct timespec ts;
    if (timeout >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (timeout > 1e7)
            timeout = 1e7;
        time_t whole = (time_t)timeout;
        ts.tv_sec += whole;
        ts.tv_nsec += (long)((timeout - (double)whole) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&st->mu);
    while (!st->finished) {
        if (timeout < 0)
            pthread_cond_wait(&st->cv, &st->mu);
        else if (pthread_cond_timedwait(&st->cv, &st->mu, &ts) == ETIMEDOUT)
            break;
    }
    int done = st->finished;
    pthread_mutex_unlock(&st->mu);
    return done;
}

/*
 * Appends n to the senders' queue. st->mu held. Returns 1 when the I/O thread must be notified
 * (the queue was empty), 0 when it already knows, MX_ECLOSED (n freed) after the end, MX_EFULL
 * (n freed, the stream marked slow and closed) when the bound would be exceeded.
 */
int mx__stream_queue_locked(mx_stream_t *st, mx_wnode_t *n) {
    size_t size = mx__wnode_size(n);
    int control = n->is_close || n->is_end;
    if (st->finished || (atomic_load(&st->closed) && !control)) {
        mx__wnode_free(n);
        return MX_ECLOSED;
    }
    /* The bound is on the backlog: one message of any size may go into an empty queue (the
     * application chose its size), but a client that leaves data unread cannot grow it. */
    if (!control && st->queued > 0 && st->queued + size > st->server->cfg.max_send_queue) {
        mx__wnode_free(n);
        st->slow = 1;
        atomic_store(&st->closed, 1);
        return MX_EFULL;
    }
    int was_empty = st->q_head == NULL;
    n->next = NULL;
    if (st->q_tail)
        st->q_tail->next = n;
    else
        st->q_head = n;
    st->q_tail = n;
    st->queued += size;
    return was_empty;
}

/* ---- the I/O thread's side ---- */

void mx__stream_attach(mx_conn_t *c, mx_stream_t *st) {
    mx_server_t *s = c->server;
    c->stream = st;
    c->hold_input = 1;
    st->conn = c;
    mx__timer_set(c, MX_TIMER_NONE, 0);
    if (st->kind == MX_STREAM_WS) {
        mx__ws_on_attach(c, st);
    } else {
        /* keep reading: a closed connection must be noticed at once */
        c->read_paused = 0;
        mx__conn_set_events(c, EPOLLIN | (c->want_write ? EPOLLOUT : 0));
        if (st->kind == MX_STREAM_SSE)
            mx__timer_set(c, MX_TIMER_HEARTBEAT, s->cfg.sse_heartbeat);
    }
}

/*
 * Writes what the stream has queued. Returns 1 when the stream ended cleanly and its request
 * may leave the pipeline (SSE on a reusable connection), 0 otherwise.
 */
/* I/O thread: adjusts the count of bytes queued and not yet written. */
static void queued_add(mx_stream_t *st, ssize_t delta) {
    pthread_mutex_lock(&st->mu);
    if (delta < 0 && (size_t)-delta > st->queued)
        st->queued = 0;
    else
        st->queued = (size_t)((ssize_t)st->queued + delta);
    if (delta < 0 && st->writers_waiting)
        pthread_cond_broadcast(&st->cv); /* room for a blocked mx_stream_write */
    pthread_mutex_unlock(&st->mu);
}

int mx__stream_flush(mx_conn_t *c) {
    mx_stream_t *st = c->stream;
    pthread_mutex_lock(&st->mu);
    if (st->q_head) {
        if (st->w_tail)
            st->w_tail->next = st->q_head;
        else
            st->w_head = st->q_head;
        st->w_tail = st->q_tail;
        st->q_head = st->q_tail = NULL;
    }
    pthread_mutex_unlock(&st->mu);

    size_t written = 0;
    int close_written = 0, end_written = 0, blocked = 0;
    while (st->w_head && !c->io.closing) {
        struct iovec iov[64];
        int k = 0;
        size_t total = 0;
        for (mx_wnode_t *n = st->w_head; n && k <= 61; n = n->next)
            k += mx__wnode_iov(n, iov + k);
        for (int i = 0; i < k; i++)
            total += iov[i].iov_len;
        /* Count the bytes as no longer queued before the peer can see them: a sender whose
         * client has read everything must find the queue empty (the bound is on the backlog);
         * what the write leaves over is counted back. */
        queued_add(st, -(ssize_t)total);
        ssize_t w = k ? writev(c->io.fd, iov, k) : 0;
        if (w < (ssize_t)total)
            queued_add(st, (ssize_t)total - (w > 0 ? w : 0));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                blocked = 1;
                break;
            }
            mx__conn_close(c);
            break;
        }
        size_t left = (size_t)w;
        written += left;
        while (st->w_head) {
            mx_wnode_t *n = st->w_head;
            size_t rem = mx__wnode_size(n) - n->pos;
            if (left < rem) {
                n->pos += left;
                break;
            }
            left -= rem;
            st->w_head = n->next;
            if (!st->w_head)
                st->w_tail = NULL;
            close_written |= n->is_close;
            end_written |= n->is_end;
            mx__wnode_free(n);
        }
        if ((size_t)w < total) {
            blocked = 1; /* the socket buffer is full: wait for EPOLLOUT */
            break;
        }
    }
    if (c->io.closing)
        return 0;
    if (blocked != c->want_write) {
        c->want_write = (unsigned)blocked;
        mx__conn_set_events(c, (c->read_paused ? 0 : EPOLLIN) | (blocked ? EPOLLOUT : 0));
    }
    mx__conn_write_state(c, blocked, written);
    if (st->kind == MX_STREAM_WS)
        return mx__ws_after_write(c, st, close_written);
    if (end_written) {
        if (c->timer.kind == MX_TIMER_HEARTBEAT)
            mx__timer_set(c, MX_TIMER_NONE, 0);
        mx__stream_detach(st);
        /* HTTP/1.0: the end of the body is the end of the connection; an aborted body ends
         * with the connection too, without its last chunk, so the client sees it truncated */
        if (!st->chunked || st->aborted) {
            mx__conn_close(c);
            return 0;
        }
        return 1;
    }
    if (written && !blocked && st->kind == MX_STREAM_SSE)
        mx__timer_restart(c, MX_TIMER_HEARTBEAT, c->server->cfg.sse_heartbeat);
    return 0;
}

/*
 * The connection is gone or the stream is over: no more sends, wake the waiters, and give a
 * WebSocket its last events. Idempotent. I/O thread, or the binding's thread once the I/O
 * thread has stopped.
 */
void mx__stream_detach(mx_stream_t *st) {
    mx_wnode_t *drop_q, *drop_w;
    int schedule = 0;
    pthread_mutex_lock(&st->mu);
    if (st->finished) {
        pthread_mutex_unlock(&st->mu);
        return;
    }
    st->finished = 1;
    atomic_store(&st->closed, 1);
    drop_q = st->q_head;
    drop_w = st->w_head;
    st->q_head = st->q_tail = st->w_head = st->w_tail = NULL;
    st->queued = 0;
    if (st->kind == MX_STREAM_WS) {
        if (!st->opened) { /* gone before the 101 went out: still OPEN first, CLOSE last */
            mx_ws_msg_t *e = calloc(1, sizeof(*e));
            if (e) {
                e->event = MX_WS_EVENT_OPEN;
                schedule |= mx__ws_push_event_locked(st, e);
            }
            st->opened = 1;
        }
        if (!st->close_received) {
            if (!st->close_code)
                st->close_code = st->slow ? 1008 : 1006;
            mx_ws_msg_t *e = calloc(1, sizeof(*e));
            if (e) {
                e->event = MX_WS_EVENT_ERROR;
                schedule |= mx__ws_push_event_locked(st, e);
            }
        }
        mx_ws_msg_t *e = calloc(1, sizeof(*e));
        if (e) {
            e->event = MX_WS_EVENT_CLOSE;
            schedule |= mx__ws_push_event_locked(st, e);
        }
        st->close_queued = 1;
    }
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    if (schedule)
        mx_pool_push(&st->server->pool, &st->super);
    if (st->conn && st->conn->stream == st)
        st->conn->stream = NULL;
    st->conn = NULL;
    mx__free_list(drop_q);
    mx__free_list(drop_w);
}

/* A sender queued data, closed the stream, or drained a full inbound queue. I/O thread. */
void mx__stream_on_notify(mx_stream_t *st) {
    mx_conn_t *c = st->conn;
    if (!c || c->io.closing || c->stream != st)
        return; /* not attached yet (the head is still queued), or gone */
    pthread_mutex_lock(&st->mu);
    /* an aborted stream is cut here only when its end node could not be queued */
    int slow = st->slow || (st->aborted && !st->q_head && !st->w_head), resume = st->want_resume;
    st->want_resume = 0;
    pthread_mutex_unlock(&st->mu);
    if (slow) {
        mx__conn_close(c); /* a reader that stopped reading: drop it, never buffer without end */
        return;
    }
    if (resume && st->in_paused) {
        st->in_paused = 0;
        c->input_full = 0;
        c->read_paused = 0;
        mx__conn_set_events(c, EPOLLIN | (c->want_write ? EPOLLOUT : 0));
    }
    mx__conn_stream_ready(c);
}

void mx__stream_on_timeout(mx_conn_t *c, int kind) {
    mx_stream_t *st = c->stream;
    if (!st || (kind == MX_TIMER_HEARTBEAT && st->kind != MX_STREAM_SSE))
        return; /* a timer left from a stream that has ended */
    if (kind == MX_TIMER_HEARTBEAT) {
        static const char beat[] = ":\n\n";
        mx_bytes_t *b = mx_bytes_new(sizeof(beat) - 1);
        mx_wnode_t *n = b ? mx__wnode_new(b, 0, b->len) : NULL;
        mx_bytes_decref(b);
        if (!n)
            return;
        memcpy(b->data, beat, b->len);
        if (st->chunked)
            mx__wnode_chunk(n);
        pthread_mutex_lock(&st->mu);
        int idle = st->queued == 0;
        int rc = idle ? mx__stream_queue_locked(st, n) : MX_ECLOSED;
        pthread_mutex_unlock(&st->mu);
        if (!idle)
            mx__wnode_free(n);
        if (rc >= 0)
            mx__conn_stream_ready(c);
        return;
    }
    mx__ws_on_timeout(c, st, kind);
}

/* The server is stopping: end SSE streams, start closing WebSockets with 1001 (going away). */
void mx__stream_shutdown(mx_stream_t *st) {
    if (st->kind == MX_STREAM_SSE)
        mx_sse_close(st);
    else if (st->kind == MX_STREAM_WS)
        mx_ws_close(st, 1001, "server shutting down", 20);
    /* A response body is not cut short: ending it early would look complete to the client. It
     * gets the rest of the drain; the connection closes when that runs out. */
}

/* ---- streamed response bodies ---- */

int mx_stream_write(mx_stream_t *st, const void *data, size_t len, int block) {
    if (len == 0)
        return atomic_load(&st->closed) ? MX_ECLOSED : 0; /* a zero-size chunk would end it */
    mx_wnode_t *n = mx__wnode_copy(NULL, 0, data, len);
    if (!n)
        return MX_ENOMEM;
    if (st->chunked)
        mx__wnode_chunk(n);
    size_t size = mx__wnode_size(n), max = st->server->cfg.max_send_queue;
    pthread_mutex_lock(&st->mu);
    /* The bound is on the backlog, as for every stream: wait while the queue is not empty and
     * this would take it past max_send_queue; the I/O thread signals as it writes. */
    while (block && st->queued > 0 && st->queued + size > max && !st->finished &&
           !atomic_load(&st->closed)) {
        st->writers_waiting++;
        pthread_cond_wait(&st->cv, &st->mu);
        st->writers_waiting--;
    }
    int rc;
    if (!block && st->queued > 0 && st->queued + size > max && !st->finished &&
        !atomic_load(&st->closed)) {
        mx__wnode_free(n);
        rc = MX_EAGAIN;
    } else {
        rc = mx__stream_queue_locked(st, n);
    }
    pthread_mutex_unlock(&st->mu);
    if (rc == 1)
        mx__stream_notify(st);
    return rc < 0 ? rc : 0;
}

/* What was written before the failure still goes out (it is true data); then, instead of the
 * body's end, an empty end node makes the I/O thread close the connection (mx__stream_flush). */
void mx_stream_abort(mx_stream_t *st) {
    mx_wnode_t *n = mx__wnode_new(NULL, 0, 0);
    pthread_mutex_lock(&st->mu);
    int rc = MX_ECLOSED;
    if (!atomic_load(&st->closed) && !st->finished) {
        st->aborted = 1;
        atomic_store(&st->closed, 1);
        if (n) {
            n->is_end = 1;
            rc = mx__stream_queue_locked(st, n); /* takes n */
            n = NULL;
        } else {
            rc = 1; /* out of memory: cut at once (mx__stream_on_notify) */
        }
        pthread_cond_broadcast(&st->cv); /* blocked writers see the stream closed */
    }
    pthread_mutex_unlock(&st->mu);
    if (n)
        mx__wnode_free(n);
    if (rc >= 0)
        mx__stream_notify(st);
}

