/*
 * fuzz_multipart.c: libFuzzer target for mx_multipart_boundary and the streaming multipart parser.
 *
 * Input layout: bytes 0-1 seed the split points and pick the limits (a byte below 0x20 makes
 * max_part_headers 8 + 4 * byte, resp. max_parts 1 + byte % 8; seeds in corpus/multipart start
 * with "00", which keeps the defaults). Then a Content-Type field value up to the first '\n',
 * then the body. The boundary is extracted from the Content-Type (inputs without a valid one only
 * exercise the extractor) and the body is parsed whole, byte by byte, and twice in random pieces;
 * all runs must agree on the events (PART fields, the order of PART / PART_END / DONE, the
 * concatenated DATA bytes of each run of DATA events) and on the verdict. Each piece is a fresh
 * heap copy of exactly its size, so ASan catches any read past it. The calling contract is checked
 * on every call, and a body the parser accepts is split again by a naive whole-buffer reference
 * (memmem on CRLF "--" boundary) that must find the same part headers and the same part bodies.
 */
#include <string.h>

#include "fuzz_common.h"
#include "multipart.h"

static void put_field(bytes_t *b, const char *s, size_t n) {
    unsigned char present = s != NULL;
    bytes_put(b, &present, 1);
    bytes_put(b, &n, sizeof(n));
    bytes_put(b, s, n);
}

typedef struct result {
    bytes_t events; /* 'P' + fields, 'D' + run length, 'E', 'F'; then the verdict */
    bytes_t data;   /* all DATA bytes */
    size_t run;     /* length of the open DATA run */
    int verdict;    /* the error, or mx_mp_finish's result */
    /* whole run only: per part, its headers (in hdrs) and where its data starts in data */
    bytes_t hdrs;
    size_t nparts, *hdr_off, *hdr_len, *data_off, *data_len;
} result_t;

static void close_run(result_t *r) {
    if (r->run) {
        bytes_put(&r->events, "D", 1);
        bytes_put(&r->events, &r->run, sizeof(r->run));
        r->run = 0;
    }
}

/* mode 0: whole; 1: byte by byte; 2: random pieces of any size; 3: random small pieces */
static void parse(const char *boundary, size_t blen, const mx_mp_limits_t *lim, const char *in,
                  size_t len, int mode, result_t *r, size_t max_parts) {
    mx_mp_t p;
    CHECK(mx_mp_init(&p, boundary, blen, lim) == 0);
    int err = 0, done = 0, in_part = 0;
    size_t pos = 0;
    do {
        size_t piece = fuzz_piece(mode, len - pos, len / 3);
        if (mode == 3) { /* small random pieces */
            size_t step = next_rand() & 15;
            piece = step < piece ? step : piece;
        }
        char *copy = fuzz_copy(in + pos, piece);
        size_t off = 0;
        int zeros = 0;
        for (;;) {
            mx_mp_event_t ev;
            size_t used = 7;
            int rc = mx_mp_next(&p, copy + off, piece - off, &used, &ev);
            CHECK(rc == ev.type);
            if (rc < 0) {
                CHECK(rc == MX_MP_E_SYNTAX || rc == MX_MP_E_HEADERS_TOO_BIG ||
                      rc == MX_MP_E_TOO_MANY_PARTS);
                CHECK(used == 0);
                CHECK(mx_mp_next(&p, copy, piece, &used, &ev) == rc && used == 0); /* sticky */
                err = rc;
                break;
            }
            CHECK(rc <= MX_MP_DONE && used <= piece - off);
            off += used;
            zeros = used ? 0 : zeros + 1;
            CHECK(zeros < 2); /* progress: at most one event (held-back DATA) uses no input */
            CHECK(p.match < p.dlen);
            if (rc == MX_MP_NEED_MORE) {
                CHECK(off == piece);
                break;
            }
            if (rc == MX_MP_DONE) {
                CHECK(!in_part);
                if (!done) {
                    close_run(r);
                    bytes_put(&r->events, "F", 1);
                }
                done = 1;
                CHECK(off == piece || used > 0);
                if (off == piece)
                    break;
                continue;
            }
            CHECK(!done);
            if (rc == MX_MP_DATA) {
                CHECK(in_part && ev.len > 0 && ev.data != NULL);
                int in_input = ev.data >= copy && ev.data + ev.len <= copy + piece;
                int in_parser =
                    ev.data >= (const char *)&p && ev.data + ev.len <= (const char *)(&p + 1);
                CHECK(in_input || in_parser);
                r->run += ev.len;
                bytes_put(&r->data, ev.data, ev.len);
                if (mode == 0)
                    r->data_len[r->nparts - 1] += ev.len;
                continue;
            }
            close_run(r);
            if (rc == MX_MP_PART) {
                CHECK(!in_part && ev.name != NULL && ev.headers != NULL);
                CHECK(ev.name_len + ev.filename_len <= ev.headers_len);
                if (ev.filename) /* no NUL, CR or LF can come out of a filename */
                    for (size_t i = 0; i < ev.filename_len; i++)
                        CHECK(ev.filename[i] != '\0' && ev.filename[i] != '\r' &&
                              ev.filename[i] != '\n');
                CHECK(memchr(ev.headers, '\0', ev.headers_len) == NULL);
                in_part = 1;
                bytes_put(&r->events, "P", 1);
                put_field(&r->events, ev.name, ev.name_len);
                put_field(&r->events, ev.filename, ev.filename_len);
                put_field(&r->events, ev.content_type, ev.content_type_len);
                put_field(&r->events, ev.headers, ev.headers_len);
                if (mode == 0) {
                    CHECK(r->nparts < max_parts);
                    r->hdr_off[r->nparts] = r->hdrs.len;
                    r->hdr_len[r->nparts] = ev.headers_len;
                    r->data_off[r->nparts] = r->data.len;
                    r->data_len[r->nparts] = 0;
                    r->nparts++;
                    bytes_put(&r->hdrs, ev.headers, ev.headers_len);
                }
            } else {
                CHECK(rc == MX_MP_PART_END && in_part);
                in_part = 0;
                bytes_put(&r->events, "E", 1);
            }
            if (off == piece)
                break;
        }
        free(copy);
        pos += piece;
    } while (pos < len && !err);
    close_run(r);
    r->verdict = err ? err : mx_mp_finish(&p);
    CHECK((r->verdict == 0) == (done && !err));
    mx_mp_free(&p);
}

