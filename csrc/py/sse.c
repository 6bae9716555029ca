/*
 * sse.c: mummyx.SSEStream (from request.respond_sse()) and the encoder and fan-out that
 * mummyx.SSEChannel uses. Encoding runs in C once per event; fan-out queues the same bytes to
 * every subscriber. Nothing here waits for the network; wait_closed() waits without the GIL.
 */
#include "module.h"

#include <string.h>

PyObject *pymx_sse_new(MxCoreObject *core, mx_stream_t *st, PyObject *last_event_id) {
    MxSSEStreamObject *self = PyObject_GC_New(MxSSEStreamObject, core->sse_type);
    if (!self)
        return NULL;
    self->st = st; /* the caller's reference moves here */
    Py_INCREF(last_event_id);
    self->last_event_id = last_event_id;
    self->dict = NULL;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int sse_traverse(MxSSEStreamObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    return 0;
}

static int sse_clear(MxSSEStreamObject *self) {
    Py_CLEAR(self->dict);
    return 0;
}

static void sse_dealloc(MxSSEStreamObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    sse_clear(self);
    Py_CLEAR(self->last_event_id);
    if (self->st) {
        /* Nobody can send on it any more: end it, as a file is closed when collected, rather
         * than keep the client waiting on heartbeats forever. */
        mx_sse_close(self->st);
        mx_stream_decref(self->st);
    }
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* UTF-8 of a str for an event field; NULL with an error set (TypeError for anything else). */
static const char *field_utf8(PyObject *o, const char *what, Py_ssize_t *len) {
    if (PyUnicode_Check(o))
        return PyUnicode_AsUTF8AndSize(o, len);
    PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(o)->tp_name);
    return NULL;
}

/* Encodes one event from Python arguments into shared bytes. */
static mx_bytes_t *encode(PyObject *data, PyObject *event, PyObject *id, PyObject *retry,
                          int comment) {
    Py_ssize_t dl = 0, el = 0, il = 0;
    const char *d = field_utf8(data, comment ? "comment text" : "data", &dl);
    if (!d)
        return NULL;
    const char *e = NULL, *i = NULL;
    PyObject *id_text = NULL; /* ids are often counters: an int is sent as its decimal text */
    if (event && event != Py_None && !(e = field_utf8(event, "event", &el)))
        return NULL;
    if (id && id != Py_None) {
        if (PyLong_Check(id) && !PyBool_Check(id)) {
            id_text = PyObject_Str(id);
            if (!id_text)
                return NULL;
            id = id_text;
        }
        if (!(i = field_utf8(id, "id", &il))) {
            Py_XDECREF(id_text);
            return NULL;
        }
    }
    long long r = -1;
    if (retry && retry != Py_None) {
        if (!PyLong_Check(retry) || PyBool_Check(retry)) {
            PyErr_Format(PyExc_TypeError, "retry must be an int (milliseconds), not %.100s",
                         Py_TYPE(retry)->tp_name);
            Py_XDECREF(id_text);
            return NULL;
        }
        r = PyLong_AsLongLong(retry);
        if ((r == -1 && PyErr_Occurred()) || r < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "retry must not be negative");
            Py_XDECREF(id_text);
            return NULL;
        }
    }
    mx_bytes_t *b = NULL;
    int rc = mx_sse_encode(d, (size_t)dl, e, (size_t)el, i, (size_t)il, r, comment, &b);
    Py_XDECREF(id_text);
    if (rc != 0) {
        /* the encoder refuses only a field that would break the framing, or runs out of memory
         * (no stream is involved, hence no module state) */
        int bad_event = e && (memchr(e, '\r', (size_t)el) || memchr(e, '\n', (size_t)el));
        pymx_raise(NULL, rc,
                   bad_event ? "event must not contain CR or LF"
                             : "id must not contain CR, LF or NUL");
        return NULL;
    }
    return b;
}

/* An encoded event kept by SSEChannel (a bytes object) as shared bytes without a copy: the
 * streams write from the object's own memory and the core gives it back once they are done. */
static mx_bytes_t *borrow_payload(mx_state *st, PyObject *payload) {
    pymx_release_pending(&st->releases);
    mx_bytes_t *b = mx_bytes_borrow(PyBytes_AS_STRING(payload), (size_t)PyBytes_GET_SIZE(payload),
                                    pymx_release_later, &st->releases, Py_NewRef(payload));
    if (!b) {
        Py_DECREF(payload);
        PyErr_NoMemory();
    }
    return b;
}

