/* The worker pool. Batches form one global sequence g = 0, 1, ... (epoch-major); batch g lives
 * in slot g % nslots. Workers claim single samples (g, j) in order, so every worker helps finish
 * the oldest batch first; a batch may be claimed only once the consumer has given back the slot's
 * previous batch (next() gives back the batch it returned last time). Everything shared is
 * guarded by one mutex; sample production runs unlocked and writes only its own part of the slot.
 * Stop: an error, an interrupt or close sets `stop`, wakes everyone and every thread is joined. */
#include "runtime/data/loader.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct slot {
    fl_batch b;
    int64_t g;   /* batch held (-1: none) */
    int done;    /* samples finished */
    int ready;   /* all n finished */
    int64_t *order_items; /* item per sample, fixed when the batch is first claimed */
} slot;

struct fl_loader {
    fl_loader_config c;
    int64_t nb_epoch, total; /* total batches, -1 = endless */
    int nslots;
    slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    int64_t claim_g;
    int claim_j;
    int64_t released; /* batches the consumer has given back */
    int64_t next_g;   /* next batch to hand out */
    int holding;      /* the consumer holds batch next_g - 1 */
    int64_t order_epoch;
    int64_t *order;   /* the claimed epoch's item order */
    int stop, failed;
    char errmsg[FL_ERRLEN];
    atomic_ullong bad;
    pthread_t *threads;
    int nthreads;
};

fl_loader_config fl_loader_config_defaults(void) {
    return (fl_loader_config){.task = FL_TASK_REID, .out_w = 224, .out_h = 224, .batch_size = 32,
                              .workers = 2, .prefetch = 2, .augment = 1,
                              .sampler = FL_SAMPLER_SHUFFLE, .balance_power = 1.0f,
                              .on_bad_image = FL_BAD_IMAGE_ERROR, .max_boxes = 64,
                              .reid = fl_reid_aug_defaults(), .yolo = fl_yolo_aug_defaults()};
}

static int interrupted(const fl_loader *l) { return l->c.interrupt && atomic_load(l->c.interrupt); }

/* Under mu: record the first error and stop everyone. */
static void fail_locked(fl_loader *l, const char *msg) {
    if (!l->failed) {
        l->failed = 1;
        snprintf(l->errmsg, sizeof l->errmsg, "%s", msg);
    }
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_cond_broadcast(&l->cv_ready);
}

static int claimable(const fl_loader *l) {
    return (l->total < 0 || l->claim_g < l->total) && l->claim_g < l->released + l->nslots;
}

/* Under mu: prepare slot for batch g (its items from the epoch order). */
static int setup_slot(fl_loader *l, int64_t g, fl_err *e) {
    int64_t epoch = l->c.first_epoch + g / l->nb_epoch, step = g % l->nb_epoch;
    if (epoch != l->order_epoch) {
        if (fl_sampler_epoch(l->c.sampler, l->c.items, l->c.n_items, l->c.balance_power,
                             l->c.seed, epoch, l->order, e))
            return -1;
        l->order_epoch = epoch;
    }
    slot *s = &l->slots[g % l->nslots];
    int64_t start = step * l->c.batch_size, left = (int64_t)l->c.n_items - start;
    s->g = g;
    s->done = 0;
    s->ready = 0;
    s->b.epoch = epoch;
    s->b.step = step;
    s->b.n = (int)(left < l->c.batch_size ? left : l->c.batch_size);
    for (int j = 0; j < s->b.n; j++) s->order_items[j] = l->order[start + j];
    return 0;
}

