/* The content-addressed artifact store (.fluke/ by default).
 *
 * Layout under the root:
 *   objects/ab/cdef...      file contents by XXH3-128 digest (read-only, 0444)
 *   trees/ab/cdef...        tree objects: a directory listing (name, mode, child digest), sorted
 *   checkouts/<tree hex>/   read-only materialization of a tree (hard links into objects/)
 *   records/ab/cdef...      cache records: stage key -> output tree digest + JSON, written last
 *   refs/<name>             small text files (e.g. the record keys of a config's latest run)
 *   work/<key hex>/         per-key scratch that survives crashes (checkpoints), removed on commit
 *   tmp/                    staging directories, one per running stage
 *   quarantine/             objects that failed verification
 *   locks/                  lock files (flock: released by the OS when a process dies)
 *   statcache               stat cache for external inputs
 *
 * Every mutation is crash-safe: data is written to a temporary name, fsynced and renamed into
 * place; a record is written only after every object and tree it points to is durable. */
#ifndef FLUKE_STORE_H
#define FLUKE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/util.h"

typedef struct fl_digest {
    uint8_t b[16];
} fl_digest;

#define FL_DIGEST_HEX 33
void fl_digest_hex(const fl_digest *d, char out[FL_DIGEST_HEX]);
int fl_digest_from_hex(const char *hex, fl_digest *d); /* 0 ok, -1 malformed */
int fl_digest_eq(const fl_digest *a, const fl_digest *b);

/* Streaming XXH3-128, used for cache keys and contents alike. */
typedef struct fl_hasher fl_hasher;
fl_hasher *fl_hasher_new(void);
void fl_hasher_update(fl_hasher *h, const void *data, size_t len);
void fl_hasher_digest(const fl_hasher *h, fl_digest *out);
void fl_hasher_free(fl_hasher *h);
int fl_hash_file(const char *path, fl_digest *out, fl_err *e);

typedef struct fl_store_opts {
    /* Test hook for "disk full during a commit": when > 0, the Nth object/tree/record/ref write
     * through this store handle fails with ENOSPC ("No space left on device"), and so does every
     * later one (the disk stays full). Content that is already stored is not a write. A failed
     * write leaves nothing half-written. 0 = off. */
    long fault_write_after;
} fl_store_opts;

typedef struct fl_hash_stats {
    uint64_t files_seen;   /* files visited */
    uint64_t files_hashed; /* files whose contents were read (stat cache miss or racy) */
    uint64_t bytes_hashed;
} fl_hash_stats;

typedef struct fl_store fl_store;

/* Opens (creating the layout if needed) the store at root. Fails with a clear message when the
 * root cannot be created or written. opts may be NULL. */
fl_store *fl_store_open(const char *root, const fl_store_opts *opts, fl_err *e);
void fl_store_close(fl_store *s);
const char *fl_store_root(const fl_store *s);

/* Digest of an external input (a file, or a directory as a Merkle tree of its files), reusing
 * the stat cache: a file is read only when (dev, ino, size, mtime_ns, ctime_ns) changed or its
 * entry is racily clean (mtime not older than the cache's write time). Symbolic links are
 * followed; FIFOs, devices and sockets are an error naming the path. A file's digest is its
 * content's XXH3-128 (what `xxhsum -H2` prints); a directory's is the tree digest
 * fl_store_ingest would give the same content. stats may be NULL; its counts are added to. */
int fl_store_hash_external(fl_store *s, const char *path, fl_digest *out, fl_hash_stats *stats,
                           fl_err *e);
/* Persists the stat cache atomically (call at the end of a run). */
int fl_store_statcache_save(fl_store *s, fl_err *e);

/* A fresh, empty staging directory under tmp/ (malloc'd path). Stale staging directories of
 * dead processes are removed by fl_store_open. */
char *fl_store_staging_dir(fl_store *s, const char *label, fl_err *e);
/* The per-key scratch directory work/<key>/ (created if needed; malloc'd path). */
char *fl_store_work_dir(fl_store *s, const fl_digest *key, fl_err *e);
int fl_store_work_dir_remove(fl_store *s, const fl_digest *key, fl_err *e);

/* Moves the regular files of dir into objects/ (hashing each, fsync, rename; duplicates are
 * dropped), writes the tree objects, and returns the root tree digest. Symlinks, devices and
 * other special files are an error naming the path. dir is left without its files. */
int fl_store_ingest(fl_store *s, const char *dir, fl_digest *tree, fl_err *e);
/* Path (malloc'd) of the read-only checkout of tree, created atomically if absent. Fails if an
 * object is missing (the caller then treats the record as a miss). */
char *fl_store_checkout(fl_store *s, const fl_digest *tree, fl_err *e);

