/*
 * websocket.c: mummyx.WebSocket, the handle a handler gets from request.upgrade_to_websocket(),
 * and the delivery of a connection's events to its Python handler (on a worker, with the GIL).
 *
 * The core keeps one strong reference to the Python object (mx_stream_user) from the upgrade
 * until the CLOSE event was delivered, so the handler always gets the same object, and users may
 * keep it as a dict key. send() and close() only queue: they never wait for the network.
 */
#include "module.h"

#include <string.h>

#include "ws.h"

PyObject *pymx_websocket_new(MxCoreObject *core, mx_stream_t *st, PyObject *handler,
                             PyObject *remote_addr, PyObject *subprotocol) {
    MxWebSocketObject *self = PyObject_GC_New(MxWebSocketObject, core->websocket_type);
    if (!self)
        return NULL;
    self->st = st; /* the caller's reference moves here */
    Py_INCREF(core);
    self->core = core;
    Py_INCREF(handler);
    self->handler = handler;
    Py_INCREF(remote_addr);
    self->remote_addr = remote_addr;
    Py_INCREF(subprotocol);
    self->subprotocol = subprotocol;
    Py_INCREF(Py_None);
    self->close_code = Py_None;
    Py_INCREF(Py_None);
    self->close_reason = Py_None;
    self->dict = NULL;
    PyObject_GC_Track(self);
    /* the core's reference, dropped after CLOSE */
    Py_INCREF(self);
    mx_stream_set_user(st, self);
    return (PyObject *)self;
}

static int ws_traverse(MxWebSocketObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->core);
    Py_VISIT(self->handler);
    Py_VISIT(self->dict);
    return 0;
}

static int ws_clear(MxWebSocketObject *self) {
    Py_CLEAR(self->handler);
    Py_CLEAR(self->dict);
    return 0;
}

static void ws_dealloc(MxWebSocketObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ws_clear(self);
    Py_CLEAR(self->core);
    Py_CLEAR(self->remote_addr);
    Py_CLEAR(self->subprotocol);
    Py_CLEAR(self->close_code);
    Py_CLEAR(self->close_reason);
    if (self->st)
        mx_stream_decref(self->st);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* send(data, kind=None): str goes as text, bytes-like as binary, unless kind says otherwise. */
/* Payloads from this size on are sent from the Python object's own memory (no copy); below it a
 * copy costs less than the hand-back through the release queue. */
#define BORROW_MIN 4096

static PyObject *ws_send(MxWebSocketObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", "kind", NULL};
    PyObject *data, *kind = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:send", kwlist, &data, &kind))
        return NULL;
    int opcode;
    if (kind == Py_None) {
        opcode = PyUnicode_Check(data) ? MX_WS_OP_TEXT : MX_WS_OP_BINARY;
    } else {
        static const int ops[4] = {MX_WS_OP_TEXT, MX_WS_OP_BINARY, MX_WS_OP_PING, MX_WS_OP_PONG};
        opcode = -1;
        for (int i = 0; i < 4; i++)
            if (PyTuple_GET_ITEM(self->core->ws_kinds, i) == kind)
                opcode = ops[i];
        if (opcode < 0) {
            PyErr_Format(PyExc_TypeError, "kind must be a MessageKind, not %R", kind);
            return NULL;
        }
    }
    Py_buffer view;
    const char *p;
    Py_ssize_t n;
    int have_view = 0;
    if (PyUnicode_Check(data)) {
        p = PyUnicode_AsUTF8AndSize(data, &n);
        if (!p)
            return NULL;
    } else if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) == 0) {
        have_view = 1;
        p = view.buf;
        n = view.len;
        if (opcode == MX_WS_OP_TEXT) {
            mx_utf8_t v;
            mx_utf8_init(&v);
            if (mx_utf8_feed(&v, (const uint8_t *)p, (size_t)n) != 0 || !mx_utf8_complete(&v)) {
                PyBuffer_Release(&view);
                PyErr_SetString(PyExc_ValueError, "a text message must be valid UTF-8");
                return NULL;
            }
        }
    } else {
        PyErr_Format(PyExc_TypeError, "WebSocket data must be str or bytes, not %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    if ((opcode == MX_WS_OP_PING || opcode == MX_WS_OP_PONG) && n > 125) {
        if (have_view)
            PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "ping and pong payloads are limited to 125 bytes");
        return NULL;
    }
    int rc;
    mx_state *st = pymx_state_of(self);
    pymx_release_pending(&st->releases);
    int deflating = mx_ws_deflating(self->st);
    if (!deflating && n >= BORROW_MIN && (PyBytes_CheckExact(data) || PyUnicode_CheckExact(data))) {
        /* An immutable payload worth a copy is not copied: the frame points into data, which the
         * core gives back (pymx_release_later) once it is written. */
        mx_bytes_t *b = mx_bytes_borrow(p, (size_t)n, pymx_release_later, &st->releases,
                                        Py_NewRef(data));
        if (!b) {
            Py_DECREF(data);
            rc = MX_ENOMEM;
        } else {
            rc = mx_ws_send_bytes(self->st, opcode, b);
            mx_bytes_decref(b); /* the frame holds its own reference, or was dropped */
        }
        if (have_view)
            PyBuffer_Release(&view);
        goto sent;
    }
    Py_INCREF(data); /* keeps p alive while the GIL is released */
    /* Building a frame copies the data once; compressing it costs far more. Releasing the GIL
     * means handing it to another worker and taking it back, which costs more than a copy of
     * a medium message, so only compression or a really large copy is worth it. */
    if (n >= 262144 || (n >= 2048 && deflating)) {
        Py_BEGIN_ALLOW_THREADS
        rc = mx_ws_send(self->st, opcode, p, (size_t)n);
        Py_END_ALLOW_THREADS
    } else {
        rc = mx_ws_send(self->st, opcode, p, (size_t)n);
    }
    if (have_view)
        PyBuffer_Release(&view);
    Py_DECREF(data);
