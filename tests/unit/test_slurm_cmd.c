/* What the Slurm executor reads from sbatch, squeue and sacct, how it names job states, which
 * command failures it retries, and that the retry really backs off and stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dag/slurm_cmd.h"

static void test_states(void **state) {
    (void)state;
    static const struct {
        const char *word;
        fl_sj want;
    } cases[] = {
        {"PENDING", FL_SJ_LIVE},          {"RUNNING", FL_SJ_LIVE},
        {"COMPLETING", FL_SJ_LIVE},       {"CONFIGURING", FL_SJ_LIVE},
        {"REQUEUED", FL_SJ_LIVE},         {"SUSPENDED", FL_SJ_LIVE},
        {"R", FL_SJ_LIVE},                {"PD", FL_SJ_LIVE},
        {"COMPLETED", FL_SJ_COMPLETED},   {"CD", FL_SJ_COMPLETED},
        {"FAILED", FL_SJ_FAILED},         {"CANCELLED by 1000", FL_SJ_CANCELLED},
        {"CANCELLED+", FL_SJ_CANCELLED},  {"CA", FL_SJ_CANCELLED},
        {"TIMEOUT", FL_SJ_TIMEOUT},       {"NODE_FAIL", FL_SJ_NODE_FAIL},
        {"NF", FL_SJ_NODE_FAIL},          {"PREEMPTED", FL_SJ_PREEMPTED},
        {"OUT_OF_MEMORY", FL_SJ_OOM},     {"OOM", FL_SJ_OOM},
        {"BOOT_FAIL", FL_SJ_BOOT_FAIL},   {"DEADLINE", FL_SJ_DEADLINE},
        {"  RUNNING", FL_SJ_LIVE},        {"SOMETHING_NEW", FL_SJ_OTHER_FINAL},
        {"", FL_SJ_UNKNOWN},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        fl_sj got = fl_slurm_state(cases[k].word);
        if (got != cases[k].want) fail_msg("state '%s' read as %d, want %d", cases[k].word, got, cases[k].want);
    }
    assert_false(fl_slurm_final(FL_SJ_LIVE));
    assert_false(fl_slurm_final(FL_SJ_UNKNOWN));
    assert_true(fl_slurm_final(FL_SJ_NODE_FAIL));
    assert_true(fl_slurm_final(FL_SJ_OTHER_FINAL));
    assert_string_equal(fl_slurm_state_name(FL_SJ_PREEMPTED), "PREEMPTED");
    assert_string_equal(fl_slurm_state_name(FL_SJ_OOM), "OUT_OF_MEMORY");
}

static void test_sbatch(void **state) {
    (void)state;
    char id[64];
    fl_err e = {{0}};
    assert_int_equal(fl_slurm_parse_sbatch("4242\n", id, sizeof id, &e), 0);
    assert_string_equal(id, "4242");
    assert_int_equal(fl_slurm_parse_sbatch("77;cluster2\n", id, sizeof id, &e), 0);
    assert_string_equal(id, "77");
    assert_int_equal(fl_slurm_parse_sbatch("Submitted batch job 5\n", id, sizeof id, &e), -1);
    assert_non_null(strstr(e.msg, "Submitted batch job 5"));
    assert_int_equal(fl_slurm_parse_sbatch("", id, sizeof id, &e), -1);
    assert_int_equal(fl_slurm_parse_sbatch("12 13\n", id, sizeof id, &e), -1);
}

static void test_squeue(void **state) {
    (void)state;
    fl_slurm_rows r = {0};
    fl_err e = {{0}};
    assert_int_equal(fl_slurm_parse_squeue("100|RUNNING\n101_0|PENDING\n\n101_1|COMPLETED\n"
                                           "102|NODE_FAIL\n",
                                           &r, &e),
                     0);
    assert_int_equal(r.n, 4);
    assert_int_equal(fl_slurm_rows_find(&r, "100")->state, FL_SJ_LIVE);
    assert_int_equal(fl_slurm_rows_find(&r, "101_0")->state, FL_SJ_LIVE);
    assert_int_equal(fl_slurm_rows_find(&r, "101_1")->state, FL_SJ_COMPLETED);
    assert_int_equal(fl_slurm_rows_find(&r, "102")->state, FL_SJ_NODE_FAIL);
    assert_null(fl_slurm_rows_find(&r, "101"));
    assert_null(fl_slurm_rows_find(&r, "10"));
    /* Garbage is an error quoting it, not a silently empty queue. */
    assert_int_equal(fl_slurm_parse_squeue("JOBID STATE\n", &r, &e), -1);
    assert_non_null(strstr(e.msg, "JOBID STATE"));
    assert_int_equal(fl_slurm_parse_squeue("100|\n", &r, &e), -1);
    fl_slurm_rows_free(&r);
    assert_int_equal(fl_slurm_parse_squeue("", &r, &e), 0);
    assert_int_equal(r.n, 0);
}

