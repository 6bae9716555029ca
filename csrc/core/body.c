/*
 * body.c: the channel of a streamed request body (body.h). On a route registered with
 * stream=True the handler runs as soon as the head is in; the I/O thread (the writer) puts body
 * bytes into the request's channel as they arrive, and the handler's thread (the reader) pulls
 * them (mx_body_read, blocking, without the GIL; req_body.c wraps it as mx_req_read).
 *
 * The channel is a ring. A Content-Length body is read from the socket straight into its free
 * space (mx_body_room/mx_body_commit); a chunked one is decoded in the connection's read buffer
 * and copied in (mx_body_push). mx_body_peek/mx_body_consume lend the reader the bytes in place,
 * so the multipart parser and Part.save never copy them.
 *
 * Memory stays flat: above MX_BODY_HIGH buffered bytes the writer stops reading the socket; the
 * reader, once below MX_BODY_LOW, asks it to resume (the notify callback). 100 Continue is asked
 * for only when the reader first wants the body, so a handler that answers without reading (401,
 * 413, ...) lets the client skip sending it.
 *
 * save_body of a Content-Length body skips user space: the writer splices the socket into a pipe
 * (never past the body's end, so pipelined requests stay on the socket) and the reader splices
 * the pipe into the file. The pipe is the buffer then, with the same pause/resume protocol; a
 * chunked body, which needs decoding, always comes through buf.
 *
 * The channel knows no request or connection, so it links alone into tests/c/test_body.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "body.h"
#include "common.h"

#define RING_MIN 16384

mx_body_chan_t *mx_body_chan_new(uint64_t size_hint, void (*notify)(void *arg), void *arg) {
    mx_body_chan_t *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    ch->notify = notify;
    ch->notify_arg = arg;
    pthread_mutex_init(&ch->mu, NULL);
    pthread_cond_init(&ch->cv, NULL);
    ch->pipe_r = ch->pipe_w = -1;
    /* The ring's first size: what the body needs, up to the largest (it grows from there). */
    size_t cap = RING_MIN;
    while (cap < size_hint && cap < MX_BODY_RING_MAX)
        cap *= 2;
    ch->cap = cap; /* allocated by the first write */
    return ch;
}

void mx_body_chan_free(mx_body_chan_t *ch) {
    if (!ch)
        return;
    pthread_mutex_destroy(&ch->mu);
    pthread_cond_destroy(&ch->cv);
    if (ch->pipe_r >= 0)
        close(ch->pipe_r);
    if (ch->pipe_w >= 0)
        close(ch->pipe_w);
    free(ch->buf);
    free(ch->old_buf);
    free(ch);
}

/* Under mu: where the next byte goes, and how many fit there without wrapping. */
static size_t ring_tail(const mx_body_chan_t *ch) {
    size_t t = ch->head + ch->used;
    return t >= ch->cap ? t - ch->cap : t;
}

static size_t ring_contig_free(const mx_body_chan_t *ch) {
    if (ch->used == ch->cap)
        return 0;
    size_t t = ring_tail(ch);
    return t >= ch->head ? ch->cap - t : ch->head - t;
}

/* I/O thread, under mu: makes room for `want` more bytes if the ring may grow. The unread bytes
 * move to the start of a new buffer; a borrowed old one stays until the reader is done. */
static int ring_reserve(mx_body_chan_t *ch, size_t want) {
    /* Empty: the next bytes go in one piece. Only the writer may move head this way: the reader
     * moving it would move the free space the writer was just given. */
    if (ch->used == 0 && !ch->borrowed)
        ch->head = 0;
    if (ch->buf && ch->cap - ch->used >= want)
        return 0;
    size_t cap = ch->cap;
    while (cap - ch->used < want && cap < MX_BODY_RING_MAX)
        cap *= 2;
    if (ch->buf && cap == ch->cap)
        return 0; /* as large as it gets: the caller takes what fits */
    char *nb = malloc(cap);
    if (!nb)
        return MX_ENOMEM;
    if (ch->buf) {
        size_t first = ch->cap - ch->head < ch->used ? ch->cap - ch->head : ch->used;
        memcpy(nb, ch->buf + ch->head, first);
        memcpy(nb + first, ch->buf, ch->used - first);
        if (ch->borrowed && !ch->old_buf)
            ch->old_buf = ch->buf; /* the reader's pointer points here */
        else
            free(ch->buf);
    }
    ch->buf = nb;
    ch->cap = cap;
    ch->head = 0;
    return 0;
}