sent:
    if (rc != 0)
        return pymx_raise(st, rc,
                          rc == MX_EFULL ? "the WebSocket client stopped reading; connection closed"
                          : rc == MX_ECLOSED ? "the WebSocket is closed"
                                             : "cannot send");
    Py_RETURN_NONE;
}

static PyObject *ws_close(MxWebSocketObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"code", "reason", NULL};
    int code = 1000;
    const char *reason = "";
    Py_ssize_t rlen = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|is#:close", kwlist, &code, &reason, &rlen))
        return NULL;
    if (!(code == 1000 || (code >= 3000 && code <= 4999) ||
          (mx_ws_close_code_valid(code) && code != 1005 && code != 1006 && code != 1015))) {
        PyErr_Format(PyExc_ValueError,
                     "invalid close code %d: use 1000, 1001-1003, 1007-1014 or 3000-4999", code);
        return NULL;
    }
    if (rlen > 123) {
        PyErr_SetString(PyExc_ValueError, "the close reason is limited to 123 bytes of UTF-8");
        return NULL;
    }
    mx_ws_close(self->st, code, reason, (size_t)rlen);
    Py_RETURN_NONE;
}

static PyObject *ws_get_closed(MxWebSocketObject *self, void *c) {
    (void)c;
    return PyBool_FromLong(mx_stream_closed(self->st));
}

static PyObject *ws_get_id(MxWebSocketObject *self, void *c) {
    (void)c;
    return PyLong_FromUnsignedLongLong(mx_stream_id(self->st));
}

#define GETTER(field)                                                                              \
    static PyObject *ws_get_##field(MxWebSocketObject *self, void *c) {                            \
        (void)c;                                                                                   \
        Py_INCREF(self->field);                                                                    \
        return self->field;                                                                        \
    }
GETTER(remote_addr)
GETTER(subprotocol)
GETTER(close_code)
GETTER(close_reason)

static PyObject *ws_repr(MxWebSocketObject *self) {
    return PyUnicode_FromFormat("<WebSocket id=%llu %s%s>",
                                (unsigned long long)mx_stream_id(self->st),
                                mx_stream_closed(self->st) ? "closed" : "open", "");
}

/* ---- event delivery (worker thread, GIL held) ---- */

/* At most this many events per turn: a chatty connection must not keep a worker to itself. */
#define EVENTS_PER_TURN 64

