/*
 * request.c: mummyx.Request. Wraps one mx_req_t and builds its Python attributes lazily, on first
 * access, so a handler that reads nothing pays for nothing. respond() turns Python headers and
 * body into the core's arrays and hands them to mx_req_respond, which may run on any thread.
 * Runs with the GIL held, on whatever thread the handler uses.
 */
#include "module.h"

#include <string.h>

PyObject *pymx_request_new(MxCoreObject *core, mx_req_t *req) {
    MxRequestObject *self = PyObject_GC_New(MxRequestObject, core->request_type);
    if (!self)
        return NULL;
    mx_req_incref(req);
    self->req = req;
    Py_INCREF(core);
    self->core = core;
    self->method = self->path = self->uri = self->query = NULL;
    self->path_params = self->headers = self->body = self->dict = NULL;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int request_traverse(MxRequestObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->core);
    Py_VISIT(self->query);
    Py_VISIT(self->path_params);
    Py_VISIT(self->headers);
    Py_VISIT(self->dict);
    return 0;
}

static int request_clear(MxRequestObject *self) {
    Py_CLEAR(self->core);
    Py_CLEAR(self->method);
    Py_CLEAR(self->path);
    Py_CLEAR(self->uri);
    Py_CLEAR(self->query);
    Py_CLEAR(self->path_params);
    Py_CLEAR(self->headers);
    Py_CLEAR(self->body);
    Py_CLEAR(self->dict);
    return 0;
}

static void request_dealloc(MxRequestObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    request_clear(self);
    if (self->req) {
        mx_req_decref(self->req);
        self->req = NULL;
    }
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyObject *latin1(const char *s, size_t n) {
    return PyUnicode_DecodeLatin1(s, (Py_ssize_t)n, NULL);
}

static PyObject *get_method(MxRequestObject *self, void *c) {
    (void)c;
    if (!self->method) {
        mx_req_t *r = self->req;
        self->method = latin1(r->method ? r->method : "", r->method_len);
        if (self->method)
            PyUnicode_InternInPlace(&self->method);
    }
    Py_XINCREF(self->method);
    return self->method;
}

static PyObject *get_uri(MxRequestObject *self, void *c) {
    (void)c;
    if (!self->uri)
        self->uri = latin1(self->req->target ? self->req->target : "", self->req->target_len);
    Py_XINCREF(self->uri);
    return self->uri;
}

static PyObject *get_path(MxRequestObject *self, void *c) {
    (void)c;
    if (!self->path) {
        mx_req_t *r = self->req;
        size_t n = r->path_len;
        if (!r->path || n == 0)
            return PyUnicode_FromStringAndSize("", 0);
        char stackbuf[512];
        char *buf = n <= sizeof(stackbuf) ? stackbuf : PyMem_Malloc(n);
        if (!buf)
            return PyErr_NoMemory();
        size_t dn = mx_percent_decode(r->path, n, buf, 0);
        self->path = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)dn, "replace");
        if (buf != stackbuf)
            PyMem_Free(buf);
    }
    Py_XINCREF(self->path);
    return self->path;
}

static PyObject *get_query(MxRequestObject *self, void *c) {
    (void)c;
    if (!self->query) {
        mx_req_t *r = self->req;
        PyObject *qs = latin1(r->query ? r->query : "", r->query ? r->query_len : 0);
        if (!qs)
            return NULL;
        self->query = PyObject_CallOneArg(self->core->make_query, qs);
        Py_DECREF(qs);
    }
    Py_XINCREF(self->query);
    return self->query;
}

