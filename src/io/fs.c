/*
 * io/fs.c: file-system helpers (see io/fs.h): capped reads, atomic output files and directories,
 * copy, join, sorted listing, recursive removal.
 *
 * Does not: follow symlinks while removing, retry on EINTR beyond read/write loops, or handle
 * non-POSIX systems. Temp names are generated here (not mkstemp/mkdtemp) so that the created file
 * or directory gets the usual 0666/0777 & ~umask permissions instead of 0600/0700, while still being
 * created exclusively (O_EXCL / mkdir's EEXIST); they carry the pid so that a later run can tell a
 * dead process's leftovers from a live one's. The registry of open temporary outputs is a fixed
 * array of slots (claimed with a compare-exchange, paths copied in before the slot is published)
 * so that a signal handler can read it without locks; its tree removal uses openat/getdents64/
 * unlinkat only (Linux; elsewhere a directory is removed only if empty).
 * Reference: POSIX open(2), rename(2), fsync(2); the temp-then-rename pattern of curl
 * lib/curl_fopen.c (read, not copied).
 */
#include "io/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "core/common.h"

bool mf_fs_exists(const char *path)
{
    struct stat sb;
    return path && lstat(path, &sb) == 0;
}

bool mf_fs_is_dir(const char *path)
{
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

bool mf_fs_is_file(const char *path)
{
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

const char *mf_fs_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

bool mf_fs_dirname(char *buf, size_t n, const char *path)
{
    const char *s = strrchr(path, '/');
    if (n == 0)
        return false;
    if (!s) {
        if (n < 2)
            return false;
        strcpy(buf, ".");
        return true;
    }
    size_t len = (size_t)(s - path);
    if (len == 0)
        len = 1; /* "/x" -> "/" */
    if (len >= n) {
        buf[0] = 0;
        return false;
    }
    memcpy(buf, path, len);
    buf[len] = 0;
    return true;
}

bool mf_fs_join(char *buf, size_t n, const char *a, const char *b)
{
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/')
        la--;
    int w;
    if (la == 0)
        w = snprintf(buf, n, "%s", b);
    else if (a[la - 1] == '/')
        w = snprintf(buf, n, "%.*s%s", (int)la, a, b);
    else
        w = snprintf(buf, n, "%.*s/%s", (int)la, a, b);
    if (w < 0 || (size_t)w >= n) {
        if (n)
            buf[0] = 0;
        return false;
    }
    return true;
}

enum mf_status mf_fs_read_all(const char *path, char **buf, size_t *len, size_t max_len,
                              struct mf_err *err)
{
    char *data = NULL;
    size_t cap = 0, used = 0;
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *buf = NULL;
    *len = 0;
    if (fd < 0) {
        mf_err_set(err, errno == ENOENT ? MF_ERR_MISSING : MF_ERR_IO, "%s: cannot open: %s", path,
                   strerror(errno));
        goto fail;
    }
    if (fstat(fd, &sb) != 0) {
        mf_err_set(err, MF_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(sb.st_mode)) {
        mf_err_set(err, MF_ERR_IO, "%s: is a directory, expected a file", path);
        goto fail;
    }
    if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > (uint64_t)max_len) {
        mf_err_set(err, MF_ERR_RANGE, "%s: file is %llu bytes, limit is %zu", path,
                   (unsigned long long)sb.st_size, max_len);
        goto fail;
    }
    /* regular files: one allocation of the stat size plus the NUL and one spare byte, so EOF is
     * seen without growing; pipes, /proc files (size 0) and files growing meanwhile: doubled, up
     * to max_len */
    cap = 4096;
    if (S_ISREG(sb.st_mode) && sb.st_size > 0 && !mf_add_size((size_t)sb.st_size, 2, &cap)) {
        mf_err_set(err, MF_ERR_RANGE, "%s: file size overflows", path);
        goto fail;
    }
    data = mf_malloc(cap);
    if (!data) {
        mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
        goto fail;
    }
    for (;;) {
        if (used + 1 >= cap) {
            if (cap - 1 > max_len) {
                mf_err_set(err, MF_ERR_RANGE, "%s: file is larger than the limit of %zu bytes",
                           path, max_len);
                goto fail;
            }
            size_t ncap = cap * 2;
            if (ncap < cap || ncap - 1 > max_len)
                ncap = max_len + 2; /* one more than allowed so an over-long file is detected */
            char *p = mf_realloc(data, ncap);
            if (!p) {
                mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, ncap);
                goto fail;
            }
            data = p;
            cap = ncap;
        }
        ssize_t r = read(fd, data + used, cap - 1 - used);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            mf_err_set(err, MF_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        used += (size_t)r;
        if (used > max_len) {
            mf_err_set(err, MF_ERR_RANGE, "%s: file is larger than the limit of %zu bytes", path,
                       max_len);
            goto fail;
        }
    }
    close(fd);
    data[used] = 0;
    *buf = data;
    *len = used;
    return MF_OK;
fail:
    mf_free(data);
    if (fd >= 0)
        close(fd);
    return err ? err->code : MF_ERR_IO;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void mf_fs_list_free(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        mf_free(names[i]);
    mf_free(names);
}

enum mf_status mf_fs_list_dir(const char *path, char ***names, size_t *n, struct mf_err *err)
{
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    DIR *d = opendir(path);
    *names = NULL;
    *n = 0;
    if (!d) {
        mf_err_set(err, errno == ENOENT ? MF_ERR_MISSING : MF_ERR_IO, "%s: cannot open directory: %s",
                   path, strerror(errno));
        goto fail;
    }
    while ((errno = 0, e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (cnt == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **p = mf_realloc(v, ncap * sizeof *p);
            if (!p) {
                mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory listing directory", path);
                goto fail;
            }
            v = p;
            cap = ncap;
        }
        v[cnt] = mf_strdup(e->d_name);
        if (!v[cnt]) {
            mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory listing directory", path);
            goto fail;
        }
        cnt++;
    }
    if (errno != 0) {
        mf_err_set(err, MF_ERR_IO, "%s: readdir failed: %s", path, strerror(errno));
        goto fail;
    }
    closedir(d);
    if (cnt > 1)
        qsort(v, cnt, sizeof *v, cmp_str);
    *names = v;
    *n = cnt;
    return MF_OK;
fail:
    mf_fs_list_free(v, cnt);
    if (d)
        closedir(d);
    return err ? err->code : MF_ERR_IO;
}

enum mf_status mf_fs_sync_dir(const char *dir, struct mf_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return mf_err_set(err, MF_ERR_IO, "%s: cannot open directory to sync: %s", dir,
                          strerror(errno));
    /* some file systems refuse fsync on directories (EINVAL); the rename itself already happened */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
        int e = errno;
        close(fd);
        return mf_err_set(err, MF_ERR_IO, "%s: fsync of directory failed: %s", dir, strerror(e));
    }
    close(fd);
    return MF_OK;
}

static enum mf_status remove_rec(char *path, size_t cap, struct mf_err *err)
{
    struct stat sb;
    DIR *d = NULL;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT)
            return MF_OK;
        return mf_err_set(err, MF_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT)
            return mf_err_set(err, MF_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        return MF_OK;
    }
    d = opendir(path);
    if (!d)
        return mf_err_set(err, MF_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
    size_t base = strlen(path);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        size_t ln = strlen(e->d_name);
        if (base + 1 + ln + 1 > cap) {
            mf_err_set(err, MF_ERR_RANGE, "%s: path of entry '%s' is too long", path, e->d_name);
            goto fail;
        }
        path[base] = '/';
        memcpy(path + base + 1, e->d_name, ln + 1);
        enum mf_status s = remove_rec(path, cap, err);
        path[base] = 0;
        if (s != MF_OK)
            goto fail;
    }
    closedir(d);
    if (rmdir(path) != 0 && errno != ENOENT)
        return mf_err_set(err, MF_ERR_IO, "%s: cannot remove directory: %s", path, strerror(errno));
    return MF_OK;
fail:
    closedir(d);
    return err ? err->code : MF_ERR_IO;
}

enum mf_status mf_fs_remove_tree(const char *path, struct mf_err *err)
{
    char buf[MF_PATH_MAX];
    if (strlen(path) >= sizeof buf)
        return mf_err_set(err, MF_ERR_RANGE, "%s: path too long", path);
    strcpy(buf, path);
    return remove_rec(buf, sizeof buf, err);
}

/* ---------------------------------------------------------------- registry of open temporaries */

enum { REG_FREE = 0, REG_BUSY, REG_FILE, REG_DIR, REG_ASIDE };
#define REG_SLOTS 32

static struct reg_slot {
    atomic_int kind;
    char path[MF_PATH_MAX];
    char back[MF_PATH_MAX]; /* the final path (REG_ASIDE: where the moved-aside output returns) */
} reg[REG_SLOTS];

/* Publishes a temporary path and its final (or, for REG_ASIDE, original) path; returns slot + 1, or 0 when every slot is taken (the output then
 * simply is not cleaned on a signal). */
static int reg_add(int kind, const char *path, const char *back)
{
    if (strlen(path) >= MF_PATH_MAX || strlen(back) >= MF_PATH_MAX)
        return 0;
    for (int i = 0; i < REG_SLOTS; i++) {
        int expect = REG_FREE;
        if (atomic_compare_exchange_strong(&reg[i].kind, &expect, REG_BUSY)) {
            strcpy(reg[i].path, path);
            strcpy(reg[i].back, back);
            atomic_store(&reg[i].kind, kind);
            return i + 1;
        }
    }
    return 0;
}

static void reg_set(int slot, int kind)
{
    if (slot > 0)
        atomic_store(&reg[slot - 1].kind, kind);
}

static void reg_del(int *slot)
{
    reg_set(*slot, REG_FREE);
    *slot = 0;
}

static bool is_dot_or_dotdot(const char *s)
{
    return s[0] == '.' && (s[1] == 0 || (s[1] == '.' && s[2] == 0));
}

#if defined(__linux__) && defined(SYS_getdents64)
struct dirent64_raw {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};
#endif

/* Removes name (relative to the directory dfd) and everything under it, with async-signal-safe
 * calls only (no malloc, no stdio, no opendir). Depth is bounded by the caller's stack budget. */
static void remove_at_signal_safe(int dfd, const char *name, int depth)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return; /* a file or a symlink */
    int fd = depth < 16 ? openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    /* entries removed while listing may make getdents skip others: list again until rmdir works */
    for (int pass = 0; pass < 8; pass++) {
#if defined(__linux__) && defined(SYS_getdents64)
        if (fd >= 0 && lseek(fd, 0, SEEK_SET) == 0) {
            _Alignas(8) char buf[2048];
            long n;
            while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
                for (long off = 0; off < n;) {
                    const struct dirent64_raw *e = (const void *)(buf + off);
                    off += e->d_reclen;
                    if (!is_dot_or_dotdot(e->d_name))
                        remove_at_signal_safe(fd, e->d_name, depth + 1);
                }
        }
#endif
        if (unlinkat(dfd, name, AT_REMOVEDIR) == 0 || (errno != ENOTEMPTY && errno != EEXIST))
            break;
    }
    if (fd >= 0)
        close(fd);
}

void mf_fs_remove_temps(void)
{
    int saved = errno;
    for (int i = 0; i < REG_SLOTS; i++) {
        int k = atomic_load(&reg[i].kind);
        if (k == REG_FILE)
            unlink(reg[i].path);
        else if (k == REG_DIR)
            remove_at_signal_safe(AT_FDCWD, reg[i].path, 0);
    }
    /* a forced commit moved the old output aside: put it back, unless the new one is in place */
    for (int i = 0; i < REG_SLOTS; i++)
        if (atomic_load(&reg[i].kind) == REG_ASIDE && rename(reg[i].path, reg[i].back) != 0 &&
            (errno == EEXIST || errno == ENOTEMPTY))
            remove_at_signal_safe(AT_FDCWD, reg[i].path, 0);
    errno = saved;
}

void mf_fs_temp_to_final(char *msg, size_t cap)
{
    /* files first: a file's temporary path may lie inside a temporary directory */
    for (int pass = 0, i = 0; pass < 2; i = (i + 1) % REG_SLOTS, pass += i == 0) {
        if (atomic_load(&reg[i].kind) != (pass == 0 ? REG_FILE : REG_DIR))
            continue;
        size_t tl = strlen(reg[i].path), fl = strlen(reg[i].back);
        char *at;
        while (tl > 0 && (at = strstr(msg, reg[i].path)) != NULL) {
            size_t rest = strlen(at + tl) + 1;
            if ((size_t)(at - msg) + fl + rest > cap)
                break;
            memmove(at + fl, at + tl, rest);
            memcpy(at, reg[i].back, fl);
        }
    }
}

const char *mf_fs_strerror(int e)
{
    if (e == EFBIG)
        return "File too large (the file size limit was reached; see 'ulimit -f')";
    if (e == ENOSPC)
        return "No space left on device (free some space or write elsewhere)";
#ifdef EDQUOT
    if (e == EDQUOT)
        return "Disk quota exceeded (free some space or write elsewhere)";
#endif
    return strerror(e);
}

/* The pid of a temporary name ".<base>.mf<pid>-<6 of [A-Za-z0-9]>", or 0 if name is not one. */
static long temp_name_pid(const char *name, const char *base)
{
    size_t bl = strlen(base);
    if (name[0] != '.' || strncmp(name + 1, base, bl) != 0 || strncmp(name + 1 + bl, ".mf", 3) != 0)
        return 0;
    const char *p = name + bl + 4;
    long pid = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 10; p++, digits++)
        pid = pid * 10 + (*p - '0');
    if (digits == 0 || *p++ != '-')
        return 0;
    for (int i = 0; i < 6; i++, p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return 0;
    return *p == 0 ? pid : 0;
}

/* Removes the temporary outputs for final left by dead processes (killed before they could clean
 * up): files by their name, directories by their name and marker file. Best effort, no errors. */
static void remove_stale(const char *final)
{
    char dir[MF_PATH_MAX], p[MF_PATH_MAX], marker[MF_PATH_MAX];
    const char *base = mf_fs_basename(final);
    if (!mf_fs_dirname(dir, sizeof dir, final))
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = temp_name_pid(e->d_name, base);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* not ours, or its process may still be running */
        struct stat sb;
        if (!mf_fs_join(p, sizeof p, dir, e->d_name) || lstat(p, &sb) != 0)
            continue;
        if (S_ISREG(sb.st_mode))
            unlink(p);
        else if (S_ISDIR(sb.st_mode) && mf_fs_join(marker, sizeof marker, p, MF_FS_TEMP_MARKER) &&
                 mf_fs_is_file(marker))
            mf_fs_remove_tree(p, NULL);
    }
    closedir(d);
}