static PyObject *send_bytes(MxSSEStreamObject *self, mx_bytes_t *b) {
    int rc = mx_sse_send(self->st, b);
    mx_bytes_decref(b);
    if (rc != 0)
        return pymx_raise(pymx_state_of(self), rc,
                          rc == MX_EFULL     ? "the SSE client stopped reading; stream closed"
                          : rc == MX_ECLOSED ? "the SSE stream is closed"
                                             : "cannot send");
    Py_RETURN_NONE;
}

static PyObject *sse_send(MxSSEStreamObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", "event", "id", "retry", NULL};
    PyObject *data, *event = Py_None, *id = Py_None, *retry = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OOO:send", kwlist, &data, &event, &id,
                                     &retry))
        return NULL;
    mx_bytes_t *b = encode(data, event, id, retry, 0);
    return b ? send_bytes(self, b) : NULL;
}

static PyObject *sse_comment(MxSSEStreamObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"text", NULL};
    PyObject *text = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|U:comment", kwlist, &text))
        return NULL;
    PyObject *empty = NULL;
    if (!text) {
        empty = PyUnicode_FromString("");
        if (!empty)
            return NULL;
        text = empty;
    }
    mx_bytes_t *b = encode(text, NULL, NULL, NULL, 1);
    Py_XDECREF(empty);
    return b ? send_bytes(self, b) : NULL;
}

/* send_encoded(payload: bytes): queue an event encoded earlier (SSEChannel's replay). */
static PyObject *sse_send_encoded(MxSSEStreamObject *self, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "payload must be bytes");
        return NULL;
    }
    mx_bytes_t *b = borrow_payload(pymx_state_of(self), arg);
    return b ? send_bytes(self, b) : NULL;
}

static PyObject *sse_close(MxSSEStreamObject *self, PyObject *unused) {
    (void)unused;
    mx_sse_close(self->st);
    Py_RETURN_NONE;
}

static PyObject *sse_wait_closed(MxSSEStreamObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"timeout", NULL};
    PyObject *t = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:wait_closed", kwlist, &t))
        return NULL;
    double timeout = -1;
    if (t != Py_None) {
        timeout = PyFloat_AsDouble(t);
        if (timeout == -1.0 && PyErr_Occurred())
            return NULL;
        if (timeout < 0)
            timeout = 0;
    }
    /* Wait in slices so Ctrl-C and other signals reach the main thread's handlers. */
    int done = 0;
    for (;;) {
        double slice = timeout < 0 ? 0.2 : (timeout < 0.2 ? timeout : 0.2);
        Py_BEGIN_ALLOW_THREADS
        done = mx_stream_wait_finished(self->st, slice);
        Py_END_ALLOW_THREADS
        if (done)
            break;
        if (timeout >= 0) {
            timeout -= slice;
            if (timeout <= 0)
                break;
        }
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }
    return PyBool_FromLong(done);
}

static PyObject *sse_get_closed(MxSSEStreamObject *self, void *c) {
    (void)c;
    return PyBool_FromLong(mx_stream_closed(self->st));
}

static PyObject *sse_get_last_event_id(MxSSEStreamObject *self, void *c) {
    (void)c;
    Py_INCREF(self->last_event_id);
    return self->last_event_id;
}

static PyObject *sse_get_id(MxSSEStreamObject *self, void *c) {
    (void)c;
    return PyLong_FromUnsignedLongLong(mx_stream_id(self->st));
}

static PyObject *sse_repr(MxSSEStreamObject *self) {
    return PyUnicode_FromFormat("<SSEStream id=%llu %s>",
                                (unsigned long long)mx_stream_id(self->st),
                                mx_stream_closed(self->st) ? "closed" : "open");
}

/* ---- module functions for SSEChannel ---- */

/* sse_encode(data, event=None, id=None, retry=None) -> bytes */
PyObject *pymx_sse_encode(PyObject *mod, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames) {
    (void)mod;
    if (kwnames || nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "sse_encode(data, event, id, retry)");
        return NULL;
    }
    mx_bytes_t *b = encode(args[0], args[1], args[2], args[3], 0);
    if (!b)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(b->data, (Py_ssize_t)b->len);
    mx_bytes_decref(b);
    return out;
}

/* Queues the same bytes on every open stream of list; returns how many took them. Each send takes
 * its own reference to b. */
