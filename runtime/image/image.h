/* Images: JPEG decode/encode, geometry with box transforms, and the re-ID / YOLOv5 augmentations.
 *
 * An fl_image is 8-bit RGB, HWC, rows `stride` bytes apart. Boxes are x1,y1,x2,y2 in pixels
 * (continuous coordinates: pixel (i,j) covers [i,i+1) x [j,j+1)). Geometry ops reproduce
 * OpenCV's uint8 arithmetic (cv2.resize INTER_LINEAR / INTER_AREA, cv2.warpAffine /
 * warpPerspective with INTER_LINEAR) so YOLOv5-style pipelines give the same pixels. Every random
 * choice takes an fl_rng, so a (seed, stream) pair reproduces an augmented image exactly.
 * Errors follow artifacts/util.h: fill fl_err, return -1 / NULL. */
#ifndef FLUKE_IMAGE_H
#define FLUKE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"
#include "runtime/rng.h"

/* ---- the image type (image.c) ---- */

typedef struct fl_image {
    int width, height;
    size_t stride; /* bytes per row, >= 3 * width */
    uint8_t *data; /* owned: free with fl_image_free */
} fl_image;

typedef struct fl_box {
    float x1, y1, x2, y2;
    int32_t cls; /* class id (detection) or -1 */
} fl_box;

/* Allocates a w x h image (uninitialised pixels); NULL + error when w/h are not in 1..65535. */
fl_image *fl_image_new(int w, int h, fl_err *e);
fl_image *fl_image_new_filled(int w, int h, uint8_t value, fl_err *e);
fl_image *fl_image_clone(const fl_image *src, fl_err *e);
void fl_image_free(fl_image *img);
static inline uint8_t *fl_image_px(const fl_image *img, int x, int y) {
    return img->data + (size_t)y * img->stride + (size_t)x * 3;
}
/* HWC float in [0,1] (value / 255), written densely (w*h*3 floats) to dst. */
void fl_image_to_float(const fl_image *img, float *dst);
/* The inverse (rounds and clamps); for tests and debugging dumps. */
int fl_image_from_float(fl_image *img, const float *src, fl_err *e);
/* Crop of the box (x1,y1,x2,y2) grown by `margin` (a fraction of the box size on every side),
 * rounded outward and clamped to the image. *out_box (optional) gets the region used. */
fl_image *fl_image_crop(const fl_image *src, fl_box box, float margin, fl_box *out_box,
                        fl_err *e);
/* In-place horizontal flip; boxes (n, may be NULL) mirrored: x -> w - x. */
void fl_image_flip_lr(fl_image *img, fl_box *boxes, int n);
/* Copies src into dst at (x, y), clipped to dst. */
void fl_image_paste(fl_image *dst, const fl_image *src, int x, int y);

/* ---- PPM I/O (ppm.c): binary P6, used by test fixtures and debug dumps ---- */

fl_image *fl_image_read_ppm(const char *path, fl_err *e);
int fl_image_write_ppm(const fl_image *img, const char *path, fl_err *e);

/* ---- JPEG (jpeg.c, exif.c) ---- */

/* A memory budget shared by decodes on several threads (decode_budget.c): a decode acquires
 * its estimated peak (fl_jpeg_cost_estimate plus its output buffers) before allocating and
 * releases it when done. A decode that does not fit waits for others to finish; one larger than
 * the whole limit fails. */
typedef struct fl_decode_budget fl_decode_budget;

#define FL_DECODE_DEFAULT_BUDGET (UINT64_C(1) << 30) /* the process-wide budget: 1 GiB */
/* The process-wide budget, used by every decode whose options name none; its limit starts at
 * FL_DECODE_DEFAULT_BUDGET. */