/* Six characters from [A-Za-z0-9], different on every call in this process and across processes. */
static void temp_suffix(char out[7])
{
    static atomic_ulong counter;
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 40) ^
                 (atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ull);
    /* splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    for (int i = 0; i < 6; i++) {
        out[i] = abc[x % 62];
        x /= 62;
    }
    out[6] = 0;
}

/* Splits path (trailing '/' ignored) into final (normalised) and a temp name "<dir>/.<base>.<rand>"
 * mf<pid>- without the random part (the caller appends it). Leftovers of dead processes with the
 * same final name are removed first (see remove_stale). */
static enum mf_status temp_prefix(const char *path, char *final, char *prefix, size_t cap,
                                  struct mf_err *err)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n == 0 || n + 40 >= cap)
        return mf_err_set(err, MF_ERR_ARG, "'%s': output path is empty or too long", path);
    memcpy(final, path, n);
    final[n] = 0;
    const char *base = mf_fs_basename(final);
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || !strcmp(final, "/"))
        return mf_err_set(err, MF_ERR_ARG, "'%s': output path has no file name", path);
    size_t dl = (size_t)(base - final);
    snprintf(prefix, cap, "%.*s.%s.mf%ld-", (int)dl, final, base, (long)getpid());
    remove_stale(final);
    return MF_OK;
}