static PyObject *get_path_params(MxRequestObject *self, void *c) {
    (void)c;
    if (!self->path_params) {
        mx_req_t *r = self->req;
        PyObject *d = PyDict_New();
        if (!d)
            return NULL;
        for (size_t i = 0; i < r->num_params; i++) {
            const mx_route_param_t *p = &r->params[i];
            PyObject *k = PyUnicode_DecodeUTF8(p->name, (Py_ssize_t)p->name_len, "strict");
            PyObject *v = PyUnicode_DecodeUTF8(r->param_buf + p->value_off,
                                               (Py_ssize_t)p->value_len, "replace");
            if (!k || !v || PyDict_SetItem(d, k, v) < 0) {
                Py_XDECREF(k);
                Py_XDECREF(v);
                Py_DECREF(d);
                return NULL;
            }
            Py_DECREF(k);
            Py_DECREF(v);
        }
        self->path_params = d;
    }
    Py_INCREF(self->path_params);
    return self->path_params;
}

static PyObject *get_headers(MxRequestObject *self, void *c) {
    (void)c;
    if (!self->headers) {
        mx_req_t *r = self->req;
        PyObject *list = PyList_New((Py_ssize_t)r->num_headers);
        if (!list)
            return NULL;
        for (size_t i = 0; i < r->num_headers; i++) {
            const mx_header_t *h = &r->headers[i];
            PyObject *pair = Py_BuildValue("(NN)", latin1(h->name, h->name_len),
                                           latin1(h->value, h->value_len));
            if (!pair) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, pair);
        }
        self->headers = PyObject_CallOneArg(self->core->make_headers, list);
        Py_DECREF(list);
    }
    Py_XINCREF(self->headers);
    return self->headers;
}

static PyObject *get_body(MxRequestObject *self, void *c) {
    (void)c;
    if (mx_req_streamed(self->req)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this route streams its body (stream=True): use request.read(), "
                        "iter_body() or save_body()");
        return NULL;
    }
    if (!self->body)
        self->body = PyBytes_FromStringAndSize(self->req->body ? self->req->body : "",
                                               (Py_ssize_t)self->req->body_len);
    Py_XINCREF(self->body);
    return self->body;
}

static PyObject *get_remote_addr(MxRequestObject *self, void *c) {
    (void)c;
    return PyUnicode_FromString(self->req->remote_addr);
}

static PyObject *get_http_version(MxRequestObject *self, void *c) {
    (void)c;
    return PyUnicode_FromString(self->req->minor_version == 0 ? "HTTP/1.0" : "HTTP/1.1");
}

static PyObject *get_responded(MxRequestObject *self, void *c) {
    (void)c;
    return PyBool_FromLong(atomic_load(&self->req->responded));
}

static PyObject *get_status(MxRequestObject *self, void *c) {
    (void)c;
    if (!atomic_load(&self->req->responded))
        Py_RETURN_NONE;
    return PyLong_FromLong(self->req->status);
}

static PyObject *get_response_length(MxRequestObject *self, void *c) {
    (void)c;
    return PyLong_FromSize_t(self->req->resp_body_len);
}

static PyObject *get_allow(MxRequestObject *self, void *c) {
    (void)c;
    mx_req_t *r = self->req;
    if (r->kind != MX_REQ_METHOD_NOT_ALLOWED)
        Py_RETURN_NONE;
    return latin1(r->allow, r->allow_len);
}

/* ---- respond ---- */

typedef struct {
    mx_resp_header_t *items;
    size_t n, cap;
    mx_resp_header_t stack[24];
    PyObject *keep; /* list of the objects whose UTF-8 buffers items point into */
    int has_ctype;
} hdrs_t;

