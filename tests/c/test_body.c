/*
 * test_body.c: unit tests for csrc/core/body.c, the streamed-body channel, linked alone (no
 * request, no connection, no loop): a writer thread stands in for the I/O thread. Bytes arrive
 * in order and intact through push, room/commit and peek/consume in any sizes; the writer stops
 * at the high mark and is told to resume (notify) only once the reader is below the low mark, so
 * the ring never grows past its bound; the first read asks for 100 Continue; an error end reaches
 * a blocked reader; a spliced body goes socket -> pipe -> file.
 *   make build/c/test_body && ./build/c/test_body
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "body.h"
#include "common.h"
#include "harness.h"

/* The writer's side of notify: a flag and a condition, as the loop's message would be. */
typedef struct writer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int news;
    atomic_int notifies;
} writer_t;

static void on_notify(void *arg) {
    writer_t *w = arg;
    atomic_fetch_add(&w->notifies, 1);
    pthread_mutex_lock(&w->mu);
    w->news = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void wait_news(writer_t *w) {
    pthread_mutex_lock(&w->mu);
    while (!w->news)
        pthread_cond_wait(&w->cv, &w->mu);
    w->news = 0;
    pthread_mutex_unlock(&w->mu);
}

static unsigned char pattern(uint64_t i) { return (unsigned char)(i * 2654435761u >> 13); }

#define TOTAL (24u << 20) /* 24 MiB: many times the high mark */

typedef struct feed {
    mx_body_chan_t *ch;
    writer_t *w;
    int use_room; /* read "from the socket" into mx_body_room instead of pushing */
    size_t max_cap, max_used;
    atomic_int pauses;
    int push_errors;
} feed_t;

static void *feed_main(void *arg) {
    feed_t *f = arg;
    mx_body_chan_t *ch = f->ch;
    unsigned seed = 7;
    uint64_t sent = 0;
    char chunk[70000];
    while (sent < TOTAL) {
        size_t n = 1 + (size_t)rand_r(&seed) % sizeof(chunk);
        if (n > TOTAL - sent)
            n = TOTAL - sent;
        int full;
        if (f->use_room) {
            char *at;
            size_t len;
            full = mx_body_room(ch, n, &at, &len);
            if (!full) {
                if (len > n)
                    len = n;
                for (size_t i = 0; i < len; i++)
                    at[i] = (char)pattern(sent + i);
                full = mx_body_commit(ch, len);
                sent += len;
            }
        } else {
            size_t space = mx_body_space(ch);
            if (n > space)
                n = space;
            for (size_t i = 0; i < n; i++)
                chunk[i] = (char)pattern(sent + i);
            full = n ? mx_body_push(ch, chunk, n) : 1;
            if (full < 0)
                f->push_errors++;
            sent += n;
        }
        pthread_mutex_lock(&ch->mu);
        if (ch->cap > f->max_cap)
            f->max_cap = ch->cap;
        if (ch->used > f->max_used)
            f->max_used = ch->used;
        pthread_mutex_unlock(&ch->mu);
        if (full == 1) { /* stop reading until the reader makes room, as the I/O thread does */
            atomic_fetch_add(&f->pauses, 1);
            for (;;) {
                pthread_mutex_lock(&ch->mu);
                int resume = ch->want_resume || !ch->io_paused;
                ch->want_resume = 0;
                pthread_mutex_unlock(&ch->mu);
                if (resume)
                    break;
                wait_news(f->w);
            }
        }
    }
    mx_body_end(ch, 0);
    return NULL;
}

static void run_stream(int use_room, int use_peek) {
    writer_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    mx_body_chan_t *ch = mx_body_chan_new(0, on_notify, &w);
    CHECK(ch != NULL, "chan");
    feed_t f = {.ch = ch, .w = &w, .use_room = use_room};
    mx_body_begin(ch, 0);
    CHECK(ch->want_continue == 1 && w.notifies == 1, "the first read asks for 100 Continue");
    pthread_t t;
    pthread_create(&t, NULL, feed_main, &f);
    /* Read nothing until the writer has hit the high mark once, so the pause is always seen. */
    for (int i = 0; i < 5000 && atomic_load(&f.pauses) == 0; i++)
        usleep(1000);
    uint64_t got = 0;
    int bad = 0;
    unsigned seed = 11;
    char buf[50000];
    for (;;) {
        ssize_t n;
        const char *d = buf;
        if (use_peek) {
            n = mx_body_peek(ch, &d);
            if (n > 0) {
                size_t take = 1 + (size_t)rand_r(&seed) % (size_t)n;
                for (size_t i = 0; i < take; i++)
                    bad += (unsigned char)d[i] != pattern(got + i);
                got += take;
                mx_body_consume(ch, take);
                continue;
            }
        } else {
            int to_fd;
            n = mx_body_read(ch, buf, 1 + (size_t)rand_r(&seed) % sizeof(buf), -1, &to_fd);
            for (ssize_t i = 0; i < n; i++)
                bad += (unsigned char)buf[i] != pattern(got + (uint64_t)i);
            if (n > 0)
                got += (uint64_t)n;
        }
        if (n <= 0) {
            CHECK(n == 0, "ends with 0 (%zd)", n);
            break;
        }
    }
    pthread_join(t, NULL);
    CHECK(got == TOTAL, "all bytes arrived (%llu)", (unsigned long long)got);
    CHECK(bad == 0, "in order and intact (%d wrong)", bad);
    CHECK(f.push_errors == 0, "every push succeeded");
    CHECK(f.pauses > 0, "the writer was held back");
    CHECK(f.max_cap <= MX_BODY_RING_MAX, "the ring stayed within its bound (%zu)", f.max_cap);
    CHECK(f.max_used <= MX_BODY_HIGH + sizeof(buf) + 70000, "buffered at most about the high mark");
    CHECK(mx_body_complete(ch), "complete");
    mx_body_chan_free(ch);
}

static void *end_later(void *arg) {
    usleep(20000);
    mx_body_end(arg, MX_ECLOSED);
    return NULL;
}

static void test_error_wakes_reader(void) {
    writer_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    mx_body_chan_t *ch = mx_body_chan_new(100, on_notify, &w);
    CHECK(mx_body_push(ch, "abc", 3) == 0, "push");
    char b[8];
    int to_fd;
    CHECK(mx_body_read(ch, b, sizeof(b), -1, &to_fd) == 3 && memcmp(b, "abc", 3) == 0, "read");
    pthread_t t;
    pthread_create(&t, NULL, end_later, ch);
    CHECK(mx_body_read(ch, b, sizeof(b), -1, &to_fd) == MX_ECLOSED, "a blocked reader sees the cut");
    pthread_join(t, NULL);
    mx_body_end(ch, 0); /* idempotent: the first end stands */
    CHECK(mx_body_read(ch, b, sizeof(b), -1, &to_fd) == MX_ECLOSED, "and keeps seeing it");
    CHECK(!mx_body_complete(ch), "not complete");
    mx_body_chan_free(ch);
}

/* socket -> pipe (writer) -> file (reader): bytes arrive intact, without passing through buf. */
typedef struct splice_reader {
    mx_body_chan_t *ch;
    int out;
    uint64_t got;
    int all_spliced;
    int rc;
} splice_reader_t;

static void *splice_reader_main(void *arg) {
    splice_reader_t *r = arg;
    char buf[4096];
    r->all_spliced = 1;
    for (;;) {
        int to_fd = 0;
        ssize_t n = mx_body_read(r->ch, buf, sizeof(buf), r->out, &to_fd);
        if (n <= 0) {
            r->rc = (int)n;
            return NULL;
        }
        r->all_spliced &= to_fd;
        r->got += (uint64_t)n;
    }
}

static void *client_main(void *arg) {
    int fd = *(int *)arg;
    char b[65536];
    for (size_t sent = 0; sent < (3u << 20);) {
        size_t n = sizeof(b) < (3u << 20) - sent ? sizeof(b) : (3u << 20) - sent;
        for (size_t i = 0; i < n; i++)
            b[i] = (char)pattern(sent + i);
        ssize_t k = write(fd, b, n);
        if (k <= 0)
            break;
        sent += (size_t)k;
    }
    close(fd);
    return NULL;
}

static void test_splice(void) {
    writer_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    const uint64_t total = 3u << 20;
    mx_body_chan_t *ch = mx_body_chan_new(total, on_notify, &w);
    ch->can_splice = 1;
    mx_body_begin(ch, 1);
    CHECK(ch->want_splice == 1, "the reader asked for splicing");
    CHECK(mx_body_start_splice(ch) == 1, "splicing on");
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    char path[] = "/tmp/mx_test_body_XXXXXX";
    splice_reader_t rd = {.ch = ch, .out = mkstemp(path)};
    pthread_t client, reader;
    pthread_create(&client, NULL, client_main, &sv[1]);
    pthread_create(&reader, NULL, splice_reader_main, &rd);
    uint64_t moved = 0;
    int pauses = 0;
    while (moved < total) { /* the I/O thread's part, polling instead of epoll */
        int full;
        int n = mx_body_splice_in(ch, sv[0], (size_t)(total - moved), &full);
        if (n > 0) {
            moved += (uint64_t)n;
        } else if (n == MX_EAGAIN && full) {
            pauses++;
            wait_news(&w); /* the reader took from the pipe and asked us to resume */
        } else if (n == MX_EAGAIN) {
            usleep(200);
        } else {
            CHECK(0, "splice_in failed (%d)", n);
            break;
        }
    }
    mx_body_end(ch, 0);
    pthread_join(client, NULL);
    pthread_join(reader, NULL);
    CHECK(rd.rc == 0 && rd.got == total, "the reader got the whole body (%llu, rc %d)",
          (unsigned long long)rd.got, rd.rc);
    CHECK(rd.all_spliced, "every byte went pipe -> file");
    CHECK(ch->buf == NULL, "the ring was never used");
    int bad = 0;
    char b[65536];
    lseek(rd.out, 0, SEEK_SET);
    for (uint64_t off = 0;;) {
        ssize_t k = read(rd.out, b, sizeof(b));
        if (k <= 0)
            break;
        for (ssize_t i = 0; i < k; i++)
            bad += (unsigned char)b[i] != pattern(off + (uint64_t)i);
        off += (uint64_t)k;
    }
    CHECK(bad == 0, "the file holds the body (%d wrong)", bad);
    close(sv[0]);
    close(rd.out);
    unlink(path);
    mx_body_chan_free(ch);
}

int main(void) {
    run_stream(0, 0);
    run_stream(1, 0);
    run_stream(1, 1);
    test_error_wakes_reader();
    test_splice();
    return harness_summary("body");
}
