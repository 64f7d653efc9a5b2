/* fs helpers: join/dirname, capped reads, sorted listing, atomic files and directories (commit,
 * abort, force, failure leaving nothing behind), copy, recursive removal; the registry of open
 * temporaries (signal-time removal, temp names in messages) and stale temporaries of dead runs. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "io/fs.h"

static void test_paths(void **state)
{
    (void)state;
    char b[32];
    assert_true(mf_fs_join(b, sizeof b, "a", "b"));
    assert_string_equal(b, "a/b");
    assert_true(mf_fs_join(b, sizeof b, "a//", "b"));
    assert_string_equal(b, "a/b");
    assert_true(mf_fs_join(b, sizeof b, "/", "b"));
    assert_string_equal(b, "/b");
    assert_true(mf_fs_join(b, sizeof b, "", "b"));
    assert_string_equal(b, "b");
    assert_false(mf_fs_join(b, 4, "abc", "def"));
    assert_string_equal(b, "");
    assert_true(mf_fs_dirname(b, sizeof b, "x/y/z.json"));
    assert_string_equal(b, "x/y");
    assert_true(mf_fs_dirname(b, sizeof b, "z.json"));
    assert_string_equal(b, ".");
    assert_true(mf_fs_dirname(b, sizeof b, "/z"));
    assert_string_equal(b, "/");
    assert_string_equal(mf_fs_basename("x/y/z.json"), "z.json");
    assert_string_equal(mf_fs_basename("z"), "z");
}

static void test_read_all_and_list(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char p[4096];
    struct mf_err err = {0};
    char *buf = NULL;
    size_t len = 0;
    snprintf(p, sizeof p, "%s/b.txt", dir);
    assert_int_equal(mf_test_write_file(p, "hello", 5), 0);
    assert_true(mf_fs_exists(p) && mf_fs_is_file(p) && !mf_fs_is_dir(p));
    assert_true(mf_fs_is_dir(dir) && !mf_fs_is_file(dir));
    assert_int_equal(mf_fs_read_all(p, &buf, &len, 5, &err), MF_OK);
    assert_int_equal(len, 5);
    assert_string_equal(buf, "hello");
    mf_free(buf);
    assert_int_equal(mf_fs_read_all(p, &buf, &len, 4, &err), MF_ERR_RANGE);
    assert_null(buf);
    assert_non_null(strstr(err.msg, "b.txt"));
    assert_non_null(strstr(err.msg, "5 bytes"));
    /* a regular file is read with exactly one allocation, however large */
    char *big = calloc(1, 100000);
    memset(big, 'x', 99999);
    snprintf(p, sizeof p, "%s/big.txt", dir);
    assert_int_equal(mf_test_write_file(p, big, 99999), 0);
    long before = mf_alloc_count();
    assert_int_equal(mf_fs_read_all(p, &buf, &len, 1 << 20, &err), MF_OK);
    assert_int_equal(mf_alloc_count() - before, 1);
    assert_int_equal(len, 99999);
    assert_string_equal(buf, big);
    mf_free(buf);
    free(big);
    unlink(p);
    snprintf(p, sizeof p, "%s/a.txt", dir);
    assert_int_equal(mf_test_write_file(p, "", 0), 0);
    assert_int_equal(mf_fs_read_all(p, &buf, &len, 0, &err), MF_OK);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    mf_free(buf);
    snprintf(p, sizeof p, "%s/none", dir);
    assert_false(mf_fs_exists(p));
    assert_int_equal(mf_fs_read_all(p, &buf, &len, 10, &err), MF_ERR_MISSING);
    assert_int_equal(mf_fs_read_all(dir, &buf, &len, 10, &err), MF_ERR_IO);
    /* a pipe-like file with unknown size is capped while reading */
    assert_int_equal(mf_fs_read_all("/proc/self/status", &buf, &len, 16, &err), MF_ERR_RANGE);
    assert_int_equal(mf_fs_read_all("/proc/self/status", &buf, &len, 1 << 20, &err), MF_OK);
    assert_true(len > 16);
    mf_free(buf);

    snprintf(p, sizeof p, "%s/c", dir);
    assert_int_equal(mkdir(p, 0777), 0);
    char **names = NULL;
    size_t n = 0;
    assert_int_equal(mf_fs_list_dir(dir, &names, &n, &err), MF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "a.txt");
    assert_string_equal(names[1], "b.txt");
    assert_string_equal(names[2], "c");
    mf_fs_list_free(names, n);
    assert_int_equal(mf_fs_list_dir(p, &names, &n, &err), MF_OK);
    assert_int_equal(n, 0);
    mf_fs_list_free(names, n);
    snprintf(p, sizeof p, "%s/none", dir);
    assert_int_equal(mf_fs_list_dir(p, &names, &n, &err), MF_ERR_MISSING);
    assert_null(names);
    assert_int_equal(mf_fs_remove_tree(dir, &err), MF_OK);
    assert_false(mf_fs_exists(dir));
    assert_int_equal(mf_fs_remove_tree(dir, &err), MF_OK); /* already gone: fine */
}

