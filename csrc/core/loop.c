/*
 * loop.c: the event loop (see loop.h): epoll over registered descriptors, timer classes, the one
 * message queue from other threads, deferred frees and the per-pass hooks.
 *
 * Everything here runs on the loop's thread, except mx_loop_post and mx_loop_wake (any thread)
 * and init/free (the owner, while no loop thread runs). It knows nothing of HTTP, requests or the
 * pool: those register callbacks, so the loop can be linked alone into a C unit test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "loop.h"

static _Thread_local const mx_loop_t *tls_loop; /* the loop this thread runs, if any */

static int64_t clock_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mx_loop_on_thread(const mx_loop_t *l) { return tls_loop == l; }
int64_t mx_loop_now(const mx_loop_t *l) { return l->now_ms; }

/* ---- descriptors ---- */

int mx_loop_io_add(mx_loop_t *l, mx_io_t *io, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) != 0)
        return MX_ESYS;
    io->events = events;
    io->registered = 1;
    return 0;
}

void mx_loop_io_set(mx_loop_t *l, mx_io_t *io, uint32_t events) {
    if (io->closing || !io->registered || events == io->events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev);
    io->events = events;
}

void mx_loop_io_remove(mx_loop_t *l, mx_io_t *io) {
    if (!io->registered)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->registered = 0;
}

void mx_loop_io_close(mx_loop_t *l, mx_io_t *io) {
    if (io->closing)
        return;
    io->closing = 1;
    mx_loop_io_remove(l, io);
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
    io->next_closing = l->closing;
    l->closing = io;
}

/* Frees what was closed during the pass: by now no callback of this pass can still hold it. */
static void free_closing(mx_loop_t *l) {
    while (l->closing) {
        mx_io_t *io = l->closing;
        l->closing = io->next_closing;
        if (io->on_free)
            io->on_free(io);
    }
}

/* ---- timers ---- */

void mx_loop_timer_stop(mx_loop_t *l, mx_timer_t *t) {
    if (t->kind == 0)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        l->timers[t->kind].head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        l->timers[t->kind].tail = t->prev;
    t->prev = t->next = NULL;
    t->kind = 0;
}

void mx_loop_timer_set(mx_loop_t *l, mx_timer_t *t, int kind, int64_t ms) {
    if (kind == t->kind && kind != 0)
        return;
    mx_loop_timer_stop(l, t);
    if (kind <= 0 || kind >= MX_LOOP_TIMER_CLASSES || ms <= 0)
        return;
    t->kind = kind;
    t->deadline_ms = l->now_ms + ms;
    t->prev = l->timers[kind].tail;
    t->next = NULL;
    if (t->prev)
        t->prev->next = t;
    else
        l->timers[kind].head = t;
    l->timers[kind].tail = t;
}

void mx_loop_timer_restart(mx_loop_t *l, mx_timer_t *t, int kind, int64_t ms) {
    mx_loop_timer_stop(l, t);
    mx_loop_timer_set(l, t, kind, ms);
}

/* How long the loop may sleep for its timers: at most a second, so pass hooks (the stop flag,
 * the Date header's clock) run at least that often. */
static int timer_wait_ms(const mx_loop_t *l) {
    int64_t best = 1000;
    for (int k = 1; k < MX_LOOP_TIMER_CLASSES; k++) {
        const mx_timer_t *t = l->timers[k].head;
        if (t && t->deadline_ms - l->now_ms < best)
            best = t->deadline_ms < l->now_ms ? 0 : t->deadline_ms - l->now_ms;
    }
    return (int)best;
}

static void run_timers(mx_loop_t *l) {
    for (int k = 1; k < MX_LOOP_TIMER_CLASSES; k++) {
        mx_timer_t *t;
        while ((t = l->timers[k].head) && t->deadline_ms <= l->now_ms) {
            mx_loop_timer_stop(l, t);
            t->fire(t, k);
        }
    }
}

/* ---- the message queue ---- */

void mx_loop_wake(mx_loop_t *l) {
    uint64_t one = 1;
    ssize_t w = write(l->wake_fd, &one, sizeof(one)); /* EAGAIN: a wake-up is pending anyway */
    MX_UNUSED(w);
}

static void append(mx_msg_t **head, mx_msg_t **tail, mx_msg_t *m) {
    m->next = NULL;
    if (*tail)
        (*tail)->next = m;
    else
        *head = m;
    *tail = m;
}

int mx_loop_post(mx_loop_t *l, mx_msg_t *m) {
    if (tls_loop == l) {
        /* The loop's own thread: no lock for the list, but the flag is shared with producers on
         * other threads, which may have queued m on the locked list already. */
        unsigned char expect = 0;
        if (!l->done && atomic_compare_exchange_strong(&m->queued, &expect, 1)) {
            append(&l->local_head, &l->local_tail, m);
            return 1;
        }
        m->ops->drop(m);
        return 0;
    }
    pthread_mutex_lock(&l->mu);
    int queue = !l->done && !atomic_load_explicit(&m->queued, memory_order_acquire);
    int was_empty = l->q_head == NULL;
    if (queue) {
        atomic_store_explicit(&m->queued, 1, memory_order_relaxed);
        append(&l->q_head, &l->q_tail, m);
    }
    pthread_mutex_unlock(&l->mu);
    if (!queue) {
        m->ops->drop(m);
        return 0;
    }
    if (was_empty)
        mx_loop_wake(l);
    return 1;
}

