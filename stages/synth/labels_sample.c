/* The label plan: how many individuals, how many images each, which species, which test images
 * show known or new individuals, and the file names. Follows the real train.csv statistics of
 * SPECS.md section 1, scaled to the requested image count. No pixels here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stages/synth/synth_internal.h"

/* Real images-per-individual histogram (train): bins 1..9 and "10 or more". */
static const int REAL_HIST[10] = {9258, 3091, 773, 741, 374, 135, 108, 158, 111, 838};
#define REAL_TRAIN_IMAGES 51033
#define REAL_INDIVIDUALS 15587
#define REAL_MAX_PER_INDIVIDUAL 400

/* Largest-remainder apportionment of total into n parts proportional to w. */
static void apportion(const double *w, int n, long total, long *out) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += w[i];
    long given = 0;
    double *rem = malloc((size_t)n * sizeof *rem);
    for (int i = 0; i < n; i++) {
        double x = sum > 0 ? total * w[i] / sum : 0;
        out[i] = (long)floor(x);
        rem[i] = x - out[i];
        given += out[i];
    }
    while (given < total && n > 0) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (rem[i] > rem[best]) best = i;
        out[best]++;
        rem[best] = -1;
        given++;
    }
    free(rem);
}

/* Images per train individual, following REAL_HIST scaled to n_train. Returns count of
 * individuals; *counts is malloc'd. */
static int sample_counts(fl_rng *r, int n_train, int **counts) {
    double w[10];
    for (int k = 0; k < 10; k++) w[k] = REAL_HIST[k];
    long n_ind = lround((double)n_train * REAL_INDIVIDUALS / REAL_TRAIN_IMAGES);
    if (n_ind < 1) n_ind = 1;
    long bins[10];
    apportion(w, 10, n_ind, bins);
    long small = 0;
    for (int k = 0; k < 9; k++) small += (k + 1) * bins[k];
    long rest = n_train - small;
    /* Too few images left for the 10+ bin: fold its individuals into singletons. */
    while (bins[9] > 0 && rest < 10 * bins[9]) bins[9]--;
    if (bins[9] == 0 && rest > 0) { bins[0] += rest; rest = 0; }
    while (rest < 0 && bins[0] > 0) { bins[0]--; rest++; } /* tiny counts only */
    long total_ind = 0;
    for (int k = 0; k < 10; k++) total_ind += bins[k];
    int *c = malloc((size_t)total_ind * sizeof *c);
    long j = 0;
    for (int k = 0; k < 9; k++)
        for (long i = 0; i < bins[k]; i++) c[j++] = k + 1;
    if (bins[9] > 0) {
        /* Heavy tail: Pareto weights for the images above 10, capped like the real maximum. */
        long n10 = bins[9], extra = rest - 10 * n10;
        double cap_real = (double)REAL_MAX_PER_INDIVIDUAL * n_train / REAL_TRAIN_IMAGES;
        long cap = (long)fmax(cap_real, 3.0 * rest / (double)n10) - 10;
        if (cap < 0) cap = 0;
        double *pw = malloc((size_t)n10 * sizeof *pw);
        long *ex = malloc((size_t)n10 * sizeof *ex);
        for (long i = 0; i < n10; i++) pw[i] = pow(1.0 - fl_rng_uniform(r), -1.0 / 1.3);
        apportion(pw, (int)n10, extra, ex);
        /* Move whatever exceeds the cap onto the others, round robin. */
        long spill = 0;
        for (long i = 0; i < n10; i++)
            if (ex[i] > cap) { spill += ex[i] - cap; ex[i] = cap; }
        for (long i = 0; spill > 0; i = (i + 1) % n10)
            if (ex[i] < cap || cap * n10 < extra) { ex[i]++; spill--; }
        for (long i = 0; i < n10; i++) c[j++] = (int)(10 + ex[i]);
        free(pw);
        free(ex);
    }
    *counts = c;
    return (int)total_ind;
}

static int by_count_desc(const void *a, const void *b, void *ctx) {
    const int *cnt = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    if (cnt[ia] != cnt[ib]) return cnt[ib] - cnt[ia];
    return ia - ib;
}

/* Species per train individual so that images per species follow the real frequencies:
 * biggest individuals first, each into a species whose remaining quota still fits it. */
