/*
 * req_body.c: a request's body as its handler reads it (mx_req_read, mx_req_peek/consume,
 * mx_req_save_body): from the buffer of a buffered route, or through the body channel (body.c)
 * of a streamed one; and the atomic file writer behind save_body and Part.save. Runs on the
 * handler's thread (one reader per request).
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

int mx_req_streamed(const mx_req_t *r) { return r->io->chan != NULL; }

ssize_t mx_req_read(mx_req_t *r, char *buf, size_t n) {
    mx_body_chan_t *ch = r->io->chan;
    if (!ch) { /* a buffered body: read it from where the last read stopped */
        size_t pos = r->io->read_pos;
        size_t take = r->body_len - pos < n ? r->body_len - pos : n;
        if (take)
            memcpy(buf, r->body + pos, take);
        r->io->read_pos = pos + take;
        return (ssize_t)take;
    }
    mx_body_begin(ch, 0);
    int to_fd;
    return mx_body_read(ch, buf, n, -1, &to_fd);
}

ssize_t mx_req_peek(mx_req_t *r, const char **data) {
    mx_body_chan_t *ch = r->io->chan;
    if (!ch) {
        *data = r->body + r->io->read_pos;
        return (ssize_t)(r->body_len - r->io->read_pos);
    }
    mx_body_begin(ch, 0);
    return mx_body_peek(ch, data);
}

void mx_req_consume(mx_req_t *r, size_t n) {
    mx_body_chan_t *ch = r->io->chan;
    if (!ch) {
        size_t left = r->body_len - r->io->read_pos;
        r->io->read_pos += n < left ? n : left;
        return;
    }
    mx_body_consume(ch, n);
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
    mx_body_chan_t *ch = r->io->chan;
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
        mx_body_begin(ch, 1); /* a Content-Length body goes socket -> pipe -> file */
    for (;;) {
        int to_fd = 0;
        ssize_t n = ch ? mx_body_read(ch, buf, SAVE_BUF, t.fd, &to_fd) : mx_req_read(r, buf, SAVE_BUF);
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