static long fanout(mx_state *state, PyObject *list, mx_bytes_t *b) {
    long reached = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *o = PyList_GET_ITEM(list, i);
        if (Py_TYPE(o) != state->sse_type)
            continue;
        if (mx_sse_send(((MxSSEStreamObject *)o)->st, b) == 0)
            reached++;
    }
    return reached;
}

/* sse_fanout(streams: list, payload: bytes) -> int: queues an event encoded earlier (a replay)
 * on every open stream and returns how many took them. */
PyObject *pymx_sse_fanout(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "sse_fanout(streams: list, payload: bytes)");
        return NULL;
    }
    mx_state *state = PyModule_GetState(mod);
    mx_bytes_t *b = borrow_payload(state, args[1]);
    if (!b)
        return NULL;
    long reached = fanout(state, args[0], b);
    mx_bytes_decref(b);
    return PyLong_FromLong(reached);
}

/* sse_publish(streams: list, data, event, id, retry, keep: bool) -> (int, bytes | None): encodes
 * one event and queues those very bytes on every open stream (no copy per publish); returns how
 * many took it, and the encoded bytes when keep is true (a channel's replay history). */
PyObject *pymx_sse_publish(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "sse_publish(streams: list, data, event, id, retry, keep)");
        return NULL;
    }
    int keep = PyObject_IsTrue(args[5]);
    if (keep < 0)
        return NULL;
    mx_bytes_t *b = encode(args[1], args[2], args[3], args[4], 0);
    if (!b)
        return NULL;
    PyObject *payload = keep ? PyBytes_FromStringAndSize(b->data, (Py_ssize_t)b->len)
                             : Py_NewRef(Py_None);
    long reached = payload ? fanout(PyModule_GetState(mod), args[0], b) : 0;
    mx_bytes_decref(b);
    if (!payload)
        return NULL;
    PyObject *out = Py_BuildValue("(lN)", reached, payload);
    return out;
}

static PyMethodDef sse_methods[] = {
    {"send", (PyCFunction)(void (*)(void))sse_send, METH_VARARGS | METH_KEYWORDS,
     "send($self, data, *, event=None, id=None, retry=None)\n--\n\nQueue one event. Thread-safe; never "
     "blocks on the network; raises ConnectionClosed once the stream is closed."},
    {"comment", (PyCFunction)(void (*)(void))sse_comment, METH_VARARGS | METH_KEYWORDS,
     "comment($self, text='')\n--\n\nQueue a comment line (ignored by clients; keeps proxies awake)."},
    {"send_encoded", (PyCFunction)sse_send_encoded, METH_O,
     "send_encoded($self, payload, /)\n--\n\nQueue an event encoded by SSEChannel."},
    {"close", (PyCFunction)sse_close, METH_NOARGS,
     "close($self)\n--\n\nEnd the stream cleanly (the connection may be reused)."},
    {"wait_closed", (PyCFunction)(void (*)(void))sse_wait_closed, METH_VARARGS | METH_KEYWORDS,
     "wait_closed($self, timeout=None)\n--\n\nBlock (without the GIL) until the stream is closed; "
     "return False if the timeout passed first."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sse_getset[] = {
    {"closed", (getter)sse_get_closed, NULL, "True once no more events can be sent", NULL},
    {"last_event_id", (getter)sse_get_last_event_id, NULL,
     "the request's Last-Event-ID header, or None", NULL},
    {"id", (getter)sse_get_id, NULL, "a number unique to this stream within the server", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef sse_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(MxSSEStreamObject, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *sse_new_forbidden(PyTypeObject *tp, PyObject *a, PyObject *k) {
    (void)a;
    (void)k;
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances: use request.respond_sse()",
                 tp->tp_name);
    return NULL;
}

static PyType_Slot sse_slots[] = {
    {Py_tp_doc, "A Server-Sent Events stream (from request.respond_sse())."},
    {Py_tp_new, sse_new_forbidden},
    {Py_tp_dealloc, sse_dealloc},
    {Py_tp_traverse, sse_traverse},
    {Py_tp_clear, sse_clear},
    {Py_tp_methods, sse_methods},
    {Py_tp_getset, sse_getset},
    {Py_tp_members, sse_members},
    {Py_tp_repr, sse_repr},
    {0, NULL},
};

PyType_Spec pymx_sse_spec = {
    .name = "mummyx.SSEStream",
    .basicsize = sizeof(MxSSEStreamObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = sse_slots,
};
