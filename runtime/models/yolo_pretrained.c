/* Pretrained YOLOv5 weights into a parameter store, as ultralytics train.py transfers them
 * (runtime/torch_pt.h): intersect_dicts(csd, model.state_dict(), exclude=['anchors']) keeps the
 * keys present in both with equal shapes, then load_state_dict(strict=False). A checkpoint of
 * another class count thus loses only the Detect convs (model.24.m.*), which keep their init. */
#include <stdlib.h>
#include <string.h>

#include "runtime/torch_pt.h"

static int same_shape(const fl_param *p, const fl_st_tensor *t) {
    if (p->ndim != t->ndim) return 0;
    for (int i = 0; i < p->ndim; i++)
        if (p->shape[i] != t->shape[i]) return 0;
    return 1;
}

int fl_yolo_load_pretrained(fl_pstore *s, const char *st_path, fl_yolo_pretrained_report *rep,
                            fl_err *e) {
    fl_yolo_pretrained_report r;
    memset(&r, 0, sizeof r);
    fl_param_list pl;
    if (fl_pstore_params(s, &pl, e)) return fl_errprefix(e, "%s", st_path);
    fl_st_set *set = fl_st_open_set(st_path, e);
    if (!set) return -1;
    fl_st_target *tg = calloc(pl.n ? pl.n : 1, sizeof *tg);
    if (!tg) {
        fl_st_close_set(set);
        return fl_errf(e, "%s: out of memory", st_path);
    }
    size_t ntg = 0, both = 0;
    r.total = pl.n;
    for (size_t i = 0; i < pl.n; i++) {
        const fl_param *p = &pl.v[i];
        const fl_st_tensor *t = fl_st_set_find(set, p->name, NULL);
        if (!t) {
            r.missing++;
            continue;
        }
        both++;
        if (strstr(p->name, "anchors")) {
            r.excluded++;
        } else if (!same_shape(p, t)) {
            r.shape_skip++;
            size_t l = strlen(r.skipped);
            if (l + strlen(p->name) + 2 < sizeof r.skipped)
                snprintf(r.skipped + l, sizeof r.skipped - l, "%s%s", l ? "," : "", p->name);
        } else {
            tg[ntg++] = (fl_st_target){p->name, p->data, p->ndim, p->shape};
        }
    }
    size_t nfile = 0;
    for (size_t k = 0; k < set->nfiles; k++)
        nfile += set->files[k]->n;
    r.unexpected = nfile - both;
    r.loaded = ntg;
    int rc = 0;
    if (both == 0)
        rc =
            fl_errf(e,
                    "%s: no tensor of the file is named like the YOLOv5 model's (e.g. '%s'): not a "
                    "YOLOv5 state dict",
                    st_path, pl.n ? pl.v[0].name : "model.0.conv.weight");
    if (rc == 0 && fl_st_load(set, tg, ntg, FL_ST_NONSTRICT, NULL, NULL, e)) rc = -1;
    free(tg);
    fl_st_close_set(set);
    if (rc == 0 && rep) *rep = r;
    return rc;
}
