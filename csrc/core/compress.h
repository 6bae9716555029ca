/*
 * compress.h: response compression (gzip and deflate through zlib) and the negotiation around it.
 * Pure functions; any thread. Workers call mx_compress without holding the GIL.
 */
#ifndef MX_COMPRESS_H
#define MX_COMPRESS_H

#include <stddef.h>
#include <string.h>
#include <zlib.h>

#include "common.h"

#define MX_ENC_NONE 0
#define MX_ENC_GZIP 1
#define MX_ENC_DEFLATE 2

/* Bodies at or below this many bytes are never compressed (Mummy's threshold). */
#define MX_COMPRESS_MIN_LEN 860

/*
 * Chooses a coding from an Accept-Encoding value (several fields joined by ", "), honouring
 * q-values (RFC 9110 12.5.3): a coding with q=0 is refused, "*" covers codings not listed, the
 * highest q wins, gzip preferred over deflate on a tie. Parameters and whitespace are tolerated;
 * a malformed element is ignored. Returns MX_ENC_GZIP, MX_ENC_DEFLATE or MX_ENC_NONE.
 */
int mx_compress_choose(const char *accept_encoding, size_t len);

/*
 * 1 when a response of this Content-Type is worth compressing: any text/ type but event-stream,
 * and application/ or image/ types that are text underneath (json, javascript, ecmascript, xml,
 * *+json, *+xml, x-www-form-urlencoded, wasm, svg+xml, ...). Parameters (";charset=...")
 * ignored, case-insensitive.
 * 0 for everything else, including an empty type.
 */
int mx_compress_type_ok(const char *content_type, size_t len);

/* deflateInit2 on a zeroed zs (method deflate, memLevel 8): 0, MX_ENOMEM, or MX_EINVAL for
 * parameters zlib refuses. Shared by HTTP compression and permessage-deflate. Any thread. */
static inline int mx_deflate_init(z_stream *zs, int level, int window_bits, int strategy) {
    memset(zs, 0, sizeof(*zs));
    switch (deflateInit2(zs, level, Z_DEFLATED, window_bits, 8, strategy)) {
    case Z_OK:
        return 0;
    case Z_MEM_ERROR:
        return MX_ENOMEM;
    default:
        return MX_EINVAL;
    }
}

/*
 * Compresses in[0..len) with enc (gzip wrapper, or zlib-wrapped deflate as RFC 9110 8.4.1.2
 * defines "deflate"). On success returns 0 and sets *out (malloc'd; caller frees) and *out_len.
 * Returns MX_ENOMEM or MX_EINVAL on failure. level: 1..9, or -1 for zlib's default.
 */
int mx_compress(int enc, const char *in, size_t len, int level, char **out, size_t *out_len);

#endif
