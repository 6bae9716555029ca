/*
 * test_pool.c: unit tests for csrc/core/pool.c, linked alone (no server, no requests): every task
 * pushed runs once and its done function is called once; a worker takes several tasks per run
 * with mx_pool_next; tasks still queued at stop are run; tasks that waited past max_queue_time
 * are shed by the pass hook (those with a shed function), the others stay and run; a queue
 * stalled behind a blocked worker gets another worker; worker start/stop hooks run per thread.
 *   make build/c/test_pool && ./build/c/test_pool
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "harness.h"
#include "pool.h"

typedef struct job {
    mx_task_t super;
    atomic_int ran, done, shed;
    int block; /* wait on the gate before returning */
} job_t;

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;
static atomic_int started_workers, stopped_workers, blocked_now;
static mx_pool_t *the_pool;
static atomic_int batched; /* tasks taken with mx_pool_next */

static void job_done(mx_task_t *t) { atomic_fetch_add(&((job_t *)t)->done, 1); }
static void job_shed(mx_task_t *t) { atomic_fetch_add(&((job_t *)t)->shed, 1); }
static const mx_task_ops_t sheddable = {job_done, job_shed};
static const mx_task_ops_t keep = {job_done, NULL};

static void run_one(job_t *j) {
    atomic_fetch_add(&j->ran, 1);
    if (j->block) {
        atomic_fetch_add(&blocked_now, 1);
        pthread_mutex_lock(&gate_mu);
        while (!gate_open)
            pthread_cond_wait(&gate_cv, &gate_mu);
        pthread_mutex_unlock(&gate_mu);
        atomic_fetch_sub(&blocked_now, 1);
    }
}

/* The run hook: as the binding does, runs the task and then whatever else is queued. */
static void run(void *ctx, mx_task_t *t) {
    MX_UNUSED(ctx);
    do {
        run_one((job_t *)t);
        mx_pool_done(the_pool, t);
        t = mx_pool_next(the_pool);
        if (t)
            atomic_fetch_add(&batched, 1);
    } while (t);
}

static void worker_start(void *ctx) {
    MX_UNUSED(ctx);
    atomic_fetch_add(&started_workers, 1);
}
static void worker_stop(void *ctx) {
    MX_UNUSED(ctx);
    atomic_fetch_add(&stopped_workers, 1);
}

static const mx_hooks_t hooks = {NULL, worker_start, worker_stop, run};

static void job_init(job_t *j, const mx_task_ops_t *ops) {
    memset(j, 0, sizeof(*j));
    j->super.ops = ops;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void set_gate(int open) {
    pthread_mutex_lock(&gate_mu);
    gate_open = open;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

/* Starts p with nthreads workers and one of them blocked in blocker until the gate opens. */
static void start_with_blocked_worker(mx_pool_t *p, int nthreads, double max_queue, job_t *blocker) {
    the_pool = p;
    set_gate(0);
    mx_pool_init(p, nthreads, &hooks, max_queue);
    CHECK(mx_pool_start(p) == 0, "start");
    job_init(blocker, &keep);
    blocker->block = 1;
    mx_pool_push(p, &blocker->super);
    while (atomic_load(&blocked_now) == 0)
        sleep_ms(1);
}

#define N 2000

static void test_every_task_runs_once(void) {
    static job_t jobs[N];
    mx_pool_t p;
    the_pool = &p;
    mx_pool_init(&p, 4, &hooks, 0);
    CHECK(mx_pool_start(&p) == 0, "start");
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], &sheddable);
        mx_pool_push(&p, &jobs[i].super);
    }
    mx_pool_stop(&p); /* runs what is still queued, then joins */
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += jobs[i].ran != 1 || jobs[i].done != 1 || jobs[i].shed != 0;
    CHECK(bad == 0, "every task ran once and was done once (%d wrong)", bad);
    CHECK(started_workers == 4 && stopped_workers == 4, "worker hooks ran per thread (%d, %d)",
          (int)started_workers, (int)stopped_workers);
    CHECK(batched > 0, "workers took queued tasks without sleeping (%d)", (int)batched);
    mx_pool_stop(&p); /* idempotent */
    mx_pool_free(&p);
}

static void test_shed(void) {
    static job_t blocker, old_s, old_k, fresh;
    mx_pool_t p;
    start_with_blocked_worker(&p, 1, 0.02 /* 20 ms */, &blocker);
    job_init(&old_s, &sheddable);
    job_init(&old_k, &keep);
    mx_pool_push(&p, &old_s.super);
    mx_pool_push(&p, &old_k.super);
    CHECK(mx_pool_pass(&p) == 1, "the pass hook asks to be run again while tasks wait");
    CHECK(old_s.shed == 0, "not shed before max_queue_time");
    sleep_ms(40);
    job_init(&fresh, &sheddable);
    mx_pool_push(&p, &fresh.super);
    mx_pool_pass(&p);
    CHECK(old_s.shed == 1 && old_s.ran == 0 && old_s.done == 0, "an old sheddable task is shed");
    CHECK(old_k.shed == 0, "a task without a shed function stays");
    CHECK(fresh.shed == 0, "a fresh task stays");
    set_gate(1);
    mx_pool_stop(&p);
    CHECK(old_k.ran == 1 && old_k.done == 1 && fresh.ran == 1, "the tasks kept ran");
    CHECK(mx_pool_pass(&p) == -1, "an empty queue needs no watching");
    mx_pool_free(&p);
}

/* One worker blocked in a task, a second asleep: a task queued behind the blocked one wakes the
 * sleeper, either at once or through the stall check of the pass hook. */
static void test_stall_wakes_another(void) {
    static job_t blocker, next;
    mx_pool_t p;
    start_with_blocked_worker(&p, 2, 0, &blocker);
    job_init(&next, &keep);
    mx_pool_push(&p, &next.super);
    for (int i = 0; i < 200 && atomic_load(&next.ran) == 0; i++) {
        sleep_ms(2);
        mx_pool_pass(&p);
        mx_pool_before_sleep(&p);
    }
    CHECK(next.ran == 1, "the task behind a blocked worker ran on another");
    set_gate(1);
    mx_pool_stop(&p);
    mx_pool_free(&p);
}

/* A worker stuck in a task past the deadline is left running, detached; the stop returns at
 * the deadline; the pool stays usable by that worker, which finishes once released. */
static void test_stop_by_leaves_a_stuck_worker(void) {
    static job_t blocker;
    static mx_pool_t p; /* outlives the function: the detached worker still uses it */
    int stopped_before = atomic_load(&stopped_workers);
    start_with_blocked_worker(&p, 2, 0, &blocker);
    struct timespec t0, t1, deadline;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += 100000000L; /* 100 ms */
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int left = mx_pool_stop_by(&p, &deadline);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(left == 1, "one worker left running (%d)", left);
    CHECK(took >= 0.09 && took < 1.0, "the stop returned at the deadline (%.3f s)", took);
    CHECK(atomic_load(&stopped_workers) == stopped_before + 1, "the idle worker was joined");
    mx_pool_free(&p); /* must leave the locks alone */
    set_gate(1);
    for (int i = 0; i < 500 && atomic_load(&stopped_workers) < stopped_before + 2; i++)
        sleep_ms(2);
    CHECK(blocker.done == 1 && atomic_load(&stopped_workers) == stopped_before + 2,
          "the stuck worker finished its task and stopped on its own");
}

int main(void) {
    test_every_task_runs_once();
    test_shed();
    test_stall_wakes_another();
    test_stop_by_leaves_a_stuck_worker();
    return harness_summary("pool");
}