static void assign_species(fl_rng *r, int n_train, const int *count, int n_ind, int *species) {
    double w[FL_SYNTH_NSPECIES];
    for (int s = 0; s < FL_SYNTH_NSPECIES; s++) w[s] = fl_synth_species_get(s)->real_images;
    long quota[FL_SYNTH_NSPECIES];
    /* Every species gets at least one image once there is room for it. */
    int floor1 = n_train >= 20 * FL_SYNTH_NSPECIES;
    long n_left = n_train - (floor1 ? FL_SYNTH_NSPECIES : 0);
    apportion(w, FL_SYNTH_NSPECIES, n_left, quota);
    if (floor1)
        for (int s = 0; s < FL_SYNTH_NSPECIES; s++) quota[s]++;
    int *order = malloc((size_t)n_ind * sizeof *order);
    for (int i = 0; i < n_ind; i++) order[i] = i;
    qsort_r(order, (size_t)n_ind, sizeof *order, by_count_desc, (void *)count);
    for (int oi = 0; oi < n_ind; oi++) {
        int i = order[oi];
        double tot = 0;
        for (int s = 0; s < FL_SYNTH_NSPECIES; s++)
            if (quota[s] >= count[i]) tot += (double)quota[s];
        int pick = -1;
        if (tot > 0) {
            double x = fl_rng_uniform(r) * tot;
            for (int s = 0; s < FL_SYNTH_NSPECIES; s++) {
                if (quota[s] < count[i]) continue;
                pick = s;
                x -= (double)quota[s];
                if (x < 0) break;
            }
        } else {
            pick = 0;
            for (int s = 1; s < FL_SYNTH_NSPECIES; s++)
                if (quota[s] > quota[pick]) pick = s;
        }
        species[i] = pick;
        quota[pick] -= count[i];
    }
    free(order);
}

static int sample_species_by_frequency(fl_rng *r) {
    double x = fl_rng_uniform(r) * REAL_TRAIN_IMAGES;
    for (int s = 0; s < FL_SYNTH_NSPECIES; s++) {
        x -= fl_synth_species_get(s)->real_images;
        if (x < 0) return s;
    }
    return 0;
}

/* Raw spelling for an individual of species s, with the real raw/canonical proportions. */
static int sample_raw_label(fl_rng *r, int s) {
    const char *name = fl_synth_species_get(s)->name;
    double u = fl_rng_uniform(r) * fl_synth_species_get(s)->real_images;
    for (int k = 0; k < FL_SYNTH_NRAW; k++) {
        const fl_synth_raw_label *rl = fl_synth_raw_label_get(k);
        if (strcmp(rl->canonical, name) != 0) continue;
        if (u < rl->real_images) return k;
        u -= rl->real_images;
    }
    return -1;
}

const char *fl_synth_species_label(const fl_synth_plan *plan, int individual) {
    const fl_synth_individual *in = &plan->ind[individual];
    if (plan->params.raw_species && in->raw_label >= 0)
        return fl_synth_raw_label_get(in->raw_label)->raw;
    return fl_synth_species_get(in->species)->name;
}

/* Chooses exactly round(share * n) of n flags, uniformly. */
static void choose_share(fl_rng *r, int n, double share, int *flag) {
    int k = (int)lround(share * n);
    int *perm = malloc((size_t)(n > 0 ? n : 1) * sizeof *perm);
    for (int i = 0; i < n; i++) perm[i] = i, flag[i] = 0;
    for (int i = 0; i < k; i++) {
        int j = i + (int)fl_rng_below(r, (uint32_t)(n - i));
        int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
        flag[perm[i]] = 1;
    }
    free(perm);
}