/*
 * Delivers a taken list. Each message's flag is cleared only after its successor has been read
 * (release order): a producer that posts it again from then on (it sees the flag clear, with
 * acquire order) links it into the new list, rewriting m->next, which would otherwise cut the rest
 * of this list off (lost wake-ups, leaked references).
 */
static void deliver_list(mx_msg_t *m) {
    while (m) {
        mx_msg_t *next = m->next;
        atomic_store_explicit(&m->queued, 0, memory_order_release);
        m->ops->deliver(m);
        m = next;
    }
}

static void drain_queue(mx_loop_t *l) {
    uint64_t v;
    ssize_t rd = read(l->wake_fd, &v, sizeof(v));
    MX_UNUSED(rd);
    pthread_mutex_lock(&l->mu);
    mx_msg_t *m = l->q_head;
    l->q_head = l->q_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    deliver_list(m);
}

/* Delivers what the loop's own thread posted, including what those deliveries post, for a bounded
 * number of rounds; returns 1 when some is left (the next wait then does not sleep). */
static int drain_local(mx_loop_t *l) {
    for (int round = 0; round < 16 && l->local_head; round++) {
        mx_msg_t *m = l->local_head;
        l->local_head = l->local_tail = NULL;
        deliver_list(m);
    }
    return l->local_head != NULL;
}

/* ---- running ---- */

int mx_loop_on_pass(mx_loop_t *l, mx_pass_hook fn, void *arg) {
    if (l->npass >= MX_LOOP_MAX_HOOKS)
        return MX_EINVAL;
    l->pass[l->npass].fn = fn;
    l->pass[l->npass++].arg = arg;
    return 0;
}

int mx_loop_before_sleep(mx_loop_t *l, mx_sleep_hook fn, void *arg) {
    if (l->nsleep >= MX_LOOP_MAX_HOOKS)
        return MX_EINVAL;
    l->sleep[l->nsleep].fn = fn;
    l->sleep[l->nsleep++].arg = arg;
    return 0;
}

void mx_loop_stop(mx_loop_t *l) { l->stop = 1; }

static void on_wake(mx_io_t *io, uint32_t events) {
    MX_UNUSED(events);
    drain_queue((mx_loop_t *)((char *)io - offsetof(mx_loop_t, wake_io)));
}

void mx_loop_run(mx_loop_t *l) {
    tls_loop = l;
    struct epoll_event evs[256];
    l->now_ms = clock_ms();
    int wait_ms = 0;
    for (;;) {
        int n = epoll_wait(l->epfd, evs, 256, wait_ms);
        l->now_ms = clock_ms();
        for (int i = 0; i < n; i++) {
            mx_io_t *io = evs[i].data.ptr;
            if (!io->closing) /* closed by an earlier callback of this pass */
                io->on_events(io, evs[i].events);
        }
        run_timers(l);
        wait_ms = timer_wait_ms(l);
        for (int i = 0; i < l->npass; i++) {
            int want = l->pass[i].fn(l->pass[i].arg);
            if (want >= 0 && want < wait_ms)
                wait_ms = want;
        }
        if (drain_local(l))
            wait_ms = 0;
        free_closing(l);
        if (l->stop)
            break;
        for (int i = 0; i < l->nsleep; i++)
            l->sleep[i].fn(l->sleep[i].arg);
    }
    /* Ended: refuse later posts, then deliver what was queued (its owners see their connections
     * gone), so nothing waits for a loop that no longer runs. */
    pthread_mutex_lock(&l->mu);
    l->done = 1;
    mx_msg_t *m = l->q_head;
    l->q_head = l->q_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    deliver_list(m);
    drain_local(l);
    for (int i = 0; i < l->nsleep; i++)
        l->sleep[i].fn(l->sleep[i].arg);
    tls_loop = NULL;
}

int mx_loop_init(mx_loop_t *l) {
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->mu, NULL);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->wake_io.fd = l->wake_fd;
    l->wake_io.on_events = on_wake;
    l->now_ms = clock_ms();
    if (l->epfd < 0 || l->wake_fd < 0 || mx_loop_io_add(l, &l->wake_io, EPOLLIN) != 0) {
        int saved = errno;
        mx_loop_free(l);
        errno = saved;
        return MX_ESYS;
    }
    return 0;
}

void mx_loop_free(mx_loop_t *l) {
    /* A loop that never ran may hold messages; drop them so their references are released. */
    mx_msg_t *m = l->q_head;
    l->q_head = l->q_tail = NULL;
    while (m) {
        mx_msg_t *next = m->next;
        atomic_store(&m->queued, 0);
        m->ops->drop(m);
        m = next;
    }
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    l->epfd = l->wake_fd = -1;
    pthread_mutex_destroy(&l->mu);
}
