/*
 * pool.c: the worker threads and their queue (after libuv's threadpool.c).
 *
 * The I/O thread pushes complete requests; workers pop them and run them through the binding's
 * hooks. A worker that holds the GIL takes more work with mx_pool_trypop() instead of going back
 * to sleep, so under load one GIL acquisition serves many requests. Workers never touch sockets:
 * a response travels back through mx__post_response().
 *
 * Waking workers is the expensive part (a futex, a context switch, and then a fight for the GIL
 * that only one thread can win), so the pool wakes one only when the work needs it:
 *   - no worker is running or about to run ("fresh": its current request started less than
 *     MX_FRESH_NS ago, so it will soon come back for more), or
 *   - the queue holds more work than one worker clears quickly (queue length times the average
 *     time a request holds a worker exceeds MX_BACKLOG_NS): handlers that block (sleep, I/O)
 *     have a large average, so each of their requests gets its own worker.
 * Because a fresh worker may still block in its handler, the I/O thread also checks on each pass
 * whether the oldest queued request has waited longer than MX_STALL_NS and then wakes one more
 * (mx__pool_check_stall). A plaintext flood thus runs on one worker; sleeping handlers fan out.
 *
 * Lock order: pool_mu is a leaf (nothing else is taken while holding it, and never Python).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define MX_FRESH_NS 1000000LL   /* 1 ms */
#define MX_BACKLOG_NS 500000LL  /* 0.5 ms of queued work per worker */
#define MX_STALL_NS 1000000LL   /* 1 ms */

typedef struct mx_worker {
    pthread_t thread;
    mx_server_t *server;
    _Atomic int64_t task_start_ns; /* when its current request was taken; 0 when asleep */
} mx_worker_t;

static _Thread_local mx_worker_t *tls_worker;

/*
 * SCHED_BATCH: a woken thread of ours does not preempt the one running (sched(7)). When the I/O
 * thread and a worker share a core, the I/O thread then finishes its pass (queuing every request
 * it read) before the worker runs them all, and the worker finishes its batch (queuing every
 * response) before the I/O thread writes them: one switch per batch instead of two per request.
 * Fairness against other processes is unchanged; only wake-up preemption is given up.
 */
void mx__thread_batch_policy(void) {
    struct sched_param sp = {.sched_priority = 0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp); /* best effort */
}

int64_t mx__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static mx_task_t *pool_pop_locked(mx_server_t *s, int64_t now) {
    mx_task_t *r = s->task_head;
    if (r) {
        s->task_head = r->next_task;
        if (!s->task_head)
            s->task_tail = NULL;
        r->next_task = NULL;
        s->qlen--;
        r->t_popped_ns = now;
        if (tls_worker)
            atomic_store_explicit(&tls_worker->task_start_ns, now, memory_order_relaxed);
    }
    return r;
}

/* Whether another worker should be woken for the queue as it is now. pool_mu held. */
static int should_wake_locked(mx_server_t *s, int64_t now) {
    if (s->idle_workers <= s->pending_wakes || s->qlen == 0)
        return 0;
    int64_t avg = atomic_load_explicit(&s->handler_ns, memory_order_relaxed);
    if ((int64_t)s->qlen * avg > MX_BACKLOG_NS * (1 + s->pending_wakes))
        return 1;
    if (s->pending_wakes > 0)
        return 0;
    for (int i = 0; i < s->nworkers; i++) {
        int64_t t = atomic_load_explicit(&s->workers[i].task_start_ns, memory_order_relaxed);
        if (t != 0 && now - t < MX_FRESH_NS)
            return 0; /* someone will be back for it soon */
    }
    return 1;
}

/* Counts a wake-up owed (pool_mu held); the caller signals once it has unlocked, so that the
 * woken worker, if it runs at once, does not block on pool_mu straight away (that costs two
 * more switches per wake-up when the threads share a core). */
static void wake_one_locked(mx_server_t *s) {
    s->pending_wakes++;
}

static _Thread_local mx_server_t *tls_io_server; /* set on each server's I/O thread */