static int hdrs_push(hdrs_t *h, PyObject *name, PyObject *value) {
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "header names must be str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    PyObject *v;
    if (PyUnicode_Check(value)) {
        Py_INCREF(value);
        v = value;
    } else if (PyLong_Check(value)) {
        v = PyObject_Str(value);
    } else if (PyBytes_Check(value)) {
        v = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
    } else {
        PyErr_Format(PyExc_TypeError, "header values must be str, int or bytes, not %.100s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    if (!v)
        return -1;
    if (PyList_Append(h->keep, v) < 0) {
        Py_DECREF(v);
        return -1;
    }
    Py_DECREF(v); /* the list keeps it alive */
    if (h->n == h->cap) {
        size_t cap = h->cap * 2;
        mx_resp_header_t *ni = PyMem_Malloc(cap * sizeof(*ni));
        if (!ni) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(ni, h->items, h->n * sizeof(*ni));
        if (h->items != h->stack)
            PyMem_Free(h->items);
        h->items = ni;
        h->cap = cap;
    }
    Py_ssize_t nl, vl;
    const char *ns = PyUnicode_AsUTF8AndSize(name, &nl);
    const char *vs = PyUnicode_AsUTF8AndSize(v, &vl);
    if (!ns || !vs)
        return -1;
    mx_resp_header_t *it = &h->items[h->n++];
    it->name = ns;
    it->name_len = (size_t)nl;
    it->value = vs;
    it->value_len = (size_t)vl;
    if (mx_http1_name_eq(ns, (size_t)nl, "content-type", 12))
        h->has_ctype = 1;
    return 0;
}

static int hdrs_collect(hdrs_t *h, PyObject *headers) {
    if (headers == NULL || headers == Py_None)
        return 0;
    if (PyDict_Check(headers)) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(headers, &pos, &k, &v))
            if (hdrs_push(h, k, v) < 0)
                return -1;
        return 0;
    }
    PyObject *items = headers;
    Py_INCREF(items);
    if (!PyList_Check(headers) && !PyTuple_Check(headers)) {
        if (PyMapping_Check(headers) && PyObject_HasAttrString(headers, "items")) {
            Py_DECREF(items);
            items = PyObject_CallMethod(headers, "items", NULL);
            if (!items)
                return -1;
        }
    }
    PyObject *it = PyObject_GetIter(items);
    Py_DECREF(items);
    if (!it) {
        PyErr_SetString(PyExc_TypeError, "headers must be a mapping or a list of (name, value)");
        return -1;
    }
    PyObject *pair;
    while ((pair = PyIter_Next(it))) {
        PyObject *k, *v;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyObject *t = PySequence_Tuple(pair);
            Py_DECREF(pair);
            if (!t || PyTuple_GET_SIZE(t) != 2) {
                Py_XDECREF(t);
                Py_DECREF(it);
                PyErr_SetString(PyExc_TypeError, "each header must be a (name, value) pair");
                return -1;
            }
            pair = t;
        }
        k = PyTuple_GET_ITEM(pair, 0);
        v = PyTuple_GET_ITEM(pair, 1);
        int rc = hdrs_push(h, k, v);
        Py_DECREF(pair);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* Bodies at least this large are compressed and copied without the GIL. */
#define NOGIL_BODY 65536

PyObject *pymx_respond_impl(MxRequestObject *self, int status, PyObject *headers, PyObject *body) {
    hdrs_t h;
    h.items = h.stack;
    h.n = 0;
    h.cap = sizeof(h.stack) / sizeof(h.stack[0]);
    h.has_ctype = 0;
    h.keep = PyList_New(0);
    if (!h.keep)
        return NULL;
    PyObject *result = NULL;
    Py_buffer view;
    int have_view = 0;
    const char *data = "";
    size_t len = 0;
    PyObject *body_ref = NULL;
    if (hdrs_collect(&h, headers) < 0)
        goto done;
    if (body == NULL || body == Py_None) {
        /* empty body */
    } else if (PyUnicode_Check(body)) {
        Py_ssize_t n;
        data = PyUnicode_AsUTF8AndSize(body, &n);
        if (!data)
            goto done;
        len = (size_t)n;
        /* a str body without a type is text; not on statuses that carry no body (204, 304) */
        if (!h.has_ctype && status != 204 && status != 304 && !(status >= 100 && status < 200)) {
            static const char ct[] = "text/plain; charset=utf-8";
            if (h.n == h.cap) { /* rare: make room through the general path */
                PyObject *k = PyUnicode_FromString("Content-Type");
                PyObject *v = PyUnicode_FromString(ct);
                int rc = (k && v) ? hdrs_push(&h, k, v) : -1;
                Py_XDECREF(k);
                Py_XDECREF(v);
                if (rc < 0)
                    goto done;
            } else {
                mx_resp_header_t *it = &h.items[h.n++];
                it->name = "Content-Type";
                it->name_len = 12;
                it->value = ct;
                it->value_len = sizeof(ct) - 1;
            }
        }
        Py_INCREF(body);
        body_ref = body;
    } else if (PyBytes_Check(body)) {
        data = PyBytes_AS_STRING(body);
        len = (size_t)PyBytes_GET_SIZE(body);
        Py_INCREF(body);
        body_ref = body;
    } else if (PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) == 0) {
        have_view = 1;
        data = view.buf;
        len = (size_t)view.len;
    } else {
        PyErr_Format(PyExc_TypeError, "body must be bytes or str, not %.100s",
                     Py_TYPE(body)->tp_name);
        goto done;
    }
    int bad = -1, rc;
    /* Compression may run: do it, and any large copy, without the GIL. */
    if (len >= NOGIL_BODY || (len > MX_COMPRESS_MIN_LEN && self->req->accept_enc != MX_ENC_NONE)) {
        /* Everything the call reads is kept alive by h.keep, body_ref or view. */
        Py_BEGIN_ALLOW_THREADS
        rc = mx_req_respond(self->req, status, h.items, h.n, data, len, &bad);
        Py_END_ALLOW_THREADS
    } else {
        rc = mx_req_respond(self->req, status, h.items, h.n, data, len, &bad);
    }
    if (rc == MX_EALREADY) {
        PyErr_SetString(PyExc_RuntimeError, "a response was already sent for this request");
    } else if (rc == MX_EINVAL && bad >= 0) {
        const mx_resp_header_t *b = &h.items[bad];
        if (mx_http1_name_eq(b->name, b->name_len, "transfer-encoding", 17))
            PyErr_SetString(PyExc_ValueError,
                            "Transfer-Encoding is managed by the server and cannot be set");
        else
            PyErr_Format(PyExc_ValueError, "invalid response header %R: %R",
                         PyUnicode_DecodeUTF8(b->name, (Py_ssize_t)b->name_len, "replace"),
                         PyUnicode_DecodeUTF8(b->value, (Py_ssize_t)b->value_len, "replace"));
    } else if (rc == MX_EINVAL) {
        PyErr_Format(PyExc_ValueError, "invalid status %d: must be between 200 and 999", status);
    } else if (rc != 0) {
        pymx_raise_core_error(rc, "cannot respond");
    } else {
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    if (have_view)
        PyBuffer_Release(&view);
    Py_XDECREF(body_ref);
    if (h.items != h.stack)
        PyMem_Free(h.items);
    Py_DECREF(h.keep);
    return result;
}

/* Maps an error of mx_req_read/mx_req_save_body to an exception. */
static PyObject *body_error(MxRequestObject *self, int rc) {
    if (rc == MX_ECLOSED)
        PyErr_SetString(self->core->connection_closed,
                        "the client closed the connection before sending the whole body");
    else if (rc == MX_EINVAL)
        PyErr_SetString(self->core->connection_closed,
                        "the request body was malformed or too large; the client was answered");
    else if (rc == MX_ESYS)
        PyErr_SetFromErrno(PyExc_OSError);
    else
        pymx_raise_core_error(rc, "cannot read the body");
    return NULL;
}

/* read(n=-1) -> bytes: up to n bytes of the body (all the rest when n < 0); b"" at the end. */
static PyObject *request_read(MxRequestObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"n", NULL};
    Py_ssize_t n = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:read", kwlist, &n))
        return NULL;
    mx_req_t *r = self->req;
    if (n == 0)
        return PyBytes_FromStringAndSize("", 0);
    if (n > 0) {
        PyObject *out = PyBytes_FromStringAndSize(NULL, n);
        if (!out)
            return NULL;
        ssize_t got;
        Py_BEGIN_ALLOW_THREADS
        got = mx_req_read(r, PyBytes_AS_STRING(out), (size_t)n);
        Py_END_ALLOW_THREADS
        if (got < 0) {
            Py_DECREF(out);
            return body_error(self, (int)got);
        }
        if (got < n && _PyBytes_Resize(&out, (Py_ssize_t)got) < 0)
            return NULL;
        return out;
    }
    /* everything: grow a buffer (the route's max_body_len bounds it) */
    size_t cap = 65536, len = 0;
    char *buf = PyMem_Malloc(cap);
    if (!buf)
        return PyErr_NoMemory();
    for (;;) {
        if (len == cap) {
            char *nb = PyMem_Realloc(buf, cap * 2);
            if (!nb) {
                PyMem_Free(buf);
                return PyErr_NoMemory();
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t got;
        Py_BEGIN_ALLOW_THREADS
        got = mx_req_read(r, buf + len, cap - len);
        Py_END_ALLOW_THREADS
        if (got < 0) {
            PyMem_Free(buf);
            return body_error(self, (int)got);
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    PyObject *out = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
    PyMem_Free(buf);
    return out;
}

/* iter_body(chunk_size=65536): an iterator of body chunks (bytes), ending at the body's end. */
static PyObject *request_iter_body(MxRequestObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"chunk_size", NULL};
    Py_ssize_t size = 65536;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:iter_body", kwlist, &size))
        return NULL;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "chunk_size must be positive");
        return NULL;
    }
    return pymx_chunk_iter((PyObject *)self, size);
}

/* save_body(path) -> int: writes the rest of the body to path (atomically), in C, no GIL. */
static PyObject *request_save_body(MxRequestObject *self, PyObject *arg) {
    PyObject *bytes;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    uint64_t written = 0;
    int rc;
    mx_req_t *r = self->req;
    const char *path = PyBytes_AS_STRING(bytes);
    Py_BEGIN_ALLOW_THREADS
    rc = mx_req_save_body(r, path, &written);
    Py_END_ALLOW_THREADS
    if (rc == MX_ESYS) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
        Py_DECREF(bytes);
        return NULL;
    }
    Py_DECREF(bytes);
    if (rc != 0)
        return body_error(self, rc);
    return PyLong_FromUnsignedLongLong(written);
}

