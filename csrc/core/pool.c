/*
 * pool.c: the worker threads and their queue (after libuv's threadpool.c); see pool.h.
 *
 * The I/O thread pushes tasks (complete requests, WebSocket deliveries); workers pop them and run
 * them through the owner's hooks. A worker that holds the GIL takes more work with
 * mx_pool_next() instead of going back to sleep, so under load one GIL acquisition serves many
 * requests. The pool knows nothing of what a task is: it calls the task's done and shed
 * functions. Workers never touch sockets; a response travels back through the loop's queue.
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
 * (check_stall). A plaintext flood thus runs on one worker; sleeping handlers fan out.
 *
 * Lock order: p->mu is a leaf (nothing else is taken while holding it, and never Python).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "pool.h"

#define MX_FRESH_NS 1000000LL   /* 1 ms */
#define MX_BACKLOG_NS 500000LL  /* 0.5 ms of queued work per worker */
#define MX_STALL_NS 1000000LL   /* 1 ms */

typedef struct mx_worker {
    pthread_t thread;
    mx_pool_t *pool;
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
void mx_thread_batch_policy(void) {
    struct sched_param sp = {.sched_priority = 0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp); /* best effort */
}

int64_t mx_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static mx_task_t *pop_locked(mx_pool_t *p, int64_t now) {
    mx_task_t *t = p->head;
    if (t) {
        p->head = t->next_task;
        if (!p->head)
            p->tail = NULL;
        t->next_task = NULL;
        p->qlen--;
        t->t_popped_ns = now;
        if (tls_worker)
            atomic_store_explicit(&tls_worker->task_start_ns, now, memory_order_relaxed);
    }
    return t;
}

/* Whether another worker should be woken for the queue as it is now. p->mu held. */
static int should_wake_locked(mx_pool_t *p, int64_t now) {
    if (p->idle <= p->pending_wakes || p->qlen == 0)
        return 0;
    int64_t avg = atomic_load_explicit(&p->handler_ns, memory_order_relaxed);
    if ((int64_t)p->qlen * avg > MX_BACKLOG_NS * (1 + p->pending_wakes))
        return 1;
    if (p->pending_wakes > 0)
        return 0;
    for (int i = 0; i < p->nworkers; i++) {
        int64_t t = atomic_load_explicit(&p->workers[i].task_start_ns, memory_order_relaxed);
        if (t != 0 && now - t < MX_FRESH_NS)
            return 0; /* someone will be back for it soon */
    }
    return 1;
}

static _Thread_local mx_pool_t *tls_holder; /* the pool whose wake-ups this thread holds */

void mx_pool_hold_wakes_here(mx_pool_t *p) { tls_holder = p; }

/*
 * Signals one worker (p->mu released: the caller counted the wake-up in pending_wakes under the
 * lock, and signals once it has unlocked, so that the woken worker, if it runs at once, does not
 * block on p->mu straight away; that costs two more switches per wake-up on a shared core).
 *
 * On one CPU, a worker woken in the middle of the I/O thread's pass does not run in parallel: it
 * preempts the I/O thread (EEVDF lets even SCHED_BATCH wakees do so), handles one task, sleeps,
 * and the I/O thread resumes, two switches per task. There the I/O thread holds its signals
 * until the pass is over (mx_pool_before_sleep, just before epoll_wait), and the worker then
 * finds everything the pass queued. With more CPUs the worker is woken at once, to run beside it.
 */
static void wake_signal(mx_pool_t *p) {
    if (p->one_cpu && tls_holder == p) {
        p->wakes_owed++;
        return;
    }
    pthread_cond_signal(&p->cv);
}

void mx_pool_before_sleep(void *arg) {
    mx_pool_t *p = arg;
    for (; p->wakes_owed > 0; p->wakes_owed--)
        pthread_cond_signal(&p->cv);
}

void mx_pool_push(mx_pool_t *p, mx_task_t *t) {
    int64_t now = mx_now_ns();
    t->t_queued_ns = now;
    pthread_mutex_lock(&p->mu);
    t->next_task = NULL;
    if (p->tail)
        p->tail->next_task = t;
    else
        p->head = t;
    p->tail = t;
    p->qlen++;
    int wake = should_wake_locked(p, now);
    if (wake)
        p->pending_wakes++;
    pthread_mutex_unlock(&p->mu);
    if (wake)
        wake_signal(p);
}

static int has_queued(mx_pool_t *p) { return __atomic_load_n(&p->head, __ATOMIC_RELAXED) != NULL; }

/* A task that has waited too long while every running worker is busy (perhaps blocked) gets
 * another worker. */
static void check_stall(mx_pool_t *p) {
    int64_t now = mx_now_ns();
    pthread_mutex_lock(&p->mu);
    mx_task_t *head = p->head;
    int wake = head && now - head->t_queued_ns > MX_STALL_NS && p->idle > p->pending_wakes;
    if (wake)
        p->pending_wakes++;
    pthread_mutex_unlock(&p->mu);
    if (wake)
        wake_signal(p);
}

/*
 * max_queue_time: tasks that waited longer than that for a free worker are shed now (a request
 * gets 503 with Retry-After) instead of running late, even when every worker is stuck in a slow
 * handler. Tasks without a shed function stay queued.
 */
static void shed(mx_pool_t *p) {
    int64_t now = mx_now_ns();
    mx_task_t *dropped = NULL, **link = &p->head, *prev = NULL;
    pthread_mutex_lock(&p->mu);
    while (*link && now - (*link)->t_queued_ns > p->max_queue_ns) {
        mx_task_t *t = *link;
        if (!t->ops->shed) {
            prev = t;
            link = &t->next_task;
            continue;
        }
        *link = t->next_task;
        if (p->tail == t)
            p->tail = prev;
        p->qlen--;
        t->next_task = dropped;
        dropped = t;
    }
    pthread_mutex_unlock(&p->mu);
    while (dropped) {
        mx_task_t *t = dropped;
        dropped = t->next_task;
        t->next_task = NULL;
        t->ops->shed(t);
    }
}

int mx_pool_pass(void *arg) {
    mx_pool_t *p = arg;
    if (!has_queued(p))
        return -1;
    if (p->max_queue_ns > 0)
        shed(p);
    check_stall(p);
    return 1; /* keep watching for a stalled queue */
}

mx_task_t *mx_pool_next(mx_pool_t *p) {
    if (!has_queued(p)) /* a miss only delays the task to a sleeper */
        return NULL;
    int64_t now = mx_now_ns();
    pthread_mutex_lock(&p->mu);
    mx_task_t *t = pop_locked(p, now);
    pthread_mutex_unlock(&p->mu);
    return t;
}

void mx_pool_done(mx_pool_t *p, mx_task_t *t) {
    if (t->t_popped_ns) { /* fold its time into the average that guides waking */
        int64_t dt = mx_now_ns() - t->t_popped_ns;
        int64_t avg = atomic_load_explicit(&p->handler_ns, memory_order_relaxed);
        atomic_store_explicit(&p->handler_ns, avg + (dt - avg) / 8, memory_order_relaxed);
    }
    t->ops->done(t);
}

static void *worker_main(void *arg) {
    mx_worker_t *w = arg;
    mx_pool_t *p = w->pool;
    tls_worker = w;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
    mx_thread_batch_policy();
    if (p->hooks.worker_start)
        p->hooks.worker_start(p->hooks.ctx);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        mx_task_t *t;
        atomic_store_explicit(&w->task_start_ns, 0, memory_order_relaxed);
        while (!(t = pop_locked(p, mx_now_ns())) && !p->stopping) {
            p->idle++;
            pthread_cond_wait(&p->cv, &p->mu);
            p->idle--;
            if (p->pending_wakes > 0)
                p->pending_wakes--;
        }
        /* A task still queued when stopping is run anyway: its client is waiting, and the
         * drain already bounded how long that may take. */
        int wake = t && should_wake_locked(p, t->t_popped_ns);
        if (wake)
            p->pending_wakes++; /* pass the baton: the rest needs more hands */
        pthread_mutex_unlock(&p->mu);
        if (wake)
            wake_signal(p);
        if (!t)
            break;
        p->hooks.run(p->hooks.ctx, t); /* calls mx_pool_done for each task it runs */
    }
    if (p->hooks.worker_stop)
        p->hooks.worker_stop(p->hooks.ctx);
    return NULL;
}

