/*
 * daemon.c - process control (see daemon.h).
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "settings.h"

static bool is_root(void)
{
    return getuid() == 0 || geteuid() == 0;
}

int daemon_check_user(const struct settings *s)
{
    if (!is_root()) {
        return 0;
    }
    if (s->username == NULL || s->username[0] == '\0') {
        fprintf(stderr, "can't run as root without the -u switch\n");
        return EX_USAGE;
    }
    if (getpwnam(s->username) == NULL) {
        fprintf(stderr, "can't find the user %s to switch to\n", s->username);
        return EX_NOUSER;
    }
    return 0;
}

int daemon_set_limits(const struct settings *s, int reserved)
{
    struct rlimit rl;
    if (s->coredumps) {
        if (getrlimit(RLIMIT_CORE, &rl) == 0) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_CORE, &rl);
        }
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "failed to getrlimit number of files\n");
        return EX_OSERR;
    }
    rlim_t want = (rlim_t)s->maxconns + (rlim_t)reserved;
    if (rl.rlim_cur >= want) {
        return 0;
    }
    rl.rlim_cur = want;
    if (rl.rlim_max < want) {
        rl.rlim_max = want;
    }
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "failed to set rlimit for open files. Try starting as root or "
                        "requesting smaller maxconns value.\n");
        return EX_OSERR;
    }
    return 0;
}

int daemon_drop_privileges(const struct settings *s)
{
    if (!is_root() || s->username == NULL) {
        return 0;
    }
    struct passwd *pw = getpwnam(s->username);
    if (pw == NULL) {
        fprintf(stderr, "can't find the user %s to switch to\n", s->username);
        return EX_NOUSER;
    }
    if (pw->pw_uid == 0) {
        return 0; /* -u root: nothing to drop */
    }
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        fprintf(stderr, "failed to assume identity of user %s\n", s->username);
        return EX_OSERR;
    }
    return 0;
}

int daemon_detach(const struct settings *s)
{
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return EX_OSERR;
    }
    if (pid > 0) {
        _exit(0);
    }
    if (setsid() == -1) {
        perror("setsid");
        return EX_OSERR;
    }
    if (!s->coredumps && chdir("/") != 0) {
        perror("chdir");
        return EX_OSERR;
    }
    if (s->verbose == 0) {
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, STDIN_FILENO);
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            if (fd > STDERR_FILENO) {
                close(fd);
            }
        }
    }
    return 0;
}

char *daemon_abspath(const char *path)
{
    if (path == NULL) {
        return NULL;
    }
    if (path[0] == '/') {
        return strdup(path);
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        return strdup(path);
    }
    size_t n = strlen(cwd) + strlen(path) + 2;
    char *out = malloc(n);
    if (out != NULL) {
        snprintf(out, n, "%s/%s", cwd, path);
    }
    return out;
}

int daemon_write_pidfile(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        fprintf(stderr, "pid file path too long: %s\n", path);
        return EX_USAGE;
    }
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "Could not open the pid file %s for writing: %s\n", tmp, strerror(errno));
        return EX_CANTCREAT;
    }
    fprintf(f, "%ld\n", (long)getpid());
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "Could not write the pid file %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return EX_CANTCREAT;
    }
    return 0;
}

void daemon_remove_pidfile(const char *path)
{
    if (path != NULL && unlink(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "Could not remove the pid file %s: %s\n", path, strerror(errno));
    }
}
