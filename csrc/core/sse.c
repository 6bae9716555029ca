/*
 * sse.c: Server-Sent Events on top of a stream (stream.c): encoding an event's fields once
 * (mx_sse_encode), queueing it to a subscriber (mx_sse_send) and ending the stream (mx_sse_close).
 * Any thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- Server-Sent Events ---- */

int mx_sse_send(mx_stream_t *st, mx_bytes_t *b) {
    mx_wnode_t *n = mx__wnode_new(b, 0, b->len);
    if (!n)
        return MX_ENOMEM;
    if (st->chunked)
        mx__wnode_chunk(n);
    pthread_mutex_lock(&st->mu);
    int rc = mx__stream_queue_locked(st, n);
    pthread_mutex_unlock(&st->mu);
    if (rc == MX_ECLOSED)
        return rc;
    if (rc != 0)
        mx__stream_notify(st); /* news, or a slow reader to drop */
    return rc < 0 ? rc : 0;
}

void mx_sse_close(mx_stream_t *st) {
    static const char last_chunk[] = "0\r\n\r\n";
    mx_bytes_t *b = mx_bytes_new(st->chunked ? sizeof(last_chunk) - 1 : 0);
    mx_wnode_t *n = b ? mx__wnode_new(b, 0, b->len) : NULL;
    mx_bytes_decref(b);
    pthread_mutex_lock(&st->mu);
    if (atomic_load(&st->closed) || !n) {
        pthread_mutex_unlock(&st->mu);
        if (n)
            mx__wnode_free(n);
        return;
    }
    if (st->chunked)
        memcpy(b->data, last_chunk, b->len);
    n->is_end = 1;
    atomic_store(&st->closed, 1);
    int rc = mx__stream_queue_locked(st, n);
    pthread_mutex_unlock(&st->mu);
    if (rc >= 0)
        mx__stream_notify(st);
}

static int has_line_break(const char *s, size_t n) {
    return memchr(s, '\r', n) || memchr(s, '\n', n);
}

/* Writes "<field> <line>\n" (field ends in ':') for each line of v (CR, LF and CRLF all end a line). */
static char *put_lines(char *p, const char *field, size_t flen, const char *v, size_t n) {
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < n && v[j] != '\r' && v[j] != '\n')
            j++;
        memcpy(p, field, flen);
        p += flen;
        if (j > i) {
            *p++ = ' ';
            memcpy(p, v + i, j - i);
            p += j - i;
        }
        *p++ = '\n';
        if (j >= n)
            break;
        i = j + 1;
        if (v[j] == '\r' && i < n && v[i] == '\n')
            i++; /* a line break at the very end still yields an empty last line: data
                  * round-trips exactly, "a\n" arrives as "a\n" */
    }
    return p;
}

int mx_sse_encode(const char *data, size_t len, const char *event, size_t event_len,
                  const char *id, size_t id_len, long long retry, int comment, mx_bytes_t **out) {
    *out = NULL;
    if (event && has_line_break(event, event_len))
        return MX_EINVAL;
    if (id && (has_line_break(id, id_len) || memchr(id, 0, id_len)))
        return MX_EINVAL;
    /* worst case: every byte a line break, each line getting "data: " and "\n" */
    size_t cap = 64 + (event ? event_len + 8 : 0) + (id ? id_len + 5 : 0) + 32 + len * 7 + 8;
    mx_bytes_t *b = mx_bytes_new(cap);
    if (!b)
        return MX_ENOMEM;
    char *p = b->data;
    if (comment) {
        p = put_lines(p, ":", 1, data, len);
    } else {
        if (event) {
            memcpy(p, "event: ", 7);
            memcpy(p + 7, event, event_len);
            p += 7 + event_len;
            *p++ = '\n';
        }
        if (id) {
            memcpy(p, "id: ", 4);
            memcpy(p + 4, id, id_len);
            p += 4 + id_len;
            *p++ = '\n';
        }
        if (retry >= 0)
            p += sprintf(p, "retry: %lld\n", retry);
        p = put_lines(p, "data:", 5, data, len);
    }
    *p++ = '\n';
    b->len = (size_t)(p - b->data);
    *out = b;
    return 0;
}
