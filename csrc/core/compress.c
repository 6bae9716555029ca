/*
 * compress.c: response compression and the negotiation that decides whether to do it.
 *
 * Three pure functions, safe on any thread: mx_compress_choose reads an Accept-Encoding value
 * (RFC 9110 12.5.3), mx_compress_type_ok decides whether a Content-Type is worth compressing, and
 * mx_compress runs zlib over a whole body. Workers call mx_compress without the GIL; the parsing
 * functions never read outside [s, s + len) and never allocate, so they may run on the I/O thread
 * and be fed hostile bytes directly.
 */
#include "compress.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "text.h"

/* ---------------------------------------------------------------------------------------------
 * Accept-Encoding
 * ------------------------------------------------------------------------------------------- */

/*
 * Parses a qvalue (RFC 9110 12.4.2) that fills all of s[0..len), as thousandths:
 *   qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
 * Returns 0..1000, or -1 when the text is not a qvalue ("1.0001", "0.5000", "2", ".5", "").
 */
static int mx__qvalue(const char *s, size_t len) {
    if (len == 0 || (s[0] != '0' && s[0] != '1'))
        return -1;
    int whole = s[0] - '0';
    if (len == 1)
        return whole * 1000;
    if (s[1] != '.' || len > 5)
        return -1;
    int q = 0, scale = 100;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        q += (s[i] - '0') * scale;
    }
    if (whole == 1)
        return q == 0 ? 1000 : -1; /* "1.", "1.0", "1.00", "1.000" only */
    return q;
}

/*
 * Parses one parameter value (token or quoted-string, RFC 9110 5.6.6) starting at *i and leaves
 * *i just past it. Returns 0, or -1 when the value is empty or a quoted string is unterminated.
 */
static int mx__param_value(const char *s, size_t len, size_t *i) {
    if (*i < len && s[*i] == '"') {
        for ((*i)++; *i < len; (*i)++) {
            if (s[*i] == '\\') {
                if (*i + 1 >= len)
                    return -1;
                (*i)++;
            } else if (s[*i] == '"') {
                (*i)++;
                return 0;
            }
        }
        return -1;
    }
    return mx_token(s, len, i) > 0 ? 0 : -1;
}

/*
 * Parses the element at *i, up to and including the comma that ends it (or the end of the
 * input). On success returns 0 and sets the coding (*coding, *coding_len) and its weight in
 * thousandths (*q; 1000 when absent). Returns 1 for an empty list element (RFC 9110 5.6.1 says a
 * recipient accepts and ignores those) and -1 for a malformed one; either way *i has moved past it.
 */
static int mx__element(const char *s, size_t len, size_t *i, const char **coding,
                       size_t *coding_len, int *q) {
    mx_skip_ows(s, len, i);
    if (*i >= len || s[*i] == ',') {
        if (*i < len)
            (*i)++;
        return 1;
    }
    *coding = s + *i;
    *coding_len = mx_token(s, len, i);
    *q = 1000;
    int seen_q = 0;
    if (*coding_len == 0)
        goto error;

    /* Zero or more ";" parameters. Only q means anything to us, but RFC 9110 5.6.6 lets others
     * appear, so a well-formed unknown parameter is skipped rather than spoiling the element. */
    for (;;) {
        mx_skip_ows(s, len, i);
        if (*i >= len)
            return 0;
        if (s[*i] == ',') {
            (*i)++;
            return 0;
        }
        if (s[*i] != ';')
            goto error;
        (*i)++;
        mx_skip_ows(s, len, i);
        const char *name = s + *i;
        size_t name_len = mx_token(s, len, i);
        if (name_len == 0 || *i >= len || s[*i] != '=')
            goto error;
        (*i)++;
        const char *value = s + *i;
        if (mx__param_value(s, len, i) < 0)
            goto error;
        if (MX_IEQ_LIT(name, name_len, "q")) {
            /* A second weight is ambiguous, so the element is as good as malformed. */
            if (seen_q)
                goto error;
            seen_q = 1;
            *q = mx__qvalue(value, (size_t)(s + *i - value));
            if (*q < 0)
                goto error;
        }
    }

error:
    mx_skip_item(s, len, i);
    if (*i < len)
        (*i)++; /* the comma */
    return -1;
}

