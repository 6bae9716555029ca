/*
 * upgrade.c: the Request methods that turn a request into a long-lived stream instead of a
 * plain response: respond_sse() (200 with an event stream, then mummyx.SSEStream) and
 * upgrade_to_websocket() (the 101 handshake, then mummyx.WebSocket). The core answers the
 * request and hands back an mx_stream_t; this file wraps it in its Python type, or closes it
 * when that fails so the client is not left waiting. Runs on the handler's thread, GIL held.
 */
#include "module.h"

#include <string.h>

/* At most this many subprotocols per upgrade: a route lists a few, never more. */
#define MAX_PROTOCOLS 32

/* respond_sse(headers=None) -> SSEStream */
PyObject *pymx_request_respond_sse(MxRequestObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"headers", NULL};
    PyObject *headers = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:respond_sse", kwlist, &headers))
        return NULL;
    pymx_resp_headers_t h;
    if (pymx_resp_headers_init(&h) < 0)
        return NULL;
    PyObject *result = NULL;
    if (pymx_resp_headers_collect(&h, headers) < 0)
        goto done;
    int bad = -1;
    mx_stream_t *st = NULL;
    int rc = mx_req_respond_sse(self->req, h.items, h.n, &bad, &st);
    if (rc != 0) {
        pymx_resp_headers_raise(pymx_state_of(self), &h, rc, bad);
        goto done;
    }
    /* A reconnecting client says where it stopped (WHATWG HTML 9.2.4, Last-Event-ID). */
    const mx_header_t *lei = mx_req_header(self->req, "last-event-id", 13);
    PyObject *id = lei ? PyUnicode_DecodeUTF8(lei->value, (Py_ssize_t)lei->value_len, "replace")
                       : Py_NewRef(Py_None);
    if (id) {
        result = pymx_sse_new(self->core, st, id);
        Py_DECREF(id);
    }
    if (!result) {
        mx_sse_close(st);
        mx_stream_decref(st);
    }
done:
    pymx_resp_headers_release(&h);
    return result;
}

/* The handler a WebSocket will run: the one given, else the server's; NULL with an error. */
static PyObject *ws_handler_for(MxRequestObject *self, PyObject *handler) {
    if (handler == Py_None)
        handler = self->core->ws_handler;
    if (!handler) {
        PyErr_SetString(PyExc_RuntimeError,
                        "no WebSocket handler: pass upgrade_to_websocket(handler=...) or "
                        "Server(..., websocket_handler=...)");
        return NULL;
    }
    if (!PyCallable_Check(handler)) {
        PyErr_SetString(PyExc_TypeError, "the WebSocket handler must be callable");
        return NULL;
    }
    return handler;
}

/* Fills names[] (pointing into the items of *seq, which the caller releases) from protocols.
 * Returns how many, or -1 with an error. */
static Py_ssize_t protocol_names(PyObject *protocols, const char **names, PyObject **seq) {
    *seq = NULL;
    if (protocols == Py_None)
        return 0;
    if (PyUnicode_Check(protocols)) {
        PyErr_SetString(PyExc_TypeError, "protocols must be a list of str, not a str");
        return -1;
    }
    *seq = PySequence_Fast(protocols, "protocols must be a list of str");
    if (!*seq)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(*seq);
    if (n > MAX_PROTOCOLS) {
        PyErr_SetString(PyExc_ValueError, "at most 32 protocols");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PySequence_Fast_GET_ITEM(*seq, i);
        names[i] = PyUnicode_Check(p) ? PyUnicode_AsUTF8(p) : NULL;
        if (!names[i]) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "protocols must be a list of str");
            return -1;
        }
    }
    return n;
}

/* upgrade_to_websocket(handler=None, protocols=None) -> WebSocket */
PyObject *pymx_request_upgrade(MxRequestObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"handler", "protocols", NULL};
    PyObject *handler = Py_None, *protocols = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:upgrade_to_websocket", kwlist, &handler,
                                     &protocols))
        return NULL;
    handler = ws_handler_for(self, handler);
    if (!handler)
        return NULL;
    const char *names[MAX_PROTOCOLS];
    PyObject *seq;
    Py_ssize_t nprot = protocol_names(protocols, names, &seq);
    if (nprot < 0) {
        Py_XDECREF(seq);
        return NULL;
    }
    int selected = -1;
    mx_stream_t *st = NULL;
    int rc = mx_req_upgrade_ws(self->req, names, (size_t)nprot, &selected, &st);
    PyObject *sub = NULL;
    if (rc == 0)
        sub = selected >= 0 ? PyUnicode_FromString(names[selected]) : Py_NewRef(Py_None);
    Py_XDECREF(seq);
    mx_state *state = pymx_state_of(self);
    if (rc == 400 || rc == 426) {
        /* The core answered the bad handshake itself (RFC 6455 4.2.2, 4.4). */
        PyErr_Format(state->handshake_refused,
                     "not a valid WebSocket handshake; the client was answered %d", rc);
        return NULL;
    }
    if (rc != 0)
        return pymx_raise(state, rc, rc == MX_EALREADY ? NULL : "cannot upgrade");
    PyObject *addr = sub ? PyUnicode_FromString(self->req->remote_addr) : NULL;
    PyObject *ws = addr ? pymx_websocket_new(self->core, st, handler, addr, sub) : NULL;
    Py_XDECREF(addr);
    Py_XDECREF(sub);
    if (!ws) {
        mx_ws_close(st, 1011, NULL, 0);
        mx_stream_decref(st);
    }
    return ws;
}
