/*
 * test_options.c: unit tests for csrc/core/options.c, linked alone: the table is well formed
 * (unique names, fields inside mx_config_t, defaults within their bounds), mx_config_defaults
 * writes each default into its field, lookups find every name and nothing else, and setters keep
 * to types and bounds (a refused value leaves the config unchanged).
 *   make build/c/test_options && ./build/c/test_options
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "options.h"

/* The field of o in c, read as a double whatever its C type. */
static double field(const mx_config_t *c, const mx_option_t *o) {
    const char *p = (const char *)c + o->offset;
    switch (o->kind) {
    case MX_OPT_SIZE: {
        size_t v;
        memcpy(&v, p, sizeof(v));
        return (double)v;
    }
    case MX_OPT_DOUBLE: {
        double v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
    default: {
        int v;
        memcpy(&v, p, sizeof(v));
        return (double)v;
    }
    }
}

static void test_table(void) {
    mx_config_t c;
    mx_config_defaults(&c);
    CHECK(mx_num_options > 10, "a table (%zu options)", mx_num_options);
    for (size_t i = 0; i < mx_num_options; i++) {
        const mx_option_t *o = &mx_options[i];
        CHECK(o->name && *o->name && o->doc && *o->doc, "option %zu has a name and a doc", i);
        CHECK(o->offset < sizeof(mx_config_t), "%s: field inside mx_config_t", o->name);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(o->name, mx_options[j].name) != 0, "%s: listed twice", o->name);
        CHECK(mx_option_find(o->name, strlen(o->name)) == o, "%s: found by name", o->name);
        if (o->flags & MX_OPT_AUTO)
            continue;
        CHECK(field(&c, o) == o->def, "%s: default %g in its field (%g)", o->name, o->def,
              field(&c, o));
        if ((o->flags & MX_OPT_HAS_MIN) && !(o->flags & MX_OPT_NONE_OFF && o->def == 0))
            CHECK(o->def >= o->min, "%s: default within its lower bound", o->name);
        if (o->flags & MX_OPT_HAS_MAX)
            CHECK(o->def <= o->max, "%s: default within its upper bound", o->name);
    }
    CHECK(mx_option_find("nope", 4) == NULL, "an unknown name is not found");
    CHECK(mx_option_find("max_body_le", 11) == NULL, "a prefix is not a name");
}

static void test_setters(void) {
    mx_config_t c;
    mx_config_defaults(&c);
    const mx_option_t *body = mx_option_find("max_body_len", 12);
    const mx_option_t *idle = mx_option_find("idle_timeout", 12);
    CHECK(body && body->kind == MX_OPT_SIZE && idle && idle->kind == MX_OPT_DOUBLE, "kinds");
    if (!body || !idle)
        return;
    CHECK(mx_option_set_int(&c, body, 12345) == 0 && c.max_body_len == 12345, "set a size");
    CHECK(mx_option_set_int(&c, body, -1) == MX_EINVAL && c.max_body_len == 12345,
          "a negative size is refused and changes nothing");
    CHECK(mx_option_set_double(&c, body, 1.0) == MX_EINVAL, "a double for a size is refused");
    CHECK(mx_option_set_double(&c, idle, 2.5) == 0 && c.idle_timeout == 2.5, "set seconds");
    CHECK(mx_option_set_double(&c, idle, NAN) == MX_EINVAL && c.idle_timeout == 2.5,
          "NaN is refused");
    CHECK(mx_option_set_int(&c, idle, 3) == MX_EINVAL, "an int for seconds is refused");
}

int main(void) {
    test_table();
    test_setters();
    return harness_summary("options");
}
