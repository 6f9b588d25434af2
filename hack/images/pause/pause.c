/*
 * pause: the process that holds a pod sandbox's namespaces open.
 *
 * It blocks until SIGINT or SIGTERM and then exits 0. As PID 1 of the pod's
 * PID namespace (when the pod shares one) it also inherits orphaned processes,
 * so it reaps every child that exits instead of leaving zombies behind.
 *
 * The signals are blocked and taken synchronously with sigwaitinfo(), so no
 * work happens in an asynchronous signal handler. Handlers are still installed:
 * the kernel discards signals whose disposition is the default for the init
 * process of a PID namespace, and an installed handler rules that out even if
 * the mask were ever changed.
 *
 * Built with: gcc -static -Os -s -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "3.10-kubefixtures"

static void ignore_signal(int signo) { (void)signo; }

static void reap_children(void) {
    /* Several children may have exited for a single SIGCHLD. */
    for (;;) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid > 0) {
            continue;
        }
        if (pid < 0 && errno == EINTR) {
            continue;
        }
        return; /* 0: children left but none exited; -1/ECHILD: no children */
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("pause %s\n", PAUSE_VERSION);
        return 0;
    }
    if (getpid() != 1) {
        fprintf(stderr, "pause: warning: not PID 1, orphaned processes are reaped elsewhere\n");
    }

    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGINT);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &wanted, NULL) != 0) {
        perror("pause: sigprocmask");
        return 1;
    }

    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = ignore_signal;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGINT, &action, NULL) != 0 || sigaction(SIGTERM, &action, NULL) != 0 ||
        sigaction(SIGCHLD, &action, NULL) != 0) {
        perror("pause: sigaction");
        return 1;
    }

    for (;;) {
        siginfo_t info;
        int signo = sigwaitinfo(&wanted, &info);
        if (signo < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("pause: sigwaitinfo");
            return 1;
        }
        if (signo == SIGCHLD) {
            reap_children();
            continue;
        }
        /* SIGINT or SIGTERM: the sandbox is being torn down. */
        return 0;
    }
}