fl_decode_budget *fl_decode_budget_process(void);
fl_decode_budget *fl_decode_budget_new(uint64_t limit_bytes, fl_err *e);
void fl_decode_budget_free(fl_decode_budget *b); /* no-op for the process-wide one */
void fl_decode_budget_set_limit(fl_decode_budget *b, uint64_t limit_bytes);
uint64_t fl_decode_budget_peak(fl_decode_budget *b); /* most bytes held at once so far */
/* name prefixes the error (too large for the whole budget). */
int fl_decode_budget_acquire(fl_decode_budget *b, uint64_t bytes, const char *name, fl_err *e);
void fl_decode_budget_release(fl_decode_budget *b, uint64_t bytes);

typedef struct fl_decode_opts {
    /* Scaled decode: the smallest 1/1, 1/2, 1/4 or 1/8 scale whose (upright) result is at least
     * target_w x target_h; 0 = full size. */
    int target_w, target_h;
    /* Refuse images with more source pixels than this before allocating
     * (0 = FL_DECODE_DEFAULT_MAX_PIXELS = 2^27, about 134 M). */
    uint64_t max_pixels;
    /* Refuse a decode whose estimated peak memory (libjpeg's buffers at full resolution for
     * progressive / multi-scan files, plus the scaled output) is above this, before allocating
     * (0 = FL_DECODE_DEFAULT_MAX_BYTES). */
    uint64_t max_bytes;
    fl_decode_budget *budget; /* shared budget to hold during the decode; NULL = process-wide */
    int ignore_exif; /* 1: keep the stored orientation */
} fl_decode_opts;

#define FL_DECODE_DEFAULT_MAX_BYTES (UINT64_C(256) << 20)

/* libjpeg's own memory for decoding these bytes, from the frame and first-scan headers. */
typedef struct fl_jpeg_cost {
    uint64_t coef_bytes; /* whole-image coefficient buffer (0 unless multi_scan) */
    uint64_t work_bytes; /* row buffers and tables (an upper estimate) */
    uint64_t total;      /* coef_bytes + work_bytes */
    int progressive, multi_scan;
    int n_scans;         /* SOS markers in the file */
} fl_jpeg_cost;

/* Every scan of a progressive file passes over the whole coefficient buffer, so a small file
 * with thousands of empty scans costs minutes of CPU; real encoders write about 10. */
#define FL_DECODE_MAX_SCANS 500
int fl_jpeg_cost_estimate(const uint8_t *data, size_t len, const char *name, fl_jpeg_cost *c,
                          fl_err *e);

typedef struct fl_decode_info {
    int src_width, src_height; /* full-size, upright (after EXIF orientation) */
    int scale_denom;           /* 1, 2, 4 or 8 */
    int orientation;           /* EXIF orientation 1..8 that was found (1 when none) */
    int components;            /* 1 gray, 3 colour, 4 CMYK/YCCK */
} fl_decode_info;

#define FL_DECODE_DEFAULT_MAX_PIXELS (UINT64_C(128) << 20)

/* Decodes JPEG bytes to upright RGB. `name` (a file name) prefixes every error message.
 * Truncated data is an error (not a grey-filled image). info may be NULL. */
fl_image *fl_jpeg_decode(const uint8_t *data, size_t len, const char *name,
                         const fl_decode_opts *opts, fl_decode_info *info, fl_err *e);
/* Header only: upright full size, orientation, components (scale_denom = 1). */
int fl_jpeg_probe(const uint8_t *data, size_t len, const char *name, fl_decode_info *info,
                  fl_err *e);
/* Reads and decodes a file; errors name the path. */
fl_image *fl_jpeg_read(const char *path, const fl_decode_opts *opts, fl_decode_info *info,
                       fl_err *e);
/* Encodes RGB to JPEG (4:2:0, quality 1..100); *out is malloc'd. */
int fl_jpeg_encode(const fl_image *img, int quality, uint8_t **out, size_t *out_len, fl_err *e);
int fl_jpeg_write(const fl_image *img, int quality, const char *path, fl_err *e);

/* Scans the JPEG markers before the first SOS for the EXIF IFD0 Orientation: 1..8, or 1 when
 * absent or malformed (a broken EXIF block never fails a decode). Never reads outside
 * data[0..len). */
