/*
 * loop.h: the event loop under everything (after redis ae.c and libuv's core.c).
 *
 * One thread runs the loop (mx_loop_run); it owns every descriptor registered with it, every timer
 * and the deferred frees. Other threads reach it only through the message queue
 * (mx_loop_post), which is the one way work crosses into the I/O thread. The loop knows nothing
 * of HTTP: connections, the listener and the pool register callbacks with it.
 *
 * Each pass:  wait for events (epoll) -> run each ready descriptor's callback -> deliver posted
 * messages (the eventfd tells that some arrived) -> run due timers -> run the pass hooks ->
 * deliver messages the loop's own thread posted during the pass -> free what was closed during
 * the pass -> end if mx_loop_stop was called -> the before-sleep hooks -> wait again.
 *
 * Thread rules: every function here is for the loop's thread only, except mx_loop_post (any
 * thread), mx_loop_wake (any thread) and mx_loop_init/mx_loop_free (the owner, while no loop
 * thread runs).
 */
#ifndef MX_LOOP_H
#define MX_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct mx_loop mx_loop_t;

/* ---- descriptors ---- */

typedef struct mx_io mx_io_t;
/* Called with the epoll events that are ready (EPOLLIN, EPOLLOUT, EPOLLHUP, EPOLLERR). */
typedef void (*mx_io_cb)(mx_io_t *io, uint32_t events);

/* A descriptor the loop watches. Embedded in its owner (a connection, the listener); the owner
 * sets fd, on_events and on_free and keeps the struct alive until on_free is called. */
struct mx_io {
    int fd;
    uint32_t events;           /* what epoll watches now (0: registered but idle) */
    mx_io_cb on_events;
    void (*on_free)(mx_io_t *io); /* after mx_loop_io_close, at the end of the pass */
    unsigned char closing;      /* closed this pass: no more callbacks */
    unsigned char registered;
    mx_io_t *next_closing;
};

/* Registers io for events. 0, or MX_ESYS (errno set). Loop thread (or the owner before start). */
int mx_loop_io_add(mx_loop_t *l, mx_io_t *io, uint32_t events);
/* Changes what io waits for; a no-op when unchanged or closing. Loop thread. */
void mx_loop_io_set(mx_loop_t *l, mx_io_t *io, uint32_t events);
/* Stops watching io, keeping its descriptor open (a paused listener). Loop thread. */
void mx_loop_io_remove(mx_loop_t *l, mx_io_t *io);
/* Stops watching io, closes its descriptor (fd becomes -1) and calls io->on_free at the end of
 * this pass, never inside the caller's callback (redis freeClientAsync, libuv uv_close). Idempotent.
 * Loop thread. */
void mx_loop_io_close(mx_loop_t *l, mx_io_t *io);

/* ---- timers ---- */

/* A timer class: every timer of one class has the same duration, so a class is a list kept in
 * deadline order by appending, and both arming and the due check are O(1). */
#define MX_LOOP_TIMER_CLASSES 16

typedef struct mx_timer mx_timer_t;
struct mx_timer {
    int kind;            /* the class it is armed in; 0: not armed */
    int64_t deadline_ms; /* on the loop's clock (mx_loop_now) */
    mx_timer_t *prev, *next;
    void (*fire)(mx_timer_t *t, int kind); /* set by the owner; the timer is unarmed when called */
};

/* Arms t in class kind (1..MX_LOOP_TIMER_CLASSES-1), due in ms from the pass's clock. Re-arming
 * the class it is in keeps the original deadline (a slow head must not extend its own limit by
 * trickling bytes); kind 0 or ms <= 0 only disarms. Loop thread. */
void mx_loop_timer_set(mx_loop_t *l, mx_timer_t *t, int kind, int64_t ms);
/* As mx_loop_timer_set, but always a new deadline. Loop thread. */
void mx_loop_timer_restart(mx_loop_t *l, mx_timer_t *t, int kind, int64_t ms);
/* Disarms t (a no-op when unarmed). Loop thread. */
void mx_loop_timer_stop(mx_loop_t *l, mx_timer_t *t);
/* The clock read once per pass (CLOCK_MONOTONIC, milliseconds). Loop thread. */
int64_t mx_loop_now(const mx_loop_t *l);

