/*
 * fuzz_chunked.c: libFuzzer target for mx_chunked_decode.
 *
 * Input layout: bytes 0-1 seed the split points (seeds in corpus/chunked start with "00"), the
 * rest is a chunked body as it arrives on a socket. The body is decoded whole, in fuzzer-chosen
 * pieces, byte by byte, and in place (out == in); all four must agree on the verdict (done,
 * invalid, or waiting for more), on the bytes consumed and on the payload bytes produced. Each
 * piece is a fresh heap copy of exactly its size, so ASan catches any read past it.
 */
#include <string.h>

#include "fuzz_common.h"
#include "http1.h"

typedef struct result {
    int invalid, done;
    size_t consumed, out_len;
    char *out; /* room for the input's length */
} result_t;

/* mode 0: whole; 1: byte by byte; 2: random pieces; 3: whole, in place */
static void decode(const char *in, size_t len, int mode, result_t *r) {
    mx_chunked_t d;
    memset(&d, 0, sizeof(d));
    r->invalid = r->done = 0;
    r->consumed = r->out_len = 0;
    size_t pos = 0;
    do {
        size_t piece = fuzz_piece(mode, len - pos, len / 4);
        char *copy = fuzz_copy(in + pos, piece);
        char *out = mode == 3 ? copy : malloc(piece ? piece : 1);
        CHECK(out != NULL);
        size_t out_len = (size_t)-1;
        int done = -1;
        ssize_t rc = mx_chunked_decode(&d, copy, piece, out, &out_len, &done);
        CHECK(out_len <= piece && (done == 0 || done == 1));
        CHECK(r->out_len + out_len <= len);
        memcpy(r->out + r->out_len, out, out_len);
        r->out_len += out_len;
        if (out != copy)
            free(out);
        free(copy);
        if (rc == MX_HTTP1_INVALID) {
            CHECK(done == 0);
            r->invalid = 1;
            break;
        }
        CHECK(rc >= 0 && (size_t)rc <= piece && out_len <= (size_t)rc);
        CHECK(done || (size_t)rc == piece); /* everything is consumed until the body ends */
        pos += (size_t)rc;
        r->done = done;
        if (done) {
            /* after the end nothing more is consumed */
            char extra = 'x';
            rc = mx_chunked_decode(&d, &extra, 1, &extra, &out_len, &done);
            CHECK(rc == 0 && out_len == 0 && done == 1);
            break;
        }
    } while (pos < len);
    r->consumed = pos;
}

static void check_same(const result_t *a, const result_t *b) {
    CHECK(a->invalid == b->invalid && a->done == b->done);
    CHECK(a->out_len == b->out_len && memcmp(a->out, b->out, a->out_len) == 0);
    if (!a->invalid)
        CHECK(a->consumed == b->consumed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    fuzz_seed(data[0], data[1]);
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    result_t whole, other;
    whole.out = malloc(len + 1);
    other.out = malloc(len + 1);
    CHECK(whole.out && other.out);

    decode(in, len, 0, &whole);
    if (whole.done)
        CHECK(whole.consumed >= 5); /* "0\r\n\r\n" */
    for (int mode = 1; mode <= 3; mode++) {
        if (mode == 1 && len > 2048)
            continue;
        decode(in, len, mode, &other);
        check_same(&whole, &other);
    }
    free(whole.out);
    free(other.out);
    return 0;
}
