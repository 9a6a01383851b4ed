/* The "local" data source (issue 13): the competition's data already on disk, as a folder in
 * the Kaggle layout or as the zip `kaggle competitions download -c happy-whale-and-dolphin`
 * leaves (happy-whale-and-dolphin.zip).
 *
 * local  no config section (the data's content is the key, not where it lies); inputs, declared
 *        by the registry from local.path (fl_local_is_zip decides which):
 *          a folder: "train.csv", "sample_submission.csv", "train_images", "test_images", each
 *            an external input PATH/<name>, so the executor hashes exactly the layout through
 *            the stat cache (anything else in the folder, e.g. the zip it came from, is not
 *            read) and a no-op rerun opens no image;
 *          a zip: "zip", the file itself (hashed once, then vouched for by the stat cache).
 *        output "data": the tree the fetch stage writes for the same data (train.csv,
 *        sample_submission.csv, train_images/, test_images/; files 0644, folders 0755), so
 *        every downstream stage and its cache are the same whichever source produced it, and a
 *        folder and its zip give the same digest. The source is only ever read.
 *
 * The CSVs are kept byte for byte, as fetch keeps them: their readers (stages/labels) accept a
 * BOM, CRLF and quoted fields and apply the species fixes of SPECS.md section 1; the image
 * decoder (runtime/image) handles grayscale, CMYK and EXIF orientation. What the import checks
 * before anything is stored: train.csv's columns and rows and that each listed train image is
 * in train_images/, sample_submission.csv and that each listed test image is in test_images/;
 * messages name the user's file (a zip's entries as ZIP/entry) and line. */
#ifndef FLUKE_LOCAL_STAGES_H
#define FLUKE_LOCAL_STAGES_H

#include <stdint.h>

#include "stages/api/stage.h"

extern const fl_stage_def fl_stage_local;
extern const fl_cfg_field fl_local_schema[];

/* The four entries of the Kaggle layout, in the order the registry declares them as inputs. */
#define FL_LOCAL_NENTRIES 4
extern const char *const fl_local_entries[FL_LOCAL_NENTRIES];

/* 1 when local.path names a zip (ends in ".zip", any case), else 0 (a folder). By name, so a
 * plan needs no data on the machine. */
int fl_local_is_zip(const char *path);

typedef struct fl_local_stats {
    uint64_t files, bytes; /* regular files and bytes stored */
    int train_rows, test_rows;
    int species_fixed; /* train.csv rows the species fixes change downstream */
    void (*progress)(void *user, uint64_t files); /* every 1000 files copied; may be NULL */
    void *user;
} fl_local_stats;

/* Copies the layout of the folder src into data_dir (created) and checks it. Symbolic links in
 * src are followed (as the stat cache does); other special files, a missing entry or an entry
 * of the wrong kind are errors naming the path under src. */
int fl_local_import_dir(const char *src, const char *data_dir, fl_local_stats *st, fl_err *e);

/* Extracts zip safely (kaggle/ fl_extract) into scratch (emptied first, removed after), takes
 * the layout from its root or from its only top-level folder, moves it into data_dir and
 * checks it. A zip without train.csv is "not the competition's data"; a corrupt one is named
 * as such and left alone. */
int fl_local_import_zip(const char *zip, const char *scratch, const char *data_dir,
                        fl_local_stats *st, fl_err *e);

/* The checks both imports run on data_dir; messages name files under data_dir. */
int fl_local_check(const char *data_dir, fl_local_stats *st, fl_err *e);

/* Replaces every occurrence of from in e->msg by to (truncating at FL_ERRLEN), so a message
 * about a staged copy names the user's file instead. */
void fl_local_rename_msg(fl_err *e, const char *from, const char *to);

#endif
