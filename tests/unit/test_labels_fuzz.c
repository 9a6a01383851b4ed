/* Mutation fuzzing of every label reader: thousands of byte-level mutations (flips, deletions,
 * insertions of CSV-significant bytes, truncations) of valid files must each be accepted or
 * refused with a message naming the file, never crash or leak (run under ASan/UBSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/rng.h"
#include "stages/labels/labels.h"

static const char *SEEDS[] = {
    "image,species,individual_id\r\na.jpg,globis,id1\r\n\"b.jpg\",beluga,id2\r\n",
    "image,bbox,conf,width,height\na.jpg,[[1 2 3 4]],0.9,10,10\nb.jpg,\"[[1, 2, 3, 4], [5 6 7 "
    "8]]\",1,10,10\nc.jpg,[],0,1,1\n",
    "image,box\na.jpg,1 2 3 4\n",
    "image,predictions\na.jpg,id1 id2 id3 id4 new_individual\nb.jpg,\"x y\"\n",
    "\xEF\xBB\xBFimage,individual_id,species,Usage\na.jpg,id1,beluga,Public\nb.jpg,new_individual,"
    "kiler_whale,Private\n",
};

static void mutate(fl_rng *r, char *buf, size_t *len, size_t cap) {
    static const char special[] = ",\"\r\n[] \t\0x.0-9e";
    int n = 1 + (int)fl_rng_below(r, 4);
    for (int k = 0; k < n; k++) {
        uint32_t op = fl_rng_below(r, 4);
        size_t at = *len ? fl_rng_below(r, (uint32_t)*len) : 0;
        if (op == 0 && *len) { /* replace */
            buf[at] = special[fl_rng_below(r, sizeof special - 1)];
        } else if (op == 1 && *len) { /* delete */
            memmove(buf + at, buf + at + 1, *len - at - 1);
            (*len)--;
        } else if (op == 2 && *len + 1 < cap) { /* insert */
            memmove(buf + at + 1, buf + at, *len - at);
            buf[at] = special[fl_rng_below(r, sizeof special - 1)];
            (*len)++;
        } else { /* truncate */
            *len = at;
        }
    }
}

static void test_readers_survive_mutations(void **state) {
    (void)state;
    char dir[] = "/tmp/fluke_labels_fuzz_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = fl_strdupf("%s/f.csv", dir);
    fl_rng r;
    fl_rng_init(&r, 11, 0);
    int accepted = 0, refused = 0;
    for (int it = 0; it < 800; it++) {
        char buf[512];
        const char *seed = SEEDS[it % 5];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        mutate(&r, buf, &len, sizeof buf);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fwrite(buf, 1, len, f);
        fclose(f);
        /* One error per reader, each call in its own statement: the order of calls inside an
         * initializer list is unspecified, so a shared message was no one reader's. */
        fl_err e[4] = {{{0}}};
        fl_train_set t;
        fl_box_set b;
        fl_submission s;
        fl_solution so;
        int rc[4];
        rc[0] = fl_train_read(path, NULL, &t, &e[0]);
        rc[1] = fl_boxes_read(path, NULL, &b, &e[1]);
        rc[2] = fl_submission_read(path, &s, &e[2]);
        rc[3] = fl_solution_read(path, &so, &e[3]);
        for (int k = 0; k < 4; k++) {
            if (rc[k] == 0) {
                accepted++;
            } else {
                refused++;
                assert_int_equal(rc[k], -1);
                /* Every refusal names the file. */
                if (!strstr(e[k].msg, "f.csv")) fail_msg("reader %d: message without file: %s", k, e[k].msg);
            }
        }
        if (rc[0] == 0) fl_train_free(&t);
        if (rc[1] == 0) fl_boxes_free(&b);
        if (rc[2] == 0) fl_submission_free(&s);
        if (rc[3] == 0) fl_solution_free(&so);
    }
    assert_true(accepted > 100 && refused > 100); /* the mutations hit both sides */
    unlink(path);
    rmdir(dir);
    free(path);
}

static void test_bbox_parser_random_text(void **state) {
    (void)state;
    fl_rng r;
    fl_rng_init(&r, 12, 0);
    static const char alphabet[] = "[] ,0123456789.-eE+naif\t";
    for (int it = 0; it < 20000; it++) {
        char s[40];
        int n = (int)fl_rng_below(&r, sizeof s - 1);
        for (int k = 0; k < n; k++) s[k] = alphabet[fl_rng_below(&r, sizeof alphabet - 1)];
        s[n] = '\0';
        float *xy = NULL;
        int nb = -1;
        fl_err e = {{0}};
        int rc = fl_bbox_parse(s, &xy, &nb, &e);
        if (rc == 0) {
            for (int k = 0; k < nb; k++) assert_true(xy[4 * k + 2] > xy[4 * k]);
        } else {
            assert_null(xy);
            assert_true(e.msg[0] != '\0');
        }
        free(xy);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readers_survive_mutations),
        cmocka_unit_test(test_bbox_parser_random_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
