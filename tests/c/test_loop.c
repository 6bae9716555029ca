/*
 * test_loop.c: unit tests for csrc/core/loop.c, linked alone (no server, no connections):
 * descriptor callbacks and deferred frees, timer classes (order, re-arming keeps the deadline,
 * restart moves it), the message queue from other threads (every post delivered or dropped, a
 * queued message merges, re-posting during delivery loses nothing), posts from the loop's own
 * thread (delivered in the same pass, no eventfd wake-up), pass and sleep hooks, and posts after
 * the loop ended (dropped).
 *   make build/c/test_loop && ./build/c/test_loop
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "harness.h"
#include "loop.h"

/* ---- a message that counts what happened to it ---- */

typedef struct counted {
    mx_msg_t msg;
    atomic_int delivered, dropped;
    atomic_int news;      /* bumped by producers before each post */
    atomic_int seen_news; /* what the last delivery saw */
} counted_t;

static void counted_deliver(mx_msg_t *m) {
    counted_t *c = (counted_t *)m;
    atomic_fetch_add(&c->delivered, 1);
    atomic_store(&c->seen_news, atomic_load(&c->news));
}
static void counted_drop(mx_msg_t *m) { atomic_fetch_add(&((counted_t *)m)->dropped, 1); }
static const mx_msg_ops_t counted_ops = {counted_deliver, counted_drop};

static void counted_init(counted_t *c) {
    memset(c, 0, sizeof(*c));
    mx_msg_init(&c->msg, &counted_ops);
}

/* ---- a pass hook that ends the loop when told, or after a number of passes ---- */

typedef struct stopper {
    mx_loop_t *loop;
    atomic_int stop_now;
    int passes, max_passes;
} stopper_t;

static int stopper_pass(void *arg) {
    stopper_t *s = arg;
    s->passes++;
    if (atomic_load(&s->stop_now) || (s->max_passes && s->passes >= s->max_passes))
        mx_loop_stop(s->loop);
    return -1;
}

static void *run_loop(void *arg) {
    mx_loop_run(arg);
    return NULL;
}

/* ---- timers ---- */

static int fired_order[8], nfired;
static int64_t fired_at[8];
static mx_loop_t *timer_loop;

static void on_fire(mx_timer_t *t, int kind) {
    CHECK(t->kind == 0, "a firing timer is unarmed (kind %d)", t->kind);
    fired_order[nfired] = kind * 100 + (int)(t->deadline_ms % 100);
    fired_at[nfired++] = mx_loop_now(timer_loop);
    if (nfired == 3)
        mx_loop_stop(timer_loop);
}

static void test_timers(void) {
    mx_loop_t l;
    CHECK(mx_loop_init(&l) == 0, "init");
    timer_loop = &l;
    mx_timer_t a = {.fire = on_fire}, b = {.fire = on_fire}, c = {.fire = on_fire},
               d = {.fire = on_fire};
    int64_t start = mx_loop_now(&l);
    mx_loop_timer_set(&l, &a, 1, 60);
    mx_loop_timer_set(&l, &b, 2, 20);
    mx_loop_timer_set(&l, &c, 3, 40);
    /* re-arming the same class keeps the first deadline */
    int64_t da = a.deadline_ms;
    mx_loop_timer_set(&l, &a, 1, 5000);
    CHECK(a.deadline_ms == da, "re-arming keeps the deadline");
    /* restart moves it */
    mx_loop_timer_restart(&l, &c, 3, 30);
    CHECK(c.deadline_ms == start + 30, "restart moves the deadline");
    /* kind 0 and ms <= 0 disarm; an unarmed timer never fires */
    mx_loop_timer_set(&l, &d, 4, 10);
    mx_loop_timer_set(&l, &d, 0, 10);
    CHECK(d.kind == 0, "kind 0 disarms");
    mx_loop_timer_set(&l, &d, 5, 0);
    CHECK(d.kind == 0, "ms 0 does not arm");
    mx_loop_run(&l);
    CHECK(nfired == 3, "three timers fired (%d)", nfired);
    CHECK(fired_order[0] / 100 == 2 && fired_order[1] / 100 == 3 && fired_order[2] / 100 == 1,
          "fired in deadline order: %d %d %d", fired_order[0], fired_order[1], fired_order[2]);
    CHECK(fired_at[0] - start >= 20 && fired_at[2] - start >= 60, "none fired early");
    CHECK(fired_at[2] - start < 900, "the last fired in time (%lld ms)",
          (long long)(fired_at[2] - start));
    mx_loop_free(&l);
}