void mx__pool_io_thread(mx_server_t *s) { tls_io_server = s; }

/*
 * On one CPU, a worker woken in the middle of the I/O thread's pass does not run in parallel: it
 * preempts the I/O thread (EEVDF lets even SCHED_BATCH wakees do so), handles one task, sleeps,
 * and the I/O thread resumes, two switches per task. There the I/O thread holds its signals
 * until the pass is over (mx__pool_flush_wakes, just before epoll_wait), and the worker then
 * finds everything the pass queued. With more CPUs the worker is woken at once, to run beside it.
 */
static void wake_signal(mx_server_t *s) {
    if (s->one_cpu && tls_io_server == s) {
        s->wakes_owed++;
        return;
    }
    pthread_cond_signal(&s->pool_cv);
}

void mx__pool_flush_wakes(mx_server_t *s) {
    for (; s->wakes_owed > 0; s->wakes_owed--)
        pthread_cond_signal(&s->pool_cv);
}

/* Called by the I/O thread (or, for WebSocket deliveries, any thread). Ownership of one
 * reference to r's owner passes to the pool. */
void mx__pool_push(mx_server_t *s, mx_task_t *r) {
    atomic_fetch_add(&s->running, 1);
    int64_t now = mx__now_ns();
    r->t_queued_ns = now;
    pthread_mutex_lock(&s->pool_mu);
    r->next_task = NULL;
    if (s->task_tail)
        s->task_tail->next_task = r;
    else
        s->task_head = r;
    s->task_tail = r;
    s->qlen++;
    int wake = should_wake_locked(s, now);
    if (wake)
        wake_one_locked(s);
    pthread_mutex_unlock(&s->pool_mu);
    if (wake)
        wake_signal(s);
}

int mx__pool_has_queued(mx_server_t *s) {
    return __atomic_load_n(&s->task_head, __ATOMIC_RELAXED) != NULL;
}

/* I/O thread, once per loop pass: a request that has waited too long while every running worker
 * is busy (perhaps blocked) gets another worker. */
void mx__pool_check_stall(mx_server_t *s) {
    if (!mx__pool_has_queued(s))
        return;
    int64_t now = mx__now_ns();
    pthread_mutex_lock(&s->pool_mu);
    mx_task_t *head = s->task_head;
    int wake = head && now - head->t_queued_ns > MX_STALL_NS && s->idle_workers > s->pending_wakes;
    if (wake)
        wake_one_locked(s);
    pthread_mutex_unlock(&s->pool_mu);
    if (wake)
        wake_signal(s);
}

/*
 * max_queue_time (I/O thread, each pass while work is queued): requests that waited longer than
 * that for a free worker get 503 with Retry-After now, instead of running late, even when every
 * worker is stuck in a slow handler. WebSocket deliveries are never shed.
 */
void mx__pool_shed(mx_server_t *s) {
    if (s->cfg.max_queue_time <= 0 || !mx__pool_has_queued(s))
        return;
    int64_t now = mx__now_ns(), max = (int64_t)(s->cfg.max_queue_time * 1e9);
    mx_task_t *shed = NULL, **link;
    pthread_mutex_lock(&s->pool_mu);
    mx_task_t *prev = NULL;
    link = &s->task_head;
    while (*link && now - (*link)->t_queued_ns > max) {
        mx_task_t *t = *link;
        if (t->kind != MX_TASK_REQUEST || ((mx_req_t *)t)->log_only) {
            prev = t;
            link = &t->next_task;
            continue;
        }
        *link = t->next_task;
        if (s->task_tail == t)
            s->task_tail = prev;
        s->qlen--;
        t->next_task = shed;
        shed = t;
    }
    pthread_mutex_unlock(&s->pool_mu);
    while (shed) {
        mx_task_t *t = shed;
        shed = t->next_task;
        t->next_task = NULL;
        static const mx_resp_header_t h[2] = {{"Content-Type", 12, "text/plain; charset=utf-8", 25},
                                              {"Retry-After", 11, "1", 1}};
        int bad;
        mx_req_t *r = (mx_req_t *)t;
        if (r->chan)
            mx__body_end(r->chan, MX_ECLOSED);
        mx_req_respond(r, 503, h, 2, "Service Unavailable", 19, &bad);
        atomic_fetch_sub(&s->running, 1);
        mx_req_decref(r); /* the pool's reference */
    }
}