enum mf_status mf_atomic_open(const char *path, struct mf_atomic_file *af, struct mf_err *err)
{
    char prefix[MF_PATH_MAX];
    int fd = -1;
    af->f = NULL;
    af->tmp[0] = 0;
    af->reg = 0;
    if (temp_prefix(path, af->final, prefix, sizeof prefix, err) != MF_OK)
        return err ? err->code : MF_ERR_ARG;
    if (mf_fs_is_dir(af->final))
        return mf_err_set(err, MF_ERR_EXISTS, "%s: is a directory, cannot write a file there",
                          af->final);
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        char sfx[7];
        temp_suffix(sfx);
        snprintf(af->tmp, sizeof af->tmp, "%s%s", prefix, sfx);
        fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        int e = errno;
        af->tmp[0] = 0;
        char dir[MF_PATH_MAX];
        mf_fs_dirname(dir, sizeof dir, af->final);
        return mf_err_set(err, e == ENOENT ? MF_ERR_MISSING : MF_ERR_IO,
                          "%s: cannot create a temporary file in '%s': %s", af->final, dir,
                          strerror(e));
    }
    af->reg = reg_add(REG_FILE, af->tmp, af->final);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        unlink(af->tmp);
        af->tmp[0] = 0;
        reg_del(&af->reg);
        return mf_err_set(err, MF_ERR_IO, "%s: fdopen failed: %s", af->final, strerror(e));
    }
    return MF_OK;
}

