/*
 * headers.c: header marshalling between the core and Python. Request headers go from the
 * core's (name, value) arrays to the mummyx.Headers object handlers see; response headers go
 * from what a handler passes (a mapping or an iterable of pairs; str, int or bytes values) to
 * the mx_resp_header_t array mx_req_respond and its SSE variant take, with the refusals those
 * calls report turned into exceptions that name the header. Runs on the handler's thread, with
 * the GIL held.
 */
#include "module.h"

#include <string.h>

PyObject *pymx_headers_to_python(MxCoreObject *core, const mx_header_t *headers, size_t n) {
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const mx_header_t *h = &headers[i];
        /* Latin-1: bytes above 0x7f survive the round trip unchanged (RFC 9110 5.5). */
        PyObject *pair = Py_BuildValue(
            "(NN)", PyUnicode_DecodeLatin1(h->name, (Py_ssize_t)h->name_len, NULL),
            PyUnicode_DecodeLatin1(h->value, (Py_ssize_t)h->value_len, NULL));
        if (!pair) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, pair);
    }
    PyObject *headers_obj = PyObject_CallOneArg(core->make_headers, list);
    Py_DECREF(list);
    return headers_obj;
}

int pymx_resp_headers_init(pymx_resp_headers_t *h) {
    h->items = h->stack;
    h->n = 0;
    h->cap = sizeof(h->stack) / sizeof(h->stack[0]);
    h->has_ctype = 0;
    h->keep = h->keep_stack;
    h->nkeep = 0;
    h->keep_cap = sizeof(h->keep_stack) / sizeof(h->keep_stack[0]);
    return 0;
}

void pymx_resp_headers_release(pymx_resp_headers_t *h) {
    if (h->items != h->stack)
        PyMem_Free(h->items);
    h->items = h->stack;
    for (size_t i = 0; i < h->nkeep; i++)
        Py_DECREF(h->keep[i]);
    if (h->keep != h->keep_stack)
        PyMem_Free(h->keep);
    h->keep = h->keep_stack;
    h->nkeep = 0;
}

/* Doubles an array that starts in in-struct storage (stack) and moves to the heap when it
 * grows: *arr holds n elements of size elem, *cap of them fit. -1 with MemoryError set. */
static int grow(void **arr, void *stack, size_t *cap, size_t n, size_t elem) {
    void *na = PyMem_Malloc(*cap * 2 * elem);
    if (!na) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(na, *arr, n * elem);
    if (*arr != stack)
        PyMem_Free(*arr);
    *arr = na;
    *cap *= 2;
    return 0;
}

/* Keeps a new reference to o until release; -1 on ENOMEM. */
static int keep(pymx_resp_headers_t *h, PyObject *o) {
    if (h->nkeep == h->keep_cap &&
        grow((void **)&h->keep, h->keep_stack, &h->keep_cap, h->nkeep, sizeof(*h->keep)) < 0)
        return -1;
    h->keep[h->nkeep++] = Py_NewRef(o);
    return 0;
}

/* Appends one header that points into bytes the caller keeps alive; -1 on ENOMEM. */
int pymx_resp_headers_add(pymx_resp_headers_t *h, const char *name, size_t name_len,
                          const char *value, size_t value_len) {
    if (h->n == h->cap &&
        grow((void **)&h->items, h->stack, &h->cap, h->n, sizeof(*h->items)) < 0)
        return -1;
    mx_resp_header_t *it = &h->items[h->n++];
    it->name = name;
    it->name_len = name_len;
    it->value = value;
    it->value_len = value_len;
    if (mx_http1_name_eq(name, name_len, "content-type", 12))
        h->has_ctype = 1;
    return 0;
}

/* One (name, value) from Python: the value becomes a str; both are kept alive by h->keep (a pair
 * from an iterator may be the only owner of its strings), so the UTF-8 buffers the array points
 * into live as long as h does. */
static int push_python(pymx_resp_headers_t *h, PyObject *name, PyObject *value) {
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "header names must be str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    PyObject *v;
    if (PyUnicode_Check(value)) {
        v = Py_NewRef(value);
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
    int rc = keep(h, v) < 0 || keep(h, name) < 0 ? -1 : 0;
    Py_DECREF(v); /* h keeps it alive */
    if (rc < 0)
        return -1;
    Py_ssize_t nl, vl;
    const char *ns = PyUnicode_AsUTF8AndSize(name, &nl);
    const char *vs = ns ? PyUnicode_AsUTF8AndSize(v, &vl) : NULL;
    if (!vs)
        return -1;
    return pymx_resp_headers_add(h, ns, (size_t)nl, vs, (size_t)vl);
}

int pymx_resp_headers_collect(pymx_resp_headers_t *h, PyObject *headers) {
    if (headers == NULL || headers == Py_None)
        return 0;
    if (PyDict_Check(headers)) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(headers, &pos, &k, &v))
            if (push_python(h, k, v) < 0)
                return -1;
        return 0;
    }
    PyObject *items = Py_NewRef(headers);
    /* A mapping that is not a dict (Headers, say) is read through its items(). */
    if (!PyList_Check(headers) && !PyTuple_Check(headers) && PyMapping_Check(headers) &&
        PyObject_HasAttrString(headers, "items")) {
        Py_DECREF(items);
        items = PyObject_CallMethod(headers, "items", NULL);
        if (!items)
            return -1;
    }
    PyObject *it = PyObject_GetIter(items);
    Py_DECREF(items);
    if (!it) {
        PyErr_SetString(PyExc_TypeError, "headers must be a mapping or a list of (name, value)");
        return -1;
    }
    PyObject *pair;
    while ((pair = PyIter_Next(it))) {
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
        int rc = push_python(h, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
        Py_DECREF(pair);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

PyObject *pymx_resp_headers_raise(mx_state *st, const pymx_resp_headers_t *h, int rc, int bad) {
    if (rc != MX_EINVAL || bad < 0 || (size_t)bad >= h->n)
        return pymx_raise(st, rc, rc == MX_EALREADY ? NULL : "cannot respond");
    const mx_resp_header_t *b = &h->items[bad];
    if (mx_http1_name_eq(b->name, b->name_len, "transfer-encoding", 17))
        return pymx_raise(st, rc, "Transfer-Encoding is managed by the server and cannot be set");
    PyObject *name = PyUnicode_DecodeUTF8(b->name, (Py_ssize_t)b->name_len, "replace");
    PyObject *value = name ? PyUnicode_DecodeUTF8(b->value, (Py_ssize_t)b->value_len, "replace")
                           : NULL;
    if (value)
        PyErr_Format(PyExc_ValueError, "invalid response header %R: %R", name, value);
    Py_XDECREF(name);
    Py_XDECREF(value);
    return NULL;
}