void pymx_websocket_deliver(MxCoreObject *core, mx_stream_t *st) {
    MxWebSocketObject *ws = mx_stream_user(st);
    if (!ws) { /* no Python side (it never got one): drain quietly */
        mx_ws_msg_t *m;
        while ((m = mx_ws_next_event(st)))
            mx_ws_msg_free(m);
        return;
    }
    Py_INCREF(ws);
    for (int i = 0; i < EVENTS_PER_TURN; i++) {
        mx_ws_msg_t *m = mx_ws_next_event(st);
        if (!m)
            break;
        PyObject *message = Py_None, *msg_obj = NULL;
        int ev = m->event;
        if (ev == MX_WS_EVENT_MESSAGE) {
            PyObject *data, *kind;
            if (m->opcode == MX_WS_OP_TEXT) {
                data = PyUnicode_DecodeUTF8((const char *)m->data, (Py_ssize_t)m->len, "strict");
                kind = PyTuple_GET_ITEM(core->ws_kinds, 0);
            } else {
                data = PyBytes_FromStringAndSize((const char *)m->data, (Py_ssize_t)m->len);
                kind = PyTuple_GET_ITEM(core->ws_kinds, m->opcode == MX_WS_OP_BINARY ? 1
                                                         : m->opcode == MX_WS_OP_PING  ? 2
                                                                                       : 3);
            }
            msg_obj = data ? PyObject_CallFunctionObjArgs(core->ws_message, kind, data, NULL) : NULL;
            Py_XDECREF(data);
            if (!msg_obj) {
                PyErr_WriteUnraisable((PyObject *)ws);
                mx_ws_msg_free(m);
                continue;
            }
            message = msg_obj;
        } else if (ev == MX_WS_EVENT_CLOSE) {
            if (mx_ws_was_slow(st)) { /* logged as a warning by on_ws_error */
                PyObject *exc = PyObject_CallFunction(
                    pymx_state_of(ws)->connection_closed, "s",
                    "the client stopped reading: its send queue went over max_send_queue; "
                    "disconnected (1008)");
                PyObject *r2 = exc ? PyObject_CallFunctionObjArgs(core->on_ws_error, (PyObject *)ws,
                                                                  exc, NULL)
                                   : NULL;
                if (!r2)
                    PyErr_WriteUnraisable(core->on_ws_error);
                Py_XDECREF(r2);
                Py_XDECREF(exc);
            }
            char reason[128];
            size_t rl = 0;
            int code = mx_ws_close_code(st, reason, sizeof(reason), &rl);
            PyObject *c = PyLong_FromLong(code);
            PyObject *r = PyUnicode_DecodeUTF8(reason, (Py_ssize_t)rl, "replace");
            if (c && r) {
                Py_SETREF(ws->close_code, c);
                Py_SETREF(ws->close_reason, r);
            } else {
                Py_XDECREF(c);
                Py_XDECREF(r);
                PyErr_Clear();
            }
        }
        mx_ws_msg_free(m);
        PyObject *handler = ws->handler;
        if (handler) {
            PyObject *event = PyTuple_GET_ITEM(core->ws_events, ev);
            PyObject *res = PyObject_CallFunctionObjArgs(handler, (PyObject *)ws, event, message,
                                                         NULL);
            if (!res) {
                PyObject *exc = PyErr_GetRaisedException_compat();
                PyObject *r2 = PyObject_CallFunctionObjArgs(core->on_ws_error, (PyObject *)ws,
                                                            exc ? exc : Py_None, NULL);
                if (!r2)
                    PyErr_WriteUnraisable(core->on_ws_error);
                Py_XDECREF(r2);
                Py_XDECREF(exc);
            }
            Py_XDECREF(res);
        }
        Py_XDECREF(msg_obj);
        if (ev == MX_WS_EVENT_CLOSE) {
            /* The last event: the core lets go of the Python side. */
            Py_CLEAR(ws->handler);
            mx_stream_set_user(st, NULL);
            Py_DECREF(ws); /* the core's reference */
            break;
        }
    }
    Py_DECREF(ws);
}

static PyMethodDef ws_methods[] = {
    {"send", (PyCFunction)(void (*)(void))ws_send, METH_VARARGS | METH_KEYWORDS,
     "send($self, data, kind=None)\n--\n\nQueue a message: str as text, bytes as binary. Thread-safe, "
     "never blocks on the network; raises ConnectionClosed once closed."},
    {"close", (PyCFunction)(void (*)(void))ws_close, METH_VARARGS | METH_KEYWORDS,
     "close($self, code=1000, reason='')\n--\n\nStart the closing handshake. Thread-safe."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ws_getset[] = {
    {"closed", (getter)ws_get_closed, NULL, "True once no more messages can be sent", NULL},
    {"id", (getter)ws_get_id, NULL, "a number unique to this connection within the server", NULL},
    {"remote_addr", (getter)ws_get_remote_addr, NULL, "the client's address", NULL},
    {"subprotocol", (getter)ws_get_subprotocol, NULL, "the selected subprotocol, or None", NULL},
    {"close_code", (getter)ws_get_close_code, NULL, "the peer's close code, after CLOSE", NULL},
    {"close_reason", (getter)ws_get_close_reason, NULL, "the peer's close reason, after CLOSE",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef ws_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(MxWebSocketObject, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *ws_new_forbidden(PyTypeObject *tp, PyObject *a, PyObject *k) {
    (void)a;
    (void)k;
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances: use "
                 "request.upgrade_to_websocket()", tp->tp_name);
    return NULL;
}

static PyType_Slot ws_slots[] = {
    {Py_tp_doc, "A WebSocket connection (from request.upgrade_to_websocket())."},
    {Py_tp_new, ws_new_forbidden},
    {Py_tp_dealloc, ws_dealloc},
    {Py_tp_traverse, ws_traverse},
    {Py_tp_clear, ws_clear},
    {Py_tp_methods, ws_methods},
    {Py_tp_getset, ws_getset},
    {Py_tp_members, ws_members},
    {Py_tp_repr, ws_repr},
    {0, NULL},
};

PyType_Spec pymx_websocket_spec = {
    .name = "mummyx.WebSocket",
    .basicsize = sizeof(MxWebSocketObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = ws_slots,
};