int fl_jpeg_exif_orientation(const uint8_t *data, size_t len);
/* Applies EXIF orientation o (1..8) to img, returning a new image (or a clone for 1). */
fl_image *fl_image_orient(const fl_image *img, int o, fl_err *e);

/* ---- resize (resize.c) ---- */

typedef enum fl_interp {
    FL_INTERP_LINEAR, /* cv2.INTER_LINEAR (half-pixel centres, 11-bit fixed point) */
    FL_INTERP_AREA,   /* cv2.INTER_AREA for downscales (pixel-area average); linear when enlarging */
    FL_INTERP_AUTO,   /* AREA when shrinking by 2x or more on both axes, else LINEAR */
} fl_interp;

fl_image *fl_image_resize(const fl_image *src, int w, int h, fl_interp interp, fl_err *e);

/* ---- warps and letterbox (warp.c) ---- */

/* 3x3 row-major matrices mapping source pixel coordinates to destination ones (the forward map,
 * as given to cv2.warpAffine / warpPerspective). */
typedef struct fl_mat3 {
    double m[9];
} fl_mat3;

fl_mat3 fl_mat3_identity(void);
fl_mat3 fl_mat3_mul(fl_mat3 a, fl_mat3 b); /* a @ b */
/* Inverse; returns -1 when singular. */
int fl_mat3_inverse(fl_mat3 a, fl_mat3 *out);
/* Bilinear warp onto a new w x h canvas filled with `fill` where the source does not reach.
 * affine = 1 uses only the top two rows (cv2.warpAffine), else the full projective map. */
fl_image *fl_image_warp(const fl_image *src, fl_mat3 m, int w, int h, int affine, uint8_t fill,
                        fl_err *e);
/* Transforms boxes by m: the bounding box of the four mapped corners, clipped to [0,w]x[0,h]. */
void fl_boxes_transform(fl_box *boxes, int n, fl_mat3 m, int affine, int w, int h);
/* YOLOv5 box_candidates: keeps box i when its new size exceeds wh_thr px on both sides, its area
 * ratio new / (old * area_scale^2) exceeds area_thr and its aspect ratio is below ar_thr.
 * Compacts boxes_new in place (and old alongside); returns the number kept. */
int fl_boxes_filter(const fl_box *old, fl_box *boxes_new, int n, float area_scale, float wh_thr,
                    float ar_thr, float area_thr);

typedef struct fl_letterbox {
    float scale;          /* source px -> output px */
    float pad_x, pad_y;   /* YOLOv5's (dw, dh): half the padding, as floats */
    int left, top;        /* integer offset of the resized image inside the output */
    int new_w, new_h;     /* resized size before padding */
} fl_letterbox;

/* YOLOv5 letterbox to out_w x out_h: scale = min ratio (not above 1 unless scaleup), resize with
 * INTER_LINEAR to round(w*r) x round(h*r), centre with `fill` (114) padding. Boxes (optional)
 * are mapped into output pixels. */
fl_image *fl_letterbox_apply(const fl_image *src, int out_w, int out_h, int scaleup,
                             uint8_t fill, fl_box *boxes, int n, fl_letterbox *lb, fl_err *e);

/* ---- colour (color.c) ---- */

/* YOLOv5 augment_hsv with explicit gains (r = 1 + uniform(-1,1) * gain, computed by the caller):
 * OpenCV's uint8 RGB->HSV (hue 0..179), per-channel LUTs, HSV->RGB. In place. */
void fl_hsv_apply_gains(fl_image *img, float rh, float rs, float rv);
/* Luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, rounded) to all three channels. */
void fl_image_grayscale(fl_image *img);
/* Separable Gaussian blur, kernel 2*ceil(3 sigma)+1, reflected borders. In place. */
int fl_image_gaussian_blur(fl_image *img, float sigma, fl_err *e);
/* torchvision-style jitter factors (1 = unchanged; hue is a shift in turns, [-0.5, 0.5]). */
void fl_image_adjust_brightness(fl_image *img, float f);
void fl_image_adjust_contrast(fl_image *img, float f);
void fl_image_adjust_saturation(fl_image *img, float f);
void fl_image_adjust_hue(fl_image *img, float shift);