/* respond_sse(headers=None) -> SSEStream */
static PyObject *request_respond_sse(MxRequestObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"headers", NULL};
    PyObject *headers = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:respond_sse", kwlist, &headers))
        return NULL;
    hdrs_t h;
    h.items = h.stack;
    h.n = 0;
    h.cap = sizeof(h.stack) / sizeof(h.stack[0]);
    h.has_ctype = 0;
    h.keep = PyList_New(0);
    if (!h.keep)
        return NULL;
    PyObject *result = NULL;
    if (hdrs_collect(&h, headers) < 0)
        goto done;
    int bad = -1;
    mx_stream_t *st = NULL;
    int rc = mx_req_respond_sse(self->req, h.items, h.n, &bad, &st);
    if (rc == MX_EALREADY) {
        PyErr_SetString(PyExc_RuntimeError, "a response was already sent for this request");
    } else if (rc == MX_EINVAL && bad >= 0) {
        const mx_resp_header_t *b = &h.items[bad];
        PyErr_Format(PyExc_ValueError, "invalid response header %R: %R",
                     PyUnicode_DecodeUTF8(b->name, (Py_ssize_t)b->name_len, "replace"),
                     PyUnicode_DecodeUTF8(b->value, (Py_ssize_t)b->value_len, "replace"));
    } else if (rc != 0) {
        pymx_raise_core_error(rc, "cannot respond");
    } else {
        const mx_header_t *lei = mx_req_header(self->req, "last-event-id", 13);
        PyObject *id = lei ? PyUnicode_DecodeUTF8(lei->value, (Py_ssize_t)lei->value_len, "replace")
                           : (Py_INCREF(Py_None), Py_None);
        if (id) {
            result = pymx_sse_new(self->core, st, id);
            Py_DECREF(id);
        }
        if (!result)
            mx_sse_close(st);
        if (!result)
            mx_stream_decref(st);
    }
