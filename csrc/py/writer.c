/*
 * writer.c: streamed response bodies in Python. request.respond_stream(status, headers) answers
 * with the head at once and returns a mummyx.ResponseStream (write(), close(), abort(), closed;
 * a context manager), usable from any thread; a handler that returns an iterator gets the same
 * through pymx_respond_iterator. The body goes chunked on HTTP/1.1 and close-delimited on 1.0.
 *
 * Backpressure: write() queues a copy and returns at once while the stream's backlog is under
 * max_send_queue; past it, it waits with the GIL released until the client has taken enough, so
 * a slow client slows the producer (an iterator is pulled only as fast as the client reads) and
 * the server never buffers more than the bound. A client that leaves makes write() raise
 * ConnectionClosed. GIL held on entry to every function here.
 */
#include "module.h"

#include <string.h>

static PyObject *writer_new(mx_state *state, mx_stream_t *st) {
    MxResponseStreamObject *self = PyObject_GC_New(MxResponseStreamObject, state->writer_type);
    if (!self)
        return NULL;
    self->st = st; /* the caller's reference moves here */
    self->done = 0;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int writer_traverse(MxResponseStreamObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void writer_dealloc(MxResponseStreamObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->st) {
        /* Nobody can write any more: end the body, as a file is closed when collected. */
        if (!self->done)
            mx_sse_close(self->st);
        mx_stream_decref(self->st);
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* The bytes of one chunk: str as UTF-8, or any bytes-like object. */
static int chunk_bytes(PyObject *data, Py_buffer *view, const char **p, Py_ssize_t *n) {
    view->obj = NULL;
    if (PyUnicode_Check(data)) {
        *p = PyUnicode_AsUTF8AndSize(data, n);
        return *p ? 0 : -1;
    }
    if (PyObject_GetBuffer(data, view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "a response body chunk must be str or bytes, not %.100s",
                     Py_TYPE(data)->tp_name);
        return -1;
    }
    *p = view->buf;
    *n = view->len;
    return 0;
}

/* Queues one chunk, waiting (GIL released) for room when the client is behind. */
static int write_chunk(mx_state *state, mx_stream_t *st, PyObject *data) {
    Py_buffer view;
    const char *p;
    Py_ssize_t n;
    if (chunk_bytes(data, &view, &p, &n) < 0)
        return -1;
    Py_INCREF(data); /* keeps p alive while the GIL is released */
    int rc = mx_stream_write(st, p, (size_t)n, 0);
    if (rc == MX_EAGAIN) {
        Py_BEGIN_ALLOW_THREADS
        rc = mx_stream_write(st, p, (size_t)n, 1);
        Py_END_ALLOW_THREADS
    }
    if (view.obj)
        PyBuffer_Release(&view);
    Py_DECREF(data);
    if (rc != 0) {
        pymx_raise(state, rc, rc == MX_ECLOSED ? "the response stream is closed" : "cannot write");
        return -1;
    }
    return 0;
}

static PyObject *writer_write(MxResponseStreamObject *self, PyObject *data) {
    if (self->done) {
        pymx_raise(pymx_state_of(self), MX_ECLOSED, "the response stream is closed");
        return NULL;
    }
    if (write_chunk(pymx_state_of(self), self->st, data) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *writer_close(MxResponseStreamObject *self, PyObject *unused) {
    (void)unused;
    if (!self->done) {
        self->done = 1;
        mx_sse_close(self->st);
    }
    Py_RETURN_NONE;
}

static PyObject *writer_abort(MxResponseStreamObject *self, PyObject *unused) {
    (void)unused;
    self->done = 1;
    mx_stream_abort(self->st);
    Py_RETURN_NONE;
}

static PyObject *writer_enter(PyObject *self, PyObject *unused) {
    (void)unused;
    return Py_NewRef(self);
}

/* Leaving a with-block ends the body; leaving it by an exception cuts the connection instead,
 * so the client never takes a partial body for a whole one. */
static PyObject *writer_exit(MxResponseStreamObject *self, PyObject *const *args, Py_ssize_t n) {
    if (n >= 1 && args[0] != Py_None)
        return writer_abort(self, NULL);
    return writer_close(self, NULL);
}

static PyObject *writer_get_closed(MxResponseStreamObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->done || mx_stream_closed(self->st));
}

static PyObject *writer_repr(MxResponseStreamObject *self) {
    return PyUnicode_FromFormat("<ResponseStream %s>",
                                self->done || mx_stream_closed(self->st) ? "closed" : "open");
}

static PyObject *writer_new_forbidden(PyTypeObject *tp, PyObject *a, PyObject *k) {
    (void)a;
    (void)k;
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances: use request.respond_stream()",
                 tp->tp_name);
    return NULL;
}

static PyMethodDef writer_methods[] = {
    {"write", (PyCFunction)writer_write, METH_O,
     "write($self, data, /)\n--\n\nQueue one chunk (str or bytes). Blocks, without the GIL, while "
     "the client is more than max_send_queue behind; raises ConnectionClosed once it is gone."},
    {"close", (PyCFunction)writer_close, METH_NOARGS,
     "close($self)\n--\n\nEnd the body (the connection may be reused). Idempotent."},
    {"abort", (PyCFunction)writer_abort, METH_NOARGS,
     "abort($self)\n--\n\nCut the connection without ending the body: the client sees the "
     "response as truncated."},
    {"__enter__", writer_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))writer_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef writer_getset[] = {
    {"closed", (getter)writer_get_closed, NULL,
     "True once nothing more can be written (closed, aborted, or the client is gone)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot writer_slots[] = {
    {Py_tp_doc, "A streamed response body (from request.respond_stream())."},
    {Py_tp_new, writer_new_forbidden},
    {Py_tp_dealloc, writer_dealloc},
    {Py_tp_traverse, writer_traverse},
    {Py_tp_methods, writer_methods},
    {Py_tp_getset, writer_getset},
    {Py_tp_repr, writer_repr},
    {0, NULL},
};

PyType_Spec pymx_writer_spec = {
    .name = "mummyx.ResponseStream",
    .basicsize = sizeof(MxResponseStreamObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = writer_slots,
};

/* Answers with a streamed body; the stream (one reference) in *out. -1 with an exception. */
static int start(MxRequestObject *self, int status, PyObject *headers, mx_stream_t **out) {
    pymx_resp_headers_t h;
    if (pymx_resp_headers_init(&h) < 0)
        return -1;
    int rc = -1, bad = -1;
    if (pymx_resp_headers_collect(&h, headers) < 0)
        goto done;
    int crc = mx_req_respond_stream(self->req, status, h.items, h.n, &bad, out);
    if (crc == MX_EINVAL && bad < 0)
        PyErr_Format(PyExc_ValueError, "status %d has no body to stream", status);
    else if (crc != 0)
        pymx_resp_headers_raise(pymx_state_of(self), &h, crc, bad);
    else
        rc = 0;
done:
    pymx_resp_headers_release(&h);
    return rc;
}

/* respond_stream(status=200, headers=None) -> ResponseStream */
PyObject *pymx_request_respond_stream(MxRequestObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"status", "headers", NULL};
    int status = 200;
    PyObject *headers = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|iO:respond_stream", kwlist, &status, &headers))
        return NULL;
    if (status < 200 || status > 999) {
        PyErr_Format(PyExc_ValueError, "invalid status %d: must be between 200 and 999", status);
        return NULL;
    }
    mx_stream_t *st;
    if (start(self, status, headers, &st) < 0)
        return NULL;
    PyObject *w = writer_new(pymx_state_of(self), st);
    if (!w) {
        mx_stream_abort(st);
        mx_stream_decref(st);
    }
    return w;
}

/* Calls it.close() when it has one (a generator's finally blocks run), keeping any exception
 * already set. */
static void close_iterator(PyObject *it) {
    PyObject *exc = PyErr_GetRaisedException_compat();
    PyObject *r = PyObject_CallMethod(it, "close", NULL);
    if (r)
        Py_DECREF(r);
    else if (PyErr_ExceptionMatches(PyExc_AttributeError))
        PyErr_Clear();
    else
        PyErr_WriteUnraisable(it);
    if (exc)
        PyErr_SetRaisedException_compat(exc);
}

int pymx_respond_iterator(MxRequestObject *self, PyObject *it, int status, PyObject *headers) {
    mx_state *state = pymx_state_of(self);
    /* The first chunk decides the default Content-Type: text for str, octet-stream for bytes. */
    PyObject *first = PyIter_Next(it);
    if (!first && PyErr_Occurred()) {
        close_iterator(it);
        return -1; /* nothing went out: the handler's error path answers 500 */
    }
    PyObject *h = headers ? Py_NewRef(headers)
                          : Py_BuildValue("[(ss)]", "Content-Type",
                                          first && PyUnicode_Check(first)
                                              ? "text/plain; charset=utf-8"
                                              : "application/octet-stream");
    mx_stream_t *st = NULL;
    int rc = h ? start(self, status, h, &st) : -1;
    Py_XDECREF(h);
    if (rc < 0) {
        Py_XDECREF(first);
        close_iterator(it);
        return -1;
    }
    PyObject *chunk = first;
    while (chunk) {
        int wrc = write_chunk(state, st, chunk);
        Py_DECREF(chunk);
        if (wrc < 0)
            break;
        chunk = PyIter_Next(it);
    }
    if (PyErr_Occurred()) {
        /* The iterator failed, or the client left: the head is out, so no 500 can follow; cut
         * the connection so the client sees a truncated body, and report the error. */
        mx_stream_abort(st);
        close_iterator(it);
        mx_stream_decref(st);
        if (PyErr_ExceptionMatches(state->connection_closed)) {
            PyErr_Clear(); /* the client went away: nothing to report */
            return 0;
        }
        return -1;
    }
    mx_sse_close(st);
    close_iterator(it);
    mx_stream_decref(st);
    return 0;
}
