/* MD5 of a file that is being written, on a second thread: the writer reports how far the file
 * is written, the hasher reads those bytes back (from the page cache) and hashes them. MD5 runs
 * at a few hundred MB/s, about a loopback transfer's speed, so hashing inline would halve the
 * download rate; in parallel it costs only the CPU it uses. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "kaggle/internal.h"

struct fl_hashpipe {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fd;
    uint64_t written; /* bytes the writer has put in the file */
    uint64_t hashed;
    uint64_t signalled; /* written at the last wake-up: wake the hasher every few MB only */
    int done, stop, failed;
    fl_md5 md5;
};

static void *hasher(void *arg) {
    fl_hashpipe *h = arg;
    static const size_t B = 1 << 20;
    char *buf = malloc(B);
    pthread_mutex_lock(&h->mu);
    if (!buf) h->failed = 1;
    for (;;) {
        while (!h->stop && !h->failed && h->hashed == h->written && !h->done)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->stop || h->failed || (h->hashed == h->written && h->done)) break;
        uint64_t from = h->hashed, to = h->written;
        pthread_mutex_unlock(&h->mu);
        int bad = 0;
        while (from < to) {
            size_t n = to - from < B ? (size_t)(to - from) : B;
            ssize_t r = pread(h->fd, buf, n, (off_t)from);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                bad = 1;
                break;
            }
            fl_md5_update(&h->md5, buf, (size_t)r);
            from += (uint64_t)r;
        }
        pthread_mutex_lock(&h->mu);
        h->hashed = from;
        if (bad) h->failed = 1;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    free(buf);
    return NULL;
}

fl_hashpipe *fl_hashpipe_start(const char *path, uint64_t written) {
    fl_hashpipe *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (h->fd < 0) {
        free(h);
        return NULL;
    }
    fl_md5_init(&h->md5);
    h->written = h->signalled = written;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->th, NULL, hasher, h) != 0) {
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        close(h->fd);
        free(h);
        return NULL;
    }
    return h;
}

void fl_hashpipe_advance(fl_hashpipe *h, uint64_t written) {
    if (written - h->signalled < (8u << 20)) return; /* batch: fewer wake-ups, longer reads */
    pthread_mutex_lock(&h->mu);
    h->written = written;
    h->signalled = written;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void finish(fl_hashpipe *h, int stop, uint64_t written) {
    pthread_mutex_lock(&h->mu);
    if (!stop) h->written = written;
    h->done = 1;
    h->stop = stop;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->th, NULL);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    close(h->fd);
}

int fl_hashpipe_finish(fl_hashpipe *h, uint64_t written, uint8_t out[16]) {
    finish(h, 0, written);
    int ok = !h->failed && h->hashed == h->written;
    if (ok) fl_md5_final(&h->md5, out);
    free(h);
    return ok ? 0 : -1;
}

void fl_hashpipe_abort(fl_hashpipe *h) {
    if (!h) return;
    finish(h, 1, 0);
    free(h);
}
