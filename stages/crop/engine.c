/* The crop engine (crop.h): a step of lanes x batch images goes through three phases:
 *
 *   1. read, probe, scaled decode (the smallest scale covering the detector input on the long
 *      side), letterbox into a lane's input           (image threads)
 *   2. each lane's detector graph forwarded, the lanes side by side on one thread each: no
 *      per-op barriers, which cost more than they gain for these small images on 2 cores
 *   3. the best box (per class: NMS), map back, widen, cut from a decode at the scale that
 *      keeps crop.size, resize, JPEG encode, write   (image threads)
 *
 * then, in item order on one thread, the step's crops.csv rows, counts and log lines. Every
 * image's result depends on its own bytes and its position in a batch (i % batch) only
 * (a padded last batch, eval-mode batch norm, thread-count independent kernels), so the output
 * is the same bytes for any thread count. */
#include <cblas.h>
#include <errno.h>
#include <stdarg.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/crop/crop.h"
#include "stages/detector/detector_io.h"

#define MAX_LANES 64 /* detector graphs side by side */
#define MAX_JPEG_BYTES ((size_t)256 << 20) /* a larger file is a bad image, not a read */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p ? b->p + b->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if ((size_t)k < room) { b->n += (size_t)k; return; }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q, b->cap = cap;
    }
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void sb_field(sbuf *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) { sb_printf(b, "%s", s); return; }
    sb_printf(b, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"') sb_printf(b, "\"\"");
        else if (*p == '\r' || *p == '\n') sb_printf(b, " ");
        else sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

typedef struct slot {
    const fl_crop_item *it;
    char *bytes;
    size_t len;
    int full_w, full_h;
    int given, detect;     /* the crop comes from the given box / from the detector */
    fl_image *img;         /* the latest decode (detector scale first) */
    int img_denom;
    fl_letterbox lb;
    int bad;
    fl_err err;            /* the message of a bad image, or the fatal error */
    int fatal;
    sbuf rows;             /* this image's crops.csv rows */
    int n_crops, fallback;
} slot;

static void slot_clear(slot *s) {
    free(s->bytes);
    fl_image_free(s->img);
    free(s->rows.p);
    memset(s, 0, sizeof *s);
}

static const char *split_name(int split) { return split == FL_CROP_TEST ? "test" : "train"; }

/* Phase 1 for one image. A read or decode failure marks the image bad (skipped, counted). */
static void phase_decode(slot *s, const fl_crop_opts *o, int imgsz, float *x) {
    const fl_crop_item *it = s->it;
    size_t px = (size_t)imgsz * imgsz * 3;
    s->given = o->given_boxes && it->split == FL_CROP_TRAIN && it->has_box;
    fl_decode_info info;
    if (!(s->bytes = fl_read_file_max(it->path, &s->len, MAX_JPEG_BYTES, &s->err)) ||
        fl_jpeg_probe((const uint8_t *)s->bytes, s->len, it->path, &info, &s->err)) {
        s->bad = 1;
        goto pad;
    }
    s->full_w = info.src_width, s->full_h = info.src_height;
    if (s->given) goto pad;
    s->detect = 1;
    int d = fl_crop_denom_long(s->full_w, s->full_h, imgsz);
    fl_decode_opts dopt = {.target_w = (s->full_w + d - 1) / d};
    if (!(s->img = fl_jpeg_decode((const uint8_t *)s->bytes, s->len, it->path, &dopt, &info, &s->err))) {
        s->bad = 1, s->detect = 0;
        goto pad;
    }
    s->img_denom = info.scale_denom;
    fl_image *lb = fl_letterbox_apply(s->img, imgsz, imgsz, 1, FL_CROP_FILL, NULL, 0, &s->lb, &s->err);
    if (!lb) {
        s->fatal = 1;
        return;
    }
    fl_image_to_float(lb, x);
    fl_image_free(lb);
    return;
pad: /* a slot without detection still gets defined input */
    for (size_t i = 0; i < px; i++) x[i] = FL_CROP_FILL / 255.0f;
}