static void test_sacct(void **state) {
    (void)state;
    fl_slurm_rows r = {0};
    fl_err e = {{0}};
    const char *text = "200|COMPLETED|0:0\n"
                       "200.batch|COMPLETED|0:0\n"
                       "200.extern|COMPLETED|0:0\n"
                       "201|FAILED|2:0\n"
                       "201.batch|FAILED|2:0\n"
                       "202|FAILED|0:125\n"
                       "202.batch|OUT_OF_MEMORY|0:125\n"
                       "203|CANCELLED by 1000|0:15\n"
                       "204_3|NODE_FAIL|0:0\n"
                       "205_[0-4]|PENDING|0:0\n"
                       "206|PREEMPTED|0:15\n"
                       "207|TIMEOUT|0:1\n";
    assert_int_equal(fl_slurm_parse_sacct(text, &r, &e), 0);
    assert_int_equal(r.n, 7); /* steps and the pending range are no rows of their own */
    const fl_slurm_row *a = fl_slurm_rows_find(&r, "200");
    assert_int_equal(a->state, FL_SJ_COMPLETED);
    assert_int_equal(a->exit_code, 0);
    a = fl_slurm_rows_find(&r, "201");
    assert_int_equal(a->state, FL_SJ_FAILED);
    assert_int_equal(a->exit_code, 2);
    assert_int_equal(a->exit_signal, 0);
    assert_int_equal(fl_slurm_rows_find(&r, "202")->state, FL_SJ_OOM); /* from its step */
    assert_int_equal(fl_slurm_rows_find(&r, "203")->state, FL_SJ_CANCELLED);
    assert_int_equal(fl_slurm_rows_find(&r, "203")->exit_signal, 15);
    assert_int_equal(fl_slurm_rows_find(&r, "204_3")->state, FL_SJ_NODE_FAIL);
    assert_int_equal(fl_slurm_rows_find(&r, "206")->state, FL_SJ_PREEMPTED);
    assert_int_equal(fl_slurm_rows_find(&r, "207")->state, FL_SJ_TIMEOUT);
    assert_null(fl_slurm_rows_find(&r, "205"));
    assert_null(fl_slurm_rows_find(&r, "200.batch"));
    fl_slurm_rows_free(&r);
    assert_int_equal(fl_slurm_parse_sacct("JobID State\n", &r, &e), -1);
    assert_int_equal(fl_slurm_parse_sacct("x1|COMPLETED|0:0\n", &r, &e), -1);
    fl_slurm_rows_free(&r);
}

static fl_slurm_out fake(int status, const char *err) {
    fl_slurm_out o = {.status = status, .out = (char *)"", .err = (char *)err};
    return o;
}