mx_task_t *mx_pool_trypop(mx_server_t *s) {
    if (!__atomic_load_n(&s->task_head, __ATOMIC_RELAXED)) /* a miss only delays to a sleeper */
        return NULL;
    int64_t now = mx__now_ns();
    pthread_mutex_lock(&s->pool_mu);
    mx_task_t *r = pool_pop_locked(s, now);
    pthread_mutex_unlock(&s->pool_mu);
    return r;
}

/* A worker finished t: fold its time into the average that guides waking, and drop the pool's
 * reference to what it carried. */
void mx_task_done(mx_server_t *s, mx_task_t *r) {
    if (r->t_popped_ns) {
        int64_t dt = mx__now_ns() - r->t_popped_ns;
        int64_t avg = atomic_load_explicit(&s->handler_ns, memory_order_relaxed);
        atomic_store_explicit(&s->handler_ns, avg + (dt - avg) / 8, memory_order_relaxed);
    }
    atomic_fetch_sub(&s->running, 1);
    if (r->kind == MX_TASK_REQUEST)
        mx_req_decref((mx_req_t *)r);
    else
        mx__ws_task_finish((mx_stream_t *)r);
}

static void *worker_main(void *arg) {
    mx_worker_t *w = arg;
    mx_server_t *s = w->server;
    tls_worker = w;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
    mx__thread_batch_policy();
    if (s->hooks.worker_start)
        s->hooks.worker_start(s->hooks.ctx);
    for (;;) {
        pthread_mutex_lock(&s->pool_mu);
        mx_task_t *r;
        atomic_store_explicit(&w->task_start_ns, 0, memory_order_relaxed);
        while (!(r = pool_pop_locked(s, mx__now_ns())) && !s->pool_stop) {
            s->idle_workers++;
            pthread_cond_wait(&s->pool_cv, &s->pool_mu);
            s->idle_workers--;
            if (s->pending_wakes > 0)
                s->pending_wakes--;
        }
        /* A request still queued when stopping is run anyway: its client is waiting, and the
         * drain already bounded how long that may take. */
        int wake = r && should_wake_locked(s, r->t_popped_ns);
        if (wake)
            wake_one_locked(s); /* pass the baton: the rest needs more hands */
        pthread_mutex_unlock(&s->pool_mu);
        if (wake)
            wake_signal(s);
        if (!r)
            break;
        s->hooks.run(s->hooks.ctx, r); /* calls mx_task_done for each task it runs */
    }
    if (s->hooks.worker_stop)
        s->hooks.worker_stop(s->hooks.ctx);
    return NULL;
}

int mx__pool_start(mx_server_t *s) {
    cpu_set_t cpus;
    s->one_cpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) == 1;
    s->workers = calloc((size_t)s->cfg.workers, sizeof(mx_worker_t));
    if (!s->workers)
        return MX_ENOMEM;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20); /* handlers recurse deeply; 1 MiB, as CPython uses */
    for (int i = 0; i < s->cfg.workers; i++) {
        s->workers[i].server = s;
        atomic_init(&s->workers[i].task_start_ns, 0);
        if (pthread_create(&s->workers[i].thread, &attr, worker_main, &s->workers[i]) != 0) {
            pthread_attr_destroy(&attr);
            mx__pool_stop(s);
            return MX_ESYS;
        }
        s->nworkers++;
    }
    pthread_attr_destroy(&attr);
    return 0;
}

/* Stops and joins every worker once the queue is empty. Binding thread; no GIL held. */
void mx__pool_stop(mx_server_t *s) {
    pthread_mutex_lock(&s->pool_mu);
    s->pool_stop = 1;
    pthread_cond_broadcast(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
    for (int i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i].thread, NULL);
    s->nworkers = 0;
    free(s->workers);
    s->workers = NULL;
}
