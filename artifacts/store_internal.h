/* Private to artifacts/: the store struct, path helpers, the counted (fault-injectable) write
 * path, tree objects, a digest set and the stat cache. Nothing outside artifacts/ includes this. */
#ifndef FLUKE_STORE_INTERNAL_H
#define FLUKE_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "artifacts/store.h"

typedef struct fl_statcache fl_statcache;

struct fl_store {
    char *root;           /* absolute, no trailing slash */
    long fault_after;     /* fl_store_opts.fault_write_after */
    long writes;          /* counted object/tree/record/ref writes so far */
    fl_statcache *sc;     /* loaded on first use of fl_store_hash_external */
};

/* ------------------------------------------------------------------ hashing (hash.c) */

/* Hashes everything readable from fd (from its current offset). bytes may be NULL. */
int fl__hash_fd(int fd, const char *path_for_errors, fl_digest *out, uint64_t *bytes, fl_err *e);
/* XXH3-128 of a buffer, as a digest (canonical big-endian, same hex as `xxhsum -H2`). */
void fl__hash_buf(const void *data, size_t len, fl_digest *out);
/* XXH3-128 built for AVX2 (xxh3_avx2.c); only valid when fl__have_avx2(). */
int fl__have_avx2(void);
void fl__xxh128_avx2(const void *data, size_t len, fl_digest *out);
void *fl__xxh128_avx2_new(void); /* a reset streaming state, NULL when out of memory */
void fl__xxh128_avx2_update(void *st, const void *data, size_t len);
void fl__xxh128_avx2_digest(const void *st, fl_digest *out);
void fl__xxh128_avx2_free(void *st);
/* fl_hash_file, optionally refusing a symbolic link (nofollow: for paths inside the store). */
int fl__hash_path(const char *path, int nofollow, fl_digest *out, fl_err *e);
/* 1 if s is exactly 32 lowercase hex digits (a digest file name), else 0. */
int fl__is_hex32(const char *s);

/* A file to hash (external.c): path in; digest, the stat taken between open and read, and the
 * byte count out, or err (malloc'd message). */
typedef struct fl_hash_job {
    char *path;
    fl_digest d;
    struct stat fst;
    uint64_t bytes;
    char *err;
} fl_hash_job;
/* Hashes every job, with up to 8 threads (created and joined here) when there are many. */
void fl__hash_jobs(fl_hash_job *jobs, size_t n);
/* Frees the paths, messages and the array. */
void fl__hash_jobs_free(fl_hash_job *jobs, size_t n);

/* ------------------------------------------------------------------ layout (store_open.c) */

/* Size limits for the store's own metadata files: far above anything fluke writes (a record is
 * a stage's JSON description, a tree lists one directory), low enough that a damaged or
 * replaced file cannot take the machine's memory. */
#define FL_RECORD_MAX ((size_t)64 << 20)
#define FL_TREE_MAX ((size_t)1 << 30)
#define FL_REF_MAX ((size_t)64 << 20)
#define FL_STATCACHE_MAX ((size_t)2 << 30)

/* Reads a file inside the store: never through a symbolic link, regular files only, at most
 * max bytes (fl_read_file_flags with FL_READ_NOFOLLOW). */
char *fl__store_read(const char *path, size_t max, size_t *len, fl_err *e);

/* root/<kind>/ab/cdef... for kind "objects", "trees" or "records" (malloc'd). */
char *fl__shard_path(const fl_store *s, const char *kind, const fl_digest *d);
/* Counts one store write and fails it with ENOSPC when fault injection says so. what/path only
 * shape the message. */
int fl__store_count_write(fl_store *s, const char *what, const char *path, fl_err *e);
/* Writes data to dst (a path in the store) durably: a temporary file under tmp/, fsync, chmod
 * mode, rename, fsync of dst's directory (created if missing). When keep_existing and dst exists,
 * nothing is written and *written (may be NULL) is 0. Counts as one write (fault injection). */
int fl__store_put_file(fl_store *s, const char *dst, const void *data, size_t len, mode_t mode,
                       int keep_existing, const char *what, int *written, fl_err *e);
/* Writes data into a fresh temporary file under tmp/ (*tmp malloc'd), chmod mode, fsync when
 * sync. Not counted: the caller counts the write it is part of. */
int fl__store_write_tmp(fl_store *s, const void *data, size_t len, mode_t mode, int sync,
                        const char *what, const char *dst, char **tmp, fl_err *e);
/* Something in the way of a file about to be renamed to dst inside the store (a directory at a
 * record's path, a file where the shard directory objects/<xx> belongs): damage that would fail
 * every later write. Moves it to quarantine/ and returns 1 (retry the rename), 0 when nothing is
 * in the way, -1 on error. */
int fl__set_aside_blocker(fl_store *s, const char *dst, fl_err *e);
/* Creates an exclusive temporary file under tmp/ named with the pid; *path is malloc'd. */
int fl__store_tmpfile(fl_store *s, char **path, fl_err *e);
/* A fresh directory under tmp/ named "<pid>-<label>-XXXXXX" (malloc'd path). */
char *fl__store_tmpdir(fl_store *s, const char *label, fl_err *e);
/* rename(src, dst), creating dst's parent directory when missing. */
int fl__rename_mkdir(const char *src, const char *dst, fl_err *e);
/* fsync of a directory by path. */
int fl__fsync_dir(const char *dir, fl_err *e);
/* Moves a damaged file to quarantine/<prefix><hex>[.N], never overwriting earlier evidence. */
int fl__quarantine(fl_store *s, const char *path, const char *prefix, const char *hex, fl_err *e);
/* Validates a ref or lock name: [A-Za-z0-9._-] components separated by '/', no "." or "..". */
int fl__check_name(const char *kind, const char *name, fl_err *e);

