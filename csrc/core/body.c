/*
 * body.c: streamed request bodies. On a route registered with stream=True the handler runs as
 * soon as the head is in; the I/O thread puts body bytes into the request's channel as they
 * arrive, and the handler's thread pulls them with mx_req_read (blocking, without the GIL).
 *
 * The channel is a ring. A Content-Length body is read from the socket straight into its free
 * space (mx__body_room/mx__body_commit); a chunked one is decoded in the connection's read
 * buffer and copied in (mx__body_push). mx_req_peek/mx_req_consume lend the reader the bytes in
 * place, so the multipart parser and Part.save never copy them.
 *
 * Memory stays flat: above MX_BODY_HIGH buffered bytes the I/O thread stops reading the socket;
 * the reader, once below MX_BODY_LOW, asks it to resume (mx__req_notify). 100 Continue is sent
 * only when the reader first asks for the body, so a handler that answers without reading (401,
 * 413, ...) lets the client skip sending it.
 *
 * save_body of a Content-Length body skips user space: the I/O thread splices the socket into a
 * pipe (never past the body's end, so pipelined requests stay on the socket) and the reader
 * splices the pipe into the file. The pipe is the buffer then, with the same pause/resume
 * protocol; a chunked body, which needs decoding, always comes through buf.
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

#include "internal.h"

#define RING_MIN 16384

mx_body_chan_t *mx__body_chan_new(uint64_t size_hint) {
    mx_body_chan_t *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
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

void mx__body_chan_free(mx_body_chan_t *ch) {
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

/* I/O thread. Copies n bytes in (n <= mx__body_free). Returns 1 when the channel is now over its
 * high mark (stop reading), 0 when it has room, MX_ENOMEM. */