static void *worker(void *arg) {
    fl_loader *l = arg;
    const size_t hwc = (size_t)l->c.out_w * l->c.out_h * 3;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !claimable(l) && !interrupted(l)) {
            if (l->total >= 0 && l->claim_g >= l->total) goto out; /* all claimed */
            pthread_cond_wait(&l->cv_work, &l->mu);
        }
        if (interrupted(l)) fail_locked(l, "data loader interrupted");
        if (l->stop) break;
        int64_t g = l->claim_g;
        int j = l->claim_j;
        fl_err e = {{0}};
        if (j == 0 && setup_slot(l, g, &e)) {
            fail_locked(l, e.msg);
            break;
        }
        slot *s = &l->slots[g % l->nslots];
        if (++l->claim_j == s->b.n) l->claim_g++, l->claim_j = 0;
        int64_t epoch = s->b.epoch, p = s->b.step * l->c.batch_size + j, item = s->order_items[j];
        pthread_mutex_unlock(&l->mu);

        fl_batch *b = &s->b;
        int rc = fl_loader_make_sample(&l->c, epoch, p, item,
                                       b->images ? b->images + hwc * (size_t)j : NULL,
                                       b->images_u8 ? b->images_u8 + hwc * (size_t)j : NULL,
                                       &b->labels[j], b->boxes ? b->boxes + (size_t)j * b->max_boxes : NULL,
                                       b->nboxes ? &b->nboxes[j] : NULL, &b->items[j], &l->bad, &e);

        pthread_mutex_lock(&l->mu);
        if (rc) {
            fail_locked(l, e.msg);
            break;
        }
        if (++s->done == s->b.n) {
            s->ready = 1;
            pthread_cond_broadcast(&l->cv_ready);
        }
    }
out:
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void free_slots(fl_loader *l) {
    for (int i = 0; l->slots && i < l->nslots; i++) {
        slot *s = &l->slots[i];
        free(s->b.images), free(s->b.images_u8), free(s->b.labels), free(s->b.items), free(s->b.nboxes);
        free(s->b.boxes), free(s->order_items);
    }
    free(l->slots);
}

static int validate(const fl_loader_config *c, fl_err *e) {
    if (!c->items || c->n_items == 0) return fl_errf(e, "loader: items: empty item list");
    if (c->n_items > UINT32_MAX) return fl_errf(e, "loader: items: more than 2^32 items");
    if (c->batch_size < 1) return fl_errf(e, "loader: batch_size: %d, must be >= 1", c->batch_size);
    if (c->workers < 1 || c->workers > 256)
        return fl_errf(e, "loader: workers: %d, must be 1..256", c->workers);
    if (c->prefetch < 0 || c->prefetch > 64)
        return fl_errf(e, "loader: prefetch: %d, must be 0..64", c->prefetch);
    if (c->out_w < 1 || c->out_h < 1 || c->out_w > 8192 || c->out_h > 8192)
        return fl_errf(e, "loader: output size %dx%d out of range 1..8192", c->out_w, c->out_h);
    if (c->task == FL_TASK_DETECT && (c->out_w != c->out_h || c->out_w % 2))
        return fl_errf(e, "loader: detection output must be square with an even side (got %dx%d)",
                       c->out_w, c->out_h);
    if (c->task != FL_TASK_REID && c->task != FL_TASK_DETECT)
        return fl_errf(e, "loader: task: unknown value %d", (int)c->task);
    if (c->sampler != FL_SAMPLER_SEQUENTIAL && c->sampler != FL_SAMPLER_SHUFFLE &&
        c->sampler != FL_SAMPLER_BALANCED)
        return fl_errf(e, "loader: sampler: unknown value %d", (int)c->sampler);
    if (c->epochs < 0) return fl_errf(e, "loader: epochs: %lld, must be >= 0", (long long)c->epochs);
    if (c->first_epoch < 0 || c->first_epoch > UINT32_MAX)
        return fl_errf(e, "loader: first_epoch: %lld out of range", (long long)c->first_epoch);
    if (c->drop_last && c->n_items < (size_t)c->batch_size)
        return fl_errf(e, "loader: drop_last with %zu items and batch_size %d gives no batch",
                       c->n_items, c->batch_size);
    for (size_t i = 0; i < c->n_items; i++) {
        if (!c->items[i].path) return fl_errf(e, "loader: items[%zu]: no path", i);
        if (c->items[i].nboxes < 0 || (c->items[i].nboxes > 0 && !c->items[i].boxes))
            return fl_errf(e, "loader: items[%zu] (%s): bad box list", i, c->items[i].path);
    }
    return 0;
}

