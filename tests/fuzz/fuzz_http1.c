/*
 * fuzz_http1.c: libFuzzer target for mx_http1_parse_request and mx_http1_analyze.
 *
 * Input layout: byte 0 picks max_head_len, byte 1 picks max_target_len, bytes 2-3 seed the split
 * points, and the rest is the bytes a client sent. (Seeds in corpus/http1 start with "0000":
 * default limits.) The head is parsed whole, then re-parsed from scratch on growing prefixes as
 * the server does when bytes trickle in; every prefix must say PARTIAL until the one that decides,
 * and from there on every prefix must give exactly the whole input's verdict, status, length and
 * fields. The same growing prefixes also go through one resume state (mx_http1_head_state_t), each
 * at a new address as a reallocated socket buffer would be, and must agree with the fresh parse
 * of the same prefix exactly; the state's byte counter must stay within a constant times the
 * input. A binary search also finds the first deciding prefix and checks it is where the verdict
 * says it should be. Any disagreement, or a parsed field that breaks the grammar, aborts.
 */
#include <string.h>

#include "fuzz_common.h"
#include "http1.h"

typedef struct result {
    int rc, status;
    mx_http1_request_t req;
} result_t;

static size_t g_max_head, g_max_target;

/* Parses a fresh heap copy of in[0..len), so ASan sees any read past its end; hs resumes an
 * earlier parse of a shorter prefix, or is NULL. */
static void parse_st(const char *in, size_t len, result_t *r, mx_http1_head_state_t *hs) {
    char *copy = fuzz_copy(in, len);
    r->status = 0;
    r->rc = mx_http1_parse_request(copy, len, g_max_head, g_max_target, &r->req, &r->status, hs);
    /* rebase the pointers onto `in` so results from different copies compare */
    if (r->rc > 0) {
        r->req.method = in + (r->req.method - copy);
        r->req.target = in + (r->req.target - copy);
        for (size_t i = 0; i < r->req.num_headers; i++) {
            r->req.headers[i].name = in + (r->req.headers[i].name - copy);
            r->req.headers[i].value = in + (r->req.headers[i].value - copy);
        }
    }
    free(copy);
}

static void parse(const char *in, size_t len, result_t *r) { parse_st(in, len, r, NULL); }

static int ows(char c) { return c == ' ' || c == '\t'; }

/* The grammar every successful parse must satisfy. */
static void check_success(const char *in, size_t len, const result_t *r) {
    size_t n = (size_t)r->rc;
    const mx_http1_request_t *q = &r->req;
    CHECK(n >= 16 && n <= len && n <= g_max_head); /* "A / HTTP/1.1\r\n\r\n" is the shortest */
    CHECK(memcmp(in + n - 4, "\r\n\r\n", 4) == 0);
    CHECK(memchr(in, '\0', n) == NULL);
    CHECK(q->method == in && mx_http1_is_token(q->method, q->method_len));
    CHECK(q->method + q->method_len + 1 == q->target && q->target[-1] == ' ');
    CHECK(q->target_len >= 1 && q->target_len <= g_max_target);
    for (size_t i = 0; i < q->target_len; i++)
        CHECK(q->target[i] > 0x20 && q->target[i] < 0x7f);
    CHECK(q->minor_version == 0 || q->minor_version == 1);
    CHECK(q->target[q->target_len] == ' ' &&
          memcmp(q->target + q->target_len + 1, "HTTP/1.", 7) == 0 &&
          q->target[q->target_len + 8] == '0' + q->minor_version);
    CHECK(q->num_headers <= MX_HTTP1_MAX_HEADERS);
    const char *prev_end = q->target + q->target_len + 11; /* after the request line's CRLF */
    for (size_t i = 0; i < q->num_headers; i++) {
        const mx_header_t *h = &q->headers[i];
        CHECK(h->name == prev_end); /* fields are consecutive lines */
        CHECK(mx_http1_is_token(h->name, h->name_len) && h->name[h->name_len] == ':');
        CHECK(h->value >= h->name + h->name_len + 1 && h->value + h->value_len <= in + n - 2);
        CHECK(mx_http1_is_field_value(h->value, h->value_len));
        CHECK(h->value_len == 0 || (!ows(h->value[0]) && !ows(h->value[h->value_len - 1])));
        const char *e = h->value + h->value_len;
        while (ows(*e))
            e++;
        CHECK(e[0] == '\r' && e[1] == '\n');
        prev_end = e + 2;
    }
    CHECK(prev_end == in + n - 2);
}