int mx_compress_choose(const char *accept_encoding, size_t len) {
    /* Weights in thousandths; -1 means the coding was not listed. When a coding is listed twice
     * (or as both "gzip" and "x-gzip") the higher weight counts: the client did say it takes it. */
    int q_gzip = -1, q_deflate = -1, q_star = -1;
    const char *s = accept_encoding;
    size_t i = 0;

    /* An empty value means "no content coding, please" (RFC 9110 12.5.3). An absent header would
     * allow any coding, but the caller never compresses then: old clients may not cope. */
    if (s == NULL || len == 0)
        return MX_ENC_NONE;

    while (i < len) {
        const char *coding = NULL;
        size_t coding_len = 0;
        int q = 0;
        if (mx__element(s, len, &i, &coding, &coding_len, &q) != 0)
            continue;
        int *slot = NULL;
        if (MX_IEQ_LIT(coding, coding_len, "gzip") || MX_IEQ_LIT(coding, coding_len, "x-gzip"))
            slot = &q_gzip; /* x-gzip is an alias for gzip (RFC 9110 8.4.1.3) */
        else if (MX_IEQ_LIT(coding, coding_len, "deflate"))
            slot = &q_deflate;
        else if (coding_len == 1 && coding[0] == '*')
            slot = &q_star;
        if (slot != NULL && q > *slot)
            *slot = q;
    }

    /* "*" covers every coding not named elsewhere in the field; a coding neither named nor
     * covered is not acceptable. */
    int eff_gzip = q_gzip >= 0 ? q_gzip : (q_star >= 0 ? q_star : 0);
    int eff_deflate = q_deflate >= 0 ? q_deflate : (q_star >= 0 ? q_star : 0);
    if (eff_gzip == 0 && eff_deflate == 0)
        return MX_ENC_NONE;
    return eff_gzip >= eff_deflate ? MX_ENC_GZIP : MX_ENC_DEFLATE;
}

/* ---------------------------------------------------------------------------------------------
 * Content-Type
 * ------------------------------------------------------------------------------------------- */

/* application/ subtypes that are text underneath. Those ending in +json or +xml (xhtml+xml,
 * rss+xml, atom+xml, ld+json, manifest+json, problem+json, ...) are caught by the suffix rule. */
static const char *const mx__app_text[] = {
    "json",      "javascript", "x-javascript", "ecmascript", "x-ecmascript",
    "xml",       "xml-dtd",    "x-www-form-urlencoded",      "wasm",
    "graphql",   "x-ndjson",   "yaml",         "x-yaml",     "toml",
    "vnd.ms-fontobject",       "x-font-ttf",   "x-font-otf",
};

/* 1 when s[0..len) ends with the lowercase literal suffix, ignoring ASCII case. */
static int mx__iends(const char *s, size_t len, const char *suffix) {
    size_t n = strlen(suffix);
    return len > n && mx_ieq(s + len - n, n, suffix, n);
}

