/* Benchmark of the synthetic data generator: images/s for each preset (tiny and smoke written
 * in full to a temporary directory, large sampled: a few dozen images rendered and encoded),
 * with the ratio against the floor measured in the same run (TurboJPEG encoding the same pixels
 * alone; there is no external generator to compare with). Then the two baselines on the smoke
 * data, scored against its hidden solution: the raw-pixel kNN must clear "new_individual first"
 * by a wide margin while staying far from perfect.
 *
 * usage: bench_synth [--no-smoke] [--large N] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/labels/baselines.h"
#include "stages/synth/synth.h"

static int die(const fl_err *e) {
    fprintf(stderr, "bench_synth: %s\n", e->msg);
    return 1;
}

/* Renders n images of the plan (spread over the whole plan); returns the seconds spent and
 * the seconds the JPEG encoding alone took (encoding the same pixels again). */
static int sample_rate(const fl_synth_plan *plan, int n, double *t_total, double *t_encode,
                       double *mpix, fl_err *e) {
    double t0 = fl_now(), enc = 0, px = 0;
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : enc, px)
    for (int k = 0; k < n; k++) {
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop) continue;
        int i = (int)((long)k * plan->n_images / n);
        fl_synth_picture pic;
        fl_err le = {{0}};
        unsigned char *buf = NULL;
        unsigned long len = 0;
        if (fl_synth_render(plan, i, &pic, &le) != 0 ||
            fl_synth_jpeg_encode(pic.rgb, pic.w, pic.h, pic.quality, &buf, &len, &le) != 0) {
#pragma omp critical(bench_err)
            {
                *e = le;
#pragma omp atomic write
                failed = 1;
            }
            continue;
        }
        free(buf);
        double t1 = fl_now();
        fl_synth_jpeg_encode(pic.rgb, pic.w, pic.h, pic.quality, &buf, &len, &le);
        enc += fl_now() - t1;
        px += (double)pic.w * pic.h;
        free(buf);
        fl_synth_picture_free(&pic);
    }
    *t_total = fl_now() - t0 - enc / omp_get_max_threads();
    *t_encode = enc / omp_get_max_threads();
    *mpix = px / 1e6;
    return failed ? -1 : 0;
}

static double score(const char *sub_path, const fl_solution *sol, fl_map5_result *r,
                    fl_err *e) {
    fl_submission s;
    if (fl_submission_read(sub_path, &s, e) != 0) return -1;
    int rc = fl_map5_score(sol, &s, r, e);
    fl_submission_free(&s);
    return rc;
}

static int baselines(const char *data, const char *truth, fl_err *e) {
    char *train_csv = fl_strdupf("%s/train.csv", data), *train_dir = fl_strdupf("%s/train_images", data);
    char *test_dir = fl_strdupf("%s/test_images", data);
    char *sample = fl_strdupf("%s/sample_submission.csv", data);
    char *sol_csv = fl_strdupf("%s/solution.csv", truth);
    char *out_nf = fl_strdupf("%s/new_first.csv", truth), *out_knn = fl_strdupf("%s/knn.csv", truth);
    fl_train_set tr = {0};
    fl_submission ss = {0};
    fl_solution sol = {0};
    const char *(*ans)[FL_MAP_K] = NULL;
    fl_map5_result a = {0}, b = {0};
    int rc = -1;
    if (fl_train_read(train_csv, train_dir, &tr, e) || fl_submission_read(sample, &ss, e) ||
        fl_solution_read(sol_csv, &sol, e))
        goto done;
    ans = calloc((size_t)ss.n, sizeof *ans);
    if (fl_baseline_new_first(&tr, ss.n, ans, e) ||
        fl_submission_write(out_nf, ss.n, ss.image, (const char *const(*)[FL_MAP_K])ans, e) ||
        score(out_nf, &sol, &a, e))
        goto done;
    fl_knn_opts o = {.thumb = 16, .threads = 0};
    fl_knn_report rep;
    double t0 = fl_now();
    if (fl_baseline_pixel_knn(&tr, train_dir, ss.image, ss.n, test_dir, &o, ans, &rep, e) ||
        fl_submission_write(out_knn, ss.n, ss.image, (const char *const(*)[FL_MAP_K])ans, e) ||
        score(out_knn, &sol, &b, e))
        goto done;
    printf("smoke baselines (MAP@5 on %d test images, %d public / %d private):\n", b.n_all,
           b.n_pub, b.n_priv);
    printf("  new_individual first: %.4f (public %.4f, private %.4f; known %.4f, new %.4f)\n",
           a.all, a.pub, a.priv, a.known, a.fresh);
    printf("  raw-pixel kNN 16x16:  %.4f (public %.4f, private %.4f; known %.4f, new %.4f), "
           "threshold %.3f, %.1f s\n", b.all, b.pub, b.priv, b.known, b.fresh, rep.threshold,
           fl_now() - t0);
    printf("  ratio kNN / new_first: %.2fx\n", b.all / a.all);
    rc = 0;
done:
    fl_map5_result_free(&a);
    fl_map5_result_free(&b);
    free(ans);
    fl_train_free(&tr);
    fl_submission_free(&ss);
    fl_solution_free(&sol);
    free(train_csv); free(train_dir); free(test_dir); free(sample); free(sol_csv);
    free(out_nf); free(out_knn);
    return rc;
}

int main(int argc, char **argv) {
    int smoke = 1, n_large = 48;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-smoke")) smoke = 0;
        else if (!strcmp(argv[i], "--large") && i + 1 < argc) n_large = atoi(argv[++i]);
    }
    fl_err e = {{0}};
    char root[] = "/tmp/fluke_bench_synth_XXXXXX";
    if (!mkdtemp(root)) return 1;
    printf("threads: %d\n", omp_get_max_threads());
    const char *presets[] = {"tiny", "smoke", "large"};
    int rc = 0;
    for (int k = 0; k < 3 && rc == 0; k++) {
        fl_synth_params p;
        fl_synth_plan plan;
        if (fl_synth_preset(presets[k], &p, &e) || fl_synth_plan_make(&p, &plan, &e)) {
            rc = die(&e);
            break;
        }
        double t_all, t_enc, mpix;
        int n_sample = k == 2 ? n_large : 64;
        if (sample_rate(&plan, n_sample, &t_all, &t_enc, &mpix, &e) != 0) {
            rc = die(&e);
            fl_synth_plan_free(&plan);
            break;
        }
        printf("%-5s sampled %4d images (%.1f Mpx): %8.1f img/s, %6.1f Mpx/s; JPEG encode alone "
               "%8.1f img/s; ratio generate/encode-only time %.1fx\n",
               presets[k], n_sample, mpix, n_sample / t_all, mpix / t_all, n_sample / t_enc,
               t_all / t_enc);
        if (k < 2 && (k == 0 || smoke)) {
            char *data = fl_strdupf("%s/%s/data", root, presets[k]);
            char *truth = fl_strdupf("%s/%s/truth", root, presets[k]);
            double t0 = fl_now();
            if (fl_synth_write(&plan, data, truth, 0, NULL, NULL, &e) != 0) rc = die(&e);
            else {
                double dt = fl_now() - t0;
                printf("%-5s full write: %d images in %.2f s = %.1f img/s (files included)\n",
                       presets[k], plan.n_images, dt, plan.n_images / dt);
                if (k == 1 && baselines(data, truth, &e) != 0) rc = die(&e);
            }
            free(data);
            free(truth);
        } else if (k == 1) {
            printf("smoke full write: skipped: --no-smoke\n");
        }
        fl_synth_plan_free(&plan);
    }
    fl_remove_tree(root, &e);
    return rc;
}