void mf_atomic_abort(struct mf_atomic_file *af)
{
    if (af->f)
        fclose(af->f);
    af->f = NULL;
    if (af->tmp[0])
        unlink(af->tmp);
    af->tmp[0] = 0;
    reg_del(&af->reg);
}

enum mf_status mf_atomic_commit(struct mf_atomic_file *af, struct mf_err *err)
{
    char dir[MF_PATH_MAX];
    if (!af->f || !af->tmp[0])
        return mf_err_set(err, MF_ERR_ARG, "%s: atomic file is not open", af->final);
    mf_fs_test_pause("commit");
    if (ferror(af->f) || fflush(af->f) != 0) {
        mf_err_set(err, MF_ERR_IO, "%s: write failed: %s", af->final, mf_fs_strerror(errno));
        goto fail;
    }
    if (fsync(fileno(af->f)) != 0) {
        mf_err_set(err, MF_ERR_IO, "%s: fsync failed: %s", af->final, mf_fs_strerror(errno));
        goto fail;
    }
    int rc = fclose(af->f);
    af->f = NULL;
    if (rc != 0) {
        mf_err_set(err, MF_ERR_IO, "%s: close failed: %s", af->final, mf_fs_strerror(errno));
        goto fail;
    }
    if (rename(af->tmp, af->final) != 0) {
        mf_err_set(err, MF_ERR_IO, "%s: rename from '%s' failed: %s", af->final, af->tmp,
                   strerror(errno));
        goto fail;
    }
    af->tmp[0] = 0;
    reg_del(&af->reg);
    mf_fs_dirname(dir, sizeof dir, af->final);
    return mf_fs_sync_dir(dir, err);
fail:
    mf_atomic_abort(af);
    return err ? err->code : MF_ERR_IO;
}