/* Encounter of a new image of individual in: a burst of an earlier encounter or a new one. */
static int next_encounter(fl_rng *r, fl_synth_individual *in, double p_same) {
    if (in->n_encounters > 0 && fl_rng_uniform(r) < p_same)
        return (int)fl_rng_below(r, (uint32_t)in->n_encounters);
    return in->n_encounters++;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Unique hex names: draw, then redraw any duplicate (vanishingly rare, but must not happen). */
static void make_names(fl_rng *r, char **names, int n, int digits, const char *suffix) {
    char **sorted = malloc((size_t)(n > 0 ? n : 1) * sizeof *sorted);
    for (int i = 0; i < n; i++) {
        fl_synth_hex(fl_rng_u64(r), digits, names[i]);
        strcat(names[i], suffix);
    }
    for (;;) {
        for (int i = 0; i < n; i++) sorted[i] = names[i];
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
        int dup = 0;
        for (int i = 1; i < n; i++)
            if (strcmp(sorted[i - 1], sorted[i]) == 0) {
                fl_synth_hex(fl_rng_u64(r), digits, sorted[i]);
                strcat(sorted[i], suffix);
                dup = 1;
            }
        if (!dup) break;
    }
    free(sorted);
}

int fl_synth_plan_make(const fl_synth_params *p, fl_synth_plan *plan, fl_err *e) {
    memset(plan, 0, sizeof *plan);
    if (fl_synth_params_check(p, e) != 0) return -1;
    plan->params = *p;
    fl_rng r;
    fl_rng_init(&r, p->seed, FL_SYNTH_STREAM_PLAN);

    int *count = NULL;
    int n_known = sample_counts(&r, p->n_train, &count);
    int *species = malloc((size_t)n_known * sizeof *species);
    assign_species(&r, p->n_train, count, n_known, species);

    /* New individuals: one to three test images each, species by real frequency. */
    int n_new_img = (int)lround(p->new_share * p->n_test);
    if (n_new_img > p->n_test) n_new_img = p->n_test;
    int *new_sizes = malloc((size_t)(n_new_img + 1) * sizeof *new_sizes);
    int n_new = 0;
    for (int left = n_new_img; left > 0;) {
        float u = fl_rng_uniform(&r);
        int k = u < 0.72f ? 1 : u < 0.92f ? 2 : 3;
        if (k > left) k = left;
        new_sizes[n_new++] = k;
        left -= k;
    }

    plan->n_individuals = n_known + n_new;
    plan->ind = calloc((size_t)plan->n_individuals, sizeof *plan->ind);
    plan->n_images = p->n_train + p->n_test;
    plan->img = calloc((size_t)plan->n_images, sizeof *plan->img);
    if (!plan->ind || !plan->img) {
        free(count); free(species); free(new_sizes);
        fl_synth_plan_free(plan);
        return fl_errf(e, "synth: out of memory for the label plan");
    }
    for (int i = 0; i < n_known; i++) {
        plan->ind[i].species = species[i];
        plan->ind[i].raw_label = sample_raw_label(&r, species[i]);
    }
    for (int j = 0; j < n_new; j++) {
        fl_synth_individual *in = &plan->ind[n_known + j];
        in->species = sample_species_by_frequency(&r);
        in->raw_label = -1;
        in->is_new = 1;
    }

    /* Train images, individual by individual; the first image of each opens an encounter. */
    int k = 0;
    for (int i = 0; i < n_known; i++)
        for (int c = 0; c < count[i]; c++, k++) {
            fl_synth_image *im = &plan->img[k];
            im->individual = i;
            im->encounter = next_encounter(&r, &plan->ind[i], 0.6);
            plan->ind[i].n_train++;
        }
    /* Test images: new individuals first, then known ones drawn like a random train image
     * (so test species and individual frequencies track train). */
    int t = p->n_train;
    for (int j = 0; j < n_new; j++)
        for (int c = 0; c < new_sizes[j]; c++, t++) {
            fl_synth_individual *in = &plan->ind[n_known + j];
            plan->img[t].individual = n_known + j;
            plan->img[t].encounter = next_encounter(&r, in, 0.5);
            in->n_test++;
        }
    for (; t < plan->n_images; t++) {
        int from = (int)fl_rng_below(&r, (uint32_t)p->n_train);
        int i = plan->img[from].individual;
        plan->img[t].individual = i;
        plan->img[t].encounter = next_encounter(&r, &plan->ind[i], p->same_encounter);
        plan->ind[i].n_test++;
    }
    for (t = p->n_train; t < plan->n_images; t++) plan->img[t].is_test = 1;

    int *flag = malloc((size_t)(plan->n_images) * sizeof *flag);
    choose_share(&r, p->n_train, p->box_share, flag);
    for (int i = 0; i < p->n_train; i++) plan->img[i].has_box = flag[i];
    choose_share(&r, p->n_test, p->public_share, flag);
    for (int i = 0; i < p->n_test; i++) plan->img[p->n_train + i].is_public = flag[i];
    free(flag);

    fl_rng names;
    fl_rng_init(&names, p->seed, FL_SYNTH_STREAM_NAMES);
    char **nm = malloc((size_t)(plan->n_images + plan->n_individuals) * sizeof *nm);
    for (int i = 0; i < plan->n_images; i++) nm[i] = plan->img[i].name;
    make_names(&names, nm, plan->n_images, 14, ".jpg");
    for (int i = 0; i < plan->n_individuals; i++) nm[i] = plan->ind[i].id;
    make_names(&names, nm, plan->n_individuals, 12, "");
    free(nm);

    free(count);
    free(species);
    free(new_sizes);
    return 0;
}

void fl_synth_plan_free(fl_synth_plan *plan) {
    if (!plan) return;
    free(plan->ind);
    free(plan->img);
    memset(plan, 0, sizeof *plan);
}

void fl_synth_hex(uint64_t v, int n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (int i = n - 1; i >= 0; i--) {
        out[i] = digits[v & 15];
        v >>= 4;
    }
    out[n] = '\0';
}