/* ---- augmentations (augment_reid.c, augment_yolo.c) ---- */

typedef struct fl_reid_aug {
    int enabled;                          /* 0: crop the box (with margin) and resize only */
    float margin;                         /* box margin fraction before anything else */
    float crop_scale_lo, crop_scale_hi;   /* random resized crop: area fraction of the box */
    float crop_ratio_lo, crop_ratio_hi;   /* aspect ratio w/h, sampled log-uniformly */
    float flip_p;
    float rotate_deg;                     /* uniform in [-rotate_deg, rotate_deg] */
    float brightness, contrast, saturation, hue; /* ColorJitter amplitudes (0 = off) */
    float jitter_p;
    float gray_p;
    float blur_p, blur_sigma_lo, blur_sigma_hi;
    float cutout_p, cutout_area_lo, cutout_area_hi, cutout_ratio_lo, cutout_ratio_hi;
    uint8_t fill;                         /* rotation border and cutout value */
} fl_reid_aug;

/* Defaults used by the reproduced solution (see augment_reid.c for the values). */
fl_reid_aug fl_reid_aug_defaults(void);

/* One re-ID training sample: `box` (in img pixels; a box with x2 <= x1 means the whole image)
 * -> out_w x out_h RGB. Draws from rng in a fixed order. */
fl_image *fl_reid_augment(const fl_image *img, fl_box box, const fl_reid_aug *a, int out_w,
                          int out_h, fl_rng *rng, fl_err *e);

typedef struct fl_yolo_aug {
    int enabled;
    float hsv_h, hsv_s, hsv_v;  /* 0.015, 0.7, 0.4 */
    float degrees, translate, scale, shear, perspective; /* 0, 0.1, 0.5, 0, 0 */
    float flip_lr;              /* 0.5 */
    float mosaic;               /* probability, 1.0 */
} fl_yolo_aug;

fl_yolo_aug fl_yolo_aug_defaults(void); /* hyp.scratch-low */

/* The random parameters of YOLOv5 random_perspective, in the order it draws them. */
typedef struct fl_perspective_params {
    float px, py;   /* perspective */
    float angle;    /* degrees */
    float scale;
    float shear_x, shear_y; /* degrees */
    float tx, ty;   /* fractions: uniform(0.5 - translate, 0.5 + translate) */
} fl_perspective_params;

fl_perspective_params fl_perspective_draw(const fl_yolo_aug *a, fl_rng *rng);
/* M = T @ S @ R @ P @ C for a src_w x src_h image onto an out_w x out_h canvas. */
fl_mat3 fl_perspective_matrix(const fl_perspective_params *p, int src_w, int src_h, int out_w,
                              int out_h);
/* random_perspective: warps img to out_w x out_h, transforms and filters boxes (*n updated). */
fl_image *fl_random_perspective(const fl_image *img, fl_box *boxes, int *n, int out_w, int out_h,
                                const fl_yolo_aug *a, fl_rng *rng, fl_err *e);
/* augment_hsv with gains drawn from rng. */
void fl_augment_hsv(fl_image *img, const fl_yolo_aug *a, fl_rng *rng);

/* Four images (each already resized so its longest side is s) with their boxes in their own
 * pixels -> a 2s x 2s canvas filled with 114, random centre in [s/2, 3s/2]; boxes shifted and
 * clipped to the canvas, concatenated into out_boxes (capacity cap; *out_n set). The caller
 * picks and shuffles the four images (fl_yolo_sample does). */
fl_image *fl_mosaic4(fl_image *const imgs[4], fl_box *const boxes[4], const int nboxes[4], int s,
                     fl_box *out_boxes, int cap, int *out_n, fl_rng *rng, fl_err *e);

#endif