static void test_atomic_file(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char p[4096];
    struct mf_err err = {0};
    struct mf_atomic_file af;
    snprintf(p, sizeof p, "%s/out.json", dir);
    assert_int_equal(mf_atomic_open(p, &af, &err), MF_OK);
    assert_non_null(strstr(af.tmp, "/.out.json."));
    fputs("{\"a\": 1}\n", af.f);
    assert_false(mf_fs_exists(p)); /* invisible until commit */
    assert_int_equal(mf_test_dir_count(dir), 1);
    assert_int_equal(mf_atomic_commit(&af, &err), MF_OK);
    assert_int_equal(mf_test_dir_count(dir), 1);
    size_t len;
    char *got = mf_test_read_file(p, &len);
    assert_string_equal(got, "{\"a\": 1}\n");
    free(got);
    /* permissions follow the umask, not mkstemp's 0600 */
    struct stat sb;
    mode_t um = umask(022);
    umask(um);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0666 & ~um);
    /* abort: old content stays, no temp left */
    assert_int_equal(mf_atomic_open(p, &af, &err), MF_OK);
    fputs("partial", af.f);
    mf_atomic_abort(&af);
    got = mf_test_read_file(p, &len);
    assert_string_equal(got, "{\"a\": 1}\n");
    free(got);
    assert_int_equal(mf_test_dir_count(dir), 1);
    /* missing directory, path naming a directory, empty name */
    snprintf(p, sizeof p, "%s/missing/out.json", dir);
    assert_int_equal(mf_atomic_open(p, &af, &err), MF_ERR_MISSING);
    assert_non_null(strstr(err.msg, "missing"));
    assert_int_equal(mf_atomic_open(dir, &af, &err), MF_ERR_EXISTS);
    assert_int_equal(mf_atomic_open("", &af, &err), MF_ERR_ARG);
    assert_int_equal(mf_test_dir_count(dir), 1);

    /* copy */
    char q[4096];
    snprintf(p, sizeof p, "%s/out.json", dir);
    snprintf(q, sizeof q, "%s/copy.json", dir);
    assert_int_equal(mf_fs_copy_file(p, q, &err), MF_OK);
    got = mf_test_read_file(q, &len);
    assert_string_equal(got, "{\"a\": 1}\n");
    free(got);
    snprintf(p, sizeof p, "%s/none.json", dir);
    assert_int_equal(mf_fs_copy_file(p, q, &err), MF_ERR_MISSING);
    assert_non_null(strstr(err.msg, "none.json"));
    snprintf(q, sizeof q, "%s/missing/copy.json", dir);
    snprintf(p, sizeof p, "%s/out.json", dir);
    assert_int_equal(mf_fs_copy_file(p, q, &err), MF_ERR_MISSING);
    assert_int_equal(mf_test_dir_count(dir), 2);
    mf_fs_remove_tree(dir, NULL);
}

