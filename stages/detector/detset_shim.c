/* DEV SHIM (see header). */
#include "stages/detector/detset_shim.h"
#include <stdlib.h>
#include <string.h>
#include "stages/labels/labels.h"
static uint64_t h64(const char *s, uint64_t seed) { uint64_t h = 1469598103934665603ULL ^ seed; while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL; return h; }
int fl_detset_build(const fl_detset_opts *o, fl_detset *d, fl_err *e) {
    memset(d, 0, sizeof *d);
    char *tcsv = fl_strdupf("%s/train.csv", o->data_dir), *bcsv = o->boxes ? strdup(o->boxes) : fl_strdupf("%s/train_boxes.csv", o->data_dir);
    fl_train_set t; fl_box_set b;
    if (fl_train_read(tcsv, NULL, &t, e)) return -1;
    if (fl_boxes_read(bcsv, NULL, &b, e)) return -1;
    fl_strmap m; fl_strmap_init(&m, t.n, e);
    for (int i = 0; i < t.n; i++) fl_strmap_put(&m, t.image[i], i);
    d->train = calloc(b.n, sizeof *d->train); d->val = calloc(b.n, sizeof *d->val);
    d->boxes = calloc(b.n * 8 + 1, sizeof *d->boxes); d->paths = calloc(b.n, sizeof(char*));
    size_t nb = 0;
    for (int i = 0; i < b.n; i++) {
        int k = fl_strmap_get(&m, b.entry[i].image); if (k < 0) continue;
        fl_loader_item it = {0};
        d->paths[i] = fl_strdupf("%s/train_images/%s", o->data_dir, b.entry[i].image);
        it.path = d->paths[i]; it.label = -1; it.boxes = &d->boxes[nb];
        for (int j = 0; j < b.entry[i].nbox && j < 8; j++) { float *x = &b.entry[i].xyxy[4*j]; d->boxes[nb++] = (fl_box){x[0],x[1],x[2],x[3],0}; it.nboxes++; }
        double u = (double)(h64(t.individual[k], o->seed) >> 11) / 9007199254740992.0;
        if (u < o->val_share) d->val[d->nval++] = it; else d->train[d->ntrain++] = it;
    }
    d->nclasses = 1; d->classes = calloc(1, sizeof(char*)); d->classes[0] = strdup("animal");
    fl_strmap_free(&m); fl_train_free(&t); fl_boxes_free(&b); free(tcsv); free(bcsv);
    return 0;
}
void fl_detset_free(fl_detset *d) { (void)d; }
