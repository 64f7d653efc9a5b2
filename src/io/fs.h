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
 * Temporary outputs are named <dir>/.<name>.mf<pid>-<6 random chars>; a temporary directory also
 * holds a marker file (MF_FS_TEMP_MARKER) until its commit. While open, each one is listed in a
 * process-wide registry that mf_fs_remove_temps() empties with async-signal-safe calls only, so a
 * signal handler (installed by the CLI, never by the library) can leave nothing behind. A temporary
 * output whose process died without cleaning up (SIGKILL, power loss) is recognised by that name
 * (and, for a directory, the marker) and removed by the next mf_atomic_open/mf_atomic_dir_open of
 * the same output path, when no process with that pid is alive.
 *
 * What it deliberately does not do: no Windows paths, no locking against a second process writing
 * the same output (the temp names are unique, the last rename wins), no following of symlinks when
 * removing trees (a symlink is unlinked, never its target), no stale-temp detection across hosts
 * sharing a file system (the pid is only meaningful on this host).
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
    int reg; /* registry slot + 1 (0: not registered) */
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
    int reg; /* registry slot + 1 (0: not registered) */
};
enum mf_status mf_atomic_dir_open(const char *path, bool force, struct mf_atomic_dir *ad,
                                  struct mf_err *err);
enum mf_status mf_atomic_dir_commit(struct mf_atomic_dir *ad, struct mf_err *err);
void mf_atomic_dir_abort(struct mf_atomic_dir *ad);

/* Name of the marker file inside a temporary output directory. */
#define MF_FS_TEMP_MARKER ".multiflow-partial"

/* Removes every temporary output this process has open (files, directories with their contents)
 * and puts back an output that a forced directory commit had moved aside. Async-signal-safe: only
 * unlink/rmdir/rename/open/getdents/close on paths recorded at open time; meant for a signal handler
 * that exits right after (the atomic objects are left unusable). */
void mf_fs_remove_temps(void);

/* Rewrites, in msg (NUL-terminated, cap bytes), each temporary path of an open atomic file or
 * directory into its final path, so that messages name what the user asked for. */
void mf_fs_temp_to_final(char *msg, size_t cap);

/* strerror(e), with what to do about it for EFBIG (the file size limit, 'ulimit -f') and ENOSPC /
 * EDQUOT (the disk or quota is full). */
const char *mf_fs_strerror(int e);

/* Checks, before any long work, that path could be written: creates and removes a temporary file
 * next to it (the directory exists and is writable, path is not a directory). */
enum mf_status mf_fs_check_writable(const char *path, struct mf_err *err);

/* Test hook for interruption tests: when the environment has MF_TEST_PAUSE=<point>:<n>, the n-th
 * call with that point creates the file named by MF_TEST_PAUSE_FILE (if set) and sleeps up to 120 s,
 * waiting for a signal. Points: "commit" (mf_atomic_commit, the data written but not renamed),
 * "batch" (eval/pairs.c, each batch of pairs read). Without the variable it does nothing. */
void mf_fs_test_pause(const char *point);

#endif
