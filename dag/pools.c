#include "dag/pools.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An entry CUDA accepts: a device index or a GPU/MIG UUID. CUDA stops at the first other one
 * ("-1", "NoDevFiles", an empty entry), so it and everything after it name no device. */
static int cuda_entry(const char *p, size_t n) {
    if (n == 0) return 0;
    if ((n > 4 && !strncmp(p, "GPU-", 4)) || (n > 4 && !strncmp(p, "MIG-", 4))) return 1;
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return 0;
    return 1;
}

char *fl_pools_gpu_list(const fl_pools *pl, const int *idx, int n) {
    size_t len = 1;
    for (int k = 0; k < n; k++) len += strlen(pl->gpu_names[idx[k]]) + 1;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = '\0';
    for (int k = 0; k < n; k++) {
        if (k) strcat(s, ",");
        strcat(s, pl->gpu_names[idx[k]]);
    }
    return s;
}

void fl_pools_free(fl_pools *pl) {
    for (int g = 0; pl->gpu_names && pl->gpu_names[g]; g++) free(pl->gpu_names[g]); /* NULL-ended */
    free(pl->gpu_names);
    free(pl->gpu_busy);
}

int fl_pools_make(fl_session *s, const unsigned char *sel, fl_pools *pl, fl_err *e) {
    const cJSON *th = fl_config_get(s->cfg.root, "resources.threads");
    const cJSON *gp = fl_config_get(s->cfg.root, "resources.gpus");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pl->threads_total = (int)(ncpu > 0 ? ncpu : 1);
    if (th) {
        double v = th->valuedouble;
        if (!(v >= 1 && v <= FL_MAX_THREADS) || v != floor(v))
            return fl_errf(e, "%s: resources.threads is %g: expected an integer 1..%d", s->cfg.file,
                           v, FL_MAX_THREADS);
        pl->threads_total = (int)v;
    }
    int want = 0;
    if (gp) {
        double v = gp->valuedouble;
        if (!(v >= 0 && v <= FL_MAX_GPUS) || v != floor(v))
            return fl_errf(e, "%s: resources.gpus is %g: expected an integer 0..%d", s->cfg.file, v,
                           FL_MAX_GPUS);
        want = (int)v;
    }
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    pl->gpu_names = calloc((size_t)want + 1, sizeof *pl->gpu_names);
    pl->gpu_busy = calloc((size_t)want + 1, 1);
    if (!pl->gpu_names || !pl->gpu_busy) return fl_errf(e, "out of memory");
    int have = 0;
    const char *stop = NULL; /* the first entry CUDA would not accept: it ends the list */
    for (const char *p = cvd; cvd && *p && have < want;) {
        while (*p == ' ') p++;
        size_t l = strcspn(p, ",");
        size_t t = l;
        while (t && p[t - 1] == ' ') t--;
        if (!cuda_entry(p, t)) {
            stop = p;
            break;
        }
        if (!(pl->gpu_names[have] = strndup(p, t))) return fl_errf(e, "out of memory");
        for (int g = 0; g < have; g++)
            if (!strcmp(pl->gpu_names[g], pl->gpu_names[have]))
                return fl_errf(e,
                               "CUDA_VISIBLE_DEVICES=\"%.200s\" lists device %s twice: two stages "
                               "would share one GPU",
                               cvd, pl->gpu_names[have]);
        have++;
        p += l + (p[l] == ',');
    }
    for (; !cvd && have < want; have++)
        if (!(pl->gpu_names[have] = fl_strdupf("%d", have))) return fl_errf(e, "out of memory");
    pl->ngpus = have;
    if (have < want) {
        char why[120] = "";
        size_t sl = stop ? strcspn(stop, ",") : 0;
        if (stop && sl == 0)
            snprintf(why, sizeof why, " (CUDA ignores an empty entry and all after it)");
        else if (stop)
            snprintf(why, sizeof why, " (CUDA ignores the entries from \"%.*s\" on)",
                     (int)(sl < 40 ? sl : 40), stop);
        return fl_errf(e,
                       "%s: resources.gpus is %d but CUDA_VISIBLE_DEVICES=\"%.200s\" lists %d "
                       "device%s%s",
                       s->cfg.file, want, cvd, have, have == 1 ? "" : "s", why);
    }
    for (size_t i = 0; i < s->plan.n; i++) {
        const fl_plan_node *n = s->plan.nodes[i];
        if (!sel[i] || n->gpus <= pl->ngpus) continue;
        if (pl->ngpus == 0)
            return fl_errf(e, "stage '%s' needs %d GPU%s but %s has none (resources.gpus is %s)",
                           n->id, n->gpus, n->gpus == 1 ? "" : "s", s->cfg.file,
                           gp ? "0" : "unset");
        return fl_errf(e, "stage '%s' needs %d GPUs but %s has %d (resources.gpus)", n->id, n->gpus,
                       s->cfg.file, pl->ngpus);
    }
    return 0;
}