int mx_compress_type_ok(const char *content_type, size_t len) {
    const char *s = content_type;
    size_t i = 0;
    if (s == NULL)
        return 0;

    /* media-type = type "/" subtype parameters (RFC 9110 8.3.1); only type and subtype matter. */
    mx_skip_ows(s, len, &i);
    const char *type = s + i;
    size_t type_len = mx_token(s, len, &i);
    if (type_len == 0 || i >= len || s[i] != '/')
        return 0;
    i++;
    const char *sub = s + i;
    size_t sub_len = mx_token(s, len, &i);
    if (sub_len == 0)
        return 0;
    mx_skip_ows(s, len, &i);
    if (i < len && s[i] != ';')
        return 0; /* trailing junk: not a media type we recognise */

    if (MX_IEQ_LIT(type, type_len, "text")) {
        /* An event stream is written piece by piece as events happen; buffering it to compress
         * would hold events back, so it is left alone. */
        return !MX_IEQ_LIT(sub, sub_len, "event-stream");
    }
    if (MX_IEQ_LIT(type, type_len, "application")) {
        if (mx__iends(sub, sub_len, "+json") || mx__iends(sub, sub_len, "+xml"))
            return 1;
        for (size_t k = 0; k < sizeof mx__app_text / sizeof mx__app_text[0]; k++)
            if (mx_ieq(sub, sub_len, mx__app_text[k], strlen(mx__app_text[k])))
                return 1;
        return 0;
    }
    if (MX_IEQ_LIT(type, type_len, "image"))
        return MX_IEQ_LIT(sub, sub_len, "svg+xml") || MX_IEQ_LIT(sub, sub_len, "x-icon") ||
               MX_IEQ_LIT(sub, sub_len, "vnd.microsoft.icon") || MX_IEQ_LIT(sub, sub_len, "bmp");
    if (MX_IEQ_LIT(type, type_len, "font"))
        return MX_IEQ_LIT(sub, sub_len, "ttf") || MX_IEQ_LIT(sub, sub_len, "otf");
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * zlib
 * ------------------------------------------------------------------------------------------- */

int mx_compress(int enc, const char *in, size_t len, int level, char **out, size_t *out_len) {
    z_stream zs;
    char *buf = NULL;
    int window_bits, rc = MX_EINVAL;

    if (out == NULL || out_len == NULL || (in == NULL && len != 0))
        return MX_EINVAL;
    *out = NULL;
    *out_len = 0;
    /* windowBits 15 plus 16 asks zlib for a gzip wrapper (RFC 1952); plain 15 gives the zlib
     * wrapper (RFC 1950), which is what "deflate" means in HTTP (RFC 9110 8.4.1.2). */
    if (enc == MX_ENC_GZIP)
        window_bits = 15 + 16;
    else if (enc == MX_ENC_DEFLATE)
        window_bits = 15;
    else
        return MX_EINVAL;
    if (level == -1)
        level = 6; /* zlib's own default, named so the choice is visible */
    if (level < 1 || level > 9)
        return MX_EINVAL;

    rc = mx_deflate_init(&zs, level, window_bits, Z_DEFAULT_STRATEGY);
    if (rc != 0)
        return rc;

    /* deflateBound (called after init, so it counts the gzip header and trailer) is enough for a
     * single deflate(Z_FINISH) to finish. uLong is 64 bits on the LP64 targets we build for. */
    size_t cap = (size_t)deflateBound(&zs, (uLong)len);
    buf = malloc(cap > 0 ? cap : 1);
    if (buf == NULL) {
        rc = MX_ENOMEM;
        goto error;
    }

    /* avail_in and avail_out are 32-bit, so a body over 4 GiB goes in slices; below that (every
     * real response) the loop runs once and deflate finishes in that one call. */
    zs.next_in = (Bytef *)(uintptr_t)in; /* zlib does not write through next_in */
    zs.next_out = (Bytef *)buf;
    size_t in_left = len, out_left = cap;
    int zrc;
    do {
        uInt in_chunk = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
        uInt out_chunk = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
        if (out_chunk == 0) {
            rc = MX_EINVAL; /* deflateBound lied; cannot happen with a sane zlib */
            goto error;
        }
        zs.avail_in = in_chunk;
        zs.avail_out = out_chunk;
        zrc = deflate(&zs, in_left == in_chunk ? Z_FINISH : Z_NO_FLUSH);
        size_t used_in = in_chunk - zs.avail_in, used_out = out_chunk - zs.avail_out;
        in_left -= used_in;
        out_left -= used_out;
        if (zrc == Z_BUF_ERROR && used_in == 0 && used_out == 0) {
            rc = MX_EINVAL; /* no progress possible: stop rather than spin */
            goto error;
        }
        if (zrc == Z_MEM_ERROR) {
            rc = MX_ENOMEM;
            goto error;
        }
        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
            rc = MX_EINVAL;
            goto error;
        }
    } while (zrc != Z_STREAM_END);
    deflateEnd(&zs);

    *out_len = cap - out_left;
    /* Most bodies shrink a lot; give back the slack. A failed shrink keeps the larger block. */
    char *small = realloc(buf, *out_len > 0 ? *out_len : 1);
    *out = small != NULL ? small : buf;
    return MX_OK;

error:
    deflateEnd(&zs);
    free(buf);
    return rc;
}