int mx__body_push(mx_body_chan_t *ch, const char *data, size_t n) {
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

/* I/O thread: the most one mx__body_push may take now. */
size_t mx__body_free(mx_body_chan_t *ch) {
    pthread_mutex_lock(&ch->mu);
    size_t f = MX_BODY_RING_MAX - ch->used;
    pthread_mutex_unlock(&ch->mu);
    return f;
}

/*
 * I/O thread: points *at to free space for up to `want` bytes that the socket can be read into
 * directly, *len its size; then mx__body_commit says how much arrived. Nothing else writes there
 * meanwhile. Returns 0, 1 when the ring is full (stop reading: the reader asks to resume as it
 * does after a high mark), or MX_ENOMEM.
 */
int mx__body_room(mx_body_chan_t *ch, size_t want, char **at, size_t *len) {
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

/* I/O thread: n bytes were read into the space mx__body_room gave. 1 when now full. */
int mx__body_commit(mx_body_chan_t *ch, size_t n) {
    pthread_mutex_lock(&ch->mu);
    int full = ring_added(ch, n);
    pthread_mutex_unlock(&ch->mu);
    return full;
}

/* I/O thread: the body is complete (err 0) or will never be (err < 0). Idempotent. */
void mx__body_end(mx_body_chan_t *ch, int err) {
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

int mx_req_streamed(const mx_req_t *r) { return r->chan != NULL; }

int mx__body_complete(mx_body_chan_t *ch) {
    pthread_mutex_lock(&ch->mu);
    int done = ch->done;
    pthread_mutex_unlock(&ch->mu);
    return done;
}

/* I/O thread: the reader wants to splice and this request's body bytes in the read buffer are all
 * pushed; makes the pipe. Returns 1 when the body now goes through the pipe, 0 when it keeps
 * going through buf (not asked for, not possible, or no pipe could be made). */
int mx__body_start_splice(mx_body_chan_t *ch) {
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
int mx__body_splice_in(mx_body_chan_t *ch, int fd, size_t max, int *full) {
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
static void chan_begin(mx_req_t *r, mx_body_chan_t *ch, int splice) {
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
        mx__req_notify(r);
}

/*
 * Reader: the next body bytes of a streamed body, up to n. They are copied into buf; or, when
 * out_fd >= 0 and the body comes through the pipe, spliced straight into out_fd (*to_fd = 1).
 * Returns the bytes moved, 0 at the end, or an error (mx_req_read's; MX_ESYS for out_fd).
 */
static ssize_t chan_read(mx_req_t *r, char *buf, size_t n, int out_fd, int *to_fd) {
    mx_body_chan_t *ch = r->chan;
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
        mx__req_notify(r);
    return got;
}

ssize_t mx_req_read(mx_req_t *r, char *buf, size_t n) {
    mx_body_chan_t *ch = r->chan;
    if (!ch) { /* a buffered body: read it from where the last read stopped */
        size_t pos = r->read_pos;
        size_t take = r->body_len - pos < n ? r->body_len - pos : n;
        if (take)
            memcpy(buf, r->body + pos, take);
        r->read_pos = pos + take;
        return (ssize_t)take;
    }
    chan_begin(r, ch, 0);
    int to_fd;
    return chan_read(r, buf, n, -1, &to_fd);
}

ssize_t mx_req_peek(mx_req_t *r, const char **data) {
    mx_body_chan_t *ch = r->chan;
    if (!ch) {
        *data = r->body + r->read_pos;
        return (ssize_t)(r->body_len - r->read_pos);
    }
    chan_begin(r, ch, 0);
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
        mx__req_notify(r);
    return got;
}

void mx_req_consume(mx_req_t *r, size_t n) {
    mx_body_chan_t *ch = r->chan;
    if (!ch) {
        size_t left = r->body_len - r->read_pos;
        r->read_pos += n < left ? n : left;
        return;
    }
    pthread_mutex_lock(&ch->mu);
    ch->borrowed = 0;
    free(ch->old_buf); /* a buffer the ring outgrew while the reader held it */
    ch->old_buf = NULL;
    int notify = ring_taken(ch, n);
    pthread_mutex_unlock(&ch->mu);
    if (notify)
        mx__req_notify(r);
}

/* The process umask, read without changing it (umask(2) would race with other threads). */
static mode_t process_umask(void) {
    mode_t um = 022;
    FILE *f = fopen("/proc/self/status", "re");
    if (f) {
        char line[128];
        while (fgets(line, sizeof(line), f)) {
            unsigned v;
            if (sscanf(line, "Umask: %o", &v) == 1) {
                um = (mode_t)v;
                break;
            }
        }
        fclose(f);
    }
    return um;
}

/* A temporary file next to its target, so the final rename cannot cross devices. */
typedef struct {
    char *tmp;
    int fd;
} tmpfile_t;

static int tmp_open(tmpfile_t *t, const char *path) {
    size_t plen = strlen(path);
    char *copy = strdup(path);
    t->fd = -1;
    t->tmp = malloc(plen + 32);
    if (!copy || !t->tmp) {
        free(copy);
        free(t->tmp);
        t->tmp = NULL;
        return MX_ENOMEM;
    }
    snprintf(t->tmp, plen + 32, "%s/.mummyx-upload-XXXXXX", dirname(copy));
    free(copy);
    t->fd = mkostemp(t->tmp, O_CLOEXEC);
    if (t->fd < 0) {
        int saved = errno;
        free(t->tmp);
        t->tmp = NULL;
        errno = saved;
        return MX_ESYS;
    }
    return 0;
}

/* Ends a temporary file: renamed to path when rc is 0 (and that works), else removed (a partial
 * write leaves nothing behind). Returns rc, or MX_ESYS when the commit failed. */
static int tmp_close(tmpfile_t *t, const char *path, int rc) {
    if (rc == 0) {
        /* mkstemp makes the file 0600; give it the usual mode for new files (umask applied). */
        fchmod(t->fd, 0666 & ~process_umask());
        int c = close(t->fd);
        t->fd = -1;
        if (c != 0 || rename(t->tmp, path) != 0)
            rc = MX_ESYS;
    }
    if (rc != 0) {
        int saved = errno;
        if (t->fd >= 0)
            close(t->fd);
        unlink(t->tmp);
        errno = saved;
    }
    free(t->tmp);
    return rc;
}

static int write_all(int fd, const char *d, size_t k) {
    for (size_t off = 0; off < k;) {
        ssize_t w = write(fd, d + off, k - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return MX_ESYS;
        }
        off += (size_t)w;
    }
    return 0;
}

int mx_save_to_file(const char *path, mx_pull_fn pull, void *ctx, uint64_t *written) {
    tmpfile_t t;
    *written = 0;
    int rc = tmp_open(&t, path);
    if (rc != 0)
        return rc;
    for (;;) {
        const char *d;
        size_t k;
        int p = pull(ctx, &d, &k);
        if (p <= 0) {
            rc = p;
            break;
        }
        if ((rc = write_all(t.fd, d, k)) != 0)
            break;
        *written += k;
    }
    return tmp_close(&t, path, rc);
}

#define SAVE_BUF (256 * 1024)

int mx_req_save_body(mx_req_t *r, const char *path, uint64_t *written) {
    *written = 0;
    mx_body_chan_t *ch = r->chan;
    char *buf = malloc(SAVE_BUF);
    if (!buf)
        return MX_ENOMEM;
    tmpfile_t t;
    int rc = tmp_open(&t, path);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    if (ch)
        chan_begin(r, ch, 1); /* a Content-Length body goes socket -> pipe -> file */
    for (;;) {
        int to_fd = 0;
        ssize_t n = ch ? chan_read(r, buf, SAVE_BUF, t.fd, &to_fd) : mx_req_read(r, buf, SAVE_BUF);
        if (n <= 0) {
            rc = (int)n;
            break;
        }
        if (!to_fd && (rc = write_all(t.fd, buf, (size_t)n)) != 0)
            break;
        *written += (uint64_t)n;
    }
    free(buf);
    return tmp_close(&t, path, rc);
}