/* ------------------------------------------------------------------ trees (tree.c) */

enum { FL_MODE_FILE = 'f', FL_MODE_EXEC = 'x', FL_MODE_DIR = 'd' };

/* Trees nested deeper than this cannot come from a real directory (PATH_MAX is 4096 bytes, so
 * at most 2048 levels); deeper chains are damage, and walking them must not exhaust the stack
 * (verify reports them, gc stops descending). */
#define FL_MAX_TREE_DEPTH 4096

typedef struct fl_tree_entry {
    char *name;
    char mode; /* FL_MODE_* */
    fl_digest d;
} fl_tree_entry;

typedef struct fl_tree {
    fl_tree_entry *v;
    size_t n, cap;
} fl_tree;

int fl__tree_add(fl_tree *t, const char *name, char mode, const fl_digest *d, fl_err *e);
void fl__tree_free(fl_tree *t);
/* Canonical encoding (entries sorted by name as bytes); *buf malloc'd. Sorts t in place. */
int fl__tree_encode(fl_tree *t, char **buf, size_t *len, fl_err *e);
/* Digest of an encoded tree: XXH3-128 over a "tree" type prefix and the encoding, so no file's
 * plain content digest can be confused with a tree digest built from the same bytes. */
void fl__tree_digest(const void *buf, size_t len, fl_digest *out);
/* Sorts, encodes and digests t (no store needed: used for external inputs). */
int fl__tree_compute(fl_tree *t, fl_digest *out, fl_err *e);
/* Parses an encoding; rejects anything non-canonical. what names the source in errors. */
int fl__tree_parse(const char *buf, size_t len, fl_tree *t, const char *what, fl_err *e);
/* 1 when trees/<d> at path holds exactly buf; 0 when absent (a damaged one is moved to
 * quarantine/ first); -1 on error. */
int fl__tree_present(fl_store *s, const char *path, const fl_digest *d, const char *buf,
                     size_t len, fl_err *e);
/* Encodes, digests and stores t under trees/ (kept if present and intact). */
int fl__tree_store(fl_store *s, fl_tree *t, fl_digest *out, fl_err *e);
/* Reads trees/<d>, checks its digest and parses it. Returns 0, or -1 with "missing tree <hex>"
 * (and *missing = 1 when the file is absent; missing may be NULL) or a corruption message. */
int fl__tree_load(fl_store *s, const fl_digest *d, fl_tree *t, int *missing, fl_err *e);

/* ------------------------------------------------------------------ digest set (digest_set.c) */

/* Open-addressing hash map digest -> small int value. */
typedef struct fl_dset {
    fl_digest *keys;
    int *vals;
    uint8_t *used;
    size_t n, cap;
} fl_dset;

void fl__dset_free(fl_dset *s);
/* Returns a pointer to the value slot, inserting with val 0 when absent and create is set; NULL
 * when absent and !create or on allocation failure. */
int *fl__dset_get(fl_dset *s, const fl_digest *d, int create);

/* ------------------------------------------------------------------ scanning (store_scan.c) */

/* Calls fn for every root/<kind>/ab/<30 hex> entry (names that are not digests, such as
 * leftovers of other tools, are skipped). fn returns 0 to go on, -1 to stop with an error. */
typedef int (*fl_scan_fn)(const fl_digest *d, const char *path, const struct stat *st, void *arg,
                          fl_err *e);
int fl__scan_shards(fl_store *s, const char *kind, fl_scan_fn fn, void *arg, fl_err *e);
/* Like fl__scan_shards, and calls odd (when not NULL) for every digest-named entry that is not a
 * regular file (st from lstat; a shard "ab" that is not a directory comes with d == NULL and its
 * path), so verify can report and set aside what the plain scan skips. */
int fl__scan_shards_all(fl_store *s, const char *kind, fl_scan_fn fn, fl_scan_fn odd, void *arg,
                        fl_err *e);

/* ------------------------------------------------------------------ records (store_records.c) */

/* Parses a record file's text; *json points into buf. Returns 0, or -1 with a message naming
 * path ("corrupt record <path>: <why>"). fl__record_parse_key also checks that the record is
 * the one of key (a record copied or renamed to another key's path is corrupt); key NULL skips
 * that check. *old_format (may be NULL) is set when the text is a record of an earlier format
 * (rejected too: not damaged, just unreadable by this version). */
int fl__record_parse(const char *buf, size_t len, const char *path, fl_digest *tree,
                     const char **json, size_t *json_len, fl_err *e);
int fl__record_parse_key(const char *buf, size_t len, const char *path, const fl_digest *key,
                         fl_digest *tree, const char **json, size_t *json_len, int *old_format,
                         fl_err *e);
/* The encoding fl_store_record_put writes (malloc'd, *len bytes, not NUL-terminated). */
char *fl__record_encode(const fl_digest *key, const fl_digest *tree, const char *json, size_t jl,
                        size_t *len);

/* ------------------------------------------------------------------ stat cache (statcache.c) */

void fl__statcache_free(fl_statcache *sc);
/* Loads the store's cache on first use (a missing or damaged file gives an empty cache). */
int fl__statcache_load(fl_store *s, fl_err *e);
/* 1 (and *out) when abs has an entry matching st that is not racily clean (marks it seen). */
int fl__statcache_lookup(fl_statcache *sc, const char *abs, const struct stat *st, fl_digest *out);
/* Records a freshly hashed file: fst is its stat taken before reading, ref_ns the coarse clock
 * read before it was opened. */
int fl__statcache_record(fl_statcache *sc, const char *abs, const struct stat *fst, int64_t ref_ns,
                         const fl_digest *d, fl_err *e);

#endif
