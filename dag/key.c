#include "dag/key.h"

#include <stdlib.h>
#include <string.h>

#include "dag/config.h"

/* tag byte, 8-byte little-endian length, bytes: no two different inputs encode the same. */
static void put(fl_hasher *h, char tag, const void *data, size_t len) {
    unsigned char hdr[9];
    hdr[0] = (unsigned char)tag;
    for (int i = 0; i < 8; i++) hdr[1 + i] = (unsigned char)((uint64_t)len >> (8 * i));
    fl_hasher_update(h, hdr, sizeof hdr);
    fl_hasher_update(h, data, len);
}

static void puts_(fl_hasher *h, char tag, const char *s) { put(h, tag, s, strlen(s)); }

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int fl_key_compute(const fl_plan_node *n, const cJSON *config, const fl_digest *in, fl_digest *key,
                   cJSON **desc, fl_err *e) {
    fl_hasher *h = fl_hasher_new();
    if (!h) return fl_errf(e, "out of memory");
    cJSON *d = cJSON_CreateObject(), *cfg = cJSON_CreateObject(), *ins = cJSON_CreateObject();
    char **secs = malloc((n->sections.n + 1) * sizeof *secs);
    size_t *idx = malloc((n->ninputs + 1) * sizeof *idx);
    if (!d || !cfg || !ins || !secs || !idx) {
        cJSON_Delete(d);
        cJSON_Delete(cfg);
        cJSON_Delete(ins);
        free(secs);
        free(idx);
        fl_hasher_free(h);
        return fl_errf(e, "out of memory");
    }
    puts_(h, 'V', FL_KEY_SCHEMA);
    puts_(h, 'S', n->def->name);
    puts_(h, 'N', n->id);
    puts_(h, 'C', n->def->code_id ? n->def->code_id : "");

    /* sections and inputs in sorted order: declaration order must not matter */
    if (n->sections.n) memcpy(secs, n->sections.v, n->sections.n * sizeof *secs);
    qsort(secs, n->sections.n, sizeof *secs, cmp_str);
    for (size_t i = 0; i < n->sections.n; i++) {
        const cJSON *v = fl_config_get(config, secs[i]);
        char *canon = fl_config_canonical(v);
        puts_(h, 'k', secs[i]);
        puts_(h, 'v', canon);
        cJSON_AddItemToObject(cfg, secs[i], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
        free(canon);
    }
    free(secs);

    for (size_t i = 0; i < n->ninputs; i++) idx[i] = i;
    for (size_t i = 1; i < n->ninputs; i++) /* insertion sort by name: inputs are few */
        for (size_t j = i; j > 0 && strcmp(n->inputs[idx[j - 1]].name, n->inputs[idx[j]].name) > 0;
             j--) {
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    for (size_t k = 0; k < n->ninputs; k++) {
        size_t i = idx[k];
        char hex[FL_DIGEST_HEX];
        fl_digest_hex(&in[i], hex);
        puts_(h, 'i', n->inputs[i].name);
        puts_(h, 'd', hex);
        cJSON *one = cJSON_CreateObject();
        cJSON_AddStringToObject(one, "digest", hex);
        if (n->inputs[i].from_node) cJSON_AddStringToObject(one, "from", n->inputs[i].from_node);
        if (n->inputs[i].path) cJSON_AddStringToObject(one, "path", n->inputs[i].path);
        cJSON_AddItemToObject(ins, n->inputs[i].name, one);
    }
    free(idx);
    for (size_t i = 0; i < n->outputs.n; i++) puts_(h, 'o', n->outputs.v[i]);

    fl_hasher_digest(h, key);
    fl_hasher_free(h);
    char khex[FL_DIGEST_HEX];
    fl_digest_hex(key, khex);
    cJSON_AddStringToObject(d, "node", n->id);
    cJSON_AddStringToObject(d, "stage", n->def->name);
    cJSON_AddStringToObject(d, "key", khex);
    cJSON_AddStringToObject(d, "code", n->def->code_id ? n->def->code_id : "");
    cJSON_AddItemToObject(d, "config", cfg);
    cJSON_AddItemToObject(d, "inputs", ins);
    if (desc)
        *desc = d;
    else
        cJSON_Delete(d);
    return 0;
}