enum mf_status mf_atomic_dir_open(const char *path, bool force, struct mf_atomic_dir *ad,
                                  struct mf_err *err)
{
    char prefix[MF_PATH_MAX];
    bool made = false;
    ad->tmp[0] = 0;
    ad->force = force;
    ad->reg = 0;
    if (temp_prefix(path, ad->final, prefix, sizeof prefix, err) != MF_OK)
        return err ? err->code : MF_ERR_ARG;
    if (mf_fs_exists(ad->final) && !force)
        return mf_err_set(err, MF_ERR_EXISTS, "%s: output exists (use --force to replace it)",
                          ad->final);
    if (mf_fs_exists(ad->final) && !mf_fs_is_dir(ad->final))
        return mf_err_set(err, MF_ERR_EXISTS, "%s: exists and is not a directory", ad->final);
    int e = 0;
    for (int attempt = 0; attempt < 100 && !made; attempt++) {
        char sfx[7];
        temp_suffix(sfx);
        snprintf(ad->tmp, sizeof ad->tmp, "%s%s", prefix, sfx);
        if (mkdir(ad->tmp, 0777) == 0)
            made = true;
        else if ((e = errno) != EEXIST)
            break;
    }
    if (!made) {
        ad->tmp[0] = 0;
        char dir[MF_PATH_MAX];
        mf_fs_dirname(dir, sizeof dir, ad->final);
        return mf_err_set(err, e == ENOENT ? MF_ERR_MISSING : MF_ERR_IO,
                          "%s: cannot create a temporary directory in '%s': %s", ad->final, dir,
                          strerror(e));
    }
    ad->reg = reg_add(REG_DIR, ad->tmp, ad->final);
    /* the marker tells a later run that this is a multiflow temporary (see remove_stale) */
    char marker[MF_PATH_MAX];
    int fd = mf_fs_join(marker, sizeof marker, ad->tmp, MF_FS_TEMP_MARKER)
                 ? open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666)
                 : -1;
    if (fd < 0) {
        e = errno;
        mf_atomic_dir_abort(ad);
        return mf_err_set(err, MF_ERR_IO, "%s: cannot create '%s' in the temporary directory: %s",
                          ad->final, MF_FS_TEMP_MARKER, strerror(e));
    }
    close(fd);
    return MF_OK;
}