/* ---- descriptors and deferred frees ---- */

typedef struct piped {
    mx_io_t io;
    mx_loop_t *loop;
    int wfd;
    int reads, freed_in_callback, freed;
    int in_callback;
} piped_t;

static void piped_free(mx_io_t *io) {
    piped_t *p = (piped_t *)io;
    p->freed++;
    p->freed_in_callback += p->in_callback;
    mx_loop_stop(p->loop);
}

static void piped_events(mx_io_t *io, uint32_t e) {
    piped_t *p = (piped_t *)io;
    p->in_callback = 1;
    CHECK(e & EPOLLIN, "readable");
    char b[16];
    ssize_t n = read(io->fd, b, sizeof(b));
    p->reads++;
    if (n > 0 && b[0] == 'x') {
        mx_loop_io_close(p->loop, io);
        mx_loop_io_close(p->loop, io); /* idempotent */
        CHECK(io->fd == -1, "closed: fd is -1");
    }
    p->in_callback = 0;
}

static void *write_later(void *arg) {
    piped_t *p = arg;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ssize_t w = write(p->wfd, "a", 1);
    nanosleep(&ts, NULL);
    w += write(p->wfd, "x", 1);
    MX_UNUSED(w);
    return NULL;
}

static void test_io(void) {
    mx_loop_t l;
    CHECK(mx_loop_init(&l) == 0, "init");
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    piped_t p = {.loop = &l, .wfd = fds[1]};
    p.io.fd = fds[0];
    p.io.on_events = piped_events;
    p.io.on_free = piped_free;
    CHECK(mx_loop_io_add(&l, &p.io, EPOLLIN) == 0, "io_add");
    mx_loop_io_set(&l, &p.io, EPOLLIN); /* unchanged: a no-op */
    pthread_t t;
    pthread_create(&t, NULL, write_later, &p);
    mx_loop_run(&l);
    pthread_join(t, NULL);
    CHECK(p.reads == 2, "two reads (%d)", p.reads);
    CHECK(p.freed == 1 && p.freed_in_callback == 0, "freed once, after the callback");
    close(fds[1]);
    mx_loop_free(&l);
}

/* ---- the queue from other threads ---- */

#define PRODUCERS 4
#define MSGS 32
#define ROUNDS 10000

static counted_t msgs[MSGS];
static atomic_int producers_done;

static void *producer(void *arg) {
    mx_loop_t *l = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    for (int i = 0; i < ROUNDS; i++) {
        counted_t *c = &msgs[rand_r(&seed) % MSGS];
        atomic_fetch_add(&c->news, 1);
        mx_loop_post(l, &c->msg);
    }
    atomic_fetch_add(&producers_done, 1);
    return NULL;
}

/* Ends the loop once every producer is done and the queue has been seen empty after that. */
static int producers_pass(void *arg) {
    stopper_t *s = arg;
    if (atomic_load(&producers_done) == PRODUCERS) {
        if (s->passes++ > 2)
            mx_loop_stop(s->loop);
    }
    return 1;
}

static void test_queue_from_threads(void) {
    mx_loop_t l;
    CHECK(mx_loop_init(&l) == 0, "init");
    for (int i = 0; i < MSGS; i++)
        counted_init(&msgs[i]);
    stopper_t s = {.loop = &l};
    mx_loop_on_pass(&l, producers_pass, &s);
    pthread_t lt, pt[PRODUCERS];
    pthread_create(&lt, NULL, run_loop, &l);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_create(&pt[i], NULL, producer, &l);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(pt[i], NULL);
    pthread_join(lt, NULL);
    int posts = 0, lost = 0;
    for (int i = 0; i < MSGS; i++) {
        posts += atomic_load(&msgs[i].delivered) + atomic_load(&msgs[i].dropped);
        /* the last news posted must have been seen by a delivery (no lost wake-up) */
        lost += atomic_load(&msgs[i].news) != atomic_load(&msgs[i].seen_news);
        CHECK(atomic_load(&msgs[i].msg.queued) == 0, "nothing left queued");
    }
    CHECK(posts == PRODUCERS * ROUNDS, "every post delivered or merged (%d of %d)", posts,
          PRODUCERS * ROUNDS);
    CHECK(lost == 0, "no message's last news was lost (%d)", lost);
    mx_loop_free(&l);
}