/* ---- the message queue: any thread -> the loop's thread ---- */

typedef struct mx_msg mx_msg_t;
/* What a message does when it arrives (deliver, on the loop's thread) or when it never will
 * (drop: the loop has ended, or the message is queued already). Each takes over the one
 * reference the producer handed to mx_loop_post. */
typedef struct mx_msg_ops {
    void (*deliver)(mx_msg_t *m);
    void (*drop)(mx_msg_t *m);
} mx_msg_ops_t;

/* Embedded in what it announces (a response, a stream with news, a body reader with room). A
 * message is in the queue at most once: posting one that is queued already merges with it, as
 * the news it carries will be read when it is delivered. */
struct mx_msg {
    const mx_msg_ops_t *ops;
    mx_msg_t *next;              /* queue link, written under the loop's queue mutex */
    atomic_uchar queued;
};

static inline void mx_msg_init(mx_msg_t *m, const mx_msg_ops_t *ops) {
    m->ops = ops;
    m->next = NULL;
    atomic_init(&m->queued, 0);
}

/*
 * Hands m (and the one reference to its owner the caller holds for it) to the loop's thread,
 * which calls m->ops->deliver. Any thread. From another thread the loop is woken through its
 * eventfd only when the queue goes from empty to non-empty (libuv uv_async_send); from the loop's
 * own thread m joins a private list delivered before the loop next sleeps, with no lock and no
 * wake-up. When m is queued already, or the loop has ended, m->ops->drop is called at once
 * instead (outside every lock). Returns 1 when queued, 0 when dropped.
 */
int mx_loop_post(mx_loop_t *l, mx_msg_t *m);

/* Wakes the loop for a pass (stop requests). Any thread. */
void mx_loop_wake(mx_loop_t *l);

/* ---- hooks and running ---- */

/* A pass hook runs once per pass after the timers; it returns the longest the loop may then sleep
 * in milliseconds (-1: no limit of its own). A sleep hook runs last, right before epoll_wait. */
typedef int (*mx_pass_hook)(void *arg);
typedef void (*mx_sleep_hook)(void *arg);
#define MX_LOOP_MAX_HOOKS 4

/* Adds a hook. 0, or MX_EINVAL when full. Before the loop runs. */
int mx_loop_on_pass(mx_loop_t *l, mx_pass_hook fn, void *arg);
int mx_loop_before_sleep(mx_loop_t *l, mx_sleep_hook fn, void *arg);

/* Ends mx_loop_run after this pass (once this pass's closed descriptors are freed). Loop thread. */
void mx_loop_stop(mx_loop_t *l);

/* Runs passes until mx_loop_stop. Then refuses every later post (they are dropped) and delivers
 * what was queued, so no producer waits on a loop that is gone. The calling thread becomes the
 * loop's thread. */
void mx_loop_run(mx_loop_t *l);

/* Whether the calling thread is running l. Any thread. */
int mx_loop_on_thread(const mx_loop_t *l);

struct mx_loop {
    int epfd;
    int wake_fd; /* eventfd: posted messages and stop requests */
    mx_io_t wake_io;
    int64_t now_ms;
    int stop;
    struct {
        mx_timer_t *head, *tail;
    } timers[MX_LOOP_TIMER_CLASSES];
    mx_io_t *closing; /* closed this pass; freed at its end */

    /* The queue from other threads. Lock order: mu is a leaf. */
    pthread_mutex_t mu;
    mx_msg_t *q_head, *q_tail;
    int done; /* under mu: the loop has ended; posts are dropped */

    /* Loop thread only: what the loop's own thread posted this pass. */
    mx_msg_t *local_head, *local_tail;

    int npass, nsleep;
    struct {
        mx_pass_hook fn;
        void *arg;
    } pass[MX_LOOP_MAX_HOOKS];
    struct {
        mx_sleep_hook fn;
        void *arg;
    } sleep[MX_LOOP_MAX_HOOKS];
};

/* Sets l up (epoll instance, eventfd). 0, or MX_ESYS. Owner thread. */
int mx_loop_init(mx_loop_t *l);
/* Closes the descriptors and drops every message still queued (a loop that never ran). Owner
 * thread, with no loop thread running. */
void mx_loop_free(mx_loop_t *l);

#endif
