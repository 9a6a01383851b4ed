/* The identification model's training and inference for the pipeline (stages embed_train[k]
 * and embed[k]): the `embed` config section, the fold's training set from folds.csv + crops.csv,
 * the training loop, and embedding extraction with flip TTA.
 *
 *   opts.c     the `embed` section -> fl_embopts (model, optimizer, schedule, augmentation)
 *   dataset.c  folds.csv + crops.csv -> loader items of fold k (classes = training-part ids)
 *   infer.c    embeddings of a list of crops by an eval graph (flip TTA: mean of the L2-normalized
 *              original and mirror, renormalized)
 *   train.c    the training loop (checkpoint per epoch, resume, NaN guard, per-epoch OOF MAP@5)
 *   model_io.c the trained model file (embed_model.safetensors, the architecture in metadata) */
#ifndef FLUKE_STAGES_EMBED_H
#define FLUKE_STAGES_EMBED_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/data/loader.h"
#include "runtime/models/embed_head.h"
#include "runtime/optim.h"
#include "stages/api/stage.h"

extern const fl_stage_def fl_stage_embed_train, fl_stage_embed;
extern const fl_cfg_field fl_embed_schema[];

#define FL_EMBED_MODEL_FILE "embed_model.safetensors"
#define FL_EMBED_METRICS_FILE "train_metrics.json"

/* ---------------------------------------------------------------- options */

typedef enum fl_emb_sched {
    FL_EMB_SCHED_COSINE_RESTARTS, /* the seed's cosine decay with restarts (t_0 epochs, t_mult) */
    FL_EMB_SCHED_ONECYCLE,        /* torch OneCycleLR (cosine, pct_start, div, final_div) */
    FL_EMB_SCHED_COSINE,          /* one cosine decay over all steps */
    FL_EMB_SCHED_CONSTANT,
} fl_emb_sched;

typedef struct fl_embopts {
    fl_embed_cfg model;      /* arc.num_classes and num_species are filled from the data */
    char backbone[64];       /* preset name (informative) */
    int species_head;        /* embed.head.species_weight > 0 */
    double dyn_a, dyn_b, dyn_c; /* dynamic margins m_c = a * n_c^-b + c */
    int imgsz;
    int epochs, batch, workers, eval_batch;
    fl_optim_kind optimizer;
    double lr, head_lr_mult, weight_decay, clip;
    fl_emb_sched sched;
    double t0_epochs, eta_min_factor;
    int t_mult;
    double warmup_epochs, warmup_start;
    double pct_start, div_factor, final_div;
    int ema;
    double ema_decay, ema_tau;
    fl_sampler_kind sampler;
    double balance_power;
    uint64_t seed;
    int val_every;           /* 0: only after the last epoch */
    int knn_k;               /* neighbours of the per-epoch validation kNN */
    fl_reid_aug aug;
    int tta_flip;
    double max_bad_share;
} fl_embopts;

/* The `embed` section (NULL: every default) -> o. Errors name the key. */
int fl_embopts_from_json(const cJSON *embed, fl_embopts *o, fl_err *e);
/* A running stage's options (its declared `embed` section); *sec gets the section (may be NULL). */
int fl_embed_stage_opts(fl_stage_ctx *c, fl_embopts *o, const cJSON **sec, fl_err *e);

/* ---------------------------------------------------------------- data */

typedef struct fl_embset {
    int k, nfolds;
    /* every train image with a crop, in folds.csv order */
    fl_loader_item *all;
    int64_t nall;
    int32_t *ind;      /* individual index (over all of folds.csv) per row of all */
    int32_t *species;  /* species index per row of all */
    uint8_t *is_val;   /* 1: the row is in fold k (validation) */
    int32_t *cls;      /* class of the row's individual when it is in the training part, else -1 */
    char **image;      /* file name per row of all (borrowed from the csv) */
    /* the training part (fold != k) with labels = class index */
    fl_loader_item *train;
    size_t ntrain;
    int nclasses;
    int64_t *class_count;
    int nspecies;
    int32_t *train_species; /* per training item */
    /* test crops */
    fl_loader_item *test;
    int64_t ntest;
    char **test_image;
    int n_no_crop;     /* folds.csv rows without a crop (bad images) */
    int n_pseudo;      /* pseudo-labelled test crops appended to the training part */
    int n_pseudo_other; /* pseudo labels left out: individual not in the training part */
    void *priv;
} fl_embset;

/* folds.csv (stages/ident/folds.h) + the crop stage's output dir -> fold k's sets. */
int fl_embset_build(const char *folds_csv, const char *crop_dir, int k, fl_embset *s, fl_err *e);
/* The same, plus the pseudo-labelled test crops of pseudo_csv (stages/ident/pseudo.h; NULL:
 * none) whose individual is a class of the training part, appended to it in test order. A
 * label of an individual of fold k (or unknown) is left out, so fold k's model never learns
 * a validation individual from the test and its OOF score stays out of fold. */
int fl_embset_build_pseudo(const char *folds_csv, const char *crop_dir, int k,
                           const char *pseudo_csv, fl_embset *s, fl_err *e);
void fl_embset_free(fl_embset *s);

/* ---------------------------------------------------------------- inference */

typedef struct fl_embinfer fl_embinfer;
fl_embinfer *fl_embinfer_new(const fl_embopts *o, int batch, fl_err *e);
fl_pstore *fl_embinfer_store(fl_embinfer *m);
int64_t fl_embinfer_dim(const fl_embinfer *m);
/* Embeddings of n items (rows L2-normalized) into out (n x dim). flip: flip TTA. */
int fl_embinfer_run(fl_embinfer *m, const fl_loader_item *items, size_t n, int workers, int flip,
                    float *out, void (*progress)(void *u, size_t done, size_t total), void *u,
                    fl_err *e);
void fl_embinfer_free(fl_embinfer *m);

/* ---------------------------------------------------------------- training */

typedef struct fl_embtrain_io {
    const fl_embset *set;
    const char *ckpt_path;   /* in the work dir */
    const char *pretrained;  /* timm safetensors for the backbone, or NULL */
    const char *init;        /* a previous embed_model.safetensors to start from (all but the
                              * heads, which are new), or NULL */
    const char *model_path, *metrics_path;
    void (*progress)(void *user, uint64_t step, uint64_t total, const char *line);
    void (*log)(void *user, const char *line);
    void *user;
} fl_embtrain_io;

int fl_embtrain_run(const fl_embopts *o, const fl_embtrain_io *io, fl_err *e);

/* ---------------------------------------------------------------- model file */

int fl_embmodel_save(const char *path, const fl_embopts *o, const fl_param_list *pl, fl_err *e);
/* Loads the backbone, DOLG and neck (the heads are not needed for embeddings) into ps. */
int fl_embmodel_load(const char *path, fl_pstore *ps, fl_err *e);
/* The same into a training store: every parameter but the heads (head., species_head.) must be
 * in the file, which must hold nothing else. */
int fl_embmodel_load_init(const char *path, fl_pstore *ps, fl_err *e);

#endif