static void test_transient(void **state) {
    (void)state;
    fl_slurm_out o = fake(1, "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation\n");
    assert_true(fl_slurm_transient(&o));
    o = fake(1, "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation");
    assert_true(fl_slurm_transient(&o));
    o = fake(1, "squeue: error: Unable to contact slurm controller (connect failure)");
    assert_true(fl_slurm_transient(&o));
    o = fake(1, "slurm_load_jobs error: Unable to contact slurm controller");
    assert_true(fl_slurm_transient(&o));
    /* An answer, not a busy controller: the jobs left the queue. */
    o = fake(1, "slurm_load_jobs error: Invalid job id specified");
    assert_false(fl_slurm_transient(&o));
    assert_true(fl_slurm_invalid_job_id(&o));
    o = fake(1, "sbatch: error: invalid partition specified: gpuz");
    assert_false(fl_slurm_transient(&o));
    o = fake(0, "Socket timed out");
    assert_false(fl_slurm_transient(&o)); /* it succeeded */
    o = fake(-1, "");
    o.timed_out = 1;
    assert_true(fl_slurm_transient(&o));
}

static void test_run(void **state) {
    (void)state;
    fl_slurm_out o;
    fl_err e = {{0}};
    char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    assert_int_equal(fl_slurm_run(argv, 10, &o, &e), 0);
    assert_int_equal(o.status, 3);
    assert_string_equal(o.out, "out\n");
    assert_string_equal(o.err, "err\n");
    fl_slurm_out_free(&o);
    char *slow[] = {"sh", "-c", "sleep 5", NULL};
    double t0 = fl_now();
    assert_int_equal(fl_slurm_run(slow, 0.3, &o, &e), 0);
    assert_true(o.timed_out);
    assert_true(fl_now() - t0 < 3);
    fl_slurm_out_free(&o);
    char *none[] = {"fluke-no-such-sbatch", NULL};
    assert_int_equal(fl_slurm_run(none, 1, &o, &e), -1);
    assert_non_null(strstr(e.msg, "fluke-no-such-sbatch"));
}

/* A command that fails transiently twice, then answers: three tries, backoff 0.1 + 0.2 s. */
static void test_retry(void **state) {
    (void)state;
    char dir[] = "/tmp/fluke-slurm-retry-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char script[300];
    snprintf(script, sizeof script,
             "n=$(cat %s/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s/n; "
             "if [ $n -le 2 ]; then echo 'slurm_load_jobs error: Socket timed out' >&2; exit 1; fi; "
             "echo ok",
             dir, dir);
    char *argv[] = {"sh", "-c", script, NULL};
    int retried = 0;
    fl_slurm_retry r = {.tries = 5, .first_s = 0.1, .limit_s = 10, .retried = &retried};
    fl_slurm_out o;
    fl_err e = {{0}};
    double t0 = fl_now();
    assert_int_equal(fl_slurm_run_retry(argv, &r, &o, &e), 0);
    double dt = fl_now() - t0;
    assert_int_equal(o.status, 0);
    assert_string_equal(o.out, "ok\n");
    assert_int_equal(retried, 2);
    assert_true(dt >= 0.29);
    fl_slurm_out_free(&o);
    /* Bounded: with two tries it gives up, naming the last error. */
    char nfile[320];
    snprintf(nfile, sizeof nfile, "%s/n", dir);
    unlink(nfile);
    r.tries = 2;
    retried = 0;
    assert_int_equal(fl_slurm_run_retry(argv, &r, &o, &e), -1);
    assert_non_null(strstr(e.msg, "Socket timed out"));
    assert_non_null(strstr(e.msg, "2 tries"));
    assert_int_equal(retried, 1);
    /* A stop request (Ctrl-C) ends the backoff at once. */
    unlink(nfile);
    volatile sig_atomic_t stop = 1;
    r.tries = 5;
    r.first_s = 30;
    r.stop = &stop;
    t0 = fl_now();
    assert_int_equal(fl_slurm_run_retry(argv, &r, &o, &e), -1);
    assert_true(fl_now() - t0 < 5);
    unlink(nfile);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_states),     cmocka_unit_test(test_sbatch),
        cmocka_unit_test(test_squeue),     cmocka_unit_test(test_sacct),
        cmocka_unit_test(test_transient),  cmocka_unit_test(test_run),
        cmocka_unit_test(test_retry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
