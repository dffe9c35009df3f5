/*
 * image-sync-sleeper: the one process of image-sync's keeper and puller containers.
 *
 * A keeper container runs a cached image with this as its command, so the image is in use
 * by a running container and kubelet image GC leaves it alone; it must run in images that
 * have no shell, hence a static binary copied in by an init container (--install).
 *
 *   image-sync-sleeper               sleep until SIGTERM or SIGINT, then exit 0
 *   image-sync-sleeper --exit        exit 0 at once (a puller: the pull was the work)
 *   image-sync-sleeper --install D   copy this binary to D (mode 0755, atomic rename)
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int install(const char *dest) {
    char tmp[PATH_MAX], buf[65536];
    ssize_t n = 0;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", dest) >= (int)sizeof tmp) return 1;
    int in = open("/proc/self/exe", O_RDONLY);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (in < 0 || out < 0) { perror("image-sync-sleeper: open"); return 1; }
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) { n = -1; break; }
    if (n < 0 || fchmod(out, 0755) || fsync(out) || close(out) || rename(tmp, dest)) {
        perror("image-sync-sleeper: install");
        unlink(tmp);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--exit") == 0) return 0;
    if (argc == 3 && strcmp(argv[1], "--install") == 0) return install(argv[2]);
    if (argc != 1) {
        fputs("usage: image-sync-sleeper [--exit | --install DEST]\n", stderr);
        return 2;
    }
    /* Block the signals, then wait for them atomically: none can slip in before we sleep.
       As PID 1 in a container, SIGTERM has no default action, so the handler is required. */
    sigset_t block, old;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &old);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!stop) sigsuspend(&old);
    return 0;
}
