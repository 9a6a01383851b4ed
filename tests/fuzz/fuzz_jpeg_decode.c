/* Fuzz target for the JPEG decode wrapper (TurboJPEG + EXIF scan + orientation + CMYK).
 *
 *   libFuzzer:  clang -std=c11 -D_GNU_SOURCE -I. -DFL_FUZZ_LIBFUZZER -fsanitize=fuzzer,address,undefined \
 *                 tests/fuzz/fuzz_jpeg_decode.c runtime/image/[a-z]*.c runtime/rng.c artifacts/util.c \
 *                 -lturbojpeg -lm
 *               (seed corpus: the .jpg files in tests/fixtures/image)
 *   plain:      the same without -DFL_FUZZ_LIBFUZZER and -fsanitize=fuzzer gives a main() that runs
 *               every file named on the command line through the target (a regression corpus).
 *   unit test:  tests/unit/test_image_fuzz.c includes this file with FL_FUZZ_NO_MAIN.
 *
 * Beyond "does not crash": a failed decode leaves a message naming the input, a successful one
 * has the size its header promised (scaled by the chosen 1/d, transposed for orientations 5-8),
 * and probe agrees with decode. A violated promise aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/image/image.h"

static void fz_check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_jpeg_decode: broken invariant: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A small pixel cap keeps each run fast; the cap path itself is part of what is tested. */
    static const int targets[3][2] = {{0, 0}, {16, 16}, {1, 40}};
    fl_decode_info probe;
    fl_err pe = {{0}};
    int probed = fl_jpeg_probe(data, size, "fuzz.jpg", &probe, &pe) == 0;
    if (!probed) fz_check(strncmp(pe.msg, "fuzz.jpg", 8) == 0, "probe error names the input");
    (void)fl_jpeg_exif_orientation(data, size);
    for (int t = 0; t < 3; t++) {
        fl_err e = {{0}};
        fl_decode_opts o = {.target_w = targets[t][0], .target_h = targets[t][1],
                            .max_pixels = 1u << 22};
        fl_decode_info info;
        fl_image *img = fl_jpeg_decode(data, size, "fuzz.jpg", &o, &info, &e);
        if (!img) {
            fz_check(strncmp(e.msg, "fuzz.jpg", 8) == 0, "decode error names the input");
            continue;
        }
        fz_check(probed, "decode succeeded where probe failed");
        fz_check(info.src_width == probe.src_width && info.src_height == probe.src_height,
                 "probe and decode agree on the size");
        fz_check(info.orientation == probe.orientation, "probe and decode agree on orientation");
        int d = info.scale_denom;
        fz_check(d == 1 || d == 2 || d == 4 || d == 8, "scale is 1/1, 1/2, 1/4 or 1/8");
        fz_check(img->width == (info.src_width + d - 1) / d, "width = ceil(src / d)");
        fz_check(img->height == (info.src_height + d - 1) / d, "height = ceil(src / d)");
        fz_check(img->stride >= (size_t)img->width * 3, "stride covers a row");
        if (t > 0)
            fz_check(d == 1 || (img->width >= o.target_w && img->height >= o.target_h),
                     "a scaled decode still covers the target");
        fl_image_free(img);
    }
    return 0;
}

#if !defined(FL_FUZZ_LIBFUZZER) && !defined(FL_FUZZ_NO_MAIN)
int main(int argc, char **argv) {
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        fl_err e = {{0}};
        size_t len = 0;
        char *buf = fl_read_file(argv[i], &len, &e);
        if (!buf) {
            fprintf(stderr, "%s\n", e.msg);
            rc = 1;
            continue;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
        free(buf);
        printf("ok %s\n", argv[i]);
    }
    return rc;
}
#endif