done:
    if (h.items != h.stack)
        PyMem_Free(h.items);
    Py_DECREF(h.keep);
    return result;
}

/* upgrade_to_websocket(handler=None, protocols=None) -> WebSocket */
static PyObject *request_upgrade(MxRequestObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"handler", "protocols", NULL};
    PyObject *handler = Py_None, *protocols = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:upgrade_to_websocket", kwlist, &handler,
                                     &protocols))
        return NULL;
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
    const char *names[32];
    size_t nprot = 0;
    PyObject *seq = NULL;
    if (protocols != Py_None) {
        if (PyUnicode_Check(protocols)) {
            PyErr_SetString(PyExc_TypeError, "protocols must be a list of str, not a str");
            return NULL;
        }
        seq = PySequence_Fast(protocols, "protocols must be a list of str");
        if (!seq)
            return NULL;
        if (PySequence_Fast_GET_SIZE(seq) > 32) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "at most 32 protocols");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            PyObject *p = PySequence_Fast_GET_ITEM(seq, i);
            names[i] = PyUnicode_Check(p) ? PyUnicode_AsUTF8(p) : NULL;
            if (!names[i]) {
                Py_DECREF(seq);
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "protocols must be a list of str");
                return NULL;
            }
            nprot++;
        }
    }
    int selected = -1;
    mx_stream_t *st = NULL;
    int rc = mx_req_upgrade_ws(self->req, names, nprot, &selected, &st);
    PyObject *sub = NULL;
    if (rc == 0) {
        if (selected >= 0)
            sub = PyUnicode_FromString(names[selected]);
        else
            sub = (Py_INCREF(Py_None), Py_None);
    }
    Py_XDECREF(seq);
    if (rc == 400 || rc == 426) {
        PyErr_Format(self->core->handshake_refused,
                     "not a valid WebSocket handshake; the client was answered %d", rc);
        return NULL;
    }
    if (rc == MX_EALREADY) {
        PyErr_SetString(PyExc_RuntimeError, "a response was already sent for this request");
        return NULL;
    }
    if (rc != 0) {
        pymx_raise_core_error(rc, "cannot upgrade");
        return NULL;
    }
    PyObject *addr = sub ? get_remote_addr(self, NULL) : NULL;
    PyObject *ws = addr ? pymx_websocket_new(self->core, st, handler, addr, sub) : NULL;
    Py_XDECREF(addr);
    Py_XDECREF(sub);
    if (!ws) {
        mx_ws_close(st, 1011, NULL, 0);
        mx_stream_decref(st);
    }
    return ws;
}