static int same(const bytes_t *a, const bytes_t *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* An accepted body, split by memmem: the same part headers and bodies must come out. */
static void reference(const char *b, size_t blen, const char *in, size_t len, const result_t *r) {
    char delim[4 + MX_MULTIPART_BOUNDARY_MAX];
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, b, blen);
    size_t dlen = blen + 4, pos;
    if (len >= dlen - 2 && memcmp(in, delim + 2, dlen - 2) == 0) {
        pos = 0;
    } else {
        const char *f = memmem(in, len, delim, dlen);
        CHECK(f != NULL);
        pos = (size_t)(f - in) + 2;
    }
    for (size_t k = 0;; k++) {
        pos += dlen - 2; /* past "--" boundary */
        CHECK(pos <= len);
        if (len - pos >= 2 && in[pos] == '-' && in[pos + 1] == '-') {
            CHECK(k == r->nparts);
            return;
        }
        while (pos < len && (in[pos] == ' ' || in[pos] == '\t'))
            pos++;
        CHECK(len - pos >= 2 && in[pos] == '\r' && in[pos + 1] == '\n');
        pos += 2;
        CHECK(k < r->nparts);
        size_t hl;
        if (len - pos >= 2 && in[pos] == '\r' && in[pos + 1] == '\n') {
            hl = 0;
        } else {
            const char *e = memmem(in + pos, len - pos, "\r\n\r\n", 4);
            CHECK(e != NULL);
            hl = (size_t)(e - (in + pos)) + 2;
        }
        CHECK(hl == r->hdr_len[k] &&
              (hl == 0 || memcmp(in + pos, r->hdrs.p + r->hdr_off[k], hl) == 0));
        pos += hl + 2;
        const char *e = memmem(in + pos, len - pos, delim, dlen);
        CHECK(e != NULL);
        size_t dl = (size_t)(e - (in + pos));
        CHECK(dl == r->data_len[k] &&
              (dl == 0 || memcmp(in + pos, r->data.p + r->data_off[k], dl) == 0));
        pos += dl + 2;
    }
}

static void result_free(result_t *r) {
    free(r->events.p);
    free(r->data.p);
    free(r->hdrs.p);
    free(r->hdr_off);
    free(r->hdr_len);
    free(r->data_off);
    free(r->data_len);
    memset(r, 0, sizeof(*r));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    mx_mp_limits_t lim = {0, 0};
    if (data[0] < 0x20)
        lim.max_part_headers = 8 + 4 * (size_t)data[0];
    if (data[1] < 0x20)
        lim.max_parts = 1 + data[1] % 8;
    const char *ct = (const char *)data + 2;
    const char *nl = memchr(ct, '\n', size - 2);
    size_t ct_len = nl ? (size_t)(nl - ct) : size - 2;

    /* The extractor gets an exact-size copy, so ASan sees any over-read. */
    char *ct_copy = fuzz_copy(ct, ct_len);
    char boundary[MX_MULTIPART_BOUNDARY_MAX + 1];
    int blen = mx_multipart_boundary(ct_copy, ct_len, boundary, sizeof(boundary));
    free(ct_copy);
    CHECK(blen == -1 || (blen >= 1 && blen <= MX_MULTIPART_BOUNDARY_MAX));
    if (blen < 0 || !nl)
        return 0;
    CHECK(boundary[blen] == '\0' && strlen(boundary) == (size_t)blen);

    const char *in = nl + 1;
    size_t len = size - 2 - ct_len - 1;
    fuzz_seed(data[0], data[1]);
    size_t max_parts = len / 4 + 2;
    result_t whole = {0}, other = {0};
    whole.hdr_off = calloc(max_parts, sizeof(size_t));
    whole.hdr_len = calloc(max_parts, sizeof(size_t));
    whole.data_off = calloc(max_parts, sizeof(size_t));
    whole.data_len = calloc(max_parts, sizeof(size_t));
    CHECK(whole.hdr_off && whole.hdr_len && whole.data_off && whole.data_len);
    parse(boundary, (size_t)blen, &lim, in, len, 0, &whole, max_parts);
    if (whole.verdict == 0)
        reference(boundary, (size_t)blen, in, len, &whole);
    for (int mode = 1; mode <= 4; mode++) {
        if (mode == 1 && len > 4096)
            continue;
        parse(boundary, (size_t)blen, &lim, in, len, mode == 4 ? 2 : mode, &other, 0);
        CHECK(other.verdict == whole.verdict);
        CHECK(same(&other.events, &whole.events));
        CHECK(same(&other.data, &whole.data));
        result_free(&other);
    }
    result_free(&whole);
    return 0;
}