void mf_atomic_dir_abort(struct mf_atomic_dir *ad)
{
    if (ad->tmp[0])
        mf_fs_remove_tree(ad->tmp, NULL);
    ad->tmp[0] = 0;
    reg_del(&ad->reg);
}

enum mf_status mf_atomic_dir_commit(struct mf_atomic_dir *ad, struct mf_err *err)
{
    char old[MF_PATH_MAX] = "";
    char dir[MF_PATH_MAX], marker[MF_PATH_MAX];
    int aside = 0; /* registry slot of the moved-aside old output */
    if (!ad->tmp[0])
        return mf_err_set(err, MF_ERR_ARG, "%s: atomic directory is not open", ad->final);
    mf_fs_dirname(dir, sizeof dir, ad->final);
    if (mf_fs_join(marker, sizeof marker, ad->tmp, MF_FS_TEMP_MARKER) && unlink(marker) != 0 &&
        errno != ENOENT) {
        mf_err_set(err, MF_ERR_IO, "%s: cannot remove '%s': %s", ad->final, marker, strerror(errno));
        goto fail;
    }
    if (mf_fs_sync_dir(ad->tmp, err) != MF_OK)
        goto fail;
    if (mf_fs_exists(ad->final)) {
        if (!ad->force) {
            mf_err_set(err, MF_ERR_EXISTS, "%s: output appeared while it was being written",
                       ad->final);
            goto fail;
        }
        /* move the old output aside first: rename(2) would silently replace only an empty dir */
        char sfx[7];
        temp_suffix(sfx);
        const char *base = mf_fs_basename(ad->final);
        snprintf(old, sizeof old, "%.*s.%s.old.%s", (int)(base - ad->final), ad->final, base, sfx);
        /* registered first: a signal from here on puts the old output back (mf_fs_remove_temps) */
        aside = reg_add(REG_ASIDE, old, ad->final);
        if (rename(ad->final, old) != 0) {
            mf_err_set(err, MF_ERR_IO, "%s: cannot move the old output aside: %s", ad->final,
                       strerror(errno));
            old[0] = 0;
            goto fail;
        }
    }
    if (rename(ad->tmp, ad->final) != 0) {
        mf_err_set(err, MF_ERR_IO, "%s: rename from '%s' failed: %s", ad->final, ad->tmp,
                   strerror(errno));
        if (old[0] && rename(old, ad->final) == 0)
            old[0] = 0;
        goto fail;
    }
    reg_set(aside, REG_DIR); /* the new output is in place: the old one is now only to be removed */
    ad->tmp[0] = 0;
    reg_del(&ad->reg);
    if (old[0] && mf_fs_remove_tree(old, err) != MF_OK) {
        reg_del(&aside);
        return err ? err->code : MF_ERR_IO; /* new output is in place; the old copy is left over */
    }
    reg_del(&aside);
    return mf_fs_sync_dir(dir, err);
fail:
    reg_del(&aside);
    mf_atomic_dir_abort(ad);
    return err ? err->code : MF_ERR_IO;
}