/* respond(status, headers=None, body=b"") with fast argument parsing: this is the hot path. */
static PyObject *request_respond(MxRequestObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    PyObject *a[3] = {NULL, NULL, NULL};
    static const char *names[3] = {"status", "headers", "body"};
    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "respond() takes at most 3 positional arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        a[i] = args[i];
    if (kwnames) {
        Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nk; i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            int slot = -1;
            for (int j = 0; j < 3; j++)
                if (PyUnicode_CompareWithASCIIString(k, names[j]) == 0)
                    slot = j;
            if (slot < 0) {
                PyErr_Format(PyExc_TypeError, "respond() got an unexpected keyword argument %R",
                             k);
                return NULL;
            }
            if (a[slot]) {
                PyErr_Format(PyExc_TypeError, "respond() got multiple values for argument '%s'",
                             names[slot]);
                return NULL;
            }
            a[slot] = args[nargs + i];
        }
    }
    if (!a[0]) {
        PyErr_SetString(PyExc_TypeError, "respond() missing required argument 'status'");
        return NULL;
    }
    if (!PyLong_Check(a[0])) {
        PyErr_Format(PyExc_TypeError, "status must be int, not %.100s", Py_TYPE(a[0])->tp_name);
        return NULL;
    }
    long status = PyLong_AsLong(a[0]);
    if (status == -1 && PyErr_Occurred())
        return NULL;
    if (status < 200 || status > 999) {
        PyErr_Format(PyExc_ValueError, "invalid status %ld: must be between 200 and 999", status);
        return NULL;
    }
    return pymx_respond_impl(self, (int)status, a[1], a[2]);
}

