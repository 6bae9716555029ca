/*
 * text.h: the small pieces of RFC 9110 5.6 syntax that header values are made of (tokens, OWS,
 * comma-separated lists, ASCII case), shared by the parsers of Accept-Encoding, Content-Type,
 * Connection, Upgrade and the WebSocket extension headers. Header-only (static inline), so each
 * core file still builds alone into its unit test and fuzz target.
 */
#ifndef MX_TEXT_H
#define MX_TEXT_H

#include <stddef.h>
#include <string.h>

/* tchar from RFC 9110 5.6.2: the characters a token may hold. */
static inline int mx_is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return 1;
    default:
        return 0;
    }
}

static inline int mx_is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

static inline unsigned char mx_lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* 1 when s[0..len) equals lit[0..lit_len), ignoring ASCII case. */
static inline int mx_ieq(const char *s, size_t len, const char *lit, size_t lit_len) {
    if (len != lit_len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (mx_lower((unsigned char)s[i]) != mx_lower((unsigned char)lit[i]))
            return 0;
    return 1;
}

/* mx_ieq against a string literal. */
#define MX_IEQ_LIT(s, len, lit) mx_ieq((s), (len), (lit), sizeof(lit) - 1)

static inline void mx_skip_ows(const char *s, size_t len, size_t *i) {
    while (*i < len && mx_is_ows((unsigned char)s[*i]))
        (*i)++;
}

/* Advances *i past a run of tchar and returns how many there were. */
static inline size_t mx_token(const char *s, size_t len, size_t *i) {
    size_t start = *i;
    while (*i < len && mx_is_tchar((unsigned char)s[*i]))
        (*i)++;
    return *i - start;
}

/*
 * Moves *i to the end of the list item it is in: the next comma outside a quoted-string, or the
 * end of the value. Steps over an item that is malformed, not understood, or declined.
 */
static inline void mx_skip_item(const char *s, size_t len, size_t *i) {
    int quoted = 0;
    for (; *i < len; (*i)++) {
        char c = s[*i];
        if (quoted) {
            if (c == '\\' && *i + 1 < len)
                (*i)++;
            else if (c == '"')
                quoted = 0;
        } else if (c == '"') {
            quoted = 1;
        } else if (c == ',') {
            return;
        }
    }
}

/*
 * The next non-empty item of a comma-separated list, OWS trimmed: sets *item and *item_len and
 * returns 1, or returns 0 at the end of the list. Quoted strings are not special: for lists of
 * tokens only (Connection, Upgrade, Sec-WebSocket-Protocol).
 */
static inline int mx_next_item(const char *s, size_t len, size_t *i, const char **item,
                               size_t *item_len) {
    while (*i < len) {
        mx_skip_ows(s, len, i);
        size_t start = *i;
        while (*i < len && s[*i] != ',')
            (*i)++;
        size_t end = *i;
        if (*i < len)
            (*i)++; /* the comma */
        while (end > start && mx_is_ows((unsigned char)s[end - 1]))
            end--;
        if (end > start) {
            *item = s + start;
            *item_len = end - start;
            return 1;
        }
    }
    return 0;
}

/* 1 when the comma-separated list value[0..len) holds token, ignoring ASCII case. */
static inline int mx_list_has_token(const char *value, size_t len, const char *token,
                                    size_t token_len) {
    const char *item;
    size_t item_len, i = 0;
    while (mx_next_item(value, len, &i, &item, &item_len))
        if (mx_ieq(item, item_len, token, token_len))
            return 1;
    return 0;
}

#endif
