/* A stdio stream that forwards whole lines to fl_stage_log, so the Kaggle client's messages and
 * progress lines appear in the stage's log with its prefix (fopencookie, glibc). */
#include <stdlib.h>
#include <string.h>

#include "stages/fetch/stages.h"

typedef struct logcookie {
    fl_stage_ctx *c;
    char buf[1024];
    size_t n;
} logcookie;

static void flush_line(logcookie *lc) {
    while (lc->n && (lc->buf[lc->n - 1] == '\n' || lc->buf[lc->n - 1] == '\r')) lc->n--;
    lc->buf[lc->n] = 0;
    if (lc->n) fl_stage_log(lc->c, "%s", lc->buf);
    lc->n = 0;
}

static ssize_t cookie_write(void *p, const char *data, size_t size) {
    logcookie *lc = p;
    for (size_t i = 0; i < size; i++) {
        char ch = data[i];
        if (ch == '\n' || ch == '\r') {
            flush_line(lc);
        } else {
            if (lc->n + 1 >= sizeof lc->buf) flush_line(lc);
            lc->buf[lc->n++] = ch;
        }
    }
    return (ssize_t)size;
}

static int cookie_close(void *p) {
    logcookie *lc = p;
    flush_line(lc);
    free(lc);
    return 0;
}

FILE *fl_stage_log_file(fl_stage_ctx *c) {
    logcookie *lc = calloc(1, sizeof *lc);
    if (!lc) return NULL;
    lc->c = c;
    cookie_io_functions_t io = {.read = NULL, .write = cookie_write, .seek = NULL, .close = cookie_close};
    FILE *f = fopencookie(lc, "w", io);
    if (!f) {
        free(lc);
        return NULL;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    return f;
}