/* Under mu, after the I/O thread added bytes: wake the reader; 1 when over the high mark. */
static int ring_added(mx_body_chan_t *ch, size_t n) {
    ch->used += n;
    int full = ch->used > MX_BODY_HIGH;
    if (full)
        ch->io_paused = 1;
    pthread_cond_broadcast(&ch->cv);
    return full;
}

/* I/O thread. Copies n bytes in (n <= mx_body_space). Returns 1 when the channel is now over its
 * high mark (stop reading), 0 when it has room, MX_ENOMEM. */
int mx_body_push(mx_body_chan_t *ch, const char *data, size_t n) {
    pthread_mutex_lock(&ch->mu);
    if (ring_reserve(ch, n) != 0 || ch->cap - ch->used < n) {
        pthread_mutex_unlock(&ch->mu);
        return MX_ENOMEM;
    }
    size_t t = ring_tail(ch);
    size_t first = ch->cap - t < n ? ch->cap - t : n;
    memcpy(ch->buf + t, data, first);
    memcpy(ch->buf, data + first, n - first);
    int full = ring_added(ch, n);
    pthread_mutex_unlock(&ch->mu);
    return full;
}

/* I/O thread: the most one mx_body_push may take now. */
size_t mx_body_space(mx_body_chan_t *ch) {
    pthread_mutex_lock(&ch->mu);
    size_t f = MX_BODY_RING_MAX - ch->used;
    pthread_mutex_unlock(&ch->mu);
    return f;
}

/*
 * I/O thread: points *at to free space for up to `want` bytes that the socket can be read into
 * directly, *len its size; then mx_body_commit says how much arrived. Nothing else writes there
 * meanwhile. Returns 0, 1 when the ring is full (stop reading: the reader asks to resume as it
 * does after a high mark), or MX_ENOMEM.
 */
int mx_body_room(mx_body_chan_t *ch, size_t want, char **at, size_t *len) {
    pthread_mutex_lock(&ch->mu);
    int rc = ring_reserve(ch, want < MX_BODY_HIGH ? want : MX_BODY_HIGH);
    if (rc != 0 && !ch->buf) {
        pthread_mutex_unlock(&ch->mu);
        return rc;
    }
    size_t room = ring_contig_free(ch);
    /* Bounded as before the ring: the high mark plus one socket read of 64 KiB. */
    size_t bound = MX_BODY_HIGH + 65536;
    if (room > bound - (ch->used < bound ? ch->used : bound))
        room = bound - (ch->used < bound ? ch->used : bound);
    rc = room == 0;
    if (rc)
        ch->io_paused = 1;
    *at = ch->buf + ring_tail(ch);
    *len = room < want ? room : want;
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

/* I/O thread: n bytes were read into the space mx_body_room gave. 1 when now full. */
int mx_body_commit(mx_body_chan_t *ch, size_t n) {
    pthread_mutex_lock(&ch->mu);
    int full = ring_added(ch, n);
    pthread_mutex_unlock(&ch->mu);
    return full;
}

/* I/O thread: the body is complete (err 0) or will never be (err < 0). Idempotent. */
void mx_body_end(mx_body_chan_t *ch, int err) {
    pthread_mutex_lock(&ch->mu);
    if (!ch->done && !ch->err) {
        if (err)
            ch->err = err;
        else
            ch->done = 1;
    }
    if (ch->pipe_w >= 0) { /* the reader drains the pipe, then reads EOF and sees done or err */
        close(ch->pipe_w);
        ch->pipe_w = -1;
    }
    pthread_cond_broadcast(&ch->cv);
    pthread_mutex_unlock(&ch->mu);
}


int mx_body_complete(mx_body_chan_t *ch) {
    pthread_mutex_lock(&ch->mu);
    int done = ch->done;
    pthread_mutex_unlock(&ch->mu);
    return done;
}

/* I/O thread: the reader wants to splice and this request's body bytes in the read buffer are all
 * pushed; makes the pipe. Returns 1 when the body now goes through the pipe, 0 when it keeps
 * going through buf (not asked for, not possible, or no pipe could be made). */
int mx_body_start_splice(mx_body_chan_t *ch) {
    pthread_mutex_lock(&ch->mu);
    int on = ch->splice_on;
    if (on || !ch->can_splice || !ch->want_splice || ch->done || ch->err)
        goto out;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        ch->can_splice = 0; /* out of descriptors: the body keeps coming through buf */
        goto out;
    }
    fcntl(p[1], F_SETFL, O_NONBLOCK); /* the I/O thread never blocks; the reader does */
    /* A pipe as large as the buffer's high mark (pipe-max-size is 1 MiB by default). */
    int cap = fcntl(p[1], F_SETPIPE_SZ, (int)MX_BODY_HIGH);
    if (cap < 0)
        cap = fcntl(p[1], F_GETPIPE_SZ);
    ch->pipe_r = p[0];
    ch->pipe_w = p[1];
    ch->pipe_cap = cap > 0 ? (size_t)cap : 65536;
    ch->splice_on = on = 1;
    pthread_cond_broadcast(&ch->cv);
out:
    pthread_mutex_unlock(&ch->mu);
    return on;
}

