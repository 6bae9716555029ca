/*
 * request.c: mummyx.Request. Wraps one mx_req_t and builds its Python attributes lazily, on first
 * access, so a handler that reads nothing pays for nothing. Reads the body (read, iter_body,
 * save_body), and answers: respond() hands the status, headers (headers.c) and body to
 * mx_req_respond, which may run on any thread; pymx_respond_value is the one place a handler's
 * return value becomes a response. The stream upgrades live in upgrade.c, multipart in
 * multipart.c. Runs with the GIL held, on whatever thread the handler uses.
 */
#include "module.h"

#include <stdio.h>
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
    if (!self->headers)
        self->headers =
            pymx_headers_to_python(self->core, self->req->headers, self->req->num_headers);
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

/* Bodies at least this large are compressed and copied without the GIL. */
#define NOGIL_BODY 65536

PyObject *pymx_respond_impl(MxRequestObject *self, int status, PyObject *headers, PyObject *body) {
    pymx_resp_headers_t h;
    if (pymx_resp_headers_init(&h) < 0)
        return NULL;
    PyObject *result = NULL;
    Py_buffer view;
    int have_view = 0;
    const char *data = "";
    size_t len = 0;
    PyObject *body_ref = NULL;
    if (pymx_resp_headers_collect(&h, headers) < 0)
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
            if (pymx_resp_headers_add(&h, "Content-Type", 12, ct, sizeof(ct) - 1) < 0)
                goto done;
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
    if (rc == MX_EINVAL && bad < 0) { /* no header to blame: the status */
        char msg[64];
        snprintf(msg, sizeof(msg), "invalid status %d: must be between 200 and 999", status);
        pymx_raise(pymx_state_of(self), rc, msg);
    } else if (rc != 0) {
        pymx_resp_headers_raise(pymx_state_of(self), &h, rc, bad);
    }
    else
        result = Py_NewRef(Py_None);
done:
    if (have_view)
        PyBuffer_Release(&view);
    Py_XDECREF(body_ref);
    pymx_resp_headers_release(&h);
    return result;
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
            return pymx_raise_body(pymx_state_of(self), (int)got, NULL);
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
            return pymx_raise_body(pymx_state_of(self), (int)got, NULL);
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
    Py_DECREF(bytes);
    if (rc != 0)
        return pymx_raise_body(pymx_state_of(self), rc, arg);
    return PyLong_FromUnsignedLongLong(written);
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

/* cookies: the Cookie header(s) parsed by mummyx.cookies.parse_cookie_header (bad pairs skipped,
 * never an error); a dict, new on each access. */
static PyObject *get_cookies(MxRequestObject *self, void *closure) {
    (void)closure;
    PyObject *parts = PyList_New(0);
    if (!parts)
        return NULL;
    const mx_req_t *r = self->req;
    for (size_t i = 0; i < r->num_headers; i++) {
        const mx_header_t *f = &r->headers[i];
        if (!mx_http1_name_eq(f->name, f->name_len, "cookie", 6))
            continue;
        PyObject *v = PyUnicode_DecodeLatin1(f->value, (Py_ssize_t)f->value_len, NULL);
        if (!v || PyList_Append(parts, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(parts);
            return NULL;
        }
        Py_DECREF(v);
    }
    PyObject *sep = PyUnicode_FromString("; ");
    PyObject *joined = sep ? PyUnicode_Join(sep, parts) : NULL;
    Py_XDECREF(sep);
    Py_DECREF(parts);
    if (!joined)
        return NULL;
    PyObject *mod = PyImport_ImportModule("mummyx.cookies");
    PyObject *out = mod ? PyObject_CallMethod(mod, "parse_cookie_header", "O", joined) : NULL;
    Py_XDECREF(mod);
    Py_DECREF(joined);
    return out;
}

/* json(): the body parsed as JSON. Any JSON value; the Content-Type need not say JSON. A body that
 * is not UTF-8 or not JSON (an empty one included) raises BadRequest(400), which answers 400. */
static PyObject *request_json(MxRequestObject *self, PyObject *unused) {
    (void)unused;
    mx_state *st = pymx_state_of(self);
    PyObject *body = PyObject_GetAttrString((PyObject *)self, "body");
    if (!body)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(body);
        return NULL;
    }
    PyObject *text = PyUnicode_DecodeUTF8(view.buf, view.len, "strict");
    PyBuffer_Release(&view);
    Py_DECREF(body);
    if (!text) {
        PyErr_Clear();
        return pymx_raise_bad_request(st, 400, "the request body is not valid UTF-8");
    }
    PyObject *json = PyImport_ImportModule("json");
    PyObject *value = json ? PyObject_CallMethod(json, "loads", "O", text) : NULL;
    Py_XDECREF(json);
    Py_DECREF(text);
    if (!value && PyErr_ExceptionMatches(PyExc_ValueError)) { /* json.JSONDecodeError */
        PyObject *exc = PyErr_GetRaisedException_compat();
        PyObject *why = exc ? PyObject_Str(exc) : NULL;
        const char *w = why ? PyUnicode_AsUTF8(why) : NULL;
        PyErr_Clear();
        pymx_raise_bad_request(st, 400, "the request body is not valid JSON: %s", w ? w : "?");
        Py_XDECREF(why);
        Py_XDECREF(exc);
        return NULL;
    }
    return value;
}

/* The headers of a returned value: the handler's own (a mapping or pairs; NULL: none) plus a
 * Content-Type of ctype (NULL: none) unless they set one. A new list, or NULL with an error. */
static PyObject *value_headers(PyObject *headers, const char *ctype) {
    PyObject *list;
    if (!headers)
        list = PyList_New(0);
    else if (PyDict_Check(headers) || (PyMapping_Check(headers) && !PyList_Check(headers) &&
                                       !PyTuple_Check(headers) &&
                                       PyObject_HasAttrString(headers, "items")))
        list = PyMapping_Items(headers);
    else
        list = PySequence_List(headers);
    if (!list) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "returned headers must be a mapping or a list of "
                                             "(name, value) pairs");
        }
        return NULL;
    }
    int has_ctype = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list) && !has_ctype; i++) {
        PyObject *pair = PyList_GET_ITEM(list, i);
        PyObject *name = PySequence_Check(pair) && PySequence_Size(pair) == 2
                             ? PySequence_GetItem(pair, 0)
                             : NULL;
        PyErr_Clear(); /* a malformed pair is reported when the headers are read */
        if (name && PyUnicode_Check(name)) {
            Py_ssize_t n;
            const char *u = PyUnicode_AsUTF8AndSize(name, &n);
            has_ctype = u && mx_http1_name_eq(u, (size_t)n, "content-type", 12);
            PyErr_Clear();
        }
        Py_XDECREF(name);
    }
    if (ctype && !has_ctype) {
        PyObject *pair = Py_BuildValue("(ss)", "Content-Type", ctype);
        if (!pair || PyList_Append(list, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(pair);
    }
    return list;
}

/* Sends body (a returned value) with status and the handler's headers (NULL: none). */
static int respond_body_value(MxRequestObject *self, PyObject *body, int status,
                              PyObject *headers) {
    const char *ctype = NULL;
    PyObject *payload = NULL;
    if (PyUnicode_Check(body)) {
        ctype = "text/plain; charset=utf-8";
        payload = Py_NewRef(body);
    } else if (PyBytes_Check(body) || PyByteArray_Check(body) || PyMemoryView_Check(body)) {
        ctype = "application/octet-stream";
        payload = Py_NewRef(body);
    } else if (PyDict_Check(body) || PyList_Check(body)) {
        ctype = "application/json";
        payload = PyObject_CallOneArg(self->core->json_dumps, body);
        if (!payload)
            return -1;
    } else if (PyIter_Check(body)) {
        return pymx_respond_iterator(self, body, status, headers); /* a generator: streamed as it yields */
    } else {
        PyErr_Format(PyExc_TypeError,
                     "handler returned %.100s; return None (after respond()), str, bytes, dict, "
                     "list, an iterator of str/bytes, or a (body, status[, headers]) tuple",
                     Py_TYPE(body)->tp_name);
        return -1;
    }
    PyObject *h = value_headers(headers, ctype);
    PyObject *r = h ? pymx_respond_impl(self, status, h, payload) : NULL;
    Py_XDECREF(h);
    Py_DECREF(payload);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* A handler returned a value instead of responding: str as text, bytes as octet-stream, dict or
 * list as JSON, an iterator streamed, or (body, status) / (body, status, headers) as Flask
 * allows. Returns 0, or -1 with an exception set (a TypeError for other types). */
int pymx_respond_value(MxRequestObject *self, PyObject *value) {
    if (!PyTuple_Check(value))
        return respond_body_value(self, value, 200, NULL);
    Py_ssize_t n = PyTuple_GET_SIZE(value);
    PyObject *status = n >= 2 ? PyTuple_GET_ITEM(value, 1) : NULL;
    if ((n != 2 && n != 3) || !PyLong_Check(status) || PyBool_Check(status)) {
        PyErr_SetString(PyExc_TypeError,
                        "a returned tuple must be (body, status) or (body, status, headers), "
                        "with an int status");
        return -1;
    }
    long st = PyLong_AsLong(status);
    if (st == -1 && PyErr_Occurred())
        return -1;
    if (st < 200 || st > 999) {
        PyErr_Format(PyExc_ValueError, "invalid status %ld: must be between 200 and 999", st);
        return -1;
    }
    PyObject *headers = n == 3 && PyTuple_GET_ITEM(value, 2) != Py_None ? PyTuple_GET_ITEM(value, 2)
                                                                         : NULL;
    return respond_body_value(self, PyTuple_GET_ITEM(value, 0), (int)st, headers);
}

PyObject *pymx_respond_value_py(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "respond_value() takes exactly 2 arguments");
        return NULL;
    }
    mx_state *st = PyModule_GetState(mod);
    if (!PyObject_TypeCheck(args[0], st->request_type)) {
        PyErr_Format(PyExc_TypeError, "respond_value() needs a Request, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    if (pymx_respond_value((MxRequestObject *)args[0], args[1]) < 0)
        return NULL;
    Py_RETURN_NONE;
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
    {"json", (PyCFunction)request_json, METH_NOARGS,
     "json($self)\n--\n\nThe body parsed as JSON. Raises BadRequest (answered 400) when it is "
     "not valid UTF-8 JSON."},
    {"respond_stream", (PyCFunction)(void (*)(void))pymx_request_respond_stream,
     METH_VARARGS | METH_KEYWORDS,
     "respond_stream($self, status=200, headers=None)\n--\n\nAnswer with a body written "
     "piece by piece: returns a ResponseStream (write(), close()), usable from any thread."},
    {"respond_sse", (PyCFunction)(void (*)(void))pymx_request_respond_sse,
     METH_VARARGS | METH_KEYWORDS,
     "respond_sse($self, headers=None)\n--\n\nAnswer 200 with an event stream and return its "
     "SSEStream."},
    {"upgrade_to_websocket", (PyCFunction)(void (*)(void))pymx_request_upgrade,
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
    {"cookies", (getter)get_cookies, NULL,
     "the cookies the client sent (dict; RFC 6265, malformed pairs skipped)", NULL},
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
