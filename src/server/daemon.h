/*
 * daemon.h - process control as memcached does it: resource limits, the
 * root check and dropping privileges (-u), daemonizing (-d), the pid file (-P).
 * Each returns 0 or an exit code after printing why.
 */
#ifndef MEMSTASH_DAEMON_H
#define MEMSTASH_DAEMON_H

struct settings;

/* Root without -u is refused; -u names must exist. */
int daemon_check_user(const struct settings *s);
/* RLIMIT_NOFILE for -c (plus `reserved` descriptors), RLIMIT_CORE for -r. */
int daemon_set_limits(const struct settings *s, int reserved);
/* Assumes the -u identity when running as root. */
int daemon_drop_privileges(const struct settings *s);
/* fork + setsid; the parent exits 0. stdio goes to /dev/null unless -v. */
int daemon_detach(const struct settings *s);
/* Makes a relative path absolute (before -d changes directory). Returns a
 * new string or NULL. */
char *daemon_abspath(const char *path);
/* Writes the pid through "<file>.tmp" and rename. */
int daemon_write_pidfile(const char *path);
void daemon_remove_pidfile(const char *path);

#endif