/* The crop file's name: the image's own, or <stem>_<class>.jpg for per-class crops. */
static char *crop_name(const char *image, const char *cls) {
    if (!cls) return strdup(image);
    const char *dot = strrchr(image, '.');
    int stem = dot ? (int)(dot - image) : (int)strlen(image);
    char *s = fl_strdupf("%.*s_%s.jpg", stem, image, cls);
    if (s)
        for (char *p = s + stem + 1; *p && strcmp(p, ".jpg"); p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-'))
                *p = '_';
    return s;
}

/* Cuts region r (full-size pixels) from a decode that keeps it at least crop.size, writes the
 * crop and its crops.csv row. box is the row's box (before the margin). */
static int emit_crop(slot *s, const fl_crop_opts *o, const char *out_dir, fl_box box, fl_box r,
                     float conf, int fallback, const char *cls, fl_err *e) {
    const fl_crop_item *it = s->it;
    int d = fl_crop_denom_region(r.x2 - r.x1, r.y2 - r.y1, o->size, o->keep_aspect);
    if (!s->img || s->img_denom > d) { /* too small a decode for this crop: decode larger */
        fl_decode_opts dopt = {.target_w = (s->full_w + d - 1) / d};
        fl_decode_info info;
        fl_image *img = fl_jpeg_decode((const uint8_t *)s->bytes, s->len, it->path, &dopt, &info, e);
        if (!img) {
            s->bad = 1;
            return -1;
        }
        fl_image_free(s->img);
        s->img = img, s->img_denom = info.scale_denom;
    }
    fl_image *c = fl_crop_cut(s->img, s->full_w, s->full_h, r, o->size, o->keep_aspect, e);
    if (!c) return fl_errprefix(e, "%s", it->path), s->fatal = 1, -1;
    uint8_t *jpg = NULL;
    size_t len = 0;
    char *name = crop_name(it->image, o->per_class && !fallback ? cls : NULL);
    char *path = name ? fl_strdupf("%s/crops/%s/%s", out_dir, split_name(it->split), name) : NULL;
    int rc = !path ? fl_errf(e, "crop: out of memory")
                   : fl_jpeg_encode(c, o->quality, &jpg, &len, e) ? fl_errprefix(e, "%s", path)
                   : fl_write_file(path, jpg, len, e);
    fl_image_free(c);
    free(jpg);
    free(path);
    if (rc) {
        free(name);
        s->fatal = 1;
        return -1;
    }
    sb_field(&s->rows, it->image);
    sb_printf(&s->rows, ",%s,%.2f,%.2f,%.2f,%.2f,%.5f,%d,", split_name(it->split), box.x1, box.y1,
              box.x2, box.y2, conf, fallback);
    sb_field(&s->rows, cls ? cls : "");
    sb_printf(&s->rows, ",crops/%s/", split_name(it->split));
    sb_field(&s->rows, name);
    sb_printf(&s->rows, "\n");
    free(name);
    s->n_crops++;
    return 0;
}

int fl_crop_best_detection(const fl_yolo_cfg *c, const fl_yolo_heads *h, const float *heads,
                           int64_t b, float conf, fl_yolo_det *out, fl_err *e) {
    const int nc = c->nc;
    size_t cells = fl_yolo_num_cells(h);
    float *xywh = malloc(sizeof(float) * 4 * cells), *prob = malloc(sizeof(float) * (1 + nc) * cells);
    if (!xywh || !prob) {
        free(xywh), free(prob);
        return fl_errf(e, "crop: out of memory decoding %zu cells", cells);
    }
    fl_yolo_decode(c, h, heads, b, xywh, prob);
    int found = 0;
    float top = 0;
    for (size_t k = 0; k < cells; k++) { /* the candidate rule of fl_yolo_detect */
        const float *pr = prob + k * (1 + nc);
        if (!(pr[0] > conf)) continue;
        int best = 0;
        float bs = pr[1] * pr[0];
        for (int j = 1; j < nc; j++)
            if (pr[1 + j] * pr[0] > bs) bs = pr[1 + j] * pr[0], best = j;
        if (!(bs > conf) || (found && !(bs > top))) continue;
        const float *q = xywh + 4 * k;
        *out = (fl_yolo_det){q[0] - q[2] / 2, q[1] - q[3] / 2, q[0] + q[2] / 2, q[1] + q[3] / 2, bs, best};
        top = bs, found = 1;
    }
    free(xywh), free(prob);
    return found;
}

/* Phase 3 for one image. */
static void phase_crop(slot *s, const fl_crop_opts *o, const fl_detector *det, const float *heads,
                       int b, const char *out_dir) {
    if (s->bad || s->fatal) return;
    fl_err *e = &s->err;
    if (s->given) {
        fl_box g = s->it->box;
        fl_box whole = {0, 0, (float)s->full_w, (float)s->full_h, -1};
        g.x1 = g.x1 < 0 ? 0 : g.x1, g.y1 = g.y1 < 0 ? 0 : g.y1;
        g.x2 = g.x2 > whole.x2 ? whole.x2 : g.x2, g.y2 = g.y2 > whole.y2 ? whole.y2 : g.y2;
        if (g.x2 - g.x1 >= 1 && g.y2 - g.y1 >= 1) {
            emit_crop(s, o, out_dir, g, fl_crop_widen(g, (float)o->margin, s->full_w, s->full_h),
                      1.0f, 0, NULL, e);
            return;
        }
        /* a given box outside the image: the whole image, as a fallback */
        s->fallback = 1;
        emit_crop(s, o, out_dir, whole, whole, 0, 1, NULL, e);
        return;
    }
    fl_yolo_det *dets = NULL;
    fl_yolo_nms_cfg nms = {.conf = o->conf, .iou = o->iou, .max_det = o->max_det};
    int nd;
    if (o->per_class) { /* the best of each class that NMS keeps within max_det */
        nd = fl_yolo_detect(&det->meta.cfg, &det->heads, heads, b, &nms, &dets, e);
    } else if (!(dets = malloc(sizeof *dets))) {
        nd = fl_errf(e, "crop: out of memory");
    } else {
        nd = fl_crop_best_detection(&det->meta.cfg, &det->heads, heads, b, o->conf, dets, e);
        fl_box full = {0, 0, 0, 0, 0};
        if (nd == 1)
            full = fl_crop_unletterbox((fl_box){dets->x1, dets->y1, dets->x2, dets->y2, 0}, &s->lb,
                                       s->full_w, s->full_h);
        if (nd == 1 && !(full.x2 - full.x1 >= 1 && full.y2 - full.y1 >= 1)) {
            /* the best box lies in the padding: the next ones, as NMS ranks them */
            free(dets);
            dets = NULL;
            nd = fl_yolo_detect(&det->meta.cfg, &det->heads, heads, b, &nms, &dets, e);
        }
    }
    if (nd < 0) {
        s->fatal = 1;
        return;
    }
    int seen[FL_DETECTOR_MAX_CLASSES] = {0}, emitted = 0;
    for (int k = 0; k < nd && !s->fatal && !s->bad; k++) { /* dets are sorted by score */
        int cls = dets[k].cls;
        if (cls < 0 || cls >= det->meta.nclasses || seen[cls]) continue;
        fl_box bx = {dets[k].x1, dets[k].y1, dets[k].x2, dets[k].y2, cls};
        fl_box full = fl_crop_unletterbox(bx, &s->lb, s->full_w, s->full_h);
        if (!(full.x2 - full.x1 >= 1) || !(full.y2 - full.y1 >= 1)) continue; /* in the padding */
        seen[cls] = 1;
        emit_crop(s, o, out_dir, full, fl_crop_widen(full, (float)o->margin, s->full_w, s->full_h),
                  dets[k].score, 0, det->meta.classes[cls], e);
        emitted++;
        if (!o->per_class) break;
    }
    free(dets);
    if (!emitted && !s->fatal && !s->bad) {
        fl_box whole = {0, 0, (float)s->full_w, (float)s->full_h, -1};
        s->fallback = 1;
        emit_crop(s, o, out_dir, whole, whole, 0, 1, NULL, e);
    }
}

void fl_crop_stats_free(fl_crop_stats *s) {
    for (int i = 0; i < s->n_bad; i++) free(s->bad[i]);
    free(s->bad);
    memset(s, 0, sizeof *s);
}

static int mkdir_out(const char *out_dir, const char *sub, fl_err *e) {
    char *p = fl_strdupf("%s/%s", out_dir, sub);
    int rc = p ? fl_mkdirs(p, e) : fl_errf(e, "crop: out of memory");
    free(p);
    return rc;
}

static int write_text(const char *out_dir, const char *name, const sbuf *b, fl_err *e) {
    if (b->oom) return fl_errf(e, "crop: out of memory building %s", name);
    char *p = fl_strdupf("%s/%s", out_dir, name);
    int rc = p ? fl_write_file_atomic(p, b->p, b->n, e) : fl_errf(e, "crop: out of memory");
    free(p);
    return rc;
}

int fl_crop_run(const fl_crop_opts *o, const char *detector_path, const fl_crop_item *items,
                int n, int threads, const char *out_dir, const fl_crop_hooks *hooks,
                fl_crop_stats *st, fl_err *e) {
    memset(st, 0, sizeof *st);
    st->n = n;
    if (threads < 1) threads = 1;
    int batch = o->batch < 1 ? 1 : o->batch;
    if (batch > n && n > 0) batch = n; /* a tiny set needs no larger graph (n only, not threads) */
    /* Lanes: graphs of `batch` images each, forwarded side by side on one thread each (the
     * default), or one graph on an OpenMP team of forward_threads. Image i always sits at
     * position i % batch of a batch, so its bits are the same for any lane count. */
    int nbatches = n > 0 ? (n + batch - 1) / batch : 1;
    int lanes = o->forward_threads > 0 ? 1 : threads < nbatches ? threads : nbatches;
    if (lanes > MAX_LANES) lanes = MAX_LANES;
    int team = o->forward_threads > 0 ? o->forward_threads : 1;
    int nslots = lanes * batch;
    if (mkdir_out(out_dir, "crops/train", e) || mkdir_out(out_dir, "crops/test", e)) return -1;
    fl_detector *det = calloc((size_t)lanes, sizeof *det);
    slot *slots = calloc((size_t)nslots, sizeof *slots);
    sbuf csv = {0}, bad_csv = {0};
    int rc = -1, loaded = 0, imgsz = 0;
    int keep_threads = omp_get_max_threads(), keep_levels = omp_get_max_active_levels();
    int keep_blas = openblas_get_num_threads();
    if (!det || !slots) { fl_errf(e, "crop: out of memory"); goto done; }
    for (; loaded < lanes; loaded++)
        if (fl_detector_load(detector_path, batch, o->imgsz, &det[loaded], e)) goto done;
    int64_t shp[FL_MAX_DIMS];
    fl_graph_shape(det[0].graph, det[0].x, shp);
    imgsz = (int)shp[1];
    size_t px = (size_t)imgsz * imgsz * 3;
    sb_printf(&csv, FL_CROPS_CSV_HEADER);
    sb_printf(&bad_csv, "image,split,error\n");
    /* The lanes' forwards run inside a parallel region: their own OpenMP regions then get one
     * thread, and BLAS stays serial so no two thread pools share the cores. */
    omp_set_num_threads(team);
    omp_set_max_active_levels(1);
    openblas_set_num_threads(1);
    for (int start = 0; start < n; start += nslots) {
        int ns = n - start < nslots ? n - start : nslots;
        for (int k = 0; k < nslots; k++) {
            slot_clear(&slots[k]);
            slots[k].it = k < ns ? &items[start + k] : NULL;
        }
        double t0 = fl_now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int k = 0; k < nslots; k++) {
            float *x = (float *)fl_graph_value(det[k / batch].graph, det[k / batch].x) + (size_t)(k % batch) * px;
            if (slots[k].it) {
                phase_decode(&slots[k], o, imgsz, x);
            } else {
                for (size_t i = 0; i < px; i++) x[i] = FL_CROP_FILL / 255.0f;
            }
        }
        double t1 = fl_now();
        int busy[MAX_LANES] = {0}, failed = -1;
        for (int k = 0; k < ns; k++) {
            if (slots[k].fatal) { *e = slots[k].err; goto done; }
            if (slots[k].detect) busy[k / batch] = 1;
        }
        fl_err ferr[MAX_LANES];
#pragma omp parallel for schedule(static, 1) num_threads(lanes) if (lanes > 1)
        for (int l = 0; l < lanes; l++)
            if (busy[l] && fl_graph_forward(det[l].graph, &ferr[l])) {
#pragma omp critical(fl_crop_forward_fail)
                if (failed < 0 || l < failed) failed = l;
            }
        if (failed >= 0) { *e = ferr[failed]; goto done; }
        double t2 = fl_now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int k = 0; k < ns; k++) {
            phase_crop(&slots[k], o, &det[k / batch], fl_graph_value(det[k / batch].graph, det[k / batch].flat),
                       k % batch, out_dir);
            /* the decodes are done with: only the rows wait for the step's end */
            fl_image_free(slots[k].img);
            free(slots[k].bytes);
            slots[k].img = NULL, slots[k].bytes = NULL;
        }
        st->t_decode += t1 - t0, st->t_forward += t2 - t1, st->t_write += fl_now() - t2;
        for (int b = 0; b < ns; b++) {
            slot *s = &slots[b];
            if (s->fatal) { *e = s->err; goto done; }
            if (s->rows.oom) { fl_errf(e, "crop: out of memory"); goto done; }
            if (s->bad) {
                char **nb_list = realloc(st->bad, sizeof *st->bad * (size_t)(st->n_bad + 1));
                if (!nb_list) { fl_errf(e, "crop: out of memory"); goto done; }
                st->bad = nb_list;
                st->bad[st->n_bad++] = fl_strdupf("%s (%s): %s", s->it->image,
                                                  split_name(s->it->split), s->err.msg);
                sb_field(&bad_csv, s->it->image);
                sb_printf(&bad_csv, ",%s,", split_name(s->it->split));
                sb_field(&bad_csv, s->err.msg);
                sb_printf(&bad_csv, "\n");
                if (hooks && hooks->log) {
                    char line[1200];
                    snprintf(line, sizeof line, "skipped corrupt image %s", st->bad[st->n_bad - 1]);
                    hooks->log(hooks->user, line);
                }
                /* a crop already written for a bad image is left out of crops.csv */
                continue;
            }
            sb_printf(&csv, "%.*s", (int)s->rows.n, s->rows.p ? s->rows.p : "");
            st->n_crops += s->n_crops;
            st->n_fallback += s->fallback;
            st->n_given += s->given && !s->fallback;
            st->n_detected += s->detect && !s->fallback;
        }
        if (hooks && hooks->progress) hooks->progress(hooks->user, start + ns, n, st);
    }
    if (st->n_bad > o->max_bad_share * n) {
        sbuf msg = {0};
        sb_printf(&msg, "%d of %d images (%.3f%%) are corrupt or truncated, more than "
                  "crop.max_bad_share %g allows:", st->n_bad, n, 100.0 * st->n_bad / (n ? n : 1),
                  o->max_bad_share);
        for (int i = 0; i < st->n_bad && i < 5; i++) sb_printf(&msg, "%s %s", i ? ";" : "", st->bad[i]);
        if (st->n_bad > 5) sb_printf(&msg, "; ... (%d more)", st->n_bad - 5);
        fl_errf(e, "%s", msg.p ? msg.p : "crop: too many corrupt images");
        free(msg.p);
        goto done;
    }
    if (write_text(out_dir, "crops.csv", &csv, e) || write_text(out_dir, "bad_images.csv", &bad_csv, e))
        goto done;
    rc = 0;
done:
    omp_set_num_threads(keep_threads);
    omp_set_max_active_levels(keep_levels);
    openblas_set_num_threads(keep_blas);
    for (int k = 0; slots && k < nslots; k++) slot_clear(&slots[k]);
    free(slots);
    free(csv.p);
    free(bad_csv.p);
    for (int l = 0; det && l < loaded; l++) fl_detector_free(&det[l]);
    free(det);
    return rc;
}
