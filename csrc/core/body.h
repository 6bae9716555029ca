/*
 * body.h: the channel a streamed request body flows through, from the I/O thread (the writer) to
 * the handler's thread (the reader). Pure C: it knows no requests or connections; the writer
 * learns of the reader's news through the notify callback it installs. See body.c.
 */
#ifndef MX_BODY_H
#define MX_BODY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The body of a request on a streamed route, between the I/O thread (writer) and the handler's
 * thread (reader). Bounded: the I/O thread stops reading the socket above MX_BODY_HIGH buffered
 * bytes, and the reader asks it to resume below MX_BODY_LOW (through notify). Lock order: mu is a
 * leaf; notify is called after mu is released.
 */
#define MX_BODY_HIGH (1u << 20)
#define MX_BODY_LOW (256u << 10)
#define MX_BODY_RING_MAX (2u * MX_BODY_HIGH)
typedef struct mx_body_chan {
    /* Tells the I/O thread the reader has news (want_resume, want_continue, want_splice). Called
     * on the reader's thread, outside mu. */
    void (*notify)(void *arg);
    void *notify_arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* A ring: the unread bytes are the `used` bytes from buf[head] on, wrapping at cap. The I/O
     * thread writes only into the free part (reading the socket straight into it), the reader
     * only reads the used part, so neither waits for the other while it copies. cap grows
     * (doubling, up to MX_BODY_RING_MAX) only on the I/O thread, under mu; a buffer the reader
     * still borrows (mx_req_peek) is kept in old_buf until it gives the borrow back. */
    char *buf;
    size_t cap, head, used;
    char *old_buf;
    int borrowed; /* the reader holds a pointer into buf (or old_buf) */
    int done;             /* the whole body is in buf */
    int err;              /* 0, MX_ECLOSED (client gone / cut) or MX_EINVAL (bad body) */
    int io_paused;        /* the I/O thread stopped reading for room (under mu) */
    int want_resume;      /* the reader made room: the I/O thread may read again */
    int want_continue;    /* the reader wants the body: send 100 Continue */
    int read_started;
    /*
     * Splicing (save_body of a Content-Length body): once the reader asks for it (want_splice)
     * and the I/O thread has no body bytes of this request left in its read buffer, the I/O
     * thread moves the rest of the body socket -> pipe with splice(2) (splice_on), and the reader
     * moves it pipe -> file: no copy through user space. Bytes in buf come before the pipe's.
     * The I/O thread owns pipe_w and closes it when the body ends (mx_body_end), so a reader
     * blocked on the pipe wakes up at the end; pipe_r is the reader's. Both close with the chan.
     */
    int can_splice;       /* set once before dispatch: a Content-Length body, nothing to decode */
    int want_splice;      /* the reader would take the body from a pipe */
    int splice_on;        /* the pipe is in use: body bytes after buf's arrive through it */
    int pipe_r, pipe_w;   /* -1 when closed */
    size_t pipe_cap;      /* the pipe's capacity in bytes */
    uint64_t piped, unpiped; /* bytes put into / taken out of the pipe */
} mx_body_chan_t;

/* ---- the writer's side: I/O thread ---- */

/* A channel for a body of size_hint bytes (0: unknown); notify(arg) is how the reader's news
 * reaches the writer. NULL on ENOMEM. */
mx_body_chan_t *mx_body_chan_new(uint64_t size_hint, void (*notify)(void *arg), void *arg);
/* Frees ch (no reader or writer may use it any more). Any thread. */
void mx_body_chan_free(mx_body_chan_t *ch);
/* Copies n bytes in. 1: the channel is now full (stop reading the socket); 0; MX_ENOMEM. */
int mx_body_push(mx_body_chan_t *ch, const char *data, size_t n);
/* Room for up to want bytes to be read into directly: *at, *len. 1 when full (nothing given). */
int mx_body_room(mx_body_chan_t *ch, size_t want, char **at, size_t *len);
/* n bytes were written at the room given. 1 when now full. */
int mx_body_commit(mx_body_chan_t *ch, size_t n);
/* How much one push may take now. */
size_t mx_body_space(mx_body_chan_t *ch);
/* The body is complete (err 0) or never will be (err < 0: MX_ECLOSED, MX_EINVAL). Idempotent;
 * any thread (the pool sheds with it too). */
void mx_body_end(mx_body_chan_t *ch, int err);
/* Whether the whole body is in. */
int mx_body_complete(mx_body_chan_t *ch);
/* The reader wants the body spliced and no body byte is left in the writer's buffer: makes the
 * pipe. 1 when the rest of the body goes through it. */
int mx_body_start_splice(mx_body_chan_t *ch);
/* Splices up to max bytes socket fd -> pipe. Bytes moved, 0 at the client's EOF, MX_EAGAIN
 * (*full: the pipe is full, stop until resumed), or MX_ESYS. */
int mx_body_splice_in(mx_body_chan_t *ch, int fd, size_t max, int *full);

/* ---- the reader's side: one thread at a time (the handler's), never the I/O thread ---- */

/* The first read: asks for 100 Continue and, with splice, for the pipe. */
void mx_body_begin(mx_body_chan_t *ch, int splice);
/* Blocks for the next bytes, up to n: copied into buf, or spliced into out_fd (>= 0) when they
 * come through the pipe (*to_fd = 1). Bytes moved, 0 at the end, MX_ECLOSED, MX_EINVAL (the body
 * was refused), MX_ESYS. */
ssize_t mx_body_read(mx_body_chan_t *ch, char *buf, size_t n, int out_fd, int *to_fd);
/* Blocks for the next bytes and lends them in place (*data, the count returned) until
 * mx_body_consume; 0 at the end, or an error as mx_body_read. */
ssize_t mx_body_peek(mx_body_chan_t *ch, const char **data);
/* Gives n of the lent bytes back as read. */
void mx_body_consume(mx_body_chan_t *ch, size_t n);

#endif