enum mf_status mf_fs_copy_file(const char *src, const char *dst, struct mf_err *err)
{
    enum { CHUNK = 1 << 16 };
    struct mf_atomic_file af = {0};
    bool open_af = false;
    char *buf = NULL;
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        mf_err_set(err, errno == ENOENT ? MF_ERR_MISSING : MF_ERR_IO, "%s: cannot open: %s", src,
                   strerror(errno));
        goto fail;
    }
    buf = mf_malloc(CHUNK);
    if (!buf) {
        mf_err_set(err, MF_ERR_NOMEM, "%s: out of memory for copy buffer", src);
        goto fail;
    }
    if (mf_atomic_open(dst, &af, err) != MF_OK)
        goto fail;
    open_af = true;
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            mf_err_set(err, MF_ERR_IO, "%s: read failed: %s", src, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        if (fwrite(buf, 1, (size_t)r, af.f) != (size_t)r) {
            mf_err_set(err, MF_ERR_IO, "%s: write failed: %s", dst, mf_fs_strerror(errno));
            goto fail;
        }
    }
    open_af = false;
    if (mf_atomic_commit(&af, err) != MF_OK)
        goto fail;
    mf_free(buf);
    close(fd);
    return MF_OK;
fail:
    if (open_af)
        mf_atomic_abort(&af);
    mf_free(buf);
    if (fd >= 0)
        close(fd);
    return err ? err->code : MF_ERR_IO;
}

enum mf_status mf_fs_check_writable(const char *path, struct mf_err *err)
{
    struct mf_atomic_file af = {0};
    enum mf_status st = mf_atomic_open(path, &af, err);
    if (st == MF_OK)
        mf_atomic_abort(&af);
    return st;
}

void mf_fs_test_pause(const char *point)
{
    static atomic_long calls;
    const char *spec = getenv("MF_TEST_PAUSE");
    size_t n = strlen(point);
    if (!spec || strncmp(spec, point, n) != 0 || spec[n] != ':')
        return;
    if (atomic_fetch_add(&calls, 1) + 1 != strtol(spec + n + 1, NULL, 10))
        return;
    const char *flag = getenv("MF_TEST_PAUSE_FILE");
    if (flag) {
        int fd = open(flag, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (fd >= 0)
            close(fd);
    }
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 12000; i++) /* 120 s, then carry on: a test that sent nothing fails anyway */
        nanosleep(&ts, NULL);
}
