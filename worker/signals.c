/* signals.c — see signals.h. Async-signal-safe: the handler writes one sig_atomic_t. */
#include "worker/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_pending;

static void on_signal(int sig)
{
    if (sig == SIGINT) {
        if (g_pending & KD_SIG_INTERRUPT) _exit(130); /* second Ctrl-C */
        g_pending |= KD_SIG_INTERRUPT;
    } else {
        g_pending |= KD_SIG_STOP;
    }
}

void kd_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a vanished status client must not kill the trainer */
}

int kd_signals_pending(void) { return (int)g_pending; }
void kd_signals_reset(void) { g_pending = 0; }
