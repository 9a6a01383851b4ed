/* Values of the restricted unpickler (runtime/torch_pt_internal.h): their release, lookups and
 * descriptions for messages, the opcode names, and Python's strict UTF-8 rule for strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/torch_pt_internal.h"

/* Opcode names for messages (pickletools' names); NULL for bytes that are no opcode. */
static const char *const OP_NAMES[256] = {
    [0x80] = "PROTO",
    [0x95] = "FRAME",
    ['.'] = "STOP",
    ['('] = "MARK",
    ['0'] = "POP",
    ['1'] = "POP_MARK",
    ['2'] = "DUP",
    ['N'] = "NONE",
    [0x88] = "NEWTRUE",
    [0x89] = "NEWFALSE",
    ['J'] = "BININT",
    ['K'] = "BININT1",
    ['M'] = "BININT2",
    [0x8a] = "LONG1",
    [0x8b] = "LONG4",
    ['G'] = "BINFLOAT",
    ['X'] = "BINUNICODE",
    [0x8c] = "SHORT_BINUNICODE",
    [0x8d] = "BINUNICODE8",
    ['T'] = "BINSTRING",
    ['U'] = "SHORT_BINSTRING",
    ['B'] = "BINBYTES",
    ['C'] = "SHORT_BINBYTES",
    [0x8e] = "BINBYTES8",
    [0x96] = "BYTEARRAY8",
    [')'] = "EMPTY_TUPLE",
    ['t'] = "TUPLE",
    [0x85] = "TUPLE1",
    [0x86] = "TUPLE2",
    [0x87] = "TUPLE3",
    [']'] = "EMPTY_LIST",
    ['a'] = "APPEND",
    ['e'] = "APPENDS",
    ['l'] = "LIST",
    ['}'] = "EMPTY_DICT",
    ['d'] = "DICT",
    ['s'] = "SETITEM",
    ['u'] = "SETITEMS",
    [0x8f] = "EMPTY_SET",
    [0x90] = "ADDITEMS",
    [0x91] = "FROZENSET",
    ['c'] = "GLOBAL",
    [0x93] = "STACK_GLOBAL",
    ['R'] = "REDUCE",
    [0x81] = "NEWOBJ",
    [0x92] = "NEWOBJ_EX",
    ['b'] = "BUILD",
    ['Q'] = "BINPERSID",
    ['P'] = "PERSID",
    ['q'] = "BINPUT",
    ['r'] = "LONG_BINPUT",
    [0x94] = "MEMOIZE",
    ['p'] = "PUT",
    ['h'] = "BINGET",
    ['j'] = "LONG_BINGET",
    ['g'] = "GET",
    ['I'] = "INT",
    ['L'] = "LONG",
    ['F'] = "FLOAT",
    ['S'] = "STRING",
    ['V'] = "UNICODE",
    ['i'] = "INST",
    ['o'] = "OBJ",
    [0x82] = "EXT1",
    [0x83] = "EXT2",
    [0x84] = "EXT4",
    [0x97] = "NEXT_BUFFER",
    [0x98] = "READONLY_BUFFER",
};

const char *fl_pk_op_name(unsigned char op) {
    return OP_NAMES[op];
}

/* Strict UTF-8 as Python decodes it (no overlongs, surrogates or code points past U+10FFFF). */
int fl_pk_utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80             ? 0
                   : (c & 0xE0) == 0xC0 ? 1
                   : (c & 0xF0) == 0xE0 ? 2
                   : (c & 0xF8) == 0xF0 ? 3
                                        : 9;
        if (k == 9 || n - i <= k) return 0;
        uint32_t cp = k == 0 ? c : k == 1 ? c & 0x1F : k == 2 ? c & 0x0F : c & 0x07;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static void pv_free(fl_pv *v) {
    switch (v->kind) {
    case FL_PV_STR:
    case FL_PV_BYTES:
        free(v->u.str.s);
        break;
    case FL_PV_TUPLE:
    case FL_PV_LIST:
    case FL_PV_DICT:
    case FL_PV_SET:
    case FL_PV_OBJ:
        free(v->u.seq.v);
        break;
    case FL_PV_STORAGE:
        free(v->u.storage);
        break;
    case FL_PV_TENSOR:
        free(v->u.tensor);
        break;
    default:
        break;
    }
    free(v->mod);
    free(v->name);
    free(v);
}

void fl_pk_free(fl_pk *pk) {
    for (size_t i = 0; i < pk->nall; i++)
        pv_free(pk->all[i]);
    free(pk->all);
    pk->all = NULL;
    pk->nall = pk->cap = 0;
}

const fl_pv *fl_pv_dict_get(const fl_pv *d, const char *k) {
    if (!d || d->kind != FL_PV_DICT) return NULL;
    size_t kl = strlen(k);
    for (size_t i = d->u.seq.n / 2; i-- > 0;) {
        const fl_pv *key = d->u.seq.v[2 * i];
        if (key->kind == FL_PV_STR && key->u.str.len == kl && !memcmp(key->u.str.s, k, kl))
            return d->u.seq.v[2 * i + 1];
    }
    return NULL;
}

int fl_pv_is_global(const fl_pv *g, const char *mod, const char *name) {
    return g && g->kind == FL_PV_GLOBAL && !strcmp(g->mod, mod) && !strcmp(g->name, name);
}

const char *fl_pv_describe(const fl_pv *v, char *buf, size_t cap) {
    static const char *kinds[] = {"None", "bool", "int", "float",  "str",    "bytes",   "tuple",
                                  "list", "dict", "set", "global", "object", "storage", "tensor"};
    if (!v) {
        snprintf(buf, cap, "nothing");
    } else if (v->kind == FL_PV_GLOBAL) {
        snprintf(buf, cap, "the global %.50s.%.50s", v->mod, v->name);
    } else if (v->kind == FL_PV_OBJ && v->callable && v->callable->kind == FL_PV_GLOBAL) {
        snprintf(buf, cap, "a %.50s.%.50s object", v->callable->mod, v->callable->name);
    } else {
        snprintf(buf, cap, "a %s", kinds[v->kind]);
    }
    return buf;
}
