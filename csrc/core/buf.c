/*
 * buf.c: the bytes streams send: shared counted bytes (mx_bytes_t, one encoded SSE event for many
 * subscribers), the recycled buffers WebSocket frames are built in, and write nodes (mx_wnode_t:
 * a piece of a stream's output as an iovec). Any thread; the free lists are under buf_mu (a leaf).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "internal.h"

/* ---- shared bytes and write nodes ---- */

mx_bytes_t *mx_bytes_new(size_t len) {
    mx_bytes_t *b = malloc(sizeof(*b) + len);
    if (!b)
        return NULL;
    atomic_init(&b->refcnt, 1);
    b->len = len;
    b->ptr = b->data;
    b->release = NULL;
    return b;
}

mx_bytes_t *mx_bytes_borrow(const void *ptr, size_t len, void (*release)(void *ctx, void *owner),
                            void *ctx, void *owner) {
    mx_bytes_t *b = malloc(sizeof(*b));
    if (!b)
        return NULL;
    atomic_init(&b->refcnt, 1);
    b->len = len;
    b->ptr = ptr;
    b->release = release;
    b->ctx = ctx;
    b->owner = owner;
    return b;
}

void mx_bytes_decref(mx_bytes_t *b) {
    if (b && atomic_fetch_sub_explicit(&b->refcnt, 1, memory_order_acq_rel) == 1) {
        if (b->release)
            b->release(b->ctx, b->owner);
        free(b);
    }
}

/* ---- recycled write buffers ----
 *
 * A worker allocates a frame, the I/O thread frees it once written. glibc gives a freed run at
 * the top of a worker's heap back to the kernel (trim above 128 KiB), and the next frame faults
 * its pages in again: at 16 KiB WebSocket echoes that was 12 % of the server's time. Buffers of
 * 2 KiB to 256 KiB are therefore kept on free lists by 4 KiB size class, up to MX_BUF_KEEP bytes
 * for all classes together, and handed out again. Sanitizer builds keep nothing, so ASan still
 * sees every use after free.
 */
#define MX_BUF_STEP 4096u
#define MX_BUF_MIN 2048u
#define MX_BUF_CLASSES 64u /* up to 256 KiB */
#if defined(__SANITIZE_ADDRESS__)
#define MX_BUF_KEEP 0u
#else
#define MX_BUF_KEEP (2u << 20)
#endif

typedef struct mx_buf_hdr {
    size_t cls;               /* size in MX_BUF_STEP units; 0: plain malloc, never kept */
    struct mx_buf_hdr *next;  /* on a free list */
} mx_buf_hdr_t;               /* 16 bytes: the data after it keeps malloc's alignment */

/* Lock order: buf_mu is a leaf (taken under a stream's send_mu or mu, never the other way). */
static pthread_mutex_t buf_mu = PTHREAD_MUTEX_INITIALIZER;
static mx_buf_hdr_t *buf_free[MX_BUF_CLASSES];
static size_t buf_kept;

static void *buf_alloc(size_t len) {
    if (len > SIZE_MAX - sizeof(mx_buf_hdr_t) - MX_BUF_STEP)
        return NULL;
    size_t total = len + sizeof(mx_buf_hdr_t);
    size_t cls = (total + MX_BUF_STEP - 1) / MX_BUF_STEP;
    mx_buf_hdr_t *h = NULL;
    if (len < MX_BUF_MIN || cls > MX_BUF_CLASSES) {
        cls = 0;
    } else {
        total = cls * MX_BUF_STEP;
        pthread_mutex_lock(&buf_mu);
        h = buf_free[cls - 1];
        if (h) {
            buf_free[cls - 1] = h->next;
            buf_kept -= total;
        }
        pthread_mutex_unlock(&buf_mu);
    }
    if (!h && !(h = malloc(total)))
        return NULL;
    h->cls = cls;
    return h + 1;
}

static void buf_free_(void *p) {
    if (!p)
        return;
    mx_buf_hdr_t *h = (mx_buf_hdr_t *)p - 1;
    if (h->cls) {
        size_t size = h->cls * MX_BUF_STEP;
        pthread_mutex_lock(&buf_mu);
        if (buf_kept + size <= MX_BUF_KEEP) {
            h->next = buf_free[h->cls - 1];
            buf_free[h->cls - 1] = h;
            buf_kept += size;
            h = NULL;
        }
        pthread_mutex_unlock(&buf_mu);
    }
    free(h);
}

mx_wnode_t *mx__wnode_copy(const void *head, size_t head_len, const void *data, size_t len) {
    if (head_len > sizeof(((mx_wnode_t *)0)->head))
        return NULL;
    mx_wnode_t *n = calloc(1, sizeof(*n));
    char *buf = n && len ? buf_alloc(len) : NULL;
    if (!n || (len && !buf)) {
        free(n);
        return NULL;
    }
    if (head_len)
        memcpy(n->head, head, head_len);
    n->head_len = (unsigned char)head_len;
    if (len)
        memcpy(buf, data, len);
    n->raw = buf;
    n->raw_recycled = 1;
    n->end = len;
    return n;
}

mx_wnode_t *mx__wnode_new(mx_bytes_t *b, size_t start, size_t end) {
    mx_wnode_t *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    if (b)
        atomic_fetch_add_explicit(&b->refcnt, 1, memory_order_relaxed);
    n->bytes = b;
    n->start = start;
    n->end = end;
    return n;
}

mx_wnode_t *mx__wnode_raw(void *data, size_t len) {
    mx_wnode_t *n = calloc(1, sizeof(*n));
    if (!n) {
        free(data);
        return NULL;
    }
    n->raw = data;
    n->end = len;
    return n;
}

void mx__wnode_free(mx_wnode_t *n) {
    mx_bytes_decref(n->bytes);
    if (n->raw_recycled)
        buf_free_(n->raw);
    else
        free(n->raw);
    free(n);
}

size_t mx__wnode_size(const mx_wnode_t *n) {
    return (size_t)n->head_len + (n->end - n->start) + n->tail_len;
}

/* Frames n as one HTTP/1.1 chunk (RFC 9112 7.1). */
void mx__wnode_chunk(mx_wnode_t *n) {
    size_t len = n->end - n->start;
    if (len == 0)
        return; /* a zero-size chunk would end the body */
    n->head_len = (unsigned char)snprintf(n->head, sizeof(n->head), "%zx\r\n", len);
    n->tail[0] = '\r';
    n->tail[1] = '\n';
    n->tail_len = 2;
}

/* The iovecs for the unwritten part of n; returns how many (at most 3). */
int mx__wnode_iov(const mx_wnode_t *n, struct iovec *iov) {
    int k = 0;
    size_t pos = n->pos, body = n->end - n->start;
    if (pos < n->head_len) {
        iov[k].iov_base = (char *)n->head + pos;
        iov[k++].iov_len = n->head_len - pos;
        pos = 0;
    } else {
        pos -= n->head_len;
    }
    if (pos < body) {
        iov[k].iov_base = (char *)(n->bytes ? n->bytes->ptr : n->raw) + n->start + pos;
        iov[k++].iov_len = body - pos;
        pos = 0;
    } else {
        pos -= body;
    }
    if (pos < n->tail_len) {
        iov[k].iov_base = (char *)n->tail + pos;
        iov[k++].iov_len = n->tail_len - pos;
    }
    return k;
}

void mx__free_list(mx_wnode_t *n) {
    while (n) {
        mx_wnode_t *next = n->next;
        mx__wnode_free(n);
        n = next;
    }
}
