/*
 * pool.h: worker threads and their queue (after libuv's threadpool.c). Pure C; knows nothing of
 * requests or connections: a task carries its own done and shed functions (as libuv's uv__work
 * carries work and done), and the owner's hooks run it.
 *
 * Threads: mx_pool_push from any thread (the I/O thread for requests, any thread for WebSocket
 * deliveries); the pass and sleep hooks from the loop's thread; mx_pool_next and mx_pool_done
 * from workers inside hooks->run; init/start/stop/free from the owner (the binding's thread).
 */
#ifndef MX_POOL_H
#define MX_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

typedef struct mx_task mx_task_t;

/* What the pool does with a task besides running it. Both take over the pool's reference. */
typedef struct mx_task_ops {
    /* A worker finished running it (hooks->run handed it back through mx_pool_done). */
    void (*done)(mx_task_t *t);
    /* It waited longer than the pool's max_queue_time and is dropped unrun (on the loop's thread,
     * no pool lock held). NULL: never shed (WebSocket deliveries, requests only being logged). */
    void (*shed)(mx_task_t *t);
} mx_task_ops_t;

/* Work for the pool, embedded at the start of what it runs (a request, a WebSocket's event
 * delivery). kind is for the run hook to tell them apart (MX_TASK_* in mx.h). */
struct mx_task {
    struct mx_task *next_task; /* pool queue link (pool mutex) */
    const mx_task_ops_t *ops;
    int kind;
    int64_t t_queued_ns; /* when it entered the queue */
    int64_t t_popped_ns; /* when a worker took it */
};

/* Called on worker threads. run() owns the pool's reference to the task and hands it back with
 * mx_pool_done() (mx_task_done in mx.h) once done with it, also for tasks taken with mx_pool_next. */
typedef struct mx_hooks {
    void *ctx;
    void (*worker_start)(void *ctx);
    void (*worker_stop)(void *ctx);
    void (*run)(void *ctx, mx_task_t *task);
} mx_hooks_t;

struct mx_worker;

/* Lock order: mu is a leaf (nothing else is taken while holding it, and never Python). */
typedef struct mx_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    mx_task_t *head, *tail;
    int qlen;          /* tasks in the queue */
    int idle;          /* workers waiting on cv */
    int pending_wakes; /* signalled workers that have not woken yet */
    int stopping;
    int abandoned;     /* workers mx_pool_stop_by left running: p must outlive them (leaked) */
    int one_cpu;       /* the process may run on one CPU only (its affinity at start) */
    int wakes_owed;    /* loop thread only, one_cpu: signals held until the end of its pass */
    struct mx_worker *workers;
    int nworkers, nthreads;
    int64_t max_queue_ns;    /* shed tasks older than this (0: never) */
    atomic_llong handler_ns; /* moving average of how long a task holds a worker */
    mx_hooks_t hooks;
} mx_pool_t;

/* Sets p up for nthreads workers running hooks; max_queue_time in seconds (<= 0: no shedding).
 * Owner thread. */
void mx_pool_init(mx_pool_t *p, int nthreads, const mx_hooks_t *hooks, double max_queue_time);
/* Starts the workers. 0, MX_ENOMEM or MX_ESYS (then none runs). Owner thread. */
int mx_pool_start(mx_pool_t *p);
/* Lets workers finish what is queued, then joins them. Idempotent. Owner thread, GIL released. */
void mx_pool_stop(mx_pool_t *p);
/* As mx_pool_stop, but waits for each worker only until deadline (CLOCK_REALTIME, as
 * pthread_timedjoin_np takes it; NULL: forever). A worker still running then (a handler stuck
 * past the shutdown timeout) is detached and left to finish on its own: p and its workers stay
 * allocated for it, and mx_pool_free leaves them alone. Returns how many were left. Owner thread,
 * GIL released. */
int mx_pool_stop_by(mx_pool_t *p, const struct timespec *deadline);
/* Frees p's locks (stopped, or never started). Owner thread. */
void mx_pool_free(mx_pool_t *p);

/* Queues t, taking over one reference to its owner. Any thread. */
void mx_pool_push(mx_pool_t *p, mx_task_t *t);
/* From inside hooks->run: the next queued task without blocking, or NULL (mx_pool_trypop in
 * mx.h). Worker. */
mx_task_t *mx_pool_next(mx_pool_t *p);
/* A worker finished t: feeds the wake-up heuristics, then t->ops->done. Worker. */
void mx_pool_done(mx_pool_t *p, mx_task_t *t);

/* The thread that calls this (the loop's) holds its worker wake-ups on a one-CPU machine until
 * mx_pool_before_sleep. Loop thread, once. */
void mx_pool_hold_wakes_here(mx_pool_t *p);
/* Loop pass hook (arg: the pool): sheds tasks past max_queue_time and wakes one more worker for
 * a stalled queue; returns 1 (ms) while tasks are queued, so the loop keeps watching, else -1. */
int mx_pool_pass(void *arg);
/* Loop sleep hook (arg: the pool): sends the wake-ups held this pass. */
void mx_pool_before_sleep(void *arg);

/* SCHED_BATCH for the calling thread (see pool.c). Any thread. */
void mx_thread_batch_policy(void);
/* CLOCK_MONOTONIC in nanoseconds. Any thread. */
int64_t mx_now_ns(void);

#endif
