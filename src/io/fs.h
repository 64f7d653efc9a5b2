/*
 * io/fs.h: file-system helpers for the library: existence tests, size-capped whole-file reads,
 * atomic output files and directories, file copy, path join, sorted directory listing,
 * recursive removal.
 *
 *     struct mf_atomic_file af;
 *     if (mf_atomic_open("out/report.json", &af, &err) != MF_OK) return err.code;
 *     fputs("{}\n", af.f);
 *     return mf_atomic_commit(&af, &err);   // fflush + fsync + rename + fsync(dir)
 *
 * What it deliberately does not do: no Windows paths, no locking against a second process writing
 * the same output (the temp names are unique, the last rename wins), no following of symlinks when
 * removing trees (a symlink is unlinked, never its target).
 * Reference: the "write to <dir>/.<name>.XXXXXX, fsync, rename" pattern of curl lib/curl_fopen.c
 * (read, not copied) and POSIX rename(2) atomicity.
 * Thread safety: every function is reentrant; an mf_atomic_file/mf_atomic_dir belongs to one thread.
 */
#ifndef MF_IO_FS_H
#define MF_IO_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "multiflow/status.h"

#define MF_PATH_MAX 4096

bool mf_fs_exists(const char *path);   /* anything at path (lstat succeeds) */
bool mf_fs_is_dir(const char *path);   /* a directory (following symlinks) */
bool mf_fs_is_file(const char *path);  /* a regular file (following symlinks) */

/* The part after the last '/' (a pointer into path). */
const char *mf_fs_basename(const char *path);
/* Writes the directory part of path into buf ("." when path has no '/'); false if it does not fit. */
bool mf_fs_dirname(char *buf, size_t n, const char *path);
/* Writes "a/b" into buf (no doubled '/', a == "" gives b); false (buf = "") if it does not fit. */
bool mf_fs_join(char *buf, size_t n, const char *a, const char *b);

/* Reads a whole file into a NUL-terminated mf_malloc'd buffer (*len excludes the NUL). Files larger
 * than max_len bytes are refused with MF_ERR_RANGE before anything is allocated. Free with mf_free. */
enum mf_status mf_fs_read_all(const char *path, char **buf, size_t *len, size_t max_len,
                              struct mf_err *err);

/* Sorted (strcmp) names in a directory, without "." and "..". Free with mf_fs_list_free. */
enum mf_status mf_fs_list_dir(const char *path, char ***names, size_t *n, struct mf_err *err);
void mf_fs_list_free(char **names, size_t n);

/* Copies src to dst through an atomic output file (dst appears complete or not at all). */
enum mf_status mf_fs_copy_file(const char *src, const char *dst, struct mf_err *err);

/* Removes path and, if it is a directory, everything under it (symlinks are unlinked, not followed).
 * A path that does not exist is not an error. */
enum mf_status mf_fs_remove_tree(const char *path, struct mf_err *err);

/* fsync of a directory, so a rename inside it survives a crash. */
enum mf_status mf_fs_sync_dir(const char *dir, struct mf_err *err);

/* Atomic output file: writes go to <dir>/.<name>.XXXXXX (created O_EXCL, mode 0666 & ~umask);
 * commit = fflush + fsync + close + rename over path + fsync(dir). Commit and abort both end the
 * object's life: on any commit failure the temp file is removed. */
struct mf_atomic_file {
    FILE *f;
    char tmp[MF_PATH_MAX];
    char final[MF_PATH_MAX];
};
enum mf_status mf_atomic_open(const char *path, struct mf_atomic_file *af, struct mf_err *err);
enum mf_status mf_atomic_commit(struct mf_atomic_file *af, struct mf_err *err);
void mf_atomic_abort(struct mf_atomic_file *af);

/* Atomic output directory: fill ad.tmp (<parent>/.<name>.XXXXXX, mode 0777 & ~umask), then commit
 * renames it to path. If path exists: without force open fails with MF_ERR_EXISTS (before any work
 * is done, and again at commit); with force the old directory is moved aside, the new one renamed
 * in, and the old one removed (if the second rename fails the old one is put back). Commit and
 * abort both end the object's life: on any commit failure the temp directory is removed. */
struct mf_atomic_dir {
    char tmp[MF_PATH_MAX];
    char final[MF_PATH_MAX];
    bool force;
};
enum mf_status mf_atomic_dir_open(const char *path, bool force, struct mf_atomic_dir *ad,
                                  struct mf_err *err);
enum mf_status mf_atomic_dir_commit(struct mf_atomic_dir *ad, struct mf_err *err);
void mf_atomic_dir_abort(struct mf_atomic_dir *ad);

#endif