fl_loader *fl_loader_open(const fl_loader_config *cfg, fl_err *e) {
    if (validate(cfg, e)) return NULL;
    fl_loader *l = calloc(1, sizeof *l);
    if (!l) {
        fl_errf(e, "loader: out of memory");
        return NULL;
    }
    l->c = *cfg;
    if (l->c.prefetch == 0) l->c.prefetch = 2;
    if (l->c.max_boxes <= 0) l->c.max_boxes = 64;
    l->nb_epoch = l->c.drop_last ? (int64_t)(l->c.n_items / l->c.batch_size)
                                 : (int64_t)((l->c.n_items + l->c.batch_size - 1) / l->c.batch_size);
    l->total = l->c.epochs > 0 ? l->c.epochs * l->nb_epoch : -1;
    l->nslots = l->c.prefetch + 1;
    l->order_epoch = -1;
    atomic_init(&l->bad, 0);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    size_t B = (size_t)l->c.batch_size, hwc = (size_t)l->c.out_w * l->c.out_h * 3;
    size_t elem = l->c.output_u8 ? 1 : sizeof(float);
    size_t img_bytes = (B * hwc * elem + 63) / 64 * 64;
    l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
    l->order = malloc(sizeof *l->order * l->c.n_items);
    int ok = l->slots && l->order;
    for (int i = 0; ok && i < l->nslots; i++) {
        slot *s = &l->slots[i];
        s->g = -1;
        s->b.out_w = l->c.out_w, s->b.out_h = l->c.out_h;
        if (l->c.output_u8) s->b.images_u8 = aligned_alloc(64, img_bytes);
        else s->b.images = aligned_alloc(64, img_bytes);
        s->b.labels = calloc(B, sizeof *s->b.labels);
        s->b.items = calloc(B, sizeof *s->b.items);
        s->order_items = calloc(B, sizeof *s->order_items);
        ok = (s->b.images || s->b.images_u8) && s->b.labels && s->b.items && s->order_items;
        if (ok && l->c.task == FL_TASK_DETECT) {
            s->b.max_boxes = l->c.max_boxes;
            s->b.nboxes = calloc(B, sizeof *s->b.nboxes);
            s->b.boxes = calloc(B * (size_t)l->c.max_boxes, sizeof *s->b.boxes);
            ok = s->b.nboxes && s->b.boxes;
        }
    }
    l->threads = calloc((size_t)l->c.workers, sizeof *l->threads);
    if (!ok || !l->threads) {
        fl_errf(e, "loader: out of memory for %d batches of %zu x %dx%d", l->nslots, B, l->c.out_w,
                l->c.out_h);
        fl_loader_close(l);
        return NULL;
    }
    for (int i = 0; i < l->c.workers; i++) {
        int rc = pthread_create(&l->threads[i], NULL, worker, l);
        if (rc) {
            fl_errf(e, "loader: cannot start worker %d: %s", i, strerror(rc));
            fl_loader_close(l);
            return NULL;
        }
        l->nthreads++;
    }
    return l;
}

int fl_loader_next(fl_loader *l, const fl_batch **out, fl_err *e) {
    pthread_mutex_lock(&l->mu);
    if (l->holding) { /* give back the batch returned last time */
        l->holding = 0;
        l->released++;
        pthread_cond_broadcast(&l->cv_work);
    }
    if (!l->failed && l->total >= 0 && l->next_g >= l->total) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    slot *s = &l->slots[l->next_g % l->nslots];
    while (!l->failed && !(s->ready && s->g == l->next_g)) {
        if (interrupted(l)) {
            fail_locked(l, "data loader interrupted");
            break;
        }
        /* Timed, so an interrupt is seen even while every worker waits for a slot. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        int rc = pthread_cond_timedwait(&l->cv_ready, &l->mu, &ts);
        if (rc && rc != ETIMEDOUT) {
            fail_locked(l, "data loader: condition wait failed");
            break;
        }
    }
    if (l->failed) {
        fl_errf(e, "%s", l->errmsg);
        pthread_mutex_unlock(&l->mu);
        return -1;
    }
    *out = &s->b;
    l->next_g++;
    l->holding = 1;
    pthread_mutex_unlock(&l->mu);
    return 1;
}

int64_t fl_loader_batches_per_epoch(const fl_loader *l) { return l->nb_epoch; }

uint64_t fl_loader_bad_images(const fl_loader *l) {
    return atomic_load(&((fl_loader *)l)->bad);
}

void fl_loader_close(fl_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_cond_broadcast(&l->cv_ready);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nthreads; i++) pthread_join(l->threads[i], NULL);
    free(l->threads);
    free_slots(l);
    free(l->order);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_ready);
    free(l);
}