/*
 * I/O thread, while splicing: moves up to max body bytes from the socket fd into the pipe.
 * Returns the bytes moved, 0 when the client closed the connection, MX_EAGAIN when nothing moved
 * (*full set when that is because the pipe is full: stop reading until the reader asks to
 * resume), or MX_ESYS.
 */
int mx_body_splice_in(mx_body_chan_t *ch, int fd, size_t max, int *full) {
    *full = 0;
    pthread_mutex_lock(&ch->mu);
    uint64_t drained = ch->unpiped;
    pthread_mutex_unlock(&ch->mu);
    ssize_t n = splice(fd, NULL, ch->pipe_w, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        pthread_mutex_lock(&ch->mu);
        ch->piped += (uint64_t)n;
        if (ch->piped - ch->unpiped >= ch->pipe_cap)
            ch->io_paused = *full = 1;
        pthread_mutex_unlock(&ch->mu);
        return (int)n;
    }
    if (n == 0)
        return 0;
    if (errno == EINTR)
        return MX_EAGAIN;
    if (errno != EAGAIN)
        return MX_ESYS;
    /* Nothing on the socket, or no room in the pipe (its slots hold skb fragments, so it can be
     * full below pipe_cap bytes). Bytes waiting on the socket tell which. Pause only while the
     * pipe holds bytes the reader has not taken since the attempt: its next take resumes us. */
    int queued = 0;
    if (ioctl(fd, FIONREAD, &queued) == 0 && queued > 0) {
        pthread_mutex_lock(&ch->mu);
        if (ch->unpiped == drained && ch->piped > ch->unpiped)
            ch->io_paused = *full = 1;
        pthread_mutex_unlock(&ch->mu);
    }
    return MX_EAGAIN;
}

/* Reader, under mu: n bytes were taken. Returns 1 when the I/O thread must be told to resume. */
static int ring_taken(mx_body_chan_t *ch, size_t n) {
    if (n > ch->used)
        n = ch->used;
    ch->head += n;
    if (ch->head >= ch->cap)
        ch->head -= ch->cap;
    ch->used -= n;
    if (ch->io_paused && ch->used < MX_BODY_LOW) {
        ch->io_paused = 0;
        ch->want_resume = 1;
        return 1;
    }
    return 0;
}

/* Reader: the first read of a streamed body; the I/O thread sends 100 Continue if the client
 * waits for it, and starts splicing if asked to. */
void mx_body_begin(mx_body_chan_t *ch, int splice) {
    int notify = 0;
    pthread_mutex_lock(&ch->mu);
    if (!ch->read_started) {
        ch->read_started = 1;
        ch->want_continue = 1;
        notify = 1;
    }
    if (splice && ch->can_splice && !ch->want_splice) {
        ch->want_splice = 1;
        notify = 1;
    }
    pthread_mutex_unlock(&ch->mu);
    if (notify)
        ch->notify(ch->notify_arg);
}

/*
 * Reader: the next body bytes of a streamed body, up to n. They are copied into buf; or, when
 * out_fd >= 0 and the body comes through the pipe, spliced straight into out_fd (*to_fd = 1).
 * Returns the bytes moved, 0 at the end, or an error (mx_req_read's; MX_ESYS for out_fd).
 */