/* Records. get: FL_RECORD_FOUND (tree and *json filled, json malloc'd; either may be NULL),
 * FL_RECORD_ABSENT, FL_RECORD_DAMAGED, or -1 on an error (permission denied, out of memory).
 * Damaged: the file at the record's path is not a valid record of this key (truncated, garbage,
 * a failed checksum, another key's record, a directory, a symbolic link, a FIFO, too large, a
 * record of an older format); it has been moved to quarantine/ and e->msg says why, so the
 * caller can report it and recompute the stage. get refreshes the record's mtime (recency for
 * gc). peek is get without side effects (no quarantine, no mtime), for read-only commands.
 * put writes atomically and durably, and only for a tree already in the store. drop removes
 * (missing is fine). */
enum { FL_RECORD_ABSENT = 0, FL_RECORD_FOUND = 1, FL_RECORD_DAMAGED = 2 };
int fl_store_record_get(fl_store *s, const fl_digest *key, fl_digest *tree, char **json,
                        fl_err *e);
int fl_store_record_peek(fl_store *s, const fl_digest *key, fl_digest *tree, char **json,
                         fl_err *e);
int fl_store_record_put(fl_store *s, const fl_digest *key, const fl_digest *tree,
                        const char *json, fl_err *e);
int fl_store_record_drop(fl_store *s, const fl_digest *key, fl_err *e);

/* Refs: name is [A-Za-z0-9._-]+ (may contain '/'). get returns malloc'd text, or NULL with
 * e->msg empty when absent. */
int fl_store_ref_set(fl_store *s, const char *name, const char *text, fl_err *e);
char *fl_store_ref_get(fl_store *s, const char *name, fl_err *e);

/* Named OS file locks under locks/. Returns an fd >= 0 when held; -2 when wait == 0 and the
 * lock is busy; -1 on error. */
int fl_store_lock(fl_store *s, const char *name, int exclusive, int wait, fl_err *e);
void fl_store_unlock(int fd);

/* The digest of the file at relpath ('/'-separated) inside tree. -1 with e set when a tree on the
 * way is missing or damaged, or the path is not a file of the tree. */
int fl_store_tree_lookup(fl_store *s, const fl_digest *tree, const char *relpath, fl_digest *out,
                         fl_err *e);
/* Re-hashes objects/<d>: *corrupt = 0 when it matches; otherwise *corrupt = 1 and a present
 * object is moved to quarantine/ (so the next ingest stores a good copy). Records and checkouts
 * that reach it are left to the caller and to fl_store_verify. */
int fl_store_object_recheck(fl_store *s, const fl_digest *d, int *corrupt, fl_err *e);
/* Read-only and cheap (no object is read): 1 when tree, its subtrees and every object they name
 * are present (trees load and match their digests, objects are regular files), 0 when something
 * is missing or damaged (e->msg names it), -1 on an error (out of memory, permission denied). */
int fl_store_tree_intact(fl_store *s, const fl_digest *tree, fl_err *e);

typedef struct fl_verify_report {
    uint64_t objects, trees, bytes;
    uint64_t corrupt;         /* damaged objects, trees and records: content that no longer
                                 matches its digest or checksum, or anything that is not a
                                 regular file where one belongs */
    uint64_t records_dropped; /* records removed: damaged ones, and those whose outputs
                                 included a corrupt or missing object or tree */
    uint64_t checkouts_removed;
} fl_verify_report;
/* Re-hashes every object and tree and checks every record. A damaged one is reported through
 * on_corrupt (may be NULL) with a human-readable line and moved to quarantine/; every checkout
 * containing it is removed and every record pointing to a tree that contains it is dropped, so
 * those stages recompute. Records of an older format are dropped (reported, not corrupt). */
int fl_store_verify(fl_store *s, fl_verify_report *r,
                    void (*on_corrupt)(const char *line, void *arg), void *arg, fl_err *e);

typedef struct fl_gc_report {
    uint64_t records_kept, records_removed;
    uint64_t objects_kept, objects_removed;
    uint64_t bytes_kept, bytes_freed;
    uint64_t work_removed; /* work/<key>/ dirs of keys no ref lists */
} fl_gc_report;
/* Keeps every record whose key is listed (one hex key per line, first word) in any ref file,
 * with the trees and objects they reach, and the work/<key>/ dirs of listed keys (others go). max_bytes == 0: everything else is removed. max_bytes > 0: other
 * records are also kept, most recently used first, while the kept total stays under max_bytes.
 * The caller holds the exclusive "gc" lock (runs hold it shared). */
int fl_store_gc(fl_store *s, uint64_t max_bytes, fl_gc_report *r, fl_err *e);

#endif