static void test_atomic_dir(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char out[4096], p[4096];
    struct mf_err err = {0};
    struct mf_atomic_dir ad;
    snprintf(out, sizeof out, "%s/pruned", dir);
    /* fill and commit */
    assert_int_equal(mf_atomic_dir_open(out, false, &ad, &err), MF_OK);
    assert_non_null(strstr(ad.tmp, "/.pruned."));
    assert_true(mf_fs_is_dir(ad.tmp));
    snprintf(p, sizeof p, "%s/sub", ad.tmp);
    assert_int_equal(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/sub/model.safetensors", ad.tmp);
    assert_int_equal(mf_test_write_file(p, "v1", 2), 0);
    assert_false(mf_fs_exists(out));
    assert_int_equal(mf_atomic_dir_commit(&ad, &err), MF_OK);
    assert_int_equal(mf_test_dir_count(dir), 1);
    snprintf(p, sizeof p, "%s/sub/model.safetensors", out);
    assert_true(mf_fs_is_file(p));
    /* exists, no force: refused up front, nothing created */
    assert_int_equal(mf_atomic_dir_open(out, false, &ad, &err), MF_ERR_EXISTS);
    assert_non_null(strstr(err.msg, "pruned"));
    assert_int_equal(mf_test_dir_count(dir), 1);
    /* abort removes the temp tree */
    char trailing[4096];
    snprintf(trailing, sizeof trailing, "%s/", out);
    assert_int_equal(mf_atomic_dir_open(trailing, true, &ad, &err), MF_OK);
    assert_string_equal(ad.final, out);
    snprintf(p, sizeof p, "%s/x", ad.tmp);
    assert_int_equal(mf_test_write_file(p, "x", 1), 0);
    mf_atomic_dir_abort(&ad);
    assert_int_equal(mf_test_dir_count(dir), 1);
    /* force: replaced, old copy removed */
    assert_int_equal(mf_atomic_dir_open(out, true, &ad, &err), MF_OK);
    snprintf(p, sizeof p, "%s/new.txt", ad.tmp);
    assert_int_equal(mf_test_write_file(p, "v2", 2), 0);
    assert_int_equal(mf_atomic_dir_commit(&ad, &err), MF_OK);
    assert_int_equal(mf_test_dir_count(dir), 1);
    assert_int_equal(mf_test_dir_count(out), 1);
    snprintf(p, sizeof p, "%s/new.txt", out);
    assert_true(mf_fs_is_file(p));
    /* output appears while writing, without force: commit fails, temp removed, other kept */
    char other[4096];
    snprintf(other, sizeof other, "%s/other", dir);
    assert_int_equal(mf_atomic_dir_open(other, false, &ad, &err), MF_OK);
    assert_int_equal(mkdir(other, 0777), 0);
    assert_int_equal(mf_atomic_dir_commit(&ad, &err), MF_ERR_EXISTS);
    assert_int_equal(mf_test_dir_count(dir), 2);
    /* parent missing */
    snprintf(p, sizeof p, "%s/missing/out", dir);
    assert_int_equal(mf_atomic_dir_open(p, false, &ad, &err), MF_ERR_MISSING);
    /* a file in the way cannot be replaced by a directory even with force */
    snprintf(p, sizeof p, "%s/file", dir);
    assert_int_equal(mf_test_write_file(p, "f", 1), 0);
    assert_int_equal(mf_atomic_dir_open(p, true, &ad, &err), MF_ERR_EXISTS);
    /* remove_tree does not follow symlinks */
    char link[4096], keep[4096];
    snprintf(keep, sizeof keep, "%s/keep.txt", other);
    assert_int_equal(mf_test_write_file(keep, "k", 1), 0);
    snprintf(link, sizeof link, "%s/link", out);
    assert_int_equal(symlink(other, link), 0);
    assert_int_equal(mf_fs_remove_tree(out, &err), MF_OK);
    assert_false(mf_fs_exists(out));
    assert_true(mf_fs_is_file(keep));
    assert_true(mf_fs_is_dir(other));
    mf_fs_remove_tree(dir, NULL);
}

/* What a signal handler does: every open temporary (a file, a directory with files and a
 * sub-directory, a file inside it) goes; committed outputs stay. */
static void test_remove_temps(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char out[4096], p[4096], msg[8192];
    struct mf_err err = {0};
    struct mf_atomic_dir ad;
    struct mf_atomic_file af, inner, done;
    snprintf(out, sizeof out, "%s/pruned", dir);
    assert_int_equal(mf_atomic_dir_open(out, false, &ad, &err), MF_OK);
    snprintf(p, sizeof p, "%s/" MF_FS_TEMP_MARKER, ad.tmp);
    assert_true(mf_fs_is_file(p));
    char want[64];
    snprintf(want, sizeof want, "/.pruned.mf%ld-", (long)getpid());
    assert_non_null(strstr(ad.tmp, want));
    snprintf(p, sizeof p, "%s/run", ad.tmp);
    assert_int_equal(mkdir(p, 0777), 0);
    for (int i = 0; i < 40; i++) { /* more entries than one getdents buffer */
        snprintf(p, sizeof p, "%s/run/file-with-a-long-name-%02d.safetensors", ad.tmp, i);
        assert_int_equal(mf_test_write_file(p, "x", 1), 0);
    }
    snprintf(p, sizeof p, "%s/run/model.safetensors", ad.tmp);
    assert_int_equal(mf_atomic_open(p, &inner, &err), MF_OK);
    fputs("partial", inner.f);
    fflush(inner.f);
    snprintf(p, sizeof p, "%s/report.json", dir);
    assert_int_equal(mf_atomic_open(p, &af, &err), MF_OK);
    snprintf(p, sizeof p, "%s/kept.json", dir);
    assert_int_equal(mf_atomic_open(p, &done, &err), MF_OK);
    assert_int_equal(mf_atomic_commit(&done, &err), MF_OK);
    /* messages name final paths, innermost temporaries first */
    snprintf(msg, sizeof msg, "%s: write failed; %s too", inner.tmp, af.tmp);
    mf_fs_temp_to_final(msg, sizeof msg);
    snprintf(p, sizeof p, "%s/pruned/run/model.safetensors: write failed; %s/report.json too", dir, dir);
    assert_string_equal(msg, p);
    assert_int_equal(mf_test_dir_count(dir), 3); /* temp dir, temp file, kept.json */
    mf_fs_remove_temps();
    assert_int_equal(mf_test_dir_count(dir), 1);
    snprintf(p, sizeof p, "%s/kept.json", dir);
    assert_true(mf_fs_is_file(p));
    /* the objects are spent; aborting them afterwards is harmless */
    fclose(inner.f);
    inner.f = NULL;
    mf_atomic_abort(&inner);
    mf_atomic_abort(&af);
    mf_atomic_dir_abort(&ad);
    assert_int_equal(mf_test_dir_count(dir), 1);
    mf_fs_remove_tree(dir, NULL);
}

/* Leftovers of a killed run: removed by the next open of the same output when their process is
 * dead and (directories) they carry the marker; a live pid, another output name, an unmarked
 * directory or a name off the pattern are left alone. */
static void test_stale_temps(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char p[4096], out[4096];
    struct mf_err err = {0};
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    assert_true(child > 0);
    assert_int_equal(waitpid(child, NULL, 0), child); /* reaped: the pid is free */
    long dead = (long)child, live = (long)getppid();
    const char *names[] = {"%s/.out.mf%ld-abcDE1", "%s/.out.mf%ld-abcDE2", "%s/.out.mf%ld-abcDE3",
                           "%s/.other.mf%ld-abcDE4", "%s/.out.mf%ld-abcDE5", "%s/.out.mf%ld-abcDE6.old"};
    const long pids[] = {dead, dead, live, dead, dead, dead};
    const bool marked[] = {true, false, true, true, true, true};
    const bool stale[] = {true, false, false, false, true, false}; /* [4] is a file */
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, names[i], dir, pids[i]);
        if (i == 4) {
            assert_int_equal(mf_test_write_file(p, "x", 1), 0);
            continue;
        }
        assert_int_equal(mkdir(p, 0777), 0);
        snprintf(p + strlen(p), sizeof p - strlen(p), "/%s", marked[i] ? MF_FS_TEMP_MARKER : "data");
        assert_int_equal(mf_test_write_file(p, "", 0), 0);
    }
    snprintf(out, sizeof out, "%s/out", dir);
    struct mf_atomic_file af;
    assert_int_equal(mf_atomic_open(out, &af, &err), MF_OK);
    assert_int_equal(mf_atomic_commit(&af, &err), MF_OK);
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, names[i], dir, pids[i]);
        assert_int_equal(mf_fs_exists(p), !stale[i]);
    }
    /* and the committed directory output carries no marker */
    snprintf(out, sizeof out, "%s/outdir", dir);
    struct mf_atomic_dir ad;
    assert_int_equal(mf_atomic_dir_open(out, false, &ad, &err), MF_OK);
    assert_int_equal(mf_atomic_dir_commit(&ad, &err), MF_OK);
    assert_int_equal(mf_test_dir_count(out), 0);
    mf_fs_remove_tree(dir, NULL);
}

static void test_check_writable(void **state)
{
    (void)state;
    const char *dir = mf_test_tmpdir();
    char p[4096];
    struct mf_err err = {0};
    snprintf(p, sizeof p, "%s/out.safetensors", dir);
    assert_int_equal(mf_fs_check_writable(p, &err), MF_OK);
    assert_int_equal(mf_test_dir_count(dir), 0);
    snprintf(p, sizeof p, "%s/missing/out.safetensors", dir);
    assert_int_equal(mf_fs_check_writable(p, &err), MF_ERR_MISSING);
    assert_int_equal(mf_fs_check_writable(dir, &err), MF_ERR_EXISTS);
    assert_non_null(strstr(mf_fs_strerror(EFBIG), "ulimit -f"));
    mf_fs_remove_tree(dir, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_read_all_and_list),
        cmocka_unit_test(test_atomic_file),
        cmocka_unit_test(test_atomic_dir),
        cmocka_unit_test(test_remove_temps),
        cmocka_unit_test(test_stale_temps),
        cmocka_unit_test(test_check_writable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