static void check_same(const result_t *a, const result_t *b) {
    CHECK(a->rc == b->rc);
    if (a->rc == MX_HTTP1_INVALID)
        CHECK(a->status == b->status);
    if (a->rc <= 0)
        return;
    CHECK(a->req.method == b->req.method && a->req.method_len == b->req.method_len);
    CHECK(a->req.target == b->req.target && a->req.target_len == b->req.target_len);
    CHECK(a->req.minor_version == b->req.minor_version);
    CHECK(a->req.num_headers == b->req.num_headers);
    for (size_t i = 0; i < a->req.num_headers; i++)
        CHECK(memcmp(&a->req.headers[i], &b->req.headers[i], sizeof(mx_header_t)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static result_t whole, part, resumed;
    if (size < 4)
        return 0;
    g_max_head = data[0] < 128 ? 8192 : (size_t)(data[0] - 128) * 4;
    g_max_target = data[1] < 128 ? 4096 : (size_t)(data[1] - 128);
    fuzz_seed(data[2], data[3]);
    const char *in = (const char *)data + 4;
    size_t len = size - 4;

    parse(in, len, &whole);
    CHECK(whole.rc == MX_HTTP1_PARTIAL || whole.rc == MX_HTTP1_INVALID || whole.rc > 0);
    if (whole.rc == MX_HTTP1_INVALID)
        CHECK(whole.status == 400 || whole.status == 414 || whole.status == 431 ||
              whole.status == 505);
    if (whole.rc == MX_HTTP1_PARTIAL)
        CHECK(len < g_max_head);
    if (whole.rc > 0) {
        check_success(in, len, &whole);
        mx_http1_info_t info;
        int st = 0;
        int rc = mx_http1_analyze(&whole.req, &info, &st);
        CHECK(rc == 0 || rc == MX_HTTP1_INVALID);
        if (rc == 0) {
            CHECK(!(info.chunked && info.content_length != -1));
            CHECK(info.content_length >= -1);
            CHECK(info.num_host <= 1 && (whole.req.minor_version == 0 || info.num_host == 1));
            CHECK((info.host != NULL) == (info.num_host == 1));
            CHECK(!info.upgrade || whole.req.minor_version == 1);
        } else {
            CHECK(st == 400 || st == 417 || st == 501);
        }
    }

    /* Growing prefixes in fuzzer-chosen steps, as bytes arrive on a socket; the resumed parse of
     * each must equal the fresh one (after a verdict the state starts over, as for a new head). */
    int decided = 0;
    size_t pos = 0, calls = 0;
    mx_http1_head_state_t hs = {0};
    while (pos < len) {
        uint32_t r = next_rand();
        size_t step = (r & 3) == 0 ? 1 : 1 + (r >> 2) % (len / 8 + 1);
        pos = step > len - pos ? len : pos + step;
        parse(in, pos, &part);
        parse_st(in, pos, &resumed, &hs);
        calls++;
        check_same(&part, &resumed);
        if (part.rc == MX_HTTP1_PARTIAL) {
            CHECK(!decided); /* once decided, more bytes cannot undo it */
            continue;
        }
        decided = 1;
        check_same(&whole, &part);
    }
    /* Linear work: each call re-reads at most ten bytes before the new ones, a completed head is
     * parsed once more in full, and a verdict's repeat (state reset) costs one more pass; before
     * the verdict, nothing is read twice but those few bytes. */
    if (!decided) {
        size_t bound = (len < g_max_head ? len : g_max_head) + 11 * calls;
        CHECK(hs.examined <= bound);
    }

    /* The first deciding prefix: a valid head decides at its last byte; INVALID decides no
     * later than the head limit. */
    if (whole.rc != MX_HTTP1_PARTIAL) {
        size_t lo = 0, hi = len; /* prefix lo is PARTIAL (or lo == 0), prefix hi decides */
        parse(in, 0, &part);
        if (part.rc != MX_HTTP1_PARTIAL) {
            hi = 0;
        } else {
            while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                parse(in, mid, &part);
                if (part.rc == MX_HTTP1_PARTIAL)
                    lo = mid;
                else
                    hi = mid;
            }
        }
        parse(in, hi, &part);
        check_same(&whole, &part);
        if (whole.rc > 0)
            CHECK(hi == (size_t)whole.rc);
        else
            CHECK(hi <= g_max_head);
        if (hi > 0) {
            parse(in, hi - 1, &part);
            CHECK(part.rc == MX_HTTP1_PARTIAL);
        }
    }
    return 0;
}