ssize_t mx_body_read(mx_body_chan_t *ch, char *buf, size_t n, int out_fd, int *to_fd) {
    int notify = 0;
    *to_fd = 0;
    pthread_mutex_lock(&ch->mu);
    while (ch->used == 0 && !ch->splice_on && !ch->done && !ch->err)
        pthread_cond_wait(&ch->cv, &ch->mu);
    ssize_t got;
    if (ch->used > 0) {
        size_t take = ch->used < n ? ch->used : n;
        size_t first = ch->cap - ch->head < take ? ch->cap - ch->head : take;
        memcpy(buf, ch->buf + ch->head, first);
        memcpy(buf + first, ch->buf, take - first);
        notify = ring_taken(ch, take);
        got = (ssize_t)take;
    } else if (ch->splice_on) {
        /* buf is empty and stays so: the rest of the body is in (or on its way to) the pipe */
        int fd = ch->pipe_r;
        if (fd < 0) { /* the pipe was drained to its end already */
            got = ch->done ? 0 : ch->err ? ch->err : MX_ECLOSED;
            goto out;
        }
        pthread_mutex_unlock(&ch->mu);
        ssize_t k;
        do {
            k = out_fd >= 0 ? splice(fd, NULL, out_fd, NULL, MX_BODY_HIGH, SPLICE_F_MOVE)
                           : read(fd, buf, n);
        } while (k < 0 && errno == EINTR);
        if (k < 0)
            return MX_ESYS;
        pthread_mutex_lock(&ch->mu);
        if (k == 0) { /* the I/O thread closed the pipe: the body ended, one way or the other */
            got = ch->done ? 0 : ch->err ? ch->err : MX_ECLOSED;
            close(ch->pipe_r); /* a request kept alive afterwards holds no descriptor */
            ch->pipe_r = -1;
        } else {
            *to_fd = out_fd >= 0;
            ch->unpiped += (uint64_t)k;
            got = k;
            if (ch->io_paused) { /* the pipe has room again */
                ch->io_paused = 0;
                ch->want_resume = 1;
                notify = 1;
            }
        }
    } else {
        got = ch->done ? 0 : ch->err;
    }
out:
    pthread_mutex_unlock(&ch->mu);
    if (notify)
        ch->notify(ch->notify_arg);
    return got;
}

ssize_t mx_body_peek(mx_body_chan_t *ch, const char **data) {
    int notify = 0;
    ssize_t got;
    pthread_mutex_lock(&ch->mu);
    while (ch->used == 0 && !ch->splice_on && !ch->done && !ch->err)
        pthread_cond_wait(&ch->cv, &ch->mu);
    if (ch->used == 0 && ch->splice_on && ch->pipe_r >= 0) {
        /* The rest is in the pipe (a save_body that failed midway): the I/O thread no longer
         * writes into the ring, so the reader fills it from the pipe itself. */
        if (!ch->buf && (ch->buf = malloc(ch->cap)) == NULL) {
            pthread_mutex_unlock(&ch->mu);
            return MX_ENOMEM;
        }
        int fd = ch->pipe_r;
        char *b = ch->buf;
        size_t cap = ch->cap;
        pthread_mutex_unlock(&ch->mu);
        ssize_t k;
        do {
            k = read(fd, b, cap);
        } while (k < 0 && errno == EINTR);
        pthread_mutex_lock(&ch->mu);
        if (k < 0) {
            got = MX_ESYS;
            goto out;
        }
        if (k == 0) {
            close(ch->pipe_r);
            ch->pipe_r = -1;
        } else {
            ch->head = 0;
            ch->used = (size_t)k;
            ch->unpiped += (uint64_t)k;
            if (ch->io_paused) {
                ch->io_paused = 0;
                ch->want_resume = 1;
                notify = 1;
            }
        }
    }
    if (ch->used > 0) {
        *data = ch->buf + ch->head;
        got = (ssize_t)(ch->cap - ch->head < ch->used ? ch->cap - ch->head : ch->used);
        ch->borrowed = 1;
    } else {
        got = ch->done ? 0 : ch->err ? ch->err : MX_ECLOSED;
    }
out:
    pthread_mutex_unlock(&ch->mu);
    if (notify)
        ch->notify(ch->notify_arg);
    return got;
}

void mx_body_consume(mx_body_chan_t *ch, size_t n) {
    pthread_mutex_lock(&ch->mu);
    ch->borrowed = 0;
    free(ch->old_buf); /* a buffer the ring outgrew while the reader held it */
    ch->old_buf = NULL;
    int notify = ring_taken(ch, n);
    pthread_mutex_unlock(&ch->mu);
    if (notify)
        ch->notify(ch->notify_arg);
}
