/*
 * body.c: streamed request bodies. On a route registered with stream=True the handler runs as
 * soon as the head is in; the I/O thread pushes body bytes into the request's channel as they
 * arrive, and the handler's thread pulls them with mx_req_read (blocking, without the GIL).
 *
 * Memory stays flat: above MX_BODY_HIGH buffered bytes the I/O thread stops reading the socket;
 * the reader, once below MX_BODY_LOW, asks it to resume (mx__req_notify). 100 Continue is sent
 * only when the reader first asks for the body, so a handler that answers without reading (401,
 * 413, ...) lets the client skip sending it.
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
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

mx_body_chan_t *mx__body_chan_new(void) {
    mx_body_chan_t *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return NULL;
    pthread_mutex_init(&ch->mu, NULL);
    pthread_cond_init(&ch->cv, NULL);
    return ch;
}

void mx__body_chan_free(mx_body_chan_t *ch) {
    if (!ch)
        return;
    pthread_mutex_destroy(&ch->mu);
    pthread_cond_destroy(&ch->cv);
    free(ch->buf);
    free(ch);
}

/* I/O thread. Returns 1 when the channel is now over its high mark (stop reading), 0 when it
 * has room, MX_ENOMEM. */
int mx__body_push(mx_body_chan_t *ch, const char *data, size_t n) {
    pthread_mutex_lock(&ch->mu);
    if (ch->off > 0 && ch->off == ch->len)
        ch->off = ch->len = 0;
    if (ch->len + n > ch->cap) {
        if (ch->off > 0) { /* compact first */
            memmove(ch->buf, ch->buf + ch->off, ch->len - ch->off);
            ch->len -= ch->off;
            ch->off = 0;
        }
        if (ch->len + n > ch->cap) {
            size_t cap = ch->cap ? ch->cap : 16384;
            while (cap < ch->len + n)
                cap *= 2;
            char *nb = realloc(ch->buf, cap);
            if (!nb) {
                pthread_mutex_unlock(&ch->mu);
                return MX_ENOMEM;
            }
            ch->buf = nb;
            ch->cap = cap;
        }
    }
    memcpy(ch->buf + ch->len, data, n);
    ch->len += n;
    int full = ch->len - ch->off > MX_BODY_HIGH;
    if (full)
        ch->io_paused = 1;
    pthread_cond_broadcast(&ch->cv);
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
    int notify = 0;
    pthread_mutex_lock(&ch->mu);
    if (!ch->read_started) {
        ch->read_started = 1;
        ch->want_continue = 1;
        notify = 1;
    }
    if (notify) { /* the I/O thread sends 100 Continue if the client waits for it */
        pthread_mutex_unlock(&ch->mu);
        mx__req_notify(r);
        pthread_mutex_lock(&ch->mu);
    }
    while (ch->off == ch->len && !ch->done && !ch->err)
        pthread_cond_wait(&ch->cv, &ch->mu);
    ssize_t got;
    if (ch->off < ch->len) {
        size_t take = ch->len - ch->off < n ? ch->len - ch->off : n;
        memcpy(buf, ch->buf + ch->off, take);
        ch->off += take;
        got = (ssize_t)take;
        if (ch->io_paused && ch->len - ch->off < MX_BODY_LOW) {
            ch->io_paused = 0;
            ch->want_resume = 1;
            notify = 2;
        }
    } else {
        got = ch->done ? 0 : ch->err;
    }
    pthread_mutex_unlock(&ch->mu);
    if (notify == 2)
        mx__req_notify(r);
    return got;
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

int mx_save_to_file(const char *path, mx_pull_fn pull, void *ctx, uint64_t *written) {
    *written = 0;
    size_t plen = strlen(path);
    char *copy = strdup(path);
    char *tmp = malloc(plen + 32);
    int rc = 0, fd = -1, made = 0;
    if (!copy || !tmp) {
        rc = MX_ENOMEM;
        goto done;
    }
    /* The temporary file lives next to the target, so the final rename cannot cross devices. */
    snprintf(tmp, plen + 32, "%s/.mummyx-upload-XXXXXX", dirname(copy));
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = MX_ESYS;
        goto done;
    }
    made = 1;
    for (;;) {
        const char *d;
        size_t k;
        int t = pull(ctx, &d, &k);
        if (t < 0) {
            rc = t;
            goto done;
        }
        if (t == 0)
            break;
        for (size_t off = 0; off < k;) {
            ssize_t w = write(fd, d + off, k - off);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                rc = MX_ESYS;
                goto done;
            }
            off += (size_t)w;
        }
        *written += k;
    }
    /* mkstemp makes the file 0600; give it the usual mode for new files (umask applied). */
    fchmod(fd, 0666 & ~process_umask());
    if (close(fd) != 0) {
        fd = -1;
        rc = MX_ESYS;
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        rc = MX_ESYS;
done:
    if (rc != 0) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        if (made)
            unlink(tmp); /* a partial write leaves nothing behind */
        errno = saved;
    }
    free(copy);
    free(tmp);
    return rc;
}

typedef struct {
    mx_req_t *r;
    char *buf;
} body_pull_t;

static int pull_body(void *ctx, const char **data, size_t *len) {
    body_pull_t *b = ctx;
    ssize_t n = mx_req_read(b->r, b->buf, 256 * 1024);
    if (n <= 0)
        return (int)n;
    *data = b->buf;
    *len = (size_t)n;
    return 1;
}

int mx_req_save_body(mx_req_t *r, const char *path, uint64_t *written) {
    body_pull_t b = {r, malloc(256 * 1024)};
    *written = 0;
    if (!b.buf)
        return MX_ENOMEM;
    int rc = mx_save_to_file(path, pull_body, &b, written);
    free(b.buf);
    return rc;
}