/* A message posted twice before the loop runs is queued once; the second post is dropped. */
static void test_merge(void) {
    mx_loop_t l;
    CHECK(mx_loop_init(&l) == 0, "init");
    counted_t c;
    counted_init(&c);
    CHECK(mx_loop_post(&l, &c.msg) == 1, "first post queued");
    CHECK(mx_loop_post(&l, &c.msg) == 0, "second post merged");
    CHECK(c.dropped == 1, "the merged post dropped its reference");
    stopper_t s = {.loop = &l, .max_passes = 1};
    mx_loop_on_pass(&l, stopper_pass, &s);
    mx_loop_wake(&l);
    mx_loop_run(&l);
    CHECK(c.delivered == 1, "delivered once (%d)", c.delivered);
    /* the loop has ended: a post is dropped at once */
    CHECK(mx_loop_post(&l, &c.msg) == 0 && c.dropped == 2, "a post after the end is dropped");
    mx_loop_free(&l);
}

/* mx_loop_free drops what a loop that never ran still holds. */
static void test_free_drops(void) {
    mx_loop_t l;
    CHECK(mx_loop_init(&l) == 0, "init");
    counted_t c;
    counted_init(&c);
    mx_loop_post(&l, &c.msg);
    mx_loop_free(&l);
    CHECK(c.dropped == 1 && c.delivered == 0, "dropped by free");
}

/* ---- posts from the loop's own thread ---- */

typedef struct selfpost {
    mx_msg_t msg;
    mx_loop_t *loop;
    int delivered;
    int wake_readable; /* the eventfd was readable right after the post */
    int64_t posted_pass, delivered_pass;
} selfpost_t;

static int64_t pass_no;

static void selfpost_deliver(mx_msg_t *m) {
    selfpost_t *s = (selfpost_t *)m;
    s->delivered++;
    s->delivered_pass = pass_no;
    mx_loop_stop(s->loop);
}
static void selfpost_drop(mx_msg_t *m) { MX_UNUSED(m); }
static const mx_msg_ops_t selfpost_ops = {selfpost_deliver, selfpost_drop};

static int selfpost_pass(void *arg) {
    selfpost_t *s = arg;
    pass_no++;
    if (pass_no == 2) {
        CHECK(mx_loop_on_thread(s->loop), "the pass hook runs on the loop's thread");
        CHECK(mx_loop_post(s->loop, &s->msg) == 1, "a post from the loop's thread is queued");
        struct pollfd pfd = {.fd = s->loop->wake_fd, .events = POLLIN};
        s->wake_readable = poll(&pfd, 1, 0);
        s->posted_pass = pass_no;
    }
    return 0;
}

static int sleeps;
static void count_sleep(void *arg) {
    MX_UNUSED(arg);
    sleeps++;
}

static void test_self_post(void) {
    mx_loop_t l;
    CHECK(mx_loop_init(&l) == 0, "init");
    selfpost_t s = {.loop = &l};
    mx_msg_init(&s.msg, &selfpost_ops);
    mx_loop_on_pass(&l, selfpost_pass, &s);
    mx_loop_before_sleep(&l, count_sleep, NULL);
    CHECK(!mx_loop_on_thread(&l), "not on the loop's thread before it runs");
    mx_loop_run(&l);
    CHECK(s.delivered == 1, "delivered (%d)", s.delivered);
    CHECK(s.delivered_pass == s.posted_pass, "in the same pass it was posted in");
    CHECK(s.wake_readable == 0, "without writing the eventfd");
    CHECK(sleeps >= 2, "sleep hooks ran before each wait and at the end (%d)", sleeps);
    mx_loop_free(&l);
}

/* A pass hook's wish caps the wait: with nothing else to do, a hook asking for 5 ms runs again
 * within a few ms, not after the loop's 1 s default. */
typedef struct ticker {
    mx_loop_t *loop;
    int n;
} ticker_t;

static int ticker_pass(void *arg) {
    ticker_t *t = arg;
    if (++t->n == 20)
        mx_loop_stop(t->loop);
    return 5;
}

static void test_pass_wait(void) {
    mx_loop_t l;
    CHECK(mx_loop_init(&l) == 0, "init");
    ticker_t t = {.loop = &l};
    mx_loop_on_pass(&l, ticker_pass, &t);
    int64_t start = mx_loop_now(&l);
    mx_loop_run(&l);
    int64_t took = mx_loop_now(&l) - start;
    CHECK(t.n == 20, "20 passes");
    CHECK(took < 900, "20 passes of <= 5 ms wait took %lld ms", (long long)took);
    mx_loop_free(&l);
}

int main(void) {
    test_timers();
    test_io();
    test_queue_from_threads();
    test_merge();
    test_free_drops();
    test_self_post();
    test_pass_wait();
    return harness_summary("loop");
}
