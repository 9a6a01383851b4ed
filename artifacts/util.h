/* Small shared utilities: the error convention and file-system helpers every module uses.
 * Library code never exits: it fills an fl_err and returns -1 (or NULL). */
#ifndef FLUKE_UTIL_H
#define FLUKE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FL_ERRLEN 1024

typedef struct fl_err {
    char msg[FL_ERRLEN];
} fl_err;

/* Sets e->msg (printf-style) and returns -1, so callers can `return fl_errf(e, ...)`. */
int fl_errf(fl_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes an existing message: "context: old message". Returns -1. */
int fl_errprefix(fl_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* mkdir -p with mode 0755. */
int fl_mkdirs(const char *path, fl_err *e);
/* Whole-file reads into a malloc'd, NUL-terminated buffer; *len gets the size (may be NULL).
 * Only regular files are read: a FIFO, device, socket or directory is an error naming the path
 * (opened with O_NONBLOCK, so a FIFO cannot hang the open), and so is a file larger than max
 * bytes ("larger than the N-byte limit"), checked before allocating and again while reading, so
 * a file that grows cannot take more than max + 1 bytes of memory.
 * fl_read_file uses FL_READ_MAX_DEFAULT: a backstop sized for the largest legitimate reads (model
 * weights, checkpoints); callers that know their input is small (configs, records) pass a
 * tighter max to fl_read_file_max. */
#define FL_READ_MAX_DEFAULT ((size_t)4 << 30) /* 4 GiB */
char *fl_read_file(const char *path, size_t *len, fl_err *e);
char *fl_read_file_max(const char *path, size_t *len, size_t max, fl_err *e);
/* flags for fl_read_file_flags */
#define FL_READ_NOFOLLOW                                                                           \
    1u /* a symbolic link is an error (O_NOFOLLOW): for files inside the store */
char *fl_read_file_flags(const char *path, size_t *len, size_t max, unsigned flags, fl_err *e);
/* "a directory", "a FIFO", "a symbolic link", ... for a st_mode that is not a regular file. */
const char *fl_file_kind(unsigned mode);
/* The rest of an open descriptor (regular files only, same limit rule); path only names it in
 * errors. Does not close fd. */
char *fl_read_fd_max(int fd, const char *path, size_t *len, size_t max, fl_err *e);
/* Creates (or truncates) path and writes data: for files inside a stage's private output dir,
 * where the commit protocol, not the write, makes them durable. */
int fl_write_file(const char *path, const void *data, size_t len, fl_err *e);
/* Writes data to path via a temporary file in the same directory, fsync, rename, fsync dir. */
int fl_write_file_atomic(const char *path, const void *data, size_t len, fl_err *e);
/* fsync of the directory holding path (makes a rename durable). */
int fl_fsync_parent(const char *path, fl_err *e);
/* rm -rf; a missing path is not an error. */
int fl_remove_tree(const char *path, fl_err *e);
/* Copies a regular file (to a temporary name, then renames). */
int fl_copy_file(const char *src, const char *dst, fl_err *e);
/* snprintf into a fresh malloc'd string. */
char *fl_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Monotonic clock in seconds. */
double fl_now(void);

#endif
