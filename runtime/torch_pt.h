/* PyTorch checkpoints (torch.save since 1.6: a zip archive) read without executing anything,
 * so released weights (ultralytics yolov5s.pt, Hugging Face pytorch_model.bin) load by name.
 *
 * The archive holds <prefix>/data.pkl (a pickle, protocol 2 as torch writes it), the raw
 * storages <prefix>/data/<key> (STORED, little-endian) and <prefix>/version. The pickle runs
 * on a restricted VM (torch_pt_pickle.c): every global is an opaque (module, name) pair and no
 * callable is ever called. Interpreted: torch._utils._rebuild_tensor_v2 / _rebuild_parameter
 * (/_with_state) / torch._tensor._rebuild_from_type_v2, collections.OrderedDict, set, and the
 * persistent ids ('storage', torch.<Type>Storage, key, location, numel). Anything else is kept
 * as an opaque object (callable name, args, BUILD state).
 *
 * The state dict is found by name: a dict of tensors (pytorch_model.bin, torch.save(model.
 * state_dict())), the same under 'model' / 'state_dict', or a pickled nn.Module (ultralytics:
 * {'model': DetectionModel, 'ema': ...}; 'ema' when 'model' is None), walked through _modules /
 * _parameters / _buffers into exactly the keys model.state_dict() gives ("model.0.conv.weight",
 * ..., "model.24.anchors"; non-persistent buffers skipped). Every tensor becomes float32
 * (F16/BF16/F64 and the integer kinds, e.g. num_batches_tracked, converted; strided views copied).
 *
 * Errors name the file and, for the pickle, the opcode and its byte offset in data.pkl:
 *   "yolov5s.pt: data.pkl offset 1234: REDUCE of builtins.eval ... is not a tensor" */
#ifndef FLUKE_TORCH_PT_H
#define FLUKE_TORCH_PT_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/graph.h"
#include "runtime/param.h"
#include "runtime/safetensors.h"

/* Largest file read (yolov5x6.pt is 270 MB). */
#define FL_PT_MAX_FILE ((size_t)4 << 30)

typedef struct fl_pt_tensor {
    char *name;            /* state-dict key */
    const char *src_dtype; /* dtype in the file: "F16", "F32", "BF16", "F64", "I64", ... */
    int ndim;
    int64_t shape[FL_MAX_DIMS];
    size_t numel;
    float *data; /* numel values, contiguous (row-major) */
} fl_pt_tensor;

typedef struct fl_pt_file {
    char *path; /* label used in messages */
    char *
        where; /* how the state dict was found: "root dict", "model (models.yolo.DetectionModel)" */
    fl_pt_tensor *t; /* in state-dict order */
    size_t n;
} fl_pt_file;

/* Reads a torch.save zip file and extracts its state dict. NULL with the reason in e. */
fl_pt_file *fl_pt_open(const char *path, fl_err *e);
/* The same from memory (not kept); label names it in messages. The fuzz target's entry. */
fl_pt_file *fl_pt_parse(const void *buf, size_t len, const char *label, fl_err *e);
void fl_pt_close(fl_pt_file *f);
/* The tensor with this name, or NULL. */
const fl_pt_tensor *fl_pt_find(const fl_pt_file *f, const char *name);

/* Writes the state dict as safetensors (F32, names and order unchanged) with optional metadata. */
int fl_pt_write_safetensors(const fl_pt_file *f, const char *path, const fl_st_kv *meta,
                            size_t nmeta, fl_err *e);
/* fl_pt_open + fl_pt_write_safetensors; *ntensors (may be NULL) gets the count. */
int fl_pt_convert(const char *pt_path, const char *st_path, size_t *ntensors, fl_err *e);

/* ---- YOLOv5 pretrained weights (runtime/models/yolo_pretrained.c) ------------------------ */

typedef struct fl_yolo_pretrained_report {
    size_t loaded;     /* copied: key in both, same shape, not excluded */
    size_t shape_skip; /* key in both, other shape (e.g. the Detect convs for another nc) */
    size_t excluded;   /* key in both but excluded by name ("anchors") */
    size_t unexpected; /* in the file only */
    size_t missing;    /* in the store only (keeps its init) */
    size_t total;      /* entries in the store (model.state_dict()) */
    char skipped[512]; /* the first shape-skipped keys, comma-separated ("" when none) */
} fl_yolo_pretrained_report;

/* Loads a safetensors state dict into a YOLOv5 store the way ultralytics train.py does
 * (intersect_dicts(csd, model.state_dict(), exclude=['anchors']) then load_state_dict(strict=
 * False)): every key present in both with the same shape is copied, keys containing "anchors"
 * are not. The file must share at least one key with the store (else it is not a YOLOv5 state
 * dict: an error). rep may be NULL. */
int fl_yolo_load_pretrained(fl_pstore *s, const char *st_path, fl_yolo_pretrained_report *rep,
                            fl_err *e);

#endif