void mx_pool_init(mx_pool_t *p, int nthreads, const mx_hooks_t *hooks, double max_queue_time) {
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->nthreads = nthreads < 1 ? 1 : nthreads;
    p->hooks = *hooks;
    p->max_queue_ns = max_queue_time > 0 ? (int64_t)(max_queue_time * 1e9) : 0;
    atomic_init(&p->handler_ns, 0);
}

int mx_pool_start(mx_pool_t *p) {
    cpu_set_t cpus;
    p->one_cpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) == 1;
    p->stopping = 0;
    p->workers = calloc((size_t)p->nthreads, sizeof(mx_worker_t));
    if (!p->workers)
        return MX_ENOMEM;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20); /* handlers recurse deeply; 1 MiB, as CPython uses */
    for (int i = 0; i < p->nthreads; i++) {
        p->workers[i].pool = p;
        atomic_init(&p->workers[i].task_start_ns, 0);
        if (pthread_create(&p->workers[i].thread, &attr, worker_main, &p->workers[i]) != 0) {
            pthread_attr_destroy(&attr);
            mx_pool_stop(p);
            return MX_ESYS;
        }
        p->nworkers++;
    }
    pthread_attr_destroy(&attr);
    return 0;
}

void mx_pool_stop(mx_pool_t *p) { mx_pool_stop_by(p, NULL); }

int mx_pool_stop_by(mx_pool_t *p, const struct timespec *deadline) {
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    int left = 0;
    for (int i = 0; i < p->nworkers; i++) {
        if (!deadline) {
            pthread_join(p->workers[i].thread, NULL);
        } else if (pthread_timedjoin_np(p->workers[i].thread, NULL, deadline) != 0) {
            /* Stuck in a handler (time.sleep(60)): let it run on, detached. It still reads p
             * and its mx_worker_t when it returns, so neither may be freed. A deadline already
             * past makes the next joins mere checks. */
            pthread_detach(p->workers[i].thread);
            left++;
        }
    }
    p->nworkers = 0;
    p->abandoned += left;
    if (!p->abandoned) { /* else p->workers stays: the detached ones run on it */
        free(p->workers);
        p->workers = NULL;
    }
    return left;
}

void mx_pool_free(mx_pool_t *p) {
    if (p->abandoned)
        return; /* a detached worker may still take p->mu */
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}