/* A handler returned a value instead of responding: str as text, bytes as octet-stream, dict or
 * list as JSON. Returns 0, or -1 with an exception set (a TypeError for other types). */
int pymx_respond_value(MxRequestObject *self, PyObject *value) {
    PyObject *r = NULL;
    if (PyUnicode_Check(value)) {
        r = pymx_respond_impl(self, 200, NULL, value);
    } else if (PyBytes_Check(value) || PyByteArray_Check(value) || PyMemoryView_Check(value)) {
        PyObject *h = Py_BuildValue("[(ss)]", "Content-Type", "application/octet-stream");
        if (!h)
            return -1;
        r = pymx_respond_impl(self, 200, h, value);
        Py_DECREF(h);
    } else if (PyDict_Check(value) || PyList_Check(value)) {
        PyObject *s = PyObject_CallOneArg(self->core->json_dumps, value);
        if (!s)
            return -1;
        PyObject *h = Py_BuildValue("[(ss)]", "Content-Type", "application/json");
        if (h)
            r = pymx_respond_impl(self, 200, h, s);
        Py_XDECREF(h);
        Py_DECREF(s);
    } else {
        PyErr_Format(PyExc_TypeError,
                     "handler returned %.100s; return None (after respond()), str, bytes, dict "
                     "or list",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* "<Request GET /path?query>", the target cut at 200 bytes. Built from two strings: Python
 * before 3.12 does not take "%.*s" in PyUnicode_FromFormat (it printed the format itself). */
static PyObject *request_repr(MxRequestObject *self) {
    mx_req_t *r = self->req;
    size_t tlen = r->target_len > 200 ? 200 : r->target_len;
    PyObject *res = NULL;
    PyObject *method = latin1(r->method ? r->method : "", r->method_len);
    PyObject *target = method ? latin1(r->target ? r->target : "", tlen) : NULL;
    if (target)
        res = PyUnicode_FromFormat("<Request %U %U>", method, target);
    Py_XDECREF(method);
    Py_XDECREF(target);
    return res;
}

static PyMethodDef request_methods[] = {
    {"read", (PyCFunction)(void (*)(void))request_read, METH_VARARGS | METH_KEYWORDS,
     "read($self, n=-1)\n--\n\nUp to n bytes of the body (the rest when n < 0); b'' at its end. "
     "Blocks without the GIL on a streamed route."},
    {"iter_body", (PyCFunction)(void (*)(void))request_iter_body, METH_VARARGS | METH_KEYWORDS,
     "iter_body($self, chunk_size=65536)\n--\n\nIterate over the body in chunks."},
    {"save_body", (PyCFunction)request_save_body, METH_O,
     "save_body($self, path, /)\n--\n\nWrite the rest of the body to path (a temporary file "
     "renamed into place when complete; nothing is left on failure); return the bytes written."},
    {"multipart", (PyCFunction)(void (*)(void))pymx_request_multipart,
     METH_VARARGS | METH_KEYWORDS,
     "multipart($self, max_parts=1000, max_part_headers=8192)\n--\n\nIterate over the parts "
     "of a multipart/form-data body as they arrive (a MultipartReader of Part objects). Raises "
     "BadRequest (400, 413, 431) for a body that is not a valid form within the limits."},
    {"form", (PyCFunction)(void (*)(void))pymx_request_form, METH_VARARGS | METH_KEYWORDS,
     "form($self, *, max_file_size=None, max_field_size=None)\n--\n\nThe fields and files of "
     "an application/x-www-form-urlencoded or multipart/form-data body, read whole (FormData; "
     "files are kept in memory). Raises BadRequest for an invalid or over-limit form."},
    {"respond_sse", (PyCFunction)(void (*)(void))request_respond_sse, METH_VARARGS | METH_KEYWORDS,
     "respond_sse($self, headers=None)\n--\n\nAnswer 200 with an event stream and return its "
     "SSEStream."},
    {"upgrade_to_websocket", (PyCFunction)(void (*)(void))request_upgrade,
     METH_VARARGS | METH_KEYWORDS,
     "upgrade_to_websocket($self, handler=None, protocols=None)\n--\n\nAnswer the WebSocket handshake "
     "(101) and return the WebSocket."},
    {"respond", (PyCFunction)(void (*)(void))request_respond, METH_FASTCALL | METH_KEYWORDS,
     "respond($self, status, headers=None, body=b'')\n--\n\n"
     "Send the response. headers is a mapping or a list of (name, value) pairs; body is bytes or\n"
     "str (str without a Content-Type gets text/plain; charset=utf-8). Non-blocking and\n"
     "thread-safe; a second call raises RuntimeError."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef request_getset[] = {
    {"method", (getter)get_method, NULL, "the request method, e.g. 'GET'", NULL},
    {"uri", (getter)get_uri, NULL, "the raw request-target as sent", NULL},
    {"path", (getter)get_path, NULL, "the percent-decoded path", NULL},
    {"query", (getter)get_query, NULL, "query parameters: first values; .getall(name)", NULL},
    {"path_params", (getter)get_path_params, NULL, "parameters captured by @name", NULL},
    {"headers", (getter)get_headers, NULL, "case-insensitive multi-mapping of headers", NULL},
    {"body", (getter)get_body, NULL, "the request body (bytes)", NULL},
    {"remote_addr", (getter)get_remote_addr, NULL, "the client's address", NULL},
    {"http_version", (getter)get_http_version, NULL, "'HTTP/1.0' or 'HTTP/1.1'", NULL},
    {"responded", (getter)get_responded, NULL, "True once a response was given", NULL},
    {"status", (getter)get_status, NULL, "the response status, or None before respond()", NULL},
    {"response_length", (getter)get_response_length, NULL, "response body bytes sent", NULL},
    {"allow", (getter)get_allow, NULL, "for a 405 handler: the allowed methods", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef request_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(MxRequestObject, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *request_new_forbidden(PyTypeObject *tp, PyObject *a, PyObject *k) {
    (void)a;
    (void)k;
    PyErr_Format(PyExc_TypeError, "cannot create '%.100s' instances", tp->tp_name);
    return NULL;
}

static PyType_Slot request_slots[] = {
    {Py_tp_doc, "An HTTP request given to a handler. Created by the server only."},
    {Py_tp_new, request_new_forbidden},
    {Py_tp_dealloc, request_dealloc},
    {Py_tp_traverse, request_traverse},
    {Py_tp_clear, request_clear},
    {Py_tp_methods, request_methods},
    {Py_tp_getset, request_getset},
    {Py_tp_members, request_members},
    {Py_tp_repr, request_repr},
    {0, NULL},
};

PyType_Spec pymx_request_spec = {
    .name = "mummyx.Request",
    .basicsize = sizeof(MxRequestObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = request_slots,
};
